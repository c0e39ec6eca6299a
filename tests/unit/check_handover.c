/* SPDX-License-Identifier: BSD-2-Clause */
/* check_handover.c - units of the listener handover channel's frames (handover_msg.h):
 * every message round-trips; every truncation of a valid frame is KG_HO_SHORT (never a
 * read past it); garbage, lying lengths, bad values and trailing bytes are malformed;
 * another version is unsupported; an unknown type within version 1 is skipped whole;
 * encoders refuse what they cannot say. The live handover's session records likewise,
 * and which sessions may travel (kg_relay_transferable()). Also the [daemon]
 * drain_timeout key. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fdstore.h"
#include "core/handover_msg.h"
#include "ops/config.h"
#include "relay/pipe_pool.h"
#include "relay/relay.h"
#include "testlib.h"

static struct kg_ho_msg *msg_new(void)
{
	struct kg_ho_msg *m = calloc(1, sizeof(*m));

	ck_assert_ptr_nonnull(m);
	return m;
}

/* Decode buf whole: OK, the whole length used. */
static void decode_ok(const uint8_t *buf, size_t len, struct kg_ho_msg *m)
{
	size_t used = 99;

	ck_assert_int_eq(kg_ho_decode(buf, len, m, &used), KG_HO_OK);
	ck_assert_uint_eq(used, len);
}

/* Every proper prefix of a valid frame asks for more bytes and uses none. */
static void prefixes_short(const uint8_t *buf, size_t len)
{
	struct kg_ho_msg *m = msg_new();

	for (size_t n = 0; n < len; n++) {
		/* a copy of exactly n bytes: ASan sees any read past it */
		uint8_t *p = malloc(n ? n : 1);
		size_t used = 99;

		memcpy(p, buf, n);
		ck_assert_msg(kg_ho_decode(p, n, m, &used) == KG_HO_SHORT, "prefix %zu of %zu", n, len);
		ck_assert_uint_eq(used, 0);
		free(p);
	}
	free(m);
}

static size_t fds_frame(uint8_t *out, size_t cap)
{
	struct kg_ho_fd fds[4] = {
		{ .kind = KG_HO_FD_LISTEN, .worker = 0, .index = 0, .text = "0.0.0.0:8883" },
		{ .kind = KG_HO_FD_LISTEN, .worker = 1, .index = 1, .text = "[::]:8883" },
		{ .kind = KG_HO_FD_LOCK },
		{ .kind = KG_HO_FD_XDP_LINK, .index = 0, .text = "eth0" },
	};

	return kg_ho_encode_fds(out, cap, 4242, 2, fds, 4);
}

START_TEST(fds_round_trip)
{
	uint8_t buf[4096];
	size_t n = fds_frame(buf, sizeof(buf));
	struct kg_ho_msg *m = msg_new();

	ck_assert_uint_gt(n, KG_HO_HEADER);
	ck_assert_mem_eq(buf, "KGHO\x01\x01\x00\x00", 8);
	decode_ok(buf, n, m);
	ck_assert_int_eq(m->type, KG_HO_FDS);
	ck_assert_uint_eq(m->pid, 4242);
	ck_assert_uint_eq(m->workers, 2);
	ck_assert_uint_eq(m->n_fds, 4);
	ck_assert_uint_eq(m->fds[0].kind, KG_HO_FD_LISTEN);
	ck_assert_str_eq(m->fds[0].text, "0.0.0.0:8883");
	ck_assert_uint_eq(m->fds[1].worker, 1);
	ck_assert_uint_eq(m->fds[1].index, 1);
	ck_assert_str_eq(m->fds[1].text, "[::]:8883");
	ck_assert_uint_eq(m->fds[2].kind, KG_HO_FD_LOCK);
	ck_assert_str_eq(m->fds[2].text, "");
	ck_assert_str_eq(m->fds[3].text, "eth0");
	prefixes_short(buf, n);
	free(m);
}
END_TEST

