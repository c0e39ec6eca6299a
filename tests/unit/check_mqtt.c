/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_mqtt.c - table-driven tests for the MQTT codec (daemon/mqtt/mqtt.c). CONNECT cases
 * are written as bodies (variable header + payload) and framed by the test, so each
 * row reads like the spec; every body case is also parsed at every strict prefix
 * (must be SHORT) and from an exact-size heap copy (so ASan sees any over-read).
 * Header-level cases (varints, first byte, limits) are whole packets.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt.h"
#include "testlib.h"

#define BYTES(...) (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })

/* Variable header prefixes: protocol name, level, connect flags, keepalive 60. */
#define V31_HDR(f) 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03, (f), 0x00, 0x3c
#define V311_HDR(f) 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, (f), 0x00, 0x3c
#define V5_HDR(f) 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, (f), 0x00, 0x3c
#define STR_DEV 0x00, 0x03, 'd', 'e', 'v'
/* The smallest useful 3.1.1 CONNECT: clean session, client id "dev"; 17 bytes. */
#define V311_MIN 0x10, 0x0f, V311_HDR(0x02), STR_DEV

#define OK KG_PARSE_OK
#define SHORT KG_PARSE_SHORT
#define MALFORMED KG_PARSE_MALFORMED
#define UNSUPPORTED KG_PARSE_UNSUPPORTED
#define TOO_BIG KG_PARSE_TOO_BIG
#define NOT_CONNECT KG_PARSE_NOT_CONNECT

/* The rest of a table row when nothing but the result is expected. */
#define FAIL(rc) rc, 0, NULL, NULL
#define CFAIL(rc) rc, 0, false, 0

static const char *pname(enum kg_parse rc)
{
	static const char *const names[] = { "OK", "SHORT", "MALFORMED", "UNSUPPORTED",
					     "TOO_BIG", "NOT_CONNECT" };

	return (unsigned int)rc < KG_NITEMS(names) ? names[rc] : "?";
}

/* Parse from a heap copy of exactly len bytes: any read past it is an ASan error. */
static enum kg_parse parse_exact(const uint8_t *p, size_t len, size_t max,
				 struct kg_mqtt_connect *out, uint8_t **copy)
{
	uint8_t *b = malloc(len ? len : 1);
	enum kg_parse rc;

	ck_assert_ptr_nonnull(b);
	if (len)
		memcpy(b, p, len);
	rc = kg_mqtt_parse_connect(b, len, max, out);
	*copy = b;
	return rc;
}

/* ---- CONNECT body tables -------------------------------------------------- */

struct body_case {
	const char *name;
	const uint8_t *body;
	size_t len;
	enum kg_parse rc;
	uint8_t level;         /* expected on OK */
	const char *client_id; /* expected on OK */
	const char *username;  /* expected on OK; NULL: absent */
};

static const struct body_case v311_cases[] = {
	{ "minimal", BYTES(V311_HDR(0x02), STR_DEV), OK, 4, "dev", NULL },
	{ "empty_client_id", BYTES(V311_HDR(0x02), 0, 0), OK, 4, "", NULL },
	{ "no_clean_session", BYTES(V311_HDR(0x00), STR_DEV), OK, 4, "dev", NULL },
	{ "user_pass", BYTES(V311_HDR(0xc2), STR_DEV, 0, 1, 'u', 0, 2, 'p', 'w'), OK, 4, "dev", "u" },
	{ "user_only", BYTES(V311_HDR(0x82), STR_DEV, 0, 4, 'u', 's', 'e', 'r'), OK, 4, "dev", "user" },
	{ "empty_username", BYTES(V311_HDR(0x82), STR_DEV, 0, 0), OK, 4, "dev", "" },
	{ "password_is_binary", BYTES(V311_HDR(0xc2), STR_DEV, 0, 1, 'u', 0, 3, 0x00, 0xff, 0xc0),
	  OK, 4, "dev", "u" },
	{ "will_qos1", BYTES(V311_HDR(0x0e), STR_DEV, 0, 1, 't', 0, 2, 'h', 'i'), OK, 4, "dev", NULL },
	{ "will_qos2_retain", BYTES(V311_HDR(0x36), STR_DEV, 0, 3, 'a', '/', 'b', 0, 0), OK, 4, "dev",
	  NULL },
	{ "will_user_pass", BYTES(V311_HDR(0xee), STR_DEV, 0, 1, 't', 0, 1, 'x', 0, 1, 'u', 0, 1, 'p'),
	  OK, 4, "dev", "u" },
	{ "utf8_multibyte",
	  BYTES(V311_HDR(0x02), 0, 10, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 'x'), OK, 4,
	  "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80x", NULL },
	{ "utf8_u10ffff", BYTES(V311_HDR(0x02), 0, 4, 0xf4, 0x8f, 0xbf, 0xbf), OK, 4,
	  "\xf4\x8f\xbf\xbf", NULL },
	{ "utf8_bom_kept", BYTES(V311_HDR(0x02), 0, 3, 0xef, 0xbb, 0xbf), OK, 4, "\xef\xbb\xbf", NULL },
	{ "utf8_ud7ff", BYTES(V311_HDR(0x02), 0, 3, 0xed, 0x9f, 0xbf), OK, 4, "\xed\x9f\xbf", NULL },
	{ "utf8_ue000", BYTES(V311_HDR(0x02), 0, 3, 0xee, 0x80, 0x80), OK, 4, "\xee\x80\x80", NULL },
	{ "utf8_control_char_allowed", BYTES(V311_HDR(0x02), 0, 1, 0x01), OK, 4, "\x01", NULL },
	{ "utf8_u0800", BYTES(V311_HDR(0x02), 0, 3, 0xe0, 0xa0, 0x80), OK, 4, "\xe0\xa0\x80", NULL },
	{ "utf8_u10000", BYTES(V311_HDR(0x02), 0, 4, 0xf0, 0x90, 0x80, 0x80), OK, 4,
	  "\xf0\x90\x80\x80", NULL },
};

static const struct body_case v5_cases[] = {
	{ "no_props", BYTES(V5_HDR(0x02), 0, STR_DEV), OK, 5, "dev", NULL },
	{ "all_connect_props",
	  BYTES(V5_HDR(0x02), 43, 0x11, 0, 0, 0x0e, 0x10, 0x21, 0, 10, 0x27, 0, 0, 1, 0, 0x22, 0, 5,
		0x19, 1, 0x17, 0, 0x26, 0, 1, 'k', 0, 1, 'v', 0x26, 0, 1, 'k', 0, 1, 'w', 0x15, 0, 1,
		'm', 0x16, 0, 2, 1, 2, STR_DEV),
	  OK, 5, "dev", NULL },
	{ "user_pass", BYTES(V5_HDR(0xc2), 0, STR_DEV, 0, 1, 'u', 0, 1, 'p'), OK, 5, "dev", "u" },
	{ "password_without_username_ok", BYTES(V5_HDR(0x42), 0, STR_DEV, 0, 1, 'p'), OK, 5, "dev",
	  NULL },
	{ "will_with_props",
	  BYTES(V5_HDR(0x0e), 0, STR_DEV, 38, 0x18, 0, 0, 0, 5, 0x01, 1, 0x02, 0, 0, 0, 60, 0x03, 0, 1,
		'c', 0x08, 0, 1, 'r', 0x09, 0, 1, 0xff, 0x26, 0, 1, 'k', 0, 1, 'v', 0x26, 0, 1, 'k', 0,
		1, 'v', 0, 1, 't', 0, 2, 'h', 'i'),
	  OK, 5, "dev", NULL },
	{ "will_no_props", BYTES(V5_HDR(0x06), 0, STR_DEV, 0, 0, 1, 't', 0, 0), OK, 5, "dev", NULL },
	{ "props_len_nonminimal_varint", BYTES(V5_HDR(0x02), 0x80, 0x00, STR_DEV), OK, 5, "dev", NULL },
	{ "auth_method_only", BYTES(V5_HDR(0x02), 4, 0x15, 0, 1, 'm', STR_DEV), OK, 5, "dev", NULL },
	{ "user_property_empty", BYTES(V5_HDR(0x02), 5, 0x26, 0, 0, 0, 0, STR_DEV), OK, 5, "dev",
	  NULL },
	{ "empty_client_id", BYTES(V5_HDR(0x02), 0, 0, 0), OK, 5, "", NULL },
	{ "bool_props_max", BYTES(V5_HDR(0x02), 4, 0x19, 1, 0x17, 1, STR_DEV), OK, 5, "dev", NULL },
};

static const struct body_case v31_cases[] = {
	{ "minimal", BYTES(V31_HDR(0x02), STR_DEV), OK, 3, "dev", NULL },
	{ "user_pass", BYTES(V31_HDR(0xc2), STR_DEV, 0, 1, 'u', 0, 1, 'p'), OK, 3, "dev", "u" },
	{ "will", BYTES(V31_HDR(0x0e), STR_DEV, 0, 1, 't', 0, 1, 'x'), OK, 3, "dev", NULL },
	{ "client_id_over_23_policy_decides",
	  BYTES(V31_HDR(0x02), 0, 24, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm',
		'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x'),
	  OK, 3, "abcdefghijklmnopqrstuvwx", NULL },
	{ "password_without_username", BYTES(V31_HDR(0x42), STR_DEV, 0, 1, 'p'), FAIL(MALFORMED) },
	{ "mqisdp_level_4",
	  BYTES(0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 4, 2, 0, 60, STR_DEV), FAIL(UNSUPPORTED) },
	{ "mqisdp_level_5",
	  BYTES(0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 5, 2, 0, 60, STR_DEV), FAIL(UNSUPPORTED) },
	{ "mqisdp_bridge_level_0x83",
	  BYTES(0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 0x83, 2, 0, 60, STR_DEV), FAIL(UNSUPPORTED) },
	{ "name_mqisd", BYTES(0, 5, 'M', 'Q', 'I', 's', 'd', 3, 2, 0, 60, STR_DEV), FAIL(MALFORMED) },
	{ "reserved_flag", BYTES(V31_HDR(0x03), STR_DEV), FAIL(MALFORMED) },
	{ "trailing_byte", BYTES(V31_HDR(0x02), STR_DEV, 0), FAIL(MALFORMED) },
};

