/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Part registry (daemon/registry/): the identity registry. registry.c (the interface
 * and the validation every store shares, this header), registry_sqlite.c (the SQLite
 * store), registry_pg.c (the PostgreSQL store, shared by several appliances),
 * registry_cache.c (the daemon's hot-path view of a PostgreSQL registry and its down
 * state; registry_cache.h), writer.c (the daemon's one writer thread: enrolments and
 * last-seen updates; writer.h).
 * Way in: this header; the daemon writes only through writer.h.
 * Uses ops only (config, errors, log, audit for enrolment decisions); knows nothing of
 * TLS, connections or the event loop.
 */
/*
 * registry.h - the identity registry: registered CAs (with proof-of-possession state)
 * and devices (status, attestation, backend). One interface, several stores behind an
 * ops table: SQLite (WAL, registry_sqlite.c) and PostgreSQL (registry_pg.c).
 *
 * A struct kg_registry handle belongs to one thread: each daemon worker opens its own
 * read handle; writes from the daemon go through one writer thread so the hot path
 * never waits on a write lock. Rows are copied out into caller-owned structs; nothing
 * points into the store. All functions return 0 or a negative enum kg_err
 * (KG_E_NOTFOUND, KG_E_EXISTS, KG_E_INVALID, KG_E_CORRUPT, KG_E_IO, KG_E_BUSY: another
 * process held the lock for longer than the handle's busy timeout, nothing written);
 * after a failure reg->errmsg says why in the store's own words.
 *
 * A file registry is created mode 0600 whatever the umask (its -wal and -shm follow
 * the database's mode); a handle that has to wait for another process's lock says so
 * once per wait (log, busy_waits) and retries until its busy timeout.
 */
#ifndef KTLSGATE_REGISTRY_H
#define KTLSGATE_REGISTRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"
#include "ops/config.h"

#define KG_DEVICE_ID_MAX 128          /* chars, without NUL */
#define KG_SHA256_HEX_LEN 64          /* lowercase hex, without NUL */
#define KG_CHALLENGE_LEN 32           /* hex chars of a PoP challenge */

enum kg_device_status {
	KG_DEV_ENABLED,
	KG_DEV_DISABLED,
	KG_DEV_SUSPENDED,
	KG_DEV_QUARANTINED,
	KG_DEV_DECOMMISSIONED,
	KG_DEV_STATUS_MAX
};

/* How a device authenticates. CA and thumbprint are X.509 (the TLS handshake); the
 * others (schema v6, issue 15) are secrets kept in the credentials store below. The
 * daemon does not check those yet: a device of a secret kind that presents a
 * certificate is refused as an attestation mismatch. */
enum kg_attestation {
	KG_ATT_CA,          /* certificate chains to a registered, proven CA */
	KG_ATT_THUMBPRINT,  /* leaf pinned by SHA-256 (primary or secondary) */
	KG_ATT_SAS,         /* symmetric key: Azure-style SAS tokens (HMAC-SHA256) */
	KG_ATT_TOKEN,       /* access token, stored as its SHA-256 */
	KG_ATT_BASIC,       /* user name + password, stored as scrypt */
	KG_ATT_MAX
};

/* Is `a` a kind whose secret lives in the credentials store? */
static inline bool kg_attestation_has_secret(enum kg_attestation a)
{
	return a == KG_ATT_SAS || a == KG_ATT_TOKEN || a == KG_ATT_BASIC;
}

/* A device holds at most two secrets per kind: primary and secondary (rotation: a
 * device moves to the new one while the old still works). */
enum kg_cred_slot { KG_CRED_PRIMARY, KG_CRED_SECONDARY, KG_CRED_SLOT_MAX };

#define KG_CRED_USERNAME_MAX 128      /* basic: 1..128 bytes 0x21..0x7e, like device ids */
#define KG_CRED_SECRET_MAX 200        /* the longest stored form (a scrypt PHC string) */
#define KG_CRED_PER_DEVICE 6          /* 3 secret kinds x 2 slots */

