/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * srclimit.h - per-source admission of new connections, so one address cannot take
 * every handshake slot from the fleet. A source is an IPv4 address masked to
 * v4_prefix bits (IPv4-mapped IPv6 counts as IPv4) or an IPv6 address masked to
 * v6_prefix bits. Each source may hold at most `max_pending` connections that have
 * not finished their handshake, and open new ones at `rate` per second with a burst
 * of `burst` (a token bucket). 0 turns a limit off.
 *
 * State is a fixed open-addressed table of `capacity` sources (rounded up to a power
 * of two), allocated once by _new: nothing is allocated per connection. A lookup
 * looks at a bounded run of slots; a source with nothing pending and a full bucket is
 * forgotten (its slot is reused). When the run is full of sources that have
 * connections pending, the newcomer is admitted untracked (KG_SRC_UNTRACKED: fail
 * open, the daemon's global caps still hold) rather than refused.
 *
 * Pure: no clock (the caller passes monotonic ms), no I/O, no locking (each worker
 * owns its table, so the limits count per worker thread).
 */
#ifndef KTLSGATE_SRCLIMIT_H
#define KTLSGATE_SRCLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ktlsgate/compiler.h"

struct kg_srclimit_limits {
	unsigned max_pending;   /* connections before their handshake ends; 0: no limit */
	unsigned rate;          /* new connections per second; 0: no limit */
	unsigned burst;         /* bucket size (>= 1 when rate > 0) */
};

/* A source: 16 bytes, IPv4 as ::ffff:a.b.c.d, host bits cleared. */
struct kg_srckey {
	uint8_t a[16];
};

enum kg_src_verdict {
	KG_SRC_OK,          /* admitted and counted: call _release when its handshake ends */
	KG_SRC_UNTRACKED,   /* admitted, table run full: do not call _release */
	KG_SRC_PENDING,     /* refused: max_pending reached */
	KG_SRC_RATE         /* refused: no token left */
};

struct kg_srclimit;

/* capacity: sources tracked (>= 1, at most 1 << 24); seed: hash seed (random, so a
 * sender cannot aim collisions). NULL on a bad argument or no memory. */
struct kg_srclimit *kg_srclimit_new(size_t capacity, uint64_t seed);
void kg_srclimit_free(struct kg_srclimit *l);

/* The key of a socket address: 0, or -1 for a family other than AF_INET/AF_INET6 or
 * a short length. Prefixes: v4 1..32, v6 1..128 (out of range values are clamped). */
int kg_srclimit_key(const struct sockaddr *sa, socklen_t len, unsigned v4_prefix,
		    unsigned v6_prefix, struct kg_srckey *out) KG_MUST_USE;

/* One new connection of `k` at now_ms (monotonic, non-decreasing per table). */
enum kg_src_verdict kg_srclimit_admit(struct kg_srclimit *l, const struct kg_srclimit_limits *lim,
				      const struct kg_srckey *k, uint64_t now_ms);

/* The handshake of a connection admitted with KG_SRC_OK ended (done, failed or
 * closed). Unknown keys are ignored. */
void kg_srclimit_release(struct kg_srclimit *l, const struct kg_srckey *k);

/* Pending connections counted for k (0 if not tracked); sources held; capacity. */
unsigned kg_srclimit_pending(const struct kg_srclimit *l, const struct kg_srckey *k);
size_t kg_srclimit_count(const struct kg_srclimit *l);
size_t kg_srclimit_capacity(const struct kg_srclimit *l);

#endif
