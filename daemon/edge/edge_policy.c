/* SPDX-License-Identifier: BSD-2-Clause */
/* edge_policy.c - failures -> deny periods (contract in edge_policy.h). */
#include <stdlib.h>
#include <string.h>

#include "edge/edge_policy.h"
#include "policy/reason.h"
#include "ktlsgate/xdp_gate_maps.h"

#define PROBE 16   /* slots looked at per source: bounds the work per call */

struct slot {
	uint8_t addr[16];
	bool used;
	uint32_t fails;         /* in the current window */
	uint32_t strikes;       /* denials so far */
	uint64_t first_ms;      /* window start */
	uint64_t last_ms;       /* last failure */
};

struct kg_edge_policy {
	struct kg_edge_policy_params p;
	size_t mask;
	size_t used;
	struct slot *slots;
};

struct kg_edge_policy *kg_edge_policy_new(const struct kg_edge_policy_params *p)
{
	struct kg_edge_policy *pol;
	size_t cap = PROBE;

	if (p->threshold == 0 || p->base_ms == 0 || p->max_ms < p->base_ms)
		return NULL;
	while (cap < p->capacity && cap < ((size_t)1 << 24))
		cap <<= 1;
	pol = calloc(1, sizeof(*pol));
	if (pol == NULL)
		return NULL;
	pol->slots = calloc(cap, sizeof(*pol->slots));
	if (pol->slots == NULL) {
		free(pol);
		return NULL;
	}
	pol->p = *p;
	pol->p.capacity = cap;
	pol->mask = cap - 1;
	return pol;
}

void kg_edge_policy_free(struct kg_edge_policy *p)
{
	if (p == NULL)
		return;
	free(p->slots);
	free(p);
}

static uint64_t hash(uint64_t seed, const uint8_t a[16])
{
	uint64_t h = 0xcbf29ce484222325ull ^ seed;

	for (int i = 0; i < 16; i++) {
		h ^= a[i];
		h *= 0x100000001b3ull;
	}
	return h ^ (h >> 29);
}

static bool forgotten(const struct kg_edge_policy *p, const struct slot *s, uint64_t now)
{
	return now - s->last_ms > 2 * p->p.max_ms;
}

/* The slot of src: its own, else a free or forgotten one, else the least recently
 * seen of the probe run (evicted). Never NULL. */
static struct slot *find(struct kg_edge_policy *p, const uint8_t src[16], uint64_t now)
{
	size_t i0 = (size_t)hash(p->p.seed, src);
	struct slot *spare = NULL, *oldest = NULL;

	for (size_t k = 0; k < PROBE; k++) {
		struct slot *s = &p->slots[(i0 + k) & p->mask];

		if (s->used && memcmp(s->addr, src, 16) == 0) {
			if (forgotten(p, s, now)) {
				s->fails = s->strikes = 0;
				s->first_ms = now;
			}
			return s;
		}
		if (spare == NULL && (!s->used || forgotten(p, s, now)))
			spare = s;
		if (s->used && (oldest == NULL || s->last_ms < oldest->last_ms))
			oldest = s;
	}
	if (spare == NULL)
		spare = oldest;
	if (!spare->used)
		p->used++;
	memset(spare, 0, sizeof(*spare));
	memcpy(spare->addr, src, 16);
	spare->used = true;
	spare->first_ms = now;
	return spare;
}

uint64_t kg_edge_policy_note(struct kg_edge_policy *p, const uint8_t src[16], uint64_t now_ms,
			     unsigned *strikes)
{
	struct slot *s = find(p, src, now_ms);
	uint64_t period;

	if (now_ms - s->first_ms > p->p.window_ms) {
		s->fails = 0;
		s->first_ms = now_ms;
	}
	s->last_ms = now_ms;
	if (++s->fails < p->p.threshold)
		return 0;
	s->fails = 0;
	s->first_ms = now_ms;
	if (s->strikes < UINT32_MAX)
		s->strikes++;
	period = p->p.base_ms;
	for (uint32_t k = 1; k < s->strikes && period < p->p.max_ms; k++)
		period *= 2;
	if (period > p->p.max_ms)
		period = p->p.max_ms;
	if (strikes)
		*strikes = s->strikes;
	return period;
}

size_t kg_edge_policy_count(const struct kg_edge_policy *p)
{
	return p->used;
}

size_t kg_edge_policy_capacity(const struct kg_edge_policy *p)
{
	return p->p.capacity;
}

int kg_edge_reason_category(int r)
{
	switch ((enum kg_reason)r) {
	case KG_REASON_NO_CERT:
	case KG_REASON_UNKNOWN_CA:
	case KG_REASON_UNPROVEN_CA:
	case KG_REASON_CERT_EXPIRED:
	case KG_REASON_CERT_NOT_YET_VALID:
	case KG_REASON_CERT_REVOKED:
	case KG_REASON_BAD_EKU:
	case KG_REASON_BAD_CHAIN:
	case KG_REASON_THUMBPRINT_MISMATCH:
	case KG_REASON_BAD_IDENTITY:
	case KG_REASON_TLS_FAILED:
	case KG_REASON_WEAK_KEY:
	case KG_REASON_WEAK_SIGNATURE:
		return KG_XDP_DENY_VERIFY;
	case KG_REASON_UNKNOWN_DEVICE:
	case KG_REASON_DISABLED:
	case KG_REASON_SUSPENDED:
	case KG_REASON_QUARANTINED:
	case KG_REASON_DECOMMISSIONED:
	case KG_REASON_ATTESTATION_MISMATCH:
	case KG_REASON_CLIENT_ID_MISMATCH:
	case KG_REASON_USERNAME_MISMATCH:
	case KG_REASON_BAD_MQTT:
	/* CONNECT credentials (issue 15): a guessing source ends at the gate */
	case KG_REASON_BAD_CREDENTIALS:
	case KG_REASON_CREDENTIAL_EXPIRED:
	case KG_REASON_AUTH_RATE_LIMITED:
	case KG_REASON_X509_REQUIRED:
		return KG_XDP_DENY_POLICY;
	case KG_REASON_SOURCE_LIMIT:   /* a flood: each refusal at accept counts */
		return KG_XDP_DENY_SOURCE_LIMIT;
	default:
		return -1;
	}
}
