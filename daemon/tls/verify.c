/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * verify.c - who is this device? The leaf's CN, validated, is the device id; the leaf
 * is accepted either because its SHA-256 pins a thumbprint-enrolled device of that id,
 * or because OpenSSL's X509_verify_cert() chains it to a proven registry CA (clientAuth
 * purpose, CA constraints, validity, and CRLs for the CAs that have one). A struct
 * kg_trust is built once and is then read-only: workers share it without locks, since
 * X509_STORE lookups are thread-safe and each verification gets its own X509_STORE_CTX.
 *
 * The daemon replaces OpenSSL's verification with its own X509_STORE_CTX, so nothing
 * the SSL object knows reaches it unless put here: the security level (keys and
 * signatures of every certificate, also a pinned leaf's key), the RFC 5280 strict
 * profile, and the CRL rules (an expired CRL refuses its CA's devices as crl_expired
 * once past the configured grace) are all decided in this file, for the handshake and
 * `ktlsgate verify` alike.
 *
 * The intermediates cache (chain_cache.h, one per trust): after a full verification
 * passes, the leaf's issuer is kept with the registered CA reached and the window in
 * which everything above the leaf holds (validity of each upper certificate, the
 * earliest nextUpdate of t's CRLs). A later leaf whose sent issuer has the same DER is
 * verified by OpenSSL with that issuer as its only anchor and every rule above, CRL
 * check of the leaf included. Sound because what the full check decides about the
 * certificates above the leaf (signatures, CA flags, path lengths: a leaf is never a
 * CA, keys and algorithms at the level, strict profile, upper CRLs, the proven CA) does
 * not depend on the leaf and is fixed for the trust's life: any CA, CRL or policy change
 * is a new (or emptied) trust; what depends on time is the window; what depends on the
 * leaf is checked every time. The rules that reach from above down to the leaf, name
 * and policy constraints, keep a chain out of the cache. Any failure under a cached
 * issuer is re-run in full, so refusals keep their reasons. docs/security.md, "The
 * intermediates cache", has the long form.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "ops/err.h"
#include "policy/credential.h"
#include "tls/chain_cache.h"
#include "tls/verify.h"

/* One registry CA, verified or not. */
struct trust_ca {
	struct kg_ca row;         /* the registry row as loaded, pem NULL: policy reads it */
	char name[KG_NAME_MAX];
	char sha256[KG_SHA256_HEX_LEN + 1];
	X509 *cert;
	bool verified;
	bool has_crl;
	char *crl_path;           /* the CRL file, for -t (malloc'd, NULL without a CRL) */
	int64_t crl_next_update;  /* unix seconds; 0: the CRL has no nextUpdate */
	_Atomic int64_t crl_warned_at; /* last grace warning, for kg_trust_crl_warn_due() */
};

struct kg_trust {
	X509_STORE *store;        /* verified CAs and every CRL */
	struct trust_ca *cas;
	size_t n_cas, cap_cas;
	size_t n_crls;
	/* [crl] lines whose CA is not registered (removed since): "CA\0path" each. */
	char **crl_skipped;
	size_t n_crl_skipped;
	int sec_level;            /* OpenSSL security level for keys and signatures */
	int64_t crl_grace;        /* seconds an expired CRL is still honoured */
	uint64_t generation;      /* random, never 0: see kg_trust_generation() */
	int64_t crl_min_next;     /* earliest nextUpdate of its CRLs; 0: none has one */
	/* SHA-256 fetched once: EVP_sha256() makes every digest fetch it again (a
	 * method-store lookup under a lock, per call, in OpenSSL 3). */
	EVP_MD *sha256;
	struct kg_chain_cache *cache; /* verified intermediates: dies with this trust */
};

static void seterr(char *err, size_t errlen, const char *fmt, ...) KG_PRINTF(3, 4);
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

enum kg_reason kg_identity_from_cert(X509 *cert, char *out, size_t cap, size_t *module_off)
{
	const X509_NAME *name;
	unsigned char *utf8 = NULL;
	enum kg_reason r = KG_REASON_BAD_IDENTITY;
	int idx, len;

	if (cap > 0)
		out[0] = '\0';
	if (cert == NULL)
		return KG_REASON_NO_CERT;
	name = X509_get_subject_name(cert);
	idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	/* Two CNs would let a CA-signed name be read two ways: refuse, don't pick one. */
	if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
		return KG_REASON_BAD_IDENTITY;
	len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
	if (len < 0) {
		ERR_clear_error();
		return KG_REASON_BAD_IDENTITY;
	}
	/* An embedded NUL makes len != strlen; kg_identity_valid() refuses byte 0x00. */
	if (kg_identity_valid((const char *)utf8, (size_t)len, module_off) && (size_t)len < cap &&
	    strlen((const char *)utf8) == (size_t)len) {
		memcpy(out, utf8, (size_t)len);
		out[len] = '\0';
		r = KG_REASON_OK;
	}
	OPENSSL_free(utf8);
	return r;
}

/* SHA-256 of cert's DER with md (NULL: EVP_sha256()) into out[32]. 0 or -1. */
static int cert_sha256(const EVP_MD *md, X509 *cert, unsigned char out[KG_CHAIN_CACHE_KEY_LEN])
{
	unsigned int len = 0;

	if (cert == NULL || !X509_digest(cert, md != NULL ? md : EVP_sha256(), out, &len) ||
	    len != KG_CHAIN_CACHE_KEY_LEN) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

static int sha256_hex(const EVP_MD *mdt, X509 *cert, char out[KG_SHA256_HEX_LEN + 1])
{
	unsigned char md[KG_CHAIN_CACHE_KEY_LEN];

	out[0] = '\0';
	if (cert_sha256(mdt, cert, md) != 0)
		return -1;
	kg_hex_lower(md, sizeof(md), out);
	return 0;
}

int kg_cert_sha256_hex(X509 *cert, char out[KG_SHA256_HEX_LEN + 1])
{
	return sha256_hex(NULL, cert, out);
}

struct kg_trust *kg_trust_new(void)
{
	struct kg_trust *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->store = X509_STORE_new();
	t->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	t->cache = kg_chain_cache_new(KG_CHAIN_CACHE_MAX);
	if (t->store == NULL || t->sha256 == NULL || t->cache == NULL) {
		ERR_clear_error();
		kg_trust_free(t);
		return NULL;
	}
	t->sec_level = KG_SECURITY_LEVEL_DEFAULT;
	/* Random rather than counted: unique without process state, and a ticket made
	 * by another process (a restart, a peer appliance) never matches by accident. */
	do {
		if (RAND_bytes((unsigned char *)&t->generation, sizeof(t->generation)) != 1) {
			X509_STORE_free(t->store);
			free(t);
			return NULL;
		}
	} while (t->generation == 0);
	return t;
}

uint64_t kg_trust_generation(const struct kg_trust *t)
{
	return t->generation;
}

void kg_trust_set_policy(struct kg_trust *t, int security_level, int64_t crl_grace)
{
	if (t == NULL)
		return;
	t->sec_level = security_level < 0 ? 0 : security_level > 5 ? 5 : security_level;
	t->crl_grace = crl_grace < 0 ? 0 : crl_grace;
	/* Cached issuers passed the old rules: none may stand for the new ones. */
	kg_chain_cache_clear(t->cache);
}

void kg_trust_free(struct kg_trust *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_cas; i++) {
		X509_free(t->cas[i].cert);
		free(t->cas[i].crl_path);
	}
	free(t->cas);
	for (size_t i = 0; i < t->n_crl_skipped; i++)
		free(t->crl_skipped[i]);
	free(t->crl_skipped);
	X509_STORE_free(t->store);
	EVP_MD_free(t->sha256);
	kg_chain_cache_free(t->cache);
	free(t);
}

size_t kg_trust_count(const struct kg_trust *t, bool verified_only)
{
	size_t n = 0;

	if (t == NULL)
		return 0;
	for (size_t i = 0; i < t->n_cas; i++)
		if (!verified_only || t->cas[i].verified)
			n++;
	return n;
}

static struct trust_ca *find_ca_by_name(const struct kg_trust *t, const char *name)
{
	for (size_t i = 0; i < t->n_cas; i++)
		if (strcmp(t->cas[i].name, name) == 0)
			return &t->cas[i];
	return NULL;
}

const struct kg_ca *kg_trust_get0_ca(const struct kg_trust *t, const char *name)
{
	const struct trust_ca *c = t ? find_ca_by_name(t, name) : NULL;

	return c ? &c->row : NULL;
}

/*
 * Does CA j's username_check reach CA i (which j issued)? Only when i has no rule of
 * its own (own[i]), and j has one stricter than what i inherited so far (strict <
 * rewrite < pass): of two issuers, the stricter wins.
 */
static bool username_check_flows(const struct kg_ca *i, bool own_i, const struct kg_ca *j)
{
	return !own_i && j->has_username_check &&
	       (!i->has_username_check || j->username_check < i->username_check);
}

/*
 * Fold each CA's status into the CAs it issued (directly or through other registered
 * CAs): a device's nearest proven CA then carries the worst status on its way up.
 * Likewise a username_check: a CA without one of its own takes the nearest one set
 * above it, so `ca set ROOT --username-check` reaches the devices of intermediates.
 * The issued-by relation is computed once (names, then signature); the fixed point
 * takes at most n passes, which also bounds a cycle of cross-signed CAs.
 */
static int inherit_ca_status(struct kg_trust *t, char *err, size_t errlen)
{
	size_t n = t->n_cas;
	bool *issued, *own, changed = true;

	if (n < 2)
		return 0;
	if ((issued = calloc(n * n + n, sizeof(*issued))) == NULL) {
		seterr(err, errlen, "CA status: out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)      /* issued[i * n + j]: j signed i */
		for (size_t j = 0; j < n; j++)
			issued[i * n + j] = i != j &&
				X509_check_issued(t->cas[j].cert, t->cas[i].cert) == X509_V_OK &&
				X509_verify(t->cas[i].cert, X509_get0_pubkey(t->cas[j].cert)) == 1;
	ERR_clear_error();
	own = issued + n * n;
	for (size_t i = 0; i < n; i++)
		own[i] = t->cas[i].row.has_username_check;
	for (size_t pass = 0; changed && pass < n; pass++) {
		changed = false;
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < n; j++) {
				struct kg_ca *ri = &t->cas[i].row, *rj = &t->cas[j].row;

				if (!issued[i * n + j])
					continue;
				if (rj->status > ri->status) {
					ri->status = rj->status;
					changed = true;
				}
				if (username_check_flows(ri, own[i], rj)) {
					ri->has_username_check = true;
					ri->username_check = rj->username_check;
					changed = true;
				}
			}
	}
	free(issued);
	return 0;
}

int kg_leaf_ref_from_cert(const struct kg_trust *t, X509 *leaf, struct kg_leaf_ref *ref)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	const ASN1_INTEGER *sn;
	unsigned int mdlen = 0;
	int len;

	memset(ref, 0, sizeof(*ref));
	if (leaf == NULL || (sn = X509_get0_serialNumber(leaf)) == NULL ||
	    !X509_NAME_digest(X509_get_issuer_name(leaf),
			      t != NULL && t->sha256 != NULL ? t->sha256 : EVP_sha256(), md, &mdlen) ||
	    mdlen < sizeof(ref->issuer_md)) {
		ERR_clear_error();
		return -1;
	}
	len = ASN1_STRING_length(sn);
	if (len <= 0 || (size_t)len > sizeof(ref->serial))
		return -1;
	memcpy(ref->issuer_md, md, sizeof(ref->issuer_md));
	memcpy(ref->serial, ASN1_STRING_get0_data(sn), (size_t)len);
	ref->serial_len = (uint8_t)len;
	ref->serial_neg = ASN1_STRING_type(sn) == V_ASN1_NEG_INTEGER;
	return 0;
}

bool kg_trust_leaf_revoked(const struct kg_trust *t, const struct kg_leaf_ref *ref)
{
	STACK_OF(X509_OBJECT) *objs;
	ASN1_INTEGER *sn;
	bool revoked = false;

	if (t == NULL || ref == NULL || ref->serial_len == 0 || t->n_crls == 0)
		return false;
	if ((sn = ASN1_INTEGER_new()) == NULL ||
	    ASN1_STRING_set(sn, ref->serial, ref->serial_len) != 1) {
		ASN1_INTEGER_free(sn);
		ERR_clear_error();
		return false;
	}
	if (ref->serial_neg)
		sn->type = V_ASN1_NEG_INTEGER;
	/* Handshakes look objects up (and may sort the stack) under the same lock. */
	if (X509_STORE_lock(t->store) != 1) {
		ASN1_INTEGER_free(sn);
		return false;
	}
	objs = X509_STORE_get0_objects(t->store);
	for (int i = 0; !revoked && i < sk_X509_OBJECT_num(objs); i++) {
		X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;
		X509_REVOKED *rev = NULL;

		if (crl == NULL ||
		    !X509_NAME_digest(X509_CRL_get_issuer(crl), EVP_sha256(), md, &mdlen) ||
		    mdlen < sizeof(ref->issuer_md) ||
		    memcmp(md, ref->issuer_md, sizeof(ref->issuer_md)) != 0)
			continue;
		/* 1: listed; 2: listed as removeFromCRL, i.e. no longer revoked */
		revoked = X509_CRL_get0_by_serial(crl, &rev, sn) == 1;
	}
	X509_STORE_unlock(t->store);
	ASN1_INTEGER_free(sn);
	ERR_clear_error();
	return revoked;
}

int kg_trust_add_ca(struct kg_trust *t, const struct kg_ca *ca, char *err, size_t errlen)
{
	struct trust_ca *slot;
	char hex[KG_SHA256_HEX_LEN + 1];
	X509 *x = NULL;
	BIO *bio;

	if (t == NULL || ca == NULL || ca->name[0] == '\0' || ca->pem == NULL) {
		seterr(err, errlen, "CA needs a name and a PEM certificate");
		return -1;
	}
	if (find_ca_by_name(t, ca->name) != NULL) {
		seterr(err, errlen, "CA %s: added twice", ca->name);
		return -1;
	}
	bio = BIO_new_mem_buf(ca->pem, -1);
	if (bio != NULL)
		x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (x == NULL) {
		ERR_clear_error();
		seterr(err, errlen, "CA %s: stored PEM is not a certificate", ca->name);
		return -1;
	}
	if (kg_cert_sha256_hex(x, hex) != 0) {
		seterr(err, errlen, "CA %s: cannot hash the certificate", ca->name);
		goto out_free;
	}
	/* The registry row names the certificate by hash; a PEM that does not match it
	 * means the row was edited behind our back. */
	if (ca->sha256[0] != '\0' && strcasecmp(ca->sha256, hex) != 0) {
		seterr(err, errlen, "CA %s: certificate does not match its recorded SHA-256", ca->name);
		goto out_free;
	}
	if (t->n_cas == t->cap_cas) {
		size_t cap = t->cap_cas != 0 ? t->cap_cas * 2 : 8;
		struct trust_ca *cas = realloc(t->cas, cap * sizeof(*cas));

		if (cas == NULL) {
			seterr(err, errlen, "CA %s: out of memory", ca->name);
			goto out_free;
		}
		t->cas = cas;
		t->cap_cas = cap;
	}
	/* Only a proven CA becomes a trust anchor; an unproven one is only remembered. */
	if (ca->verified && X509_STORE_add_cert(t->store, x) != 1) {
		ERR_clear_error();
		seterr(err, errlen, "CA %s: cannot add to the trust store", ca->name);
		goto out_free;
	}
	slot = &t->cas[t->n_cas++];
	memset(slot, 0, sizeof(*slot));
	(void)kg_strlcpy(slot->name, ca->name, sizeof(slot->name));
	memcpy(slot->sha256, hex, sizeof(slot->sha256));
	slot->cert = x;
	slot->verified = ca->verified;
	slot->row = *ca;
	slot->row.pem = NULL;
	/* The daemon builds a trust whole before its first handshake; a caller adding
	 * to one in use gets the same rule as a reload: nothing cached survives. */
	kg_chain_cache_clear(t->cache);
	return 0;

out_free:
	X509_free(x);
	return -1;
}

/* ASN1 time -> unix seconds; 0 if absent or unreadable. */
static int64_t asn1_to_unix(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
		return 0;
	return (int64_t)timegm(&tm);
}

/* A CRL file, PEM or DER. */
static X509_CRL *read_crl(const char *path, char *err, size_t errlen)
{
	X509_CRL *crl = NULL;
	FILE *f;
	BIO *bio;

	f = fopen(path, "rb");
	if (f == NULL) {
		seterr(err, errlen, "CRL %s: %s", path, strerror(errno));
		return NULL;
	}
	bio = BIO_new_fp(f, BIO_CLOSE);
	if (bio == NULL) {
		fclose(f);
		seterr(err, errlen, "CRL %s: out of memory", path);
		return NULL;
	}
	crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
	if (crl == NULL && BIO_reset(bio) == 0)
		crl = d2i_X509_CRL_bio(bio, NULL);
	if (crl == NULL)
		seterr(err, errlen, "CRL %s: neither a PEM nor a DER CRL", path);
	ERR_clear_error();
	BIO_free(bio);
	return crl;
}

int kg_trust_add_crl_file(struct kg_trust *t, const char *ca_name, const char *path, char *err,
			  size_t errlen)
{
	struct trust_ca *ca;
	EVP_PKEY *pub;
	X509_CRL *crl;
	int rc = -1;

	if (t == NULL || ca_name == NULL || path == NULL) {
		seterr(err, errlen, "CRL needs a CA name and a file");
		return -1;
	}
	ca = find_ca_by_name(t, ca_name);
	if (ca == NULL) {
		seterr(err, errlen, "CRL %s: CA %s is not registered", path, ca_name);
		return -1;
	}
	crl = read_crl(path, err, errlen);
	if (crl == NULL)
		return -1;
	pub = X509_get0_pubkey(ca->cert);
	if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca->cert)) != 0 ||
	    pub == NULL || X509_CRL_verify(crl, pub) != 1) {
		ERR_clear_error();
		seterr(err, errlen, "CRL %s: not issued by CA %s", path, ca_name);
		goto out_free;
	}
	free(ca->crl_path);
	ca->crl_path = strdup(path);
	if (ca->crl_path == NULL) {
		seterr(err, errlen, "CRL %s: out of memory", path);
		goto out_free;
	}
	if (X509_STORE_add_crl(t->store, crl) != 1) {
		ERR_clear_error();
		seterr(err, errlen, "CRL %s: cannot add to the trust store", path);
		goto out_free;
	}
	ca->crl_next_update = asn1_to_unix(X509_CRL_get0_nextUpdate(crl));
	if (ca->crl_next_update != 0 && (t->crl_min_next == 0 || ca->crl_next_update < t->crl_min_next))
		t->crl_min_next = ca->crl_next_update;
	ca->has_crl = true;
	t->n_crls++;
	kg_chain_cache_clear(t->cache);   /* as in kg_trust_add_ca() */
	rc = 0;

