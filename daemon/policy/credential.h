/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * credential.h - the credentials a device may present beside X.509, as pure parsers
 * (issue 15): Azure IoT Hub SAS tokens and the MQTT user name Azure devices send,
 * the registry's stored forms of a password (scrypt, PHC string) and of an access
 * token (SHA-256 hex), a device's symmetric key, and the strict base64 they share.
 *
 * Ways in: kg_sas_parse() + kg_sas_string_to_sign() + kg_sas_resource_ok() +
 * kg_sas_time_ok() for a SAS token (the HMAC-SHA256 over the string to sign is a
 * later module's, on OpenSSL); kg_azure_username_parse(); kg_scrypt_parse() /
 * kg_scrypt_format() for a stored password hash; kg_token_ok() / kg_token_hash_ok()
 * for access tokens. Formats, limits and why: docs/credentials.md.
 * Part of the policy part, pure like it: no I/O, no clock (the caller passes now), no
 * allocation, no OpenSSL. Every function that can refuse says why in a constant
 * sentence (`*why`), fit for an audit line. Fuzzed by tests/fuzz/fuzz_credential.c.
 */
#ifndef KTLSGATE_CREDENTIAL_H
#define KTLSGATE_CREDENTIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"

/* ---- base64 (RFC 4648 section 4, the standard alphabet) -------------------------- */

/*
 * Decode in[0..len) into out (cap bytes). padded: '=' padding required to a multiple
 * of 4 (SAS signatures, device keys); else none allowed (PHC strings). Strict: no
 * whitespace, no URL-safe alphabet, unused bits of the last character must be zero,
 * so a byte string has exactly one spelling. Returns the bytes written, or -1 (bad
 * text, or more than cap bytes).
 */
long kg_b64_decode(const char *in, size_t len, bool padded, uint8_t *out, size_t cap) KG_MUST_USE;

/* Encode n bytes; writes a NUL. Returns the characters written (without the NUL): 0
 * for n == 0, and when cap is too small (then nothing is written). */
size_t kg_b64_encode(const uint8_t *in, size_t n, bool padded, char *out, size_t cap);

/* ---- Azure IoT Hub SAS tokens ---------------------------------------------------- */

#define KG_SAS_TOKEN_MAX 1024   /* the whole "SharedAccessSignature ..." string */
#define KG_SAS_SR_MAX 512       /* the resource URI, decoded */
#define KG_SAS_SKN_MAX 64       /* a shared access policy name, decoded */
#define KG_SAS_SIG_LEN 32       /* HMAC-SHA256 */
#define KG_SAS_KEY_MIN 16       /* a device's symmetric key, decoded bytes */
#define KG_SAS_KEY_MAX 64

struct kg_sas {
	char sr[KG_SAS_SR_MAX + 1];     /* resource URI, URL-decoded, NUL-terminated */
	size_t sr_len;
	const char *sr_raw;             /* sr as sent (still URL-encoded), borrowed */
	size_t sr_raw_len;
	const char *se_raw;             /* se as sent, borrowed */
	size_t se_raw_len;
	int64_t se;                     /* expiry, seconds since the epoch */
	uint8_t sig[KG_SAS_SIG_LEN];    /* the signature, decoded */
	bool has_skn;
	char skn[KG_SAS_SKN_MAX + 1];   /* policy name ("" when absent) */
	size_t skn_len;
};

/*
 * Parse "SharedAccessSignature sr=...&sig=...&se=...[&skn=...]": fields in any order,
 * each once, values URL-decoded (%XX; '+' is a '+'). Invalid: no such prefix, a field
 * without '=', an unknown or repeated field, sr/sig/se missing, a bad %-escape or a
 * decoded control byte, se not a decimal number without leading zero that fits
 * int64_t, sig not the base64 of 32 bytes, a value over its limit, a token over
 * KG_SAS_TOKEN_MAX. *out borrows from tok (sr_raw, se_raw).
 */
bool kg_sas_parse(const char *tok, size_t len, struct kg_sas *out, const char **why) KG_MUST_USE;

enum kg_sas_sign_form {
	/* Azure's documented form: the decoded resource URI percent-encoded again
	 * (everything but A-Z a-z 0-9 - _ . ~ as %XX, upper case: Python's quote_plus,
	 * .NET's WebUtility.UrlEncode, Node's encodeURIComponent for these bytes),
	 * "\n", the expiry in decimal. */
	KG_SAS_SIGN_CANONICAL,
	/* sr exactly as the token carried it, "\n", se as it carried it: what SDKs that
	 * sign their own sr field (the C SDK) signed, whatever their escaping. */
	KG_SAS_SIGN_AS_SENT,
};

/* Write the string the device's key signed, in `form`, with a NUL. Returns its length,
 * 0 when cap is too small. The later HMAC module tries the canonical form, then the
 * as-sent one: both carry the same resource and expiry, so neither admits more. */
size_t kg_sas_string_to_sign(const struct kg_sas *s, enum kg_sas_sign_form form, char *out,
			     size_t cap);

/*
 * Is the token's resource this device? sr must be "{hub_host}/devices/{id}" (for a
 * module identity "dev/mod": "{hub_host}/devices/{dev}/modules/{mod}"); the host is
 * compared without regard to ASCII case (DNS), the rest byte for byte (Azure device
 * ids are case-sensitive). A token with skn (a hub-level policy key, not the device's)
 * is refused. hub_host: e.g. "myhub.azure-devices.net", configurable.
 */
bool kg_sas_resource_ok(const struct kg_sas *s, const char *hub_host, size_t hub_len,
			const char *id, size_t id_len, const char **why) KG_MUST_USE;

/* Is the token valid at `now` (seconds since the epoch)? Expired when now >= se. When
 * max_ttl > 0, a token expiring more than max_ttl seconds after now is refused too (a
 * token good for years is a password). */
bool kg_sas_time_ok(const struct kg_sas *s, int64_t now, int64_t max_ttl, const char **why) KG_MUST_USE;

/* Decode a device's symmetric key (padded base64 of KG_SAS_KEY_MIN..MAX bytes, as
 * Azure shows primary and secondary keys) into key[KG_SAS_KEY_MAX]. Returns its
 * length, 0 when invalid (*why says why). */
size_t kg_sas_key_decode(const char *b64, size_t len, uint8_t *key, const char **why);

/* ---- the MQTT user name of Azure devices ----------------------------------------- */

#define KG_AZURE_USERNAME_MAX 1024
#define KG_HOST_MAX 253

struct kg_azure_user {
	const char *hub;          /* the IoT hub host name, borrowed */
	size_t hub_len;
	const char *id;           /* "deviceId" or "deviceId/moduleId": the device id */
	size_t id_len;            /*   as the registry spells it (identity.h), borrowed */
	size_t module_off;        /* 0: no module; else index of the module id in id */
	const char *api_version;  /* the api-version parameter's value, NULL when absent */
	size_t api_version_len;
	const char *query;        /* everything after "?" (or the old form's
				   * "api-version=..." segment), NULL when absent */
	size_t query_len;
};

/* Is h[0..n) a host name as Azure user names carry it: 1..KG_HOST_MAX bytes of ASCII
 * letters, digits, '-' and '.'? ([auth] sas_hub is held to the same rule, so a
 * configured hub can ever match a user name's.) */
bool kg_host_ok(const char *h, size_t n) KG_MUST_USE;

/*
 * Parse "{hub}/{deviceId}/?api-version=...[&...]", and the older forms
 * "{hub}/{deviceId}/api-version=...", "{hub}/{deviceId}/", "{hub}/{deviceId}", each
 * also with "/{moduleId}" after the device id. A segment after the device id that
 * starts with '?' or "api-version=" is the query, anything else the module id. The
 * hub is 1..253 bytes of letters, digits, '-' and '.'; the id must be a valid device
 * id (kg_identity_valid()).
 */
bool kg_azure_username_parse(const char *u, size_t len, struct kg_azure_user *out,
			     const char **why) KG_MUST_USE;

/* ---- stored password hash: "$scrypt$ln=15,r=8,p=1$<salt>$<hash>" ----------------- */

#define KG_SCRYPT_LN_MIN 10             /* N = 2^ln: 1024 */
#define KG_SCRYPT_LN_MAX 17             /* 131072 */
#define KG_SCRYPT_R_MAX 32
#define KG_SCRYPT_P_MAX 16
#define KG_SCRYPT_MEM_MAX (128u << 20)  /* 128 * r * N bytes, the V array */
#define KG_SCRYPT_WORK_MAX (1u << 21)   /* N * r * p: about a second of one core */
#define KG_SCRYPT_SALT_MIN 16
#define KG_SCRYPT_SALT_MAX 64
#define KG_SCRYPT_HASH_MIN 32
#define KG_SCRYPT_HASH_MAX 64
#define KG_SCRYPT_DEFAULT_LN 15
#define KG_SCRYPT_DEFAULT_R 8
#define KG_SCRYPT_DEFAULT_P 1
#define KG_SCRYPT_STR_MAX 200           /* the longest string kg_scrypt_format() writes */

struct kg_scrypt {
	unsigned int ln, r, p;
	uint8_t salt[KG_SCRYPT_SALT_MAX];
	size_t salt_len;
	uint8_t hash[KG_SCRYPT_HASH_MAX];
	size_t hash_len;
};

/* Are these parameters within the bounds above? */
bool kg_scrypt_params_ok(unsigned int ln, unsigned int r, unsigned int p, const char **why) KG_MUST_USE;

/* The memory the KDF needs for s's parameters (128 * r * (N + p + 2) bytes): the
 * maxmem to give OpenSSL's scrypt, whose default (32 MiB) is below the bound. */
uint64_t kg_scrypt_mem(const struct kg_scrypt *s);

/* Parse the PHC string: exactly "$scrypt$ln=L,r=R,p=P$SALT$HASH", decimals without
 * leading zeros, SALT and HASH unpadded base64 of the sizes above, parameters within
 * bounds. A registry row is data: a row that would cost minutes is refused here. */
bool kg_scrypt_parse(const char *s, size_t len, struct kg_scrypt *out, const char **why) KG_MUST_USE;

/* Format *h (its parameters within bounds, salt and hash sizes in range) with a NUL.
 * Returns the length, 0 when h is out of bounds or cap too small. */
size_t kg_scrypt_format(const struct kg_scrypt *h, char *out, size_t cap);

/* ---- access tokens --------------------------------------------------------------- */

#define KG_TOKEN_MIN 8
#define KG_TOKEN_MAX 256
#define KG_TOKEN_HASH_HEX_LEN 64        /* SHA-256, lowercase hex */

/* Can this be an access token (the CONNECT's user name, ThingsBoard style)? 8..256
 * bytes of printable ASCII 0x21..0x7e. */
bool kg_token_ok(const char *tok, size_t len, const char **why) KG_MUST_USE;

/* Is this a stored token hash: exactly 64 lowercase hex digits? */
bool kg_token_hash_ok(const char *hex, size_t len) KG_MUST_USE;

/* Lowercase hex of n bytes into out (2n + 1 bytes, NUL-terminated): the stored form
 * of a token's SHA-256 (the digest itself is computed on OpenSSL, elsewhere). */
void kg_hex_lower(const uint8_t *in, size_t n, char *out);

/* Compare n bytes in time independent of where they differ (signatures, hashes). */
bool kg_cred_equal(const void *a, const void *b, size_t n);

#endif
