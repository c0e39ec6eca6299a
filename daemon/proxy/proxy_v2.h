/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * proxy_v2.h - the proxy part: the PROXY protocol version 2 header (HAProxy's
 * proxy-protocol.txt, section 2.2), in from a trusted TLS front and out to a broker.
 *
 * Ways in: kg_pp2_parse() reads the header at the start of a connection's first bytes
 * (a `proxy` listener), kg_pp2_encode() writes the one the gateway sends ahead of a
 * device's bytes to a broker that reads it, kg_pp2_device_header() fills that header
 * the gateway's way (the device's addresses, its certificate's CN and SHA-256).
 * Pure: no I/O, no clock, no allocation, no logging, no OpenSSL; it includes no other
 * part (scripts/lint-layers.sh) and `make lint` proves the rest (scripts/lint-pure.sh).
 * Results borrow from the caller's buffer; thread-safe. tests/fuzz/fuzz_proxy.c links
 * proxy_v2.c alone. Nothing here decides whether a source may send a header at all,
 * nor whether a CN is a device id: the listener and the policy do.
 */
#ifndef KTLSGATE_PROXY_V2_H
#define KTLSGATE_PROXY_V2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"

#define KG_PP2_SIG_LEN 12
#define KG_PP2_FIXED_LEN 16                       /* signature, ver/cmd, fam, length */
#define KG_PP2_MAX_LEN (KG_PP2_FIXED_LEN + 65535) /* the length field's reach */
#define KG_PP2_DEFAULT_MAX 4096                   /* what a listener accepts by default */
#define KG_PP2_UNIX_ADDR_LEN 108
#define KG_PP2_UNIQUE_ID_MAX 128                  /* section 2.2.5 */
#define KG_PP2_SHA256_LEN 32

/* TLV types (section 2.2) and the gateway's own (the custom range, 2.2.8). */
enum {
	KG_PP2_TYPE_ALPN = 0x01,
	KG_PP2_TYPE_AUTHORITY = 0x02,
	KG_PP2_TYPE_CRC32C = 0x03,
	KG_PP2_TYPE_NOOP = 0x04,
	KG_PP2_TYPE_UNIQUE_ID = 0x05,
	KG_PP2_TYPE_SSL = 0x20,
	KG_PP2_SUBTYPE_SSL_VERSION = 0x21,
	KG_PP2_SUBTYPE_SSL_CN = 0x22,
	KG_PP2_SUBTYPE_SSL_CIPHER = 0x23,
	KG_PP2_SUBTYPE_SSL_SIG_ALG = 0x24,
	KG_PP2_SUBTYPE_SSL_KEY_ALG = 0x25,
	KG_PP2_TYPE_NETNS = 0x30,
	/* ktlsgate: the SHA-256 of the device certificate's DER, 32 bytes. */
	KG_PP2_TYPE_CERT_SHA256 = 0xE0,
};

/* pp2_tlv_ssl.client bits (section 2.2.6). */
#define KG_PP2_CLIENT_SSL 0x01
#define KG_PP2_CLIENT_CERT_CONN 0x02
#define KG_PP2_CLIENT_CERT_SESS 0x04

enum kg_pp2_status {
	KG_PP2_OK = 0,
	KG_PP2_NEED_MORE,  /* a valid prefix: read at least `need` bytes in all */
	KG_PP2_INVALID,    /* never a header we accept: close; `why` says what */
};

enum kg_pp2_command { KG_PP2_LOCAL = 0, KG_PP2_PROXY = 1 };
/* The wire's nibbles (not the system's AF_ values). */
enum kg_pp2_family { KG_PP2_AF_UNSPEC = 0, KG_PP2_AF_INET = 1, KG_PP2_AF_INET6 = 2, KG_PP2_AF_UNIX = 3 };
enum kg_pp2_transport { KG_PP2_UNSPEC = 0, KG_PP2_STREAM = 1, KG_PP2_DGRAM = 2 };

/* Bytes borrowed from the header: p == NULL when absent (a present, empty value has
 * p != NULL and len 0). Not NUL-terminated; may hold any byte. */
struct kg_pp2_bytes {
	const uint8_t *p;
	size_t len;
};

