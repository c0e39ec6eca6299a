/* SPDX-License-Identifier: BSD-2-Clause */
/* check_audit.c - audit lines are one valid JSON object each, escaping included; their
 * journal entries carry the structured fields (the journal write itself runs only under
 * systemd: the packaged-VM test). Also notify.c's pure parts: JOURNAL_STREAM matching
 * and the STATUS= text. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include <json-c/json.h>

#include "ops/audit.h"
#include "ops/notify.h"
#include "ops/ratelimit.h"
#include "relay/relay.h"
#include "testlib.h"

static struct json_object *parse_line(const char *line, size_t n)
{
	struct json_object *o;

	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(line[n - 1], '\n');
	ck_assert_ptr_null(memchr(line, '\n', n - 1));   /* exactly one line */
	o = json_tokener_parse(line);
	ck_assert_ptr_nonnull(o);
	return o;
}

static const char *get(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

START_TEST(deny_record)
{
	struct kg_audit_record r = { .event = "decision", .peer = "127.0.0.1:5555", .device = "dev-1",
				     .thumbprint = "ab12", .ca = "root", .allow = false,
				     .reason = KG_REASON_DISABLED, .conn_id = 42, .mqtt_level = 5 };
	char line[1024];
	size_t n = kg_audit_format(&r, 1700000000123LL, line, sizeof(line));
	struct json_object *o = parse_line(line, n);

	ck_assert_str_eq(get(o, "ts"), "2023-11-14T22:13:20.123Z");
	ck_assert_str_eq(get(o, "decision"), "deny");
	ck_assert_str_eq(get(o, "reason"), "disabled");
	ck_assert_str_eq(get(o, "device"), "dev-1");
	ck_assert_str_eq(get(o, "peer"), "127.0.0.1:5555");
	ck_assert_str_eq(get(o, "ca"), "root");
	ck_assert_str_eq(get(o, "thumbprint"), "ab12");
	ck_assert_str_eq(get(o, "mqtt"), "5");
	ck_assert_ptr_null(get(o, "backend"));
	ck_assert_ptr_null(get(o, "relay"));
	ck_assert_ptr_null(get(o, "ktls_fallback"));
	json_object_put(o);
}
END_TEST

/* The line of a session that fell from kernel TLS (conn.c, at the handoff): the relay
 * it got, the cause by its metric label, and the cipher and errno in words. */
START_TEST(relay_fallback_record)
{
	struct kg_relay_io io = { .ktls_fell_back = true, .ktls_fallback = KG_KTLS_TX_NOT_OFFLOADED,
				  .ktls_cipher = "TLS_CHACHA20_POLY1305_SHA256",
				  .ktls_version = "TLSv1.3" };
	char detail[160], line[1024];
	struct kg_audit_record r = { .event = "relay", .peer = "127.0.0.1:5555", .device = "dev-1",
				     .allow = true, .reason = KG_REASON_OK, .backend = "local",
				     .relay = "userspace",
				     .ktls_fallback = kg_ktls_fallback_names[io.ktls_fallback],
				     .detail = kg_ktls_fallback_detail(&io, detail, sizeof(detail)) };
	size_t n = kg_audit_format(&r, 0, line, sizeof(line));
	struct json_object *o = parse_line(line, n);

	ck_assert_str_eq(get(o, "event"), "relay");
	ck_assert_str_eq(get(o, "relay"), "userspace");
	ck_assert_str_eq(get(o, "ktls_fallback"), "tx_not_offloaded");
	ck_assert_str_eq(get(o, "detail"),
			 "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256: the kernel did not take the send key");
	json_object_put(o);
	/* the receive key refused: the kernel's errno is said */
	io.ktls_fallback = KG_KTLS_RX_FAILED;
	io.ktls_fallback_errno = ENOENT;
	ck_assert_str_eq(kg_ktls_fallback_detail(&io, detail, sizeof(detail)),
			 "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256: the kernel did not take the receive "
			 "key: No such file or directory");
	ck_assert_str_eq(kg_ktls_fallback_names[KG_KTLS_RX_FAILED], "rx_install_failed");
	/* a short buffer is cut, never overrun */
	ck_assert_uint_eq(strlen(kg_ktls_fallback_detail(&io, detail, 8)), 7);
}
END_TEST

START_TEST(escapes_hostile_id)
{
	/* '"' and '\\' are printable ASCII, so valid in a device id: they must not
	 * break the line. */
	struct kg_audit_record r = { .peer = "p", .device = "a\"b\\c", .allow = true,
				     .reason = KG_REASON_OK, .backend = "local" };
	char line[1024];
	size_t n = kg_audit_format(&r, 0, line, sizeof(line));
	struct json_object *o = parse_line(line, n);

	ck_assert_str_eq(get(o, "device"), "a\"b\\c");
	ck_assert_str_eq(get(o, "decision"), "allow");
	ck_assert_str_eq(get(o, "backend"), "local");
	json_object_put(o);
}
END_TEST

START_TEST(too_small_buffer)
{
	struct kg_audit_record r = { .peer = "127.0.0.1:1", .reason = KG_REASON_OK };
	char line[16];

	ck_assert_uint_eq(kg_audit_format(&r, 0, line, sizeof(line)), 0);
}
END_TEST

START_TEST(reason_names_unique)
{
	for (int i = 0; i < KG_REASON_MAX; i++) {
		ck_assert_str_ne(kg_reason_str((enum kg_reason)i), "unknown");
		for (int j = 0; j < i; j++)
			ck_assert_str_ne(kg_reason_str((enum kg_reason)i), kg_reason_str((enum kg_reason)j));
	}
	ck_assert_str_eq(kg_reason_str(KG_REASON_MAX), "unknown");
}
END_TEST

/* ---- the flood guard (ratelimit.c) and its audit keys -------------------------- */

static struct kg_rl_key key_n(uint8_t n)
{
	struct kg_rl_key k;

	memset(&k, 0, sizeof(k));
	k.b[0] = n;
	return k;
}

struct collected {
	struct kg_rl_report r[16];
	size_t n;
	uint64_t sum;
};

static void collect(void *arg, const struct kg_rl_report *r)
{
	struct collected *c = arg;

	ck_assert_uint_lt(c->n, 16);
	c->r[c->n++] = *r;
	c->sum += r->suppressed;
}

START_TEST(limit_per_key_then_report)
{
	static struct kg_ratelimit rl;
	struct kg_rl_conf conf = { .per_key = 3, .total = 0, .interval_ms = 1000 };
	struct kg_rl_key a = key_n(1);
	struct kg_rl_report rep;
	struct collected got = { .n = 0 };
	unsigned written = 0;

	kg_rl_init(&rl, 8);
	for (int i = 0; i < 10; i++) {
		written += kg_rl_check(&rl, &conf, &a, 100 + (uint64_t)i, &rep);
		ck_assert_uint_eq(rep.suppressed, 0);
	}
	ck_assert_uint_eq(written, 3);
	/* nothing is due before the window ends */
	ck_assert_uint_eq(kg_rl_flush(&rl, 1099, false, collect, &got), 0);
	ck_assert_uint_eq(kg_rl_flush(&rl, 1100, false, collect, &got), 1);
	ck_assert_uint_eq(got.r[0].suppressed, 7);
	ck_assert_mem_eq(got.r[0].key.b, a.b, sizeof(a.b));
	ck_assert_uint_eq(got.r[0].start_ms, 100);
	ck_assert_uint_eq(got.r[0].end_ms, 1100);
	/* reported once only; the slot is free, the next line opens a new window */
	ck_assert_uint_eq(kg_rl_flush(&rl, 5000, false, collect, &got), 0);
	ck_assert(kg_rl_check(&rl, &conf, &a, 5000, &rep));
	ck_assert_uint_eq(rep.suppressed, 0);
}
END_TEST

START_TEST(limit_rollover_reports_on_check)
{
	static struct kg_ratelimit rl;
	struct kg_rl_conf conf = { .per_key = 1, .total = 0, .interval_ms = 500 };
	struct kg_rl_key a = key_n(1);
	struct kg_rl_report rep;

	kg_rl_init(&rl, 8);
	ck_assert(kg_rl_check(&rl, &conf, &a, 0, &rep));
	ck_assert(!kg_rl_check(&rl, &conf, &a, 10, &rep));
	ck_assert(!kg_rl_check(&rl, &conf, &a, 20, &rep));
	/* the window ended before the flush ran: the next line reports it and is written */
	ck_assert(kg_rl_check(&rl, &conf, &a, 600, &rep));
	ck_assert_uint_eq(rep.suppressed, 2);
	ck_assert_uint_eq(rep.end_ms, 500);
}
END_TEST

START_TEST(limit_keys_independent_and_total_cap)
{
	static struct kg_ratelimit rl;
	struct kg_rl_conf conf = { .per_key = 2, .total = 3, .interval_ms = 1000 };
	struct kg_rl_key a = key_n(1), b = key_n(2);
	struct kg_rl_report rep;
	struct collected got = { .n = 0 };

	kg_rl_init(&rl, 8);
	ck_assert(kg_rl_check(&rl, &conf, &a, 0, &rep));
	ck_assert(kg_rl_check(&rl, &conf, &a, 1, &rep));
	ck_assert(!kg_rl_check(&rl, &conf, &a, 2, &rep));   /* per key */
	ck_assert(kg_rl_check(&rl, &conf, &b, 3, &rep));    /* another key */
	ck_assert(!kg_rl_check(&rl, &conf, &b, 4, &rep));   /* total: 3 written */
	ck_assert_uint_eq(kg_rl_flush(&rl, 2000, false, collect, &got), 2);
	ck_assert_uint_eq(got.sum, 2);
	/* a new overall window */
	ck_assert(kg_rl_check(&rl, &conf, &b, 2000, &rep));
}
END_TEST

START_TEST(limit_full_table_evicts_with_report)
{
	static struct kg_ratelimit rl;
	struct kg_rl_conf conf = { .per_key = 1, .total = 0, .interval_ms = 10000 };
	struct kg_rl_key a = key_n(1), b = key_n(2), c = key_n(3);
	struct kg_rl_report rep;
	struct collected got = { .n = 0 };
	uint64_t held = 0;

	kg_rl_init(&rl, 2);
	ck_assert(kg_rl_check(&rl, &conf, &a, 0, &rep));
	ck_assert(!kg_rl_check(&rl, &conf, &a, 1, &rep));
	ck_assert(kg_rl_check(&rl, &conf, &b, 2, &rep));
	ck_assert(!kg_rl_check(&rl, &conf, &b, 3, &rep));
	/* table full: c takes the slot whose window opened first (a), a's count reported */
	ck_assert(kg_rl_check(&rl, &conf, &c, 4, &rep));
	ck_assert_uint_eq(rep.suppressed, 1);
	ck_assert_mem_eq(rep.key.b, a.b, sizeof(a.b));
	held += rep.suppressed;
	ck_assert(!kg_rl_check(&rl, &conf, &c, 5, &rep));
	ck_assert_uint_eq(rep.suppressed, 0);
	/* shutdown: everything pending, window over or not; the counts add up */
	ck_assert_uint_eq(kg_rl_flush(&rl, 6, true, collect, &got), 2);
	ck_assert_uint_eq(held + got.sum, 3);
}
END_TEST

START_TEST(limit_off)
{
	static struct kg_ratelimit rl;
	struct kg_rl_conf conf = { .per_key = 0, .total = 1, .interval_ms = 1000 };
	struct kg_rl_key a = key_n(1);
	struct kg_rl_report rep;
	struct collected got = { .n = 0 };

	kg_rl_init(&rl, 4);
	for (int i = 0; i < 100; i++)
		ck_assert(kg_rl_check(&rl, &conf, &a, (uint64_t)i, &rep));
	ck_assert_uint_eq(kg_rl_flush(&rl, 100000, true, collect, &got), 0);
}
END_TEST

START_TEST(limit_key_by_source)
{
	struct sockaddr_in in4 = { .sin_family = AF_INET, .sin_port = htons(1) };
	struct sockaddr_in in4b = { .sin_family = AF_INET, .sin_port = htons(2) };
	struct sockaddr_in6 m6 = { .sin6_family = AF_INET6, .sin6_port = htons(3) };
	struct sockaddr_in6 v6a = { .sin6_family = AF_INET6 }, v6b = { .sin6_family = AF_INET6 };
	struct sockaddr_in6 v6c = { .sin6_family = AF_INET6 };
	struct kg_rl_key k1, k2, k3;

	inet_pton(AF_INET, "192.0.2.7", &in4.sin_addr);
	inet_pton(AF_INET, "192.0.2.7", &in4b.sin_addr);
	inet_pton(AF_INET6, "::ffff:192.0.2.7", &m6.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:2::1", &v6a.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &v6b.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:3::1", &v6c.sin6_addr);
	/* the port does not matter; a v4-mapped address is its IPv4 host */
	kg_audit_limit_key(KG_REASON_NO_CERT, (struct sockaddr *)&in4, sizeof(in4), &k1);
	kg_audit_limit_key(KG_REASON_NO_CERT, (struct sockaddr *)&in4b, sizeof(in4b), &k2);
	kg_audit_limit_key(KG_REASON_NO_CERT, (struct sockaddr *)&m6, sizeof(m6), &k3);
	ck_assert_mem_eq(k1.b, k2.b, sizeof(k1.b));
	ck_assert_mem_eq(k1.b, k3.b, sizeof(k1.b));
	/* another reason is another key */
	kg_audit_limit_key(KG_REASON_TIMEOUT, (struct sockaddr *)&in4, sizeof(in4), &k2);
	ck_assert(memcmp(k1.b, k2.b, sizeof(k1.b)) != 0);
	/* IPv6: one /64 is one key, the next /64 another */
	kg_audit_limit_key(KG_REASON_NO_CERT, (struct sockaddr *)&v6a, sizeof(v6a), &k1);
	kg_audit_limit_key(KG_REASON_NO_CERT, (struct sockaddr *)&v6b, sizeof(v6b), &k2);
	kg_audit_limit_key(KG_REASON_NO_CERT, (struct sockaddr *)&v6c, sizeof(v6c), &k3);
	ck_assert_mem_eq(k1.b, k2.b, sizeof(k1.b));
	ck_assert(memcmp(k1.b, k3.b, sizeof(k1.b)) != 0);
}
END_TEST

START_TEST(suppressed_line_format)
{
	struct sockaddr_in in4 = { .sin_family = AF_INET };
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6 };
	struct kg_rl_report rep = { .suppressed = 1234, .start_ms = 5000, .end_ms = 15000 };
	char line[512];
	size_t n;
	struct json_object *o;

	inet_pton(AF_INET, "198.51.100.9", &in4.sin_addr);
	kg_audit_limit_key(KG_REASON_NO_CERT, (struct sockaddr *)&in4, sizeof(in4), &rep.key);
	n = kg_audit_format_suppressed(&rep, 1700000000123LL, line, sizeof(line));
	o = parse_line(line, n);
	ck_assert_str_eq(get(o, "event"), "audit_suppressed");
	ck_assert_str_eq(get(o, "reason"), "no_cert");
	ck_assert_str_eq(get(o, "peer"), "198.51.100.9");
	ck_assert_str_eq(get(o, "count"), "1234");
	ck_assert_str_eq(get(o, "window_ms"), "10000");
	ck_assert_str_eq(get(o, "ts"), "2023-11-14T22:13:20.123Z");
	json_object_put(o);

	inet_pton(AF_INET6, "2001:db8:1:2:3:4:5:6", &v6.sin6_addr);
	kg_audit_limit_key(KG_REASON_TIMEOUT, (struct sockaddr *)&v6, sizeof(v6), &rep.key);
	n = kg_audit_format_suppressed(&rep, 0, line, sizeof(line));
	o = parse_line(line, n);
	ck_assert_str_eq(get(o, "peer"), "2001:db8:1:2::/64");
	ck_assert_str_eq(get(o, "reason"), "timeout");
	json_object_put(o);
}
END_TEST

