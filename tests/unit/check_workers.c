/* SPDX-License-Identifier: BSD-2-Clause */
/* check_workers.c - the per-worker figures (issue 14): the accept imbalance and its
 * window (ops/balance.h, pure), worker structs on cache lines of their own, a worker's
 * stat and its thread's CPU clock (core/worker.h, worker_stats.c). */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/worker.h"
#include "ops/balance.h"
#include "testlib.h"

#define EPS 1e-9

START_TEST(imbalance_is_max_over_mean)
{
	static const uint64_t even[4] = { 100, 100, 100, 100 };
	static const uint64_t hot[4] = { 250, 50, 50, 50 };      /* 400 in all, mean 100 */
	static const uint64_t all_one[2] = { 200, 0 };

	ck_assert_double_eq_tol(kg_balance_imbalance(even, 4, 50), 1.0, EPS);
	ck_assert_double_eq_tol(kg_balance_imbalance(hot, 4, 50), 2.5, EPS);
	/* one worker took everything: n */
	ck_assert_double_eq_tol(kg_balance_imbalance(all_one, 2, 50), 2.0, EPS);
	/* one worker: always even */
	ck_assert_double_eq_tol(kg_balance_imbalance(hot, 1, 50), 1.0, EPS);
	ck_assert_double_eq_tol(kg_balance_imbalance(even, 0, 50), -1.0, EPS);
}
END_TEST

START_TEST(imbalance_needs_enough_accepts)
{
	/* 2 workers x 50: 100 needed; 99 is too few to say anything */
	static const uint64_t few[2] = { 99, 0 };
	static const uint64_t enough[2] = { 100, 0 };
	static const uint64_t idle[3] = { 0, 0, 0 };

	ck_assert_double_eq_tol(kg_balance_imbalance(few, 2, 50), -1.0, EPS);
	ck_assert_double_eq_tol(kg_balance_imbalance(enough, 2, 50), 2.0, EPS);
	ck_assert_double_eq_tol(kg_balance_imbalance(idle, 3, 50), -1.0, EPS);
	/* no minimum: an idle window is even, not a division by zero */
	ck_assert_double_eq_tol(kg_balance_imbalance(idle, 3, 0), 1.0, EPS);
}
END_TEST

/* The window: from the start until a snapshot a window old exists, then from the
 * older of the two kept snapshots; looks in between move nothing. */
START_TEST(window_rotates)
{
	static struct kg_balance b;
	uint64_t c[2], win = 0;
	const uint64_t t0 = 1000000, W = KG_BALANCE_WINDOW_MS;

	kg_balance_init(&b, 2, t0);
	/* 30 s in: 150 / 50 since the start */
	c[0] = 150; c[1] = 50;
	ck_assert_double_eq_tol(kg_balance_observe(&b, c, t0 + 30000, &win), 1.5, EPS);
	ck_assert_uint_eq(win, 30000);
	/* a window in: the first snapshot (150, 50) is taken; still from the start */
	c[0] = 200; c[1] = 200;
	ck_assert_double_eq_tol(kg_balance_observe(&b, c, t0 + W, &win), 1.0, EPS);
	ck_assert_uint_eq(win, W);
	/* looked at again soon: nothing rotates, still from the start */
	c[0] = 300; c[1] = 200;
	ck_assert_double_eq_tol(kg_balance_observe(&b, c, t0 + W + 5000, &win), 1.2, EPS);
	ck_assert_uint_eq(win, W + 5000);
	/* a window after that snapshot: now from it (200, 200): 300 and 0, all on one */
	c[0] = 500; c[1] = 200;
	ck_assert_double_eq_tol(kg_balance_observe(&b, c, t0 + 2 * W, &win), 2.0, EPS);
	ck_assert_uint_eq(win, W);
	/* quiet since: too few new accepts in the window (the last 2 minutes) to judge */
	c[0] = 520; c[1] = 200;
	kg_balance_observe(&b, c, t0 + 3 * W, &win);
	ck_assert_double_eq_tol(kg_balance_observe(&b, c, t0 + 4 * W, &win), -1.0, EPS);
	ck_assert_uint_eq(win, W);
}
END_TEST

START_TEST(window_after_a_long_gap)
{
	static struct kg_balance b;
	uint64_t c[2] = { 0, 0 }, win = 0;

	kg_balance_init(&b, 2, 0);
	kg_balance_observe(&b, c, 1000, &win);
	/* nobody looked for an hour: the window is that hour */
	c[0] = 1000; c[1] = 3000;
	ck_assert_double_eq_tol(kg_balance_observe(&b, c, 3600000, &win), 1.5, EPS);
	ck_assert_uint_eq(win, 3600000);
	/* a window later the hour's snapshot (1000, 3000) is the oldest kept */
	c[0] = 2000; c[1] = 4000;
	ck_assert_double_eq_tol(kg_balance_observe(&b, c, 3600000 + KG_BALANCE_WINDOW_MS, &win), 1.0, EPS);
	/* a counter below its snapshot counts as 0, not as 2^64 */
	c[0] = 10; c[1] = 4200;
	ck_assert_double_eq_tol(kg_balance_observe(&b, c, 3600000 + KG_BALANCE_WINDOW_MS + 10, &win),
				2.0, EPS);
	/* more workers than the table: clamped, never past its arrays */
	kg_balance_init(&b, KG_BALANCE_MAX_WORKERS + 10, 0);
	ck_assert_uint_eq(b.n, KG_BALANCE_MAX_WORKERS);
}
END_TEST

