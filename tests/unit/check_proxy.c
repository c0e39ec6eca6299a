/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_proxy.c - the PROXY protocol v2 part (daemon/proxy/proxy_v2.c): the CRC32c
 * against RFC 3720's vectors and a bit-by-bit reference; headers captured from a real
 * HAProxy 2.6 (exact fields, every prefix NEED_MORE, every bit flip refused, and the
 * encoder writing them again byte for byte); parse(encode(x)) == x over a table of
 * headers; one row per INVALID reason; the encoder's refusals; the gateway's own header.
 *
 * The captured headers (also the fuzz seeds tests/fuzz/seeds/fuzz_proxy/haproxy26-*.bin)
 * were made on Debian 12 with its haproxy 2.6.12 in front of a python3 listener that
 * wrote what it received to a file (the header, then the client's first bytes):
 *   frontend tlsfront
 *       bind 127.0.0.1:28883 ssl crt srv.bundle ca-file ca.pem verify required alpn mqtt
 *       unique-id-format pp2-unique-0001
 *       default_backend tls_dump
 *   backend tls_dump
 *       server d1 127.0.0.1:28884 send-proxy-v2-ssl-cn proxy-v2-options crc32c,unique-id,ssl-cipher,cert-sig,cert-key,authority
 *   frontend plainfront
 *       bind 127.0.0.1:28885
 *       default_backend plain_dump
 *   backend plain_dump
 *       server d2 127.0.0.1:28886 send-proxy-v2
 * (mode tcp). ssl-cn-options: `echo hello | openssl s_client -connect 127.0.0.1:28883
 * -servername gw.example -alpn mqtt -cert dev.pem -key dev.key` (TLS 1.3; an RSA
 * device certificate with CN "plant-7/sensor-0042", an EC P-256 server certificate
 * signed with ecdsa-with-SHA256: cert-key and cert-sig describe the *frontend's*
 * certificate, as the spec says, not the device's). ssl-cn: the same backend line
 * without proxy-v2-options, a python3 ssl client bound to 127.0.0.7:40123, TLS 1.2.
 * plain: a python3 client sending a 3.1.1 CONNECT for client id "dev".
 * The other way, checked by hand once (not part of make check: the integration suite
 * of the wiring session is where it belongs): the gateway's header from
 * kg_pp2_device_header() + AUTHORITY + UNIQUE_ID, encoded with CRC32C, sent to
 * haproxy 2.6 `bind 127.0.0.1:28897 accept-proxy` with `log-format "PP src=%ci:%cp
 * dst=%fi:%fp authority=%[fc_pp_authority] uid=%[fc_pp_unique_id]"` logged
 * "PP src=198.51.100.23:50123 dst=192.0.2.1:8883 authority=gw.example uid=kg-uid-1"
 * and forwarded the bytes behind the header; with one bit of the 0xE0 TLV flipped
 * after encoding it logged "Received an invalid PROXY protocol header" (its CRC32C
 * check) and connected nothing.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_v2.h"
#include "testlib.h"

Suite *kg_suite_proxy(void);

/* x's first bytes are the ones listed. */
#define CK_MEM(x, ...) \
	ck_assert_mem_eq((x), ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ }))
#define SIG 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
#define LO4 0x7f, 0x00, 0x00, 0x01

/* ---- captured from HAProxy 2.6 -------------------------------------------------- */

static const uint8_t hap_ssl_opts[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	0x21, 0x11, 0x00, 0x96, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01,
	0xa2, 0x2a, 0x70, 0xd3, 0x03, 0x00, 0x04, 0xd8, 0xf8, 0x3f, 0xd0, 0x01,
	0x00, 0x04, 0x6d, 0x71, 0x74, 0x74, 0x02, 0x00, 0x0a, 0x67, 0x77, 0x2e,
	0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x05, 0x00, 0x0f, 0x70, 0x70,
	0x32, 0x2d, 0x75, 0x6e, 0x69, 0x71, 0x75, 0x65, 0x2d, 0x30, 0x30, 0x30,
	0x31, 0x20, 0x00, 0x5a, 0x07, 0x00, 0x00, 0x00, 0x00, 0x21, 0x00, 0x07,
	0x54, 0x4c, 0x53, 0x76, 0x31, 0x2e, 0x33, 0x22, 0x00, 0x13, 0x70, 0x6c,
	0x61, 0x6e, 0x74, 0x2d, 0x37, 0x2f, 0x73, 0x65, 0x6e, 0x73, 0x6f, 0x72,
	0x2d, 0x30, 0x30, 0x34, 0x32, 0x25, 0x00, 0x05, 0x45, 0x43, 0x32, 0x35,
	0x36, 0x24, 0x00, 0x11, 0x65, 0x63, 0x64, 0x73, 0x61, 0x2d, 0x77, 0x69,
	0x74, 0x68, 0x2d, 0x53, 0x48, 0x41, 0x32, 0x35, 0x36, 0x23, 0x00, 0x16,
	0x54, 0x4c, 0x53, 0x5f, 0x41, 0x45, 0x53, 0x5f, 0x32, 0x35, 0x36, 0x5f,
	0x47, 0x43, 0x4d, 0x5f, 0x53, 0x48, 0x41, 0x33, 0x38, 0x34, 0x68, 0x65,
	0x6c, 0x6c, 0x6f, 0x0a
};
static const uint8_t hap_ssl_cn[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	0x21, 0x11, 0x00, 0x34, 0x7f, 0x00, 0x00, 0x07, 0x7f, 0x00, 0x00, 0x01,
	0x9c, 0xbb, 0x70, 0xdd, 0x20, 0x00, 0x25, 0x07, 0x00, 0x00, 0x00, 0x00,
	0x21, 0x00, 0x07, 0x54, 0x4c, 0x53, 0x76, 0x31, 0x2e, 0x32, 0x22, 0x00,
	0x13, 0x70, 0x6c, 0x61, 0x6e, 0x74, 0x2d, 0x37, 0x2f, 0x73, 0x65, 0x6e,
	0x73, 0x6f, 0x72, 0x2d, 0x30, 0x30, 0x34, 0x32
};
static const uint8_t hap_plain[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	0x21, 0x11, 0x00, 0x0c, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01,
	0x9e, 0x04, 0x70, 0xd5, 0x10, 0x0f, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54,
	0x04, 0x02, 0x00, 0x3c, 0x00, 0x03, 0x64, 0x65, 0x76
};

