/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mqtt.c - pure MQTT codec: the CONNECT the gate must judge (3.1, 3.1.1, 5.0), the
 * CONNACK it answers with, and the few encoders tests and the load generator use.
 * The user name rule of certificate-authenticated devices (kg_mqtt_username_matches)
 * and the rewrite that forwards the device id as the user name without the password
 * (kg_mqtt_rewrite_connect) live here too: both are pure functions of the bytes.
 * Every parser reads through one bounded cursor (struct kg_rd) over the caller's
 * bytes and returns enum kg_parse; nothing here allocates, logs or does I/O, and all
 * results borrow from the input. The CONNECT parser is deliberately strict: the gate
 * sits in front of the broker, so anything the broker might read differently from us
 * (bad UTF-8, trailing bytes, lying lengths, duplicated properties) is refused here.
 *
 * Choices the specs leave open, decided once:
 *  - Remaining length and property length accept non-minimal varints ("0x8F 0x00"
 *    for 15). MQTT 5.0 1.5.5 says senders MUST use the minimum, 3.1.1 does not; the
 *    fixed header is read before the level is known and mosquitto accepts them too,
 *    so refusing them would only create a parser differential.
 *  - A known protocol name with a level it does not pair with ("MQIsdp"/4,
 *    "MQTT"/3, "MQTT"/6, bridge levels 0x83/0x84) is KG_PARSE_UNSUPPORTED: 3.1.1
 *    3.1.2.2 wants CONNACK 0x01 for an unsupported level. An unknown name is
 *    KG_PARSE_MALFORMED.
 *  - A zero-length client id is well-formed (3.1.1 3.1.3.1 lets the server decide);
 *    the policy decides, not the codec.
 *  - The will payload is not checked against payload format indicator 1 (5.0
 *    3.1.3.2.3 makes that a MAY).
 */
#include <string.h>

#include "mqtt/mqtt.h"

/* 3.1.1 2.2.3 / 5.0 1.5.5: four 7-bit groups. */
#define MAX_REMAINING 268435455u
#define MAX_STR 65535u

enum {
	PT_CONNECT = 1,
	PT_PUBLISH = 3,
	PT_PUBREL = 6,
	PT_SUBSCRIBE = 8,
	PT_UNSUBSCRIBE = 10,
};

/* ---- bounded reader ----------------------------------------------------- */

struct kg_rd {
	const uint8_t *p;
	size_t len, off;
};

#define RD_TRY(expr)                                   \
	do {                                           \
		enum kg_parse rd_rc_ = (expr);         \
		if (rd_rc_ != KG_PARSE_OK)             \
			return rd_rc_;                 \
	} while (0)

static size_t rd_left(const struct kg_rd *rd)
{
	return rd->len - rd->off;
}

static enum kg_parse rd_u8(struct kg_rd *rd, uint8_t *v)
{
	if (rd_left(rd) < 1)
		return KG_PARSE_SHORT;
	*v = rd->p[rd->off++];
	return KG_PARSE_OK;
}

static enum kg_parse rd_u16(struct kg_rd *rd, uint16_t *v)
{
	if (rd_left(rd) < 2)
		return KG_PARSE_SHORT;
	*v = (uint16_t)(rd->p[rd->off] << 8 | rd->p[rd->off + 1]);
	rd->off += 2;
	return KG_PARSE_OK;
}

static enum kg_parse rd_u32(struct kg_rd *rd, uint32_t *v)
{
	const uint8_t *b = rd->p + rd->off;

	if (rd_left(rd) < 4)
		return KG_PARSE_SHORT;
	*v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	rd->off += 4;
	return KG_PARSE_OK;
}

/* Variable byte integer: at most four bytes, so a continuation bit on the fourth is
 * malformed at once rather than after waiting for a fifth byte. */
static enum kg_parse rd_varint(struct kg_rd *rd, size_t *v)
{
	size_t value = 0;

