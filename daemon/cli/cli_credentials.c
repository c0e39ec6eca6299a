/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_credentials.c - device secrets beside X.509 (issue 15): make them for `device
 * add --auth sas|token|basic` and `device import`, show and rotate them with `device
 * credentials`. The rules for --auth and the options beside it, and the checks of a
 * given secret, live here once (kg_cli_auth_resolve, kg_cli_cred_check) for both the
 * command line and import's columns.
 *
 * A secret the operator gives (import's secret column, --password-stdin) is checked and
 * stored in its stored form; any other comes from RAND_bytes. The stored forms are
 * docs/credentials.md's: a SAS key as padded base64 (32 bytes when made here; the HMAC
 * needs the key itself), an access token as its SHA-256 hex (made here: a 32-byte
 * base64url token), a password as a scrypt PHC string with the documented defaults
 * (OpenSSL's SCRYPT KDF, maxmem from kg_scrypt_mem(): OpenSSL's own 32 MiB cap refuses
 * ln=15,r=8). Each stored form is
 * checked with the pure parser that will read it back. The secret a device sends is
 * printed once and wiped; show/list print kinds, slots, user names and times only.
 * The daemon does not check these credentials yet (listeners typed tls/plain: next).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "cli/cli_credentials.h"
#include "ops/err.h"
#include "policy/credential.h"

#define SAS_KEY_BYTES 32        /* as Azure generates them */
#define TOKEN_BYTES 32          /* 43 base64url characters */
#define PASSWORD_BYTES 24       /* 32 base64url characters */
#define SCRYPT_SALT_BYTES 16
#define SCRYPT_HASH_BYTES 32

int kg_cli_auth_parse(const char *s, enum kg_attestation *out)
{
	if (strcmp(s, "x509") == 0) {
		*out = KG_ATT_CA;
		return 0;
	}
	/* "ca" is the registry's word, not the CLI's: one spelling per kind. */
	if (strcmp(s, "ca") == 0 || kg_attestation_parse(s, out) != 0)
		return -1;
	return 0;
}

const char *kg_cli_auth_str(enum kg_attestation a)
{
	return a == KG_ATT_CA ? "x509" : kg_attestation_str(a);
}

void kg_cli_secret_print(const struct kg_credential *c, const struct kg_cli_secret *shown)
{
	if (c->username[0] != '\0')
		printf("username: %s\n", c->username);
	if (c->kind == KG_ATT_SAS)
		printf("%s-%s: %s\n", kg_cred_slot_str(c->slot), shown->label, shown->value);
	else
		printf("%s: %s\n", shown->label, shown->value);
}

void kg_cli_secret_json_add(struct json_object *o, const struct kg_credential *c,
			    const struct kg_cli_secret *shown)
{
	json_object_object_add(o, "slot", json_object_new_string(kg_cred_slot_str(c->slot)));
	json_object_object_add(o, "username", kg_cli_json_str_or_null(c->username));
	json_object_object_add(o, shown->label, json_object_new_string(shown->value));
}

void kg_cli_secret_wipe(struct kg_cli_secret *s)
{
	OPENSSL_cleanse(s->value, sizeof(s->value));
}

