/* SPDX-License-Identifier: BSD-2-Clause */
/* check_metrics.c - Prometheus rendering: sums across workers, labels, histogram. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ops/metrics.h"
#include "testlib.h"

static const char *const names[] = { "accepted", "tls_handshake", "relaying", "closed" };

static int open_file(const char *p)
{
	return open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
}

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

/* CONNECT credential checks (issue 15): two workers' verdicts summed by kind and
 * outcome, the pool's and the limiter's facts as given. */
START_TEST(auth_series)
{
	static struct kg_metrics a, b;
	struct kg_metrics *per[2] = { &a, &b };
	struct kg_metrics_info info = { .state_names = names, .n_states = 4, .workers = 2,
					.open_fds = -1, .max_fds = -1,
					.auth = { .kdf_queued = 3, .kdf_running = 1, .kdf_rejected = 5,
						  .kdf_completed = 11, .kdf_cancelled = 2,
						  .kdf_ns = 1500000000, .limited = 9,
						  .limiter_evictions = 4, .limiter_entries = 17 } };
	char *out;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	kg_metric_add(&a.auth_attempts[0][KG_AUTH_OUTCOME_OK], 2);
	kg_metric_add(&b.auth_attempts[0][KG_AUTH_OUTCOME_OK], 3);
	kg_metric_add(&b.auth_attempts[2][KG_AUTH_OUTCOME_OVERLOAD], 1);
	kg_metric_add(&a.auth_attempts[1][KG_AUTH_OUTCOME_RATE_LIMITED], 6);
	out = kg_metrics_render(per, 2, &info, NULL);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_attempts_total{kind=\"sas\",result=\"ok\"} 5\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_attempts_total{kind=\"sas\",result=\"refused\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_attempts_total{kind=\"token\",result=\"rate_limited\"} 6\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_attempts_total{kind=\"basic\",result=\"overload\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "# TYPE ktlsgate_auth_kdf_queue gauge\nktlsgate_auth_kdf_queue 3\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_kdf_running 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_kdf_jobs_total{result=\"completed\"} 11\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_kdf_jobs_total{result=\"cancelled\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_kdf_jobs_total{result=\"rejected\"} 5\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_kdf_seconds_total 1.500000\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_rate_limited_total 9\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_limiter_entries 17\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_auth_limiter_evictions_total 4\n"));
	free(out);
}
END_TEST

/* The facts main.c gathers at scrape time: certificate, TPM, writer, fds. */
START_TEST(info_series)
{
	static struct kg_metrics a;
	struct kg_metrics *per[1] = { &a };
	struct kg_metrics_info info = { .state_names = names, .n_states = 4, .workers = 1,
					.registry_queue = 7, .registry_last_commit = 1700000123,
					.server_cert_not_after = 1900000000,
					.tpm_errors = { [KG_TPM_OP_SIGN] = 4, [KG_TPM_OP_LOAD] = 1 },
					.open_fds = 42, .max_fds = 1024 };
	char *out;

	memset(&a, 0, sizeof(a));
	out = kg_metrics_render(per, 1, &info, NULL);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_registry_writer_queue 7\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_registry_writer_last_commit_timestamp_seconds 1700000123\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_server_cert_not_after_timestamp_seconds 1900000000\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_tpm_errors_total{kind=\"sign\"} 4\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_tpm_errors_total{kind=\"load\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_tpm_errors_total{kind=\"connect\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_tpm_errors_total{kind=\"timeout\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_tpm_errors_total{kind=\"queue_full\"} 0\n"));
	/* no TPM signer: no signer series */
	ck_assert_ptr_null(strstr(out, "ktlsgate_tpm_up"));
	ck_assert_ptr_nonnull(strstr(out, "# TYPE process_open_fds gauge\nprocess_open_fds 42\n"));
	ck_assert_ptr_nonnull(strstr(out, "# TYPE process_max_fds gauge\nprocess_max_fds 1024\n"));
	free(out);
	/* unknown: no sample (a 0 would read as "expired" / "no fds") */
	info.server_cert_not_after = 0;
	info.open_fds = -1;
	info.max_fds = -1;
	out = kg_metrics_render(per, 1, &info, NULL);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(strstr(out, "# TYPE ktlsgate_server_cert_not_after_timestamp_seconds gauge\n# HELP"));
	ck_assert_ptr_null(strstr(out, "process_open_fds"));
	ck_assert_ptr_null(strstr(out, "process_max_fds"));
	free(out);
}
END_TEST