static const struct body_case malformed_cases[] = {
	/* truncated inside the remaining length: lengths that lie are MALFORMED, not SHORT */
	{ "name_len_only", BYTES(0, 4), FAIL(MALFORMED) },
	{ "name_only", BYTES(0, 4, 'M', 'Q', 'T', 'T'), FAIL(MALFORMED) },
	{ "no_flags", BYTES(0, 4, 'M', 'Q', 'T', 'T', 4), FAIL(MALFORMED) },
	{ "no_keepalive", BYTES(0, 4, 'M', 'Q', 'T', 'T', 4, 2), FAIL(MALFORMED) },
	{ "half_keepalive", BYTES(0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0), FAIL(MALFORMED) },
	{ "no_client_id", BYTES(V311_HDR(0x02)), FAIL(MALFORMED) },
	{ "client_id_half_len", BYTES(V311_HDR(0x02), 0), FAIL(MALFORMED) },
	{ "client_id_past_end", BYTES(V311_HDR(0x02), 0, 9, 'd', 'e', 'v'), FAIL(MALFORMED) },
	{ "oversize_string", BYTES(V311_HDR(0x02), 0xff, 0xff, 'a', 'b'), FAIL(MALFORMED) },
	{ "name_past_end", BYTES(0, 0x20, 'M', 'Q', 'T', 'T', 4, 2, 0, 60), FAIL(MALFORMED) },
	/* protocol name and level */
	{ "bad_protocol_name", BYTES(0, 4, 'M', 'Q', 'T', 'X', 4, 2, 0, 60, STR_DEV), FAIL(MALFORMED) },
	{ "lowercase_name", BYTES(0, 4, 'm', 'q', 't', 't', 4, 2, 0, 60, STR_DEV), FAIL(MALFORMED) },
	{ "empty_name", BYTES(0, 0, 4, 2, 0, 60, STR_DEV), FAIL(MALFORMED) },
	{ "name_with_nul", BYTES(0, 5, 'M', 'Q', 'T', 'T', 0, 4, 2, 0, 60, STR_DEV), FAIL(MALFORMED) },
	{ "level_6", BYTES(0, 4, 'M', 'Q', 'T', 'T', 6, 2, 0, 60, STR_DEV), FAIL(UNSUPPORTED) },
	{ "level_0", BYTES(0, 4, 'M', 'Q', 'T', 'T', 0, 2, 0, 60, STR_DEV), FAIL(UNSUPPORTED) },
	{ "level_255", BYTES(0, 4, 'M', 'Q', 'T', 'T', 0xff, 2, 0, 60, STR_DEV), FAIL(UNSUPPORTED) },
	{ "mqtt_level_3", BYTES(0, 4, 'M', 'Q', 'T', 'T', 3, 2, 0, 60, STR_DEV), FAIL(UNSUPPORTED) },
	{ "bridge_level_0x84", BYTES(0, 4, 'M', 'Q', 'T', 'T', 0x84, 2, 0, 60, STR_DEV), FAIL(UNSUPPORTED) },
	/* connect flags */
	{ "reserved_flag", BYTES(V311_HDR(0x03), STR_DEV), FAIL(MALFORMED) },
	{ "reserved_flag_alone", BYTES(V311_HDR(0x01), STR_DEV), FAIL(MALFORMED) },
	{ "will_qos3", BYTES(V311_HDR(0x1e), STR_DEV, 0, 1, 't', 0, 0), FAIL(MALFORMED) },
	{ "will_retain_without_will", BYTES(V311_HDR(0x22), STR_DEV), FAIL(MALFORMED) },
	{ "will_qos1_without_will", BYTES(V311_HDR(0x0a), STR_DEV), FAIL(MALFORMED) },
	{ "will_qos2_without_will", BYTES(V311_HDR(0x12), STR_DEV), FAIL(MALFORMED) },
	{ "password_without_username", BYTES(V311_HDR(0x42), STR_DEV, 0, 1, 'p'), FAIL(MALFORMED) },
	/* UTF-8 in the client id */
	{ "client_id_nul", BYTES(V311_HDR(0x02), 0, 3, 'a', 0, 'b'), FAIL(MALFORMED) },
	{ "overlong_nul", BYTES(V311_HDR(0x02), 0, 2, 0xc0, 0x80), FAIL(MALFORMED) },
	{ "overlong_c1", BYTES(V311_HDR(0x02), 0, 2, 0xc1, 0xbf), FAIL(MALFORMED) },
	{ "overlong_3byte", BYTES(V311_HDR(0x02), 0, 3, 0xe0, 0x80, 0xaf), FAIL(MALFORMED) },
	{ "overlong_3byte_max", BYTES(V311_HDR(0x02), 0, 3, 0xe0, 0x9f, 0xbf), FAIL(MALFORMED) },
	{ "overlong_4byte", BYTES(V311_HDR(0x02), 0, 4, 0xf0, 0x8f, 0xbf, 0xbf), FAIL(MALFORMED) },
	{ "surrogate_high", BYTES(V311_HDR(0x02), 0, 3, 0xed, 0xa0, 0x80), FAIL(MALFORMED) },
	{ "surrogate_low", BYTES(V311_HDR(0x02), 0, 3, 0xed, 0xbf, 0xbf), FAIL(MALFORMED) },
	{ "above_10ffff", BYTES(V311_HDR(0x02), 0, 4, 0xf4, 0x90, 0x80, 0x80), FAIL(MALFORMED) },
	{ "lead_f5", BYTES(V311_HDR(0x02), 0, 4, 0xf5, 0x80, 0x80, 0x80), FAIL(MALFORMED) },
	{ "lead_ff", BYTES(V311_HDR(0x02), 0, 1, 0xff), FAIL(MALFORMED) },
	{ "lone_continuation", BYTES(V311_HDR(0x02), 0, 1, 0x80), FAIL(MALFORMED) },
	{ "truncated_2byte", BYTES(V311_HDR(0x02), 0, 2, 'a', 0xc3), FAIL(MALFORMED) },
	{ "truncated_3byte", BYTES(V311_HDR(0x02), 0, 3, 'a', 0xe2, 0x82), FAIL(MALFORMED) },
	{ "truncated_4byte", BYTES(V311_HDR(0x02), 0, 4, 0xf0, 0x9f, 0x98, 'x'), FAIL(MALFORMED) },
	{ "bad_continuation", BYTES(V311_HDR(0x02), 0, 2, 0xc3, 0x28), FAIL(MALFORMED) },
	/* trailing bytes inside the remaining length */
	{ "trailing_byte", BYTES(V311_HDR(0x02), STR_DEV, 0), FAIL(MALFORMED) },
	{ "trailing_after_password",
	  BYTES(V311_HDR(0xc2), STR_DEV, 0, 1, 'u', 0, 1, 'p', 0xde, 0xad), FAIL(MALFORMED) },
	{ "trailing_password_without_flag", BYTES(V311_HDR(0x82), STR_DEV, 0, 1, 'u', 0, 1, 'p'),
	  FAIL(MALFORMED) },
	/* flags announce fields that are not there, or bad ones */
	{ "username_flag_no_username", BYTES(V311_HDR(0x82), STR_DEV), FAIL(MALFORMED) },
	{ "password_flag_no_password", BYTES(V311_HDR(0xc2), STR_DEV, 0, 1, 'u'), FAIL(MALFORMED) },
	{ "username_bad_utf8", BYTES(V311_HDR(0x82), STR_DEV, 0, 1, 0xff), FAIL(MALFORMED) },
	{ "username_nul", BYTES(V311_HDR(0x82), STR_DEV, 0, 1, 0x00), FAIL(MALFORMED) },
	{ "will_no_topic", BYTES(V311_HDR(0x06), STR_DEV), FAIL(MALFORMED) },
	{ "will_no_payload", BYTES(V311_HDR(0x06), STR_DEV, 0, 1, 't'), FAIL(MALFORMED) },
	{ "will_payload_past_end", BYTES(V311_HDR(0x06), STR_DEV, 0, 1, 't', 0, 5, 'a'), FAIL(MALFORMED) },
	{ "will_topic_empty", BYTES(V311_HDR(0x06), STR_DEV, 0, 0, 0, 0), FAIL(MALFORMED) },
	{ "will_topic_hash", BYTES(V311_HDR(0x06), STR_DEV, 0, 3, 'a', '/', '#', 0, 0), FAIL(MALFORMED) },
	{ "will_topic_plus", BYTES(V311_HDR(0x06), STR_DEV, 0, 3, '+', '/', 'b', 0, 0), FAIL(MALFORMED) },
	{ "will_topic_surrogate", BYTES(V311_HDR(0x06), STR_DEV, 0, 3, 0xed, 0xa0, 0x80, 0, 0),
	  FAIL(MALFORMED) },
	/* MQTT 5.0 properties */
	{ "v5_props_missing", BYTES(V5_HDR(0x02)), FAIL(MALFORMED) },
	{ "v5_receive_max_0", BYTES(V5_HDR(0x02), 3, 0x21, 0, 0, STR_DEV), FAIL(MALFORMED) },
	{ "v5_max_packet_size_0", BYTES(V5_HDR(0x02), 5, 0x27, 0, 0, 0, 0, STR_DEV), FAIL(MALFORMED) },
	{ "v5_request_response_info_2", BYTES(V5_HDR(0x02), 2, 0x19, 2, STR_DEV), FAIL(MALFORMED) },
	{ "v5_request_problem_info_2", BYTES(V5_HDR(0x02), 2, 0x17, 2, STR_DEV), FAIL(MALFORMED) },
	{ "v5_dup_session_expiry",
	  BYTES(V5_HDR(0x02), 10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1, STR_DEV), FAIL(MALFORMED) },
	{ "v5_dup_receive_max", BYTES(V5_HDR(0x02), 6, 0x21, 0, 1, 0x21, 0, 1, STR_DEV), FAIL(MALFORMED) },
	{ "v5_dup_auth_method",
	  BYTES(V5_HDR(0x02), 8, 0x15, 0, 1, 'm', 0x15, 0, 1, 'm', STR_DEV), FAIL(MALFORMED) },
	{ "v5_dup_auth_data",
	  BYTES(V5_HDR(0x02), 10, 0x15, 0, 1, 'm', 0x16, 0, 0, 0x16, 0, 0, STR_DEV), FAIL(MALFORMED) },
	{ "v5_unknown_prop_0x7f", BYTES(V5_HDR(0x02), 2, 0x7f, 0, STR_DEV), FAIL(MALFORMED) },
	{ "v5_prop_id_0", BYTES(V5_HDR(0x02), 2, 0x00, 0, STR_DEV), FAIL(MALFORMED) },
	{ "v5_prop_id_multibyte", BYTES(V5_HDR(0x02), 3, 0x91, 0x00, 0, STR_DEV), FAIL(MALFORMED) },
	{ "v5_will_prop_in_connect", BYTES(V5_HDR(0x02), 2, 0x01, 1, STR_DEV), FAIL(MALFORMED) },
	{ "v5_connack_prop_in_connect", BYTES(V5_HDR(0x02), 2, 0x24, 1, STR_DEV), FAIL(MALFORMED) },
	{ "v5_props_len_past_end", BYTES(V5_HDR(0x02), 0x7f, STR_DEV), FAIL(MALFORMED) },
	{ "v5_props_len_5byte_varint", BYTES(V5_HDR(0x02), 0x80, 0x80, 0x80, 0x80, 0x01, STR_DEV),
	  FAIL(MALFORMED) },
	{ "v5_props_len_huge", BYTES(V5_HDR(0x02), 0xff, 0xff, 0xff, 0x7f, STR_DEV), FAIL(MALFORMED) },
	{ "v5_prop_crosses_list_end", BYTES(V5_HDR(0x02), 3, 0x11, 0, 0, 0, 0, STR_DEV), FAIL(MALFORMED) },
	{ "v5_auth_data_without_method", BYTES(V5_HDR(0x02), 5, 0x16, 0, 2, 1, 2, STR_DEV),
	  FAIL(MALFORMED) },
	{ "v5_user_property_no_value", BYTES(V5_HDR(0x02), 4, 0x26, 0, 1, 'k', STR_DEV), FAIL(MALFORMED) },
	{ "v5_user_property_bad_utf8",
	  BYTES(V5_HDR(0x02), 7, 0x26, 0, 1, 0xc0, 0, 1, 'v', STR_DEV), FAIL(MALFORMED) },
	{ "v5_user_property_value_nul",
	  BYTES(V5_HDR(0x02), 7, 0x26, 0, 1, 'k', 0, 1, 0x00, STR_DEV), FAIL(MALFORMED) },
	{ "v5_auth_method_bad_utf8", BYTES(V5_HDR(0x02), 4, 0x15, 0, 1, 0x80, STR_DEV), FAIL(MALFORMED) },
	{ "v5_password_flag_no_password", BYTES(V5_HDR(0x42), 0, STR_DEV), FAIL(MALFORMED) },
	{ "v5_reserved_flag", BYTES(V5_HDR(0x03), 0, STR_DEV), FAIL(MALFORMED) },
	{ "v5_trailing_byte", BYTES(V5_HDR(0x02), 0, STR_DEV, 0), FAIL(MALFORMED) },
	{ "v5_will_connect_only_prop",
	  BYTES(V5_HDR(0x06), 0, STR_DEV, 5, 0x11, 0, 0, 0, 1, 0, 1, 't', 0, 0), FAIL(MALFORMED) },
	{ "v5_will_payload_format_2",
	  BYTES(V5_HDR(0x06), 0, STR_DEV, 2, 0x01, 2, 0, 1, 't', 0, 0), FAIL(MALFORMED) },
	{ "v5_will_response_topic_wildcard",
	  BYTES(V5_HDR(0x06), 0, STR_DEV, 4, 0x08, 0, 1, '#', 0, 1, 't', 0, 0), FAIL(MALFORMED) },
	{ "v5_will_dup_delay",
	  BYTES(V5_HDR(0x06), 0, STR_DEV, 10, 0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 1, 0, 1, 't', 0, 0),
	  FAIL(MALFORMED) },
	{ "v5_will_props_past_end", BYTES(V5_HDR(0x06), 0, STR_DEV, 0x40, 0, 1, 't', 0, 0),
	  FAIL(MALFORMED) },
	{ "v5_will_content_type_nul",
	  BYTES(V5_HDR(0x06), 0, STR_DEV, 4, 0x03, 0, 1, 0, 0, 1, 't', 0, 0), FAIL(MALFORMED) },
	{ "v5_will_props_missing", BYTES(V5_HDR(0x06), 0, STR_DEV), FAIL(MALFORMED) },
};

