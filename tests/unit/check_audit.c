/* SPDX-License-Identifier: BSD-2-Clause */
/* check_audit.c - audit lines are one valid JSON object each, escaping included. */
#include <string.h>

#include <json-c/json.h>

#include "ktlsgate/audit.h"
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

Suite *kg_suite_audit(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("format");

	tcase_add_test(tc, deny_record);
	tcase_add_test(tc, escapes_hostile_id);
	tcase_add_test(tc, too_small_buffer);
	tcase_add_test(tc, reason_names_unique);
	suite_add_tcase(s, tc);
	return s;
}
