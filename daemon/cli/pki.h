/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pki.h - a small test PKI, like Azure's test-cert scripts: root, intermediate,
 * device, server, self-signed certificates, CA proof-of-possession verification certs
 * and CRLs. Each output directory gets cert.pem, key.pem (0600) and chain.pem (the
 * cert followed by its issuers up to, not including, the root). For tests and demos;
 * production fleets bring their own PKI. Keys are EC P-256 unless asked otherwise.
 */
#ifndef KTLSGATE_PKI_H
#define KTLSGATE_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "ktlsgate/compiler.h"

enum kg_pki_kind {
	KG_PKI_ROOT,          /* self-signed CA */
	KG_PKI_INTERMEDIATE,  /* CA signed by issuer_dir */
	KG_PKI_DEVICE,        /* leaf, clientAuth, signed by issuer_dir */
	KG_PKI_SERVER,        /* leaf, serverAuth, SANs, signed by issuer_dir */
	KG_PKI_SELF_SIGNED,   /* self-signed leaf, clientAuth (thumbprint devices) */
	KG_PKI_KIND_MAX
};

enum kg_pki_eku { KG_EKU_DEFAULT, KG_EKU_CLIENT, KG_EKU_SERVER, KG_EKU_NONE };
enum kg_pki_keytype { KG_KEY_EC_P256, KG_KEY_RSA2048 };

struct kg_pki_req {
	enum kg_pki_kind kind;
	const char *cn;
	const char *out_dir;        /* created if missing */
	const char *issuer_dir;     /* for INTERMEDIATE, DEVICE, SERVER */
	int64_t not_before;         /* unix seconds; 0 = now - 5 min */
	int64_t days;               /* validity; 0 = kind's default (CA 3650, leaf 365) */
	enum kg_pki_eku eku;
	enum kg_pki_keytype key;
	bool not_ca;                /* INTERMEDIATE issued with CA:FALSE (tests) */
	const char *san;            /* SERVER: "DNS:x,IP:127.0.0.1"; NULL = DNS:cn,IP:127.0.0.1,IP:::1 */
};

/* Create the certificate and key. Returns 0 or -1 with a message in err. */
int kg_pki_make(const struct kg_pki_req *req, char *err, size_t errlen) KG_MUST_USE;

/* Proof of possession: a leaf with CN=challenge signed by the CA in ca_dir. */
int kg_pki_verification_cert(const char *ca_dir, const char *challenge, const char *out_file,
			     char *err, size_t errlen) KG_MUST_USE;

/* Write a CRL signed by the CA in ca_dir listing the given certificate files. */
int kg_pki_crl(const char *ca_dir, const char *const *revoked_files, size_t n,
	       const char *out_file, char *err, size_t errlen) KG_MUST_USE;

/* Load helpers (also used by the CLI and the daemon). NULL with a message on error;
 * a file holding a private key where a certificate is wanted is refused by
 * kg_pem_read_cert_only(). */
X509 *kg_pem_read_cert(const char *path, char *err, size_t errlen);
int kg_pem_read_cert_only(const char *path, X509 **cert, char **pem_out, char *err,
			  size_t errlen) KG_MUST_USE;
STACK_OF(X509) *kg_pem_read_chain(const char *path, char *err, size_t errlen);

/* Does `vcert` prove possession of `ca`'s key for `challenge` (CN == challenge, signed
 * by ca's key, within validity)? Returns 0 or -1 with a message. */
int kg_pki_check_verification(X509 *ca, X509 *vcert, const char *challenge, char *err,
			      size_t errlen) KG_MUST_USE;

#endif