out_free:
	X509_CRL_free(crl); /* the store holds its own reference */
	return rc;
}

struct load_ctx {
	struct kg_trust *t;
	char *err;
	size_t errlen;
	int rc;
};

static int load_one_ca(const struct kg_ca *ca, void *arg)
{
	struct load_ctx *lc = arg;

	lc->rc = kg_trust_add_ca(lc->t, ca, lc->err, lc->errlen);
	return lc->rc != 0;
}

static int note_crl_skipped(struct kg_trust *t, const char *ca_name, const char *path)
{
	size_t ln = strlen(ca_name) + 1, lp = strlen(path) + 1;
	char **v = realloc(t->crl_skipped, (t->n_crl_skipped + 1) * sizeof(*v));
	char *e;

	if (v == NULL)
		return -1;
	t->crl_skipped = v;
	e = malloc(ln + lp);
	if (e == NULL)
		return -1;
	memcpy(e, ca_name, ln);
	memcpy(e + ln, path, lp);
	t->crl_skipped[t->n_crl_skipped++] = e;
	return 0;
}

int kg_trust_load(struct kg_trust *t, struct kg_registry *reg, const struct kg_config *cfg,
		  char *err, size_t errlen)
{
	struct load_ctx lc = { t, err, errlen, 0 };
	int rc;

	if (t == NULL || reg == NULL) {
		seterr(err, errlen, "trust load needs a registry");
		return -1;
	}
	if (cfg != NULL)
		kg_trust_set_policy(t, (int)cfg->security_level, (int64_t)cfg->crl_grace);
	rc = kg_registry_ca_list(reg, load_one_ca, &lc);
	if (lc.rc != 0)
		return -1;
	if (rc != 0) {
		seterr(err, errlen, "registry: cannot list CAs: %s", kg_err_str(rc));
		return -1;
	}
	/* A CRL for a CA that is not registered is skipped (kg_trust_crl_report() warns):
	 * that CA's devices are refused anyway, having no CA. Failing the load instead
	 * kept the previous trust, in which a removed CA was still trusted: `ca remove`
	 * must take effect whatever the config says. A bad CRL file for a registered CA
	 * stays an error: there the operator would silently lose revocation. */
	for (size_t i = 0; cfg != NULL && i < cfg->n_crls; i++) {
		if (find_ca_by_name(t, cfg->crls[i].ca_name) == NULL) {
			if (note_crl_skipped(t, cfg->crls[i].ca_name, cfg->crls[i].path) != 0) {
				seterr(err, errlen, "out of memory");
				return -1;
			}
			continue;
		}
		if (kg_trust_add_crl_file(t, cfg->crls[i].ca_name, cfg->crls[i].path, err, errlen) != 0)
			return -1;
	}
	return inherit_ca_status(t, err, errlen);
}

