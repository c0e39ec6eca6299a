/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_verify.c - device identity and certificate verification: the CN rules, CNs
 * built by hand to carry NULs or duplicates, chains through registered CAs (proven or
 * not), validity and the `at` override, EKU, CA constraints, CRLs per CA, thumbprint
 * pins, and the SHA-256 thumbprint against an independent computation. Every PKI is
 * made fresh by kg_pki_make() in a per-test temporary directory; what kg_pki_make()
 * will not make (weak keys, MD5/SHA-1 signatures, broken RFC 5280 profiles, malformed
 * extensions, expired CRLs) is made by hand with OpenSSL's API (make_hand()).
 */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ops/err.h"
#include "cli/pki.h"
#include "tls/chain_cache.h"
#include "tls/ec_decode.h"
#include "tls/verify.h"
#include "testlib.h"

#define DAY 86400

static char dir[PATH_MAX];
static struct kg_trust *trust;

static void setup(void)
{
	kg_test_tmpdir(dir, sizeof(dir));
	trust = kg_trust_new();
	ck_assert_ptr_nonnull(trust);
}

static void teardown(void)
{
	kg_trust_free(trust);
	kg_test_rmdir(dir);
}

/* The same tests with the device's certificates decoded and verified by the built-in
 * EC method ([tls] fast_ec_decode, tls/ec_decode.h): every verdict must be the same.
 * verify_ex() registers the engine around its loads and the verification only: the
 * tests also sign certificates and CRLs with the PKI module, which is not the daemon's
 * business and runs without it. */
static bool fast_ec;

static void setup_fast_ec(void)
{
	fast_ec = true;
	setup();
}

static void teardown_fast_ec(void)
{
	teardown();
	fast_ec = false;
}

static void fast_ec_on(void)
{
	char err[256];

	if (fast_ec)
		ck_assert_int_ge(kg_tls_ec_decode_init(true, err, sizeof(err)), 0);
}

static void fast_ec_off(void)
{
	if (fast_ec)
		kg_tls_ec_decode_fini();
}

/* An EC key on the NIST curve `nist` ("P-256"), asked for by OpenSSL's own curve name:
 * with [tls] fast_ec_decode's engine in place (the second TCase), EC contexts made by
 * name go through the built-in EC method, which knows only those names. */
static EVP_PKEY *ec_keygen(const char *nist)
{
	int nid = EC_curve_nist2nid(nist);

	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", nid != NID_undef ? OBJ_nid2sn(nid) : nist);
}

static void path_of(char *out, size_t cap, const char *sub, const char *file)
{
	int n = file != NULL ? snprintf(out, cap, "%s/%s/%s", dir, sub, file)
			     : snprintf(out, cap, "%s/%s", dir, sub);

	ck_assert(n > 0 && (size_t)n < cap);
}

/* Everything a test may vary about a certificate; zero = kg_pki_make's defaults. */
struct mk {
	int64_t not_before;
	int64_t days;
	enum kg_pki_eku eku;
	bool not_ca;
	enum kg_pki_keytype key;
};

static void make_ex(enum kg_pki_kind kind, const char *cn, const char *sub, const char *issuer,
		    const struct mk *o)
{
	char out[PATH_MAX], iss[PATH_MAX], err[512] = "";
	struct kg_pki_req req = { .kind = kind, .cn = cn, .out_dir = out };

	path_of(out, sizeof(out), sub, NULL);
	if (issuer != NULL) {
		path_of(iss, sizeof(iss), issuer, NULL);
		req.issuer_dir = iss;
	}
	if (o != NULL) {
		req.not_before = o->not_before;
		req.days = o->days;
		req.eku = o->eku;
		req.not_ca = o->not_ca;
		req.key = o->key;
	}
	ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == 0, "make %s: %s", cn, err);
}

static void make(enum kg_pki_kind kind, const char *cn, const char *sub, const char *issuer)
{
	make_ex(kind, cn, sub, issuer, NULL);
}

static X509 *load(const char *sub)
{
	char p[PATH_MAX], err[512] = "";
	X509 *x;

	path_of(p, sizeof(p), sub, "cert.pem");
	x = kg_pem_read_cert(p, err, sizeof(err));
	ck_assert_msg(x != NULL, "%s", err);
	return x;
}

/* Register the CA in `sub` under `name` as the registry would hand it over. */
static void add_ca(const char *name, const char *sub, bool verified)
{
	char p[PATH_MAX], err[512] = "";
	struct kg_ca ca;
	X509 *x;

	memset(&ca, 0, sizeof(ca));
	path_of(p, sizeof(p), sub, "cert.pem");
	ck_assert_msg(kg_pem_read_cert_only(p, &x, &ca.pem, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(kg_cert_sha256_hex(x, ca.sha256), 0);
	X509_free(x);
	(void)kg_strlcpy(ca.name, name, sizeof(ca.name));
	ca.verified = verified;
	ck_assert_msg(kg_trust_add_ca(trust, &ca, err, sizeof(err)) == 0, "%s", err);
	free(ca.pem);
}

static void add_crl(const char *ca_name, const char *ca_sub, const char *const *revoked_subs,
		    size_t n)
{
	char cadir[PATH_MAX], crl[PATH_MAX], err[512] = "";
	char files[4][PATH_MAX];
	const char *fp[4];

	ck_assert_uint_le(n, 4);
	for (size_t i = 0; i < n; i++) {
		path_of(files[i], sizeof(files[i]), revoked_subs[i], "cert.pem");
		fp[i] = files[i];
	}
	path_of(cadir, sizeof(cadir), ca_sub, NULL);
	path_of(crl, sizeof(crl), ca_sub, "crl.pem");
	ck_assert_msg(kg_pki_crl(cadir, fp, n, crl, err, sizeof(err)) == 0, "%s", err);
	ck_assert_msg(kg_trust_add_crl_file(trust, ca_name, crl, err, sizeof(err)) == 0, "%s", err);
}

/* Verify the leaf in `sub`, sending the certs of `chain_subs` as intermediates. */
static enum kg_reason verify_ex(const char *sub, const char *const *chain_subs, size_t n,
				time_t at, kg_thumb_lookup_fn lookup, void *arg,
				struct kg_identity *id, int *xerr)
{
	STACK_OF(X509) *untrusted = NULL;
	enum kg_reason r;
	X509 *leaf;

	fast_ec_on();
	leaf = load(sub);
	if (n > 0) {
		untrusted = sk_X509_new_null();
		for (size_t i = 0; i < n; i++)
			ck_assert(sk_X509_push(untrusted, load(chain_subs[i])));
	}
	r = kg_verify_peer(trust, leaf, untrusted, at, lookup, arg, id, xerr);
	sk_X509_pop_free(untrusted, X509_free);
	X509_free(leaf);
	fast_ec_off();
	return r;
}

static enum kg_reason verify(const char *sub, const char *chain_sub)
{
	struct kg_identity id;
	int xerr;

	return verify_ex(sub, &chain_sub, chain_sub != NULL ? 1 : 0, 0, NULL, NULL, &id, &xerr);
}

#define ck_reason(got, want)                                                                      \
	do {                                                                                      \
		enum kg_reason g_ = (got), w_ = (want);                                           \
		ck_assert_msg(g_ == w_, "reason %s, wanted %s", kg_reason_str(g_),                \
			      kg_reason_str(w_));                                                 \
	} while (0)

/* A certificate kg_pki_make() would not make. exts: name/value pairs for
 * X509V3_EXT_nconf ("critical,...", "DER:..."); issuer NULL: self-signed. */
struct hand {
	const char *key;          /* "rsa:BITS" or "ec:CURVE" */
	const char *issuer;       /* sub dir holding cert.pem + key.pem */
	const EVP_MD *md;         /* NULL: SHA-256 */
	const char *exts[8][2];
};

static EVP_PKEY *read_key(const char *sub)
{
	char p[PATH_MAX];
	EVP_PKEY *k;
	FILE *f;

	path_of(p, sizeof(p), sub, "key.pem");
	f = fopen(p, "r");
	ck_assert_ptr_nonnull(f);
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert_ptr_nonnull(k);
	return k;
}

static void make_hand(const char *sub, const char *cn, const struct hand *h)
{
	char p[PATH_MAX];
	EVP_PKEY *key, *signer;
	X509 *x = X509_new(), *issuer = NULL;
	X509V3_CTX v3;
	FILE *f;

	ck_assert_ptr_nonnull(x);
	if (strncmp(h->key, "rsa:", 4) == 0)
		key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)atoi(h->key + 4));
	else
		key = ec_keygen(h->key + 3);
	ck_assert_msg(key != NULL, "keygen %s", h->key);
	signer = key;
	if (h->issuer != NULL) {
		issuer = load(h->issuer);
		signer = read_key(h->issuer);
	}
	ck_assert(X509_set_version(x, X509_VERSION_3));
	ck_assert(ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(random() & 0x7fffffff)));
	ck_assert_ptr_nonnull(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
	ck_assert_ptr_nonnull(X509_gmtime_adj(X509_getm_notAfter(x), 30L * DAY));
	ck_assert(X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
					     (const unsigned char *)cn, -1, -1, 0));
	ck_assert(X509_set_issuer_name(x, X509_get_subject_name(issuer != NULL ? issuer : x)));
	ck_assert(X509_set_pubkey(x, key));
	X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	for (size_t i = 0; i < 8 && h->exts[i][0] != NULL; i++) {
		X509_EXTENSION *e = X509V3_EXT_nconf(NULL, &v3, h->exts[i][0], h->exts[i][1]);

		ck_assert_msg(e != NULL, "extension %s = %s", h->exts[i][0], h->exts[i][1]);
		ck_assert(X509_add_ext(x, e, -1));
		X509_EXTENSION_free(e);
	}
	ck_assert_msg(X509_sign(x, signer, h->md != NULL ? h->md : EVP_sha256()) > 0, "sign %s", cn);
	path_of(p, sizeof(p), sub, NULL);
	{
		char cmd[PATH_MAX + 16];

		snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", p);
		ck_assert_int_eq(system(cmd), 0);
	}
	path_of(p, sizeof(p), sub, "cert.pem");
	f = fopen(p, "w");
	ck_assert(f != NULL && PEM_write_X509(f, x));
	fclose(f);
	path_of(p, sizeof(p), sub, "key.pem");
	f = fopen(p, "w");
	ck_assert(f != NULL && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
	fclose(f);
	if (signer != key)
		EVP_PKEY_free(signer);
	EVP_PKEY_free(key);
	X509_free(issuer);
	X509_free(x);
}

/* The extension sets of a well-formed leaf and CA (what kg_pki_make() issues). */
#define LEAF_EXTS                                                                         \
	{ "basicConstraints", "critical,CA:FALSE" }, { "keyUsage", "critical,digitalSignature" }, \
	{ "extendedKeyUsage", "clientAuth" }, { "subjectKeyIdentifier", "hash" },             \
	{ "authorityKeyIdentifier", "keyid" }