	for (unsigned int i = 0; i < 4; i++) {
		uint8_t b;

		RD_TRY(rd_u8(rd, &b));
		value |= (size_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = value;
			return KG_PARSE_OK;
		}
	}
	return KG_PARSE_MALFORMED;
}

/* Two-byte length then that many bytes (5.0 1.5.6 binary data; also 3.x password). */
static enum kg_parse rd_bin(struct kg_rd *rd, const uint8_t **p, size_t *n)
{
	uint16_t len;

	RD_TRY(rd_u16(rd, &len));
	if (rd_left(rd) < len)
		return KG_PARSE_SHORT;
	*p = rd->p + rd->off;
	*n = len;
	rd->off += len;
	return KG_PARSE_OK;
}

/*
 * Well-formed UTF-8 per Unicode table 3-7 (no overlongs, no surrogates, nothing above
 * U+10FFFF) and no U+0000, as 3.1.1 1.5.3 / 5.0 1.5.4 require. Other control
 * characters and non-characters are SHOULD NOTs and are let through.
 */
static bool utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i++], lo = 0x80, hi = 0xbf;
		unsigned int more;

		if (c == 0x00)
			return false;
		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf) {
			more = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			more = 2;
			if (c == 0xe0)
				lo = 0xa0; /* overlong below U+0800 */
			else if (c == 0xed)
				hi = 0x9f; /* surrogates U+D800..U+DFFF */
		} else if (c >= 0xf0 && c <= 0xf4) {
			more = 3;
			if (c == 0xf0)
				lo = 0x90; /* overlong below U+10000 */
			else if (c == 0xf4)
				hi = 0x8f; /* above U+10FFFF */
		} else {
			return false; /* continuation byte, C0/C1 overlong, F5..FF */
		}
		if (n - i < more)
			return false;
		if (s[i] < lo || s[i] > hi)
			return false;
		for (unsigned int k = 1; k < more; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return false;
		i += more;
	}
	return true;
}

static enum kg_parse rd_utf8(struct kg_rd *rd, const uint8_t **p, size_t *n)
{
	RD_TRY(rd_bin(rd, p, n));
	return utf8_valid(*p, *n) ? KG_PARSE_OK : KG_PARSE_MALFORMED;
}

/* A topic name (not a filter): at least one character, no wildcards (4.7.1, 4.7.3). */
static bool topic_name_valid(const uint8_t *p, size_t n)
{
	return n > 0 && memchr(p, '+', n) == NULL && memchr(p, '#', n) == NULL;
}

/* ---- fixed header ------------------------------------------------------- */

/* First byte rules of 3.1.1 2.2.2 / 5.0 2.1.3: is this a packet type with legal
 * flags? (3.1 let DUP/QoS ride on more types; as a first packet they are refused
 * anyway, so the newer table is used for every level.) */
static bool type_flags_valid(uint8_t b)
{
	uint8_t type = b >> 4, flags = b & 0x0f;

	switch (type) {
	case 0:
		return false;
	case PT_PUBLISH:
		return ((flags >> 1) & 3) != 3;
	case PT_PUBREL:
	case PT_SUBSCRIBE:
	case PT_UNSUBSCRIBE:
		return flags == 0x02;
	default:
		return flags == 0;
	}
}

enum kg_parse kg_mqtt_parse_fixed_header(const uint8_t *buf, size_t len, uint8_t *type_flags,
					 size_t *remaining, size_t *hdr_len)
{
	struct kg_rd rd = { buf, len, 0 };
	uint8_t b;
	size_t rem;

	RD_TRY(rd_u8(&rd, &b));
	if ((b >> 4) == 0)
		return KG_PARSE_MALFORMED; /* type 0 is reserved in every version */
	RD_TRY(rd_varint(&rd, &rem));
	*type_flags = b;
	*remaining = rem;
	*hdr_len = rd.off;
	return KG_PARSE_OK;
}

size_t kg_mqtt_varint_len(size_t value)
{
	if (value < 128u)
		return 1;
	if (value < 16384u)
		return 2;
	if (value < 2097152u)
		return 3;
	if (value <= MAX_REMAINING)
		return 4;
	return 0;
}

