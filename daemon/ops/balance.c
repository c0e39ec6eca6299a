/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * balance.c - the accept imbalance over the workers (balance.h): two snapshots of the
 * per-worker accept counters make the window, max / mean over it is the figure.
 */
#include <string.h>

#include "ops/balance.h"

void kg_balance_init(struct kg_balance *b, size_t n, uint64_t now_ms)
{
	memset(b, 0, sizeof(*b));
	b->n = n > KG_BALANCE_MAX_WORKERS ? KG_BALANCE_MAX_WORKERS : n;
	b->old_ms = now_ms;
}

double kg_balance_imbalance(const uint64_t *delta, size_t n, uint64_t min_per_worker)
{
	uint64_t sum = 0, max = 0;

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		sum += delta[i];
		if (delta[i] > max)
			max = delta[i];
	}
	/* sum > 0 here unless min_per_worker is 0: then an idle window is balanced */
	if (sum < min_per_worker * n)
		return -1;
	if (sum == 0)
		return 1;
	return (double)max * (double)n / (double)sum;
}

double kg_balance_observe(struct kg_balance *b, const uint64_t *counts, uint64_t now_ms,
			  uint64_t *window_ms)
{
	uint64_t delta[KG_BALANCE_MAX_WORKERS];
	const uint64_t *from;
	uint64_t from_ms, newest_ms = b->have_new ? b->new_ms : b->old_ms;

	/* A snapshot a window old (or older) ages out: the newest becomes the oldest, now
	 * the newest. Before the second exists, the start's stays the oldest. */
	if (now_ms >= newest_ms + KG_BALANCE_WINDOW_MS) {
		if (b->have_new) {
			memcpy(b->old_counts, b->new_counts, b->n * sizeof(b->old_counts[0]));
			b->old_ms = b->new_ms;
		}
		memcpy(b->new_counts, counts, b->n * sizeof(b->new_counts[0]));
		b->new_ms = now_ms;
		b->have_new = true;
	}
	from = b->old_counts;
	from_ms = b->old_ms;
	for (size_t i = 0; i < b->n; i++)
		delta[i] = counts[i] > from[i] ? counts[i] - from[i] : 0;
	if (window_ms != NULL)
		*window_ms = now_ms > from_ms ? now_ms - from_ms : 0;
	return kg_balance_imbalance(delta, b->n, KG_BALANCE_MIN_PER_WORKER);
}
