/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tls_keys.h - what a TLS session's record layer needs to be carried on without
 * OpenSSL's SSL (by the kernel, kTLS, or by record.c in user space): the traffic key,
 * static IV and next record sequence number of each direction, taken at the handoff
 * point. A struct kg_tls_key_tracker, embedded in the connection, collects what
 * OpenSSL does not expose (TLS 1.3 traffic secrets via the keylog callback, record
 * counts via the message callback); kg_tls_keys_export() derives the rest.
 * Server side only: rx = what the client writes, tx = what the server writes.
 * Thread-safety: a tracker and its SSL belong to one thread; setup is callable from
 * any thread. Secrets are never logged; wipe them with the *_wipe() functions.
 */
#ifndef KTLSGATE_TLS_KEYS_H
#define KTLSGATE_TLS_KEYS_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/types.h>

#include "ktlsgate/compiler.h"

/* Wire versions (the same numbers as OpenSSL's TLS1_2_VERSION / TLS1_3_VERSION). */
#define KG_TLS12 0x0303
#define KG_TLS13 0x0304

#define KG_TLS_KEY_MAX 32     /* AES-256 / ChaCha20 */
#define KG_TLS_IV_MAX 12      /* the AEAD nonce length of every supported suite */
#define KG_TLS_SECRET_MAX 48  /* a SHA-384 traffic secret */

enum kg_aead {
	KG_AEAD_NONE = 0,
	KG_AEAD_AES_128_GCM,
	KG_AEAD_AES_256_GCM,
	KG_AEAD_CHACHA20_POLY1305
};

/* One direction. iv holds iv_len bytes: TLS 1.3 the 12-byte static IV (all suites);
 * TLS 1.2 AES-GCM the 4-byte implicit salt (the other 8 nonce bytes travel in each
 * record); TLS 1.2 ChaCha20-Poly1305 the 12-byte IV (RFC 7905). */
struct kg_tls_dir_keys {
	uint8_t key[KG_TLS_KEY_MAX];
	uint8_t iv[KG_TLS_IV_MAX];
	uint8_t key_len;
	uint8_t iv_len;
	uint64_t seq;  /* sequence number of the NEXT record in this direction */
};

struct kg_tls_keys {
	struct kg_tls_dir_keys rx, tx;
	uint16_t version;   /* KG_TLS12 or KG_TLS13 */
	enum kg_aead aead;
};

/* Per-connection capture; zero-initialise it, then kg_tls_keys_track(). */
struct kg_tls_key_tracker {
	uint8_t client_secret[KG_TLS_SECRET_MAX];  /* CLIENT_TRAFFIC_SECRET_0 (TLS 1.3) */
	uint8_t server_secret[KG_TLS_SECRET_MAX];  /* SERVER_TRAFFIC_SECRET_0 (TLS 1.3) */
	uint8_t client_secret_len, server_secret_len;
	bool done;              /* set by kg_tls_keys_handshake_done() */
	bool fin_rd, fin_wr;    /* a Finished was read / written */
	bool rekeyed;           /* a KeyUpdate went by: keys moved on, export refuses */
	bool update_requested;  /* the client's KeyUpdate asked for ours (update_requested) */
	uint64_t rd, wr;        /* record headers read / written since that Finished */
};

/* Install the keylog callback on a server context (replaces any other keylog
 * callback) and fetch the export's KDFs once for it (held in ctx's ex_data, freed
 * with ctx). Untracked SSLs made from ctx are unaffected. Returns KG_OK, or
 * KG_E_RESOURCE if an ex_data index or the memory could not be had. */
int kg_tls_keys_ctx_setup(SSL_CTX *ctx) KG_MUST_USE;

/* Before the handshake: attach t (zeroed here) to ssl and install the message
 * callback that counts records. t must outlive ssl or be detached with
 * kg_tls_keys_untrack(). Returns KG_OK or KG_E_RESOURCE. */
int kg_tls_keys_track(SSL *ssl, struct kg_tls_key_tracker *t) KG_MUST_USE;

/* Right after the handshake returned success (export refuses before). */
void kg_tls_keys_handshake_done(SSL *ssl, struct kg_tls_key_tracker *t);

/* Detach the tracker from ssl (ssl goes on without it). */
void kg_tls_keys_untrack(SSL *ssl);

/* Derive both directions' keys at this point of the session. The caller must stop
 * using ssl for records afterwards (free it). Returns KG_OK, or:
 *   KG_E_INVALID   not TLS 1.2/1.3, a cipher outside the six AEAD suites, the
 *                  handshake is not done / kg_tls_keys_handshake_done() not called,
 *                  or a KeyUpdate already changed the keys;
 *   KG_E_AGAIN     OpenSSL still buffers bytes (SSL_pending / SSL_has_pending):
 *                  keep reading with SSL_read and try again;
 *   KG_E_NOTFOUND  TLS 1.3 traffic secrets missing (ctx not set up, or not tracked);
 *   KG_E_INTERNAL  the KDF failed.
 * On error *out is zeroed. */
int kg_tls_keys_export(SSL *ssl, const struct kg_tls_key_tracker *t,
		       struct kg_tls_keys *out) KG_MUST_USE;

/* The fixed parameters of an AEAD: key length, per-direction IV length stored in
 * struct kg_tls_dir_keys. 0 for an unknown (version, aead). */
unsigned kg_tls_aead_key_len(enum kg_aead aead);
unsigned kg_tls_aead_iv_len(uint16_t version, enum kg_aead aead);
const char *kg_tls_aead_name(enum kg_aead aead);

/* OPENSSL_cleanse the secrets. */
void kg_tls_keys_wipe(struct kg_tls_keys *k);
void kg_tls_key_tracker_wipe(struct kg_tls_key_tracker *t);

#endif
