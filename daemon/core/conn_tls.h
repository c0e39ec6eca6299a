/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * conn_tls.h - a connection's TLS state: its SSL (made on the snapshot's SSL_CTX, kTLS
 * prepared by the relay part), the handshake step, and the verify hook that ties
 * OpenSSL's certificate check to the connection (its snapshot's trust, its worker's
 * registry, its identity). In nginx's vocabulary: callers see KG_OK / KG_E_AGAIN / an
 * error, never OpenSSL's. Bytes after the handshake go through relay.h's kg_ssl_io_*().
 */
#ifndef KTLSGATE_CONN_TLS_H
#define KTLSGATE_CONN_TLS_H

#include <stdbool.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "ktlsgate/compiler.h"
#include "policy/reason.h"

struct kg_conn;

/* OpenSSL's cert-verify callback (kg_tls_ctx_new() installs it): the whole decision is
 * kg_verify_peer()'s, on the connection found with SSL_get_app_data(). Fills c->id,
 * c->verify_ran/_reason and c->x509_err; 1 accepts, 0 refuses (with the X509 error that
 * selects OpenSSL's alert). */
int kg_conn_tls_verify_cb(X509_STORE_CTX *sctx, void *arg);

/* OpenSSL's session ticket callbacks (SSL_CTX_set_session_ticket_cb, installed by
 * tls/tickets.h kg_tickets_ctx_setup() when [tls] resumption is on). gen puts what the
 * connection proved into a new ticket; dec decides whether a presented ticket resumes
 * (kg_ticket_check()) and, if so, makes its identity the connection's (c->id,
 * c->ticket_id) for the registry and policy to judge again. */
int kg_conn_tls_ticket_gen_cb(SSL *ssl, void *arg);
SSL_TICKET_RETURN kg_conn_tls_ticket_dec_cb(SSL *ssl, SSL_SESSION *ss, const unsigned char *keyname,
					    size_t keyname_len, SSL_TICKET_STATUS status, void *arg);
/* The same decision for a session found in the daemon's session cache ([tls]
 * session_cache: tls/session_cache.h kg_session_check_fn): true resumes it, with its
 * identity the connection's; with ticket_reuse no new session is made when not due. */
bool kg_conn_tls_session_check(SSL *ssl, SSL_SESSION *ss);

/* Create the SSL for an accepted fd; cert_optional: one-way TLS (a certificate is
 * verified when sent, else the CONNECT must prove who it is). 0 or KG_E_RESOURCE. */
int kg_conn_tls_new(struct kg_conn *c, bool cert_optional) KG_MUST_USE;

/* Step the handshake. KG_OK: done; KG_E_AGAIN: c->io.want_* set; KG_CONN_TLS_ASYNC:
 * paused waiting for the TPM signer (step again when one of the SSL's async fds is
 * readable, tpm_key.h); KG_E_PROTO: failed, *reason says why (verification reasons
 * come from the callback, tpm_unavailable when the TPM gave no signature). */
#define KG_CONN_TLS_ASYNC 1
int kg_conn_tls_handshake(struct kg_conn *c, enum kg_reason *reason) KG_MUST_USE;

/* Put the paused handshake's async fds in the worker's epoll (c->async_ev); the device
 * socket is watched for its hangup only meanwhile. 0 or KG_E_RESOURCE. */
int kg_conn_tls_async_watch(struct kg_conn *c) KG_MUST_USE;
/* The handshake is over or the connection closes: a job still paused gives its
 * signature up and ends (before SSL_free: a paused job would leak), the async fds
 * leave the epoll. Idempotent. */
void kg_conn_tls_async_end(struct kg_conn *c);

/* OpenSSL's words for why verification refused the chain ("CA certificate key too
 * weak", "CRL has expired"...), for the audit detail; NULL when there are none. */
const char *kg_conn_tls_verify_detail(const struct kg_conn *c);

#endif
