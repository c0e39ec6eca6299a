/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_pki.c - the test PKI: every kind of certificate carries the extensions its
 * role needs, keys are private, chains stop below the root, verification certs prove
 * possession, CRLs list what they revoke, and the PEM loaders refuse keys and junk
 * with messages that name the file.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli/pki.h"
#include "testlib.h"

static char dir[PATH_MAX];

static void setup(void)
{
	kg_test_tmpdir(dir, sizeof(dir));
}

static void teardown(void)
{
	kg_test_rmdir(dir);
}

/* dir/sub (+ "/" file) into a static-free caller buffer. */
static void path_of(char *out, size_t cap, const char *sub, const char *file)
{
	int n = file != NULL ? snprintf(out, cap, "%s/%s/%s", dir, sub, file)
			     : snprintf(out, cap, "%s/%s", dir, sub);

	ck_assert(n > 0 && (size_t)n < cap);
}

static void make(enum kg_pki_kind kind, const char *cn, const char *sub, const char *issuer_sub)
{
	char out[PATH_MAX], iss[PATH_MAX], err[512] = "";
	struct kg_pki_req req = { .kind = kind, .cn = cn, .out_dir = out };

	path_of(out, sizeof(out), sub, NULL);
	if (issuer_sub != NULL) {
		path_of(iss, sizeof(iss), issuer_sub, NULL);
		req.issuer_dir = iss;
	}
	ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == 0, "make %s: %s", cn, err);
}

static X509 *load(const char *sub, const char *file)
{
	char p[PATH_MAX], err[512] = "";
	X509 *x;

	path_of(p, sizeof(p), sub, file);
	x = kg_pem_read_cert(p, err, sizeof(err));
	ck_assert_msg(x != NULL, "%s: %s", p, err);
	return x;
}

static int chain_len(const char *sub)
{
	char p[PATH_MAX], err[512] = "";
	STACK_OF(X509) *sk;
	int n;

	path_of(p, sizeof(p), sub, "chain.pem");
	sk = kg_pem_read_chain(p, err, sizeof(err));
	ck_assert_msg(sk != NULL, "%s: %s", p, err);
	n = sk_X509_num(sk);
	sk_X509_pop_free(sk, X509_free);
	return n;
}

static bool has_ext(X509 *x, int nid)
{
	return X509_get_ext_by_NID(x, nid, -1) >= 0;
}

static bool ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);

	return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

START_TEST(test_root)
{
	X509 *x;

	make(KG_PKI_ROOT, "Test Root", "root", NULL);
	x = load("root", "cert.pem");
	ck_assert_int_eq(X509_check_ca(x), 1);
	ck_assert(ext_critical(x, NID_basic_constraints));
	ck_assert(ext_critical(x, NID_key_usage));
	ck_assert_uint_eq(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	ck_assert(has_ext(x, NID_subject_key_identifier));
	ck_assert(X509_get_extension_flags(x) & EXFLAG_SS);
	ck_assert_int_eq(X509_self_signed(x, 1), 1);
	ck_assert_int_eq(X509_get_version(x), X509_VERSION_3);
	ck_assert_int_eq(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	/* ~10 years by default, backdated 5 minutes. */
	{
		time_t now = time(NULL);
		int day, sec;

		ck_assert_int_eq(X509_cmp_time(X509_get0_notBefore(x), &now), -1);
		ck_assert(ASN1_TIME_diff(&day, &sec, X509_get0_notBefore(x), X509_get0_notAfter(x)));
		ck_assert_int_eq(day, 3650);
	}
	ck_assert_int_eq(chain_len("root"), 1);
	X509_free(x);
}
END_TEST

START_TEST(test_key_file)
{
	char p[PATH_MAX], *text;
	struct stat st;
	FILE *f;
	long len;

	make(KG_PKI_ROOT, "Test Root", "root", NULL);
	path_of(p, sizeof(p), "root", "key.pem");
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	path_of(p, sizeof(p), "root", NULL);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	/* PKCS#8, not a traditional "EC PRIVATE KEY" block. */
	path_of(p, sizeof(p), "root", "key.pem");
	f = fopen(p, "r");
	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)len + 1);
	ck_assert_uint_eq(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(text, "-----BEGIN PRIVATE KEY-----"));
	free(text);
	/* Re-making over an existing directory works (overwrite). */
	make(KG_PKI_ROOT, "Test Root 2", "root", NULL);
}
END_TEST

