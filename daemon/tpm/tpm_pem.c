/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm_pem.c - the TSS2 key file ("-----BEGIN TSS2 PRIVATE KEY-----"), as the tpm2
 * OpenSSL provider and tpm2-tss-engine read it (contract in tpm.h):
 *
 *   TPMKey ::= SEQUENCE {
 *     type       OBJECT IDENTIFIER,           -- 2.23.133.10.1.3: loadable key
 *     emptyAuth  [0] EXPLICIT BOOLEAN OPTIONAL,
 *     parent     INTEGER,                     -- 0x40000001: rebuild the owner primary
 *     pubkey     OCTET STRING,                -- marshalled TPM2B_PUBLIC
 *     privkey    OCTET STRING }               -- marshalled TPM2B_PRIVATE
 *
 * Hand-written strict DER over a bounded cursor (style: parsers are pure and bounded),
 * so the format is unit-tested without a TPM or tss2. Later revisions of the format add
 * [1] policy / [2] secret; we cannot satisfy those and refuse such keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>

#include "tpm/tpm.h"

#define TSS2_PEM_NAME "TSS2 PRIVATE KEY"

static const uint8_t OID_LOADABLE[] = { 0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01, 0x03 };

struct wr {
	uint8_t *p;
	size_t cap, off;
	bool overflow;
};

static void put(struct wr *w, const void *src, size_t n)
{
	if (w->overflow || n > w->cap - w->off) {
		w->overflow = true;
		return;
	}
	memcpy(w->p + w->off, src, n);
	w->off += n;
}

static void put_hdr(struct wr *w, uint8_t tag, size_t len)
{
	uint8_t b[4] = { tag };
	size_t n;

	if (len < 0x80) {
		b[1] = (uint8_t)len;
		n = 2;
	} else if (len < 0x100) {
		b[1] = 0x81;
		b[2] = (uint8_t)len;
		n = 3;
	} else if (len < 0x10000) {
		b[1] = 0x82;
		b[2] = (uint8_t)(len >> 8);
		b[3] = (uint8_t)len;
		n = 4;
	} else {
		w->overflow = true;
		return;
	}
	put(w, b, n);
}

static size_t hdr_len(size_t len)
{
	return len < 0x80 ? 2 : len < 0x100 ? 3 : 4;
}

/* DER INTEGER content of an unsigned 32-bit value: minimal, with a 0 byte when the
 * top bit is set (0x81000001 is positive). */