#define CA_EXTS                                                                           \
	{ "basicConstraints", "critical,CA:TRUE" },                                           \
	{ "keyUsage", "critical,keyCertSign,cRLSign" }, { "subjectKeyIdentifier", "hash" },   \
	{ "authorityKeyIdentifier", "keyid" }

/* ---- identity -------------------------------------------------------------------- */

START_TEST(test_identity_table)
{
	static const struct {
		const char *cn;
		size_t len; /* 0: strlen */
		bool ok;
		size_t module_off;
	} cases[] = {
		{ "dev-1", 0, true, 0 },
		{ "a", 0, true, 0 },
		{ "sensor.042_A:b@c", 0, true, 0 },
		{ "dev-1/mod", 0, true, 6 },
		{ "d/m", 0, true, 2 },
		{ "...", 0, true, 0 },
		{ ".a/..b", 0, true, 3 },
		{ "", 0, false, 0 },
		{ "dev 1", 0, false, 0 },
		{ "dev\t1", 0, false, 0 },
		{ "dev\n", 0, false, 0 },
		{ "\x01" "dev", 0, false, 0 },
		{ "dev\x7f", 0, false, 0 },
		{ "d\xc3\xa9v", 0, false, 0 },
		{ "a/b/c", 0, false, 0 },
		{ "/dev", 0, false, 0 },
		{ "dev/", 0, false, 0 },
		{ "/", 0, false, 0 },
		{ ".", 0, false, 0 },
		{ "..", 0, false, 0 },
		{ "a/..", 0, false, 0 },
		{ "a/.", 0, false, 0 },
		{ "../a", 0, false, 0 },
		{ "./a", 0, false, 0 },
		{ "dev\0evil", 8, false, 0 },
		{ "dev\0", 4, false, 0 },
	};
	char id128[130], id129[131];
	size_t off;

	for (size_t i = 0; i < KG_NITEMS(cases); i++) {
		size_t len = cases[i].len != 0 ? cases[i].len : strlen(cases[i].cn);

		off = 999;
		ck_assert_msg(kg_identity_valid(cases[i].cn, len, &off) == cases[i].ok,
			      "case %zu (\"%s\")", i, cases[i].cn);
		if (cases[i].ok)
			ck_assert_msg(off == cases[i].module_off, "case %zu: off %zu", i, off);
	}
	memset(id128, 'x', 128);
	id128[128] = '\0';
	memset(id129, 'x', 129);
	id129[129] = '\0';
	ck_assert(kg_identity_valid(id128, 128, &off));
	ck_assert(!kg_identity_valid(id129, 129, &off));
	id128[60] = '/';
	ck_assert(kg_identity_valid(id128, 128, &off));
	ck_assert_uint_eq(off, 61);
	ck_assert(kg_identity_valid("dev", 3, NULL));
	ck_assert(!kg_identity_valid(NULL, 0, NULL));
}
END_TEST

/* A certificate whose subject is built entry by entry (len -1: strlen). */
static X509 *cert_with_subject(const char *const *cns, const int *lens, size_t n)
{
	EVP_PKEY *key = ec_keygen("P-256");
	X509_NAME *name;
	X509 *x = X509_new();

	ck_assert_ptr_nonnull(key);
	ck_assert_ptr_nonnull(x);
	name = X509_get_subject_name(x);
	ck_assert(X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_ASC,
					     (const unsigned char *)"Org", -1, -1, 0));
	for (size_t i = 0; i < n; i++)
		ck_assert(X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
						     (const unsigned char *)cns[i], lens[i], -1, 0));
	ck_assert(X509_set_issuer_name(x, name));
	ck_assert(X509_set_pubkey(x, key));
	ck_assert(ASN1_TIME_set(X509_getm_notBefore(x), time(NULL) - 60));
	ck_assert(ASN1_TIME_set(X509_getm_notAfter(x), time(NULL) + DAY));
	ck_assert(X509_sign(x, key, EVP_sha256()) > 0);
	EVP_PKEY_free(key);
	return x;
}

START_TEST(test_identity_from_cert)
{
	static const char nul_cn[] = "dev\0evil";
	const char *cn1[] = { "dev-1/mod" }, *cn_nul[] = { nul_cn }, *cn2[] = { "a", "b" };
	const char *cn_long[1];
	int l1[] = { -1 }, l_nul[] = { (int)sizeof(nul_cn) - 1 }, l2[] = { -1, -1 }, l_long[] = { 129 };
	char out[KG_DEVICE_ID_MAX + 1], longcn[130];
	struct kg_identity id;
	size_t off = 0;
	int xerr = 0;
	X509 *x;

	x = cert_with_subject(cn1, l1, 1);
	ck_reason(kg_identity_from_cert(x, out, sizeof(out), &off), KG_REASON_OK);
	ck_assert_str_eq(out, "dev-1/mod");
	ck_assert_uint_eq(off, 6);
	/* too small a buffer is a refusal, not a truncation */
	ck_reason(kg_identity_from_cert(x, out, 5, &off), KG_REASON_BAD_IDENTITY);
	X509_free(x);

	/* embedded NUL: a C-string reading would see "dev" */
	x = cert_with_subject(cn_nul, l_nul, 1);
	ck_reason(kg_identity_from_cert(x, out, sizeof(out), &off), KG_REASON_BAD_IDENTITY);
	ck_reason(kg_verify_peer(trust, x, NULL, 0, NULL, NULL, &id, &xerr), KG_REASON_BAD_IDENTITY);
	ck_assert_int_eq(xerr, X509_V_ERR_APPLICATION_VERIFICATION);
	X509_free(x);

	/* no CN */
	x = cert_with_subject(NULL, NULL, 0);
	ck_reason(kg_identity_from_cert(x, out, sizeof(out), &off), KG_REASON_BAD_IDENTITY);
	X509_free(x);

	/* two CNs */
	x = cert_with_subject(cn2, l2, 2);
	ck_reason(kg_identity_from_cert(x, out, sizeof(out), &off), KG_REASON_BAD_IDENTITY);
	X509_free(x);

	/* 129 characters */
	memset(longcn, 'y', 129);
	longcn[129] = '\0';
	cn_long[0] = longcn;
	x = cert_with_subject(cn_long, l_long, 1);
	ck_reason(kg_identity_from_cert(x, out, sizeof(out), &off), KG_REASON_BAD_IDENTITY);
	X509_free(x);
}
END_TEST

/* The thumbprint of a fixed certificate, as `openssl x509 -fingerprint -sha256` says. */
START_TEST(test_sha256_vector)
{
	static const char pem[] =
		"-----BEGIN CERTIFICATE-----\n"
		"MIIBeTCCAR+gAwIBAgIUPFwKNqj7zjVYK+ehIewq3x01EeowCgYIKoZIzj0EAwIw\n"
		"ETEPMA0GA1UEAwwGdmVjdG9yMCAXDTI2MTEyMzIwMjkwM1oYDzIxMjYxMDMwMjAy\n"
		"OTAzWjARMQ8wDQYDVQQDDAZ2ZWN0b3IwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n"
		"AAQ3CgnTdFVXhZ6Icx28lDVEkce8BdgT+MM7KzEI6e+f2k20hNe303Ia/W1nqYW2\n"
		"b3gICYPwcPjMMBk1sDXDWtTHo1MwUTAdBgNVHQ4EFgQUUttU8x6rebqbsaS77ejs\n"
		"zGDAxjAwHwYDVR0jBBgwFoAUUttU8x6rebqbsaS77ejszGDAxjAwDwYDVR0TAQH/\n"
		"BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEArPIYCKnNDNO2kixWzTj9FoUr7fc7\n"
		"uDUZXMesXHlsbLICIAE1611e5J8zcJuLPSbDnpIMmMRlrzLCo4AWcLebANRz\n"
		"-----END CERTIFICATE-----\n";
	static const char want[] = "bff912b89fa61667bea8e824163f0990728d3640bbaca2a465f5b79262a3b458";
	char hex[KG_SHA256_HEX_LEN + 1], mine[KG_SHA256_HEX_LEN + 1];
	unsigned char md[32], *der = NULL;
	unsigned int mdlen = 0;
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	int len;

	ck_assert_ptr_nonnull(x);
	ck_assert_int_eq(kg_cert_sha256_hex(x, hex), 0);
	ck_assert_str_eq(hex, want);

	/* and on a fresh certificate, against EVP_Digest of the DER encoding */
	X509_free(x);
	make(KG_PKI_SELF_SIGNED, "fresh", "fresh", NULL);
	x = load("fresh");
	len = i2d_X509(x, &der);
	ck_assert_int_gt(len, 0);
	ck_assert(EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL));
	ck_assert_uint_eq(mdlen, 32);
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(mine + 2 * i, 3, "%02x", md[i]);
	ck_assert_int_eq(kg_cert_sha256_hex(x, hex), 0);
	ck_assert_str_eq(hex, mine);
	OPENSSL_free(der);
	X509_free(x);
	BIO_free(bio);
}
END_TEST

/* ---- chains ---------------------------------------------------------------------- */

/* root -> factory -> device, the usual fleet layout. */
static void fleet(void)
{
	make(KG_PKI_ROOT, "Fleet Root", "root", NULL);
	make(KG_PKI_INTERMEDIATE, "Factory", "factory", "root");
	make(KG_PKI_DEVICE, "dev-1/telemetry", "dev", "factory");
}

START_TEST(test_chain_ok)
{
	const char *chain[] = { "factory" };
	struct kg_identity id;
	X509 *leaf;
	char hex[KG_SHA256_HEX_LEN + 1];
	struct tm tm;
	int xerr = -1;

	fleet();
	add_ca("fleet-root", "root", true);
	ck_reason(verify_ex("dev", chain, 1, 0, NULL, NULL, &id, &xerr), KG_REASON_OK);
	ck_assert_int_eq(xerr, X509_V_OK);
	ck_assert_str_eq(id.device_id, "dev-1/telemetry");
	ck_assert_uint_eq(id.module_off, 6);
	ck_assert_str_eq(id.ca_name, "fleet-root");
	ck_assert_int_eq(id.method, KG_ATT_CA);
	leaf = load("dev");
	ck_assert_int_eq(kg_cert_sha256_hex(leaf, hex), 0);
	ck_assert_str_eq(id.thumbprint, hex);
	ck_assert(ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm));
	ck_assert_int_eq(id.not_after, (int64_t)timegm(&tm));
	ck_assert_int_gt(id.not_after, (int64_t)time(NULL) + 360 * DAY);
	X509_free(leaf);
	/* x509_err may be NULL */
	{
		X509 *l = load("dev");
		STACK_OF(X509) *u = sk_X509_new_null();

		ck_assert(sk_X509_push(u, load("factory")));
		ck_reason(kg_verify_peer(trust, l, u, 0, NULL, NULL, &id, NULL), KG_REASON_OK);
		sk_X509_pop_free(u, X509_free);
		X509_free(l);
	}
}
END_TEST

