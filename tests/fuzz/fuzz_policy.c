/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_policy.c - libFuzzer target for the pure policy: the input bytes pick every
 * field of the identity, device row, CA row and config (including out-of-range enums
 * and unterminated names), and the verdict must keep its invariants: an allow names a
 * configured backend and answers ACCEPTED, an enrolment is an allowed unknown device
 * under an auto-enroll CA, a refusal never answers ACCEPTED.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rd {
	const uint8_t *p;
	size_t len;
};

static uint8_t take(struct rd *r)
{
	uint8_t b = 0;

	if (r->len > 0) {
		b = *r->p++;
		r->len--;
	}
	return b;
}

/* A name: one of a few configured / unconfigured ones, or raw bytes filling the buffer. */
static void take_name(struct rd *r, char *dst, size_t cap)
{
	static const char *const names[] = { "", "b0", "b1", "gone", "g1", "g2" };
	uint8_t sel = take(r);

	if (sel < 250) {
		strcpy(dst, names[sel % 6]);
		return;
	}
	for (size_t i = 0; i < cap; i++)
		dst[i] = (char)take(r);
}

static void fill_cfg(struct rd *r, struct kg_config *cfg)
{
	static const char *const names[] = { "b0", "b1" };

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < KG_NITEMS(names); i++)
		strcpy(cfg->backends[cfg->n_backends++].name, names[i]);
	take_name(r, cfg->default_backend, sizeof(cfg->default_backend));
	cfg->default_backend[sizeof(cfg->default_backend) - 1] = '\0';   /* the parser's invariant */
	cfg->client_id_check = (enum kg_client_id_check)(take(r) % 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd r = { data, size };
	struct kg_config cfg;
	struct kg_identity id;
	struct kg_device dev;
	struct kg_ca ca;
	struct kg_policy_input in;
	struct kg_verdict v;
	uint8_t flags = take(&r);
	size_t id_len;

	fill_cfg(&r, &cfg);
	memset(&id, 0, sizeof(id));
	memset(&dev, 0, sizeof(dev));
	memset(&ca, 0, sizeof(ca));
	id_len = take(&r) % (KG_DEVICE_ID_MAX + 1);
	for (size_t i = 0; i < id_len; i++)
		id.device_id[i] = (char)(take(&r) | 1);   /* the verifier never yields NUL */
	id.method = (enum kg_attestation)(take(&r) % (KG_ATT_MAX + 1));
	take_name(&r, id.ca_name, sizeof(id.ca_name));
	id.ca_name[sizeof(id.ca_name) - 1] = '\0';
	dev.status = (enum kg_device_status)(take(&r) % (KG_DEV_STATUS_MAX + 2));
	dev.attestation = (enum kg_attestation)(take(&r) % (KG_ATT_MAX + 1));
	take_name(&r, dev.backend, sizeof(dev.backend));
	take_name(&r, dev.ca_name, sizeof(dev.ca_name));
	take_name(&r, ca.name, sizeof(ca.name));
	take_name(&r, ca.backend, sizeof(ca.backend));
	ca.auto_enroll = flags & 4;
	ca.verified = flags & 8;
	ca.status = (enum kg_ca_status)(((unsigned)flags >> 4) % (KG_CA_STATUS_MAX + 1));
	{
		uint8_t u = take(&r);   /* the global rule, and the CA's (4: none, 5: unknown) */

		cfg.username_check = (enum kg_username_check)(u % 3);
		ca.has_username_check = (u >> 2) % 6 != 4;
		ca.username_check = (enum kg_username_check)((u >> 2) % 6 == 5 ? 7 : (u >> 2) % 3);
	}

	in.id = &id;
	in.cfg = &cfg;
	in.device = flags & 1 ? &dev : NULL;
	in.ca = flags & 2 ? &ca : NULL;
	kg_policy_decide(&in, &v);

	if (v.allow) {
		if (v.connack != KG_CONNACK_ACCEPTED || memchr(v.backend, '\0', sizeof(v.backend)) == NULL ||
		    v.backend[0] == '\0' || kg_config_get0_backend(&cfg, v.backend) == NULL)
			abort();
		if (in.device != NULL && (dev.status != KG_DEV_ENABLED || dev.attestation != id.method ||
					  v.enroll || v.reason != KG_REASON_OK))
			abort();
	} else if (v.connack == KG_CONNACK_ACCEPTED || v.enroll) {
		abort();
	}
	/* A CA that is not enabled admits nothing through it, enrolment included. */
	if (v.allow && in.ca != NULL && id.method == KG_ATT_CA && ca.status != KG_CA_ENABLED)
		abort();
	if (v.enroll && (in.device != NULL || in.ca == NULL || !ca.auto_enroll ||
			 id.method != KG_ATT_CA || v.reason != KG_REASON_ENROLLED))
		abort();

	/* The user-name rule: the CA's own (an unknown one: strict) for a CA-attested
	 * identity whose CA has one, else the config's. */
	if (in.ca != NULL && id.method == KG_ATT_CA && ca.has_username_check) {
		if (v.username_check != ((unsigned)ca.username_check <= KG_USERNAME_PASS
						 ? ca.username_check : KG_USERNAME_STRICT))
			abort();
	} else if (v.username_check != cfg.username_check) {
		abort();
	}

	/* The rest of the input is a CONNECT client id. */
	if (kg_policy_client_id_ok(&cfg, &id, r.p, r.len)) {
		if (cfg.client_id_check == KG_CLIENT_ID_EXACT &&
		    (r.len != id_len || memcmp(r.p, id.device_id, r.len) != 0))
			abort();
		if (cfg.client_id_check != KG_CLIENT_ID_EXACT && cfg.client_id_check != KG_CLIENT_ID_OFF)
			abort();
	} else if (cfg.client_id_check == KG_CLIENT_ID_OFF) {
		abort();
	}
	return 0;
}
