/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_leaf.c - certified-leaf mode without a TPM: tls/leaf.c with a file key as the
 * issuer (fields, lifetime, the issuer check, the key in the secure heap, kept or
 * renewed), and the [tpm] mode / leaf_lifetime keys.
 */
#define OPENSSL_SUPPRESS_DEPRECATED   /* EVP_PKEY_get0_EC_KEY: the BN_FLG_SECURE check */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "ops/conf_value.h"
#include "ops/config.h"
#include "tls/leaf.h"
#include "tpm/tpm_conf.h"
#include "testlib.h"

#define NOW ((int64_t)1800000000)   /* 2027-01-15: fixed, so the times are exact */

static int add_ext(X509 *c, X509 *issuer, int nid, const char *v)
{
	X509V3_CTX v3;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx(&v3, issuer, c, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, nid, v);
	if (e == NULL)
		return 0;
	ok = X509_add_ext(c, e, -1);
	X509_EXTENSION_free(e);
	return ok;
}

/* A certificate for key named cn, issued by (ica, ikey) or self-signed, with the given
 * basicConstraints and keyUsage (NULL: none). */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *ica, EVP_PKEY *ikey, const char *bc,
		       const char *ku, const char *san)
{
	X509 *c = X509_new();
	X509_NAME *n = X509_NAME_new();

	ck_assert_ptr_nonnull(c);
	X509_set_version(c, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(c), 7);
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"ktlsgate test", -1,
				   -1, 0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(c, n);
	X509_set_issuer_name(c, ica ? X509_get_subject_name(ica) : n);
	X509_NAME_free(n);
	X509_gmtime_adj(X509_getm_notBefore(c), -86400L * 400);
	X509_gmtime_adj(X509_getm_notAfter(c), 86400L * 3650);
	X509_set_pubkey(c, key);
	ck_assert(add_ext(c, ica ? ica : c, NID_subject_key_identifier, "hash"));
	if (ica)
		ck_assert(add_ext(c, ica, NID_authority_key_identifier, "keyid:always"));
	if (bc)
		ck_assert(add_ext(c, ica ? ica : c, NID_basic_constraints, bc));
	if (ku)
		ck_assert(add_ext(c, ica ? ica : c, NID_key_usage, ku));
	if (san)
		ck_assert(add_ext(c, ica ? ica : c, NID_subject_alt_name, san));
	ck_assert_int_gt(X509_sign(c, ikey ? ikey : key, EVP_sha256()), 0);
	return c;
}

struct pki {
	EVP_PKEY *root_key, *tpm_key;
	X509 *root, *tpm;             /* tpm: the issuer, CA:TRUE pathlen:0 */
	STACK_OF(X509) *chain;        /* tpm, root */
};

static void pki_make(struct pki *p, const char *bc, const char *ku)
{
	p->root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	p->tpm_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ck_assert_ptr_nonnull(p->root_key);
	ck_assert_ptr_nonnull(p->tpm_key);
	p->root = make_cert("root", p->root_key, NULL, NULL, "critical,CA:TRUE",
			    "critical,keyCertSign,cRLSign", NULL);
	p->tpm = make_cert("gw.example.com", p->tpm_key, p->root, p->root_key, bc, ku,
			   "DNS:gw.example.com,IP:127.0.0.1");
	p->chain = sk_X509_new_null();
	sk_X509_push(p->chain, p->tpm);
	sk_X509_push(p->chain, p->root);
}

static void pki_free(struct pki *p)
{
	sk_X509_pop_free(p->chain, X509_free);
	EVP_PKEY_free(p->root_key);
	EVP_PKEY_free(p->tpm_key);
}

static void good_pki(struct pki *p)
{
	pki_make(p, "critical,CA:TRUE,pathlen:0", "critical,digitalSignature,keyCertSign");
}

static int64_t asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	ck_assert_int_eq(ASN1_TIME_to_tm(t, &tm), 1);
	return (int64_t)timegm(&tm);
}