int kg_cli_read_password(const char *cmd, char out[KG_CLI_PASSWORD_MAX + 1])
{
	char *line = NULL;
	size_t cap = 0, len;
	ssize_t got = getline(&line, &cap, stdin);
	int rc = KG_EXIT_OK;

	if (got <= 0) {
		kg_cli_err("%s: --password-stdin: no password on stdin", cmd);
		rc = KG_EXIT_USAGE;
		goto out;
	}
	len = (size_t)got;
	if (line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	/* One line: a NUL or a second line is not part of any password we could store. */
	if (len < KG_CLI_PASSWORD_MIN || len > KG_CLI_PASSWORD_MAX || memchr(line, '\0', len) != NULL ||
	    getchar() != EOF) {
		kg_cli_err("%s: --password-stdin: the password must be %d..%d bytes on one line", cmd,
			   KG_CLI_PASSWORD_MIN, KG_CLI_PASSWORD_MAX);
		rc = KG_EXIT_USAGE;
		goto out;
	}
	memcpy(out, line, len);
	out[len] = '\0';
out:
	if (line != NULL)
		OPENSSL_cleanse(line, cap);
	free(line);
	return rc;
}

static int random_bytes(uint8_t *buf, size_t n, char *why, size_t cap)
{
	if (RAND_bytes(buf, (int)n) != 1) {
		snprintf(why, cap, "the random generator failed");
		return KG_EXIT_RUNTIME;
	}
	return KG_EXIT_OK;
}

/* n random bytes as unpadded base64url (RFC 4648 section 5): fits an MQTT user name
 * and a shell line unquoted. Never begins with '-' (drawn again, one time in 64): a
 * secret that looks like an option is taken for one by the clients it is pasted into
 * (`mosquitto_pub -P "$TOKEN"` is fine, argparse's `--password "$TOKEN"` is not). The
 * first character then has 63 values: 5.98 bits instead of 6. */
static int random_b64url(size_t n, char *out, size_t cap, char *why, size_t whycap)
{
	uint8_t raw[64];
	int rc;

	if (n > sizeof(raw))
		return KG_EXIT_RUNTIME;
	do {
		if ((rc = random_bytes(raw, n, why, whycap)) != KG_EXIT_OK)
			return rc;
		if (kg_b64_encode(raw, n, false, out, cap) == 0) {
			OPENSSL_cleanse(raw, sizeof(raw));
			snprintf(why, whycap, "cannot encode random bytes");
			return KG_EXIT_RUNTIME;
		}
		OPENSSL_cleanse(raw, sizeof(raw));
		for (char *p = out; *p != '\0'; p++) {
			if (*p == '+')
				*p = '-';
			else if (*p == '/')
				*p = '_';
		}
	} while (out[0] == '-');
	return KG_EXIT_OK;
}

/* A SAS key: the given one (checked by kg_cli_cred_check) or 32 random bytes. */
static int make_sas(const char *given, struct kg_credential *c, struct kg_cli_secret *shown,
		    char *why, size_t cap)
{
	uint8_t raw[SAS_KEY_BYTES], check[KG_SAS_KEY_MAX];
	const char *pwhy = NULL;
	int rc;

	if (given != NULL) {
		(void)kg_strlcpy(c->secret, given, sizeof(c->secret));
		shown->label = "key";
		(void)kg_strlcpy(shown->value, given, sizeof(shown->value));
		return KG_EXIT_OK;
	}
	if ((rc = random_bytes(raw, sizeof(raw), why, cap)) != KG_EXIT_OK)
		return rc;
	if (kg_b64_encode(raw, sizeof(raw), true, c->secret, sizeof(c->secret)) == 0 ||
	    kg_sas_key_decode(c->secret, strlen(c->secret), check, &pwhy) != sizeof(raw)) {
		snprintf(why, cap, "cannot encode the key%s%s", pwhy != NULL ? ": " : "",
			 pwhy != NULL ? pwhy : "");
		rc = KG_EXIT_RUNTIME;
	} else {
		shown->label = "key";
		(void)kg_strlcpy(shown->value, c->secret, sizeof(shown->value));
	}
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(check, sizeof(check));
	return rc;
}

/* An access token: the given one or 32 random bytes as base64url; stored as its
 * SHA-256 in lowercase hex. */
static int make_token(const char *given, struct kg_credential *c, struct kg_cli_secret *shown,
		      char *why, size_t cap)
{
	uint8_t md[32];
	unsigned int mdlen = 0;
	const char *pwhy = NULL;
	int rc;

	if (given != NULL)
		(void)kg_strlcpy(shown->value, given, sizeof(shown->value));
	else if ((rc = random_b64url(TOKEN_BYTES, shown->value, sizeof(shown->value), why, cap)) !=
		 KG_EXIT_OK)
		return rc;
	if (!kg_token_ok(shown->value, strlen(shown->value), &pwhy) ||
	    EVP_Digest(shown->value, strlen(shown->value), md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != sizeof(md)) {
		snprintf(why, cap, "cannot make a token%s%s", pwhy != NULL ? ": " : "", pwhy != NULL ? pwhy : "");
		return KG_EXIT_RUNTIME;
	}
	kg_hex_lower(md, sizeof(md), c->secret);
	shown->label = "token";
	return KG_EXIT_OK;
}

/* scrypt of pw with h's parameters and salt into h->hash (h->hash_len bytes). */
static int scrypt_derive(const char *pw, size_t len, struct kg_scrypt *h)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
	EVP_KDF_CTX *ctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	uint64_t n = (uint64_t)1 << h->ln, maxmem = kg_scrypt_mem(h);
	uint32_t r = h->r, p = h->p;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)pw, len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, h->salt, h->salt_len),
		OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
		OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
		OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
		/* OpenSSL's default cap (32 MiB) is below what ln=15,r=8 needs. */
		OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
		OSSL_PARAM_construct_end(),
	};
	int rc = ctx != NULL && EVP_KDF_derive(ctx, h->hash, h->hash_len, params) == 1 ? 0 : -1;

	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return rc;
}

