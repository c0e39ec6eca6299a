/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * chain_cache.c - the bounded table behind chain_cache.h: entries in one array, a
 * bucket array of twice the bound chained through entry indices, and a clock hand for
 * eviction (a hit sets the entry's reference bit; the hand clears bits until it finds
 * a clear one). A mutex guards it all: a probe is a few compares, far below the
 * signature verification a hit saves, so two workers meeting on it cost nothing
 * measurable (docs/benchmarks.md, issue 13), and one cache per trust keeps a fleet's
 * intermediates verified once, not once per worker.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tls/chain_cache.h"

#define NIL UINT32_MAX

struct cc_entry {
	unsigned char key[KG_CHAIN_CACHE_KEY_LEN];
	X509 *cert;
	size_t ca_idx;
	int64_t valid_from, valid_until;
	uint32_t next;              /* next entry of the same bucket, or NIL */
	bool ref;                   /* used since the clock hand last passed */
};

struct kg_chain_cache {
	pthread_mutex_t mu;
	struct cc_entry *e;
	uint32_t *bucket;           /* head entry index per bucket, or NIL */
	size_t max, n, nbuckets;    /* nbuckets: a power of two >= 2 * max */
	size_t hand;
};

struct kg_chain_cache *kg_chain_cache_new(size_t max)
{
	struct kg_chain_cache *cc;

	if (max == 0)
		max = KG_CHAIN_CACHE_MAX;
	if (max >= NIL / 4)
		return NULL;
	if ((cc = calloc(1, sizeof(*cc))) == NULL)
		return NULL;
	cc->max = max;
	for (cc->nbuckets = 2; cc->nbuckets < 2 * max; cc->nbuckets *= 2)
		;
	cc->e = calloc(max, sizeof(*cc->e));
	cc->bucket = malloc(cc->nbuckets * sizeof(*cc->bucket));
	if (cc->e == NULL || cc->bucket == NULL || pthread_mutex_init(&cc->mu, NULL) != 0) {
		free(cc->e);
		free(cc->bucket);
		free(cc);
		return NULL;
	}
	for (size_t i = 0; i < cc->nbuckets; i++)
		cc->bucket[i] = NIL;
	return cc;
}

void kg_chain_cache_free(struct kg_chain_cache *cc)
{
	if (cc == NULL)
		return;
	for (size_t i = 0; i < cc->n; i++)
		X509_free(cc->e[i].cert);
	pthread_mutex_destroy(&cc->mu);
	free(cc->e);
	free(cc->bucket);
	free(cc);
}

/* The key is a SHA-256 of a certificate that verified: its first bytes are uniform. */
static size_t bucket_of(const struct kg_chain_cache *cc, const unsigned char *key)
{
	uint32_t h;

	memcpy(&h, key, sizeof(h));
	return h & (cc->nbuckets - 1);
}

static uint32_t find(const struct kg_chain_cache *cc, const unsigned char *key)
{
	for (uint32_t i = cc->bucket[bucket_of(cc, key)]; i != NIL; i = cc->e[i].next)
		if (memcmp(cc->e[i].key, key, KG_CHAIN_CACHE_KEY_LEN) == 0)
			return i;
	return NIL;
}

static void unlink_entry(struct kg_chain_cache *cc, uint32_t idx)
{
	uint32_t *p = &cc->bucket[bucket_of(cc, cc->e[idx].key)];

	while (*p != NIL && *p != idx)
		p = &cc->e[*p].next;
	if (*p == idx)
		*p = cc->e[idx].next;
}

X509 *kg_chain_cache_get(struct kg_chain_cache *cc, const unsigned char key[KG_CHAIN_CACHE_KEY_LEN],
			 int64_t now, size_t *ca_idx)
{
	X509 *x = NULL;
	uint32_t i;

	if (cc == NULL || pthread_mutex_lock(&cc->mu) != 0)
		return NULL;
	i = find(cc, key);
	if (i != NIL && now >= cc->e[i].valid_from && now <= cc->e[i].valid_until &&
	    X509_up_ref(cc->e[i].cert) == 1) {
		cc->e[i].ref = true;
		x = cc->e[i].cert;
		*ca_idx = cc->e[i].ca_idx;
	}
	pthread_mutex_unlock(&cc->mu);
	return x;
}

/* A slot for a new entry: a free one, else the clock's victim (unlinked, freed). */
static uint32_t take_slot(struct kg_chain_cache *cc)
{
	uint32_t v;

	if (cc->n < cc->max)
		return (uint32_t)cc->n++;
	/* At most one full turn clears every bit, so this ends within 2 * max steps. */
	while (cc->e[cc->hand].ref) {
		cc->e[cc->hand].ref = false;
		cc->hand = (cc->hand + 1) % cc->max;
	}
	v = (uint32_t)cc->hand;
	cc->hand = (cc->hand + 1) % cc->max;
	unlink_entry(cc, v);
	X509_free(cc->e[v].cert);
	cc->e[v].cert = NULL;
	return v;
}

int kg_chain_cache_put(struct kg_chain_cache *cc, const unsigned char key[KG_CHAIN_CACHE_KEY_LEN],
		       X509 *issuer, size_t ca_idx, int64_t valid_from, int64_t valid_until)
{
	struct cc_entry *e;
	uint32_t i;
	size_t b;

	if (cc == NULL || issuer == NULL || X509_up_ref(issuer) != 1)
		return -1;
	if (pthread_mutex_lock(&cc->mu) != 0) {
		X509_free(issuer);
		return -1;
	}
	i = find(cc, key);
	if (i != NIL) {
		/* Two workers verified the same intermediate at once: keep the newer. */
		X509_free(cc->e[i].cert);
	} else {
		i = take_slot(cc);
		b = bucket_of(cc, key);
		cc->e[i].next = cc->bucket[b];
		cc->bucket[b] = i;
		memcpy(cc->e[i].key, key, KG_CHAIN_CACHE_KEY_LEN);
	}
	e = &cc->e[i];
	e->cert = issuer;
	e->ca_idx = ca_idx;
	e->valid_from = valid_from;
	e->valid_until = valid_until;
	e->ref = false;
	pthread_mutex_unlock(&cc->mu);
	return 0;
}

void kg_chain_cache_clear(struct kg_chain_cache *cc)
{
	if (cc == NULL || pthread_mutex_lock(&cc->mu) != 0)
		return;
	for (size_t i = 0; i < cc->n; i++) {
		X509_free(cc->e[i].cert);
		cc->e[i].cert = NULL;
	}
	for (size_t i = 0; i < cc->nbuckets; i++)
		cc->bucket[i] = NIL;
	cc->n = cc->hand = 0;
	pthread_mutex_unlock(&cc->mu);
}

size_t kg_chain_cache_size(struct kg_chain_cache *cc)
{
	size_t n;

	if (cc == NULL || pthread_mutex_lock(&cc->mu) != 0)
		return 0;
	n = cc->n;
	pthread_mutex_unlock(&cc->mu);
	return n;
}
