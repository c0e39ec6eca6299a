/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * auth_check.c - the CONNECT credential check (contract in auth_check.h): the pure
 * parsers of policy/credential.h for the formats, OpenSSL for HMAC-SHA256, SHA-256 and
 * scrypt, the registry for who holds what, the limiter before any verification.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "auth/auth_check.h"
#include "ops/err.h"
#include "policy/credential.h"

#define SAS_PREFIX "SharedAccessSignature "

static const char *const kind_names[KG_AUTH_KIND_MAX] = {
	[KG_AUTH_SAS] = "sas", [KG_AUTH_TOKEN] = "token", [KG_AUTH_BASIC] = "basic",
};

_Static_assert(KG_AUTH_KIND_MAX == KG_AUTH_KINDS, "ops/metrics.h counts auth kinds in this order");

enum kg_auth_outcome kg_auth_outcome(const struct kg_auth_result *res)
{
	if (res->status == KG_AUTH_OK)
		return KG_AUTH_OUTCOME_OK;
	if (res->reason == KG_REASON_AUTH_RATE_LIMITED)
		return KG_AUTH_OUTCOME_RATE_LIMITED;
	if (res->reason == KG_REASON_AUTH_OVERLOAD)
		return KG_AUTH_OUTCOME_OVERLOAD;
	return KG_AUTH_OUTCOME_REFUSED;
}

const char *kg_auth_kind_str(enum kg_auth_kind k)
{
	return (unsigned)k < KG_AUTH_KIND_MAX ? kind_names[k] : "unknown";
}

static void refuse(struct kg_auth_result *res, enum kg_reason reason, enum kg_connack connack,
		   const char *why)
{
	res->status = KG_AUTH_REFUSED;
	res->reason = reason;
	res->connack = connack;
	res->why = why;
}

static void bad(struct kg_auth_result *res, const char *why)
{
	refuse(res, KG_REASON_BAD_CREDENTIALS, KG_CONNACK_BAD_CREDENTIALS, why);
}

/* A registry read failed: KG_E_IO is a registry that is down (a shared one's down
 * rule said no, or the database is unreachable: registry_unavailable), anything
 * else a local fault. */
static void unreadable(struct kg_auth_result *res, int rc)
{
	if (rc == KG_E_IO)
		refuse(res, KG_REASON_REGISTRY_UNAVAILABLE, KG_CONNACK_SERVER_UNAVAILABLE,
		       "the registry is unavailable");
	else
		refuse(res, KG_REASON_IO_ERROR, KG_CONNACK_SERVER_UNAVAILABLE,
		       "the registry could not be read");
}

/* A credential that named no device: the source prefix pays one failure. */
static void miss(struct kg_auth_limit *limit, const struct kg_auth_input *in)
{
	/* An empty bucket here is another worker's miss since our peek: nothing to add. */
	if (limit && in->source_key &&
	    !kg_auth_limit_take(limit, KG_LIMIT_SOURCE, in->source_key, in->now_ms))
		return;
}

/*
 * The device row for id, which must authenticate with `want`, and a limiter token for
 * it. false: *res says why (nothing was verified).
 */
static bool device_for(struct kg_registry *reg, struct kg_auth_limit *limit,
		       const struct kg_auth_input *in, const char *id, enum kg_attestation want,
		       struct kg_auth_result *res)
{
	int rc = kg_registry_device_get(reg, id, &res->device);

	if (rc == KG_E_NOTFOUND) {
		/* the id it named, for the audit line; no row behind it */
		memset(&res->device, 0, sizeof(res->device));
		snprintf(res->device.id, sizeof(res->device.id), "%s", id);
		miss(limit, in);
		refuse(res, KG_REASON_UNKNOWN_DEVICE, KG_CONNACK_NOT_AUTHORIZED,
		       "no such device in the registry");
		return false;
	}
	if (rc < 0) {
		memset(&res->device, 0, sizeof(res->device));
		unreadable(res, rc);
		return false;
	}
	if (res->device.attestation != want) {
		refuse(res, KG_REASON_ATTESTATION_MISMATCH, KG_CONNACK_NOT_AUTHORIZED,
		       "the device does not authenticate with this kind of credential");
		return false;
	}
	if (limit && !kg_auth_limit_take(limit, KG_LIMIT_DEVICE, id, in->now_ms)) {
		refuse(res, KG_REASON_AUTH_RATE_LIMITED, KG_CONNACK_NOT_AUTHORIZED,
		       "too many failed attempts for this device");
		return false;
	}
	return true;
}