/* "2026-12-03T04:00:00Z" */
static void fmt_utc(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "%lld", (long long)t);
}

size_t kg_trust_crl_report(const struct kg_trust *t, FILE *f, time_t now)
{
	size_t refusing = 0;

	for (size_t i = 0; t != NULL && i < t->n_cas; i++) {
		const struct trust_ca *ca = &t->cas[i];
		char when[32], until[32];

		if (!ca->has_crl)
			continue;
		if (ca->crl_next_update == 0) {
			fprintf(f, "crl %s (%s): no nextUpdate, never expires\n", ca->name, ca->crl_path);
			continue;
		}
		fmt_utc(ca->crl_next_update, when);
		if ((int64_t)now <= ca->crl_next_update) {
			fprintf(f, "crl %s (%s): valid, next update %s\n", ca->name, ca->crl_path, when);
		} else if ((int64_t)now <= ca->crl_next_update + t->crl_grace) {
			fmt_utc(ca->crl_next_update + t->crl_grace, until);
			fprintf(f, "WARNING: crl %s (%s) EXPIRED at %s; within crl_grace until %s: "
				   "devices of CA %s are accepted with a warning, then refused "
				   "(crl_expired)\n", ca->name, ca->crl_path, when, until, ca->name);
		} else {
			refusing++;
			fprintf(f, "WARNING: crl %s (%s) EXPIRED at %s (crl_grace %llds passed): "
				   "every device of CA %s is REFUSED (crl_expired) until a fresh CRL "
				   "is installed\n", ca->name, ca->crl_path, when,
				(long long)t->crl_grace, ca->name);
		}
	}
	for (size_t i = 0; t != NULL && i < t->n_crl_skipped; i++) {
		const char *ca = t->crl_skipped[i];

		fprintf(f, "WARNING: crl %s (%s) skipped: CA %s is not registered (its devices are "
			   "refused anyway); remove the [crl] line\n", ca, ca + strlen(ca) + 1, ca);
	}
	return refusing;
}

