/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * registry_pg.c - the shared registry store: PostgreSQL through libpq, for several
 * appliances that must agree on who may connect (issue 16).
 *
 * Contract: the same semantics as registry_sqlite.c behind the same ops table (return
 * codes, all-or-nothing add_many, lists ordered bytewise by id / name). Everything lives
 * in the schema KG_PG_SCHEMA, created at version 6 (SQLite's numbering) by a READWRITE
 * open under a transaction-level advisory lock, with the change feed of docs/registry.md
 * (table, triggers, pg_notify on KG_PG_CHANNEL). A handle is one PGconn (one thread);
 * statements are prepared on first use per connection. A lost connection is KG_E_IO
 * for the call that lost it and is re-established by the next call (a dead idle
 * connection is noticed before the call and replaced, so a database restart between
 * two calls costs neither). A password in the URI never reaches a message or a log.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "ops/err.h"
#include "ops/log.h"
#include "registry/registry.h"

/* The schema version this store creates; continues SQLite's numbering. */
#define PG_SCHEMA_LATEST 6
/* How long a statement waits for a row or table lock another session holds before
 * KG_E_BUSY (SQLite's busy timeout). */
#define PG_LOCK_TIMEOUT "5s"
/* Advisory lock keys (pg_advisory_xact_lock(int, int)): "KTLG" and a purpose. The
 * schema key serialises creation and migration across appliances; the write key
 * serialises the check-then-write of thumbprints and user names (what SQLite's BEGIN
 * IMMEDIATE gives the SQLite store). */
#define PG_LOCK_CLASS 0x4b544c47
#define PG_LOCK_SCHEMA 1
#define PG_LOCK_WRITE 2

#define S KG_PG_SCHEMA "."

/*
 * Schema steps: pg_steps[i] takes the schema from `from` to `to`. A new database goes
 * straight to 6, the first version this store knows; a later change appends a step
 * (from 6 to 7), never edits this one. The CHECKs are SQLite's v6; empty strings are
 * NULL where a column is unique or a foreign key, as there.
 */
static const struct pg_step {
	int from, to;
	const char *sql;
} pg_steps[] = {
	{ 0, 6,
	  "CREATE SCHEMA IF NOT EXISTS " KG_PG_SCHEMA ";"
	  "CREATE TABLE " S "meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
	  "CREATE TABLE " S "cas ("
	  " name TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 63),"
	  " pem TEXT NOT NULL,"
	  " sha256 TEXT NOT NULL UNIQUE CHECK (length(sha256) = 64),"
	  " subject TEXT NOT NULL DEFAULT '',"
	  " verified BOOLEAN NOT NULL DEFAULT false,"
	  " challenge TEXT NOT NULL DEFAULT '',"
	  " backend TEXT NOT NULL DEFAULT '',"
	  " auto_enroll BOOLEAN NOT NULL DEFAULT false,"
	  " added_at BIGINT NOT NULL,"
	  " not_after BIGINT NOT NULL DEFAULT 0,"
	  " status TEXT NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled', 'revoked')),"
	  " username_check TEXT CHECK (username_check IS NULL OR"
	  "  username_check IN ('strict', 'rewrite', 'pass')));"
	  "CREATE TABLE " S "devices ("
	  " id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),"
	  " status TEXT NOT NULL CHECK (status IN"
	  "  ('enabled', 'disabled', 'suspended', 'quarantined', 'decommissioned')),"
	  " attestation TEXT NOT NULL CHECK (attestation IN"
	  "  ('ca', 'thumbprint', 'sas', 'token', 'basic')),"
	  " thumb_primary TEXT CHECK (thumb_primary IS NULL OR length(thumb_primary) = 64),"
	  " thumb_secondary TEXT CHECK (thumb_secondary IS NULL OR length(thumb_secondary) = 64),"
	  " backend TEXT NOT NULL DEFAULT '',"
	  " ca_name TEXT REFERENCES " S "cas(name) ON DELETE RESTRICT,"
	  " created_at BIGINT NOT NULL,"
	  " updated_at BIGINT NOT NULL,"
	  " last_seen BIGINT NOT NULL DEFAULT 0,"
	  " cert_not_after BIGINT NOT NULL DEFAULT 0);"
	  "CREATE INDEX devices_thumb_primary ON " S "devices(thumb_primary);"
	  "CREATE INDEX devices_thumb_secondary ON " S "devices(thumb_secondary);"
	  "CREATE INDEX devices_status ON " S "devices(status, id);"
	  "CREATE INDEX devices_ca_name ON " S "devices(ca_name);"
	  "CREATE TABLE " S "credentials ("
	  " device_id TEXT NOT NULL REFERENCES " S "devices(id) ON DELETE CASCADE,"
	  " kind TEXT NOT NULL CHECK (kind IN ('sas', 'token', 'basic')),"
	  " slot TEXT NOT NULL CHECK (slot IN ('primary', 'secondary')),"
	  " username TEXT CHECK ((kind = 'basic') = (username IS NOT NULL)"
	  "  AND (username IS NULL OR length(username) BETWEEN 1 AND 128)),"
	  " secret TEXT NOT NULL CHECK (length(secret) BETWEEN 1 AND 200),"
	  " created_at BIGINT NOT NULL,"
	  " PRIMARY KEY (device_id, kind, slot));"
	  "CREATE UNIQUE INDEX credentials_token ON " S "credentials(secret) WHERE kind = 'token';"
	  "CREATE INDEX credentials_username ON " S "credentials(username) WHERE kind = 'basic';"
	  /* The change feed (docs/registry.md, "PostgreSQL"): one row per change that
	   * matters to a live session, announced at commit; a rolled-back transaction
	   * leaves a gap in version and announces nothing. Triggers, so an operator's own
	   * SQL is seen as well as the CLI's. */
	  "CREATE TABLE " S "changes ("
	  " version BIGSERIAL PRIMARY KEY,"
	  " kind TEXT NOT NULL CHECK (kind IN ('device', 'ca')),"
	  " name TEXT NOT NULL,"
	  " at BIGINT NOT NULL);"
	  "CREATE FUNCTION " S "note_change(k TEXT, n TEXT) RETURNS void LANGUAGE plpgsql AS $$"
	  " DECLARE v BIGINT;"
	  " BEGIN"
	  "  INSERT INTO " S "changes (kind, name, at)"
	  "   VALUES (k, n, floor(extract(epoch FROM now()))::bigint) RETURNING version INTO v;"
	  "  PERFORM pg_notify('" KG_PG_CHANNEL "', k || ' ' || v);"
	  " END $$;"
	  "CREATE FUNCTION " S "devices_changed() RETURNS trigger LANGUAGE plpgsql AS $$"
	  " BEGIN"
	  "  IF TG_OP = 'DELETE' THEN PERFORM " S "note_change('device', OLD.id);"
	  "  ELSE"
	  "   IF TG_OP = 'UPDATE' AND OLD.id <> NEW.id THEN"
	  "    PERFORM " S "note_change('device', OLD.id);"
	  "   END IF;"
	  "   PERFORM " S "note_change('device', NEW.id);"
	  "  END IF;"
	  "  RETURN NULL;"
	  " END $$;"
	  "CREATE FUNCTION " S "credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$"
	  " BEGIN"
	  "  IF TG_OP <> 'INSERT' THEN PERFORM " S "note_change('device', OLD.device_id); END IF;"
	  "  IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR OLD.device_id <> NEW.device_id) THEN"
	  "   PERFORM " S "note_change('device', NEW.device_id);"
	  "  END IF;"
	  "  RETURN NULL;"
	  " END $$;"
	  "CREATE FUNCTION " S "cas_changed() RETURNS trigger LANGUAGE plpgsql AS $$"
	  " BEGIN"
	  "  IF TG_OP <> 'INSERT' THEN PERFORM " S "note_change('ca', OLD.name); END IF;"
	  "  IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR OLD.name <> NEW.name) THEN"
	  "   PERFORM " S "note_change('ca', NEW.name);"
	  "  END IF;"
	  "  RETURN NULL;"
	  " END $$;"
	  "CREATE TRIGGER devices_changes_insdel AFTER INSERT OR DELETE ON " S "devices"
	  " FOR EACH ROW EXECUTE FUNCTION " S "devices_changed();"
	  /* last_seen, cert_not_after and updated_at alone are not news: the daemon's
	   * last-seen writes must not flood the feed. */
	  "CREATE TRIGGER devices_changes_upd AFTER UPDATE ON " S "devices FOR EACH ROW WHEN ("
	  " OLD.id IS DISTINCT FROM NEW.id OR OLD.status IS DISTINCT FROM NEW.status"
	  " OR OLD.attestation IS DISTINCT FROM NEW.attestation"
	  " OR OLD.thumb_primary IS DISTINCT FROM NEW.thumb_primary"
	  " OR OLD.thumb_secondary IS DISTINCT FROM NEW.thumb_secondary"
	  " OR OLD.backend IS DISTINCT FROM NEW.backend OR OLD.ca_name IS DISTINCT FROM NEW.ca_name)"
	  " EXECUTE FUNCTION " S "devices_changed();"
	  "CREATE TRIGGER credentials_changes AFTER INSERT OR UPDATE OR DELETE ON " S "credentials"
	  " FOR EACH ROW EXECUTE FUNCTION " S "credentials_changed();"
	  "CREATE TRIGGER cas_changes AFTER INSERT OR UPDATE OR DELETE ON " S "cas"
	  " FOR EACH ROW EXECUTE FUNCTION " S "cas_changed();" },
};

#define DEVICE_COLS "id, status, attestation, thumb_primary, thumb_secondary, backend, ca_name," \
		    " created_at, updated_at, last_seen, cert_not_after"
#define CA_COLS "name, pem, sha256, subject, verified, challenge, backend, auto_enroll," \
		" added_at, not_after, status, username_check"
/* Bytewise order whatever the database's collation: the order SQLite gives. */
#define BYTES " COLLATE \"C\""

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
	ST_CA_BOUND,
	ST_CA_REMOVE,
	ST_CA_LIST,
	ST_BACKENDS,
	ST_WRITE_LOCK,
	ST_DEV_IMPORT,
	ST_CA_IMPORT,
	ST_CRED_IMPORT,
	ST_MAX
};