START_TEST(small_messages_round_trip)
{
	uint8_t buf[1024];
	struct kg_ho_msg *m = msg_new();
	size_t n;

	n = kg_ho_encode_accepting(buf, sizeof(buf), 77);
	decode_ok(buf, n, m);
	ck_assert_int_eq(m->type, KG_HO_ACCEPTING);
	ck_assert_uint_eq(m->pid, 77);
	prefixes_short(buf, n);

	n = kg_ho_encode_forward(buf, sizeof(buf), "device-changed sensor-1");
	decode_ok(buf, n, m);
	ck_assert_int_eq(m->type, KG_HO_FORWARD);
	ck_assert_uint_eq(m->text_len, strlen("device-changed sensor-1"));
	ck_assert_mem_eq(m->text, "device-changed sensor-1", m->text_len);
	prefixes_short(buf, n);

	n = kg_ho_encode_state(buf, sizeof(buf), 9, 100, 90, 7, true);
	decode_ok(buf, n, m);
	ck_assert_int_eq(m->type, KG_HO_STATE);
	ck_assert_uint_eq(m->connections, 100);
	ck_assert_uint_eq(m->sessions, 90);
	ck_assert_uint_eq(m->handshakes, 7);
	ck_assert(m->done);
	prefixes_short(buf, n);

	n = kg_ho_encode_list(buf, sizeof(buf), 5);
	decode_ok(buf, n, m);
	ck_assert_int_eq(m->type, KG_HO_LIST);
	ck_assert_uint_eq(m->seq, 5);

	n = kg_ho_encode_list_reply(buf, sizeof(buf), 5, "{\"id\":1}\n", 9);
	decode_ok(buf, n, m);
	ck_assert_int_eq(m->type, KG_HO_LIST_REPLY);
	ck_assert_uint_eq(m->seq, 5);
	ck_assert_uint_eq(m->text_len, 9);
	ck_assert_mem_eq(m->text, "{\"id\":1}\n", 9);
	prefixes_short(buf, n);

	/* an empty list is a valid reply */
	n = kg_ho_encode_list_reply(buf, sizeof(buf), 6, "", 0);
	decode_ok(buf, n, m);
	ck_assert_uint_eq(m->text_len, 0);
	free(m);
}
END_TEST

START_TEST(two_frames_back_to_back)
{
	uint8_t buf[256];
	struct kg_ho_msg *m = msg_new();
	size_t a = kg_ho_encode_state(buf, sizeof(buf), 1, 2, 3, 4, false);
	size_t b = kg_ho_encode_accepting(buf + a, sizeof(buf) - a, 8), used;

	ck_assert_int_eq(kg_ho_decode(buf, a + b, m, &used), KG_HO_OK);
	ck_assert_uint_eq(used, a);
	ck_assert_int_eq(m->type, KG_HO_STATE);
	ck_assert_int_eq(kg_ho_decode(buf + used, b, m, &used), KG_HO_OK);
	ck_assert_int_eq(m->type, KG_HO_ACCEPTING);
	free(m);
}
END_TEST

/* One mutation of a valid frame and the verdict it must get. */
static const struct {
	const char *name;
	size_t off;          /* byte to overwrite ... */
	uint8_t val;         /* ... with this */
	enum kg_ho_parse want;
} mutations[] = {
	{ "bad magic", 0, 'X', KG_HO_MALFORMED },
	{ "bad magic, last byte", 3, 'x', KG_HO_MALFORMED },
	{ "version 2", 4, 2, KG_HO_UNSUPPORTED },
	{ "version 0", 4, 0, KG_HO_UNSUPPORTED },
	{ "reserved byte", 6, 1, KG_HO_MALFORMED },
	{ "reserved byte 2", 7, 0x80, KG_HO_MALFORMED },
	{ "length beyond the cap", 8, 0x7f, KG_HO_MALFORMED },
	{ "length one short (trailing byte)", 11, 0, KG_HO_MALFORMED },
	{ "fd count past the entries", 19, 9, KG_HO_MALFORMED },
	{ "fd count beyond KG_HO_MAX_FDS", 18, 0xff, KG_HO_MALFORMED },
	{ "fd kind 0", 20, 0, KG_HO_MALFORMED },
	{ "fd kind unknown", 20, 99, KG_HO_MALFORMED },
	{ "text length past the frame", 25, 200, KG_HO_MALFORMED },
	{ "NUL inside a text", 27, 0, KG_HO_MALFORMED },
};

