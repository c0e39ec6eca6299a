/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm_key.h - the OpenSSL side of the TPM key (tpm_key.c): an OSSL_LIB_CTX of its own
 * with the tpm2 and default providers, bound to one TCTI, in which only the key's own
 * operations (its key management and signatures) come from tpm2; digests, ciphers, KDFs
 * and randomness come from the default provider (docs/tpm.md, "Provider pitfalls").
 * tls.c builds the server SSL_CTX in this libctx; the CLI signs CSRs with it.
 * A kg_tpm_ossl is used from any thread once built (OpenSSL's libctx is thread-safe).
 */
#ifndef KTLSGATE_TPM_KEY_H
#define KTLSGATE_TPM_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/evp.h>

#include "ktlsgate/compiler.h"
#include "ops/metrics.h"   /* enum kg_tpm_op */

/*
 * Prefer tpm2 for signatures (only its signature implementations carry tpm2.signature),
 * never take its digests, ciphers or random numbers. Everything else ties, and a tie goes
 * to the implementation met first: the default provider's ("default" sorts before
 * "tpm2" in OpenSSL's provider store). A query preferring the whole provider
 * ("?provider=tpm2,...") also works for TLS 1.3 with X25519, but makes the EC key manager tpm2's, which hides P-256/P-384
 * from the TLS group list ("[tls] groups: passed invalid argument") and would put
 * ephemeral ECDHE keys in the TPM.
 */
#define KG_TPM_PROPQ "?tpm2.signature=yes,tpm2.digest!=yes,tpm2.cipher!=yes,tpm2.rand!=yes"

struct kg_tpm_ossl;

/* A libctx with both providers; the tpm2 provider connects to tcti ("" or NULL: the
 * tpm2-tss default; TPM2OPENSSL_TCTI in the environment overrides both). NULL with err
 * when the TPM cannot be reached. */
struct kg_tpm_ossl *kg_tpm_ossl_new(const char *tcti, char *err, size_t errlen);
void kg_tpm_ossl_free(struct kg_tpm_ossl *o);
OSSL_LIB_CTX *kg_tpm_ossl_libctx(const struct kg_tpm_ossl *o);
const char *kg_tpm_ossl_tcti(const struct kg_tpm_ossl *o);

/*
 * The daemon's one instance: built on first use, kept for the life of the process
 * (freed at exit). A TPM without a resource manager (swtpm, /dev/tpm0) serves one
 * connection at a time, so a reload must reuse the connection the old SSL_CTX still
 * signs through; asking for another TCTI than the live one fails (restart needed).
 * Thread-safe.
 */
struct kg_tpm_ossl *kg_tpm_ossl_shared(const char *tcti, char *err, size_t errlen);

/*
 * Failed TPM operations of this process, by operation (ktlsgate_tpm_errors_total{op}).
 * Process-wide like the TPM connection they are about (kg_tpm_ossl_shared()); counted
 * from any thread, signatures on the workers': relaxed atomics, no lock.
 */
void kg_tpm_count_error(enum kg_tpm_op op);
uint64_t kg_tpm_errors(enum kg_tpm_op op);

/* Does keyref name a TPM key: "handle:0x81......", or a TSS2 PRIVATE KEY PEM file? */
bool kg_tpm_keyref_is_tpm(const char *keyref);

/* Load the key keyref names through OSSL_STORE in o's libctx. The EVP_PKEY's keymgmt is
 * tpm2's; signing with it sends TPM2_Sign. NULL with err. */
EVP_PKEY *kg_tpm_ossl_load_key(struct kg_tpm_ossl *o, const char *keyref, char *err,
			       size_t errlen);

/* Check where the TLS stack's operations come from in o's libctx: the key from tpm2,
 * every digest, cipher, MAC, KDF and the DRBG from elsewhere. 0, or -1 with err naming
 * the first operation that would run in the TPM. */
int kg_tpm_ossl_check_providers(struct kg_tpm_ossl *o, EVP_PKEY *key, char *err, size_t errlen);

/* A PKCS#10 request for cn (subjectAltName DNS:cn, or IP:cn for an address), signed by
 * key with SHA-256 in o's libctx, written as PEM. 0, or -1 with err. */
int kg_tpm_csr_write(struct kg_tpm_ossl *o, EVP_PKEY *key, const char *cn, FILE *out, char *err,
		     size_t errlen) KG_MUST_USE;

/* tpm_foreign.c: an EVP_PKEY for libssl that holds tpm's public half and signs each
 * digest with EVP_PKEY_sign() on tpm in libctx (TPM2_Sign only; see the file comment).
 * Takes its own reference to tpm. ECDSA keys only for now. NULL with err. */
EVP_PKEY *kg_tpm_foreign_key(OSSL_LIB_CTX *libctx, EVP_PKEY *tpm, char *err, size_t errlen);

struct kg_config;

/* What the server SSL_CTX is built from (tls.c). */
struct kg_tpm_server_key {
	OSSL_LIB_CTX *libctx;   /* libctx for the SSL_CTX; NULL: the default one (always, now
				 * that the TPM key is wrapped by kg_tpm_foreign_key()) */
	EVP_PKEY *key;          /* the TPM key as libssl uses it (caller frees); NULL: key_file */
	const char *key_file;   /* a PEM key file (no TPM key, or the fallback) */
	const char *cert_file;  /* the chain that goes with the key */
	bool fallback;          /* the TPM was absent and [tpm] key_fallback is used */
};

/*
 * Resolve cfg's server key. A plain PEM key: key_file/cert_file from [daemon]. A TPM key
 * ("handle:..." or a TSS2 file): the shared libctx (kg_tpm_ossl_shared) and the key
 * loaded in it, after checking that only the key's operations come from tpm2. TPM
 * unreachable: [tpm] key_fallback with a loud warning if configured, else -1 with a
 * one-line err naming the TCTI. 0 or -1.
 */
int kg_tpm_server_key_get(const struct kg_config *cfg, struct kg_tpm_server_key *out, char *err,
			  size_t errlen) KG_MUST_USE;

#endif
