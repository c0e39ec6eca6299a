/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ratelimit.c - fixed windows per key in a small fixed table (see ratelimit.h). A
 * linear scan is fine at this size: it runs only for lines that are limited (refusals
 * of unauthenticated peers), and costs less than formatting the JSON line it saves.
 */
#include <string.h>

#include "ops/ratelimit.h"

void kg_rl_init(struct kg_ratelimit *rl, size_t cap)
{
	memset(rl, 0, sizeof(*rl));
	rl->cap = cap == 0 ? 1 : cap > KG_RL_SLOTS ? KG_RL_SLOTS : cap;
	rl->interval_ms = 1000;
}

static bool window_over(const struct kg_ratelimit *rl, const struct kg_rl_slot *s, uint64_t now)
{
	return now >= s->start_ms + rl->interval_ms;
}

static void take_report(const struct kg_ratelimit *rl, struct kg_rl_slot *s, uint64_t now,
			struct kg_rl_report *out)
{
	uint64_t end = s->start_ms + rl->interval_ms;

	out->key = s->key;
	out->suppressed = s->suppressed;
	out->start_ms = s->start_ms;
	out->end_ms = end < now ? end : now;
	s->suppressed = 0;
}

static void open_window(struct kg_ratelimit *rl, struct kg_rl_slot *s, const struct kg_rl_key *key,
			uint64_t now)
{
	s->key = *key;
	s->start_ms = now;
	s->lines = 0;
	s->suppressed = 0;
	s->used = true;
	if (rl->next_due_ms == 0 || now + rl->interval_ms < rl->next_due_ms)
		rl->next_due_ms = now + rl->interval_ms;
}

/* The key's slot, or one made free for it (a report for what it held may be due). */
static struct kg_rl_slot *slot_for(struct kg_ratelimit *rl, const struct kg_rl_key *key, uint64_t now,
				   struct kg_rl_report *report)
{
	struct kg_rl_slot *free_slot = NULL, *ended = NULL, *oldest = NULL, *s;

	for (size_t i = 0; i < rl->cap; i++) {
		s = &rl->slot[i];
		if (!s->used) {
			if (free_slot == NULL)
				free_slot = s;
			continue;
		}
		if (memcmp(s->key.b, key->b, sizeof(key->b)) == 0) {
			if (window_over(rl, s, now)) {
				if (s->suppressed > 0)
					take_report(rl, s, now, report);
				open_window(rl, s, key, now);
			}
			return s;
		}
		if (ended == NULL && window_over(rl, s, now))
			ended = s;
		if (oldest == NULL || s->start_ms < oldest->start_ms)
			oldest = s;
	}
	s = free_slot ? free_slot : ended ? ended : oldest;
	if (s == NULL)          /* cap >= 1 (clamped at init): every slot is free or used */
		s = &rl->slot[0];
	if (s->used && s->suppressed > 0)
		take_report(rl, s, now, report);
	open_window(rl, s, key, now);
	return s;
}

bool kg_rl_check(struct kg_ratelimit *rl, const struct kg_rl_conf *conf, const struct kg_rl_key *key,
		 uint64_t now_ms, struct kg_rl_report *report)
{
	struct kg_rl_slot *s;

	report->suppressed = 0;
	if (conf->per_key == 0)
		return true;
	rl->interval_ms = conf->interval_ms ? conf->interval_ms : 1;
	if (now_ms >= rl->total_start_ms + rl->interval_ms || rl->total_lines == 0) {
		rl->total_start_ms = now_ms;
		rl->total_lines = 0;
	}
	s = slot_for(rl, key, now_ms, report);
	if (s->lines < conf->per_key && (conf->total == 0 || rl->total_lines < conf->total)) {
		s->lines++;
		rl->total_lines++;
		return true;
	}
	s->suppressed++;
	return false;
}

size_t kg_rl_flush(struct kg_ratelimit *rl, uint64_t now_ms, bool all, kg_rl_report_fn fn, void *arg)
{
	struct kg_rl_report rep;
	uint64_t next = 0;
	size_t n = 0;

	if (!all && (rl->next_due_ms == 0 || now_ms < rl->next_due_ms))
		return 0;
	for (size_t i = 0; i < rl->cap; i++) {
		struct kg_rl_slot *s = &rl->slot[i];
		bool over;

		if (!s->used)
			continue;
		over = window_over(rl, s, now_ms);
		if ((over || all) && s->suppressed > 0) {
			take_report(rl, s, now_ms, &rep);
			fn(arg, &rep);
			n++;
		}
		if (over) {
			s->used = false;
			continue;
		}
		if (next == 0 || s->start_ms + rl->interval_ms < next)
			next = s->start_ms + rl->interval_ms;
	}
	rl->next_due_ms = next;
	return n;
}
