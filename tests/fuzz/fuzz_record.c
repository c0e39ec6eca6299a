/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_record.c - libFuzzer target for the user-space TLS record layer
 * (daemon/relay/record.c). The first input byte picks one of the six version x AEAD
 * combos, all keyed with one fixed key; the rest is a byte stream split with
 * kg_record_next() and fed record by record to kg_record_open(), as a peer would.
 * Invariants: the framer never claims bytes it was not given, an open that
 * succeeds returns plaintext inside the record with a legal type, a failed open
 * leaves the sequence number alone; and the input as plaintext round-trips through
 * seal/open, while any one flipped byte of the sealed record is refused.
 * The seeds (tests/fuzz/seeds/fuzz_record/) are records sealed with this key, so
 * mutations start from authentic ciphertext.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/err.h"
#include "relay/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		abort();
}

static const struct {
	uint16_t version;
	enum kg_aead aead;
} combos[] = {
	{ KG_TLS13, KG_AEAD_AES_128_GCM }, { KG_TLS13, KG_AEAD_AES_256_GCM },
	{ KG_TLS13, KG_AEAD_CHACHA20_POLY1305 }, { KG_TLS12, KG_AEAD_AES_128_GCM },
	{ KG_TLS12, KG_AEAD_AES_256_GCM }, { KG_TLS12, KG_AEAD_CHACHA20_POLY1305 },
};

/* The fixed key: key bytes 0x00.., IV bytes 0xa0.., sequence 0, both directions. */
static void fixed_keys(unsigned which, struct kg_tls_keys *k)
{
	memset(k, 0, sizeof(*k));
	k->version = combos[which].version;
	k->aead = combos[which].aead;
	k->rx.key_len = (uint8_t)kg_tls_aead_key_len(k->aead);
	k->rx.iv_len = (uint8_t)kg_tls_aead_iv_len(k->version, k->aead);
	for (unsigned i = 0; i < KG_TLS_KEY_MAX; i++)
		k->rx.key[i] = (uint8_t)i;
	for (unsigned i = 0; i < KG_TLS_IV_MAX; i++)
		k->rx.iv[i] = (uint8_t)(0xa0 + i);
	k->tx = k->rx;
}

/* Peer's stream: frame and open every complete record. */
static void fuzz_stream(struct kg_record_dir *rx, const uint8_t *data, size_t size)
{
	static uint8_t rec[KG_TLS_MAX_RECORD];

	while (size > 0) {
		size_t rl = 0, plain_len = 0;
		uint8_t type = 0, *plain = NULL;
		uint64_t seq = rx->seq;
		enum kg_parse pr = kg_record_next(data, size, &rl);
		int ret;

		if (pr != KG_PARSE_OK) {
			check(pr == KG_PARSE_SHORT || pr == KG_PARSE_MALFORMED);
			check(rl == 0);
			return;
		}
		check(rl >= KG_TLS_HEADER_LEN + 16 && rl <= size && rl <= KG_TLS_MAX_RECORD);
		memcpy(rec, data, rl);
		ret = kg_record_open(rx, rec, rl, &type, &plain, &plain_len);
		if (ret == KG_OK) {
			check(rx->seq == seq + 1);
			check(type >= KG_TLS_CT_ALERT && type <= KG_TLS_CT_APPLICATION_DATA);
			check(plain > rec && plain_len <= KG_TLS_MAX_PLAINTEXT &&
			      (size_t)(plain - rec) + plain_len <= rl);
		} else {
			check(ret == KG_E_PROTO && rx->seq == seq && plain == NULL && plain_len == 0);
		}
		data += rl;
		size -= rl;
	}
}

/* The input as plaintext: seal, open, compare; then a flipped byte must fail. */
static void fuzz_roundtrip(struct kg_record_dir *tx, struct kg_record_dir *rx,
			   const uint8_t *data, size_t size)
{
	static uint8_t rec[KG_TLS_MAX_RECORD], copy[KG_TLS_MAX_RECORD];
	uint8_t type = 0, *plain = NULL;
	size_t rl = 0, plain_len = 0, flip;
	uint64_t seq;

	if (size > KG_TLS_MAX_PLAINTEXT)
		size = KG_TLS_MAX_PLAINTEXT;
	/* Keep both ends in step whatever the stream did to rx. */
	rx->seq = tx->seq;
	check(kg_record_seal(tx, KG_TLS_CT_APPLICATION_DATA, data, size, rec, sizeof(rec), &rl) ==
	      KG_OK);
	check(kg_record_next(rec, rl, &rl) == KG_PARSE_OK);
	memcpy(copy, rec, rl);
	seq = rx->seq;
	if (size > 0) {
		flip = data[0] % rl;
		copy[flip] ^= (uint8_t)(1u << (data[size - 1] % 8));
		check(kg_record_open(rx, copy, rl, &type, &plain, &plain_len) == KG_E_PROTO);
		check(rx->seq == seq);
	}
	check(kg_record_open(rx, rec, rl, &type, &plain, &plain_len) == KG_OK);
	check(type == KG_TLS_CT_APPLICATION_DATA && plain_len == size);
	check(size == 0 || memcmp(plain, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kg_tls_keys k;
	struct kg_record_dir rx, tx;
	unsigned which;

	if (size < 1)
		return 0;
	which = data[0] % (unsigned)KG_NITEMS(combos);
	fixed_keys(which, &k);
	check(kg_record_dir_init(&rx, &k, true) == KG_OK);
	check(kg_record_dir_init(&tx, &k, false) == KG_OK);
	fuzz_stream(&rx, data + 1, size - 1);
	fuzz_roundtrip(&tx, &rx, data + 1, size - 1);
	kg_record_dir_fini(&rx);
	kg_record_dir_fini(&tx);
	kg_tls_keys_wipe(&k);
	return 0;
}
