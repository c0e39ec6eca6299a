/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * session_cache.c - TLS 1.3 resumption from memory (contract in session_cache.h).
 *
 * A chained hash of the session ids (OpenSSL's, 32 random bytes) and a list in
 * insertion order for eviction; the buckets grow with a reload's larger size. Each entry holds one reference to
 * its SSL_SESSION; a lookup hands out another (SSL_SESSION_up_ref under the lock), so a
 * session evicted while a handshake resumes it stays alive until that SSL frees it.
 * OpenSSL calls in through the three session callbacks of the SSL_CTX: new (after a
 * NewSessionTicket), get (a ClientHello's PSK identity), remove (a session it found
 * bad or timed out).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tls/session_cache.h"

#define ID_MAX SSL_MAX_SSL_SESSION_ID_LENGTH
#define BUCKETS_MIN 1024u

struct entry {
	unsigned char id[ID_MAX];
	unsigned id_len;
	SSL_SESSION *sess;             /* one reference, the cache's */
	struct entry *hnext;           /* bucket chain */
	struct entry *older, *newer;   /* insertion order */
};

struct kg_session_cache {
	pthread_mutex_t lock;
	struct entry **buckets;
	size_t n_buckets;              /* a power of two */
	struct entry *oldest, *newest;
	size_t count, max;
	uint64_t evictions;
	kg_session_check_fn check;     /* fixed at creation */
	SSL_CTX_generate_session_ticket_fn gen;
};

static size_t buckets_for(size_t max)
{
	size_t n = BUCKETS_MIN;

	while (n < max && n < ((size_t)1 << 24))
		n <<= 1;
	return n;
}

static size_t hash_id(const unsigned char *id, size_t len, size_t n_buckets)
{
	uint64_t h = 1469598103934665603ULL;   /* FNV-1a: the ids are random anyway */

	for (size_t i = 0; i < len; i++) {
		h ^= id[i];
		h *= 1099511628211ULL;
	}
	return (size_t)(h & (n_buckets - 1));
}

struct kg_session_cache *kg_session_cache_new(size_t max, SSL_CTX_generate_session_ticket_fn gen,
					      kg_session_check_fn check)
{
	struct kg_session_cache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->gen = gen;
	c->check = check;
	c->n_buckets = buckets_for(max);
	c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
	if (c->buckets == NULL || pthread_mutex_init(&c->lock, NULL) != 0) {
		free(c->buckets);
		free(c);
		return NULL;
	}
	c->max = max;
	return c;
}

/* Unlink e from both structures (lock held); the caller frees it. */
static void unlink_entry(struct kg_session_cache *c, struct entry *e)
{
	struct entry **pp = &c->buckets[hash_id(e->id, e->id_len, c->n_buckets)];

	while (*pp != NULL && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp == e)
		*pp = e->hnext;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	c->count--;
}

static struct entry *find(struct kg_session_cache *c, const unsigned char *id, size_t len)
{
	struct entry *e = c->buckets[hash_id(id, len, c->n_buckets)];

	while (e != NULL && (e->id_len != len || memcmp(e->id, id, len) != 0))
		e = e->hnext;
	return e;
}

/* Drop the oldest until at most max remain (lock held); their sessions go to *freed. */
static void trim(struct kg_session_cache *c, size_t max, struct entry **freed)
{
	while (c->count > max && c->oldest != NULL) {
		struct entry *e = c->oldest;

		unlink_entry(c, e);
		c->evictions++;
		e->hnext = *freed;
		*freed = e;
	}
}

/* Free what trim() or a removal set aside, outside the lock (SSL_SESSION_free takes
 * OpenSSL's own locks). */
static void free_entries(struct entry *e)
{
	while (e != NULL) {
		struct entry *next = e->hnext;

		SSL_SESSION_free(e->sess);
		free(e);
		e = next;
	}
}

void kg_session_cache_free(struct kg_session_cache *c)
{
	struct entry *freed = NULL;

	if (c == NULL)
		return;
	trim(c, 0, &freed);
	free_entries(freed);
	pthread_mutex_destroy(&c->lock);
	free(c->buckets);
	free(c);
}

/* More buckets for a larger max (lock held): every entry is hashed again, in insertion
 * order. Out of memory: the chains stay longer, nothing is lost. */
static void grow(struct kg_session_cache *c, size_t max)
{
	size_t n = buckets_for(max);
	struct entry **b;

	if (n <= c->n_buckets || (b = calloc(n, sizeof(*b))) == NULL)
		return;
	for (struct entry *e = c->oldest; e != NULL; e = e->newer) {
		size_t i = hash_id(e->id, e->id_len, n);

		e->hnext = b[i];
		b[i] = e;
	}
	free(c->buckets);
	c->buckets = b;
	c->n_buckets = n;
}

void kg_session_cache_set_max(struct kg_session_cache *c, size_t max)
{
	struct entry *freed = NULL;

	pthread_mutex_lock(&c->lock);
	c->max = max;
	trim(c, max, &freed);
	grow(c, max);
	pthread_mutex_unlock(&c->lock);
	free_entries(freed);
}

size_t kg_session_cache_count(struct kg_session_cache *c)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->count;
	pthread_mutex_unlock(&c->lock);
	return n;
}

uint64_t kg_session_cache_evictions(struct kg_session_cache *c)
{
	uint64_t n;

	pthread_mutex_lock(&c->lock);
	n = c->evictions;
	pthread_mutex_unlock(&c->lock);
	return n;
}

