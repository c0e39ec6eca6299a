/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_credential.c - the pure credential parsers (daemon/policy/credential.c), held
 * to what real senders produce:
 *  - SAS tokens made by Azure's own Node SDK (npm azure-iot-common 1.13.3,
 *    SharedAccessSignature.create(encodeUriComponentStrict(resource), keyName, key,
 *    1900000000) with the key below): each token's sig is checked with OpenSSL's
 *    HMAC-SHA256 over our string to sign, so the string is what the SDK signed. The
 *    SDK escapes '*' as "%2a" (lower case): only the as-sent form matches there, which
 *    is why both forms exist.
 *  - scrypt strings made by passlib 1.7.4 (Debian's python3-passlib,
 *    scrypt.using(rounds=10, block_size=8, parallelism=1, salt_size=16).hash(...)):
 *    parsed, then the password is run through OpenSSL's scrypt with the parsed
 *    parameters (maxmem from kg_scrypt_mem()) and must give the parsed hash.
 *  - base64 against RFC 4648's vectors; user names in the forms Azure documents.
 * Every refusal is a table row with the reason it must give.
 */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "policy/credential.h"
#include "testlib.h"

Suite *kg_suite_credential(void);

#define HUB "myhub.azure-devices.net"
static const char sdk_key[] = "AQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vsXM09o=";

/* ---- base64 ----------------------------------------------------------------- */

static const struct { const char *plain, *padded, *bare; } b64_cases[] = {
	{ "", "", "" },
	{ "f", "Zg==", "Zg" },
	{ "fo", "Zm8=", "Zm8" },
	{ "foo", "Zm9v", "Zm9v" },
	{ "foob", "Zm9vYg==", "Zm9vYg" },
	{ "fooba", "Zm9vYmE=", "Zm9vYmE" },
	{ "foobar", "Zm9vYmFy", "Zm9vYmFy" },
	{ "\xfb\xff\xbf", "+/+/", "+/+/" },
};

START_TEST(test_b64_vectors)
{
	const char *plain = b64_cases[_i].plain;
	size_t n = strlen(plain);
	char text[32];
	uint8_t bytes[32];

	ck_assert_uint_eq(kg_b64_encode((const uint8_t *)plain, n, true, text, sizeof(text)),
			  strlen(b64_cases[_i].padded));
	ck_assert_str_eq(text, b64_cases[_i].padded);
	ck_assert_uint_eq(kg_b64_encode((const uint8_t *)plain, n, false, text, sizeof(text)),
			  strlen(b64_cases[_i].bare));
	ck_assert_str_eq(text, b64_cases[_i].bare);
	ck_assert_int_eq(kg_b64_decode(b64_cases[_i].padded, strlen(b64_cases[_i].padded), true, bytes,
				       sizeof(bytes)), (long)n);
	ck_assert_mem_eq(bytes, plain, n);
	ck_assert_int_eq(kg_b64_decode(b64_cases[_i].bare, strlen(b64_cases[_i].bare), false, bytes,
				       sizeof(bytes)), (long)n);
	ck_assert_mem_eq(bytes, plain, n);
	/* one byte less room: refused, never overrun */
	if (n > 0)
		ck_assert_int_eq(kg_b64_decode(b64_cases[_i].padded, strlen(b64_cases[_i].padded), true,
					       bytes, n - 1), -1);
	ck_assert_uint_eq(kg_b64_encode((const uint8_t *)plain, n, true, text, strlen(b64_cases[_i].padded)), 0);
}
END_TEST

static const struct { const char *text; bool padded; } b64_bad[] = {
	{ "Zg=", true },      /* not a multiple of 4 */
	{ "Zg", true },       /* padding missing */
	{ "Zg==", false },    /* padding where none belongs */
	{ "Zh==", true },     /* unused bits set: "Zg==" spelt another way */
	{ "Zm9=", true },     /* the same for two bytes */
	{ "Zh", false },
	{ "Z===", true },
	{ "====", true },
	{ "Z", false },       /* 6 bits cannot end a byte string */
	{ "Zm9vY", false },
	{ "Zm-v", true },     /* URL-safe alphabet */
	{ "Zm_v", true },
	{ "Zm9v\n", false },  /* whitespace */
	{ "Zm 9v", false },
	{ "Zg=A", true },     /* '=' inside */
	{ "Zm9v\0Zg", false },
};

START_TEST(test_b64_bad)
{
	uint8_t out[16];
	const char *t = b64_bad[_i].text;
	size_t len = strlen(t) + (_i == KG_NITEMS(b64_bad) - 1 ? 3 : 0);

	ck_assert_msg(kg_b64_decode(t, len, b64_bad[_i].padded, out, sizeof(out)) == -1, "\"%s\" decoded", t);
}
END_TEST

START_TEST(test_b64_roundtrip)
{
	uint8_t in[100], back[100];
	char text[200];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 37 + 11);
	for (size_t n = 0; n <= sizeof(in); n++) {
		for (int pad = 0; pad < 2; pad++) {
			size_t t = kg_b64_encode(in, n, pad, text, sizeof(text));

			ck_assert_uint_eq(t, pad ? (n + 2) / 3 * 4 : (n * 4 + 2) / 3);
			ck_assert_int_eq(kg_b64_decode(text, t, pad, back, sizeof(back)), (long)n);
			ck_assert(n == 0 || memcmp(in, back, n) == 0);
		}
	}
}
END_TEST

/* ---- SAS tokens from Azure's Node SDK ----------------------------------------- */

