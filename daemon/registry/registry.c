/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * registry.c - the store-independent half of the identity registry: picks a store
 * from the location, validates and normalises every argument once (so each store
 * only talks to its database), generates PoP challenges, and dispatches through the
 * store's ops table. Also the status / attestation string tables.
 *
 * Invariants a store may rely on: every pointer argument is non-NULL, every string
 * is NUL-terminated inside its fixed buffer, thumbprints and CA digests are empty or
 * 64 lowercase hex chars, enums are in range, a CA passed to ca_add carries a fresh
 * challenge and verified == false (one passed to import: verified with no challenge, or
 * pending with a lowercase hex one), and a credential has the shape of its kind (a token
 * hash lowercase, a user name only for basic).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ops/err.h"
#include "ops/log.h"
#include "registry/registry.h"
#include "registry/registry_cache.h"

static const char *const status_names[KG_DEV_STATUS_MAX] = {
	[KG_DEV_ENABLED] = "enabled",
	[KG_DEV_DISABLED] = "disabled",
	[KG_DEV_SUSPENDED] = "suspended",
	[KG_DEV_QUARANTINED] = "quarantined",
	[KG_DEV_DECOMMISSIONED] = "decommissioned",
};

static const char *const ca_status_names[KG_CA_STATUS_MAX] = {
	[KG_CA_ENABLED] = "enabled",
	[KG_CA_DISABLED] = "disabled",
	[KG_CA_REVOKED] = "revoked",
};

/* Also the words of [daemon] username_check (config.c has its own table). */
static const char *const username_check_names[] = {
	[KG_USERNAME_STRICT] = "strict",
	[KG_USERNAME_REWRITE] = "rewrite",
	[KG_USERNAME_PASS] = "pass",
};

static const char *const attestation_names[KG_ATT_MAX] = {
	[KG_ATT_CA] = "ca",
	[KG_ATT_THUMBPRINT] = "thumbprint",
	[KG_ATT_SAS] = "sas",
	[KG_ATT_TOKEN] = "token",
	[KG_ATT_BASIC] = "basic",
};

static const char *const slot_names[KG_CRED_SLOT_MAX] = {
	[KG_CRED_PRIMARY] = "primary",
	[KG_CRED_SECONDARY] = "secondary",
};

/* Index of s in names[0..n), or -1. */
static int name_index(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s != NULL && i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

const char *kg_device_status_str(enum kg_device_status s)
{
	if ((unsigned)s >= KG_DEV_STATUS_MAX)
		return "unknown";
	return status_names[s];
}

int kg_device_status_parse(const char *s, enum kg_device_status *out)
{
	int i = name_index(status_names, KG_NITEMS(status_names), s);

	if (i < 0 || out == NULL)
		return KG_E_INVALID;
	*out = (enum kg_device_status)i;
	return 0;
}

const char *kg_attestation_str(enum kg_attestation a)
{
	if ((unsigned)a >= KG_ATT_MAX)
		return "unknown";
	return attestation_names[a];
}

int kg_attestation_parse(const char *s, enum kg_attestation *out)
{
	int i = name_index(attestation_names, KG_NITEMS(attestation_names), s);

	if (i < 0 || out == NULL)
		return KG_E_INVALID;
	*out = (enum kg_attestation)i;
	return 0;
}

const char *kg_cred_slot_str(enum kg_cred_slot s)
{
	if ((unsigned)s >= KG_CRED_SLOT_MAX)
		return "unknown";
	return slot_names[s];
}

int kg_cred_slot_parse(const char *s, enum kg_cred_slot *out)
{
	int i = name_index(slot_names, KG_NITEMS(slot_names), s);

	if (i < 0 || out == NULL)
		return KG_E_INVALID;
	*out = (enum kg_cred_slot)i;
	return 0;
}

const char *kg_ca_status_str(enum kg_ca_status s)
{
	if ((unsigned)s >= KG_CA_STATUS_MAX)
		return "unknown";
	return ca_status_names[s];
}

int kg_ca_status_parse(const char *s, enum kg_ca_status *out)
{
	int i = name_index(ca_status_names, KG_NITEMS(ca_status_names), s);

	if (i < 0 || out == NULL)
		return KG_E_INVALID;
	*out = (enum kg_ca_status)i;
	return 0;
}

const char *kg_username_check_str(enum kg_username_check m)
{
	if ((unsigned)m >= KG_NITEMS(username_check_names))
		return "unknown";
	return username_check_names[m];
}

int kg_username_check_parse(const char *s, enum kg_username_check *out)
{
	int i = name_index(username_check_names, KG_NITEMS(username_check_names), s);

	if (i < 0 || out == NULL)
		return KG_E_INVALID;
	*out = (enum kg_username_check)i;
	return 0;
}

void kg_ca_fini(struct kg_ca *ca)
{
	if (ca == NULL)
		return;
	free(ca->pem);
	ca->pem = NULL;
}

/* ---- argument checks ------------------------------------------------------ */

/* A fixed buffer holds a NUL-terminated string (callers fill them by hand). */
static bool terminated(const char *buf, size_t cap)
{
	return memchr(buf, '\0', cap) != NULL;
}

/*
 * Copy a SHA-256 hex string (either case, as an operator may paste it) into dst in
 * lowercase, the only form the stores hold. Empty stays empty when allow_empty.
 */
static bool norm_hex64(char dst[KG_SHA256_HEX_LEN + 1], const char *src, size_t cap,
		       bool allow_empty)
{
	size_t len = strnlen(src, cap);

	if (len == 0 && allow_empty) {
		dst[0] = '\0';
		return true;
	}
	if (len != KG_SHA256_HEX_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!isxdigit((unsigned char)src[i]))
			return false;
		dst[i] = (char)tolower((unsigned char)src[i]);
	}
	dst[len] = '\0';
	return true;
}

