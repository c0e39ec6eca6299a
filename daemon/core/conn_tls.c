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
#include <string.h>
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
#include "tls/tickets.h"
#include "tls/tls.h"
#include "tls/tls_keys.h"
#include "tls/verify.h"
#include "tpm/tpm_key.h"

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
	/* A full handshake after all (a ticket was offered but not resumed): the
	 * identity is this verification's, not the ticket's. */
	c->ticket_id = false;
	c->resumed_verified_at = 0;
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

/*
 * A new ticket is being made (after a full or a resumed handshake, on the worker):
 * store in it what this connection proved. A session that proved no certificate gets
 * an unverified one, which never resumes (kg_ticket_check()). Never fails the
 * handshake: OpenSSL 3.0 would make a 0 a fatal error.
 */
int kg_conn_tls_ticket_gen_cb(SSL *ssl, void *arg)
{
	struct kg_conn *c = SSL_get_app_data(ssl);
	struct kg_ticket_id t;
	unsigned char buf[KG_TICKET_ID_MAX];
	bool proved;
	int n;

	(void)arg;
	if (c == NULL)
		return 1;   /* no identity in it: it never resumes */
	proved = c->verify_ran && c->verify_reason == KG_REASON_OK &&
		 (c->id.method == KG_ATT_CA || c->id.method == KG_ATT_THUMBPRINT);
	if (kg_ticket_id_from_identity(&t, proved ? &c->id : NULL,
				       kg_trust_generation(c->snap->trust), (int64_t)time(NULL)) < 0)
		proved = t.verified = false;
	/* A renewal keeps the time of the full verification it descends from. */
	if (proved && c->resumed_verified_at != 0)
		t.verified_at = c->resumed_verified_at;
	n = kg_ticket_id_encode(&t, buf, sizeof(buf));
	if (n > 0)
		(void)SSL_SESSION_set1_ticket_appdata(SSL_get0_session(ssl), buf, (size_t)n);
	return 1;
}

/* Resume only what the full handshake would accept again now (the identity in the
 * session's appdata, kg_ticket_check): then c->id is the session's and the connection
 * goes on to the registry and policy like any other. false: counted and logged. */
static bool resume_admit(struct kg_conn *c, SSL_SESSION *ss)
{
	const void *data = NULL;
	size_t len = 0;
	struct kg_ticket_id t;
	enum kg_resume_refusal why;

	if (SSL_SESSION_get0_ticket_appdata(ss, (void **)&data, &len) != 1 ||
	    kg_ticket_id_decode(data, len, &t) < 0)
		why = KG_RESUME_BAD_TICKET;
	else
		why = kg_ticket_check(&t, SSL_SESSION_get0_peer(ss), kg_trust_generation(c->snap->trust),
				      (int64_t)time(NULL));
	if (why != KG_RESUME_OK) {
		kg_metric_add(&c->w->metrics.resume_refusals[why], 1);
		kg_log_debug("conn=%llu peer=%s session not resumed: %s", (unsigned long long)c->cid,
			     c->peer, kg_resume_refusal_names[why]);
		return false;
	}
	kg_ticket_id_to_identity(&t, &c->id);
	c->resumed_verified_at = t.verified_at;
	c->ticket_id = true;
	c->verify_ran = true;
	c->verify_reason = KG_REASON_OK;
	c->x509_err = X509_V_OK;
	return true;
}

/* When the session's ticket was made (OpenSSL 3.4 deprecated the long form: trixie). */
static int64_t session_issued(const SSL_SESSION *ss)
{
#if OPENSSL_VERSION_NUMBER >= 0x30300000L
	return (int64_t)SSL_SESSION_get_time_ex(ss);
#else
	return (int64_t)SSL_SESSION_get_time(ss);
#endif
}

/*
 * A ticket was presented (TLS 1.3: the PSK extension). Resume only what the full
 * handshake would accept again now: the identity decoded, the same leaf, the same trust
 * generation, the leaf valid. Then c->id is the ticket's and the connection goes on to
 * the registry and policy like any other (conn.c st_policy). Anything else: ignore the
 * ticket, a full handshake verifies the chain again. TLS 1.2: never resumed, and no
 * ticket issued (IGNORE, not IGNORE_RENEW: see docs/security.md).
 */
SSL_TICKET_RETURN kg_conn_tls_ticket_dec_cb(SSL *ssl, SSL_SESSION *ss, const unsigned char *keyname,
					    size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
	struct kg_conn *c = SSL_get_app_data(ssl);

	(void)keyname;
	(void)keyname_len;
	(void)arg;
	if (SSL_version(ssl) != TLS1_3_VERSION)
		return SSL_TICKET_RETURN_IGNORE;
	switch (status) {
	case SSL_TICKET_SUCCESS:
	case SSL_TICKET_SUCCESS_RENEW:
		break;
	case SSL_TICKET_NO_DECRYPT:
		if (c != NULL)
			kg_metric_add(&c->w->metrics.resume_refusals[KG_RESUME_UNKNOWN_KEY], 1);
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	case SSL_TICKET_EMPTY:
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	default:
		return SSL_TICKET_RETURN_ABORT;
	}
	if (c == NULL || !resume_admit(c, ss))
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	/* A new ticket (same identity and verification time) when the key that made this
	 * one is retired, when it has lived half its life, or always with ticket_reuse =
	 * off; otherwise the device keeps using the one it has and the server skips the
	 * NewSessionTicket (its cost: tickets.h kg_ticket_renew_due). */
	if (status == SSL_TICKET_SUCCESS_RENEW ||
	    kg_ticket_renew_due(session_issued(ss), (int64_t)time(NULL),
				(int64_t)c->snap->cfg.ticket_lifetime, c->snap->cfg.ticket_reuse))
		return SSL_TICKET_RETURN_USE_RENEW;
	kg_metric_add(&c->w->metrics.tickets_reused, 1);
	return SSL_TICKET_RETURN_USE;
}

