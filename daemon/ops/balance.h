/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * balance.h - how evenly the kernel's SO_REUSEPORT steering (or the XDP gate's steering
 * program, edge/steer.h) spreads new connections over the workers: the accept
 * imbalance, max / mean of the accepts each worker took over a recent window. 1 is a
 * perfect spread; with n workers, n means one worker took everything. A hot worker
 * shows here before its devices feel it (ktlsgate_worker_accept_imbalance, the alert
 * KtlsgateWorkerImbalance: docs/monitoring.md).
 *
 * The window: two snapshots of the per-worker accept counters. The first is taken at
 * init (the daemon's start, all zero); an observation KG_BALANCE_WINDOW_MS or more
 * after the newest snapshot makes a new one and drops the oldest, and the imbalance is
 * computed from the oldest kept to now. Looked at every minute or more often (a
 * Prometheus scrape, `ktlsgate status`), the window spans the last 1 to 2 minutes;
 * looked at less often, the time since the previous look. No timer: nothing costs a
 * thing between looks.
 *
 * Pure: the clock and the counters are arguments; no I/O, no allocation, no locks (the
 * caller serialises: core/worker_stats.c keeps one under a mutex in struct kg_daemon).
 */
#ifndef KTLSGATE_BALANCE_H
#define KTLSGATE_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KG_BALANCE_MAX_WORKERS 256          /* main.c caps [daemon] workers there */
#define KG_BALANCE_WINDOW_MS 60000
/* Fewer accepts than this per worker on average in the window: not judged. Random
 * steering of m connections over n workers puts about m/n + sqrt(2 ln n * m/n) on the
 * busiest one: at 50 per worker that is 1.17 x the mean for 2 workers, 1.41 for 64, so
 * the alert (1.5, held for 15 minutes) is not reached by chance. */
#define KG_BALANCE_MIN_PER_WORKER 50

struct kg_balance {
	size_t n;                                   /* workers */
	uint64_t old_ms, new_ms;                    /* when the two snapshots were taken */
	uint64_t old_counts[KG_BALANCE_MAX_WORKERS];
	uint64_t new_counts[KG_BALANCE_MAX_WORKERS];
	bool have_new;                              /* the second snapshot exists */
};

/* n workers (1..KG_BALANCE_MAX_WORKERS; more are clamped), counters all 0 at now_ms. */
void kg_balance_init(struct kg_balance *b, size_t n, uint64_t now_ms);

/*
 * The imbalance of accept counts taken: max / mean of delta[0..n-1], or -1 when the
 * accepts are fewer than min_per_worker * n (too few to judge) or n is 0.
 */
double kg_balance_imbalance(const uint64_t *delta, size_t n, uint64_t min_per_worker);

/*
 * Look at the cumulative per-worker accept counters (b->n of them) at now_ms: rotate
 * the window if due, and return the imbalance over it (kg_balance_imbalance with
 * KG_BALANCE_MIN_PER_WORKER), -1 when not judged. *window_ms (may be NULL): the
 * window's length. A counter below its snapshot (never, for the daemon's monotonic
 * counters) counts as 0.
 */
double kg_balance_observe(struct kg_balance *b, const uint64_t *counts, uint64_t now_ms,
			  uint64_t *window_ms);

#endif