/* Validate a device row and return a normalised copy in *out. */
static int check_device(const struct kg_device *dev, struct kg_device *out)
{
	if (dev == NULL)
		return KG_E_INVALID;
	*out = *dev;
	if (!terminated(dev->id, sizeof(dev->id)) || dev->id[0] == '\0')
		return KG_E_INVALID;
	if ((unsigned)dev->status >= KG_DEV_STATUS_MAX || (unsigned)dev->attestation >= KG_ATT_MAX)
		return KG_E_INVALID;
	if (!norm_hex64(out->thumb_primary, dev->thumb_primary, sizeof(dev->thumb_primary), true) ||
	    !norm_hex64(out->thumb_secondary, dev->thumb_secondary, sizeof(dev->thumb_secondary), true))
		return KG_E_INVALID;
	/* The secondary is the next leaf during a rotation: meaningless without a primary. */
	if (out->thumb_primary[0] == '\0' && out->thumb_secondary[0] != '\0')
		return KG_E_INVALID;
	/* A pinned device with nothing pinned could never connect. */
	if (dev->attestation == KG_ATT_THUMBPRINT && out->thumb_primary[0] == '\0')
		return KG_E_INVALID;
	if (!terminated(dev->backend, sizeof(dev->backend)) ||
	    !terminated(dev->ca_name, sizeof(dev->ca_name)))
		return KG_E_INVALID;
	return 0;
}

static bool valid_name(const char *name)
{
	return name != NULL && name[0] != '\0' && strnlen(name, KG_NAME_MAX) < KG_NAME_MAX;
}

static bool valid_device_id(const char *id)
{
	return id != NULL && id[0] != '\0' && strnlen(id, KG_DEVICE_ID_MAX + 1) <= KG_DEVICE_ID_MAX;
}