/* A password (given, or 24 random bytes as base64url) hashed with scrypt at the
 * documented defaults; username already checked by kg_cli_cred_check. */
static int make_basic(const char *username, const char *password, struct kg_credential *c,
		      struct kg_cli_secret *shown, char *why, size_t cap)
{
	struct kg_scrypt h = {
		.ln = KG_SCRYPT_DEFAULT_LN, .r = KG_SCRYPT_DEFAULT_R, .p = KG_SCRYPT_DEFAULT_P,
		.salt_len = SCRYPT_SALT_BYTES, .hash_len = SCRYPT_HASH_BYTES,
	};
	struct kg_scrypt back;
	const char *pwhy = NULL;
	int rc;

	(void)kg_strlcpy(c->username, username, sizeof(c->username));
	if (password != NULL)
		(void)kg_strlcpy(shown->value, password, sizeof(shown->value));
	else if ((rc = random_b64url(PASSWORD_BYTES, shown->value, sizeof(shown->value), why, cap)) !=
		 KG_EXIT_OK)
		return rc;
	shown->label = "password";
	if ((rc = random_bytes(h.salt, h.salt_len, why, cap)) != KG_EXIT_OK)
		return rc;
	if (scrypt_derive(shown->value, strlen(shown->value), &h) != 0) {
		snprintf(why, cap, "scrypt failed (OpenSSL)");
		return KG_EXIT_RUNTIME;
	}
	/* Stored in the form the CONNECT check will parse: prove it parses. */
	if (kg_scrypt_format(&h, c->secret, sizeof(c->secret)) == 0 ||
	    !kg_scrypt_parse(c->secret, strlen(c->secret), &back, &pwhy) ||
	    back.hash_len != h.hash_len || memcmp(back.hash, h.hash, h.hash_len) != 0) {
		snprintf(why, cap, "cannot format the password hash%s%s", pwhy != NULL ? ": " : "",
			 pwhy != NULL ? pwhy : "");
		return KG_EXIT_RUNTIME;
	}
	return KG_EXIT_OK;
}

int kg_cli_auth_resolve(const struct kg_cli_auth_req *q, const char *opt, enum kg_attestation *out,
			char *why, size_t cap)
{
	enum kg_attestation a = q->pinned ? KG_ATT_THUMBPRINT : KG_ATT_CA;

	/* The kind named wins; without one, a pinned leaf makes a thumbprint device, and
	 * nothing else an x509 (CA) one. */
	if (q->has_auth) {
		if (q->auth == KG_ATT_THUMBPRINT && !q->pinned) {
			snprintf(why, cap, "%sauth thumbprint needs %sthumbprint or %scert", opt, opt, opt);
			return -1;
		}
		if (q->auth != KG_ATT_THUMBPRINT && q->pinned) {
			snprintf(why, cap, "%sthumbprint/%scert pin a leaf: that is %sauth thumbprint, not %s",
				 opt, opt, opt, kg_cli_auth_str(q->auth));
			return -1;
		}
		a = q->auth;
	}
	if (q->username && a != KG_ATT_BASIC) {
		snprintf(why, cap, "%susername goes with %sauth basic", opt, opt);
		return -1;
	}
	if (q->password && a != KG_ATT_BASIC) {
		snprintf(why, cap, "%spassword-stdin goes with %sauth basic", opt, opt);
		return -1;
	}
	if (q->secret && !kg_attestation_has_secret(a)) {
		snprintf(why, cap, "%ssecret goes with %sauth sas|token|basic, not %s", opt, opt,
			 kg_cli_auth_str(a));
		return -1;
	}
	if (q->secondary_secret && (a != KG_ATT_SAS || !q->secret)) {
		snprintf(why, cap, "%ssecondary_secret goes with %sauth sas and a %ssecret", opt, opt, opt);
		return -1;
	}
	*out = a;
	return 0;
}

