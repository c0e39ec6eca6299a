/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * conn_tls.c - a connection's TLS steps: its SSL, the handshake, and the cert-verify
 * callback that hands the device's chain to kg_verify_peer() with the connection's
 * snapshot and registry. The SSL_CTX these run on, and why it is built as it is, are
 * tls/tls.c's; the bytes after the handshake are relay/ssl_io.c's.
 *
 * Here, in core, because each of them works on a struct kg_conn: the tls part below
 * knows no connection, so the one crossing upward the tree used to have is gone.
 */
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/conn.h"
#include "core/conn_tls.h"
#include "core/daemon.h"
#include "core/worker.h"
#include "ops/err.h"
#include "ops/log.h"
#include "relay/relay.h"
#include "tls/tls_keys.h"
#include "tls/verify.h"

/* OpenSSL's verification hook: the whole decision is kg_verify_peer()'s. */
int kg_conn_tls_verify_cb(X509_STORE_CTX *sctx, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct kg_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
	int x509_err = X509_V_ERR_UNSPECIFIED;
	enum kg_chain_use use = KG_CHAIN_UNCACHED;

	(void)arg;
	if (c == NULL)
		return 0;
	c->verify_ran = true;
	c->verify_reason = kg_verify_peer_ex(c->snap->trust, X509_STORE_CTX_get0_cert(sctx),
					     X509_STORE_CTX_get0_untrusted(sctx), 0,
					     kg_verify_registry_thumb_lookup, c->w->reg, &c->id,
					     &x509_err, &use);
	if (use == KG_CHAIN_CACHE_HIT)
		kg_metric_add(&c->w->metrics.chain_cache_hits, 1);
	else if (use == KG_CHAIN_CACHE_MISS)
		kg_metric_add(&c->w->metrics.chain_cache_misses, 1);
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

int kg_conn_tls_new(struct kg_conn *c, bool cert_optional)
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
	/* One-way TLS: a certificate is asked for and verified when sent, but its
	 * absence is no failure (the CONNECT's credentials decide, conn.c st_auth). The
	 * verify callback stays the context's: SSL_set_verify() replaces only the mode
	 * and the per-certificate callback, which we leave unset. */
	if (cert_optional)
		SSL_set_verify(c->io.ssl, SSL_VERIFY_PEER, NULL);
	SSL_set_app_data(c->io.ssl, c);
	SSL_set_accept_state(c->io.ssl);
	if (kg_tls_keys_track(c->io.ssl, &c->io.keytrk) < 0)
		return KG_E_RESOURCE;
	return 0;
}

int kg_conn_tls_handshake(struct kg_conn *c, enum kg_reason *reason)
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
	switch (kg_ssl_io_result(&c->io, ret)) {
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

const char *kg_conn_tls_verify_detail(const struct kg_conn *c)
{
	if (!c->verify_ran || c->verify_reason == KG_REASON_OK || c->x509_err == X509_V_OK ||
	    c->x509_err == X509_V_ERR_APPLICATION_VERIFICATION)
		return NULL;
	return X509_verify_cert_error_string(c->x509_err);
}
