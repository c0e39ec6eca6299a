/* SPDX-License-Identifier: BSD-2-Clause */
/* check_srclimit.c - units of the per-source admission table (srclimit.h) and of its
 * [limits] keys. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/config.h"
#include "edge/edge_policy.h"
#include "policy/reason.h"
#include "core/srclimit.h"
#include "ktlsgate/xdp_gate_maps.h"
#include "testlib.h"

static struct kg_srckey v4(const char *ip, unsigned prefix)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(1234) };
	struct kg_srckey k;

	ck_assert_int_eq(inet_pton(AF_INET, ip, &in.sin_addr), 1);
	ck_assert_int_eq(kg_srclimit_key((struct sockaddr *)&in, sizeof(in), prefix, 64, &k), 0);
	return k;
}

static struct kg_srckey v6(const char *ip, unsigned prefix)
{
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(1234) };
	struct kg_srckey k;

	ck_assert_int_eq(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
	ck_assert_int_eq(kg_srclimit_key((struct sockaddr *)&in6, sizeof(in6), 32, prefix, &k), 0);
	return k;
}

START_TEST(key_masks_to_the_prefix)
{
	struct kg_srckey a = v4("192.0.2.77", 32), b = v4("192.0.2.78", 32);
	static const uint8_t want[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 77 };
	struct sockaddr_un_like { sa_family_t f; char p[20]; } other = { .f = AF_UNIX };
	struct kg_srckey k;

	ck_assert_mem_eq(a.a, want, 16);
	ck_assert(memcmp(&a, &b, sizeof(a)) != 0);
	a = v4("192.0.2.77", 24);
	b = v4("192.0.2.200", 24);
	ck_assert_mem_eq(&a, &b, sizeof(a));
	ck_assert_uint_eq(a.a[15], 0);
	/* /64: the interface identifier is one device's to choose, the /64 its site's */
	a = v6("2001:db8:1:2:aaaa::1", 64);
	b = v6("2001:db8:1:2:bbbb::9", 64);
	ck_assert_mem_eq(&a, &b, sizeof(a));
	b = v6("2001:db8:1:3::1", 64);
	ck_assert(memcmp(&a, &b, sizeof(a)) != 0);
	/* /60 keeps the top nibble of byte 7 */
	a = v6("2001:db8:1:2f::1", 60);
	b = v6("2001:db8:1:20::1", 60);
	ck_assert_mem_eq(&a, &b, sizeof(a));
	ck_assert_uint_eq(a.a[7], 0x20);
	/* a v4 client on a dual-stack socket is its v4 address, with the v4 prefix */
	a = v6("::ffff:192.0.2.77", 64);
	b = v4("192.0.2.77", 32);
	ck_assert_mem_eq(&a, &b, sizeof(a));
	ck_assert_int_eq(kg_srclimit_key((struct sockaddr *)&other, sizeof(other), 32, 64, &k), -1);
	ck_assert_int_eq(kg_srclimit_key(NULL, 0, 32, 64, &k), -1);
	{
		struct sockaddr_in in = { .sin_family = AF_INET };
		ck_assert_int_eq(kg_srclimit_key((struct sockaddr *)&in, 4, 32, 64, &k), -1);
	}
}
END_TEST

START_TEST(pending_cap_counts_until_release)
{
	struct kg_srclimit *l = kg_srclimit_new(64, 1);
	struct kg_srclimit_limits lim = { .max_pending = 3 };
	struct kg_srckey a = v4("10.0.0.1", 32), b = v4("10.0.0.2", 32);

	ck_assert_ptr_nonnull(l);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, 100), KG_SRC_OK);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, 100), KG_SRC_PENDING);
	ck_assert_uint_eq(kg_srclimit_pending(l, &a), 3);
	/* another source is not affected */
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &b, 100), KG_SRC_OK);
	kg_srclimit_release(l, &a);
	ck_assert_uint_eq(kg_srclimit_pending(l, &a), 2);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, 100), KG_SRC_OK);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, 100), KG_SRC_PENDING);
	/* release of an unknown source or below zero changes nothing */
	{
		struct kg_srckey c = v4("10.0.0.3", 32);
		kg_srclimit_release(l, &c);
	}
	for (int i = 0; i < 5; i++)
		kg_srclimit_release(l, &b);
	ck_assert_uint_eq(kg_srclimit_pending(l, &b), 0);
	ck_assert_uint_eq(kg_srclimit_count(l), 2);
	kg_srclimit_free(l);
}
END_TEST