int kg_cli_cred_check(enum kg_attestation kind, const char *username, const char *given,
		      const char *opt, char *why, size_t cap)
{
	uint8_t key[KG_SAS_KEY_MAX];
	const char *pwhy = NULL;
	size_t len;

	switch (kind) {
	case KG_ATT_SAS:
		if (given != NULL && kg_sas_key_decode(given, strlen(given), key, &pwhy) == 0) {
			OPENSSL_cleanse(key, sizeof(key));
			snprintf(why, cap, "%ssecret: not a SAS key (%s)", opt,
				 pwhy != NULL ? pwhy : "padded base64 of 16..64 bytes");
			return KG_EXIT_USAGE;
		}
		OPENSSL_cleanse(key, sizeof(key));
		return KG_EXIT_OK;
	case KG_ATT_TOKEN:
		if (given != NULL && !kg_token_ok(given, strlen(given), &pwhy)) {
			snprintf(why, cap, "%ssecret: not an access token (%s)", opt,
				 pwhy != NULL ? pwhy : "8..256 bytes of 0x21..0x7e");
			return KG_EXIT_USAGE;
		}
		return KG_EXIT_OK;
	case KG_ATT_BASIC:
		len = strnlen(username, KG_CRED_USERNAME_MAX + 1);
		if (len == 0 || len > KG_CRED_USERNAME_MAX) {
			snprintf(why, cap, "%susername must be 1..%d bytes", opt, KG_CRED_USERNAME_MAX);
			return KG_EXIT_USAGE;
		}
		for (size_t i = 0; i < len; i++) {
			if ((unsigned char)username[i] < 0x21 || (unsigned char)username[i] > 0x7e) {
				snprintf(why, cap, "%susername: printable ASCII without spaces only", opt);
				return KG_EXIT_USAGE;
			}
		}
		len = given != NULL ? strlen(given) : KG_CLI_PASSWORD_MIN;
		if (len < KG_CLI_PASSWORD_MIN || len > KG_CLI_PASSWORD_MAX) {
			snprintf(why, cap, "%ssecret: a password must be %d..%d bytes", opt,
				 KG_CLI_PASSWORD_MIN, KG_CLI_PASSWORD_MAX);
			return KG_EXIT_USAGE;
		}
		return KG_EXIT_OK;
	default:
		snprintf(why, cap, "%s devices have no secret", kg_cli_auth_str(kind));
		return KG_EXIT_USAGE;
	}
}

int kg_cli_cred_build(enum kg_attestation kind, enum kg_cred_slot slot, const char *username,
		      const char *given, struct kg_credential *c, struct kg_cli_secret *shown,
		      char *why, size_t cap)
{
	int rc;

	memset(c, 0, sizeof(*c));
	memset(shown, 0, sizeof(*shown));
	c->kind = kind;
	c->slot = slot;
	if ((rc = kg_cli_cred_check(kind, username, given, "", why, cap)) != KG_EXIT_OK)
		return rc;
	switch (kind) {
	case KG_ATT_SAS:
		return make_sas(given, c, shown, why, cap);
	case KG_ATT_TOKEN:
		return make_token(given, c, shown, why, cap);
	default:
		return make_basic(username, given, c, shown, why, cap);
	}
}

int kg_cli_cred_make(const char *cmd, enum kg_attestation kind, enum kg_cred_slot slot,
		     const char *username, const char *password, struct kg_credential *c,
		     struct kg_cli_secret *shown)
{
	char why[256];
	int rc;

	/* The option names of device add / --rotate in the messages ("--username ..."). */
	if ((rc = kg_cli_cred_check(kind, username, password, "--", why, sizeof(why))) == KG_EXIT_OK)
		rc = kg_cli_cred_build(kind, slot, username, password, c, shown, why, sizeof(why));
	if (rc != KG_EXIT_OK)
		kg_cli_err("%s: %s", cmd, why);
	return rc;
}

