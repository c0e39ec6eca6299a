/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * proxy_v2.c - the PROXY protocol v2 header (proxy-protocol.txt 2.2): parser, encoder,
 * and the CRC32c its checksum TLV uses. Pure: bytes in, a struct or bytes out.
 *
 * Choices the spec leaves open, decided once (here; the header says what each means):
 *  - Only the seven family/transport bytes the spec lists are accepted (0x00, 0x11,
 *    0x12, 0x21, 0x22, 0x31, 0x32). The others ("UNSPEC" in one nibble only) leave
 *    the address block's size unknown, and with it where the TLVs start: a header
 *    whose TLVs we might read differently from the broker is refused, not guessed at.
 *  - LOCAL: addresses are ignored (reported UNSPEC) as the spec says; TLVs after the
 *    family's address block are still read and a CRC32C still checked, since HAProxy
 *    sends them with its health checks. A LOCAL header shorter than its family's
 *    addresses is accepted whole, nothing read past the 16 fixed bytes: the spec
 *    wants LOCAL accepted and its block skipped.
 *  - A known TLV (and a known SSL sub-TLV) twice is INVALID: which one would the
 *    broker, or the audit line, believe? NOOP and unknown types are skipped, as many
 *    as come; their lengths are checked like any other.
 *  - The gateway's CERT_SHA256 TLV (0xE0, the custom range) must be 32 bytes when it
 *    is there: another sender's 0xE0 of another size is refused rather than taken
 *    for a certificate hash.
 *  - The header's own length is bounded by the caller (4096 by default), checked as
 *    soon as the 16 fixed bytes are in, so a 64 KiB claim costs nothing.
 */
#include <string.h>

#include "proxy/proxy_v2.h"

static const uint8_t pp2_sig[KG_PP2_SIG_LEN] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
						 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

/* ---- CRC32c ------------------------------------------------------------- */

/* Reflected Castagnoli polynomial 0x82F63B78, one entry per byte value; generated
 * bit by bit (tests/unit/check_proxy.c derives it again and compares). */