/*
 * One stored credential (docs/credentials.md, "Registry"). `secret` is the stored
 * form, never what the device sends, except for sas: the HMAC needs the key itself.
 *   sas:   the key, padded base64 of 16..64 bytes
 *   token: SHA-256 of the token, 64 lowercase hex digits
 *   basic: "$scrypt$ln=..,r=..,p=..$salt$hash" of the password; username set
 * The interface checks the shape (lengths, alphabet, prefix); the CLI builds them
 * with the pure parsers of policy/credential.h, which this part may not include.
 */
struct kg_credential {
	enum kg_attestation kind;                     /* KG_ATT_SAS, _TOKEN or _BASIC */
	enum kg_cred_slot slot;
	char username[KG_CRED_USERNAME_MAX + 1];      /* basic only, "" otherwise */
	char secret[KG_CRED_SECRET_MAX + 1];
	int64_t created_at;                           /* set by the store (import: as given) */
};

struct kg_device {
	char id[KG_DEVICE_ID_MAX + 1];
	enum kg_device_status status;
	enum kg_attestation attestation;
	char thumb_primary[KG_SHA256_HEX_LEN + 1];   /* "" when unset */
	char thumb_secondary[KG_SHA256_HEX_LEN + 1];
	char backend[KG_NAME_MAX];                    /* "" = CA's or default */
	char ca_name[KG_NAME_MAX];                    /* CA it enrolled under, "" if none */
	int64_t created_at, updated_at, last_seen;    /* unix seconds; 0 = never; the first two
							 * set by the store (import: as given) */
	int64_t cert_not_after;                       /* last seen leaf's notAfter, 0 unknown */
};

/* A CA's standing (AWS IoT's ACTIVE / INACTIVE / REVOKED CA states). Anything but
 * enabled refuses every device that chains to the CA (or to a CA it issued); revoked
 * is final: the CLI never turns it back on. Ordered by severity. */
enum kg_ca_status {
	KG_CA_ENABLED,
	KG_CA_DISABLED,
	KG_CA_REVOKED,
	KG_CA_STATUS_MAX
};

struct kg_ca {
	char name[KG_NAME_MAX];
	char sha256[KG_SHA256_HEX_LEN + 1];           /* of the DER certificate */
	char subject[256];                            /* one-line RFC 2253 */
	bool verified;                                /* proof of possession done */
	char challenge[KG_CHALLENGE_LEN + 1];         /* pending PoP challenge */
	char backend[KG_NAME_MAX];                    /* "" = default */
	bool auto_enroll;                             /* unknown devices under it are created */
	enum kg_ca_status status;                     /* schema v4; older rows: enabled */
	/* Schema v5: this CA's own rule for its devices' MQTT user names, overriding
	 * [daemon] username_check when has_username_check (NULL column: not set). */
	bool has_username_check;
	enum kg_username_check username_check;
	int64_t added_at;
	int64_t not_after;
	char *pem;                                    /* owned; free with kg_ca_fini() */
};

void kg_ca_fini(struct kg_ca *ca);

const char *kg_device_status_str(enum kg_device_status s);   /* "enabled", ... */
int kg_device_status_parse(const char *s, enum kg_device_status *out) KG_MUST_USE;
const char *kg_attestation_str(enum kg_attestation a);       /* "ca", "thumbprint", "sas", ... */
int kg_attestation_parse(const char *s, enum kg_attestation *out) KG_MUST_USE;
const char *kg_ca_status_str(enum kg_ca_status s);           /* "enabled", "disabled", "revoked" */
int kg_ca_status_parse(const char *s, enum kg_ca_status *out) KG_MUST_USE;
const char *kg_username_check_str(enum kg_username_check m); /* "strict", "rewrite", "pass" */
int kg_username_check_parse(const char *s, enum kg_username_check *out) KG_MUST_USE;
const char *kg_cred_slot_str(enum kg_cred_slot s);           /* "primary", "secondary" */
int kg_cred_slot_parse(const char *s, enum kg_cred_slot *out) KG_MUST_USE;

enum kg_registry_mode { KG_REG_READONLY, KG_REG_READWRITE };

struct kg_registry;
struct kg_regcache;