static size_t uint_content(uint32_t v, uint8_t out[5])
{
	uint8_t be[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	size_t i = 0, n = 0;

	while (i < 3 && be[i] == 0 && !(be[i + 1] & 0x80))
		i++;
	if (be[i] & 0x80)
		out[n++] = 0;
	memcpy(out + n, be + i, 4 - i);
	return n + 4 - i;
}

int kg_tss2_key_to_der(const struct kg_tss2_key *k, uint8_t *out, size_t cap, size_t *len)
{
	static const uint8_t EMPTY_AUTH[] = { 0xa0, 0x03, 0x01, 0x01, 0xff };
	struct wr w = { .p = out, .cap = cap };
	uint8_t parent[5];
	size_t plen = uint_content(k->parent, parent), body;

	if (k->pub_len == 0 || k->priv_len == 0 || k->pub_len > KG_TSS2_BLOB_MAX ||
	    k->priv_len > KG_TSS2_BLOB_MAX)
		return -1;
	body = sizeof(OID_LOADABLE) + (k->empty_auth ? sizeof(EMPTY_AUTH) : 0) + 2 + plen +
	       hdr_len(k->pub_len) + k->pub_len + hdr_len(k->priv_len) + k->priv_len;
	put_hdr(&w, 0x30, body);
	put(&w, OID_LOADABLE, sizeof(OID_LOADABLE));
	if (k->empty_auth)
		put(&w, EMPTY_AUTH, sizeof(EMPTY_AUTH));
	put_hdr(&w, 0x02, plen);
	put(&w, parent, plen);
	put_hdr(&w, 0x04, k->pub_len);
	put(&w, k->pub, k->pub_len);
	put_hdr(&w, 0x04, k->priv_len);
	put(&w, k->priv, k->priv_len);
	if (w.overflow)
		return -1;
	*len = w.off;
	return 0;
}

struct rd {
	const uint8_t *p;
	size_t len, off;
};

/* One TLV with the expected tag: its content in *c / *clen. Strict DER lengths. */
static int get_tlv(struct rd *r, uint8_t tag, const uint8_t **c, size_t *clen)
{
	size_t n, l;

	if (r->len - r->off < 2 || r->p[r->off] != tag)
		return -1;
	n = r->p[r->off + 1];
	r->off += 2;
	if (n & 0x80) {
		size_t k = n & 0x7f;

		if (k == 0 || k > 2 || r->len - r->off < k)
			return -1;
		l = 0;
		for (size_t i = 0; i < k; i++)
			l = (l << 8) | r->p[r->off + i];
		r->off += k;
		/* minimal length encoding only */
		if (l < 0x80 || (k == 2 && l < 0x100))
			return -1;
		n = l;
	}
	if (r->len - r->off < n)
		return -1;
	*c = r->p + r->off;
	*clen = n;
	r->off += n;
	return 0;
}

int kg_tss2_key_from_der(const uint8_t *der, size_t len, struct kg_tss2_key *k)
{
	struct rd top = { der, len, 0 }, seq;
	const uint8_t *c;
	size_t clen;
	uint32_t v = 0;

	memset(k, 0, sizeof(*k));
	if (get_tlv(&top, 0x30, &c, &clen) != 0 || top.off != len)
		return -1;
	seq = (struct rd){ c, clen, 0 };
	if (seq.len < sizeof(OID_LOADABLE) ||
	    memcmp(seq.p, OID_LOADABLE, sizeof(OID_LOADABLE)) != 0)
		return -1;
	seq.off = sizeof(OID_LOADABLE);
	if (seq.off < seq.len && seq.p[seq.off] == 0xa0) {
		struct rd ex;

		if (get_tlv(&seq, 0xa0, &c, &clen) != 0)
			return -1;
		ex = (struct rd){ c, clen, 0 };
		if (get_tlv(&ex, 0x01, &c, &clen) != 0 || ex.off != ex.len || clen != 1 ||
		    (c[0] != 0 && c[0] != 0xff))
			return -1;
		k->empty_auth = c[0] == 0xff;
	}
	if (get_tlv(&seq, 0x02, &c, &clen) != 0 || clen == 0 || clen > 5 ||
	    (clen == 5 && c[0] != 0) || (c[0] & 0x80))
		return -1;
	for (size_t i = 0; i < clen; i++)
		v = (v << 8) | c[i];
	k->parent = v;
	/* [1] policy, [2] secret, ... would sit here: refused, not ignored. */
	if (get_tlv(&seq, 0x04, &c, &clen) != 0 || clen == 0 || clen > KG_TSS2_BLOB_MAX)
		return -1;
	memcpy(k->pub, c, clen);
	k->pub_len = clen;
	if (get_tlv(&seq, 0x04, &c, &clen) != 0 || clen == 0 || clen > KG_TSS2_BLOB_MAX)
		return -1;
	memcpy(k->priv, c, clen);
	k->priv_len = clen;
	return seq.off == seq.len ? 0 : -1;
}

char *kg_tss2_key_to_pem(const struct kg_tss2_key *k)
{
	uint8_t der[2 * KG_TSS2_BLOB_MAX + 64];
	size_t len;
	BIO *b = NULL;
	char *text = NULL, *mem;
	long n;

	if (kg_tss2_key_to_der(k, der, sizeof(der), &len) != 0)
		return NULL;
	b = BIO_new(BIO_s_mem());
	if (b == NULL || PEM_write_bio(b, TSS2_PEM_NAME, "", der, (long)len) <= 0)
		goto out;
	n = BIO_get_mem_data(b, &mem);
	text = malloc((size_t)n + 1);
	if (text == NULL)
		goto out;
	memcpy(text, mem, (size_t)n);
	text[n] = '\0';
out:
	OPENSSL_cleanse(der, sizeof(der));
	BIO_free(b);
	return text;
}

int kg_tss2_key_from_pem(const char *text, size_t len, struct kg_tss2_key *k)
{
	BIO *b = BIO_new_mem_buf(text, (int)len);
	char *name = NULL, *header = NULL;
	unsigned char *der = NULL;
	long dlen = 0;
	int rc = -1;

	if (b == NULL || len > 64 * 1024)
		goto out;
	if (PEM_read_bio(b, &name, &header, &der, &dlen) != 1)
		goto out;
	if (strcmp(name, TSS2_PEM_NAME) != 0 || header[0] != '\0')
		goto out;
	rc = kg_tss2_key_from_der(der, (size_t)dlen, k);
out:
	OPENSSL_free(name);
	OPENSSL_free(header);
	if (der)
		OPENSSL_clear_free(der, (size_t)dlen);
	BIO_free(b);
	return rc;
}

bool kg_tss2_file_is_key(const char *path)
{
	static const char begin[] = "-----BEGIN " TSS2_PEM_NAME "-----";
	char line[64] = "";
	FILE *f = fopen(path, "re");
	bool yes;

	if (f == NULL)
		return false;
	yes = fgets(line, sizeof(line), f) != NULL && strncmp(line, begin, strlen(begin)) == 0;
	fclose(f);
	return yes;
}