START_TEST(test_intermediate_and_device)
{
	X509 *root, *inter, *dev;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	make(KG_PKI_INTERMEDIATE, "Factory", "factory", "root");
	make(KG_PKI_DEVICE, "dev-1", "dev", "factory");
	root = load("root", "cert.pem");
	inter = load("factory", "cert.pem");
	dev = load("dev", "cert.pem");

	ck_assert_int_eq(X509_check_ca(inter), 1);
	ck_assert_int_eq(X509_check_issued(root, inter), X509_V_OK);
	ck_assert(has_ext(inter, NID_authority_key_identifier));
	ck_assert(has_ext(inter, NID_subject_key_identifier));
	/* pathlen unset */
	ck_assert_int_eq((long)X509_get_pathlen(inter), -1);

	ck_assert_int_eq(X509_check_ca(dev), 0);
	ck_assert_int_eq(X509_check_issued(inter, dev), X509_V_OK);
	ck_assert_uint_eq(X509_get_key_usage(dev), KU_DIGITAL_SIGNATURE);
	ck_assert_uint_eq(X509_get_extended_key_usage(dev), XKU_SSL_CLIENT);
	ck_assert_int_eq(X509_check_purpose(dev, X509_PURPOSE_SSL_CLIENT, 0), 1);
	ck_assert(has_ext(dev, NID_authority_key_identifier));

	/* chain.pem: up to, not including, the root. */
	ck_assert_int_eq(chain_len("factory"), 1);
	ck_assert_int_eq(chain_len("dev"), 2);
	X509_free(dev);
	X509_free(inter);
	X509_free(root);
}
END_TEST

START_TEST(test_serials_random)
{
	X509 *a, *b;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	make(KG_PKI_DEVICE, "d1", "d1", "root");
	make(KG_PKI_DEVICE, "d1", "d2", "root");
	a = load("d1", "cert.pem");
	b = load("d2", "cert.pem");
	ck_assert_int_ne(ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b)), 0);
	ck_assert_int_gt(ASN1_STRING_length(X509_get0_serialNumber(a)), 14);
	ck_assert_int_eq(chain_len("d1"), 1); /* directly under the root */
	X509_free(a);
	X509_free(b);
}
END_TEST

START_TEST(test_eku_overrides)
{
	static const struct {
		enum kg_pki_eku eku;
		bool has_eku;
		uint32_t xku;
	} cases[] = {
		{ KG_EKU_DEFAULT, true, XKU_SSL_CLIENT },
		{ KG_EKU_CLIENT, true, XKU_SSL_CLIENT },
		{ KG_EKU_SERVER, true, XKU_SSL_SERVER },
		{ KG_EKU_NONE, false, 0 },
	};
	char out[PATH_MAX], iss[PATH_MAX], err[512];

	make(KG_PKI_ROOT, "Root", "root", NULL);
	path_of(iss, sizeof(iss), "root", NULL);
	for (size_t i = 0; i < KG_NITEMS(cases); i++) {
		struct kg_pki_req req = { .kind = KG_PKI_DEVICE, .cn = "dev", .out_dir = out,
					  .issuer_dir = iss, .eku = cases[i].eku };
		X509 *x;

		path_of(out, sizeof(out), "eku", NULL);
		ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == 0, "%s", err);
		x = load("eku", "cert.pem");
		ck_assert_msg(has_ext(x, NID_ext_key_usage) == cases[i].has_eku, "case %zu", i);
		if (cases[i].has_eku)
			ck_assert_uint_eq(X509_get_extended_key_usage(x), cases[i].xku);
		X509_free(x);
	}
}
END_TEST