START_TEST(leaf_fields)
{
	struct pki p;
	struct kg_leaf *leaf;
	char err[256] = "";
	const ASN1_OCTET_STRING *ski, *aki;
	GENERAL_NAMES *san_leaf, *san_tpm;
	unsigned char *d1 = NULL, *d2 = NULL;
	int l1, l2;
	BIGNUM *serial;

	good_pki(&p);
	leaf = kg_leaf_new(p.chain, p.tpm_key, 7200, NOW, err, sizeof(err));
	ck_assert_msg(leaf != NULL, "%s", err);
	/* subject and subjectAltName are the issuer's; the issuer is the TPM cert */
	ck_assert_int_eq(X509_NAME_cmp(X509_get_subject_name(leaf->cert), X509_get_subject_name(p.tpm)), 0);
	ck_assert_int_eq(X509_NAME_cmp(X509_get_issuer_name(leaf->cert), X509_get_subject_name(p.tpm)), 0);
	san_leaf = X509_get_ext_d2i(leaf->cert, NID_subject_alt_name, NULL, NULL);
	san_tpm = X509_get_ext_d2i(p.tpm, NID_subject_alt_name, NULL, NULL);
	ck_assert_ptr_nonnull(san_leaf);
	l1 = i2d_GENERAL_NAMES(san_leaf, &d1);
	l2 = i2d_GENERAL_NAMES(san_tpm, &d2);
	ck_assert_int_eq(l1, l2);
	ck_assert_int_eq(memcmp(d1, d2, (size_t)l1), 0);
	OPENSSL_free(d1);
	OPENSSL_free(d2);
	GENERAL_NAMES_free(san_leaf);
	GENERAL_NAMES_free(san_tpm);
	/* validity: 5 minutes back for clock skew, lifetime ahead */
	ck_assert_int_eq(asn1_time(X509_get0_notBefore(leaf->cert)), NOW - KG_LEAF_BACKDATE);
	ck_assert_int_eq(asn1_time(X509_get0_notAfter(leaf->cert)), NOW + 7200);
	ck_assert_int_eq(leaf->not_after, NOW + 7200);
	ck_assert_int_eq(kg_leaf_renew_at(leaf), NOW + 3600);
	/* an end-entity server certificate: CA:FALSE, digitalSignature only, serverAuth */
	ck_assert_int_eq(X509_check_ca(leaf->cert), 0);
	ck_assert(X509_get_extension_flags(leaf->cert) & EXFLAG_BCONS);
	ck_assert_uint_eq(X509_get_key_usage(leaf->cert), KU_DIGITAL_SIGNATURE);
	ck_assert_uint_eq(X509_get_extended_key_usage(leaf->cert), XKU_SSL_SERVER);
	/* AKI is the issuer's SKI; the leaf has its own SKI */
	ski = X509_get0_subject_key_id(leaf->cert);
	aki = X509_get0_authority_key_id(leaf->cert);
	ck_assert_ptr_nonnull(ski);
	ck_assert_ptr_nonnull(aki);
	ck_assert_int_eq(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(p.tpm)), 0);
	/* random positive 16-byte serial */
	serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf->cert), NULL);
	ck_assert(!BN_is_negative(serial));
	ck_assert_int_eq(BN_num_bytes(serial), 16);
	BN_free(serial);
	ck_assert_int_eq((int)strlen(leaf->serial), 32);
	/* a P-256 key of its own, signed by the issuer key with SHA-256 */
	ck_assert(EVP_PKEY_is_a(leaf->key, "EC"));
	ck_assert_int_eq(EVP_PKEY_get_bits(leaf->key), 256);
	ck_assert_int_ne(EVP_PKEY_eq(leaf->key, p.tpm_key), 1);
	ck_assert_int_eq(X509_verify(leaf->cert, p.tpm_key), 1);
	ck_assert_int_eq(X509_get_signature_nid(leaf->cert), NID_ecdsa_with_SHA256);
	ck_assert_ptr_eq(sk_X509_value(leaf->chain, 0), p.tpm);
	kg_leaf_free(leaf);
	pki_free(&p);
}
END_TEST

/* An RSA-2048 issuer key (the daemon serves RSA TPM keys once its signer does): the
 * leaf is still P-256, signed sha256WithRSAEncryption, and verifies. */
START_TEST(leaf_rsa_issuer)
{
	struct pki p;
	struct kg_leaf *leaf;
	char err[256] = "";

	p.root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	p.tpm_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ck_assert_ptr_nonnull(p.tpm_key);
	p.root = make_cert("root", p.root_key, NULL, NULL, "critical,CA:TRUE",
			   "critical,keyCertSign,cRLSign", NULL);
	p.tpm = make_cert("gw.example.com", p.tpm_key, p.root, p.root_key,
			  "critical,CA:TRUE,pathlen:0", "critical,digitalSignature,keyCertSign",
			  "DNS:gw.example.com");
	p.chain = sk_X509_new_null();
	sk_X509_push(p.chain, p.tpm);
	sk_X509_push(p.chain, p.root);
	leaf = kg_leaf_new(p.chain, p.tpm_key, 3600, NOW, err, sizeof(err));
	ck_assert_msg(leaf != NULL, "%s", err);
	ck_assert_int_eq(X509_get_signature_nid(leaf->cert), NID_sha256WithRSAEncryption);
	ck_assert_int_eq(X509_verify(leaf->cert, p.tpm_key), 1);
	ck_assert(EVP_PKEY_is_a(leaf->key, "EC"));
	kg_leaf_free(leaf);
	pki_free(&p);
}
END_TEST

