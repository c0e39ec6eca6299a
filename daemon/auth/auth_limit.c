/* SPDX-License-Identifier: BSD-2-Clause */
/* auth_limit.c - the shared brute-force limiter (contract in auth_limit.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "auth/auth_limit.h"

#define WAYS 8

struct slot {
	uint64_t tat;                    /* 0: free */
	uint8_t scope;
	char key[KG_AUTH_LIMIT_KEY_MAX + 1];
};

struct kg_auth_limit {
	pthread_mutex_t mu;
	uint64_t burst, refill;
	uint64_t seed;
	size_t nsets;
	struct kg_auth_limit_stats st;
	struct slot *slots;              /* nsets * WAYS */
};

struct kg_auth_limit *kg_auth_limit_new(unsigned burst, unsigned refill_ms, unsigned entries)
{
	struct kg_auth_limit *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	if (entries < 64)
		entries = 64;
	l->nsets = (entries + WAYS - 1) / WAYS;
	l->slots = calloc(l->nsets * WAYS, sizeof(*l->slots));
	if (l->slots == NULL)
		goto fail;
	/* Without randomness the table still works; only its sets become predictable. */
	if (getrandom(&l->seed, sizeof(l->seed), GRND_NONBLOCK) != (ssize_t)sizeof(l->seed))
		l->seed = (uint64_t)(uintptr_t)l ^ 0x9e3779b97f4a7c15ull;
	if (pthread_mutex_init(&l->mu, NULL) != 0)
		goto fail;
	kg_auth_limit_set(l, burst, refill_ms);
	return l;
fail:
	free(l->slots);
	free(l);
	return NULL;
}

void kg_auth_limit_free(struct kg_auth_limit *l)
{
	if (l == NULL)
		return;
	pthread_mutex_destroy(&l->mu);
	free(l->slots);
	free(l);
}

void kg_auth_limit_set(struct kg_auth_limit *l, unsigned burst, unsigned refill_ms)
{
	pthread_mutex_lock(&l->mu);
	l->burst = burst ? burst : 1;
	l->refill = refill_ms ? refill_ms : 1;
	pthread_mutex_unlock(&l->mu);
}

/* FNV-1a over the seed, the scope and the key, then a final mix (splitmix64's): the set
 * must not be chosen by whoever picks the key. */
static size_t set_of(const struct kg_auth_limit *l, uint8_t scope, const char *key)
{
	uint64_t h = 0xcbf29ce484222325ull ^ l->seed;

	h = (h ^ scope) * 0x100000001b3ull;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 0x100000001b3ull;
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return (size_t)(h % l->nsets);
}

/* The slot of (scope, key), or NULL; with `make`, a slot taken for it (free, full
 * again, or evicted: the one with the smallest tat). Under l->mu. */
static struct slot *find(struct kg_auth_limit *l, uint8_t scope, const char *key, uint64_t now,
			 bool make)
{
	struct slot *set = &l->slots[set_of(l, scope, key) * WAYS], *victim = NULL;

	for (int i = 0; i < WAYS; i++)
		if (set[i].tat != 0 && set[i].scope == scope && strcmp(set[i].key, key) == 0)
			return &set[i];
	if (!make)
		return NULL;
	for (int i = 0; i < WAYS; i++) {
		if (set[i].tat == 0 || set[i].tat <= now) {
			/* free, or its bucket is full again: nothing is forgotten */
			if (set[i].tat != 0)
				l->st.entries--;
			victim = &set[i];
			break;
		}
		if (victim == NULL || set[i].tat < victim->tat)
			victim = &set[i];
	}
	if (victim->tat > now) {
		l->st.evictions++;
		l->st.entries--;
	}
	victim->tat = 0;
	victim->scope = scope;
	snprintf(victim->key, sizeof(victim->key), "%s", key);
	l->st.entries++;
	return victim;
}

/* tat after one more failure, if the bucket allows it; 0 otherwise. */
static uint64_t next_tat(const struct kg_auth_limit *l, const struct slot *s, uint64_t now)
{
	uint64_t base = s && s->tat > now ? s->tat : now, t = base + l->refill;

	return t - now <= l->burst * l->refill ? t : 0;
}

static bool attempt(struct kg_auth_limit *l, enum kg_auth_limit_scope scope, const char *key,
		    uint64_t now, bool take)
{
	char k[KG_AUTH_LIMIT_KEY_MAX + 1];
	struct slot *s;
	uint64_t t;
	bool ok;

	snprintf(k, sizeof(k), "%s", key);
	/* 0 is our "free" mark: a clock at 0 is moved to 1 (a millisecond is nothing). */
	if (now == 0)
		now = 1;
	pthread_mutex_lock(&l->mu);
	s = find(l, (uint8_t)scope, k, now, false);
	t = next_tat(l, s, now);
	ok = t != 0;
	if (!ok)
		l->st.limited++;
	else if (take) {
		if (s == NULL)
			s = find(l, (uint8_t)scope, k, now, true);
		s->tat = t;
	}
	pthread_mutex_unlock(&l->mu);
	return ok;
}

bool kg_auth_limit_take(struct kg_auth_limit *l, enum kg_auth_limit_scope scope, const char *key,
			uint64_t now_ms)
{
	return attempt(l, scope, key, now_ms, true);
}

bool kg_auth_limit_peek(struct kg_auth_limit *l, enum kg_auth_limit_scope scope, const char *key,
			uint64_t now_ms)
{
	return attempt(l, scope, key, now_ms, false);
}

void kg_auth_limit_forgive(struct kg_auth_limit *l, enum kg_auth_limit_scope scope, const char *key)
{
	char k[KG_AUTH_LIMIT_KEY_MAX + 1];
	struct slot *s;

	snprintf(k, sizeof(k), "%s", key);
	pthread_mutex_lock(&l->mu);
	s = find(l, (uint8_t)scope, k, 0, false);
	if (s) {
		s->tat = 0;
		l->st.entries--;
	}
	pthread_mutex_unlock(&l->mu);
}

void kg_auth_limit_refund(struct kg_auth_limit *l, enum kg_auth_limit_scope scope, const char *key)
{
	char k[KG_AUTH_LIMIT_KEY_MAX + 1];
	struct slot *s;

	snprintf(k, sizeof(k), "%s", key);
	pthread_mutex_lock(&l->mu);
	s = find(l, (uint8_t)scope, k, 0, false);
	/* tat stays non-zero (0 means free); a bucket refunded to full is free anyway
	 * once tat <= now. */
	if (s && s->tat > l->refill + 1)
		s->tat -= l->refill;
	pthread_mutex_unlock(&l->mu);
}

void kg_auth_limit_stats(struct kg_auth_limit *l, struct kg_auth_limit_stats *out)
{
	pthread_mutex_lock(&l->mu);
	*out = l->st;
	pthread_mutex_unlock(&l->mu);
}
