/* SPDX-License-Identifier: BSD-2-Clause */
/* srclimit.c - per-source pending caps and token buckets (contract in srclimit.h). */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/srclimit.h"

#define PROBE 16            /* slots looked at per source: bounds the work per call */
#define MILLI 1000u         /* tokens are kept in thousandths: integer refill per ms */

struct slot {
	struct kg_srckey key;
	bool used;
	uint32_t pending;
	uint64_t tokens;        /* thousandths of a connection */
	uint64_t last_ms;       /* last refill */
};

struct kg_srclimit {
	size_t mask;
	size_t used;
	uint64_t seed;
	struct slot *slots;
};

struct kg_srclimit *kg_srclimit_new(size_t capacity, uint64_t seed)
{
	struct kg_srclimit *l;
	size_t cap = PROBE;

	if (capacity == 0 || capacity > ((size_t)1 << 24))
		return NULL;
	while (cap < capacity)
		cap <<= 1;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	l->slots = calloc(cap, sizeof(*l->slots));
	if (l->slots == NULL) {
		free(l);
		return NULL;
	}
	l->mask = cap - 1;
	l->seed = seed;
	return l;
}

void kg_srclimit_free(struct kg_srclimit *l)
{
	if (l == NULL)
		return;
	free(l->slots);
	free(l);
}

static void mask_bits(uint8_t a[16], unsigned keep)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned lo = i * 8;

		if (keep >= lo + 8)
			continue;
		a[i] = keep <= lo ? 0 : (uint8_t)(a[i] & (0xff00u >> (keep - lo)));
	}
}

int kg_srclimit_key(const struct sockaddr *sa, socklen_t len, unsigned v4_prefix,
		    unsigned v6_prefix, struct kg_srckey *out)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(out, 0, sizeof(*out));
	if (sa == NULL)
		return -1;
	v4_prefix = v4_prefix < 1 ? 1 : v4_prefix > 32 ? 32 : v4_prefix;
	v6_prefix = v6_prefix < 1 ? 1 : v6_prefix > 128 ? 128 : v6_prefix;
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		memcpy(out->a, mapped, 12);
		memcpy(&out->a[12], &((const struct sockaddr_in *)sa)->sin_addr, 4);
		mask_bits(out->a, 96 + v4_prefix);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		memcpy(out->a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		/* a v4 client on a dual-stack socket is that v4 address */
		mask_bits(out->a, memcmp(out->a, mapped, 12) == 0 ? 96 + v4_prefix : v6_prefix);
		return 0;
	}
	return -1;
}

static uint64_t hash(uint64_t seed, const uint8_t a[16])
{
	uint64_t h = 0xcbf29ce484222325ull ^ seed;

	for (int i = 0; i < 16; i++) {
		h ^= a[i];
		h *= 0x100000001b3ull;
	}
	return h ^ (h >> 29);
}

/* Refill s's bucket up to now; a bucket never holds more than its burst. */
static void refill(struct slot *s, const struct kg_srclimit_limits *lim, uint64_t now)
{
	uint64_t full = (uint64_t)lim->burst * MILLI;

	if (lim->rate != 0 && now > s->last_ms) {
		uint64_t dt = now - s->last_ms;

		/* rate per second is rate thousandths per ms; a long gap just fills it */
		if (dt >= full / lim->rate + 1)
			s->tokens = full;
		else
			s->tokens += dt * lim->rate;
	}
	if (now > s->last_ms)
		s->last_ms = now;
	if (s->tokens > full)   /* full, or the burst was lowered by a reload */
		s->tokens = full;
}

/* Nothing pending and a full bucket: forgetting it changes no decision. */
static bool idle(const struct slot *s, const struct kg_srclimit_limits *lim, uint64_t now)
{
	uint64_t need;

	if (s->pending != 0)
		return false;
	if (lim->rate == 0)
		return true;
	need = (uint64_t)lim->burst * MILLI;
	if (s->tokens >= need)
		return true;
	return now > s->last_ms && (now - s->last_ms) >= (need - s->tokens + lim->rate - 1) / lim->rate;
}

static struct slot *lookup(const struct kg_srclimit *l, const struct kg_srckey *k)
{
	size_t i0 = (size_t)hash(l->seed, k->a);

	for (size_t j = 0; j < PROBE; j++) {
		struct slot *s = &l->slots[(i0 + j) & l->mask];

		if (s->used && memcmp(&s->key, k, sizeof(*k)) == 0)
			return s;
	}
	return NULL;
}

enum kg_src_verdict kg_srclimit_admit(struct kg_srclimit *l, const struct kg_srclimit_limits *lim,
				      const struct kg_srckey *k, uint64_t now_ms)
{
	size_t i0 = (size_t)hash(l->seed, k->a);
	struct slot *s = NULL, *spare = NULL, *oldest = NULL;

	for (size_t j = 0; j < PROBE && s == NULL; j++) {
		struct slot *t = &l->slots[(i0 + j) & l->mask];

		if (t->used && memcmp(&t->key, k, sizeof(*k)) == 0)
			s = t;
		else if (spare == NULL && (!t->used || idle(t, lim, now_ms)))
			spare = t;
		else if (t->used && t->pending == 0 && (oldest == NULL || t->last_ms < oldest->last_ms))
			oldest = t;
	}
	if (s == NULL) {
		/* A new source: a free or idle slot, else the least recently refilled one
		 * without pending connections (its bucket is lost: fail open). */
		if (spare == NULL)
			spare = oldest;
		if (spare == NULL)
			return KG_SRC_UNTRACKED;
		if (!spare->used)
			l->used++;
		memset(spare, 0, sizeof(*spare));
		spare->key = *k;
		spare->used = true;
		spare->tokens = (uint64_t)lim->burst * MILLI;
		spare->last_ms = now_ms;
		s = spare;
	}
	refill(s, lim, now_ms);
	if (lim->max_pending != 0 && s->pending >= lim->max_pending)
		return KG_SRC_PENDING;
	if (lim->rate != 0) {
		if (s->tokens < MILLI)
			return KG_SRC_RATE;
		s->tokens -= MILLI;
	}
	if (s->pending < UINT32_MAX)
		s->pending++;
	return KG_SRC_OK;
}

void kg_srclimit_release(struct kg_srclimit *l, const struct kg_srckey *k)
{
	struct slot *s = lookup(l, k);

	if (s != NULL && s->pending > 0)
		s->pending--;
}

unsigned kg_srclimit_pending(const struct kg_srclimit *l, const struct kg_srckey *k)
{
	const struct slot *s = lookup(l, k);

	return s ? s->pending : 0;
}

size_t kg_srclimit_count(const struct kg_srclimit *l)
{
	return l->used;
}

size_t kg_srclimit_capacity(const struct kg_srclimit *l)
{
	return l->mask + 1;
}