START_TEST(test_chain_missing_intermediate)
{
	struct kg_identity id;
	int xerr = 0;

	fleet();
	add_ca("fleet-root", "root", true);
	ck_reason(verify_ex("dev", NULL, 0, 0, NULL, NULL, &id, &xerr), KG_REASON_UNKNOWN_CA);
	ck_assert_int_eq(xerr, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	/* identity is still reported for the audit line */
	ck_assert_str_eq(id.device_id, "dev-1/telemetry");
}
END_TEST

/* The trust keeps each CA's registry row (settings the policy reads), without its PEM. */
START_TEST(test_trust_ca_rows)
{
	char p[PATH_MAX], err[512] = "";
	struct kg_ca ca;
	const struct kg_ca *got;
	X509 *x;

	fleet();
	memset(&ca, 0, sizeof(ca));
	path_of(p, sizeof(p), "root", "cert.pem");
	ck_assert_msg(kg_pem_read_cert_only(p, &x, &ca.pem, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(kg_cert_sha256_hex(x, ca.sha256), 0);
	X509_free(x);
	strcpy(ca.name, "fleet-root");
	strcpy(ca.backend, "prod");
	ca.verified = true;
	ca.auto_enroll = true;
	ck_assert_msg(kg_trust_add_ca(trust, &ca, err, sizeof(err)) == 0, "%s", err);
	free(ca.pem);
	got = kg_trust_get0_ca(trust, "fleet-root");
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got->backend, "prod");
	ck_assert(got->auto_enroll && got->verified);
	ck_assert_ptr_null(got->pem);
	ck_assert_ptr_null(kg_trust_get0_ca(trust, "nope"));
	ck_assert_ptr_null(kg_trust_get0_ca(NULL, "fleet-root"));
}
END_TEST

START_TEST(test_chain_unknown_root)
{
	fleet();
	make(KG_PKI_ROOT, "Other Root", "other", NULL);
	add_ca("other", "other", true);
	ck_reason(verify("dev", "factory"), KG_REASON_UNKNOWN_CA);
	/* sending the root itself does not help */
	{
		const char *chain[] = { "factory", "root" };
		struct kg_identity id;
		int xerr;

		ck_reason(verify_ex("dev", chain, 2, 0, NULL, NULL, &id, &xerr),
			  KG_REASON_UNKNOWN_CA);
		ck_assert_int_eq(xerr, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN);
	}
	/* an empty trust store */
	kg_trust_free(trust);
	trust = kg_trust_new();
	ck_reason(verify("dev", "factory"), KG_REASON_UNKNOWN_CA);
}
END_TEST

START_TEST(test_chain_unproven)
{
	const char *both[] = { "factory", "root" };
	struct kg_identity id;
	int xerr;

	fleet();
	add_ca("fleet-root", "root", false);
	ck_assert_uint_eq(kg_trust_count(trust, false), 1);
	ck_assert_uint_eq(kg_trust_count(trust, true), 0);
	ck_reason(verify("dev", "factory"), KG_REASON_UNPROVEN_CA);
	ck_reason(verify_ex("dev", both, 2, 0, NULL, NULL, &id, &xerr), KG_REASON_UNPROVEN_CA);
	/* without the intermediate, nothing reaches the unproven root */
	ck_reason(verify("dev", NULL), KG_REASON_UNKNOWN_CA);
	/* an unproven intermediate, leaf alone */
	add_ca("factory", "factory", false);
	ck_reason(verify("dev", NULL), KG_REASON_UNPROVEN_CA);
}
END_TEST

START_TEST(test_chain_anchor_name)
{
	/* A proven intermediate is an anchor of its own... */
	fleet();
	add_ca("factory", "factory", true);
	{
		struct kg_identity id;
		int xerr;

		ck_reason(verify_ex("dev", NULL, 0, 0, NULL, NULL, &id, &xerr), KG_REASON_OK);
		ck_assert_str_eq(id.ca_name, "factory");
	}
	/* ...and stays the one named when the root is proven too: OpenSSL stops at the
	 * nearest trusted issuer, which is the most specific registered CA. */
	add_ca("fleet-root", "root", true);
	{
		const char *chain[] = { "factory" };
		struct kg_identity id;
		int xerr;

		ck_reason(verify_ex("dev", chain, 1, 0, NULL, NULL, &id, &xerr), KG_REASON_OK);
		ck_assert_str_eq(id.ca_name, "factory");
	}
}
END_TEST

START_TEST(test_ca_as_leaf)
{
	fleet();
	add_ca("fleet-root", "root", true);
	add_ca("factory", "factory", true);
	/* the factory CA certificate itself, presented by whoever holds its key */
	ck_reason(verify("factory", NULL), KG_REASON_BAD_CHAIN);
	/* a self-signed root presented as a leaf is no pin either */
	make(KG_PKI_ROOT, "RootCA", "root2", NULL);
	add_ca("root2", "root2", true);
	ck_reason(verify("root2", NULL), KG_REASON_THUMBPRINT_MISMATCH);
}
END_TEST

START_TEST(test_validity)
{
	const struct mk expired = { .not_before = (int64_t)time(NULL) - 400 * DAY, .days = 30 };
	const struct mk future = { .not_before = (int64_t)time(NULL) + 10 * DAY, .days = 30 };
	const char *chain[] = { "factory" };
	struct kg_identity id;
	int xerr;

	fleet();
	add_ca("fleet-root", "root", true);
	make_ex(KG_PKI_DEVICE, "old", "old", "factory", &expired);
	make_ex(KG_PKI_DEVICE, "new", "new", "factory", &future);

	ck_reason(verify_ex("old", chain, 1, 0, NULL, NULL, &id, &xerr), KG_REASON_CERT_EXPIRED);
	ck_assert_int_eq(xerr, X509_V_ERR_CERT_HAS_EXPIRED);
	ck_reason(verify_ex("new", chain, 1, 0, NULL, NULL, &id, &xerr),
		  KG_REASON_CERT_NOT_YET_VALID);
	ck_assert_int_eq(xerr, X509_V_ERR_CERT_NOT_YET_VALID);

	/* at = : the same certificates judged at other times */
	ck_reason(verify_ex("old", chain, 1, time(NULL) - 390 * DAY, NULL, NULL, &id, &xerr),
		  KG_REASON_CERT_NOT_YET_VALID); /* before the root existed */
	ck_reason(verify_ex("new", chain, 1, time(NULL) + 20 * DAY, NULL, NULL, &id, &xerr),
		  KG_REASON_OK);
	ck_reason(verify_ex("dev", chain, 1, time(NULL) + 100 * DAY, NULL, NULL, &id, &xerr),
		  KG_REASON_OK);
	ck_reason(verify_ex("dev", chain, 1, time(NULL) + 400 * DAY, NULL, NULL, &id, &xerr),
		  KG_REASON_CERT_EXPIRED);
	ck_reason(verify_ex("dev", chain, 1, time(NULL) - DAY, NULL, NULL, &id, &xerr),
		  KG_REASON_CERT_NOT_YET_VALID);
}
END_TEST

START_TEST(test_eku)
{
	const struct mk server = { .eku = KG_EKU_SERVER }, none = { .eku = KG_EKU_NONE };
	const char *chain[] = { "factory" };
	struct kg_identity id;
	int xerr;

	fleet();
	add_ca("fleet-root", "root", true);
	make_ex(KG_PKI_DEVICE, "srv-only", "srv", "factory", &server);
	make_ex(KG_PKI_DEVICE, "no-eku", "noeku", "factory", &none);
	ck_reason(verify_ex("srv", chain, 1, 0, NULL, NULL, &id, &xerr), KG_REASON_BAD_EKU);
	ck_assert_int_eq(xerr, X509_V_ERR_INVALID_PURPOSE);
	/* no EKU extension at all: any purpose */
	ck_reason(verify("noeku", "factory"), KG_REASON_OK);
}
END_TEST

START_TEST(test_not_ca_intermediate)
{
	const struct mk notca = { .not_ca = true };
	const char *chain[] = { "notca" };
	struct kg_identity id;
	int xerr;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	make_ex(KG_PKI_INTERMEDIATE, "Not A CA", "notca", "root", &notca);
	make(KG_PKI_DEVICE, "dev-x", "dev", "notca");
	add_ca("root", "root", true);
	ck_reason(verify_ex("dev", chain, 1, 0, NULL, NULL, &id, &xerr), KG_REASON_BAD_CHAIN);
	ck_assert_int_eq(xerr, X509_V_ERR_INVALID_CA);
}
END_TEST

START_TEST(test_crl)
{
	const char *revoked[] = { "d1" };
	const char *revoked_f[] = { "factory" };

	/* r1 has a CRL revoking d1; r2 has none. Under r1, a factory with no CRL. */
	make(KG_PKI_ROOT, "R1", "r1", NULL);
	make(KG_PKI_ROOT, "R2", "r2", NULL);
	make(KG_PKI_DEVICE, "d1", "d1", "r1");
	make(KG_PKI_DEVICE, "d2", "d2", "r1");
	make(KG_PKI_DEVICE, "d3", "d3", "r2");
	make(KG_PKI_INTERMEDIATE, "F", "factory", "r1");
	make(KG_PKI_DEVICE, "d4", "d4", "factory");
	add_ca("r1", "r1", true);
	add_ca("r2", "r2", true);

	ck_reason(verify("d1", NULL), KG_REASON_OK); /* no CRL loaded yet */
	add_crl("r1", "r1", revoked, 1);
	{
		struct kg_identity id;
		int xerr;

		ck_reason(verify_ex("d1", NULL, 0, 0, NULL, NULL, &id, &xerr),
			  KG_REASON_CERT_REVOKED);
		ck_assert_int_eq(xerr, X509_V_ERR_CERT_REVOKED);
	}
	ck_reason(verify("d2", NULL), KG_REASON_OK);   /* sibling, not listed */
	ck_reason(verify("d3", NULL), KG_REASON_OK);   /* CA without a CRL */
	ck_reason(verify("d4", "factory"), KG_REASON_OK); /* intermediate without a CRL */

	/* now revoke the factory itself: everything under it goes */
	kg_trust_free(trust);
	trust = kg_trust_new();
	add_ca("r1", "r1", true);
	add_crl("r1", "r1", revoked_f, 1);
	ck_reason(verify("d4", "factory"), KG_REASON_CERT_REVOKED);
	ck_reason(verify("d1", NULL), KG_REASON_OK);
}
END_TEST

START_TEST(test_crl_errors)
{
	char p[PATH_MAX], cadir[PATH_MAX], err[512] = "";

	make(KG_PKI_ROOT, "R1", "r1", NULL);
	make(KG_PKI_ROOT, "R2", "r2", NULL);
	add_ca("r1", "r1", true);
	path_of(cadir, sizeof(cadir), "r2", NULL);
	path_of(p, sizeof(p), "r2", "crl.pem");
	ck_assert_msg(kg_pki_crl(cadir, NULL, 0, p, err, sizeof(err)) == 0, "%s", err);

	ck_assert_int_eq(kg_trust_add_crl_file(trust, "r1", p, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "not issued by CA r1") != NULL, "%s", err);
	ck_assert_int_eq(kg_trust_add_crl_file(trust, "nope", p, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "not registered") != NULL, "%s", err);
	path_of(p, sizeof(p), "missing.crl", NULL);
	ck_assert_int_eq(kg_trust_add_crl_file(trust, "r1", p, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "No such file") != NULL, "%s", err);
	path_of(p, sizeof(p), "r1", "cert.pem");
	ck_assert_int_eq(kg_trust_add_crl_file(trust, "r1", p, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "neither a PEM nor a DER CRL") != NULL, "%s", err);
}
END_TEST

START_TEST(test_crl_der)
{
	char pem[PATH_MAX], der[PATH_MAX], cadir[PATH_MAX], err[512] = "";
	const char *files[1];
	X509_CRL *crl;
	FILE *f;

	make(KG_PKI_ROOT, "R1", "r1", NULL);
	make(KG_PKI_DEVICE, "d1", "d1", "r1");
	add_ca("r1", "r1", true);
	path_of(cadir, sizeof(cadir), "r1", NULL);
	path_of(pem, sizeof(pem), "r1", "crl.pem");
	path_of(der, sizeof(der), "r1", "crl.der");
	{
		char d1[PATH_MAX];

		path_of(d1, sizeof(d1), "d1", "cert.pem");
		files[0] = d1;
		ck_assert_msg(kg_pki_crl(cadir, files, 1, pem, err, sizeof(err)) == 0, "%s", err);
	}
	f = fopen(pem, "r");
	crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert_ptr_nonnull(crl);
	f = fopen(der, "wb");
	ck_assert(i2d_X509_CRL_fp(f, crl));
	fclose(f);
	X509_CRL_free(crl);
	ck_assert_msg(kg_trust_add_crl_file(trust, "r1", der, err, sizeof(err)) == 0, "%s", err);
	ck_reason(verify("d1", NULL), KG_REASON_CERT_REVOKED);
}
END_TEST

/* ---- security level, RFC 5280 profile, expired CRLs ------------------------------- */

/* Verify sub (sending chain_sub, if any): want this reason and this X509_V_ERR_*. */
static void expect(const char *sub, const char *chain_sub, enum kg_reason want, int want_xerr)
{
	const char *chain[1] = { chain_sub };
	struct kg_identity id;
	enum kg_reason got;
	int xerr = -1;

	got = verify_ex(sub, chain, chain_sub != NULL ? 1 : 0, 0, NULL, NULL, &id, &xerr);
	ck_assert_msg(got == want, "%s: reason %s, wanted %s (x509: %s)", sub, kg_reason_str(got),
		      kg_reason_str(want), X509_verify_cert_error_string(xerr));
	ck_assert_msg(xerr == want_xerr, "%s: x509 error %d (%s), wanted %d (%s)", sub, xerr,
		      X509_verify_cert_error_string(xerr), want_xerr,
		      X509_verify_cert_error_string(want_xerr));
}

START_TEST(test_weak_keys)
{
	fleet();
	add_ca("fleet-root", "root", true);
	make_hand("rsa512", "rsa512", &(struct hand){ "rsa:512", "factory", NULL, { LEAF_EXTS } });
	make_hand("rsa1024", "rsa1024", &(struct hand){ "rsa:1024", "factory", NULL, { LEAF_EXTS } });
	make_hand("p192", "p192", &(struct hand){ "ec:P-192", "factory", NULL, { LEAF_EXTS } });
	make_hand("rsa2048", "rsa2048", &(struct hand){ "rsa:2048", "factory", NULL, { LEAF_EXTS } });
	make_hand("p256", "p256", &(struct hand){ "ec:P-256", "factory", NULL, { LEAF_EXTS } });

	/* default level 2: 112 bits */
	expect("rsa512", "factory", KG_REASON_WEAK_KEY, X509_V_ERR_EE_KEY_TOO_SMALL);
	expect("rsa1024", "factory", KG_REASON_WEAK_KEY, X509_V_ERR_EE_KEY_TOO_SMALL);
	expect("p192", "factory", KG_REASON_WEAK_KEY, X509_V_ERR_EE_KEY_TOO_SMALL);
	expect("rsa2048", "factory", KG_REASON_OK, X509_V_OK);
	expect("p256", "factory", KG_REASON_OK, X509_V_OK);
	/* level 3 (128 bits) refuses RSA-2048 and keeps P-256 */
	kg_trust_set_policy(trust, 3, 0);
	expect("rsa2048", "factory", KG_REASON_WEAK_KEY, X509_V_ERR_EE_KEY_TOO_SMALL);
	expect("p256", "factory", KG_REASON_OK, X509_V_OK);
	/* level 1 (80 bits): RSA-1024 passes, so the level is what refuses it */
	kg_trust_set_policy(trust, 1, 0);
	expect("rsa1024", "factory", KG_REASON_OK, X509_V_OK);
	expect("rsa512", "factory", KG_REASON_WEAK_KEY, X509_V_ERR_EE_KEY_TOO_SMALL);
}
END_TEST

START_TEST(test_weak_ca_key)
{
	make(KG_PKI_ROOT, "Root", "root", NULL);
	add_ca("root", "root", true);
	make_hand("weakca", "Weak CA", &(struct hand){ "rsa:1024", "root", NULL, { CA_EXTS } });
	make_hand("dev", "dev-w", &(struct hand){ "ec:P-256", "weakca", NULL, { LEAF_EXTS } });
	expect("dev", "weakca", KG_REASON_WEAK_KEY, X509_V_ERR_CA_KEY_TOO_SMALL);
	/* the weak CA registered as the anchor itself */
	kg_trust_free(trust);
	trust = kg_trust_new();
	add_ca("weakca", "weakca", true);
	expect("dev", NULL, KG_REASON_WEAK_KEY, X509_V_ERR_CA_KEY_TOO_SMALL);
}
END_TEST

START_TEST(test_weak_signatures)
{
	const struct mk rsa = { .key = KG_KEY_RSA2048 };

	/* MD5 exists only with RSA: an RSA root and CA sign with it */
	make_ex(KG_PKI_ROOT, "RSA Root", "rsaroot", NULL, &rsa);
	add_ca("rsaroot", "rsaroot", true);
	make_hand("rsaca", "RSA CA", &(struct hand){ "rsa:2048", "rsaroot", NULL, { CA_EXTS } });
	make_hand("leafmd5", "leafmd5", &(struct hand){ "ec:P-256", "rsaca", EVP_md5(), { LEAF_EXTS } });
	make_hand("leafsha1", "leafsha1", &(struct hand){ "ec:P-256", "rsaca", EVP_sha1(), { LEAF_EXTS } });
	make_hand("leafok", "leafok", &(struct hand){ "ec:P-256", "rsaca", NULL, { LEAF_EXTS } });
	make_hand("md5ca", "MD5 CA", &(struct hand){ "rsa:2048", "rsaroot", EVP_md5(), { CA_EXTS } });
	make_hand("intmd5", "intmd5", &(struct hand){ "ec:P-256", "md5ca", NULL, { LEAF_EXTS } });
	make_hand("sha1ca", "SHA1 CA", &(struct hand){ "rsa:2048", "rsaroot", EVP_sha1(), { CA_EXTS } });
	make_hand("intsha1", "intsha1", &(struct hand){ "ec:P-256", "sha1ca", NULL, { LEAF_EXTS } });

	expect("leafmd5", "rsaca", KG_REASON_WEAK_SIGNATURE, X509_V_ERR_CA_MD_TOO_WEAK);
	expect("leafsha1", "rsaca", KG_REASON_WEAK_SIGNATURE, X509_V_ERR_CA_MD_TOO_WEAK);
	expect("intmd5", "md5ca", KG_REASON_WEAK_SIGNATURE, X509_V_ERR_CA_MD_TOO_WEAK);
	expect("intsha1", "sha1ca", KG_REASON_WEAK_SIGNATURE, X509_V_ERR_CA_MD_TOO_WEAK);
	expect("leafok", "rsaca", KG_REASON_OK, X509_V_OK);
	/* ECDSA with SHA-1 too */
	fleet();
	add_ca("fleet-root", "root", true);
	make_hand("ecsha1", "ecsha1", &(struct hand){ "ec:P-256", "factory", EVP_sha1(), { LEAF_EXTS } });
	expect("ecsha1", "factory", KG_REASON_WEAK_SIGNATURE, X509_V_ERR_CA_MD_TOO_WEAK);
	/* the level is what refuses SHA-1: at 0 (which the config never allows) it passes */
	kg_trust_set_policy(trust, 0, 0);
	expect("leafsha1", "rsaca", KG_REASON_OK, X509_V_OK);
}
END_TEST

/* "DER:30:16:80:14:<SHA-1 of sub's public key>": the AKID keyid a CA without a SKID
 * would have had (what "subjectKeyIdentifier = hash" computes). */
static void akid_of(const char *sub, char *out, size_t cap)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	X509 *x = load(sub);
	size_t n;

	ck_assert(X509_pubkey_digest(x, EVP_sha1(), md, &len) && len == 20);
	n = (size_t)snprintf(out, cap, "DER:30:16:80:14");
	for (unsigned int i = 0; i < len; i++)
		n += (size_t)snprintf(out + n, cap - n, ":%02x", md[i]);
	ck_assert_uint_lt(n, cap);
	X509_free(x);
}

START_TEST(test_strict_profile)
{
	char akid[128];

	fleet();
	add_ca("fleet-root", "root", true);
	/* an intermediate without basicConstraints (keyCertSign only), sent by the device */
	make_hand("nobc", "No BC", &(struct hand){ "ec:P-256", "root", NULL,
		{ { "keyUsage", "critical,keyCertSign,cRLSign" }, { "subjectKeyIdentifier", "hash" },
		  { "authorityKeyIdentifier", "keyid" } } });
	make_hand("d-nobc", "d-nobc", &(struct hand){ "ec:P-256", "nobc", NULL, { LEAF_EXTS } });
	expect("d-nobc", "nobc", KG_REASON_BAD_CHAIN, X509_V_ERR_INVALID_CA);
	/* a leaf whose keyUsage has keyCertSign */
	make_hand("certsign", "certsign", &(struct hand){ "ec:P-256", "factory", NULL,
		{ { "basicConstraints", "critical,CA:FALSE" },
		  { "keyUsage", "critical,digitalSignature,keyCertSign" },
		  { "extendedKeyUsage", "clientAuth" }, { "subjectKeyIdentifier", "hash" },
		  { "authorityKeyIdentifier", "keyid" } } });
	expect("certsign", "factory", KG_REASON_BAD_CHAIN,
	       X509_V_ERR_KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA);
	/* a leaf without authority key identifier */
	make_hand("noakid", "noakid", &(struct hand){ "ec:P-256", "factory", NULL,
		{ { "basicConstraints", "critical,CA:FALSE" }, { "keyUsage", "critical,digitalSignature" },
		  { "extendedKeyUsage", "clientAuth" }, { "subjectKeyIdentifier", "hash" } } });
	expect("noakid", "factory", KG_REASON_BAD_CHAIN, X509_V_ERR_MISSING_AUTHORITY_KEY_IDENTIFIER);
	/* an intermediate without subject key identifier */
	make_hand("noskid", "No SKID", &(struct hand){ "ec:P-256", "root", NULL,
		{ { "basicConstraints", "critical,CA:TRUE" }, { "keyUsage", "critical,keyCertSign,cRLSign" },
		  { "authorityKeyIdentifier", "keyid" } } });
	akid_of("noskid", akid, sizeof(akid));
	make_hand("d-noskid", "d-noskid", &(struct hand){ "ec:P-256", "noskid", NULL,
		{ { "basicConstraints", "critical,CA:FALSE" }, { "keyUsage", "critical,digitalSignature" },
		  { "extendedKeyUsage", "clientAuth" }, { "subjectKeyIdentifier", "hash" },
		  { "authorityKeyIdentifier", akid } } });
	expect("d-noskid", "noskid", KG_REASON_BAD_CHAIN, X509_V_ERR_MISSING_SUBJECT_KEY_IDENTIFIER);
	/* an authority key identifier that is not the issuer's (OpenSSL alone: unknown CA) */
	make_hand("badakid", "badakid", &(struct hand){ "ec:P-256", "factory", NULL,
		{ { "basicConstraints", "critical,CA:FALSE" }, { "keyUsage", "critical,digitalSignature" },
		  { "extendedKeyUsage", "clientAuth" }, { "subjectKeyIdentifier", "hash" },
		  { "authorityKeyIdentifier",
		    "DER:30:16:80:14:00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13" } } });
	expect("badakid", "factory", KG_REASON_BAD_CHAIN, X509_V_ERR_AKID_SKID_MISMATCH);
	/* malformed extensions: a keyUsage BIT STRING with no bits, in the leaf... */
	make_hand("malformed", "malformed", &(struct hand){ "ec:P-256", "factory", NULL,
		{ { "basicConstraints", "critical,CA:FALSE" }, { "keyUsage", "DER:03:02" },
		  { "extendedKeyUsage", "clientAuth" }, { "subjectKeyIdentifier", "hash" },
		  { "authorityKeyIdentifier", "keyid" } } });
	expect("malformed", "factory", KG_REASON_BAD_CHAIN, X509_V_ERR_INVALID_EXTENSION);
	/* ...and a truncated basicConstraints in a sent intermediate */
	make_hand("badbc", "Bad BC", &(struct hand){ "ec:P-256", "root", NULL,
		{ { "basicConstraints", "critical,DER:30:03:01:01" },
		  { "keyUsage", "critical,keyCertSign,cRLSign" }, { "subjectKeyIdentifier", "hash" },
		  { "authorityKeyIdentifier", "keyid" } } });
	make_hand("d-badbc", "d-badbc", &(struct hand){ "ec:P-256", "badbc", NULL, { LEAF_EXTS } });
	expect("d-badbc", "badbc", KG_REASON_BAD_CHAIN, X509_V_ERR_INVALID_EXTENSION);
	/* the well-formed reference still passes */
	expect("dev", "factory", KG_REASON_OK, X509_V_OK);

	/* anchors: the no-BC intermediate registered itself, a root without BC, a
	 * registered CA whose own extension does not decode */
	kg_trust_free(trust);
	trust = kg_trust_new();
	add_ca("nobc", "nobc", true);
	expect("d-nobc", NULL, KG_REASON_BAD_CHAIN, X509_V_ERR_INVALID_CA);
	make_hand("rootnobc", "Root No BC", &(struct hand){ "ec:P-256", NULL, NULL,
		{ { "keyUsage", "critical,keyCertSign,cRLSign" }, { "subjectKeyIdentifier", "hash" } } });
	make_hand("d-rootnobc", "d-rootnobc", &(struct hand){ "ec:P-256", "rootnobc", NULL, { LEAF_EXTS } });
	add_ca("rootnobc", "rootnobc", true);
	expect("d-rootnobc", NULL, KG_REASON_BAD_CHAIN, X509_V_ERR_INVALID_CA);
	add_ca("badbc", "badbc", true);
	expect("d-badbc", NULL, KG_REASON_BAD_CHAIN, X509_V_ERR_INVALID_EXTENSION);
}
END_TEST

/* nextUpdate of the CRL file, read independently of verify.c */
static int64_t crl_next_update(const char *sub)
{
	char p[PATH_MAX];
	X509_CRL *crl;
	struct tm tm;
	FILE *f;

	path_of(p, sizeof(p), sub, "crl.pem");
	f = fopen(p, "r");
	ck_assert_ptr_nonnull(f);
	crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert_ptr_nonnull(crl);
	ck_assert(ASN1_TIME_to_tm(X509_CRL_get0_nextUpdate(crl), &tm));
	X509_CRL_free(crl);
	return (int64_t)timegm(&tm);
}

static char *report(size_t *refusing, time_t now)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	*refusing = kg_trust_crl_report(trust, f, now);
	fclose(f);
	return buf;
}

