/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_credential.c - libFuzzer target for the credential parsers (daemon/policy/
 * credential.c), linked with the policy part alone (no OpenSSL). Each input is tried
 * as a SAS token (as is, and behind the "SharedAccessSignature " prefix so the fuzzer
 * reaches the fields at once), an Azure user name, a stored scrypt string, base64 both
 * ways, a symmetric key and an access token. Invariants: results borrow only from the
 * input; what parses is canonical (format(parse(x)) == x for scrypt, encode(decode(x))
 * == x for base64); a SAS token rebuilt from its parts and the canonical string to
 * sign parses to the same resource, signature and expiry; a user name's id is a valid
 * device id inside the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/credential.h"
#include "policy/identity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		abort();
}

static bool within(const char *p, size_t n, const char *buf, size_t len)
{
	return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static void fuzz_sas(const char *s, size_t len)
{
	static char sts[4 * KG_SAS_SR_MAX], tok[8 * KG_SAS_SR_MAX];
	struct kg_sas sas, again;
	const char *why = NULL;
	char sig[64];
	size_t n, cut;
	int t;

	if (!kg_sas_parse(s, len, &sas, &why)) {
		check(why != NULL);
		return;
	}
	check(sas.sr_len > 0 && sas.sr_len <= KG_SAS_SR_MAX && sas.sr[sas.sr_len] == '\0');
	check(strlen(sas.sr) == sas.sr_len && sas.se >= 0);
	check(within(sas.sr_raw, sas.sr_raw_len, s, len) && within(sas.se_raw, sas.se_raw_len, s, len));
	check(sas.has_skn || sas.skn_len == 0);
	for (size_t i = 0; i < sas.sr_len; i++)
		check((unsigned char)sas.sr[i] >= 0x20 && sas.sr[i] != 0x7f);
	n = kg_sas_string_to_sign(&sas, KG_SAS_SIGN_AS_SENT, sts, sizeof(sts));
	check(n == sas.sr_raw_len + 1 + sas.se_raw_len);
	n = kg_sas_string_to_sign(&sas, KG_SAS_SIGN_CANONICAL, sts, sizeof(sts));
	check(n > sas.sr_len && memchr(sts, '\n', n) != NULL);
	/* rebuild the token from the canonical sr, the signature and se: same values */
	cut = (size_t)((char *)memchr(sts, '\n', n) - sts);
	check(kg_b64_encode(sas.sig, KG_SAS_SIG_LEN, true, sig, sizeof(sig)) == 44);
	/* '+', '/' and '=' escaped as the SDKs do, so the rebuilt token is canonical too */
	{
		char esc[3 * 44 + 1];
		size_t e = 0;

		for (size_t i = 0; i < 44; i++) {
			if (sig[i] == '+' || sig[i] == '/' || sig[i] == '=') {
				static const char hex[] = "0123456789ABCDEF";

				esc[e++] = '%';
				esc[e++] = hex[(unsigned char)sig[i] >> 4];
				esc[e++] = hex[sig[i] & 15];
			} else {
				esc[e++] = sig[i];
			}
		}
		esc[e] = '\0';
		t = snprintf(tok, sizeof(tok), "SharedAccessSignature se=%s&sig=%s&sr=%.*s", sts + cut + 1, esc,
			     (int)cut, sts);
	}
	check(t > 0 && (size_t)t < sizeof(tok));
	if ((size_t)t > KG_SAS_TOKEN_MAX)
		return;   /* escaping grew it past the token limit */
	check(kg_sas_parse(tok, (size_t)t, &again, &why));
	check(again.sr_len == sas.sr_len && memcmp(again.sr, sas.sr, sas.sr_len) == 0);
	check(again.se == sas.se && memcmp(again.sig, sas.sig, KG_SAS_SIG_LEN) == 0 && !again.has_skn);
	/* the checks, at the edges of time (UBSan watches the arithmetic) */
	check(kg_sas_time_ok(&sas, 0, 0, &why) == (sas.se > 0));
	check(!kg_sas_time_ok(&sas, INT64_MIN, 3600, &why));
	check(!kg_sas_time_ok(&sas, INT64_MIN, INT64_MAX, &why));
	check(!kg_sas_time_ok(&sas, INT64_MAX, INT64_MAX, &why));
	/* a resource accepted for (hub, id) is "hub/devices/..." and has no policy key */
	for (size_t div = 2; div <= 3; div++) {
		size_t hl = sas.sr_len / div;

		if (hl + 9 < sas.sr_len &&
		    kg_sas_resource_ok(&sas, sas.sr, hl, sas.sr + hl + 9, sas.sr_len - hl - 9, &why))
			check(!sas.has_skn && memcmp(sas.sr + hl, "/devices/", 9) == 0);
	}
	check(!kg_sas_resource_ok(&sas, "h", 1, "", 0, &why));
}

static void fuzz_username(const char *s, size_t len)
{
	struct kg_azure_user u;
	const char *why = NULL;
	size_t mod;

	if (!kg_azure_username_parse(s, len, &u, &why)) {
		check(why != NULL && u.id == NULL && u.hub == NULL);
		return;
	}
	check(within(u.hub, u.hub_len, s, len) && within(u.id, u.id_len, s, len));
	check(u.hub_len > 0 && u.hub + u.hub_len + 1 == u.id);
	check(kg_identity_valid(u.id, u.id_len, &mod) && mod == u.module_off);
	check(u.query == NULL || within(u.query, u.query_len, s, len));
	check(u.api_version == NULL || (u.query != NULL && within(u.api_version, u.api_version_len, u.query, u.query_len)));
}

static void fuzz_scrypt(const char *s, size_t len)
{
	struct kg_scrypt h;
	const char *why = NULL;
	char out[KG_SCRYPT_STR_MAX + 1];

	if (!kg_scrypt_parse(s, len, &h, &why)) {
		check(why != NULL);
		return;
	}
	check(kg_scrypt_params_ok(h.ln, h.r, h.p, NULL));
	check(kg_scrypt_mem(&h) <= (uint64_t)KG_SCRYPT_MEM_MAX + 128 * 32 * 20);
	/* only the canonical spelling parses */
	check(kg_scrypt_format(&h, out, sizeof(out)) == len && memcmp(out, s, len) == 0);
}

static void fuzz_b64(const char *s, size_t len)
{
	static uint8_t bytes[4096];
	static char text[8192];

	for (int padded = 0; padded < 2; padded++) {
		long n = kg_b64_decode(s, len, padded, bytes, sizeof(bytes));

		if (n < 0)
			continue;
		check((size_t)n <= len);
		check(kg_b64_encode(bytes, (size_t)n, padded, text, sizeof(text)) == len);
		check(memcmp(text, s, len) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char buf[KG_SAS_TOKEN_MAX + 64];
	const char *s = (const char *)data;
	const char *why = NULL;
	uint8_t key[KG_SAS_KEY_MAX];
	size_t n;

	fuzz_sas(s, size);
	if (size + 22 <= sizeof(buf)) {
		memcpy(buf, "SharedAccessSignature ", 22);
		memcpy(buf + 22, data, size);
		fuzz_sas(buf, size + 22);
	}
	fuzz_username(s, size);
	fuzz_scrypt(s, size);
	if (size <= 4096)
		fuzz_b64(s, size);
	n = kg_sas_key_decode(s, size, key, &why);
	check(n == 0 ? why != NULL : n >= KG_SAS_KEY_MIN && n <= KG_SAS_KEY_MAX);
	if (kg_token_ok(s, size, &why))
		check(size >= KG_TOKEN_MIN && size <= KG_TOKEN_MAX && memchr(s, ' ', size) == NULL);
	if (kg_token_hash_ok(s, size))
		check(size == KG_TOKEN_HASH_HEX_LEN);
	return 0;
}
