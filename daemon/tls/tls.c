/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tls.c - the server SSL_CTX and the non-blocking TLS calls of a connection.
 *
 * Choices, and why:
 * - TLS 1.2 and 1.3 only; renegotiation off (a device has no reason to renegotiate,
 *   and it is an old DoS and confusion vector).
 * - Client certificate required, and verification replaced wholesale by
 *   cert_verify_cb -> kg_verify_peer(), so the daemon and `ktlsgate verify` run the
 *   same code, and thumbprint-pinned self-signed devices need no trust-store tricks.
 * - No session resumption (no tickets, no cache): a resumed session skips
 *   verification, and the registry must be consulted on every connect. Issue 4 brings
 *   tickets back with policy re-checked on resume.
 * - SSL_MODE_RELEASE_BUFFERS: idle sessions should not pin 2 x 16 KiB of buffers.
 * - [tls] security_level on the context (our certificate, ciphers, groups, signature
 *   algorithms) and, through kg_trust, on the device chain: the verify callback runs
 *   its own X509_STORE_CTX, which does not inherit the SSL's level.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/conn.h"
#include "core/daemon.h"
#include "ops/err.h"
#include "ops/log.h"
#include "relay/relay.h"
#include "tls/tls.h"
#include "tls/tls_keys.h"
#include "tpm/tpm_key.h"
#include "core/worker.h"

static void ossl_err(char *err, size_t errlen, const char *what)
{
	char buf[256] = "";
	unsigned long e = ERR_peek_last_error();

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s", what, buf[0] ? buf : "failed");
}

/* OpenSSL's verification hook: the whole decision is kg_verify_peer()'s. */
static int cert_verify_cb(X509_STORE_CTX *sctx, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct kg_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
	int x509_err = X509_V_ERR_UNSPECIFIED;

	(void)arg;
	if (c == NULL)
		return 0;
	c->verify_ran = true;
	c->verify_reason = kg_verify_peer(c->snap->trust, X509_STORE_CTX_get0_cert(sctx),
					  X509_STORE_CTX_get0_untrusted(sctx), 0,
					  kg_verify_registry_thumb_lookup, c->w->reg, &c->id, &x509_err);
	if (c->verify_reason == KG_REASON_OK) {
		/* An expired CRL honoured within crl_grace: loud, but once a minute per CA
		 * (a fleet reconnecting would otherwise write one line per device). */
		if (c->id.crl_grace_ca[0] != '\0' &&
		    kg_trust_crl_warn_due(c->snap->trust, c->id.crl_grace_ca, time(NULL), 60))
			kg_log_warnx("CRL of CA %s expired %llds ago: its devices are accepted "
				     "within crl_grace, refused (crl_expired) after it; install a "
				     "fresh CRL and reload", c->id.crl_grace_ca,
				     (long long)(time(NULL) - c->id.crl_next_update));
		return 1;
	}
	/* The error selects the alert OpenSSL sends (certificate_expired, unknown_ca...). */
	X509_STORE_CTX_set_error(sctx, x509_err ? x509_err : X509_V_ERR_UNSPECIFIED);
	c->x509_err = x509_err;
	return 0;
}

/*
 * A TPM server key (tpm_key.h) puts the whole context in the TPM libctx, whose property
 * query sends only the key's signatures to the TPM; a file key (or the TPM fallback)
 * keeps the default libctx.
 */
SSL_CTX *kg_tls_ctx_new(const struct kg_config *cfg, char *err, size_t errlen)
{
	struct kg_tpm_server_key sk;
	SSL_CTX *ctx;

	if (kg_tpm_server_key_get(cfg, &sk, err, errlen) != 0)
		return NULL;
	ctx = sk.libctx ? SSL_CTX_new_ex(sk.libctx, KG_TPM_PROPQ, TLS_server_method())
			: SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		ossl_err(err, errlen, "SSL_CTX_new");
		EVP_PKEY_free(sk.key);
		return NULL;
	}
	SSL_CTX_set_security_level(ctx, (int)cfg->security_level);
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
		ossl_err(err, errlen, "protocol versions");
		goto out_free;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET |
				 SSL_OP_SINGLE_ECDH_USE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	if (cfg->ciphers[0] && !SSL_CTX_set_cipher_list(ctx, cfg->ciphers)) {
		ossl_err(err, errlen, "[tls] ciphers");
		goto out_free;
	}
	if (cfg->ciphersuites[0] && !SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites)) {
		ossl_err(err, errlen, "[tls] ciphersuites");
		goto out_free;
	}
	if (cfg->groups[0] && !SSL_CTX_set1_groups_list(ctx, cfg->groups)) {
		ossl_err(err, errlen, "[tls] groups");
		goto out_free;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, sk.cert_file) != 1) {
		ossl_err(err, errlen, sk.cert_file);
		goto out_free;
	}
	if (sk.key != NULL ? SSL_CTX_use_PrivateKey(ctx, sk.key) != 1
			   : SSL_CTX_use_PrivateKey_file(ctx, sk.key_file, SSL_FILETYPE_PEM) != 1) {
		ossl_err(err, errlen, sk.key ? cfg->key_file : sk.key_file);
		goto out_free;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ossl_err(err, errlen, "server key does not match the certificate");
		goto out_free;
	}
	/* The record relay takes the session over from OpenSSL at the handoff: it needs
	 * the traffic secrets (keylog) and exact record counts (msg callback). */
	if (kg_tls_keys_ctx_setup(ctx) < 0) {
		snprintf(err, errlen, "TLS key tracking: cannot set up");
		goto out_free;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_cert_verify_callback(ctx, cert_verify_cb, NULL);
	EVP_PKEY_free(sk.key); /* the context holds its own reference */
	return ctx;

out_free:
	SSL_CTX_free(ctx);
	EVP_PKEY_free(sk.key);
	return NULL;
}