static size_t frame(uint8_t *out, const uint8_t *body, size_t len)
{
	size_t n = 0, v = len;

	out[n++] = 0x10;
	do {
		out[n] = v & 0x7f;
		v >>= 7;
		if (v)
			out[n] |= 0x80;
		n++;
	} while (v);
	memcpy(out + n, body, len);
	return n + len;
}

static void run_body_case(const struct body_case *c)
{
	uint8_t pkt[512];
	size_t n;
	struct kg_mqtt_connect m;
	enum kg_parse rc;
	uint8_t *copy;

	ck_assert_uint_lt(c->len + 5, sizeof(pkt));
	n = frame(pkt, c->body, c->len);
	rc = parse_exact(pkt, n, 4096, &m, &copy);
	ck_assert_msg(rc == c->rc, "%s: got %s, want %s", c->name, pname(rc), pname(c->rc));
	if (rc == OK) {
		ck_assert_uint_eq(m.packet_len, n);
		ck_assert_uint_eq(m.level, c->level);
		ck_assert_uint_eq(m.client_id_len, strlen(c->client_id));
		ck_assert_msg(m.client_id >= copy && m.client_id + m.client_id_len <= copy + n,
			      "%s: client id outside the input", c->name);
		ck_assert_mem_eq(m.client_id, c->client_id, m.client_id_len);
		if (c->username) {
			ck_assert_ptr_nonnull(m.username);
			ck_assert_uint_eq(m.username_len, strlen(c->username));
			ck_assert_mem_eq(m.username, c->username, m.username_len);
		} else {
			ck_assert_ptr_null(m.username);
		}
	}
	free(copy);

	/* The body is only judged once the whole packet is here. */
	for (size_t i = 0; i < n; i++) {
		rc = parse_exact(pkt, i, 4096, &m, &copy);
		free(copy);
		ck_assert_msg(rc == SHORT, "%s: prefix %zu/%zu got %s", c->name, i, n, pname(rc));
	}

	/* A following packet changes nothing, and never leaks into this one. */
	pkt[n] = 0xc0;
	pkt[n + 1] = 0x00;
	rc = parse_exact(pkt, n + 2, 4096, &m, &copy);
	free(copy);
	ck_assert_msg(rc == c->rc, "%s + PINGREQ: got %s", c->name, pname(rc));
	if (rc == OK)
		ck_assert_uint_eq(m.packet_len, n);
}

START_TEST(test_connect_v311)
{
	run_body_case(&v311_cases[_i]);
}
END_TEST

START_TEST(test_connect_v5)
{
	run_body_case(&v5_cases[_i]);
}
END_TEST

START_TEST(test_connect_v31)
{
	run_body_case(&v31_cases[_i]);
}
END_TEST

START_TEST(test_connect_malformed)
{
	run_body_case(&malformed_cases[_i]);
}
END_TEST

/* Every field of one rich CONNECT, and of one v5 CONNECT with a will. */
START_TEST(test_connect_fields)
{
	static const uint8_t pkt[] = { 0x10, 27, V311_HDR(0xf6), STR_DEV, 0, 1, 't', 0, 0,
				       0, 2, 'u', 's', 0, 1, 'p' };
	static const uint8_t pkt5[] = { 0x10, 22, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x0c, 0x12, 0x34,
					3, 0x21, 0, 1, 0, 0, 0, 0, 1, 'x', 0, 0 };
	struct kg_mqtt_connect m;

	ck_assert_int_eq(kg_mqtt_parse_connect(pkt, sizeof(pkt), 100, &m), OK);
	ck_assert_uint_eq(m.level, KG_MQTT_V311);
	ck_assert_uint_eq(m.flags, 0xf6);
	ck_assert_uint_eq(m.keepalive, 60);
	ck_assert(m.clean_start && m.has_will && m.has_username && m.has_password);
	ck_assert_uint_eq(m.will_qos, 2);
	ck_assert_ptr_eq(m.client_id, pkt + 14);
	ck_assert_uint_eq(m.client_id_len, 3);
	ck_assert_ptr_eq(m.username, pkt + 24);
	ck_assert_uint_eq(m.username_len, 2);
	ck_assert_uint_eq(m.packet_len, sizeof(pkt));

	ck_assert_int_eq(kg_mqtt_parse_connect(pkt5, sizeof(pkt5), 100, &m), OK);
	ck_assert_uint_eq(m.level, KG_MQTT_V5);
	ck_assert_uint_eq(m.keepalive, 0x1234);
	ck_assert(!m.clean_start && m.has_will && !m.has_username && !m.has_password);
	ck_assert_uint_eq(m.will_qos, 1);
	ck_assert_uint_eq(m.client_id_len, 0);
	ck_assert_ptr_null(m.username);

	/* a failed parse leaves nothing behind */
	ck_assert_int_eq(kg_mqtt_parse_connect(pkt, sizeof(pkt) - 1, 100, &m), SHORT);
	ck_assert_ptr_null(m.client_id);
	ck_assert_uint_eq(m.packet_len, 0);
}
END_TEST

