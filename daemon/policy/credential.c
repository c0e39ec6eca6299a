/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * credential.c - pure parsers of the credentials beside X.509 (credential.h): SAS
 * tokens, Azure MQTT user names, stored scrypt and token hashes, strict base64.
 * Every parser reads the caller's bytes with explicit lengths (no NUL is assumed or
 * trusted), writes only into *out, and says why it refuses in a constant sentence.
 * Strictness is deliberate, as in mqtt.c: one spelling per value (canonical base64,
 * decimals without leading zeros, each SAS field once), so what the HMAC module signs
 * and what the audit line shows cannot differ from what the parser judged.
 */
#include <string.h>

#include "policy/credential.h"
#include "policy/identity.h"

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static bool fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return false;
}

/* ---- base64 ------------------------------------------------------------- */

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long kg_b64_decode(const char *in, size_t len, bool padded, uint8_t *out, size_t cap)
{
	size_t pad = 0, chars, n = 0;
	uint32_t acc = 0;
	unsigned int bits = 0;

	if (padded) {
		if (len % 4 != 0)
			return -1;
		while (pad < 2 && pad < len && in[len - 1 - pad] == '=')
			pad++;
	}
	chars = len - pad;
	if (chars % 4 == 1)
		return -1;   /* 6 bits cannot end a byte string */
	if ((chars * 6) / 8 > cap || (chars * 6) / 8 > (size_t)0x7fffffff)
		return -1;
	for (size_t i = 0; i < chars; i++) {
		int v = b64_value(in[i]);

		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return -1;   /* unused low bits set: a second spelling of the same bytes */
	return (long)n;
}

size_t kg_b64_encode(const uint8_t *in, size_t n, bool padded, char *out, size_t cap)
{
	size_t need = padded ? (n + 2) / 3 * 4 : (n * 4 + 2) / 3, o = 0;

	if (n > ((size_t)-1 - 3) / 4 || need + 1 > cap)
		return 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t left = n - i;

		if (left > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (left > 2)
			v |= in[i + 2];
		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		if (left > 1)
			out[o++] = b64_alphabet[v >> 6 & 63];
		else if (padded)
			out[o++] = '=';
		if (left > 2)
			out[o++] = b64_alphabet[v & 63];
		else if (padded)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

/* ---- small helpers -------------------------------------------------------- */

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode in[0..len) into out (cap bytes, NUL added). '+' stays '+' (RFC 3986,
 * not form encoding: a raw base64 '+' must survive). Control bytes (below 0x20, 0x7f),
 * decoded or not, are refused. */
static bool url_decode(const char *in, size_t len, char *out, size_t cap, size_t *out_len,
		       const char **why, const char *too_long)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '%') {
			int hi, lo;

			if (len - i < 3 || (hi = hex_value(in[i + 1])) < 0 || (lo = hex_value(in[i + 2])) < 0)
				return fail(why, "a bad %-escape in a SAS token field");
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (c < 0x20 || c == 0x7f)
			return fail(why, "a control byte in a SAS token field");
		if (n + 1 >= cap)
			return fail(why, too_long);
		out[n++] = (char)c;
	}
	out[n] = '\0';
	*out_len = n;
	return true;
}

/* A decimal without sign or leading zero that fits int64_t. */
static bool parse_i64(const char *s, size_t len, int64_t *v)
{
	int64_t x = 0;

	if (len == 0 || len > 19 || (len > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (x > (INT64_MAX - (s[i] - '0')) / 10)
			return false;
		x = x * 10 + (s[i] - '0');
	}
	*v = x;
	return true;
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool eq_nocase(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

static bool starts_with(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && memcmp(s, prefix, n) == 0;
}

/* ---- SAS tokens ------------------------------------------------------------ */

#define SAS_PREFIX "SharedAccessSignature "

bool kg_sas_parse(const char *tok, size_t len, struct kg_sas *out, const char **why)
{
	const char *sig_raw = NULL;
	size_t sig_raw_len = 0, off;
	bool have_sr = false, have_se = false;

	memset(out, 0, sizeof(*out));
	if (len > KG_SAS_TOKEN_MAX)
		return fail(why, "a SAS token over 1024 bytes");
	if (!starts_with(tok, len, SAS_PREFIX))
		return fail(why, "not a SAS token (no \"SharedAccessSignature \" prefix)");
	off = sizeof(SAS_PREFIX) - 1;
	for (;;) {
		const char *f = tok + off, *amp, *eq, *v;
		size_t flen, klen, vlen;

		amp = memchr(f, '&', len - off);
		flen = amp != NULL ? (size_t)(amp - f) : len - off;
		eq = memchr(f, '=', flen);
		if (eq == NULL)
			return fail(why, "a SAS token field without '='");
		klen = (size_t)(eq - f);
		v = eq + 1;
		vlen = flen - klen - 1;
		if (klen == 2 && memcmp(f, "sr", 2) == 0) {
			if (have_sr)
				return fail(why, "a SAS token with sr twice");
			have_sr = true;
			if (!url_decode(v, vlen, out->sr, sizeof(out->sr), &out->sr_len, why,
					"a SAS resource URI (sr) over 512 bytes"))
				return false;
			out->sr_raw = v;
			out->sr_raw_len = vlen;
		} else if (klen == 3 && memcmp(f, "sig", 3) == 0) {
			if (sig_raw != NULL)
				return fail(why, "a SAS token with sig twice");
			sig_raw = v;
			sig_raw_len = vlen;
		} else if (klen == 2 && memcmp(f, "se", 2) == 0) {
			if (have_se)
				return fail(why, "a SAS token with se twice");
			have_se = true;
			if (!parse_i64(v, vlen, &out->se))
				return fail(why, "a SAS expiry (se) that is not a decimal number of seconds within int64");
			out->se_raw = v;
			out->se_raw_len = vlen;
		} else if (klen == 3 && memcmp(f, "skn", 3) == 0) {
			if (out->has_skn)
				return fail(why, "a SAS token with skn twice");
			out->has_skn = true;
			if (!url_decode(v, vlen, out->skn, sizeof(out->skn), &out->skn_len, why,
					"a SAS policy name (skn) over 64 bytes"))
				return false;
		} else {
			return fail(why, "a SAS token field other than sr, sig, se, skn");
		}
		if (amp == NULL)
			break;
		off += flen + 1;
	}
	if (!have_sr || sig_raw == NULL || !have_se)
		return fail(why, "a SAS token without sr, sig or se");
	if (out->sr_len == 0)
		return fail(why, "a SAS token with an empty resource URI (sr)");
	{
		/* 32 bytes are 44 base64 characters; escaped, at most 3 bytes each */
		char text[64];
		size_t text_len;
		uint8_t sig[48];

		if (!url_decode(sig_raw, sig_raw_len, text, sizeof(text), &text_len, why,
				"a SAS signature (sig) that is not the base64 of 32 bytes"))
			return false;
		if (kg_b64_decode(text, text_len, true, sig, sizeof(sig)) != KG_SAS_SIG_LEN)
			return fail(why, "a SAS signature (sig) that is not the base64 of 32 bytes");
		memcpy(out->sig, sig, KG_SAS_SIG_LEN);
	}
	return true;
}

/* Is c kept as is by the canonical encoding? */
static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

size_t kg_sas_string_to_sign(const struct kg_sas *s, enum kg_sas_sign_form form, char *out,
			     size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	if (form == KG_SAS_SIGN_AS_SENT) {
		if (s->sr_raw_len + 1 + s->se_raw_len + 1 > cap)
			return 0;
		memcpy(out, s->sr_raw, s->sr_raw_len);
		n = s->sr_raw_len;
		out[n++] = '\n';
		memcpy(out + n, s->se_raw, s->se_raw_len);
		n += s->se_raw_len;
		out[n] = '\0';
		return n;
	}
	if (form != KG_SAS_SIGN_CANONICAL)
		return 0;
	for (size_t i = 0; i < s->sr_len; i++) {
		unsigned char c = (unsigned char)s->sr[i];

		if (unreserved(c)) {
			if (n + 1 >= cap)
				return 0;
			out[n++] = (char)c;
		} else {
			if (n + 3 >= cap)
				return 0;
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	{
		char digits[20];
		size_t d = 0;
		uint64_t v = (uint64_t)s->se;

		do {
			digits[d++] = (char)('0' + v % 10);
			v /= 10;
		} while (v != 0 && d < sizeof(digits));
		if (n + 1 + d + 1 > cap)
			return 0;
		out[n++] = '\n';
		while (d > 0)
			out[n++] = digits[--d];
	}
	out[n] = '\0';
	return n;
}

bool kg_sas_resource_ok(const struct kg_sas *s, const char *hub_host, size_t hub_len,
			const char *id, size_t id_len, const char **why)
{
	static const char devices[] = "/devices/", modules[] = "/modules/";
	const char *r = s->sr, *slash;
	size_t left = s->sr_len, dev_len;

	if (id_len == 0)
		return fail(why, "a SAS token checked against no device id");
	if (s->has_skn)
		return fail(why, "a SAS token signed with a hub policy key (skn), not the device's");
	if (hub_len == 0 || left < hub_len || !eq_nocase(r, hub_host, hub_len))
		return fail(why, "a SAS token for another IoT hub");
	r += hub_len;
	left -= hub_len;
	if (!starts_with(r, left, devices))
		return fail(why, "a SAS token whose resource is not a device");
	r += sizeof(devices) - 1;
	left -= sizeof(devices) - 1;
	slash = memchr(id, '/', id_len);
	dev_len = slash != NULL ? (size_t)(slash - id) : id_len;
	if (left < dev_len || memcmp(r, id, dev_len) != 0)
		return fail(why, "a SAS token for another device");
	r += dev_len;
	left -= dev_len;
	if (slash != NULL) {
		size_t mod_len = id_len - dev_len - 1;

		if (!starts_with(r, left, modules) || left - (sizeof(modules) - 1) != mod_len ||
		    memcmp(r + sizeof(modules) - 1, slash + 1, mod_len) != 0)
			return fail(why, "a SAS token for another device");
		return true;
	}
	if (left != 0)
		return fail(why, "a SAS token for another device");
	return true;
}

bool kg_sas_time_ok(const struct kg_sas *s, int64_t now, int64_t max_ttl, const char **why)
{
	if (now >= s->se)
		return fail(why, "an expired SAS token");
	/* se - now > max_ttl, written so that nothing overflows (se >= 0, max_ttl > 0) */
	if (max_ttl > 0 && now < s->se - max_ttl)
		return fail(why, "a SAS token valid for longer than allowed");
	return true;
}

size_t kg_sas_key_decode(const char *b64, size_t len, uint8_t *key, const char **why)
{
	/* 88 characters, the most 64 bytes take, can also hold 65 or 66 */
	uint8_t buf[(KG_SAS_KEY_MAX + 2) / 3 * 3];
	long n;

	if (len > (KG_SAS_KEY_MAX + 2) / 3 * 4) {
		fail(why, "a symmetric key over 64 bytes");
		return 0;
	}
	n = kg_b64_decode(b64, len, true, buf, sizeof(buf));
	if (n < 0) {
		fail(why, "a symmetric key that is not base64");
		return 0;
	}
	if (n > KG_SAS_KEY_MAX) {
		fail(why, "a symmetric key over 64 bytes");
		return 0;
	}
	if (n < KG_SAS_KEY_MIN) {
		fail(why, "a symmetric key under 16 bytes");
		return 0;
	}
	memcpy(key, buf, (size_t)n);
	return (size_t)n;
}

/* ---- Azure MQTT user names --------------------------------------------------- */

bool kg_host_ok(const char *h, size_t n)
{
	if (n == 0 || n > KG_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* The segment at s[0..len) is the query part: "?..." or the old "api-version=...". */
static bool take_query(struct kg_azure_user *out, const char *s, size_t len)
{
	static const char apiv[] = "api-version=";
	const char *q;
	size_t qlen;

	if (len > 0 && s[0] == '?') {
		q = s + 1;
		qlen = len - 1;
	} else if (starts_with(s, len, apiv)) {
		q = s;
		qlen = len;
	} else {
		return false;
	}
	out->query = q;
	out->query_len = qlen;
	/* the api-version parameter, wherever it is among the '&'-separated ones */
	for (size_t off = 0; off <= qlen;) {
		const char *p = q + off, *amp = memchr(p, '&', qlen - off);
		size_t plen = amp != NULL ? (size_t)(amp - p) : qlen - off;

		if (out->api_version == NULL && starts_with(p, plen, apiv)) {
			out->api_version = p + sizeof(apiv) - 1;
			out->api_version_len = plen - (sizeof(apiv) - 1);
		}
		off += plen + 1;
	}
	return true;
}

bool kg_azure_username_parse(const char *u, size_t len, struct kg_azure_user *out,
			     const char **why)
{
	const char *p, *end = u + len, *dev, *s;
	size_t dev_len, module_off = 0, id_check;

	memset(out, 0, sizeof(*out));
	if (len > KG_AZURE_USERNAME_MAX)
		return fail(why, "an Azure user name over 1024 bytes");
	p = memchr(u, '/', len);
	if (p == NULL)
		return fail(why, "an Azure user name without \"{hub}/{deviceId}\"");
	if (!kg_host_ok(u, (size_t)(p - u)))
		return fail(why, "an Azure user name whose hub is not a host name");
	out->hub = u;
	out->hub_len = (size_t)(p - u);
	dev = p + 1;
	s = memchr(dev, '/', (size_t)(end - dev));
	dev_len = (size_t)((s != NULL ? s : end) - dev);
	if (dev_len == 0) {
		memset(out, 0, sizeof(*out));
		return fail(why, "an Azure user name without a device id");
	}
	out->id = dev;
	out->id_len = dev_len;
	if (s != NULL) {
		const char *seg = s + 1, *s2;
		size_t seg_len;

		/* "{hub}/{dev}/", or its query, or a module id */
		if (seg < end && !take_query(out, seg, (size_t)(end - seg))) {
			s2 = memchr(seg, '/', (size_t)(end - seg));
			seg_len = (size_t)((s2 != NULL ? s2 : end) - seg);
			module_off = dev_len + 1;
			out->id_len = dev_len + 1 + seg_len;
			if (s2 != NULL && s2 + 1 < end && !take_query(out, s2 + 1, (size_t)(end - s2 - 1))) {
				memset(out, 0, sizeof(*out));
				return fail(why, "an Azure user name with more than a module id before its query");
			}
		}
	}
	if (!kg_identity_valid(out->id, out->id_len, &id_check) || id_check != module_off) {
		const char *reason = "an Azure user name whose device id is not valid";

		memset(out, 0, sizeof(*out));
		return fail(why, reason);
	}
	out->module_off = module_off;
	return true;
}

/* ---- scrypt ------------------------------------------------------------------ */

bool kg_scrypt_params_ok(unsigned int ln, unsigned int r, unsigned int p, const char **why)
{
	uint64_t n;

	if (ln < KG_SCRYPT_LN_MIN || ln > KG_SCRYPT_LN_MAX)
		return fail(why, "an scrypt cost (ln) outside 10..17");
	if (r < 1 || r > KG_SCRYPT_R_MAX)
		return fail(why, "an scrypt block size (r) outside 1..32");
	if (p < 1 || p > KG_SCRYPT_P_MAX)
		return fail(why, "an scrypt parallelism (p) outside 1..16");
	n = (uint64_t)1 << ln;
	if (128 * (uint64_t)r * n > KG_SCRYPT_MEM_MAX)
		return fail(why, "scrypt parameters needing more than 128 MiB");
	if (n * r * p > KG_SCRYPT_WORK_MAX)
		return fail(why, "scrypt parameters costing more than N*r*p = 2^21");
	return true;
}

uint64_t kg_scrypt_mem(const struct kg_scrypt *s)
{
	return 128 * (uint64_t)s->r * (((uint64_t)1 << s->ln) + s->p + 2);
}

/* "KEY=" then a decimal up to 99999 without leading zero, ending at `stop`. */
static bool take_param(const char **p, const char *end, const char *key, char stop,
		       unsigned int *v)
{
	size_t klen = strlen(key), n = 0;
	unsigned int x = 0;

	if ((size_t)(end - *p) < klen || memcmp(*p, key, klen) != 0)
		return false;
	*p += klen;
	while (*p + n < end && (*p)[n] >= '0' && (*p)[n] <= '9' && n < 5) {
		x = x * 10 + (unsigned int)((*p)[n] - '0');
		n++;
	}
	if (n == 0 || (n > 1 && (*p)[0] == '0') || *p + n >= end || (*p)[n] != stop)
		return false;
	*p += n + 1;
	*v = x;
	return true;
}

bool kg_scrypt_parse(const char *s, size_t len, struct kg_scrypt *out, const char **why)
{
	static const char prefix[] = "$scrypt$";
	const char *p = s, *end = s + len, *salt, *dollar;
	long n;

	memset(out, 0, sizeof(*out));
	if (len > KG_SCRYPT_STR_MAX)
		return fail(why, "a password hash over 200 bytes");
	if (!starts_with(s, len, prefix))
		return fail(why, "a password hash that is not \"$scrypt$...\"");
	p += sizeof(prefix) - 1;
	if (!take_param(&p, end, "ln=", ',', &out->ln) || !take_param(&p, end, "r=", ',', &out->r) ||
	    !take_param(&p, end, "p=", '$', &out->p)) {
		memset(out, 0, sizeof(*out));
		return fail(why, "scrypt parameters not written \"ln=L,r=R,p=P\"");
	}
	if (!kg_scrypt_params_ok(out->ln, out->r, out->p, why)) {
		memset(out, 0, sizeof(*out));
		return false;
	}
	salt = p;
	dollar = memchr(salt, '$', (size_t)(end - salt));
	if (dollar == NULL) {
		memset(out, 0, sizeof(*out));
		return fail(why, "a password hash without its hash field");
	}
	n = kg_b64_decode(salt, (size_t)(dollar - salt), false, out->salt, sizeof(out->salt));
	if (n < KG_SCRYPT_SALT_MIN) {
		memset(out, 0, sizeof(*out));
		return fail(why, "an scrypt salt that is not the base64 of 16..64 bytes");
	}
	out->salt_len = (size_t)n;
	n = kg_b64_decode(dollar + 1, (size_t)(end - dollar - 1), false, out->hash, sizeof(out->hash));
	if (n < KG_SCRYPT_HASH_MIN) {
		memset(out, 0, sizeof(*out));
		return fail(why, "an scrypt hash that is not the base64 of 32..64 bytes");
	}
	out->hash_len = (size_t)n;
	return true;
}

/* Append a decimal; returns false if it does not fit. */
static bool put_uint(char *out, size_t cap, size_t *n, unsigned int v)
{
	char d[10];
	size_t k = 0;

	do {
		d[k++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	if (*n + k >= cap)
		return false;
	while (k > 0)
		out[(*n)++] = d[--k];
	return true;
}

static bool put_str(char *out, size_t cap, size_t *n, const char *s)
{
	size_t k = strlen(s);

	if (*n + k >= cap)
		return false;
	memcpy(out + *n, s, k);
	*n += k;
	return true;
}

size_t kg_scrypt_format(const struct kg_scrypt *h, char *out, size_t cap)
{
	size_t n = 0, k;

	if (!kg_scrypt_params_ok(h->ln, h->r, h->p, NULL) || h->salt_len < KG_SCRYPT_SALT_MIN ||
	    h->salt_len > KG_SCRYPT_SALT_MAX || h->hash_len < KG_SCRYPT_HASH_MIN ||
	    h->hash_len > KG_SCRYPT_HASH_MAX)
		return 0;
	if (!put_str(out, cap, &n, "$scrypt$ln=") || !put_uint(out, cap, &n, h->ln) ||
	    !put_str(out, cap, &n, ",r=") || !put_uint(out, cap, &n, h->r) ||
	    !put_str(out, cap, &n, ",p=") || !put_uint(out, cap, &n, h->p) ||
	    !put_str(out, cap, &n, "$"))
		return 0;
	k = kg_b64_encode(h->salt, h->salt_len, false, out + n, cap - n);
	if (k == 0)
		return 0;
	n += k;
	if (!put_str(out, cap, &n, "$"))
		return 0;
	k = kg_b64_encode(h->hash, h->hash_len, false, out + n, cap - n);
	if (k == 0)
		return 0;
	return n + k;
}

/* ---- access tokens ------------------------------------------------------------ */

bool kg_token_ok(const char *tok, size_t len, const char **why)
{
	if (len < KG_TOKEN_MIN)
		return fail(why, "an access token under 8 bytes");
	if (len > KG_TOKEN_MAX)
		return fail(why, "an access token over 256 bytes");
	for (size_t i = 0; i < len; i++)
		if (tok[i] < 0x21 || tok[i] > 0x7e)
			return fail(why, "an access token with a byte outside printable ASCII");
	return true;
}

bool kg_token_hash_ok(const char *hex, size_t len)
{
	if (len != KG_TOKEN_HASH_HEX_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
			return false;
	return true;
}

void kg_hex_lower(const uint8_t *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * n] = '\0';
}

bool kg_cred_equal(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}