int kg_session_cache_add(struct kg_session_cache *c, SSL_SESSION *sess)
{
	unsigned int len = 0;
	const unsigned char *id = SSL_SESSION_get_id(sess, &len);
	struct entry *e, *old, *freed = NULL;

	if (len == 0 || len > ID_MAX || SSL_SESSION_get_protocol_version(sess) != TLS1_3_VERSION)
		return 0;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return 0;
	memcpy(e->id, id, len);
	e->id_len = len;
	e->sess = sess;
	pthread_mutex_lock(&c->lock);
	if (c->max == 0) {
		pthread_mutex_unlock(&c->lock);
		free(e);
		return 0;
	}
	old = find(c, id, len);   /* an id is random: a repeat replaces */
	if (old != NULL) {
		unlink_entry(c, old);
		old->hnext = freed;
		freed = old;
	}
	trim(c, c->max - 1, &freed);
	{
		size_t b = hash_id(id, len, c->n_buckets);

		e->hnext = c->buckets[b];
		c->buckets[b] = e;
	}
	e->older = c->newest;
	if (c->newest != NULL)
		c->newest->newer = e;
	else
		c->oldest = e;
	c->newest = e;
	c->count++;
	pthread_mutex_unlock(&c->lock);
	free_entries(freed);
	return 1;
}

SSL_SESSION *kg_session_cache_get(struct kg_session_cache *c, const unsigned char *id, size_t len)
{
	SSL_SESSION *s = NULL;
	struct entry *e;

	if (len == 0 || len > ID_MAX)
		return NULL;
	pthread_mutex_lock(&c->lock);
	e = find(c, id, len);
	if (e != NULL && SSL_SESSION_up_ref(e->sess) == 1)
		s = e->sess;
	pthread_mutex_unlock(&c->lock);
	return s;
}

void kg_session_cache_remove(struct kg_session_cache *c, const SSL_SESSION *sess)
{
	unsigned int len = 0;
	const unsigned char *id = SSL_SESSION_get_id(sess, &len);
	struct entry *e;

	if (len == 0 || len > ID_MAX)
		return;
	pthread_mutex_lock(&c->lock);
	e = find(c, id, len);
	if (e != NULL && e->sess == sess)
		unlink_entry(c, e);
	else
		e = NULL;
	pthread_mutex_unlock(&c->lock);
	if (e != NULL) {
		e->hnext = NULL;
		free_entries(e);
	}
}

void kg_ssl_release(SSL *ssl)
{
	if (ssl == NULL)
		return;
	SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(ssl);
}

/* ---- OpenSSL's session callbacks ------------------------------------------------ */

/* The SSL_CTX ex_data slot pointing at the cache: process-wide, made once. */
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ex_index = -1;

static void ex_index_init(void)
{
	ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static struct kg_session_cache *cache_of(SSL_CTX *ctx)
{
	return ex_index >= 0 ? SSL_CTX_get_ex_data(ctx, ex_index) : NULL;
}

/* After a NewSessionTicket: keep the session (1: the reference is ours now). */
static int new_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct kg_session_cache *c = cache_of(SSL_get_SSL_CTX(ssl));
	const void *data = NULL;
	size_t len = 0;

	if (c == NULL)
		return 0;
	/* the identity goes in as a ticket's would (the generate callback) */
	if (c->gen != NULL &&
	    (SSL_SESSION_get0_ticket_appdata(sess, (void **)&data, &len) != 1 || len == 0))
		(void)c->gen(ssl, NULL);
	return kg_session_cache_add(c, sess);
}

/* A ClientHello offers a session id: ours, if the caller's check admits it. */
static SSL_SESSION *get_cb(SSL *ssl, const unsigned char *id, int len, int *copy)
{
	struct kg_session_cache *c = cache_of(SSL_get_SSL_CTX(ssl));
	SSL_SESSION *s;

	*copy = 0;   /* the reference kg_session_cache_get() took is OpenSSL's */
	if (c == NULL || len <= 0)
		return NULL;
	s = kg_session_cache_get(c, id, (size_t)len);
	if (s == NULL)
		return NULL;
	if (c->check != NULL && !c->check(ssl, s)) {
		kg_session_cache_remove(c, s);
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

static void remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
	struct kg_session_cache *c = cache_of(ctx);

	if (c != NULL)
		kg_session_cache_remove(c, sess);
}

int kg_session_cache_ctx_setup(SSL_CTX *ctx, struct kg_session_cache *c, int64_t lifetime)
{
	if (c == NULL || pthread_once(&ex_once, ex_index_init) != 0 || ex_index < 0 ||
	    SSL_CTX_set_ex_data(ctx, ex_index, c) != 1)
		return -1;
	/* Stateful TLS 1.3 tickets, and a session may resume more than once (the check
	 * and the ticket reuse rules decide, as for tickets; no early data: the
	 * anti-replay cache OpenSSL would otherwise insist on is for 0-RTT). */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_ANTI_REPLAY);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL |
						    SSL_SESS_CACHE_NO_AUTO_CLEAR);
	if (SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"ktlsgate", 8) != 1 ||
	    SSL_CTX_set_num_tickets(ctx, 1) != 1 || SSL_CTX_set_max_early_data(ctx, 0) != 1 ||
	    SSL_CTX_set_recv_max_early_data(ctx, 0) != 1)
		return -1;
	/* (EC)DHE on every resumption unless [tls] resumption_psk_ke (tls.h) */
	SSL_CTX_clear_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX);
	SSL_CTX_set_timeout(ctx, (long)lifetime);
	SSL_CTX_sess_set_new_cb(ctx, new_cb);
	SSL_CTX_sess_set_get_cb(ctx, get_cb);
	SSL_CTX_sess_set_remove_cb(ctx, remove_cb);
	return 0;
}