/* The chain leaf -> TPM cert -> root verifies as a TLS server chain for the name. */
START_TEST(leaf_chain_verifies)
{
	struct pki p;
	struct kg_leaf *leaf;
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *sc = X509_STORE_CTX_new();
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	char err[256] = "";
	int ok;

	good_pki(&p);
	leaf = kg_leaf_new(p.chain, p.tpm_key, 86400, (int64_t)time(NULL), err, sizeof(err));
	ck_assert_msg(leaf != NULL, "%s", err);
	X509_STORE_add_cert(st, p.root);
	sk_X509_push(untrusted, p.tpm);
	X509_STORE_CTX_init(sc, st, leaf->cert, untrusted);
	X509_STORE_CTX_set_purpose(sc, X509_PURPOSE_SSL_SERVER);
	X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(sc), "gw.example.com", 0);
	ok = X509_verify_cert(sc);
	ck_assert_msg(ok == 1, "verify: %s",
		      X509_verify_cert_error_string(X509_STORE_CTX_get_error(sc)));
	X509_STORE_CTX_free(sc);
	X509_STORE_free(st);
	sk_X509_free(untrusted);
	kg_leaf_free(leaf);
	pki_free(&p);
}
END_TEST

START_TEST(each_leaf_is_new)
{
	struct pki p;
	struct kg_leaf *a, *b;
	char err[256] = "";

	good_pki(&p);
	a = kg_leaf_new(p.chain, p.tpm_key, 3600, NOW, err, sizeof(err));
	b = kg_leaf_new(p.chain, p.tpm_key, 3600, NOW, err, sizeof(err));
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_str_ne(a->serial, b->serial);
	ck_assert_int_ne(EVP_PKEY_eq(a->key, b->key), 1);
	kg_leaf_free(a);
	kg_leaf_free(b);
	pki_free(&p);
}
END_TEST

START_TEST(issuer_not_ca_refused)
{
	struct pki p;
	char err[512] = "";

	pki_make(&p, "critical,CA:FALSE", "critical,digitalSignature");
	ck_assert_int_eq(kg_leaf_issuer_check(p.tpm, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "basicConstraints CA:TRUE") != NULL, "%s", err);
	ck_assert_ptr_null(kg_leaf_new(p.chain, p.tpm_key, 3600, NOW, err, sizeof(err)));
	ck_assert_msg(strstr(err, "cannot issue the leaf") != NULL, "%s", err);
	pki_free(&p);
	/* no basicConstraints at all */
	pki_make(&p, NULL, NULL);
	ck_assert_int_eq(kg_leaf_issuer_check(p.tpm, err, sizeof(err)), -1);
	pki_free(&p);
	/* CA:TRUE but a keyUsage without keyCertSign */
	pki_make(&p, "critical,CA:TRUE,pathlen:0", "critical,digitalSignature");
	ck_assert_int_eq(kg_leaf_issuer_check(p.tpm, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "keyCertSign") != NULL, "%s", err);
	pki_free(&p);
}
END_TEST

START_TEST(signer_must_be_the_issuer_key)
{
	struct pki p;
	char err[256] = "";

	good_pki(&p);
	ck_assert_ptr_null(kg_leaf_new(p.chain, p.root_key, 3600, NOW, err, sizeof(err)));
	ck_assert_msg(strstr(err, "not the key of the issuer") != NULL, "%s", err);
	pki_free(&p);
}
END_TEST

/* Is addr in a mapping whose VmFlags carry flag ("dd": MADV_DONTDUMP, "lo": locked)? */
static int mapping_has_flag(const void *addr, const char *flag)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512], want[8];
	unsigned long lo = 0, hi = 0, a = (unsigned long)addr;
	int in = 0, found = 0;

	ck_assert_ptr_nonnull(f);
	snprintf(want, sizeof(want), " %s", flag);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = a >= lo && a < hi;
		else if (in && strncmp(line, "VmFlags:", 8) == 0)
			found = strstr(line, want) != NULL;
	}
	fclose(f);
	return found;
}

/* The leaf's private scalar is in OpenSSL's secure heap (BN_FLG_SECURE, counted in
 * CRYPTO_secure_used), which is MADV_DONTDUMP, and it is given back when freed. */
