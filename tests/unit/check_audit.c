/* SPDX-License-Identifier: BSD-2-Clause */
/* check_audit.c - audit lines are one valid JSON object each, escaping included. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include <json-c/json.h>

#include "ops/audit.h"
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
	json_object_put(o);
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

Suite *kg_suite_audit(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("format");
	TCase *lim = tcase_create("limiter");

	tcase_add_test(tc, deny_record);
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
	return s;
}
