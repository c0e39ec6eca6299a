/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mqtt.h - the MQTT part: the codec for what the gate must understand of MQTT.
 *
 * One way in: kg_mqtt_parse_connect() reads the first packet (CONNECT, MQTT 3.1 /
 * 3.1.1 / 5.0); the gate answers a refusal with kg_mqtt_encode_connack(), checks the
 * CONNECT's user name against the certificate's device id (kg_mqtt_username_matches())
 * or rewrites it to that id (kg_mqtt_rewrite_connect()). The rest are the few encoders
 * the tests and the load generator need (CONNECT, PUBLISH, PINGREQ, a packet splitter).
 * Pure: no I/O, no clock, no allocation, no logging, no OpenSSL, nothing from tls/, the
 * connection or the event loop. Every parser reads a bounded cursor over the caller's
 * bytes and results borrow from those bytes; thread-safe. `make lint` enforces the
 * includes (scripts/lint-pure.sh); tests/fuzz/fuzz_mqtt.c links mqtt.c alone.
 */
#ifndef KTLSGATE_MQTT_H
#define KTLSGATE_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"

enum kg_parse {
	KG_PARSE_OK = 0,
	KG_PARSE_SHORT,        /* not enough bytes yet: read more, never a failure */
	KG_PARSE_MALFORMED,    /* violates the spec: close */
	KG_PARSE_UNSUPPORTED,  /* well-formed but not something we accept (e.g. level 6) */
	KG_PARSE_TOO_BIG,      /* remaining length over the caller's limit */
	KG_PARSE_NOT_CONNECT   /* first packet is another type */
};

/* Protocol levels on the wire (CONNECT variable header byte). */
enum kg_mqtt_level { KG_MQTT_V31 = 3, KG_MQTT_V311 = 4, KG_MQTT_V5 = 5 };

struct kg_mqtt_connect {
	uint8_t level;            /* enum kg_mqtt_level */
	uint8_t flags;            /* raw connect flags byte */
	uint16_t keepalive;
	bool clean_start, has_will, has_username, has_password;
	uint8_t will_qos;
	const uint8_t *client_id; /* borrowed from the input; not NUL-terminated */
	size_t client_id_len;
	const uint8_t *username;  /* borrowed, NULL if absent */
	size_t username_len;
	const uint8_t *password;  /* borrowed, NULL if absent (binary data, not UTF-8) */
	size_t password_len;
	size_t packet_len;        /* bytes of the whole packet (fixed header included) */
	/* Offsets from the packet's first byte, for kg_mqtt_rewrite_connect(): */
	size_t header_len;        /* fixed header (type byte + remaining length), 2..5 */
	size_t flags_off;         /* the connect flags byte */
	size_t creds_off;         /* the user name field, else the password field, else
				   * packet_len: the credentials are the packet's tail */
};

/*
 * Parse the CONNECT at the start of buf. max_remaining bounds the remaining length:
 * a larger one is KG_PARSE_TOO_BIG as soon as the fixed header is readable, so a
 * 10 MB CONNECT is refused after five bytes. On KG_PARSE_OK, out->packet_len bytes
 * were consumed; anything behind them is the next packet.
 */
enum kg_parse kg_mqtt_parse_connect(const uint8_t *buf, size_t len, size_t max_remaining,
				    struct kg_mqtt_connect *out) KG_MUST_USE;

/*
 * The user name rule for certificate-authenticated devices: true when the CONNECT
 * carries no user name, an empty one, or exactly the `id_len` bytes of `id` (the
 * device id the certificate proved). The password is not looked at. An empty id
 * matches only an absent or empty user name.
 */
bool kg_mqtt_username_matches(const struct kg_mqtt_connect *c, const char *id, size_t id_len);

/*
 * Bytes kg_mqtt_rewrite_connect() writes for a user name of `username_len` bytes, 0 if
 * the result would be no MQTT packet (user name over 65535 bytes, remaining length
 * over the MQTT maximum).
 */