/* A field equals the string s (present, same bytes). */
static void ck_str(const struct kg_pp2_bytes *b, const char *s)
{
	ck_assert_ptr_nonnull(b->p);
	ck_assert_uint_eq(b->len, strlen(s));
	ck_assert_msg(memcmp(b->p, s, b->len) == 0, "got \"%.*s\", want \"%s\"", (int)b->len,
		      (const char *)b->p, s);
}

/* Parse from a heap copy of exactly len bytes: any read past it is an ASan error. */
static struct kg_pp2_result parse_exact(const uint8_t *p, size_t len, size_t max,
					struct kg_pp2_header *h, uint8_t **copy)
{
	uint8_t *b = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(b);
	if (len)
		memcpy(b, p, len);
	*copy = b;
	return kg_pp2_parse(b, len, max, h);
}

/* Every strict prefix of a header of total bytes is NEED_MORE, asking 16 then total. */
static void ck_prefixes(const uint8_t *p, size_t total)
{
	for (size_t n = 0; n < total; n++) {
		struct kg_pp2_header h;
		uint8_t *copy;
		struct kg_pp2_result r = parse_exact(p, n, KG_PP2_DEFAULT_MAX, &h, &copy);

		ck_assert_msg(r.status == KG_PP2_NEED_MORE, "prefix %zu: status %d (%s)", n,
			      r.status, r.why ? r.why : "");
		ck_assert_uint_eq(r.need, n < KG_PP2_FIXED_LEN ? KG_PP2_FIXED_LEN : total);
		free(copy);
	}
}

/* encode(parse(p)) gives back p's header bytes exactly. */
static void ck_reencodes(const struct kg_pp2_header *h, const uint8_t *p)
{
	uint8_t out[512];
	size_t n = kg_pp2_encode(h, h->has_crc32c, out, sizeof(out));

	ck_assert_uint_eq(n, h->len);
	ck_assert_msg(memcmp(out, p, n) == 0, "re-encoding differs");
}

START_TEST(test_haproxy_ssl_options)
{
	struct kg_pp2_header h;
	uint8_t *copy;
	struct kg_pp2_result r = parse_exact(hap_ssl_opts, sizeof(hap_ssl_opts), KG_PP2_DEFAULT_MAX,
					     &h, &copy);

	ck_assert_msg(r.status == KG_PP2_OK, "%s at %zu", r.why ? r.why : "", r.at);
	ck_assert_uint_eq(h.len, 16 + 0x96);
	ck_assert_mem_eq(copy + h.len, "hello\n", 6);   /* the client's bytes follow */
	ck_assert_uint_eq(h.len + 6, sizeof(hap_ssl_opts));
	ck_assert_int_eq(h.command, KG_PP2_PROXY);
	ck_assert_int_eq(h.family, KG_PP2_AF_INET);
	ck_assert_int_eq(h.transport, KG_PP2_STREAM);
	CK_MEM(h.src_addr, LO4);
	CK_MEM(h.dst_addr, LO4);
	ck_assert_uint_eq(h.src_port, 0xa22a);
	ck_assert_uint_eq(h.dst_port, 28883);
	ck_assert(h.has_crc32c);
	ck_assert_uint_eq(h.crc32c, 0xd8f83fd0u);
	ck_str(&h.alpn, "mqtt");
	ck_str(&h.authority, "gw.example");
	ck_str(&h.unique_id, "pp2-unique-0001");
	ck_assert_ptr_null(h.netns.p);
	ck_assert_ptr_null(h.cert_sha256.p);
	ck_assert(h.has_ssl);
	ck_assert_uint_eq(h.ssl_client, KG_PP2_CLIENT_SSL | KG_PP2_CLIENT_CERT_CONN | KG_PP2_CLIENT_CERT_SESS);
	ck_assert_uint_eq(h.ssl_verify, 0);
	ck_str(&h.ssl_version, "TLSv1.3");
	ck_str(&h.ssl_cn, "plant-7/sensor-0042");
	ck_str(&h.ssl_cipher, "TLS_AES_256_GCM_SHA384");
	ck_str(&h.ssl_sig_alg, "ecdsa-with-SHA256");
	ck_str(&h.ssl_key_alg, "EC256");
	/* the strings point into the caller's buffer, no copies */
	ck_assert_ptr_eq(h.ssl_cn.p, copy + 0x5e);
	ck_reencodes(&h, hap_ssl_opts);
	free(copy);
	ck_prefixes(hap_ssl_opts, 16 + 0x96);
}
END_TEST