static char *crl_metrics(time_t now)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(kg_trust_crl_metrics_write(trust, f, now), 0);
	fclose(f);
	return buf;
}

/* notAfter of the certificate in `sub`, read through its printed form (not verify.c's
 * ASN1_TIME_to_tm + timegm): what `openssl x509 -enddate` shows. */
static int64_t printed_not_after(const char *sub)
{
	X509 *x = load(sub);
	BIO *b = BIO_new(BIO_s_mem());
	char buf[64] = "";
	struct tm tm;
	int n;

	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(ASN1_TIME_print(b, X509_get0_notAfter(x)), 1);
	n = BIO_read(b, buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	BIO_free(b);
	X509_free(x);
	memset(&tm, 0, sizeof(tm));
	ck_assert_msg(strptime(buf, "%b %d %H:%M:%S %Y GMT", &tm) != NULL, "%s", buf);
	return (int64_t)timegm(&tm);
}

static char *ca_metrics(const struct kg_trust *t)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(kg_trust_ca_metrics_write(t, f), 0);
	fclose(f);
	return buf;
}

/* ktlsgate_ca_not_after_timestamp_seconds: one series per registered CA, proven or not,
 * each its certificate's notAfter; none for a CA that is not registered. */
START_TEST(test_ca_metrics)
{
	struct mk shortlived = { .days = 10 };
	char want[256], *txt;
	int64_t r1, i1, now = (int64_t)time(NULL);

	txt = ca_metrics(trust);   /* empty trust: the family, no series */
	ck_assert_str_eq(txt, "# HELP ktlsgate_ca_not_after_timestamp_seconds notAfter of each "
			      "registered CA certificate, unix time.\n"
			      "# TYPE ktlsgate_ca_not_after_timestamp_seconds gauge\n");
	free(txt);
	make(KG_PKI_ROOT, "R1", "r1", NULL);
	make_ex(KG_PKI_INTERMEDIATE, "I1", "i1", "r1", &shortlived);
	make(KG_PKI_ROOT, "R2", "r2", NULL);
	add_ca("r1", "r1", true);
	add_ca("i1", "i1", false);   /* registered, not proven: still reported */
	r1 = printed_not_after("r1");
	i1 = printed_not_after("i1");
	ck_assert_int_gt(r1, now + 365 * DAY);
	ck_assert_int_gt(i1, now + 9 * DAY);
	ck_assert_int_le(i1, now + 10 * DAY + 60);
	ck_assert_int_eq(kg_cert_not_after(NULL), 0);
	{
		X509 *x = load("i1");

		ck_assert_int_eq(kg_cert_not_after(x), i1);
		X509_free(x);
	}
	txt = ca_metrics(trust);
	snprintf(want, sizeof(want), "\nktlsgate_ca_not_after_timestamp_seconds{ca=\"r1\"} %lld\n",
		 (long long)r1);
	ck_assert_msg(strstr(txt, want) != NULL, "%s", txt);
	snprintf(want, sizeof(want), "\nktlsgate_ca_not_after_timestamp_seconds{ca=\"i1\"} %lld\n",
		 (long long)i1);
	ck_assert_msg(strstr(txt, want) != NULL, "%s", txt);
	ck_assert_msg(strstr(txt, "ca=\"r2\"") == NULL, "%s", txt);
	free(txt);
}
END_TEST

