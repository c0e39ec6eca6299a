/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * leaf.c - the leaf the server key certifies (contract in leaf.h).
 *
 * Choices, and why:
 * - P-256 whatever the issuer's type: the cheapest server signature libssl makes, and
 *   every device that speaks TLS 1.2/1.3 with an ECDSA server handles it.
 * - Subject and subjectAltName are the issuer's: devices check the server name against
 *   the certificate they are served, which is now the leaf.
 * - The signature is checked against the issuer's public key before the leaf is used: a
 *   TPM that answered with garbage must not make every handshake fail afterwards.
 * - Serial: 16 random bytes, top bit clear (positive, RFC 5280 4.1.2.2: at most 20 octets).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "tls/leaf.h"
#include "ops/log.h"

int kg_leaf_issuer_check(X509 *issuer, char *err, size_t errlen)
{
	uint32_t ku = X509_get_key_usage(issuer);   /* also caches the extensions */
	char subject[256];

	X509_NAME_oneline(X509_get_subject_name(issuer), subject, sizeof(subject));
	if (X509_check_ca(issuer) == 0 || (X509_get_extension_flags(issuer) & EXFLAG_BCONS) == 0) {
		snprintf(err, errlen,
			 "certified-leaf: the TPM key's certificate (%s) cannot issue the leaf: it "
			 "needs basicConstraints CA:TRUE (pathlen:0) and keyUsage keyCertSign "
			 "(docs/tpm.md, \"Certified-leaf mode\")", subject);
		return -1;
	}
	if ((X509_get_extension_flags(issuer) & EXFLAG_KUSAGE) != 0 &&
	    (ku & KU_KEY_CERT_SIGN) == 0) {
		snprintf(err, errlen,
			 "certified-leaf: the TPM key's certificate (%s) cannot issue the leaf: its "
			 "keyUsage lacks keyCertSign (docs/tpm.md, \"Certified-leaf mode\")", subject);
		return -1;
	}
	return 0;
}

STACK_OF(X509) *kg_leaf_chain_load(const char *path, char *err, size_t errlen)
{
	STACK_OF(X509) *chain = sk_X509_new_null();
	BIO *in = BIO_new_file(path, "r");
	X509 *x;

	if (chain == NULL || in == NULL) {
		kg_ossl_err(err, errlen, path);
		goto out_fail;
	}
	while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(chain, x)) {
			X509_free(x);
			kg_ossl_err(err, errlen, path);
			goto out_fail;
		}
	ERR_clear_error();   /* the end of the file reads as "no start line" */
	if (sk_X509_num(chain) == 0) {
		snprintf(err, errlen, "%s: no certificate", path);
		goto out_fail;
	}
	BIO_free(in);
	return chain;

out_fail:
	BIO_free(in);
	sk_X509_pop_free(chain, X509_free);
	return NULL;
}

static int random_serial(X509 *cert, char *hex, size_t hexlen)
{
	unsigned char b[16];
	BIGNUM *bn = NULL;
	char *s = NULL;
	int ok = 0;

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -1;
	b[0] &= 0x7f;
	b[0] |= 0x40;   /* never 0, and always 16 bytes long: logs line up */
	bn = BN_bin2bn(b, sizeof(b), NULL);
	if (bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL &&
	    (s = BN_bn2hex(bn)) != NULL) {
		snprintf(hex, hexlen, "%s", s);
		ok = 1;
	}
	OPENSSL_free(s);
	BN_free(bn);
	return ok ? 0 : -1;
}