START_TEST(test_haproxy_ssl_cn)
{
	struct kg_pp2_header h;
	uint8_t *copy;
	struct kg_pp2_result r = parse_exact(hap_ssl_cn, sizeof(hap_ssl_cn), KG_PP2_DEFAULT_MAX,
					     &h, &copy);

	ck_assert_msg(r.status == KG_PP2_OK, "%s at %zu", r.why ? r.why : "", r.at);
	ck_assert_uint_eq(h.len, sizeof(hap_ssl_cn));
	ck_assert_int_eq(h.command, KG_PP2_PROXY);
	ck_assert_int_eq(h.family, KG_PP2_AF_INET);
	CK_MEM(h.src_addr, 0x7f, 0x00, 0x00, 0x07);
	CK_MEM(h.dst_addr, LO4);
	ck_assert_uint_eq(h.src_port, 40123);
	ck_assert_uint_eq(h.dst_port, 28893);
	ck_assert(!h.has_crc32c);
	ck_assert_ptr_null(h.alpn.p);
	ck_assert_ptr_null(h.authority.p);
	ck_assert_ptr_null(h.unique_id.p);
	ck_assert(h.has_ssl);
	ck_assert_uint_eq(h.ssl_client, 0x07);
	ck_assert_uint_eq(h.ssl_verify, 0);
	ck_str(&h.ssl_version, "TLSv1.2");
	ck_str(&h.ssl_cn, "plant-7/sensor-0042");
	ck_assert_ptr_null(h.ssl_cipher.p);
	ck_assert_ptr_null(h.ssl_sig_alg.p);
	ck_assert_ptr_null(h.ssl_key_alg.p);
	ck_reencodes(&h, hap_ssl_cn);
	free(copy);
	ck_prefixes(hap_ssl_cn, sizeof(hap_ssl_cn));
}
END_TEST

START_TEST(test_haproxy_plain)
{
	static const uint8_t connect[] = { 0x10, 0x0f, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
					   0x02, 0x00, 0x3c, 0x00, 0x03, 'd', 'e', 'v' };
	struct kg_pp2_header h, zero;
	uint8_t *copy;
	struct kg_pp2_result r = parse_exact(hap_plain, sizeof(hap_plain), KG_PP2_DEFAULT_MAX,
					     &h, &copy);

	ck_assert_msg(r.status == KG_PP2_OK, "%s at %zu", r.why ? r.why : "", r.at);
	ck_assert_uint_eq(h.len, 28);
	ck_assert_uint_eq(sizeof(hap_plain) - h.len, sizeof(connect));
	ck_assert_mem_eq(copy + h.len, connect, sizeof(connect));
	ck_assert_int_eq(h.family, KG_PP2_AF_INET);
	ck_assert_uint_eq(h.src_port, 0x9e04);
	ck_assert_uint_eq(h.dst_port, 28885);
	/* no TLV at all */
	memset(&zero, 0, sizeof(zero));
	ck_assert(!h.has_ssl && !h.has_crc32c);
	ck_assert(memcmp(&h.alpn, &zero.alpn, sizeof(h.alpn)) == 0);
	ck_reencodes(&h, hap_plain);
	free(copy);
	ck_prefixes(hap_plain, 28);
}
END_TEST

/* Any single bit flipped in HAProxy's CRC-protected header is refused (or, when it
 * grows the length field past the bytes there are, still NEED_MORE), except in the
 * CRC32C TLV's own type byte: that turns it into an unknown TLV, skipped, and the
 * header parses without a checksum (has_crc32c false) - a checksum cannot protect
 * its own presence. */
START_TEST(test_haproxy_bitflips)
{
	size_t hlen = 16 + 0x96;
	uint8_t *b = malloc(hlen);

	ck_assert_ptr_nonnull(b);
	for (size_t i = 0; i < hlen * 8; i++) {
		struct kg_pp2_header h;
		struct kg_pp2_result r;

		memcpy(b, hap_ssl_opts, hlen);
		b[i / 8] ^= (uint8_t)(1u << (i % 8));
		r = kg_pp2_parse(b, hlen, KG_PP2_MAX_LEN, &h);
		if (r.status == KG_PP2_OK) {
			ck_assert_msg(i / 8 == 28 && !h.has_crc32c, "bit %zu flipped still parses", i);
			continue;
		}
		if (r.status == KG_PP2_NEED_MORE)
			ck_assert_msg(i / 8 == 14 || i / 8 == 15, "bit %zu: NEED_MORE", i);
		else
			ck_assert_ptr_nonnull(r.why);
	}
	free(b);
}
END_TEST

/* ---- CRC32c ------------------------------------------------------------------- */

static uint32_t crc32c_bitwise(const uint8_t *p, size_t n)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

START_TEST(test_crc32c)
{
	uint8_t buf[32], big[1000];
	uint32_t seed = 12345;

	/* RFC 3720 B.4 and the "123456789" check value */
	ck_assert_uint_eq(kg_crc32c(0, "123456789", 9), 0xe3069283u);
	memset(buf, 0, sizeof(buf));
	ck_assert_uint_eq(kg_crc32c(0, buf, sizeof(buf)), 0x8a9136aau);
	memset(buf, 0xff, sizeof(buf));
	ck_assert_uint_eq(kg_crc32c(0, buf, sizeof(buf)), 0x62a8ab43u);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	ck_assert_uint_eq(kg_crc32c(0, buf, sizeof(buf)), 0x46dd794eu);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(31 - i);
	ck_assert_uint_eq(kg_crc32c(0, buf, sizeof(buf)), 0x113fdb5cu);
	ck_assert_uint_eq(kg_crc32c(0, "", 0), 0);
	/* every table entry, through single bytes, against the bit-by-bit reference */
	for (unsigned int v = 0; v < 256; v++) {
		uint8_t b = (uint8_t)v;

		ck_assert_uint_eq(kg_crc32c(0, &b, 1), crc32c_bitwise(&b, 1));
	}
	/* longer buffers, and continuing over a split */
	for (size_t i = 0; i < sizeof(big); i++) {
		seed = seed * 1103515245u + 12345u;
		big[i] = (uint8_t)(seed >> 16);
	}
	for (size_t cut = 0; cut <= sizeof(big); cut += 37)
		ck_assert_uint_eq(kg_crc32c(kg_crc32c(0, big, cut), big + cut, sizeof(big) - cut),
				  crc32c_bitwise(big, sizeof(big)));
}
END_TEST