/* ---- opening --------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *msg)
{
	if (err != NULL && errlen > 0)
		(void)kg_strlcpy(err, msg, errlen);
}

int kg_registry_open(const char *location, enum kg_registry_mode mode, struct kg_registry **out,
		     char *err, size_t errlen)
{
	set_err(err, errlen, "");
	if (out == NULL || location == NULL || location[0] == '\0' ||
	    (mode != KG_REG_READONLY && mode != KG_REG_READWRITE)) {
		set_err(err, errlen, "registry: no location given");
		return KG_E_INVALID;
	}
	*out = NULL;
	if (strncmp(location, "postgresql://", 13) == 0 || strncmp(location, "postgres://", 11) == 0)
		return kg_registry_pg_open(location, mode, out, err, errlen);
	return kg_registry_sqlite_open(location, mode, out, err, errlen);
}

int kg_registry_version(const char *location, int *version, char *err, size_t errlen)
{
	set_err(err, errlen, "");
	if (version == NULL || location == NULL || location[0] == '\0') {
		set_err(err, errlen, "registry: no location given");
		return KG_E_INVALID;
	}
	*version = 0;
	if (strncmp(location, "postgresql://", 13) == 0 || strncmp(location, "postgres://", 11) == 0)
		return kg_registry_pg_version(location, version, err, errlen);
	/* A missing file is a registry not created yet, as a read-write open would make it;
	 * asking SQLite would fail (read-only opens never create). */
	if (access(location, F_OK) != 0 && errno == ENOENT)
		return 0;
	return kg_registry_sqlite_version(location, version, err, errlen);
}

const char *kg_registry_strerror(const struct kg_registry *reg, int err)
{
	if (reg != NULL && reg->errmsg[0] != '\0' && err != KG_E_NOTFOUND && err != KG_E_EXISTS)
		return reg->errmsg;
	return kg_err_str(err);
}

void kg_registry_close(struct kg_registry *reg)
{
	if (reg != NULL)
		reg->ops->close(reg);
}

int kg_registry_schema_version(struct kg_registry *reg)
{
	if (reg == NULL)
		return KG_E_INVALID;
	return reg->ops->schema_version(reg);
}

/* ---- devices --------------------------------------------------------------- */

/* ---- the hot-path view (registry_cache.h) -------------------------------- */

void kg_registry_set_cache(struct kg_registry *reg, struct kg_regcache *cache)
{
	if (reg != NULL)
		reg->cache = cache;
}

bool kg_registry_served_failopen(const struct kg_registry *reg)
{
	return reg != NULL && reg->failopen;
}

/* The cache may be stale (the watcher is disconnected): nothing is read from the
 * store (it is down, or an answer could not be trusted to stay true), only the rule
 * answers. */
static int unavailable(struct kg_registry *reg)
{
	snprintf(reg->errmsg, sizeof(reg->errmsg), "registry unavailable (change watcher disconnected)");
	return KG_E_IO;
}

/* A store read's outcome feeds the down state: KG_E_IO is down, an answer up. */
static int note_read(struct kg_registry *reg, int rc)
{
	if (rc == 0 || rc == KG_E_NOTFOUND)
		kg_regcache_read_ok(reg->cache, true);
	else if (rc == KG_E_IO)
		kg_regcache_read_ok(reg->cache, false);
	return rc;
}

static int cached_device_get(struct kg_registry *reg, const char *id, struct kg_device *out)
{
	struct kg_regcache *c = reg->cache;
	uint64_t gen;
	int rc;

	if (kg_regcache_stale(c)) {
		if (kg_regcache_fail_open(c) && kg_regcache_recent(c, id, (int64_t)time(NULL), out)) {
			reg->failopen = true;
			return 0;
		}
		return unavailable(reg);
	}
	switch (kg_regcache_device(c, id, out)) {
	case KG_RC_FOUND:
		return 0;
	case KG_RC_NONE:
		return KG_E_NOTFOUND;
	default:
		break;
	}
	gen = kg_regcache_gen(c);
	rc = note_read(reg, reg->ops->device_get(reg, id, out));
	if (rc == 0 || rc == KG_E_NOTFOUND)
		kg_regcache_put_device(c, gen, id, rc == 0 ? out : NULL);
	return rc;
}

