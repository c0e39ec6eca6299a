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

static uint64_t rd_u64(struct rd *r)
{
	uint64_t hi = rd_u32(r);

	return hi << 32 | rd_u32(r);
}

static void rd_bytes(struct rd *r, void *out, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = true;
		return;
	}
	memcpy(out, r->p + r->off, n);
	r->off += n;
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

/* A length-prefixed text (u8 length) into out (cap bytes with the NUL). */
static void rd_str8(struct rd *r, char *out, size_t cap)
{
	size_t n = rd_u8(r);

	rd_text(r, n, out, cap);
}

/* One session record (u16 length, then the fields in struct kg_ho_session order). */
static void decode_session(struct rd *r, struct kg_ho_session *s)
{
	uint16_t reclen = rd_u16(r);
	size_t end;

	if (r->bad || r->len - r->off < reclen) {
		r->bad = true;
		return;
	}
	end = r->off + reclen;
	memset(s, 0, sizeof(*s));
	s->mode = rd_u8(r);
	s->method = rd_u8(r);
	s->mqtt_level = rd_u8(r);
	s->cred_kind = rd_u8(r);
	s->username_check = rd_u8(r);
	s->flags = rd_u16(r);
	s->listen_idx = rd_u16(r);
	s->worker = rd_u16(r);
	s->keepalive = rd_u16(r);
	s->module_off = rd_u16(r);
	s->reason = rd_u16(r);
	s->idle_ms = rd_u32(r);
	s->idle_for_ms = rd_u32(r);
	s->cid = rd_u64(r);
	s->since = (int64_t)rd_u64(r);
	s->not_after = (int64_t)rd_u64(r);
	s->resumed_verified_at = (int64_t)rd_u64(r);
	s->bytes_up = rd_u64(r);
	s->bytes_down = rd_u64(r);
	s->cookie[0] = rd_u64(r);
	s->cookie[1] = rd_u64(r);
	rd_str8(r, s->device_id, sizeof(s->device_id));
	rd_str8(r, s->thumbprint, sizeof(s->thumbprint));
	rd_str8(r, s->ca_name, sizeof(s->ca_name));
	rd_str8(r, s->backend, sizeof(s->backend));
	rd_str8(r, s->peer, sizeof(s->peer));
	s->peer_salen = rd_u8(r);
	if (s->peer_salen > sizeof(s->peer_sa))
		r->bad = true;
	rd_bytes(r, s->peer_sa, s->peer_salen);
	rd_bytes(r, s->leaf_issuer_md, sizeof(s->leaf_issuer_md));
	s->leaf_serial_len = rd_u8(r);
	rd_bytes(r, s->leaf_serial, sizeof(s->leaf_serial));
	s->leaf_serial_neg = rd_u8(r) != 0;
	/* The record says exactly how long it is; a device id is never empty, the flags
	 * are the ones this build knows. */
	if (r->bad || r->off != end || s->device_id[0] == '\0' || (s->flags & ~KG_HO_S_ALL) != 0 ||
	    s->leaf_serial_len > sizeof(s->leaf_serial) || s->module_off > strlen(s->device_id))
		r->bad = true;
}