/* ---- parse(encode(x)) == x -------------------------------------------------------- */

#define S(str) { (const uint8_t *)(str), sizeof(str) - 1 }
static const uint8_t sha[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
				 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 0xff };
static uint8_t unix_a[KG_PP2_UNIX_ADDR_LEN] = "/run/front.sock";
static uint8_t unix_b[KG_PP2_UNIX_ADDR_LEN] = "\0abstract";
static uint8_t uid_max[KG_PP2_UNIQUE_ID_MAX];

static const struct rt_case {
	const char *name;
	struct kg_pp2_header h;
	bool crc;
} rt_cases[] = {
	{ "v4 bare", { .command = KG_PP2_PROXY, .family = KG_PP2_AF_INET, .transport = KG_PP2_STREAM,
		       .src_addr = { 192, 0, 2, 1 }, .dst_addr = { 198, 51, 100, 7 },
		       .src_port = 50000, .dst_port = 8883 }, false },
	{ "v4 device crc", { .command = KG_PP2_PROXY, .family = KG_PP2_AF_INET, .transport = KG_PP2_STREAM,
			     .src_addr = { 10, 0, 0, 1 }, .dst_addr = { 10, 0, 0, 2 }, .src_port = 1,
			     .dst_port = 65535, .has_ssl = true, .ssl_client = 7,
			     .ssl_cn = S("dev-1"), .cert_sha256 = { sha, 32 } }, true },
	{ "v6 all tlvs", { .command = KG_PP2_PROXY, .family = KG_PP2_AF_INET6, .transport = KG_PP2_STREAM,
			   .src_addr = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 },
			   .dst_addr = { 0x20, 0x01, 0x0d, 0xb8, [14] = 0xff, [15] = 0xfe },
			   .src_port = 443, .dst_port = 1883, .alpn = S("mqtt"),
			   .authority = S("hub.example"), .unique_id = S("u-1"), .netns = S("blue"),
			   .has_ssl = true, .ssl_client = 1, .ssl_verify = 0xdeadbeef,
			   .ssl_version = S("TLSv1.3"), .ssl_cn = S("cn"), .ssl_cipher = S("c"),
			   .ssl_sig_alg = S("s"), .ssl_key_alg = S("k"), .cert_sha256 = { sha, 32 } }, true },
	{ "v6 udp", { .command = KG_PP2_PROXY, .family = KG_PP2_AF_INET6, .transport = KG_PP2_DGRAM,
		      .src_addr = { [15] = 1 }, .dst_addr = { [15] = 1 }, .src_port = 5, .dst_port = 6 }, false },
	{ "v4 udp crc", { .command = KG_PP2_PROXY, .family = KG_PP2_AF_INET, .transport = KG_PP2_DGRAM,
			  .src_addr = { 1, 2, 3, 4 }, .dst_addr = { 5, 6, 7, 8 } }, true },
	{ "empty values", { .command = KG_PP2_PROXY, .family = KG_PP2_AF_INET, .transport = KG_PP2_STREAM,
			    .alpn = S(""), .authority = S(""), .unique_id = S(""), .netns = S(""),
			    .has_ssl = true, .ssl_cn = S(""), .ssl_version = S("") }, false },
	{ "ssl no subs", { .command = KG_PP2_PROXY, .family = KG_PP2_AF_INET, .transport = KG_PP2_STREAM,
			   .has_ssl = true, .ssl_client = 0, .ssl_verify = 1 }, false },
	{ "unique id 128", { .command = KG_PP2_PROXY, .family = KG_PP2_AF_INET, .transport = KG_PP2_STREAM,
			     .unique_id = { uid_max, sizeof(uid_max) } }, true },
	{ "unix stream", { .command = KG_PP2_PROXY, .family = KG_PP2_AF_UNIX, .transport = KG_PP2_STREAM,
			   .src_unix = { unix_a, sizeof(unix_a) }, .dst_unix = { unix_b, sizeof(unix_b) },
			   .has_ssl = true, .ssl_cn = S("x") }, true },
	{ "unix dgram", { .command = KG_PP2_PROXY, .family = KG_PP2_AF_UNIX, .transport = KG_PP2_DGRAM,
			  .src_unix = { unix_b, sizeof(unix_b) }, .dst_unix = { unix_a, sizeof(unix_a) } }, false },
	{ "proxy unspec", { .command = KG_PP2_PROXY, .alpn = S("x") }, false },
	{ "local", { .command = KG_PP2_LOCAL }, false },
	{ "local crc tlvs", { .command = KG_PP2_LOCAL, .unique_id = S("hc"), .authority = S("a") }, true },
};