/* ---- MQTT 5.0 properties ------------------------------------------------- */

enum prop_type { PROP_BYTE, PROP_U16, PROP_U32, PROP_UTF8, PROP_BIN, PROP_PAIR };

enum { IN_CONNECT = 1, IN_WILL = 2 };

enum {
	CK_BOOL = 1,    /* value must be 0 or 1 */
	CK_NONZERO = 2, /* 0 is a protocol error */
	CK_REPEAT = 4,  /* may appear more than once */
	CK_TOPIC = 8,   /* UTF-8 that must be a topic name */
};

struct prop_rule {
	uint8_t type, where, check;
};

#define PROP_AUTH_METHOD 0x15
#define PROP_AUTH_DATA 0x16

/* 5.0 3.1.2.11 (CONNECT properties) and 3.1.3.2 (will properties). Ids not listed
 * (including those valid only in other packets) are malformed here. */
static const struct prop_rule prop_rules[] = {
	[0x01] = { PROP_BYTE, IN_WILL, CK_BOOL },      /* payload format indicator */
	[0x02] = { PROP_U32, IN_WILL, 0 },             /* message expiry interval */
	[0x03] = { PROP_UTF8, IN_WILL, 0 },            /* content type */
	[0x08] = { PROP_UTF8, IN_WILL, CK_TOPIC },     /* response topic */
	[0x09] = { PROP_BIN, IN_WILL, 0 },             /* correlation data */
	[0x11] = { PROP_U32, IN_CONNECT, 0 },          /* session expiry interval */
	[0x15] = { PROP_UTF8, IN_CONNECT, 0 },         /* authentication method */
	[0x16] = { PROP_BIN, IN_CONNECT, 0 },          /* authentication data */
	[0x17] = { PROP_BYTE, IN_CONNECT, CK_BOOL },   /* request problem information */
	[0x18] = { PROP_U32, IN_WILL, 0 },             /* will delay interval */
	[0x19] = { PROP_BYTE, IN_CONNECT, CK_BOOL },   /* request response information */
	[0x21] = { PROP_U16, IN_CONNECT, CK_NONZERO }, /* receive maximum */
	[0x22] = { PROP_U16, IN_CONNECT, 0 },          /* topic alias maximum */
	[0x26] = { PROP_PAIR, IN_CONNECT | IN_WILL, CK_REPEAT }, /* user property */
	[0x27] = { PROP_U32, IN_CONNECT, CK_NONZERO }, /* maximum packet size */
};

static enum kg_parse prop_value(struct kg_rd *rd, const struct prop_rule *r)
{
	const uint8_t *s;
	size_t n;
	uint32_t v = 0;

	switch (r->type) {
	case PROP_BYTE: {
		uint8_t b;

		RD_TRY(rd_u8(rd, &b));
		v = b;
		break;
	}
	case PROP_U16: {
		uint16_t h;

		RD_TRY(rd_u16(rd, &h));
		v = h;
		break;
	}
	case PROP_U32:
		RD_TRY(rd_u32(rd, &v));
		break;
	case PROP_UTF8:
		RD_TRY(rd_utf8(rd, &s, &n));
		if ((r->check & CK_TOPIC) && !topic_name_valid(s, n))
			return KG_PARSE_MALFORMED;
		return KG_PARSE_OK;
	case PROP_BIN:
		return rd_bin(rd, &s, &n);
	case PROP_PAIR:
		RD_TRY(rd_utf8(rd, &s, &n));
		return rd_utf8(rd, &s, &n);
	default:
		return KG_PARSE_MALFORMED;
	}
	if ((r->check & CK_BOOL) && v > 1)
		return KG_PARSE_MALFORMED;
	if ((r->check & CK_NONZERO) && v == 0)
		return KG_PARSE_MALFORMED;
	return KG_PARSE_OK;
}

/* A property list (length varint + properties) valid `where`. Any read running past
 * the declared list comes back SHORT, which the caller turns into MALFORMED. */
