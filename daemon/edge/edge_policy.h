/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * edge_policy.h - the pure decision behind the XDP deny map: a source that fails
 * verification or policy `threshold` times within `window_ms` is denied for
 * base_ms << (strikes - 1), capped at max_ms, where strikes counts its denials. A
 * source quiet for 2 * max_ms is forgotten (strikes start over). State is a fixed
 * table of `capacity` sources (no allocation after _new): when a probe run is full,
 * the least recently seen source is evicted. No I/O, no clock, no locking: edge.c
 * serialises calls and passes the time.
 */
#ifndef KTLSGATE_EDGE_POLICY_H
#define KTLSGATE_EDGE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"

struct kg_edge_policy_params {
	unsigned threshold;     /* failures within the window that deny; >= 1 */
	uint64_t window_ms;     /* counting window, from the first failure */
	uint64_t base_ms;       /* first deny period */
	uint64_t max_ms;        /* cap on the period */
	size_t capacity;        /* sources tracked; rounded up to a power of two */
	uint64_t seed;          /* hash seed: a sender cannot aim collisions */
};

struct kg_edge_policy;

struct kg_edge_policy *kg_edge_policy_new(const struct kg_edge_policy_params *p);
void kg_edge_policy_free(struct kg_edge_policy *p);

/*
 * One failure of `src` (16 bytes, IPv4 mapped) at now_ms (monotonic). Returns the
 * deny period in ms when this failure crosses the threshold (the failure count then
 * starts over, and *strikes, if non-NULL, gets the number of denials so far), else 0.
 */
uint64_t kg_edge_policy_note(struct kg_edge_policy *p, const uint8_t src[16], uint64_t now_ms,
			     unsigned *strikes);

/* Sources currently held in the table (<= capacity). */
size_t kg_edge_policy_count(const struct kg_edge_policy *p);
size_t kg_edge_policy_capacity(const struct kg_edge_policy *p);

/* Which refusals count toward a deny: returns the enum kg_xdp_deny_reason category
 * for an enum kg_reason (verification or policy failures), or -1 for reasons that are
 * not the device's fault or not a refusal (timeouts, backend down, shutdown...). */
int kg_edge_reason_category(int kg_reason);

#endif