static const struct sdk_token {
	const char *token, *resource, *id;
	const char *canonical;      /* our canonical string to sign */
	bool canonical_signed;      /* the SDK signed exactly that */
	bool device_ok;             /* kg_sas_resource_ok(HUB, id) */
} sdk_tokens[] = {
	{ "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-0001&sig=fTCi2tl96GL%2BRXbrXx6iSPQZMTkLWgwK1W12t%2FiEpqQ%3D&se=1900000000",
	  HUB "/devices/dev-0001", "dev-0001", "myhub.azure-devices.net%2Fdevices%2Fdev-0001\n1900000000", true, true },
	{ "SharedAccessSignature sr=MyHub.Azure-Devices.net%2Fdevices%2Fsensor%2a%287%29&sig=evOHEnMpmawZdftPM6dPKikg8O7mkDOkw6MXHocYZZY%3D&se=1900000000",
	  "MyHub.Azure-Devices.net/devices/sensor*(7)", "sensor*(7)",
	  "MyHub.Azure-Devices.net%2Fdevices%2Fsensor%2A%287%29\n1900000000", false, true },
	{ "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-1%2Fmodules%2Fmod-a&sig=02afvU6cy5XYkWLEt3QTvJ9m6H%2FfXwhFJxaRGQdQeeY%3D&se=1900000000",
	  HUB "/devices/dev-1/modules/mod-a", "dev-1/mod-a",
	  "myhub.azure-devices.net%2Fdevices%2Fdev-1%2Fmodules%2Fmod-a\n1900000000", true, true },
	{ "SharedAccessSignature sr=myhub.azure-devices.net&sig=NLpE89ZSb8c1VpWgawSJfoEEYpwyzdF%2BqVHSx0hrA4w%3D&skn=device&se=1900000000",
	  HUB, "dev-0001", "myhub.azure-devices.net\n1900000000", true, false },
};

/* Does HMAC-SHA256(device key, s) equal the token's signature? */
static bool hmac_matches(const struct kg_sas *sas, const char *s)
{
	uint8_t key[KG_SAS_KEY_MAX], mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	const char *why = NULL;
	size_t key_len = kg_sas_key_decode(sdk_key, strlen(sdk_key), key, &why);

	ck_assert_uint_eq(key_len, 32);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)s, strlen(s), mac, &mac_len));
	ck_assert_uint_eq(mac_len, 32);
	return memcmp(mac, sas->sig, 32) == 0;
}

START_TEST(test_sas_sdk)
{
	const struct sdk_token *c = &sdk_tokens[_i];
	struct kg_sas sas;
	const char *why = NULL;
	char sts[600], raw[600];
	size_t n;

	ck_assert_msg(kg_sas_parse(c->token, strlen(c->token), &sas, &why), "%s", why);
	ck_assert_str_eq(sas.sr, c->resource);
	ck_assert_uint_eq(sas.sr_len, strlen(c->resource));
	ck_assert_int_eq(sas.se, 1900000000);
	ck_assert(sas.has_skn == (_i == 3));
	if (sas.has_skn)
		ck_assert_str_eq(sas.skn, "device");
	/* canonical: exact, and signed by the SDK where it escapes as we do */
	n = kg_sas_string_to_sign(&sas, KG_SAS_SIGN_CANONICAL, sts, sizeof(sts));
	ck_assert_uint_eq(n, strlen(c->canonical));
	ck_assert_str_eq(sts, c->canonical);
	ck_assert(hmac_matches(&sas, sts) == c->canonical_signed);
	/* as sent: always what the SDK signed (it signs its own sr) */
	n = kg_sas_string_to_sign(&sas, KG_SAS_SIGN_AS_SENT, raw, sizeof(raw));
	ck_assert_uint_eq(n, sas.sr_raw_len + 1 + 10);
	ck_assert(hmac_matches(&sas, raw));
	/* too little room: 0, for either form */
	ck_assert_uint_eq(kg_sas_string_to_sign(&sas, KG_SAS_SIGN_CANONICAL, sts, strlen(c->canonical)), 0);
	ck_assert_uint_eq(kg_sas_string_to_sign(&sas, KG_SAS_SIGN_AS_SENT, raw, n), 0);
	ck_assert_uint_eq(kg_sas_string_to_sign(&sas, (enum kg_sas_sign_form)7, raw, sizeof(raw)), 0);
	/* the device check, with the hub named in another case */
	why = NULL;
	ck_assert(kg_sas_resource_ok(&sas, "MYHUB.azure-devices.NET", strlen(HUB), c->id, strlen(c->id), &why) ==
		  c->device_ok);
	if (!c->device_ok)
		ck_assert_str_eq(why, "a SAS token signed with a hub policy key (skn), not the device's");
	/* one flipped bit of the signature no longer matches */
	sas.sig[_i] ^= 1;
	ck_assert(!hmac_matches(&sas, raw));
}
END_TEST