START_TEST(mutated_fds_frame)
{
	uint8_t buf[4096];
	size_t n = fds_frame(buf, sizeof(buf)), used = 99;
	struct kg_ho_msg *m = msg_new();

	/* the length field is 4 bytes big-endian at 8..11; mutations at 11 shrink it by
	 * rewriting the low byte, so compute that one from the real length */
	ck_assert_uint_lt(n - KG_HO_HEADER, 256);
	buf[11 - 0] = (uint8_t)(n - KG_HO_HEADER);
	if (strcmp(mutations[_i].name, "length one short (trailing byte)") == 0) {
		/* the frame still holds all n bytes: one byte too few is declared, so the
		 * payload ends inside an entry */
		buf[11] = (uint8_t)(n - KG_HO_HEADER - 1);
	} else {
		buf[mutations[_i].off] = mutations[_i].val;
	}
	ck_assert_msg(kg_ho_decode(buf, n, m, &used) == mutations[_i].want, "%s: got %d",
		      mutations[_i].name, kg_ho_decode(buf, n, m, &used));
	if (mutations[_i].want != KG_HO_OK)
		ck_assert_uint_eq(used, 0);
	free(m);
}
END_TEST

START_TEST(trailing_bytes_in_payload)
{
	uint8_t buf[64];
	struct kg_ho_msg *m = msg_new();
	size_t n = kg_ho_encode_accepting(buf, sizeof(buf), 1), used;

	/* declare one payload byte more and provide it: a known message does not end there */
	buf[11]++;
	buf[n] = 0;
	ck_assert_int_eq(kg_ho_decode(buf, n + 1, m, &used), KG_HO_MALFORMED);
	/* a STATE whose done flag is neither 0 nor 1 */
	n = kg_ho_encode_state(buf, sizeof(buf), 1, 1, 1, 1, true);
	buf[n - 1] = 2;
	ck_assert_int_eq(kg_ho_decode(buf, n, m, &used), KG_HO_MALFORMED);
	free(m);
}
END_TEST

START_TEST(forward_text_rules)
{
	uint8_t buf[1024];
	struct kg_ho_msg *m = msg_new();
	char long_line[KG_HO_TEXT_MAX + 2];
	size_t n, used;

	ck_assert_uint_eq(kg_ho_encode_forward(buf, sizeof(buf), ""), 0);
	ck_assert_uint_eq(kg_ho_encode_forward(buf, sizeof(buf), "kill a\nreload"), 0);
	memset(long_line, 'a', sizeof(long_line) - 1);
	long_line[sizeof(long_line) - 1] = '\0';
	ck_assert_uint_eq(kg_ho_encode_forward(buf, sizeof(buf), long_line), 0);
	long_line[KG_HO_TEXT_MAX] = '\0';
	ck_assert_uint_gt(kg_ho_encode_forward(buf, sizeof(buf), long_line), 0);
	/* a newline or NUL smuggled into a decoded FORWARD is malformed */
	n = kg_ho_encode_forward(buf, sizeof(buf), "kill ab");
	buf[n - 2] = '\n';
	ck_assert_int_eq(kg_ho_decode(buf, n, m, &used), KG_HO_MALFORMED);
	buf[n - 2] = '\0';
	ck_assert_int_eq(kg_ho_decode(buf, n, m, &used), KG_HO_MALFORMED);
	/* an empty FORWARD */
	n = kg_ho_encode_forward(buf, sizeof(buf), "k");
	buf[12] = 0;
	buf[13] = 0;
	ck_assert_int_eq(kg_ho_decode(buf, n, m, &used), KG_HO_MALFORMED);
	free(m);
}
END_TEST

