/* SPDX-License-Identifier: BSD-2-Clause */
/* check_edge.c - units of the [edge] config section, the deny policy (edge_policy.h) and
 * the pure half of `ktlsgate block` (edge_block.h: entries, names, their JSON lines). */
#include <check.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/config.h"
#include "edge/edge_block.h"
#include "edge/edge_conf.h"
#include "edge/edge_policy.h"
#include "policy/reason.h"
#include "ktlsgate/xdp_gate_maps.h"
#include "testlib.h"

static const char *const base =
	"[daemon]\ncert = /c\nkey = /k\nregistry = /r\n";

/* Parse base + extra; returns 0/-1 with err, cfg heap-allocated into *out. */
static int parse(const char *extra, struct kg_config **out, char *err, size_t errlen)
{
	char text[2048];

	*out = calloc(1, sizeof(**out));
	ck_assert_ptr_nonnull(*out);
	snprintf(text, sizeof(text), "%s%s", base, extra);
	return kg_config_parse_string(text, "t.conf", *out, err, errlen);
}

START_TEST(unknown_key_names_file_and_line)
{
	struct kg_config *cfg;
	char err[KG_ERRBUF];

	ck_assert_int_eq(parse("[edge]\nbogus = 1\n", &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "t.conf:6: unknown key 'bogus' in [edge]");
	free(cfg);
}
END_TEST

START_TEST(defaults_gate_the_listen_ports)
{
	struct kg_config *cfg;
	char err[KG_ERRBUF];

	ck_assert_int_eq(parse("listen = 0.0.0.0:8883, [::]:8883, 0.0.0.0:1883\n", &cfg, err,
			       sizeof(err)), 0);
	ck_assert(!cfg->edge.present);
	ck_assert(cfg->edge.xdp);
	ck_assert_int_eq(cfg->edge.steer, KG_EDGE_STEER_KERNEL);
	ck_assert_uint_eq(cfg->edge.n_ifaces, 0);
	ck_assert_uint_eq(cfg->edge.n_ports, 2);
	ck_assert_uint_eq(cfg->edge.ports[0], 8883);
	ck_assert_uint_eq(cfg->edge.ports[1], 1883);
	ck_assert_uint_eq(cfg->edge.fail_threshold, 5);
	ck_assert_uint_eq(cfg->edge.syn_rate, 20);
	ck_assert_str_eq(cfg->edge.pin_dir, KG_XDP_PIN_DIR_DEFAULT);
	free(cfg);
	/* no listen key: the default listen port */
	ck_assert_int_eq(parse("", &cfg, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg->edge.n_ports, 1);
	ck_assert_uint_eq(cfg->edge.ports[0], 8883);
	free(cfg);
}
END_TEST

START_TEST(full_section)
{
	struct kg_config *cfg;
	char err[KG_ERRBUF];

	ck_assert_int_eq(parse("[edge]\ninterfaces = eth0, eth1 veth-g\nports = 8883 1883\n"
			       "allow = 10.1.2.3/8, fd00::1/8, 192.0.2.9\nfail_threshold = 3\n"
			       "fail_window_s = 10\ndeny_base_s = 5\ndeny_max_s = 40\n"
			       "syn_rate = 0\nsyn_burst = 1\nxdp = off\npin_dir = /sys/fs/bpf/x\n"
			       "xdp_mode = generic\nsteer = least_loaded\n",
			       &cfg, err, sizeof(err)), 0);
	ck_assert(cfg->edge.present);
	ck_assert(!cfg->edge.xdp);
	ck_assert_int_eq(cfg->edge.mode, KG_EDGE_MODE_GENERIC);
	ck_assert_int_eq(cfg->edge.steer, KG_EDGE_STEER_LEAST_LOADED);
	ck_assert_uint_eq(cfg->edge.n_ifaces, 3);
	ck_assert_str_eq(cfg->edge.ifaces[2], "veth-g");
	ck_assert_uint_eq(cfg->edge.n_ports, 2);
	ck_assert_uint_eq(cfg->edge.n_allow, 3);
	/* 10.1.2.3/8: mapped, prefix 104, host bits cleared */
	ck_assert_uint_eq(cfg->edge.allow[0].prefix, 104);
	ck_assert_uint_eq(cfg->edge.allow[0].addr[10], 0xff);
	ck_assert_uint_eq(cfg->edge.allow[0].addr[12], 10);
	ck_assert_uint_eq(cfg->edge.allow[0].addr[13], 0);
	ck_assert_uint_eq(cfg->edge.allow[1].prefix, 8);
	ck_assert_uint_eq(cfg->edge.allow[1].addr[0], 0xfd);
	ck_assert_uint_eq(cfg->edge.allow[1].addr[15], 0);
	ck_assert_uint_eq(cfg->edge.allow[2].prefix, 128);
	ck_assert_uint_eq(cfg->edge.deny_max_s, 40);
	ck_assert_uint_eq(cfg->edge.syn_rate, 0);
	free(cfg);
}
END_TEST

static const struct {
	const char *text, *err;
} bad[] = {
	{ "allow = 10.0.0.0/33\n", "t.conf:6: [edge] allow: '10.0.0.0/33' is not an address or CIDR" },
	{ "allow = 10.0.0.0/-1\n", "t.conf:6: [edge] allow: '10.0.0.0/-1' is not an address or CIDR" },
	{ "allow = host.example\n", "t.conf:6: [edge] allow: 'host.example' is not an address or CIDR" },
	{ "ports = 0\n", "t.conf:6: [edge] ports: '0' is not a port" },
	{ "ports = 8883x\n", "t.conf:6: [edge] ports: '8883x' is not a port" },
	{ "interfaces = averyveryverylongname\n",
	  "t.conf:6: [edge] interfaces: bad interface name 'averyveryverylongname'" },
	{ "fail_threshold = 0\n", "t.conf:6: [edge] fail_threshold: '0' is not an integer in 1..1000000" },
	{ "xdp = maybe\n", "t.conf:6: [edge] xdp: 'maybe' is not on or off" },
	{ "steer = random\n", "t.conf:6: [edge] steer: 'random' is not kernel, hash or least_loaded" },
	{ "xdp_mode = fast\n", "t.conf:6: [edge] xdp_mode: 'fast' is not auto, native or generic" },
	{ "deny_base_s = 100\ndeny_max_s = 10\n",
	  "t.conf:5: [edge]: deny_max_s (10) is below deny_base_s (100)" },
};

START_TEST(bad_values)
{
	struct kg_config *cfg;
	char text[256], err[KG_ERRBUF];

	snprintf(text, sizeof(text), "[edge]\n%s", bad[_i].text);
	ck_assert_int_eq(parse(text, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, bad[_i].err);
	free(cfg);
}
END_TEST

START_TEST(addr_roundtrip)
{
	uint8_t a[16];
	char buf[64];

	ck_assert_int_eq(kg_edge_addr_parse("192.0.2.1", a), 0);
	ck_assert_str_eq(kg_edge_addr_str(a, buf, sizeof(buf)), "192.0.2.1");
	ck_assert_int_eq(kg_edge_addr_parse("2001:db8::1", a), 0);
	ck_assert_str_eq(kg_edge_addr_str(a, buf, sizeof(buf)), "2001:db8::1");
	ck_assert_int_eq(kg_edge_addr_parse("::ffff:10.0.0.1", a), 0);
	ck_assert_str_eq(kg_edge_addr_str(a, buf, sizeof(buf)), "10.0.0.1");
	ck_assert_int_eq(kg_edge_addr_parse("10.0.0", a), -1);
	ck_assert_int_eq(kg_edge_addr_parse("", a), -1);
}
END_TEST

/* --- policy ----------------------------------------------------------------------- */

static const struct kg_edge_policy_params params = {
	.threshold = 3, .window_ms = 10000, .base_ms = 1000, .max_ms = 8000,
	.capacity = 64, .seed = 42,
};

static void addr_n(uint8_t a[16], unsigned n)
{
	memset(a, 0, 16);
	a[10] = a[11] = 0xff;
	a[12] = 10;
	a[13] = (uint8_t)(n >> 16);
	a[14] = (uint8_t)(n >> 8);
	a[15] = (uint8_t)n;
}

START_TEST(threshold_within_window_denies)
{
	struct kg_edge_policy *p = kg_edge_policy_new(&params);
	uint8_t a[16];
	unsigned strikes = 0;

	ck_assert_ptr_nonnull(p);
	addr_n(a, 1);
	ck_assert_uint_eq(kg_edge_policy_note(p, a, 1000, &strikes), 0);
	ck_assert_uint_eq(kg_edge_policy_note(p, a, 2000, &strikes), 0);
	ck_assert_uint_eq(kg_edge_policy_note(p, a, 3000, &strikes), 1000);
	ck_assert_uint_eq(strikes, 1);
	/* the count starts over after a deny */
	ck_assert_uint_eq(kg_edge_policy_note(p, a, 4100, &strikes), 0);
	kg_edge_policy_free(p);
}
END_TEST

START_TEST(failures_outside_window_do_not_add_up)
{
	struct kg_edge_policy *p = kg_edge_policy_new(&params);
	uint8_t a[16];

	addr_n(a, 2);
	for (uint64_t t = 0; t < 100000; t += 6000)  /* two per 10 s window, never three */
		ck_assert_uint_eq(kg_edge_policy_note(p, a, 1000 + t, NULL), 0);
	kg_edge_policy_free(p);
}
END_TEST

START_TEST(period_doubles_and_is_capped)
{
	struct kg_edge_policy *p = kg_edge_policy_new(&params);
	static const uint64_t want[] = { 1000, 2000, 4000, 8000, 8000, 8000 };
	uint8_t a[16];
	uint64_t t = 1000;
	unsigned strikes;

	addr_n(a, 3);
	for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
		uint64_t got = 0;

		for (int i = 0; i < 3; i++)
			got = kg_edge_policy_note(p, a, t += 10, &strikes);
		ck_assert_uint_eq(got, want[k]);
		ck_assert_uint_eq(strikes, k + 1);
		t += got; /* it comes back once the deny is over */
	}
	kg_edge_policy_free(p);
}
END_TEST

START_TEST(quiet_source_is_forgotten)
{
	struct kg_edge_policy *p = kg_edge_policy_new(&params);
	uint8_t a[16];
	uint64_t t = 1000;

	addr_n(a, 4);
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 3; i++)
			(void)kg_edge_policy_note(p, a, t += 10, NULL);
	/* strikes = 3; silent for more than 2 * max_ms: back to the base period */
	t += 2 * params.max_ms + 1;
	(void)kg_edge_policy_note(p, a, t += 10, NULL);
	(void)kg_edge_policy_note(p, a, t += 10, NULL);
	ck_assert_uint_eq(kg_edge_policy_note(p, a, t += 10, NULL), 1000);
	kg_edge_policy_free(p);
}
END_TEST

START_TEST(state_is_bounded)
{
	struct kg_edge_policy *p = kg_edge_policy_new(&params);
	size_t cap = kg_edge_policy_capacity(p);
	uint8_t a[16];
	unsigned strikes;

	ck_assert_uint_eq(cap, 64);
	/* 100 000 distinct sources, one failure each: the table never grows */
	for (unsigned n = 0; n < 100000; n++) {
		addr_n(a, n);
		ck_assert_uint_eq(kg_edge_policy_note(p, a, 1000 + n / 1000, NULL), 0);
		ck_assert_uint_le(kg_edge_policy_count(p), cap);
	}
	/* a persistent offender is still caught among the churn: its failures keep it the
	 * most recently seen, so eviction (least recently seen first) passes it over */
	addr_n(a, 7777777);
	ck_assert_uint_eq(kg_edge_policy_note(p, a, 2000, NULL), 0);
	addr_n(a, 1);
	(void)kg_edge_policy_note(p, a, 2001, NULL);
	addr_n(a, 7777777);
	ck_assert_uint_eq(kg_edge_policy_note(p, a, 2002, NULL), 0);
	ck_assert_uint_eq(kg_edge_policy_note(p, a, 2003, &strikes), 1000);
	kg_edge_policy_free(p);
}
END_TEST

START_TEST(bad_params_refused)
{
	struct kg_edge_policy_params q = params;

	q.threshold = 0;
	ck_assert_ptr_null(kg_edge_policy_new(&q));
	q = params;
	q.max_ms = 10;
	ck_assert_ptr_null(kg_edge_policy_new(&q));
}
END_TEST

START_TEST(which_reasons_count)
{
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_UNKNOWN_CA), KG_XDP_DENY_VERIFY);
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_CERT_REVOKED), KG_XDP_DENY_VERIFY);
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_DISABLED), KG_XDP_DENY_POLICY);
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_UNKNOWN_DEVICE), KG_XDP_DENY_POLICY);
	/* not the device's fault, or not a refusal */
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_OK), -1);
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_BACKEND_DOWN), -1);
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_OVERLOAD), -1);
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_BAD_CREDENTIALS), KG_XDP_DENY_POLICY);
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_AUTH_RATE_LIMITED), KG_XDP_DENY_POLICY);
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_AUTH_OVERLOAD), -1);  /* ours, not theirs */
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_SHUTDOWN), -1);
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_MAX), -1);
	ck_assert_int_eq(kg_edge_reason_category(-5), -1);
}
END_TEST