START_TEST(test_crl_expired)
{
	const char *revoked[] = { "d1" };
	time_t now = time(NULL), after = now + 31 * DAY; /* kg_pki_crl: nextUpdate now + 30 d */
	struct kg_identity id;
	char want[256], *txt;
	size_t refusing = 99;
	int64_t next;
	int xerr;

	make(KG_PKI_ROOT, "R1", "r1", NULL);
	make(KG_PKI_ROOT, "R2", "r2", NULL);
	make(KG_PKI_DEVICE, "d1", "d1", "r1");
	make(KG_PKI_DEVICE, "d2", "d2", "r1");
	make(KG_PKI_DEVICE, "d3", "d3", "r2");
	add_ca("r1", "r1", true);
	add_ca("r2", "r2", true);
	add_crl("r1", "r1", revoked, 1);
	next = crl_next_update("r1");
	ck_assert_int_gt(next, (int64_t)now + 29 * DAY);

	/* fresh CRL */
	ck_reason(verify_ex("d2", NULL, 0, 0, NULL, NULL, &id, &xerr), KG_REASON_OK);
	ck_assert_str_eq(id.crl_grace_ca, "");
	/* past nextUpdate, no grace: every device of r1 refused, with r1 named */
	ck_reason(verify_ex("d2", NULL, 0, after, NULL, NULL, &id, &xerr), KG_REASON_CRL_EXPIRED);
	ck_assert_int_eq(xerr, X509_V_ERR_CRL_HAS_EXPIRED);
	ck_assert_str_eq(id.ca_name, "r1");
	ck_assert_int_eq(id.crl_next_update, next);
	/* a CA without a CRL is not affected */
	ck_reason(verify_ex("d3", NULL, 0, after, NULL, NULL, &id, &xerr), KG_REASON_OK);

	/* within a 2-day grace: accepted, flagged for the warning; revocations still hold */
	kg_trust_set_policy(trust, 2, 2 * DAY);
	ck_reason(verify_ex("d2", NULL, 0, after, NULL, NULL, &id, &xerr), KG_REASON_OK);
	ck_assert_str_eq(id.crl_grace_ca, "r1");
	ck_assert_int_eq(id.crl_next_update, next);
	ck_reason(verify_ex("d1", NULL, 0, after, NULL, NULL, &id, &xerr), KG_REASON_CERT_REVOKED);
	/* past the grace */
	ck_reason(verify_ex("d2", NULL, 0, next + 2 * DAY + 60, NULL, NULL, &id, &xerr),
		  KG_REASON_CRL_EXPIRED);

	/* -t report and metrics */
	txt = report(&refusing, now);
	ck_assert_uint_eq(refusing, 0);
	ck_assert_msg(strstr(txt, "crl r1 (") != NULL && strstr(txt, ": valid, next update") != NULL,
		      "%s", txt);
	free(txt);
	txt = report(&refusing, after);
	ck_assert_uint_eq(refusing, 0);
	ck_assert_msg(strstr(txt, "WARNING: crl r1") && strstr(txt, "within crl_grace"), "%s", txt);
	free(txt);
	kg_trust_set_policy(trust, 2, 0);
	txt = report(&refusing, after);
	ck_assert_uint_eq(refusing, 1);
	ck_assert_msg(strstr(txt, "WARNING: crl r1") && strstr(txt, "REFUSED (crl_expired)"), "%s",
		      txt);
	free(txt);

	txt = crl_metrics(now);
	snprintf(want, sizeof(want), "\nktlsgate_crl_next_update_timestamp_seconds{ca=\"r1\"} %lld\n",
		 (long long)next);
	ck_assert_msg(strstr(txt, want) != NULL, "%s", txt);
	ck_assert_msg(strstr(txt, "\nktlsgate_crl_expired{ca=\"r1\"} 0\n") != NULL, "%s", txt);
	ck_assert_msg(strstr(txt, "ca=\"r2\"") == NULL, "%s", txt); /* no CRL, no series */
	free(txt);
	txt = crl_metrics(after);
	ck_assert_msg(strstr(txt, "\nktlsgate_crl_expired{ca=\"r1\"} 1\n") != NULL, "%s", txt);
	free(txt);

	/* the grace warning: once per interval per CA */
	ck_assert(kg_trust_crl_warn_due(trust, "r1", 1000, 60));
	ck_assert(!kg_trust_crl_warn_due(trust, "r1", 1030, 60));
	ck_assert(kg_trust_crl_warn_due(trust, "r1", 1061, 60));
}
END_TEST