static const struct res_case {
	size_t token;          /* row of sdk_tokens */
	const char *hub, *id;
	const char *why;       /* NULL: matches */
} res_cases[] = {
	{ 0, HUB, "dev-0001", NULL },
	{ 0, "MYHUB.AZURE-DEVICES.NET", "dev-0001", NULL },
	{ 0, "otherhub.azure-devices.net", "dev-0001", "a SAS token for another IoT hub" },
	{ 0, "myhub.azure-devices.ne", "dev-0001", "a SAS token whose resource is not a device" },
	{ 0, "myhub", "dev-0001", "a SAS token whose resource is not a device" },
	{ 0, "", "dev-0001", "a SAS token for another IoT hub" },
	{ 0, HUB, "dev-0002", "a SAS token for another device" },
	{ 0, HUB, "DEV-0001", "a SAS token for another device" },
	{ 0, HUB, "dev-000", "a SAS token for another device" },
	{ 0, HUB, "dev-00011", "a SAS token for another device" },
	{ 0, HUB, "dev-0001/m", "a SAS token for another device" },
	{ 0, HUB, "", "a SAS token checked against no device id" },
	{ 2, HUB, "dev-1/mod-a", NULL },
	{ 2, HUB, "dev-1", "a SAS token for another device" },
	{ 2, HUB, "dev-1/mod-b", "a SAS token for another device" },
	{ 2, HUB, "dev-1/mod-ab", "a SAS token for another device" },
	{ 2, HUB, "dev-1/mod-", "a SAS token for another device" },
	{ 1, HUB, "sensor*(7)", NULL },
	{ 1, HUB, "sensor*(8)", "a SAS token for another device" },
};

START_TEST(test_sas_resource)
{
	const struct res_case *c = &res_cases[_i];
	const char *tok = sdk_tokens[c->token].token, *why = NULL;
	struct kg_sas sas;

	ck_assert(kg_sas_parse(tok, strlen(tok), &sas, &why));
	if (c->why == NULL) {
		ck_assert_msg(kg_sas_resource_ok(&sas, c->hub, strlen(c->hub), c->id, strlen(c->id), &why),
			      "%s / %s: %s", c->hub, c->id, why);
		return;
	}
	ck_assert(!kg_sas_resource_ok(&sas, c->hub, strlen(c->hub), c->id, strlen(c->id), &why));
	ck_assert_str_eq(why, c->why);
}
END_TEST

START_TEST(test_sas_time)
{
	const char *tok = sdk_tokens[0].token, *why = NULL;
	struct kg_sas sas;

	ck_assert(kg_sas_parse(tok, strlen(tok), &sas, &why));
	ck_assert(kg_sas_time_ok(&sas, 1899999999, 0, &why));
	ck_assert(kg_sas_time_ok(&sas, -5, 0, &why));
	ck_assert(!kg_sas_time_ok(&sas, 1900000000, 0, &why));
	ck_assert_str_eq(why, "an expired SAS token");
	ck_assert(!kg_sas_time_ok(&sas, INT64_MAX, 0, &why));
	/* a lifetime bound: exactly max_ttl left is fine, one second more is not */
	ck_assert(kg_sas_time_ok(&sas, 1900000000 - 3600, 3600, &why));
	ck_assert(!kg_sas_time_ok(&sas, 1900000000 - 3601, 3600, &why));
	ck_assert_str_eq(why, "a SAS token valid for longer than allowed");
	ck_assert(kg_sas_time_ok(&sas, INT64_MIN, 0, &why));
}
END_TEST

/* ---- refused tokens --------------------------------------------------------------- */

#define SIG32 "fTCi2tl96GL%2BRXbrXx6iSPQZMTkLWgwK1W12t%2FiEpqQ%3D"
#define PFX "SharedAccessSignature "
#define GOOD_SR "sr=" HUB "%2Fdevices%2Fd"
#define X16 "xxxxxxxxxxxxxxxx"
#define X64 X16 X16 X16 X16
#define X256 X64 X64 X64 X64