/* The TPM signer's series (issue 13), present only with a signer. */
START_TEST(tpm_signer_series)
{
	static struct kg_metrics a;
	struct kg_metrics *per[1] = { &a };
	struct kg_metrics_info info = { .state_names = names, .n_states = 4, .workers = 1,
					.tpm = { .present = true, .up = false, .queue = 3,
						 .sign_count = 5, .sign_sum = 0.25,
						 .sign_buckets = { 1, 2, 2, 2, 4, 5, 5, 5, 5, 5 } } };
	char *out;

	memset(&a, 0, sizeof(a));
	out = kg_metrics_render(per, 1, &info, NULL);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(strstr(out, "# TYPE ktlsgate_tpm_up gauge\nktlsgate_tpm_up 0\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_tpm_sign_queue 3\n"));
	ck_assert_ptr_nonnull(strstr(out, "# TYPE ktlsgate_tpm_sign_seconds histogram\n"
					  "ktlsgate_tpm_sign_seconds_bucket{le=\"0.002\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_tpm_sign_seconds_bucket{le=\"0.05\"} 4\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_tpm_sign_seconds_bucket{le=\"+Inf\"} 5\n"
					  "ktlsgate_tpm_sign_seconds_sum 0.250000\n"
					  "ktlsgate_tpm_sign_seconds_count 5\n"));
	free(out);
}
END_TEST

static int count_of(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Per-backend connects summed over workers; up follows the most recent outcome across
 * workers; a slot past the table renders once as "_other"; no series before a try. */
START_TEST(backend_series)
{
	static struct kg_metrics a, b;
	struct kg_metrics *per[2] = { &a, &b };
	struct kg_backend_conf be[4] = {
		{ .name = "main", .metrics_slot = 0 },
		{ .name = "spare", .metrics_slot = 3 },
		{ .name = "late1", .metrics_slot = KG_BACKEND_SLOT_OTHER },
		{ .name = "late2", .metrics_slot = KG_BACKEND_SLOT_OTHER },
	};
	struct kg_metrics_info info = { .state_names = names, .n_states = 4, .workers = 2,
					.backends = be, .n_backends = 4 };
	char *out;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	kg_metrics_backend_connect(&a, 0, KG_BACKEND_OK, 1000);
	kg_metrics_backend_connect(&b, 0, KG_BACKEND_OK, 1500);
	kg_metrics_backend_connect(&b, 0, KG_BACKEND_FAILED, 2000);  /* latest: down */
	kg_metrics_backend_connect(&a, KG_BACKEND_SLOTS + 5, KG_BACKEND_FAILED, 10); /* clamped */
	kg_metrics_backend_connect(&b, KG_BACKEND_SLOT_OTHER, KG_BACKEND_OK, 20);
	out = kg_metrics_render(per, 2, &info, NULL);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_backend_connects_total{backend=\"main\",result=\"ok\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_backend_connects_total{backend=\"main\",result=\"failed\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_backend_connects_total{backend=\"spare\",result=\"ok\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_backend_up{backend=\"main\"} 0\n"));
	ck_assert_ptr_null(strstr(out, "ktlsgate_backend_up{backend=\"spare\"}"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_backend_connects_total{backend=\"_other\",result=\"failed\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_backend_up{backend=\"_other\"} 1\n"));
	ck_assert_ptr_null(strstr(out, "late1"));
	ck_assert_ptr_null(strstr(out, "late2"));
	ck_assert_int_eq(count_of(out, "backend=\"_other\",result=\"ok\""), 1);
	ck_assert_int_eq(count_of(out, "ktlsgate_backend_up{backend=\"_other\"}"), 1);
	free(out);
	/* back up: a later success */
	kg_metrics_backend_connect(&a, 0, KG_BACKEND_OK, 2001);
	out = kg_metrics_render(per, 2, &info, NULL);
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_backend_up{backend=\"main\"} 1\n"));
	free(out);
}
END_TEST

/* The key source is one series per source, 1 on the one in force; the kTLS receive key
 * is counted by who installed it. */
START_TEST(key_source_and_rx_by)
{
	static struct kg_metrics a;
	struct kg_metrics *per[1] = { &a };
	struct kg_metrics_info info = { .state_names = names, .n_states = 4, .workers = 1,
					.key_source = KG_KEY_TPM_FALLBACK };
	char *out;

	memset(&a, 0, sizeof(a));
	kg_metric_add(&a.ktls_rx_installed[KG_KTLS_RX_BY_DAEMON], 3);
	out = kg_metrics_render(per, 1, &info, NULL);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_server_key_source{source=\"tpm_fallback\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_server_key_source{source=\"tpm\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_server_key_source{source=\"file\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_ktls_rx_installed_total{by=\"daemon\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nktlsgate_ktls_rx_installed_total{by=\"openssl\"} 0\n"));
	/* no backends configured: the families' headers only */
	ck_assert_ptr_nonnull(strstr(out, "# TYPE ktlsgate_backend_connects_total counter\n# HELP ktlsgate_backend_up"));
	free(out);
}
END_TEST

/* readdir count of a directory, independent of kg_metrics_fd_usage() */
static int64_t count_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int64_t n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