/* ---- the intermediates cache ------------------------------------------------------ */

/* Verify leaf `sub` sending `chain_sub` (may be NULL), at `at`; *use: what the cache did. */
static enum kg_reason verify_use(const char *sub, const char *chain_sub, time_t at,
				 struct kg_identity *id, enum kg_chain_use *use)
{
	STACK_OF(X509) *untrusted = NULL;
	X509 *leaf = load(sub);
	enum kg_reason r;
	int xerr;

	if (chain_sub != NULL) {
		untrusted = sk_X509_new_null();
		ck_assert(sk_X509_push(untrusted, load(chain_sub)));
	}
	*use = (enum kg_chain_use)-1;
	r = kg_verify_peer_ex(trust, leaf, untrusted, at, NULL, NULL, id, &xerr, use);
	sk_X509_pop_free(untrusted, X509_free);
	X509_free(leaf);
	return r;
}

static void new_trust(void)
{
	kg_trust_free(trust);
	trust = kg_trust_new();
	ck_assert_ptr_nonnull(trust);
}

START_TEST(test_cache_hit_miss)
{
	struct kg_identity id;
	enum kg_chain_use use;

	fleet();
	make(KG_PKI_DEVICE, "dev-2", "dev2", "factory");
	add_ca("fleet-root", "root", true);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 0);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_MISS);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 1);
	/* another leaf under the same factory: verified alone, same answer */
	ck_reason(verify_use("dev2", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_HIT);
	ck_assert_str_eq(id.ca_name, "fleet-root");
	ck_assert_str_eq(id.device_id, "dev-2");
	ck_assert_int_eq(id.method, KG_ATT_CA);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_HIT);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 1);
	/* no intermediate sent: nothing to look up, and still no chain */
	ck_reason(verify_use("dev", NULL, 0, &id, &use), KG_REASON_UNKNOWN_CA);
	ck_assert_int_eq(use, KG_CHAIN_UNCACHED);
	/* a leaf directly under a registered CA: nothing above it to skip, nothing cached */
	make(KG_PKI_DEVICE, "dev-r", "devr", "root");
	ck_reason(verify_use("devr", NULL, 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_UNCACHED);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 1);
}
END_TEST

/* A new trust (every reload, CA or CRL change) starts empty; a CA removed takes its
 * intermediates' devices with it. Changing the policy of a trust empties it too. */
START_TEST(test_cache_new_trust)
{
	struct kg_identity id;
	enum kg_chain_use use;

	fleet();
	add_ca("fleet-root", "root", true);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_OK);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_HIT);
	kg_trust_set_policy(trust, 2, 0);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 0);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_MISS);

	new_trust();
	add_ca("fleet-root", "root", true);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 0);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_MISS);

	/* the root no longer registered: nothing left to vouch for the factory */
	new_trust();
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_UNKNOWN_CA);
	/* ... or registered but no longer proven */
	add_ca("fleet-root", "root", false);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_UNPROVEN_CA);
}
END_TEST

/* An intermediate that expires is refused like today even though it is cached: the
 * entry's window ends with the earliest notAfter above the leaf. */
START_TEST(test_cache_expired_intermediate)
{
	const struct mk short_int = { .not_before = (int64_t)time(NULL) - DAY, .days = 10 };
	time_t later = time(NULL) + 20 * DAY;
	struct kg_identity id;
	enum kg_chain_use use;
	int xerr;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	make_ex(KG_PKI_INTERMEDIATE, "Short", "int", "root", &short_int);
	make(KG_PKI_DEVICE, "dev-a", "a", "int");
	make(KG_PKI_DEVICE, "dev-b", "b", "int");
	add_ca("root", "root", true);
	ck_reason(verify_use("a", "int", 0, &id, &use), KG_REASON_OK);
	ck_reason(verify_use("b", "int", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_HIT);
	/* 20 days on, the intermediate has expired, the leaves have not */
	ck_reason(verify_use("b", "int", later, &id, &use), KG_REASON_CERT_EXPIRED);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_MISS);
	{
		const char *chain[] = { "int" };

		ck_reason(verify_ex("a", chain, 1, later, NULL, NULL, &id, &xerr),
			  KG_REASON_CERT_EXPIRED);
		ck_assert_int_eq(xerr, X509_V_ERR_CERT_HAS_EXPIRED);
	}
	/* and the entry still serves within its window */
	ck_reason(verify_use("a", "int", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_HIT);
}
END_TEST

/* A revoked leaf under a cached issuer is refused (the leaf's CRL is checked on the
 * cached path), with the full path's reason; a CRL revoking the issuer itself, loaded
 * into a new trust, refuses every leaf under it. */
START_TEST(test_cache_revoked)
{
	const char *revoked_leaf[] = { "b" };
	const char *revoked_int[] = { "factory" };
	struct kg_identity id;
	enum kg_chain_use use;
	int xerr;

	fleet();
	make(KG_PKI_DEVICE, "dev-b", "b", "factory");
	make(KG_PKI_DEVICE, "dev-c", "c", "factory");
	add_ca("fleet-root", "root", true);
	/* the factory registered but not proven: it is no anchor, yet its CRL counts */
	add_ca("factory", "factory", false);
	add_crl("factory", "factory", revoked_leaf, 1);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_MISS);
	ck_assert_str_eq(id.ca_name, "fleet-root");
	ck_reason(verify_use("c", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_HIT);
	ck_reason(verify_use("b", "factory", 0, &id, &use), KG_REASON_CERT_REVOKED);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_MISS); /* refused under the cache: full path */
	{
		const char *chain[] = { "factory" };

		ck_reason(verify_ex("b", chain, 1, 0, NULL, NULL, &id, &xerr),
			  KG_REASON_CERT_REVOKED);
		ck_assert_int_eq(xerr, X509_V_ERR_CERT_REVOKED);
	}
	/* the cached entry still serves the others */
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_HIT);

	/* the root revokes the factory: a CRL change is a new trust */
	new_trust();
	add_ca("fleet-root", "root", true);
	add_crl("fleet-root", "root", revoked_int, 1);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_CERT_REVOKED);
	ck_reason(verify_use("c", "factory", 0, &id, &use), KG_REASON_CERT_REVOKED);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 0);
	/* added to a trust in use, the same: the cache is emptied */
	new_trust();
	add_ca("fleet-root", "root", true);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 1);
	add_crl("fleet-root", "root", revoked_int, 1);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 0);
	ck_reason(verify_use("c", "factory", 0, &id, &use), KG_REASON_CERT_REVOKED);
}
END_TEST

/* A CRL above the leaf's issuer going stale: the entry's window ends at its nextUpdate,
 * so the full path sees the expired CRL (crl_expired) instead of the cache hiding it. */
START_TEST(test_cache_upper_crl_window)
{
	time_t after = time(NULL) + 31 * DAY; /* kg_pki_crl: nextUpdate now + 30 d */
	struct kg_identity id;
	enum kg_chain_use use;

	fleet();
	make(KG_PKI_DEVICE, "dev-b", "b", "factory");
	add_ca("fleet-root", "root", true);
	add_crl("fleet-root", "root", NULL, 0);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_OK);
	ck_reason(verify_use("b", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_HIT);
	ck_reason(verify_use("b", "factory", after, &id, &use), KG_REASON_CRL_EXPIRED);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_MISS);
	ck_assert_str_eq(id.ca_name, "fleet-root");
	/* within a grace the full path accepts, names the CRL, and caches nothing */
	kg_trust_set_policy(trust, 2, 2 * DAY);
	ck_reason(verify_use("b", "factory", after, &id, &use), KG_REASON_OK);
	ck_assert_str_eq(id.crl_grace_ca, "fleet-root");
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 0);
}
END_TEST

/* An issuer cached under CA A never vouches for a leaf it did not sign: a second PKI
 * with an intermediate of the same name under an unregistered root B. */
START_TEST(test_cache_other_ca)
{
	struct kg_identity id;
	enum kg_chain_use use;

	fleet();
	make(KG_PKI_ROOT, "Other Root", "rootb", NULL);
	make(KG_PKI_INTERMEDIATE, "Factory", "factoryb", "rootb");   /* same subject name */
	make(KG_PKI_DEVICE, "dev-b", "devb", "factoryb");
	add_ca("fleet-root", "root", true);
	ck_reason(verify_use("dev", "factory", 0, &id, &use), KG_REASON_OK);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 1);
	/* B's leaf sending A's cached factory (its issuer by name): the signature fails */
	ck_reason(verify_use("devb", "factory", 0, &id, &use), KG_REASON_BAD_CHAIN);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_MISS);
	/* B's leaf with its own factory: another key, not cached, and B is unknown */
	ck_reason(verify_use("devb", "factoryb", 0, &id, &use), KG_REASON_UNKNOWN_CA);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_MISS);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 1);
}
END_TEST

