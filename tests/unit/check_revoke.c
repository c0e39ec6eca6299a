/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_revoke.c - what the daemon re-checks on a live session (issue 10, part 6):
 * a CA's status folded down the registered CA chain by kg_trust_load() (a disabled
 * root reaches the intermediate registered under it, not the other way round), and a
 * leaf's issuer + serial (struct kg_leaf_ref) found, or not, in the trust's CRLs.
 * Certificates and the registry are real, made in a per-test temporary directory.
 */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "ops/config.h"
#include "ops/err.h"
#include "cli/pki.h"
#include "registry/registry.h"
#include "tls/verify.h"
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

static void sub(char *out, size_t cap, const char *a, const char *b)
{
	int n = b != NULL ? snprintf(out, cap, "%s/%s/%s", dir, a, b) : snprintf(out, cap, "%s/%s", dir, a);

	ck_assert(n > 0 && (size_t)n < cap);
}

static void make(enum kg_pki_kind kind, const char *cn, const char *name, const char *issuer)
{
	char out[PATH_MAX], iss[PATH_MAX], err[KG_ERRBUF];
	struct kg_pki_req req = { .kind = kind, .cn = cn, .out_dir = out };

	sub(out, sizeof(out), name, NULL);
	if (issuer != NULL) {
		sub(iss, sizeof(iss), issuer, NULL);
		req.issuer_dir = iss;
	}
	ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == 0, "make %s: %s", cn, err);
}

static X509 *load(const char *name)
{
	char p[PATH_MAX], err[KG_ERRBUF];
	X509 *x;

	sub(p, sizeof(p), name, "cert.pem");
	x = kg_pem_read_cert(p, err, sizeof(err));
	ck_assert_msg(x != NULL, "%s", err);
	return x;
}

/* Register the CA in dir `name` as proven, with `status`. */
static void reg_ca(struct kg_registry *reg, const char *name, enum kg_ca_status status)
{
	char p[PATH_MAX], err[KG_ERRBUF];
	struct kg_ca ca = { 0 };
	X509 *x = NULL;

	sub(p, sizeof(p), name, "cert.pem");
	ck_assert_msg(kg_pem_read_cert_only(p, &x, &ca.pem, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(kg_cert_sha256_hex(x, ca.sha256), 0);
	X509_free(x);
	(void)kg_strlcpy(ca.name, name, sizeof(ca.name));
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), 0);
	ck_assert_int_eq(kg_registry_ca_set_verified(reg, name), 0);
	kg_ca_fini(&ca);
	ck_assert_int_eq(kg_registry_ca_get(reg, name, &ca), 0);
	ca.status = status;
	ck_assert_int_eq(kg_registry_ca_update(reg, &ca), 0);
	kg_ca_fini(&ca);
}

static struct kg_registry *open_reg(void)
{
	char p[PATH_MAX], err[KG_ERRBUF];
	struct kg_registry *reg = NULL;

	sub(p, sizeof(p), "registry.db", NULL);
	ck_assert_msg(kg_registry_open(p, KG_REG_READWRITE, &reg, err, sizeof(err)) == 0, "%s", err);
	return reg;
}

static enum kg_ca_status status_in(const struct kg_trust *t, const char *name)
{
	const struct kg_ca *ca = kg_trust_get0_ca(t, name);

	ck_assert_msg(ca != NULL, "CA %s not in the trust", name);
	return ca->status;
}

/* root -> mid -> leafca; other root beside. Disabling a CA reaches every registered CA
 * below it, never above or beside; revoked is the worse and wins. */
