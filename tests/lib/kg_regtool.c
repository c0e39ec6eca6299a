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
 *   kg-regtool auth-check PATH CLIENTID USER PASSWORD [KEY=VALUE...]
 *                                     the daemon's CONNECT credential check itself
 *                                     (daemon/auth/: kg_auth_check, a scrypt job through a
 *                                     real auth_pool and its eventfd, the limiter) on the
 *                                     registry at PATH; USER or PASSWORD "-" is absent.
 *                                     KEY=VALUE are [auth] keys, and repeat=N (attempts in
 *                                     a row, one limiter). One line per attempt:
 *                                     "ok KIND DEVICE" or "refused KIND REASON C311 C5"
 *                                     (the CONNACK codes, hex); exit 0 if the last was ok.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/auth_check.h"
#include "auth/auth_pool.h"
#include "ops/err.h"
#include "policy/credential.h"
#include "registry/registry.h"

static int usage(void)
{
	fprintf(stderr, "usage: kg-regtool create PATH VERSION | kg-regtool version PATH |"
			" kg-regtool sas-verify PATH ID HUB TOKEN |"
			" kg-regtool auth-check PATH CLIENTID USER PASSWORD [KEY=VALUE...]\n");
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

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One attempt through the engine as a worker runs it: the fast step, and for basic the
 * job through the pool, its result read after the worker's eventfd fires. */
static int auth_once(const struct kg_auth_conf *conf, struct kg_registry *reg,
		     struct kg_auth_limit *lim, struct kg_auth_pool *pool,
		     const struct kg_auth_input *in, uint64_t tag)
{
	struct kg_auth_result res;
	struct kg_auth_job job;
	struct kg_auth_done done;

	kg_auth_check(conf, reg, lim, in, &res, &job);
	if (res.status == KG_AUTH_PENDING) {
		struct pollfd pfd = { .fd = kg_auth_pool_fd(pool, 0), .events = POLLIN };
		int rc = kg_auth_pool_submit(pool, 0, tag, &job);

		if (rc == KG_E_BUSY) {
			res.status = KG_AUTH_REFUSED;
			res.reason = KG_REASON_AUTH_OVERLOAD;
			res.connack = KG_CONNACK_SERVER_UNAVAILABLE;
		} else if (rc != 0 || poll(&pfd, 1, 60000) != 1 ||
			   kg_auth_pool_pop(pool, 0, &done, 1) != 1 || done.tag != tag) {
			fprintf(stderr, "kg-regtool: the pool gave no result\n");
			return 3;
		} else {
			res = done.res;
		}
	}
	if (res.status == KG_AUTH_OK) {
		printf("ok %s %s\n", kg_auth_kind_str(res.kind), res.device.id);
		return 0;
	}
	printf("refused %s %s 0x%02x 0x%02x\n", kg_auth_kind_str(res.kind), kg_reason_str(res.reason),
	       kg_mqtt_connack_code(KG_MQTT_V311, res.connack),
	       kg_mqtt_connack_code(KG_MQTT_V5, res.connack));
	return 1;
}

static int auth_check(int argc, char **argv)
{
	const char *path = argv[2], *cid = argv[3], *user = argv[4], *pw = argv[5];
	struct kg_registry *reg = NULL;
	struct kg_auth_limit *lim = NULL;
	struct kg_auth_pool *pool = NULL;
	struct kg_auth_conf conf;
	struct kg_auth_input in;
	unsigned long repeat = 1;
	char err[512] = "";
	int rc = 3;

	kg_auth_conf_defaults(&conf);
	for (int i = 6; i < argc; i++) {
		char key[64], *eq = strchr(argv[i], '=');

		if (eq == NULL || (size_t)(eq - argv[i]) >= sizeof(key))
			return usage();
		snprintf(key, sizeof(key), "%.*s", (int)(eq - argv[i]), argv[i]);
		if (strcmp(key, "repeat") == 0)
			repeat = strtoul(eq + 1, NULL, 10);
		else if (kg_auth_conf_set(&conf, key, eq + 1, NULL, err, sizeof(err)) != 0) {
			fprintf(stderr, "kg-regtool: %s\n", err);
			return 2;
		}
	}
	if (kg_registry_open(path, KG_REG_READONLY, &reg, err, sizeof(err)) != 0) {
		fprintf(stderr, "kg-regtool: %s\n", err);
		return 3;
	}
	lim = kg_auth_limit_new(conf.failure_burst, conf.failure_refill_ms, conf.failure_track);
	if (lim == NULL || kg_auth_pool_new(conf.kdf_threads, conf.kdf_queue, 1, &pool) != 0)
		goto out;
	memset(&in, 0, sizeof(in));
	if (strcmp(user, "-") != 0) {
		in.username = user;
		in.username_len = strlen(user);
	}
	if (strcmp(pw, "-") != 0) {
		in.password = (const uint8_t *)pw;
		in.password_len = strlen(pw);
	}
	in.client_id = cid;
	in.client_id_len = strlen(cid);
	in.source_key = "127.0.0.1/32";
	for (unsigned long i = 0; i < repeat; i++) {
		in.now = (int64_t)time(NULL);
		in.now_ms = mono_ms();
		rc = auth_once(&conf, reg, lim, pool, &in, i + 1);
		if (rc > 1)
			break;
	}
out:
	kg_auth_pool_free(pool);
	kg_auth_limit_free(lim);
	kg_registry_close(reg);
	return rc;
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
	if (argc >= 6 && strcmp(argv[1], "auth-check") == 0)
		return auth_check(argc, argv);
	return usage();
}
