/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * registry_sqlite.c - the embedded registry store: one SQLite file in WAL mode, so
 * worker read handles never wait on the single writer.
 *
 * A handle is one sqlite3 connection opened NOMUTEX (it belongs to one thread) with
 * every statement prepared once at open. Opening first identifies the file without
 * writing a byte (SQLite magic, PRAGMA application_id, user_version, schema objects):
 * a garbage file, a foreign SQLite database or a newer schema is KG_E_CORRUPT and is
 * left untouched. Only then does a READWRITE open switch to WAL and run the forward
 * migrations, each in its own IMMEDIATE transaction. Every statement is reset right
 * after use: a SELECT left half-stepped would hold a read transaction and pin the WAL.
 * Argument validation and normalisation happened in registry.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ops/err.h"
#include "ops/log.h"
#include "registry/registry.h"

/* How long one statement waits for another process's lock before KG_E_BUSY: long
 * enough for any write of ours, short enough that a CLI says "locked" in time. */
#define BUSY_TIMEOUT_MS 5000
/* A wait for a lock is logged and counted once it lasts this long. */
#define BUSY_REPORT_MS 200

/*
 * Forward migrations: migrations[i] takes the schema from version i to i + 1, in one
 * transaction together with the new user_version. Never edit a released step; append.
 */
static const char *const migrations[] = {
	/* 0 -> 1: the tables. Empty strings are stored as NULL where a column is unique
	 * or a foreign key, so "no thumbprint" / "no CA" never collide or dangle. */
	"CREATE TABLE cas ("
	" name TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 63),"
	" pem TEXT NOT NULL,"
	" sha256 TEXT NOT NULL UNIQUE CHECK (length(sha256) = 64),"
	" subject TEXT NOT NULL DEFAULT '',"
	" verified INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1)),"
	" challenge TEXT NOT NULL DEFAULT '',"
	" backend TEXT NOT NULL DEFAULT '',"
	" auto_enroll INTEGER NOT NULL DEFAULT 0 CHECK (auto_enroll IN (0, 1)),"
	" added_at INTEGER NOT NULL,"
	" not_after INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE devices ("
	" id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),"
	" status TEXT NOT NULL CHECK (status IN"
	"  ('enabled', 'disabled', 'suspended', 'quarantined', 'decommissioned')),"
	" attestation TEXT NOT NULL CHECK (attestation IN ('ca', 'thumbprint')),"
	" thumb_primary TEXT CHECK (thumb_primary IS NULL OR length(thumb_primary) = 64),"
	" thumb_secondary TEXT CHECK (thumb_secondary IS NULL OR length(thumb_secondary) = 64),"
	" backend TEXT NOT NULL DEFAULT '',"
	" ca_name TEXT REFERENCES cas(name) ON DELETE SET NULL,"
	" created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL,"
	" last_seen INTEGER NOT NULL DEFAULT 0,"
	" cert_not_after INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX devices_thumb_primary ON devices(thumb_primary);"
	"CREATE INDEX devices_thumb_secondary ON devices(thumb_secondary);"
	"CREATE INDEX devices_status ON devices(status, id);",
	/* 1 -> 2: index the foreign key's child column; without it every CA removal
	 * scans all devices to apply ON DELETE SET NULL. */
	"CREATE INDEX devices_ca_name ON devices(ca_name);",
	/* 2 -> 3: a CA with devices bound to it can no longer be removed (RESTRICT instead
	 * of SET NULL). With SET NULL, removing CA X unbound its auto-enrolled devices, and
	 * the policy lets an unbound CA-attested device in through any proven CA: another
	 * registered CA could then mint their device ids. SQLite cannot alter a foreign
	 * key, so the table is rebuilt with the same columns and indexes. */
	"CREATE TABLE devices_v3 ("
	" id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),"
	" status TEXT NOT NULL CHECK (status IN"
	"  ('enabled', 'disabled', 'suspended', 'quarantined', 'decommissioned')),"
	" attestation TEXT NOT NULL CHECK (attestation IN ('ca', 'thumbprint')),"
	" thumb_primary TEXT CHECK (thumb_primary IS NULL OR length(thumb_primary) = 64),"
	" thumb_secondary TEXT CHECK (thumb_secondary IS NULL OR length(thumb_secondary) = 64),"
	" backend TEXT NOT NULL DEFAULT '',"
	" ca_name TEXT REFERENCES cas(name) ON DELETE RESTRICT,"
	" created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL,"
	" last_seen INTEGER NOT NULL DEFAULT 0,"
	" cert_not_after INTEGER NOT NULL DEFAULT 0);"
	"INSERT INTO devices_v3 (id, status, attestation, thumb_primary, thumb_secondary, backend,"
	" ca_name, created_at, updated_at, last_seen, cert_not_after)"
	" SELECT id, status, attestation, thumb_primary, thumb_secondary, backend,"
	" ca_name, created_at, updated_at, last_seen, cert_not_after FROM devices;"
	"DROP TABLE devices;"
	"ALTER TABLE devices_v3 RENAME TO devices;"
	"CREATE INDEX devices_thumb_primary ON devices(thumb_primary);"
	"CREATE INDEX devices_thumb_secondary ON devices(thumb_secondary);"
	"CREATE INDEX devices_status ON devices(status, id);"
	"CREATE INDEX devices_ca_name ON devices(ca_name);",
	/* 3 -> 4: a CA status (issue 10). A compromised CA or intermediate is disabled or
	 * revoked in one write instead of one `device set` per device; existing CAs stay
	 * enabled. */
	("ALTER TABLE cas ADD COLUMN status TEXT NOT NULL DEFAULT 'enabled'"
	 " CHECK (status IN ('enabled', 'disabled', 'revoked'));"),
	/* 4 -> 5: a CA's own MQTT user-name rule (issue 10 section 7), overriding
	 * [daemon] username_check for the devices that chain to it. NULL: not set, the
	 * config's applies; existing CAs keep following the config. */
	("ALTER TABLE cas ADD COLUMN username_check TEXT"
	 " CHECK (username_check IS NULL OR username_check IN ('strict', 'rewrite', 'pass'));"),
	/* 5 -> 6: credentials beside X.509 (issue 15). The attestation CHECK gains sas,
	 * token and basic (a rebuild, as in 2 -> 3: SQLite cannot alter a CHECK), and a
	 * credentials table holds each device's secrets, two slots per kind, removed with
	 * the device (ON DELETE CASCADE). A later rebuild of devices must move the
	 * credentials aside first: dropping devices would cascade into them.
	 * The partial indexes: a token's hash names one device (UNIQUE), and a basic user
	 * name is looked up by the CONNECT check; the store refuses one another device uses. */
	"CREATE TABLE devices_v6 ("
	" id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),"
	" status TEXT NOT NULL CHECK (status IN"
	"  ('enabled', 'disabled', 'suspended', 'quarantined', 'decommissioned')),"
	" attestation TEXT NOT NULL CHECK (attestation IN"
	"  ('ca', 'thumbprint', 'sas', 'token', 'basic')),"
	" thumb_primary TEXT CHECK (thumb_primary IS NULL OR length(thumb_primary) = 64),"
	" thumb_secondary TEXT CHECK (thumb_secondary IS NULL OR length(thumb_secondary) = 64),"
	" backend TEXT NOT NULL DEFAULT '',"
	" ca_name TEXT REFERENCES cas(name) ON DELETE RESTRICT,"
	" created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL,"
	" last_seen INTEGER NOT NULL DEFAULT 0,"
	" cert_not_after INTEGER NOT NULL DEFAULT 0);"
	"INSERT INTO devices_v6 (id, status, attestation, thumb_primary, thumb_secondary, backend,"
	" ca_name, created_at, updated_at, last_seen, cert_not_after)"
	" SELECT id, status, attestation, thumb_primary, thumb_secondary, backend,"
	" ca_name, created_at, updated_at, last_seen, cert_not_after FROM devices;"
	"DROP TABLE devices;"
	"ALTER TABLE devices_v6 RENAME TO devices;"
	"CREATE INDEX devices_thumb_primary ON devices(thumb_primary);"
	"CREATE INDEX devices_thumb_secondary ON devices(thumb_secondary);"
	"CREATE INDEX devices_status ON devices(status, id);"
	"CREATE INDEX devices_ca_name ON devices(ca_name);"
	"CREATE TABLE credentials ("
	" device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,"
	" kind TEXT NOT NULL CHECK (kind IN ('sas', 'token', 'basic')),"
	" slot TEXT NOT NULL CHECK (slot IN ('primary', 'secondary')),"
	" username TEXT CHECK ((kind = 'basic') = (username IS NOT NULL)"
	"  AND (username IS NULL OR length(username) BETWEEN 1 AND 128)),"
	" secret TEXT NOT NULL CHECK (length(secret) BETWEEN 1 AND 200),"
	" created_at INTEGER NOT NULL,"
	" PRIMARY KEY (device_id, kind, slot));"
	"CREATE UNIQUE INDEX credentials_token ON credentials(secret) WHERE kind = 'token';"
	"CREATE INDEX credentials_username ON credentials(username) WHERE kind = 'basic';",
};
#define SCHEMA_LATEST ((int)KG_NITEMS(migrations))