static const uint32_t crc32c_table[256] = {
	0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
	0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
	0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
	0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
	0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
	0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
	0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
	0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
	0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
	0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
	0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
	0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
	0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
	0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
	0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
	0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
	0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
	0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
	0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
	0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
	0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
	0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
	0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
	0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
	0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
	0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
	0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
	0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
	0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
	0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
	0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
	0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
	0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
	0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
	0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
	0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
	0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
	0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
	0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
	0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
	0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
	0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
	0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t kg_crc32c(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	crc = ~crc;
	for (size_t i = 0; i < len; i++)
		crc = crc32c_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- parser ------------------------------------------------------------- */

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static struct kg_pp2_result pp2_invalid(struct kg_pp2_header *out, const char *why, size_t at)
{
	memset(out, 0, sizeof(*out));
	return (struct kg_pp2_result){ .status = KG_PP2_INVALID, .why = why, .at = at };
}

/* The address block's size for a family/transport byte; -1: not in the spec's list. */
static int addr_block_len(uint8_t fam)
{
	switch (fam) {
	case 0x00:
		return 0;
	case 0x11:
	case 0x12:
		return 12;
	case 0x21:
	case 0x22:
		return 36;
	case 0x31:
	case 0x32:
		return 2 * KG_PP2_UNIX_ADDR_LEN;
	default:
		return -1;
	}
}

/* Keep a TLV's value, unless that type was seen already. */
static bool take_once(struct kg_pp2_bytes *dst, const uint8_t *p, size_t len)
{
	if (dst->p != NULL)
		return false;
	dst->p = p;
	dst->len = len;
	return true;
}

/* The SSL TLV's value v[0..len): client, verify, then sub-TLVs within it. base is the
 * header's start, for the offset of an error. */
static const char *parse_ssl(struct kg_pp2_header *h, const uint8_t *base, const uint8_t *v,
			     size_t len, size_t *at)
{
	size_t off = 5;

	if (h->has_ssl)
		return "a second SSL TLV";
	if (len < 5)
		return "an SSL TLV shorter than its client and verify fields";
	h->has_ssl = true;
	h->ssl_client = v[0];
	h->ssl_verify = be32(v + 1);
	while (off < len) {
		struct kg_pp2_bytes *dst = NULL;
		size_t vlen;

		*at = (size_t)(v + off - base);
		if (len - off < 3)
			return "a truncated SSL sub-TLV header";
		vlen = be16(v + off + 1);
		if (vlen > len - off - 3)
			return "an SSL sub-TLV runs past its parent";
		switch (v[off]) {
		case KG_PP2_SUBTYPE_SSL_VERSION:
			dst = &h->ssl_version;
			break;
		case KG_PP2_SUBTYPE_SSL_CN:
			dst = &h->ssl_cn;
			break;
		case KG_PP2_SUBTYPE_SSL_CIPHER:
			dst = &h->ssl_cipher;
			break;
		case KG_PP2_SUBTYPE_SSL_SIG_ALG:
			dst = &h->ssl_sig_alg;
			break;
		case KG_PP2_SUBTYPE_SSL_KEY_ALG:
			dst = &h->ssl_key_alg;
			break;
		default:
			break;   /* unknown sub-TLV: skipped */
		}
		if (dst != NULL && !take_once(dst, v + off + 3, vlen))
			return "an SSL sub-TLV twice";
		off += 3 + vlen;
	}
	return NULL;
}

/* The TLVs in buf[off..total). Returns NULL or why not, *at the offending offset;
 * *crc_at the CRC32C value's offset (0: none). */
static const char *parse_tlvs(struct kg_pp2_header *h, const uint8_t *buf, size_t off,
			      size_t total, size_t *at, size_t *crc_at)
{
	while (off < total) {
		const uint8_t *v;
		size_t vlen;
		const char *why;

		*at = off;
		if (total - off < 3)
			return "a truncated TLV header";
		vlen = be16(buf + off + 1);
		if (vlen > total - off - 3)
			return "a TLV runs past the header's end";
		v = buf + off + 3;
		switch (buf[off]) {
		case KG_PP2_TYPE_ALPN:
			if (!take_once(&h->alpn, v, vlen))
				return "a second ALPN TLV";
			break;
		case KG_PP2_TYPE_AUTHORITY:
			if (!take_once(&h->authority, v, vlen))
				return "a second AUTHORITY TLV";
			break;
		case KG_PP2_TYPE_CRC32C:
			if (*crc_at != 0)
				return "a second CRC32C TLV";
			if (vlen != 4)
				return "a CRC32C TLV that is not 4 bytes";
			*crc_at = off + 3;
			break;
		case KG_PP2_TYPE_UNIQUE_ID:
			if (vlen > KG_PP2_UNIQUE_ID_MAX)
				return "a UNIQUE_ID TLV over 128 bytes";
			if (!take_once(&h->unique_id, v, vlen))
				return "a second UNIQUE_ID TLV";
			break;
		case KG_PP2_TYPE_SSL:
			why = parse_ssl(h, buf, v, vlen, at);
			if (why != NULL)
				return why;
			break;
		case KG_PP2_TYPE_NETNS:
			if (!take_once(&h->netns, v, vlen))
				return "a second NETNS TLV";
			break;
		case KG_PP2_TYPE_CERT_SHA256:
			if (vlen != KG_PP2_SHA256_LEN)
				return "a certificate SHA-256 TLV (0xE0) that is not 32 bytes";
			if (!take_once(&h->cert_sha256, v, vlen))
				return "a second certificate SHA-256 TLV (0xE0)";
			break;
		default:
			break;   /* NOOP and types we do not use: skipped */
		}
		off += 3 + vlen;
	}
	return NULL;
}

/* The CRC32c of buf[0..total) with the 4 bytes at crc_at read as zeros. */
static uint32_t header_crc(const uint8_t *buf, size_t total, size_t crc_at)
{
	static const uint8_t zeros[4];
	uint32_t crc = kg_crc32c(0, buf, crc_at);

	crc = kg_crc32c(crc, zeros, sizeof(zeros));
	return kg_crc32c(crc, buf + crc_at + 4, total - crc_at - 4);
}

struct kg_pp2_result kg_pp2_parse(const uint8_t *buf, size_t len, size_t max_len,
				  struct kg_pp2_header *out)
{
	static const char v1[5] = { 'P', 'R', 'O', 'X', 'Y' };
	size_t n = len < KG_PP2_SIG_LEN ? len : KG_PP2_SIG_LEN, total, tlv_off, at = 0, crc_at = 0;
	int alen;
	const char *why;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == pp2_sig[i])
			continue;
		if (memcmp(buf, v1, len < sizeof(v1) ? len : sizeof(v1)) == 0)
			return pp2_invalid(out, "a PROXY protocol v1 (text) header: only v2 is accepted", 0);
		return pp2_invalid(out, "no PROXY protocol v2 signature", i);
	}
	if (len < KG_PP2_FIXED_LEN)
		return (struct kg_pp2_result){ .status = KG_PP2_NEED_MORE, .need = KG_PP2_FIXED_LEN };
	if (buf[12] >> 4 != 2)
		return pp2_invalid(out, "a PROXY protocol version other than 2", 12);
	if ((buf[12] & 0x0f) > KG_PP2_PROXY)
		return pp2_invalid(out, "a command other than LOCAL or PROXY", 12);
	alen = addr_block_len(buf[13]);
	if (alen < 0)
		return pp2_invalid(out, "an address family and transport byte the spec does not list", 13);
	total = KG_PP2_FIXED_LEN + (size_t)be16(buf + 14);
	if (max_len > KG_PP2_MAX_LEN)
		max_len = KG_PP2_MAX_LEN;
	if (total > max_len)
		return pp2_invalid(out, "a header longer than the configured maximum", 14);
	if (len < total)
		return (struct kg_pp2_result){ .status = KG_PP2_NEED_MORE, .need = total };

	out->command = (enum kg_pp2_command)(buf[12] & 0x0f);
	tlv_off = KG_PP2_FIXED_LEN + (size_t)alen;
	if (tlv_off > total) {
		if (out->command == KG_PP2_PROXY)
			return pp2_invalid(out, "an address block shorter than its family's addresses", 14);
		tlv_off = total;   /* LOCAL: skipped whole */
	}
	if (out->command == KG_PP2_PROXY) {
		const uint8_t *a = buf + KG_PP2_FIXED_LEN;

		out->family = (enum kg_pp2_family)(buf[13] >> 4);
		out->transport = (enum kg_pp2_transport)(buf[13] & 0x0f);
		switch (out->family) {
		case KG_PP2_AF_INET:
			memcpy(out->src_addr, a, 4);
			memcpy(out->dst_addr, a + 4, 4);
			out->src_port = be16(a + 8);
			out->dst_port = be16(a + 10);
			break;
		case KG_PP2_AF_INET6:
			memcpy(out->src_addr, a, 16);
			memcpy(out->dst_addr, a + 16, 16);
			out->src_port = be16(a + 32);
			out->dst_port = be16(a + 34);
			break;
		case KG_PP2_AF_UNIX:
			out->src_unix = (struct kg_pp2_bytes){ a, KG_PP2_UNIX_ADDR_LEN };
			out->dst_unix = (struct kg_pp2_bytes){ a + KG_PP2_UNIX_ADDR_LEN, KG_PP2_UNIX_ADDR_LEN };
			break;
		default:
			break;
		}
	}
	why = parse_tlvs(out, buf, tlv_off, total, &at, &crc_at);
	if (why != NULL)
		return pp2_invalid(out, why, at);
	if (crc_at != 0) {
		out->crc32c = be32(buf + crc_at);
		if (header_crc(buf, total, crc_at) != out->crc32c)
			return pp2_invalid(out, "a CRC32C that does not match the header", crc_at);
		out->has_crc32c = true;
	}
	out->len = total;
	return (struct kg_pp2_result){ .status = KG_PP2_OK };
}