/* ---- edge_block.h: what `block list` shows, and its control line ---------------- */

START_TEST(block_entry_from_map_value)
{
	const uint64_t s = 1000000000ull, now = 5000 * s;
	struct kg_xdp_deny v = { .expires_ns = now + 600 * s, .added_ns = now, .reason = 2,
				 .strikes = 3 };
	struct kg_edge_block_entry en;
	uint8_t key[16];

	ck_assert_int_eq(kg_edge_addr_parse("10.1.2.3", key), 0);
	ck_assert(kg_edge_block_entry_from(key, &v, now, &en));
	ck_assert_mem_eq(en.addr, key, 16);
	ck_assert_uint_eq(en.reason, KG_XDP_DENY_POLICY);
	ck_assert_uint_eq(en.strikes, 3);
	ck_assert_int_eq(en.expires_in_s, 600);
	/* rounded up: 1 ns left is still 1 s */
	ck_assert(kg_edge_block_entry_from(key, &v, now + 600 * s - 1, &en));
	ck_assert_int_eq(en.expires_in_s, 1);
	ck_assert(kg_edge_block_entry_from(key, &v, now + s / 2, &en));
	ck_assert_int_eq(en.expires_in_s, 600);
	/* expired at the instant, and after */
	ck_assert(!kg_edge_block_entry_from(key, &v, now + 600 * s, &en));
	ck_assert(!kg_edge_block_entry_from(key, &v, now + 601 * s, &en));
	/* 0: until removed */
	v.expires_ns = 0;
	ck_assert(kg_edge_block_entry_from(key, &v, UINT64_MAX, &en));
	ck_assert_int_eq(en.expires_in_s, -1);
}
END_TEST

