/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kg_regtool.c - makes the registries an upgrade meets, for tests: an SQLite registry
 * created at an older schema version (what an earlier build left), through the
 * store's own migration steps, so the file is exactly what that build wrote.
 *   kg-regtool create PATH VERSION    create PATH at schema VERSION (1..latest)
 *   kg-regtool version PATH           print PATH's schema version
 *   kg-regtool sas-verify PATH ID HUB TOKEN
 *                                     check a SAS token against device ID's stored keys
 *                                     the way the CONNECT check will (the pure parser's
 *                                     rules, HMAC-SHA256 on OpenSSL, canonical form then
 *                                     as sent): prints "ok SLOT" (exit 0) or "refused: why"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ops/err.h"
#include "policy/credential.h"
#include "registry/registry.h"

static int usage(void)
{
	fprintf(stderr, "usage: kg-regtool create PATH VERSION | kg-regtool version PATH |"
			" kg-regtool sas-verify PATH ID HUB TOKEN\n");
	return 2;
}

static int refused(const char *why)
{
	printf("refused: %s\n", why);
	return 1;
}

/* Does sig equal HMAC-SHA256(key, the string to sign in `form`)? */
static bool sig_ok(const struct kg_sas *t, enum kg_sas_sign_form form, const uint8_t *key,
		   size_t key_len)
{
	char msg[2 * KG_SAS_TOKEN_MAX];
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	size_t len = kg_sas_string_to_sign(t, form, msg, sizeof(msg));

	if (len == 0 || HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)msg, len, mac,
			     &mac_len) == NULL || mac_len != KG_SAS_SIG_LEN)
		return false;
	return kg_cred_equal(mac, t->sig, KG_SAS_SIG_LEN);
}

static int sas_verify(const char *path, const char *id, const char *hub, const char *tok)
{
	struct kg_credential creds[KG_CRED_PER_DEVICE];
	struct kg_registry *reg = NULL;
	uint8_t key[KG_SAS_KEY_MAX];
	const char *why = NULL;
	char err[512] = "";
	struct kg_sas t;
	size_t n = 0;
	int rc;

	if (!kg_sas_parse(tok, strlen(tok), &t, &why) ||
	    !kg_sas_resource_ok(&t, hub, strlen(hub), id, strlen(id), &why) ||
	    !kg_sas_time_ok(&t, (int64_t)time(NULL), 0, &why))
		return refused(why);
	if (kg_registry_open(path, KG_REG_READONLY, &reg, err, sizeof(err)) != 0) {
		fprintf(stderr, "kg-regtool: %s\n", err);
		return 3;
	}
	rc = kg_registry_cred_get(reg, id, creds, &n);
	kg_registry_close(reg);
	if (rc != 0) {
		fprintf(stderr, "kg-regtool: credentials of %s: %s\n", id, kg_err_str(rc));
		return 3;
	}
	for (size_t i = 0; i < n; i++) {
		size_t klen;

		if (creds[i].kind != KG_ATT_SAS)
			continue;
		klen = kg_sas_key_decode(creds[i].secret, strlen(creds[i].secret), key, &why);
		if (klen == 0)
			return refused(why);
		if (sig_ok(&t, KG_SAS_SIGN_CANONICAL, key, klen) || sig_ok(&t, KG_SAS_SIGN_AS_SENT, key, klen)) {
			printf("ok %s\n", kg_cred_slot_str(creds[i].slot));
			return 0;
		}
	}
	return refused("no key of the device signed this token");
}

int main(int argc, char **argv)
{
	char err[512] = "";
	int version = 0;

	if (argc == 4 && strcmp(argv[1], "create") == 0) {
		char *end;
		long v = strtol(argv[3], &end, 10);

		if (*end != '\0' || v < 1 || v > kg_registry_sqlite_schema_latest())
			return usage();
		if (kg_registry_sqlite_migrate(argv[2], (int)v, err, sizeof(err)) != 0) {
			fprintf(stderr, "kg-regtool: %s\n", err);
			return 1;
		}
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "version") == 0) {
		if (kg_registry_sqlite_version(argv[2], &version, err, sizeof(err)) != 0) {
			fprintf(stderr, "kg-regtool: %s\n", err);
			return 1;
		}
		printf("%d\n", version);
		return 0;
	}
	if (argc == 6 && strcmp(argv[1], "sas-verify") == 0)
		return sas_verify(argv[2], argv[3], argv[4], argv[5]);
	return usage();
}
