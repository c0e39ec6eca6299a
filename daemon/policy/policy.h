/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * policy.h - the policy part: may this verified device connect, and to which backend?
 *
 * One way in: kg_policy_decide(identity, device row, CA row, config) -> verdict (allow,
 * enrol or refuse; the reason, the CONNACK to answer, the backend). The connection
 * calls it after the handshake, the worker again when the registry changes, `ktlsgate
 * verify` offline; the helpers below judge the CONNECT's client id and user name rule.
 * The part: policy.c (the decision), reason.c (the one table of audit and metric
 * reasons), identity.h / identity.c (the verified identity as plain data, and the
 * device id rule the verifier and the CLI share).
 * Pure: no I/O, no clock, no allocation, no logging, no OpenSSL, nothing from tls/, the
 * connection or the event loop. The caller fetched the rows and acts on the verdict
 * (the mosquitto lesson: parse, decide and act live apart). `make lint` enforces the
 * includes (scripts/lint-pure.sh); tests/fuzz/fuzz_policy.c links this folder alone.
 */
#ifndef KTLSGATE_POLICY_H
#define KTLSGATE_POLICY_H

#include <stdbool.h>

#include "ops/config.h"
#include "mqtt/mqtt.h"
#include "policy/identity.h"
#include "policy/reason.h"
#include "registry/registry.h"

struct kg_policy_input {
	const struct kg_identity *id;   /* verified identity (required) */
	const struct kg_device *device; /* its registry row, NULL if unknown */
	const struct kg_ca *ca;         /* the issuing CA's row (CA method), else NULL */
	const struct kg_config *cfg;    /* backends, default backend */
};

struct kg_verdict {
	bool allow;
	bool enroll;                    /* allow, and create the device row (auto-enroll CA) */
	enum kg_reason reason;
	enum kg_connack connack;        /* what to answer the CONNECT on deny */
	char backend[KG_NAME_MAX];      /* chosen backend on allow */
	/* The rule for the CONNECT's user name (kg_policy_username_check()); set on every
	 * verdict with valid input, strict otherwise. */
	enum kg_username_check username_check;
};

/*
 * Which username_check applies to a device: its CA's own (`ca set --username-check`,
 * has_username_check) when the device came through a registered CA, else `global`
 * ([daemon] username_check). ca NULL (a pinned leaf, no CA row): global. A CA's value
 * this build does not know is strict (fail closed).
 */
enum kg_username_check kg_policy_username_check(enum kg_username_check global,
						const struct kg_ca *ca);

/*
 * The issuing CA's standing for a CA-attested identity: KG_REASON_OK, or
 * KG_REASON_CA_DISABLED (status disabled: CONNACK "not authorized"; revoked or
 * unknown: "banned"). ca NULL: no status to judge, OK. `ca` carries
 * the effective status (the trust store folds in every registered CA above it).
 * Thumbprint identities answer to no CA: always OK. connack may be NULL.
 */
enum kg_reason kg_policy_ca_status(const struct kg_identity *id, const struct kg_ca *ca,
				   enum kg_connack *connack);

/*
 * Decide. First the CA's status (kg_policy_ca_status()): a CA-attested identity whose
 * CA is not enabled is refused CA_DISABLED. Unknown device: allowed and enrolled if its CA is auto-enroll, else
 * UNKNOWN_DEVICE. Status other than enabled: refused (quarantined and decommissioned
 * map to CONNACK "banned", others to "not authorized"). The method must match the
 * device's attestation. Backend: device's, else CA's, else cfg->default_backend; it
 * must exist in cfg (else NO_BACKEND, "server unavailable").
 * A CA-attested device whose row names a CA (ca_name) must come through that CA
 * (else ATTESTATION_MISMATCH). A thumbprint-attested device's row must pin the
 * identity's thumbprint (kg_policy_pinned(), else THUMBPRINT_MISMATCH: a pin changed
 * or removed after the handshake, seen by a resumption or a live revalidation).
 * On NO_BACKEND, out->backend holds the name tried.
 */
void kg_policy_decide(const struct kg_policy_input *in, struct kg_verdict *out);

/*
 * Does the row pin this leaf: thumb_hex (64 lowercase hex digits) equals its primary or
 * secondary thumbprint? An empty slot pins nothing; NULL or a malformed thumb_hex: false.
 */
bool kg_policy_pinned(const struct kg_device *dev, const char *thumb_hex);

/*
 * Does the CONNECT's client id satisfy the identity under cfg->client_id_check?
 * EXACT: bytes equal the device id.
 */
bool kg_policy_client_id_ok(const struct kg_config *cfg, const struct kg_identity *id,
			    const uint8_t *client_id, size_t len);

#endif