#define DEVICE_COLS "id, status, attestation, thumb_primary, thumb_secondary, backend, ca_name," \
		    " created_at, updated_at, last_seen, cert_not_after"
#define CA_COLS "name, pem, sha256, subject, verified, challenge, backend, auto_enroll," \
		" added_at, not_after, status, username_check"

enum stmt_id {
	ST_DEV_GET,
	ST_DEV_ADD,
	ST_DEV_UPDATE,
	ST_DEV_REMOVE,
	ST_DEV_TOUCH,
	ST_DEV_THUMB,
	ST_DEV_THUMB_TAKEN,
	ST_DEV_LIST_ALL,
	ST_DEV_LIST_STATUS,
	ST_CRED_SET,
	ST_CRED_USER_TAKEN,
	ST_CRED_CLEAR,
	ST_CRED_GET,
	ST_CRED_FIND_TOKEN,
	ST_CRED_FIND_USER,
	ST_CA_ADD,
	ST_CA_GET,
	ST_CA_GET_SHA,
	ST_CA_VERIFIED,
	ST_CA_UPDATE,
	ST_CA_REMOVE,
	ST_CA_LIST,
	ST_DEV_IMPORT,
	ST_CA_IMPORT,
	ST_CRED_IMPORT,
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_MAX
};

static const char *const stmt_sql[ST_MAX] = {
	[ST_DEV_GET] = "SELECT " DEVICE_COLS " FROM devices WHERE id = ?1",
	/* An enrolment or `device add --cert` already knows the leaf's notAfter. */
	[ST_DEV_ADD] = "INSERT INTO devices (" DEVICE_COLS ")"
		       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10)",
	/* last_seen / cert_not_after belong to touch: an operator's update built from a
	 * row read a minute ago must not roll them back. */
	[ST_DEV_UPDATE] = "UPDATE devices SET status = ?2, attestation = ?3, thumb_primary = ?4,"
			  " thumb_secondary = ?5, backend = ?6, ca_name = ?7, updated_at = ?8"
			  " WHERE id = ?1",
	[ST_DEV_REMOVE] = "DELETE FROM devices WHERE id = ?1",
	[ST_DEV_TOUCH] = "UPDATE devices SET last_seen = ?2,"
			 " cert_not_after = CASE WHEN ?3 = 0 THEN cert_not_after ELSE ?3 END"
			 " WHERE id = ?1",
	[ST_DEV_THUMB] = "SELECT " DEVICE_COLS " FROM devices WHERE attestation = 'thumbprint'"
			 " AND (thumb_primary = ?1 OR thumb_secondary = ?1) ORDER BY id LIMIT 1",
	/* A leaf pins at most one device, else the thumbprint lookup is ambiguous. */
	[ST_DEV_THUMB_TAKEN] = "SELECT 1 FROM devices WHERE id <> ?1 AND"
			       " (thumb_primary IN (?2, ?3) OR thumb_secondary IN (?2, ?3)) LIMIT 1",
	[ST_DEV_LIST_ALL] = "SELECT " DEVICE_COLS " FROM devices ORDER BY id",
	[ST_DEV_LIST_STATUS] = "SELECT " DEVICE_COLS " FROM devices WHERE status = ?1 ORDER BY id",
	[ST_CRED_SET] = "INSERT INTO credentials (device_id, kind, slot, username, secret, created_at)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (device_id, kind, slot) DO UPDATE"
			" SET username = excluded.username, secret = excluded.secret,"
			" created_at = excluded.created_at",
	/* Rotation may keep a user name in both slots of one device, never across two. */
	[ST_CRED_USER_TAKEN] = "SELECT 1 FROM credentials WHERE kind = 'basic' AND username = ?2"
			       " AND device_id <> ?1 LIMIT 1",
	[ST_CRED_CLEAR] = "DELETE FROM credentials WHERE device_id = ?1 AND kind = ?2 AND slot = ?3",
	/* 'basic' < 'sas' < 'token', 'primary' < 'secondary': the order the header promises. */
	[ST_CRED_GET] = "SELECT kind, slot, username, secret, created_at FROM credentials"
			" WHERE device_id = ?1 ORDER BY kind, slot",
	/* Both on their partial index (the WHERE repeats its condition). */
	[ST_CRED_FIND_TOKEN] = "SELECT device_id FROM credentials WHERE kind = 'token' AND secret = ?1"
			       " LIMIT 1",
	[ST_CRED_FIND_USER] = "SELECT device_id FROM credentials WHERE kind = 'basic' AND username = ?1"
			      " LIMIT 1",
	[ST_CA_ADD] = "INSERT INTO cas (" CA_COLS ") VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[ST_CA_GET] = "SELECT " CA_COLS " FROM cas WHERE name = ?1",
	[ST_CA_GET_SHA] = "SELECT " CA_COLS " FROM cas WHERE sha256 = ?1",
	/* Once proven, nothing is pending: the challenge is spent. */
	[ST_CA_VERIFIED] = "UPDATE cas SET verified = 1, challenge = '' WHERE name = ?1",
	[ST_CA_UPDATE] = "UPDATE cas SET backend = ?2, auto_enroll = ?3, status = ?4,"
			" username_check = ?5 WHERE name = ?1",
	[ST_CA_REMOVE] = "DELETE FROM cas WHERE name = ?1",
	[ST_CA_LIST] = "SELECT " CA_COLS " FROM cas ORDER BY name",
	/* kg_registry_import: every column as given, nothing set here; a plain INSERT for
	 * credentials (a slot already filled is a conflict, not a replacement). */
	[ST_DEV_IMPORT] = "INSERT INTO devices (" DEVICE_COLS ")"
			  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[ST_CA_IMPORT] = "INSERT INTO cas (" CA_COLS ")"
			 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
	[ST_CRED_IMPORT] = "INSERT INTO credentials (device_id, kind, slot, username, secret, created_at)"
			   " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
};

struct sqlite_reg {
	struct kg_registry base;   /* first: registry.c sees only this */
	sqlite3 *db;
	enum kg_registry_mode mode;
	int version;
	uint64_t busy_since_ms;    /* start of the current wait for a lock */
	bool busy_reported;        /* this wait was logged and counted */
	sqlite3_stmt *st[ST_MAX];
};

static struct sqlite_reg *to_sreg(struct kg_registry *reg)
{
	return (struct sqlite_reg *)reg;
}