static const char *const stmt_sql[ST_MAX] = {
	[ST_DEV_GET] = "SELECT " DEVICE_COLS " FROM " S "devices WHERE id = $1",
	[ST_DEV_ADD] = "INSERT INTO " S "devices (" DEVICE_COLS ")"
		       " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)",
	/* last_seen / cert_not_after belong to touch (as in the SQLite store). */
	[ST_DEV_UPDATE] = "UPDATE " S "devices SET status = $2, attestation = $3, thumb_primary = $4,"
			  " thumb_secondary = $5, backend = $6, ca_name = $7, updated_at = $8"
			  " WHERE id = $1",
	[ST_DEV_REMOVE] = "DELETE FROM " S "devices WHERE id = $1",
	[ST_DEV_TOUCH] = "UPDATE " S "devices SET last_seen = $2,"
			 " cert_not_after = CASE WHEN $3::bigint = 0 THEN cert_not_after ELSE $3 END"
			 " WHERE id = $1",
	[ST_DEV_THUMB] = "SELECT " DEVICE_COLS " FROM " S "devices WHERE attestation = 'thumbprint'"
			 " AND (thumb_primary = $1 OR thumb_secondary = $1) ORDER BY id" BYTES " LIMIT 1",
	[ST_DEV_THUMB_TAKEN] = "SELECT 1 FROM " S "devices WHERE id <> $1 AND"
			       " (thumb_primary IN ($2, $3) OR thumb_secondary IN ($2, $3)) LIMIT 1",
	[ST_DEV_LIST_ALL] = "SELECT " DEVICE_COLS " FROM " S "devices ORDER BY id" BYTES,
	[ST_DEV_LIST_STATUS] = "SELECT " DEVICE_COLS " FROM " S "devices WHERE status = $1"
			       " ORDER BY id" BYTES,
	[ST_CRED_SET] = "INSERT INTO " S "credentials (device_id, kind, slot, username, secret, created_at)"
			" VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, kind, slot) DO UPDATE"
			" SET username = excluded.username, secret = excluded.secret,"
			" created_at = excluded.created_at",
	[ST_CRED_USER_TAKEN] = "SELECT 1 FROM " S "credentials WHERE kind = 'basic' AND username = $2"
			       " AND device_id <> $1 LIMIT 1",
	[ST_CRED_CLEAR] = "DELETE FROM " S "credentials WHERE device_id = $1 AND kind = $2 AND slot = $3",
	[ST_CRED_GET] = "SELECT kind, slot, username, secret, created_at FROM " S "credentials"
			" WHERE device_id = $1 ORDER BY kind" BYTES ", slot" BYTES,
	[ST_CRED_FIND_TOKEN] = "SELECT device_id FROM " S "credentials WHERE kind = 'token'"
			       " AND secret = $1 LIMIT 1",
	[ST_CRED_FIND_USER] = "SELECT device_id FROM " S "credentials WHERE kind = 'basic'"
			      " AND username = $1 LIMIT 1",
	[ST_CA_ADD] = "INSERT INTO " S "cas (" CA_COLS ")"
		      " VALUES ($1, $2, $3, $4, false, $5, $6, $7, $8, $9, $10, $11)",
	[ST_CA_GET] = "SELECT " CA_COLS " FROM " S "cas WHERE name = $1",
	[ST_CA_GET_SHA] = "SELECT " CA_COLS " FROM " S "cas WHERE sha256 = $1",
	[ST_CA_VERIFIED] = "UPDATE " S "cas SET verified = true, challenge = '' WHERE name = $1",
	[ST_CA_UPDATE] = "UPDATE " S "cas SET backend = $2, auto_enroll = $3, status = $4,"
			 " username_check = $5 WHERE name = $1",
	[ST_CA_BOUND] = "SELECT EXISTS (SELECT 1 FROM " S "devices WHERE ca_name = $1)",
	[ST_CA_REMOVE] = "DELETE FROM " S "cas WHERE name = $1",
	[ST_CA_LIST] = "SELECT " CA_COLS " FROM " S "cas ORDER BY name" BYTES,
	[ST_BACKENDS] = "SELECT backend, sum(dev), sum(ca) FROM ("
			" SELECT backend, 1 AS dev, 0 AS ca FROM " S "devices WHERE backend <> ''"
			" UNION ALL SELECT backend, 0, 1 FROM " S "cas WHERE backend <> '') u"
			" GROUP BY backend ORDER BY backend" BYTES,
	[ST_WRITE_LOCK] = "SELECT pg_advisory_xact_lock($1::int, $2::int)",
	/* kg_registry_import: every column as given; a filled credential slot conflicts. */
	[ST_DEV_IMPORT] = "INSERT INTO " S "devices (" DEVICE_COLS ")"
			  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
	[ST_CA_IMPORT] = "INSERT INTO " S "cas (" CA_COLS ")"
			 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
	[ST_CRED_IMPORT] = "INSERT INTO " S "credentials (device_id, kind, slot, username, secret,"
			   " created_at) VALUES ($1, $2, $3, $4, $5, $6)",
};