START_TEST(leaf_key_in_secure_heap)
{
	struct pki p;
	struct kg_leaf *leaf;
	char err[256] = "";
	size_t used0, used1;
	void *probe;
	const EC_KEY *ec;

	ck_assert_int_ne(CRYPTO_secure_malloc_init(1 << 16, 16), 0);
	probe = OPENSSL_secure_malloc(32);
	ck_assert(CRYPTO_secure_allocated(probe));
	ck_assert_msg(mapping_has_flag(probe, "dd"), "secure heap is not MADV_DONTDUMP");
	OPENSSL_secure_free(probe);
	good_pki(&p);
	/* a first leaf instantiates OpenSSL's DRBGs, whose state stays in the heap */
	kg_leaf_free(kg_leaf_new(p.chain, p.tpm_key, 3600, NOW, err, sizeof(err)));
	used0 = CRYPTO_secure_used();
	leaf = kg_leaf_new(p.chain, p.tpm_key, 3600, NOW, err, sizeof(err));
	ck_assert_msg(leaf != NULL, "%s", err);
	used1 = CRYPTO_secure_used();
	ck_assert_uint_gt(used1, used0);
	ec = EVP_PKEY_get0_EC_KEY(leaf->key);
	ck_assert_ptr_nonnull(ec);
	ck_assert_int_ne(BN_get_flags(EC_KEY_get0_private_key(ec), BN_FLG_SECURE), 0);
	kg_leaf_free(leaf);
	ck_assert_uint_le(CRYPTO_secure_used(), used0);
	pki_free(&p);
}
END_TEST

/* A leaf never outlives the TPM certificate; an expired one issues nothing. */
START_TEST(leaf_capped_by_issuer)
{
	struct pki p;
	struct kg_leaf *leaf;
	char err[256] = "";
	int64_t end, now = (int64_t)time(NULL);

	good_pki(&p);
	end = asn1_time(X509_get0_notAfter(p.tpm));
	leaf = kg_leaf_new(p.chain, p.tpm_key, 7200, end - 600, err, sizeof(err));
	ck_assert_msg(leaf != NULL, "%s", err);
	ck_assert_int_eq(leaf->not_after, end);
	ck_assert_int_eq(asn1_time(X509_get0_notAfter(leaf->cert)), end);
	kg_leaf_free(leaf);
	ck_assert_ptr_null(kg_leaf_new(p.chain, p.tpm_key, 7200, end, err, sizeof(err)));
	ck_assert_msg(strstr(err, "has expired") != NULL, "%s", err);
	ck_assert_int_gt(end, now);
	pki_free(&p);
}
END_TEST

/* A reload keeps the leaf while it fits, and renews it when it does not. */
START_TEST(leaf_fits)
{
	struct pki p, q;
	struct kg_leaf *leaf;
	char err[256] = "";

	good_pki(&p);
	good_pki(&q);
	leaf = kg_leaf_new(p.chain, p.tpm_key, 7200, NOW, err, sizeof(err));
	ck_assert_ptr_nonnull(leaf);
	ck_assert(kg_leaf_fits(leaf, p.chain, 7200, NOW + 10));
	ck_assert(kg_leaf_fits(leaf, p.chain, 86400, NOW + 3599));   /* longer: fine */
	ck_assert(!kg_leaf_fits(leaf, p.chain, 7200, NOW + 3600));   /* due */
	ck_assert(!kg_leaf_fits(leaf, p.chain, 3600, NOW + 10));     /* shorter lifetime */
	ck_assert(!kg_leaf_fits(leaf, q.chain, 7200, NOW + 10));     /* another TPM cert */
	ck_assert(!kg_leaf_fits(NULL, p.chain, 7200, NOW));
	ck_assert_ptr_eq(kg_leaf_up_ref(leaf), leaf);
	kg_leaf_free(leaf);   /* one reference left */
	ck_assert_int_eq(X509_verify(leaf->cert, p.tpm_key), 1);
	kg_leaf_free(leaf);
	pki_free(&p);
	pki_free(&q);
}
END_TEST