START_TEST(test_roundtrip)
{
	const struct rt_case *c = &rt_cases[_i];
	uint8_t buf[1024], again[1024], *copy;
	struct kg_pp2_header h;
	struct kg_pp2_result r;
	size_t n = kg_pp2_encode(&c->h, c->crc, buf, sizeof(buf));

	ck_assert_msg(n >= KG_PP2_FIXED_LEN, "%s: encode failed", c->name);
	r = parse_exact(buf, n, KG_PP2_DEFAULT_MAX, &h, &copy);
	ck_assert_msg(r.status == KG_PP2_OK, "%s: %s at %zu", c->name, r.why ? r.why : "?", r.at);
	ck_assert_uint_eq(h.len, n);
	ck_assert(h.has_crc32c == c->crc);
	ck_assert_msg(kg_pp2_header_equal(&c->h, &h), "%s: parse(encode(x)) != x", c->name);
	/* and the encoder needs exactly n bytes */
	ck_assert_uint_eq(kg_pp2_encode(&c->h, c->crc, again, n - 1), 0);
	ck_assert_uint_eq(kg_pp2_encode(&h, c->crc, again, sizeof(again)), n);
	ck_assert_mem_eq(again, buf, n);
	free(copy);
	ck_prefixes(buf, n);
	/* a limit one below the header's length refuses it, its length accepts it */
	ck_assert_int_eq(kg_pp2_parse(buf, n, n, &h).status, KG_PP2_OK);
	ck_assert_int_eq(kg_pp2_parse(buf, n, n - 1, &h).status, KG_PP2_INVALID);
}
END_TEST

/* The gateway's header for a device, byte for byte: PROXY, TCP over IPv4, CRC32C,
 * SSL (flags 7, verify 0, CN) and the certificate's SHA-256 (0xE0). */
START_TEST(test_device_header)
{
	static const uint8_t src[4] = { 192, 0, 2, 10 }, dst[4] = { 192, 0, 2, 1 };
	static const uint8_t src6[16] = { 0xfd, [15] = 2 }, dst6[16] = { 0xfd, [15] = 1 };
	static const uint8_t want_head[] = {
		SIG, 0x21, 0x11, 0x00, 12 + 7 + 3 + 5 + 3 + 5 + 3 + 32,
		192, 0, 2, 10, 192, 0, 2, 1, 0xc3, 0x50, 0x22, 0xb3,
		0x03, 0x00, 0x04, /* the CRC32C's 4 bytes, then: */
	};
	static const uint8_t want_tail[] = {
		0x20, 0x00, 0x0d, 0x07, 0x00, 0x00, 0x00, 0x00,
		0x22, 0x00, 0x05, 'd', 'e', 'v', '-', '1',
		0xe0, 0x00, 0x20,
	};
	struct kg_pp2_header h, p;
	uint8_t buf[256], zeroed[256];
	size_t n, crc_at = sizeof(want_head);
	uint32_t crc;

	ck_assert(kg_pp2_device_header(&h, 4, src, 50000, dst, 8883, "dev-1", 5, sha));
	n = kg_pp2_encode(&h, true, buf, sizeof(buf));
	ck_assert_uint_eq(n, sizeof(want_head) + 4 + sizeof(want_tail) + 32);
	ck_assert_mem_eq(buf, want_head, sizeof(want_head));
	ck_assert_mem_eq(buf + crc_at + 4, want_tail, sizeof(want_tail));
	ck_assert_mem_eq(buf + n - 32, sha, 32);
	/* the checksum is the CRC32c of the header with its field zeroed, big-endian */
	memcpy(zeroed, buf, n);
	memset(zeroed + crc_at, 0, 4);
	crc = crc32c_bitwise(zeroed, n);
	CK_MEM(buf + crc_at, (uint8_t)(crc >> 24), (uint8_t)(crc >> 16),
	       (uint8_t)(crc >> 8), (uint8_t)crc);
	ck_assert_int_eq(kg_pp2_parse(buf, n, KG_PP2_DEFAULT_MAX, &p).status, KG_PP2_OK);
	ck_assert(p.has_crc32c && p.crc32c == crc);
	ck_assert_uint_eq(p.ssl_client, KG_PP2_CLIENT_SSL | KG_PP2_CLIENT_CERT_CONN | KG_PP2_CLIENT_CERT_SESS);
	ck_assert_uint_eq(p.ssl_verify, 0);
	ck_str(&p.ssl_cn, "dev-1");
	ck_assert_uint_eq(p.cert_sha256.len, 32);
	ck_assert_mem_eq(p.cert_sha256.p, sha, 32);
	ck_assert(kg_pp2_header_equal(&h, &p));
	/* without CRC, CN or hash: the bare 28 bytes */
	ck_assert(kg_pp2_device_header(&h, 4, src, 50000, dst, 8883, NULL, 0, NULL));
	ck_assert_uint_eq(kg_pp2_encode(&h, false, buf, sizeof(buf)), 28);
	CK_MEM(buf, SIG, 0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 10, 192, 0, 2, 1,
	       0xc3, 0x50, 0x22, 0xb3);
	/* IPv6 */
	ck_assert(kg_pp2_device_header(&h, 16, src6, 1, dst6, 2, "d", 1, NULL));
	n = kg_pp2_encode(&h, false, buf, sizeof(buf));
	ck_assert_uint_eq(n, 16 + 36 + 3 + 5 + 3 + 1);
	CK_MEM(buf + 12, 0x21, 0x21, 0x00, 36 + 3 + 5 + 3 + 1, 0xfd);
	ck_assert_int_eq(kg_pp2_parse(buf, n, KG_PP2_DEFAULT_MAX, &p).status, KG_PP2_OK);
	ck_assert(kg_pp2_header_equal(&h, &p));
	ck_assert(!kg_pp2_device_header(&h, 5, src, 1, dst, 2, NULL, 0, NULL));
}
END_TEST

/* ---- what is refused ---------------------------------------------------------------- */