START_TEST(test_status_inherited)
{
	struct kg_registry *reg;
	struct kg_trust *t;
	char err[KG_ERRBUF];

	make(KG_PKI_ROOT, "r", "root", NULL);
	make(KG_PKI_INTERMEDIATE, "m", "mid", "root");
	make(KG_PKI_INTERMEDIATE, "l", "leafca", "mid");
	make(KG_PKI_ROOT, "o", "other", NULL);
	reg = open_reg();
	reg_ca(reg, "leafca", KG_CA_ENABLED);
	reg_ca(reg, "mid", KG_CA_DISABLED);
	reg_ca(reg, "root", KG_CA_ENABLED);
	reg_ca(reg, "other", KG_CA_ENABLED);
	ck_assert_ptr_nonnull(t = kg_trust_new());
	ck_assert_msg(kg_trust_load(t, reg, NULL, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(status_in(t, "root"), KG_CA_ENABLED);
	ck_assert_int_eq(status_in(t, "mid"), KG_CA_DISABLED);
	ck_assert_int_eq(status_in(t, "leafca"), KG_CA_DISABLED);   /* two levels down */
	ck_assert_int_eq(status_in(t, "other"), KG_CA_ENABLED);
	kg_trust_free(t);

	{
		struct kg_ca ca = { 0 };

		ck_assert_int_eq(kg_registry_ca_get(reg, "root", &ca), 0);
		ca.status = KG_CA_REVOKED;
		ck_assert_int_eq(kg_registry_ca_update(reg, &ca), 0);
		kg_ca_fini(&ca);
	}
	ck_assert_ptr_nonnull(t = kg_trust_new());
	ck_assert_msg(kg_trust_load(t, reg, NULL, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(status_in(t, "root"), KG_CA_REVOKED);
	ck_assert_int_eq(status_in(t, "mid"), KG_CA_REVOKED);
	ck_assert_int_eq(status_in(t, "leafca"), KG_CA_REVOKED);
	ck_assert_int_eq(status_in(t, "other"), KG_CA_ENABLED);
	kg_trust_free(t);
	kg_registry_close(reg);
}
END_TEST

/* A leaf listed in its issuer's CRL is revoked; another leaf of the same CA is not; a
 * leaf of another CA with the same serial-space is not (the issuer must match). */
START_TEST(test_leaf_ref_in_crl)
{
	struct kg_registry *reg;
	struct kg_trust *t;
	struct kg_config *cfg = calloc(1, sizeof(*cfg));
	struct kg_leaf_ref a, b, c, none;
	char err[KG_ERRBUF], listed[PATH_MAX];
	const char *files[1];
	X509 *x;

	ck_assert_ptr_nonnull(cfg);
	make(KG_PKI_ROOT, "r", "root", NULL);
	make(KG_PKI_INTERMEDIATE, "f", "factory", "root");
	make(KG_PKI_ROOT, "o", "other", NULL);
	make(KG_PKI_DEVICE, "dev-a", "dev-a", "factory");
	make(KG_PKI_DEVICE, "dev-b", "dev-b", "factory");
	make(KG_PKI_DEVICE, "dev-c", "dev-c", "other");
	x = load("dev-a");
	ck_assert_int_eq(kg_leaf_ref_from_cert(NULL, x, &a), 0);
	ck_assert_uint_gt(a.serial_len, 0);
	X509_free(x);
	x = load("dev-b");
	ck_assert_int_eq(kg_leaf_ref_from_cert(NULL, x, &b), 0);
	X509_free(x);
	x = load("dev-c");
	ck_assert_int_eq(kg_leaf_ref_from_cert(NULL, x, &c), 0);
	X509_free(x);
	/* dev-c claims dev-a's serial: only the issuer tells them apart */
	memcpy(c.serial, a.serial, sizeof(c.serial));
	c.serial_len = a.serial_len;
	c.serial_neg = a.serial_neg;
	ck_assert_int_eq(kg_leaf_ref_from_cert(NULL, NULL, &none), -1);
	ck_assert_uint_eq(none.serial_len, 0);

	sub(listed, sizeof(listed), "dev-a", "cert.pem");
	files[0] = listed;
	sub(cfg->crls[0].path, sizeof(cfg->crls[0].path), "factory.crl", NULL);
	{
		char ca_dir[PATH_MAX];

		sub(ca_dir, sizeof(ca_dir), "factory", NULL);
		ck_assert_msg(kg_pki_crl(ca_dir, files, 1, cfg->crls[0].path, err, sizeof(err)) == 0,
			      "%s", err);
	}
	strcpy(cfg->crls[0].ca_name, "factory");
	cfg->n_crls = 1;
	reg = open_reg();
	reg_ca(reg, "root", KG_CA_ENABLED);
	reg_ca(reg, "factory", KG_CA_ENABLED);
	reg_ca(reg, "other", KG_CA_ENABLED);

	/* without the CRL: nothing is revoked */
	ck_assert_ptr_nonnull(t = kg_trust_new());
	ck_assert_msg(kg_trust_load(t, reg, NULL, err, sizeof(err)) == 0, "%s", err);
	ck_assert(!kg_trust_leaf_revoked(t, &a));
	kg_trust_free(t);

	ck_assert_ptr_nonnull(t = kg_trust_new());
	ck_assert_msg(kg_trust_load(t, reg, cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert(kg_trust_leaf_revoked(t, &a));
	{
		/* the trust's pre-fetched SHA-256 (the daemon's path) gives the same ref */
		struct kg_leaf_ref a2;

		x = load("dev-a");
		ck_assert_int_eq(kg_leaf_ref_from_cert(t, x, &a2), 0);
		X509_free(x);
		ck_assert_mem_eq(&a2, &a, sizeof(a));
		ck_assert(kg_trust_leaf_revoked(t, &a2));
	}
	ck_assert(!kg_trust_leaf_revoked(t, &b));
	ck_assert(!kg_trust_leaf_revoked(t, &c));
	ck_assert(!kg_trust_leaf_revoked(t, &none));
	ck_assert(!kg_trust_leaf_revoked(NULL, &a));
	kg_trust_free(t);
	kg_registry_close(reg);
	free(cfg);
}
END_TEST

Suite *kg_suite_revoke(void)
{
	Suite *s = suite_create("revoke");
	TCase *tc = tcase_create("revoke");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_status_inherited);
	tcase_add_test(tc, test_leaf_ref_in_crl);
	suite_add_tcase(s, tc);
	return s;
}
