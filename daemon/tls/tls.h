/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Part tls (daemon/tls/): TLS on the device side, with no connection in it. tls.c (the
 * server SSL_CTX, this header), verify.c (who the device is: chain to a proven
 * registry CA or a thumbprint pin, CRLs, the CN as device id; verify.h), tls_keys.c
 * (each direction's traffic key and sequence number at the handoff, for kTLS and the
 * record relay; tls_keys.h), leaf.c (certified-leaf mode: the short-lived key and
 * certificate the TPM key signs; leaf.h), tickets.c (TLS 1.3 session tickets: the
 * daemon's ticket keys and the identity a ticket carries; tickets.h).
 * Way in: this header for the daemon's SSL_CTX; verify.h for verification (the CLI's
 * `ktlsgate verify` runs the very same kg_verify_peer()); tls_keys.h for key export.
 * Uses policy (the identity type, reasons), registry rows, tpm (the server key) and
 * ops, nothing above them: a connection's SSL, handshake and verify callback are
 * core's (core/conn_tls.h), a session's SSL reads and writes the relay's (relay.h).
 * OpenSSL's verification errors are translated here (verify.c).
 */
/*
 * tls.h - the server SSL_CTX: TLS 1.3 and 1.2 only, client certificate required, no
 * renegotiation, no resumption (tickets.h adds it), released buffers.
 * Certificate verification is the caller's, through OpenSSL's cert-verify callback
 * given here (the daemon's finds its connection with SSL_get_app_data()).
 */
#ifndef KTLSGATE_TLS_H
#define KTLSGATE_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "ops/config.h"
#include "ops/metrics.h"

/* OpenSSL's cert-verify callback (SSL_CTX_set_cert_verify_callback()): 1 accepts the
 * chain in sctx, 0 refuses it with the X509 error set in sctx. */
typedef int kg_tls_verify_fn(X509_STORE_CTX *sctx, void *arg);

/* Build the server context from cfg (cert chain, key, ciphers, groups), verification
 * delegated wholesale to verify (never NULL). The trust store is not inside it: the
 * daemon's callback uses the connection's snapshot. *source (if not NULL) says where
 * the key came from: a file, the TPM, or the TPM's fallback file ([tpm] key_fallback),
 * which the metrics show for as long as it serves. tpm: the TPM signer when [daemon]
 * key is a TPM key (tpm_signer.h; NULL: none, or the fallback); the context is then
 * SSL_MODE_ASYNC (tpm_key.h, kg_tpm_foreign_key(), says how to step its handshakes). */
struct kg_tpm_signer;
SSL_CTX *kg_tls_ctx_new(const struct kg_config *cfg, struct kg_tpm_signer *tpm,
			kg_tls_verify_fn *verify, enum kg_key_source *source, char *err,
			size_t errlen);

/* The same context serving a certified leaf (leaf.h; [tpm] mode = certified-leaf): the
 * leaf's in-memory key and chain instead of [daemon] key and cert; the TPM is not
 * touched (the leaf was signed when it was made). *source: KG_KEY_TPM_LEAF. */
struct kg_leaf;
SSL_CTX *kg_tls_ctx_new_leaf(const struct kg_config *cfg, kg_tls_verify_fn *verify,
			     const struct kg_leaf *leaf, enum kg_key_source *source, char *err,
			     size_t errlen);

/* [tls] resumption_psk_ke (config.h enum kg_psk_ke) on a context whose resumption is set
 * up (tickets.h, session_cache.h): off keeps (EC)DHE on every resumption; allow lets a
 * device that offers only psk_ke resume without it; prefer picks psk_ke whenever the
 * device offers it (OpenSSL >= 3.2; the config refuses it on an older build). */
void kg_tls_set_psk_ke(SSL_CTX *ctx, enum kg_psk_ke mode);

/* After a completed handshake, on either side: true when it was a TLS 1.3 resumption
 * without an (EC)DHE share (psk_ke), so its keys depend on the resumption secret alone. */
bool kg_tls_resumed_without_ecdhe(SSL *ssl);

#endif