/*
 * Map a SQLite result to a kg_err. SQLite's own words go into reg->errmsg, so a CLI
 * can say "attempt to write a readonly database" or "database or disk is full"
 * instead of "I/O error"; what an operator must see is also logged (the CLI logs
 * errors only: it prints errmsg itself).
 */
static int db_err(struct sqlite_reg *r, int rc, const char *what)
{
	snprintf(r->base.errmsg, sizeof(r->base.errmsg), "%s", sqlite3_errmsg(r->db));
	switch (rc) {
	case SQLITE_CONSTRAINT_PRIMARYKEY:
	case SQLITE_CONSTRAINT_UNIQUE:
		return KG_E_EXISTS;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return KG_E_NOTFOUND;
	case SQLITE_CONSTRAINT_CHECK:
	case SQLITE_CONSTRAINT_NOTNULL:
		return KG_E_INVALID;
	default:
		break;
	}
	kg_log_warnx("registry: %s: %s", what, r->base.errmsg);
	switch (rc & 0xff) {
	case SQLITE_NOMEM:
		return KG_E_RESOURCE;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return KG_E_CORRUPT;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		/* Another process holds the lock past our busy timeout: nothing written. */
		snprintf(r->base.errmsg, sizeof(r->base.errmsg),
			 "registry is locked by another process (%s)", sqlite3_errmsg(r->db));
		return KG_E_BUSY;
	case SQLITE_READONLY:   /* file mode, read-only mount: not the caller's mistake */
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_PROTOCOL:
		return KG_E_IO;
	default:
		return KG_E_INTERNAL;
	}
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * SQLite's busy handler: another process holds the lock. Say so once per wait that
 * lasts BUSY_REPORT_MS (the operator must see why a revocation or an enrolment is not
 * landing; logged as an error so the CLI, which hides warnings, shows it too), count
 * it, and retry with a short backoff until BUSY_TIMEOUT_MS; then SQLite returns
 * SQLITE_BUSY (KG_E_BUSY).
 */
static int on_busy(void *arg, int count)
{
	static const int delays[] = { 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 };
	struct sqlite_reg *r = arg;
	const char *file = r->db != NULL ? sqlite3_db_filename(r->db, "main") : NULL;
	uint64_t now = mono_ms();

	if (count == 0) {
		r->busy_since_ms = now;
		r->busy_reported = false;
	}
	/* Our own writer's commits hold the lock for a millisecond or two: only a wait
	 * longer than any of ours is news. */
	if (!r->busy_reported && now - r->busy_since_ms >= BUSY_REPORT_MS) {
		r->busy_reported = true;
		atomic_fetch_add(&r->base.busy_waits, 1);
		kg_log(KG_LOG_ERR, "registry %s locked by another process, retrying for up to %d s",
		       file != NULL ? file : "?", BUSY_TIMEOUT_MS / 1000);
	}
	if (now - r->busy_since_ms >= BUSY_TIMEOUT_MS)
		return 0;
	/* SQLite's own busy_timeout steps: a lock our writer holds for a commit is gone in
	 * a millisecond or two, and a revocation must not sleep 10 ms behind it. */
	sqlite3_sleep(count < (int)KG_NITEMS(delays) ? delays[count] : 100);
	return 1;
}

/*
 * Create a missing registry file 0600 whatever the umask: the file holds every
 * device's status, and SQLite would create it 0644 & ~umask. Its -wal and -shm are
 * created later by SQLite with the database's mode, so they follow. Only when the
 * file does not exist: this process has no SQLite connection to it yet, so our own
 * fd cannot drop anyone's POSIX locks (see check_magic()).
 */
static int create_private(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0) {
		if (errno == EEXIST)   /* another process was faster: its file, its mode */
			return 0;
		snprintf(err, errlen, "registry %s: cannot create: %s", path, strerror(errno));
		return KG_E_IO;
	}
	if (fchmod(fd, 0600) < 0) {   /* a umask of 0277 would have left 0400 */
		snprintf(err, errlen, "registry %s: chmod 0600: %s", path, strerror(errno));
		close(fd);
		return KG_E_IO;
	}
	close(fd);
	return 0;
}

static void done(sqlite3_stmt *st)
{
	(void)sqlite3_reset(st);
	(void)sqlite3_clear_bindings(st);
}

/* Bind text, or NULL for "" (nullable unique / foreign-key columns). */
static int bind_text_or_null(sqlite3_stmt *st, int idx, const char *s)
{
	if (s[0] == '\0')
		return sqlite3_bind_null(st, idx);
	return sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
}

static int bind_text(sqlite3_stmt *st, int idx, const char *s)
{
	return sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
}

/* Copy a text column into a fixed buffer; a value that does not fit means the file
 * was edited behind our back (the CHECKs bound what we write). */
static int col_copy(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
	const unsigned char *s = sqlite3_column_text(st, col);

	if (s == NULL) {
		dst[0] = '\0';
		return 0;
	}
	return kg_strlcpy(dst, (const char *)s, cap) == 0 ? 0 : KG_E_CORRUPT;
}

static int row_device(sqlite3_stmt *st, struct kg_device *d)
{
	const char *status = (const char *)sqlite3_column_text(st, 1);
	const char *att = (const char *)sqlite3_column_text(st, 2);

	memset(d, 0, sizeof(*d));
	if (col_copy(st, 0, d->id, sizeof(d->id)) != 0 ||
	    kg_device_status_parse(status, &d->status) != 0 ||
	    kg_attestation_parse(att, &d->attestation) != 0 ||
	    col_copy(st, 3, d->thumb_primary, sizeof(d->thumb_primary)) != 0 ||
	    col_copy(st, 4, d->thumb_secondary, sizeof(d->thumb_secondary)) != 0 ||
	    col_copy(st, 5, d->backend, sizeof(d->backend)) != 0 ||
	    col_copy(st, 6, d->ca_name, sizeof(d->ca_name)) != 0)
		return KG_E_CORRUPT;
	d->created_at = sqlite3_column_int64(st, 7);
	d->updated_at = sqlite3_column_int64(st, 8);
	d->last_seen = sqlite3_column_int64(st, 9);
	d->cert_not_after = sqlite3_column_int64(st, 10);
	return 0;
}

/* Fill *ca from a row; the pem is borrowed from the statement when !own. */
static int row_ca(sqlite3_stmt *st, struct kg_ca *ca, bool own)
{
	const char *pem = (const char *)sqlite3_column_text(st, 1);
	const char *status = (const char *)sqlite3_column_text(st, 10);
	const char *uc = (const char *)sqlite3_column_text(st, 11);

	memset(ca, 0, sizeof(*ca));
	if (kg_ca_status_parse(status, &ca->status) != 0)
		return KG_E_CORRUPT;
	ca->has_username_check = uc != NULL;
	if (uc != NULL && kg_username_check_parse(uc, &ca->username_check) != 0)
		return KG_E_CORRUPT;
	if (pem == NULL || col_copy(st, 0, ca->name, sizeof(ca->name)) != 0 ||
	    col_copy(st, 2, ca->sha256, sizeof(ca->sha256)) != 0 ||
	    col_copy(st, 3, ca->subject, sizeof(ca->subject)) != 0 ||
	    col_copy(st, 5, ca->challenge, sizeof(ca->challenge)) != 0 ||
	    col_copy(st, 6, ca->backend, sizeof(ca->backend)) != 0)
		return KG_E_CORRUPT;
	ca->verified = sqlite3_column_int(st, 4) != 0;
	ca->auto_enroll = sqlite3_column_int(st, 7) != 0;
	ca->added_at = sqlite3_column_int64(st, 8);
	ca->not_after = sqlite3_column_int64(st, 9);
	if (!own) {
		/* Callers only read it; the cast is the price of one struct for both uses. */
		ca->pem = (char *)pem;
		return 0;
	}
	if ((ca->pem = strdup(pem)) == NULL)
		return KG_E_RESOURCE;
	return 0;
}

static bool writable(const struct sqlite_reg *r)
{
	return r->mode == KG_REG_READWRITE;
}