/* ---- whole-packet cases: fixed header, first byte, limits ------------------ */

struct raw_case {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	size_t max;
	enum kg_parse rc;
	size_t packet_len; /* on OK */
};

static const struct raw_case raw_cases[] = {
	{ "empty", (const uint8_t[]){ 0x10 }, 0, 4096, SHORT, 0 },
	{ "one_byte", BYTES(0x10), 4096, SHORT, 0 },
	{ "varint_incomplete", BYTES(0x10, 0x80), 4096, SHORT, 0 },
	{ "varint_incomplete_3", BYTES(0x10, 0xff, 0xff, 0xff), 4096, SHORT, 0 },
	{ "varint_5_bytes", BYTES(0x10, 0xff, 0xff, 0xff, 0xff), 4096, MALFORMED, 0 },
	{ "varint_5_bytes_min", BYTES(0x10, 0x80, 0x80, 0x80, 0x80, 0x01), 4096, MALFORMED, 0 },
	{ "varint_max_too_big", BYTES(0x10, 0xff, 0xff, 0xff, 0x7f), 4096, TOO_BIG, 0 },
	{ "declared_10mb_5_bytes", BYTES(0x10, 0x80, 0x80, 0x80, 0x05), 65536, TOO_BIG, 0 },
	{ "declared_10mb_4_bytes", BYTES(0x10, 0x80, 0x80, 0x80), 65536, SHORT, 0 },
	{ "declared_10mb_with_max_ok_is_short", BYTES(0x10, 0x80, 0x80, 0x80, 0x05), 16u << 20,
	  SHORT, 0 },
	{ "over_max_by_one", BYTES(V311_MIN), 14, TOO_BIG, 0 },
	{ "over_max_header_only", BYTES(0x10, 0x0f), 14, TOO_BIG, 0 },
	{ "equal_max", BYTES(V311_MIN), 15, OK, 17 },
	{ "max_zero", BYTES(V311_MIN), 0, TOO_BIG, 0 },
	{ "empty_body", BYTES(0x10, 0x00), 4096, MALFORMED, 0 },
	{ "empty_body_max_0", BYTES(0x10, 0x00), 0, MALFORMED, 0 },
	{ "nonminimal_remaining", BYTES(0x10, 0x8f, 0x00, V311_HDR(0x02), STR_DEV), 4096, OK, 18 },
	{ "bytes_after_packet", BYTES(V311_MIN, 0xc0, 0x00), 4096, OK, 17 },
	{ "two_connects", BYTES(V311_MIN, V311_MIN), 4096, OK, 17 },
	/* first byte */
	{ "connect_flags_1", BYTES(0x11, 0x0f, V311_HDR(0x02), STR_DEV), 4096, MALFORMED, 0 },
	{ "connect_flags_2_one_byte", BYTES(0x12), 4096, MALFORMED, 0 },
	{ "connect_flags_f", BYTES(0x1f), 4096, MALFORMED, 0 },
	{ "type_0", BYTES(0x00, 0x00), 4096, MALFORMED, 0 },
	{ "type_0_flags", BYTES(0x0f), 4096, MALFORMED, 0 },
	{ "publish_qos0", BYTES(0x30, 0x00), 4096, NOT_CONNECT, 0 },
	{ "publish_one_byte", BYTES(0x30), 4096, NOT_CONNECT, 0 },
	{ "publish_dup_qos1_retain", BYTES(0x3b), 4096, NOT_CONNECT, 0 },
	{ "publish_qos3", BYTES(0x36, 0x00), 4096, MALFORMED, 0 },
	{ "pingreq", BYTES(0xc0, 0x00), 4096, NOT_CONNECT, 0 },
	{ "pingreq_flags", BYTES(0xc1, 0x00), 4096, MALFORMED, 0 },
	{ "subscribe", BYTES(0x82, 0x00), 4096, NOT_CONNECT, 0 },
	{ "subscribe_flags_0", BYTES(0x80, 0x00), 4096, MALFORMED, 0 },
	{ "pubrel", BYTES(0x62, 0x02, 0, 1), 4096, NOT_CONNECT, 0 },
	{ "pubrel_flags_0", BYTES(0x60), 4096, MALFORMED, 0 },
	{ "unsubscribe", BYTES(0xa2), 4096, NOT_CONNECT, 0 },
	{ "connack", BYTES(0x20, 0x02, 0, 0), 4096, NOT_CONNECT, 0 },
	{ "disconnect", BYTES(0xe0, 0x00), 4096, NOT_CONNECT, 0 },
	{ "auth", BYTES(0xf0, 0x00), 4096, NOT_CONNECT, 0 },
	{ "tls_client_hello", BYTES(0x16, 0x03, 0x01, 0x02, 0x00), 4096, MALFORMED, 0 },
	{ "http_get", BYTES('G', 'E', 'T', ' ', '/'), 4096, MALFORMED, 0 },
};

START_TEST(test_connect_raw)
{
	const struct raw_case *c = &raw_cases[_i];
	struct kg_mqtt_connect m;
	uint8_t *copy;
	enum kg_parse rc = parse_exact(c->bytes, c->len, c->max, &m, &copy);

	free(copy);
	ck_assert_msg(rc == c->rc, "%s: got %s, want %s", c->name, pname(rc), pname(c->rc));
	if (rc == OK)
		ck_assert_uint_eq(m.packet_len, c->packet_len);
}
END_TEST

/* ---- fixed header and varint length ---------------------------------------- */

struct fh_case {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	enum kg_parse rc;
	uint8_t type_flags;
	size_t remaining, hdr_len;
};

static const struct fh_case fh_cases[] = {
	{ "empty", (const uint8_t[]){ 0x30 }, 0, SHORT, 0, 0, 0 },
	{ "type_only", BYTES(0x30), SHORT, 0, 0, 0 },
	{ "zero", BYTES(0x30, 0x00), OK, 0x30, 0, 2 },
	{ "127", BYTES(0xc0, 0x7f), OK, 0xc0, 127, 2 },
	{ "128", BYTES(0x30, 0x80, 0x01), OK, 0x30, 128, 3 },
	{ "16383", BYTES(0x30, 0xff, 0x7f), OK, 0x30, 16383, 3 },
	{ "16384", BYTES(0x30, 0x80, 0x80, 0x01), OK, 0x30, 16384, 4 },
	{ "max", BYTES(0x30, 0xff, 0xff, 0xff, 0x7f), OK, 0x30, 268435455, 5 },
	{ "five_bytes", BYTES(0x30, 0xff, 0xff, 0xff, 0xff), MALFORMED, 0, 0, 0 },
	{ "four_continuing", BYTES(0x30, 0xff, 0xff, 0xff), SHORT, 0, 0, 0 },
	{ "nonminimal", BYTES(0x82, 0x80, 0x00), OK, 0x82, 0, 3 },
	{ "type_0", BYTES(0x00, 0x00), MALFORMED, 0, 0, 0 },
	{ "type_0_short", BYTES(0x0f), MALFORMED, 0, 0, 0 },
	{ "flags_not_judged", BYTES(0x3b, 0x00), OK, 0x3b, 0, 2 },
	{ "followed_by_data", BYTES(0x30, 0x02, 0xaa, 0xbb, 0xcc), OK, 0x30, 2, 2 },
};

START_TEST(test_fixed_header)
{
	const struct fh_case *c = &fh_cases[_i];
	uint8_t tf = 0xee;
	size_t rem = 77, hl = 77;
	enum kg_parse rc = kg_mqtt_parse_fixed_header(c->bytes, c->len, &tf, &rem, &hl);

	ck_assert_msg(rc == c->rc, "%s: got %s, want %s", c->name, pname(rc), pname(c->rc));
	if (rc == OK) {
		ck_assert_uint_eq(tf, c->type_flags);
		ck_assert_uint_eq(rem, c->remaining);
		ck_assert_uint_eq(hl, c->hdr_len);
	}
}
END_TEST

static const struct {
	size_t value, len;
} varint_cases[] = {
	{ 0, 1 },       { 127, 1 },       { 128, 2 },       { 16383, 2 },     { 16384, 3 },
	{ 2097151, 3 }, { 2097152, 4 },   { 268435455, 4 }, { 268435456, 0 }, { SIZE_MAX, 0 },
};

START_TEST(test_varint_len)
{
	ck_assert_uint_eq(kg_mqtt_varint_len(varint_cases[_i].value), varint_cases[_i].len);
}
END_TEST

/* ---- CONNACK ---------------------------------------------------------------- */

static const struct {
	uint8_t level;
	enum kg_connack why;
	uint8_t code;
} code_cases[] = {
	{ 3, KG_CONNACK_ACCEPTED, 0x00 },
	{ 3, KG_CONNACK_NOT_AUTHORIZED, 0x05 },
	{ 3, KG_CONNACK_BANNED, 0x05 },
	{ 3, KG_CONNACK_SERVER_UNAVAILABLE, 0x03 },
	{ 3, KG_CONNACK_BAD_CLIENT_ID, 0x02 },
	{ 3, KG_CONNACK_BAD_PROTOCOL, 0x01 },
	{ 3, KG_CONNACK_BAD_CREDENTIALS, 0x04 },
	{ 4, KG_CONNACK_ACCEPTED, 0x00 },
	{ 4, KG_CONNACK_NOT_AUTHORIZED, 0x05 },
	{ 4, KG_CONNACK_BANNED, 0x05 },
	{ 4, KG_CONNACK_SERVER_UNAVAILABLE, 0x03 },
	{ 4, KG_CONNACK_BAD_CLIENT_ID, 0x02 },
	{ 4, KG_CONNACK_BAD_PROTOCOL, 0x01 },
	{ 4, KG_CONNACK_BAD_CREDENTIALS, 0x04 },
	{ 5, KG_CONNACK_ACCEPTED, 0x00 },
	{ 5, KG_CONNACK_NOT_AUTHORIZED, 0x87 },
	{ 5, KG_CONNACK_BANNED, 0x8a },
	{ 5, KG_CONNACK_SERVER_UNAVAILABLE, 0x88 },
	{ 5, KG_CONNACK_BAD_CLIENT_ID, 0x85 },
	{ 5, KG_CONNACK_BAD_PROTOCOL, 0x84 },
	{ 5, KG_CONNACK_BAD_CREDENTIALS, 0x86 },
};

