/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * policy.c - the pure admission decision: (verified identity, registry rows, config)
 * -> verdict. No I/O, no clock, no allocation, no logging: the caller fetched the rows
 * and acts on the verdict (audit, CONNACK, enrolment). Every path ends in a fully
 * written verdict, and anything unexpected denies (fail closed).
 *
 * Order, first match wins: the issuing CA's status, unknown device (auto-enrol or
 * refuse), device status, attestation method (and the enrolling CA, or the thumbprint
 * pin), backend resolution.
 */
#include <string.h>

#include "policy/credential.h"
#include "policy/policy.h"

/* Status -> refusal. quarantined / decommissioned are "banned": the device should
 * stop retrying; the others may come back after an operator acts. */
static const struct {
	enum kg_reason reason;
	enum kg_connack connack;
} status_refusal[KG_DEV_STATUS_MAX] = {
	[KG_DEV_DISABLED] = { KG_REASON_DISABLED, KG_CONNACK_NOT_AUTHORIZED },
	[KG_DEV_SUSPENDED] = { KG_REASON_SUSPENDED, KG_CONNACK_NOT_AUTHORIZED },
	[KG_DEV_QUARANTINED] = { KG_REASON_QUARANTINED, KG_CONNACK_BANNED },
	[KG_DEV_DECOMMISSIONED] = { KG_REASON_DECOMMISSIONED, KG_CONNACK_BANNED },
};

static void deny(struct kg_verdict *out, enum kg_reason reason, enum kg_connack connack)
{
	out->allow = false;
	out->enroll = false;
	out->reason = reason;
	out->connack = connack;
}

/* Non-empty, NUL-terminated within KG_NAME_MAX (rows are filled by other code). */
static bool have_name(const char *name)
{
	return name[0] != '\0' && memchr(name, '\0', KG_NAME_MAX) != NULL;
}

/*
 * Backend: the device's, else its CA's, else the default; it must be configured.
 * The name tried is left in out->backend even on refusal, for the audit line.
 */
static void pick_backend(const struct kg_policy_input *in, struct kg_verdict *out,
			 enum kg_reason allow_reason)
{
	const char *name = in->cfg->default_backend;

	if (in->device != NULL && have_name(in->device->backend))
		name = in->device->backend;
	else if (in->ca != NULL && have_name(in->ca->backend))
		name = in->ca->backend;
	if (!have_name(name)) {
		deny(out, KG_REASON_NO_BACKEND, KG_CONNACK_SERVER_UNAVAILABLE);
		return;
	}
	(void)kg_strlcpy(out->backend, name, sizeof(out->backend));
	if (kg_config_get0_backend(in->cfg, out->backend) == NULL) {
		deny(out, KG_REASON_NO_BACKEND, KG_CONNACK_SERVER_UNAVAILABLE);
		return;
	}
	out->allow = true;
	out->enroll = allow_reason == KG_REASON_ENROLLED;
	out->reason = allow_reason;
	out->connack = KG_CONNACK_ACCEPTED;
}

enum kg_reason kg_policy_ca_status(const struct kg_identity *id, const struct kg_ca *ca,
				   enum kg_connack *connack)
{
	enum kg_connack dummy;

	if (connack == NULL)
		connack = &dummy;
	*connack = KG_CONNACK_ACCEPTED;
	/* A pinned leaf answers to no CA; without a CA row there is no status to judge
	 * (the chain check refused unknown and unproven CAs already). */
	if (id == NULL || id->method != KG_ATT_CA || ca == NULL || ca->status == KG_CA_ENABLED)
		return KG_REASON_OK;
	if (ca->status == KG_CA_DISABLED) {
		*connack = KG_CONNACK_NOT_AUTHORIZED;
		return KG_REASON_CA_DISABLED;
	}
	/* Revoked (or a value this build does not know): final, "banned". */
	*connack = KG_CONNACK_BANNED;
	return KG_REASON_CA_DISABLED;
}

enum kg_username_check kg_policy_username_check(enum kg_username_check global,
						const struct kg_ca *ca)
{
	if (ca == NULL || !ca->has_username_check)
		return global;
	switch (ca->username_check) {
	case KG_USERNAME_STRICT:
	case KG_USERNAME_REWRITE:
	case KG_USERNAME_PASS:
		return ca->username_check;
	}
	return KG_USERNAME_STRICT;
}