static int cached_find_thumbprint(struct kg_registry *reg, const char *hex, struct kg_device *out)
{
	struct kg_regcache *c = reg->cache;
	uint64_t gen;
	int rc;

	if (kg_regcache_stale(c)) {
		if (kg_regcache_fail_open(c) && kg_regcache_thumb(c, hex, out) == KG_RC_FOUND &&
		    kg_regcache_recent(c, out->id, (int64_t)time(NULL), out)) {
			reg->failopen = true;
			return 0;
		}
		return unavailable(reg);
	}
	switch (kg_regcache_thumb(c, hex, out)) {
	case KG_RC_FOUND:
		return 0;
	case KG_RC_NONE:
		return KG_E_NOTFOUND;
	default:
		break;
	}
	gen = kg_regcache_gen(c);
	rc = note_read(reg, reg->ops->device_find_thumbprint(reg, hex, out));
	if (rc == 0 || rc == KG_E_NOTFOUND)
		kg_regcache_put_thumb(c, gen, hex, rc == 0 ? out : NULL);
	return rc;
}

static int cached_cred_get(struct kg_registry *reg, const char *id,
			   struct kg_credential out[KG_CRED_PER_DEVICE], size_t *n)
{
	struct kg_regcache *c = reg->cache;
	uint64_t gen;
	int rc;

	/* Stale: a cached answer serves only the fail-open rule, which device_get
	 * enforces (a device not admitted recently gets no further). */
	if (kg_regcache_creds(c, id, out, n) == KG_RC_FOUND)
		return 0;
	if (kg_regcache_stale(c))
		return unavailable(reg);
	gen = kg_regcache_gen(c);
	rc = note_read(reg, reg->ops->cred_get(reg, id, out, n));
	if (rc == 0)
		kg_regcache_put_creds(c, gen, id, out, *n);
	return rc;
}

static int cached_cred_find(struct kg_registry *reg, enum kg_attestation kind, const char *key,
			    char *id_out)
{
	struct kg_regcache *c = reg->cache;
	uint64_t gen;
	int rc;

	switch (kg_regcache_cred_find(c, kind, key, id_out)) {
	case KG_RC_FOUND:
		return 0;
	case KG_RC_NONE:
		if (!kg_regcache_stale(c))
			return KG_E_NOTFOUND;
		break;
	default:
		break;
	}
	if (kg_regcache_stale(c))
		return unavailable(reg);
	gen = kg_regcache_gen(c);
	rc = note_read(reg, reg->ops->cred_find(reg, kind, key, id_out));
	if (rc == 0 || rc == KG_E_NOTFOUND)
		kg_regcache_put_cred_find(c, gen, kind, key, rc == 0 ? id_out : NULL);
	return rc;
}

/* ---- devices --------------------------------------------------------------- */

int kg_registry_device_get(struct kg_registry *reg, const char *id, struct kg_device *out)
{
	if (reg == NULL || out == NULL || !valid_device_id(id))
		return KG_E_INVALID;
	reg->failopen = false;
	if (reg->cache != NULL)
		return cached_device_get(reg, id, out);
	return reg->ops->device_get(reg, id, out);
}

int kg_registry_device_get_fresh(struct kg_registry *reg, const char *id, struct kg_device *out)
{
	uint64_t gen;
	int rc;

	if (reg == NULL || out == NULL || !valid_device_id(id))
		return KG_E_INVALID;
	reg->failopen = false;
	if (reg->cache == NULL)
		return reg->ops->device_get(reg, id, out);
	gen = kg_regcache_gen(reg->cache);
	rc = note_read(reg, reg->ops->device_get(reg, id, out));
	if (rc == 0 || rc == KG_E_NOTFOUND)
		kg_regcache_put_device(reg->cache, gen, id, rc == 0 ? out : NULL);
	return rc;
}

int kg_registry_device_add(struct kg_registry *reg, const struct kg_device *dev)
{
	struct kg_device d;
	int rc;

	if (reg == NULL)
		return KG_E_INVALID;
	if ((rc = check_device(dev, &d)) != 0)
		return rc;
	return reg->ops->device_add(reg, &d);
}

int kg_registry_device_add_many(struct kg_registry *reg, const struct kg_device *devs, size_t n,
				size_t *bad)
{
	return kg_registry_device_add_many_cred(reg, devs, n, NULL, NULL, 0, bad);
}

/* Below, with the credential functions. */
static int check_cred(const struct kg_credential *c, struct kg_credential *out);