/* A root's name constraints bind the leaf: a chain with them is never cached, or a leaf
 * outside them would pass under the cached intermediate (the root no longer in view). */
START_TEST(test_cache_name_constraints)
{
	struct kg_identity id;
	enum kg_chain_use use;

	make_hand("ncroot", "NC Root", &(struct hand){ "ec:P-256", NULL, NULL,
		{ { "basicConstraints", "critical,CA:TRUE" },
		  { "keyUsage", "critical,keyCertSign,cRLSign" }, { "subjectKeyIdentifier", "hash" },
		  { "nameConstraints", "critical,permitted;DNS:example.com" } } });
	make_hand("ncline", "NC Line", &(struct hand){ "ec:P-256", "ncroot", NULL, { CA_EXTS } });
	make_hand("good", "good.example.com", &(struct hand){ "ec:P-256", "ncline", NULL, { LEAF_EXTS } });
	make_hand("bad", "bad.other.org", &(struct hand){ "ec:P-256", "ncline", NULL, { LEAF_EXTS } });
	add_ca("nc-root", "ncroot", true);
	ck_reason(verify_use("good", "ncline", 0, &id, &use), KG_REASON_OK);
	ck_reason(verify_use("bad", "ncline", 0, &id, &use), KG_REASON_BAD_CHAIN);
	ck_reason(verify_use("good", "ncline", 0, &id, &use), KG_REASON_OK);
	ck_assert_int_eq(use, KG_CHAIN_CACHE_MISS);
	ck_assert_uint_eq(kg_trust_chain_cache_size(trust), 0);
}
END_TEST

/* The table alone: hit, miss, the validity window, replacement, the clock's bound. */
START_TEST(test_cache_table)
{
	unsigned char k[6][KG_CHAIN_CACHE_KEY_LEN];
	struct kg_chain_cache *cc = kg_chain_cache_new(4);
	size_t ca = 99;
	X509 *x, *got;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	x = load("root");
	ck_assert_ptr_nonnull(cc);
	for (int i = 0; i < 6; i++) {
		memset(k[i], 0, sizeof(k[i]));
		k[i][0] = (unsigned char)i;
		k[i][31] = 0xa5;
	}
	k[5][0] = 0;   /* same bucket as k[0] (its first bytes), another key */
	k[5][10] = 1;
	ck_assert_ptr_null(kg_chain_cache_get(cc, k[0], 100, &ca));
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(kg_chain_cache_put(cc, k[i], x, (size_t)i, 50, 200), 0);
	ck_assert_uint_eq(kg_chain_cache_size(cc), 4);
	got = kg_chain_cache_get(cc, k[2], 100, &ca);
	ck_assert_ptr_eq(got, x);
	ck_assert_uint_eq(ca, 2);
	X509_free(got);
	ck_assert_ptr_null(kg_chain_cache_get(cc, k[5], 100, &ca));  /* bucket mate */
	ck_assert_ptr_null(kg_chain_cache_get(cc, k[2], 49, &ca));   /* before its window */
	ck_assert_ptr_null(kg_chain_cache_get(cc, k[2], 201, &ca));  /* after it */
	/* replacing keeps the count */
	ck_assert_int_eq(kg_chain_cache_put(cc, k[2], x, 7, 50, 300), 0);
	ck_assert_uint_eq(kg_chain_cache_size(cc), 4);
	got = kg_chain_cache_get(cc, k[2], 250, &ca);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(ca, 7);
	X509_free(got);
	/* full: k[0] used since the hand last passed survives, k[1] (not used) goes */
	X509_free(kg_chain_cache_get(cc, k[0], 100, &ca));
	ck_assert_int_eq(kg_chain_cache_put(cc, k[4], x, 4, 50, 200), 0);
	ck_assert_uint_eq(kg_chain_cache_size(cc), 4);
	got = kg_chain_cache_get(cc, k[0], 100, &ca);
	ck_assert_ptr_nonnull(got);
	X509_free(got);
	ck_assert_ptr_null(kg_chain_cache_get(cc, k[1], 100, &ca));
	got = kg_chain_cache_get(cc, k[4], 100, &ca);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(ca, 4);
	X509_free(got);
	/* many more than the bound: never more than 4 held, the newest always found */
	for (int round = 0; round < 40; round++) {
		unsigned char kk[KG_CHAIN_CACHE_KEY_LEN] = { (unsigned char)(100 + round), 1 };

		ck_assert_int_eq(kg_chain_cache_put(cc, kk, x, 0, 50, 200), 0);
		ck_assert_uint_le(kg_chain_cache_size(cc), 4);
		got = kg_chain_cache_get(cc, kk, 100, &ca);
		ck_assert_ptr_nonnull(got);
		X509_free(got);
	}
	kg_chain_cache_clear(cc);
	ck_assert_uint_eq(kg_chain_cache_size(cc), 0);
	ck_assert_ptr_null(kg_chain_cache_get(cc, k[4], 100, &ca));
	kg_chain_cache_free(cc);
	X509_free(x);   /* the cache held its own references: ASan sees any imbalance */
}
END_TEST

/* ---- trust list ------------------------------------------------------------------- */