START_TEST(unknown_type_skipped)
{
	uint8_t buf[64];
	struct kg_ho_msg *m = msg_new();
	size_t n = kg_ho_encode_list(buf, sizeof(buf), 3), used;

	/* a later slice's message (the live-session handover): skipped whole, not an error */
	buf[5] = 42;
	ck_assert_int_eq(kg_ho_decode(buf, n, m, &used), KG_HO_OK);
	ck_assert_int_eq(m->type, KG_HO_UNKNOWN);
	ck_assert_uint_eq(m->raw_type, 42);
	ck_assert_uint_eq(used, n);
	buf[5] = 0;   /* type 0 is never sent: unknown too */
	ck_assert_int_eq(kg_ho_decode(buf, n, m, &used), KG_HO_OK);
	ck_assert_int_eq(m->type, KG_HO_UNKNOWN);
	free(m);
}
END_TEST

START_TEST(encoders_refuse)
{
	uint8_t buf[64];
	struct kg_ho_fd *fds = calloc(KG_HO_MAX_FDS + 1, sizeof(*fds));
	uint8_t *big = malloc(1 << 20);

	ck_assert_ptr_nonnull(fds);
	ck_assert_ptr_nonnull(big);
	for (size_t i = 0; i <= KG_HO_MAX_FDS; i++)
		fds[i].kind = KG_HO_FD_LOCK;
	ck_assert_uint_eq(kg_ho_encode_fds(big, 1 << 20, 1, 1, fds, KG_HO_MAX_FDS + 1), 0);
	ck_assert_uint_gt(kg_ho_encode_fds(big, 1 << 20, 1, 1, fds, KG_HO_MAX_FDS), 0);
	fds[0].kind = 0;
	ck_assert_uint_eq(kg_ho_encode_fds(big, 1 << 20, 1, 1, fds, 1), 0);
	fds[0].kind = KG_HO_FD_KIND_MAX;
	ck_assert_uint_eq(kg_ho_encode_fds(big, 1 << 20, 1, 1, fds, 1), 0);
	/* too small a buffer: 0, never a partial frame */
	ck_assert_uint_eq(kg_ho_encode_state(buf, KG_HO_HEADER + 3, 1, 1, 1, 1, false), 0);
	ck_assert_uint_eq(kg_ho_encode_list_reply(buf, sizeof(buf), 1, "x", KG_HO_PAYLOAD_MAX), 0);
	free(fds);
	free(big);
}
END_TEST

/* Garbage of every length never crashes and never reports more than it was given. */
START_TEST(garbage)
{
	struct kg_ho_msg *m = msg_new();
	uint32_t seed = 12345;

	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)(seed % 300), used = 0;
		uint8_t *p = malloc(len ? len : 1);
		enum kg_ho_parse r;

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			p[i] = (uint8_t)(seed >> 16);
		}
		/* half the rounds start like a frame, to get past the magic */
		if (round % 2 == 0 && len >= 6) {
			memcpy(p, "KGHO\x01", 5);
			p[5] = (uint8_t)(round % 8);
			if (len >= 12) {
				p[6] = p[7] = 0;
				p[8] = p[9] = 0;
			}
		}
		r = kg_ho_decode(p, len, m, &used);
		ck_assert(r == KG_HO_OK || r == KG_HO_SHORT || r == KG_HO_MALFORMED ||
			  r == KG_HO_UNSUPPORTED);
		ck_assert_uint_le(used, len);
		if (r != KG_HO_OK)
			ck_assert_uint_eq(used, 0);
		free(p);
		seed = seed * 1103515245u + 12345u;
	}
	free(m);
}
END_TEST

