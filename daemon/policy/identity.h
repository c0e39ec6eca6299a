/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * identity.h - who a verified device is, as plain data: the device id its leaf's CN
 * names, how it was attested (registered CA or thumbprint pin) and what the verifier
 * learnt on the way. tls/verify.c fills it from the certificate; the policy decides on
 * it. No OpenSSL types here, so the policy (and its fuzz target) compile without them.
 *
 * kg_identity_valid() is the one rule for a device id, pure (identity.c): the verifier
 * applies it to the CN, the CLI to the ids an operator types or imports.
 */
#ifndef KTLSGATE_IDENTITY_H
#define KTLSGATE_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/registry.h"

struct kg_identity {
	char device_id[KG_DEVICE_ID_MAX + 1];   /* the whole CN: "dev" or "dev/module" */
	size_t module_off;                      /* 0: no module; else index after '/' */
	char thumbprint[KG_SHA256_HEX_LEN + 1]; /* SHA-256 of the leaf DER, lowercase hex */
	enum kg_attestation method;
	char ca_name[KG_NAME_MAX];              /* issuing registered CA ("" for thumbprint) */
	int64_t not_after;                      /* leaf notAfter, unix seconds */
	/* Accepted although the CRL of CA crl_grace_ca expired at crl_next_update: within
	 * crl_grace. The caller warns (kg_trust_crl_warn_due() rate-limits it). */
	char crl_grace_ca[KG_NAME_MAX];
	int64_t crl_next_update;
};

/*
 * Is `cn` (len bytes, may contain anything) a valid device id? 1..128 bytes,
 * printable ASCII 0x21..0x7e, at most one '/' separating deviceId/moduleId with both
 * sides non-empty, no "." or ".." component. Returns true and sets *module_off.
 */
bool kg_identity_valid(const char *cn, size_t len, size_t *module_off);

#endif
