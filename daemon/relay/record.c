/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * record.c - TLS 1.2/1.3 AEAD records in user space, for sessions OpenSSL handed off
 * (see tls_keys.c). One EVP_CIPHER_CTX per direction is keyed once; each record only
 * sets the nonce, so a record costs no allocation. Formats:
 *  - TLS 1.3 (RFC 8446 5.2): header 17 03 03 len; body = AEAD(data || type || zero
 *    padding), AAD = the header, nonce = iv XOR seq.
 *  - TLS 1.2 AES-GCM (RFC 5288): header type 03 03 len; body = explicit nonce (8) ||
 *    ciphertext || tag, nonce = salt(4) || explicit, AAD = seq || type || 03 03 ||
 *    plaintext length. Like OpenSSL we send seq as the explicit nonce.
 *  - TLS 1.2 ChaCha20-Poly1305 (RFC 7905): as GCM but nonce = iv XOR seq and no
 *    explicit part.
 * Parsing is bounded by the record's own header; a record failing authentication is
 * wiped, so no caller can use unauthenticated plaintext by mistake.
 */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "ops/err.h"
#include "relay/record.h"

#define TAG_LEN 16
#define EXPLICIT_LEN 8   /* TLS 1.2 GCM per-record nonce */
#define AAD12_LEN 13     /* seq(8) type(1) version(2) length(2) */
#define MIN_CIPHERTEXT 16 /* the shortest AEAD body of any suite: an empty 1.2 ChaCha record */

static const EVP_CIPHER *aead_cipher(uint8_t aead)
{
	switch (aead) {
	case KG_AEAD_AES_128_GCM:
		return EVP_aes_128_gcm();
	case KG_AEAD_AES_256_GCM:
		return EVP_aes_256_gcm();
	case KG_AEAD_CHACHA20_POLY1305:
		return EVP_chacha20_poly1305();
	default:
		return NULL;
	}
}

static bool gcm12(const struct kg_record_dir *d)
{
	return d->version == KG_TLS12 && d->aead != KG_AEAD_CHACHA20_POLY1305;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* The 12-byte nonce: iv XOR seq (1.3, 1.2 ChaCha), or salt || explicit (1.2 GCM). */
static void make_nonce(const struct kg_record_dir *d, const uint8_t *explicit_nonce,
		       uint8_t nonce[KG_TLS_IV_MAX])
{
	uint8_t s[8];

	if (gcm12(d)) {
		memcpy(nonce, d->iv, 4);
		memcpy(nonce + 4, explicit_nonce, EXPLICIT_LEN);
		return;
	}
	memcpy(nonce, d->iv, KG_TLS_IV_MAX);
	put_be64(s, d->seq);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] ^= s[i];
}

static void aad12(const struct kg_record_dir *d, uint8_t type, size_t plain_len,
		  uint8_t aad[AAD12_LEN])
{
	put_be64(aad, d->seq);
	aad[8] = type;
	aad[9] = 0x03;
	aad[10] = 0x03;
	aad[11] = (uint8_t)(plain_len >> 8);
	aad[12] = (uint8_t)plain_len;
}

int kg_record_dir_init(struct kg_record_dir *d, const struct kg_tls_keys *k, bool rx)
{
	const struct kg_tls_dir_keys *dk = rx ? &k->rx : &k->tx;
	const EVP_CIPHER *cipher = aead_cipher((uint8_t)k->aead);
	int enc = rx ? 0 : 1;

	memset(d, 0, sizeof(*d));
	if (cipher == NULL || dk->key_len != kg_tls_aead_key_len(k->aead) ||
	    dk->iv_len != kg_tls_aead_iv_len(k->version, k->aead))
		return KG_E_INVALID;
	d->ctx = EVP_CIPHER_CTX_new();
	if (d->ctx == NULL)
		return KG_E_RESOURCE;
	/* Key once here; per record only the nonce changes (EVP keeps the key schedule). */
	if (EVP_CipherInit_ex(d->ctx, cipher, NULL, NULL, NULL, enc) != 1 ||
	    EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_IVLEN, KG_TLS_IV_MAX, NULL) != 1 ||
	    EVP_CipherInit_ex(d->ctx, NULL, NULL, dk->key, NULL, enc) != 1) {
		ERR_clear_error();
		kg_record_dir_fini(d);
		return KG_E_RESOURCE;
	}
	memcpy(d->iv, dk->iv, dk->iv_len);
	d->iv_len = dk->iv_len;
	d->seq = dk->seq;
	d->version = k->version;
	d->aead = (uint8_t)k->aead;
	return KG_OK;
}

void kg_record_dir_fini(struct kg_record_dir *d)
{
	/* EVP_CIPHER_CTX_free clears the provider's key schedule before freeing it. */
	EVP_CIPHER_CTX_free(d->ctx);
	OPENSSL_cleanse(d, sizeof(*d));
}