/* One extension from its config text (issuer set in v3 for the AKI). */
static int add_ext(X509 *cert, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
	int ok;

	if (ext == NULL)
		return -1;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* The fields of the leaf before it is signed. */
static int fill_leaf(X509 *cert, X509 *issuer, EVP_PKEY *key, int64_t now, int64_t not_after,
		     char *serial, size_t serlen)
{
	X509V3_CTX v3;
	time_t t = (time_t)now;
	int san = X509_get_ext_by_NID(issuer, NID_subject_alt_name, -1);

	if (!X509_set_version(cert, X509_VERSION_3) || random_serial(cert, serial, serlen) != 0 ||
	    !X509_set_subject_name(cert, X509_get_subject_name(issuer)) ||
	    !X509_set_issuer_name(cert, X509_get_subject_name(issuer)) ||
	    X509_time_adj_ex(X509_getm_notBefore(cert), 0, -KG_LEAF_BACKDATE, &t) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(cert), 0, (long)(not_after - now), &t) == NULL ||
	    !X509_set_pubkey(cert, key))
		return -1;
	X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
	if (add_ext(cert, &v3, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
	    add_ext(cert, &v3, NID_key_usage, "critical,digitalSignature") != 0 ||
	    add_ext(cert, &v3, NID_ext_key_usage, "serverAuth") != 0 ||
	    add_ext(cert, &v3, NID_subject_key_identifier, "hash") != 0 ||
	    add_ext(cert, &v3, NID_authority_key_identifier, "keyid:always") != 0)
		return -1;
	/* The very extension the issuer carries (criticality included). */
	if (san >= 0 && !X509_add_ext(cert, X509_get_ext(issuer, san), -1))
		return -1;
	return 0;
}

static int asn1_seconds(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return -1;
	*out = (int64_t)timegm(&tm);
	return 0;
}

struct kg_leaf *kg_leaf_new(STACK_OF(X509) *chain, EVP_PKEY *signer, unsigned lifetime,
			    int64_t now, char *err, size_t errlen)
{
	X509 *issuer = chain != NULL && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
	struct kg_leaf *leaf;
	int64_t issuer_end;

	if (issuer == NULL) {
		snprintf(err, errlen, "certified-leaf: no issuer certificate");
		return NULL;
	}
	if (kg_leaf_issuer_check(issuer, err, errlen) != 0)
		return NULL;
	/* Compares public halves: the foreign TPM key holds the public half too. */
	if (X509_check_private_key(issuer, signer) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "certified-leaf: the server key is not the key of the issuer "
			 "certificate");
		return NULL;
	}
	if (asn1_seconds(X509_get0_notAfter(issuer), &issuer_end) != 0 || issuer_end <= now) {
		snprintf(err, errlen, "certified-leaf: the TPM key's certificate has expired");
		return NULL;
	}
	leaf = calloc(1, sizeof(*leaf));
	if (leaf == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&leaf->refs, 1);
	leaf->issued = now;
	leaf->lifetime = lifetime;
	/* The default provider's EC keygen keeps the scalar in a BN_secure_new(). */
	leaf->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	leaf->cert = X509_new();
	if (leaf->key == NULL || leaf->cert == NULL) {
		kg_ossl_err(err, errlen, "certified-leaf: P-256 key");
		goto out_free;
	}
	/* A leaf cannot outlive its issuer: path validation would refuse it. */
	leaf->not_after = now + (int64_t)lifetime;
	if (leaf->not_after > issuer_end)
		leaf->not_after = issuer_end;
	if (fill_leaf(leaf->cert, issuer, leaf->key, now, leaf->not_after, leaf->serial,
		      sizeof(leaf->serial)) != 0) {
		kg_ossl_err(err, errlen, "certified-leaf: certificate fields");
		goto out_free;
	}
	/* The one TPM signature of this leaf's life. */
	if (X509_sign(leaf->cert, signer, EVP_sha256()) <= 0) {
		kg_ossl_err(err, errlen, "certified-leaf: signing with the TPM key");
		goto out_free;
	}
	if (X509_verify(leaf->cert, X509_get0_pubkey(issuer)) != 1) {
		kg_ossl_err(err, errlen, "certified-leaf: the TPM's signature does not verify");
		goto out_free;
	}
	leaf->chain = X509_chain_up_ref(chain);
	if (leaf->chain == NULL) {
		kg_ossl_err(err, errlen, "certified-leaf: chain");
		goto out_free;
	}
	return leaf;

out_free:
	kg_leaf_free(leaf);
	return NULL;
}

struct kg_leaf *kg_leaf_up_ref(struct kg_leaf *leaf)
{
	atomic_fetch_add(&leaf->refs, 1);
	return leaf;
}

void kg_leaf_free(struct kg_leaf *leaf)
{
	if (leaf == NULL || atomic_fetch_sub(&leaf->refs, 1) != 1)
		return;
	/* The last reference clears the secure scalar (BN_clear_free); an SSL_CTX serving
	 * this leaf keeps it until its last session ends. */
	EVP_PKEY_free(leaf->key);
	X509_free(leaf->cert);
	sk_X509_pop_free(leaf->chain, X509_free);
	OPENSSL_cleanse(leaf, sizeof(*leaf));
	free(leaf);
}

int64_t kg_leaf_renew_at(const struct kg_leaf *leaf)
{
	return leaf->issued + leaf->lifetime / 2;
}

bool kg_leaf_fits(const struct kg_leaf *leaf, STACK_OF(X509) *chain, unsigned lifetime,
		  int64_t now)
{
	if (leaf == NULL || chain == NULL || sk_X509_num(chain) == 0)
		return false;
	if (X509_cmp(sk_X509_value(leaf->chain, 0), sk_X509_value(chain, 0)) != 0)
		return false;
	if (leaf->not_after > now + (int64_t)lifetime)
		return false;
	return now < leaf->issued + (int64_t)(lifetime / 2);
}

int kg_leaf_ctx_use(SSL_CTX *ctx, const struct kg_leaf *leaf)
{
	/* override = 1: replace the slot's certificate, key and chain as one. */
	if (SSL_CTX_use_cert_and_key(ctx, leaf->cert, leaf->key, leaf->chain, 1) != 1)
		return -1;
	return SSL_CTX_check_private_key(ctx) == 1 ? 0 : -1;
}