/*
 * Open the registry at `location` (a file path: SQLite; "postgresql://..." or
 * "postgres://...": the PostgreSQL store, kg_registry_pg_open()). READWRITE creates the file if missing and
 * runs forward migrations; READONLY requires an existing, current database.
 * A file that is not a registry (foreign SQLite db, garbage, newer schema) is
 * KG_E_CORRUPT with a message; nothing is written to it.
 */
int kg_registry_open(const char *location, enum kg_registry_mode mode, struct kg_registry **out,
		     char *err, size_t errlen) KG_MUST_USE;
void kg_registry_close(struct kg_registry *reg);
/*
 * The schema version of the registry at `location`, read without writing, migrating
 * or creating anything: 0 when there is no registry yet (a missing or empty SQLite
 * file, a PostgreSQL database without the schema), else 1..latest (older ones are
 * what a read-write open would migrate). `registry migrate` says FROM -> TO with it,
 * `ktlsgated -t` the migration the next start makes. 0, or an error with a message
 * in err (not a registry, newer than this build, unreadable, unreachable).
 */
int kg_registry_version(const char *location, int *version, char *err, size_t errlen) KG_MUST_USE;
int kg_registry_schema_version(struct kg_registry *reg);    /* current schema version */

/* Devices */
int kg_registry_device_get(struct kg_registry *reg, const char *id, struct kg_device *out) KG_MUST_USE;
/* Insert; KG_E_EXISTS if the id is taken, or a thumbprint is another device's.
 * created_at/updated_at set by the store; last_seen/cert_not_after kept. */
int kg_registry_device_add(struct kg_registry *reg, const struct kg_device *dev) KG_MUST_USE;
/* Replace every mutable field of an existing row (status, thumbprints, backend...).
 * last_seen/cert_not_after are left alone: they belong to touch. */
int kg_registry_device_update(struct kg_registry *reg, const struct kg_device *dev) KG_MUST_USE;
/* Insert n devices as kg_registry_device_add() would, all in one transaction (bulk
 * enrolment: one commit instead of n). All or nothing: on the first device refused
 * (KG_E_INVALID, KG_E_EXISTS for a taken id or thumbprint, also one taken earlier in
 * the same batch) nothing is written and *bad (if not NULL) is its index. */
int kg_registry_device_add_many(struct kg_registry *reg, const struct kg_device *devs, size_t n,
				size_t *bad) KG_MUST_USE;
/* As kg_registry_device_add_many(), and in the same transaction n_creds credentials,
 * creds[j] for devs[cred_dev[j]], each stored as kg_registry_cred_set() would (bulk
 * enrolment of sas/token/basic devices). All or nothing: a refused credential (a shape
 * refused, KG_E_EXISTS for a basic user name or a token hash another device holds, also
 * one earlier in the batch) rolls the devices back too. *bad < n: devs[*bad] was
 * refused; *bad >= n: creds[*bad - n], and reg->errmsg names the cause. */
int kg_registry_device_add_many_cred(struct kg_registry *reg, const struct kg_device *devs, size_t n,
				     const struct kg_credential *creds, const size_t *cred_dev,
				     size_t n_creds, size_t *bad) KG_MUST_USE;
int kg_registry_device_remove(struct kg_registry *reg, const char *id) KG_MUST_USE;
/*
 * Insert rows exactly as given, in ONE transaction (`registry copy`): the CAs with their
 * verified flag, challenge and added_at; the devices with created_at, updated_at,
 * last_seen and cert_not_after; creds[j] for devs[cred_dev[j]] with its created_at.
 * Nothing is set by the store. The checks of ca_add / device_add / cred_set apply, and
 * a CA is verified with no challenge or unverified with a KG_CHALLENGE_LEN hex one;
 * times are >= 0. All or nothing: on the first row refused (KG_E_INVALID,
 * KG_E_EXISTS for anything the destination or an earlier row of the batch already
 * holds: a CA name or digest, a device id or thumbprint, a credential slot, token hash
 * or basic user name; KG_E_NOTFOUND for a device's CA in neither) nothing is written
 * and *bad names it, indexing the rows in the order they are written: *bad < n_cas is
 * cas[*bad], then n devices (devs[*bad - n_cas]), then credentials
 * (creds[*bad - n_cas - n]); an error that is no row's (a lost connection, a failed
 * commit) leaves *bad = n_cas + n + n_creds.
 */