size_t kg_record_seal_overhead(uint16_t version, enum kg_aead aead)
{
	if (kg_tls_aead_iv_len(version, aead) == 0)
		return 0;
	if (version == KG_TLS13)
		return KG_TLS_HEADER_LEN + 1 + TAG_LEN;
	if (aead == KG_AEAD_CHACHA20_POLY1305)
		return KG_TLS_HEADER_LEN + TAG_LEN;
	return KG_TLS_HEADER_LEN + EXPLICIT_LEN + TAG_LEN;
}

/* Run the AEAD over aad and in[0..n) (+ the one trailing byte `extra` if given) into
 * out; enc: produce the tag into tag, else check it. 1 on success. */
static int aead_run(struct kg_record_dir *d, const uint8_t nonce[KG_TLS_IV_MAX],
		    const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t n,
		    const uint8_t *extra, uint8_t *out, uint8_t *tag, int enc)
{
	int outl = 0;

	if (EVP_CipherInit_ex(d->ctx, NULL, NULL, NULL, nonce, enc) != 1)
		return 0;
	if (!enc && EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) != 1)
		return 0;
	if (EVP_CipherUpdate(d->ctx, NULL, &outl, aad, (int)aad_len) != 1)
		return 0;
	if (n > 0 && (EVP_CipherUpdate(d->ctx, out, &outl, in, (int)n) != 1 || (size_t)outl != n))
		return 0;
	if (extra != NULL &&
	    (EVP_CipherUpdate(d->ctx, out + n, &outl, extra, 1) != 1 || outl != 1))
		return 0;
	if (EVP_CipherFinal_ex(d->ctx, out + n, &outl) != 1 || outl != 0)
		return 0;
	if (enc && EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, tag) != 1)
		return 0;
	return 1;
}

int kg_record_seal(struct kg_record_dir *tx, uint8_t content_type, const uint8_t *in,
		   size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	size_t over = kg_record_seal_overhead(tx->version, (enum kg_aead)tx->aead);
	uint8_t nonce[KG_TLS_IV_MAX], aad[AAD12_LEN], explicit_nonce[EXPLICIT_LEN];
	size_t body, pre = KG_TLS_HEADER_LEN;
	uint8_t *ct, *tag;
	int ok;

	*out_len = 0;
	/* RFC 8446 5.3 / 5246 6.1: a sequence number must never wrap; the session
	 * ends instead (we cannot rekey). */
	if (tx->ctx == NULL || over == 0 || len > KG_TLS_MAX_PLAINTEXT ||
	    content_type < KG_TLS_CT_ALERT || content_type > KG_TLS_CT_APPLICATION_DATA ||
	    cap < len + over || tx->seq == UINT64_MAX || (in == NULL && len > 0))
		return KG_E_INVALID;
	body = len + over - KG_TLS_HEADER_LEN;
	out[0] = tx->version == KG_TLS13 ? KG_TLS_CT_APPLICATION_DATA : content_type;
	out[1] = 0x03;
	out[2] = 0x03;
	out[3] = (uint8_t)(body >> 8);
	out[4] = (uint8_t)body;
	if (gcm12(tx)) {
		put_be64(explicit_nonce, tx->seq);
		memcpy(out + pre, explicit_nonce, EXPLICIT_LEN);
		pre += EXPLICIT_LEN;
	}
	make_nonce(tx, explicit_nonce, nonce);
	ct = out + pre;
	if (tx->version == KG_TLS13) {
		tag = ct + len + 1;
		ok = aead_run(tx, nonce, out, KG_TLS_HEADER_LEN, in, len, &content_type, ct, tag, 1);
	} else {
		tag = ct + len;
		aad12(tx, content_type, len, aad);
		ok = aead_run(tx, nonce, aad, sizeof(aad), in, len, NULL, ct, tag, 1);
	}
	if (!ok) {
		ERR_clear_error();
		OPENSSL_cleanse(out, len + over);
		return KG_E_INTERNAL;
	}
	tx->seq++;
	*out_len = len + over;
	return KG_OK;
}

int kg_record_seal_alert(struct kg_record_dir *tx, uint8_t level, uint8_t desc, uint8_t *out,
			 size_t cap, size_t *out_len)
{
	const uint8_t alert[2] = { level, desc };

	return kg_record_seal(tx, KG_TLS_CT_ALERT, alert, sizeof(alert), out, cap, out_len);
}

int kg_record_seal_close_notify(struct kg_record_dir *tx, uint8_t *out, size_t cap,
				size_t *out_len)
{
	return kg_record_seal_alert(tx, KG_TLS_ALERT_WARNING, KG_TLS_ALERT_CLOSE_NOTIFY, out, cap,
				    out_len);
}

enum kg_parse kg_record_next(const uint8_t *buf, size_t len, size_t *rec_len)
{
	size_t n;

