/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * record.h - a minimal user-space TLS 1.2/1.3 record layer for sessions handed off
 * from OpenSSL after the handshake (keys from tls_keys.h): seal and open one record
 * at a time with the session's AEAD, and find record boundaries in a byte stream.
 * Pure: no sockets, no SSL objects, no allocation beyond one EVP_CIPHER_CTX per
 * direction. A struct kg_record_dir belongs to one thread. No renegotiation and no
 * KeyUpdate: a handshake record (type 22) after the handoff is returned to the
 * caller as such, and the caller closes the session.
 */
#ifndef KTLSGATE_RECORD_H
#define KTLSGATE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "ktlsgate/compiler.h"
#include "mqtt/mqtt.h"
#include "tls/tls_keys.h"

/* Content types (RFC 8446 5.1). */
#define KG_TLS_CT_CHANGE_CIPHER_SPEC 20
#define KG_TLS_CT_ALERT 21
#define KG_TLS_CT_HANDSHAKE 22
#define KG_TLS_CT_APPLICATION_DATA 23

#define KG_TLS_HEADER_LEN 5
#define KG_TLS_MAX_PLAINTEXT 16384u                    /* 2^14 */
#define KG_TLS_MAX_CIPHERTEXT (KG_TLS_MAX_PLAINTEXT + 256u) /* RFC 8446 5.2 */
/* Enough for any record kg_record_next() accepts. */
#define KG_TLS_MAX_RECORD (KG_TLS_HEADER_LEN + KG_TLS_MAX_CIPHERTEXT)

/* Alerts (RFC 8446 6). */
#define KG_TLS_ALERT_WARNING 1
#define KG_TLS_ALERT_FATAL 2
#define KG_TLS_ALERT_CLOSE_NOTIFY 0
#define KG_TLS_ALERT_UNEXPECTED_MESSAGE 10
#define KG_TLS_ALERT_BAD_RECORD_MAC 20
#define KG_TLS_ALERT_RECORD_OVERFLOW 22
#define KG_TLS_ALERT_DECODE_ERROR 50
#define KG_TLS_ALERT_INTERNAL_ERROR 80

/* One direction of a session. The key lives only inside ctx. */
struct kg_record_dir {
	EVP_CIPHER_CTX *ctx;
	uint64_t seq;             /* next record's sequence number */
	uint8_t iv[KG_TLS_IV_MAX]; /* static IV / 1.2 GCM salt (iv_len bytes) */
	uint16_t version;         /* KG_TLS12 / KG_TLS13 */
	uint8_t aead;             /* enum kg_aead */
	uint8_t iv_len;
};

/* Set up one direction from exported keys: rx = decrypt k->rx, else encrypt k->tx.
 * Returns KG_OK, KG_E_INVALID (unknown version/aead/lengths) or KG_E_RESOURCE.
 * On error d is left finalised (kg_record_dir_fini() is still safe). */
int kg_record_dir_init(struct kg_record_dir *d, const struct kg_tls_keys *k, bool rx) KG_MUST_USE;
/* Free the cipher context (which clears the key) and cleanse the IV. Idempotent. */
void kg_record_dir_fini(struct kg_record_dir *d);

/* Bytes a sealed record adds to its plaintext: 1.3 22 (header, type, tag), 1.2 GCM
 * 29 (header, explicit nonce, tag), 1.2 ChaCha20 21 (header, tag); 0 if unknown. */
size_t kg_record_seal_overhead(uint16_t version, enum kg_aead aead);

/* Build one complete record carrying in[0..len) with content type content_type
 * (21, 22 or 23) into out (must not overlap in). len <= 2^14; cap >= len + overhead.
 * Returns KG_OK and *out_len, or KG_E_INVALID (bad type, len, cap, or the sequence
 * number is exhausted), KG_E_INTERNAL (cipher failure). seq advances only on KG_OK. */
int kg_record_seal(struct kg_record_dir *tx, uint8_t content_type, const uint8_t *in,
		   size_t len, uint8_t *out, size_t cap, size_t *out_len) KG_MUST_USE;

/* Seal an alert (level, description) / a close_notify (warning, 0). */
int kg_record_seal_alert(struct kg_record_dir *tx, uint8_t level, uint8_t desc, uint8_t *out,
			 size_t cap, size_t *out_len) KG_MUST_USE;
int kg_record_seal_close_notify(struct kg_record_dir *tx, uint8_t *out, size_t cap,
				size_t *out_len) KG_MUST_USE;

/* Where does the record starting at buf end? KG_PARSE_OK with *rec_len (header
 * included), KG_PARSE_SHORT (need more bytes), or KG_PARSE_MALFORMED (type not
 * 20..23, version not 03 03, length under 16 or over 2^14 + 256). Checks what is
 * there as soon as it is there, so garbage is refused from its first byte. */
enum kg_parse kg_record_next(const uint8_t *buf, size_t len, size_t *rec_len) KG_MUST_USE;

/* Decrypt one complete record rec[0..len) (as delimited by kg_record_next) in place.
 * KG_OK: *content_type is the real type (1.3: from the inner plaintext, padding
 * stripped), *plain / *plain_len the plaintext inside rec, seq advanced.
 * KG_E_PROTO: malformed or failed authentication (bad_record_mac / record_overflow /
 * unexpected_message territory): the session is over; the record's body has been
 * wiped, seq is unchanged. */
int kg_record_open(struct kg_record_dir *rx, uint8_t *rec, size_t len, uint8_t *content_type,
		   uint8_t **plain, size_t *plain_len) KG_MUST_USE;

#endif
