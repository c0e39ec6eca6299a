/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * registry_cache.h - the hot-path view of a shared PostgreSQL registry (issue 16): a
 * bounded cache of what the handshake path reads, one per daemon (in its context,
 * shared by every worker's read handle through kg_registry_set_cache()), and the
 * database-down state with its rule (docs/registry.md, "The hot-path view").
 *
 * Contract:
 *   - Cached: device rows by id, found or not (an unseen device is looked up once);
 *     thumbprint -> device and credential key (token hash, basic user name) -> device,
 *     found or not; a device's credentials (cred_get). A key -> device entry only
 *     answers while the device's own entry is cached and still holds that key, so it
 *     can never outlive a change of the device; a "no device holds this key" entry is
 *     dropped by ANY device change (the change feed names the device, not its keys).
 *   - Not cached: CAs (the trust snapshot holds them, rebuilt on a CA change), lists,
 *     writes, last_seen (no handshake decision reads it; touch is not in the feed).
 *   - Bounded: at most `max` entries of any kind, least recently used evicted first.
 *   - Invalidation (the watcher thread): drop_device(id), drop_all() (resync). Each
 *     bumps a generation: a store read that started (kg_regcache_gen()) before an
 *     invalidation never inserts its row after it (put_* with an old generation is a
 *     no-op), so a stale row cannot come back.
 *   - One mutex guards everything; entries are copied out, nothing points inside.
 *   - Secrets (credentials) are wiped when an entry is freed.
 *   - The down state: the database counts as down while the watcher is disconnected
 *     (watch_up false) or since a store read failed with KG_E_IO and no read succeeded.
 */
#ifndef KTLSGATE_REGISTRY_CACHE_H
#define KTLSGATE_REGISTRY_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/registry.h"

enum kg_regcache_res { KG_RC_MISS, KG_RC_FOUND, KG_RC_NONE /* cached: no such row */ };

struct kg_regcache_stats {
	uint64_t hits, misses, evictions, size, max;
	uint64_t refusals, failopen_admits;       /* the down rule's counts */
	bool up;
};

struct kg_regcache;

/* max >= 1 entries; fail_open and seen_s: the down rule (kg_config registry_down*).
 * NULL: no memory. */
struct kg_regcache *kg_regcache_new(size_t max, bool fail_open, unsigned seen_s);
void kg_regcache_free(struct kg_regcache *c);   /* NULL-safe; no other thread may use it */

/* Read before a store read; pass to the put_* that stores its answer. */
uint64_t kg_regcache_gen(struct kg_regcache *c);

enum kg_regcache_res kg_regcache_device(struct kg_regcache *c, const char *id, struct kg_device *out);
/* dev NULL: no such device. */
void kg_regcache_put_device(struct kg_regcache *c, uint64_t gen, const char *id,
			    const struct kg_device *dev);
/* hex: lowercase. FOUND only for a thumbprint-attested device holding it. */
enum kg_regcache_res kg_regcache_thumb(struct kg_regcache *c, const char *hex, struct kg_device *out);
void kg_regcache_put_thumb(struct kg_regcache *c, uint64_t gen, const char *hex,
			   const struct kg_device *dev);
/* FOUND only while the device's row is cached with its credentials. */
enum kg_regcache_res kg_regcache_creds(struct kg_regcache *c, const char *id,
				       struct kg_credential out[KG_CRED_PER_DEVICE], size_t *n);
/* Stored with the device's cached row; nothing if that row is not cached. */
void kg_regcache_put_creds(struct kg_regcache *c, uint64_t gen, const char *id,
			   const struct kg_credential *creds, size_t n);
/* kind KG_ATT_TOKEN (key: lowercase SHA-256 hex) or KG_ATT_BASIC (key: user name). */
enum kg_regcache_res kg_regcache_cred_find(struct kg_regcache *c, enum kg_attestation kind,
					   const char *key, char *id_out);
/* id NULL: no device holds the key. */
void kg_regcache_put_cred_find(struct kg_regcache *c, uint64_t gen, enum kg_attestation kind,
			       const char *key, const char *id);

/* This appliance admitted the device at `now` (unix s): the fail-open rule's memory. */
void kg_regcache_admitted(struct kg_regcache *c, const char *id, int64_t now);
/* Fail-open: is the device's cached row enabled and was it admitted here at or after
 * now - seen_s? Then *out is the row. */
bool kg_regcache_recent(struct kg_regcache *c, const char *id, int64_t now, struct kg_device *out);

/* Invalidation (any thread; the watcher's). */
void kg_regcache_drop_device(struct kg_regcache *c, const char *id);
void kg_regcache_drop_all(struct kg_regcache *c);

/* The down state. watch_up: the watcher's transitions; read_ok: a store read gave an
 * answer (true) or failed with KG_E_IO (false). Each transition of the combined state
 * is logged once (down with the rule in force / up again). */
void kg_regcache_watch_up(struct kg_regcache *c, bool up);
void kg_regcache_read_ok(struct kg_regcache *c, bool ok);
bool kg_regcache_up(struct kg_regcache *c);
/* The watcher is disconnected: the cache may miss changes, only the rule answers. */
bool kg_regcache_stale(struct kg_regcache *c);
bool kg_regcache_fail_open(const struct kg_regcache *c);
/* Counted by whoever refuses or admits under the rule. */
void kg_regcache_count_refusal(struct kg_regcache *c);
void kg_regcache_count_failopen(struct kg_regcache *c);

void kg_regcache_stats(struct kg_regcache *c, struct kg_regcache_stats *out);

#endif