START_TEST(test_server)
{
	char out[PATH_MAX], iss[PATH_MAX], err[512];
	GENERAL_NAMES *sans;
	X509 *x;
	int dns = 0, ip = 0;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	make(KG_PKI_SERVER, "gw.example", "srv", "root");
	x = load("srv", "cert.pem");
	ck_assert_uint_eq(X509_get_extended_key_usage(x), XKU_SSL_SERVER);
	ck_assert_int_eq(X509_check_host(x, "gw.example", 0, 0, NULL), 1);
	ck_assert_int_eq(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	ck_assert_int_eq(X509_check_ip_asc(x, "::1", 0), 1);
	sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	ck_assert_ptr_nonnull(sans);
	for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
		int type = sk_GENERAL_NAME_value(sans, i)->type;

		dns += type == GEN_DNS;
		ip += type == GEN_IPADD;
	}
	ck_assert_int_eq(dns, 1);
	ck_assert_int_eq(ip, 2);
	GENERAL_NAMES_free(sans);
	X509_free(x);

	/* explicit SAN, RSA key */
	{
		struct kg_pki_req req = { .kind = KG_PKI_SERVER, .cn = "x", .out_dir = out,
					  .issuer_dir = iss, .san = "DNS:other.example",
					  .key = KG_KEY_RSA2048 };

		path_of(out, sizeof(out), "srv2", NULL);
		path_of(iss, sizeof(iss), "root", NULL);
		ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == 0, "%s", err);
		x = load("srv2", "cert.pem");
		ck_assert_int_eq(X509_check_host(x, "other.example", 0, 0, NULL), 1);
		ck_assert_int_eq(X509_check_ip_asc(x, "127.0.0.1", 0), 0);
		ck_assert_int_eq(EVP_PKEY_get_base_id(X509_get0_pubkey(x)), EVP_PKEY_RSA);
		ck_assert_int_eq(X509_get_signature_nid(x), NID_ecdsa_with_SHA256); /* root's key */
		X509_free(x);
	}
}
END_TEST

START_TEST(test_self_signed)
{
	X509 *x;

	make(KG_PKI_SELF_SIGNED, "thumb-dev", "ss", NULL);
	x = load("ss", "cert.pem");
	ck_assert_int_eq(X509_self_signed(x, 1), 1);
	ck_assert_int_eq(X509_check_ca(x), 0);
	ck_assert_uint_eq(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
	ck_assert_int_eq(chain_len("ss"), 1);
	X509_free(x);
}
END_TEST

START_TEST(test_not_ca_intermediate)
{
	char out[PATH_MAX], iss[PATH_MAX], err[512];
	struct kg_pki_req req = { .kind = KG_PKI_INTERMEDIATE, .cn = "NotCA", .out_dir = out,
				  .issuer_dir = iss, .not_ca = true };
	X509 *x;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	path_of(out, sizeof(out), "notca", NULL);
	path_of(iss, sizeof(iss), "root", NULL);
	ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == 0, "%s", err);
	x = load("notca", "cert.pem");
	ck_assert_int_eq(X509_check_ca(x), 0);
	X509_free(x);
	/* ...and still usable as an issuer by tests. */
	make(KG_PKI_DEVICE, "under-notca", "dev", "notca");
}
END_TEST

START_TEST(test_validity_request)
{
	char out[PATH_MAX], err[512];
	struct kg_pki_req req = { .kind = KG_PKI_SELF_SIGNED, .cn = "old", .out_dir = out,
				  .not_before = 1000000000, .days = 10 };
	X509 *x;
	time_t t0 = 1000000000, t1 = 1000000000 + 10 * 86400;

	path_of(out, sizeof(out), "old", NULL);
	ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == 0, "%s", err);
	x = load("old", "cert.pem");
	ck_assert_int_eq(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), t0), 0);
	ck_assert_int_eq(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), t1), 0);
	X509_free(x);
}
END_TEST