START_TEST(relay_idle_rule)
{
	bool any = true;

	/* MQTT 3.1.1 3.1.2.10: 1.5 x keep-alive, only the client's packets count */
	ck_assert_uint_eq(kg_relay_idle_ms(2, 600, &any), 3000);
	ck_assert(!any);
	ck_assert_uint_eq(kg_relay_idle_ms(65535, 600, &any), 98302500u);
	/* keep-alive 0: the configured idle timeout, traffic either way */
	ck_assert_uint_eq(kg_relay_idle_ms(0, 600, &any), 600000);
	ck_assert(any);
	ck_assert_uint_eq(kg_relay_idle_ms(0, 0, &any), 0);
}
END_TEST

/* A field's value as a NUL-terminated copy (the tests compare exact strings). */
static const char *field(const struct kg_journal_entry *e, const char *name)
{
	static char val[4096];
	size_t len;
	const char *v = kg_journal_get(e, name, &len);

	if (v == NULL)
		return NULL;
	ck_assert_uint_lt(len, sizeof(val));
	memcpy(val, v, len);
	val[len] = '\0';
	return val;
}

/* Every item is one "NAME=value" with a journal-valid name: A-Z, 0-9, '_', not first. */
static void assert_items_valid(const struct kg_journal_entry *e)
{
	for (int i = 0; i < e->n; i++) {
		const char *f = e->iov[i].iov_base;
		const char *eq = memchr(f, '=', e->iov[i].iov_len);

		ck_assert_ptr_nonnull(eq);
		ck_assert(eq > f && f[0] != '_');
		for (const char *p = f; p < eq; p++)
			ck_assert((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_');
	}
}

START_TEST(journal_deny_fields)
{
	struct kg_audit_record r = { .event = "decision", .peer = "127.0.0.1:5555",
				     .device = "dev-\"1\"\nx", .thumbprint = "ab12", .ca = "root",
				     .allow = false, .reason = KG_REASON_DISABLED, .conn_id = 42 };
	struct kg_journal_entry e;
	char line[1024];
	size_t n = kg_audit_format(&r, 1700000000123LL, line, sizeof(line));

	ck_assert_uint_gt(n, 0);
	kg_audit_journal_fields(&r, line, n, "ktlsgated", &e);
	ck_assert(!e.overflow);
	assert_items_valid(&e);
	/* MESSAGE is the JSON line without its newline: journalctl -o cat shows it */
	line[n - 1] = '\0';
	ck_assert_str_eq(field(&e, "MESSAGE"), line);
	ck_assert_str_eq(field(&e, "PRIORITY"), "5");
	ck_assert_str_eq(field(&e, "SYSLOG_IDENTIFIER"), "ktlsgated");
	ck_assert_str_eq(field(&e, "KTLSGATE_AUDIT"), "1");
	ck_assert_str_eq(field(&e, "KTLSGATE_EVENT"), "decision");
	ck_assert_str_eq(field(&e, "DECISION"), "deny");
	ck_assert_str_eq(field(&e, "REASON"), "disabled");
	ck_assert_str_eq(field(&e, "PEER"), "127.0.0.1:5555");
	/* the raw id, newline included: the native protocol carries any byte */
	ck_assert_str_eq(field(&e, "DEVICE_ID"), "dev-\"1\"\nx");
	ck_assert_str_eq(field(&e, "KTLSGATE_CA"), "root");
	ck_assert_str_eq(field(&e, "KTLSGATE_CONN"), "42");
	ck_assert_int_eq(e.n, 11);
}
END_TEST

START_TEST(journal_allow_and_unidentified)
{
	struct kg_audit_record r = { .event = "close", .peer = "[::1]:7", .allow = true,
				     .reason = KG_REASON_OK };
	struct kg_journal_entry e;
	char line[1024];
	size_t n = kg_audit_format(&r, 0, line, sizeof(line));

	kg_audit_journal_fields(&r, line, n, "ktlsgated", &e);
	ck_assert(!e.overflow);
	ck_assert_str_eq(field(&e, "PRIORITY"), "6");
	ck_assert_str_eq(field(&e, "KTLSGATE_EVENT"), "close");
	ck_assert_str_eq(field(&e, "DECISION"), "allow");
	ck_assert_str_eq(field(&e, "REASON"), "ok");
	/* no device, CA or connection id: no empty fields */
	ck_assert_ptr_null(field(&e, "DEVICE_ID"));
	ck_assert_ptr_null(field(&e, "KTLSGATE_CA"));
	ck_assert_ptr_null(field(&e, "KTLSGATE_CONN"));
	ck_assert_int_eq(e.n, 8);
}
END_TEST

START_TEST(journal_suppressed_fields)
{
	struct sockaddr_in in4 = { .sin_family = AF_INET };
	struct kg_rl_report rep = { .suppressed = 3, .start_ms = 0, .end_ms = 1000 };
	struct kg_journal_entry e;
	char line[512];
	size_t n;

	inet_pton(AF_INET, "198.51.100.9", &in4.sin_addr);
	kg_audit_limit_key(KG_REASON_NO_CERT, (struct sockaddr *)&in4, sizeof(in4), &rep.key);
	n = kg_audit_format_suppressed(&rep, 0, line, sizeof(line));
	kg_audit_journal_suppressed(&rep, line, n, "ktlsgated", &e);
	ck_assert(!e.overflow);
	assert_items_valid(&e);
	ck_assert_str_eq(field(&e, "KTLSGATE_AUDIT"), "1");
	ck_assert_str_eq(field(&e, "KTLSGATE_EVENT"), "audit_suppressed");
	ck_assert_str_eq(field(&e, "REASON"), "no_cert");
	ck_assert_str_eq(field(&e, "PEER"), "198.51.100.9");
	ck_assert_str_eq(field(&e, "PRIORITY"), "5");
	ck_assert_ptr_null(field(&e, "DECISION"));
}
END_TEST

START_TEST(journal_overflow_not_sent)
{
	static char big[5000];
	struct kg_journal_entry e;

	memset(big, 'x', sizeof(big));
	kg_journal_init(&e);
	kg_journal_add(&e, "MESSAGE", big, sizeof(big));
	ck_assert(e.overflow);
	ck_assert_int_eq(e.n, 0);
	/* an overflowed entry is refused before libsystemd: the caller writes stderr */
	ck_assert_int_eq(kg_journal_send(&e), -E2BIG);
}
END_TEST

START_TEST(journal_stream_match)
{
	ck_assert(kg_journal_stream_matches("64769:1234567", 64769, 1234567));
	ck_assert(!kg_journal_stream_matches("64769:1234567", 64769, 1234568));
	ck_assert(!kg_journal_stream_matches("64768:1234567", 64769, 1234567));
	ck_assert(!kg_journal_stream_matches("64769:1234567x", 64769, 1234567));
	ck_assert(!kg_journal_stream_matches(" 64769:1234567", 64769, 1234567));
	ck_assert(!kg_journal_stream_matches("64769", 64769, 1234567));
	ck_assert(!kg_journal_stream_matches("", 0, 0));
	ck_assert(!kg_journal_stream_matches(NULL, 0, 0));
}
END_TEST

START_TEST(notify_status_text)
{
	struct kg_notify_counts c = { .sessions = 7, .handshakes = 2, .connections = 9,
				      .by_mode = { 1, 0, 2, 0, 4, 0, 0 } };
	char buf[KG_NOTIFY_STATUS_MAX];

	ck_assert_str_eq(kg_notify_format_status(&c, buf, sizeof(buf)),
			 "7 session(s) (ktls_splice 1, ktls_tx 0, userspace 2, userspace_ssl 0, "
			 "sockmap 4, splice 0, plain 0), 2 handshake(s) in flight, 9 connection(s)");
}
END_TEST

START_TEST(notify_inactive_no_timeout)
{
	struct kg_notify n = { 0 };

	/* not under systemd: no wake-ups, nothing due */
	ck_assert_int_eq(kg_notify_timeout(&n, 123), -1);
	ck_assert(!kg_notify_status_due(&n, 123));
	ck_assert(!kg_notify_ping_due(&n, 123));
	n.active = true;
	n.next_status_ms = 5000;
	ck_assert_int_eq(kg_notify_timeout(&n, 1000), 4000);
	n.watchdog_ms = 2000;
	n.next_ping_ms = 2000;
	ck_assert_int_eq(kg_notify_timeout(&n, 1000), 1000);
	ck_assert_int_eq(kg_notify_timeout(&n, 9000), 0);
	ck_assert(!kg_notify_ping_due(&n, 1999));
	ck_assert(kg_notify_ping_due(&n, 2000));
	ck_assert_uint_eq(kg_notify_stall_ms(&n), 1000);
}
END_TEST

Suite *kg_suite_audit(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("format");
	TCase *lim = tcase_create("limiter");
	TCase *jr = tcase_create("journal");

	tcase_add_test(tc, deny_record);
	tcase_add_test(tc, relay_fallback_record);
	tcase_add_test(tc, escapes_hostile_id);
	tcase_add_test(tc, too_small_buffer);
	tcase_add_test(tc, reason_names_unique);
	suite_add_tcase(s, tc);
	tcase_add_test(lim, limit_per_key_then_report);
	tcase_add_test(lim, limit_rollover_reports_on_check);
	tcase_add_test(lim, limit_keys_independent_and_total_cap);
	tcase_add_test(lim, limit_full_table_evicts_with_report);
	tcase_add_test(lim, limit_off);
	tcase_add_test(lim, limit_key_by_source);
	tcase_add_test(lim, suppressed_line_format);
	tcase_add_test(lim, relay_idle_rule);
	suite_add_tcase(s, lim);
	tcase_add_test(jr, journal_deny_fields);
	tcase_add_test(jr, journal_allow_and_unidentified);
	tcase_add_test(jr, journal_suppressed_fields);
	tcase_add_test(jr, journal_overflow_not_sent);
	tcase_add_test(jr, journal_stream_match);
	tcase_add_test(jr, notify_status_text);
	tcase_add_test(jr, notify_inactive_no_timeout);
	suite_add_tcase(s, jr);
	return s;
}
