/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * auth_limit.h - the brute-force limiter for CONNECT credentials (issue 15), shared by
 * every worker and the scrypt threads (one mutex: only attempts that name a credential
 * reach it, and failures are the slow path).
 *
 * Per key a token bucket of failures: failure_burst at once, one more forgiven every
 * failure_refill_ms. Kept as GCRA: one time per key, `tat`, the instant the bucket is
 * full again; an attempt is allowed while tat' = max(tat, now) + refill stays within
 * burst * refill of now. Keys live in two scopes: a device id (the credential named a
 * device: every attempt for it takes a token up front, a success gives the bucket back)
 * and a source prefix (the credential named no device: each miss takes one; while the
 * prefix's bucket is empty nothing from it is checked).
 * The table is bounded: `entries` slots (rounded up to a multiple of 8) in sets of 8
 * chosen by a keyed hash (a seed from getrandom: an attacker cannot aim ids at one
 * set). A full set evicts the slot nearest to full (smallest tat), which is the one
 * that forgets least. Times are the caller's (milliseconds, monotonic): tests inject
 * them.
 */
#ifndef KTLSGATE_AUTH_LIMIT_H
#define KTLSGATE_AUTH_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"

#define KG_AUTH_LIMIT_KEY_MAX 160      /* a device id (128) or a source prefix text */

enum kg_auth_limit_scope { KG_LIMIT_DEVICE, KG_LIMIT_SOURCE };

struct kg_auth_limit;

struct kg_auth_limit_stats {
	uint64_t limited;                /* attempts refused without a check */
	uint64_t evictions;              /* slots taken from a key not yet full */
	uint64_t entries;                /* slots in use */
};

/* A limiter of `entries` slots (at least 64). NULL when out of memory. */
struct kg_auth_limit *kg_auth_limit_new(unsigned burst, unsigned refill_ms, unsigned entries) KG_MUST_USE;
void kg_auth_limit_free(struct kg_auth_limit *l);
/* A reload's new burst and refill (existing buckets keep their tat). */
void kg_auth_limit_set(struct kg_auth_limit *l, unsigned burst, unsigned refill_ms);

/* An attempt for key: takes a token and returns true, or returns false (counted in
 * `limited`) and takes nothing when the bucket is empty. A key longer than
 * KG_AUTH_LIMIT_KEY_MAX is cut (two ids that share so long a prefix share a bucket). */
bool kg_auth_limit_take(struct kg_auth_limit *l, enum kg_auth_limit_scope scope, const char *key,
			uint64_t now_ms) KG_MUST_USE;
/* Would an attempt for key be allowed? Takes nothing; a refusal is counted. */
bool kg_auth_limit_peek(struct kg_auth_limit *l, enum kg_auth_limit_scope scope, const char *key,
			uint64_t now_ms) KG_MUST_USE;
/* The attempt took a token but was never checked (queue full, connection gone): the
 * token goes back. */
void kg_auth_limit_refund(struct kg_auth_limit *l, enum kg_auth_limit_scope scope, const char *key);
/* The attempt succeeded: the key's bucket is full again (its slot freed). */
void kg_auth_limit_forgive(struct kg_auth_limit *l, enum kg_auth_limit_scope scope, const char *key);

void kg_auth_limit_stats(struct kg_auth_limit *l, struct kg_auth_limit_stats *out);

#endif