int kg_registry_device_add_many_cred(struct kg_registry *reg, const struct kg_device *devs, size_t n,
				     const struct kg_credential *creds, const size_t *cred_dev,
				     size_t n_creds, size_t *bad)
{
	struct kg_credential *cnorm = NULL;
	struct kg_device *norm;
	size_t i, unused;
	int rc = 0;

	if (bad == NULL)
		bad = &unused;
	*bad = 0;
	if (reg == NULL || (devs == NULL && n != 0) ||
	    (n_creds != 0 && (creds == NULL || cred_dev == NULL)))
		return KG_E_INVALID;
	if (n == 0)
		return n_creds == 0 ? 0 : KG_E_INVALID;
	norm = calloc(n, sizeof(*norm));
	if (norm == NULL)
		return KG_E_RESOURCE;
	if (n_creds != 0 && (cnorm = calloc(n_creds, sizeof(*cnorm))) == NULL) {
		rc = KG_E_RESOURCE;
		goto out;
	}
	/* Every row is checked before the store sees any of them. */
	for (i = 0; i < n; i++) {
		if ((rc = check_device(&devs[i], &norm[i])) != 0) {
			*bad = i;
			goto out;
		}
	}
	for (i = 0; i < n_creds; i++) {
		if (cred_dev[i] >= n) {
			rc = KG_E_INVALID;
			goto out;
		}
		if ((rc = check_cred(&creds[i], &cnorm[i])) != 0) {
			*bad = n + i;
			goto out;
		}
	}
	rc = reg->ops->device_add_many(reg, norm, n, cnorm, cred_dev, n_creds, bad);
out:
	if (cnorm != NULL)   /* SAS keys are secrets: none left in freed memory */
		OPENSSL_cleanse(cnorm, n_creds * sizeof(*cnorm));
	free(cnorm);
	free(norm);
	return rc;
}

int kg_registry_device_update(struct kg_registry *reg, const struct kg_device *dev)
{
	struct kg_device d;
	int rc;

	if (reg == NULL)
		return KG_E_INVALID;
	if ((rc = check_device(dev, &d)) != 0)
		return rc;
	return reg->ops->device_update(reg, &d);
}

int kg_registry_device_remove(struct kg_registry *reg, const char *id)
{
	if (reg == NULL || !valid_device_id(id))
		return KG_E_INVALID;
	return reg->ops->device_remove(reg, id);
}

int kg_registry_device_touch(struct kg_registry *reg, const char *id, int64_t seen,
			     int64_t cert_not_after)
{
	if (reg == NULL || !valid_device_id(id))
		return KG_E_INVALID;
	return reg->ops->device_touch(reg, id, seen, cert_not_after);
}

int kg_registry_device_find_thumbprint(struct kg_registry *reg, const char *hex,
				       struct kg_device *out)
{
	char norm[KG_SHA256_HEX_LEN + 1];

	if (reg == NULL || hex == NULL || out == NULL ||
	    !norm_hex64(norm, hex, KG_SHA256_HEX_LEN + 1, false))
		return KG_E_INVALID;
	reg->failopen = false;
	if (reg->cache != NULL)
		return cached_find_thumbprint(reg, norm, out);
	return reg->ops->device_find_thumbprint(reg, norm, out);
}

int kg_registry_device_list(struct kg_registry *reg, int status, kg_device_cb cb, void *arg)
{
	if (reg == NULL || cb == NULL || status >= KG_DEV_STATUS_MAX)
		return KG_E_INVALID;
	return reg->ops->device_list(reg, status < 0 ? -1 : status, cb, arg);
}

/* ---- credentials ----------------------------------------------------------- */

/* 1..max bytes of 0x21..0x7e (printable ASCII, no space): user names and stored
 * forms travel in audit lines and JSON. */
