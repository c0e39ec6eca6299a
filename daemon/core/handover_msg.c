/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * handover_msg.c - the handover channel's frames (contract in handover_msg.h). Pure:
 * one bounded cursor reads, one bounded writer writes; a frame that lies about a length
 * is malformed, never a read past the buffer.
 */
#include <string.h>

#include "core/handover_msg.h"

/* ---- reading ------------------------------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

static uint8_t rd_u8(struct rd *r)
{
	if (r->bad || r->len - r->off < 1) {
		r->bad = true;
		return 0;
	}
	return r->p[r->off++];
}

static uint16_t rd_u16(struct rd *r)
{
	uint16_t hi = rd_u8(r);

	return (uint16_t)(hi << 8 | rd_u8(r));
}

static uint32_t rd_u32(struct rd *r)
{
	uint32_t hi = rd_u16(r);

	return hi << 16 | rd_u16(r);
}

/* n bytes of text into out (NUL-terminated, cap > n); NUL bytes inside are malformed. */
static void rd_text(struct rd *r, size_t n, char *out, size_t cap)
{
	if (r->bad || n >= cap || r->len - r->off < n || memchr(r->p + r->off, '\0', n) != NULL) {
		r->bad = true;
		return;
	}
	memcpy(out, r->p + r->off, n);
	out[n] = '\0';
	r->off += n;
}

static enum kg_ho_parse decode_fds(struct rd *r, struct kg_ho_msg *m)
{
	m->pid = rd_u32(r);
	m->workers = rd_u16(r);
	m->n_fds = rd_u16(r);
	if (r->bad || m->n_fds > KG_HO_MAX_FDS)
		return KG_HO_MALFORMED;
	for (uint16_t i = 0; i < m->n_fds; i++) {
		struct kg_ho_fd *f = &m->fds[i];
		size_t tl;

		f->kind = rd_u8(r);
		f->worker = rd_u16(r);
		f->index = rd_u16(r);
		tl = rd_u8(r);
		rd_text(r, tl, f->text, sizeof(f->text));
		if (r->bad || f->kind == 0 || f->kind >= KG_HO_FD_KIND_MAX)
			return KG_HO_MALFORMED;
	}
	return KG_HO_OK;
}

enum kg_ho_parse kg_ho_decode(const uint8_t *buf, size_t len, struct kg_ho_msg *m, size_t *used)
{
	struct rd r;
	uint32_t plen;
	uint8_t version, type;
	enum kg_ho_parse rc = KG_HO_OK;

	*used = 0;
	/* What there is of the magic must match, even before the header is whole. */
	if (memcmp(buf, KG_HO_MAGIC, len < 4 ? len : 4) != 0)
		return KG_HO_MALFORMED;
	if (len < KG_HO_HEADER)
		return KG_HO_SHORT;
	version = buf[4];
	type = buf[5];
	if (version != KG_HO_VERSION)
		return KG_HO_UNSUPPORTED;
	if (buf[6] != 0 || buf[7] != 0)
		return KG_HO_MALFORMED;
	plen = (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 | (uint32_t)buf[10] << 8 | buf[11];
	if (plen > KG_HO_PAYLOAD_MAX)
		return KG_HO_MALFORMED;
	if (len - KG_HO_HEADER < plen)
		return KG_HO_SHORT;
	memset(m, 0, offsetof(struct kg_ho_msg, fds));
	m->fds[0].text[0] = '\0';
	m->n_fds = 0;
	m->connections = m->sessions = m->handshakes = 0;
	m->done = false;
	m->seq = 0;
	m->text = NULL;
	m->text_len = 0;
	m->raw_type = type;
	m->type = type < KG_HO_TYPE_MAX && type != KG_HO_UNKNOWN ? (enum kg_ho_type)type
								 : KG_HO_UNKNOWN;
	r = (struct rd){ .p = buf + KG_HO_HEADER, .len = plen };
	switch (m->type) {
	case KG_HO_FDS:
		rc = decode_fds(&r, m);
		break;
	case KG_HO_ACCEPTING:
		m->pid = rd_u32(&r);
		break;
	case KG_HO_FORWARD: {
		uint16_t tl = rd_u16(&r);

		if (r.bad || tl == 0 || tl > KG_HO_TEXT_MAX || r.len - r.off < tl ||
		    memchr(r.p + r.off, '\0', tl) != NULL || memchr(r.p + r.off, '\n', tl) != NULL)
			return KG_HO_MALFORMED;
		m->text = (const char *)r.p + r.off;
		m->text_len = tl;
		r.off += tl;
		break;
	}
	case KG_HO_STATE: {
		uint8_t done;

		m->pid = rd_u32(&r);
		m->connections = rd_u32(&r);
		m->sessions = rd_u32(&r);
		m->handshakes = rd_u32(&r);
		done = rd_u8(&r);
		if (done > 1)
			return KG_HO_MALFORMED;
		m->done = done == 1;
		break;
	}
	case KG_HO_LIST:
		m->seq = rd_u32(&r);
		break;
	case KG_HO_LIST_REPLY:
		m->seq = rd_u32(&r);
		if (r.bad)
			return KG_HO_MALFORMED;
		m->text = (const char *)r.p + r.off;
		m->text_len = r.len - r.off;
		r.off = r.len;
		break;
	case KG_HO_UNKNOWN:
	default:
		r.off = r.len;   /* a newer peer's message: skipped whole */
		break;
	}
	if (rc != KG_HO_OK)
		return rc;
	/* Every byte of a known message is accounted for: trailing bytes are a lie. */
	if (r.bad || r.off != r.len)
		return KG_HO_MALFORMED;
	*used = KG_HO_HEADER + plen;
	return KG_HO_OK;
}

/* ---- writing ------------------------------------------------------------------- */

struct wr {
	uint8_t *p;
	size_t cap, off;
	bool bad;
};

static void wr_bytes(struct wr *w, const void *p, size_t n)
{
	if (w->bad || w->cap - w->off < n) {
		w->bad = true;
		return;
	}
	if (n > 0)
		memcpy(w->p + w->off, p, n);
	w->off += n;
}

static void wr_u8(struct wr *w, uint8_t v)
{
	wr_bytes(w, &v, 1);
}

static void wr_u16(struct wr *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	wr_bytes(w, b, 2);
}

static void wr_u32(struct wr *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	wr_bytes(w, b, 4);
}

/* The header with a zero length; finish() writes the length. */
static struct wr start(uint8_t *out, size_t cap, enum kg_ho_type type)
{
	struct wr w = { .p = out, .cap = cap };