/* ---- encoder ------------------------------------------------------------ */

/* A bounded writer: the first write that does not fit sets ok = false, and every
 * later one is a no-op, so the encoder checks once at the end. */
struct wr {
	uint8_t *p;
	size_t cap, off;
	bool ok;
};

static void put(struct wr *w, const void *src, size_t n)
{
	if (!w->ok || n > w->cap - w->off) {
		w->ok = false;
		return;
	}
	if (n > 0)
		memcpy(w->p + w->off, src, n);
	w->off += n;
}

static void put_u8(struct wr *w, uint8_t v)
{
	put(w, &v, 1);
}

static void put_u16(struct wr *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	put(w, b, sizeof(b));
}

static void put_u32(struct wr *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	put(w, b, sizeof(b));
}

/* A TLV, if the value is present. */
static void put_tlv(struct wr *w, uint8_t type, const struct kg_pp2_bytes *v)
{
	if (v->p == NULL)
		return;
	if (v->len > 0xffff) {
		w->ok = false;
		return;
	}
	put_u8(w, type);
	put_u16(w, (uint16_t)v->len);
	put(w, v->p, v->len);
}

/* The bytes of a present sub-TLV; 0 when absent. */
static size_t sub_len(const struct kg_pp2_bytes *v)
{
	return v->p != NULL ? 3 + v->len : 0;
}