size_t kg_mqtt_rewrite_len(const struct kg_mqtt_connect *c, size_t username_len);

/*
 * Re-encode the CONNECT `pkt`, which kg_mqtt_parse_connect() parsed into *c, with the
 * user name `username` (username_len bytes) and no password. Everything else is kept
 * byte for byte: protocol name and level, the other connect flags (clean start, will,
 * will QoS and retain), keep-alive, MQTT 5.0 properties (authentication method and
 * data included), client id, will properties, topic and payload. The remaining length
 * is re-encoded (in the fewest bytes), so the packet may shrink or grow.
 * Returns the bytes written to out (kg_mqtt_rewrite_len()), 0 if cap is too small or
 * the user name is no MQTT UTF-8 string (bad UTF-8, U+0000, over 65535 bytes).
 * out must not overlap pkt.
 */
size_t kg_mqtt_rewrite_connect(const uint8_t *pkt, const struct kg_mqtt_connect *c,
			       const char *username, size_t username_len, uint8_t *out, size_t cap);

/* Read a fixed header: packet type/flags byte and remaining length.
 * KG_PARSE_OK sets *hdr_len (1..5) and *remaining. */
enum kg_parse kg_mqtt_parse_fixed_header(const uint8_t *buf, size_t len, uint8_t *type_flags,
					 size_t *remaining, size_t *hdr_len) KG_MUST_USE;

/* Why the gate answers a CONNECT; mapped to the level's code by the encoder. */
enum kg_connack {
	KG_CONNACK_ACCEPTED,
	KG_CONNACK_NOT_AUTHORIZED,     /* 3.1.1: 5; 5.0: 0x87 */
	KG_CONNACK_BANNED,             /* 3.1.1: 5; 5.0: 0x8A */
	KG_CONNACK_SERVER_UNAVAILABLE, /* 3.1.1: 3; 5.0: 0x88 */
	KG_CONNACK_BAD_CLIENT_ID,      /* 3.1.1: 2; 5.0: 0x85 */
	KG_CONNACK_BAD_PROTOCOL,       /* 3.1.1: 1; 5.0: 0x84 (unsupported protocol version) */
	KG_CONNACK_BAD_CREDENTIALS,    /* 3.1.1: 4; 5.0: 0x86 (bad user name or password) */
	KG_CONNACK_MAX
};

/* The return code / reason code byte for `why` at `level`. */
uint8_t kg_mqtt_connack_code(uint8_t level, enum kg_connack why);

/* Encode a CONNACK (session present = 0). Returns bytes written, 0 if cap too small
 * or level unknown. 3.x: 4 bytes; 5.0: 5 bytes (empty property list). */
size_t kg_mqtt_encode_connack(uint8_t level, enum kg_connack why, uint8_t *buf, size_t cap);

/* Parse a CONNACK (client side, for tests and the load generator). */
enum kg_parse kg_mqtt_parse_connack(const uint8_t *buf, size_t len, uint8_t level,
				    bool *session_present, uint8_t *code, size_t *consumed) KG_MUST_USE;

/* Encoders for tests and tests/bench. Return bytes written, 0 if cap too small. */
struct kg_mqtt_connect_opts {
	uint8_t level;
	const char *client_id;
	const char *username;     /* NULL: none */
	const char *password;     /* NULL: none */
	uint16_t keepalive;
	bool clean_start;
};
size_t kg_mqtt_encode_connect(const struct kg_mqtt_connect_opts *o, uint8_t *buf, size_t cap);
size_t kg_mqtt_encode_publish(uint8_t level, const char *topic, uint8_t qos, uint16_t packet_id,
			      const uint8_t *payload, size_t payload_len, uint8_t *buf, size_t cap);
size_t kg_mqtt_encode_pingreq(uint8_t *buf, size_t cap);

/* Bytes needed to encode a remaining length (1..4); 0 if over the MQTT maximum. */
size_t kg_mqtt_varint_len(size_t value);

#endif
