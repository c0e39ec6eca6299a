/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm_key.c - the server key in the TPM, seen from OpenSSL (contract in tpm_key.h).
 *
 * The libctx is configured from a small config text in a memfd (OpenSSL 3.0 has no API
 * for provider activation + default properties in one step): providers and the default
 * property query live in this libctx only; the process's default libctx (everything
 * else) never sees the tpm2 provider.
 *
 * The TCTI: tpm2-openssl 1.1.1 means to read a "tcti" parameter from its config section,
 * but passes a NULL buffer for it (OSSL_PARAM_utf8_ptr without the &), so the value never
 * arrives; its other source is the TPM2OPENSSL_TCTI environment variable, read once in
 * its init. We set it around the provider load and restore it after. The environment
 * is process-wide: callers load before starting threads that read it. Only the CLI
 * loads the provider now (`tpm csr`); the daemon signs through its signer thread
 * (tpm_signer.h) and the foreign key (tpm_foreign.c).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ops/config.h"
#include "ops/log.h"
#include "tpm/tpm.h"
#include "tpm/tpm_conf.h"
#include "tpm/tpm_key.h"
#include "tpm/tpm_signer.h"

struct kg_tpm_ossl {
	OSSL_LIB_CTX *libctx;
	char tcti[256];
};

static int load_config(OSSL_LIB_CTX *lc, const char *tcti, char *err, size_t errlen)
{
	char path[64], *saved = NULL;
	bool restore = false, loaded;
	int fd, rc = -1;

	fd = memfd_create("ktlsgate-tpm-openssl.cnf", MFD_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "memfd_create: %m");
		return -1;
	}
	if (dprintf(fd,
		    "openssl_conf = kg_init\n"
		    "[kg_init]\nproviders = kg_providers\nalg_section = kg_algs\n"
		    "[kg_providers]\ntpm2 = kg_tpm2\ndefault = kg_default\n"
		    "[kg_tpm2]\nactivate = 1\n"
		    "[kg_default]\nactivate = 1\n"
		    "[kg_algs]\ndefault_properties = %s\n",
		    KG_TPM_PROPQ) < 0) {
		snprintf(err, errlen, "writing the provider config: %m");
		goto out;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (tcti[0] != '\0') {
		const char *was = getenv("TPM2OPENSSL_TCTI");

		saved = was ? strdup(was) : NULL;
		if (setenv("TPM2OPENSSL_TCTI", tcti, 1) != 0) {
			snprintf(err, errlen, "setenv: %m");
			goto out;
		}
		restore = true;
	}
	loaded = OSSL_LIB_CTX_load_config(lc, path) == 1 && OSSL_PROVIDER_available(lc, "tpm2");
	if (restore) {
		if (saved != NULL)
			(void)setenv("TPM2OPENSSL_TCTI", saved, 1);
		else
			(void)unsetenv("TPM2OPENSSL_TCTI");
	}
	if (!loaded) {
		char why[256];

		kg_ossl_err(why, sizeof(why), "tpm2 provider");
		snprintf(err, errlen, "TPM at '%s': cannot connect (%s)", tcti[0] ? tcti : "(default)",
			 why);
		goto out;
	}
	rc = 0;
out:
	free(saved);
	close(fd);
	return rc;
}

struct kg_tpm_ossl *kg_tpm_ossl_new(const char *tcti, char *err, size_t errlen)
{
	struct kg_tpm_ossl *o;

	if (tcti == NULL)
		tcti = "";
	if (tcti[0] && !kg_tpm_tcti_valid(tcti)) {
		snprintf(err, errlen, "bad TCTI '%.64s'", tcti);
		return NULL;
	}
	o = calloc(1, sizeof(*o));
	if (o == NULL || strlen(tcti) >= sizeof(o->tcti)) {
		snprintf(err, errlen, o ? "TCTI too long" : "out of memory");
		free(o);
		return NULL;
	}
	memcpy(o->tcti, tcti, strlen(tcti) + 1);
	o->libctx = OSSL_LIB_CTX_new();
	if (o->libctx == NULL) {
		kg_ossl_err(err, errlen, "OSSL_LIB_CTX_new");
		goto out_free;
	}
	if (load_config(o->libctx, tcti, err, errlen) != 0)
		goto out_free;
	/* the config's alg_section did this; say it again so a config quirk cannot undo it */
	if (!EVP_set_default_properties(o->libctx, KG_TPM_PROPQ)) {
		kg_ossl_err(err, errlen, "default properties");
		goto out_free;
	}
	return o;

out_free:
	OSSL_LIB_CTX_free(o->libctx);
	free(o);
	return NULL;
}

void kg_tpm_ossl_free(struct kg_tpm_ossl *o)
{
	if (o == NULL)
		return;
	OSSL_LIB_CTX_free(o->libctx);
	free(o);
}