static enum kg_parse read_props(struct kg_rd *rd, unsigned int where)
{
	struct kg_rd pr;
	size_t plen;
	uint64_t seen = 0;

	RD_TRY(rd_varint(rd, &plen));
	if (plen > rd_left(rd))
		return KG_PARSE_MALFORMED;
	pr = (struct kg_rd){ rd->p + rd->off, plen, 0 };
	rd->off += plen;

	while (rd_left(&pr) > 0) {
		const struct prop_rule *r;
		uint8_t id;

		/* Ids are varints on the wire, but every defined one fits in 7 bits, so a
		 * first byte >= 0x80 is already an unknown id. */
		RD_TRY(rd_u8(&pr, &id));
		if (id >= KG_NITEMS(prop_rules) || !(prop_rules[id].where & where))
			return KG_PARSE_MALFORMED;
		r = &prop_rules[id];
		if (!(r->check & CK_REPEAT) && (seen & (UINT64_C(1) << id)))
			return KG_PARSE_MALFORMED; /* 5.0 3.1.2.11: more than once */
		seen |= UINT64_C(1) << id;
		RD_TRY(prop_value(&pr, r));
	}
	/* 5.0 3.1.2.11.10: authentication data without a method is a protocol error. */
	if ((seen & (UINT64_C(1) << PROP_AUTH_DATA)) && !(seen & (UINT64_C(1) << PROP_AUTH_METHOD)))
		return KG_PARSE_MALFORMED;
	return KG_PARSE_OK;
}

/* ---- CONNECT ------------------------------------------------------------ */

#define CF_RESERVED 0x01
#define CF_CLEAN 0x02
#define CF_WILL 0x04
#define CF_WILL_QOS_SHIFT 3
#define CF_WILL_RETAIN 0x20
#define CF_PASSWORD 0x40
#define CF_USERNAME 0x80

static bool bytes_eq(const uint8_t *p, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(p, s, n) == 0;
}

/* Protocol name and level (3.1.1 3.1.2.1-2, 5.0 3.1.2.1-2, 3.1 "MQIsdp"/3). */
static enum kg_parse read_protocol(struct kg_rd *rd, uint8_t *level)
{
	const uint8_t *name;
	size_t n;

	RD_TRY(rd_bin(rd, &name, &n));
	RD_TRY(rd_u8(rd, level));
	if (bytes_eq(name, n, "MQTT"))
		return *level == KG_MQTT_V311 || *level == KG_MQTT_V5 ? KG_PARSE_OK
								      : KG_PARSE_UNSUPPORTED;
	if (bytes_eq(name, n, "MQIsdp"))
		return *level == KG_MQTT_V31 ? KG_PARSE_OK : KG_PARSE_UNSUPPORTED;
	return KG_PARSE_MALFORMED;
}

/* Connect flags (3.1.1 3.1.2.3-9, 5.0 3.1.2.3-9). */
static enum kg_parse check_flags(uint8_t level, uint8_t f)
{
	uint8_t qos = (f >> CF_WILL_QOS_SHIFT) & 3;

	if (f & CF_RESERVED)
		return KG_PARSE_MALFORMED;
	if (qos == 3)
		return KG_PARSE_MALFORMED;
	if (!(f & CF_WILL) && (qos != 0 || (f & CF_WILL_RETAIN)))
		return KG_PARSE_MALFORMED;
	/* 3.1.1 3.1.2.9 [MQTT-3.1.2-22] (and 3.1): no password without a user name.
	 * 5.0 3.1.2.9 dropped that rule. */
	if (level != KG_MQTT_V5 && (f & CF_PASSWORD) && !(f & CF_USERNAME))
		return KG_PARSE_MALFORMED;
	return KG_PARSE_OK;
}

/* Variable header and payload; rd spans exactly the remaining length. */
static enum kg_parse connect_body(struct kg_rd *rd, struct kg_mqtt_connect *c)
{
	const uint8_t *p;
	size_t n;