/* Each worker's counters start a cache line of their own, and no two workers of the
 * array share a line (the scrape reads them while their workers write). */
START_TEST(workers_on_their_own_lines)
{
	struct kg_worker *w = kg_workers_alloc(3);

	ck_assert_ptr_nonnull(w);
	ck_assert_uint_eq((uintptr_t)w % KG_CACHE_LINE, 0);
	ck_assert_uint_eq(sizeof(*w) % KG_CACHE_LINE, 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq((uintptr_t)&w[i].metrics % KG_CACHE_LINE, 0);
		ck_assert_uint_eq((uintptr_t)&w[i].cpu_clock % KG_CACHE_LINE, 0);
		ck_assert_int_eq(w[i].metrics.accepted, 0);   /* zeroed */
	}
	ck_assert_ptr_null(kg_workers_alloc(0));
	free(w);
}
END_TEST

/* kg_worker_stat() reads the worker's own counters: the totals the aggregate series
 * sum, live gauges netted over states and modes. */
START_TEST(stat_reads_the_counters)
{
	struct kg_worker *w = kg_workers_alloc(1);
	struct kg_worker_stat st;

	ck_assert_ptr_nonnull(w);
	w->idx = 0;
	kg_metric_add(&w->metrics.accepted, 12);
	kg_metric_add(&w->metrics.handshakes[KG_HS_OK], 9);
	kg_metric_add(&w->metrics.handshakes[KG_HS_FAILED], 2);
	kg_metric_add(&w->metrics.handshakes[KG_HS_TIMEOUT], 1);
	kg_metric_add(&w->metrics.bytes[KG_DIR_UP], 1000);
	kg_metric_add(&w->metrics.bytes[KG_DIR_DOWN], 70);
	kg_metric_gauge(&w->metrics.conns_by_state[KG_ST_RELAYING], 3);
	kg_metric_gauge(&w->metrics.conns_by_state[KG_ST_TLS_HANDSHAKE], 2);
	kg_metric_gauge(&w->metrics.sessions_by_mode[KG_MODE_KTLS_SPLICE], 2);
	kg_metric_gauge(&w->metrics.sessions_by_mode[KG_MODE_USERSPACE], 1);
	kg_worker_stat(w, &st);
	ck_assert_uint_eq(st.accepted, 12);
	ck_assert_uint_eq(st.handshakes[KG_HS_OK], 9);
	ck_assert_uint_eq(st.handshakes[KG_HS_FAILED], 2);
	ck_assert_uint_eq(st.handshakes[KG_HS_TIMEOUT], 1);
	ck_assert_uint_eq(st.bytes[KG_DIR_UP], 1000);
	ck_assert_uint_eq(st.bytes[KG_DIR_DOWN], 70);
	ck_assert_int_eq(st.connections, 5);
	ck_assert_int_eq(st.sessions, 3);
	/* no thread started: no clock, no made-up time */
	ck_assert_double_eq_tol(st.cpu_seconds, -1.0, EPS);
	free(w);
}
END_TEST

/* The CPU clock is the thread's own: it grows with work done on that thread. */
START_TEST(cpu_clock_grows_with_work)
{
	struct kg_worker *w = kg_workers_alloc(1);
	volatile uint64_t x = 0;
	double t0, t1;

	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(pthread_getcpuclockid(pthread_self(), &w->cpu_clock), 0);
	atomic_store(&w->cpu_clock_ok, true);
	t0 = kg_worker_cpu_seconds(w);
	ck_assert(t0 >= 0);
	for (uint64_t i = 0; i < 50000000; i++)
		x += i;
	t1 = kg_worker_cpu_seconds(w);
	ck_assert_msg(t1 > t0 + 0.001, "cpu %f -> %f after a busy loop", t0, t1);
	free(w);
}
END_TEST

Suite *kg_suite_workers(void)
{
	Suite *s = suite_create("workers");
	TCase *tc = tcase_create("balance");
	TCase *tw = tcase_create("stats");

	tcase_add_test(tc, imbalance_is_max_over_mean);
	tcase_add_test(tc, imbalance_needs_enough_accepts);
	tcase_add_test(tc, window_rotates);
	tcase_add_test(tc, window_after_a_long_gap);
	suite_add_tcase(s, tc);
	tcase_add_test(tw, workers_on_their_own_lines);
	tcase_add_test(tw, stat_reads_the_counters);
	tcase_add_test(tw, cpu_clock_grows_with_work);
	suite_add_tcase(s, tw);
	return s;
}