START_TEST(drain_timeout_key)
{
	struct kg_config *cfg = calloc(1, sizeof(*cfg));
	char err[KG_ERRBUF];
	static const char base[] = "[daemon]\ncert = c.pem\nkey = k.pem\nregistry = r.db\n";
	char text[512];

	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(kg_config_parse_string(base, "d.conf", cfg, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg->drain_timeout, 300);
	snprintf(text, sizeof(text), "%sdrain_timeout = 10m\n", base);
	ck_assert_int_eq(kg_config_parse_string(text, "d.conf", cfg, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg->drain_timeout, 600);
	snprintf(text, sizeof(text), "%sdrain_timeout = 0\n", base);
	ck_assert_int_eq(kg_config_parse_string(text, "d.conf", cfg, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg->drain_timeout, 0);
	snprintf(text, sizeof(text), "%sdrain_timeout = 2d\n", base);
	ck_assert_int_lt(kg_config_parse_string(text, "d.conf", cfg, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "drain_timeout"));
	free(cfg);
}
END_TEST

/* A socket systemd kept is used only for the listen address it is bound to (fdstore.h):
 * family, address and port must all agree. */
START_TEST(fdstore_addr_match)
{
	struct kg_config *cfg = calloc(1, sizeof(*cfg));
	char err[KG_ERRBUF];
	static const char text[] = "[daemon]\ncert = c.pem\nkey = k.pem\nregistry = r.db\n"
				   "listen = 0.0.0.0:8883, [::]:8883, 127.0.0.1:1883, [::1]:9000\n";
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(8883) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(8883),
				   .sin6_addr = IN6ADDR_ANY_INIT, .sin6_flowinfo = 7 };
	const struct sockaddr *p4 = (const struct sockaddr *)&a4, *p6 = (const struct sockaddr *)&a6;

	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(kg_config_parse_string(text, "d.conf", cfg, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg->n_listen, 4);
	/* 0.0.0.0:8883 is listen[0] only */
	ck_assert(kg_fdstore_addr_matches(p4, sizeof(a4), &cfg->listen[0]));
	ck_assert(!kg_fdstore_addr_matches(p4, sizeof(a4), &cfg->listen[1]));
	ck_assert(!kg_fdstore_addr_matches(p4, sizeof(a4), &cfg->listen[2]));
	/* a short length is no address */
	ck_assert(!kg_fdstore_addr_matches(p4, sizeof(a4) - 1, &cfg->listen[0]));
	/* another port, another address */
	a4.sin_port = htons(8884);
	ck_assert(!kg_fdstore_addr_matches(p4, sizeof(a4), &cfg->listen[0]));
	a4.sin_port = htons(1883);
	ck_assert(!kg_fdstore_addr_matches(p4, sizeof(a4), &cfg->listen[2]));
	a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert(kg_fdstore_addr_matches(p4, sizeof(a4), &cfg->listen[2]));
	ck_assert(!kg_fdstore_addr_matches(p4, sizeof(a4), &cfg->listen[0]));
	/* [::]:8883 is listen[1]; flow info does not matter */
	ck_assert(kg_fdstore_addr_matches(p6, sizeof(a6), &cfg->listen[1]));
	ck_assert(!kg_fdstore_addr_matches(p6, sizeof(a6), &cfg->listen[0]));
	ck_assert(!kg_fdstore_addr_matches(p6, sizeof(a6), &cfg->listen[3]));
	a6.sin6_addr = in6addr_loopback;
	a6.sin6_port = htons(9000);
	ck_assert(kg_fdstore_addr_matches(p6, sizeof(a6), &cfg->listen[3]));
	a6.sin6_port = htons(9001);
	ck_assert(!kg_fdstore_addr_matches(p6, sizeof(a6), &cfg->listen[3]));
	free(cfg);
}
END_TEST

/* A session record with every field set to something recognisable. */
static void session_fill(struct kg_ho_session *s, unsigned i)
{
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(40000),
				   .sin6_addr = IN6ADDR_LOOPBACK_INIT };

	memset(s, 0, sizeof(*s));
	s->mode = 0;
	s->method = 1;
	s->mqtt_level = 5;
	s->cred_kind = 3;
	s->username_check = 2;
	s->flags = KG_HO_S_RESUMED | KG_HO_S_KTLS_TX | KG_HO_S_KTLS_RX | KG_HO_S_KTLS_ULP |
		   KG_HO_S_PROXY_CERT;
	s->listen_idx = 3;
	s->worker = (uint16_t)i;
	s->keepalive = 60;
	s->reason = 1;
	s->idle_ms = 90000;
	s->idle_for_ms = 1234;
	s->cid = (1ull << 48) | (1000 + i);
	s->since = 1764800000 + i;
	s->not_after = 1900000000;
	s->resumed_verified_at = -5;
	s->bytes_up = 1ull << 40;
	s->bytes_down = 77;
	s->cookie[0] = 0x1122334455667788ull + i;
	s->cookie[1] = 42;
	snprintf(s->device_id, sizeof(s->device_id), "dev-%u/mod", i);
	s->module_off = (uint16_t)(strchr(s->device_id, '/') - s->device_id + 1);
	memset(s->thumbprint, 'a', 64);
	snprintf(s->ca_name, sizeof(s->ca_name), "factory");
	snprintf(s->backend, sizeof(s->backend), "main");
	snprintf(s->peer, sizeof(s->peer), "[::1]:40000");
	memcpy(s->peer_sa, &a6, sizeof(a6));
	s->peer_salen = sizeof(a6);
	memset(s->leaf_issuer_md, 0x5a, sizeof(s->leaf_issuer_md));
	s->leaf_serial[0] = 0x01;
	s->leaf_serial[19] = 0xff;
	s->leaf_serial_len = 20;
	s->leaf_serial_neg = true;
}

/* Records round-trip field for field, in order; every prefix is short. */
START_TEST(sessions_round_trip)
{
	struct kg_ho_session in[3], out;
	uint8_t *buf = malloc(kg_ho_sessions_size(3));
	struct kg_ho_msg *m = msg_new();
	const uint8_t *cur;
	size_t n, left;

	for (unsigned i = 0; i < 3; i++)
		session_fill(&in[i], i);
	in[2].peer_salen = 0;   /* a session with no address kept */
	memset(in[2].peer_sa, 0, sizeof(in[2].peer_sa));
	in[2].flags = KG_HO_S_DEV_PLAIN | KG_HO_S_IDLE_ANY_DIR;
	n = kg_ho_encode_sessions(buf, kg_ho_sessions_size(3), 4242, in, 3);
	ck_assert_uint_gt(n, KG_HO_HEADER);
	ck_assert_uint_le(n, kg_ho_sessions_size(3));
	decode_ok(buf, n, m);
	ck_assert_int_eq(m->type, KG_HO_SESSIONS);
	ck_assert_uint_eq(m->pid, 4242);
	ck_assert_uint_eq(m->n_sessions, 3);
	cur = (const uint8_t *)m->text;
	left = m->text_len;
	for (unsigned i = 0; i < 3; i++) {
		ck_assert(kg_ho_session_next(&cur, &left, &out));
		ck_assert_msg(memcmp(&out, &in[i], sizeof(out)) == 0, "record %u differs", i);
	}
	ck_assert(!kg_ho_session_next(&cur, &left, &out));
	ck_assert_uint_eq(left, 0);
	prefixes_short(buf, n);
	/* the ADOPT announcement */
	n = kg_ho_encode_adopt(buf, 64, 99);
	decode_ok(buf, n, m);
	ck_assert_int_eq(m->type, KG_HO_ADOPT);
	ck_assert_uint_eq(m->pid, 99);
	free(m);
	free(buf);
}
END_TEST

/* Lying records are malformed: a record length one off either way, an empty device id,
 * flags this build does not know, an address or serial longer than its field, a module
 * offset past the id, no records at all. And no single-byte change reads past the frame
 * (ASan) or yields a record the walker cannot read. */
START_TEST(sessions_malformed)
{
	struct kg_ho_session s;
	uint8_t buf[2048], bad[2048];
	struct kg_ho_msg *m = msg_new();
	size_t n, used;
	/* offsets in the one-record frame: header 12, pid 4, count 2, then reclen (2) */
	const size_t rec = KG_HO_HEADER + 6, body = rec + 2;

	session_fill(&s, 7);
	n = kg_ho_encode_sessions(buf, sizeof(buf), 1, &s, 1);
	ck_assert_uint_gt(n, 0);
	decode_ok(buf, n, m);
	/* the record's length, one more and one less */
	memcpy(bad, buf, n);
	bad[rec + 1]++;
	ck_assert_int_eq(kg_ho_decode(bad, n, m, &used), KG_HO_MALFORMED);
	memcpy(bad, buf, n);
	bad[rec + 1]--;
	ck_assert_int_eq(kg_ho_decode(bad, n, m, &used), KG_HO_MALFORMED);
	/* flags: unknown bits (offset 5 in the body) */
	memcpy(bad, buf, n);
	bad[body + 5] = 0xff;
	ck_assert_int_eq(kg_ho_decode(bad, n, m, &used), KG_HO_MALFORMED);
	/* a count of 0, and one over the most a frame may carry */
	memcpy(bad, buf, n);
	bad[KG_HO_HEADER + 4] = 0;
	bad[KG_HO_HEADER + 5] = 0;
	ck_assert_int_eq(kg_ho_decode(bad, n, m, &used), KG_HO_MALFORMED);
	bad[KG_HO_HEADER + 5] = KG_HO_SESSIONS_MAX + 1;
	ck_assert_int_eq(kg_ho_decode(bad, n, m, &used), KG_HO_MALFORMED);
	/* encoders refuse what they cannot say */
	ck_assert_uint_eq(kg_ho_encode_sessions(buf, sizeof(buf), 1, &s, 0), 0);
	s.device_id[0] = '\0';
	ck_assert_uint_eq(kg_ho_encode_sessions(buf, sizeof(buf), 1, &s, 1), 0);
	session_fill(&s, 7);
	s.flags = 0x8000;
	ck_assert_uint_eq(kg_ho_encode_sessions(buf, sizeof(buf), 1, &s, 1), 0);
	session_fill(&s, 7);
	s.peer_salen = 29;
	ck_assert_uint_eq(kg_ho_encode_sessions(buf, sizeof(buf), 1, &s, 1), 0);
	session_fill(&s, 7);
	s.leaf_serial_len = 33;
	ck_assert_uint_eq(kg_ho_encode_sessions(buf, sizeof(buf), 1, &s, 1), 0);
	session_fill(&s, 7);
	ck_assert_uint_eq(kg_ho_encode_sessions(buf, 100, 1, &s, 1), 0);   /* too small */
	/* a module offset past the id: encodes (the encoder is not the judge), never decodes */
	s.module_off = 200;
	n = kg_ho_encode_sessions(buf, sizeof(buf), 1, &s, 1);
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(kg_ho_decode(buf, n, m, &used), KG_HO_MALFORMED);
	/* every byte of a valid frame flipped: whatever decodes, its records walk */
	session_fill(&s, 7);
	n = kg_ho_encode_sessions(buf, sizeof(buf), 1, &s, 1);
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = malloc(n);
		struct kg_ho_session out;

		memcpy(p, buf, n);
		p[i] ^= 0xa5;
		if (kg_ho_decode(p, n, m, &used) == KG_HO_OK && m->type == KG_HO_SESSIONS) {
			const uint8_t *cur = (const uint8_t *)m->text;
			size_t left = m->text_len;

			ck_assert_msg(kg_ho_session_next(&cur, &left, &out), "byte %zu", i);
			ck_assert_uint_eq(left, 0);
		}
		free(p);
	}
	free(m);
}
END_TEST

/* Which sessions travel: all their bytes the kernel's, both streams open. */
START_TEST(transferable_sessions)
{
	struct kg_relay_io io;
	struct kg_pipe pipe = { .rd = -1, .wr = -1 };
	uint8_t byte = 0;

	memset(&io, 0, sizeof(io));
	io.dev.fd = 5;
	io.be.fd = 6;
	io.mode = KG_MODE_KTLS_SPLICE;
	io.ktls_tx = io.ktls_rx = true;
	ck_assert(kg_relay_transferable(&io));
	/* the receive key stayed in OpenSSL: not all the kernel's */
	io.ktls_rx = false;
	ck_assert(!kg_relay_transferable(&io));
	io.ktls_rx = true;
	/* bytes waiting in either buffer or an up pipe */
	io.up = (struct kg_buf){ .data = &byte, .len = 1, .cap = 1 };
	ck_assert(!kg_relay_transferable(&io));
	io.up.off = 1;   /* sent: empty again */
	ck_assert(kg_relay_transferable(&io));
	io.down = (struct kg_buf){ .data = &byte, .len = 1, .cap = 1 };
	ck_assert(!kg_relay_transferable(&io));
	io.down = (struct kg_buf){ 0 };
	pipe.len = 10;
	io.pipe[KG_DIR_DOWN] = &pipe;
	ck_assert(!kg_relay_transferable(&io));
	pipe.len = 0;   /* a borrowed pipe, empty */
	ck_assert(kg_relay_transferable(&io));
	io.pipe[KG_DIR_DOWN] = NULL;
	/* a stream that ended, a FIN passed on, a relay waiting on the kernel */
	io.dev_eof = true;
	ck_assert(!kg_relay_transferable(&io));
	io.dev_eof = false;
	io.be_shut = true;
	ck_assert(!kg_relay_transferable(&io));
	io.be_shut = false;
	io.recheck = true;
	ck_assert(!kg_relay_transferable(&io));
	io.recheck = false;
	/* data paths with state of ours: the OpenSSL relays, kTLS TX only, sockmap */
	io.mode = KG_MODE_USERSPACE;
	ck_assert(!kg_relay_transferable(&io));
	io.mode = KG_MODE_KTLS_TX;
	ck_assert(!kg_relay_transferable(&io));
	io.mode = KG_MODE_USERSPACE_SSL;
	ck_assert(!kg_relay_transferable(&io));
	io.mode = KG_MODE_SOCKMAP;
	io.dev_plain = true;
	ck_assert(!kg_relay_transferable(&io));
	/* a plain device side, copied or spliced */
	io.mode = KG_MODE_PLAIN;
	ck_assert(kg_relay_transferable(&io));
	io.mode = KG_MODE_SPLICE;
	ck_assert(kg_relay_transferable(&io));
	io.dev_plain = false;   /* those modes on a TLS device side: never */
	ck_assert(!kg_relay_transferable(&io));
	io.dev_plain = true;
	io.be.fd = -1;
	ck_assert(!kg_relay_transferable(&io));
}
END_TEST

Suite *kg_suite_handover(void);   /* run.c */

Suite *kg_suite_handover(void)
{
	Suite *s = suite_create("handover");
	TCase *tc = tcase_create("frames");

	tcase_add_test(tc, fds_round_trip);
	tcase_add_test(tc, small_messages_round_trip);
	tcase_add_test(tc, two_frames_back_to_back);
	tcase_add_loop_test(tc, mutated_fds_frame, 0, (int)(sizeof(mutations) / sizeof(mutations[0])));
	tcase_add_test(tc, trailing_bytes_in_payload);
	tcase_add_test(tc, forward_text_rules);
	tcase_add_test(tc, unknown_type_skipped);
	tcase_add_test(tc, encoders_refuse);
	tcase_add_test(tc, garbage);
	tcase_add_test(tc, sessions_round_trip);
	tcase_add_test(tc, sessions_malformed);
	tcase_add_test(tc, transferable_sessions);
	suite_add_tcase(s, tc);
	tc = tcase_create("config");
	tcase_add_test(tc, drain_timeout_key);
	tcase_add_test(tc, fdstore_addr_match);
	suite_add_tcase(s, tc);
	return s;
}