static const struct { const char *token, *why; } sas_bad[] = {
	{ "", "not a SAS token (no \"SharedAccessSignature \" prefix)" },
	{ "sharedaccesssignature " GOOD_SR "&sig=" SIG32 "&se=1", "not a SAS token (no \"SharedAccessSignature \" prefix)" },
	{ "SharedAccessSignature" GOOD_SR, "not a SAS token (no \"SharedAccessSignature \" prefix)" },
	{ PFX, "a SAS token field without '='" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=1&", "a SAS token field without '='" },
	{ PFX GOOD_SR "&&sig=" SIG32 "&se=1", "a SAS token field without '='" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se", "a SAS token field without '='" },
	{ PFX GOOD_SR "&sig=" SIG32, "a SAS token without sr, sig or se" },
	{ PFX GOOD_SR "&se=1", "a SAS token without sr, sig or se" },
	{ PFX "sig=" SIG32 "&se=1", "a SAS token without sr, sig or se" },
	{ PFX GOOD_SR "&" GOOD_SR "&sig=" SIG32 "&se=1", "a SAS token with sr twice" },
	{ PFX GOOD_SR "&sig=" SIG32 "&sig=" SIG32 "&se=1", "a SAS token with sig twice" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=1&se=2", "a SAS token with se twice" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=1&skn=a&skn=a", "a SAS token with skn twice" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=1&foo=1", "a SAS token field other than sr, sig, se, skn" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=1&SR=x", "a SAS token field other than sr, sig, se, skn" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=", "a SAS expiry (se) that is not a decimal number of seconds within int64" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=abc", "a SAS expiry (se) that is not a decimal number of seconds within int64" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=-1", "a SAS expiry (se) that is not a decimal number of seconds within int64" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=+1", "a SAS expiry (se) that is not a decimal number of seconds within int64" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=01", "a SAS expiry (se) that is not a decimal number of seconds within int64" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=1.5", "a SAS expiry (se) that is not a decimal number of seconds within int64" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=9223372036854775808", "a SAS expiry (se) that is not a decimal number of seconds within int64" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=18446744073709551617", "a SAS expiry (se) that is not a decimal number of seconds within int64" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=%31", "a SAS expiry (se) that is not a decimal number of seconds within int64" },
	{ PFX GOOD_SR "%2&sig=" SIG32 "&se=1", "a bad %-escape in a SAS token field" },
	{ PFX GOOD_SR "%zz&sig=" SIG32 "&se=1", "a bad %-escape in a SAS token field" },
	{ PFX GOOD_SR "%&sig=" SIG32 "&se=1", "a bad %-escape in a SAS token field" },
	{ PFX GOOD_SR "%0a&sig=" SIG32 "&se=1", "a control byte in a SAS token field" },
	{ PFX GOOD_SR "%00&sig=" SIG32 "&se=1", "a control byte in a SAS token field" },
	{ PFX GOOD_SR "\t&sig=" SIG32 "&se=1", "a control byte in a SAS token field" },
	{ PFX "sr=&sig=" SIG32 "&se=1", "a SAS token with an empty resource URI (sr)" },
	{ PFX "sr=" X256 X256 "x&sig=" SIG32 "&se=1", "a SAS resource URI (sr) over 512 bytes" },
	{ PFX GOOD_SR "&sig=" SIG32 "&se=1&skn=" X64 "y", "a SAS policy name (skn) over 64 bytes" },
	{ PFX GOOD_SR "&sig=&se=1", "a SAS signature (sig) that is not the base64 of 32 bytes" },
	{ PFX GOOD_SR "&sig=AAAA&se=1", "a SAS signature (sig) that is not the base64 of 32 bytes" },
	/* 31 bytes, 33 bytes, no padding, unused bits set, URL-safe alphabet, too long */
	{ PFX GOOD_SR "&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==&se=1",
	  "a SAS signature (sig) that is not the base64 of 32 bytes" },
	{ PFX GOOD_SR "&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&se=1",
	  "a SAS signature (sig) that is not the base64 of 32 bytes" },
	{ PFX GOOD_SR "&sig=fTCi2tl96GL%2BRXbrXx6iSPQZMTkLWgwK1W12t%2FiEpqQ&se=1",
	  "a SAS signature (sig) that is not the base64 of 32 bytes" },
	{ PFX GOOD_SR "&sig=fTCi2tl96GL%2BRXbrXx6iSPQZMTkLWgwK1W12t%2FiEpqR%3D&se=1",
	  "a SAS signature (sig) that is not the base64 of 32 bytes" },
	{ PFX GOOD_SR "&sig=fTCi2tl96GL-RXbrXx6iSPQZMTkLWgwK1W12t_iEpqQ%3D&se=1",
	  "a SAS signature (sig) that is not the base64 of 32 bytes" },
	{ PFX GOOD_SR "&sig=" X64 "&se=1", "a SAS signature (sig) that is not the base64 of 32 bytes" },
	{ PFX "sr=" X256 X256 X256 X256 "&sig=" SIG32 "&se=1", "a SAS token over 1024 bytes" },
};

START_TEST(test_sas_bad)
{
	const char *t = sas_bad[_i].token, *why = NULL;
	struct kg_sas sas;
	size_t len = strlen(t);
	char *copy = malloc(len + 1);

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, t, len);   /* exactly len bytes are read: ASan checks */
	ck_assert_msg(!kg_sas_parse(copy, len, &sas, &why), "row %d parsed", _i);
	ck_assert_ptr_nonnull(why);
	ck_assert_str_eq(why, sas_bad[_i].why);
	free(copy);
}
END_TEST

START_TEST(test_sas_accepted)
{
	static const char *const ok[] = {
		/* any order, '+' kept literally (a raw base64 signature), the largest se */
		PFX "se=9223372036854775807&sig=fTCi2tl96GL+RXbrXx6iSPQZMTkLWgwK1W12t/iEpqQ=&" GOOD_SR,
		PFX "skn=&" GOOD_SR "&sig=" SIG32 "&se=0",
	};
	struct kg_sas sas, ref;
	const char *why = NULL;

	ck_assert_msg(kg_sas_parse(ok[0], strlen(ok[0]), &sas, &why), "%s", why);
	ck_assert_int_eq(sas.se, INT64_MAX);
	ck_assert_str_eq(sas.sr, HUB "/devices/d");
	ck_assert(kg_sas_parse(sdk_tokens[0].token, strlen(sdk_tokens[0].token), &ref, &why));
	ck_assert_mem_eq(sas.sig, ref.sig, 32);
	ck_assert_msg(kg_sas_parse(ok[1], strlen(ok[1]), &sas, &why), "%s", why);
	ck_assert(sas.has_skn && sas.skn_len == 0 && sas.se == 0);
	/* 512 decoded bytes fit (513 do not: see the bad table); an escape counts once */
	{
		char tok[700];

		ck_assert_int_lt(snprintf(tok, sizeof(tok), "%ssr=%%78%.511s&sig=%s&se=1", PFX, X256 X256, SIG32),
				 (int)sizeof(tok));
		ck_assert_msg(kg_sas_parse(tok, strlen(tok), &sas, &why), "%s", why);
		ck_assert_uint_eq(sas.sr_len, 512);
		ck_assert_int_eq(sas.sr[0], 'x');
	}
}
END_TEST

START_TEST(test_sas_key)
{
	uint8_t key[KG_SAS_KEY_MAX];
	const char *why = NULL;
	char text[120];
	uint8_t raw[70];

	memset(raw, 0x5a, sizeof(raw));
	ck_assert_uint_eq(kg_sas_key_decode(sdk_key, strlen(sdk_key), key, &why), 32);
	ck_assert_uint_eq(key[0], 1);
	ck_assert_uint_eq(key[31], (31 * 7 + 1) & 0xff);
	for (size_t n = 0; n <= 66; n++) {
		size_t t = kg_b64_encode(raw, n, true, text, sizeof(text)), got;

		why = NULL;
		got = kg_sas_key_decode(text, t, key, &why);
		if (n >= KG_SAS_KEY_MIN && n <= KG_SAS_KEY_MAX) {
			ck_assert_uint_eq(got, n);
		} else {
			ck_assert_uint_eq(got, 0);
			ck_assert_str_eq(why, n < KG_SAS_KEY_MIN ? "a symmetric key under 16 bytes"
								 : "a symmetric key over 64 bytes");
		}
	}
	ck_assert_uint_eq(kg_sas_key_decode("AQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vsXM09o", 43, key, &why), 0);
	ck_assert_str_eq(why, "a symmetric key that is not base64");
}
END_TEST

/* ---- Azure MQTT user names ----------------------------------------------------------- */

static const struct user_case {
	const char *u;
	const char *hub, *id;      /* NULL hub: refused, id is then the reason */
	size_t module_off;
	const char *api, *query;   /* NULL: absent */
} user_cases[] = {
	{ HUB "/dev-0001/?api-version=2021-04-12", HUB, "dev-0001", 0, "2021-04-12", "api-version=2021-04-12" },
	{ HUB "/dev-0001/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4", HUB, "dev-0001", 0,
	  "2021-04-12", "api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4" },
	{ HUB "/dev-0001/?DeviceClientType=c/1.0&api-version=2020-09-30&model-id=dtmi:x;1", HUB, "dev-0001", 0,
	  "2020-09-30", "DeviceClientType=c/1.0&api-version=2020-09-30&model-id=dtmi:x;1" },
	{ HUB "/dev-0001/api-version=2016-11-14", HUB, "dev-0001", 0, "2016-11-14", "api-version=2016-11-14" },
	{ HUB "/dev-0001/api-version=2016-11-14&DeviceClientType=x", HUB, "dev-0001", 0, "2016-11-14",
	  "api-version=2016-11-14&DeviceClientType=x" },
	{ HUB "/dev-0001/", HUB, "dev-0001", 0, NULL, NULL },
	{ HUB "/dev-0001", HUB, "dev-0001", 0, NULL, NULL },
	{ HUB "/dev-0001/?", HUB, "dev-0001", 0, NULL, "" },
	{ HUB "/dev-0001/?x=1", HUB, "dev-0001", 0, NULL, "x=1" },
	{ HUB "/dev-1/mod-a/?api-version=2021-04-12", HUB, "dev-1/mod-a", 6, "2021-04-12", "api-version=2021-04-12" },
	{ HUB "/dev-1/mod-a/api-version=2018-06-30", HUB, "dev-1/mod-a", 6, "2018-06-30", "api-version=2018-06-30" },
	{ HUB "/dev-1/mod-a/", HUB, "dev-1/mod-a", 6, NULL, NULL },
	{ HUB "/dev-1/mod-a", HUB, "dev-1/mod-a", 6, NULL, NULL },
	{ "h/d?x=1/", "h", "d?x=1", 0, NULL, NULL },   /* '?' inside an Azure device id */
	{ "", NULL, "an Azure user name without \"{hub}/{deviceId}\"", 0, NULL, NULL },
	{ "dev-0001", NULL, "an Azure user name without \"{hub}/{deviceId}\"", 0, NULL, NULL },
	{ "/dev", NULL, "an Azure user name whose hub is not a host name", 0, NULL, NULL },
	{ "my hub/dev", NULL, "an Azure user name whose hub is not a host name", 0, NULL, NULL },
	{ "hub_x/dev", NULL, "an Azure user name whose hub is not a host name", 0, NULL, NULL },
	{ HUB "/", NULL, "an Azure user name without a device id", 0, NULL, NULL },
	{ HUB "//?api-version=1", NULL, "an Azure user name without a device id", 0, NULL, NULL },
	{ HUB "/dev/mod/extra", NULL, "an Azure user name with more than a module id before its query", 0, NULL, NULL },
	{ HUB "/dev/mod/extra/?api-version=1", NULL, "an Azure user name with more than a module id before its query", 0, NULL, NULL },
	{ HUB "/dev//?api-version=1", NULL, "an Azure user name whose device id is not valid", 0, NULL, NULL },
	{ HUB "/./?api-version=1", NULL, "an Azure user name whose device id is not valid", 0, NULL, NULL },
	{ HUB "/dev/../?api-version=1", NULL, "an Azure user name whose device id is not valid", 0, NULL, NULL },
	{ HUB "/de v/", NULL, "an Azure user name whose device id is not valid", 0, NULL, NULL },
	{ HUB "/d\x01v/", NULL, "an Azure user name whose device id is not valid", 0, NULL, NULL },
};

static void ck_span(const char *p, size_t len, const char *want)
{
	if (want == NULL) {
		ck_assert_ptr_null(p);
		return;
	}
	ck_assert_ptr_nonnull(p);
	ck_assert_msg(len == strlen(want) && memcmp(p, want, len) == 0, "got \"%.*s\", want \"%s\"",
		      (int)len, p, want);
}

START_TEST(test_username)
{
	const struct user_case *c = &user_cases[_i];
	struct kg_azure_user u;
	const char *why = NULL;
	size_t len = strlen(c->u);
	char *copy = malloc(len + 1);

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, c->u, len);
	if (c->hub == NULL) {
		ck_assert_msg(!kg_azure_username_parse(copy, len, &u, &why), "\"%s\" parsed", c->u);
		ck_assert_str_eq(why, c->id);
		ck_assert_ptr_null(u.id);
	} else {
		ck_assert_msg(kg_azure_username_parse(copy, len, &u, &why), "\"%s\": %s", c->u, why);
		ck_span(u.hub, u.hub_len, c->hub);
		ck_span(u.id, u.id_len, c->id);
		ck_assert_uint_eq(u.module_off, c->module_off);
		ck_span(u.api_version, u.api_version_len, c->api);
		ck_span(u.query, u.query_len, c->query);
	}
	free(copy);
}
END_TEST

START_TEST(test_username_limits)
{
	char u[1100];
	struct kg_azure_user au;
	const char *why = NULL;
	size_t n;

	/* a 253-byte hub and a 128-byte id pass; one more byte of either does not */
	memset(u, 'h', 253);
	u[253] = '/';
	memset(u + 254, 'd', 128);
	n = 254 + 128;
	ck_assert_msg(kg_azure_username_parse(u, n, &au, &why), "%s", why);
	ck_assert_uint_eq(au.hub_len, 253);
	ck_assert_uint_eq(au.id_len, 128);
	u[n] = 'd';
	ck_assert(!kg_azure_username_parse(u, n + 1, &au, &why));
	ck_assert_str_eq(why, "an Azure user name whose device id is not valid");
	memmove(u + 1, u, n);
	ck_assert(!kg_azure_username_parse(u, n + 1, &au, &why));
	ck_assert_str_eq(why, "an Azure user name whose hub is not a host name");
	memset(u, 'h', sizeof(u));
	u[3] = '/';
	ck_assert(!kg_azure_username_parse(u, KG_AZURE_USERNAME_MAX + 1, &au, &why));
	ck_assert_str_eq(why, "an Azure user name over 1024 bytes");
}
END_TEST

/* ---- scrypt ------------------------------------------------------------------------ */

static const struct { const char *phc, *password; unsigned int ln, r, p; size_t salt, hash; } passlib[] = {
	{ "$scrypt$ln=10,r=8,p=1$3Pu/V0qJ8V6rVao15nwvJQ$hUlX08niBXzuuuWBLnn2nRPIXA5tpILv8RS2AXTXns8",
	  "correct horse battery staple", 10, 8, 1, 16, 32 },
	{ "$scrypt$ln=11,r=4,p=2$HqP0vleqtXZOaY0xBqBUypnzvtdaK0UI$xQVUx7kKXFPQK5KIfxNgXyH1B4Y0kn4WBessAe5NYMM",
	  "dev-0001 pw", 11, 4, 2, 24, 32 },
};

START_TEST(test_scrypt_passlib)
{
	struct kg_scrypt h;
	const char *why = NULL, *phc = passlib[_i].phc, *pw = passlib[_i].password;
	char again[KG_SCRYPT_STR_MAX + 1];
	uint8_t out[KG_SCRYPT_HASH_MAX];

	ck_assert_msg(kg_scrypt_parse(phc, strlen(phc), &h, &why), "%s", why);
	ck_assert_uint_eq(h.ln, passlib[_i].ln);
	ck_assert_uint_eq(h.r, passlib[_i].r);
	ck_assert_uint_eq(h.p, passlib[_i].p);
	ck_assert_uint_eq(h.salt_len, passlib[_i].salt);
	ck_assert_uint_eq(h.hash_len, passlib[_i].hash);
	/* the real KDF with the parsed parameters gives the stored hash */
	ck_assert_int_eq(EVP_PBE_scrypt(pw, strlen(pw), h.salt, h.salt_len, (uint64_t)1 << h.ln, h.r, h.p,
					kg_scrypt_mem(&h), out, h.hash_len), 1);
	ck_assert_mem_eq(out, h.hash, h.hash_len);
	/* and OpenSSL refuses with one byte less memory than kg_scrypt_mem() says */
	ck_assert_int_eq(EVP_PBE_scrypt(pw, strlen(pw), h.salt, h.salt_len, (uint64_t)1 << h.ln, h.r, h.p,
					kg_scrypt_mem(&h) - 1, out, h.hash_len), 0);
	/* format(parse(x)) == x */
	ck_assert_uint_eq(kg_scrypt_format(&h, again, sizeof(again)), strlen(phc));
	ck_assert_str_eq(again, phc);
	ck_assert_uint_eq(kg_scrypt_format(&h, again, strlen(phc)), 0);
}
END_TEST

START_TEST(test_scrypt_bounds)
{
	static const struct { unsigned int ln, r, p; const char *why; } rows[] = {
		{ 15, 8, 1, NULL },
		{ 17, 8, 1, NULL },
		{ 17, 8, 2, NULL },
		{ 10, 32, 16, NULL },
		{ 15, 8, 8, NULL },
		{ 9, 8, 1, "an scrypt cost (ln) outside 10..17" },
		{ 18, 1, 1, "an scrypt cost (ln) outside 10..17" },
		{ 15, 0, 1, "an scrypt block size (r) outside 1..32" },
		{ 15, 33, 1, "an scrypt block size (r) outside 1..32" },
		{ 15, 8, 0, "an scrypt parallelism (p) outside 1..16" },
		{ 15, 8, 17, "an scrypt parallelism (p) outside 1..16" },
		{ 17, 9, 1, "scrypt parameters needing more than 128 MiB" },
		{ 16, 32, 1, "scrypt parameters needing more than 128 MiB" },
		{ 17, 8, 3, "scrypt parameters costing more than N*r*p = 2^21" },
		{ 15, 8, 9, "scrypt parameters costing more than N*r*p = 2^21" },
	};

	for (size_t i = 0; i < KG_NITEMS(rows); i++) {
		const char *why = NULL;
		bool ok = kg_scrypt_params_ok(rows[i].ln, rows[i].r, rows[i].p, &why);

		if (rows[i].why == NULL)
			ck_assert_msg(ok, "row %zu: %s", i, why);
		else
			ck_assert_msg(!ok && strcmp(why, rows[i].why) == 0, "row %zu: %s", i, why ? why : "ok");
	}
}
END_TEST

#define SALT16 "3Pu/V0qJ8V6rVao15nwvJQ"
#define HASH32 "hUlX08niBXzuuuWBLnn2nRPIXA5tpILv8RS2AXTXns8"

static const struct { const char *s, *why; } scrypt_bad[] = {
	{ "", "a password hash that is not \"$scrypt$...\"" },
	{ "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA", "a password hash that is not \"$scrypt$...\"" },
	{ "$SCRYPT$ln=10,r=8,p=1$" SALT16 "$" HASH32, "a password hash that is not \"$scrypt$...\"" },
	{ "$scrypt$r=8,ln=10,p=1$" SALT16 "$" HASH32, "scrypt parameters not written \"ln=L,r=R,p=P\"" },
	{ "$scrypt$ln=010,r=8,p=1$" SALT16 "$" HASH32, "scrypt parameters not written \"ln=L,r=R,p=P\"" },
	{ "$scrypt$ln=10,r=8$" SALT16 "$" HASH32, "scrypt parameters not written \"ln=L,r=R,p=P\"" },
	{ "$scrypt$ln=10,r=8,p=1", "scrypt parameters not written \"ln=L,r=R,p=P\"" },
	{ "$scrypt$ln=,r=8,p=1$" SALT16 "$" HASH32, "scrypt parameters not written \"ln=L,r=R,p=P\"" },
	{ "$scrypt$ln=10,r=8,p=1 $" SALT16 "$" HASH32, "scrypt parameters not written \"ln=L,r=R,p=P\"" },
	{ "$scrypt$ln=10,r=-8,p=1$" SALT16 "$" HASH32, "scrypt parameters not written \"ln=L,r=R,p=P\"" },
	{ "$scrypt$ln=10,r=8,p=100000$" SALT16 "$" HASH32, "scrypt parameters not written \"ln=L,r=R,p=P\"" },
	{ "$scrypt$ln=99999,r=8,p=1$" SALT16 "$" HASH32, "an scrypt cost (ln) outside 10..17" },
	{ "$scrypt$ln=20,r=8,p=1$" SALT16 "$" HASH32, "an scrypt cost (ln) outside 10..17" },
	{ "$scrypt$ln=17,r=16,p=1$" SALT16 "$" HASH32, "scrypt parameters needing more than 128 MiB" },
	{ "$scrypt$ln=17,r=8,p=16$" SALT16 "$" HASH32, "scrypt parameters costing more than N*r*p = 2^21" },
	{ "$scrypt$ln=10,r=8,p=1$" SALT16, "a password hash without its hash field" },
	{ "$scrypt$ln=10,r=8,p=1$c2FsdA$" HASH32, "an scrypt salt that is not the base64 of 16..64 bytes" },
	{ "$scrypt$ln=10,r=8,p=1$" SALT16 "==$" HASH32, "an scrypt salt that is not the base64 of 16..64 bytes" },
	{ "$scrypt$ln=10,r=8,p=1$" SALT16 "$" SALT16, "an scrypt hash that is not the base64 of 32..64 bytes" },
	{ "$scrypt$ln=10,r=8,p=1$" SALT16 "$" HASH32 "$", "an scrypt hash that is not the base64 of 32..64 bytes" },
	{ "$scrypt$ln=10,r=8,p=1$" SALT16 "$" HASH32 "=", "an scrypt hash that is not the base64 of 32..64 bytes" },
	{ "$scrypt$ln=10,r=8,p=1$" SALT16 "$" HASH32 HASH32 HASH32 HASH32, "a password hash over 200 bytes" },
};

START_TEST(test_scrypt_bad)
{
	struct kg_scrypt h;
	const char *why = NULL, *s = scrypt_bad[_i].s;
	size_t len = strlen(s);
	char *copy = malloc(len + 1);

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, s, len);
	ck_assert_msg(!kg_scrypt_parse(copy, len, &h, &why), "\"%s\" parsed", s);
	ck_assert_str_eq(why, scrypt_bad[_i].why);
	ck_assert_uint_eq(h.ln, 0);
	free(copy);
}
END_TEST

