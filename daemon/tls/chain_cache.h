/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * chain_cache.h - intermediates already verified against a registered CA, keyed by the
 * SHA-256 of their DER, so a device's next full handshake verifies only its leaf under
 * the cached issuer (verify.c says why that enforces everything the full chain does).
 *
 * One cache hangs on each struct kg_trust and dies with it: a CA, CRL or config change
 * builds a new trust, which starts empty. Bounded (KG_CHAIN_CACHE_MAX entries, clock
 * eviction), shared by the worker threads under one mutex held only for a table probe.
 * Each entry carries the window [valid_from, valid_until] in which its verification
 * holds (the validity of every certificate above the leaf, the nextUpdate of the CRLs):
 * outside it the entry is a miss and the full chain is verified again.
 */
#ifndef KTLSGATE_CHAIN_CACHE_H
#define KTLSGATE_CHAIN_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "ktlsgate/compiler.h"

/* Entries per trust. A fleet's factories have a handful of intermediates each; 256
 * covers a large PKI, and a miss only costs today's full verification. */
#define KG_CHAIN_CACHE_MAX 256
#define KG_CHAIN_CACHE_KEY_LEN 32   /* SHA-256 */

struct kg_chain_cache;

/* An empty cache of at most max entries (0: KG_CHAIN_CACHE_MAX), or NULL. */
struct kg_chain_cache *kg_chain_cache_new(size_t max);
void kg_chain_cache_free(struct kg_chain_cache *cc);

/*
 * The certificate cached under key, if its window holds `now`: an up-ref'd X509 the
 * caller frees, and the index of the registered CA its chain reached in *ca_idx.
 * NULL on a miss (absent or outside its window).
 */
X509 *kg_chain_cache_get(struct kg_chain_cache *cc, const unsigned char key[KG_CHAIN_CACHE_KEY_LEN],
			 int64_t now, size_t *ca_idx);

/*
 * Remember `issuer` (the cache takes its own reference) as verified up to registered CA
 * ca_idx, within [valid_from, valid_until] (unix seconds). Replaces an entry of the same
 * key; when full, evicts one not used since the clock hand last passed. 0, or -1
 * (nothing cached: the next verification is a full one, so callers may ignore it).
 */
int kg_chain_cache_put(struct kg_chain_cache *cc, const unsigned char key[KG_CHAIN_CACHE_KEY_LEN],
		       X509 *issuer, size_t ca_idx, int64_t valid_from, int64_t valid_until);

/* Drop every entry (the rules they were verified under changed). */
void kg_chain_cache_clear(struct kg_chain_cache *cc);

/* Entries held now. */
size_t kg_chain_cache_size(struct kg_chain_cache *cc);

#endif