struct json_object *kg_cli_cred_summary_json(const struct kg_credential *c, size_t n)
{
	struct json_object *arr = json_object_new_array();

	for (size_t i = 0; arr != NULL && i < n; i++) {
		struct json_object *o = json_object_new_object();

		if (o == NULL || json_object_array_add(arr, o) != 0) {
			json_object_put(o);
			json_object_put(arr);
			return NULL;
		}
		json_object_object_add(o, "kind", json_object_new_string(kg_attestation_str(c[i].kind)));
		json_object_object_add(o, "slot", json_object_new_string(kg_cred_slot_str(c[i].slot)));
		json_object_object_add(o, "username", kg_cli_json_str_or_null(c[i].username));
		json_object_object_add(o, "created_at", json_object_new_int64(c[i].created_at));
	}
	return arr;
}

static int show(const struct kg_device *d, const struct kg_credential *c, size_t n, bool json)
{
	char t[32];

	if (json) {
		struct json_object *o = json_object_new_object(), *arr = kg_cli_cred_summary_json(c, n);

		if (o == NULL || arr == NULL) {
			json_object_put(o);
			json_object_put(arr);
			kg_cli_err("out of memory");
			return KG_EXIT_RUNTIME;
		}
		json_object_object_add(o, "id", json_object_new_string(d->id));
		json_object_object_add(o, "attestation",
				       json_object_new_string(kg_attestation_str(d->attestation)));
		json_object_object_add(o, "credentials", arr);
		kg_cli_json_print(o);
		return KG_EXIT_OK;
	}
	printf("device %s: attestation %s, %zu credential(s)\n", d->id,
	       kg_attestation_str(d->attestation), n);
	if (n == 0)
		return KG_EXIT_OK;
	printf("%-6s %-10s %-24s %s\n", "KIND", "SLOT", "USERNAME", "CREATED");
	for (size_t i = 0; i < n; i++) {
		kg_cli_fmt_time(c[i].created_at, t, sizeof(t));
		printf("%-6s %-10s %-24s %s\n", kg_attestation_str(c[i].kind),
		       kg_cred_slot_str(c[i].slot), c[i].username[0] != '\0' ? c[i].username : "-", t);
	}
	return KG_EXIT_OK;
}

/* The user name a rotated basic slot keeps: the slot's own, else the other slot's. */
static const char *basic_username(const struct kg_credential *c, size_t n, enum kg_cred_slot slot,
				  const char *fallback)
{
	const char *other = NULL;

	for (size_t i = 0; i < n; i++) {
		if (c[i].kind != KG_ATT_BASIC)
			continue;
		if (c[i].slot == slot)
			return c[i].username;
		other = c[i].username;
	}
	return other != NULL ? other : fallback;
}

/*
 * Make a new secret for one slot of the device's own kind and print it once. SAS
 * default: the secondary (devices on the primary keep working while they move: Azure's
 * rotation); token and basic: the primary, replaced.
 */