OSSL_LIB_CTX *kg_tpm_ossl_libctx(const struct kg_tpm_ossl *o)
{
	return o->libctx;
}

const char *kg_tpm_ossl_tcti(const struct kg_tpm_ossl *o)
{
	return o->tcti;
}

bool kg_tpm_keyref_is_tpm(const char *keyref)
{
	return strncmp(keyref, KG_TPM_HANDLE_PREFIX, strlen(KG_TPM_HANDLE_PREFIX)) == 0 ||
	       kg_tss2_file_is_key(keyref);
}

EVP_PKEY *kg_tpm_ossl_load_key(struct kg_tpm_ossl *o, const char *keyref, char *err,
			       size_t errlen)
{
	OSSL_STORE_CTX *sc;
	EVP_PKEY *key = NULL;
	uint32_t h;

	if (strncmp(keyref, KG_TPM_HANDLE_PREFIX, strlen(KG_TPM_HANDLE_PREFIX)) == 0 &&
	    kg_tpm_parse_keyref(keyref, &h) != 0) {
		snprintf(err, errlen, "%s: not a persistent handle (0x81000000..0x81ffffff)", keyref);
		return NULL;
	}
	/* "handle:..." is the tpm2 provider's own store scheme; a path goes to the file
	 * store, whose decoders include tpm2's TSS2 decoder (this libctx only). */
	sc = OSSL_STORE_open_ex(keyref, o->libctx, KG_TPM_PROPQ, NULL, NULL, NULL, NULL, NULL);
	if (sc == NULL) {
		kg_ossl_err(err, errlen, keyref);
		return NULL;
	}
	(void)OSSL_STORE_expect(sc, OSSL_STORE_INFO_PKEY);
	while (key == NULL && !OSSL_STORE_eof(sc)) {
		OSSL_STORE_INFO *info = OSSL_STORE_load(sc);

		if (info == NULL)
			break;
		if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
			key = OSSL_STORE_INFO_get1_PKEY(info);
		OSSL_STORE_INFO_free(info);
	}
	OSSL_STORE_close(sc);
	if (key == NULL) {
		kg_ossl_err(err, errlen, keyref);
		return NULL;
	}
	if (strcmp(OSSL_PROVIDER_get0_name(EVP_PKEY_get0_provider(key)), "tpm2") != 0) {
		/* e.g. a plain PEM key given where a TPM key was expected */
		snprintf(err, errlen, "%s: not a TPM key (loaded by the %s provider)", keyref,
			 OSSL_PROVIDER_get0_name(EVP_PKEY_get0_provider(key)));
		EVP_PKEY_free(key);
		return NULL;
	}
	return key;
}

static const char *prov_name(const OSSL_PROVIDER *p)
{
	return p ? OSSL_PROVIDER_get0_name(p) : "(none)";
}

int kg_tpm_ossl_check_providers(struct kg_tpm_ossl *o, EVP_PKEY *key, char *err, size_t errlen)
{
	static const char *const mds[] = { "SHA256", "SHA384", "SHA512", "SHA1" };
	static const char *const ciphers[] = { "AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305",
					       "AES-128-CBC", "AES-256-CBC" };
	static const char *const kdfs[] = { "TLS13-KDF", "HKDF", "TLS1-PRF" };
	const char *name;
	EVP_RAND_CTX *drbg;
	EVP_MAC *mac;

	if (key != NULL && strcmp(prov_name(EVP_PKEY_get0_provider(key)), "tpm2") != 0) {
		snprintf(err, errlen, "the key is held by provider %s, not tpm2",
			 prov_name(EVP_PKEY_get0_provider(key)));
		return -1;
	}
	for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
		EVP_MD *md = EVP_MD_fetch(o->libctx, mds[i], NULL);

		name = prov_name(md ? EVP_MD_get0_provider(md) : NULL);
		EVP_MD_free(md);
		if (strcmp(name, "default") != 0) {
			snprintf(err, errlen, "digest %s comes from provider %s", mds[i], name);
			return -1;
		}
	}
	for (size_t i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++) {
		EVP_CIPHER *c = EVP_CIPHER_fetch(o->libctx, ciphers[i], NULL);

		name = prov_name(c ? EVP_CIPHER_get0_provider(c) : NULL);
		EVP_CIPHER_free(c);
		if (strcmp(name, "default") != 0) {
			snprintf(err, errlen, "cipher %s comes from provider %s", ciphers[i], name);
			return -1;
		}
	}
	for (size_t i = 0; i < sizeof(kdfs) / sizeof(kdfs[0]); i++) {
		EVP_KDF *k = EVP_KDF_fetch(o->libctx, kdfs[i], NULL);

		name = prov_name(k ? EVP_KDF_get0_provider(k) : NULL);
		EVP_KDF_free(k);
		if (strcmp(name, "default") != 0) {
			snprintf(err, errlen, "KDF %s comes from provider %s", kdfs[i], name);
			return -1;
		}
	}
	mac = EVP_MAC_fetch(o->libctx, "HMAC", NULL);
	name = prov_name(mac ? EVP_MAC_get0_provider(mac) : NULL);
	EVP_MAC_free(mac);
	if (strcmp(name, "default") != 0) {
		snprintf(err, errlen, "MAC HMAC comes from provider %s", name);
		return -1;
	}
	/* the DRBGs the TLS stack draws from (client/server randoms, ephemeral keys) */
	drbg = RAND_get0_public(o->libctx);
	name = prov_name(drbg ? EVP_RAND_get0_provider(EVP_RAND_CTX_get0_rand(drbg)) : NULL);
	if (strcmp(name, "default") != 0) {
		snprintf(err, errlen, "the public DRBG comes from provider %s", name);
		return -1;
	}
	drbg = RAND_get0_private(o->libctx);
	name = prov_name(drbg ? EVP_RAND_get0_provider(EVP_RAND_CTX_get0_rand(drbg)) : NULL);
	if (strcmp(name, "default") != 0) {
		snprintf(err, errlen, "the private DRBG comes from provider %s", name);
		return -1;
	}
	return 0;
}

