/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tls.c - the server SSL_CTX. A connection's SSL, its handshake step and the verify
 * callback are the connection's (core/conn_tls.c); its bytes are the relay's
 * (relay/ssl_io.c).
 *
 * Choices, and why:
 * - TLS 1.2 and 1.3 only; renegotiation off (a device has no reason to renegotiate,
 *   and it is an old DoS and confusion vector).
 * - Client certificate required, and verification replaced wholesale by the caller's
 *   cert-verify callback (the daemon's kg_conn_tls_verify_cb -> kg_verify_peer()), so
 *   the daemon and `ktlsgate verify` run the same code, and thumbprint-pinned
 *   self-signed devices need no trust-store tricks.
 * - No session resumption here (no tickets, no cache): a resumed session skips
 *   verification. [tls] resumption = on turns TLS 1.3 tickets on afterwards
 *   (tickets.h kg_tickets_ctx_setup(), called by the daemon's snapshot build), with the
 *   identity in the ticket and the registry and policy run again on every resumption.
 * - SSL_MODE_RELEASE_BUFFERS: idle sessions should not pin 2 x 16 KiB of buffers.
 * - [tls] security_level on the context (our certificate, ciphers, groups, signature
 *   algorithms) and, through kg_trust, on the device chain: the verify callback runs
 *   its own X509_STORE_CTX, which does not inherit the SSL's level.
 */
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls/leaf.h"
#include "tls/tls.h"
#include "tls/tls_keys.h"
#include "tpm/tpm_key.h"
#include "ops/log.h"

/* certified-leaf ([tpm] mode, leaf.h): the in-memory key, the leaf and the chain behind
 * it (the TPM key's certificate, then the rest of [daemon] cert). */
static int use_leaf(SSL_CTX *ctx, const struct kg_leaf *leaf, char *err, size_t errlen)
{
	if (kg_leaf_ctx_use(ctx, leaf) != 0) {
		kg_ossl_err(err, errlen, "certified-leaf: serving the leaf");
		return -1;
	}
	return 0;
}

/*
 * A TPM server key (tpm_key.h) is a foreign key whose signatures go to the TPM signer
 * thread; the context is then SSL_MODE_ASYNC, so a handshake waiting for a signature
 * pauses (SSL_ERROR_WANT_ASYNC) instead of blocking its worker. A file key never
 * pauses and gets no ASYNC job.
 */
static SSL_CTX *ctx_new(const struct kg_config *cfg, struct kg_tpm_signer *tpm,
		       kg_tls_verify_fn *verify, const struct kg_leaf *leaf,
		       enum kg_key_source *source, char *err, size_t errlen)
{
	struct kg_tpm_server_key sk = { 0 };
	SSL_CTX *ctx;

	/* certified-leaf: the leaf's key serves, the TPM key is not used here at all */
	if (leaf == NULL && kg_tpm_server_key_get(cfg, tpm, &sk, err, errlen) != 0)
		return NULL;
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		kg_ossl_err(err, errlen, "SSL_CTX_new");
		EVP_PKEY_free(sk.key);
		return NULL;
	}
	SSL_CTX_set_security_level(ctx, (int)cfg->security_level);
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
		kg_ossl_err(err, errlen, "protocol versions");
		goto out_free;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET |
				 SSL_OP_SINGLE_ECDH_USE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (sk.key != NULL)
		SSL_CTX_set_mode(ctx, SSL_MODE_ASYNC);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	if (cfg->ciphers[0] && !SSL_CTX_set_cipher_list(ctx, cfg->ciphers)) {
		kg_ossl_err(err, errlen, "[tls] ciphers");
		goto out_free;
	}
	if (cfg->ciphersuites[0] && !SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites)) {
		kg_ossl_err(err, errlen, "[tls] ciphersuites");
		goto out_free;
	}
	if (cfg->groups[0] && !SSL_CTX_set1_groups_list(ctx, cfg->groups)) {
		kg_ossl_err(err, errlen, "[tls] groups");
		goto out_free;
	}
	if (leaf != NULL) {
		if (use_leaf(ctx, leaf, err, errlen) != 0)
			goto out_free;
	} else if (SSL_CTX_use_certificate_chain_file(ctx, sk.cert_file) != 1) {
		kg_ossl_err(err, errlen, sk.cert_file);
		goto out_free;
	}
	if (leaf == NULL && (sk.key != NULL ? SSL_CTX_use_PrivateKey(ctx, sk.key) != 1
			   : SSL_CTX_use_PrivateKey_file(ctx, sk.key_file, SSL_FILETYPE_PEM) != 1)) {
		kg_ossl_err(err, errlen, sk.key ? cfg->key_file : sk.key_file);
		goto out_free;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		kg_ossl_err(err, errlen, "server key does not match the certificate");
		goto out_free;
	}
	/* The record relay takes the session over from OpenSSL at the handoff: it needs
	 * the traffic secrets (keylog) and exact record counts (msg callback). */
	if (kg_tls_keys_ctx_setup(ctx) < 0) {
		snprintf(err, errlen, "TLS key tracking: cannot set up");
		goto out_free;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_cert_verify_callback(ctx, verify, NULL);
	if (source != NULL)
		*source = leaf != NULL ? KG_KEY_TPM_LEAF : sk.fallback ? KG_KEY_TPM_FALLBACK
			: sk.key != NULL ? KG_KEY_TPM : KG_KEY_FILE;
	EVP_PKEY_free(sk.key); /* the context holds its own reference */
	return ctx;

out_free:
	SSL_CTX_free(ctx);
	EVP_PKEY_free(sk.key);
	return NULL;
}

SSL_CTX *kg_tls_ctx_new(const struct kg_config *cfg, struct kg_tpm_signer *tpm,
			kg_tls_verify_fn *verify, enum kg_key_source *source, char *err,
			size_t errlen)
{
	return ctx_new(cfg, tpm, verify, NULL, source, err, errlen);
}

SSL_CTX *kg_tls_ctx_new_leaf(const struct kg_config *cfg, kg_tls_verify_fn *verify,
			     const struct kg_leaf *leaf, enum kg_key_source *source, char *err,
			     size_t errlen)
{
	return ctx_new(cfg, NULL, verify, leaf, source, err, errlen);
}

void kg_tls_set_psk_ke(SSL_CTX *ctx, enum kg_psk_ke mode)
{
	/* Both start off (tickets.c and session_cache.c clear ALLOW, a new context has no
	 * PREFER); only the operator turns them on (docs/security.md, "Resumption without
	 * ECDHE"). */
	if (mode == KG_PSK_KE_OFF)
		return;
	SSL_CTX_set_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX);
#ifdef SSL_OP_PREFER_NO_DHE_KEX
	if (mode == KG_PSK_KE_PREFER)
		SSL_CTX_set_options(ctx, SSL_OP_PREFER_NO_DHE_KEX);
#endif
}

bool kg_tls_resumed_without_ecdhe(SSL *ssl)
{
	EVP_PKEY *peer_share = NULL;

	if (SSL_session_reused(ssl) != 1 || SSL_version(ssl) != TLS1_3_VERSION)
		return false;
	/* The peer's key share is kept as its temporary key only when the handshake used
	 * it: a psk_ke resumption ignores any share a device sent, and a server answering
	 * with psk_ke sends none. */
	if (SSL_get_peer_tmp_key(ssl, &peer_share) == 1 && peer_share != NULL) {
		EVP_PKEY_free(peer_share);
		return false;
	}
	return true;
}