/* Step a statement that returns no rows; KG_E_NOTFOUND if it changed nothing. */
static int exec_change(struct sqlite_reg *r, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	done(st);
	if (rc != SQLITE_DONE)
		return db_err(r, rc, what);
	return sqlite3_changes(r->db) > 0 ? 0 : KG_E_NOTFOUND;
}

static int txn(struct sqlite_reg *r, enum stmt_id which)
{
	sqlite3_stmt *st = r->st[which];
	int rc = sqlite3_step(st);

	done(st);
	return rc == SQLITE_DONE ? 0 : db_err(r, rc, stmt_sql[which]);
}

/* ---- ops ------------------------------------------------------------------- */

static void sq_close(struct kg_registry *reg)
{
	struct sqlite_reg *r = to_sreg(reg);

	for (size_t i = 0; i < ST_MAX; i++)
		sqlite3_finalize(r->st[i]);
	sqlite3_close(r->db);
	free(r);
}

static int sq_schema_version(struct kg_registry *reg)
{
	return to_sreg(reg)->version;
}

static int get_device(struct sqlite_reg *r, sqlite3_stmt *st, struct kg_device *out,
		      const char *what)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		rc = row_device(st, out);
	else if (rc == SQLITE_DONE)
		rc = KG_E_NOTFOUND;
	else
		rc = db_err(r, rc, what);
	done(st);
	return rc;
}

static int sq_device_get(struct kg_registry *reg, const char *id, struct kg_device *out)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[ST_DEV_GET];

	if (bind_text(st, 1, id) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "device get");
	}
	return get_device(r, st, out, "device get");
}

static int sq_device_find_thumbprint(struct kg_registry *reg, const char *hex,
				     struct kg_device *out)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[ST_DEV_THUMB];

	if (bind_text(st, 1, hex) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "device find thumbprint");
	}
	return get_device(r, st, out, "device find thumbprint");
}

/* Is one of dev's thumbprints pinned by another device? 0, KG_E_EXISTS or an error. */
static int thumb_taken(struct sqlite_reg *r, const struct kg_device *dev)
{
	sqlite3_stmt *st = r->st[ST_DEV_THUMB_TAKEN];
	int rc;

	if (dev->thumb_primary[0] == '\0')
		return 0;
	if (bind_text(st, 1, dev->id) != SQLITE_OK ||
	    bind_text_or_null(st, 2, dev->thumb_primary) != SQLITE_OK ||
	    bind_text_or_null(st, 3, dev->thumb_secondary) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "device thumbprint check");
	}
	rc = sqlite3_step(st);
	done(st);
	if (rc == SQLITE_ROW)
		return KG_E_EXISTS;
	return rc == SQLITE_DONE ? 0 : db_err(r, rc, "device thumbprint check");
}

/* Insert (ST_DEV_ADD) or rewrite (ST_DEV_UPDATE) a device, thumbprint check included,
 * in one IMMEDIATE transaction so the check cannot race another writer. */
/* One device row inside the caller's transaction: bind, execute, check the thumbprints.
 * Row first, so a taken / missing id is what the caller hears about. */
static int put_device(struct sqlite_reg *r, const struct kg_device *dev, enum stmt_id which,
		      sqlite3_int64 now)
{
	sqlite3_stmt *st = r->st[which];
	const char *what = which == ST_DEV_ADD ? "device add" : "device update";
	int rc;

	if (bind_text(st, 1, dev->id) != SQLITE_OK ||
	    bind_text(st, 2, kg_device_status_str(dev->status)) != SQLITE_OK ||
	    bind_text(st, 3, kg_attestation_str(dev->attestation)) != SQLITE_OK ||
	    bind_text_or_null(st, 4, dev->thumb_primary) != SQLITE_OK ||
	    bind_text_or_null(st, 5, dev->thumb_secondary) != SQLITE_OK ||
	    bind_text(st, 6, dev->backend) != SQLITE_OK ||
	    bind_text_or_null(st, 7, dev->ca_name) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 8, now) != SQLITE_OK ||
	    (which == ST_DEV_ADD &&
	     (sqlite3_bind_int64(st, 9, (sqlite3_int64)dev->last_seen) != SQLITE_OK ||
	      sqlite3_bind_int64(st, 10, (sqlite3_int64)dev->cert_not_after) != SQLITE_OK))) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), what);
	}
	if ((rc = exec_change(r, st, what)) != 0)
		return rc;
	return thumb_taken(r, dev);
}

/* Some errors (I/O, full disk) already rolled back; a handle must never be left inside a
 * transaction, or every later write fails. */
static int rollback(struct sqlite_reg *r, int rc)
{
	if (!sqlite3_get_autocommit(r->db))
		(void)txn(r, ST_ROLLBACK);
	return rc;
}

static int write_device(struct sqlite_reg *r, const struct kg_device *dev, enum stmt_id which)
{
	int rc;

	if (!writable(r))
		return KG_E_INVALID;
	if ((rc = txn(r, ST_BEGIN)) != 0)
		return rc;
	if ((rc = put_device(r, dev, which, (sqlite3_int64)time(NULL))) != 0 ||
	    (rc = txn(r, ST_COMMIT)) != 0)
		return rollback(r, rc);
	return 0;
}

static int sq_device_add(struct kg_registry *reg, const struct kg_device *dev)
{
	return write_device(to_sreg(reg), dev, ST_DEV_ADD);
}

static int sq_device_update(struct kg_registry *reg, const struct kg_device *dev)
{
	return write_device(to_sreg(reg), dev, ST_DEV_UPDATE);
}

/* Run a one-key write statement (DELETE / UPDATE ... WHERE key = ?1). */
static int write_by_key(struct kg_registry *reg, enum stmt_id which, const char *key,
			const char *what)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[which];

	if (!writable(r))
		return KG_E_INVALID;
	if (bind_text(st, 1, key) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), what);
	}
	return exec_change(r, st, what);
}

static int sq_device_remove(struct kg_registry *reg, const char *id)
{
	return write_by_key(reg, ST_DEV_REMOVE, id, "device remove");
}

static int sq_device_touch(struct kg_registry *reg, const char *id, int64_t seen,
			   int64_t cert_not_after)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[ST_DEV_TOUCH];

	if (!writable(r))
		return KG_E_INVALID;
	if (bind_text(st, 1, id) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, (sqlite3_int64)seen) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, (sqlite3_int64)cert_not_after) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "device touch");
	}
	return exec_change(r, st, "device touch");
}

static int sq_device_list(struct kg_registry *reg, int status, kg_device_cb cb, void *arg)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[status < 0 ? ST_DEV_LIST_ALL : ST_DEV_LIST_STATUS];
	struct kg_device d;
	int rc;

	if (status >= 0 &&
	    bind_text(st, 1, kg_device_status_str((enum kg_device_status)status)) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "device list");
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int stop;

		if ((rc = row_device(st, &d)) != 0)
			goto out;
		if ((stop = cb(&d, arg)) != 0) {
			/* A negative kg_err from the callback is passed up as is. */
			rc = stop < 0 ? stop : 0;
			goto out;
		}
	}
	rc = rc == SQLITE_DONE ? 0 : db_err(r, rc, "device list");
out:
	done(st);
	return rc;
}

/* ---- credentials ----------------------------------------------------------- */

/* Is c's basic user name another device's? 0, KG_E_EXISTS or an error. */
static int cred_user_taken(struct sqlite_reg *r, const char *id, const struct kg_credential *c)
{
	sqlite3_stmt *st = r->st[ST_CRED_USER_TAKEN];
	int rc;

	if (c->kind != KG_ATT_BASIC)
		return 0;
	if (bind_text(st, 1, id) != SQLITE_OK || bind_text(st, 2, c->username) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "credential user name check");
	}
	rc = sqlite3_step(st);
	done(st);
	if (rc == SQLITE_ROW) {
		snprintf(r->base.errmsg, sizeof(r->base.errmsg), "user name %s belongs to another device",
			 c->username);
		return KG_E_EXISTS;
	}
	return rc == SQLITE_DONE ? 0 : db_err(r, rc, "credential user name check");
}