static bool cred_get(struct kg_registry *reg, const char *id,
		     struct kg_credential creds[KG_CRED_PER_DEVICE], size_t *n,
		     struct kg_auth_result *res)
{
	int rc = kg_registry_cred_get(reg, id, creds, n);

	if (rc < 0) {
		unreadable(res, rc);
		return false;
	}
	return true;
}

static void ok(struct kg_auth_limit *limit, struct kg_auth_result *res)
{
	res->status = KG_AUTH_OK;
	res->reason = KG_REASON_OK;
	res->connack = KG_CONNACK_ACCEPTED;
	res->why = "the credential verified";
	if (limit)
		kg_auth_limit_forgive(limit, KG_LIMIT_DEVICE, res->device.id);
}

/* ---- SAS --------------------------------------------------------------------------- */

/* Does either form of the string to sign, under key, give the token's signature? */
static bool sas_sig_ok(const struct kg_sas *t, const uint8_t *key, size_t key_len)
{
	static const enum kg_sas_sign_form forms[] = { KG_SAS_SIGN_CANONICAL, KG_SAS_SIGN_AS_SENT };
	/* The canonical form escapes each byte of sr to at most 3 characters. */
	char sts[3 * KG_SAS_SR_MAX + 32];
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len;
	bool match = false;

	for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
		size_t n = kg_sas_string_to_sign(t, forms[f], sts, sizeof(sts));

		mac_len = 0;
		if (n == 0 || HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)sts, n, mac,
				   &mac_len) == NULL || mac_len != KG_SAS_SIG_LEN)
			continue;
		/* Both forms are tried whatever the first gave: the time taken does not say
		 * which matched. */
		match |= kg_cred_equal(mac, t->sig, KG_SAS_SIG_LEN);
	}
	OPENSSL_cleanse(mac, sizeof(mac));
	return match;
}

static void check_sas(const struct kg_auth_conf *conf, struct kg_registry *reg,
		      struct kg_auth_limit *limit, const struct kg_auth_input *in,
		      const struct kg_azure_user *user, struct kg_auth_result *res)
{
	struct kg_credential creds[KG_CRED_PER_DEVICE];
	char id[KG_DEVICE_ID_MAX + 1];
	uint8_t key[KG_SAS_KEY_MAX];
	const char *why = NULL, *hub = conf->sas_hub;
	size_t n = 0, hub_len = strlen(conf->sas_hub);
	struct kg_sas tok;
	bool match = false;

	if (user->id_len > KG_DEVICE_ID_MAX) {
		bad(res, "a device id too long in the user name");
		return;
	}
	memcpy(id, user->id, user->id_len);
	id[user->id_len] = '\0';
	/* Azure: the client id is the device id; a token for one device cannot open a
	 * session that calls itself another. */
	if (in->client_id_len != user->id_len || memcmp(in->client_id, id, user->id_len) != 0) {
		snprintf(res->device.id, sizeof(res->device.id), "%s", id);
		refuse(res, KG_REASON_CLIENT_ID_MISMATCH, KG_CONNACK_BAD_CLIENT_ID,
		       "the client id is not the device id of the SAS user name");
		return;
	}
	if (!device_for(reg, limit, in, id, KG_ATT_SAS, res))
		return;
	if (!kg_sas_parse((const char *)in->password, in->password_len, &tok, &why)) {
		bad(res, why);
		return;
	}
	if (hub_len == 0) {
		hub = user->hub;
		hub_len = user->hub_len;
	}
	if (!kg_sas_resource_ok(&tok, hub, hub_len, id, user->id_len, &why)) {
		bad(res, why);
		return;
	}
	if (!cred_get(reg, id, creds, &n, res))
		goto out;
	for (size_t i = 0; i < n; i++) {
		size_t klen;

		if (creds[i].kind != KG_ATT_SAS)
			continue;
		klen = kg_sas_key_decode(creds[i].secret, strlen(creds[i].secret), key, &why);
		if (klen == 0)
			continue;        /* a stored key the parser refuses verifies nothing */
		/* primary, then secondary (cred_get's order); every slot is tried */
		match |= sas_sig_ok(&tok, key, klen);
	}
	if (!match) {
		bad(res, "a SAS signature that no key of the device makes");
		goto out;
	}
	/* Expiry after the signature: credential_expired then means the device's own
	 * token expired (a clock or renewal problem), not a forgery. */
	if (!kg_sas_time_ok(&tok, in->now, 0, &why)) {
		refuse(res, KG_REASON_CREDENTIAL_EXPIRED, KG_CONNACK_BAD_CREDENTIALS, why);
		goto out;
	}
	if (!kg_sas_time_ok(&tok, in->now, (int64_t)conf->sas_max_ttl, &why)) {
		bad(res, why);
		goto out;
	}
	ok(limit, res);
out:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(creds, sizeof(creds));
}