	RD_TRY(read_protocol(rd, &c->level));
	c->flags_off = rd->off; /* relative to the body; the caller adds the header */
	RD_TRY(rd_u8(rd, &c->flags));
	RD_TRY(check_flags(c->level, c->flags));
	RD_TRY(rd_u16(rd, &c->keepalive));
	c->clean_start = c->flags & CF_CLEAN;
	c->has_will = c->flags & CF_WILL;
	c->will_qos = (c->flags >> CF_WILL_QOS_SHIFT) & 3;
	c->has_username = c->flags & CF_USERNAME;
	c->has_password = c->flags & CF_PASSWORD;
	if (c->level == KG_MQTT_V5)
		RD_TRY(read_props(rd, IN_CONNECT));

	RD_TRY(rd_utf8(rd, &c->client_id, &c->client_id_len));
	if (c->has_will) {
		if (c->level == KG_MQTT_V5)
			RD_TRY(read_props(rd, IN_WILL));
		RD_TRY(rd_utf8(rd, &p, &n));
		if (!topic_name_valid(p, n))
			return KG_PARSE_MALFORMED;
		RD_TRY(rd_bin(rd, &p, &n)); /* will payload */
	}
	c->creds_off = rd->off;
	if (c->has_username)
		RD_TRY(rd_utf8(rd, &c->username, &c->username_len));
	if (c->has_password)
		RD_TRY(rd_bin(rd, &c->password, &c->password_len));
	/* Bytes left inside the remaining length are not ours to ignore: the broker
	 * would read them as something. */
	return rd_left(rd) == 0 ? KG_PARSE_OK : KG_PARSE_MALFORMED;
}

enum kg_parse kg_mqtt_parse_connect(const uint8_t *buf, size_t len, size_t max_remaining,
				    struct kg_mqtt_connect *out)
{
	struct kg_mqtt_connect c = { 0 };
	struct kg_rd rd;
	uint8_t tf;
	size_t rem, hdr;
	enum kg_parse rc;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return KG_PARSE_SHORT;
	/* The first byte alone decides: CONNECT carries no flags (3.1.1 2.2.2). */
	if (buf[0] != (PT_CONNECT << 4))
		return type_flags_valid(buf[0]) ? KG_PARSE_NOT_CONNECT : KG_PARSE_MALFORMED;
	RD_TRY(kg_mqtt_parse_fixed_header(buf, len, &tf, &rem, &hdr));
	if (rem > max_remaining)
		return KG_PARSE_TOO_BIG;
	if (len - hdr < rem)
		return KG_PARSE_SHORT;

	/* From here on the whole packet is present: running out of bytes means a length
	 * inside the packet lied, not that more will come. */
	rd = (struct kg_rd){ buf + hdr, rem, 0 };
	rc = connect_body(&rd, &c);
	if (rc == KG_PARSE_SHORT)
		rc = KG_PARSE_MALFORMED;
	if (rc != KG_PARSE_OK)
		return rc;
	c.packet_len = hdr + rem;
	c.header_len = hdr;
	c.flags_off += hdr;
	c.creds_off += hdr;
	*out = c;
	return KG_PARSE_OK;
}

/* ---- CONNACK ------------------------------------------------------------ */

#define CONNACK_BYTE 0x20

/*
 * MQTT 3.1 and 3.1.1 3.2.2.3 (table 3.1 connect return codes): 0 accepted, 2
 * identifier rejected, 3 server unavailable, 5 not authorized; 3.x has no "banned",
 * so a banned device is "not authorized".
 * MQTT 5.0 3.2.2.2 (connect reason codes): 0x00 success, 0x85 client identifier not
 * valid, 0x87 not authorized, 0x88 server unavailable, 0x8A banned.
 */