START_TEST(test_make_errors)
{
	static const struct {
		enum kg_pki_kind kind;
		const char *cn;
		const char *issuer;     /* under dir; NULL = none */
		int64_t days;
		const char *want;       /* substring of the error */
	} cases[] = {
		{ KG_PKI_DEVICE, "d", NULL, 0, "no issuer directory" },
		{ KG_PKI_DEVICE, "d", "missing", 0, "No such file or directory" },
		{ KG_PKI_DEVICE, "d", "nokey", 0, "key.pem" },
		{ KG_PKI_DEVICE, "d", "wrongkey", 0, "does not match" },
		{ KG_PKI_DEVICE, "d", "junkcert", 0, "cert.pem" },
		{ KG_PKI_DEVICE, "", "root", 0, "CN" },
		{ KG_PKI_ROOT, "r", NULL, -1, "out of range" },
		{ KG_PKI_KIND_MAX, "r", NULL, 0, "unknown certificate kind" },
	};
	char p[PATH_MAX], q[PATH_MAX], out[PATH_MAX], iss[PATH_MAX], err[512];

	make(KG_PKI_ROOT, "Root", "root", NULL);
	make(KG_PKI_ROOT, "Other", "other", NULL);
	/* nokey: a cert without key.pem */
	make(KG_PKI_ROOT, "NoKey", "nokey", NULL);
	path_of(p, sizeof(p), "nokey", "key.pem");
	ck_assert_int_eq(remove(p), 0);
	/* wrongkey: root's cert with other's key */
	make(KG_PKI_ROOT, "WrongKey", "wrongkey", NULL);
	path_of(p, sizeof(p), "other", "key.pem");
	path_of(q, sizeof(q), "wrongkey", "key.pem");
	ck_assert_int_eq(rename(p, q), 0);
	/* junkcert */
	make(KG_PKI_ROOT, "Junk", "junkcert", NULL);
	path_of(p, sizeof(p), "junkcert", "cert.pem");
	kg_test_write_file(p, "hello\n", 6);

	for (size_t i = 0; i < KG_NITEMS(cases); i++) {
		struct kg_pki_req req = { .kind = cases[i].kind, .cn = cases[i].cn, .out_dir = out,
					  .days = cases[i].days };

		path_of(out, sizeof(out), "out", NULL);
		if (cases[i].issuer != NULL) {
			path_of(iss, sizeof(iss), cases[i].issuer, NULL);
			req.issuer_dir = iss;
		}
		err[0] = '\0';
		ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == -1, "case %zu succeeded", i);
		ck_assert_msg(strstr(err, cases[i].want) != NULL, "case %zu: \"%s\" lacks \"%s\"", i,
			      err, cases[i].want);
	}
}
END_TEST