START_TEST(test_trust_add_errors)
{
	char p[PATH_MAX], err[512] = "";
	struct kg_ca ca;
	X509 *x;

	make(KG_PKI_ROOT, "R1", "r1", NULL);
	add_ca("r1", "r1", true);
	memset(&ca, 0, sizeof(ca));
	path_of(p, sizeof(p), "r1", "cert.pem");
	ck_assert(kg_pem_read_cert_only(p, &x, &ca.pem, err, sizeof(err)) == 0);
	X509_free(x);

	(void)kg_strlcpy(ca.name, "r1", sizeof(ca.name));
	ck_assert_int_eq(kg_trust_add_ca(trust, &ca, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "added twice") != NULL, "%s", err);

	(void)kg_strlcpy(ca.name, "r1b", sizeof(ca.name));
	memset(ca.sha256, 'a', KG_SHA256_HEX_LEN);
	ck_assert_int_eq(kg_trust_add_ca(trust, &ca, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "SHA-256") != NULL, "%s", err);

	free(ca.pem);
	ca.pem = strdup("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
	ca.sha256[0] = '\0';
	ck_assert_int_eq(kg_trust_add_ca(trust, &ca, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "not a certificate") != NULL, "%s", err);
	free(ca.pem);

	ck_assert_uint_eq(kg_trust_count(trust, false), 1);
	ck_assert_uint_eq(kg_trust_count(trust, true), 1);
}
END_TEST

/* A registry behind its ops table, enough for kg_trust_load(). */
struct fake_reg {
	struct kg_registry base;
	char *pem[2];
	bool verified[2];
};

static int fake_ca_list(struct kg_registry *reg, kg_ca_cb cb, void *arg)
{
	struct fake_reg *f = (struct fake_reg *)reg;
	static const char *const names[2] = { "r1", "r2" };

	for (int i = 0; i < 2; i++) {
		struct kg_ca ca;

		memset(&ca, 0, sizeof(ca));
		(void)kg_strlcpy(ca.name, names[i], sizeof(ca.name));
		ca.verified = f->verified[i];
		ca.pem = f->pem[i];
		if (cb(&ca, arg) != 0)
			return 0;
	}
	return 0;
}

START_TEST(test_trust_load)
{
	static const struct kg_registry_ops ops = { .name = "fake", .ca_list = fake_ca_list };
	struct fake_reg reg = { .base = { .ops = &ops }, .verified = { true, false } };
	char p[PATH_MAX], cadir[PATH_MAX], err[512] = "";
	struct kg_config *cfg = calloc(1, sizeof(*cfg));
	const char *files[1];
	X509 *x;

	ck_assert_ptr_nonnull(cfg);
	make(KG_PKI_ROOT, "R1", "r1", NULL);
	make(KG_PKI_ROOT, "R2", "r2", NULL);
	make(KG_PKI_DEVICE, "d1", "d1", "r1");
	make(KG_PKI_DEVICE, "d2", "d2", "r2");
	path_of(p, sizeof(p), "r1", "cert.pem");
	ck_assert(kg_pem_read_cert_only(p, &x, &reg.pem[0], err, sizeof(err)) == 0);
	X509_free(x);
	path_of(p, sizeof(p), "r2", "cert.pem");
	ck_assert(kg_pem_read_cert_only(p, &x, &reg.pem[1], err, sizeof(err)) == 0);
	X509_free(x);
	path_of(p, sizeof(p), "d1", "cert.pem");
	files[0] = p;
	path_of(cadir, sizeof(cadir), "r1", NULL);
	(void)kg_strlcpy(cfg->crls[0].ca_name, "r1", sizeof(cfg->crls[0].ca_name));
	path_of(cfg->crls[0].path, sizeof(cfg->crls[0].path), "r1.crl", NULL);
	ck_assert(kg_pki_crl(cadir, files, 1, cfg->crls[0].path, err, sizeof(err)) == 0);
	cfg->n_crls = 1;

	ck_assert_msg(kg_trust_load(trust, &reg.base, cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(kg_trust_count(trust, false), 2);
	ck_assert_uint_eq(kg_trust_count(trust, true), 1);
	ck_reason(verify("d1", NULL), KG_REASON_CERT_REVOKED);
	ck_reason(verify("d2", NULL), KG_REASON_UNPROVEN_CA);

	/* a CRL for a CA the registry does not have (removed) is skipped with a warning,
	 * not a failed load: failing kept the old trust, the removed CA still in it */
	kg_trust_free(trust);
	trust = kg_trust_new();
	(void)kg_strlcpy(cfg->crls[0].ca_name, "gone", sizeof(cfg->crls[0].ca_name));
	ck_assert_msg(kg_trust_load(trust, &reg.base, cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(kg_trust_count(trust, true), 1);
	ck_reason(verify("d1", NULL), KG_REASON_OK);   /* r1's CRL is not configured now */
	{
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);

		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(kg_trust_crl_report(trust, f, time(NULL)), 0);
		ck_assert_int_eq(fclose(f), 0);
		ck_assert_msg(strstr(buf, "WARNING: crl gone (") != NULL &&
			      strstr(buf, "skipped: CA gone is not registered") != NULL, "%s", buf);
		free(buf);
	}
	/* a bad file for a registered CA still fails it */
	kg_trust_free(trust);
	trust = kg_trust_new();
	(void)kg_strlcpy(cfg->crls[0].ca_name, "r1", sizeof(cfg->crls[0].ca_name));
	path_of(cfg->crls[0].path, sizeof(cfg->crls[0].path), "no-such.crl", NULL);
	ck_assert_int_eq(kg_trust_load(trust, &reg.base, cfg, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "no-such.crl") != NULL, "%s", err);

	free(reg.pem[0]);
	free(reg.pem[1]);
	free(cfg);
}
END_TEST

/* ---- thumbprints ------------------------------------------------------------------ */

/* The registry's thumbprint lookup, over one device. */
static int lookup_one(void *arg, const char *hex, struct kg_device *dev)
{
	const struct kg_device *d = arg;

	if (strcmp(d->thumb_primary, hex) != 0 && strcmp(d->thumb_secondary, hex) != 0)
		return KG_E_NOTFOUND;
	*dev = *d;
	return 0;
}

static void pin_device(struct kg_device *d, const char *id, const char *sub, bool secondary)
{
	X509 *x = load(sub);

	memset(d, 0, sizeof(*d));
	(void)kg_strlcpy(d->id, id, sizeof(d->id));
	d->attestation = KG_ATT_THUMBPRINT;
	d->status = KG_DEV_ENABLED;
	memset(secondary ? d->thumb_primary : d->thumb_secondary, 'f', KG_SHA256_HEX_LEN);
	ck_assert_int_eq(kg_cert_sha256_hex(x, secondary ? d->thumb_secondary : d->thumb_primary), 0);
	X509_free(x);
}

static enum kg_reason verify_pinned(const char *sub, struct kg_device *d, struct kg_identity *id,
				    int *xerr)
{
	return verify_ex(sub, NULL, 0, 0, lookup_one, d, id, xerr);
}

START_TEST(test_thumbprint)
{
	struct kg_device d;
	struct kg_identity id;
	int xerr;

	make(KG_PKI_SELF_SIGNED, "thermo-7", "ss", NULL);
	make(KG_PKI_SELF_SIGNED, "thermo-7", "ss2", NULL);

	pin_device(&d, "thermo-7", "ss", false);
	ck_reason(verify_pinned("ss", &d, &id, &xerr), KG_REASON_OK);
	ck_assert_int_eq(id.method, KG_ATT_THUMBPRINT);
	ck_assert_str_eq(id.ca_name, "");
	ck_assert_str_eq(id.device_id, "thermo-7");
	ck_assert_str_eq(id.thumbprint, d.thumb_primary);
	ck_assert_int_eq(xerr, X509_V_OK);

	pin_device(&d, "thermo-7", "ss", true);
	ck_reason(verify_pinned("ss", &d, &id, &xerr), KG_REASON_OK);

	/* the other key of the same name matches neither pin */
	ck_reason(verify_pinned("ss2", &d, &id, &xerr), KG_REASON_THUMBPRINT_MISMATCH);
	ck_assert_int_eq(xerr, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
	/* no lookup at all */
	ck_reason(verify("ss", NULL), KG_REASON_THUMBPRINT_MISMATCH);

	/* pinned, but enrolled under another id */
	pin_device(&d, "thermo-8", "ss", false);
	ck_reason(verify_pinned("ss", &d, &id, &xerr), KG_REASON_THUMBPRINT_MISMATCH);

	/* a CA-attested device with a thumbprint on file does not pin */
	pin_device(&d, "thermo-7", "ss", false);
	d.attestation = KG_ATT_CA;
	ck_reason(verify_pinned("ss", &d, &id, &xerr), KG_REASON_THUMBPRINT_MISMATCH);
}
END_TEST

START_TEST(test_thumbprint_checks)
{
	const struct mk expired = { .not_before = (int64_t)time(NULL) - 400 * DAY, .days = 30 };
	const struct mk server = { .eku = KG_EKU_SERVER };
	struct kg_device d;
	struct kg_identity id;
	int xerr;

	make_ex(KG_PKI_SELF_SIGNED, "old", "old", NULL, &expired);
	pin_device(&d, "old", "old", false);
	ck_reason(verify_pinned("old", &d, &id, &xerr), KG_REASON_CERT_EXPIRED);
	ck_assert_int_eq(xerr, X509_V_ERR_CERT_HAS_EXPIRED);
	ck_reason(verify_ex("old", NULL, 0, time(NULL) - 390 * DAY, lookup_one, &d, &id, &xerr),
		  KG_REASON_OK);
	ck_reason(verify_ex("old", NULL, 0, time(NULL) - 500 * DAY, lookup_one, &d, &id, &xerr),
		  KG_REASON_CERT_NOT_YET_VALID);

	make_ex(KG_PKI_SELF_SIGNED, "srv", "srv", NULL, &server);
	pin_device(&d, "srv", "srv", false);
	ck_reason(verify_pinned("srv", &d, &id, &xerr), KG_REASON_BAD_EKU);
	ck_assert_int_eq(xerr, X509_V_ERR_INVALID_PURPOSE);

	/* a CA-issued leaf may be pinned too: no chain needed */
	make(KG_PKI_ROOT, "Unregistered", "root", NULL);
	make(KG_PKI_DEVICE, "pinned-dev", "dev", "root");
	ck_reason(verify("dev", NULL), KG_REASON_UNKNOWN_CA);
	pin_device(&d, "pinned-dev", "dev", false);
	ck_reason(verify_pinned("dev", &d, &id, &xerr), KG_REASON_OK);
	ck_assert_int_eq(id.method, KG_ATT_THUMBPRINT);
}
END_TEST

START_TEST(test_pinned_weak_key)
{
	static const struct hand ss1024 = { "rsa:1024", NULL, NULL,
		{ { "basicConstraints", "critical,CA:FALSE" }, { "keyUsage", "critical,digitalSignature" },
		  { "extendedKeyUsage", "clientAuth" } } };
	static const struct hand ss2048 = { "rsa:2048", NULL, NULL,
		{ { "basicConstraints", "critical,CA:FALSE" }, { "keyUsage", "critical,digitalSignature" },
		  { "extendedKeyUsage", "clientAuth" } } };
	static const struct hand ssbad = { "ec:P-256", NULL, NULL,
		{ { "basicConstraints", "critical,CA:FALSE" }, { "keyUsage", "DER:03:02" },
		  { "extendedKeyUsage", "clientAuth" } } };
	struct kg_device d;
	struct kg_identity id;
	int xerr;

	make_hand("ss1024", "ss-1024", &ss1024);
	make_hand("ss2048", "ss-2048", &ss2048);
	make_hand("ssbad", "ss-bad", &ssbad);
	pin_device(&d, "ss-1024", "ss1024", false);
	ck_reason(verify_pinned("ss1024", &d, &id, &xerr), KG_REASON_WEAK_KEY);
	ck_assert_int_eq(xerr, X509_V_ERR_EE_KEY_TOO_SMALL);
	pin_device(&d, "ss-2048", "ss2048", false);
	ck_reason(verify_pinned("ss2048", &d, &id, &xerr), KG_REASON_OK);
	kg_trust_set_policy(trust, 3, 0);
	ck_reason(verify_pinned("ss2048", &d, &id, &xerr), KG_REASON_WEAK_KEY);
	pin_device(&d, "ss-bad", "ssbad", false);
	ck_reason(verify_pinned("ssbad", &d, &id, &xerr), KG_REASON_BAD_CHAIN);
	ck_assert_int_eq(xerr, X509_V_ERR_INVALID_EXTENSION);
}
END_TEST

START_TEST(test_no_cert)
{
	struct kg_identity id;
	int xerr = 0;

	ck_reason(kg_verify_peer(trust, NULL, NULL, 0, NULL, NULL, &id, &xerr), KG_REASON_NO_CERT);
	ck_assert_int_ne(xerr, X509_V_OK);
	ck_assert_int_eq(kg_cert_sha256_hex(NULL, id.thumbprint), -1);
}
END_TEST

/* With the engine on: a device's EC key is a legacy key (not a provider's), so the
 * tests of this TCase really ran that way (where OpenSSL needs it: before 3.2). */
START_TEST(test_fast_ec_decode_active)
{
	X509 *leaf;

	fleet();
	fast_ec_on();
	leaf = load("dev");
	fast_ec_off();
	ck_assert_ptr_nonnull(X509_get0_pubkey(leaf));
	if (kg_tls_ec_decode_needed(OpenSSL_version_num()))
		ck_assert_ptr_null(EVP_PKEY_get0_provider(X509_get0_pubkey(leaf)));
	else
		ck_assert_ptr_nonnull(EVP_PKEY_get0_provider(X509_get0_pubkey(leaf)));
	X509_free(leaf);
	ck_assert(kg_tls_ec_decode_needed(0x30000130UL));
	ck_assert(kg_tls_ec_decode_needed(0x301000f0UL));
	ck_assert(!kg_tls_ec_decode_needed(0x30200000UL));
	ck_assert(!kg_tls_ec_decode_needed(0x30500090UL));
}
END_TEST

static void add_verify_tests(TCase *tc)
{
	tcase_add_test(tc, test_identity_table);
	tcase_add_test(tc, test_identity_from_cert);
	tcase_add_test(tc, test_sha256_vector);
	tcase_add_test(tc, test_chain_ok);
	tcase_add_test(tc, test_chain_missing_intermediate);
	tcase_add_test(tc, test_chain_unknown_root);
	tcase_add_test(tc, test_trust_ca_rows);
	tcase_add_test(tc, test_chain_unproven);
	tcase_add_test(tc, test_chain_anchor_name);
	tcase_add_test(tc, test_ca_as_leaf);
	tcase_add_test(tc, test_validity);
	tcase_add_test(tc, test_eku);
	tcase_add_test(tc, test_not_ca_intermediate);
	tcase_add_test(tc, test_crl);
	tcase_add_test(tc, test_crl_errors);
	tcase_add_test(tc, test_crl_der);
	tcase_add_test(tc, test_weak_keys);
	tcase_add_test(tc, test_weak_ca_key);
	tcase_add_test(tc, test_weak_signatures);
	tcase_add_test(tc, test_strict_profile);
	tcase_add_test(tc, test_pinned_weak_key);
	tcase_add_test(tc, test_crl_expired);
	tcase_add_test(tc, test_ca_metrics);
	tcase_add_test(tc, test_trust_add_errors);
	tcase_add_test(tc, test_trust_load);
	tcase_add_test(tc, test_thumbprint);
	tcase_add_test(tc, test_thumbprint_checks);
	tcase_add_test(tc, test_no_cert);
	tcase_add_test(tc, test_cache_hit_miss);
	tcase_add_test(tc, test_cache_new_trust);
	tcase_add_test(tc, test_cache_expired_intermediate);
	tcase_add_test(tc, test_cache_revoked);
	tcase_add_test(tc, test_cache_upper_crl_window);
	tcase_add_test(tc, test_cache_other_ca);
	tcase_add_test(tc, test_cache_name_constraints);
	tcase_add_test(tc, test_cache_table);
}

Suite *kg_suite_verify(void)
{
	Suite *s = suite_create("verify");
	TCase *tc = tcase_create("verify");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	add_verify_tests(tc);
	suite_add_tcase(s, tc);
	tc = tcase_create("verify_fast_ec_decode");
	tcase_add_checked_fixture(tc, setup_fast_ec, teardown_fast_ec);
	tcase_set_timeout(tc, 60);
	add_verify_tests(tc);
	tcase_add_test(tc, test_fast_ec_decode_active);
	suite_add_tcase(s, tc);
	return s;
}