static void put_ssl(struct wr *w, const struct kg_pp2_header *h)
{
	/* HAProxy's order (2.6), so a header it sent re-encodes byte for byte. */
	const struct kg_pp2_bytes *subs[] = { &h->ssl_version, &h->ssl_cn, &h->ssl_key_alg,
					      &h->ssl_sig_alg, &h->ssl_cipher };
	static const uint8_t types[] = { KG_PP2_SUBTYPE_SSL_VERSION, KG_PP2_SUBTYPE_SSL_CN,
					 KG_PP2_SUBTYPE_SSL_KEY_ALG, KG_PP2_SUBTYPE_SSL_SIG_ALG,
					 KG_PP2_SUBTYPE_SSL_CIPHER };
	size_t vlen = 5;

	if (!h->has_ssl)
		return;
	for (size_t i = 0; i < KG_NITEMS(subs); i++) {
		if (subs[i]->len > 0xffff) {   /* also keeps the sum below from wrapping */
			w->ok = false;
			return;
		}
		vlen += sub_len(subs[i]);
	}
	if (vlen > 0xffff) {
		w->ok = false;
		return;
	}
	put_u8(w, KG_PP2_TYPE_SSL);
	put_u16(w, (uint16_t)vlen);
	put_u8(w, h->ssl_client);
	put_u32(w, h->ssl_verify);
	for (size_t i = 0; i < KG_NITEMS(subs); i++)
		put_tlv(w, types[i], subs[i]);
}

size_t kg_pp2_encode(const struct kg_pp2_header *h, bool with_crc, uint8_t *buf, size_t cap)
{
	struct wr w = { buf, cap, 0, true };
	uint8_t fam = 0x00;
	size_t crc_at = 0, hlen;

	if (h->command == KG_PP2_PROXY) {
		if ((unsigned int)h->family > KG_PP2_AF_UNIX || (unsigned int)h->transport > KG_PP2_DGRAM)
			return 0;
		fam = (uint8_t)(h->family << 4 | h->transport);
		if (addr_block_len(fam) < 0)
			return 0;
	} else if (h->command != KG_PP2_LOCAL) {
		return 0;
	}
	if (h->unique_id.p != NULL && h->unique_id.len > KG_PP2_UNIQUE_ID_MAX)
		return 0;
	if (h->cert_sha256.p != NULL && h->cert_sha256.len != KG_PP2_SHA256_LEN)
		return 0;
	put(&w, pp2_sig, sizeof(pp2_sig));
	put_u8(&w, (uint8_t)(0x20 | h->command));
	put_u8(&w, fam);
	put_u16(&w, 0);   /* the length, written at the end */
	switch (fam >> 4) {
	case KG_PP2_AF_INET:
		put(&w, h->src_addr, 4);
		put(&w, h->dst_addr, 4);
		put_u16(&w, h->src_port);
		put_u16(&w, h->dst_port);
		break;
	case KG_PP2_AF_INET6:
		put(&w, h->src_addr, 16);
		put(&w, h->dst_addr, 16);
		put_u16(&w, h->src_port);
		put_u16(&w, h->dst_port);
		break;
	case KG_PP2_AF_UNIX:
		if (h->src_unix.p == NULL || h->src_unix.len != KG_PP2_UNIX_ADDR_LEN ||
		    h->dst_unix.p == NULL || h->dst_unix.len != KG_PP2_UNIX_ADDR_LEN)
			return 0;
		put(&w, h->src_unix.p, KG_PP2_UNIX_ADDR_LEN);
		put(&w, h->dst_unix.p, KG_PP2_UNIX_ADDR_LEN);
		break;
	default:
		break;
	}
	if (with_crc) {
		static const uint8_t zeros[4];

		put_tlv(&w, KG_PP2_TYPE_CRC32C, &(struct kg_pp2_bytes){ zeros, sizeof(zeros) });
		crc_at = w.off - 4;
	}
	put_tlv(&w, KG_PP2_TYPE_ALPN, &h->alpn);
	put_tlv(&w, KG_PP2_TYPE_AUTHORITY, &h->authority);
	put_tlv(&w, KG_PP2_TYPE_UNIQUE_ID, &h->unique_id);
	put_ssl(&w, h);
	put_tlv(&w, KG_PP2_TYPE_NETNS, &h->netns);
	put_tlv(&w, KG_PP2_TYPE_CERT_SHA256, &h->cert_sha256);
	if (!w.ok)
		return 0;
	hlen = w.off - KG_PP2_FIXED_LEN;
	if (hlen > 0xffff)
		return 0;
	buf[14] = (uint8_t)(hlen >> 8);
	buf[15] = (uint8_t)hlen;
	if (with_crc) {
		uint32_t crc = kg_crc32c(0, buf, w.off);   /* the field is still zero */

		buf[crc_at] = (uint8_t)(crc >> 24);
		buf[crc_at + 1] = (uint8_t)(crc >> 16);
		buf[crc_at + 2] = (uint8_t)(crc >> 8);
		buf[crc_at + 3] = (uint8_t)crc;
	}
	return w.off;
}