START_TEST(fd_usage)
{
	char dir[PATH_MAX], p[PATH_MAX + 16];
	struct rlimit rl;
	int64_t open = 0, max = 0, want;
	int fd;

	/* not procfs: one readdir pass counts the entries */
	kg_test_tmpdir(dir, sizeof(dir));
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%d", dir, i);
		ck_assert_int_ge(fd = open_file(p), 0);
		close(fd);
	}
	ck_assert_int_eq(kg_metrics_fd_usage(dir, &open, &max), 0);
	ck_assert_int_eq(open, 3);
	kg_test_rmdir(dir);
	ck_assert_int_eq(kg_metrics_fd_usage(dir, &open, &max), -1);
	ck_assert_int_eq(open, -1);

	/* /proc/self/fd: the count a readdir sees, minus the readdir's own fd; one more
	 * open fd is one more */
	want = count_entries("/proc/self/fd") - 1;
	ck_assert_int_eq(kg_metrics_fd_usage("/proc/self/fd", &open, &max), 0);
	ck_assert_int_eq(open, want);
	fd = open_file("/dev/null");
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(kg_metrics_fd_usage("/proc/self/fd", &open, &max), 0);
	ck_assert_int_eq(open, want + 1);
	close(fd);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	ck_assert_int_eq(max, rl.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_cur);
	ck_assert_int_gt(max, open);
}
END_TEST

/* Issue 14: each worker's counters once more under worker="i" (the writer's entry
 * after the workers is no worker), adding up to the aggregate; CPU seconds as given,
 * absent where unknown; the imbalance only when judged. */
START_TEST(per_worker_series)
{
	static struct kg_metrics a, b, writer;
	struct kg_metrics *per[3] = { &a, &b, &writer };
	const double cpu[2] = { 1.5, -1 };
	struct kg_metrics_info info = { .state_names = names, .n_states = 4, .workers = 2,
					.open_fds = -1, .max_fds = -1, .worker_cpu_seconds = cpu,
					.accept_imbalance = 1.25 };
	char *out;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&writer, 0, sizeof(writer));
	kg_metric_add(&a.accepted, 7);
	kg_metric_add(&b.accepted, 3);
	kg_metric_add(&a.handshakes[KG_HS_OK], 5);
	kg_metric_add(&b.handshakes[KG_HS_FAILED], 2);
	kg_metric_add(&b.handshakes[KG_HS_TIMEOUT], 1);
	kg_metric_add(&a.bytes[KG_DIR_UP], 100);
	kg_metric_add(&b.bytes[KG_DIR_UP], 23);
	kg_metric_add(&b.bytes[KG_DIR_DOWN], 9);
	kg_metric_gauge(&a.conns_by_state[1], 2);     /* tls_handshake */
	kg_metric_gauge(&a.conns_by_state[2], 1);     /* relaying */
	kg_metric_gauge(&b.conns_by_state[2], 4);
	kg_metric_gauge(&b.conns_by_state[3], 0);     /* closed: never counted */
	kg_metric_gauge(&a.sessions_by_mode[KG_MODE_KTLS_SPLICE], 1);
	kg_metric_gauge(&b.sessions_by_mode[KG_MODE_USERSPACE], 3);
	kg_metric_gauge(&b.sessions_by_mode[KG_MODE_SOCKMAP], 1);
	kg_metric_add(&writer.decisions_allow[KG_REASON_OK], 4);
	out = kg_metrics_render(per, 3, &info, NULL);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_accepted_total 10\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_accepted_total{worker=\"0\"} 7\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_accepted_total{worker=\"1\"} 3\n"));
	ck_assert_ptr_null(strstr(out, "worker=\"2\""));   /* the writer is not a worker */
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_handshakes_total{worker=\"0\",result=\"ok\"} 5\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_handshakes_total{worker=\"1\",result=\"failed\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_handshakes_total{worker=\"1\",result=\"timeout\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_bytes_relayed_total{worker=\"0\",direction=\"device_to_broker\"} 100\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_bytes_relayed_total{worker=\"1\",direction=\"device_to_broker\"} 23\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_bytes_relayed_total{worker=\"1\",direction=\"broker_to_device\"} 9\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_connections{worker=\"0\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_connections{worker=\"1\"} 4\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_sessions{worker=\"0\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_sessions{worker=\"1\"} 4\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_cpu_seconds_total{worker=\"0\"} 1.500000\n"));
	ck_assert_ptr_null(strstr(out, "ktlsgate_worker_cpu_seconds_total{worker=\"1\"}"));
	ck_assert_ptr_nonnull(strstr(out, "# TYPE ktlsgate_worker_cpu_seconds_total counter\n"));
	ck_assert_ptr_nonnull(strstr(out, "ktlsgate_worker_accept_imbalance 1.2500\n"));
	free(out);
	/* not judged: the family is declared, no sample */
	info.accept_imbalance = -1;
	info.worker_cpu_seconds = NULL;
	out = kg_metrics_render(per, 3, &info, NULL);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(strstr(out, "# TYPE ktlsgate_worker_accept_imbalance gauge\n"));
	ck_assert_ptr_null(strstr(out, "\nktlsgate_worker_accept_imbalance "));
	ck_assert_ptr_null(strstr(out, "ktlsgate_worker_cpu_seconds_total{"));
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
	tcase_add_test(tc, info_series);
	tcase_add_test(tc, tpm_signer_series);
	tcase_add_test(tc, auth_series);
	tcase_add_test(tc, fd_usage);
	tcase_add_test(tc, backend_series);
	tcase_add_test(tc, key_source_and_rx_by);
	tcase_add_test(tc, per_worker_series);
	suite_add_tcase(s, tc);
	return s;
}