/* ---- access token ------------------------------------------------------------------ */

static void check_token(struct kg_registry *reg, struct kg_auth_limit *limit,
			const struct kg_auth_input *in, struct kg_auth_result *res)
{
	struct kg_credential creds[KG_CRED_PER_DEVICE];
	uint8_t digest[EVP_MAX_MD_SIZE];
	char hex[KG_TOKEN_HASH_HEX_LEN + 1], id[KG_DEVICE_ID_MAX + 1];
	unsigned int dlen = 0;
	size_t n = 0;
	bool match = false;
	int rc;

	if (!EVP_Digest(in->username, in->username_len, digest, &dlen, EVP_sha256(), NULL) ||
	    dlen != 32) {
		refuse(res, KG_REASON_IO_ERROR, KG_CONNACK_SERVER_UNAVAILABLE, "SHA-256 failed");
		return;
	}
	kg_hex_lower(digest, 32, hex);
	rc = kg_registry_cred_find(reg, KG_ATT_TOKEN, hex, id);
	if (rc == KG_E_NOTFOUND) {
		miss(limit, in);
		bad(res, "an access token no device holds");
		return;
	}
	if (rc < 0) {
		unreadable(res, rc);
		return;
	}
	if (!device_for(reg, limit, in, id, KG_ATT_TOKEN, res))
		return;
	if (!cred_get(reg, id, creds, &n, res))
		goto out;
	/* The lookup matched the hash already; compare again against the row read now, in
	 * constant time, so a stale index or a store that matched loosely admits nothing. */
	for (size_t i = 0; i < n; i++)
		if (creds[i].kind == KG_ATT_TOKEN && strlen(creds[i].secret) == KG_TOKEN_HASH_HEX_LEN)
			match |= kg_cred_equal(creds[i].secret, hex, KG_TOKEN_HASH_HEX_LEN);
	if (match)
		ok(limit, res);
	else
		bad(res, "an access token no device holds");
out:
	OPENSSL_cleanse(creds, sizeof(creds));
}

/* ---- user name + password ---------------------------------------------------------- */

static void check_basic(struct kg_registry *reg, struct kg_auth_limit *limit,
			const struct kg_auth_input *in, struct kg_auth_result *res,
			struct kg_auth_job *job)
{
	struct kg_credential creds[KG_CRED_PER_DEVICE];
	char user[KG_CRED_USERNAME_MAX + 1], id[KG_DEVICE_ID_MAX + 1];
	size_t n = 0;
	int rc;

	if (in->username == NULL || in->username_len == 0) {
		bad(res, "no user name in the CONNECT");
		return;
	}
	if (in->password == NULL || in->password_len == 0) {
		bad(res, "a user name that is no access token, and no password");
		return;
	}
	if (in->password_len > KG_AUTH_PASSWORD_MAX) {
		bad(res, "a password longer than 1024 bytes");
		return;
	}
	if (in->username_len > KG_CRED_USERNAME_MAX || memchr(in->username, '\0', in->username_len)) {
		miss(limit, in);
		bad(res, "a user name no device holds");
		return;
	}
	memcpy(user, in->username, in->username_len);
	user[in->username_len] = '\0';
	rc = kg_registry_cred_find(reg, KG_ATT_BASIC, user, id);
	if (rc == KG_E_NOTFOUND) {
		miss(limit, in);
		bad(res, "a user name no device holds");
		return;
	}
	if (rc < 0) {
		unreadable(res, rc);
		return;
	}
	if (!device_for(reg, limit, in, id, KG_ATT_BASIC, res))
		return;
	if (!cred_get(reg, id, creds, &n, res))
		goto out;
	memset(job, 0, sizeof(*job));
	job->device = res->device;
	job->limit = limit;
	for (size_t i = 0; i < n && job->n_hashes < KG_CRED_SLOT_MAX; i++)
		if (creds[i].kind == KG_ATT_BASIC && strcmp(creds[i].username, user) == 0)
			memcpy(job->hashes[job->n_hashes++], creds[i].secret, sizeof(creds[i].secret));
	memcpy(job->password, in->password, in->password_len);
	job->password_len = in->password_len;
	res->status = KG_AUTH_PENDING;
	res->reason = KG_REASON_OK;
	res->connack = KG_CONNACK_ACCEPTED;
	res->why = "the password is being checked";
out:
	OPENSSL_cleanse(creds, sizeof(creds));
}