/* One credential row inside the caller's transaction: the user-name check, then the
 * upsert. A missing device fails the foreign key: KG_E_NOTFOUND. */
static int put_cred(struct sqlite_reg *r, const char *id, const struct kg_credential *c,
		    sqlite3_int64 now)
{
	sqlite3_stmt *st = r->st[ST_CRED_SET];
	int rc;

	if ((rc = cred_user_taken(r, id, c)) != 0)
		return rc;
	if (bind_text(st, 1, id) != SQLITE_OK ||
	    bind_text(st, 2, kg_attestation_str(c->kind)) != SQLITE_OK ||
	    bind_text(st, 3, kg_cred_slot_str(c->slot)) != SQLITE_OK ||
	    bind_text_or_null(st, 4, c->username) != SQLITE_OK ||
	    bind_text(st, 5, c->secret) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 6, now) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "credential set");
	}
	rc = exec_change(r, st, "credential set");
	if (rc == KG_E_EXISTS && c->kind == KG_ATT_TOKEN)   /* the unique index on the hash */
		snprintf(r->base.errmsg, sizeof(r->base.errmsg), "that token is already stored");
	return rc;
}

/* Check and upsert in one IMMEDIATE transaction, so the user-name check cannot race
 * another writer. */
static int sq_cred_set(struct kg_registry *reg, const char *id, const struct kg_credential *c)
{
	struct sqlite_reg *r = to_sreg(reg);
	int rc;

	if (!writable(r))
		return KG_E_INVALID;
	if ((rc = txn(r, ST_BEGIN)) != 0)
		return rc;
	if ((rc = put_cred(r, id, c, (sqlite3_int64)time(NULL))) != 0 || (rc = txn(r, ST_COMMIT)) != 0)
		return rollback(r, rc);
	return 0;
}

/* Bulk enrolment: put_device n times, then put_cred for each credential, inside one
 * IMMEDIATE transaction (one fsync instead of n). A thumbprint, user name or token hash
 * taken earlier in the batch is seen by the checks, since they read the transaction's
 * own rows. */
static int sq_device_add_many(struct kg_registry *reg, const struct kg_device *devs, size_t n,
			      const struct kg_credential *creds, const size_t *cred_dev,
			      size_t n_creds, size_t *bad)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_int64 now = (sqlite3_int64)time(NULL);
	int rc;

	if (!writable(r))
		return KG_E_INVALID;
	if ((rc = txn(r, ST_BEGIN)) != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		*bad = i;
		if ((rc = put_device(r, &devs[i], ST_DEV_ADD, now)) != 0)
			return rollback(r, rc);
	}
	for (size_t j = 0; j < n_creds; j++) {
		*bad = n + j;
		if ((rc = put_cred(r, devs[cred_dev[j]].id, &creds[j], now)) != 0)
			return rollback(r, rc);
	}
	if ((rc = txn(r, ST_COMMIT)) != 0)
		return rollback(r, rc);
	return 0;
}

static int sq_cred_clear(struct kg_registry *reg, const char *id, enum kg_attestation kind,
			 enum kg_cred_slot slot)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[ST_CRED_CLEAR];

	if (!writable(r))
		return KG_E_INVALID;
	if (bind_text(st, 1, id) != SQLITE_OK || bind_text(st, 2, kg_attestation_str(kind)) != SQLITE_OK ||
	    bind_text(st, 3, kg_cred_slot_str(slot)) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "credential clear");
	}
	return exec_change(r, st, "credential clear");
}

static int row_cred(sqlite3_stmt *st, struct kg_credential *c)
{
	memset(c, 0, sizeof(*c));
	if (kg_attestation_parse((const char *)sqlite3_column_text(st, 0), &c->kind) != 0 ||
	    !kg_attestation_has_secret(c->kind) ||
	    kg_cred_slot_parse((const char *)sqlite3_column_text(st, 1), &c->slot) != 0 ||
	    col_copy(st, 2, c->username, sizeof(c->username)) != 0 ||
	    col_copy(st, 3, c->secret, sizeof(c->secret)) != 0)
		return KG_E_CORRUPT;
	c->created_at = sqlite3_column_int64(st, 4);
	return 0;
}

static int sq_cred_get(struct kg_registry *reg, const char *id, struct kg_credential *out,
		       size_t *n)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[ST_CRED_GET];
	int rc;

	if (bind_text(st, 1, id) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "credential get");
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* The primary key bounds the rows to KG_CRED_PER_DEVICE; more is corruption. */
		if (*n >= KG_CRED_PER_DEVICE || (rc = row_cred(st, &out[*n])) != 0) {
			rc = KG_E_CORRUPT;
			goto out;
		}
		(*n)++;
	}
	rc = rc == SQLITE_DONE ? 0 : db_err(r, rc, "credential get");
out:
	done(st);
	return rc;
}

static int sq_cred_find(struct kg_registry *reg, enum kg_attestation kind, const char *key,
			char *id_out)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[kind == KG_ATT_TOKEN ? ST_CRED_FIND_TOKEN : ST_CRED_FIND_USER];
	int rc;

	if (bind_text(st, 1, key) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "credential find");
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = col_copy(st, 0, id_out, KG_DEVICE_ID_MAX + 1);
	else if (rc == SQLITE_DONE)
		rc = KG_E_NOTFOUND;
	else
		rc = db_err(r, rc, "credential find");
	done(st);
	return rc;
}

/* A CA's username_check: its word, or NULL when the config's applies. */
static int bind_username_check(sqlite3_stmt *st, int idx, const struct kg_ca *ca)
{
	if (!ca->has_username_check)
		return sqlite3_bind_null(st, idx);
	return bind_text(st, idx, kg_username_check_str(ca->username_check));
}

static int sq_ca_add(struct kg_registry *reg, struct kg_ca *ca)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[ST_CA_ADD];
	int64_t now = (int64_t)time(NULL);
	int rc;

	if (!writable(r))
		return KG_E_INVALID;
	if (bind_text(st, 1, ca->name) != SQLITE_OK || bind_text(st, 2, ca->pem) != SQLITE_OK ||
	    bind_text(st, 3, ca->sha256) != SQLITE_OK || bind_text(st, 4, ca->subject) != SQLITE_OK ||
	    bind_text(st, 5, ca->challenge) != SQLITE_OK ||
	    bind_text(st, 6, ca->backend) != SQLITE_OK ||
	    sqlite3_bind_int(st, 7, ca->auto_enroll ? 1 : 0) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 8, (sqlite3_int64)now) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 9, (sqlite3_int64)ca->not_after) != SQLITE_OK ||
	    bind_text(st, 10, kg_ca_status_str(ca->status)) != SQLITE_OK ||
	    bind_username_check(st, 11, ca) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "ca add");
	}
	if ((rc = exec_change(r, st, "ca add")) == 0)
		ca->added_at = now;
	return rc;
}

static int get_ca(struct kg_registry *reg, enum stmt_id which, const char *key, struct kg_ca *out)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[which];
	int rc;

	if (bind_text(st, 1, key) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "ca get");
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = row_ca(st, out, true);
	else if (rc == SQLITE_DONE)
		rc = KG_E_NOTFOUND;
	else
		rc = db_err(r, rc, "ca get");
	done(st);
	return rc;
}

static int sq_ca_get(struct kg_registry *reg, const char *name, struct kg_ca *out)
{
	return get_ca(reg, ST_CA_GET, name, out);
}

static int sq_ca_get_by_sha256(struct kg_registry *reg, const char *hex, struct kg_ca *out)
{
	return get_ca(reg, ST_CA_GET_SHA, hex, out);
}

