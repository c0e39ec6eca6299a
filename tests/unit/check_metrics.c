/* SPDX-License-Identifier: BSD-2-Clause */
/* check_metrics.c - Prometheus rendering: sums across workers, labels, histogram. */
#include <stdlib.h>
#include <string.h>

#include "ops/metrics.h"
#include "testlib.h"

static const char *const names[] = { "accepted", "tls_handshake", "relaying", "closed" };

static char *render2(struct kg_metrics *a, struct kg_metrics *b)
{
	struct kg_metrics *per[2] = { a, b };
	struct kg_metrics_info info = { .state_names = names, .n_states = 4, .workers = 2,
					.reloads = 3, .start_time = 1700000000 };
	size_t len = 0;
	char *out = kg_metrics_render(per, 2, &info, &len);

	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(strlen(out), len);
	return out;
}

START_TEST(sums_across_workers)
{
	static struct kg_metrics a, b;
	char *out;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	kg_metric_add(&a.handshakes[KG_HS_OK], 2);
	kg_metric_add(&b.handshakes[KG_HS_OK], 5);
	kg_metric_add(&b.handshakes[KG_HS_FAILED], 1);
	kg_metric_add(&a.decisions_deny[KG_REASON_DISABLED], 4);
	kg_metric_add(&b.decisions_allow[KG_REASON_OK], 9);
	kg_metric_add(&a.bytes[KG_DIR_UP], 100);
	kg_metric_add(&b.bytes[KG_DIR_UP], 23);
	kg_metric_gauge(&a.conns_by_state[2], 3);
	kg_metric_gauge(&b.conns_by_state[2], -1);
	out = render2(&a, &b);
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_handshakes_total{result=\"ok\"} 7\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_handshakes_total{result=\"failed\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_decisions_total{decision=\"deny\",reason=\"disabled\"} 4\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_decisions_total{decision=\"allow\",reason=\"ok\"} 9\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_bytes_relayed_total{direction=\"device_to_broker\"} 123\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_connections{state=\"relaying\"} 2\n"));
	/* the pseudo-state "closed" is never a gauge */
	ck_assert_ptr_null(strstr(out, "state=\"closed\""));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_reloads_total{result=\"ok\"} 3\n"));
	free(out);
}
END_TEST

START_TEST(histogram_cumulative)
{
	static struct kg_metrics a, b;
	char *out;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	kg_metrics_observe_handshake(&a, 500);       /* 0.5 ms -> le 0.001 */
	kg_metrics_observe_handshake(&a, 3000);      /* 3 ms -> le 0.005 */
	kg_metrics_observe_handshake(&b, 60000000);  /* 60 s -> +Inf only */
	out = render2(&a, &b);
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_handshake_seconds_bucket{le=\"0.001\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_handshake_seconds_bucket{le=\"0.0025\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_handshake_seconds_bucket{le=\"0.005\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_handshake_seconds_bucket{le=\"10\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_handshake_seconds_bucket{le=\"+Inf\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_handshake_seconds_count 3\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_handshake_seconds_sum 60.003500\n"));
	free(out);
}
END_TEST

START_TEST(no_device_labels)
{
	static struct kg_metrics a, b;
	char *out;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	out = render2(&a, &b);
	ck_assert_ptr_null(strstr(out, "device="));
	/* every sample line belongs to a declared family */
	ck_assert_ptr_nonnull(strstr(out, "# TYPE ktlsgate_handshake_seconds histogram\n"));
	free(out);
}
END_TEST

Suite *kg_suite_metrics(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("render");

	tcase_add_test(tc, sums_across_workers);
	tcase_add_test(tc, histogram_cumulative);
	tcase_add_test(tc, no_device_labels);
	suite_add_tcase(s, tc);
	return s;
}
