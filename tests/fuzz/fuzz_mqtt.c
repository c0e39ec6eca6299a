/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_mqtt.c - libFuzzer target for the MQTT codec (daemon/mqtt/mqtt.c): the CONNECT
 * parser under a few size limits, the fixed header splitter and the CONNACK parser
 * for 3.1.1 and 5.0. Sanitizers catch memory errors; the invariants below catch a
 * parser that says OK about bytes it does not own, and the round trips catch an
 * encoder and parser that disagree. Every CONNECT that parses is also rewritten to a
 * device id user name without password (username_check = rewrite): the result must
 * parse, carry that user name and no password, and keep every other byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt.h"

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

/*
 * parse(rewrite(x)) succeeds with user name == id and no password; the other flags,
 * and every byte from the protocol name to the end of the will, are the input's; the
 * rewrite of the rewrite is the same bytes. ids: short, one that adds a length byte
 * around 127/128, a "dev/module" one, and the input's own client id when it fits.
 */
static void fuzz_rewrite(const uint8_t *data, const struct kg_mqtt_connect *m)
{
	char big[200], cid[129];
	const char *ids[4] = { "dev", "plant-7/line-3/module", big, NULL };
	size_t nids = 3;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	if (m->client_id_len < sizeof(cid)) {
		memcpy(cid, m->client_id, m->client_id_len);
		cid[m->client_id_len] = '\0';
		ids[nids++] = cid;
	}
	for (size_t i = 0; i < nids; i++) {
		size_t id_len = strlen(ids[i]), need = kg_mqtt_rewrite_len(m, id_len), n, kept;
		struct kg_mqtt_connect r;
		uint8_t *out, *again;

		check(need > 0); /* ids are short, the input's remaining length was legal */
		out = malloc(need);
		again = malloc(need);
		check(out != NULL && again != NULL);
		/* every id is an MQTT string (the client id was checked as one) */
		n = kg_mqtt_rewrite_connect(data, m, ids[i], id_len, out, need);
		check(n == need);
		check(kg_mqtt_rewrite_connect(data, m, ids[i], id_len, out, need - 1) == 0);
		check(kg_mqtt_parse_connect(out, n, 268435455, &r) == KG_PARSE_OK);
		check(r.packet_len == n && r.level == m->level && r.keepalive == m->keepalive);
		check(r.flags == ((m->flags | 0x80) & ~0x40));
		check(r.has_username && r.username_len == id_len &&
		      memcmp(r.username, ids[i], id_len) == 0);
		check(!r.has_password && r.password == NULL);
		check(r.client_id_len == m->client_id_len &&
		      memcmp(r.client_id, m->client_id, m->client_id_len) == 0);
		kept = m->creds_off - m->header_len;
		check(r.creds_off - r.header_len == kept);
		check(r.flags_off - r.header_len == m->flags_off - m->header_len);
		check(memcmp(out + r.header_len, data + m->header_len, m->flags_off - m->header_len) == 0);
		check(memcmp(out + r.flags_off + 1, data + m->flags_off + 1,
			     m->creds_off - m->flags_off - 1) == 0);
		check(kg_mqtt_rewrite_connect(out, &r, ids[i], id_len, again, need) == need &&
		      memcmp(again, out, need) == 0);
		/* the check agrees: the rewritten user name is the id */
		check(kg_mqtt_username_matches(&r, ids[i], id_len));
		free(out);
		free(again);
	}
}

static void fuzz_connect(const uint8_t *data, size_t size, size_t max)
{
	struct kg_mqtt_connect m;
	enum kg_parse rc = kg_mqtt_parse_connect(data, size, max, &m);
	uint8_t tf;
	size_t rem, hl, plen;

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
	plen = m.packet_len;
	check(kg_mqtt_parse_connect(data, plen - 1, max, &m) == KG_PARSE_SHORT);
	/* the credential offsets the rewrite relies on */
	check(kg_mqtt_parse_connect(data, plen, max, &m) == KG_PARSE_OK);
	check(m.header_len == hl && m.flags_off > m.header_len && m.creds_off > m.flags_off &&
	      m.creds_off <= m.packet_len);
	check(m.has_password == (m.password != NULL));
	if (m.password)
		check(within(m.password, m.password_len, data, m.packet_len));
	check(kg_mqtt_username_matches(&m, "", 0) == (!m.has_username || m.username_len == 0));
	if (max == 268435455)
		fuzz_rewrite(data, &m);
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