static int sq_ca_set_verified(struct kg_registry *reg, const char *name)
{
	return write_by_key(reg, ST_CA_VERIFIED, name, "ca set verified");
}

static int sq_ca_update(struct kg_registry *reg, const struct kg_ca *ca)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[ST_CA_UPDATE];

	if (!writable(r))
		return KG_E_INVALID;
	if (bind_text(st, 1, ca->name) != SQLITE_OK || bind_text(st, 2, ca->backend) != SQLITE_OK ||
	    sqlite3_bind_int(st, 3, ca->auto_enroll ? 1 : 0) != SQLITE_OK ||
	    bind_text(st, 4, kg_ca_status_str(ca->status)) != SQLITE_OK ||
	    bind_username_check(st, 5, ca) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "ca update");
	}
	return exec_change(r, st, "ca update");
}

/* A CA that devices are bound to is in use: refuse with KG_E_EXISTS before the
 * delete, so the operator reads "in use" and not a foreign-key error. The RESTRICT key
 * (schema v3) stays the real guard against a race with a concurrent enrolment. */
static int sq_ca_remove(struct kg_registry *reg, const char *name)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = NULL;
	int bound = 0;

	if (!writable(r))
		return KG_E_INVALID;
	if (sqlite3_prepare_v2(r->db, "SELECT EXISTS (SELECT 1 FROM devices WHERE ca_name = ?1)", -1,
			       &st, NULL) != SQLITE_OK)
		return db_err(r, sqlite3_errcode(r->db), "ca remove");
	if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		bound = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (bound)
		return KG_E_EXISTS;
	return write_by_key(reg, ST_CA_REMOVE, name, "ca remove");
}

static int sq_ca_list(struct kg_registry *reg, kg_ca_cb cb, void *arg)
{
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = r->st[ST_CA_LIST];
	struct kg_ca ca;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int stop;

		if ((rc = row_ca(st, &ca, false)) != 0)
			goto out;
		if ((stop = cb(&ca, arg)) != 0) {
			rc = stop < 0 ? stop : 0;
			goto out;
		}
	}
	rc = rc == SQLITE_DONE ? 0 : db_err(r, rc, "ca list");
out:
	done(st);
	return rc;
}

/* Prepared on use: a reload asks once, the hot path never. */
static int sq_backends_in_use(struct kg_registry *reg, kg_backend_use_cb cb, void *arg)
{
	static const char sql[] =
		"SELECT backend, sum(dev), sum(ca) FROM ("
		" SELECT backend, 1 AS dev, 0 AS ca FROM devices WHERE backend <> ''"
		" UNION ALL SELECT backend, 0, 1 FROM cas WHERE backend <> '')"
		" GROUP BY backend ORDER BY backend";
	struct sqlite_reg *r = to_sreg(reg);
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(r, sqlite3_errcode(r->db), "backends in use");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		int stop;

		if (name == NULL)
			continue;
		if ((stop = cb(name, sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2), arg)) != 0) {
			rc = stop < 0 ? stop : 0;
			goto out;
		}
	}
	rc = rc == SQLITE_DONE ? 0 : db_err(r, rc, "backends in use");
out:
	sqlite3_finalize(st);
	return rc;
}

/* ---- import: rows as given ------------------------------------------------- */

static int import_ca(struct sqlite_reg *r, const struct kg_ca *ca)
{
	sqlite3_stmt *st = r->st[ST_CA_IMPORT];

	if (bind_text(st, 1, ca->name) != SQLITE_OK || bind_text(st, 2, ca->pem) != SQLITE_OK ||
	    bind_text(st, 3, ca->sha256) != SQLITE_OK || bind_text(st, 4, ca->subject) != SQLITE_OK ||
	    sqlite3_bind_int(st, 5, ca->verified ? 1 : 0) != SQLITE_OK ||
	    bind_text(st, 6, ca->challenge) != SQLITE_OK ||
	    bind_text(st, 7, ca->backend) != SQLITE_OK ||
	    sqlite3_bind_int(st, 8, ca->auto_enroll ? 1 : 0) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 9, (sqlite3_int64)ca->added_at) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 10, (sqlite3_int64)ca->not_after) != SQLITE_OK ||
	    bind_text(st, 11, kg_ca_status_str(ca->status)) != SQLITE_OK ||
	    bind_username_check(st, 12, ca) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "ca import");
	}
	return exec_change(r, st, "ca import");
}

static int import_device(struct sqlite_reg *r, const struct kg_device *dev)
{
	sqlite3_stmt *st = r->st[ST_DEV_IMPORT];
	int rc;

	if (bind_text(st, 1, dev->id) != SQLITE_OK ||
	    bind_text(st, 2, kg_device_status_str(dev->status)) != SQLITE_OK ||
	    bind_text(st, 3, kg_attestation_str(dev->attestation)) != SQLITE_OK ||
	    bind_text_or_null(st, 4, dev->thumb_primary) != SQLITE_OK ||
	    bind_text_or_null(st, 5, dev->thumb_secondary) != SQLITE_OK ||
	    bind_text(st, 6, dev->backend) != SQLITE_OK ||
	    bind_text_or_null(st, 7, dev->ca_name) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 8, (sqlite3_int64)dev->created_at) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 9, (sqlite3_int64)dev->updated_at) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 10, (sqlite3_int64)dev->last_seen) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 11, (sqlite3_int64)dev->cert_not_after) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "device import");
	}
	if ((rc = exec_change(r, st, "device import")) != 0)
		return rc;
	if ((rc = thumb_taken(r, dev)) == KG_E_EXISTS)   /* the copy names the cause */
		snprintf(r->base.errmsg, sizeof(r->base.errmsg),
			 "a thumbprint of device %s is another device's", dev->id);
	return rc;
}

static int import_cred(struct sqlite_reg *r, const char *id, const struct kg_credential *c)
{
	sqlite3_stmt *st = r->st[ST_CRED_IMPORT];
	int rc;

	if ((rc = cred_user_taken(r, id, c)) != 0)
		return rc;
	if (bind_text(st, 1, id) != SQLITE_OK ||
	    bind_text(st, 2, kg_attestation_str(c->kind)) != SQLITE_OK ||
	    bind_text(st, 3, kg_cred_slot_str(c->slot)) != SQLITE_OK ||
	    bind_text_or_null(st, 4, c->username) != SQLITE_OK ||
	    bind_text(st, 5, c->secret) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 6, (sqlite3_int64)c->created_at) != SQLITE_OK) {
		done(st);
		return db_err(r, sqlite3_errcode(r->db), "credential import");
	}
	/* A filled slot (primary key) or a stored token hash (unique index): KG_E_EXISTS,
	 * with SQLite's words naming which. */
	return exec_change(r, st, "credential import");
}

/* Everything in one IMMEDIATE transaction: CAs first (devices name them), then
 * devices, then credentials; *bad counts rows in that order. */
static int sq_import(struct kg_registry *reg, const struct kg_ca *cas, size_t n_cas,
		     const struct kg_device *devs, size_t n, const struct kg_credential *creds,
		     const size_t *cred_dev, size_t n_creds, size_t *bad)
{
	struct sqlite_reg *r = to_sreg(reg);
	int rc;

	if (!writable(r))
		return KG_E_INVALID;
	if ((rc = txn(r, ST_BEGIN)) != 0)
		return rc;
	for (size_t i = 0; i < n_cas; i++) {
		*bad = i;
		if ((rc = import_ca(r, &cas[i])) != 0)
			return rollback(r, rc);
	}
	for (size_t i = 0; i < n; i++) {
		*bad = n_cas + i;
		if ((rc = import_device(r, &devs[i])) != 0)
			return rollback(r, rc);
	}
	for (size_t j = 0; j < n_creds; j++) {
		*bad = n_cas + n + j;
		if ((rc = import_cred(r, devs[cred_dev[j]].id, &creds[j])) != 0)
			return rollback(r, rc);
	}
	*bad = n_cas + n + n_creds;
	if ((rc = txn(r, ST_COMMIT)) != 0)
		return rollback(r, rc);
	return 0;
}

