/* SPDX-License-Identifier: BSD-2-Clause */
/* tpm_conf.c - parse the [tpm] section (contract in tpm_conf.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/conf_value.h"
#include "ops/config.h"
#include "tpm/tpm_conf.h"

void kg_tpm_conf_defaults(void *sec)
{
	struct kg_tpm_conf *t = sec;

	memset(t, 0, sizeof(*t));
	t->mode = KG_TPM_MODE_DIRECT;
	t->leaf_lifetime = KG_TPM_LEAF_LIFETIME_DEFAULT;
	t->sign_queue = 64;
	t->sign_timeout_ms = 1000;
}

const char *kg_tpm_mode_name(enum kg_tpm_mode mode)
{
	return mode == KG_TPM_MODE_CERTIFIED_LEAF ? "certified-leaf" : "direct";
}

int kg_tpm_parse_handle(const char *text, uint32_t *handle)
{
	unsigned long long v;
	char *end;

	/* Hex only, with its 0x: a decimal handle is always a typo. */
	if (text == NULL || (strncmp(text, "0x", 2) != 0 && strncmp(text, "0X", 2) != 0) ||
	    !isxdigit((unsigned char)text[2]))
		return -1;
	errno = 0;
	v = strtoull(text + 2, &end, 16);
	if (errno != 0 || *end != '\0' || v < KG_TPM_PERSISTENT_FIRST || v > KG_TPM_PERSISTENT_LAST)
		return -1;
	*handle = (uint32_t)v;
	return 0;
}

int kg_tpm_parse_keyref(const char *keyref, uint32_t *handle)
{
	size_t n = strlen(KG_TPM_HANDLE_PREFIX);

	if (strncmp(keyref, KG_TPM_HANDLE_PREFIX, n) != 0)
		return -1;
	return kg_tpm_parse_handle(keyref + n, handle);
}

bool kg_tpm_tcti_valid(const char *tcti)
{
	size_t i;

	/* The module name: tpm2-tss loads libtss2-tcti-<name>.so. */
	for (i = 0; tcti[i] != '\0' && tcti[i] != ':'; i++)
		if (!isalnum((unsigned char)tcti[i]) && tcti[i] != '-' && tcti[i] != '_')
			return false;
	if (i == 0)
		return false;
	/* The rest is passed on verbatim (TPM2OPENSSL_TCTI, log lines): nothing in it may
	 * mean something to a shell, a config reader or a terminal. */
	for (; tcti[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)tcti[i];

		if (ch < 0x20 || ch == 0x7f || strchr("$#\\\"'", ch) != NULL)
			return false;
	}
	return true;
}

static int set_path(char *dst, size_t cap, const char *value, const char *dir, const char *key,
		    char *why, size_t whylen)
{
	int n;

	if (value[0] == '\0') {
		snprintf(why, whylen, "'%s' wants a file name", key);
		return -1;
	}
	if (value[0] == '/' || dir == NULL)
		n = snprintf(dst, cap, "%s", value);
	else
		n = snprintf(dst, cap, "%s/%s", dir, value);
	if (n < 0 || (size_t)n >= cap) {
		snprintf(why, whylen, "'%s': path too long", key);
		return -1;
	}
	return 0;
}

int kg_tpm_conf_set(void *sec, const char *key, const char *value, const char *dir, char *why,
		    size_t whylen)
{
	struct kg_tpm_conf *t = sec;

	t->present = true;
	if (strcmp(key, "tcti") == 0) {
		if (strlen(value) >= sizeof(t->tcti)) {
			snprintf(why, whylen, "'tcti': value too long (max %zu bytes)",
				 sizeof(t->tcti) - 1);
			return -1;
		}
		if (!kg_tpm_tcti_valid(value)) {
			snprintf(why, whylen,
				 "'tcti': '%.64s' is not NAME or NAME:CONF (e.g. "
				 "swtpm:host=127.0.0.1,port=2321 or device:/dev/tpmrm0)",
				 value);
			return -1;
		}
		memcpy(t->tcti, value, strlen(value) + 1);
		return 0;
	}
	if (strcmp(key, "key_fallback") == 0)
		return set_path(t->key_fallback, sizeof(t->key_fallback), value, dir, key, why,
				whylen);
	if (strcmp(key, "cert_fallback") == 0)
		return set_path(t->cert_fallback, sizeof(t->cert_fallback), value, dir, key, why,
				whylen);
	if (strcmp(key, "mode") == 0) {
		if (strcmp(value, "direct") == 0)
			t->mode = KG_TPM_MODE_DIRECT;
		else if (strcmp(value, "certified-leaf") == 0)
			t->mode = KG_TPM_MODE_CERTIFIED_LEAF;
		else {
			snprintf(why, whylen, "'mode': '%.40s' is not direct or certified-leaf", value);
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "leaf_lifetime") == 0) {
		if (kg_conf_duration(value, KG_TPM_LEAF_LIFETIME_MIN, KG_TPM_LEAF_LIFETIME_MAX,
					  &t->leaf_lifetime) != 0) {
			snprintf(why, whylen,
				 "'leaf_lifetime': '%.40s' is not a duration from 20s to 30d "
				 "(e.g. 3600, 90m, 24h, 7d)", value);
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "sign_queue") == 0) {
		if (kg_conf_uint(value, 1, 4096, &t->sign_queue) != 0) {
			snprintf(why, whylen, "'sign_queue': want 1..4096");
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "sign_timeout_ms") == 0) {
		if (kg_conf_uint(value, 10, 60000, &t->sign_timeout_ms) != 0) {
			snprintf(why, whylen, "'sign_timeout_ms': want 10..60000");
			return -1;
		}
		return 0;
	}
	snprintf(why, whylen, "unknown key '%s' in [tpm]", key);
	return -1;
}

int kg_tpm_conf_validate(void *sec, const struct kg_config *cfg, char *why, size_t whylen)
{
	struct kg_tpm_conf *t = sec;
	uint32_t h;

	/* config.c keeps any "handle:..." as is; what a handle may be is known here. */
	if (strncmp(cfg->key_file, KG_TPM_HANDLE_PREFIX, strlen(KG_TPM_HANDLE_PREFIX)) == 0 &&
	    kg_tpm_parse_keyref(cfg->key_file, &h) != 0) {
		snprintf(why, whylen,
			 "[daemon] key '%.40s': a TPM handle is handle:0x81000000..0x81ffffff",
			 cfg->key_file);
		return -1;
	}
	if (t->cert_fallback[0] != '\0' && t->key_fallback[0] == '\0') {
		snprintf(why, whylen, "'cert_fallback' without 'key_fallback'");
		return -1;
	}
	return 0;
}