START_TEST(test_scrypt_format)
{
	struct kg_scrypt h = { .ln = KG_SCRYPT_DEFAULT_LN, .r = KG_SCRYPT_DEFAULT_R, .p = KG_SCRYPT_DEFAULT_P,
			       .salt_len = 16, .hash_len = 32 };
	struct kg_scrypt back;
	char s[KG_SCRYPT_STR_MAX + 1];
	const char *why = NULL;
	size_t n;

	for (size_t i = 0; i < 16; i++)
		h.salt[i] = (uint8_t)i;
	memset(h.hash, 0xff, 32);
	n = kg_scrypt_format(&h, s, sizeof(s));
	ck_assert_str_eq(s, "$scrypt$ln=15,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$//////////////////////////////////////////8");
	ck_assert_uint_eq(n, strlen(s));
	ck_assert(kg_scrypt_parse(s, n, &back, &why));
	ck_assert(back.ln == 15 && back.r == 8 && back.p == 1 && back.salt_len == 16 && back.hash_len == 32);
	ck_assert_mem_eq(back.salt, h.salt, 16);
	ck_assert_mem_eq(back.hash, h.hash, 32);
	/* the longest string fits KG_SCRYPT_STR_MAX */
	h.ln = 10;
	h.r = 32;
	h.p = 16;
	h.salt_len = KG_SCRYPT_SALT_MAX;
	h.hash_len = KG_SCRYPT_HASH_MAX;
	n = kg_scrypt_format(&h, s, sizeof(s));
	ck_assert_uint_gt(n, 0);
	ck_assert_uint_le(n, KG_SCRYPT_STR_MAX);
	ck_assert(kg_scrypt_parse(s, n, &back, &why));
	/* out of bounds: nothing written */
	h.salt_len = 15;
	ck_assert_uint_eq(kg_scrypt_format(&h, s, sizeof(s)), 0);
	h.salt_len = 16;
	h.hash_len = 65;
	ck_assert_uint_eq(kg_scrypt_format(&h, s, sizeof(s)), 0);
	h.hash_len = 32;
	h.ln = 18;
	ck_assert_uint_eq(kg_scrypt_format(&h, s, sizeof(s)), 0);
	/* the default parameters need 32 MiB and some: above OpenSSL's default maxmem */
	h.ln = KG_SCRYPT_DEFAULT_LN;
	h.r = KG_SCRYPT_DEFAULT_R;
	h.p = KG_SCRYPT_DEFAULT_P;
	ck_assert_uint_eq(kg_scrypt_mem(&h), 128ull * 8 * (32768 + 1 + 2));
}
END_TEST