static int sq_begin(struct kg_registry *reg)
{
	struct sqlite_reg *r = to_sreg(reg);

	return writable(r) ? txn(r, ST_BEGIN) : KG_E_INVALID;
}

static int sq_commit(struct kg_registry *reg)
{
	return txn(to_sreg(reg), ST_COMMIT);
}

static void sq_rollback(struct kg_registry *reg)
{
	struct sqlite_reg *r = to_sreg(reg);

	/* Some errors already rolled back: only roll back an open transaction. */
	if (!sqlite3_get_autocommit(r->db))
		(void)txn(r, ST_ROLLBACK);
}

static const struct kg_registry_ops sqlite_ops = {
	.name = "sqlite",
	.close = sq_close,
	.schema_version = sq_schema_version,
	.device_get = sq_device_get,
	.device_add = sq_device_add,
	.device_add_many = sq_device_add_many,
	.device_update = sq_device_update,
	.device_remove = sq_device_remove,
	.import = sq_import,
	.device_touch = sq_device_touch,
	.device_find_thumbprint = sq_device_find_thumbprint,
	.device_list = sq_device_list,
	.cred_set = sq_cred_set,
	.cred_clear = sq_cred_clear,
	.cred_get = sq_cred_get,
	.cred_find = sq_cred_find,
	.ca_add = sq_ca_add,
	.ca_get = sq_ca_get,
	.ca_get_by_sha256 = sq_ca_get_by_sha256,
	.ca_set_verified = sq_ca_set_verified,
	.ca_update = sq_ca_update,
	.ca_remove = sq_ca_remove,
	.ca_list = sq_ca_list,
	.backends_in_use = sq_backends_in_use,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
};

/* ---- open: identify, configure, migrate ------------------------------------- */

/*
 * A non-empty file must start with the SQLite magic: SQLite itself treats a file
 * shorter than one page as an empty database and would happily initialise over it.
 *
 * The header is read through SQLite's own file handle, never with open()/close() of
 * our own: POSIX advisory locks belong to the process, and closing any fd of the file
 * drops every lock the process's SQLite connections hold on it. Another process (the
 * CLI) would then believe it is the last connection of the WAL database, checkpoint
 * and delete the WAL under our live connections, and the daemon would go on writing
 * into a ghost file nobody else reads. Nothing here writes.
 * Returns 0 (SQLite file or empty), or a kg_err with a message.
 */
static int check_magic(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	static const char magic[16] = "SQLite format 3";   /* with its NUL: 16 bytes */
	char head[sizeof(magic)];
	sqlite3_file *f = NULL;
	struct stat st;

	/* The size from stat(): SQLite's own xFileSize reports a 1-byte file as empty. */
	if (stat(path, &st) != 0 ||
	    sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK ||
	    f == NULL || f->pMethods == NULL) {
		snprintf(err, errlen, "registry %s: cannot read the file header", path);
		return KG_E_IO;
	}
	/* A 0-byte file is a new SQLite database (what sqlite3(1) leaves behind). */
	if (st.st_size == 0)
		return 0;
	if (st.st_size >= (off_t)sizeof(magic) &&
	    f->pMethods->xRead(f, head, (int)sizeof(head), 0) == SQLITE_OK &&
	    memcmp(head, magic, sizeof(magic)) == 0)
		return 0;
	snprintf(err, errlen, "registry %s: not a registry database: file is not a database", path);
	return KG_E_CORRUPT;
}

/* One integer from a single-row query (PRAGMA application_id, user_version...). */
static int query_int(sqlite3 *db, const char *sql, int *out)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int(st, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

/* Run a pragma whose first row must read `want` (journal_mode, quick_check). */
static int pragma_expect(sqlite3 *db, const char *sql, const char *want, const char *path,
			 char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	const char *got;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		snprintf(err, errlen, "registry %s: %s: %s", path, sql, sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB ? KG_E_CORRUPT
										       : KG_E_IO;
	}
	got = (const char *)sqlite3_column_text(st, 0);
	if (got == NULL || strcmp(got, want) != 0) {
		snprintf(err, errlen, "registry %s: %s: %s", path, sql, got != NULL ? got : "NULL");
		sqlite3_finalize(st);
		return KG_E_CORRUPT;
	}
	sqlite3_finalize(st);
	return 0;
}

/*
 * Read-only identification. Sets *version (0: a new, empty database). KG_E_CORRUPT
 * with a message for anything that is not ours or is newer than this build.
 */
static int identify(sqlite3 *db, const char *path, int *version, char *err, size_t errlen)
{
	int app_id = 0, user_version = 0, objects = 0;
	int rc;

	if ((rc = query_int(db, "PRAGMA application_id", &app_id)) != SQLITE_OK ||
	    (rc = query_int(db, "PRAGMA user_version", &user_version)) != SQLITE_OK ||
	    (rc = query_int(db, "SELECT count(*) FROM sqlite_master", &objects)) != SQLITE_OK) {
		if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT) {
			snprintf(err, errlen, "registry %s: not a registry database: %s", path,
				 sqlite3_errmsg(db));
			return KG_E_CORRUPT;
		}
		snprintf(err, errlen, "registry %s: %s", path, sqlite3_errmsg(db));
		return (rc & 0xff) == SQLITE_NOMEM ? KG_E_RESOURCE : KG_E_IO;
	}
	if (app_id == 0 && user_version == 0 && objects == 0) {
		*version = 0;
		return 0;
	}
	if ((uint32_t)app_id != KG_REGISTRY_SQLITE_APP_ID) {
		snprintf(err, errlen,
			 "registry %s: not a registry database: foreign SQLite database"
			 " (application_id 0x%08x, %d schema objects)",
			 path, (unsigned)app_id, objects);
		return KG_E_CORRUPT;
	}
	if (user_version > SCHEMA_LATEST) {
		snprintf(err, errlen, "registry %s: schema version %d is newer than this build (%d)",
			 path, user_version, SCHEMA_LATEST);
		return KG_E_CORRUPT;
	}
	if (user_version < 1) {
		/* Our id is written in the same transaction as version 1. */
		snprintf(err, errlen, "registry %s: not a registry database: schema version %d",
			 path, user_version);
		return KG_E_CORRUPT;
	}
	*version = user_version;
	return 0;
}

static int exec_sql(sqlite3 *db, const char *sql, const char *path, char *err, size_t errlen)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	if (rc == SQLITE_OK)
		return 0;
	snprintf(err, errlen, "registry %s: %s: %s", path, sql,
		 msg != NULL ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return (rc & 0xff) == SQLITE_CORRUPT ? KG_E_CORRUPT : KG_E_IO;
}

/*
 * Run migrations until `target`. Each step re-reads user_version inside its
 * IMMEDIATE transaction: another process may have migrated while we waited.
 */