/* What a failed statement is called in messages (the SQL itself is too long to read). */
static const char *const stmt_what[ST_MAX] = {
	[ST_DEV_GET] = "device get",
	[ST_DEV_ADD] = "device add",
	[ST_DEV_UPDATE] = "device update",
	[ST_DEV_REMOVE] = "device remove",
	[ST_DEV_TOUCH] = "device touch",
	[ST_DEV_THUMB] = "device find thumbprint",
	[ST_DEV_THUMB_TAKEN] = "device thumbprint check",
	[ST_DEV_LIST_ALL] = "device list",
	[ST_DEV_LIST_STATUS] = "device list",
	[ST_CRED_SET] = "credential set",
	[ST_CRED_USER_TAKEN] = "credential user name check",
	[ST_CRED_CLEAR] = "credential clear",
	[ST_CRED_GET] = "credential get",
	[ST_CRED_FIND_TOKEN] = "credential find",
	[ST_CRED_FIND_USER] = "credential find",
	[ST_CA_ADD] = "ca add",
	[ST_CA_GET] = "ca get",
	[ST_CA_GET_SHA] = "ca get",
	[ST_CA_VERIFIED] = "ca set verified",
	[ST_CA_UPDATE] = "ca update",
	[ST_CA_BOUND] = "ca remove",
	[ST_CA_REMOVE] = "ca remove",
	[ST_CA_LIST] = "ca list",
	[ST_BACKENDS] = "backends in use",
	[ST_WRITE_LOCK] = "write lock",
	[ST_DEV_IMPORT] = "device import",
	[ST_CA_IMPORT] = "ca import",
	[ST_CRED_IMPORT] = "credential import",
};

/* Reads may be retried once on a fresh connection; a write is not (it may have
 * committed before the connection died). */
static bool stmt_is_read(enum stmt_id id)
{
	switch (id) {
	case ST_DEV_GET:
	case ST_DEV_THUMB:
	case ST_DEV_LIST_ALL:
	case ST_DEV_LIST_STATUS:
	case ST_CRED_GET:
	case ST_CRED_FIND_TOKEN:
	case ST_CRED_FIND_USER:
	case ST_CA_GET:
	case ST_CA_GET_SHA:
	case ST_CA_LIST:
	case ST_BACKENDS:
		return true;
	default:
		return false;
	}
}

struct pg_reg {
	struct kg_registry base;   /* first: registry.c sees only this */
	PGconn *conn;
	char *uri;                 /* as given, password included: for reconnects only */
	char *display;             /* the URI without its password: for messages */
	char *password;            /* scrubbed from every message ("" if none) */
	enum kg_registry_mode mode;
	int version;
	bool in_txn;               /* a kg_registry_begin() is open */
	bool prepared[ST_MAX];     /* on this connection */
};

static struct pg_reg *to_preg(struct kg_registry *reg)
{
	return (struct pg_reg *)reg;
}

/* ---- passwords never leave ---------------------------------------------------- */

/* Replace every occurrence of pw in buf with "***" (in place, truncating at cap). A
 * short password may take innocent text with it: over-scrubbing is the safe side. */
static void scrub(char *buf, size_t cap, const char *pw)
{
	char *from = buf, *p;
	char tail[1024];

	if (pw == NULL || pw[0] == '\0')
		return;
	while ((p = strstr(from, pw)) != NULL) {
		snprintf(tail, sizeof(tail), "%s", p + strlen(pw));
		snprintf(p, cap - (size_t)(p - buf), "***%s", tail);
		from = p + strnlen(p, 3);   /* past the stars: a "*" password cannot loop */
	}
}

/*
 * A copy of uri fit for messages: "postgresql://user:SECRET@host/db" loses SECRET, a
 * "password=SECRET" parameter its value. Also returns libpq's own reading of the
 * password (a URI may percent-encode it) in *pw, to scrub from libpq's messages.
 */
static int redact_uri(const char *uri, char **display, char **pw)
{
	PQconninfoOption *opts = PQconninfoParse(uri, NULL);
	size_t len = strlen(uri);
	char *out = malloc(len + 4 * 8 + 1), *o;
	const char *p = uri, *auth, *at, *colon;

	*pw = NULL;
	if (out == NULL)
		goto fail;
	for (PQconninfoOption *opt = opts; opt != NULL && opt->keyword != NULL; opt++)
		if (strcmp(opt->keyword, "password") == 0 && opt->val != NULL)
			*pw = strdup(opt->val);
	o = out;
	/* userinfo: between "://" and the first '@' before any '/' or '?' */
	auth = strstr(uri, "://");
	auth = auth != NULL ? auth + 3 : uri;
	at = auth + strcspn(auth, "@/?");
	colon = *at == '@' ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (colon != NULL) {
		memcpy(o, uri, (size_t)(colon - uri) + 1);
		o += colon - uri + 1;
		memcpy(o, "***", 3);
		o += 3;
		p = at;
	}
	/* query parameters: password=... up to '&' */
	while (*p != '\0') {
		bool param_start = p > uri && (p[-1] == '?' || p[-1] == '&');

		if (param_start && strncmp(p, "password=", 9) == 0) {
			memcpy(o, "password=***", 12);
			o += 12;
			p += 9 + strcspn(p + 9, "&");
			continue;
		}
		*o++ = *p++;
	}
	*o = '\0';
	*display = out;
	PQconninfoFree(opts);
	if (*pw == NULL)
		*pw = strdup("");
	return *pw != NULL ? 0 : KG_E_RESOURCE;

fail:
	free(out);
	PQconninfoFree(opts);
	return KG_E_RESOURCE;
}

/* libpq's latest words into reg->errmsg, prefixed with `what`, password scrubbed. */
static void set_msg(struct pg_reg *r, const char *what, const char *msg)
{
	char *nl;

	snprintf(r->base.errmsg, sizeof(r->base.errmsg), "%s: %s", what, msg != NULL ? msg : "?");
	/* libpq ends its messages with a newline; the CLI adds its own. */
	while ((nl = strrchr(r->base.errmsg, '\n')) != NULL && nl[1] == '\0')
		*nl = '\0';
	scrub(r->base.errmsg, sizeof(r->base.errmsg), r->password);
}

/* ---- errors ------------------------------------------------------------------- */

static bool conn_lost(const struct pg_reg *r)
{
	return r->conn == NULL || PQstatus(r->conn) != CONNECTION_OK;
}

/*
 * Map a failed result (or a failed send: res NULL) to a kg_err, with libpq's words in
 * reg->errmsg. Constraint violations are the caller's (no log); the rest is logged,
 * since an operator must see why a revocation is not landing.
 */
static int pg_err(struct pg_reg *r, const PGresult *res, const char *what)
{
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res != NULL ? PQresultErrorMessage(res) : NULL;

	if (msg == NULL || msg[0] == '\0')
		msg = r->conn != NULL ? PQerrorMessage(r->conn) : "no connection";
	set_msg(r, what, msg);
	if (state != NULL) {
		if (strcmp(state, "23505") == 0)
			return KG_E_EXISTS;
		if (strcmp(state, "23503") == 0)
			return KG_E_NOTFOUND;
		if (strcmp(state, "23514") == 0 || strcmp(state, "23502") == 0)
			return KG_E_INVALID;
	}
	kg_log_warnx("registry %s: %s", r->display, r->base.errmsg);
	if (conn_lost(r) || state == NULL || strncmp(state, "08", 2) == 0 ||
	    strncmp(state, "57P", 3) == 0)   /* shutdown, crash, cannot connect now */
		return KG_E_IO;
	if (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0 ||
	    strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
		/* Another session held a lock past our timeout: nothing written. Said once
		 * per wait, as an error so the CLI shows it too (the SQLite store's rule). */
		atomic_fetch_add(&r->base.busy_waits, 1);
		kg_log(KG_LOG_ERR, "registry %s locked by another session past %s", r->display,
		       PG_LOCK_TIMEOUT);
		return KG_E_BUSY;
	}
	if (strncmp(state, "53", 2) == 0)   /* out of memory, disk full, too many connections */
		return strcmp(state, "53200") == 0 ? KG_E_RESOURCE : KG_E_IO;
	if (strcmp(state, "3F000") == 0 || strcmp(state, "42P01") == 0 ||
	    strcmp(state, "42703") == 0 || strcmp(state, "XX001") == 0 ||
	    strcmp(state, "XX002") == 0)   /* our schema gone or altered, data corrupted */
		return KG_E_CORRUPT;
	if (strcmp(state, "25006") == 0 || strcmp(state, "42501") == 0)   /* read-only, no grant */
		return KG_E_IO;
	return KG_E_INTERNAL;
}