START_TEST(test_connack_code)
{
	ck_assert_uint_eq(kg_mqtt_connack_code(code_cases[_i].level, code_cases[_i].why),
			  code_cases[_i].code);
}
END_TEST

/* encode -> exact bytes -> parse, for every level x reason. */
START_TEST(test_connack_roundtrip)
{
	uint8_t level = code_cases[_i].level, code = 0xee, buf[8];
	size_t want = level == 5 ? 5 : 4, n, used = 0;
	bool sp = true;

	n = kg_mqtt_encode_connack(level, code_cases[_i].why, buf, sizeof(buf));
	ck_assert_uint_eq(n, want);
	ck_assert_uint_eq(buf[0], 0x20);
	ck_assert_uint_eq(buf[1], want - 2);
	ck_assert_uint_eq(buf[2], 0x00);
	ck_assert_uint_eq(buf[3], code_cases[_i].code);
	if (level == 5)
		ck_assert_uint_eq(buf[4], 0x00);
	ck_assert_int_eq(kg_mqtt_parse_connack(buf, n, level, &sp, &code, &used), OK);
	ck_assert(!sp);
	ck_assert_uint_eq(code, code_cases[_i].code);
	ck_assert_uint_eq(used, n);
	/* one byte short of room writes nothing */
	ck_assert_uint_eq(kg_mqtt_encode_connack(level, code_cases[_i].why, buf, want - 1), 0);
}
END_TEST

