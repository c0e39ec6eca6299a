/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * session_cache.h - TLS 1.3 resumption from memory ([tls] session_cache = N; issue 13;
 * docs/security.md "Session resumption"). The daemon keeps the sessions themselves and
 * the client's ticket is only a session's id (OpenSSL's stateful TLS 1.3 tickets,
 * SSL_OP_NO_TICKET), so a resumption decodes nothing: with stateless tickets OpenSSL
 * 3.0 spends a third of a resumption decoding the device certificate inside the ticket
 * (docs/benchmarks.md, issue 13).
 *
 * One cache per daemon, shared by every worker (one mutex: a lookup is a hash probe),
 * kept across reloads (each snapshot's SSL_CTX points at it); at most `max` sessions,
 * the oldest dropped first; lost at a restart, which stateless tickets survive. What a
 * found session may resume is the caller's check (the identity in its appdata, exactly
 * as for a ticket: core/conn_tls.c); a session it refuses leaves the cache.
 * Thread-safety: all functions.
 */
#ifndef KTLSGATE_SESSION_CACHE_H
#define KTLSGATE_SESSION_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "ktlsgate/compiler.h"

struct kg_session_cache;

/* May this found session resume on ssl? Sets up the connection for it when true. */
typedef bool (*kg_session_check_fn)(SSL *ssl, SSL_SESSION *sess);

/* A cache of at most max sessions (0: keeps none). gen is called as each ticket is
 * made (it stores the identity in the session), check on each session found (both
 * fixed for the cache's life: the workers read them unlocked). NULL: out of memory. */
struct kg_session_cache *kg_session_cache_new(size_t max, SSL_CTX_generate_session_ticket_fn gen,
					      kg_session_check_fn check);
void kg_session_cache_free(struct kg_session_cache *c);   /* drops every session */
/* A reload's new size: the oldest go at once when it shrank. */
void kg_session_cache_set_max(struct kg_session_cache *c, size_t max);
size_t kg_session_cache_count(struct kg_session_cache *c);
uint64_t kg_session_cache_evictions(struct kg_session_cache *c);

/* Keep sess (a reference of the caller's, now the cache's) under its id: 1 kept, 0 not
 * (no id, not TLS 1.3, max 0, out of memory: the reference is still the caller's). */
int kg_session_cache_add(struct kg_session_cache *c, SSL_SESSION *sess);
/* The session with this id, with a reference for the caller, or NULL. */
SSL_SESSION *kg_session_cache_get(struct kg_session_cache *c, const unsigned char *id, size_t len);
/* Forget the session with sess's id if it is sess. */
void kg_session_cache_remove(struct kg_session_cache *c, const SSL_SESSION *sess);

/* SSL_free() for a connection that is done with OpenSSL (closed, refused, or handed to
 * the kernel or the record relay) without a close_notify exchange: OpenSSL otherwise
 * takes the connection for a broken one and marks its session unresumable, which with
 * the session cache is the cached session itself (and would drop it). */
void kg_ssl_release(SSL *ssl);

/*
 * Turn resumption on for a server context made by kg_tls_ctx_new() (which turns it off),
 * from c: stateful TLS 1.3 tickets, session timeout `lifetime`, no early data, PSK only
 * with (EC)DHE, OpenSSL's own cache off (SSL_SESS_CACHE_NO_INTERNAL: c is the cache).
 * c must outlive ctx. 0 or -1.
 */
int kg_session_cache_ctx_setup(SSL_CTX *ctx, struct kg_session_cache *c,
			       int64_t lifetime) KG_MUST_USE;

#endif