static bool printable(const char *s, size_t min, size_t max)
{
	size_t len = strnlen(s, max + 1);

	if (len < min || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* Padded base64 of 16..64 bytes (the SAS key rule of docs/credentials.md): 24..88
 * characters, a multiple of 4, the standard alphabet, '=' only at the end. The exact
 * decode is policy/credential.c's (the CLI runs it); this keeps junk out of the store. */
static bool sas_key_shape(const char *s)
{
	size_t len = strnlen(s, KG_CRED_SECRET_MAX + 1), pad = 0;

	if (len < 24 || len > 88 || len % 4 != 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '=') {
			pad++;
			continue;
		}
		if (pad != 0 || !(isalnum(c) || c == '+' || c == '/'))
			return false;
	}
	return pad <= 2;
}

/* Validate a credential and return a normalised copy (token hash in lowercase). */
static int check_cred(const struct kg_credential *c, struct kg_credential *out)
{
	if (c == NULL || !kg_attestation_has_secret(c->kind) || (unsigned)c->slot >= KG_CRED_SLOT_MAX ||
	    !terminated(c->username, sizeof(c->username)) || !terminated(c->secret, sizeof(c->secret)))
		return KG_E_INVALID;
	*out = *c;
	out->created_at = 0;
	if ((c->kind == KG_ATT_BASIC) != (c->username[0] != '\0'))
		return KG_E_INVALID;   /* a user name belongs to basic, and basic needs one */
	switch (c->kind) {
	case KG_ATT_SAS:
		return sas_key_shape(c->secret) ? 0 : KG_E_INVALID;
	case KG_ATT_TOKEN:
		return norm_hex64(out->secret, c->secret, sizeof(c->secret), false) ? 0 : KG_E_INVALID;
	case KG_ATT_BASIC:
		if (!printable(c->username, 1, KG_CRED_USERNAME_MAX) ||
		    !printable(c->secret, 1, KG_CRED_SECRET_MAX) || strncmp(c->secret, "$scrypt$", 8) != 0)
			return KG_E_INVALID;
		return 0;
	default:
		return KG_E_INVALID;
	}
}

int kg_registry_cred_set(struct kg_registry *reg, const char *id, const struct kg_credential *c)
{
	struct kg_credential norm;
	int rc;

	if (reg == NULL || !valid_device_id(id))
		return KG_E_INVALID;
	if ((rc = check_cred(c, &norm)) != 0)
		return rc;
	return reg->ops->cred_set(reg, id, &norm);
}

int kg_registry_cred_clear(struct kg_registry *reg, const char *id, enum kg_attestation kind,
			   enum kg_cred_slot slot)
{
	if (reg == NULL || !valid_device_id(id) || !kg_attestation_has_secret(kind) ||
	    (unsigned)slot >= KG_CRED_SLOT_MAX)
		return KG_E_INVALID;
	return reg->ops->cred_clear(reg, id, kind, slot);
}

int kg_registry_cred_get(struct kg_registry *reg, const char *id,
			 struct kg_credential out[KG_CRED_PER_DEVICE], size_t *n)
{
	if (n != NULL)
		*n = 0;
	if (reg == NULL || out == NULL || n == NULL || !valid_device_id(id))
		return KG_E_INVALID;
	if (reg->cache != NULL)
		return cached_cred_get(reg, id, out, n);
	return reg->ops->cred_get(reg, id, out, n);
}

int kg_registry_cred_find(struct kg_registry *reg, enum kg_attestation kind, const char *key,
			  char *id_out)
{
	char hex[KG_SHA256_HEX_LEN + 1];

	if (reg == NULL || key == NULL || id_out == NULL)
		return KG_E_INVALID;
	if (kind == KG_ATT_TOKEN) {
		if (!norm_hex64(hex, key, KG_SHA256_HEX_LEN + 1, false))
			return KG_E_INVALID;
		if (reg->cache != NULL)
			return cached_cred_find(reg, kind, hex, id_out);
		return reg->ops->cred_find(reg, kind, hex, id_out);
	}
	if (kind != KG_ATT_BASIC || !printable(key, 1, KG_CRED_USERNAME_MAX))
		return KG_E_INVALID;
	if (reg->cache != NULL)
		return cached_cred_find(reg, kind, key, id_out);
	return reg->ops->cred_find(reg, kind, key, id_out);
}

/* ---- CAs ------------------------------------------------------------------- */

/* KG_CHALLENGE_LEN lowercase hex chars from the CSPRNG. */
static int make_challenge(char out[KG_CHALLENGE_LEN + 1])
{
	static const char hexdig[] = "0123456789abcdef";
	unsigned char raw[KG_CHALLENGE_LEN / 2];

	if (RAND_bytes(raw, (int)sizeof(raw)) != 1) {
		kg_log_ossl("RAND_bytes");
		return KG_E_INTERNAL;
	}
	for (size_t i = 0; i < sizeof(raw); i++) {
		out[2 * i] = hexdig[raw[i] >> 4];
		out[2 * i + 1] = hexdig[raw[i] & 0x0f];
	}
	out[KG_CHALLENGE_LEN] = '\0';
	return 0;
}

/* A CA's username_check override, when set, is one the daemon knows. */
static bool username_check_ok(const struct kg_ca *ca)
{
	return !ca->has_username_check ||
	       (unsigned)ca->username_check < KG_NITEMS(username_check_names);
}

int kg_registry_ca_add(struct kg_registry *reg, struct kg_ca *ca)
{
	char sha[KG_SHA256_HEX_LEN + 1];
	int rc;

	if (reg == NULL || ca == NULL || !valid_name(ca->name) || ca->pem == NULL ||
	    ca->pem[0] == '\0' || !terminated(ca->subject, sizeof(ca->subject)) ||
	    !terminated(ca->backend, sizeof(ca->backend)) ||
	    !norm_hex64(sha, ca->sha256, sizeof(ca->sha256), false) ||
	    (unsigned)ca->status >= KG_CA_STATUS_MAX || !username_check_ok(ca))
		return KG_E_INVALID;
	memcpy(ca->sha256, sha, sizeof(sha));
	ca->verified = false;
	if ((rc = make_challenge(ca->challenge)) != 0)
		return rc;
	return reg->ops->ca_add(reg, ca);
}

int kg_registry_ca_get(struct kg_registry *reg, const char *name, struct kg_ca *out)
{
	if (reg == NULL || out == NULL || !valid_name(name))
		return KG_E_INVALID;
	return reg->ops->ca_get(reg, name, out);
}

int kg_registry_ca_get_by_sha256(struct kg_registry *reg, const char *hex, struct kg_ca *out)
{
	char norm[KG_SHA256_HEX_LEN + 1];

	if (reg == NULL || hex == NULL || out == NULL ||
	    !norm_hex64(norm, hex, KG_SHA256_HEX_LEN + 1, false))
		return KG_E_INVALID;
	return reg->ops->ca_get_by_sha256(reg, norm, out);
}

int kg_registry_ca_set_verified(struct kg_registry *reg, const char *name)
{
	if (reg == NULL || !valid_name(name))
		return KG_E_INVALID;
	return reg->ops->ca_set_verified(reg, name);
}

int kg_registry_ca_update(struct kg_registry *reg, const struct kg_ca *ca)
{
	if (reg == NULL || ca == NULL || !valid_name(ca->name) ||
	    !terminated(ca->backend, sizeof(ca->backend)) || (unsigned)ca->status >= KG_CA_STATUS_MAX ||
	    !username_check_ok(ca))
		return KG_E_INVALID;
	return reg->ops->ca_update(reg, ca);
}

int kg_registry_ca_remove(struct kg_registry *reg, const char *name)
{
	if (reg == NULL || !valid_name(name))
		return KG_E_INVALID;
	return reg->ops->ca_remove(reg, name);
}

int kg_registry_ca_list(struct kg_registry *reg, kg_ca_cb cb, void *arg)
{
	if (reg == NULL || cb == NULL)
		return KG_E_INVALID;
	return reg->ops->ca_list(reg, cb, arg);
}

int kg_registry_backends_in_use(struct kg_registry *reg, kg_backend_use_cb cb, void *arg)
{
	if (reg == NULL || cb == NULL)
		return KG_E_INVALID;
	return reg->ops->backends_in_use(reg, cb, arg);
}

/* ---- import ---------------------------------------------------------------- */

static bool hex_lower(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	return true;
}

/* A CA row as import takes it: ca_add's checks, and a proof-of-possession state the
 * store could have produced (verified: challenge spent; pending: ca_add's form). */
static int check_import_ca(const struct kg_ca *ca, struct kg_ca *out)
{
	if (ca == NULL || !valid_name(ca->name) || ca->pem == NULL || ca->pem[0] == '\0' ||
	    !terminated(ca->subject, sizeof(ca->subject)) ||
	    !terminated(ca->backend, sizeof(ca->backend)) ||
	    !terminated(ca->challenge, sizeof(ca->challenge)) ||
	    (unsigned)ca->status >= KG_CA_STATUS_MAX || !username_check_ok(ca) ||
	    ca->added_at < 0 || ca->not_after < 0)
		return KG_E_INVALID;
	*out = *ca;
	if (!norm_hex64(out->sha256, ca->sha256, sizeof(ca->sha256), false))
		return KG_E_INVALID;
	if (ca->verified ? ca->challenge[0] != '\0'
			 : strlen(ca->challenge) != KG_CHALLENGE_LEN ||
				   !hex_lower(ca->challenge, KG_CHALLENGE_LEN))
		return KG_E_INVALID;
	return 0;
}

int kg_registry_import(struct kg_registry *reg, const struct kg_ca *cas, size_t n_cas,
		       const struct kg_device *devs, size_t n, const struct kg_credential *creds,
		       const size_t *cred_dev, size_t n_creds, size_t *bad)
{
	struct kg_credential *cnorm = NULL;
	struct kg_device *dnorm = NULL;
	struct kg_ca *canorm = NULL;
	size_t i, unused;
	int rc = 0;

	if (bad == NULL)
		bad = &unused;
	*bad = n_cas + n + n_creds;
	if (reg == NULL || (cas == NULL && n_cas != 0) || (devs == NULL && n != 0) ||
	    (n_creds != 0 && (creds == NULL || cred_dev == NULL)))
		return KG_E_INVALID;
	if (n_cas == 0 && n == 0 && n_creds == 0)
		return 0;
	if ((n_cas != 0 && (canorm = calloc(n_cas, sizeof(*canorm))) == NULL) ||
	    (n != 0 && (dnorm = calloc(n, sizeof(*dnorm))) == NULL) ||
	    (n_creds != 0 && (cnorm = calloc(n_creds, sizeof(*cnorm))) == NULL)) {
		rc = KG_E_RESOURCE;
		goto out;
	}
	/* Every row is checked before the store sees any of them. */
	for (i = 0; i < n_cas; i++)
		if ((rc = check_import_ca(&cas[i], &canorm[i])) != 0) {
			*bad = i;
			goto out;
		}
	for (i = 0; i < n; i++)
		if ((rc = check_device(&devs[i], &dnorm[i])) != 0 || devs[i].created_at < 0 ||
		    devs[i].updated_at < 0 || devs[i].last_seen < 0 || devs[i].cert_not_after < 0) {
			rc = rc != 0 ? rc : KG_E_INVALID;
			*bad = n_cas + i;
			goto out;
		}
	for (i = 0; i < n_creds; i++) {
		if (cred_dev[i] >= n || (rc = check_cred(&creds[i], &cnorm[i])) != 0 ||
		    creds[i].created_at < 0) {
			rc = rc != 0 ? rc : KG_E_INVALID;
			*bad = n_cas + n + i;
			goto out;
		}
		cnorm[i].created_at = creds[i].created_at;   /* check_cred clears it: kept here */
	}
	rc = reg->ops->import(reg, canorm, n_cas, dnorm, n, cnorm, cred_dev, n_creds, bad);
out:
	if (cnorm != NULL)   /* SAS keys are secrets: none left in freed memory */
		OPENSSL_cleanse(cnorm, n_creds * sizeof(*cnorm));
	free(cnorm);
	free(dnorm);
	free(canorm);   /* the pems are the caller's */
	return rc;
}

int kg_registry_begin(struct kg_registry *reg)
{
	return reg == NULL ? KG_E_INVALID : reg->ops->begin(reg);
}

int kg_registry_commit(struct kg_registry *reg)
{
	return reg == NULL ? KG_E_INVALID : reg->ops->commit(reg);
}

void kg_registry_rollback(struct kg_registry *reg)
{
	if (reg != NULL)
		reg->ops->rollback(reg);
}