int kg_trust_crl_metrics_write(const struct kg_trust *t, FILE *f, time_t now)
{
	fputs("# HELP ktlsgate_crl_next_update_timestamp_seconds nextUpdate of each CA's CRL, "
	      "unix time (absent: the CRL has none).\n"
	      "# TYPE ktlsgate_crl_next_update_timestamp_seconds gauge\n", f);
	for (size_t i = 0; t != NULL && i < t->n_cas; i++)
		if (t->cas[i].has_crl && t->cas[i].crl_next_update != 0)
			fprintf(f, "ktlsgate_crl_next_update_timestamp_seconds{ca=\"%s\"} %lld\n",
				t->cas[i].name, (long long)t->cas[i].crl_next_update);
	fputs("# HELP ktlsgate_crl_expired 1 when the CA's CRL is past its nextUpdate: its "
	      "devices are refused (crl_expired) once crl_grace has passed too.\n"
	      "# TYPE ktlsgate_crl_expired gauge\n", f);
	for (size_t i = 0; t != NULL && i < t->n_cas; i++)
		if (t->cas[i].has_crl)
			fprintf(f, "ktlsgate_crl_expired{ca=\"%s\"} %d\n", t->cas[i].name,
				t->cas[i].crl_next_update != 0 &&
					(int64_t)now > t->cas[i].crl_next_update);
	fprintf(f, "# HELP ktlsgate_crl_grace_seconds How long an expired CRL is still honoured.\n"
		   "# TYPE ktlsgate_crl_grace_seconds gauge\nktlsgate_crl_grace_seconds %lld\n",
		(long long)(t != NULL ? t->crl_grace : 0));
	return ferror(f) ? -1 : 0;
}

int64_t kg_cert_not_after(const X509 *cert)
{
	return cert != NULL ? asn1_to_unix(X509_get0_notAfter(cert)) : 0;
}

/* Every registered CA, also an unproven or disabled one: the registry holds it, so an
 * operator who renews it must know when (docs/monitoring.md, KtlsgateCACertExpiring). */
int kg_trust_ca_metrics_write(const struct kg_trust *t, FILE *f)
{
	fputs("# HELP ktlsgate_ca_not_after_timestamp_seconds notAfter of each registered CA "
	      "certificate, unix time.\n"
	      "# TYPE ktlsgate_ca_not_after_timestamp_seconds gauge\n", f);
	for (size_t i = 0; t != NULL && i < t->n_cas; i++) {
		int64_t na = kg_cert_not_after(t->cas[i].cert);

		if (na != 0)
			fprintf(f, "ktlsgate_ca_not_after_timestamp_seconds{ca=\"%s\"} %lld\n",
				t->cas[i].name, (long long)na);
	}
	return ferror(f) ? -1 : 0;
}

bool kg_trust_crl_warn_due(const struct kg_trust *t, const char *ca_name, time_t now,
			   int64_t interval)
{
	struct trust_ca *ca = t != NULL && ca_name != NULL ? find_ca_by_name(t, ca_name) : NULL;
	int64_t last;

	if (ca == NULL)
		return true;
	last = atomic_load_explicit(&ca->crl_warned_at, memory_order_relaxed);
	if (last != 0 && (int64_t)now - last < interval)
		return false;
	/* One winner among the workers that saw it at the same moment. */
	return atomic_compare_exchange_strong(&ca->crl_warned_at, &last, (int64_t)now);
}

int kg_verify_registry_thumb_lookup(void *reg, const char *thumb_hex, struct kg_device *dev)
{
	return kg_registry_device_find_thumbprint((struct kg_registry *)reg, thumb_hex, dev);
}