START_TEST(token_bucket_refills_at_rate)
{
	struct kg_srclimit *l = kg_srclimit_new(64, 2);
	struct kg_srclimit_limits lim = { .rate = 10, .burst = 5 };
	struct kg_srckey a = v4("10.0.0.1", 32);
	uint64_t t = 1000;

	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t), KG_SRC_OK);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t), KG_SRC_RATE);
	/* 10/s: one token per 100 ms, not before */
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t + 99), KG_SRC_RATE);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t + 100), KG_SRC_OK);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t + 100), KG_SRC_RATE);
	/* a long pause fills the bucket to its burst, never beyond */
	t += 3600u * 1000u;
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t), KG_SRC_OK);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t), KG_SRC_RATE);
	/* a refused admission is not pending */
	ck_assert_uint_eq(kg_srclimit_pending(l, &a), 11);
	/* a lower burst after a reload caps what the bucket holds */
	lim.burst = 2;
	t += 3600u * 1000u;
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t), KG_SRC_OK);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t), KG_SRC_OK);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t), KG_SRC_RATE);
	/* the pending cap is checked first: no token is spent on a refusal */
	lim = (struct kg_srclimit_limits){ .max_pending = 13, .rate = 10, .burst = 2 };
	t += 3600u * 1000u;
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t), KG_SRC_PENDING);
	kg_srclimit_release(l, &a);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t), KG_SRC_OK);
	kg_srclimit_release(l, &a);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t), KG_SRC_OK);
	kg_srclimit_release(l, &a);
	ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, t), KG_SRC_RATE);
	kg_srclimit_free(l);
}
END_TEST

START_TEST(limits_off_admit_everything)
{
	struct kg_srclimit *l = kg_srclimit_new(16, 3);
	struct kg_srclimit_limits lim = { 0 };
	struct kg_srckey a = v4("10.0.0.1", 32);

	for (int i = 0; i < 10000; i++)
		ck_assert_int_eq(kg_srclimit_admit(l, &lim, &a, 5), KG_SRC_OK);
	ck_assert_uint_eq(kg_srclimit_pending(l, &a), 10000);
	kg_srclimit_free(l);
}
END_TEST

/* Many sources: memory stays the table, idle sources are forgotten, and a run full
 * of sources with pending connections admits untracked (fail open). */
START_TEST(table_is_bounded_and_fails_open)
{
	struct kg_srclimit *l = kg_srclimit_new(16, 4);
	struct kg_srclimit_limits lim = { .max_pending = 1, .rate = 1, .burst = 1 };
	unsigned ok = 0, untracked = 0;
	char ip[32];

	ck_assert_uint_eq(kg_srclimit_capacity(l), 16);
	for (unsigned i = 0; i < 1000; i++) {
		struct kg_srckey k;
		enum kg_src_verdict v;

		snprintf(ip, sizeof(ip), "10.1.%u.%u", i / 256, i % 256);
		k = v4(ip, 32);
		v = kg_srclimit_admit(l, &lim, &k, 10);
		ck_assert(v == KG_SRC_OK || v == KG_SRC_UNTRACKED);
		ok += v == KG_SRC_OK;
		untracked += v == KG_SRC_UNTRACKED;
	}
	ck_assert_uint_eq(ok, 16);
	ck_assert_uint_eq(untracked, 984);
	ck_assert_uint_eq(kg_srclimit_count(l), 16);
	/* release them all: after a second their buckets are full again, so they are
	 * idle and new sources take their slots */
	for (unsigned i = 0; i < 1000; i++) {
		struct kg_srckey k;

		snprintf(ip, sizeof(ip), "10.1.%u.%u", i / 256, i % 256);
		k = v4(ip, 32);
		kg_srclimit_release(l, &k);
	}
	{
		struct kg_srckey k = v4("10.9.9.9", 32);
		ck_assert_int_eq(kg_srclimit_admit(l, &lim, &k, 10 + 1000), KG_SRC_OK);
		ck_assert_int_eq(kg_srclimit_admit(l, &lim, &k, 10 + 1000), KG_SRC_PENDING);
	}
	ck_assert_uint_eq(kg_srclimit_count(l), 16);
	ck_assert_ptr_null(kg_srclimit_new(0, 1));
	ck_assert_ptr_null(kg_srclimit_new(((size_t)1 << 24) + 1, 1));
	kg_srclimit_free(NULL);
	kg_srclimit_free(l);
}
END_TEST

