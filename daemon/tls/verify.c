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
	int sec_level;            /* OpenSSL security level for keys and signatures */
	int64_t crl_grace;        /* seconds an expired CRL is still honoured */
	uint64_t generation;      /* random, never 0: see kg_trust_generation() */
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

int kg_cert_sha256_hex(X509 *cert, char out[KG_SHA256_HEX_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	out[0] = '\0';
	if (cert == NULL || !X509_digest(cert, EVP_sha256(), md, &len) || len * 2 != KG_SHA256_HEX_LEN)
		return -1;
	for (unsigned int i = 0; i < len; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0x0f];
	}
	out[KG_SHA256_HEX_LEN] = '\0';
	return 0;
}

struct kg_trust *kg_trust_new(void)
{
	struct kg_trust *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->store = X509_STORE_new();
	if (t->store == NULL) {
		free(t);
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
	X509_STORE_free(t->store);
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

int kg_leaf_ref_from_cert(X509 *leaf, struct kg_leaf_ref *ref)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	const ASN1_INTEGER *sn;
	unsigned int mdlen = 0;
	int len;

	memset(ref, 0, sizeof(*ref));
	if (leaf == NULL || (sn = X509_get0_serialNumber(leaf)) == NULL ||
	    !X509_NAME_digest(X509_get_issuer_name(leaf), EVP_sha256(), md, &mdlen) ||
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

static struct trust_ca *find_ca_by_sha(const struct kg_trust *t, const char *hex)
{
	for (size_t i = 0; i < t->n_cas; i++)
		if (strcmp(t->cas[i].sha256, hex) == 0)
			return &t->cas[i];
	return NULL;
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
	ca->has_crl = true;
	t->n_crls++;
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
	/* A CRL configured for a CA we do not know is an error, not a warning: the
	 * operator asked for revocation and would silently not get it. */
	for (size_t i = 0; cfg != NULL && i < cfg->n_crls; i++)
		if (kg_trust_add_crl_file(t, cfg->crls[i].ca_name, cfg->crls[i].path, err, errlen) != 0)
			return -1;
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

	if (kg_cert_sha256_hex(x, hex) != 0)
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

static enum kg_reason verify_chain(const struct kg_trust *t, X509 *leaf, STACK_OF(X509) *untrusted,
				   time_t at, struct kg_identity *id, int *x509_err)
{
	struct verify_state vs = { .t = t, .now = at != 0 ? at : time(NULL) };
	X509_VERIFY_PARAM *param;
	STACK_OF(X509) *chain;
	X509_STORE_CTX *ctx;
	enum kg_reason r;
	unsigned long flags;
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
	ctx = X509_STORE_CTX_new();
	if (ctx == NULL || !X509_STORE_CTX_init(ctx, t->store, leaf, untrusted)) {
		X509_STORE_CTX_free(ctx);
		ERR_clear_error();
		*x509_err = X509_V_ERR_OUT_OF_MEM;
		return KG_REASON_BAD_CHAIN;
	}
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
	flags = X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_X509_STRICT;
	if (t->n_crls > 0)
		flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
	X509_VERIFY_PARAM_set_flags(param, flags);
	X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
	X509_STORE_CTX_set_app_data(ctx, &vs);

	if (X509_verify_cert(ctx) == 1) {
		const struct trust_ca *ca = NULL;
		char hex[KG_SHA256_HEX_LEN + 1];

		chain = X509_STORE_CTX_get0_chain(ctx);
		/* The registered CA named: the anchor (top of the chain). With PARTIAL_CHAIN
		 * OpenSSL stops at the nearest trusted issuer, so this is the most specific
		 * proven CA; scanning down is only belt and braces. */
		for (int i = sk_X509_num(chain) - 1; i >= 1 && ca == NULL; i--) {
			if (kg_cert_sha256_hex(sk_X509_value(chain, i), hex) != 0)
				continue;
			ca = find_ca_by_sha(t, hex);
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

enum kg_reason kg_verify_peer(const struct kg_trust *t, X509 *leaf, STACK_OF(X509) *untrusted,
			      time_t at, kg_thumb_lookup_fn lookup, void *lookup_arg,
			      struct kg_identity *id, int *x509_err)
{
	int xerr_local;
	enum kg_reason r;

	if (x509_err == NULL)
		x509_err = &xerr_local;
	*x509_err = X509_V_OK;
	/* The identity is filled as far as it is known even on refusal: audit wants it. */
	memset(id, 0, sizeof(*id));
	if (leaf == NULL) {
		*x509_err = X509_V_ERR_APPLICATION_VERIFICATION;
		return KG_REASON_NO_CERT;
	}
	if (kg_cert_sha256_hex(leaf, id->thumbprint) != 0) {
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
	return verify_chain(t, leaf, untrusted, at, id, x509_err);
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