/* ---- connection ----------------------------------------------------------------- */

/* Session settings, on every (re)connection: our lock wait, read-only for READONLY. */
static int session_setup(struct pg_reg *r)
{
	const char *sql = r->mode == KG_REG_READONLY
				  ? "SET lock_timeout = '" PG_LOCK_TIMEOUT "';"
				    " SET default_transaction_read_only = on"
				  : "SET lock_timeout = '" PG_LOCK_TIMEOUT "'";
	PGresult *res = PQexec(r->conn, sql);
	int rc = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = pg_err(r, res, "session setup");
	PQclear(res);
	return rc;
}

/* The server's NOTICEs ("schema already exists, skipping") are not news to anyone;
 * libpq's default prints them on stderr, past the daemon's log. */
static void quiet_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static int connect_db(struct pg_reg *r)
{
	if (r->conn == NULL) {
		r->conn = PQconnectdb(r->uri);
		if (r->conn != NULL)
			(void)PQsetNoticeProcessor(r->conn, quiet_notice, NULL);
	} else
		PQreset(r->conn);
	memset(r->prepared, 0, sizeof(r->prepared));
	r->in_txn = false;
	if (r->conn == NULL) {
		set_msg(r, "connect", "out of memory");
		return KG_E_RESOURCE;
	}
	if (PQstatus(r->conn) != CONNECTION_OK) {
		set_msg(r, "connect", PQerrorMessage(r->conn));
		return KG_E_IO;
	}
	return session_setup(r);
}

/*
 * Before a call: a connection the server closed while we were idle (a restart, an
 * admin's pg_terminate_backend) is noticed here (a non-blocking read sees the EOF) and
 * replaced, so the call runs on a live one. Inside a transaction a lost connection is
 * the transaction's end: KG_E_IO, and the next call reconnects.
 */
static bool idle_conn_alive(PGconn *c)
{
	/* Our connection LISTENs to nothing: anything readable while idle is the server's
	 * parting FATAL and then the EOF, which may take more than one read to reach. */
	for (int i = 0; i < 4; i++) {
		struct pollfd p = { .fd = PQsocket(c), .events = POLLIN };

		if (PQstatus(c) != CONNECTION_OK || p.fd < 0)
			return false;
		if (poll(&p, 1, 0) == 0)
			return true;
		if (PQconsumeInput(c) != 1)
			return false;
	}
	return PQstatus(c) == CONNECTION_OK;
}

static int ensure_conn(struct pg_reg *r)
{
	if (r->conn != NULL && idle_conn_alive(r->conn))
		return 0;
	if (r->in_txn) {
		set_msg(r, "transaction", "connection to the database lost");
		r->in_txn = false;
		return KG_E_IO;
	}
	if (r->conn != NULL)
		kg_log_warnx("registry %s: connection lost, reconnecting", r->display);
	if (connect_db(r) != 0) {
		kg_log_warnx("registry %s: %s", r->display, r->base.errmsg);
		return KG_E_IO;
	}
	return 0;
}

/* Run prepared statement `id` (prepared on first use on this connection). Params are
 * text (NULL: SQL NULL). Returns the result (caller PQclears) or NULL with *rc set. */
static PGresult *run(struct pg_reg *r, enum stmt_id id, int n, const char *const *params,
		     int *rc)
{
	char name[16];

	snprintf(name, sizeof(name), "kg%d", (int)id);
	for (int attempt = 0; attempt < 2; attempt++) {
		PGresult *res;
		ExecStatusType st;

		if ((*rc = ensure_conn(r)) != 0)
			return NULL;
		if (!r->prepared[id]) {
			res = PQprepare(r->conn, name, stmt_sql[id], 0, NULL);
			if (PQresultStatus(res) != PGRES_COMMAND_OK) {
				*rc = pg_err(r, res, "prepare");
				PQclear(res);
				goto failed;
			}
			PQclear(res);
			r->prepared[id] = true;
		}
		res = PQexecPrepared(r->conn, name, n, params, NULL, NULL, 0);
		st = PQresultStatus(res);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
			*rc = 0;
			return res;
		}
		*rc = pg_err(r, res, stmt_what[id]);
		PQclear(res);
failed:
		/* A read that lost its connection outside a transaction is retried once on a
		 * new one; anything else is the caller's failure. */
		if (!conn_lost(r) || r->in_txn || !stmt_is_read(id))
			return NULL;
	}
	return NULL;
}

/* Run a statement that returns no rows; KG_E_NOTFOUND if it changed nothing. */
static int run_change(struct pg_reg *r, enum stmt_id id, int n, const char *const *params)
{
	int rc;
	PGresult *res = run(r, id, n, params, &rc);

	if (res == NULL)
		return rc;
	rc = strcmp(PQcmdTuples(res), "0") == 0 ? KG_E_NOTFOUND : 0;
	PQclear(res);
	return rc;
}

/* A plain command on the connection (BEGIN, COMMIT, ROLLBACK, a schema step: that one
 * is named "schema" in messages, its SQL is pages long). */
static int command(struct pg_reg *r, const char *sql)
{
	PGresult *res = PQexec(r->conn, sql);
	int rc = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = pg_err(r, res, strlen(sql) > 40 ? "schema" : sql);
	PQclear(res);
	return rc;
}

/* Open a write transaction of our own (device add/update, cred set, add_many), holding
 * the write lock so a thumbprint or user-name check cannot race another appliance. */
static int begin_write(struct pg_reg *r)
{
	char cls[16], purpose[16];
	const char *key[2] = { cls, purpose };
	int rc;
	PGresult *res;

	/* Not inside the caller's kg_registry_begin(): PostgreSQL would only warn about
	 * the BEGIN, and our COMMIT would end the caller's transaction (SQLite refuses the
	 * nested BEGIN; registry.h allows only single-statement writes there). */
	if (r->in_txn) {
		snprintf(r->base.errmsg, sizeof(r->base.errmsg),
			 "not inside a batch: this write opens its own transaction");
		return KG_E_INVALID;
	}
	snprintf(cls, sizeof(cls), "%d", PG_LOCK_CLASS);
	snprintf(purpose, sizeof(purpose), "%d", PG_LOCK_WRITE);
	if ((rc = ensure_conn(r)) != 0)
		return rc;
	if ((rc = command(r, "BEGIN")) != 0)
		return rc;
	if ((res = run(r, ST_WRITE_LOCK, 2, key, &rc)) == NULL) {
		if (!conn_lost(r))
			(void)command(r, "ROLLBACK");
		return rc;
	}
	PQclear(res);
	return 0;
}

static int end_write(struct pg_reg *r, int rc)
{
	if (rc == 0 && (rc = command(r, "COMMIT")) == 0)
		return 0;
	if (!conn_lost(r) && PQtransactionStatus(r->conn) != PQTRANS_IDLE)
		(void)command(r, "ROLLBACK");
	return rc;
}

static bool writable(const struct pg_reg *r)
{
	return r->mode == KG_REG_READWRITE;
}

/* ---- rows ------------------------------------------------------------------------ */

static const char *nz(const char *s)
{
	return s[0] == '\0' ? NULL : s;
}