START_TEST(source_limit_feeds_the_xdp_gate)
{
	ck_assert_int_eq(kg_edge_reason_category(KG_REASON_SOURCE_LIMIT), KG_XDP_DENY_SOURCE_LIMIT);
	ck_assert_int_lt(KG_XDP_DENY_SOURCE_LIMIT, KG_XDP_DENY_REASON_MAX);
}
END_TEST

static const char *const base = "[daemon]\ncert = /c\nkey = /k\nregistry = /r\n";

static int parse(const char *extra, struct kg_config **out, char *err, size_t errlen)
{
	char text[2048];

	*out = calloc(1, sizeof(**out));
	ck_assert_ptr_nonnull(*out);
	snprintf(text, sizeof(text), "%s%s", base, extra);
	return kg_config_parse_string(text, "t.conf", *out, err, errlen);
}

START_TEST(config_keys_defaults_and_ranges)
{
	struct kg_config *cfg;
	char err[KG_ERRBUF];

	ck_assert_int_eq(parse("", &cfg, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg->source_max_handshakes, 32);
	ck_assert_uint_eq(cfg->source_rate, 50);
	ck_assert_uint_eq(cfg->source_burst, 100);
	ck_assert_uint_eq(cfg->source_prefix_v4, 32);
	ck_assert_uint_eq(cfg->source_prefix_v6, 64);
	ck_assert_uint_eq(cfg->source_table, 4096);
	free(cfg);
	ck_assert_int_eq(parse("[limits]\nsource_max_handshakes = 0\nsource_rate = 0\n"
			       "source_prefix_v4 = 24\nsource_prefix_v6 = 56\n", &cfg, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg->source_max_handshakes, 0);
	ck_assert_uint_eq(cfg->source_rate, 0);
	ck_assert_uint_eq(cfg->source_prefix_v4, 24);
	ck_assert_uint_eq(cfg->source_prefix_v6, 56);
	free(cfg);
	ck_assert_int_eq(parse("[limits]\nsource_prefix_v4 = 33\n", &cfg, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "t.conf:6:"));
	ck_assert_ptr_nonnull(strstr(err, "source_prefix_v4"));
	free(cfg);
	ck_assert_int_eq(parse("[limits]\nsource_prefix_v6 = 129\n", &cfg, err, sizeof(err)), -1);
	free(cfg);
	ck_assert_int_eq(parse("[limits]\nsource_burst = 0\n", &cfg, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "source_burst"));
	free(cfg);
	ck_assert_int_eq(parse("[limits]\nsource_table = 10\n", &cfg, err, sizeof(err)), -1);
	free(cfg);
}
END_TEST

Suite *kg_suite_srclimit(void)
{
	Suite *s = suite_create("srclimit");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, key_masks_to_the_prefix);
	tcase_add_test(tc, pending_cap_counts_until_release);
	tcase_add_test(tc, token_bucket_refills_at_rate);
	tcase_add_test(tc, limits_off_admit_everything);
	tcase_add_test(tc, table_is_bounded_and_fails_open);
	tcase_add_test(tc, source_limit_feeds_the_xdp_gate);
	tcase_add_test(tc, config_keys_defaults_and_ranges);
	suite_add_tcase(s, tc);
	return s;
}