/* ---- the way in -------------------------------------------------------------------- */

void kg_auth_check(const struct kg_auth_conf *conf, struct kg_registry *reg,
		   struct kg_auth_limit *limit, const struct kg_auth_input *in,
		   struct kg_auth_result *res, struct kg_auth_job *job)
{
	struct kg_azure_user user;
	const char *why = NULL;
	bool has_pw = in->password != NULL && in->password_len > 0;

	memset(res, 0, sizeof(*res));
	if (conf->x509_only || in->x509_only) {
		res->kind = KG_AUTH_KIND_MAX;
		refuse(res, KG_REASON_X509_REQUIRED, KG_CONNACK_NOT_AUTHORIZED,
		       "only client certificates are accepted here (x509_only)");
		return;
	}
	if (in->username != NULL && has_pw && in->password_len >= strlen(SAS_PREFIX) &&
	    memcmp(in->password, SAS_PREFIX, strlen(SAS_PREFIX)) == 0 &&
	    kg_azure_username_parse(in->username, in->username_len, &user, &why))
		res->kind = KG_AUTH_SAS;
	else if (in->username != NULL && !has_pw && kg_token_ok(in->username, in->username_len, &why))
		res->kind = KG_AUTH_TOKEN;
	else
		res->kind = KG_AUTH_BASIC;
	/* A source whose misses used up its bucket gets nothing checked, not even a
	 * right guess: that is what bounds guessing tokens and user names. */
	if (limit && in->source_key &&
	    !kg_auth_limit_peek(limit, KG_LIMIT_SOURCE, in->source_key, in->now_ms)) {
		refuse(res, KG_REASON_AUTH_RATE_LIMITED, KG_CONNACK_NOT_AUTHORIZED,
		       "too many failed attempts naming no device from this source");
		return;
	}
	switch (res->kind) {
	case KG_AUTH_SAS:
		check_sas(conf, reg, limit, in, &user, res);
		break;
	case KG_AUTH_TOKEN:
		check_token(reg, limit, in, res);
		break;
	default:
		check_basic(reg, limit, in, res, job);
		break;
	}
}

/* One stored PHC string against the password: OpenSSL's SCRYPT KDF with the row's
 * parameters and maxmem from kg_scrypt_mem() (OpenSSL's default is below what the
 * defaults need, docs/credentials.md). */
static bool scrypt_ok(const char *phc, const uint8_t *pw, size_t pw_len)
{
	struct kg_scrypt h;
	const char *why = NULL;
	uint8_t out[KG_SCRYPT_HASH_MAX];
	uint64_t n, maxmem;
	uint32_t r, p;
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *ctx = NULL;
	OSSL_PARAM params[7];
	bool match = false;

	if (!kg_scrypt_parse(phc, strlen(phc), &h, &why))
		return false;
	n = (uint64_t)1 << h.ln;
	r = h.r;
	p = h.p;
	maxmem = kg_scrypt_mem(&h);
	kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
	if (kdf == NULL)
		goto out;
	ctx = EVP_KDF_CTX_new(kdf);
	if (ctx == NULL)
		goto out;
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)pw, pw_len);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, h.salt, h.salt_len);
	params[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
	params[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
	params[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
	params[5] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
	params[6] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(ctx, out, h.hash_len, params) != 1)
		goto out;
	match = kg_cred_equal(out, h.hash, h.hash_len);
out:
	OPENSSL_cleanse(out, sizeof(out));
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return match;
}

void kg_auth_job_run(struct kg_auth_job *job, struct kg_auth_result *res)
{
	bool match = false;

	memset(res, 0, sizeof(*res));
	res->kind = KG_AUTH_BASIC;
	res->device = job->device;
	/* Every slot is computed, matched or not: the time does not say which slot (or
	 * whether the secondary exists). */
	for (size_t i = 0; i < job->n_hashes; i++)
		match |= scrypt_ok(job->hashes[i], job->password, job->password_len);
	if (match) {
		ok(job->limit, res);
	} else {
		bad(res, job->n_hashes ? "a password that matches no hash of the device"
				       : "the device holds no password for this user name");
	}
	OPENSSL_cleanse(job->password, sizeof(job->password));
	job->password_len = 0;
}

void kg_auth_job_wipe(struct kg_auth_job *job)
{
	if (job->limit && job->device.id[0])
		kg_auth_limit_refund(job->limit, KG_LIMIT_DEVICE, job->device.id);
	job->limit = NULL;           /* a second wipe refunds nothing */
	OPENSSL_cleanse(job->password, sizeof(job->password));
	job->password_len = 0;
}