static const uint8_t connack_v3[KG_CONNACK_MAX] = {
	[KG_CONNACK_ACCEPTED] = 0x00,
	[KG_CONNACK_NOT_AUTHORIZED] = 0x05,
	[KG_CONNACK_BANNED] = 0x05,
	[KG_CONNACK_SERVER_UNAVAILABLE] = 0x03,
	[KG_CONNACK_BAD_CLIENT_ID] = 0x02,
	[KG_CONNACK_BAD_PROTOCOL] = 0x01,
	[KG_CONNACK_BAD_CREDENTIALS] = 0x04,
};

static const uint8_t connack_v5[KG_CONNACK_MAX] = {
	[KG_CONNACK_ACCEPTED] = 0x00,
	[KG_CONNACK_NOT_AUTHORIZED] = 0x87,
	[KG_CONNACK_BANNED] = 0x8a,
	[KG_CONNACK_SERVER_UNAVAILABLE] = 0x88,
	[KG_CONNACK_BAD_CLIENT_ID] = 0x85,
	[KG_CONNACK_BAD_PROTOCOL] = 0x84,
	[KG_CONNACK_BAD_CREDENTIALS] = 0x86,
};

/* 0xFF is no CONNACK code in any version: the answer for an unknown level or reason. */
uint8_t kg_mqtt_connack_code(uint8_t level, enum kg_connack why)
{
	if ((unsigned int)why >= KG_CONNACK_MAX)
		return 0xff;
	switch (level) {
	case KG_MQTT_V31:
	case KG_MQTT_V311:
		return connack_v3[why];
	case KG_MQTT_V5:
		return connack_v5[why];
	default:
		return 0xff;
	}
}

size_t kg_mqtt_encode_connack(uint8_t level, enum kg_connack why, uint8_t *buf, size_t cap)
{
	uint8_t code = kg_mqtt_connack_code(level, why);
	size_t n = level == KG_MQTT_V5 ? 5 : 4;

	if (code == 0xff || cap < n)
		return 0;
	buf[0] = CONNACK_BYTE;
	buf[1] = (uint8_t)(n - 2);
	buf[2] = 0x00; /* acknowledge flags: session present = 0 */
	buf[3] = code;
	if (level == KG_MQTT_V5)
		buf[4] = 0x00; /* property length */
	return n;
}

/* 5.0 3.2.2.2: the reason codes a CONNACK may carry. */
static bool connack_v5_code_valid(uint8_t c)
{
	static const uint8_t ok[] = { 0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
				      0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97,
				      0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f };

	return memchr(ok, c, sizeof(ok)) != NULL;
}

enum kg_parse kg_mqtt_parse_connack(const uint8_t *buf, size_t len, uint8_t level,
				    bool *session_present, uint8_t *code, size_t *consumed)
{
	struct kg_rd rd;
	uint8_t tf, flags, rc_byte;
	size_t rem, hdr;

	if (level != KG_MQTT_V31 && level != KG_MQTT_V311 && level != KG_MQTT_V5)
		return KG_PARSE_UNSUPPORTED;
	if (len == 0)
		return KG_PARSE_SHORT;
	/* NOT_CONNECT here means "some other well-formed packet type". */
	if (buf[0] != CONNACK_BYTE)
		return type_flags_valid(buf[0]) ? KG_PARSE_NOT_CONNECT : KG_PARSE_MALFORMED;
	RD_TRY(kg_mqtt_parse_fixed_header(buf, len, &tf, &rem, &hdr));
	if (level != KG_MQTT_V5 && rem != 2)
		return KG_PARSE_MALFORMED;
	if (len - hdr < rem)
		return KG_PARSE_SHORT;

	rd = (struct kg_rd){ buf + hdr, rem, 0 };
	if (rd_u8(&rd, &flags) != KG_PARSE_OK || rd_u8(&rd, &rc_byte) != KG_PARSE_OK)
		return KG_PARSE_MALFORMED;
	if (level == KG_MQTT_V31) {
		flags = 0; /* 3.1: the first byte is reserved and unused */
	} else if (flags & 0xfe) {
		return KG_PARSE_MALFORMED; /* 3.1.1 3.2.2.1, 5.0 3.2.2.1.1: reserved bits */
	}
	if (level == KG_MQTT_V5) {
		size_t plen;

		if (!connack_v5_code_valid(rc_byte))
			return KG_PARSE_MALFORMED;
		/* Properties are skipped, but they must fill the packet exactly. */
		if (rd_varint(&rd, &plen) != KG_PARSE_OK || plen != rd_left(&rd))
			return KG_PARSE_MALFORMED;
	} else if (rc_byte > 5) {
		return KG_PARSE_MALFORMED; /* 3.1.1 3.2.2.3: 6-255 reserved */
	}
	/* [MQTT-3.2.2-4] / [MQTT-3.2.2-6]: a refusal never has a session. */
	if ((flags & 1) && rc_byte != 0)
		return KG_PARSE_MALFORMED;
	*session_present = flags & 1;
	*code = rc_byte;
	*consumed = hdr + rem;
	return KG_PARSE_OK;
}

