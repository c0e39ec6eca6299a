/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * registry_cache.c - the hot-path view of a shared registry (registry_cache.h): one
 * chained hash table of entries keyed "d<id>", "t<thumbprint>", "k<token hash>",
 * "b<user name>", an LRU list through them, one mutex, a generation counter.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "ops/log.h"
#include "registry/registry_cache.h"

#define KEY_MAX (1 + KG_CRED_USERNAME_MAX + 1)   /* the longest: "b" + user name + NUL */

enum ekind { E_DEV, E_MAP };

struct entry {
	struct entry *hnext;               /* hash chain */
	struct entry *prev, *next;         /* LRU: head is the most recent */
	uint64_t hash;
	uint64_t neg_gen;                  /* a "none" map entry: c->neg_gen when stored */
	enum ekind kind;
	bool found;
	bool has_creds;                    /* E_DEV: creds/n_creds are the device's */
	size_t n_creds;
	struct kg_credential *creds;       /* owned, wiped on free; NULL when none */
	int64_t admitted;                  /* E_DEV: admitted here at (unix s), 0 never */
	size_t alloc;                      /* bytes allocated: a map entry has no row */
	char key[KEY_MAX];
	union {                            /* last: sized by kind at allocation */
		struct kg_device dev;      /* E_DEV found */
		char id[KG_DEVICE_ID_MAX + 1];  /* E_MAP found */
	} v;
};

/* A key -> device entry holds an id, not a row: a third of the size. Every X.509
 * handshake makes one (its leaf's thumbprint, usually "nobody"), so it counts. */
#define DEV_SIZE sizeof(struct entry)
#define MAP_SIZE (offsetof(struct entry, v) + KG_DEVICE_ID_MAX + 1)

struct kg_regcache {
	pthread_mutex_t lock;
	struct entry **buckets;
	size_t nbuckets;                   /* power of two */
	size_t size, max;
	struct entry *head, *tail;
	uint64_t gen;                      /* bumped by every invalidation */
	uint64_t neg_gen;                  /* bumped by every device change */
	uint64_t hits, misses, evictions, refusals, failopen;
	bool watch_up, read_up, was_up;
	bool fail_open;
	unsigned seen_s;
};

/* FNV-1a: keys are short, and the table is private to one process. */
static uint64_t hash_key(const char *k)
{
	uint64_t h = 1469598103934665603ull;

	for (; *k; k++)
		h = (h ^ (uint8_t)*k) * 1099511628211ull;
	return h;
}

static bool make_key(char *out, char tag, const char *s)
{
	size_t n = strlen(s);

	if (n + 2 > KEY_MAX)
		return false;
	out[0] = tag;
	memcpy(out + 1, s, n + 1);
	return true;
}

struct kg_regcache *kg_regcache_new(size_t max, bool fail_open, unsigned seen_s)
{
	struct kg_regcache *c = calloc(1, sizeof(*c));
	size_t nb = 16;

	if (c == NULL || max == 0)
		goto fail;
	while (nb < max && nb < ((size_t)1 << 30))
		nb <<= 1;
	c->buckets = calloc(nb, sizeof(*c->buckets));
	if (c->buckets == NULL)
		goto fail;
	c->nbuckets = nb;
	c->max = max;
	c->fail_open = fail_open;
	c->seen_s = seen_s;
	c->watch_up = c->read_up = c->was_up = true;   /* the workers' handles just connected */
	pthread_mutex_init(&c->lock, NULL);
	return c;
fail:
	free(c);
	return NULL;
}

static void entry_free(struct entry *e)
{
	if (e->creds != NULL) {
		explicit_bzero(e->creds, e->n_creds * sizeof(*e->creds));
		free(e->creds);
	}
	explicit_bzero(e, e->alloc);
	free(e);
}

