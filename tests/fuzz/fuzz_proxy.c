/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_proxy.c - libFuzzer target for the PROXY protocol v2 part (daemon/proxy/
 * proxy_v2.c), linked with proxy_v2.c alone. Sanitizers catch memory errors; the
 * invariants catch a parser that says OK about bytes it does not own or would read
 * differently a second time: every result borrows only from the header it reports,
 * NEED_MORE asks for more than there is, INVALID says why and keeps nothing, a strict
 * prefix of a header that parses is NEED_MORE, and parse(encode(parse(x))) == parse(x)
 * (with the CRC32C kept when x had one). The input also drives the gateway's own
 * header (kg_pp2_device_header): its encoding must parse back to it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_v2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		abort();
}

static bool within(const struct kg_pp2_bytes *b, const uint8_t *buf, size_t len)
{
	if (b->p == NULL)
		return b->len == 0;
	return b->p >= buf && b->len <= len && (size_t)(b->p - buf) <= len - b->len;
}

static void check_borrows(const struct kg_pp2_header *h, const uint8_t *buf)
{
	const struct kg_pp2_bytes *all[] = { &h->src_unix,   &h->dst_unix,    &h->alpn,       &h->authority,
					     &h->unique_id,  &h->netns,       &h->ssl_version, &h->ssl_cn,
					     &h->ssl_cipher, &h->ssl_sig_alg, &h->ssl_key_alg, &h->cert_sha256 };

	for (size_t i = 0; i < KG_NITEMS(all); i++)
		check(within(all[i], buf, h->len));
	check(h->unique_id.len <= KG_PP2_UNIQUE_ID_MAX);
	check(h->cert_sha256.p == NULL || h->cert_sha256.len == KG_PP2_SHA256_LEN);
	check(h->has_ssl || (h->ssl_cn.p == NULL && h->ssl_version.p == NULL && h->ssl_client == 0));
	check(h->command == KG_PP2_PROXY || (h->family == KG_PP2_AF_UNSPEC && h->src_port == 0));
}

static void fuzz_parse(const uint8_t *data, size_t size, size_t max)
{
	static uint8_t enc[KG_PP2_MAX_LEN];
	struct kg_pp2_header h, again;
	struct kg_pp2_result r = kg_pp2_parse(data, size, max, &h);
	size_t n;

	switch (r.status) {
	case KG_PP2_NEED_MORE:
		check(r.need > size && r.need >= KG_PP2_FIXED_LEN && r.need <= KG_PP2_MAX_LEN);
		check(r.need == KG_PP2_FIXED_LEN || r.need <= max);
		check(r.why == NULL && h.len == 0);
		return;
	case KG_PP2_INVALID:
		check(r.why != NULL && r.at <= size && h.len == 0 && !h.has_ssl && h.ssl_cn.p == NULL);
		return;
	case KG_PP2_OK:
		break;
	default:
		abort();
	}
	check(h.len >= KG_PP2_FIXED_LEN && h.len <= size && h.len <= max && r.why == NULL);
	check_borrows(&h, data);
	/* a strict prefix is NEED_MORE, asking for the whole header */
	r = kg_pp2_parse(data, h.len - 1, max, &again);
	check(r.status == KG_PP2_NEED_MORE && r.need == (h.len - 1 < KG_PP2_FIXED_LEN ? KG_PP2_FIXED_LEN : h.len));
	/* bytes behind the header change nothing */
	check(kg_pp2_parse(data, h.len, max, &again).status == KG_PP2_OK && kg_pp2_header_equal(&h, &again));
	/* the encoder writes what the parser read (unknown TLVs and NOOP dropped) */
	n = kg_pp2_encode(&h, h.has_crc32c, enc, sizeof(enc));
	check(n >= KG_PP2_FIXED_LEN && n <= h.len);
	r = kg_pp2_parse(enc, n, KG_PP2_MAX_LEN, &again);
	check(r.status == KG_PP2_OK && again.len == n && again.has_crc32c == h.has_crc32c);
	check(kg_pp2_header_equal(&h, &again) && kg_pp2_header_equal(&again, &h));
	/* one byte short of room: refused */
	check(kg_pp2_encode(&h, h.has_crc32c, enc, n - 1) == 0);
}

/* The gateway's header from the input: addresses, ports, a CN and a hash. */
static void fuzz_device(const uint8_t *data, size_t size)
{
	uint8_t buf[512];
	struct kg_pp2_header h, p;
	size_t alen, n, cn_len;
	bool with_cn, with_sha, crc;

	if (size < 1 + 2 * 16 + 4 + 32)
		return;
	alen = data[0] & 1 ? 16 : 4;
	with_cn = data[0] & 2;
	with_sha = data[0] & 4;
	crc = data[0] & 8;
	cn_len = size - (1 + 2 * 16 + 4 + 32);
	if (cn_len > 300)
		cn_len = 300;
	check(kg_pp2_device_header(&h, alen, data + 1, (uint16_t)(data[33] << 8 | data[34]), data + 17,
				   (uint16_t)(data[35] << 8 | data[36]),
				   with_cn ? (const char *)data + 69 : NULL, cn_len, with_sha ? data + 37 : NULL));
	n = kg_pp2_encode(&h, crc, buf, sizeof(buf));
	check(n > 0);
	check(kg_pp2_parse(buf, n, KG_PP2_DEFAULT_MAX, &p).status == KG_PP2_OK);
	check(p.len == n && p.has_crc32c == crc && kg_pp2_header_equal(&h, &p));
	check(!with_cn || (p.ssl_client == 7 && p.ssl_verify == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_parse(data, size, 64);
	fuzz_parse(data, size, KG_PP2_DEFAULT_MAX);
	fuzz_parse(data, size, KG_PP2_MAX_LEN);
	fuzz_device(data, size);
	return 0;
}