/* ---- encoders ----------------------------------------------------------- */

/* Unchecked writer: every encoder sizes the packet and checks cap before writing. */
static uint8_t *put_u8(uint8_t *w, uint8_t v)
{
	*w++ = v;
	return w;
}

static uint8_t *put_u16(uint8_t *w, uint16_t v)
{
	*w++ = (uint8_t)(v >> 8);
	*w++ = (uint8_t)v;
	return w;
}

static uint8_t *put_varint(uint8_t *w, size_t v)
{
	do {
		uint8_t b = v & 0x7f;

		v >>= 7;
		*w++ = v ? (b | 0x80) : b;
	} while (v);
	return w;
}

static uint8_t *put_bytes(uint8_t *w, const void *p, size_t n)
{
	if (n > 0)
		memcpy(w, p, n);
	return w + n;
}

static uint8_t *put_str(uint8_t *w, const char *s, size_t n)
{
	return put_bytes(put_u16(w, (uint16_t)n), s, n);
}

/* Total size of a packet with `rem` remaining bytes, 0 if unencodable or over cap. */
static size_t packet_size(size_t rem, size_t cap)
{
	size_t vl = kg_mqtt_varint_len(rem);

	if (vl == 0 || rem + 1 + vl > cap)
		return 0;
	return 1 + vl + rem;
}

/* ---- the user name of a certificate-authenticated device ------------------ */

bool kg_mqtt_username_matches(const struct kg_mqtt_connect *c, const char *id, size_t id_len)
{
	if (!c->has_username || c->username_len == 0)
		return true;
	return c->username_len == id_len && memcmp(c->username, id, id_len) == 0;
}

/* The rewrite keeps the packet up to the credentials (minus the fixed header, which is
 * re-encoded) and puts one user name field where the credentials were. */
size_t kg_mqtt_rewrite_len(const struct kg_mqtt_connect *c, size_t username_len)
{
	size_t kept, rem, vl;

	if (username_len > MAX_STR || c->creds_off < c->header_len || c->creds_off > c->packet_len)
		return 0;
	kept = c->creds_off - c->header_len;
	rem = kept + 2 + username_len;
	vl = kg_mqtt_varint_len(rem);
	return vl == 0 ? 0 : 1 + vl + rem;
}

size_t kg_mqtt_rewrite_connect(const uint8_t *pkt, const struct kg_mqtt_connect *c,
			       const char *username, size_t username_len, uint8_t *out, size_t cap)
{
	size_t total = kg_mqtt_rewrite_len(c, username_len), kept;
	uint8_t *w = out, *body;

	if (total == 0 || total > cap || c->packet_len == 0)
		return 0;
	/* The broker must parse what we forward exactly as it would have parsed a device
	 * that sent this user name itself: the same UTF-8 rules as the parser. */
	if (!utf8_valid((const uint8_t *)username, username_len))
		return 0;
	kept = c->creds_off - c->header_len;
	w = put_u8(w, PT_CONNECT << 4);
	w = put_varint(w, kept + 2 + username_len);
	body = w;
	w = put_bytes(w, pkt + c->header_len, kept);
	/* User name on, password off; clean start and the will bits stay as they were. */
	body[c->flags_off - c->header_len] = (uint8_t)((c->flags | CF_USERNAME) & ~CF_PASSWORD);
	w = put_str(w, username, username_len);
	return (size_t)(w - out);
}