static int64_t col_i64(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static int col_copy(const PGresult *res, int row, int col, char *dst, size_t cap)
{
	if (PQgetisnull(res, row, col)) {
		dst[0] = '\0';
		return 0;
	}
	return kg_strlcpy(dst, PQgetvalue(res, row, col), cap) == 0 ? 0 : KG_E_CORRUPT;
}

static int row_device(const PGresult *res, int row, struct kg_device *d)
{
	memset(d, 0, sizeof(*d));
	if (col_copy(res, row, 0, d->id, sizeof(d->id)) != 0 ||
	    kg_device_status_parse(PQgetvalue(res, row, 1), &d->status) != 0 ||
	    kg_attestation_parse(PQgetvalue(res, row, 2), &d->attestation) != 0 ||
	    col_copy(res, row, 3, d->thumb_primary, sizeof(d->thumb_primary)) != 0 ||
	    col_copy(res, row, 4, d->thumb_secondary, sizeof(d->thumb_secondary)) != 0 ||
	    col_copy(res, row, 5, d->backend, sizeof(d->backend)) != 0 ||
	    col_copy(res, row, 6, d->ca_name, sizeof(d->ca_name)) != 0)
		return KG_E_CORRUPT;
	d->created_at = col_i64(res, row, 7);
	d->updated_at = col_i64(res, row, 8);
	d->last_seen = col_i64(res, row, 9);
	d->cert_not_after = col_i64(res, row, 10);
	return 0;
}

/* Fill *ca from a row; the pem is borrowed from the result when !own. */
static int row_ca(const PGresult *res, int row, struct kg_ca *ca, bool own)
{
	const char *pem = PQgetvalue(res, row, 1);

	memset(ca, 0, sizeof(*ca));
	if (kg_ca_status_parse(PQgetvalue(res, row, 10), &ca->status) != 0)
		return KG_E_CORRUPT;
	ca->has_username_check = !PQgetisnull(res, row, 11);
	if (ca->has_username_check &&
	    kg_username_check_parse(PQgetvalue(res, row, 11), &ca->username_check) != 0)
		return KG_E_CORRUPT;
	if (col_copy(res, row, 0, ca->name, sizeof(ca->name)) != 0 ||
	    col_copy(res, row, 2, ca->sha256, sizeof(ca->sha256)) != 0 ||
	    col_copy(res, row, 3, ca->subject, sizeof(ca->subject)) != 0 ||
	    col_copy(res, row, 5, ca->challenge, sizeof(ca->challenge)) != 0 ||
	    col_copy(res, row, 6, ca->backend, sizeof(ca->backend)) != 0)
		return KG_E_CORRUPT;
	ca->verified = strcmp(PQgetvalue(res, row, 4), "t") == 0;
	ca->auto_enroll = strcmp(PQgetvalue(res, row, 7), "t") == 0;
	ca->added_at = col_i64(res, row, 8);
	ca->not_after = col_i64(res, row, 9);
	if (!own) {
		ca->pem = (char *)pem;   /* callers only read it (as in the SQLite store) */
		return 0;
	}
	if ((ca->pem = strdup(pem)) == NULL)
		return KG_E_RESOURCE;
	return 0;
}

/* ---- ops ------------------------------------------------------------------------- */

static void pg_close(struct kg_registry *reg)
{
	struct pg_reg *r = to_preg(reg);

	if (r->conn != NULL)
		PQfinish(r->conn);
	/* The password leaves memory with the handle. */
	if (r->uri != NULL)
		OPENSSL_clear_free(r->uri, strlen(r->uri));
	if (r->password != NULL)
		OPENSSL_clear_free(r->password, strlen(r->password));
	free(r->display);
	free(r);
}

static int pg_schema_version(struct kg_registry *reg)
{
	return to_preg(reg)->version;
}

/* One device row from a single-row query. */
static int get_device(struct pg_reg *r, enum stmt_id id, const char *key, struct kg_device *out)
{
	const char *p[1] = { key };
	int rc;
	PGresult *res = run(r, id, 1, p, &rc);

	if (res == NULL)
		return rc;
	rc = PQntuples(res) == 0 ? KG_E_NOTFOUND : row_device(res, 0, out);
	PQclear(res);
	return rc;
}

static int pg_device_get(struct kg_registry *reg, const char *id, struct kg_device *out)
{
	return get_device(to_preg(reg), ST_DEV_GET, id, out);
}

static int pg_device_find_thumbprint(struct kg_registry *reg, const char *hex, struct kg_device *out)
{
	return get_device(to_preg(reg), ST_DEV_THUMB, hex, out);
}

/* Is one of dev's thumbprints pinned by another device? 0, KG_E_EXISTS or an error. */
static int thumb_taken(struct pg_reg *r, const struct kg_device *dev)
{
	const char *p[3] = { dev->id, nz(dev->thumb_primary), nz(dev->thumb_secondary) };
	int rc;
	PGresult *res;

	if (dev->thumb_primary[0] == '\0')
		return 0;
	if ((res = run(r, ST_DEV_THUMB_TAKEN, 3, p, &rc)) == NULL)
		return rc;
	rc = PQntuples(res) > 0 ? KG_E_EXISTS : 0;
	PQclear(res);
	return rc;
}

/* One device row inside the caller's transaction, then the thumbprint check (row
 * first, so a taken / missing id is what the caller hears about). */
static int put_device(struct pg_reg *r, const struct kg_device *dev, enum stmt_id which,
		      int64_t now)
{
	char snow[24], sseen[24], snot[24];
	const char *p[10] = {
		dev->id, kg_device_status_str(dev->status), kg_attestation_str(dev->attestation),
		nz(dev->thumb_primary), nz(dev->thumb_secondary), dev->backend, nz(dev->ca_name),
		snow, sseen, snot,
	};
	int rc;

	snprintf(snow, sizeof(snow), "%lld", (long long)now);
	snprintf(sseen, sizeof(sseen), "%lld", (long long)dev->last_seen);
	snprintf(snot, sizeof(snot), "%lld", (long long)dev->cert_not_after);
	if ((rc = run_change(r, which, which == ST_DEV_ADD ? 10 : 8, p)) != 0)
		return rc;
	return thumb_taken(r, dev);
}

static int write_device(struct pg_reg *r, const struct kg_device *dev, enum stmt_id which)
{
	int rc;

	if (!writable(r))
		return KG_E_INVALID;
	if ((rc = begin_write(r)) != 0)
		return rc;
	return end_write(r, put_device(r, dev, which, (int64_t)time(NULL)));
}

static int pg_device_add(struct kg_registry *reg, const struct kg_device *dev)
{
	return write_device(to_preg(reg), dev, ST_DEV_ADD);
}

static int pg_device_update(struct kg_registry *reg, const struct kg_device *dev)
{
	return write_device(to_preg(reg), dev, ST_DEV_UPDATE);
}

static int write_by_key(struct kg_registry *reg, enum stmt_id which, const char *key)
{
	struct pg_reg *r = to_preg(reg);
	const char *p[1] = { key };

	if (!writable(r))
		return KG_E_INVALID;
	return run_change(r, which, 1, p);
}

static int pg_device_remove(struct kg_registry *reg, const char *id)
{
	return write_by_key(reg, ST_DEV_REMOVE, id);
}

static int pg_device_touch(struct kg_registry *reg, const char *id, int64_t seen,
			   int64_t cert_not_after)
{
	struct pg_reg *r = to_preg(reg);
	char sseen[24], snot[24];
	const char *p[3] = { id, sseen, snot };

	if (!writable(r))
		return KG_E_INVALID;
	snprintf(sseen, sizeof(sseen), "%lld", (long long)seen);
	snprintf(snot, sizeof(snot), "%lld", (long long)cert_not_after);
	return run_change(r, ST_DEV_TOUCH, 3, p);
}

/* The rows are buffered in the result, so a callback may run point queries (cred_get
 * from `device list --json`) on this handle. */
static int pg_device_list(struct kg_registry *reg, int status, kg_device_cb cb, void *arg)
{
	struct pg_reg *r = to_preg(reg);
	const char *p[1] = { status >= 0 ? kg_device_status_str((enum kg_device_status)status) : NULL };
	struct kg_device d;
	int rc;
	PGresult *res = run(r, status < 0 ? ST_DEV_LIST_ALL : ST_DEV_LIST_STATUS, status < 0 ? 0 : 1,
			    p, &rc);

	if (res == NULL)
		return rc;
	for (int i = 0; i < PQntuples(res); i++) {
		int stop;

		if ((rc = row_device(res, i, &d)) != 0)
			goto out;
		if ((stop = cb(&d, arg)) != 0) {
			rc = stop < 0 ? stop : 0;
			goto out;
		}
	}
	rc = 0;
out:
	PQclear(res);
	return rc;
}

/* ---- credentials ------------------------------------------------------------------ */

static int cred_user_taken(struct pg_reg *r, const char *id, const struct kg_credential *c)
{
	const char *p[2] = { id, c->username };
	int rc;
	PGresult *res;

	if (c->kind != KG_ATT_BASIC)
		return 0;
	if ((res = run(r, ST_CRED_USER_TAKEN, 2, p, &rc)) == NULL)
		return rc;
	rc = PQntuples(res) > 0 ? KG_E_EXISTS : 0;
	PQclear(res);
	if (rc == KG_E_EXISTS)
		snprintf(r->base.errmsg, sizeof(r->base.errmsg), "user name %s belongs to another device",
			 c->username);
	return rc;
}

static int put_cred(struct pg_reg *r, const char *id, const struct kg_credential *c, int64_t now)
{
	char snow[24];
	const char *p[6] = { id, kg_attestation_str(c->kind), kg_cred_slot_str(c->slot),
			     nz(c->username), c->secret, snow };
	int rc;

	if ((rc = cred_user_taken(r, id, c)) != 0)
		return rc;
	snprintf(snow, sizeof(snow), "%lld", (long long)now);
	rc = run_change(r, ST_CRED_SET, 6, p);
	if (rc == KG_E_EXISTS && c->kind == KG_ATT_TOKEN)   /* the unique index on the hash */
		snprintf(r->base.errmsg, sizeof(r->base.errmsg), "that token is already stored");
	return rc;
}

static int pg_cred_set(struct kg_registry *reg, const char *id, const struct kg_credential *c)
{
	struct pg_reg *r = to_preg(reg);
	int rc;

	if (!writable(r))
		return KG_E_INVALID;
	if ((rc = begin_write(r)) != 0)
		return rc;
	return end_write(r, put_cred(r, id, c, (int64_t)time(NULL)));
}

/* Bulk enrolment in one transaction: a thumbprint, user name or token hash taken
 * earlier in the batch is seen by the checks (they read the transaction's own rows). */
static int pg_device_add_many(struct kg_registry *reg, const struct kg_device *devs, size_t n,
			      const struct kg_credential *creds, const size_t *cred_dev,
			      size_t n_creds, size_t *bad)
{
	struct pg_reg *r = to_preg(reg);
	int64_t now = (int64_t)time(NULL);
	int rc = 0;

	if (!writable(r))
		return KG_E_INVALID;
	if ((rc = begin_write(r)) != 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		*bad = i;
		rc = put_device(r, &devs[i], ST_DEV_ADD, now);
	}
	for (size_t j = 0; j < n_creds && rc == 0; j++) {
		*bad = n + j;
		rc = put_cred(r, devs[cred_dev[j]].id, &creds[j], now);
	}
	return end_write(r, rc);
}

static int pg_cred_clear(struct kg_registry *reg, const char *id, enum kg_attestation kind,
			 enum kg_cred_slot slot)
{
	struct pg_reg *r = to_preg(reg);
	const char *p[3] = { id, kg_attestation_str(kind), kg_cred_slot_str(slot) };

	if (!writable(r))
		return KG_E_INVALID;
	return run_change(r, ST_CRED_CLEAR, 3, p);
}

static int pg_cred_get(struct kg_registry *reg, const char *id, struct kg_credential *out,
		       size_t *n)
{
	struct pg_reg *r = to_preg(reg);
	const char *p[1] = { id };
	int rc;
	PGresult *res = run(r, ST_CRED_GET, 1, p, &rc);

	if (res == NULL)
		return rc;
	rc = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		struct kg_credential *c = &out[*n];

		/* The primary key bounds the rows to KG_CRED_PER_DEVICE; more is corruption. */
		if (*n >= KG_CRED_PER_DEVICE) {
			rc = KG_E_CORRUPT;
			break;
		}
		memset(c, 0, sizeof(*c));
		if (kg_attestation_parse(PQgetvalue(res, i, 0), &c->kind) != 0 ||
		    !kg_attestation_has_secret(c->kind) ||
		    kg_cred_slot_parse(PQgetvalue(res, i, 1), &c->slot) != 0 ||
		    col_copy(res, i, 2, c->username, sizeof(c->username)) != 0 ||
		    col_copy(res, i, 3, c->secret, sizeof(c->secret)) != 0) {
			rc = KG_E_CORRUPT;
			break;
		}
		c->created_at = col_i64(res, i, 4);
		(*n)++;
	}
	PQclear(res);
	return rc;
}