START_TEST(test_connack_invalid_args)
{
	uint8_t buf[8];

	ck_assert_uint_eq(kg_mqtt_connack_code(6, KG_CONNACK_ACCEPTED), 0xff);
	ck_assert_uint_eq(kg_mqtt_connack_code(4, KG_CONNACK_MAX), 0xff);
	ck_assert_uint_eq(kg_mqtt_encode_connack(6, KG_CONNACK_ACCEPTED, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(kg_mqtt_encode_connack(0, KG_CONNACK_ACCEPTED, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(kg_mqtt_encode_connack(5, KG_CONNACK_MAX, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(kg_mqtt_encode_connack(4, KG_CONNACK_ACCEPTED, NULL, 0), 0);
}
END_TEST

struct connack_case {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	uint8_t level;
	enum kg_parse rc;
	uint8_t code;
	bool session;
	size_t consumed;
};

static const struct connack_case connack_cases[] = {
	{ "v311_accepted", BYTES(0x20, 2, 0, 0), 4, OK, 0, false, 4 },
	{ "v311_session_present", BYTES(0x20, 2, 1, 0), 4, OK, 0, true, 4 },
	{ "v311_not_authorized", BYTES(0x20, 2, 0, 5), 4, OK, 5, false, 4 },
	{ "v311_followed_by_publish", BYTES(0x20, 2, 0, 0, 0x30, 0), 4, OK, 0, false, 4 },
	{ "v311_session_with_refusal", BYTES(0x20, 2, 1, 5), 4, CFAIL(MALFORMED) },
	{ "v311_reserved_flags", BYTES(0x20, 2, 2, 0), 4, CFAIL(MALFORMED) },
	{ "v311_code_6", BYTES(0x20, 2, 0, 6), 4, CFAIL(MALFORMED) },
	{ "v311_code_0x87", BYTES(0x20, 2, 0, 0x87), 4, CFAIL(MALFORMED) },
	{ "v311_len_3", BYTES(0x20, 3, 0, 0, 0), 4, CFAIL(MALFORMED) },
	{ "v311_len_1", BYTES(0x20, 1, 0), 4, CFAIL(MALFORMED) },
	{ "v311_len_0", BYTES(0x20, 0), 4, CFAIL(MALFORMED) },
	{ "v311_short", BYTES(0x20, 2, 0), 4, CFAIL(SHORT) },
	{ "v311_header_only", BYTES(0x20), 4, CFAIL(SHORT) },
	{ "empty", (const uint8_t[]){ 0x20 }, 0, 4, CFAIL(SHORT) },
	{ "v31_reserved_byte_ignored", BYTES(0x20, 2, 0xff, 0), 3, OK, 0, false, 4 },
	{ "v31_code_2", BYTES(0x20, 2, 0, 2), 3, OK, 2, false, 4 },
	{ "wrong_type", BYTES(0x30, 0), 4, CFAIL(NOT_CONNECT) },
	{ "connect_is_not_connack", BYTES(V311_MIN), 4, CFAIL(NOT_CONNECT) },
	{ "connack_flags", BYTES(0x21, 2, 0, 0), 4, CFAIL(MALFORMED) },
	{ "type_0", BYTES(0x00), 5, CFAIL(MALFORMED) },
	{ "v5_accepted", BYTES(0x20, 3, 0, 0, 0), 5, OK, 0, false, 5 },
	{ "v5_session_present", BYTES(0x20, 3, 1, 0, 0), 5, OK, 0, true, 5 },
	{ "v5_banned", BYTES(0x20, 3, 0, 0x8a, 0), 5, OK, 0x8a, false, 5 },
	{ "v5_props",
	  BYTES(0x20, 10, 0, 0, 7, 0x24, 1, 0x25, 0, 0x21, 0, 10), 5, OK, 0, false, 12 },
	{ "v5_props_then_publish",
	  BYTES(0x20, 5, 0, 0x87, 2, 0x24, 1, 0x30, 0), 5, OK, 0x87, false, 7 },
	{ "v5_props_past_end", BYTES(0x20, 5, 0, 0, 7, 0x24, 1), 5, CFAIL(MALFORMED) },
	{ "v5_trailing_byte", BYTES(0x20, 4, 0, 0, 0, 0xff), 5, CFAIL(MALFORMED) },
	{ "v5_no_props", BYTES(0x20, 2, 0, 0), 5, CFAIL(MALFORMED) },
	{ "v5_props_5byte_varint", BYTES(0x20, 7, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x01), 5, CFAIL(MALFORMED) },
	{ "v5_v3_code", BYTES(0x20, 3, 0, 0x05, 0), 5, CFAIL(MALFORMED) },
	{ "v5_session_with_refusal", BYTES(0x20, 3, 1, 0x87, 0), 5, CFAIL(MALFORMED) },
	{ "v5_reserved_flags", BYTES(0x20, 3, 0x80, 0, 0), 5, CFAIL(MALFORMED) },
	{ "v5_short", BYTES(0x20, 3, 0, 0), 5, CFAIL(SHORT) },
	{ "unknown_level", BYTES(0x20, 2, 0, 0), 6, CFAIL(UNSUPPORTED) },
	{ "level_0", BYTES(0x20, 2, 0, 0), 0, CFAIL(UNSUPPORTED) },
};

START_TEST(test_connack_parse)
{
	const struct connack_case *c = &connack_cases[_i];
	uint8_t *b = malloc(c->len ? c->len : 1), code = 0xee;
	bool sp = false;
	size_t used = 0;
	enum kg_parse rc;

	ck_assert_ptr_nonnull(b);
	memcpy(b, c->bytes, c->len);
	rc = kg_mqtt_parse_connack(b, c->len, c->level, &sp, &code, &used);
	free(b);
	ck_assert_msg(rc == c->rc, "%s: got %s, want %s", c->name, pname(rc), pname(c->rc));
	if (rc == OK) {
		ck_assert_uint_eq(code, c->code);
		ck_assert(sp == c->session);
		ck_assert_uint_eq(used, c->consumed);
	}
}
END_TEST

/* ---- encoders ------------------------------------------------------------- */

struct rt_case {
	const char *name;
	struct kg_mqtt_connect_opts o;
	enum kg_parse rc;
};

static const struct rt_case rt_cases[] = {
	{ "v31", { 3, "dev-1", NULL, NULL, 60, true }, OK },
	{ "v31_user_pass", { 3, "dev-1", "user", "secret", 30, false }, OK },
	{ "v31_pass_only", { 3, "dev-1", NULL, "secret", 30, true }, MALFORMED },
	{ "v311", { 4, "dev-1", NULL, NULL, 60, true }, OK },
	{ "v311_empty_id", { 4, "", NULL, NULL, 0, true }, OK },
	{ "v311_user_pass", { 4, "dev-1", "user", "secret", 65535, false }, OK },
	{ "v311_user_only", { 4, "d", "user", NULL, 1, true }, OK },
	{ "v311_pass_only", { 4, "dev-1", NULL, "secret", 30, true }, MALFORMED },
	{ "v311_utf8_id", { 4, "g\xc3\xa9r\xc3\xa4t", NULL, NULL, 10, true }, OK },
	{ "v5", { 5, "dev-1", NULL, NULL, 60, true }, OK },
	{ "v5_user_pass", { 5, "dev-1", "user", "", 60, false }, OK },
	{ "v5_pass_only", { 5, "dev-1", NULL, "secret", 60, true }, OK },
	{ "v5_bad_utf8_id", { 5, "\xed\xa0\x80", NULL, NULL, 60, true }, MALFORMED },
};

START_TEST(test_encode_connect_roundtrip)
{
	const struct rt_case *c = &rt_cases[_i];
	const struct kg_mqtt_connect_opts *o = &c->o;
	uint8_t buf[256];
	struct kg_mqtt_connect m;
	size_t n = kg_mqtt_encode_connect(o, buf, sizeof(buf));
	enum kg_parse rc;

	ck_assert_uint_gt(n, 0);
	rc = kg_mqtt_parse_connect(buf, n, 4096, &m);
	ck_assert_msg(rc == c->rc, "%s: got %s, want %s", c->name, pname(rc), pname(c->rc));
	if (rc != OK)
		return;
	ck_assert_uint_eq(m.packet_len, n);
	ck_assert_uint_eq(m.level, o->level);
	ck_assert_uint_eq(m.keepalive, o->keepalive);
	ck_assert(m.clean_start == o->clean_start);
	ck_assert(!m.has_will);
	ck_assert(m.has_username == (o->username != NULL));
	ck_assert(m.has_password == (o->password != NULL));
	ck_assert_uint_eq(m.client_id_len, strlen(o->client_id));
	ck_assert_mem_eq(m.client_id, o->client_id, m.client_id_len);
	if (o->username) {
		ck_assert_uint_eq(m.username_len, strlen(o->username));
		ck_assert_mem_eq(m.username, o->username, m.username_len);
	}
	/* every smaller buffer is refused without a write past it */
	for (size_t cap = 0; cap < n; cap++) {
		uint8_t *small = malloc(cap ? cap : 1);

		ck_assert_ptr_nonnull(small);
		ck_assert_uint_eq(kg_mqtt_encode_connect(o, small, cap), 0);
		free(small);
	}
}
END_TEST

START_TEST(test_encode_connect_exact)
{
	static const uint8_t v311[] = { V311_MIN };
	static const uint8_t v5[] = { 0x10, 0x10, V5_HDR(0x02), 0, STR_DEV };
	static const uint8_t v31[] = { 0x10, 0x11, V31_HDR(0x02), STR_DEV };
	struct kg_mqtt_connect_opts o = { 4, "dev", NULL, NULL, 60, true };
	uint8_t buf[64];

	ck_assert_uint_eq(kg_mqtt_encode_connect(&o, buf, sizeof(buf)), sizeof(v311));
	ck_assert_mem_eq(buf, v311, sizeof(v311));
	o.level = 5;
	ck_assert_uint_eq(kg_mqtt_encode_connect(&o, buf, sizeof(buf)), sizeof(v5));
	ck_assert_mem_eq(buf, v5, sizeof(v5));
	o.level = 3;
	ck_assert_uint_eq(kg_mqtt_encode_connect(&o, buf, sizeof(buf)), sizeof(v31));
	ck_assert_mem_eq(buf, v31, sizeof(v31));
	o.level = 6;
	ck_assert_uint_eq(kg_mqtt_encode_connect(&o, buf, sizeof(buf)), 0);
	o.level = 4;
	o.client_id = NULL;
	ck_assert_uint_eq(kg_mqtt_encode_connect(&o, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(kg_mqtt_encode_connect(NULL, buf, sizeof(buf)), 0);
}
END_TEST

/* 65535 is the longest string a CONNECT can carry; 65536 cannot be encoded. */
START_TEST(test_encode_connect_long_id)
{
	size_t cap = 70000;
	char *id = malloc(65537);
	uint8_t *buf = malloc(cap);
	struct kg_mqtt_connect_opts o = { 4, NULL, NULL, NULL, 60, true };
	struct kg_mqtt_connect m;
	size_t n;

	ck_assert_ptr_nonnull(id);
	ck_assert_ptr_nonnull(buf);
	memset(id, 'a', 65536);
	id[65536] = '\0';
	o.client_id = id;
	ck_assert_uint_eq(kg_mqtt_encode_connect(&o, buf, cap), 0);
	id[65535] = '\0';
	n = kg_mqtt_encode_connect(&o, buf, cap);
	ck_assert_uint_eq(n, 1 + 3 + 10 + 2 + 65535);
	ck_assert_int_eq(kg_mqtt_parse_connect(buf, n, 70000, &m), OK);
	ck_assert_uint_eq(m.client_id_len, 65535);
	ck_assert_int_eq(kg_mqtt_parse_connect(buf, n, 1024, &m), TOO_BIG);
	ck_assert_int_eq(kg_mqtt_parse_connect(buf, 4, 1024, &m), TOO_BIG);
	free(buf);
	free(id);
}
END_TEST

START_TEST(test_encode_publish)
{
	static const uint8_t p0[] = { 0x30, 7, 0, 3, 'a', '/', 'b', 'h', 'i' };
	static const uint8_t p1v5[] = { 0x32, 10, 0, 3, 'a', '/', 'b', 0x12, 0x34, 0, 'h', 'i' };
	static const uint8_t p2[] = { 0x34, 9, 0, 3, 'a', '/', 'b', 0, 1, 'h', 'i' };
	static const uint8_t empty[] = { 0x30, 3, 0, 1, 't' };
	const uint8_t *hi = (const uint8_t *)"hi";
	uint8_t buf[512], big[200], tf;
	size_t n, rem, hl;

	ck_assert_uint_eq(kg_mqtt_encode_publish(4, "a/b", 0, 0, hi, 2, buf, sizeof(buf)), sizeof(p0));
	ck_assert_mem_eq(buf, p0, sizeof(p0));
	ck_assert_uint_eq(kg_mqtt_encode_publish(5, "a/b", 1, 0x1234, hi, 2, buf, sizeof(buf)),
			  sizeof(p1v5));
	ck_assert_mem_eq(buf, p1v5, sizeof(p1v5));
	ck_assert_uint_eq(kg_mqtt_encode_publish(3, "a/b", 2, 1, hi, 2, buf, sizeof(buf)), sizeof(p2));
	ck_assert_mem_eq(buf, p2, sizeof(p2));
	ck_assert_uint_eq(kg_mqtt_encode_publish(4, "t", 0, 0, NULL, 0, buf, sizeof(buf)),
			  sizeof(empty));
	ck_assert_mem_eq(buf, empty, sizeof(empty));

	/* 200-byte payload: two-byte remaining length, splits back cleanly */
	memset(big, 'x', sizeof(big));
	n = kg_mqtt_encode_publish(4, "t", 1, 7, big, sizeof(big), buf, sizeof(buf));
	ck_assert_uint_eq(n, 1 + 2 + 3 + 2 + 200);
	ck_assert_int_eq(kg_mqtt_parse_fixed_header(buf, n, &tf, &rem, &hl), OK);
	ck_assert_uint_eq(tf, 0x32);
	ck_assert_uint_eq(hl, 3);
	ck_assert_uint_eq(hl + rem, n);

	/* refusals */
	ck_assert_uint_eq(kg_mqtt_encode_publish(4, "a/b", 0, 0, hi, 2, buf, sizeof(p0) - 1), 0);
	ck_assert_uint_eq(kg_mqtt_encode_publish(4, "a/b", 3, 1, hi, 2, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(kg_mqtt_encode_publish(4, "a/b", 1, 0, hi, 2, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(kg_mqtt_encode_publish(4, NULL, 0, 0, hi, 2, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(kg_mqtt_encode_publish(6, "a/b", 0, 0, hi, 2, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(kg_mqtt_encode_publish(4, "a/b", 0, 0, NULL, 2, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(kg_mqtt_encode_publish(4, "a/b", 0, 0, hi, SIZE_MAX, buf, sizeof(buf)), 0);
}
END_TEST

START_TEST(test_encode_pingreq)
{
	uint8_t buf[4] = { 0xee, 0xee, 0xee, 0xee };
	struct kg_mqtt_connect m;

	ck_assert_uint_eq(kg_mqtt_encode_pingreq(buf, 1), 0);
	ck_assert_uint_eq(buf[0], 0xee);
	ck_assert_uint_eq(kg_mqtt_encode_pingreq(buf, sizeof(buf)), 2);
	ck_assert_uint_eq(buf[0], 0xc0);
	ck_assert_uint_eq(buf[1], 0x00);
	ck_assert_uint_eq(buf[2], 0xee);
	ck_assert_int_eq(kg_mqtt_parse_connect(buf, 2, 4096, &m), NOT_CONNECT);
}
END_TEST

/* ---- the user name of a certificate-authenticated device ------------------ */

struct user_case {
	const char *name;
	const uint8_t *body;
	size_t len;
	const char *id;
	bool match;
};

/* Each with its level: absent, empty, equal, other, prefix, longer, case. */
static const struct user_case user_cases[] = {
	{ "v311_absent", BYTES(V311_HDR(0x02), STR_DEV), "dev", true },
	{ "v311_empty", BYTES(V311_HDR(0x82), STR_DEV, 0, 0), "dev", true },
	{ "v311_equal", BYTES(V311_HDR(0x82), STR_DEV, 0, 3, 'd', 'e', 'v'), "dev", true },
	{ "v311_equal_with_password", BYTES(V311_HDR(0xc2), STR_DEV, 0, 3, 'd', 'e', 'v', 0, 1, 'p'),
	  "dev", true },
	{ "v311_other", BYTES(V311_HDR(0x82), STR_DEV, 0, 3, 'e', 'v', 'e'), "dev", false },
	{ "v311_other_with_password", BYTES(V311_HDR(0xc2), STR_DEV, 0, 3, 'e', 'v', 'e', 0, 1, 'p'),
	  "dev", false },
	{ "v311_prefix_of_id", BYTES(V311_HDR(0x82), STR_DEV, 0, 2, 'd', 'e'), "dev", false },
	{ "v311_id_is_prefix", BYTES(V311_HDR(0x82), STR_DEV, 0, 4, 'd', 'e', 'v', 'x'), "dev", false },
	{ "v311_case_differs", BYTES(V311_HDR(0x82), STR_DEV, 0, 3, 'D', 'e', 'v'), "dev", false },
	{ "v311_client_id_is_not_user", BYTES(V311_HDR(0x82), 0, 3, 'e', 'v', 'e', 0, 3, 'e', 'v', 'e'),
	  "dev", false },
	{ "v311_empty_id_absent", BYTES(V311_HDR(0x02), STR_DEV), "", true },
	{ "v311_empty_id_other", BYTES(V311_HDR(0x82), STR_DEV, 0, 1, 'x'), "", false },
	{ "v31_absent", BYTES(V31_HDR(0x02), STR_DEV), "dev", true },
	{ "v31_empty", BYTES(V31_HDR(0x82), STR_DEV, 0, 0), "dev", true },
	{ "v31_equal", BYTES(V31_HDR(0xc2), STR_DEV, 0, 3, 'd', 'e', 'v', 0, 1, 'p'), "dev", true },
	{ "v31_other", BYTES(V31_HDR(0xc2), STR_DEV, 0, 1, 'u', 0, 1, 'p'), "dev", false },
	{ "v5_absent", BYTES(V5_HDR(0x02), 0, STR_DEV), "dev", true },
	{ "v5_password_without_username", BYTES(V5_HDR(0x42), 0, STR_DEV, 0, 1, 'p'), "dev", true },
	{ "v5_empty", BYTES(V5_HDR(0x82), 0, STR_DEV, 0, 0), "dev", true },
	{ "v5_equal", BYTES(V5_HDR(0x82), 0, STR_DEV, 0, 3, 'd', 'e', 'v'), "dev", true },
	{ "v5_other", BYTES(V5_HDR(0xc2), 0, STR_DEV, 0, 3, 'e', 'v', 'e', 0, 1, 'p'), "dev", false },
	{ "v5_module_id", BYTES(V5_HDR(0x82), 0, STR_DEV, 0, 5, 'd', '/', 'm', 'o', 'd'), "d/mod", true },
	{ "v5_utf8_equal", BYTES(V5_HDR(0x82), 0, STR_DEV, 0, 2, 0xc3, 0xa9), "\xc3\xa9", true },
};

START_TEST(test_username_matches)
{
	const struct user_case *c = &user_cases[_i];
	uint8_t pkt[128];
	size_t n = frame(pkt, c->body, c->len);
	struct kg_mqtt_connect m;

	ck_assert_msg(kg_mqtt_parse_connect(pkt, n, 4096, &m) == OK, "%s: does not parse", c->name);
	ck_assert_msg(kg_mqtt_username_matches(&m, c->id, strlen(c->id)) == c->match,
		      "%s: want %s", c->name, c->match ? "match" : "mismatch");
}
END_TEST

/*
 * Everything a rewrite must hold, for any CONNECT pkt[0..n) and user name: the result
 * parses (from an exact-size copy), its user name is the id, it has no password, the
 * other flags, the keep-alive, the properties, the client id and the will are the
 * input's bytes, every smaller buffer is refused, and rewriting it again changes
 * nothing. Returns the fixed header length of the result (for the boundary tests).
 */
static size_t check_rewrite(const char *name, const uint8_t *pkt, size_t n, const char *id)
{
	size_t id_len = strlen(id), need, got, kept;
	struct kg_mqtt_connect m, r;
	uint8_t *in, *out, *again;

	/* the input lives in an exact-size buffer: a read past the CONNECT is an ASan error */
	ck_assert_msg(parse_exact(pkt, n, 268435455, &m, &in) == OK, "%s: input does not parse", name);
	need = kg_mqtt_rewrite_len(&m, id_len);
	ck_assert_msg(need > 0, "%s: no rewrite length", name);
	out = malloc(need);
	ck_assert_ptr_nonnull(out);
	got = kg_mqtt_rewrite_connect(in, &m, id, id_len, out, need);
	ck_assert_msg(got == need, "%s: wrote %zu, want %zu", name, got, need);
	ck_assert_msg(kg_mqtt_parse_connect(out, got, 268435455, &r) == OK, "%s: result does not parse",
		      name);
	ck_assert_uint_eq(r.packet_len, got);
	ck_assert_uint_eq(r.level, m.level);
	ck_assert_uint_eq(r.flags, (m.flags | 0x80) & ~0x40);
	ck_assert_uint_eq(r.keepalive, m.keepalive);
	ck_assert(r.clean_start == m.clean_start && r.has_will == m.has_will);
	ck_assert_uint_eq(r.will_qos, m.will_qos);
	ck_assert(r.has_username && !r.has_password);
	ck_assert_ptr_null(r.password);
	ck_assert_uint_eq(r.username_len, id_len);
	ck_assert_mem_eq(r.username, id, id_len);
	ck_assert_uint_eq(r.client_id_len, m.client_id_len);
	ck_assert_mem_eq(r.client_id, m.client_id, m.client_id_len);
	/* protocol name .. will payload: the same bytes but for the flags byte */
	kept = m.creds_off - m.header_len;
	ck_assert_uint_eq(r.creds_off - r.header_len, kept);
	ck_assert_uint_eq(r.flags_off - r.header_len, m.flags_off - m.header_len);
	ck_assert_mem_eq(out + r.header_len, in + m.header_len, m.flags_off - m.header_len);
	ck_assert_mem_eq(out + r.flags_off + 1, in + m.flags_off + 1, m.creds_off - m.flags_off - 1);
	/* minimal remaining length */
	ck_assert_uint_eq(r.header_len, 1 + kg_mqtt_varint_len(got - r.header_len));
	/* too small a buffer: refused (ASan sees a write past it) */
	for (size_t cap = need > 64 ? need - 1 : 0; cap < need; cap++) {
		uint8_t *small = malloc(cap ? cap : 1);

		ck_assert_ptr_nonnull(small);
		ck_assert_uint_eq(kg_mqtt_rewrite_connect(in, &m, id, id_len, small, cap), 0);
		free(small);
	}
	/* idempotent: the rewrite of the rewrite is itself */
	again = malloc(need);
	ck_assert_ptr_nonnull(again);
	ck_assert_uint_eq(kg_mqtt_rewrite_connect(out, &r, id, id_len, again, need), need);
	ck_assert_mem_eq(again, out, need);
	free(again);
	free(out);
	free(in);
	return r.header_len;
}

struct rewrite_case {
	const char *name;
	const uint8_t *in;   /* body */
	size_t in_len;
	const uint8_t *out;  /* body */
	size_t out_len;
};

#define ID_DEV 0, 3, 'd', 'e', 'v'

static const struct rewrite_case rewrite_cases[] = {
	{ "v311_absent", BYTES(V311_HDR(0x02), STR_DEV), BYTES(V311_HDR(0x82), STR_DEV, ID_DEV) },
	{ "v311_empty", BYTES(V311_HDR(0x82), STR_DEV, 0, 0), BYTES(V311_HDR(0x82), STR_DEV, ID_DEV) },
	{ "v311_equal", BYTES(V311_HDR(0x82), STR_DEV, ID_DEV), BYTES(V311_HDR(0x82), STR_DEV, ID_DEV) },
	{ "v311_other_password",
	  BYTES(V311_HDR(0xc2), STR_DEV, 0, 5, 'o', 't', 'h', 'e', 'r', 0, 6, 's', 'e', 'c', 'r', 'e', 't'),
	  BYTES(V311_HDR(0x82), STR_DEV, ID_DEV) },
	{ "v311_equal_password", BYTES(V311_HDR(0xc2), STR_DEV, ID_DEV, 0, 2, 0x00, 0xff),
	  BYTES(V311_HDR(0x82), STR_DEV, ID_DEV) },
	{ "v311_will_qos2_retain_user_pass",
	  BYTES(V311_HDR(0xf4), STR_DEV, 0, 3, 'a', '/', 'b', 0, 2, 'h', 'i', 0, 1, 'u', 0, 1, 'p'),
	  BYTES(V311_HDR(0xb4), STR_DEV, 0, 3, 'a', '/', 'b', 0, 2, 'h', 'i', ID_DEV) },
	{ "v311_will_no_user", BYTES(V311_HDR(0x0e), STR_DEV, 0, 1, 't', 0, 2, 'h', 'i'),
	  BYTES(V311_HDR(0x8e), STR_DEV, 0, 1, 't', 0, 2, 'h', 'i', ID_DEV) },
	{ "v31_other_password", BYTES(V31_HDR(0xc2), STR_DEV, 0, 1, 'u', 0, 1, 'p'),
	  BYTES(V31_HDR(0x82), STR_DEV, ID_DEV) },
	{ "v31_will", BYTES(V31_HDR(0x0e), STR_DEV, 0, 1, 't', 0, 1, 'x'),
	  BYTES(V31_HDR(0x8e), STR_DEV, 0, 1, 't', 0, 1, 'x', ID_DEV) },
	{ "v5_absent", BYTES(V5_HDR(0x02), 0, STR_DEV), BYTES(V5_HDR(0x82), 0, STR_DEV, ID_DEV) },
	{ "v5_password_without_username", BYTES(V5_HDR(0x42), 0, STR_DEV, 0, 1, 'p'),
	  BYTES(V5_HDR(0x82), 0, STR_DEV, ID_DEV) },
	{ "v5_other_password_props_auth",
	  BYTES(V5_HDR(0xc2), 14, 0x11, 0, 0, 0x0e, 0x10, 0x15, 0, 1, 'm', 0x16, 0, 2, 1, 2, STR_DEV,
		0, 1, 'u', 0, 1, 'p'),
	  BYTES(V5_HDR(0x82), 14, 0x11, 0, 0, 0x0e, 0x10, 0x15, 0, 1, 'm', 0x16, 0, 2, 1, 2, STR_DEV,
		ID_DEV) },
	{ "v5_will_props_user_pass",
	  BYTES(V5_HDR(0xee), 3, 0x21, 0, 10, STR_DEV, 12, 0x18, 0, 0, 0, 5, 0x26, 0, 1, 'k', 0, 1, 'v',
		0, 1, 't', 0, 2, 'h', 'i', 0, 1, 'u', 0, 1, 'p'),
	  BYTES(V5_HDR(0xae), 3, 0x21, 0, 10, STR_DEV, 12, 0x18, 0, 0, 0, 5, 0x26, 0, 1, 'k', 0, 1, 'v',
		0, 1, 't', 0, 2, 'h', 'i', ID_DEV) },
	{ "v5_nonminimal_props_len_kept", BYTES(V5_HDR(0x82), 0x80, 0x00, STR_DEV, 0, 1, 'u'),
	  BYTES(V5_HDR(0x82), 0x80, 0x00, STR_DEV, ID_DEV) },
};

START_TEST(test_rewrite_exact)
{
	const struct rewrite_case *c = &rewrite_cases[_i];
	uint8_t pkt[256], want[256], out[256];
	size_t n = frame(pkt, c->in, c->in_len), wn = frame(want, c->out, c->out_len), got;
	struct kg_mqtt_connect m;

	ck_assert_msg(kg_mqtt_parse_connect(pkt, n, 4096, &m) == OK, "%s: does not parse", c->name);
	ck_assert_uint_eq(kg_mqtt_rewrite_len(&m, 3), wn);
	got = kg_mqtt_rewrite_connect(pkt, &m, "dev", 3, out, sizeof(out));
	ck_assert_msg(got == wn, "%s: %zu bytes, want %zu", c->name, got, wn);
	ck_assert_mem_eq(out, want, wn);
	check_rewrite(c->name, pkt, n, "dev");
	check_rewrite(c->name, pkt, n, "a-much-longer-device-id/module-7");
}
END_TEST

/* A non-minimal remaining length in the input comes out minimal. */
START_TEST(test_rewrite_nonminimal_remaining)
{
	static const uint8_t pkt[] = { 0x10, 0x95, 0x00, V311_HDR(0xc2), STR_DEV, 0, 1, 'u', 0, 1, 'p' };
	static const uint8_t want[] = { 0x10, 0x14, V311_HDR(0x82), STR_DEV, ID_DEV };
	struct kg_mqtt_connect m;
	uint8_t out[64];

	ck_assert_int_eq(kg_mqtt_parse_connect(pkt, sizeof(pkt), 4096, &m), OK);
	ck_assert_uint_eq(m.header_len, 3);
	ck_assert_uint_eq(kg_mqtt_rewrite_connect(pkt, &m, "dev", 3, out, sizeof(out)), sizeof(want));
	ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

/* User names that are no MQTT string are refused, and nothing is written. */
START_TEST(test_rewrite_refuses)
{
	static const uint8_t pkt[] = { V311_MIN };
	struct kg_mqtt_connect m;
	uint8_t out[64];
	char *big = malloc(65536);

	ck_assert_ptr_nonnull(big);
	memset(big, 'a', 65536);
	ck_assert_int_eq(kg_mqtt_parse_connect(pkt, sizeof(pkt), 4096, &m), OK);
	memset(out, 0xee, sizeof(out));
	ck_assert_uint_eq(kg_mqtt_rewrite_connect(pkt, &m, "a\0b", 3, out, sizeof(out)), 0);
	ck_assert_uint_eq(kg_mqtt_rewrite_connect(pkt, &m, "\xff", 1, out, sizeof(out)), 0);
	ck_assert_uint_eq(kg_mqtt_rewrite_connect(pkt, &m, "\xed\xa0\x80", 3, out, sizeof(out)), 0);
	ck_assert_uint_eq(out[0], 0xee);
	ck_assert_uint_eq(kg_mqtt_rewrite_len(&m, 65536), 0);
	ck_assert_uint_eq(kg_mqtt_rewrite_connect(pkt, &m, big, 65536, out, sizeof(out)), 0);
	ck_assert_uint_gt(kg_mqtt_rewrite_len(&m, 65535), 65535);
	/* an empty user name is a valid one */
	ck_assert_uint_eq(kg_mqtt_rewrite_connect(pkt, &m, "", 0, out, sizeof(out)), sizeof(pkt) + 2);
	free(big);
}
END_TEST

/* A CONNECT with a client id of cid_len bytes and the given credentials. */
static size_t make_connect(uint8_t *buf, size_t cap, uint8_t level, size_t cid_len,
			   const char *user, const char *pass)
{
	char *cid = malloc(cid_len + 1);
	struct kg_mqtt_connect_opts o = { level, NULL, user, pass, 60, true };
	size_t n;

	ck_assert_ptr_nonnull(cid);
	memset(cid, 'c', cid_len);
	cid[cid_len] = '\0';
	o.client_id = cid;
	n = kg_mqtt_encode_connect(&o, buf, cap);
	free(cid);
	ck_assert_uint_gt(n, 0);
	return n;
}

/*
 * Remaining lengths around 127/128 and 16383/16384, both ways: a CONNECT without
 * credentials grows across a boundary (one more length byte), one with a long user
 * name and password shrinks across it (one fewer). Every case is checked in full and
 * each crossing must have been seen, for every level.
 */
START_TEST(test_rewrite_length_boundaries)
{
	static const size_t edges[] = { 128, 16384 };
	static const char *const id = "device-0123456789"; /* 17 bytes: +19 with its length */
	char pass[300];
	size_t cap = 20000;
	uint8_t *buf = malloc(cap);

	ck_assert_ptr_nonnull(buf);
	memset(pass, 'p', sizeof(pass) - 1);
	pass[sizeof(pass) - 1] = '\0';
	for (uint8_t level = KG_MQTT_V31; level <= KG_MQTT_V5; level++) {
		for (size_t e = 0; e < KG_NITEMS(edges); e++) {
			bool grew = false, shrank = false;
			size_t edge = edges[e], hl_small = edge == 128 ? 2 : 3;

			/* remaining length from edge-25 to edge+5, no credentials: grows by 19 */
			for (size_t target = edge - 25; target <= edge + 5; target++) {
				size_t base = make_connect(buf, cap, level, 0, NULL, NULL);
				size_t rem0 = base - 2, n, in_hl, out_hl;

				n = make_connect(buf, cap, level, target - rem0, NULL, NULL);
				in_hl = n - target;
				out_hl = check_rewrite("grow", buf, n, id);
				ck_assert_uint_eq(in_hl, target < edge ? hl_small : hl_small + 1);
				ck_assert_uint_eq(out_hl, target + 19 < edge ? hl_small : hl_small + 1);
				grew |= in_hl == hl_small && out_hl == hl_small + 1;
			}
			/* user "u" and a 299-byte password: shrinks by 2+1+2+299-19 = 285 */
			for (size_t target = edge - 5; target <= edge + 290; target += 5) {
				size_t base = make_connect(buf, cap, level, 0, "u", pass);
				size_t rem0 = base - (base - 2 < 128 ? 2 : 3), n, in_hl, out_hl;

				if (target < rem0)
					continue;
				n = make_connect(buf, cap, level, target - rem0, "u", pass);
				in_hl = n - target;
				out_hl = check_rewrite("shrink", buf, n, id);
				ck_assert_uint_eq(in_hl, target < edge ? hl_small : hl_small + 1);
				ck_assert_uint_eq(out_hl, target - 285 < edge ? hl_small : hl_small + 1);
				shrank |= in_hl == hl_small + 1 && out_hl == hl_small;
			}
			ck_assert_msg(grew, "level %u edge %zu: no growing crossing", level, edge);
			ck_assert_msg(shrank, "level %u edge %zu: no shrinking crossing", level, edge);
		}
	}
	free(buf);
}
END_TEST

Suite *kg_suite_mqtt(void)
{
	Suite *s = suite_create("mqtt");
	TCase *tc;

	tc = tcase_create("connect_v311");
	tcase_add_loop_test(tc, test_connect_v311, 0, (int)KG_NITEMS(v311_cases));
	tcase_add_test(tc, test_connect_fields);
	suite_add_tcase(s, tc);

	tc = tcase_create("connect_v5");
	tcase_add_loop_test(tc, test_connect_v5, 0, (int)KG_NITEMS(v5_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("connect_v31");
	tcase_add_loop_test(tc, test_connect_v31, 0, (int)KG_NITEMS(v31_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_loop_test(tc, test_connect_malformed, 0, (int)KG_NITEMS(malformed_cases));
	tcase_add_loop_test(tc, test_connect_raw, 0, (int)KG_NITEMS(raw_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("fixed_header");
	tcase_add_loop_test(tc, test_fixed_header, 0, (int)KG_NITEMS(fh_cases));
	tcase_add_loop_test(tc, test_varint_len, 0, (int)KG_NITEMS(varint_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("connack");
	tcase_add_loop_test(tc, test_connack_code, 0, (int)KG_NITEMS(code_cases));
	tcase_add_loop_test(tc, test_connack_roundtrip, 0, (int)KG_NITEMS(code_cases));
	tcase_add_test(tc, test_connack_invalid_args);
	tcase_add_loop_test(tc, test_connack_parse, 0, (int)KG_NITEMS(connack_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("username");
	tcase_add_loop_test(tc, test_username_matches, 0, (int)KG_NITEMS(user_cases));
	tcase_add_loop_test(tc, test_rewrite_exact, 0, (int)KG_NITEMS(rewrite_cases));
	tcase_add_test(tc, test_rewrite_nonminimal_remaining);
	tcase_add_test(tc, test_rewrite_refuses);
	tcase_add_test(tc, test_rewrite_length_boundaries);
	suite_add_tcase(s, tc);

	tc = tcase_create("encode");
	tcase_add_loop_test(tc, test_encode_connect_roundtrip, 0, (int)KG_NITEMS(rt_cases));
	tcase_add_test(tc, test_encode_connect_exact);
	tcase_add_test(tc, test_encode_connect_long_id);
	tcase_add_test(tc, test_encode_publish);
	tcase_add_test(tc, test_encode_pingreq);
	suite_add_tcase(s, tc);

	return s;
}
