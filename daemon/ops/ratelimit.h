/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ratelimit.h - a bounded per-key line limiter (the audit log's flood guard).
 *
 * At most `per_key` lines per key in a window of `interval_ms` that opens at the key's
 * first line, and at most `total` lines per window over all keys. What is held back is
 * counted against its key and reported once, when the key's window has ended (or its
 * slot is taken for another key), so the summaries add up to exactly what was
 * suppressed. The table is a fixed array: when it is full, a slot whose window ended
 * is reused first, else the one whose window opened first (its count is reported).
 *
 * Pure: the clock is an argument; no I/O, no allocation, no locks. Each worker owns
 * one, so nothing is shared between threads.
 */
#ifndef KTLSGATE_RATELIMIT_H
#define KTLSGATE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KG_RL_KEY_LEN 20     /* opaque key bytes, compared whole */
#define KG_RL_SLOTS 512      /* largest table */

struct kg_rl_key {
	uint8_t b[KG_RL_KEY_LEN];
};

struct kg_rl_conf {
	uint32_t per_key;        /* lines per key per window; 0: no limit at all */
	uint32_t total;          /* lines per window over all keys; 0: no overall cap */
	uint32_t interval_ms;    /* window length (>= 1) */
};

/* Lines held back for one key, over [start_ms, end_ms). */
struct kg_rl_report {
	struct kg_rl_key key;
	uint64_t suppressed;
	uint64_t start_ms, end_ms;
};

struct kg_rl_slot {
	struct kg_rl_key key;
	uint64_t start_ms;       /* window opened (monotonic ms) */
	uint64_t suppressed;     /* held back in this window */
	uint32_t lines;          /* written in this window */
	bool used;
};

struct kg_ratelimit {
	struct kg_rl_slot slot[KG_RL_SLOTS];
	size_t cap;              /* slots in use at most (<= KG_RL_SLOTS) */
	uint32_t interval_ms;    /* of the last check: what flush() measures windows with */
	uint64_t total_start_ms;
	uint32_t total_lines;
	uint64_t next_due_ms;    /* no window ends before this: flush() skips the scan */
};

/* cap: 1..KG_RL_SLOTS slots (clamped). */
void kg_rl_init(struct kg_ratelimit *rl, size_t cap);

/* May a line for key be written at now_ms? A held-back line is counted against the key.
 * If a report became due on the way (the key's previous window, or the slot taken for
 * it), *report is filled with report->suppressed > 0; else report->suppressed is 0. */
bool kg_rl_check(struct kg_ratelimit *rl, const struct kg_rl_conf *conf, const struct kg_rl_key *key,
		 uint64_t now_ms, struct kg_rl_report *report);

typedef void (*kg_rl_report_fn)(void *arg, const struct kg_rl_report *r);

/* Report every key whose window has ended with lines held back (all: every key with
 * lines held back, window ended or not: shutdown), and free the slots of ended windows.
 * Cheap when nothing is due. Returns the number of reports. */
size_t kg_rl_flush(struct kg_ratelimit *rl, uint64_t now_ms, bool all, kg_rl_report_fn fn, void *arg);

#endif
