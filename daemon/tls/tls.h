/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Part tls (daemon/tls/): TLS on the device side. tls.c (the server SSL_CTX and a
 * connection's handshake, read, write and shutdown, this header), verify.c (who the
 * device is: chain to a proven registry CA or a thumbprint pin, CRLs, the CN as device
 * id; verify.h), tls_keys.c (each direction's traffic key and sequence number at the
 * handoff, for kTLS and the record relay; tls_keys.h).
 * Way in: this header for the daemon; verify.h for verification alone (the CLI's
 * `ktlsgate verify` runs the very same kg_verify_peer()).
 * Uses policy (the identity type, reasons), registry rows, tpm (the server key),
 * relay (kTLS is prepared before the handshake) and ops. The one file of the daemon
 * that OpenSSL's verification and handshake errors are translated in.
 */
/*
 * tls.h - the server SSL_CTX (TLS 1.3 and 1.2 only, client certificate required, no
 * renegotiation, no resumption until tickets are policy-checked, released buffers) and
 * the handshake step, in nginx's vocabulary: callers see KG_OK / KG_E_AGAIN / an
 * error, never OpenSSL's. Certificate verification is delegated to verify.c through
 * OpenSSL's cert-verify callback, which finds its connection with SSL_get_app_data().
 */
#ifndef KTLSGATE_TLS_H
#define KTLSGATE_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "ktlsgate/compiler.h"
#include "ops/config.h"
#include "policy/reason.h"

struct kg_conn;
struct kg_relay_io;

/* Build the server context from cfg (cert chain, key, ciphers, groups). The trust
 * store is not inside it: the verify callback uses the connection's snapshot. */
SSL_CTX *kg_tls_ctx_new(const struct kg_config *cfg, char *err, size_t errlen);

/* Create the SSL for an accepted fd. Returns 0 or KG_E_RESOURCE. */
int kg_tls_conn_new(struct kg_conn *c) KG_MUST_USE;

/* Step the handshake. KG_OK: done; KG_E_AGAIN: c->want_* set; KG_E_PROTO: failed,
 * *reason says why (verification reasons come from the callback). */
int kg_tls_handshake(struct kg_conn *c, enum kg_reason *reason) KG_MUST_USE;

/* Read/write decrypted bytes through io->ssl (the connection's, relay.h: the relays
 * use them too). Return >0 bytes, 0 on clean close (close_notify or EOF), KG_E_AGAIN
 * (io->want_read/want_write tell which), or KG_E_IO / KG_E_PROTO. */
long kg_tls_read(struct kg_relay_io *io, void *buf, size_t len);
long kg_tls_write(struct kg_relay_io *io, const void *buf, size_t len);
/* Send close_notify (best effort, non-blocking; nothing once io->ssl is freed). */
void kg_tls_shutdown(struct kg_relay_io *io);

/* OpenSSL's words for why verification refused the chain ("CA certificate key too
 * weak", "CRL has expired"...), for the audit detail; NULL when there are none. */
const char *kg_tls_verify_detail(const struct kg_conn *c);

const char *kg_tls_version(const struct kg_conn *c);
const char *kg_tls_cipher(const struct kg_conn *c);

#endif