/*
 * A session from the daemon's session cache ([tls] session_cache, tls/session_cache.h):
 * the same identity check as a ticket's. TLS 1.3 only (a TLS 1.2 session id is never
 * resumed, as a TLS 1.2 ticket is not). With ticket_reuse the device keeps the ticket
 * (the session's id) it has until half its life: no new session is made.
 */
bool kg_conn_tls_session_check(SSL *ssl, SSL_SESSION *ss)
{
	struct kg_conn *c = SSL_get_app_data(ssl);

	if (c == NULL || SSL_version(ssl) != TLS1_3_VERSION ||
	    SSL_SESSION_get_protocol_version(ss) != TLS1_3_VERSION || !resume_admit(c, ss))
		return false;
	if (!kg_ticket_renew_due(session_issued(ss), (int64_t)time(NULL),
				 (int64_t)c->snap->cfg.ticket_lifetime, c->snap->cfg.ticket_reuse)) {
		(void)SSL_set_num_tickets(ssl, 0);
		kg_metric_add(&c->w->metrics.tickets_reused, 1);
	}
	return true;
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
	if (cert_optional) {
		SSL_set_verify(c->io.ssl, SSL_VERIFY_PEER, NULL);
		/* Resumption is for certificate-proven devices: a one-way listener's
		 * sessions get no ticket (a CONNECT's credentials are checked anyway). */
		(void)SSL_set_num_tickets(c->io.ssl, 0);
	}
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
		kg_conn_tls_async_end(c);
		/* the relay's reads and writes need no ASYNC job (nothing pauses there) */
		SSL_clear_mode(c->io.ssl, SSL_MODE_ASYNC);
		c->resumed = SSL_session_reused(c->io.ssl) == 1;
		c->resumed_psk_ke = kg_tls_resumed_without_ecdhe(c->io.ssl);
		if (c->resumed && !c->ticket_id) {
			/* Resumed without an identity our callback accepted: cannot happen
			 * (no session cache, every ticket passes the callback); refuse. */
			*reason = KG_REASON_TLS_FAILED;
			return KG_E_PROTO;
		}
		if (!c->resumed && c->ticket_id) {
			/* A ticket accepted, then a full handshake without a certificate
			 * (another suite, say): the ticket's identity does not carry over. */
			memset(&c->id, 0, sizeof(c->id));
			c->ticket_id = c->verify_ran = false;
		}
		kg_tls_keys_handshake_done(c->io.ssl, &c->io.keytrk);
		return KG_OK;
	}
	if (SSL_get_error(c->io.ssl, ret) == SSL_ERROR_WANT_ASYNC) {
		c->io.want_read = c->io.want_write = false;
		return KG_CONN_TLS_ASYNC;
	}
	kg_conn_tls_async_end(c);
	if (c->verify_ran && c->verify_reason != KG_REASON_OK) {
		*reason = c->verify_reason;
		ERR_clear_error();
		return KG_E_PROTO;
	}
	if (kg_tpm_err_unavailable()) {
		*reason = KG_REASON_TPM_UNAVAILABLE;
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

int kg_conn_tls_async_watch(struct kg_conn *c)
{
	OSSL_ASYNC_FD fds[2];
	size_t n = 0;

	if (!SSL_get_all_async_fds(c->io.ssl, NULL, &n) || n == 0 || n > 2 ||
	    !SSL_get_all_async_fds(c->io.ssl, fds, &n))
		return KG_E_RESOURCE;
	for (size_t i = 0; i < n; i++) {
		struct kg_evsrc *e = &c->async_ev[i];

		/* the fds are the SSL's until SSL_free: registered once */
		if (e->fd != fds[i]) {
			if (kg_conn_unwatch(c, e) < 0)
				return KG_E_RESOURCE;
			*e = (struct kg_evsrc){ .type = KG_EV_ASYNC, .fd = fds[i], .events = UINT32_MAX,
						.owner = c };
		}
		if (kg_conn_watch(c, e, EPOLLIN) < 0)
			return KG_E_RESOURCE;
	}
	/* the device waits for our flight: only its hangup matters meanwhile (a FIN is
	 * EPOLLRDHUP; a reset, EPOLLHUP or EPOLLERR, is always reported) */
	if (kg_conn_watch(c, &c->io.dev, EPOLLRDHUP) < 0)
		return KG_E_RESOURCE;
	c->tpm_wait = true;
	return 0;
}

void kg_conn_tls_async_end(struct kg_conn *c)
{
	if (c->io.ssl != NULL && SSL_waiting_for_async(c->io.ssl)) {
		kg_log_debug("conn=%llu: closed while its handshake waits for the TPM: signature "
			     "abandoned", (unsigned long long)c->cid);
		kg_tpm_async_abandon(c->io.ssl);
	}
	c->tpm_wait = false;
	for (size_t i = 0; i < 2; i++) {
		(void)!kg_conn_unwatch(c, &c->async_ev[i]);
		c->async_ev[i].fd = -1;
	}
}

const char *kg_conn_tls_verify_detail(const struct kg_conn *c)
{
	if (!c->verify_ran || c->verify_reason == KG_REASON_OK || c->x509_err == X509_V_OK ||
	    c->x509_err == X509_V_ERR_APPLICATION_VERIFICATION)
		return NULL;
	return X509_verify_cert_error_string(c->x509_err);
}