/* A header from its ver/cmd and family bytes and its body (the length is computed). */
struct bad_case {
	const char *name;
	uint8_t raw;         /* 1: body is the whole input, not framed */
	uint8_t ver_cmd, fam;
	uint8_t body[160];
	size_t body_len;
	const char *why;     /* a substring of the reason; NULL: must parse */
	size_t at;           /* the offset the reason names */
};

#define BODY(...) .body = { __VA_ARGS__ }, .body_len = sizeof((uint8_t[]){ __VA_ARGS__ })
#define V4 LO4, LO4, 0x00, 0x01, 0x00, 0x02
#define T(type, n) (type), 0x00, (n)
/* the SSL TLV's client and verify fields */
#define CV 0x07, 0x00, 0x00, 0x00, 0x00

static const struct bad_case bad_cases[] = {
	{ "v1 text", 1, 0, 0, BODY('P', 'R', 'O', 'X', 'Y', ' ', 'T', 'C', 'P', '4', ' ', '1', '.',
				   '2', '.', '3', '.', '4', '\r', '\n'), "v1 (text)", 0 },
	{ "v1 prefix", 1, 0, 0, BODY('P', 'R', 'O'), "v1 (text)", 0 },
	{ "http", 1, 0, 0, BODY('G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1',
				'\r', '\n'), "no PROXY protocol v2 signature", 0 },
	{ "mqtt connect", 1, 0, 0, BODY(0x10, 0x0f, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00,
					0x3c, 0x00, 0x03, 'd', 'e', 'v'), "no PROXY protocol v2 signature", 0 },
	{ "tls hello", 1, 0, 0, BODY(0x16, 0x03, 0x01, 0x00, 0xa5), "no PROXY protocol v2 signature", 0 },
	{ "sig byte 5", 1, 0, 0, BODY(0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0e), "no PROXY protocol v2 signature", 5 },
	{ "sig byte 11", 1, 0, 0, BODY(0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54,
				       0x0b, 0x21, 0x11, 0, 0), "no PROXY protocol v2 signature", 11 },
	{ "version 1", 0, 0x11, 0x11, BODY(V4), "version other than 2", 12 },
	{ "version 3", 0, 0x31, 0x11, BODY(V4), "version other than 2", 12 },
	{ "command 2", 0, 0x22, 0x11, BODY(V4), "command other than LOCAL or PROXY", 12 },
	{ "command 15", 0, 0x2f, 0x00, BODY(0), "command other than LOCAL or PROXY", 12 },
	{ "family 4", 0, 0x21, 0x41, BODY(V4), "family and transport byte", 13 },
	{ "transport 3", 0, 0x21, 0x13, BODY(V4), "family and transport byte", 13 },
	{ "inet unspec transport", 0, 0x21, 0x10, BODY(V4), "family and transport byte", 13 },
	{ "unspec stream", 0, 0x21, 0x01, BODY(0), "family and transport byte", 13 },
	{ "short v4 block", 0, 0x21, 0x11, BODY(LO4, LO4, 0, 1), "shorter than its family's", 14 },
	{ "short v6 block", 0, 0x21, 0x21, BODY(V4), "shorter than its family's", 14 },
	{ "truncated tlv", 0, 0x21, 0x11, BODY(V4, 0x01, 0x00), "truncated TLV header", 28 },
	{ "tlv past end", 0, 0x21, 0x11, BODY(V4, T(0x01, 5), 'm', 'q', 't', 't'), "past the header's end", 28 },
	{ "unknown tlv past end", 0, 0x21, 0x11, BODY(V4, T(0xf0, 1)), "past the header's end", 28 },
	{ "ssl too short", 0, 0x21, 0x11, BODY(V4, T(0x20, 4), 7, 0, 0, 0), "shorter than its client", 28 },
	{ "ssl sub past parent", 0, 0x21, 0x11,
	  BODY(V4, T(0x20, 5 + 3 + 2), CV, T(0x22, 3), 'a', 'b', 0x00), "sub-TLV runs past its parent", 36 },
	{ "ssl sub truncated", 0, 0x21, 0x11, BODY(V4, T(0x20, 5 + 2), CV, 0x22, 0x00),
	  "truncated SSL sub-TLV", 36 },
	{ "ssl twice", 0, 0x21, 0x11, BODY(V4, T(0x20, 5), CV, T(0x20, 5), CV), "second SSL TLV", 36 },
	{ "cn twice", 0, 0x21, 0x11, BODY(V4, T(0x20, 5 + 8), CV, T(0x22, 1), 'a', T(0x22, 1), 'b'),
	  "sub-TLV twice", 40 },
	{ "alpn twice", 0, 0x21, 0x11, BODY(V4, T(0x01, 1), 'a', T(0x01, 0)), "second ALPN", 32 },
	{ "authority twice", 0, 0x21, 0x11, BODY(V4, T(0x02, 0), T(0x02, 0)), "second AUTHORITY", 31 },
	{ "netns twice", 0, 0x21, 0x11, BODY(V4, T(0x30, 0), T(0x30, 0)), "second NETNS", 31 },
	{ "unique id twice", 0, 0x21, 0x11, BODY(V4, T(0x05, 0), T(0x05, 0)), "second UNIQUE_ID", 31 },
	{ "crc twice", 0, 0x21, 0x11, BODY(V4, T(0x03, 4), 0, 0, 0, 0, T(0x03, 4), 0, 0, 0, 0),
	  "second CRC32C", 35 },
	{ "crc size 3", 0, 0x21, 0x11, BODY(V4, T(0x03, 3), 0, 0, 0), "not 4 bytes", 28 },
	{ "crc mismatch", 0, 0x21, 0x11, BODY(V4, T(0x03, 4), 0, 0, 0, 0), "does not match", 31 },
	{ "sha256 31", 0, 0x21, 0x11, BODY(V4, T(0xe0, 31), [45] = 0), "not 32 bytes", 28 },
	{ "sha256 twice", 0, 0x21, 0x11, BODY(V4, T(0xe0, 32), [47] = 0xe0, 0x00, 0x20, [81] = 0),
	  "second certificate SHA-256", 63 },
	/* accepted */
	{ "unknown tlvs skipped", 0, 0x21, 0x11,
	  BODY(V4, T(0x04, 2), 0, 0, T(0xf0, 1), 9, T(0xf0, 0), T(0x31, 0), T(0xe1, 1), 1), NULL, 0 },
	{ "unknown ssl sub skipped", 0, 0x21, 0x11, BODY(V4, T(0x20, 5 + 4 + 3), CV, T(0x26, 1), 1, T(0x26, 0)),
	  NULL, 0 },
	{ "local short block", 0, 0x20, 0x11, BODY(1, 2, 3), NULL, 0 },
	{ "local v4 tlvs", 0, 0x20, 0x11, BODY(V4, T(0x05, 1), 'u'), NULL, 0 },
	{ "local empty", 0, 0x20, 0x00, .body_len = 0, NULL, 0 },
	{ "unspec with tlv", 0, 0x21, 0x00, BODY(T(0x02, 1), 'h'), NULL, 0 },
};