int kg_registry_import(struct kg_registry *reg, const struct kg_ca *cas, size_t n_cas,
		       const struct kg_device *devs, size_t n, const struct kg_credential *creds,
		       const size_t *cred_dev, size_t n_creds, size_t *bad) KG_MUST_USE;
/* Record a connection: last_seen and cert_not_after (0: keep the stored one). */
int kg_registry_device_touch(struct kg_registry *reg, const char *id, int64_t seen,
			     int64_t cert_not_after) KG_MUST_USE;
/* Device enrolled by thumbprint whose primary or secondary equals hex. */
int kg_registry_device_find_thumbprint(struct kg_registry *reg, const char *hex,
				       struct kg_device *out) KG_MUST_USE;
/* Iterate, ordered by id. status < 0: all. cb returns non-zero to stop; a negative
 * kg_err from cb is returned, a positive value gives 0. */
typedef int (*kg_device_cb)(const struct kg_device *dev, void *arg);
int kg_registry_device_list(struct kg_registry *reg, int status, kg_device_cb cb, void *arg) KG_MUST_USE;

/* Credentials (schema v6). A device's credentials go with it: removing the device
 * removes them. */
/* Store c in (id, c->kind, c->slot), replacing what was there; created_at is now.
 * KG_E_NOTFOUND: no such device. KG_E_EXISTS: a basic user name another device uses,
 * or a token hash already stored (either would make the CONNECT's lookup ambiguous). */
int kg_registry_cred_set(struct kg_registry *reg, const char *id,
			 const struct kg_credential *c) KG_MUST_USE;
/* Remove one slot; KG_E_NOTFOUND if it was empty. */
int kg_registry_cred_clear(struct kg_registry *reg, const char *id, enum kg_attestation kind,
			   enum kg_cred_slot slot) KG_MUST_USE;
/* Every credential of device id into out[KG_CRED_PER_DEVICE], ordered by kind, then
 * slot; *n their number (0 for a device without any, or no such device). Secrets
 * included: for the CONNECT check; `device show` prints only kinds, slots, times. */
int kg_registry_cred_get(struct kg_registry *reg, const char *id,
			 struct kg_credential out[KG_CRED_PER_DEVICE], size_t *n) KG_MUST_USE;

/* The device a CONNECT's credential names, by what it sends: for KG_ATT_TOKEN `key`
 * is the token's SHA-256 hex (either case), for KG_ATT_BASIC the user name. The id
 * goes to id_out[KG_DEVICE_ID_MAX + 1]. KG_E_NOTFOUND when no slot holds it; unique
 * by construction (cred_set refuses a second device). Not for sas: a SAS token names
 * its device in its resource URI. */
int kg_registry_cred_find(struct kg_registry *reg, enum kg_attestation kind, const char *key,
			  char *id_out) KG_MUST_USE;

/* CAs */
/* Insert an unverified CA with a fresh random challenge (written into ca->challenge). */
int kg_registry_ca_add(struct kg_registry *reg, struct kg_ca *ca) KG_MUST_USE;
/* *out is overwritten (kg_ca_fini() it before reuse); its pem is owned. */
int kg_registry_ca_get(struct kg_registry *reg, const char *name, struct kg_ca *out) KG_MUST_USE;
int kg_registry_ca_get_by_sha256(struct kg_registry *reg, const char *hex, struct kg_ca *out) KG_MUST_USE;
/* Mark proven; the challenge is spent (cleared). */
int kg_registry_ca_set_verified(struct kg_registry *reg, const char *name) KG_MUST_USE;
int kg_registry_ca_update(struct kg_registry *reg, const struct kg_ca *ca) KG_MUST_USE; /* backend, auto_enroll, status, username_check */
int kg_registry_ca_remove(struct kg_registry *reg, const char *name) KG_MUST_USE;
/* Iterate, ordered by name. The kg_ca passed to cb is only valid during the call. */
typedef int (*kg_ca_cb)(const struct kg_ca *ca, void *arg);
int kg_registry_ca_list(struct kg_registry *reg, kg_ca_cb cb, void *arg) KG_MUST_USE;