static const char *entry_line(const struct kg_edge_block_entry *en, char *buf, size_t cap)
{
	struct json_object *o = kg_edge_block_entry_json(en);

	ck_assert_ptr_nonnull(o);
	snprintf(buf, cap, "%s", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return buf;
}

START_TEST(block_entry_json_roundtrip)
{
	struct kg_edge_block_entry en = { .reason = KG_XDP_DENY_MANUAL, .expires_in_s = -1 }, back;
	char line[256];

	ck_assert_int_eq(kg_edge_addr_parse("10.77.0.3", en.addr), 0);
	ck_assert_str_eq(entry_line(&en, line, sizeof(line)),
			 "{\"address\":\"10.77.0.3\",\"reason\":\"manual\",\"strikes\":0,"
			 "\"expires_in_s\":null}");
	ck_assert_int_eq(kg_edge_block_entry_parse(line, &back), 0);
	ck_assert_mem_eq(&back, &en, sizeof(en));

	ck_assert_int_eq(kg_edge_addr_parse("fd77::3", en.addr), 0);
	en.reason = KG_XDP_DENY_SOURCE_LIMIT;
	en.strikes = 4294967295u;
	en.expires_in_s = 315360000;
	ck_assert_str_eq(entry_line(&en, line, sizeof(line)),
			 "{\"address\":\"fd77::3\",\"reason\":\"source_limit\","
			 "\"strikes\":4294967295,\"expires_in_s\":315360000}");
	ck_assert_int_eq(kg_edge_block_entry_parse(line, &back), 0);
	ck_assert_mem_eq(&back, &en, sizeof(en));
}
END_TEST

static const char *const bad_entries[] = {
	"",
	"[]",
	"not json",
	"{\"address\":\"10.0.0.1\",\"reason\":\"manual\",\"strikes\":0}",
	"{\"address\":\"10.0.0.300\",\"reason\":\"manual\",\"strikes\":0,\"expires_in_s\":null}",
	"{\"address\":\"10.0.0.1\",\"reason\":\"angry\",\"strikes\":0,\"expires_in_s\":null}",
	"{\"address\":\"10.0.0.1\",\"reason\":\"manual\",\"strikes\":-1,\"expires_in_s\":null}",
	"{\"address\":\"10.0.0.1\",\"reason\":\"manual\",\"strikes\":4294967296,\"expires_in_s\":1}",
	"{\"address\":\"10.0.0.1\",\"reason\":\"manual\",\"strikes\":0,\"expires_in_s\":-5}",
	"{\"address\":\"10.0.0.1\",\"reason\":\"manual\",\"strikes\":0,\"expires_in_s\":\"1\"}",
	"{\"address\":1,\"reason\":\"manual\",\"strikes\":0,\"expires_in_s\":null}",
};

START_TEST(block_entry_bad_lines)
{
	struct kg_edge_block_entry en;

	ck_assert_int_eq(kg_edge_block_entry_parse(bad_entries[_i], &en), -1);
}
END_TEST

START_TEST(block_names_and_stats_line)
{
	uint64_t sum[KG_XDP_STAT_MAX] = { 7, 0, UINT64_MAX }, back[KG_XDP_STAT_MAX];
	char line[256];

	ck_assert_str_eq(kg_edge_block_reason_name(KG_XDP_DENY_MANUAL), "manual");
	ck_assert_str_eq(kg_edge_block_reason_name(KG_XDP_DENY_VERIFY), "verify");
	ck_assert_str_eq(kg_edge_block_reason_name(KG_XDP_DENY_POLICY), "policy");
	ck_assert_str_eq(kg_edge_block_reason_name(KG_XDP_DENY_SOURCE_LIMIT), "source_limit");
	ck_assert_str_eq(kg_edge_block_reason_name(KG_XDP_DENY_REASON_MAX), "unknown");
	ck_assert_str_eq(kg_edge_block_stat_name(KG_XDP_PASSED), "passed");
	ck_assert_str_eq(kg_edge_block_stat_name(KG_XDP_STAT_MAX), "unknown");
	ck_assert_int_eq(kg_edge_block_stats_format(sum, line, sizeof(line)), (int)strlen(line));
	ck_assert_str_eq(line, "{\"passed\":7,\"dropped_deny\":0,"
			       "\"dropped_rate\":18446744073709551615}");
	ck_assert_int_eq(kg_edge_block_stats_parse(line, back), 0);
	ck_assert_mem_eq(back, sum, sizeof(sum));
	ck_assert_int_eq(kg_edge_block_stats_parse("{\"passed\":7,\"dropped_deny\":0}", back), -1);
	ck_assert_int_eq(kg_edge_block_stats_parse("{\"passed\":7,\"dropped_deny\":0,"
						   "\"dropped_rate\":\"x\"}", back), -1);
	ck_assert_int_eq(kg_edge_block_stats_parse("OK", back), -1);
}
END_TEST

Suite *kg_suite_edge(void)
{
	Suite *s = suite_create("edge");
	TCase *tc = tcase_create("conf");
	TCase *tp = tcase_create("policy");
	TCase *tb = tcase_create("block");

	tcase_add_test(tc, unknown_key_names_file_and_line);
	tcase_add_test(tc, defaults_gate_the_listen_ports);
	tcase_add_test(tc, full_section);
	tcase_add_loop_test(tc, bad_values, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, addr_roundtrip);
	suite_add_tcase(s, tc);
	tcase_add_test(tp, threshold_within_window_denies);
	tcase_add_test(tp, failures_outside_window_do_not_add_up);
	tcase_add_test(tp, period_doubles_and_is_capped);
	tcase_add_test(tp, quiet_source_is_forgotten);
	tcase_add_test(tp, state_is_bounded);
	tcase_add_test(tp, bad_params_refused);
	tcase_add_test(tp, which_reasons_count);
	suite_add_tcase(s, tp);
	tcase_add_test(tb, block_entry_from_map_value);
	tcase_add_test(tb, block_entry_json_roundtrip);
	tcase_add_loop_test(tb, block_entry_bad_lines, 0,
			    (int)(sizeof(bad_entries) / sizeof(bad_entries[0])));
	tcase_add_test(tb, block_names_and_stats_line);
	suite_add_tcase(s, tb);
	return s;
}
