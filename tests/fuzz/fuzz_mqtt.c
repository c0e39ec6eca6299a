/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_mqtt.c - libFuzzer target for the MQTT codec (daemon/mqtt.c): the CONNECT
 * parser under a few size limits, the fixed header splitter and the CONNACK parser
 * for 3.1.1 and 5.0. Sanitizers catch memory errors; the invariants below catch a
 * parser that says OK about bytes it does not own, and the round trips catch an
 * encoder and parser that disagree.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ktlsgate/mqtt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		abort();
}

static bool within(const uint8_t *p, size_t n, const uint8_t *buf, size_t len)
{
	return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static void fuzz_connect(const uint8_t *data, size_t size, size_t max)
{
	struct kg_mqtt_connect m;
	enum kg_parse rc = kg_mqtt_parse_connect(data, size, max, &m);
	uint8_t tf;
	size_t rem, hl;

	if (rc != KG_PARSE_OK)
		return;
	check(m.packet_len >= 2 && m.packet_len <= size);
	check(m.level == KG_MQTT_V31 || m.level == KG_MQTT_V311 || m.level == KG_MQTT_V5);
	check(within(m.client_id, m.client_id_len, data, m.packet_len));
	check(m.has_username == (m.username != NULL));
	if (m.username)
		check(within(m.username, m.username_len, data, m.packet_len));
	check(m.will_qos <= 2 && (m.has_will || m.will_qos == 0));
	check(memchr(m.client_id, 0, m.client_id_len) == NULL);
	/* the splitter agrees on where the packet ends */
	check(kg_mqtt_parse_fixed_header(data, size, &tf, &rem, &hl) == KG_PARSE_OK);
	check(tf == 0x10 && hl + rem == m.packet_len && rem <= max);
	/* exactly the packet parses the same; one byte less is only SHORT */
	check(kg_mqtt_parse_connect(data, m.packet_len, max, &m) == KG_PARSE_OK);
	check(kg_mqtt_parse_connect(data, m.packet_len - 1, max, &m) == KG_PARSE_SHORT);
}

static void fuzz_connack(const uint8_t *data, size_t size, uint8_t level)
{
	bool sp;
	uint8_t code;
	size_t used;

	if (kg_mqtt_parse_connack(data, size, level, &sp, &code, &used) != KG_PARSE_OK)
		return;
	check(used >= 4 && used <= size);
	check(!sp || code == 0);
}

/* Use the input as a client id for the encoder, when it is one. */
static void fuzz_encode(const uint8_t *data, size_t size)
{
	char id[256];
	uint8_t buf[300];
	struct kg_mqtt_connect m;
	size_t n;

	if (size == 0 || size >= sizeof(id))
		return;
	memcpy(id, data, size);
	id[size] = '\0';
	for (uint8_t level = KG_MQTT_V31; level <= KG_MQTT_V5; level++) {
		struct kg_mqtt_connect_opts o = { level, id, NULL, NULL, 60, true };
		enum kg_parse rc;

		n = kg_mqtt_encode_connect(&o, buf, sizeof(buf));
		check(n > 0);
		rc = kg_mqtt_parse_connect(buf, n, sizeof(buf), &m);
		check(rc == KG_PARSE_OK || rc == KG_PARSE_MALFORMED); /* bad UTF-8 id */
		if (rc == KG_PARSE_OK)
			check(m.packet_len == n && m.client_id_len == strlen(id) &&
			      memcmp(m.client_id, id, m.client_id_len) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t tf;
	size_t rem, hl;

	fuzz_connect(data, size, 64);
	fuzz_connect(data, size, 4096);
	fuzz_connect(data, size, 268435455);
	if (kg_mqtt_parse_fixed_header(data, size, &tf, &rem, &hl) == KG_PARSE_OK)
		check(hl >= 2 && hl <= 5 && hl <= size && (tf >> 4) != 0 && rem <= 268435455);
	fuzz_connack(data, size, KG_MQTT_V311);
	fuzz_connack(data, size, KG_MQTT_V5);
	fuzz_encode(data, size);
	return 0;
}