/* Every backend name the registry uses (devices' and CAs' own, never ""), ordered,
 * with how many devices and CAs name it: a reload checks they are all configured. */
typedef int (*kg_backend_use_cb)(const char *name, int64_t devices, int64_t cas, void *arg);
int kg_registry_backends_in_use(struct kg_registry *reg, kg_backend_use_cb cb, void *arg) KG_MUST_USE;

/* Group writes into one transaction (the daemon's writer batches last-seen updates:
 * one commit per batch instead of one per connection). Between begin and commit only
 * single-statement writes (touch, remove, set_verified, update of a CA) may be used:
 * device add/update open their own transaction. */
int kg_registry_begin(struct kg_registry *reg) KG_MUST_USE;
int kg_registry_commit(struct kg_registry *reg) KG_MUST_USE;
void kg_registry_rollback(struct kg_registry *reg);

/* The ops table a store implements (registry.c dispatches through it). */
struct kg_registry_ops {
	const char *name;
	void (*close)(struct kg_registry *reg);
	int (*schema_version)(struct kg_registry *reg);
	int (*device_get)(struct kg_registry *, const char *, struct kg_device *);
	int (*device_add)(struct kg_registry *, const struct kg_device *);
	int (*device_add_many)(struct kg_registry *, const struct kg_device *, size_t,
			       const struct kg_credential *, const size_t *, size_t, size_t *);
	int (*device_update)(struct kg_registry *, const struct kg_device *);
	int (*device_remove)(struct kg_registry *, const char *);
	int (*import)(struct kg_registry *, const struct kg_ca *, size_t, const struct kg_device *,
		      size_t, const struct kg_credential *, const size_t *, size_t, size_t *);
	int (*device_touch)(struct kg_registry *, const char *, int64_t, int64_t);
	int (*device_find_thumbprint)(struct kg_registry *, const char *, struct kg_device *);
	int (*device_list)(struct kg_registry *, int, kg_device_cb, void *);
	int (*cred_set)(struct kg_registry *, const char *, const struct kg_credential *);
	int (*cred_clear)(struct kg_registry *, const char *, enum kg_attestation, enum kg_cred_slot);
	int (*cred_get)(struct kg_registry *, const char *, struct kg_credential *, size_t *);
	int (*cred_find)(struct kg_registry *, enum kg_attestation, const char *, char *);
	int (*ca_add)(struct kg_registry *, struct kg_ca *);
	int (*ca_get)(struct kg_registry *, const char *, struct kg_ca *);
	int (*ca_get_by_sha256)(struct kg_registry *, const char *, struct kg_ca *);
	int (*ca_set_verified)(struct kg_registry *, const char *);
	int (*ca_update)(struct kg_registry *, const struct kg_ca *);
	int (*ca_remove)(struct kg_registry *, const char *);
	int (*ca_list)(struct kg_registry *, kg_ca_cb, void *);
	int (*backends_in_use)(struct kg_registry *, kg_backend_use_cb, void *);
	int (*begin)(struct kg_registry *);
	int (*commit)(struct kg_registry *);
	void (*rollback)(struct kg_registry *);
};

/* Every store's handle starts with this header. */
struct kg_registry {
	const struct kg_registry_ops *ops;
	/* The last failed call's cause as the store put it ("device update: database is
	 * locked"), for messages that must name the real cause. Set on failure only. */
	char errmsg[256];
	/* Waits for another process's lock so far (ktlsgate_registry_busy_total). */
	_Atomic uint64_t busy_waits;
	/* The daemon's shared view of a PostgreSQL registry (registry_cache.h), or NULL:
	 * every read goes to the store. Set by kg_registry_set_cache(). */
	struct kg_regcache *cache;
	/* The last device_get / device_find_thumbprint on this handle was answered by
	 * the fail-open rule while the database was down (kg_registry_served_failopen). */
	bool failopen;
};

