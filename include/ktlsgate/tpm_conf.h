/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm_conf.h - the [tpm] section of ktlsgate.conf: where the TPM is (TCTI) and how the
 * server key in it is used. Parsed by tpm_conf.c through config.c's section table
 * (config.c adds file and line to messages and rejects duplicate keys). Plain data:
 * no OpenSSL or TSS types here, so config.h can embed it.
 */
#ifndef KTLSGATE_TPM_CONF_H
#define KTLSGATE_TPM_CONF_H

#include <stdbool.h>
#include <stddef.h>

struct kg_config;

struct kg_tpm_conf {
	bool present;      /* the file has a [tpm] section */
	char tcti[256];    /* e.g. "swtpm:host=127.0.0.1,port=2321", "device:/dev/tpmrm0" */
};

void kg_tpm_conf_defaults(void *sec);
/* One "key = value" of [tpm]; dir anchors relative paths (NULL: none). Returns 0, or
 * -1 with a reason in why (no file or line: the caller adds them). */
int kg_tpm_conf_set(void *sec, const char *key, const char *value, const char *dir, char *why,
		    size_t whylen);
/* After the whole file: cross-checks against the rest of cfg. 0, or -1 with why. */
int kg_tpm_conf_validate(void *sec, const struct kg_config *cfg, char *why, size_t whylen);

#endif