static bool is_ip(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int kg_tpm_csr_write(struct kg_tpm_ossl *o, EVP_PKEY *key, const char *cn, FILE *out, char *err,
		     size_t errlen)
{
	X509_REQ *req = X509_REQ_new_ex(o->libctx, KG_TPM_PROPQ);
	X509_NAME *name = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION *san = NULL;
	EVP_MD_CTX *mctx = NULL;
	char sanbuf[300];
	int rc = -1;

	if (req == NULL || (name = X509_NAME_new()) == NULL ||
	    (exts = sk_X509_EXTENSION_new_null()) == NULL || (mctx = EVP_MD_CTX_new()) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
					-1, 0) ||
	    !X509_REQ_set_subject_name(req, name) || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
	    !X509_REQ_set_pubkey(req, key)) {
		kg_ossl_err(err, errlen, "building the request");
		goto out;
	}
	snprintf(sanbuf, sizeof(sanbuf), "%s:%s", is_ip(cn) ? "IP" : "DNS", cn);
	san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, sanbuf);
	if (san == NULL || !sk_X509_EXTENSION_push(exts, san)) {
		kg_ossl_err(err, errlen, "subjectAltName");
		X509_EXTENSION_free(san);
		goto out;
	}
	if (!X509_REQ_add_extensions(req, exts)) {
		kg_ossl_err(err, errlen, "request extensions");
		goto out;
	}
	/* SHA-256 from the default provider, the signature itself in the TPM */
	if (EVP_DigestSignInit_ex(mctx, NULL, "SHA256", o->libctx, KG_TPM_PROPQ, key, NULL) != 1 ||
	    X509_REQ_sign_ctx(req, mctx) <= 0) {
		kg_ossl_err(err, errlen, "signing the request in the TPM");
		goto out;
	}
	if (PEM_write_X509_REQ(out, req) != 1 || fflush(out) != 0) {
		kg_ossl_err(err, errlen, "writing the request");
		goto out;
	}
	rc = 0;
out:
	EVP_MD_CTX_free(mctx);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return rc;
}

int kg_tpm_server_key_get(const struct kg_config *cfg, struct kg_tpm_signer *signer,
			  struct kg_tpm_server_key *out, char *err, size_t errlen)
{
	const struct kg_tpm_conf *tc = &cfg->tpm;
	char why[512];

	memset(out, 0, sizeof(*out));
	out->key_file = cfg->key_file;
	out->cert_file = cfg->cert_file;
	if (!kg_tpm_keyref_is_tpm(cfg->key_file))
		return 0;
	if (signer == NULL) {
		/* the TPM was unreachable at start (main.c said so, loudly) */
		if (tc->key_fallback[0] == '\0') {
			snprintf(err, errlen, "server key %s: no TPM signer", cfg->key_file);
			return -1;
		}
		out->key_file = tc->key_fallback;
		out->cert_file = tc->cert_fallback[0] ? tc->cert_fallback : cfg->cert_file;
		out->fallback = true;
		return 0;
	}
	/* One TPM connection for the process's life: a reload cannot move it. */
	if (!kg_tpm_signer_matches(signer, tc->tcti, cfg->key_file)) {
		snprintf(err, errlen, "[tpm] tcti or the TPM [daemon] key changed: restart needed");
		return -1;
	}
	out->key = kg_tpm_foreign_key(signer, why, sizeof(why));
	if (out->key == NULL) {
		snprintf(err, errlen, "server key %s: %s", cfg->key_file, why);
		return -1;
	}
	out->key_file = NULL;
	return 0;
}