/* What verify_cb needs beyond OpenSSL's context (its app data), and what it saw. */
struct verify_state {
	const struct kg_trust *t;
	time_t now;                          /* judge time: `at` or the clock */
	char crl_ca[KG_NAME_MAX];            /* CA of the expired CRL met, if any */
	int64_t crl_next_update;
	bool crl_grace_used;                 /* ... and it was forgiven (within grace) */
};

/* The registered CA a CRL was loaded for (kg_trust_add_crl_file() checked the issuer). */
static const struct trust_ca *ca_of_crl(const struct kg_trust *t, X509_CRL *crl)
{
	for (size_t i = 0; crl != NULL && i < t->n_cas; i++)
		if (t->cas[i].has_crl &&
		    X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(t->cas[i].cert)) == 0)
			return &t->cas[i];
	return NULL;
}

/*
 * A CRL past its nextUpdate: OpenSSL refuses (X509_V_ERR_CRL_HAS_EXPIRED), which we
 * report as crl_expired. Within crl_grace the CRL is still used (a revoked device stays
 * refused) and the chain passes; the caller is told, to warn.
 */
static int crl_expired_cb(struct verify_state *vs, X509_STORE_CTX *ctx)
{
	X509_CRL *crl = X509_STORE_CTX_get0_current_crl(ctx);
	const struct trust_ca *ca = vs != NULL ? ca_of_crl(vs->t, crl) : NULL;
	int64_t next = crl != NULL ? asn1_to_unix(X509_CRL_get0_nextUpdate(crl)) : 0;

	if (vs == NULL)
		return 0;
	snprintf(vs->crl_ca, sizeof(vs->crl_ca), "%s", ca != NULL ? ca->name : "?");
	vs->crl_next_update = next;
	if (next == 0 || vs->t->crl_grace <= 0 || (int64_t)vs->now > next + vs->t->crl_grace)
		return 0;
	vs->crl_grace_used = true;
	X509_STORE_CTX_set_error(ctx, X509_V_OK);
	return 1;
}

/*
 * Called by OpenSSL for every error. Two jobs:
 * - an expired CRL within the grace is forgiven (crl_expired_cb);
 * - CAs without a CRL file must keep working while others have one, yet CRL_CHECK_ALL
 *   demands a CRL for every issuer. Forgive "unable to get CRL" exactly when the store
 *   holds no CRL at all for the issuer of the certificate being checked.
 */
static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
	struct verify_state *vs = X509_STORE_CTX_get_app_data(ctx);
	STACK_OF(X509_CRL) *crls;
	X509 *cur = X509_STORE_CTX_get_current_cert(ctx);
	int n;

	if (ok)
		return ok;
	if (X509_STORE_CTX_get_error(ctx) == X509_V_ERR_CRL_HAS_EXPIRED)
		return crl_expired_cb(vs, ctx);
	if (X509_STORE_CTX_get_error(ctx) != X509_V_ERR_UNABLE_TO_GET_CRL)
		return 0;
	if (cur == NULL)
		return 0;
	crls = X509_STORE_CTX_get1_crls(ctx, X509_get_issuer_name(cur));
	n = crls != NULL ? sk_X509_CRL_num(crls) : 0;
	sk_X509_CRL_pop_free(crls, X509_CRL_free);
	ERR_clear_error();
	if (n > 0)
		return 0;
	X509_STORE_CTX_set_error(ctx, X509_V_OK);
	return 1;
}

/* Is x one of the unproven CAs, or signed by one? */
static bool reaches_unproven(const struct kg_trust *t, X509 *x)
{
	char hex[KG_SHA256_HEX_LEN + 1];

	if (sha256_hex(t->sha256, x, hex) != 0)
		return false;
	for (size_t i = 0; i < t->n_cas; i++) {
		const struct trust_ca *ca = &t->cas[i];

		if (ca->verified)
			continue;
		if (strcmp(ca->sha256, hex) == 0)
			return true;
		if (X509_check_issued(ca->cert, x) == X509_V_OK &&
		    X509_verify(x, X509_get0_pubkey(ca->cert)) == 1)
			return true;
	}
	ERR_clear_error();
	return false;
}

/* The chain failed for lack of a trusted issuer: did it stop at an unproven CA? Looks
 * at the partial chain OpenSSL built and at whatever the peer sent. */
static bool chain_hits_unproven(const struct kg_trust *t, X509_STORE_CTX *ctx,
				STACK_OF(X509) *untrusted)
{
	STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);

	for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++)
		if (reaches_unproven(t, sk_X509_value(chain, i)))
			return true;
	for (int i = 0; untrusted != NULL && i < sk_X509_num(untrusted); i++)
		if (reaches_unproven(t, sk_X509_value(untrusted, i)))
			return true;
	return false;
}

/*
 * Would `cand` issue x but for a profile defect? OpenSSL skips such a candidate while
 * building the chain and reports "unable to get issuer", which reads as an unknown CA:
 * an issuer whose subject key identifier is not x's authority key identifier, or whose
 * own extensions do not decode. Returns that X509_V_ERR_*, or X509_V_OK.
 */
static int issuer_defect(X509 *cand, X509 *x)
{
	int e;

	if (X509_NAME_cmp(X509_get_subject_name(cand), X509_get_issuer_name(x)) != 0)
		return X509_V_OK;
	if ((X509_get_extension_flags(cand) & EXFLAG_INVALID) != 0)
		return X509_V_ERR_INVALID_EXTENSION;
	e = X509_check_issued(cand, x);
	if (e == X509_V_ERR_AKID_SKID_MISMATCH || e == X509_V_ERR_AKID_ISSUER_SERIAL_MISMATCH)
		return e;
	return X509_V_OK;
}

/* The first issuer_defect() between a certificate of the partial chain and a CA of t
 * or a certificate the peer sent. */
static int chain_issuer_defect(const struct kg_trust *t, X509_STORE_CTX *ctx,
			       STACK_OF(X509) *untrusted)
{
	STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
	int e = X509_V_OK;

	for (int i = 0; chain != NULL && i < sk_X509_num(chain) && e == X509_V_OK; i++) {
		X509 *x = sk_X509_value(chain, i);

		for (size_t j = 0; j < t->n_cas && e == X509_V_OK; j++)
			e = issuer_defect(t->cas[j].cert, x);
		for (int j = 0; untrusted != NULL && j < sk_X509_num(untrusted) && e == X509_V_OK; j++)
			e = issuer_defect(sk_X509_value(untrusted, j), x);
	}
	ERR_clear_error();
	return e;
}

/* Does the leaf, or any certificate the peer sent, carry an undecodable extension? */
static bool has_invalid_ext(X509 *leaf, STACK_OF(X509) *untrusted)
{
	bool bad = (X509_get_extension_flags(leaf) & EXFLAG_INVALID) != 0;

	for (int i = 0; untrusted != NULL && i < sk_X509_num(untrusted) && !bad; i++)
		bad = (X509_get_extension_flags(sk_X509_value(untrusted, i)) & EXFLAG_INVALID) != 0;
	ERR_clear_error();
	return bad;
}