bool kg_pp2_device_header(struct kg_pp2_header *h, size_t addr_len, const uint8_t *src,
			  uint16_t src_port, const uint8_t *dst, uint16_t dst_port,
			  const char *cn, size_t cn_len, const uint8_t *sha256)
{
	memset(h, 0, sizeof(*h));
	if (addr_len != 4 && addr_len != 16)
		return false;
	h->command = KG_PP2_PROXY;
	h->family = addr_len == 4 ? KG_PP2_AF_INET : KG_PP2_AF_INET6;
	h->transport = KG_PP2_STREAM;
	memcpy(h->src_addr, src, addr_len);
	memcpy(h->dst_addr, dst, addr_len);
	h->src_port = src_port;
	h->dst_port = dst_port;
	if (cn != NULL) {
		h->has_ssl = true;
		h->ssl_client = KG_PP2_CLIENT_SSL | KG_PP2_CLIENT_CERT_CONN | KG_PP2_CLIENT_CERT_SESS;
		h->ssl_verify = 0;
		h->ssl_cn = (struct kg_pp2_bytes){ (const uint8_t *)cn, cn_len };
	}
	if (sha256 != NULL)
		h->cert_sha256 = (struct kg_pp2_bytes){ sha256, KG_PP2_SHA256_LEN };
	return true;
}

/* ---- comparison --------------------------------------------------------- */

static bool bytes_equal(const struct kg_pp2_bytes *a, const struct kg_pp2_bytes *b)
{
	if ((a->p == NULL) != (b->p == NULL))
		return false;
	return a->p == NULL || (a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0));
}

bool kg_pp2_header_equal(const struct kg_pp2_header *a, const struct kg_pp2_header *b)
{
	size_t alen = a->family == KG_PP2_AF_INET ? 4 : a->family == KG_PP2_AF_INET6 ? 16 : 0;

	if (a->command != b->command || a->family != b->family || a->transport != b->transport)
		return false;
	if (alen > 0 && (memcmp(a->src_addr, b->src_addr, alen) != 0 ||
			 memcmp(a->dst_addr, b->dst_addr, alen) != 0 || a->src_port != b->src_port ||
			 a->dst_port != b->dst_port))
		return false;
	if (a->family == KG_PP2_AF_UNIX &&
	    (!bytes_equal(&a->src_unix, &b->src_unix) || !bytes_equal(&a->dst_unix, &b->dst_unix)))
		return false;
	if (!bytes_equal(&a->alpn, &b->alpn) || !bytes_equal(&a->authority, &b->authority) ||
	    !bytes_equal(&a->unique_id, &b->unique_id) || !bytes_equal(&a->netns, &b->netns) ||
	    !bytes_equal(&a->cert_sha256, &b->cert_sha256) || a->has_ssl != b->has_ssl)
		return false;
	if (!a->has_ssl)
		return true;
	return a->ssl_client == b->ssl_client && a->ssl_verify == b->ssl_verify &&
	       bytes_equal(&a->ssl_version, &b->ssl_version) && bytes_equal(&a->ssl_cn, &b->ssl_cn) &&
	       bytes_equal(&a->ssl_cipher, &b->ssl_cipher) &&
	       bytes_equal(&a->ssl_sig_alg, &b->ssl_sig_alg) &&
	       bytes_equal(&a->ssl_key_alg, &b->ssl_key_alg);
}