	wr_bytes(&w, KG_HO_MAGIC, 4);
	wr_u8(&w, KG_HO_VERSION);
	wr_u8(&w, (uint8_t)type);
	wr_u16(&w, 0);
	wr_u32(&w, 0);
	return w;
}

static size_t finish(struct wr *w)
{
	size_t plen = w->off - KG_HO_HEADER;

	if (w->bad || plen > KG_HO_PAYLOAD_MAX)
		return 0;
	w->p[8] = (uint8_t)(plen >> 24);
	w->p[9] = (uint8_t)(plen >> 16);
	w->p[10] = (uint8_t)(plen >> 8);
	w->p[11] = (uint8_t)plen;
	return w->off;
}

size_t kg_ho_encode_fds(uint8_t *out, size_t cap, uint32_t pid, uint16_t workers,
			const struct kg_ho_fd *fds, uint16_t n_fds)
{
	struct wr w = start(out, cap, KG_HO_FDS);

	if (n_fds > KG_HO_MAX_FDS)
		return 0;
	wr_u32(&w, pid);
	wr_u16(&w, workers);
	wr_u16(&w, n_fds);
	for (uint16_t i = 0; i < n_fds; i++) {
		size_t tl = strnlen(fds[i].text, sizeof(fds[i].text));

		if (tl > KG_HO_TEXT_MAX || fds[i].kind == 0 || fds[i].kind >= KG_HO_FD_KIND_MAX)
			return 0;
		wr_u8(&w, fds[i].kind);
		wr_u16(&w, fds[i].worker);
		wr_u16(&w, fds[i].index);
		wr_u8(&w, (uint8_t)tl);
		wr_bytes(&w, fds[i].text, tl);
	}
	return finish(&w);
}

size_t kg_ho_encode_accepting(uint8_t *out, size_t cap, uint32_t pid)
{
	struct wr w = start(out, cap, KG_HO_ACCEPTING);

	wr_u32(&w, pid);
	return finish(&w);
}

size_t kg_ho_encode_forward(uint8_t *out, size_t cap, const char *line)
{
	struct wr w = start(out, cap, KG_HO_FORWARD);
	size_t tl = strnlen(line, KG_HO_TEXT_MAX + 1);

	if (tl == 0 || tl > KG_HO_TEXT_MAX || memchr(line, '\n', tl) != NULL)
		return 0;
	wr_u16(&w, (uint16_t)tl);
	wr_bytes(&w, line, tl);
	return finish(&w);
}

size_t kg_ho_encode_state(uint8_t *out, size_t cap, uint32_t pid, uint32_t connections,
			  uint32_t sessions, uint32_t handshakes, bool done)
{
	struct wr w = start(out, cap, KG_HO_STATE);

	wr_u32(&w, pid);
	wr_u32(&w, connections);
	wr_u32(&w, sessions);
	wr_u32(&w, handshakes);
	wr_u8(&w, done ? 1 : 0);
	return finish(&w);
}

size_t kg_ho_encode_list(uint8_t *out, size_t cap, uint32_t seq)
{
	struct wr w = start(out, cap, KG_HO_LIST);

	wr_u32(&w, seq);
	return finish(&w);
}

size_t kg_ho_encode_list_reply(uint8_t *out, size_t cap, uint32_t seq, const char *text,
			       size_t text_len)
{
	struct wr w = start(out, cap, KG_HO_LIST_REPLY);

	if (text_len > KG_HO_PAYLOAD_MAX - 4)
		return 0;
	wr_u32(&w, seq);
	wr_bytes(&w, text, text_len);
	return finish(&w);
}