static int pg_cred_find(struct kg_registry *reg, enum kg_attestation kind, const char *key,
			char *id_out)
{
	struct pg_reg *r = to_preg(reg);
	const char *p[1] = { key };
	int rc;
	PGresult *res = run(r, kind == KG_ATT_TOKEN ? ST_CRED_FIND_TOKEN : ST_CRED_FIND_USER, 1, p, &rc);

	if (res == NULL)
		return rc;
	rc = PQntuples(res) == 0 ? KG_E_NOTFOUND : col_copy(res, 0, 0, id_out, KG_DEVICE_ID_MAX + 1);
	PQclear(res);
	return rc;
}

/* ---- CAs ------------------------------------------------------------------------------ */

static int pg_ca_add(struct kg_registry *reg, struct kg_ca *ca)
{
	struct pg_reg *r = to_preg(reg);
	int64_t now = (int64_t)time(NULL);
	char snow[24], snot[24];
	const char *p[11] = {
		ca->name, ca->pem, ca->sha256, ca->subject, ca->challenge, ca->backend,
		ca->auto_enroll ? "true" : "false", snow, snot, kg_ca_status_str(ca->status),
		ca->has_username_check ? kg_username_check_str(ca->username_check) : NULL,
	};
	int rc;

	if (!writable(r))
		return KG_E_INVALID;
	snprintf(snow, sizeof(snow), "%lld", (long long)now);
	snprintf(snot, sizeof(snot), "%lld", (long long)ca->not_after);
	if ((rc = run_change(r, ST_CA_ADD, 11, p)) == 0)
		ca->added_at = now;
	return rc;
}

static int get_ca(struct kg_registry *reg, enum stmt_id which, const char *key, struct kg_ca *out)
{
	struct pg_reg *r = to_preg(reg);
	const char *p[1] = { key };
	int rc;
	PGresult *res = run(r, which, 1, p, &rc);

	if (res == NULL)
		return rc;
	rc = PQntuples(res) == 0 ? KG_E_NOTFOUND : row_ca(res, 0, out, true);
	PQclear(res);
	return rc;
}

static int pg_ca_get(struct kg_registry *reg, const char *name, struct kg_ca *out)
{
	return get_ca(reg, ST_CA_GET, name, out);
}

static int pg_ca_get_by_sha256(struct kg_registry *reg, const char *hex, struct kg_ca *out)
{
	return get_ca(reg, ST_CA_GET_SHA, hex, out);
}

static int pg_ca_set_verified(struct kg_registry *reg, const char *name)
{
	return write_by_key(reg, ST_CA_VERIFIED, name);
}