/* OpenSSL's check_key_level(): the key's security bits against the level's floor. */
static bool key_level_ok(X509 *x, int level)
{
	static const int minbits[] = { 80, 112, 128, 192, 256 };
	EVP_PKEY *pk = X509_get0_pubkey(x);

	ERR_clear_error();
	if (level <= 0)
		return true;
	if (level > 5)
		level = 5;
	return pk != NULL && EVP_PKEY_get_security_bits(pk) >= minbits[level - 1];
}

static enum kg_reason map_x509_err(int e)
{
	switch (e) {
	case X509_V_ERR_EE_KEY_TOO_SMALL:
	case X509_V_ERR_CA_KEY_TOO_SMALL:
		return KG_REASON_WEAK_KEY;
	case X509_V_ERR_CA_MD_TOO_WEAK:
		return KG_REASON_WEAK_SIGNATURE;
	case X509_V_ERR_CRL_HAS_EXPIRED:
		return KG_REASON_CRL_EXPIRED;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return KG_REASON_CERT_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return KG_REASON_CERT_NOT_YET_VALID;
	case X509_V_ERR_CERT_REVOKED:
		return KG_REASON_CERT_REVOKED;
	case X509_V_ERR_INVALID_PURPOSE:
		return KG_REASON_BAD_EKU;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_CERT_UNTRUSTED:
		return KG_REASON_UNKNOWN_CA;
	default:
		return KG_REASON_BAD_CHAIN;
	}
}

/* Time validity of a pinned leaf (no chain to let OpenSSL check it). */
static enum kg_reason check_leaf_time(X509 *leaf, time_t at, int *x509_err)
{
	time_t now = at != 0 ? at : time(NULL);
	int c;

	c = X509_cmp_time(X509_get0_notBefore(leaf), &now);
	if (c == 0) {
		*x509_err = X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD;
		return KG_REASON_BAD_CHAIN;
	}
	if (c > 0) {
		*x509_err = X509_V_ERR_CERT_NOT_YET_VALID;
		return KG_REASON_CERT_NOT_YET_VALID;
	}
	c = X509_cmp_time(X509_get0_notAfter(leaf), &now);
	if (c == 0) {
		*x509_err = X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD;
		return KG_REASON_BAD_CHAIN;
	}
	if (c < 0) {
		*x509_err = X509_V_ERR_CERT_HAS_EXPIRED;
		return KG_REASON_CERT_EXPIRED;
	}
	return KG_REASON_OK;
}

/* Does a thumbprint-enrolled device pin this leaf under this very id? */
static bool thumb_pinned(kg_thumb_lookup_fn lookup, void *arg, const struct kg_identity *id)
{
	struct kg_device dev;

	if (lookup == NULL)
		return false;
	memset(&dev, 0, sizeof(dev));
	if (lookup(arg, id->thumbprint, &dev) != 0)
		return false;
	if (dev.attestation != KG_ATT_THUMBPRINT)
		return false;
	if (strcmp(dev.thumb_primary, id->thumbprint) != 0 &&
	    strcmp(dev.thumb_secondary, id->thumbprint) != 0)
		return false;
	return strcmp(dev.id, id->device_id) == 0;
}

/*
 * A verification context for leaf over t's store, with every rule of this file: the
 * clientAuth purpose, t's security level, the RFC 5280 strict profile, PARTIAL_CHAIN,
 * CRL flags as given, and verify_cb. trusted != NULL: those certificates are the only
 * anchors (a cached issuer); CRLs still come from t's store. NULL when out of memory.
 */
static X509_STORE_CTX *chain_ctx(const struct kg_trust *t, X509 *leaf, STACK_OF(X509) *untrusted,
				 STACK_OF(X509) *trusted, time_t at, unsigned long crl_flags,
				 struct verify_state *vs)
{
	X509_VERIFY_PARAM *param;
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();

	if (ctx == NULL || !X509_STORE_CTX_init(ctx, t->store, leaf, untrusted)) {
		X509_STORE_CTX_free(ctx);
		ERR_clear_error();
		return NULL;
	}
	if (trusted != NULL)
		X509_STORE_CTX_set0_trusted_stack(ctx, trusted);
	/* SSL_CLIENT: clientAuth EKU when an EKU is present, CA constraints on issuers. */
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	param = X509_STORE_CTX_get0_param(ctx);
	if (at != 0)
		X509_VERIFY_PARAM_set_time(param, at);
	/* The SSL's security level does not reach a context we build ourselves: set it,
	 * or RSA-512 leaves and MD5-signed chains pass (OpenSSL's check_auth_level). */
	X509_VERIFY_PARAM_set_auth_level(param, t->sec_level);
	/* PARTIAL_CHAIN: a proven intermediate is an anchor in its own right, as with
	 * Azure's registered intermediates. X509_STRICT: OpenSSL's RFC 5280 profile
	 * checks (CA:TRUE on every CA including the anchor, no keyCertSign on a leaf,
	 * AKID on every non-anchor, SKID on CAs, critical basicConstraints on CAs...).
	 * A device chain is the one thing this daemon authenticates; a factory PKI that
	 * fails them is refused with OpenSSL's words in the audit detail. */
	X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_X509_STRICT |
					   crl_flags);
	X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
	X509_STORE_CTX_set_app_data(ctx, vs);
	return ctx;
}

/* The registered CA that is this very certificate (the store hands out the objects
 * kg_trust_add_ca() put in, and X509_cmp() compares cached hashes, then DER). */
static const struct trust_ca *find_ca_by_cert(const struct kg_trust *t, X509 *x)
{
	for (size_t i = 0; i < t->n_cas; i++)
		if (t->cas[i].cert == x || X509_cmp(t->cas[i].cert, x) == 0)
			return &t->cas[i];
	return NULL;
}

/* Extensions whose rules reach down to the leaf from above its issuer: a chain with
 * one of them is never cached (see "The intermediates cache" above kg_verify_peer). */
static bool constrains_below(X509 *x)
{
	static const int nids[] = { NID_name_constraints, NID_policy_constraints,
				    NID_inhibit_any_policy, NID_policy_mappings };

	for (size_t i = 0; i < sizeof(nids) / sizeof(nids[0]); i++)
		if (X509_get_ext_by_NID(x, nids[i], -1) >= 0)
			return true;
	return false;
}

/*
 * After a full verification that passed: remember the leaf's issuer (chain[1]) when it
 * is not itself the anchor, with the window in which everything above the leaf holds:
 * the latest notBefore and earliest notAfter of chain[1..], and no later than the
 * earliest nextUpdate of t's CRLs (an upper CRL going stale must be seen by a full
 * verification, with its grace). A chain that used a CRL's grace is not cached.
 */