/*
 * Answer this handle's hot-path reads (device_get, device_find_thumbprint, cred_get,
 * cred_find) from the shared view `cache` first, and store what the store answers in
 * it. While the cache is stale (the watcher disconnected) the store is not asked:
 * under fail-open a device this appliance admitted recently (and whose cached row is
 * enabled) is answered from the cache, everything else is KG_E_IO ("registry
 * unavailable"), as under fail-closed. A read that fails with KG_E_IO marks the
 * registry down; one that answers marks it up. NULL: no cache.
 */
void kg_registry_set_cache(struct kg_registry *reg, struct kg_regcache *cache);
/* device_get from the store itself, whatever the cache holds or the down state says,
 * its answer stored in the cache: a live session's revalidation after a change must
 * judge the row as it is now. */
int kg_registry_device_get_fresh(struct kg_registry *reg, const char *id,
				 struct kg_device *out) KG_MUST_USE;
/* Was the last device read on reg answered by the fail-open rule? */
bool kg_registry_served_failopen(const struct kg_registry *reg);

/* reg->errmsg, or the generic name of err when the store said nothing. */
const char *kg_registry_strerror(const struct kg_registry *reg, int err);

/* SQLite store (registry_sqlite.c). */
int kg_registry_sqlite_open(const char *path, enum kg_registry_mode mode, struct kg_registry **out,
			    char *err, size_t errlen) KG_MUST_USE;

/* PRAGMA application_id of a registry file: "KTLG". A non-empty SQLite file without
 * it is foreign and refused. */
#define KG_REGISTRY_SQLITE_APP_ID 0x4b544c47u

/* PostgreSQL store (issue 16): everything lives in this schema of the database the
 * URI names, and every change that matters to a live session (a device's status,
 * attestation, thumbprints, backend or CA; any credential; any CA) is appended by
 * triggers to KG_PG_SCHEMA.changes (version BIGSERIAL, kind 'device'|'ca', name, at)
 * and announced with pg_notify(KG_PG_CHANNEL, "KIND VERSION") at commit: the watcher
 * of every appliance sharing the database revalidates what it names. */
#define KG_PG_SCHEMA "ktlsgate"
#define KG_PG_CHANNEL "ktlsgate_changes"

/*
 * PostgreSQL store (registry_pg.c): `uri` is a libpq connection URI (postgresql:// or
 * postgres://). READWRITE creates or migrates the schema under an advisory lock;
 * READONLY needs a current one (none: KG_E_NOTFOUND; older: KG_E_INVALID) and runs
 * with default_transaction_read_only. A newer or foreign schema is KG_E_CORRUPT,
 * nothing written. Messages never carry the URI's password.
 */
int kg_registry_pg_open(const char *uri, enum kg_registry_mode mode, struct kg_registry **out,
			char *err, size_t errlen) KG_MUST_USE;
/* The schema version of the PostgreSQL registry `uri` names (0: no schema yet), read
 * on a read-only session; as kg_registry_sqlite_version(). */
int kg_registry_pg_version(const char *uri, int *version, char *err, size_t errlen) KG_MUST_USE;
/* The schema version this build's PostgreSQL store creates (continues SQLite's). */
int kg_registry_pg_schema_latest(void);

/* The schema version this build's SQLite store creates and migrates to. */
int kg_registry_sqlite_schema_latest(void);

/*
 * The schema version of the SQLite registry at `path` (0: an empty file), read without
 * writing or migrating anything: `ktlsgated -t` reports a migration the next start will
 * make instead of refusing the registry. 0, or an error with a message in err (not a
 * registry, newer than this build, unreadable).
 */
int kg_registry_sqlite_version(const char *path, int *version, char *err, size_t errlen) KG_MUST_USE;

/*
 * Create the SQLite registry at `path`, or migrate it forward, up to schema `version`
 * (1..latest) and close it; a newer schema (up to latest) is left as it is. Normal
 * opens migrate to the latest; this exists for migration tests and tooling.
 */
int kg_registry_sqlite_migrate(const char *path, int version, char *err, size_t errlen) KG_MUST_USE;

#endif
