/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm_key.h - the OpenSSL side of the TPM key (tpm_key.c): an OSSL_LIB_CTX of its own
 * with the tpm2 and default providers, bound to one TCTI, in which only the key's own
 * operations (its key management and signatures) come from tpm2; digests, ciphers, KDFs
 * and randomness come from the default provider (docs/tpm.md, "Provider pitfalls").
 * Only the CLI uses the provider now (`tpm csr`). The daemon's server key is a "foreign"
 * key (tpm_foreign.c) whose private operation goes to the TPM signer thread
 * (tpm_signer.h): kg_tpm_server_key_get() / kg_tpm_foreign_key() below.
 * A kg_tpm_ossl is used from any thread once built (OpenSSL's libctx is thread-safe).
 */
#ifndef KTLSGATE_TPM_KEY_H
#define KTLSGATE_TPM_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "ktlsgate/compiler.h"

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

struct kg_tpm_signer;

/*
 * tpm_foreign.c: an EVP_PKEY (EC P-256 or RSA-2048, as the TPM key is) holding the
 * signer's public part, whose private operation goes to the signer: ECDSA over the
 * digest, or raw RSA (PKCS#1 v1.5 type 1 padding, or PSS, added here by OpenSSL).
 * Inside an OpenSSL ASYNC job (a handshake on an SSL in SSL_MODE_ASYNC) the job
 * pauses until the signer answers or the deadline passes; its SSL then has two async
 * wait fds (an eventfd and a timerfd) that stay until SSL_free. Contract for the code
 * stepping such a handshake: step it again only when one of those fds is readable;
 * a step while neither is (kg_tpm_async_abandon) gives the signature up and the
 * handshake fails: that is how a connection closing mid-wait ends the job before
 * SSL_free. Outside a job (start-up, the CLI, X509_sign) the caller blocks until the
 * answer or the deadline. The EVP_PKEY refers to the signer: it must not outlive it.
 * NULL with err.
 */
EVP_PKEY *kg_tpm_foreign_key(struct kg_tpm_signer *signer, char *err, size_t errlen);
/* A handshake paused waiting for the signer (SSL_waiting_for_async): end its job now
 * (the signature is abandoned, the handshake fails), so the SSL can be freed. */
void kg_tpm_async_abandon(SSL *ssl);
/* Sign a fixed text with key outside any ASYNC job (the synchronous path: how
 * X509_sign() and start-up code use it) and verify it with its public half; RSA both
 * with PSS and PKCS#1 v1.5. 0, or -1 with err. `ktlsgated -t` runs it. */
int kg_tpm_key_selftest(EVP_PKEY *key, char *err, size_t errlen) KG_MUST_USE;
/* After a failed handshake step (its error queue cleared before it): was it because
 * the signer gave no signature (down, stalled, timed out, queue full)? Peeks only. */
bool kg_tpm_err_unavailable(void);

struct kg_config;

/* What the server SSL_CTX is built from (tls.c). */
struct kg_tpm_server_key {
	EVP_PKEY *key;          /* the TPM key as libssl uses it (caller frees); NULL: key_file */
	const char *key_file;   /* a PEM key file (no TPM key, or the fallback) */
	const char *cert_file;  /* the chain that goes with the key */
	bool fallback;          /* the TPM was absent and [tpm] key_fallback is used */
};

/*
 * Resolve cfg's server key. A plain PEM key: key_file/cert_file from [daemon]. A TPM key
 * ("handle:..." or a TSS2 file): the foreign key signing through signer, which must be
 * the one for cfg's [tpm] tcti and key (else "restart needed"). signer NULL (the TPM was
 * unreachable at start, kg_tpm_signer_from_config() returned 1): [tpm] key_fallback.
 * 0 or -1 with err.
 */
int kg_tpm_server_key_get(const struct kg_config *cfg, struct kg_tpm_signer *signer,
			  struct kg_tpm_server_key *out, char *err, size_t errlen) KG_MUST_USE;

#endif