START_TEST(test_bad)
{
	const struct bad_case *c = &bad_cases[_i];
	uint8_t buf[256], *copy;
	struct kg_pp2_header h;
	struct kg_pp2_result r;
	size_t n = 0;

	if (c->raw) {
		memcpy(buf, c->body, c->body_len);
		n = c->body_len;
	} else {
		static const uint8_t sig[] = { SIG };

		memcpy(buf, sig, sizeof(sig));
		buf[12] = c->ver_cmd;
		buf[13] = c->fam;
		buf[14] = (uint8_t)(c->body_len >> 8);
		buf[15] = (uint8_t)c->body_len;
		memcpy(buf + 16, c->body, c->body_len);
		n = 16 + c->body_len;
	}
	r = parse_exact(buf, n, KG_PP2_DEFAULT_MAX, &h, &copy);
	free(copy);
	if (c->why == NULL) {
		ck_assert_msg(r.status == KG_PP2_OK, "%s: %s at %zu", c->name, r.why ? r.why : "?", r.at);
		ck_assert_uint_eq(h.len, n);
		return;
	}
	ck_assert_msg(r.status == KG_PP2_INVALID, "%s: status %d", c->name, r.status);
	ck_assert_ptr_nonnull(r.why);
	ck_assert_msg(strstr(r.why, c->why) != NULL, "%s: why \"%s\", want \"%s\"", c->name, r.why, c->why);
	ck_assert_msg(r.at == c->at, "%s: at %zu, want %zu", c->name, r.at, c->at);
	/* the result holds nothing of the input */
	ck_assert_uint_eq(h.len, 0);
	ck_assert(!h.has_ssl && h.ssl_cn.p == NULL && h.alpn.p == NULL);
}
END_TEST

START_TEST(test_accepted_fields)
{
	static const uint8_t local_v4[] = { SIG, 0x20, 0x11, 0, 12 + 4, V4, T(0x05, 1), 'u' };
	static const uint8_t unknown_sub[] = { SIG, 0x21, 0x11, 0, 12 + 3 + 12, V4, T(0x20, 12), CV,
					       T(0x26, 1), 1, T(0x22, 0) };
	struct kg_pp2_header h;

	/* LOCAL: addresses ignored, TLVs read */
	ck_assert_int_eq(kg_pp2_parse(local_v4, sizeof(local_v4), KG_PP2_DEFAULT_MAX, &h).status, KG_PP2_OK);
	ck_assert_int_eq(h.command, KG_PP2_LOCAL);
	ck_assert_int_eq(h.family, KG_PP2_AF_UNSPEC);
	ck_assert_uint_eq(h.src_port, 0);
	ck_str(&h.unique_id, "u");
	/* an unknown SSL sub-TLV skipped, the CN after it read (present, empty) */
	ck_assert_int_eq(kg_pp2_parse(unknown_sub, sizeof(unknown_sub), KG_PP2_DEFAULT_MAX, &h).status,
			 KG_PP2_OK);
	ck_str(&h.ssl_cn, "");
}
END_TEST

/* The limit: checked from the 16 fixed bytes on, before waiting for the rest. */
START_TEST(test_max_len)
{
	uint8_t buf[16] = { SIG, 0x21, 0x11, 0x0f, 0xf1 };   /* 16 + 4081 = 4097 */
	struct kg_pp2_header h;
	struct kg_pp2_result r;

	r = kg_pp2_parse(buf, sizeof(buf), KG_PP2_DEFAULT_MAX, &h);
	ck_assert_int_eq(r.status, KG_PP2_INVALID);
	ck_assert_str_eq(r.why, "a header longer than the configured maximum");
	ck_assert_uint_eq(r.at, 14);
	buf[15] = 0xf0;   /* exactly 4096: wait for it */
	r = kg_pp2_parse(buf, sizeof(buf), KG_PP2_DEFAULT_MAX, &h);
	ck_assert_int_eq(r.status, KG_PP2_NEED_MORE);
	ck_assert_uint_eq(r.need, 4096);
	buf[14] = 0xff;
	buf[15] = 0xff;   /* the most a header can be: only under a limit that high */
	r = kg_pp2_parse(buf, sizeof(buf), (size_t)-1, &h);
	ck_assert_int_eq(r.status, KG_PP2_NEED_MORE);
	ck_assert_uint_eq(r.need, KG_PP2_MAX_LEN);
	ck_assert_int_eq(kg_pp2_parse(buf, sizeof(buf), KG_PP2_MAX_LEN - 1, &h).status, KG_PP2_INVALID);
	ck_assert_int_eq(kg_pp2_parse(buf, sizeof(buf), 0, &h).status, KG_PP2_INVALID);
}
END_TEST