START_TEST(test_verification_cert)
{
	char vpath[PATH_MAX], cadir[PATH_MAX], err[512] = "";
	X509 *root, *other, *v;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	make(KG_PKI_ROOT, "Other", "other", NULL);
	path_of(vpath, sizeof(vpath), "v.pem", NULL);
	path_of(cadir, sizeof(cadir), "root", NULL);
	ck_assert_msg(kg_pki_verification_cert(cadir, "0123456789abcdef0123456789abcdef", vpath,
					       err, sizeof(err)) == 0,
		      "%s", err);
	root = load("root", "cert.pem");
	other = load("other", "cert.pem");
	v = kg_pem_read_cert(vpath, err, sizeof(err));
	ck_assert_ptr_nonnull(v);

	ck_assert_msg(kg_pki_check_verification(root, v, "0123456789abcdef0123456789abcdef", err,
						sizeof(err)) == 0,
		      "%s", err);
	ck_assert_int_eq(kg_pki_check_verification(root, v, "0123456789abcdef0123456789abcdee",
						   err, sizeof(err)),
			 -1);
	ck_assert_ptr_nonnull(strstr(err, "challenge"));
	ck_assert_int_eq(kg_pki_check_verification(root, v, "0123456789abcdef", err, sizeof(err)),
			 -1);
	ck_assert_int_eq(kg_pki_check_verification(other, v, "0123456789abcdef0123456789abcdef",
						   err, sizeof(err)),
			 -1);
	ck_assert_ptr_nonnull(strstr(err, "not signed"));
	/* 30 days */
	{
		int day, sec;

		ck_assert(ASN1_TIME_diff(&day, &sec, X509_get0_notBefore(v), X509_get0_notAfter(v)));
		ck_assert_int_eq(day, 30);
	}
	X509_free(v);
	X509_free(other);
	X509_free(root);
}
END_TEST

START_TEST(test_verification_expired)
{
	char err[512] = "";
	char cadir[PATH_MAX], vdir[PATH_MAX];
	struct kg_pki_req req = { .kind = KG_PKI_DEVICE, .cn = "abcd", .out_dir = vdir,
				  .issuer_dir = cadir, .not_before = 1000000000, .days = 1 };
	X509 *root, *v;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	path_of(cadir, sizeof(cadir), "root", NULL);
	path_of(vdir, sizeof(vdir), "v", NULL);
	ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == 0, "%s", err);
	root = load("root", "cert.pem");
	v = load("v", "cert.pem");
	ck_assert_int_eq(kg_pki_check_verification(root, v, "abcd", err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "expired"));
	X509_free(v);
	X509_free(root);
}
END_TEST