/* ---- access tokens ------------------------------------------------------------------ */

START_TEST(test_tokens)
{
	static const uint8_t digest[32] = { 0x00, 0x01, 0xab, 0xff, [31] = 0x7f };
	char hex[65], tok[300];
	const char *why = NULL;

	ck_assert(kg_token_ok("A1_b2-c3", 8, &why));
	ck_assert(!kg_token_ok("A1_b2-c", 7, &why));
	ck_assert_str_eq(why, "an access token under 8 bytes");
	memset(tok, '~', sizeof(tok));
	ck_assert(kg_token_ok(tok, 256, &why));
	ck_assert(!kg_token_ok(tok, 257, &why));
	ck_assert_str_eq(why, "an access token over 256 bytes");
	ck_assert(!kg_token_ok("abc defgh", 9, &why));
	ck_assert_str_eq(why, "an access token with a byte outside printable ASCII");
	ck_assert(!kg_token_ok("abcdefg\x7f", 8, &why));
	ck_assert(!kg_token_ok("abcdefg\xc3", 8, &why));
	ck_assert(!kg_token_ok("abc\0defgh", 9, &why));

	kg_hex_lower(digest, 32, hex);
	ck_assert_str_eq(hex, "0001abff0000000000000000000000000000000000000000000000000000007f");
	ck_assert(kg_token_hash_ok(hex, 64));
	ck_assert(!kg_token_hash_ok(hex, 63));
	hex[10] = 'A';
	ck_assert(!kg_token_hash_ok(hex, 64));
	hex[10] = 'g';
	ck_assert(!kg_token_hash_ok(hex, 64));

	ck_assert(kg_cred_equal("abcd", "abcd", 4));
	ck_assert(!kg_cred_equal("abcd", "abce", 4));
	ck_assert(!kg_cred_equal("xbcd", "abcd", 4));
	ck_assert(kg_cred_equal("a", "b", 0));
}
END_TEST