static int migrate(sqlite3 *db, const char *path, int *version, int target, char *err,
		   size_t errlen)
{
	const int from = *version;
	char sql[64];
	int rc;

	while (*version < target) {
		int cur = 0;

		if ((rc = exec_sql(db, "BEGIN IMMEDIATE", path, err, errlen)) != 0)
			return rc;
		if (query_int(db, "PRAGMA user_version", &cur) != SQLITE_OK) {
			snprintf(err, errlen, "registry %s: %s", path, sqlite3_errmsg(db));
			rc = KG_E_IO;
			goto out_rollback;
		}
		if (cur > SCHEMA_LATEST) {
			snprintf(err, errlen, "registry %s: schema version %d is newer than this build (%d)",
				 path, cur, SCHEMA_LATEST);
			rc = KG_E_CORRUPT;
			goto out_rollback;
		}
		if (cur >= target) {
			/* Someone else got there first; we wrote nothing. */
			(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			*version = cur;
			return 0;
		}
		if (cur == 0) {
			snprintf(sql, sizeof(sql), "PRAGMA application_id = %u",
				 (unsigned)KG_REGISTRY_SQLITE_APP_ID);
			if ((rc = exec_sql(db, sql, path, err, errlen)) != 0)
				goto out_rollback;
		}
		if ((rc = exec_sql(db, migrations[cur], path, err, errlen)) != 0)
			goto out_rollback;
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", cur + 1);
		if ((rc = exec_sql(db, sql, path, err, errlen)) != 0)
			goto out_rollback;
		if ((rc = exec_sql(db, "COMMIT", path, err, errlen)) != 0)
			goto out_rollback;
		if (from > 0)   /* an existing database: worth a line; a new one is not */
			kg_log_info("registry %s: migrated schema %d -> %d", path, cur, cur + 1);
		*version = cur + 1;
	}
	return 0;

out_rollback:
	(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/*
 * Open the SQLite connection (flags as sqlite3_open_v2() takes them), check that the
 * file is an SQLite database and identify it as a registry of schema *version (0: an
 * empty file), writing nothing. *dbp is set even on failure (the caller closes it);
 * r->db is the connection, for the busy handler.
 */
static int open_identify(struct sqlite_reg *r, const char *path, int flags, sqlite3 **dbp,
			 int *version, char *err, size_t errlen)
{
	int rc = sqlite3_open_v2(path, dbp, flags, NULL);

	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "registry %s: %s", path,
			 *dbp != NULL ? sqlite3_errmsg(*dbp) : sqlite3_errstr(rc));
		return rc == SQLITE_NOMEM ? KG_E_RESOURCE : KG_E_IO;
	}
	if ((rc = check_magic(*dbp, path, err, errlen)) != 0)
		return rc;
	(void)sqlite3_extended_result_codes(*dbp, 1);
	/* Neither this nor identify() writes: safe before we know whose file this is. */
	r->db = *dbp;
	(void)sqlite3_busy_handler(*dbp, on_busy, r);
	return identify(*dbp, path, version, err, errlen);
}

/*
 * Open the connection, identify the file (read-only), then in READWRITE switch to
 * WAL and migrate up to `target`. On success *dbp is open and *version current.
 */
static int db_open(struct sqlite_reg *r, const char *path, enum kg_registry_mode mode, int target,
		   sqlite3 **dbp, int *version, char *err, size_t errlen)
{
	int flags = SQLITE_OPEN_NOMUTEX;
	sqlite3 *db = NULL;
	struct stat st;
	int rc;

	/* stat(), not open(): see check_magic() for why this process opens no fd of its own. */
	if (stat(path, &st) != 0) {
		if (!(errno == ENOENT && mode == KG_REG_READWRITE)) {
			snprintf(err, errlen, "registry %s: %s", path, strerror(errno));
			return errno == ENOENT ? KG_E_NOTFOUND : KG_E_IO;
		}
		if ((rc = create_private(path, err, errlen)) != 0)
			return rc;
	} else if (mode == KG_REG_READWRITE && S_ISREG(st.st_mode) && (st.st_mode & 0007) != 0) {
		kg_log_warnx("registry %s is accessible to every local user (mode %04o): chmod 0600",
			     path, (unsigned)(st.st_mode & 07777));
	}
	flags |= mode == KG_REG_READWRITE ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
					  : SQLITE_OPEN_READONLY;
	if ((rc = open_identify(r, path, flags, &db, version, err, errlen)) != 0)
		goto out_close;
	if (mode == KG_REG_READONLY && *version != SCHEMA_LATEST) {
		if (*version == 0) {
			snprintf(err, errlen, "registry %s: not initialised (open it read-write once)",
				 path);
			rc = KG_E_CORRUPT;
		} else {
			snprintf(err, errlen,
				 "registry %s: schema version %d is older than this build (%d);"
				 " open it read-write to migrate",
				 path, *version, SCHEMA_LATEST);
			rc = KG_E_INVALID;
		}
		goto out_close;
	}
	/* Ours (or empty): from here on writing is allowed. */
	if ((rc = exec_sql(db, "PRAGMA foreign_keys = ON", path, err, errlen)) != 0)
		goto out_close;
	if (mode == KG_REG_READWRITE) {
		/* WAL lets worker readers run beside the writer; NORMAL is durable enough
		 * in WAL mode (a power cut may lose the last commits, never consistency). */
		if ((rc = pragma_expect(db, "PRAGMA journal_mode = WAL", "wal", path, err, errlen)) != 0 ||
		    (rc = exec_sql(db, "PRAGMA synchronous = NORMAL", path, err, errlen)) != 0)
			goto out_close;
		/* Check the pages before rewriting the schema over them (O(size): only
		 * when a migration is due, not on every open). */
		if (*version > 0 && *version < target &&
		    (rc = pragma_expect(db, "PRAGMA quick_check", "ok", path, err, errlen)) != 0)
			goto out_close;
		if ((rc = migrate(db, path, version, target, err, errlen)) != 0)
			goto out_close;
	}
	*dbp = db;
	return 0;

out_close:
	r->db = NULL;
	sqlite3_close(db);
	return rc;
}

static int sqlite_open(const char *path, enum kg_registry_mode mode, struct kg_registry **out,
		       char *err, size_t errlen)
{
	struct sqlite_reg *r;
	int rc;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "registry %s: out of memory", path);
		return KG_E_RESOURCE;
	}
	r->base.ops = &sqlite_ops;
	r->mode = mode;
	if ((rc = db_open(r, path, mode, SCHEMA_LATEST, &r->db, &r->version, err, errlen)) != 0)
		goto out_free;
	for (size_t i = 0; i < ST_MAX; i++) {
		if (sqlite3_prepare_v3(r->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->st[i],
				       NULL) != SQLITE_OK) {
			snprintf(err, errlen, "registry %s: prepare: %s", path, sqlite3_errmsg(r->db));
			rc = KG_E_INTERNAL;
			goto out_finalize;
		}
	}
	*out = &r->base;
	return 0;

out_finalize:
	for (size_t i = 0; i < ST_MAX; i++)
		sqlite3_finalize(r->st[i]);
	sqlite3_close(r->db);
out_free:
	free(r);
	return rc;
}

int kg_registry_sqlite_open(const char *path, enum kg_registry_mode mode, struct kg_registry **out,
			    char *err, size_t errlen)
{
	char dummy[1];

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (path == NULL || path[0] == '\0' || out == NULL)
		return KG_E_INVALID;
	*out = NULL;
	return sqlite_open(path, mode, out, err, errlen);
}

int kg_registry_sqlite_schema_latest(void)
{
	return SCHEMA_LATEST;
}

int kg_registry_sqlite_version(const char *path, int *version, char *err, size_t errlen)
{
	struct sqlite_reg tmp = { .mode = KG_REG_READONLY };   /* for the busy handler */
	sqlite3 *db = NULL;
	int rc;

	*version = 0;
	rc = open_identify(&tmp, path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, &db, version,
			   err, errlen);
	sqlite3_close(db);
	return rc;
}

int kg_registry_sqlite_migrate(const char *path, int version, char *err, size_t errlen)
{
	char dummy[1];
	struct sqlite_reg tmp = { .mode = KG_REG_READWRITE };   /* for the busy handler */
	sqlite3 *db = NULL;
	int have = 0, rc;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (path == NULL || path[0] == '\0' || version < 1 || version > SCHEMA_LATEST) {
		snprintf(err, errlen, "registry: schema version must be 1..%d", SCHEMA_LATEST);
		return KG_E_INVALID;
	}
	if ((rc = db_open(&tmp, path, KG_REG_READWRITE, version, &db, &have, err, errlen)) != 0)
		return rc;
	sqlite3_close(db);
	return 0;
}
