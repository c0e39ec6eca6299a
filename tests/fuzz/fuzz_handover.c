/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_handover.c - libFuzzer target for the handover channel's frames (daemon/core/
 * handover_msg.c), linked with handover_msg.c alone. The input is what a peer (or a
 * damaged fd store memfd) could send. Sanitizers catch reads past the frame (the input
 * is decoded from an exact-size copy); the invariants catch a decoder that accepts what
 * it would not say back: OK uses a whole frame within the input, SHORT uses nothing and
 * so does every strict prefix of a frame that decodes, a SESSIONS frame's records walk
 * exactly n_sessions times, and the records encode back to a frame that decodes to the
 * same records (the fd store writes what adoption reads).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/handover_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		abort();
}

static struct kg_ho_session recs[KG_HO_SESSIONS_MAX], again[KG_HO_SESSIONS_MAX];
static struct kg_ho_msg m, m2;

/* Walk a decoded SESSIONS frame's records into out; returns how many. */
static uint16_t walk(const struct kg_ho_msg *msg, struct kg_ho_session *out)
{
	const uint8_t *cur = (const uint8_t *)msg->text;
	size_t left = msg->text_len;
	uint16_t n = 0;

	while (n < KG_HO_SESSIONS_MAX && kg_ho_session_next(&cur, &left, &out[n]))
		n++;
	check(left == 0);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	size_t used = 0;
	enum kg_ho_parse pr;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	pr = kg_ho_decode(buf, size, &m, &used);
	if (pr == KG_HO_SHORT || pr == KG_HO_MALFORMED || pr == KG_HO_UNSUPPORTED)
		check(used == 0);
	if (pr == KG_HO_OK) {
		check(used >= KG_HO_HEADER && used <= size);
		/* a strict prefix of this frame asks for more */
		if (used > 1) {
			size_t used2 = 99;

			check(kg_ho_decode(buf, used - 1, &m2, &used2) == KG_HO_SHORT && used2 == 0);
		}
		if (m.type == KG_HO_SESSIONS) {
			uint16_t n = walk(&m, recs), n2;
			size_t cap = kg_ho_sessions_size(n), len;
			uint8_t *out;

			check(n == m.n_sessions && n >= 1 && n <= KG_HO_SESSIONS_MAX);
			out = malloc(cap);
			if (out != NULL) {
				len = kg_ho_encode_sessions(out, cap, m.pid, recs, n);
				check(len > 0);
				check(kg_ho_decode(out, len, &m2, &used) == KG_HO_OK && used == len);
				check(m2.type == KG_HO_SESSIONS && m2.n_sessions == n && m2.pid == m.pid);
				n2 = walk(&m2, again);
				check(n2 == n && memcmp(recs, again, n * sizeof(recs[0])) == 0);
				free(out);
			}
		}
	}
	free(buf);
	return 0;
}