Suite *kg_suite_credential(void)
{
	Suite *s = suite_create("credential");
	TCase *tc = tcase_create("base64");

	tcase_add_loop_test(tc, test_b64_vectors, 0, (int)KG_NITEMS(b64_cases));
	tcase_add_loop_test(tc, test_b64_bad, 0, (int)KG_NITEMS(b64_bad));
	tcase_add_test(tc, test_b64_roundtrip);
	suite_add_tcase(s, tc);

	tc = tcase_create("sas");
	tcase_add_loop_test(tc, test_sas_sdk, 0, (int)KG_NITEMS(sdk_tokens));
	tcase_add_loop_test(tc, test_sas_resource, 0, (int)KG_NITEMS(res_cases));
	tcase_add_test(tc, test_sas_time);
	tcase_add_loop_test(tc, test_sas_bad, 0, (int)KG_NITEMS(sas_bad));
	tcase_add_test(tc, test_sas_accepted);
	tcase_add_test(tc, test_sas_key);
	suite_add_tcase(s, tc);

	tc = tcase_create("username");
	tcase_add_loop_test(tc, test_username, 0, (int)KG_NITEMS(user_cases));
	tcase_add_test(tc, test_username_limits);
	suite_add_tcase(s, tc);

	tc = tcase_create("scrypt");
	tcase_add_loop_test(tc, test_scrypt_passlib, 0, (int)KG_NITEMS(passlib));
	tcase_add_test(tc, test_scrypt_bounds);
	tcase_add_loop_test(tc, test_scrypt_bad, 0, (int)KG_NITEMS(scrypt_bad));
	tcase_add_test(tc, test_scrypt_format);
	suite_add_tcase(s, tc);

	tc = tcase_create("token");
	tcase_add_test(tc, test_tokens);
	suite_add_tcase(s, tc);
	return s;
}