int kg_tls_conn_new(struct kg_conn *c)
{
	BIO *bio;

	c->io.ssl = SSL_new(c->snap->ssl_ctx);
	if (c->io.ssl == NULL) {
		kg_log_ossl("SSL_new");
		return KG_E_RESOURCE;
	}
	/* OpenSSL's SSL_set_fd() attaches the kernel's TLS ULP to every socket it gets
	 * (BIO_new_socket); we attach it ourselves, only where kTLS may be used, so a
	 * session headed for a user-space relay keeps a plain socket. */
	bio = BIO_new(BIO_s_socket());
	if (bio == NULL) {
		kg_log_ossl("BIO_new");
		return KG_E_RESOURCE;
	}
	BIO_set_fd(bio, c->io.dev.fd, BIO_NOCLOSE);
	SSL_set_bio(c->io.ssl, bio, bio);
	if (kg_ktls_prepare(&c->io))
		SSL_set_options(c->io.ssl, SSL_OP_ENABLE_KTLS);
	SSL_set_app_data(c->io.ssl, c);
	SSL_set_accept_state(c->io.ssl);
	if (kg_tls_keys_track(c->io.ssl, &c->io.keytrk) < 0)
		return KG_E_RESOURCE;
	return 0;
}

/* Map an SSL_get_error() result; sets want flags. */
static long tls_result(struct kg_relay_io *io, int ret)
{
	int e = SSL_get_error(io->ssl, ret);

	io->want_read = io->want_write = false;
	switch (e) {
	case SSL_ERROR_WANT_READ:
		io->want_read = true;
		return KG_E_AGAIN;
	case SSL_ERROR_WANT_WRITE:
		io->want_write = true;
		return KG_E_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		/* EOF without close_notify: for MQTT the session just ends. */
		return (errno == 0 || ret == 0) ? 0 : KG_E_IO;
	default:
		ERR_clear_error();
		return KG_E_PROTO;
	}
}

int kg_tls_handshake(struct kg_conn *c, enum kg_reason *reason)
{
	int ret;
	unsigned long e;

	ERR_clear_error();
	ret = SSL_do_handshake(c->io.ssl);
	if (ret == 1) {
		c->io.want_read = c->io.want_write = false;
		kg_tls_keys_handshake_done(c->io.ssl, &c->io.keytrk);
		return KG_OK;
	}
	if (c->verify_ran && c->verify_reason != KG_REASON_OK) {
		*reason = c->verify_reason;
		ERR_clear_error();
		return KG_E_PROTO;
	}
	e = ERR_peek_error();
	if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		*reason = KG_REASON_NO_CERT;
		ERR_clear_error();
		return KG_E_PROTO;
	}
	/* OpenSSL 3 reports a peer's EOF mid-handshake as an SSL error, not SYSCALL. */
	if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		*reason = KG_REASON_PEER_CLOSED;
		ERR_clear_error();
		return KG_E_PROTO;
	}
	switch (tls_result(&c->io, ret)) {
	case KG_E_AGAIN:
		return KG_E_AGAIN;
	case 0:
	case KG_E_IO:
		/* The peer hung up (FIN or reset) mid-handshake: a scan or a dropped
		 * link, not a failed TLS exchange (the XDP gate counts only the latter). */
		*reason = KG_REASON_PEER_CLOSED;
		return KG_E_PROTO;
	default:
		*reason = KG_REASON_TLS_FAILED;
		return KG_E_PROTO;
	}
}

long kg_tls_read(struct kg_relay_io *io, void *buf, size_t len)
{
	size_t got = 0;
	int ret;

	ERR_clear_error();
	ret = SSL_read_ex(io->ssl, buf, len, &got);
	if (ret == 1) {
		io->want_read = io->want_write = false;
		return (long)got;
	}
	return tls_result(io, 0);
}

long kg_tls_write(struct kg_relay_io *io, const void *buf, size_t len)
{
	size_t done = 0;
	int ret;

	ERR_clear_error();
	ret = SSL_write_ex(io->ssl, buf, len, &done);
	if (ret == 1) {
		io->want_read = io->want_write = false;
		return (long)done;
	}
	{
		long r = tls_result(io, 0);
		/* A write that hit a closed peer is an I/O error, not a clean close. */
		return r == 0 ? KG_E_IO : r;
	}
}

void kg_tls_shutdown(struct kg_relay_io *io)
{
	if (io->ssl == NULL)
		return;
	ERR_clear_error();
	(void)SSL_shutdown(io->ssl);
	ERR_clear_error();
}

const char *kg_tls_verify_detail(const struct kg_conn *c)
{
	if (!c->verify_ran || c->verify_reason == KG_REASON_OK || c->x509_err == X509_V_OK ||
	    c->x509_err == X509_V_ERR_APPLICATION_VERIFICATION)
		return NULL;
	return X509_verify_cert_error_string(c->x509_err);
}

const char *kg_tls_version(const struct kg_conn *c)
{
	return c->io.ssl ? SSL_get_version(c->io.ssl) : "-";
}

const char *kg_tls_cipher(const struct kg_conn *c)
{
	return c->io.ssl ? SSL_get_cipher_name(c->io.ssl) : "-";
}