static void cache_issuer(const struct kg_trust *t, STACK_OF(X509) *chain, const struct trust_ca *ca,
			 const struct verify_state *vs)
{
	unsigned char key[KG_CHAIN_CACHE_KEY_LEN];
	int64_t from = INT64_MIN, until = INT64_MAX;
	unsigned char *der = NULL;
	const unsigned char *p;
	X509 *own = NULL;
	int n = sk_X509_num(chain), len;

	if (n < 3 || vs->crl_grace_used)
		return;
	for (int i = 1; i < n; i++) {
		X509 *x = sk_X509_value(chain, i);
		int64_t nb = asn1_to_unix(X509_get0_notBefore(x));
		int64_t na = asn1_to_unix(X509_get0_notAfter(x));

		if (constrains_below(x) || nb == 0 || na == 0)
			return;
		from = nb > from ? nb : from;
		until = na < until ? na : until;
	}
	if (t->crl_min_next != 0 && t->crl_min_next < until)
		until = t->crl_min_next;
	if ((int64_t)vs->now > until || cert_sha256(t->sha256, sk_X509_value(chain, 1), key) != 0)
		return;
	/* Our own parse of its DER: the peer's copy belongs to the SSL's library context
	 * (a TPM one may be freed at a reload while this trust lives on). */
	len = i2d_X509(sk_X509_value(chain, 1), &der);
	p = der;
	if (len > 0)
		own = d2i_X509(NULL, &p, len);
	if (own != NULL)
		kg_chain_cache_put(t->cache, key, own, (size_t)(ca - t->cas), from, until);
	X509_free(own);
	OPENSSL_free(der);
	ERR_clear_error();
}

/*
 * The cached path: is the leaf's issuer among what the peer sent, cached, and does the
 * leaf verify under it alone? True: accepted, id->ca_name set. False: the full
 * verification decides (also for a leaf this path refused, so every refusal keeps the
 * full path's reason and detail). *use says whether a candidate was looked up.
 */
static bool verify_cached(const struct kg_trust *t, X509 *leaf, STACK_OF(X509) *untrusted, time_t at,
			  struct kg_identity *id, int *x509_err, enum kg_chain_use *use)
{
	const X509_NAME *want = X509_get_issuer_name(leaf);
	time_t now = at != 0 ? at : time(NULL);

	for (int i = 0; untrusted != NULL && i < sk_X509_num(untrusted); i++) {
		/* per candidate: what one verification saw must not leak into the next */
		struct verify_state vs = { .t = t, .now = now };
		X509 *u = sk_X509_value(untrusted, i), *issuer;
		unsigned char key[KG_CHAIN_CACHE_KEY_LEN];
		STACK_OF(X509) *anchors, *chain;
		X509_STORE_CTX *ctx = NULL;
		size_t ca_idx = 0;
		bool ok = false;

		if (X509_NAME_cmp(X509_get_subject_name(u), want) != 0)
			continue;
		*use = KG_CHAIN_CACHE_MISS;
		if (cert_sha256(t->sha256, u, key) != 0 ||
		    (issuer = kg_chain_cache_get(t->cache, key, (int64_t)now, &ca_idx)) == NULL)
			continue;
		if (ca_idx < t->n_cas && t->cas[ca_idx].verified &&
		    (anchors = sk_X509_new_null()) != NULL) {
			if (sk_X509_push(anchors, issuer) > 0)
				ctx = chain_ctx(t, leaf, NULL, anchors, at,
						t->n_crls > 0 ? X509_V_FLAG_CRL_CHECK : 0, &vs);
			if (ctx != NULL && X509_verify_cert(ctx) == 1) {
				chain = X509_STORE_CTX_get0_chain(ctx);
				ok = sk_X509_num(chain) == 2 && sk_X509_value(chain, 1) == issuer;
			}
			X509_STORE_CTX_free(ctx);
			sk_X509_free(anchors);
		}
		X509_free(issuer);
		ERR_clear_error();
		if (!ok)
			continue;
		*use = KG_CHAIN_CACHE_HIT;
		(void)kg_strlcpy(id->ca_name, t->cas[ca_idx].name, sizeof(id->ca_name));
		if (vs.crl_grace_used) {
			memcpy(id->crl_grace_ca, vs.crl_ca, sizeof(id->crl_grace_ca));
			id->crl_next_update = vs.crl_next_update;
		}
		*x509_err = X509_V_OK;
		return true;
	}
	return false;
}

static enum kg_reason verify_chain(const struct kg_trust *t, X509 *leaf, STACK_OF(X509) *untrusted,
				   time_t at, struct kg_identity *id, int *x509_err,
				   enum kg_chain_use *use)
{
	struct verify_state vs = { .t = t, .now = at != 0 ? at : time(NULL) };
	STACK_OF(X509) *chain;
	X509_STORE_CTX *ctx;
	enum kg_reason r;
	int defect;

	/* A CA certificate is never a device, even one we trust as an anchor (with
	 * PARTIAL_CHAIN it would otherwise verify as a chain of one). */
	if ((X509_get_extension_flags(leaf) & EXFLAG_CA) != 0) {
		*x509_err = X509_V_ERR_INVALID_PURPOSE;
		return KG_REASON_BAD_CHAIN;
	}
	/* An extension that does not decode makes OpenSSL skip the certificate while it
	 * builds the chain ("unable to get issuer": an unknown CA); name it instead.
	 * Anchors: chain_issuer_defect() below. */
	if (has_invalid_ext(leaf, untrusted)) {
		*x509_err = X509_V_ERR_INVALID_EXTENSION;
		return KG_REASON_BAD_CHAIN;
	}
	if (verify_cached(t, leaf, untrusted, at, id, x509_err, use))
		return KG_REASON_OK;
	ctx = chain_ctx(t, leaf, untrusted, NULL, at,
			t->n_crls > 0 ? X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL : 0, &vs);
	if (ctx == NULL) {
		*x509_err = X509_V_ERR_OUT_OF_MEM;
		return KG_REASON_BAD_CHAIN;
	}

	if (X509_verify_cert(ctx) == 1) {
		const struct trust_ca *ca = NULL;

		chain = X509_STORE_CTX_get0_chain(ctx);
		/* The registered CA named: the anchor (top of the chain). With PARTIAL_CHAIN
		 * OpenSSL stops at the nearest trusted issuer, so this is the most specific
		 * proven CA; scanning down is only belt and braces. */
		for (int i = sk_X509_num(chain) - 1; i >= 1 && ca == NULL; i--) {
			ca = find_ca_by_cert(t, sk_X509_value(chain, i));
			if (ca != NULL && !ca->verified)
				ca = NULL;
		}
		if (ca == NULL) {
			/* Cannot happen: the anchor came from our store. Fail closed. */
			*x509_err = X509_V_ERR_CERT_UNTRUSTED;
			r = KG_REASON_UNKNOWN_CA;
		} else {
			(void)kg_strlcpy(id->ca_name, ca->name, sizeof(id->ca_name));
			*x509_err = X509_V_OK;
			r = KG_REASON_OK;
			if (vs.crl_grace_used) {
				memcpy(id->crl_grace_ca, vs.crl_ca, sizeof(id->crl_grace_ca));
				id->crl_next_update = vs.crl_next_update;
			}
			cache_issuer(t, chain, ca, &vs);
		}
	} else {
		*x509_err = X509_STORE_CTX_get_error(ctx);
		if (*x509_err == X509_V_OK)
			*x509_err = X509_V_ERR_UNSPECIFIED;
		r = map_x509_err(*x509_err);
		if (r == KG_REASON_UNKNOWN_CA &&
		    (defect = chain_issuer_defect(t, ctx, untrusted)) != X509_V_OK) {
			*x509_err = defect;
			r = KG_REASON_BAD_CHAIN;
		} else if (r == KG_REASON_UNKNOWN_CA && chain_hits_unproven(t, ctx, untrusted)) {
			r = KG_REASON_UNPROVEN_CA;
		} else if (r == KG_REASON_CRL_EXPIRED) {
			/* The CA to act on: the one whose CRL must be renewed. */
			memcpy(id->ca_name, vs.crl_ca, sizeof(id->ca_name));
			id->crl_next_update = vs.crl_next_update;
		}
	}
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	return r;
}