static int pg_ca_update(struct kg_registry *reg, const struct kg_ca *ca)
{
	struct pg_reg *r = to_preg(reg);
	const char *p[5] = {
		ca->name, ca->backend, ca->auto_enroll ? "true" : "false", kg_ca_status_str(ca->status),
		ca->has_username_check ? kg_username_check_str(ca->username_check) : NULL,
	};

	if (!writable(r))
		return KG_E_INVALID;
	return run_change(r, ST_CA_UPDATE, 5, p);
}

/* A CA that devices are bound to is in use: KG_E_EXISTS, read before the delete so the
 * operator hears "in use"; the RESTRICT key stays the guard against a concurrent
 * enrolment, and its violation means the same. */
static int pg_ca_remove(struct kg_registry *reg, const char *name)
{
	struct pg_reg *r = to_preg(reg);
	const char *p[1] = { name };
	bool bound;
	int rc;
	PGresult *res;

	if (!writable(r))
		return KG_E_INVALID;
	if ((res = run(r, ST_CA_BOUND, 1, p, &rc)) == NULL)
		return rc;
	bound = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (bound)
		return KG_E_EXISTS;
	r->base.errmsg[0] = '\0';
	rc = run_change(r, ST_CA_REMOVE, 1, p);
	return rc == KG_E_NOTFOUND && r->base.errmsg[0] != '\0' && strstr(r->base.errmsg, "foreign key")
		       ? KG_E_EXISTS
		       : rc;
}

static int pg_ca_list(struct kg_registry *reg, kg_ca_cb cb, void *arg)
{
	struct pg_reg *r = to_preg(reg);
	struct kg_ca ca;
	int rc;
	PGresult *res = run(r, ST_CA_LIST, 0, NULL, &rc);

	if (res == NULL)
		return rc;
	for (int i = 0; i < PQntuples(res); i++) {
		int stop;

		if ((rc = row_ca(res, i, &ca, false)) != 0)
			goto out;
		if ((stop = cb(&ca, arg)) != 0) {
			rc = stop < 0 ? stop : 0;
			goto out;
		}
	}
	rc = 0;
out:
	PQclear(res);
	return rc;
}

static int pg_backends_in_use(struct kg_registry *reg, kg_backend_use_cb cb, void *arg)
{
	struct pg_reg *r = to_preg(reg);
	int rc;
	PGresult *res = run(r, ST_BACKENDS, 0, NULL, &rc);

	if (res == NULL)
		return rc;
	rc = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		int stop = cb(PQgetvalue(res, i, 0), col_i64(res, i, 1), col_i64(res, i, 2), arg);

		if (stop != 0) {
			rc = stop < 0 ? stop : 0;
			break;
		}
	}
	PQclear(res);
	return rc;
}

/* ---- import: rows as given ------------------------------------------------------ */

static int import_ca(struct pg_reg *r, const struct kg_ca *ca)
{
	char sadded[24], snot[24];
	const char *p[12] = {
		ca->name, ca->pem, ca->sha256, ca->subject, ca->verified ? "true" : "false",
		ca->challenge, ca->backend, ca->auto_enroll ? "true" : "false", sadded, snot,
		kg_ca_status_str(ca->status),
		ca->has_username_check ? kg_username_check_str(ca->username_check) : NULL,
	};

	snprintf(sadded, sizeof(sadded), "%lld", (long long)ca->added_at);
	snprintf(snot, sizeof(snot), "%lld", (long long)ca->not_after);
	return run_change(r, ST_CA_IMPORT, 12, p);
}

static int import_device(struct pg_reg *r, const struct kg_device *dev)
{
	char t[4][24];
	const char *p[11] = {
		dev->id, kg_device_status_str(dev->status), kg_attestation_str(dev->attestation),
		nz(dev->thumb_primary), nz(dev->thumb_secondary), dev->backend, nz(dev->ca_name),
		t[0], t[1], t[2], t[3],
	};
	int rc;

	snprintf(t[0], sizeof(t[0]), "%lld", (long long)dev->created_at);
	snprintf(t[1], sizeof(t[1]), "%lld", (long long)dev->updated_at);
	snprintf(t[2], sizeof(t[2]), "%lld", (long long)dev->last_seen);
	snprintf(t[3], sizeof(t[3]), "%lld", (long long)dev->cert_not_after);
	if ((rc = run_change(r, ST_DEV_IMPORT, 11, p)) != 0)
		return rc;
	if ((rc = thumb_taken(r, dev)) == KG_E_EXISTS)   /* the copy names the cause */
		snprintf(r->base.errmsg, sizeof(r->base.errmsg),
			 "a thumbprint of device %s is another device's", dev->id);
	return rc;
}

static int import_cred(struct pg_reg *r, const char *id, const struct kg_credential *c)
{
	char screated[24];
	const char *p[6] = { id, kg_attestation_str(c->kind), kg_cred_slot_str(c->slot),
			     nz(c->username), c->secret, screated };
	int rc;

	if ((rc = cred_user_taken(r, id, c)) != 0)
		return rc;
	snprintf(screated, sizeof(screated), "%lld", (long long)c->created_at);
	/* A filled slot (primary key) or a stored token hash (unique index): KG_E_EXISTS,
	 * with the server's words naming which. */
	return run_change(r, ST_CRED_IMPORT, 6, p);
}

/* One transaction under the write lock (a concurrent enrolment's thumbprint or user
 * name check cannot interleave): CAs, devices, credentials; *bad counts in that order. */
static int pg_import(struct kg_registry *reg, const struct kg_ca *cas, size_t n_cas,
		     const struct kg_device *devs, size_t n, const struct kg_credential *creds,
		     const size_t *cred_dev, size_t n_creds, size_t *bad)
{
	struct pg_reg *r = to_preg(reg);
	int rc = 0;

	if (!writable(r))
		return KG_E_INVALID;
	if ((rc = begin_write(r)) != 0)
		return rc;
	for (size_t i = 0; i < n_cas && rc == 0; i++) {
		*bad = i;
		rc = import_ca(r, &cas[i]);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		*bad = n_cas + i;
		rc = import_device(r, &devs[i]);
	}
	for (size_t j = 0; j < n_creds && rc == 0; j++) {
		*bad = n_cas + n + j;
		rc = import_cred(r, devs[cred_dev[j]].id, &creds[j]);
	}
	if (rc == 0)
		*bad = n_cas + n + n_creds;
	return end_write(r, rc);
}

static int pg_begin(struct kg_registry *reg)
{
	struct pg_reg *r = to_preg(reg);
	int rc;

	if (!writable(r))
		return KG_E_INVALID;
	if ((rc = ensure_conn(r)) != 0 || (rc = command(r, "BEGIN")) != 0)
		return rc;
	r->in_txn = true;
	return 0;
}

static int pg_commit(struct kg_registry *reg)
{
	struct pg_reg *r = to_preg(reg);
	int rc;

	if (r->conn == NULL || conn_lost(r)) {
		r->in_txn = false;
		set_msg(r, "commit", "connection to the database lost");
		return KG_E_IO;
	}
	if (!r->in_txn) {
		snprintf(r->base.errmsg, sizeof(r->base.errmsg), "commit: no transaction is active");
		return KG_E_INVALID;
	}
	/* COMMIT of a failed transaction reports success and rolls back: say so. */
	if (PQtransactionStatus(r->conn) == PQTRANS_INERROR) {
		(void)command(r, "ROLLBACK");
		r->in_txn = false;
		set_msg(r, "commit", "the transaction failed earlier and was rolled back");
		return KG_E_INVALID;
	}
	rc = command(r, "COMMIT");
	r->in_txn = false;
	return rc;
}

static void pg_rollback(struct kg_registry *reg)
{
	struct pg_reg *r = to_preg(reg);

	r->in_txn = false;
	if (r->conn != NULL && !conn_lost(r) && PQtransactionStatus(r->conn) != PQTRANS_IDLE)
		(void)command(r, "ROLLBACK");
}

