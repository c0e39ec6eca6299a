/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm_conf.h - the [tpm] section of ktlsgate.conf: where the TPM is (TCTI) and how the
 * server key in it is used. Parsed by tpm_conf.c through config.c's section table
 * (config.c adds file and line to messages and rejects duplicate keys). Plain data:
 * no OpenSSL or TSS types here, so config.h can embed it. The helpers below are pure.
 */
#ifndef KTLSGATE_TPM_CONF_H
#define KTLSGATE_TPM_CONF_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kg_config;

/* Persistent object handles (TPM 2.0 Part 2, 7.4: the 0x81 range). */
#define KG_TPM_PERSISTENT_FIRST 0x81000000u
#define KG_TPM_PERSISTENT_LAST 0x81ffffffu
#define KG_TPM_HANDLE_PREFIX "handle:"

/* How the TPM key serves handshakes (docs/tpm.md, "Modes"). */
enum kg_tpm_mode {
	KG_TPM_MODE_DIRECT,          /* every full handshake is signed by the TPM */
	KG_TPM_MODE_CERTIFIED_LEAF,  /* the TPM key certifies a short-lived in-memory key */
};

/* [tpm] leaf_lifetime bounds, seconds: 20 s (tests; rotation at 10 s, retries every
 * 5 s) to 30 days. */
#define KG_TPM_LEAF_LIFETIME_MIN 20u
#define KG_TPM_LEAF_LIFETIME_MAX (30u * 86400u)
#define KG_TPM_LEAF_LIFETIME_DEFAULT 86400u

struct kg_tpm_conf {
	bool present;                 /* the file has a [tpm] section */
	char tcti[256];               /* e.g. "swtpm:host=127.0.0.1,port=2321", "device:/dev/tpmrm0";
				       * "": tpm2-tss's default search (tabrmd, tpmrm0, tpm0...) */
	char key_fallback[PATH_MAX];  /* PEM key used (loudly) when the TPM is absent at start */
	char cert_fallback[PATH_MAX]; /* its chain; "": [daemon] cert */
	enum kg_tpm_mode mode;        /* default direct */
	unsigned leaf_lifetime;       /* certified-leaf: the leaf's validity, seconds */
	unsigned sign_queue;          /* signer: requests waiting at most (default 64) */
	unsigned sign_timeout_ms;     /* signer: a signature's deadline (default 1000) */
};

void kg_tpm_conf_defaults(void *sec);
/* One "key = value" of [tpm]; dir anchors relative paths (NULL: none). Returns 0, or
 * -1 with a reason in why (no file or line: the caller adds them). */
int kg_tpm_conf_set(void *sec, const char *key, const char *value, const char *dir, char *why,
		    size_t whylen);
/* After the whole file: cross-checks against the rest of cfg. 0, or -1 with why. */
int kg_tpm_conf_validate(void *sec, const struct kg_config *cfg, char *why, size_t whylen);

/* "0x81000101" (hex, the persistent range) -> *handle. 0, or -1. */
int kg_tpm_parse_handle(const char *text, uint32_t *handle);
/* "handle:0x81000101" -> *handle. 0; -1 when keyref is not a handle reference or bad. */
int kg_tpm_parse_keyref(const char *keyref, uint32_t *handle);
/* A TCTI string of tpm2-tss's loader syntax, "name" or "name:conf", with no quotes,
 * '$', '#', '\\' or control bytes (it travels through an environment variable and log
 * lines). */
bool kg_tpm_tcti_valid(const char *tcti);

/* "direct" / "certified-leaf" (the config's words). */
const char *kg_tpm_mode_name(enum kg_tpm_mode mode);

#endif