bool kg_ho_session_next(const uint8_t **cur, size_t *left, struct kg_ho_session *out)
{
	struct rd r = { .p = *cur, .len = *left };

	if (*left == 0)
		return false;
	decode_session(&r, out);
	if (r.bad)
		return false;
	*cur += r.off;
	*left -= r.off;
	return true;
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
	m->n_sessions = 0;
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
	case KG_HO_ADOPT:
		m->pid = rd_u32(&r);
		break;
	case KG_HO_SESSIONS: {
		struct kg_ho_session one;
		size_t at;

		m->pid = rd_u32(&r);
		m->n_sessions = rd_u16(&r);
		if (r.bad || m->n_sessions == 0 || m->n_sessions > KG_HO_SESSIONS_MAX)
			return KG_HO_MALFORMED;
		at = r.off;
		for (uint16_t i = 0; i < m->n_sessions && !r.bad; i++)
			decode_session(&r, &one);
		if (r.bad)
			return KG_HO_MALFORMED;
		m->text = (const char *)r.p + at;
		m->text_len = r.off - at;
		break;
	}
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

static void wr_u64(struct wr *w, uint64_t v)
{
	wr_u32(w, (uint32_t)(v >> 32));
	wr_u32(w, (uint32_t)v);
}

/* u8 length, then the text (without its NUL); too long for cap or 255: bad. */
static void wr_str8(struct wr *w, const char *text, size_t cap)
{
	size_t n = strnlen(text, cap);

	if (n >= cap || n > 255) {
		w->bad = true;
		return;
	}
	wr_u8(w, (uint8_t)n);
	wr_bytes(w, text, n);
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

size_t kg_ho_encode_adopt(uint8_t *out, size_t cap, uint32_t pid)
{
	struct wr w = start(out, cap, KG_HO_ADOPT);

	wr_u32(&w, pid);
	return finish(&w);
}

static void encode_session(struct wr *w, const struct kg_ho_session *s)
{
	size_t at;
	uint16_t reclen;

	if (s->peer_salen > sizeof(s->peer_sa) || s->leaf_serial_len > sizeof(s->leaf_serial) ||
	    (s->flags & ~KG_HO_S_ALL) != 0 || s->device_id[0] == '\0') {
		w->bad = true;
		return;
	}
	wr_u16(w, 0);   /* the record's length, written below */
	at = w->off;
	wr_u8(w, s->mode);
	wr_u8(w, s->method);
	wr_u8(w, s->mqtt_level);
	wr_u8(w, s->cred_kind);
	wr_u8(w, s->username_check);
	wr_u16(w, s->flags);
	wr_u16(w, s->listen_idx);
	wr_u16(w, s->worker);
	wr_u16(w, s->keepalive);
	wr_u16(w, s->module_off);
	wr_u16(w, s->reason);
	wr_u32(w, s->idle_ms);
	wr_u32(w, s->idle_for_ms);
	wr_u64(w, s->cid);
	wr_u64(w, (uint64_t)s->since);
	wr_u64(w, (uint64_t)s->not_after);
	wr_u64(w, (uint64_t)s->resumed_verified_at);
	wr_u64(w, s->bytes_up);
	wr_u64(w, s->bytes_down);
	wr_u64(w, s->cookie[0]);
	wr_u64(w, s->cookie[1]);
	wr_str8(w, s->device_id, sizeof(s->device_id));
	wr_str8(w, s->thumbprint, sizeof(s->thumbprint));
	wr_str8(w, s->ca_name, sizeof(s->ca_name));
	wr_str8(w, s->backend, sizeof(s->backend));
	wr_str8(w, s->peer, sizeof(s->peer));
	wr_u8(w, s->peer_salen);
	wr_bytes(w, s->peer_sa, s->peer_salen);
	wr_bytes(w, s->leaf_issuer_md, sizeof(s->leaf_issuer_md));
	wr_u8(w, s->leaf_serial_len);
	wr_bytes(w, s->leaf_serial, sizeof(s->leaf_serial));
	wr_u8(w, s->leaf_serial_neg ? 1 : 0);
	if (w->bad)
		return;
	reclen = (uint16_t)(w->off - at);
	w->p[at - 2] = (uint8_t)(reclen >> 8);
	w->p[at - 1] = (uint8_t)reclen;
}

size_t kg_ho_encode_sessions(uint8_t *out, size_t cap, uint32_t pid,
			     const struct kg_ho_session *s, uint16_t n)
{
	struct wr w = start(out, cap, KG_HO_SESSIONS);

	if (n == 0 || n > KG_HO_SESSIONS_MAX)
		return 0;
	wr_u32(&w, pid);
	wr_u16(&w, n);
	for (uint16_t i = 0; i < n && !w.bad; i++)
		encode_session(&w, &s[i]);
	return finish(&w);
}