size_t kg_mqtt_encode_connect(const struct kg_mqtt_connect_opts *o, uint8_t *buf, size_t cap)
{
	const char *name;
	size_t name_len, cid_len, user_len = 0, pass_len = 0, rem, total;
	uint8_t flags = 0, *w = buf;

	if (o == NULL || o->client_id == NULL)
		return 0;
	switch (o->level) {
	case KG_MQTT_V31:
		name = "MQIsdp";
		break;
	case KG_MQTT_V311:
	case KG_MQTT_V5:
		name = "MQTT";
		break;
	default:
		return 0;
	}
	name_len = strlen(name);
	cid_len = strlen(o->client_id);
	if (o->username)
		user_len = strlen(o->username);
	if (o->password)
		pass_len = strlen(o->password);
	if (cid_len > MAX_STR || user_len > MAX_STR || pass_len > MAX_STR)
		return 0;

	rem = 2 + name_len + 1 + 1 + 2 + (o->level == KG_MQTT_V5 ? 1 : 0) + 2 + cid_len;
	if (o->username) {
		rem += 2 + user_len;
		flags |= CF_USERNAME;
	}
	if (o->password) {
		rem += 2 + pass_len;
		flags |= CF_PASSWORD;
	}
	if (o->clean_start)
		flags |= CF_CLEAN;
	total = packet_size(rem, cap);
	if (total == 0)
		return 0;

	w = put_u8(w, PT_CONNECT << 4);
	w = put_varint(w, rem);
	w = put_str(w, name, name_len);
	w = put_u8(w, o->level);
	w = put_u8(w, flags);
	w = put_u16(w, o->keepalive);
	if (o->level == KG_MQTT_V5)
		w = put_u8(w, 0x00); /* property length */
	w = put_str(w, o->client_id, cid_len);
	if (o->username)
		w = put_str(w, o->username, user_len);
	if (o->password)
		w = put_str(w, o->password, pass_len);
	return (size_t)(w - buf);
}

size_t kg_mqtt_encode_publish(uint8_t level, const char *topic, uint8_t qos, uint16_t packet_id,
			      const uint8_t *payload, size_t payload_len, uint8_t *buf, size_t cap)
{
	size_t topic_len, rem, total;
	uint8_t *w = buf;

	if (topic == NULL || qos > 2 || (payload == NULL && payload_len > 0))
		return 0;
	if (level != KG_MQTT_V31 && level != KG_MQTT_V311 && level != KG_MQTT_V5)
		return 0;
	if (qos > 0 && packet_id == 0)
		return 0; /* 3.1.1 2.3.1 [MQTT-2.3.1-1]: non-zero packet identifier */
	topic_len = strlen(topic);
	if (topic_len > MAX_STR)
		return 0;
	rem = 2 + topic_len + (qos > 0 ? 2 : 0) + (level == KG_MQTT_V5 ? 1 : 0);
	if (payload_len > MAX_REMAINING - rem)
		return 0;
	rem += payload_len;
	total = packet_size(rem, cap);
	if (total == 0)
		return 0;

	w = put_u8(w, (uint8_t)(PT_PUBLISH << 4 | qos << 1));
	w = put_varint(w, rem);
	w = put_str(w, topic, topic_len);
	if (qos > 0)
		w = put_u16(w, packet_id);
	if (level == KG_MQTT_V5)
		w = put_u8(w, 0x00); /* property length */
	w = put_bytes(w, payload, payload_len);
	return (size_t)(w - buf);
}

size_t kg_mqtt_encode_pingreq(uint8_t *buf, size_t cap)
{
	if (cap < 2)
		return 0;
	buf[0] = 0xc0;
	buf[1] = 0x00;
	return 2;
}