void kg_policy_decide(const struct kg_policy_input *in, struct kg_verdict *out)
{
	enum kg_connack connack;
	enum kg_reason r;
	const struct kg_device *dev;
	const struct kg_identity *id;

	memset(out, 0, sizeof(*out));
	deny(out, KG_REASON_UNKNOWN_DEVICE, KG_CONNACK_NOT_AUTHORIZED);
	if (in == NULL || in->id == NULL || in->cfg == NULL)
		return;   /* caller bug: refuse */
	id = in->id;
	dev = in->device;
	/* A pinned leaf answers to no CA: only a CA-attested identity takes its CA's rule. */
	out->username_check = kg_policy_username_check(in->cfg->username_check,
						       id->method == KG_ATT_CA ? in->ca : NULL);

	/* A disabled or revoked CA stops every device under it, enrolled or not: checked
	 * before auto-enrolment, so a compromised CA cannot mint new devices either. */
	if ((r = kg_policy_ca_status(id, in->ca, &connack)) != KG_REASON_OK) {
		deny(out, r, connack);
		return;
	}

	if (dev == NULL) {
		if (in->ca != NULL && in->ca->auto_enroll && id->method == KG_ATT_CA)
			pick_backend(in, out, KG_REASON_ENROLLED);
		return;
	}

	if (dev->status != KG_DEV_ENABLED) {
		if ((unsigned)dev->status < KG_DEV_STATUS_MAX)
			deny(out, status_refusal[dev->status].reason, status_refusal[dev->status].connack);
		else
			deny(out, KG_REASON_DISABLED, KG_CONNACK_NOT_AUTHORIZED);
		return;
	}

	if (dev->attestation != id->method) {
		deny(out, KG_REASON_ATTESTATION_MISMATCH, KG_CONNACK_NOT_AUTHORIZED);
		return;
	}
	/*
	 * A CA-attested device bound to its enrolling CA may only come back through that
	 * CA: otherwise any other registered CA could mint a certificate with this CN
	 * and take the device over. Devices added without a CA ("") accept any proven CA.
	 */
	if (dev->attestation == KG_ATT_CA && have_name(dev->ca_name) &&
	    strncmp(dev->ca_name, id->ca_name, KG_NAME_MAX) != 0) {
		deny(out, KG_REASON_ATTESTATION_MISMATCH, KG_CONNACK_NOT_AUTHORIZED);
		return;
	}

	/*
	 * A pinned leaf is this device only while the row still pins it. The full
	 * handshake looked the pin up (verify.c), but a session resumed from a ticket or
	 * revalidated while live (worker.c) has only this row: a pin changed or removed
	 * since then must cut it like a disabled device.
	 */
	if (dev->attestation == KG_ATT_THUMBPRINT && !kg_policy_pinned(dev, id->thumbprint)) {
		deny(out, KG_REASON_THUMBPRINT_MISMATCH, KG_CONNACK_NOT_AUTHORIZED);
		return;
	}

	pick_backend(in, out, KG_REASON_OK);
}

bool kg_policy_pinned(const struct kg_device *dev, const char *thumb_hex)
{
	bool primary, secondary;

	if (dev == NULL || thumb_hex == NULL ||
	    strnlen(thumb_hex, KG_SHA256_HEX_LEN + 1) != KG_SHA256_HEX_LEN)
		return false;
	/* Both compared, constant time: which slot matched is nobody's business. */
	primary = dev->thumb_primary[0] != '\0' &&
		  kg_cred_equal(dev->thumb_primary, thumb_hex, KG_SHA256_HEX_LEN);
	secondary = dev->thumb_secondary[0] != '\0' &&
		    kg_cred_equal(dev->thumb_secondary, thumb_hex, KG_SHA256_HEX_LEN);
	return primary || secondary;
}

bool kg_policy_client_id_ok(const struct kg_config *cfg, const struct kg_identity *id,
			    const uint8_t *client_id, size_t len)
{
	size_t id_len;

	if (cfg == NULL || id == NULL)
		return false;
	switch (cfg->client_id_check) {
	case KG_CLIENT_ID_OFF:
		return true;
	case KG_CLIENT_ID_EXACT:
		id_len = strnlen(id->device_id, sizeof(id->device_id));
		/* An empty identity matches nothing, not an empty client id. */
		if (id_len == 0 || id_len == sizeof(id->device_id) || len != id_len ||
		    client_id == NULL)
			return false;
		return memcmp(client_id, id->device_id, len) == 0;
	}
	return false;   /* unknown mode: fail closed */
}