struct kg_pp2_header {
	enum kg_pp2_command command;
	/* LOCAL: both UNSPEC and no address (the spec: the receiver uses the real
	 * endpoints); PROXY: as sent. */
	enum kg_pp2_family family;
	enum kg_pp2_transport transport;
	uint8_t src_addr[16], dst_addr[16];  /* INET: the first 4 bytes; network order */
	uint16_t src_port, dst_port;         /* INET, INET6; host order */
	struct kg_pp2_bytes src_unix, dst_unix; /* UNIX: 108 bytes each, as sent */
	/* TLVs; each at most once (a second one is INVALID), NOOP and unknown skipped. */
	struct kg_pp2_bytes alpn, authority, unique_id, netns;
	bool has_ssl;
	uint8_t ssl_client;                  /* KG_PP2_CLIENT_* bits */
	uint32_t ssl_verify;                 /* 0: the client's certificate verified */
	struct kg_pp2_bytes ssl_version, ssl_cn, ssl_cipher, ssl_sig_alg, ssl_key_alg;
	struct kg_pp2_bytes cert_sha256;     /* KG_PP2_TYPE_CERT_SHA256: 32 bytes */
	bool has_crc32c;                     /* present and verified */
	uint32_t crc32c;
	size_t len;                          /* bytes of the header (16 + length field) */
};

struct kg_pp2_result {
	enum kg_pp2_status status;
	size_t need;        /* NEED_MORE: the bytes needed in all (16, then the header's) */
	const char *why;    /* INVALID: a constant sentence; NULL otherwise */
	size_t at;          /* INVALID: offset of the offending field in the input */
};

/*
 * Parse the PROXY v2 header at the start of buf[0..len). max_len bounds the header's
 * total length (16 + its length field): a longer one is INVALID as soon as its 16 fixed
 * bytes are in; pass KG_PP2_DEFAULT_MAX unless configured (values above
 * KG_PP2_MAX_LEN mean KG_PP2_MAX_LEN). On KG_PP2_OK, out->len bytes were consumed and
 * anything behind them is the client's. On anything else *out is zeroed.
 * Invalid: no v2 signature (a v1 text header says so), version other than 2, command
 * other than LOCAL/PROXY, a family/transport byte outside the spec's list (0x00, 0x11,
 * 0x12, 0x21, 0x22, 0x31, 0x32), a PROXY header shorter than its addresses, a TLV
 * that runs past the header, an SSL sub-TLV past its parent, a known TLV twice, a
 * UNIQUE_ID over 128 bytes, a CRC32C or CERT_SHA256 of the wrong size, a CRC32C that
 * does not match.
 */
struct kg_pp2_result kg_pp2_parse(const uint8_t *buf, size_t len, size_t max_len,
				  struct kg_pp2_header *out) KG_MUST_USE;

/*
 * Write the header h describes: the command, family and transport as given (LOCAL:
 * family byte 0x00, no addresses), the addresses for INET, INET6 and UNIX, then each
 * present TLV (ALPN, AUTHORITY, UNIQUE_ID, SSL with its present sub-TLVs, NETNS,
 * CERT_SHA256), and a CRC32C TLV over the whole when with_crc. h->len, h->has_crc32c
 * and h->crc32c are ignored. Returns the bytes written, 0 when cap is too small or h
 * cannot be a header (unknown enum, an UNIX address not 108 bytes, a unique id over
 * 128 bytes, a hash not 32 bytes, a header over KG_PP2_MAX_LEN).
 */
size_t kg_pp2_encode(const struct kg_pp2_header *h, bool with_crc, uint8_t *buf, size_t cap);

/*
 * Fill *h as the gateway sends a device to a broker: PROXY, TCP over INET (addr_len
 * 4) or INET6 (16), the device's address and port as source, the gateway's listener
 * as destination; when cn is not NULL an SSL TLV with client flags SSL | CERT_CONN |
 * CERT_SESS, verify 0 and the CN as its only sub-TLV; when sha256 is not NULL the
 * CERT_SHA256 TLV. h borrows cn and sha256. Returns false on an addr_len other than 4
 * or 16.
 */
bool kg_pp2_device_header(struct kg_pp2_header *h, size_t addr_len, const uint8_t *src,
			  uint16_t src_port, const uint8_t *dst, uint16_t dst_port,
			  const char *cn, size_t cn_len, const uint8_t *sha256);

/* Do a and b describe the same header (every field above but len, has_crc32c and
 * crc32c, byte values compared, not pointers)? For tests and the fuzz target. */
bool kg_pp2_header_equal(const struct kg_pp2_header *a, const struct kg_pp2_header *b);

/* CRC32c (Castagnoli, RFC 4960 appendix B), table-driven: crc is 0 to start, or a
 * previous return to continue over more bytes. */
uint32_t kg_crc32c(uint32_t crc, const void *data, size_t len);

#endif