START_TEST(test_crl)
{
	char cadir[PATH_MAX], d1[PATH_MAX], d2[PATH_MAX], crlp[PATH_MAX], err[512] = "";
	const char *files[1] = { d1 };
	X509 *ca, *x1, *x2;
	X509_CRL *crl;
	X509_REVOKED *rev = NULL;
	FILE *f;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	make(KG_PKI_DEVICE, "dev-1", "d1", "root");
	make(KG_PKI_DEVICE, "dev-2", "d2", "root");
	path_of(cadir, sizeof(cadir), "root", NULL);
	path_of(d1, sizeof(d1), "d1", "cert.pem");
	path_of(d2, sizeof(d2), "d2", "cert.pem");
	path_of(crlp, sizeof(crlp), "root.crl", NULL);
	ck_assert_msg(kg_pki_crl(cadir, files, 1, crlp, err, sizeof(err)) == 0, "%s", err);

	f = fopen(crlp, "r");
	ck_assert_ptr_nonnull(f);
	crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert_ptr_nonnull(crl);
	ca = load("root", "cert.pem");
	x1 = load("d1", "cert.pem");
	x2 = load("d2", "cert.pem");
	ck_assert_int_eq(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
	ck_assert_int_eq(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
	ck_assert_int_eq(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)), 0);
	ck_assert_int_eq(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 1);
	ck_assert_int_eq(X509_CRL_get0_by_cert(crl, &rev, x1), 1);
	ck_assert_int_eq(X509_CRL_get0_by_cert(crl, &rev, x2), 0);
	ck_assert_int_ge(X509_CRL_get_ext_by_NID(crl, NID_crl_number, -1), 0);
	ck_assert_int_ge(X509_CRL_get_ext_by_NID(crl, NID_authority_key_identifier, -1), 0);
	{
		int day, sec;

		ck_assert(ASN1_TIME_diff(&day, &sec, X509_CRL_get0_lastUpdate(crl),
					 X509_CRL_get0_nextUpdate(crl)));
		ck_assert_int_eq(day, 30);
	}
	/* A certificate of another CA cannot be listed. */
	make(KG_PKI_ROOT, "Other", "other", NULL);
	make(KG_PKI_DEVICE, "dev-o", "do", "other");
	path_of(d1, sizeof(d1), "do", "cert.pem");
	ck_assert_int_eq(kg_pki_crl(cadir, files, 1, crlp, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not issued by this CA"));

	X509_CRL_free(crl);
	X509_free(x2);
	X509_free(x1);
	X509_free(ca);
}
END_TEST

START_TEST(test_read_cert_only)
{
	char p[PATH_MAX], keyp[PATH_MAX], both[PATH_MAX], err[512] = "", *pem = NULL, *ref;
	X509 *x = NULL, *y;
	BIO *mem;
	long len;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	path_of(p, sizeof(p), "root", "cert.pem");
	ck_assert_msg(kg_pem_read_cert_only(p, &x, &pem, err, sizeof(err)) == 0, "%s", err);
	ck_assert_ptr_nonnull(x);
	ck_assert_ptr_nonnull(pem);
	/* the PEM text is exactly that certificate */
	mem = BIO_new(BIO_s_mem());
	ck_assert(PEM_write_bio_X509(mem, x));
	len = BIO_get_mem_data(mem, &ref);
	ck_assert_uint_eq(strlen(pem), (size_t)len);
	ck_assert_int_eq(memcmp(pem, ref, (size_t)len), 0);
	BIO_free(mem);
	y = load("root", "cert.pem");
	ck_assert_int_eq(X509_cmp(x, y), 0);
	X509_free(y);
	X509_free(x);
	free(pem);

	/* a key alone, and a cert with its key appended */
	path_of(keyp, sizeof(keyp), "root", "key.pem");
	ck_assert_int_eq(kg_pem_read_cert_only(keyp, &x, &pem, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "file holds a private key: refusing") != NULL, "%s", err);
	ck_assert_ptr_null(x);
	ck_assert_ptr_null(pem);
	{
		static const char key_rsa[] = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n"
					      "-----END RSA PRIVATE KEY-----\n";
		char text[8192];
		FILE *f = fopen(p, "r");
		size_t n = fread(text, 1, sizeof(text) - sizeof(key_rsa), f);

		fclose(f);
		memcpy(text + n, key_rsa, sizeof(key_rsa) - 1);
		path_of(both, sizeof(both), "both.pem", NULL);
		kg_test_write_file(both, text, n + sizeof(key_rsa) - 1);
		ck_assert_int_eq(kg_pem_read_cert_only(both, &x, &pem, err, sizeof(err)), -1);
		ck_assert_msg(strstr(err, "private key") != NULL, "%s", err);
		/* kg_pem_read_cert itself does not mind a key after the certificate. */
		/* (the RSA block is not valid base64 DER, so it is a malformed block) */
	}
	/* two certificates */
	make(KG_PKI_DEVICE, "d", "dev", "root");
	make(KG_PKI_INTERMEDIATE, "F", "f", "root");
	make(KG_PKI_DEVICE, "d", "dev2", "f");
	path_of(p, sizeof(p), "dev2", "chain.pem");
	ck_assert_int_eq(kg_pem_read_cert_only(p, &x, &pem, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "exactly one") != NULL, "%s", err);
	/* pem_out may be NULL */
	path_of(p, sizeof(p), "dev", "cert.pem");
	ck_assert_int_eq(kg_pem_read_cert_only(p, &x, NULL, err, sizeof(err)), 0);
	X509_free(x);
}
END_TEST

START_TEST(test_read_junk)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
		{ "", "not a PEM or DER certificate" },
		{ "hello world\n", "not a PEM or DER certificate" },
		{ "-----BEGIN CERTIFICATE-----\n!!!notbase64!!!\n-----END CERTIFICATE-----\n",
		  "PEM block 1 is malformed" },
		{ "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		  "PEM block 1 is not a valid certificate" },
		{ "-----BEGIN CERTIFICATE-----\nMIIB\n", "PEM block 1 is malformed" },
		{ "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
		  "no certificate found" },
	};
	char p[PATH_MAX], err[512];
	X509 *x;
	char *pem;

	path_of(p, sizeof(p), "junk.pem", NULL);
	for (size_t i = 0; i < KG_NITEMS(cases); i++) {
		kg_test_write_file(p, cases[i].text, strlen(cases[i].text));
		err[0] = '\0';
		ck_assert_ptr_null(kg_pem_read_cert(p, err, sizeof(err)));
		ck_assert_msg(strstr(err, cases[i].want) != NULL && strstr(err, p) != NULL,
			      "case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].want);
		ck_assert_ptr_null(kg_pem_read_chain(p, err, sizeof(err)));
		ck_assert_int_eq(kg_pem_read_cert_only(p, &x, &pem, err, sizeof(err)), -1);
	}
	/* missing file */
	path_of(p, sizeof(p), "nope.pem", NULL);
	ck_assert_ptr_null(kg_pem_read_cert(p, err, sizeof(err)));
	ck_assert_msg(strstr(err, "No such file") != NULL, "%s", err);
	/* a directory */
	ck_assert_ptr_null(kg_pem_read_cert(dir, err, sizeof(err)));
	ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
}
END_TEST

START_TEST(test_read_der_and_chain_junk)
{
	char p[PATH_MAX], q[PATH_MAX], err[512] = "";
	unsigned char *der = NULL;
	X509 *x, *y;
	int len;
	char text[8192];
	FILE *f;
	size_t n;

	make(KG_PKI_ROOT, "Root", "root", NULL);
	x = load("root", "cert.pem");
	len = i2d_X509(x, &der);
	ck_assert_int_gt(len, 0);
	path_of(p, sizeof(p), "root.der", NULL);
	kg_test_write_file(p, (const char *)der, (size_t)len);
	y = kg_pem_read_cert(p, err, sizeof(err));
	ck_assert_msg(y != NULL, "%s", err);
	ck_assert_int_eq(X509_cmp(x, y), 0);
	X509_free(y);
	OPENSSL_free(der);

	/* A good certificate followed by a broken block: the chain is refused. */
	path_of(q, sizeof(q), "root", "cert.pem");
	f = fopen(q, "r");
	n = fread(text, 1, sizeof(text) - 100, f);
	fclose(f);
	n += (size_t)snprintf(text + n, 100, "-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n");
	path_of(p, sizeof(p), "bad-chain.pem", NULL);
	kg_test_write_file(p, text, n);
	ck_assert_ptr_null(kg_pem_read_chain(p, err, sizeof(err)));
	ck_assert_msg(strstr(err, "PEM block 2") != NULL, "%s", err);
	X509_free(x);
}
END_TEST

Suite *kg_suite_pki(void)
{
	Suite *s = suite_create("pki");
	TCase *tc = tcase_create("pki");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_root);
	tcase_add_test(tc, test_key_file);
	tcase_add_test(tc, test_intermediate_and_device);
	tcase_add_test(tc, test_serials_random);
	tcase_add_test(tc, test_eku_overrides);
	tcase_add_test(tc, test_server);
	tcase_add_test(tc, test_self_signed);
	tcase_add_test(tc, test_not_ca_intermediate);
	tcase_add_test(tc, test_validity_request);
	tcase_add_test(tc, test_make_errors);
	tcase_add_test(tc, test_verification_cert);
	tcase_add_test(tc, test_verification_expired);
	tcase_add_test(tc, test_crl);
	tcase_add_test(tc, test_read_cert_only);
	tcase_add_test(tc, test_read_junk);
	tcase_add_test(tc, test_read_der_and_chain_junk);
	suite_add_tcase(s, tc);
	return s;
}