static const struct kg_registry_ops pg_ops = {
	.name = "postgresql",
	.close = pg_close,
	.schema_version = pg_schema_version,
	.device_get = pg_device_get,
	.device_add = pg_device_add,
	.device_add_many = pg_device_add_many,
	.device_update = pg_device_update,
	.device_remove = pg_device_remove,
	.import = pg_import,
	.device_touch = pg_device_touch,
	.device_find_thumbprint = pg_device_find_thumbprint,
	.device_list = pg_device_list,
	.cred_set = pg_cred_set,
	.cred_clear = pg_cred_clear,
	.cred_get = pg_cred_get,
	.cred_find = pg_cred_find,
	.ca_add = pg_ca_add,
	.ca_get = pg_ca_get,
	.ca_get_by_sha256 = pg_ca_get_by_sha256,
	.ca_set_verified = pg_ca_set_verified,
	.ca_update = pg_ca_update,
	.ca_remove = pg_ca_remove,
	.ca_list = pg_ca_list,
	.backends_in_use = pg_backends_in_use,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
};

/* ---- open: identify, create, migrate --------------------------------------------- */

/*
 * Read the schema version without writing: 0 when the schema KG_PG_SCHEMA does not
 * exist or is empty; KG_E_CORRUPT when it holds tables but no meta row (someone else's
 * schema of that name) or a version newer than this build.
 */
static int identify(struct pg_reg *r, int *version)
{
	static const char sql[] =
		"SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
		"        WHERE n.nspname = '" KG_PG_SCHEMA "'),"
		"       to_regclass('" S "meta') IS NOT NULL";
	PGresult *res = PQexec(r->conn, sql);
	long objects;
	int rc = 0;

	*version = 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		rc = pg_err(r, res, "identify");
		goto out;
	}
	objects = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		if (objects > 0) {
			snprintf(r->base.errmsg, sizeof(r->base.errmsg),
				 "not a registry database: schema " KG_PG_SCHEMA
				 " holds %ld objects but no meta table", objects);
			rc = KG_E_CORRUPT;
		}
		goto out;
	}
	PQclear(res);
	res = PQexec(r->conn, "SELECT value FROM " S "meta WHERE name = 'schema_version'");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = pg_err(r, res, "identify");
		goto out;
	}
	if (PQntuples(res) != 1 || (*version = atoi(PQgetvalue(res, 0, 0))) < 1) {
		snprintf(r->base.errmsg, sizeof(r->base.errmsg),
			 "not a registry database: no schema version in " S "meta");
		rc = KG_E_CORRUPT;
		goto out;
	}
	if (*version > PG_SCHEMA_LATEST) {
		snprintf(r->base.errmsg, sizeof(r->base.errmsg),
			 "schema version %d is newer than this build (%d)", *version, PG_SCHEMA_LATEST);
		rc = KG_E_CORRUPT;
	}
out:
	PQclear(res);
	return rc;
}

/*
 * Create or migrate up to PG_SCHEMA_LATEST, in one transaction under the schema's
 * advisory lock: a second appliance starting at the same moment waits for the first
 * and then finds the schema current (the version is read again under the lock).
 */
static int migrate(struct pg_reg *r)
{
	char sql[128];
	int cur, rc;

	if ((rc = command(r, "BEGIN")) != 0)
		return rc;
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%d, %d)", PG_LOCK_CLASS,
		 PG_LOCK_SCHEMA);
	{
		PGresult *res = PQexec(r->conn, sql);

		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			rc = pg_err(r, res, "schema lock");
		PQclear(res);
		if (rc != 0)
			goto out;
	}
	if ((rc = identify(r, &cur)) != 0)
		goto out;
	for (size_t i = 0; i < KG_NITEMS(pg_steps); i++) {
		if (pg_steps[i].from != cur)
			continue;
		if ((rc = command(r, pg_steps[i].sql)) != 0)
			goto out;
		snprintf(sql, sizeof(sql),
			 "INSERT INTO " S "meta (name, value) VALUES ('schema_version', '%d')"
			 " ON CONFLICT (name) DO UPDATE SET value = excluded.value", pg_steps[i].to);
		if ((rc = command(r, sql)) != 0)
			goto out;
		if (cur > 0)
			kg_log_info("registry %s: migrated schema %d -> %d", r->display, cur,
				    pg_steps[i].to);
		cur = pg_steps[i].to;
	}
	if (cur != PG_SCHEMA_LATEST) {
		snprintf(r->base.errmsg, sizeof(r->base.errmsg), "no migration from schema version %d",
			 cur);
		rc = KG_E_CORRUPT;
		goto out;
	}
	if ((rc = command(r, "COMMIT")) != 0)
		goto out;
	r->version = cur;
	return 0;
out:
	if (!conn_lost(r))
		(void)command(r, "ROLLBACK");
	return rc;
}

static int pg_open(struct pg_reg *r)
{
	int rc;

	if ((rc = connect_db(r)) != 0)
		return rc;
	if (r->mode == KG_REG_READWRITE)
		return migrate(r);
	if ((rc = identify(r, &r->version)) != 0)
		return rc;
	if (r->version == 0) {
		snprintf(r->base.errmsg, sizeof(r->base.errmsg),
			 "no registry in schema " KG_PG_SCHEMA " (open it read-write once)");
		return KG_E_NOTFOUND;
	}
	if (r->version != PG_SCHEMA_LATEST) {
		snprintf(r->base.errmsg, sizeof(r->base.errmsg),
			 "schema version %d is older than this build (%d); open it read-write to migrate",
			 r->version, PG_SCHEMA_LATEST);
		return KG_E_INVALID;
	}
	return 0;
}

/* A handle for uri, not yet connected: its URI, the URI as messages show it, the
 * password to scrub from libpq's words. NULL with a message when out of memory. */
static struct pg_reg *pg_handle_new(const char *uri, enum kg_registry_mode mode, char *err,
				    size_t errlen)
{
	struct pg_reg *r = calloc(1, sizeof(*r));

	if (r == NULL || (r->uri = strdup(uri)) == NULL ||
	    redact_uri(uri, &r->display, &r->password) != 0) {
		snprintf(err, errlen, "registry: out of memory");
		if (r != NULL)
			pg_close(&r->base);
		return NULL;
	}
	r->base.ops = &pg_ops;
	r->mode = mode;
	return r;
}

int kg_registry_pg_open(const char *uri, enum kg_registry_mode mode, struct kg_registry **out,
			char *err, size_t errlen)
{
	char dummy[1];
	struct pg_reg *r;
	int rc;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (uri == NULL || out == NULL)
		return KG_E_INVALID;
	*out = NULL;
	if ((r = pg_handle_new(uri, mode, err, errlen)) == NULL)
		return KG_E_RESOURCE;
	if ((rc = pg_open(r)) != 0) {
		snprintf(err, errlen, "registry %s: %s", r->display, r->base.errmsg);
		scrub(err, errlen, r->password);
		goto out_free;
	}
	r->base.errmsg[0] = '\0';
	*out = &r->base;
	return 0;

out_free:
	if (r != NULL)
		pg_close(&r->base);
	return rc;
}

int kg_registry_pg_version(const char *uri, int *version, char *err, size_t errlen)
{
	char dummy[1];
	struct pg_reg *r;
	int rc;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (uri == NULL || version == NULL)
		return KG_E_INVALID;
	*version = 0;
	/* read-only: default_transaction_read_only, nothing can be written */
	if ((r = pg_handle_new(uri, KG_REG_READONLY, err, errlen)) == NULL)
		return KG_E_RESOURCE;
	if ((rc = connect_db(r)) != 0 || (rc = identify(r, version)) != 0) {
		snprintf(err, errlen, "registry %s: %s", r->display, r->base.errmsg);
		scrub(err, errlen, r->password);
	}
	pg_close(&r->base);
	return rc;
}

int kg_registry_pg_schema_latest(void)
{
	return PG_SCHEMA_LATEST;
}