START_TEST(test_encode_refuses)
{
	static uint8_t big[70000];
	struct kg_pp2_header h;
	uint8_t buf[256];
	static uint8_t out[140000];

	ck_assert(kg_pp2_device_header(&h, 4, (const uint8_t[4]){ 1 }, 1, (const uint8_t[4]){ 2 }, 2,
				       "dev", 3, sha));
	for (size_t cap = 0; cap < 16 + 12 + 3 + 5 + 3 + 3 + 3 + 32; cap++)
		ck_assert_uint_eq(kg_pp2_encode(&h, false, buf, cap), 0);
	ck_assert_uint_eq(kg_pp2_encode(&h, false, buf, 16 + 12 + 3 + 5 + 3 + 3 + 3 + 32), 77);
	h.cert_sha256.len = 31;
	ck_assert_uint_eq(kg_pp2_encode(&h, false, buf, sizeof(buf)), 0);
	h.cert_sha256.len = 32;
	h.unique_id = (struct kg_pp2_bytes){ big, KG_PP2_UNIQUE_ID_MAX + 1 };
	ck_assert_uint_eq(kg_pp2_encode(&h, false, buf, sizeof(buf)), 0);
	h.unique_id = (struct kg_pp2_bytes){ NULL, 0 };
	h.family = (enum kg_pp2_family)4;
	ck_assert_uint_eq(kg_pp2_encode(&h, false, buf, sizeof(buf)), 0);
	h.family = KG_PP2_AF_INET;
	h.transport = (enum kg_pp2_transport)3;
	ck_assert_uint_eq(kg_pp2_encode(&h, false, buf, sizeof(buf)), 0);
	h.transport = KG_PP2_UNSPEC;   /* 0x10: not in the spec's list */
	ck_assert_uint_eq(kg_pp2_encode(&h, false, buf, sizeof(buf)), 0);
	h.transport = KG_PP2_STREAM;
	h.command = (enum kg_pp2_command)2;
	ck_assert_uint_eq(kg_pp2_encode(&h, false, buf, sizeof(buf)), 0);
	h.command = KG_PP2_PROXY;
	h.family = KG_PP2_AF_UNIX;   /* without its addresses */
	ck_assert_uint_eq(kg_pp2_encode(&h, false, buf, sizeof(buf)), 0);
	h.family = KG_PP2_AF_INET;
	/* a value over 65535 bytes, an SSL TLV over it, a header over it */
	h.alpn = (struct kg_pp2_bytes){ big, 65536 };
	ck_assert_uint_eq(kg_pp2_encode(&h, false, out, sizeof(out)), 0);
	h.alpn = (struct kg_pp2_bytes){ NULL, 0 };
	h.ssl_cn = (struct kg_pp2_bytes){ big, 65535 - 5 - 3 + 1 };
	ck_assert_uint_eq(kg_pp2_encode(&h, false, out, sizeof(out)), 0);
	h.ssl_cn = (struct kg_pp2_bytes){ big, 65535 - 5 - 3 };
	ck_assert_uint_eq(kg_pp2_encode(&h, false, out, sizeof(out)), 0);   /* + addresses */
	h.cert_sha256 = (struct kg_pp2_bytes){ NULL, 0 };
	h.ssl_cn = (struct kg_pp2_bytes){ big, 65535 - 12 - 3 - 5 - 3 };
	ck_assert_uint_eq(kg_pp2_encode(&h, false, out, sizeof(out)), KG_PP2_MAX_LEN);
	ck_assert_int_eq(kg_pp2_parse(out, KG_PP2_MAX_LEN, KG_PP2_MAX_LEN, &h).status, KG_PP2_OK);
	ck_assert_uint_eq(h.ssl_cn.len, 65535 - 12 - 3 - 5 - 3);
}
END_TEST

Suite *kg_suite_proxy(void)
{
	Suite *s = suite_create("proxy");
	TCase *tc = tcase_create("haproxy");

	for (size_t i = 0; i < sizeof(uid_max); i++)
		uid_max[i] = (uint8_t)i;
	tcase_add_test(tc, test_haproxy_ssl_options);
	tcase_add_test(tc, test_haproxy_ssl_cn);
	tcase_add_test(tc, test_haproxy_plain);
	tcase_add_test(tc, test_haproxy_bitflips);
	suite_add_tcase(s, tc);

	tc = tcase_create("crc32c");
	tcase_add_test(tc, test_crc32c);
	suite_add_tcase(s, tc);

	tc = tcase_create("codec");
	tcase_add_loop_test(tc, test_roundtrip, 0, (int)KG_NITEMS(rt_cases));
	tcase_add_test(tc, test_device_header);
	tcase_add_test(tc, test_encode_refuses);
	suite_add_tcase(s, tc);

	tc = tcase_create("invalid");
	tcase_add_loop_test(tc, test_bad, 0, (int)KG_NITEMS(bad_cases));
	tcase_add_test(tc, test_accepted_fields);
	tcase_add_test(tc, test_max_len);
	suite_add_tcase(s, tc);
	return s;
}