static void lru_unlink(struct kg_regcache *c, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_front(struct kg_regcache *c, struct entry *e)
{
	e->next = c->head;
	e->prev = NULL;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (c->tail == NULL)
		c->tail = e;
}

static struct entry *find(struct kg_regcache *c, const char *key, uint64_t h)
{
	for (struct entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static void remove_entry(struct kg_regcache *c, struct entry *e)
{
	struct entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(c, e);
	c->size--;
	entry_free(e);
}

static void remove_key(struct kg_regcache *c, const char *key)
{
	struct entry *e = find(c, key, hash_key(key));

	if (e != NULL)
		remove_entry(c, e);
}

/* The entry for key, made (empty) if missing; the least recent evicted past max. */
static struct entry *upsert(struct kg_regcache *c, const char *key)
{
	uint64_t h = hash_key(key);
	struct entry *e = find(c, key, h), **b;

	if (e != NULL) {
		lru_unlink(c, e);
		lru_front(c, e);
		return e;
	}
	e = calloc(1, key[0] == 'd' ? DEV_SIZE : MAP_SIZE);
	if (e == NULL)
		return NULL;
	e->alloc = key[0] == 'd' ? DEV_SIZE : MAP_SIZE;
	e->kind = key[0] == 'd' ? E_DEV : E_MAP;
	e->hash = h;
	memcpy(e->key, key, strlen(key) + 1);
	b = &c->buckets[h & (c->nbuckets - 1)];
	e->hnext = *b;
	*b = e;
	lru_front(c, e);
	c->size++;
	while (c->size > c->max && c->tail != NULL && c->tail != e) {
		remove_entry(c, c->tail);
		c->evictions++;
	}
	return e;
}

/* A hit: most recent now. */
static void touch(struct kg_regcache *c, struct entry *e)
{
	lru_unlink(c, e);
	lru_front(c, e);
	c->hits++;
}

uint64_t kg_regcache_gen(struct kg_regcache *c)
{
	uint64_t g;

	pthread_mutex_lock(&c->lock);
	g = c->gen;
	pthread_mutex_unlock(&c->lock);
	return g;
}

static struct entry *dev_entry(struct kg_regcache *c, const char *id)
{
	char key[KEY_MAX];

	if (!make_key(key, 'd', id))
		return NULL;
	return find(c, key, hash_key(key));
}

enum kg_regcache_res kg_regcache_device(struct kg_regcache *c, const char *id, struct kg_device *out)
{
	enum kg_regcache_res r = KG_RC_MISS;
	struct entry *e;

	pthread_mutex_lock(&c->lock);
	e = dev_entry(c, id);
	if (e != NULL) {
		touch(c, e);
		r = e->found ? KG_RC_FOUND : KG_RC_NONE;
		if (e->found)
			*out = e->v.dev;
	} else {
		c->misses++;
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* Under the lock, generation checked: the device's entry now says dev. */
static struct entry *store_device(struct kg_regcache *c, const char *id, const struct kg_device *dev)
{
	char key[KEY_MAX];
	struct entry *e;

	if (!make_key(key, 'd', id) || (e = upsert(c, key)) == NULL)
		return NULL;
	e->kind = E_DEV;
	if (!(dev != NULL && e->found && memcmp(&e->v.dev, dev, sizeof(*dev)) == 0)) {
		/* not the row its credentials came with (or none): drop them */
		if (e->creds) {
			explicit_bzero(e->creds, e->n_creds * sizeof(*e->creds));
			free(e->creds);
		}
		e->creds = NULL;
		e->n_creds = 0;
		e->has_creds = false;
	}
	e->found = dev != NULL;
	if (dev != NULL)
		e->v.dev = *dev;
	return e;
}

void kg_regcache_put_device(struct kg_regcache *c, uint64_t gen, const char *id,
			    const struct kg_device *dev)
{
	pthread_mutex_lock(&c->lock);
	if (gen == c->gen)
		(void)store_device(c, id, dev);
	pthread_mutex_unlock(&c->lock);
}

/* A key -> device entry's answer: the device's cached row must still hold the key. */
static enum kg_regcache_res map_lookup(struct kg_regcache *c, const char *key,
				       bool (*holds)(const struct entry *dev, const char *k),
				       const char *k, struct entry **dev_out)
{
	struct entry *m = find(c, key, hash_key(key)), *d;

	if (m == NULL)
		goto miss;
	if (!m->found) {
		if (m->neg_gen != c->neg_gen) {
			remove_entry(c, m);   /* a device changed since: it may hold it now */
			goto miss;
		}
		touch(c, m);
		return KG_RC_NONE;
	}
	d = dev_entry(c, m->v.id);
	if (d == NULL || !d->found || !holds(d, k)) {
		remove_entry(c, m);
		goto miss;
	}
	touch(c, m);
	lru_unlink(c, d);
	lru_front(c, d);
	*dev_out = d;
	return KG_RC_FOUND;
miss:
	c->misses++;
	return KG_RC_MISS;
}

static void map_store(struct kg_regcache *c, const char *key, const char *id)
{
	struct entry *m = upsert(c, key);

	if (m == NULL)
		return;
	m->kind = E_MAP;
	m->found = id != NULL;
	m->neg_gen = c->neg_gen;
	if (id != NULL)
		snprintf(m->v.id, sizeof(m->v.id), "%s", id);
}

static bool holds_thumb(const struct entry *d, const char *hex)
{
	return d->v.dev.attestation == KG_ATT_THUMBPRINT &&
	       (strcmp(d->v.dev.thumb_primary, hex) == 0 || strcmp(d->v.dev.thumb_secondary, hex) == 0);
}

enum kg_regcache_res kg_regcache_thumb(struct kg_regcache *c, const char *hex, struct kg_device *out)
{
	char key[KEY_MAX];
	struct entry *d = NULL;
	enum kg_regcache_res r = KG_RC_MISS;

	if (!make_key(key, 't', hex))
		return KG_RC_MISS;
	pthread_mutex_lock(&c->lock);
	r = map_lookup(c, key, holds_thumb, hex, &d);
	if (r == KG_RC_FOUND)
		*out = d->v.dev;
	pthread_mutex_unlock(&c->lock);
	return r;
}

void kg_regcache_put_thumb(struct kg_regcache *c, uint64_t gen, const char *hex,
			   const struct kg_device *dev)
{
	char key[KEY_MAX];

	if (!make_key(key, 't', hex))
		return;
	pthread_mutex_lock(&c->lock);
	if (gen == c->gen) {
		if (dev != NULL)
			(void)store_device(c, dev->id, dev);
		map_store(c, key, dev ? dev->id : NULL);
	}
	pthread_mutex_unlock(&c->lock);
}

enum kg_regcache_res kg_regcache_creds(struct kg_regcache *c, const char *id,
				       struct kg_credential out[KG_CRED_PER_DEVICE], size_t *n)
{
	enum kg_regcache_res r = KG_RC_MISS;
	struct entry *e;

	pthread_mutex_lock(&c->lock);
	e = dev_entry(c, id);
	if (e != NULL && e->found && e->has_creds) {
		touch(c, e);
		if (e->n_creds)
			memcpy(out, e->creds, e->n_creds * sizeof(*out));
		*n = e->n_creds;
		r = KG_RC_FOUND;
	} else {
		c->misses++;
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

void kg_regcache_put_creds(struct kg_regcache *c, uint64_t gen, const char *id,
			   const struct kg_credential *creds, size_t n)
{
	struct kg_credential *copy = NULL;
	struct entry *e;

	if (n > KG_CRED_PER_DEVICE)
		return;
	if (n > 0 && (copy = malloc(n * sizeof(*copy))) == NULL)
		return;
	if (n > 0)
		memcpy(copy, creds, n * sizeof(*copy));
	pthread_mutex_lock(&c->lock);
	e = gen == c->gen ? dev_entry(c, id) : NULL;
	if (e != NULL && e->found) {
		if (e->creds) {
			explicit_bzero(e->creds, e->n_creds * sizeof(*e->creds));
			free(e->creds);
		}
		e->creds = copy;
		e->n_creds = n;
		e->has_creds = true;
		copy = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	if (copy != NULL) {
		explicit_bzero(copy, n * sizeof(*copy));
		free(copy);
	}
}

static bool holds_token(const struct entry *d, const char *hex)
{
	if (!d->has_creds)
		return false;
	for (size_t i = 0; i < d->n_creds; i++)
		if (d->creds[i].kind == KG_ATT_TOKEN && strcmp(d->creds[i].secret, hex) == 0)
			return true;
	return false;
}

static bool holds_user(const struct entry *d, const char *user)
{
	if (!d->has_creds)
		return false;
	for (size_t i = 0; i < d->n_creds; i++)
		if (d->creds[i].kind == KG_ATT_BASIC && strcmp(d->creds[i].username, user) == 0)
			return true;
	return false;
}

enum kg_regcache_res kg_regcache_cred_find(struct kg_regcache *c, enum kg_attestation kind,
					   const char *key, char *id_out)
{
	char k[KEY_MAX];
	struct entry *d = NULL;
	enum kg_regcache_res r;

	if ((kind != KG_ATT_TOKEN && kind != KG_ATT_BASIC) ||
	    !make_key(k, kind == KG_ATT_TOKEN ? 'k' : 'b', key))
		return KG_RC_MISS;
	pthread_mutex_lock(&c->lock);
	r = map_lookup(c, k, kind == KG_ATT_TOKEN ? holds_token : holds_user, key, &d);
	if (r == KG_RC_FOUND)
		memcpy(id_out, d->v.dev.id, strlen(d->v.dev.id) + 1);
	pthread_mutex_unlock(&c->lock);
	return r;
}

void kg_regcache_put_cred_find(struct kg_regcache *c, uint64_t gen, enum kg_attestation kind,
			       const char *key, const char *id)
{
	char k[KEY_MAX];

	if ((kind != KG_ATT_TOKEN && kind != KG_ATT_BASIC) ||
	    !make_key(k, kind == KG_ATT_TOKEN ? 'k' : 'b', key))
		return;
	pthread_mutex_lock(&c->lock);
	if (gen == c->gen)
		map_store(c, k, id);
	pthread_mutex_unlock(&c->lock);
}

void kg_regcache_admitted(struct kg_regcache *c, const char *id, int64_t now)
{
	struct entry *e;

	pthread_mutex_lock(&c->lock);
	e = dev_entry(c, id);
	if (e != NULL && e->found)
		e->admitted = now;
	pthread_mutex_unlock(&c->lock);
}

bool kg_regcache_recent(struct kg_regcache *c, const char *id, int64_t now, struct kg_device *out)
{
	struct entry *e;
	bool ok = false;

	pthread_mutex_lock(&c->lock);
	e = dev_entry(c, id);
	if (e != NULL && e->found && e->admitted > 0 && e->v.dev.status == KG_DEV_ENABLED &&
	    e->admitted >= now - (int64_t)c->seen_s) {
		*out = e->v.dev;
		ok = true;
	}
	pthread_mutex_unlock(&c->lock);
	return ok;
}

void kg_regcache_drop_device(struct kg_regcache *c, const char *id)
{
	char key[KEY_MAX];

	pthread_mutex_lock(&c->lock);
	c->gen++;
	c->neg_gen++;
	/* Its key -> device entries go stale with it: they answer only through it. */
	if (make_key(key, 'd', id))
		remove_key(c, key);
	pthread_mutex_unlock(&c->lock);
}

void kg_regcache_drop_all(struct kg_regcache *c)
{
	pthread_mutex_lock(&c->lock);
	c->gen++;
	c->neg_gen++;
	while (c->head != NULL)
		remove_entry(c, c->head);
	pthread_mutex_unlock(&c->lock);
}

/* Under the lock: log the combined state's transition, once. */
static void note_state(struct kg_regcache *c)
{
	bool up = c->watch_up && c->read_up;

	if (up == c->was_up)
		return;
	c->was_up = up;
	if (up)
		kg_log_info("registry up again: new connections are served");
	else if (c->watch_up)   /* the feed still keeps the cache true */
		kg_log_warnx("registry unavailable (a read failed): devices in the cache are "
			     "served, others refused while reads fail");
	else
		kg_log_warnx("registry unavailable (change watcher disconnected): new connections %s",
			     c->fail_open ? "follow fail-open: devices admitted here recently "
					    "are admitted from the cache, others refused"
					  : "are refused (fail-closed); live sessions keep running");
}

void kg_regcache_watch_up(struct kg_regcache *c, bool up)
{
	pthread_mutex_lock(&c->lock);
	c->watch_up = up;
	if (up)
		c->read_up = true;   /* connected and caught up: reads are worth trying */
	note_state(c);
	pthread_mutex_unlock(&c->lock);
}

void kg_regcache_read_ok(struct kg_regcache *c, bool ok)
{
	pthread_mutex_lock(&c->lock);
	if (c->read_up != ok) {
		c->read_up = ok;
		note_state(c);
	}
	pthread_mutex_unlock(&c->lock);
}

bool kg_regcache_up(struct kg_regcache *c)
{
	bool up;

	pthread_mutex_lock(&c->lock);
	up = c->watch_up && c->read_up;
	pthread_mutex_unlock(&c->lock);
	return up;
}

bool kg_regcache_stale(struct kg_regcache *c)
{
	bool stale;

	pthread_mutex_lock(&c->lock);
	stale = !c->watch_up;
	pthread_mutex_unlock(&c->lock);
	return stale;
}

bool kg_regcache_fail_open(const struct kg_regcache *c)
{
	return c->fail_open;   /* fixed at creation */
}

void kg_regcache_count_refusal(struct kg_regcache *c)
{
	pthread_mutex_lock(&c->lock);
	c->refusals++;
	pthread_mutex_unlock(&c->lock);
}

void kg_regcache_count_failopen(struct kg_regcache *c)
{
	pthread_mutex_lock(&c->lock);
	c->failopen++;
	pthread_mutex_unlock(&c->lock);
}

void kg_regcache_stats(struct kg_regcache *c, struct kg_regcache_stats *out)
{
	pthread_mutex_lock(&c->lock);
	*out = (struct kg_regcache_stats){
		.hits = c->hits, .misses = c->misses, .evictions = c->evictions,
		.size = c->size, .max = c->max, .refusals = c->refusals,
		.failopen_admits = c->failopen, .up = c->watch_up && c->read_up,
	};
	pthread_mutex_unlock(&c->lock);
}

void kg_regcache_free(struct kg_regcache *c)
{
	if (c == NULL)
		return;
	while (c->head != NULL)
		remove_entry(c, c->head);
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