static int rotate(struct kg_cli *cli, struct kg_registry *reg, const struct kg_device *d,
		  const struct kg_credential *c, size_t n, int slot_opt, bool pw_stdin, bool json)
{
	const char *cmd = "device credentials";
	char pw[KG_CLI_PASSWORD_MAX + 1], text[128];
	struct kg_cli_secret shown;
	struct kg_credential nc;
	enum kg_cred_slot slot;
	int rc;

	if (!kg_attestation_has_secret(d->attestation)) {
		kg_cli_err("device %s: attestation %s has no secret to rotate (a certificate rotates with"
			   " device set --thumbprint/--secondary, or at its CA)", d->id,
			   kg_attestation_str(d->attestation));
		return KG_EXIT_REFUSED;
	}
	if (pw_stdin && d->attestation != KG_ATT_BASIC)
		return kg_cli_usage_err("%s: --password-stdin is for basic devices, %s is %s", cmd, d->id,
					kg_attestation_str(d->attestation));
	if (slot_opt >= 0)
		slot = (enum kg_cred_slot)slot_opt;
	else
		slot = d->attestation == KG_ATT_SAS ? KG_CRED_SECONDARY : KG_CRED_PRIMARY;
	if (pw_stdin && (rc = kg_cli_read_password(cmd, pw)) != KG_EXIT_OK)
		return rc;
	rc = kg_cli_cred_make(cmd, d->attestation, slot, basic_username(c, n, slot, d->id),
			      pw_stdin ? pw : NULL, &nc, &shown);
	OPENSSL_cleanse(pw, sizeof(pw));
	if (rc != KG_EXIT_OK)
		return rc;
	rc = kg_registry_cred_set(reg, d->id, &nc);
	if (rc != 0) {
		kg_cli_err("device %s: cannot store the new %s: %s", d->id, shown.label,
			   rc == KG_E_EXISTS ? reg->errmsg : kg_registry_strerror(reg, rc));
		kg_cli_secret_wipe(&shown);
		return kg_cli_exit_for(rc);
	}
	if (json) {
		struct json_object *o = json_object_new_object();

		if (o == NULL) {
			kg_cli_secret_wipe(&shown);
			kg_cli_err("out of memory (the new secret is stored: rotate again)");
			return KG_EXIT_RUNTIME;
		}
		json_object_object_add(o, "id", json_object_new_string(d->id));
		json_object_object_add(o, "kind", json_object_new_string(kg_attestation_str(nc.kind)));
		kg_cli_secret_json_add(o, &nc, &shown);
		kg_cli_json_print(o);
	} else {
		printf("device %s: new %s %s in slot %s\n", d->id, kg_attestation_str(nc.kind),
		       shown.label, kg_cred_slot_str(slot));
		kg_cli_secret_print(&nc, &shown);   /* as `device add` prints it */
	}
	kg_cli_secret_wipe(&shown);
	fflush(stdout);
	fprintf(stderr, "ktlsgate: the %s above is shown once: give it to the device now\n",
		shown.label);
	rc = kg_cli_notify(cli, "device-changed", d->id, text, sizeof(text));
	return rc == KG_EXIT_RUNTIME ? KG_EXIT_RUNTIME : KG_EXIT_OK;
}

int kg_cli_device_credentials(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rotate", no_argument, NULL, 'R' },
		{ "slot", required_argument, NULL, 'l' },
		{ "password-stdin", no_argument, NULL, 'P' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = "device credentials", *id;
	struct kg_credential creds[KG_CRED_PER_DEVICE];
	bool do_rotate = false, pw_stdin = false, json = false;
	struct kg_registry *reg = NULL;
	enum kg_cred_slot sl;
	struct kg_device d;
	size_t n = 0;
	int slot = -1, c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'R':
			do_rotate = true;
			break;
		case 'l':
			if (kg_cred_slot_parse(optarg, &sl) != 0)
				return kg_cli_usage_err("%s: bad slot '%s' (primary|secondary)", cmd, optarg);
			slot = (int)sl;
			break;
		case 'P':
			pw_stdin = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(kg_cli_usage_device, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, cmd);
		}
	}
	if (argc - optind != 1)
		return kg_cli_usage_err("%s: expected one device ID", cmd);
	id = argv[optind];
	if ((rc = kg_cli_check_device_id(cmd, id)) != KG_EXIT_OK)
		return rc;
	if (!do_rotate && (slot >= 0 || pw_stdin))
		return kg_cli_usage_err("%s: --slot and --password-stdin go with --rotate", cmd);
	if ((rc = kg_cli_setup(cli, true)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_open_registry(cli, do_rotate ? KG_REG_READWRITE : KG_REG_READONLY, true,
				       &reg)) != KG_EXIT_OK)
		return rc;
	rc = kg_registry_device_get(reg, id, &d);
	if (rc == 0)
		rc = kg_registry_cred_get(reg, id, creds, &n);
	if (rc != 0) {
		kg_cli_err("device %s: %s", id, rc == KG_E_NOTFOUND ? "no such device" : kg_registry_strerror(reg, rc));
		rc = kg_cli_exit_for(rc);
		goto out;
	}
	rc = do_rotate ? rotate(cli, reg, &d, creds, n, slot, pw_stdin, json) : show(&d, creds, n, json);
out:
	OPENSSL_cleanse(creds, sizeof(creds));
	kg_registry_close(reg);
	return rc;
}