enum kg_reason kg_verify_peer_ex(const struct kg_trust *t, X509 *leaf, STACK_OF(X509) *untrusted,
				 time_t at, kg_thumb_lookup_fn lookup, void *lookup_arg,
				 struct kg_identity *id, int *x509_err, enum kg_chain_use *use)
{
	enum kg_chain_use use_local;
	int xerr_local;
	enum kg_reason r;

	if (x509_err == NULL)
		x509_err = &xerr_local;
	if (use == NULL)
		use = &use_local;
	*use = KG_CHAIN_UNCACHED;
	*x509_err = X509_V_OK;
	/* The identity is filled as far as it is known even on refusal: audit wants it. */
	memset(id, 0, sizeof(*id));
	if (leaf == NULL) {
		*x509_err = X509_V_ERR_APPLICATION_VERIFICATION;
		return KG_REASON_NO_CERT;
	}
	if (sha256_hex(t != NULL ? t->sha256 : NULL, leaf, id->thumbprint) != 0) {
		*x509_err = X509_V_ERR_UNSPECIFIED;
		return KG_REASON_BAD_CHAIN;
	}
	id->not_after = asn1_to_unix(X509_get0_notAfter(leaf));
	r = kg_identity_from_cert(leaf, id->device_id, sizeof(id->device_id), &id->module_off);
	if (r != KG_REASON_OK) {
		*x509_err = X509_V_ERR_APPLICATION_VERIFICATION;
		return r;
	}

	if (thumb_pinned(lookup, lookup_arg, id)) {
		id->method = KG_ATT_THUMBPRINT;
		/* The pin proves which certificate, not that its key resists factoring:
		 * the same floor as a chain's leaf (X509_V_ERR_EE_KEY_TOO_SMALL). */
		if (!key_level_ok(leaf, t != NULL ? t->sec_level : KG_SECURITY_LEVEL_DEFAULT)) {
			*x509_err = X509_V_ERR_EE_KEY_TOO_SMALL;
			return KG_REASON_WEAK_KEY;
		}
		if ((X509_get_extension_flags(leaf) & EXFLAG_INVALID) != 0) {
			ERR_clear_error();
			*x509_err = X509_V_ERR_INVALID_EXTENSION;
			return KG_REASON_BAD_CHAIN;
		}
		r = check_leaf_time(leaf, at, x509_err);
		if (r != KG_REASON_OK)
			return r;
		if (X509_check_purpose(leaf, X509_PURPOSE_SSL_CLIENT, 0) != 1) {
			ERR_clear_error();
			*x509_err = X509_V_ERR_INVALID_PURPOSE;
			return KG_REASON_BAD_EKU;
		}
		return KG_REASON_OK;
	}
	/* A self-signed leaf can only ever be a pin; no CA vouches for it. */
	if (X509_self_signed(leaf, 0) == 1) {
		*x509_err = X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT;
		return KG_REASON_THUMBPRINT_MISMATCH;
	}
	id->method = KG_ATT_CA;
	if (t == NULL) {
		*x509_err = X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
		return KG_REASON_UNKNOWN_CA;
	}
	return verify_chain(t, leaf, untrusted, at, id, x509_err, use);
}

enum kg_reason kg_verify_peer(const struct kg_trust *t, X509 *leaf, STACK_OF(X509) *untrusted,
			      time_t at, kg_thumb_lookup_fn lookup, void *lookup_arg,
			      struct kg_identity *id, int *x509_err)
{
	return kg_verify_peer_ex(t, leaf, untrusted, at, lookup, lookup_arg, id, x509_err, NULL);
}

size_t kg_trust_chain_cache_size(const struct kg_trust *t)
{
	return t != NULL ? kg_chain_cache_size(t->cache) : 0;
}

/* What this trust accepts, as a digest: policy, every CA (certificate, verified, its
 * registry row's settings), every CRL file's bytes. Two trusts built from the same
 * registry and config agree; any CA, CRL or policy change differs. */
static void fp_add(EVP_MD_CTX *m, const void *p, size_t n)
{
	(void)EVP_DigestUpdate(m, p, n);
}

int kg_trust_fingerprint(const struct kg_trust *t, uint8_t out[32])
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	unsigned int len = 0;
	int ok;

	if (m == NULL || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(m);
		return -1;
	}
	fp_add(m, &t->sec_level, sizeof(t->sec_level));
	fp_add(m, &t->crl_grace, sizeof(t->crl_grace));
	fp_add(m, &t->n_cas, sizeof(t->n_cas));
	for (size_t i = 0; i < t->n_cas; i++) {
		const struct trust_ca *ca = &t->cas[i];
		const struct kg_ca *r = &ca->row;
		uint8_t flags[4] = { ca->verified, ca->has_crl, r->auto_enroll, r->has_username_check };

		fp_add(m, ca->name, strlen(ca->name) + 1);
		fp_add(m, ca->sha256, strlen(ca->sha256) + 1);
		fp_add(m, flags, sizeof(flags));
		fp_add(m, r->backend, strlen(r->backend) + 1);
		fp_add(m, &r->status, sizeof(r->status));
		fp_add(m, &r->username_check, sizeof(r->username_check));
		if (ca->has_crl && ca->crl_path != NULL) {
			FILE *f = fopen(ca->crl_path, "rb");
			uint8_t buf[4096];
			size_t n;

			fp_add(m, ca->crl_path, strlen(ca->crl_path) + 1);
			while (f != NULL && (n = fread(buf, 1, sizeof(buf), f)) > 0)
				fp_add(m, buf, n);
			if (f != NULL)
				fclose(f);
		}
	}
	ok = EVP_DigestFinal_ex(m, out, &len) == 1 && len == 32;
	EVP_MD_CTX_free(m);
	return ok ? 0 : -1;
}

void kg_trust_adopt_generation(struct kg_trust *t, uint64_t gen)
{
	if (gen != 0)
		t->generation = gen;
}
