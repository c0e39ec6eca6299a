/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tickets.h - TLS 1.3 session resumption: the daemon's ticket keys and what a ticket
 * says about the device.
 *
 * Key store (struct kg_ticket_keys, one per daemon, shared by every worker):
 * AES-256-CBC + HMAC-SHA256 keys (OpenSSL's own ticket format) generated at random in
 * OpenSSL's secure heap (mlocked, MADV_DONTDUMP once CRYPTO_secure_malloc_init ran).
 * The current key encrypts for `lifetime` seconds, then is retired and a new one made
 * (lazily, by the first ticket due after that); a retired key still decrypts for
 * `lifetime` more seconds (the longest a ticket it made can live), then it is wiped.
 * Readers take a read lock; a rotation the write lock. kg_ticket_keys_export/_import
 * carry the whole set as bytes: with a TPM key the daemon seals it and keeps it across
 * restarts (tls/ticket_store.h, core/ticket_persist.c): it imports at start, and rotates
 * (kg_ticket_keys_rotate()) and exports on the main thread ahead of time, so that the
 * lazy rotation on a worker rarely has to run.
 *
 * Ticket identity (struct kg_ticket_id): what the full handshake proved, stored in the
 * ticket (SSL_SESSION_set1_ticket_appdata) by kg_ticket_id_encode() and checked on
 * resumption by kg_ticket_check(): same leaf (SHA-256 of the session's peer
 * certificate), same trust generation (verify.h kg_trust_generation()), leaf not
 * expired, full verification not older than KG_TICKET_MAX_AGE. The policy is the
 * caller's to run again (core/conn.c).
 * Thread-safety: the store is; the rest is pure.
 */
#ifndef KTLSGATE_TICKETS_H
#define KTLSGATE_TICKETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "ktlsgate/compiler.h"
#include "ops/metrics.h"
#include "policy/identity.h"

#define KG_TICKET_NAME_LEN 16
#define KG_TICKET_KEYS_MAX 3          /* current + retired ones still decrypting */
/* RFC 8446 4.6.1: a PSK is not used more than 7 days after the handshake that made
 * it; a resumption renews the ticket, not this clock (a full handshake does). */
#define KG_TICKET_MAX_AGE 604800

struct kg_ticket_keys;

/* A store whose keys encrypt for `lifetime` seconds each (no key yet: the first use
 * makes one). NULL: out of memory or no cipher. */
struct kg_ticket_keys *kg_ticket_keys_new(int64_t lifetime);
void kg_ticket_keys_free(struct kg_ticket_keys *k);   /* wipes every key */
/* A reload's new [tls] ticket_lifetime: the current key's span and the retired ones'
 * decryption windows follow it from now on. */
void kg_ticket_keys_set_lifetime(struct kg_ticket_keys *k, int64_t lifetime);
/* Rotate now if the current key is due (or there is none); drop keys whose window
 * closed. 1 rotated, 0 nothing due, -1 no randomness/memory. */
int kg_ticket_keys_rotate(struct kg_ticket_keys *k, int64_t now) KG_MUST_USE;
uint64_t kg_ticket_keys_rotations(const struct kg_ticket_keys *k);
/* When the current key is due for rotation (unix seconds); 0: no key yet (due now). */
int64_t kg_ticket_keys_next_due(struct kg_ticket_keys *k);
size_t kg_ticket_keys_count(struct kg_ticket_keys *k);

/* One key, as the OpenSSL callback needs it (a copy: wipe it after use). */
struct kg_ticket_key_material {
	unsigned char name[KG_TICKET_NAME_LEN];
	unsigned char aes[32];
	unsigned char hmac[32];
};
/* The key to encrypt a new ticket with at `now` (rotating first if due). 0 or -1. */
int kg_ticket_keys_for_encrypt(struct kg_ticket_keys *k, int64_t now,
			       struct kg_ticket_key_material *out) KG_MUST_USE;
/* The key named `name` if it may still decrypt at `now`: 1 current, 2 retired (the
 * client should get a new ticket), 0 unknown or expired. */
int kg_ticket_keys_for_decrypt(struct kg_ticket_keys *k, const unsigned char *name, int64_t now,
			       struct kg_ticket_key_material *out) KG_MUST_USE;

/* The whole set as bytes (for sealing; secret: wipe and free). *out from
 * OPENSSL_secure_malloc, free with OPENSSL_secure_clear_free(*out, *len). 0 or -1. */
int kg_ticket_keys_export(struct kg_ticket_keys *k, unsigned char **out, size_t *len) KG_MUST_USE;
/* Replace the set by an export's bytes (validated whole first). 0 or -1 (unchanged). */
int kg_ticket_keys_import(struct kg_ticket_keys *k, const unsigned char *in, size_t len) KG_MUST_USE;

/*
 * Turn resumption on for a server context made by kg_tls_ctx_new() (which turns it
 * off): stateless TLS 1.3 tickets under the keys of k, session timeout `lifetime`,
 * no early data, PSK only with (EC)DHE. gen and dec are OpenSSL's session ticket
 * callbacks (SSL_CTX_set_session_ticket_cb: they put and check the identity; the
 * daemon's are core/conn_tls.c's). k must outlive ctx. 0 or -1.
 */
int kg_tickets_ctx_setup(SSL_CTX *ctx, struct kg_ticket_keys *k, int64_t lifetime,
			 SSL_CTX_generate_session_ticket_fn gen,
			 SSL_CTX_decrypt_session_ticket_fn dec, void *arg) KG_MUST_USE;

/* What a ticket carries about its device. */
struct kg_ticket_id {
	bool verified;                 /* false: the session proved no certificate */
	enum kg_attestation method;    /* KG_ATT_CA or KG_ATT_THUMBPRINT when verified */
	uint64_t trust_gen;
	int64_t not_after;             /* leaf notAfter */
	int64_t verified_at;           /* the full handshake, unix seconds */
	unsigned char leaf_sha256[32];
	char device_id[KG_DEVICE_ID_MAX + 1];
	size_t module_off;
	char ca_name[KG_NAME_MAX];
};

#define KG_TICKET_ID_MAX (64 + KG_DEVICE_ID_MAX + KG_NAME_MAX)
/* Fill t from a verified identity (id: verify.h's) made under trust generation gen at
 * `now`; id NULL: an unverified session. 0 or -1 (thumbprint not hex). */
int kg_ticket_id_from_identity(struct kg_ticket_id *t, const struct kg_identity *id, uint64_t gen,
			       int64_t now) KG_MUST_USE;
/* Encode into buf (KG_TICKET_ID_MAX bytes): the length, or -1. */
int kg_ticket_id_encode(const struct kg_ticket_id *t, unsigned char *buf, size_t cap) KG_MUST_USE;
/* Decode exactly len bytes; anything malformed (version, lengths, an invalid device
 * id, an unknown method) is -1. */
int kg_ticket_id_decode(const unsigned char *buf, size_t len, struct kg_ticket_id *t) KG_MUST_USE;
/* The identity a resumed session continues with (verify.h's shape, for the policy). */
void kg_ticket_id_to_identity(const struct kg_ticket_id *t, struct kg_identity *id);

/* May this ticket resume, for the session's peer certificate `peer`, under trust
 * generation `gen`, at `now`? KG_RESUME_OK or why not. */
enum kg_resume_refusal kg_ticket_check(const struct kg_ticket_id *t, X509 *peer, uint64_t gen,
				       int64_t now);

/* After a resumption with a ticket issued at `issued` (SSL_SESSION_get_time), is a new
 * ticket due? With reuse ([tls] ticket_reuse = on) only once the ticket has lived half
 * of `lifetime` (or its clock is off: issued in the future); without, always. Making a
 * ticket costs libssl a full re-parse of the session and the device certificate in it
 * (OpenSSL 3.0: a decoder set-up per certificate), the largest share of a resumed
 * handshake: docs/security.md "Session resumption" weighs it against RFC 8446 C.4. */
bool kg_ticket_renew_due(int64_t issued, int64_t now, int64_t lifetime, bool reuse);

#endif