/* An SSL_CTX given the leaf serves the leaf, its key and the TPM cert behind it. */
START_TEST(leaf_ctx_use)
{
	struct pki p;
	struct kg_leaf *leaf;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	STACK_OF(X509) *extra = NULL;
	char err[256] = "";

	good_pki(&p);
	leaf = kg_leaf_new(p.chain, p.tpm_key, 3600, NOW, err, sizeof(err));
	ck_assert_ptr_nonnull(leaf);
	ck_assert_int_eq(kg_leaf_ctx_use(ctx, leaf), 0);
	ck_assert_ptr_eq(SSL_CTX_get0_certificate(ctx), leaf->cert);
	ck_assert_int_eq(EVP_PKEY_eq(SSL_CTX_get0_privatekey(ctx), leaf->key), 1);
	ck_assert_int_eq(SSL_CTX_get0_chain_certs(ctx, &extra), 1);
	ck_assert_int_eq(sk_X509_num(extra), 2);
	ck_assert_int_eq(X509_cmp(sk_X509_value(extra, 0), p.tpm), 0);
	kg_leaf_free(leaf);   /* the context keeps what it serves */
	ck_assert_int_eq(SSL_CTX_check_private_key(ctx), 1);
	SSL_CTX_free(ctx);
	pki_free(&p);
}
END_TEST

/* ---- [tpm] mode and leaf_lifetime --------------------------------------------- */

static int parse_tpm(const char *tpm, struct kg_config *cfg, char *err, size_t errlen)
{
	char text[1024];

	snprintf(text, sizeof(text),
		 "[daemon]\ncert = /c\nkey = handle:0x81000101\nregistry = /r\n[tpm]\n%s", tpm);
	return kg_config_parse_string(text, "t.conf", cfg, err, errlen);
}

START_TEST(conf_mode_and_lifetime)
{
	struct kg_config *cfg = calloc(1, sizeof(*cfg));
	char err[KG_ERRBUF];

	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(parse_tpm("tcti = mssim\n", cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg->tpm.mode, KG_TPM_MODE_DIRECT);
	ck_assert_uint_eq(cfg->tpm.leaf_lifetime, 86400);
	ck_assert_int_eq(parse_tpm("mode = certified-leaf\nleaf_lifetime = 90m\n", cfg, err,
				   sizeof(err)), 0);
	ck_assert_int_eq(cfg->tpm.mode, KG_TPM_MODE_CERTIFIED_LEAF);
	ck_assert_uint_eq(cfg->tpm.leaf_lifetime, 5400);
	ck_assert_str_eq(kg_tpm_mode_name(cfg->tpm.mode), "certified-leaf");
	ck_assert_int_eq(parse_tpm("mode = leaf\n", cfg, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "t.conf:6: 'mode'") != NULL, "%s", err);
	ck_assert_int_eq(parse_tpm("leaf_lifetime = 19\n", cfg, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "from 20s to 30d") != NULL, "%s", err);
	ck_assert_int_eq(parse_tpm("leaf_lifetime = 31d\n", cfg, err, sizeof(err)), -1);
	free(cfg);
}
END_TEST

START_TEST(durations)
{
	static const struct { const char *in; int rc; unsigned v; } cases[] = {
		{ "60", 0, 60 }, { "60s", 0, 60 }, { "15m", 0, 900 }, { "24h", 0, 86400 },
		{ "30d", 0, 2592000 }, { "1m", 0, 60 }, { "20", 0, 20 }, { "19", -1, 0 }, { "31d", -1, 0 },
		{ "", -1, 0 }, { "h", -1, 0 }, { "-60", -1, 0 }, { "60 s", -1, 0 },
		{ "60ss", -1, 0 }, { "1.5h", -1, 0 }, { "99999999999999999999", -1, 0 },
		{ "24H", -1, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned v = 0;
		int rc = kg_conf_duration(cases[i].in, KG_TPM_LEAF_LIFETIME_MIN,
					       KG_TPM_LEAF_LIFETIME_MAX, &v);

		ck_assert_msg(rc == cases[i].rc, "'%s': rc %d", cases[i].in, rc);
		if (rc == 0)
			ck_assert_uint_eq(v, cases[i].v);
	}
}
END_TEST

Suite *kg_suite_leaf(void);   /* run.c */

Suite *kg_suite_leaf(void)
{
	Suite *s = suite_create("leaf");
	TCase *tc = tcase_create("leaf");
	TCase *conf = tcase_create("conf");

	tcase_add_test(tc, leaf_fields);
	tcase_add_test(tc, leaf_chain_verifies);
	tcase_add_test(tc, leaf_rsa_issuer);
	tcase_add_test(tc, each_leaf_is_new);
	tcase_add_test(tc, issuer_not_ca_refused);
	tcase_add_test(tc, signer_must_be_the_issuer_key);
	tcase_add_test(tc, leaf_key_in_secure_heap);
	tcase_add_test(tc, leaf_fits);
	tcase_add_test(tc, leaf_capped_by_issuer);
	tcase_add_test(tc, leaf_ctx_use);
	suite_add_tcase(s, tc);
	tcase_add_test(conf, conf_mode_and_lifetime);
	tcase_add_test(conf, durations);
	suite_add_tcase(s, conf);
	return s;
}
