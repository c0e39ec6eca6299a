/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * leaf.h - the leaf the server key certifies ([tpm] mode = certified-leaf, docs/tpm.md).
 * Given the TPM key's certificate (the issuer: CA:TRUE, keyCertSign), an EVP_PKEY that
 * signs with the TPM key and a lifetime, make a fresh P-256 key in memory and a leaf
 * certificate for it, signed once by the TPM key: the SSL_CTX then serves handshakes with
 * the in-memory key and the TPM is not asked again until the next leaf.
 * The key's private scalar lives in OpenSSL's secure heap when the process set one up
 * (CRYPTO_secure_malloc_init(): locked, MADV_DONTDUMP, cleared on free); kg_leaf_free()
 * drops one reference (the last frees it), an SSL_CTX still serving it holds its own.
 * No global state; a kg_leaf is immutable once made and read from any thread.
 */
#ifndef KTLSGATE_LEAF_H
#define KTLSGATE_LEAF_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "ktlsgate/compiler.h"

/* How far back notBefore goes: devices whose clock is a little behind still accept it. */
#define KG_LEAF_BACKDATE 300

struct kg_leaf {
	atomic_int refs;           /* snapshots sharing it (kg_leaf_up_ref / kg_leaf_free) */
	EVP_PKEY *key;             /* P-256, made here; never written anywhere */
	X509 *cert;                /* signed by the issuer's key (SHA-256) */
	STACK_OF(X509) *chain;     /* issuer first, then the rest of [daemon] cert */
	int64_t issued;            /* when it was made (unix s): rotation counts from here */
	int64_t not_after;         /* cert's notAfter */
	unsigned lifetime;         /* seconds asked for */
	char serial[48];           /* hex, for logs and tests */
};

/* Can issuer issue a leaf: basicConstraints CA:TRUE and, if it has keyUsage, keyCertSign?
 * 0, or -1 with why in err (how to fix it: docs/tpm.md). */
int kg_leaf_issuer_check(X509 *issuer, char *err, size_t errlen) KG_MUST_USE;

/* [daemon] cert as a chain, leaf (here: the TPM key's certificate) first. NULL with err. */
STACK_OF(X509) *kg_leaf_chain_load(const char *path, char *err, size_t errlen);

/*
 * A new leaf valid from now - KG_LEAF_BACKDATE to now + lifetime (never past the
 * issuer's notAfter; an expired issuer is refused): subject and
 * subjectAltName copied from the issuer (sk_X509_value(chain, 0)), random serial,
 * AKI/SKI, keyUsage digitalSignature, EKU serverAuth, CA:FALSE, signed with signer
 * (which must hold the issuer's key: checked, and the signature verified against the
 * issuer's public key before it is used). chain gets a reference per certificate.
 * NULL with err.
 */
struct kg_leaf *kg_leaf_new(STACK_OF(X509) *chain, EVP_PKEY *signer, unsigned lifetime,
			    int64_t now, char *err, size_t errlen);
void kg_leaf_free(struct kg_leaf *leaf);
struct kg_leaf *kg_leaf_up_ref(struct kg_leaf *leaf);

/* When to make the next one: half the lifetime after it was made. */
int64_t kg_leaf_renew_at(const struct kg_leaf *leaf);

/* May a reload keep leaf for chain and lifetime at now: same issuer certificate, not
 * yet due for renewal, and not valid longer than the (possibly shorter) new lifetime. */
bool kg_leaf_fits(const struct kg_leaf *leaf, STACK_OF(X509) *chain, unsigned lifetime,
		  int64_t now);

/* Serve leaf on ctx: its key, certificate and chain replace whatever ctx had. 0 or -1. */
int kg_leaf_ctx_use(SSL_CTX *ctx, const struct kg_leaf *leaf) KG_MUST_USE;

#endif