	*rec_len = 0;
	if (len >= 1 && (buf[0] < KG_TLS_CT_CHANGE_CIPHER_SPEC ||
			 buf[0] > KG_TLS_CT_APPLICATION_DATA))
		return KG_PARSE_MALFORMED;
	/* Every record after the handshake says 03 03, in 1.2 and 1.3 alike. */
	if ((len >= 2 && buf[1] != 0x03) || (len >= 3 && buf[2] != 0x03))
		return KG_PARSE_MALFORMED;
	if (len < KG_TLS_HEADER_LEN)
		return KG_PARSE_SHORT;
	n = (size_t)buf[3] << 8 | buf[4];
	if (n < MIN_CIPHERTEXT || n > KG_TLS_MAX_CIPHERTEXT)
		return KG_PARSE_MALFORMED;
	if (len - KG_TLS_HEADER_LEN < n)
		return KG_PARSE_SHORT;
	*rec_len = KG_TLS_HEADER_LEN + n;
	return KG_PARSE_OK;
}

/* TLS 1.3: strip the zero padding; the last non-zero byte is the real type. */
static int open13(struct kg_record_dir *rx, uint8_t *rec, size_t clen, uint8_t *type,
		  uint8_t **plain, size_t *plain_len)
{
	uint8_t nonce[KG_TLS_IV_MAX];
	uint8_t *p = rec + KG_TLS_HEADER_LEN;
	size_t n;

	/* RFC 8446 5.2: at least the type byte and the tag, and the inner plaintext
	 * at most 2^14 + 1 (record_overflow otherwise). */
	if (rec[0] != KG_TLS_CT_APPLICATION_DATA || clen < 1 + TAG_LEN ||
	    clen - TAG_LEN > KG_TLS_MAX_PLAINTEXT + 1)
		return KG_E_PROTO;
	n = clen - TAG_LEN;
	make_nonce(rx, NULL, nonce);
	if (!aead_run(rx, nonce, rec, KG_TLS_HEADER_LEN, p, n, NULL, p, p + n, 0))
		return KG_E_PROTO;
	while (n > 0 && p[n - 1] == 0)
		n--;
	/* All padding, no type: RFC 8446 5.4 says unexpected_message. */
	if (n == 0)
		return KG_E_PROTO;
	*type = p[n - 1];
	*plain = p;
	*plain_len = n - 1;
	return KG_OK;
}

static int open12(struct kg_record_dir *rx, uint8_t *rec, size_t clen, uint8_t *type,
		  uint8_t **plain, size_t *plain_len)
{
	uint8_t nonce[KG_TLS_IV_MAX], aad[AAD12_LEN];
	size_t pre = gcm12(rx) ? EXPLICIT_LEN : 0;
	uint8_t *p = rec + KG_TLS_HEADER_LEN + pre;
	size_t n;

	if (clen < pre + TAG_LEN || clen - pre - TAG_LEN > KG_TLS_MAX_PLAINTEXT)
		return KG_E_PROTO;
	n = clen - pre - TAG_LEN;
	make_nonce(rx, rec + KG_TLS_HEADER_LEN, nonce);
	aad12(rx, rec[0], n, aad);
	if (!aead_run(rx, nonce, aad, sizeof(aad), p, n, NULL, p, p + n, 0))
		return KG_E_PROTO;
	*type = rec[0];
	*plain = p;
	*plain_len = n;
	return KG_OK;
}

int kg_record_open(struct kg_record_dir *rx, uint8_t *rec, size_t len, uint8_t *content_type,
		   uint8_t **plain, size_t *plain_len)
{
	size_t rl;
	uint8_t type = 0;
	int ret;

	*plain = NULL;
	*plain_len = 0;
	*content_type = 0;
	/* The peer may not wrap the sequence number either. */
	if (rx->ctx == NULL || rx->seq == UINT64_MAX ||
	    kg_record_next(rec, len, &rl) != KG_PARSE_OK || rl != len)
		return KG_E_PROTO;
	if (rx->version == KG_TLS13)
		ret = open13(rx, rec, len - KG_TLS_HEADER_LEN, &type, plain, plain_len);
	else
		ret = open12(rx, rec, len - KG_TLS_HEADER_LEN, &type, plain, plain_len);
	/* After the handshake only alerts, handshake (renegotiation / KeyUpdate: the
	 * caller ends the session) and data are legal; a CCS here is unexpected. */
	if (ret == KG_OK && (type < KG_TLS_CT_ALERT || type > KG_TLS_CT_APPLICATION_DATA))
		ret = KG_E_PROTO;
	if (ret != KG_OK) {
		ERR_clear_error();
		OPENSSL_cleanse(rec + KG_TLS_HEADER_LEN, len - KG_TLS_HEADER_LEN);
		*plain = NULL;
		*plain_len = 0;
		return KG_E_PROTO;
	}
	*content_type = type;
	rx->seq++;
	return KG_OK;
}
