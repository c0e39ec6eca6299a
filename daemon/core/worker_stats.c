/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * worker_stats.c - per-worker figures for /metrics and `ktlsgate status`, read from the
 * scraping thread: each worker's own counters (relaxed loads, the same ones the
 * aggregate series sum), its thread's CPU clock, and the accept imbalance over the
 * workers (ops/balance.h). Nothing here runs on a worker: a hot worker is measured at
 * no cost to it.
 */
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "core/worker.h"
#include "ktlsgate/clock.h"

struct kg_worker *kg_workers_alloc(unsigned n)
{
	size_t size = (size_t)n * sizeof(struct kg_worker);   /* a multiple of the alignment */
	struct kg_worker *w;

	if (n == 0 || size / n != sizeof(struct kg_worker))
		return NULL;
	w = aligned_alloc(_Alignof(struct kg_worker), size);
	if (w != NULL)
		memset(w, 0, size);
	return w;
}

double kg_worker_cpu_seconds(const struct kg_worker *w)
{
	struct timespec ts;

	/* A joined thread's clock fails (EINVAL): -1, never another thread's time, since
	 * the clock names the thread by its tid and only this process's threads count. */
	if (!atomic_load_explicit(&w->cpu_clock_ok, memory_order_acquire) ||
	    clock_gettime(w->cpu_clock, &ts) != 0)
		return -1;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t ld(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static int64_t ldi(const _Atomic int64_t *g)
{
	return atomic_load_explicit(g, memory_order_relaxed);
}

void kg_worker_stat(const struct kg_worker *w, struct kg_worker_stat *out)
{
	const struct kg_metrics *m = &w->metrics;

	memset(out, 0, sizeof(*out));
	out->worker = w->idx;
	out->accepted = ld(&m->accepted);
	for (size_t r = 0; r < KG_HS_MAX; r++)
		out->handshakes[r] = ld(&m->handshakes[r]);
	for (size_t d = 0; d < KG_DIR_MAX; d++)
		out->bytes[d] = ld(&m->bytes[d]);
	/* conn.c keeps the "closed" slot at a net 0 (a close takes back what it put),
	 * so the sum over the states is what is live */
	for (size_t s = 0; s < KG_ST_MAX && s < KG_CONN_STATES_MAX; s++)
		out->connections += ldi(&m->conns_by_state[s]);
	for (size_t md = 0; md < KG_MODE_MAX; md++)
		out->sessions += ldi(&m->sessions_by_mode[md]);
	out->cpu_seconds = kg_worker_cpu_seconds(w);
}

void kg_workers_balance_init(struct kg_daemon *d)
{
	pthread_mutex_init(&d->balance_lock, NULL);
	kg_balance_init(&d->balance, d->n_workers, kg_now_ms());
}

void kg_workers_balance_fini(struct kg_daemon *d)
{
	pthread_mutex_destroy(&d->balance_lock);
}

double kg_workers_accept_imbalance(struct kg_daemon *d, uint64_t *window_ms)
{
	uint64_t counts[KG_BALANCE_MAX_WORKERS];
	double v;

	pthread_mutex_lock(&d->balance_lock);
	/* (a worker that failed to start takes nothing: 0) */
	for (size_t i = 0; i < d->balance.n; i++)
		counts[i] = i < d->n_workers ? ld(&d->workers[i].metrics.accepted) : 0;
	v = kg_balance_observe(&d->balance, counts, kg_now_ms(), window_ms);
	pthread_mutex_unlock(&d->balance_lock);
	return v;
}
