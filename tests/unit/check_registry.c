/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_registry.c - the identity registry through its public interface, on real
 * SQLite files in a fresh temporary directory per test: CRUD and constraints for
 * devices and CAs, listing, thumbprint lookup, read-only handles, schema migrations,
 * and refusal of garbage / foreign / newer files without writing to them.
 * The store-generic cases run a second time, as the "pg" case, against the PostgreSQL
 * database KG_TEST_PG names (a URI; mk/pg.mk starts a cluster), each on a clean schema;
 * without KG_TEST_PG that case is not registered at all (mk/pg.mk checks it ran).
 */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "ops/err.h"
#include "registry/registry.h"
#include "registry/writer.h"
#include "testlib.h"

/* check_registry_pg.c: the PostgreSQL store's own cases (case "pg_store"). */
void kg_registry_pg_cases(Suite *s);

/* Check fixtures have no argument: the per-test directory lives here (one per fork). */
static char tmpdir[256];
static char dbpath[512];
/* Where the store-generic cases open the registry: dbpath, or KG_TEST_PG's database
 * (with a password added, which no message may repeat: the test cluster trusts
 * local connections, so libpq never sends it). */
static char loc[1024];
static bool pg_mode;

#define PG_TEST_PASSWORD "Sekr1t-registry-pw"

static void setup(void)
{
	kg_test_tmpdir(tmpdir, sizeof(tmpdir));
	snprintf(dbpath, sizeof(dbpath), "%s/registry.db", tmpdir);
	snprintf(loc, sizeof(loc), "%s", dbpath);
	pg_mode = false;
}

/* Run SQL on KG_TEST_PG's database on a connection of our own; aborts the test on error. */
static void pg_sql(const char *sql)
{
	PGconn *c = PQconnectdb(getenv("KG_TEST_PG"));
	PGresult *res;

	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
	PQclear(PQexec(c, "SET client_min_messages = warning"));   /* DROP ... CASCADE's NOTICEs */
	res = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK,
		      "%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
}

/* A clean database for each case: no schema left by the one before. */
static void setup_pg(void)
{
	const char *uri = getenv("KG_TEST_PG");

	setup();
	ck_assert_ptr_nonnull(uri);
	snprintf(loc, sizeof(loc), "%s%cpassword=" PG_TEST_PASSWORD, uri,
		 strchr(uri, '?') != NULL ? '&' : '?');
	pg_mode = true;
	pg_sql("DROP SCHEMA IF EXISTS " KG_PG_SCHEMA " CASCADE");
}

static void teardown(void)
{
	kg_test_rmdir(tmpdir);
}

static struct kg_registry *open_rw(void)
{
	struct kg_registry *reg = NULL;
	char err[KG_ERRBUF];
	int rc = kg_registry_open(loc, KG_REG_READWRITE, &reg, err, sizeof(err));

	ck_assert_msg(rc == 0, "open: %d %s", rc, err);
	ck_assert_msg(strstr(err, PG_TEST_PASSWORD) == NULL, "password in \"%s\"", err);
	ck_assert_ptr_nonnull(reg);
	return reg;
}

/* 64 hex chars made of one repeated digit: distinct, readable thumbprints. */
static void hex64(char out[KG_SHA256_HEX_LEN + 1], char c)
{
	memset(out, c, KG_SHA256_HEX_LEN);
	out[KG_SHA256_HEX_LEN] = '\0';
}

static struct kg_device mkdev(const char *id, enum kg_device_status st, enum kg_attestation att)
{
	struct kg_device d;

	memset(&d, 0, sizeof(d));
	ck_assert_int_eq(kg_strlcpy(d.id, id, sizeof(d.id)), 0);
	d.status = st;
	d.attestation = att;
	return d;
}

static struct kg_ca mkca(const char *name, char shachar)
{
	struct kg_ca ca;

	memset(&ca, 0, sizeof(ca));
	ck_assert_int_eq(kg_strlcpy(ca.name, name, sizeof(ca.name)), 0);
	hex64(ca.sha256, shachar);
	snprintf(ca.subject, sizeof(ca.subject), "CN=%s", name);
	ca.pem = (char *)"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
	ca.not_after = 2000000000;
	return ca;
}

/* Whole file into a malloc'd buffer (NULL and *len 0 if absent). */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	*len = 0;
	if (f == NULL)
		return NULL;
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* Open must fail with `want`, say `msg`, and leave the file and its directory as they were. */
static void assert_refused_untouched(enum kg_registry_mode mode, int want, const char *msg)
{
	struct kg_registry *reg = NULL;
	char err[KG_ERRBUF], side[600];
	size_t before_len, after_len;
	char *before = slurp(dbpath, &before_len);
	char *after;
	int rc;

	rc = kg_registry_open(dbpath, mode, &reg, err, sizeof(err));
	ck_assert_int_eq(rc, want);
	ck_assert_ptr_null(reg);
	ck_assert_msg(strstr(err, msg) != NULL, "message \"%s\" lacks \"%s\"", err, msg);
	after = slurp(dbpath, &after_len);
	ck_assert_uint_eq(before_len, after_len);
	ck_assert_msg(before_len == 0 || memcmp(before, after, before_len) == 0, "file changed");
	for (size_t i = 0; i < 3; i++) {
		static const char *const sfx[] = { "-wal", "-shm", "-journal" };

		snprintf(side, sizeof(side), "%s%s", dbpath, sfx[i]);
		ck_assert_msg(!exists(side), "%s was created", side);
	}
	free(before);
	free(after);
}

/* Run SQL on dbpath with the sqlite3 library directly (crafting foreign/old files). */
static void raw_sql(const char *sql)
{
	sqlite3 *db;
	char *msg = NULL;

	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
		      msg ? msg : "?");
	sqlite3_close(db);
}

static int raw_int(const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int v;

	if (pg_mode) {
		PGconn *c = PQconnectdb(getenv("KG_TEST_PG"));
		PGresult *res;

		ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
		PQclear(PQexec(c, "SET search_path = " KG_PG_SCHEMA));
		res = PQexec(c, sql);
		ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s",
			      sql, PQresultErrorMessage(res));
		v = atoi(PQgetvalue(res, 0, 0));
		PQclear(res);
		PQfinish(c);
		return v;
	}
	ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* Does the store's schema refuse this write with a constraint (CHECK / NOT NULL)? Run
 * behind the API's back: on the file, or on KG_TEST_PG's database. */
static bool raw_refused_by_check(const char *sql)
{
	sqlite3 *db;
	bool refused;

	if (pg_mode) {
		PGconn *c = PQconnectdb(getenv("KG_TEST_PG"));
		PGresult *res;
		const char *state;

		ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
		PQclear(PQexec(c, "SET search_path = " KG_PG_SCHEMA));
		res = PQexec(c, sql);
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		refused = state != NULL && (strcmp(state, "23514") == 0 || strcmp(state, "23502") == 0);
		PQclear(res);
		PQfinish(c);
		return refused;
	}
	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	refused = (sqlite3_exec(db, sql, NULL, NULL, NULL) & 0xff) == SQLITE_CONSTRAINT;
	sqlite3_close(db);
	return refused;
}

/* First column of the first row as text ("" when there is no row). */
static const char *raw_text(const char *sql, char *buf, size_t cap)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int rc;

	ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	rc = sqlite3_step(st);
	ck_assert(rc == SQLITE_ROW || rc == SQLITE_DONE);
	snprintf(buf, cap, "%s", rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : "");
	sqlite3_finalize(st);
	sqlite3_close(db);
	return buf;
}

/* ---- string tables ---------------------------------------------------------- */

START_TEST(test_status_strings)
{
	static const struct {
		enum kg_device_status st;
		const char *name;
	} cases[] = {
		{ KG_DEV_ENABLED, "enabled" },         { KG_DEV_DISABLED, "disabled" },
		{ KG_DEV_SUSPENDED, "suspended" },     { KG_DEV_QUARANTINED, "quarantined" },
		{ KG_DEV_DECOMMISSIONED, "decommissioned" },
	};
	static const char *const bad[] = { "", "Enabled", "enabled ", "enable", "unknown", "banned" };
	enum kg_device_status st;

	ck_assert_uint_eq(KG_NITEMS(cases), KG_DEV_STATUS_MAX);
	for (size_t i = 0; i < KG_NITEMS(cases); i++) {
		ck_assert_str_eq(kg_device_status_str(cases[i].st), cases[i].name);
		ck_assert_int_eq(kg_device_status_parse(cases[i].name, &st), 0);
		ck_assert_int_eq(st, cases[i].st);
	}
	for (size_t i = 0; i < KG_NITEMS(bad); i++)
		ck_assert_int_eq(kg_device_status_parse(bad[i], &st), KG_E_INVALID);
	ck_assert_int_eq(kg_device_status_parse(NULL, &st), KG_E_INVALID);
	ck_assert_str_eq(kg_device_status_str(KG_DEV_STATUS_MAX), "unknown");
}
END_TEST

START_TEST(test_attestation_strings)
{
	enum kg_attestation a;

	ck_assert_str_eq(kg_attestation_str(KG_ATT_CA), "ca");
	ck_assert_str_eq(kg_attestation_str(KG_ATT_THUMBPRINT), "thumbprint");
	ck_assert_str_eq(kg_attestation_str(KG_ATT_MAX), "unknown");
	ck_assert_int_eq(kg_attestation_parse("thumbprint", &a), 0);
	ck_assert_int_eq(a, KG_ATT_THUMBPRINT);
	ck_assert_int_eq(kg_attestation_parse("ca", &a), 0);
	ck_assert_int_eq(a, KG_ATT_CA);
	ck_assert_int_eq(kg_attestation_parse("CA", &a), KG_E_INVALID);
	ck_assert_str_eq(kg_attestation_str(KG_ATT_SAS), "sas");
	ck_assert_str_eq(kg_attestation_str(KG_ATT_TOKEN), "token");
	ck_assert_str_eq(kg_attestation_str(KG_ATT_BASIC), "basic");
	ck_assert_int_eq(kg_attestation_parse("basic", &a), 0);
	ck_assert_int_eq(a, KG_ATT_BASIC);
	ck_assert_int_eq(kg_attestation_parse("x509", &a), KG_E_INVALID);   /* the CLI's word only */
	ck_assert(!kg_attestation_has_secret(KG_ATT_CA));
	ck_assert(!kg_attestation_has_secret(KG_ATT_THUMBPRINT));
	ck_assert(kg_attestation_has_secret(KG_ATT_SAS) && kg_attestation_has_secret(KG_ATT_TOKEN) &&
		  kg_attestation_has_secret(KG_ATT_BASIC));
}
END_TEST

START_TEST(test_open_locations)
{
	struct kg_registry *reg = (struct kg_registry *)1;
	char err[KG_ERRBUF];

	/* Both URI schemes go to the PostgreSQL store: nothing listens on port 1, so the
	 * open fails as I/O, and says where without the password (in either place). */
	ck_assert_int_eq(kg_registry_open("postgresql://kg:Pw-in-userinfo-9@127.0.0.1:1/kg",
					  KG_REG_READWRITE, &reg, err, sizeof(err)),
			 KG_E_IO);
	ck_assert_ptr_null(reg);
	ck_assert_msg(strstr(err, "127.0.0.1") != NULL && strstr(err, "kg:***@") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "Pw-in-userinfo-9") == NULL, "password in \"%s\"", err);
	reg = (struct kg_registry *)1;
	ck_assert_int_eq(kg_registry_open("postgres://127.0.0.1:1/kg?user=kg&password=Pw-in-query-9",
					  KG_REG_READONLY, &reg, err, sizeof(err)),
			 KG_E_IO);
	ck_assert_ptr_null(reg);
	ck_assert_msg(strstr(err, "password=***") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "Pw-in-query-9") == NULL, "password in \"%s\"", err);
	ck_assert_int_eq(kg_registry_open("", KG_REG_READWRITE, &reg, err, sizeof(err)), KG_E_INVALID);
	/* A directory is not a database file. */
	ck_assert_int_ne(kg_registry_open(tmpdir, KG_REG_READWRITE, &reg, err, sizeof(err)), 0);
	ck_assert_ptr_null(reg);
}
END_TEST

/* ---- devices ---------------------------------------------------------------- */

START_TEST(test_device_crud)
{
	struct kg_registry *reg = open_rw();
	struct kg_device d = mkdev("sensor-1", KG_DEV_ENABLED, KG_ATT_CA), got;
	time_t t0 = time(NULL);

	strcpy(d.backend, "b1");
	d.created_at = d.updated_at = 1;   /* ignored: the store sets them */
	d.cert_not_after = 1900000000;     /* kept: `device add --cert` knows it */
	d.last_seen = 12345;
	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	ck_assert_int_eq(kg_registry_device_add(reg, &d), KG_E_EXISTS);

	memset(&got, 0xa5, sizeof(got));
	ck_assert_int_eq(kg_registry_device_get(reg, "sensor-1", &got), 0);
	ck_assert_str_eq(got.id, "sensor-1");
	ck_assert_int_eq(got.status, KG_DEV_ENABLED);
	ck_assert_int_eq(got.attestation, KG_ATT_CA);
	ck_assert_str_eq(got.backend, "b1");
	ck_assert_str_eq(got.thumb_primary, "");
	ck_assert_str_eq(got.thumb_secondary, "");
	ck_assert_str_eq(got.ca_name, "");
	ck_assert_int_ge(got.created_at, t0);
	ck_assert_int_eq(got.created_at, got.updated_at);
	ck_assert_int_eq(got.last_seen, 12345);
	ck_assert_int_eq(got.cert_not_after, 1900000000);

	ck_assert_int_eq(kg_registry_device_get(reg, "sensor-2", &got), KG_E_NOTFOUND);

	d.status = KG_DEV_QUARANTINED;
	d.attestation = KG_ATT_THUMBPRINT;
	hex64(d.thumb_primary, 'a');
	d.backend[0] = '\0';
	ck_assert_int_eq(kg_registry_device_update(reg, &d), 0);
	ck_assert_int_eq(kg_registry_device_get(reg, "sensor-1", &got), 0);
	ck_assert_int_eq(got.status, KG_DEV_QUARANTINED);
	ck_assert_int_eq(got.attestation, KG_ATT_THUMBPRINT);
	ck_assert_str_eq(got.thumb_primary, d.thumb_primary);
	ck_assert_str_eq(got.backend, "");
	ck_assert_int_ge(got.updated_at, got.created_at);

	strcpy(d.id, "ghost");
	ck_assert_int_eq(kg_registry_device_update(reg, &d), KG_E_NOTFOUND);

	ck_assert_int_eq(kg_registry_device_remove(reg, "sensor-1"), 0);
	ck_assert_int_eq(kg_registry_device_remove(reg, "sensor-1"), KG_E_NOTFOUND);
	ck_assert_int_eq(kg_registry_device_get(reg, "sensor-1", &got), KG_E_NOTFOUND);
	kg_registry_close(reg);
}
END_TEST

START_TEST(test_device_invalid)
{
	struct kg_registry *reg = open_rw();
	struct kg_device d, got;
	char longid[KG_DEVICE_ID_MAX + 2];

	d = mkdev("", KG_DEV_ENABLED, KG_ATT_CA);
	ck_assert_int_eq(kg_registry_device_add(reg, &d), KG_E_INVALID);
	d = mkdev("x", KG_DEV_STATUS_MAX, KG_ATT_CA);
	ck_assert_int_eq(kg_registry_device_add(reg, &d), KG_E_INVALID);
	d = mkdev("x", KG_DEV_ENABLED, KG_ATT_MAX);
	ck_assert_int_eq(kg_registry_device_add(reg, &d), KG_E_INVALID);
	/* pinned device with nothing pinned */
	d = mkdev("x", KG_DEV_ENABLED, KG_ATT_THUMBPRINT);
	ck_assert_int_eq(kg_registry_device_add(reg, &d), KG_E_INVALID);
	/* secondary without primary */
	d = mkdev("x", KG_DEV_ENABLED, KG_ATT_CA);
	hex64(d.thumb_secondary, 'b');
	ck_assert_int_eq(kg_registry_device_add(reg, &d), KG_E_INVALID);
	/* not hex, too short */
	d = mkdev("x", KG_DEV_ENABLED, KG_ATT_THUMBPRINT);
	hex64(d.thumb_primary, 'g');
	ck_assert_int_eq(kg_registry_device_add(reg, &d), KG_E_INVALID);
	strcpy(d.thumb_primary, "abcd");
	ck_assert_int_eq(kg_registry_device_add(reg, &d), KG_E_INVALID);
	/* unterminated id buffer */
	d = mkdev("x", KG_DEV_ENABLED, KG_ATT_CA);
	memset(d.id, 'x', sizeof(d.id));
	ck_assert_int_eq(kg_registry_device_add(reg, &d), KG_E_INVALID);
	memset(longid, 'y', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	ck_assert_int_eq(kg_registry_device_get(reg, longid, &got), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_device_get(reg, NULL, &got), KG_E_INVALID);
	/* nothing got in */
	ck_assert_int_eq(kg_registry_device_get(reg, "x", &got), KG_E_NOTFOUND);
	kg_registry_close(reg);
}
END_TEST

START_TEST(test_device_thumbprint)
{
	struct kg_registry *reg = open_rw();
	struct kg_device a = mkdev("pinned-a", KG_DEV_ENABLED, KG_ATT_THUMBPRINT);
	struct kg_device b = mkdev("pinned-b", KG_DEV_ENABLED, KG_ATT_THUMBPRINT);
	struct kg_device c = mkdev("via-ca", KG_DEV_ENABLED, KG_ATT_CA);
	struct kg_device got;
	char hex[KG_SHA256_HEX_LEN + 1];

	hex64(a.thumb_primary, '1');
	hex64(a.thumb_secondary, '2');
	hex64(b.thumb_primary, 'c');
	hex64(c.thumb_primary, 'd');   /* recorded, but a CA device is not found by pin */
	ck_assert_int_eq(kg_registry_device_add(reg, &a), 0);
	ck_assert_int_eq(kg_registry_device_add(reg, &b), 0);
	ck_assert_int_eq(kg_registry_device_add(reg, &c), 0);

	hex64(hex, '1');
	ck_assert_int_eq(kg_registry_device_find_thumbprint(reg, hex, &got), 0);
	ck_assert_str_eq(got.id, "pinned-a");
	hex64(hex, '2');
	ck_assert_int_eq(kg_registry_device_find_thumbprint(reg, hex, &got), 0);
	ck_assert_str_eq(got.id, "pinned-a");
	ck_assert_str_eq(got.thumb_secondary, hex);
	/* stored lowercase, found whatever the case asked */
	hex64(hex, 'C');
	ck_assert_int_eq(kg_registry_device_find_thumbprint(reg, hex, &got), 0);
	ck_assert_str_eq(got.id, "pinned-b");
	hex64(hex, 'c');
	ck_assert_str_eq(got.thumb_primary, hex);
	hex64(hex, 'd');
	ck_assert_int_eq(kg_registry_device_find_thumbprint(reg, hex, &got), KG_E_NOTFOUND);
	hex64(hex, 'e');
	ck_assert_int_eq(kg_registry_device_find_thumbprint(reg, hex, &got), KG_E_NOTFOUND);
	ck_assert_int_eq(kg_registry_device_find_thumbprint(reg, "abc", &got), KG_E_INVALID);

	/* a leaf pins one device: b may not take a's secondary, in either slot */
	hex64(b.thumb_secondary, '2');
	ck_assert_int_eq(kg_registry_device_update(reg, &b), KG_E_EXISTS);
	b.thumb_secondary[0] = '\0';
	hex64(b.thumb_primary, '1');
	ck_assert_int_eq(kg_registry_device_update(reg, &b), KG_E_EXISTS);
	struct kg_device dup = mkdev("pinned-dup", KG_DEV_ENABLED, KG_ATT_THUMBPRINT);
	hex64(dup.thumb_primary, '2');
	ck_assert_int_eq(kg_registry_device_add(reg, &dup), KG_E_EXISTS);
	ck_assert_int_eq(kg_registry_device_get(reg, "pinned-dup", &got), KG_E_NOTFOUND);
	/* rotation of its own pair is fine: swap primary and secondary */
	hex64(a.thumb_primary, '2');
	hex64(a.thumb_secondary, '1');
	ck_assert_int_eq(kg_registry_device_update(reg, &a), 0);
	/* the failed updates changed nothing */
	hex64(hex, 'c');
	ck_assert_int_eq(kg_registry_device_find_thumbprint(reg, hex, &got), 0);
	ck_assert_str_eq(got.id, "pinned-b");
	kg_registry_close(reg);
}
END_TEST

START_TEST(test_device_touch)
{
	struct kg_registry *reg = open_rw();
	struct kg_device d = mkdev("t1", KG_DEV_ENABLED, KG_ATT_CA), got;

	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	ck_assert_int_eq(kg_registry_device_touch(reg, "t1", 1700000000, 1800000000), 0);
	ck_assert_int_eq(kg_registry_device_get(reg, "t1", &got), 0);
	ck_assert_int_eq(got.last_seen, 1700000000);
	ck_assert_int_eq(got.cert_not_after, 1800000000);
	/* 0 = notAfter unknown: keep what we had */
	ck_assert_int_eq(kg_registry_device_touch(reg, "t1", 1700000100, 0), 0);
	ck_assert_int_eq(kg_registry_device_get(reg, "t1", &got), 0);
	ck_assert_int_eq(got.last_seen, 1700000100);
	ck_assert_int_eq(got.cert_not_after, 1800000000);
	/* an update built from a stale row does not roll the connection record back */
	d.status = KG_DEV_DISABLED;
	ck_assert_int_eq(kg_registry_device_update(reg, &d), 0);
	ck_assert_int_eq(kg_registry_device_get(reg, "t1", &got), 0);
	ck_assert_int_eq(got.status, KG_DEV_DISABLED);
	ck_assert_int_eq(got.last_seen, 1700000100);
	ck_assert_int_eq(kg_registry_device_touch(reg, "nobody", 1, 1), KG_E_NOTFOUND);
	kg_registry_close(reg);
}
END_TEST

/* Batched writes: begin/commit groups touches; rollback undoes them; a reader on
 * another handle sees nothing until the commit. */
START_TEST(test_transactions)
{
	struct kg_registry *reg = open_rw(), *ro = NULL;
	struct kg_device d = mkdev("b1", KG_DEV_ENABLED, KG_ATT_CA), got;
	char err[KG_ERRBUF];

	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	ck_assert_int_eq(kg_registry_open(loc, KG_REG_READONLY, &ro, err, sizeof(err)), 0);
	ck_assert_int_eq(kg_registry_begin(ro), KG_E_INVALID);   /* read-only handle */
	ck_assert_int_eq(kg_registry_begin(reg), 0);
	ck_assert_int_eq(kg_registry_device_touch(reg, "b1", 111, 222), 0);
	ck_assert_int_eq(kg_registry_device_touch(reg, "nobody", 1, 1), KG_E_NOTFOUND);
	ck_assert_int_eq(kg_registry_device_get(ro, "b1", &got), 0);
	ck_assert_int_eq(got.last_seen, 0);                       /* not committed yet */
	ck_assert_int_eq(kg_registry_commit(reg), 0);
	ck_assert_int_eq(kg_registry_device_get(ro, "b1", &got), 0);
	ck_assert_int_eq(got.last_seen, 111);
	ck_assert_int_eq(kg_registry_begin(reg), 0);
	ck_assert_int_eq(kg_registry_device_touch(reg, "b1", 333, 0), 0);
	kg_registry_rollback(reg);
	kg_registry_rollback(reg);                                 /* nothing open: harmless */
	ck_assert_int_eq(kg_registry_device_get(reg, "b1", &got), 0);
	ck_assert_int_eq(got.last_seen, 111);
	kg_registry_close(ro);
	kg_registry_close(reg);
}
END_TEST

struct collect {
	char ids[16][KG_DEVICE_ID_MAX + 1];
	size_t n;
	size_t stop_after;   /* 0: never */
	int stop_value;
};

static int collect_dev(const struct kg_device *d, void *arg)
{
	struct collect *c = arg;

	ck_assert_uint_lt(c->n, KG_NITEMS(c->ids));
	strcpy(c->ids[c->n++], d->id);
	return c->stop_after != 0 && c->n == c->stop_after ? c->stop_value : 0;
}

START_TEST(test_device_list)
{
	static const struct {
		const char *id;
		enum kg_device_status st;
	} rows[] = {
		{ "m", KG_DEV_ENABLED },   { "c", KG_DEV_DISABLED }, { "x", KG_DEV_ENABLED },
		{ "a", KG_DEV_SUSPENDED }, { "k", KG_DEV_ENABLED },  { "b/mod", KG_DEV_DECOMMISSIONED },
	};
	struct kg_registry *reg = open_rw();
	struct collect c;

	for (size_t i = 0; i < KG_NITEMS(rows); i++) {
		struct kg_device d = mkdev(rows[i].id, rows[i].st, KG_ATT_CA);

		ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	}
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(kg_registry_device_list(reg, -1, collect_dev, &c), 0);
	ck_assert_uint_eq(c.n, 6);
	static const char *const all[] = { "a", "b/mod", "c", "k", "m", "x" };
	for (size_t i = 0; i < KG_NITEMS(all); i++)
		ck_assert_str_eq(c.ids[i], all[i]);

	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(kg_registry_device_list(reg, KG_DEV_ENABLED, collect_dev, &c), 0);
	ck_assert_uint_eq(c.n, 3);
	ck_assert_str_eq(c.ids[0], "k");
	ck_assert_str_eq(c.ids[1], "m");
	ck_assert_str_eq(c.ids[2], "x");

	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(kg_registry_device_list(reg, KG_DEV_QUARANTINED, collect_dev, &c), 0);
	ck_assert_uint_eq(c.n, 0);

	/* a positive return stops quietly, a negative kg_err is passed up */
	memset(&c, 0, sizeof(c));
	c.stop_after = 2;
	c.stop_value = 1;
	ck_assert_int_eq(kg_registry_device_list(reg, -1, collect_dev, &c), 0);
	ck_assert_uint_eq(c.n, 2);
	memset(&c, 0, sizeof(c));
	c.stop_after = 1;
	c.stop_value = KG_E_RESOURCE;
	ck_assert_int_eq(kg_registry_device_list(reg, -1, collect_dev, &c), KG_E_RESOURCE);
	ck_assert_uint_eq(c.n, 1);
	/* the statement was reset: the next iteration starts from the top */
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(kg_registry_device_list(reg, -1, collect_dev, &c), 0);
	ck_assert_uint_eq(c.n, 6);

	ck_assert_int_eq(kg_registry_device_list(reg, KG_DEV_STATUS_MAX, collect_dev, &c),
			 KG_E_INVALID);
	kg_registry_close(reg);
}
END_TEST

/* ---- CAs -------------------------------------------------------------------- */

static bool is_lower_hex(const char *s, size_t len)
{
	if (strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return false;
	return true;
}

START_TEST(test_ca_crud)
{
	struct kg_registry *reg = open_rw();
	struct kg_ca ca = mkca("fleet", 'f'), other, got;
	char first_challenge[KG_CHALLENGE_LEN + 1];
	time_t t0 = time(NULL);

	ca.verified = true;   /* ignored: a new CA is never proven */
	ca.auto_enroll = true;
	strcpy(ca.backend, "prod");
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), 0);
	ck_assert_msg(is_lower_hex(ca.challenge, KG_CHALLENGE_LEN), "challenge %s", ca.challenge);
	ck_assert(!ca.verified);
	ck_assert_int_ge(ca.added_at, t0);
	strcpy(first_challenge, ca.challenge);

	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), KG_E_EXISTS);
	other = mkca("fleet-2", 'f');   /* same certificate under another name */
	ck_assert_int_eq(kg_registry_ca_add(reg, &other), KG_E_EXISTS);
	other = mkca("fleet-2", '9');
	ck_assert_int_eq(kg_registry_ca_add(reg, &other), 0);
	ck_assert_str_ne(other.challenge, first_challenge);

	ck_assert_int_eq(kg_registry_ca_get(reg, "fleet", &got), 0);
	ck_assert_str_eq(got.name, "fleet");
	ck_assert_str_eq(got.sha256, ca.sha256);
	ck_assert_str_eq(got.subject, "CN=fleet");
	ck_assert_str_eq(got.challenge, first_challenge);
	ck_assert_str_eq(got.backend, "prod");
	ck_assert(got.auto_enroll);
	ck_assert(!got.verified);
	ck_assert_int_eq(got.added_at, ca.added_at);
	ck_assert_int_eq(got.not_after, 2000000000);
	ck_assert_ptr_nonnull(got.pem);
	ck_assert_ptr_ne(got.pem, ca.pem);
	ck_assert_str_eq(got.pem, ca.pem);
	kg_ca_fini(&got);
	ck_assert_ptr_null(got.pem);
	kg_ca_fini(&got);   /* idempotent */

	ck_assert_int_eq(kg_registry_ca_get(reg, "nope", &got), KG_E_NOTFOUND);

	char upper[KG_SHA256_HEX_LEN + 1];
	hex64(upper, 'F');
	ck_assert_int_eq(kg_registry_ca_get_by_sha256(reg, upper, &got), 0);
	ck_assert_str_eq(got.name, "fleet");
	kg_ca_fini(&got);
	hex64(upper, '0');
	ck_assert_int_eq(kg_registry_ca_get_by_sha256(reg, upper, &got), KG_E_NOTFOUND);

	ck_assert_int_eq(kg_registry_ca_set_verified(reg, "fleet"), 0);
	ck_assert_int_eq(kg_registry_ca_get(reg, "fleet", &got), 0);
	ck_assert(got.verified);
	ck_assert_str_eq(got.challenge, "");   /* spent */
	kg_ca_fini(&got);
	ck_assert_int_eq(kg_registry_ca_set_verified(reg, "nope"), KG_E_NOTFOUND);

	ca.backend[0] = '\0';
	ca.auto_enroll = false;
	ck_assert_int_eq(kg_registry_ca_update(reg, &ca), 0);
	ck_assert_int_eq(kg_registry_ca_get(reg, "fleet", &got), 0);
	ck_assert_str_eq(got.backend, "");
	ck_assert(!got.auto_enroll);
	ck_assert(got.verified);
	kg_ca_fini(&got);
	struct kg_ca ghost = mkca("ghost", '7');
	ck_assert_int_eq(kg_registry_ca_update(reg, &ghost), KG_E_NOTFOUND);

	ck_assert_int_eq(kg_registry_ca_remove(reg, "fleet"), 0);
	ck_assert_int_eq(kg_registry_ca_remove(reg, "fleet"), KG_E_NOTFOUND);
	ck_assert_int_eq(kg_registry_ca_get(reg, "fleet", &got), KG_E_NOTFOUND);
	/* its digest is free again */
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), 0);
	kg_registry_close(reg);
}
END_TEST

START_TEST(test_ca_invalid)
{
	struct kg_registry *reg = open_rw();
	struct kg_ca ca;

	ca = mkca("", 'a');
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), KG_E_INVALID);
	ca = mkca("x", 'a');
	ca.pem = NULL;
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), KG_E_INVALID);
	ca = mkca("x", 'a');
	strcpy(ca.sha256, "1234");
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), KG_E_INVALID);
	ca = mkca("x", 'z');
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), KG_E_INVALID);
	kg_registry_close(reg);
}
END_TEST

struct ca_seen {
	char names[8][KG_NAME_MAX];
	bool verified[8];
	size_t n;
};

static int collect_ca(const struct kg_ca *ca, void *arg)
{
	struct ca_seen *s = arg;

	ck_assert_uint_lt(s->n, KG_NITEMS(s->names));
	ck_assert_ptr_nonnull(ca->pem);
	ck_assert(strncmp(ca->pem, "-----BEGIN", 10) == 0);
	strcpy(s->names[s->n], ca->name);
	s->verified[s->n++] = ca->verified;
	return 0;
}

START_TEST(test_ca_list)
{
	struct kg_registry *reg = open_rw();
	static const char *const names[] = { "zeta", "alpha", "mid" };
	struct ca_seen s;

	for (size_t i = 0; i < KG_NITEMS(names); i++) {
		struct kg_ca ca = mkca(names[i], (char)('a' + i));

		ck_assert_int_eq(kg_registry_ca_add(reg, &ca), 0);
	}
	ck_assert_int_eq(kg_registry_ca_set_verified(reg, "mid"), 0);
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(kg_registry_ca_list(reg, collect_ca, &s), 0);
	ck_assert_uint_eq(s.n, 3);
	ck_assert_str_eq(s.names[0], "alpha");
	ck_assert_str_eq(s.names[1], "mid");
	ck_assert_str_eq(s.names[2], "zeta");
	ck_assert(!s.verified[0] && s.verified[1] && !s.verified[2]);
	kg_registry_close(reg);
}
END_TEST

/* A device's CA is a foreign key: unknown CA refused; a CA with bound devices cannot
 * be removed (schema v3), so no device is silently unbound. */
START_TEST(test_device_ca_link)
{
	struct kg_registry *reg = open_rw();
	struct kg_ca ca = mkca("group", '3');
	struct kg_device d = mkdev("enrolled", KG_DEV_ENABLED, KG_ATT_CA), got;

	strcpy(d.ca_name, "group");
	ck_assert_int_eq(kg_registry_device_add(reg, &d), KG_E_NOTFOUND);
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), 0);
	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	ck_assert_int_eq(kg_registry_device_get(reg, "enrolled", &got), 0);
	ck_assert_str_eq(got.ca_name, "group");
	ck_assert_int_eq(kg_registry_ca_remove(reg, "group"), KG_E_EXISTS);
	ck_assert_int_eq(kg_registry_device_get(reg, "enrolled", &got), 0);
	ck_assert_str_eq(got.ca_name, "group");
	ck_assert_int_eq(got.status, KG_DEV_ENABLED);
	ck_assert_int_eq(kg_registry_ca_get(reg, "group", &ca), 0);
	kg_ca_fini(&ca);
	/* once its devices are gone, the CA goes */
	ck_assert_int_eq(kg_registry_device_remove(reg, "enrolled"), 0);
	ck_assert_int_eq(kg_registry_ca_remove(reg, "group"), 0);
	ck_assert_int_eq(kg_registry_ca_get(reg, "group", &ca), KG_E_NOTFOUND);
	kg_registry_close(reg);
}
END_TEST

/* ---- files, modes, migrations --------------------------------------------------- */

START_TEST(test_reopen_persists)
{
	struct kg_registry *reg = open_rw();
	struct kg_device d = mkdev("keep", KG_DEV_SUSPENDED, KG_ATT_CA), got;
	struct kg_ca ca = mkca("ca1", '5'), gotca;
	char buf[64];

	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), 0);
	kg_registry_close(reg);

	reg = open_rw();
	ck_assert_int_eq(kg_registry_device_get(reg, "keep", &got), 0);
	ck_assert_int_eq(got.status, KG_DEV_SUSPENDED);
	ck_assert_int_eq(kg_registry_ca_get(reg, "ca1", &gotca), 0);
	ck_assert_str_eq(gotca.challenge, ca.challenge);
	kg_ca_fini(&gotca);
	kg_registry_close(reg);
	ck_assert_str_eq(raw_text("PRAGMA journal_mode", buf, sizeof(buf)), "wal");
	ck_assert_str_eq(raw_text("PRAGMA foreign_key_check", buf, sizeof(buf)), "");
}
END_TEST

START_TEST(test_readonly)
{
	struct kg_registry *reg = NULL, *rw;
	struct kg_device d = mkdev("ro", KG_DEV_ENABLED, KG_ATT_CA), got;
	struct kg_ca ca = mkca("ca", '6');
	char err[KG_ERRBUF];

	/* missing file: refused, and not created */
	ck_assert_int_eq(kg_registry_open(dbpath, KG_REG_READONLY, &reg, err, sizeof(err)),
			 KG_E_NOTFOUND);
	ck_assert_ptr_null(reg);
	ck_assert(!exists(dbpath));

	rw = open_rw();
	ck_assert_int_eq(kg_registry_device_add(rw, &d), 0);
	ck_assert_int_eq(kg_registry_open(dbpath, KG_REG_READONLY, &reg, err, sizeof(err)), 0);
	ck_assert_int_eq(kg_registry_schema_version(reg), kg_registry_sqlite_schema_latest());
	ck_assert_int_eq(kg_registry_device_get(reg, "ro", &got), 0);

	/* the reader sees the writer's later commits (WAL: no reopen needed) */
	d.status = KG_DEV_DISABLED;
	ck_assert_int_eq(kg_registry_device_update(rw, &d), 0);
	ck_assert_int_eq(kg_registry_device_get(reg, "ro", &got), 0);
	ck_assert_int_eq(got.status, KG_DEV_DISABLED);

	ck_assert_int_eq(kg_registry_device_add(reg, &d), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_device_update(reg, &d), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_device_touch(reg, "ro", 1, 1), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_device_remove(reg, "ro"), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_ca_set_verified(reg, "ca"), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_ca_update(reg, &ca), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_ca_remove(reg, "ca"), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_device_get(reg, "ro", &got), 0);   /* still there */
	kg_registry_close(reg);
	kg_registry_close(rw);
}
END_TEST

START_TEST(test_migrations)
{
	struct kg_registry *reg;
	char err[KG_ERRBUF];
	int latest = kg_registry_sqlite_schema_latest();

	ck_assert_int_ge(latest, 2);
	/* a fresh open creates the latest schema, with our application_id */
	reg = open_rw();
	ck_assert_int_eq(kg_registry_schema_version(reg), latest);
	kg_registry_close(reg);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), latest);
	ck_assert_uint_eq((unsigned)raw_int("PRAGMA application_id"), KG_REGISTRY_SQLITE_APP_ID);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE name = 'devices_ca_name'"), 1);

	/* a database left at version 1 by an older build migrates forward, rows kept */
	ck_assert_int_eq(unlink(dbpath), 0);
	ck_assert_int_eq(kg_registry_sqlite_migrate(dbpath, 1, err, sizeof(err)), 0);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), 1);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE name = 'devices_ca_name'"), 0);
	raw_sql("INSERT INTO devices (id, status, attestation, created_at, updated_at)"
		" VALUES ('old', 'enabled', 'ca', 1, 1)");
	/* read-only cannot migrate, and says so */
	reg = NULL;
	ck_assert_int_eq(kg_registry_open(dbpath, KG_REG_READONLY, &reg, err, sizeof(err)),
			 KG_E_INVALID);
	ck_assert_msg(strstr(err, "older than this build") != NULL, "%s", err);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), 1);

	reg = open_rw();
	ck_assert_int_eq(kg_registry_schema_version(reg), latest);
	struct kg_device got;
	ck_assert_int_eq(kg_registry_device_get(reg, "old", &got), 0);
	ck_assert_int_eq(got.created_at, 1);
	kg_registry_close(reg);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), latest);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE name = 'devices_ca_name'"), 1);

	ck_assert_int_eq(kg_registry_sqlite_migrate(dbpath, 0, err, sizeof(err)), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_sqlite_migrate(dbpath, latest + 1, err, sizeof(err)),
			 KG_E_INVALID);
}
END_TEST

/* Schema v4: a CA status column. A v3 database's CAs migrate as enabled; the status
 * round-trips through update and list; junk is refused by the store's CHECK. */
START_TEST(test_ca_status)
{
	struct kg_registry *reg;
	struct kg_ca ca = mkca("fresh", '5'), got = { 0 };
	enum kg_ca_status st;
	char err[KG_ERRBUF];

	ck_assert_int_ge(kg_registry_sqlite_schema_latest(), 4);
	ck_assert_str_eq(kg_ca_status_str(KG_CA_ENABLED), "enabled");
	ck_assert_str_eq(kg_ca_status_str(KG_CA_DISABLED), "disabled");
	ck_assert_str_eq(kg_ca_status_str(KG_CA_REVOKED), "revoked");
	ck_assert_int_eq(kg_ca_status_parse("revoked", &st), 0);
	ck_assert_int_eq(st, KG_CA_REVOKED);
	ck_assert_int_eq(kg_ca_status_parse("inactive", &st), KG_E_INVALID);

	ck_assert_int_eq(kg_registry_sqlite_migrate(dbpath, 3, err, sizeof(err)), 0);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), 3);
	raw_sql("INSERT INTO cas (name, pem, sha256, added_at) VALUES ('old', 'x',"
		" '4444444444444444444444444444444444444444444444444444444444444444', 1)");
	reg = open_rw();
	ck_assert_int_eq(raw_int("PRAGMA user_version"), kg_registry_sqlite_schema_latest());
	ck_assert_int_eq(kg_registry_ca_get(reg, "old", &got), 0);
	ck_assert_int_eq(got.status, KG_CA_ENABLED);
	got.status = KG_CA_DISABLED;
	ck_assert_int_eq(kg_registry_ca_update(reg, &got), 0);
	kg_ca_fini(&got);
	ck_assert_int_eq(kg_registry_ca_get(reg, "old", &got), 0);
	ck_assert_int_eq(got.status, KG_CA_DISABLED);
	got.status = KG_CA_REVOKED;
	ck_assert_int_eq(kg_registry_ca_update(reg, &got), 0);
	kg_ca_fini(&got);
	ck_assert_int_eq(kg_registry_ca_get(reg, "old", &got), 0);
	ck_assert_int_eq(got.status, KG_CA_REVOKED);
	got.status = KG_CA_STATUS_MAX;
	ck_assert_int_eq(kg_registry_ca_update(reg, &got), KG_E_INVALID);
	kg_ca_fini(&got);
	/* a new CA is added with the status it carries */
	ca.status = KG_CA_DISABLED;
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), 0);
	ck_assert_int_eq(kg_registry_ca_get(reg, "fresh", &got), 0);
	ck_assert_int_eq(got.status, KG_CA_DISABLED);
	kg_ca_fini(&got);
	kg_registry_close(reg);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM cas WHERE status = 'revoked'"), 1);
	/* the store refuses a status it does not know even behind the API's back */
	{
		sqlite3 *db;

		ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
		ck_assert_int_eq(sqlite3_exec(db, "UPDATE cas SET status = 'inactive'", NULL, NULL,
					      NULL) & 0xff, SQLITE_CONSTRAINT);
		sqlite3_close(db);
	}
}
END_TEST

/* Schema v5: a CA's own username_check, NULL when it follows the config. A v4
 * database opens read-write and migrates, its CAs without an override; the value
 * round-trips through add, update (set and back to default) and list; the store's CHECK
 * refuses a word it does not know. */
static int count_uc(const struct kg_ca *ca, void *arg)
{
	int *n = arg;

	if (strcmp(ca->name, "fresh") == 0 && ca->has_username_check &&
	    ca->username_check == KG_USERNAME_PASS)
		(*n)++;
	return 0;
}

START_TEST(test_ca_username_check)
{
	struct kg_registry *reg;
	struct kg_ca ca = mkca("fresh", '5'), got = { 0 };
	enum kg_username_check m;
	char err[KG_ERRBUF];
	int n = 0;

	ck_assert_int_ge(kg_registry_sqlite_schema_latest(), 5);
	ck_assert_str_eq(kg_username_check_str(KG_USERNAME_STRICT), "strict");
	ck_assert_str_eq(kg_username_check_str(KG_USERNAME_REWRITE), "rewrite");
	ck_assert_str_eq(kg_username_check_str(KG_USERNAME_PASS), "pass");
	ck_assert_int_eq(kg_username_check_parse("rewrite", &m), 0);
	ck_assert_int_eq(m, KG_USERNAME_REWRITE);
	ck_assert_int_eq(kg_username_check_parse("default", &m), KG_E_INVALID);
	ck_assert_int_eq(kg_username_check_parse("Strict", &m), KG_E_INVALID);

	ck_assert_int_eq(kg_registry_sqlite_migrate(dbpath, 4, err, sizeof(err)), 0);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), 4);
	raw_sql("INSERT INTO cas (name, pem, sha256, added_at, status) VALUES ('old', 'x',"
		" '4444444444444444444444444444444444444444444444444444444444444444', 1, 'disabled')");
	reg = open_rw();
	ck_assert_int_eq(raw_int("PRAGMA user_version"), kg_registry_sqlite_schema_latest());
	ck_assert_int_eq(kg_registry_ca_get(reg, "old", &got), 0);
	ck_assert(!got.has_username_check);
	ck_assert_int_eq(got.status, KG_CA_DISABLED);   /* v4's column kept */
	got.has_username_check = true;
	got.username_check = KG_USERNAME_STRICT;
	ck_assert_int_eq(kg_registry_ca_update(reg, &got), 0);
	kg_ca_fini(&got);
	ck_assert_int_eq(kg_registry_ca_get(reg, "old", &got), 0);
	ck_assert(got.has_username_check);
	ck_assert_int_eq(got.username_check, KG_USERNAME_STRICT);
	got.username_check = KG_USERNAME_REWRITE;
	ck_assert_int_eq(kg_registry_ca_update(reg, &got), 0);
	kg_ca_fini(&got);
	ck_assert_int_eq(kg_registry_ca_get(reg, "old", &got), 0);
	ck_assert(got.has_username_check);
	ck_assert_int_eq(got.username_check, KG_USERNAME_REWRITE);
	/* back to the config's rule: NULL in the store */
	got.has_username_check = false;
	ck_assert_int_eq(kg_registry_ca_update(reg, &got), 0);
	kg_ca_fini(&got);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM cas WHERE name = 'old' AND username_check IS NULL"), 1);
	ck_assert_int_eq(kg_registry_ca_get(reg, "old", &got), 0);
	ck_assert(!got.has_username_check);
	got.has_username_check = true;
	got.username_check = (enum kg_username_check)7;
	ck_assert_int_eq(kg_registry_ca_update(reg, &got), KG_E_INVALID);
	kg_ca_fini(&got);
	/* a new CA is added with the override it carries, and list shows it */
	ca.has_username_check = true;
	ca.username_check = KG_USERNAME_PASS;
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), 0);
	ck_assert_int_eq(kg_registry_ca_get(reg, "fresh", &got), 0);
	ck_assert(got.has_username_check);
	ck_assert_int_eq(got.username_check, KG_USERNAME_PASS);
	kg_ca_fini(&got);
	ck_assert_int_eq(kg_registry_ca_list(reg, count_uc, &n), 0);
	ck_assert_int_eq(n, 1);
	kg_registry_close(reg);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM cas WHERE username_check = 'pass'"), 1);
	{
		sqlite3 *db;

		ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
		ck_assert_int_eq(sqlite3_exec(db, "UPDATE cas SET username_check = 'loose'", NULL,
					      NULL, NULL) & 0xff, SQLITE_CONSTRAINT);
		sqlite3_close(db);
	}
}
END_TEST

/* ---- credentials (schema v6) ------------------------------------------------------ */

#define SAS_KEY_A "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="   /* 32 bytes */
#define SAS_KEY_B "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
#define SCRYPT_A "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"

static struct kg_credential mkcred(enum kg_attestation kind, enum kg_cred_slot slot,
				   const char *user, const char *secret)
{
	struct kg_credential c;

	memset(&c, 0, sizeof(c));
	c.kind = kind;
	c.slot = slot;
	ck_assert_int_eq(kg_strlcpy(c.username, user, sizeof(c.username)), 0);
	ck_assert_int_eq(kg_strlcpy(c.secret, secret, sizeof(c.secret)), 0);
	return c;
}

START_TEST(test_cred_slot_strings)
{
	enum kg_cred_slot sl;

	ck_assert_str_eq(kg_cred_slot_str(KG_CRED_PRIMARY), "primary");
	ck_assert_str_eq(kg_cred_slot_str(KG_CRED_SECONDARY), "secondary");
	ck_assert_str_eq(kg_cred_slot_str(KG_CRED_SLOT_MAX), "unknown");
	ck_assert_int_eq(kg_cred_slot_parse("secondary", &sl), 0);
	ck_assert_int_eq(sl, KG_CRED_SECONDARY);
	ck_assert_int_eq(kg_cred_slot_parse("tertiary", &sl), KG_E_INVALID);
}
END_TEST

/* Set, replace, clear, get; each kind's shape is checked before the store sees it;
 * a missing device is NOTFOUND; a basic user name or a token hash is one device's;
 * removing the device removes its credentials. */
START_TEST(test_credentials)
{
	struct kg_registry *reg = open_rw();
	struct kg_device d = mkdev("sym-1", KG_DEV_ENABLED, KG_ATT_SAS);
	struct kg_device e = mkdev("bas-1", KG_DEV_ENABLED, KG_ATT_BASIC), got;
	struct kg_credential out[KG_CRED_PER_DEVICE], c;
	char hexa[KG_SHA256_HEX_LEN + 1], hexb[KG_SHA256_HEX_LEN + 1];
	size_t n = 99;
	time_t t0 = time(NULL);

	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	ck_assert_int_eq(kg_registry_device_get(reg, "sym-1", &got), 0);
	ck_assert_int_eq(got.attestation, KG_ATT_SAS);
	ck_assert_int_eq(kg_registry_device_add(reg, &e), 0);
	ck_assert_int_eq(kg_registry_cred_get(reg, "sym-1", out, &n), 0);
	ck_assert_uint_eq(n, 0);

	c = mkcred(KG_ATT_SAS, KG_CRED_PRIMARY, "", SAS_KEY_A);
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), 0);
	c = mkcred(KG_ATT_SAS, KG_CRED_SECONDARY, "", SAS_KEY_B);
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), 0);
	ck_assert_int_eq(kg_registry_cred_get(reg, "sym-1", out, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(out[0].kind, KG_ATT_SAS);
	ck_assert_int_eq(out[0].slot, KG_CRED_PRIMARY);
	ck_assert_str_eq(out[0].secret, SAS_KEY_A);
	ck_assert_str_eq(out[0].username, "");
	ck_assert_int_ge(out[0].created_at, (int64_t)t0);
	ck_assert_int_le(out[0].created_at, (int64_t)time(NULL));
	ck_assert_int_eq(out[1].slot, KG_CRED_SECONDARY);
	ck_assert_str_eq(out[1].secret, SAS_KEY_B);

	/* replacing one slot leaves the other */
	c = mkcred(KG_ATT_SAS, KG_CRED_SECONDARY, "", SAS_KEY_A);
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), 0);
	ck_assert_int_eq(kg_registry_cred_get(reg, "sym-1", out, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(out[0].secret, SAS_KEY_A);
	ck_assert_str_eq(out[1].secret, SAS_KEY_A);

	/* shapes: each kind's rule, and no user name outside basic */
	c = mkcred(KG_ATT_SAS, KG_CRED_PRIMARY, "", "MDEyMzQ1Njc4OWFiY2RlZg");   /* unpadded */
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), KG_E_INVALID);
	c = mkcred(KG_ATT_SAS, KG_CRED_PRIMARY, "", "MDEy");                     /* 3 bytes */
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), KG_E_INVALID);
	c = mkcred(KG_ATT_SAS, KG_CRED_PRIMARY, "", "MDEyMzQ1Njc4OWFi=2RlZjAxMjM0NTY3ODlhYmNkZWY=");
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), KG_E_INVALID);
	c = mkcred(KG_ATT_SAS, KG_CRED_PRIMARY, "sym-1", SAS_KEY_A);
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), KG_E_INVALID);
	c = mkcred(KG_ATT_TOKEN, KG_CRED_PRIMARY, "", "abc");
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), KG_E_INVALID);
	c = mkcred(KG_ATT_BASIC, KG_CRED_PRIMARY, "", SCRYPT_A);                 /* no user */
	ck_assert_int_eq(kg_registry_cred_set(reg, "bas-1", &c), KG_E_INVALID);
	c = mkcred(KG_ATT_BASIC, KG_CRED_PRIMARY, "a b", SCRYPT_A);              /* space */
	ck_assert_int_eq(kg_registry_cred_set(reg, "bas-1", &c), KG_E_INVALID);
	c = mkcred(KG_ATT_BASIC, KG_CRED_PRIMARY, "u", "plaintext");
	ck_assert_int_eq(kg_registry_cred_set(reg, "bas-1", &c), KG_E_INVALID);
	c = mkcred(KG_ATT_CA, KG_CRED_PRIMARY, "", SAS_KEY_A);
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), KG_E_INVALID);
	c = mkcred(KG_ATT_SAS, KG_CRED_SLOT_MAX, "", SAS_KEY_A);
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), KG_E_INVALID);
	c = mkcred(KG_ATT_SAS, KG_CRED_PRIMARY, "", SAS_KEY_A);
	ck_assert_int_eq(kg_registry_cred_set(reg, "no-such", &c), KG_E_NOTFOUND);

	/* token: stored lowercase; one hash names one device */
	hex64(hexa, 'A');
	hex64(hexb, 'b');
	c = mkcred(KG_ATT_TOKEN, KG_CRED_PRIMARY, "", hexa);
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), 0);   /* beside its SAS keys */
	ck_assert_int_eq(raw_int("SELECT count(*) FROM credentials WHERE kind = 'token' AND"
				 " secret = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"), 1);
	ck_assert_int_eq(kg_registry_cred_set(reg, "bas-1", &c), KG_E_EXISTS);
	c = mkcred(KG_ATT_TOKEN, KG_CRED_PRIMARY, "", hexb);
	ck_assert_int_eq(kg_registry_cred_set(reg, "bas-1", &c), 0);

	/* basic: a user name may sit in both slots of one device, not on another device */
	c = mkcred(KG_ATT_BASIC, KG_CRED_PRIMARY, "meter-7", SCRYPT_A);
	ck_assert_int_eq(kg_registry_cred_set(reg, "bas-1", &c), 0);
	c.slot = KG_CRED_SECONDARY;
	ck_assert_int_eq(kg_registry_cred_set(reg, "bas-1", &c), 0);
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), KG_E_EXISTS);
	ck_assert_msg(strstr(reg->errmsg, "belongs to another device") != NULL, "%s", reg->errmsg);
	ck_assert_int_eq(kg_registry_cred_get(reg, "bas-1", out, &n), 0);
	ck_assert_uint_eq(n, 3);   /* basic/primary, basic/secondary, token/primary */
	ck_assert_int_eq(out[0].kind, KG_ATT_BASIC);
	ck_assert_str_eq(out[0].username, "meter-7");
	ck_assert_str_eq(out[0].secret, SCRYPT_A);
	ck_assert_int_eq(out[1].slot, KG_CRED_SECONDARY);
	ck_assert_int_eq(out[2].kind, KG_ATT_TOKEN);
	ck_assert_str_eq(out[2].secret, hexb);

	/* the CONNECT check's lookups: a token hash (either case), a basic user name */
	{
		char id[KG_DEVICE_ID_MAX + 1];

		ck_assert_int_eq(kg_registry_cred_find(reg, KG_ATT_TOKEN, hexa, id), 0);
		ck_assert_str_eq(id, "sym-1");
		ck_assert_int_eq(kg_registry_cred_find(reg, KG_ATT_TOKEN, hexb, id), 0);
		ck_assert_str_eq(id, "bas-1");
		hexb[0] = 'c';
		ck_assert_int_eq(kg_registry_cred_find(reg, KG_ATT_TOKEN, hexb, id), KG_E_NOTFOUND);
		hexb[0] = 'b';
		ck_assert_int_eq(kg_registry_cred_find(reg, KG_ATT_BASIC, "meter-7", id), 0);
		ck_assert_str_eq(id, "bas-1");
		ck_assert_int_eq(kg_registry_cred_find(reg, KG_ATT_BASIC, "meter-8", id), KG_E_NOTFOUND);
		/* a SAS key is never a lookup key, nor is a token by its plain text */
		ck_assert_int_eq(kg_registry_cred_find(reg, KG_ATT_SAS, SAS_KEY_A, id), KG_E_INVALID);
		ck_assert_int_eq(kg_registry_cred_find(reg, KG_ATT_TOKEN, "plain-token", id), KG_E_INVALID);
		ck_assert_int_eq(kg_registry_cred_find(reg, KG_ATT_BASIC, "", id), KG_E_INVALID);
	}

	/* clear one slot; clearing it again is NOTFOUND */
	ck_assert_int_eq(kg_registry_cred_clear(reg, "bas-1", KG_ATT_BASIC, KG_CRED_SECONDARY), 0);
	ck_assert_int_eq(kg_registry_cred_clear(reg, "bas-1", KG_ATT_BASIC, KG_CRED_SECONDARY),
			 KG_E_NOTFOUND);
	ck_assert_int_eq(kg_registry_cred_clear(reg, "bas-1", KG_ATT_THUMBPRINT, KG_CRED_PRIMARY),
			 KG_E_INVALID);
	ck_assert_int_eq(kg_registry_cred_get(reg, "bas-1", out, &n), 0);
	ck_assert_uint_eq(n, 2);

	/* removing the device removes its credentials, and only its own */
	ck_assert_int_eq(raw_int("SELECT count(*) FROM credentials"), 5);
	ck_assert_int_eq(kg_registry_device_remove(reg, "sym-1"), 0);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM credentials WHERE device_id = 'sym-1'"), 0);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM credentials"), 2);
	ck_assert_int_eq(kg_registry_cred_get(reg, "sym-1", out, &n), 0);
	ck_assert_uint_eq(n, 0);
	/* the freed user name is free again */
	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	ck_assert_int_eq(kg_registry_cred_clear(reg, "bas-1", KG_ATT_BASIC, KG_CRED_PRIMARY), 0);
	c.slot = KG_CRED_PRIMARY;
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), 0);
	kg_registry_close(reg);

	/* a read-only handle reads, never writes */
	reg = NULL;
	{
		char err[KG_ERRBUF];

		ck_assert_int_eq(kg_registry_open(loc, KG_REG_READONLY, &reg, err, sizeof(err)), 0);
	}
	ck_assert_int_eq(kg_registry_cred_get(reg, "sym-1", out, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(kg_registry_cred_set(reg, "sym-1", &c), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_cred_clear(reg, "sym-1", KG_ATT_BASIC, KG_CRED_PRIMARY),
			 KG_E_INVALID);
	kg_registry_close(reg);
	/* the store's CHECKs hold behind the API's back */
	ck_assert(raw_refused_by_check("UPDATE credentials SET slot = 'third'"));
	ck_assert(raw_refused_by_check("UPDATE credentials SET username = NULL"));
	ck_assert(raw_refused_by_check("UPDATE devices SET attestation = 'x509'"));
}
END_TEST

/* Schema v6: a v5 registry (what the previous build wrote) migrates: its devices keep
 * every column, the new kinds are accepted, the credentials table exists. */
START_TEST(test_credentials_migration)
{
	struct kg_registry *reg;
	struct kg_device got, s = mkdev("new-sas", KG_DEV_ENABLED, KG_ATT_SAS);
	struct kg_credential c = mkcred(KG_ATT_SAS, KG_CRED_PRIMARY, "", SAS_KEY_A);
	char err[KG_ERRBUF];

	ck_assert_int_ge(kg_registry_sqlite_schema_latest(), 6);
	ck_assert_int_eq(kg_registry_sqlite_migrate(dbpath, 5, err, sizeof(err)), 0);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), 5);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE name = 'credentials'"), 0);
	raw_sql("INSERT INTO cas (name, pem, sha256, added_at) VALUES ('old-ca', 'x',"
		" '4444444444444444444444444444444444444444444444444444444444444444', 1)");
	raw_sql("INSERT INTO devices (id, status, attestation, backend, ca_name, created_at,"
		" updated_at, last_seen, cert_not_after) VALUES ('old-ca-dev', 'suspended', 'ca',"
		" 'b1', 'old-ca', 11, 12, 13, 14)");
	raw_sql("INSERT INTO devices (id, status, attestation, thumb_primary, thumb_secondary,"
		" created_at, updated_at) VALUES ('old-pin', 'enabled', 'thumbprint',"
		" '5555555555555555555555555555555555555555555555555555555555555555',"
		" '6666666666666666666666666666666666666666666666666666666666666666', 21, 22)");
	/* v5 refuses the new kinds */
	{
		sqlite3 *db;

		ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
		ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO devices (id, status, attestation,"
					      " created_at, updated_at) VALUES ('x', 'enabled', 'sas', 1, 1)",
					      NULL, NULL, NULL) & 0xff, SQLITE_CONSTRAINT);
		sqlite3_close(db);
	}
	reg = open_rw();
	ck_assert_int_eq(kg_registry_schema_version(reg), kg_registry_sqlite_schema_latest());
	ck_assert_int_eq(kg_registry_device_get(reg, "old-ca-dev", &got), 0);
	ck_assert_int_eq(got.status, KG_DEV_SUSPENDED);
	ck_assert_int_eq(got.attestation, KG_ATT_CA);
	ck_assert_str_eq(got.backend, "b1");
	ck_assert_str_eq(got.ca_name, "old-ca");
	ck_assert_int_eq(got.created_at, 11);
	ck_assert_int_eq(got.updated_at, 12);
	ck_assert_int_eq(got.last_seen, 13);
	ck_assert_int_eq(got.cert_not_after, 14);
	ck_assert_int_eq(kg_registry_device_find_thumbprint(
				 reg, "6666666666666666666666666666666666666666666666666666666666666666", &got), 0);
	ck_assert_str_eq(got.id, "old-pin");
	ck_assert_str_eq(got.thumb_primary,
			 "5555555555555555555555555555555555555555555555555555555555555555");
	/* the RESTRICT key survived the rebuild */
	ck_assert_int_eq(kg_registry_ca_remove(reg, "old-ca"), KG_E_EXISTS);
	ck_assert_int_eq(kg_registry_device_add(reg, &s), 0);
	ck_assert_int_eq(kg_registry_cred_set(reg, "new-sas", &c), 0);
	kg_registry_close(reg);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM devices"), 3);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM credentials WHERE device_id = 'new-sas'"), 1);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND"
				 " name IN ('devices_thumb_primary', 'devices_thumb_secondary',"
				 " 'devices_status', 'devices_ca_name', 'credentials_token',"
				 " 'credentials_username')"), 6);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_foreign_key_check"), 0);
}
END_TEST

/* device import's batch: devices and their credentials in one transaction; a refused
 * credential (shape, a user name twice in the batch or taken, a token twice) rolls the
 * devices back; bad names the device (< n) or the credential (n + j). */
START_TEST(test_device_add_many_cred)
{
	struct kg_registry *reg = open_rw();
	struct kg_device devs[3] = {
		mkdev("imp-a", KG_DEV_ENABLED, KG_ATT_SAS),
		mkdev("imp-b", KG_DEV_ENABLED, KG_ATT_BASIC),
		mkdev("imp-c", KG_DEV_ENABLED, KG_ATT_BASIC),
	}, got, more = mkdev("imp-d", KG_DEV_ENABLED, KG_ATT_BASIC);
	struct kg_credential cr[4], out[KG_CRED_PER_DEVICE];
	size_t map[4] = { 0, 0, 1, 2 }, bad = 99, n = 0, zero = 0;
	char tok[KG_SHA256_HEX_LEN + 1];

	cr[0] = mkcred(KG_ATT_SAS, KG_CRED_PRIMARY, "", SAS_KEY_A);
	cr[1] = mkcred(KG_ATT_SAS, KG_CRED_SECONDARY, "", SAS_KEY_B);
	cr[2] = mkcred(KG_ATT_BASIC, KG_CRED_PRIMARY, "u1", SCRYPT_A);
	cr[3] = mkcred(KG_ATT_BASIC, KG_CRED_PRIMARY, "u1", SCRYPT_A);   /* u1 twice */
	ck_assert_int_eq(kg_registry_device_add_many_cred(reg, devs, 3, cr, map, 4, &bad), KG_E_EXISTS);
	ck_assert_uint_eq(bad, 3 + 3);
	ck_assert_ptr_nonnull(strstr(reg->errmsg, "user name u1"));
	ck_assert_int_eq(kg_registry_device_get(reg, "imp-a", &got), KG_E_NOTFOUND);

	cr[3] = mkcred(KG_ATT_BASIC, KG_CRED_PRIMARY, "u1", "plaintext");  /* a shape refused */
	ck_assert_int_eq(kg_registry_device_add_many_cred(reg, devs, 3, cr, map, 4, &bad), KG_E_INVALID);
	ck_assert_uint_eq(bad, 3 + 3);
	map[3] = 3;                                                          /* no such device */
	ck_assert_int_eq(kg_registry_device_add_many_cred(reg, devs, 3, cr, map, 4, &bad), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_device_add_many_cred(reg, devs, 3, cr, NULL, 4, &bad), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_device_add_many_cred(reg, devs, 0, cr, map, 4, &bad), KG_E_INVALID);

	map[3] = 2;
	cr[3] = mkcred(KG_ATT_BASIC, KG_CRED_PRIMARY, "u2", SCRYPT_A);
	ck_assert_int_eq(kg_registry_device_add_many_cred(reg, devs, 3, cr, map, 4, &bad), 0);
	ck_assert_int_eq(kg_registry_cred_get(reg, "imp-a", out, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(out[1].secret, SAS_KEY_B);
	ck_assert_int_eq(kg_registry_cred_get(reg, "imp-c", out, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(out[0].username, "u2");

	/* A user name the registry holds: refused, imp-d not written. */
	cr[0] = mkcred(KG_ATT_BASIC, KG_CRED_PRIMARY, "u2", SCRYPT_A);
	ck_assert_int_eq(kg_registry_device_add_many_cred(reg, &more, 1, cr, &zero, 1, &bad), KG_E_EXISTS);
	ck_assert_uint_eq(bad, 1);
	ck_assert_int_eq(kg_registry_device_get(reg, "imp-d", &got), KG_E_NOTFOUND);
	/* The same token hash twice in one batch. */
	hex64(tok, 'c');
	devs[0] = mkdev("imp-e", KG_DEV_ENABLED, KG_ATT_TOKEN);
	devs[1] = mkdev("imp-f", KG_DEV_ENABLED, KG_ATT_TOKEN);
	cr[0] = mkcred(KG_ATT_TOKEN, KG_CRED_PRIMARY, "", tok);
	cr[1] = mkcred(KG_ATT_TOKEN, KG_CRED_PRIMARY, "", tok);
	map[0] = 0;
	map[1] = 1;
	ck_assert_int_eq(kg_registry_device_add_many_cred(reg, devs, 2, cr, map, 2, &bad), KG_E_EXISTS);
	ck_assert_uint_eq(bad, 2 + 1);
	ck_assert_int_eq(kg_registry_device_get(reg, "imp-e", &got), KG_E_NOTFOUND);
	/* A device refused: bad < n, as device_add_many. */
	devs[1] = mkdev("imp-a", KG_DEV_ENABLED, KG_ATT_TOKEN);
	ck_assert_int_eq(kg_registry_device_add_many_cred(reg, devs, 2, cr, map, 1, &bad), KG_E_EXISTS);
	ck_assert_uint_eq(bad, 1);
	kg_registry_close(reg);
}
END_TEST

/* ---- import: rows as given (registry copy) ------------------------------------ */

#define CHALLENGE_HEX "0123456789abcdef0123456789abcdef"

/* The rows test_import_* write: two CAs (one proven, one pending with its challenge),
 * three devices with every time set, three credentials. Nothing the store would pick. */
static void import_rows(struct kg_ca cas[2], struct kg_device devs[3], struct kg_credential cr[3],
			size_t map[3])
{
	cas[0] = mkca("imp-ca-proven", '1');
	cas[0].verified = true;
	cas[0].added_at = 1500000001;
	cas[0].backend[0] = '\0';
	cas[1] = mkca("imp-ca-pending", '2');
	memcpy(cas[1].challenge, CHALLENGE_HEX, sizeof(CHALLENGE_HEX));
	cas[1].added_at = 1500000002;
	cas[1].not_after = 1900000002;
	cas[1].status = KG_CA_DISABLED;
	cas[1].auto_enroll = true;
	cas[1].has_username_check = true;
	cas[1].username_check = KG_USERNAME_REWRITE;
	snprintf(cas[1].backend, sizeof(cas[1].backend), "be-ca");

	devs[0] = mkdev("imp/pinned", KG_DEV_SUSPENDED, KG_ATT_THUMBPRINT);
	hex64(devs[0].thumb_primary, 'a');
	hex64(devs[0].thumb_secondary, 'b');
	snprintf(devs[0].backend, sizeof(devs[0].backend), "be-dev");
	devs[1] = mkdev("imp/under-ca", KG_DEV_ENABLED, KG_ATT_CA);
	snprintf(devs[1].ca_name, sizeof(devs[1].ca_name), "imp-ca-proven");
	devs[2] = mkdev("imp/secret", KG_DEV_QUARANTINED, KG_ATT_BASIC);
	for (int i = 0; i < 3; i++) {
		devs[i].created_at = 1600000000 + i;
		devs[i].updated_at = 1600000100 + i;
		devs[i].last_seen = i == 1 ? 0 : 1600000200 + i;
		devs[i].cert_not_after = i == 0 ? 1700000000 : 0;
	}
	cr[0] = mkcred(KG_ATT_BASIC, KG_CRED_PRIMARY, "imp-user", SCRYPT_A);
	cr[0].created_at = 1600000301;
	cr[1] = mkcred(KG_ATT_SAS, KG_CRED_SECONDARY, "", SAS_KEY_B);
	cr[1].created_at = 1600000302;
	cr[2] = mkcred(KG_ATT_TOKEN, KG_CRED_PRIMARY, "", "");
	hex64(cr[2].secret, 'c');
	cr[2].created_at = 1600000303;
	map[0] = 2;
	map[1] = 2;
	map[2] = 1;
}

static void assert_same_ca(const struct kg_ca *a, const struct kg_ca *b)
{
	ck_assert_str_eq(a->name, b->name);
	ck_assert_str_eq(a->sha256, b->sha256);
	ck_assert_str_eq(a->subject, b->subject);
	ck_assert_int_eq(a->verified, b->verified);
	ck_assert_str_eq(a->challenge, b->challenge);
	ck_assert_str_eq(a->backend, b->backend);
	ck_assert_int_eq(a->auto_enroll, b->auto_enroll);
	ck_assert_int_eq(a->status, b->status);
	ck_assert_int_eq(a->has_username_check, b->has_username_check);
	if (a->has_username_check)
		ck_assert_int_eq(a->username_check, b->username_check);
	ck_assert_int_eq(a->added_at, b->added_at);
	ck_assert_int_eq(a->not_after, b->not_after);
	ck_assert_str_eq(a->pem, b->pem);
}

static void assert_same_dev(const struct kg_device *a, const struct kg_device *b)
{
	ck_assert_str_eq(a->id, b->id);
	ck_assert_int_eq(a->status, b->status);
	ck_assert_int_eq(a->attestation, b->attestation);
	ck_assert_str_eq(a->thumb_primary, b->thumb_primary);
	ck_assert_str_eq(a->thumb_secondary, b->thumb_secondary);
	ck_assert_str_eq(a->backend, b->backend);
	ck_assert_str_eq(a->ca_name, b->ca_name);
	ck_assert_int_eq(a->created_at, b->created_at);
	ck_assert_int_eq(a->updated_at, b->updated_at);
	ck_assert_int_eq(a->last_seen, b->last_seen);
	ck_assert_int_eq(a->cert_not_after, b->cert_not_after);
}

/* Every field comes back as given, times and the pending challenge included; and
 * kg_registry_version reads 0 before (creating nothing) and the latest after. */
START_TEST(test_import_round_trip)
{
	struct kg_ca cas[2], got_ca;
	struct kg_device devs[3], got;
	struct kg_credential cr[3], out[KG_CRED_PER_DEVICE];
	size_t map[3], bad = 99, n = 0;
	struct kg_registry *reg;
	char err[KG_ERRBUF];
	int v = -1;

	ck_assert_int_eq(kg_registry_version(loc, &v, err, sizeof(err)), 0);
	ck_assert_int_eq(v, 0);
	ck_assert_ptr_null(strstr(err, PG_TEST_PASSWORD));
	if (pg_mode)
		ck_assert_int_eq(raw_int("SELECT count(*) FROM pg_namespace WHERE nspname = '"
					 KG_PG_SCHEMA "'"), 0);
	else
		ck_assert_msg(!exists(dbpath), "kg_registry_version created the file");

	reg = open_rw();
	ck_assert_int_eq(kg_registry_version(loc, &v, err, sizeof(err)), 0);
	ck_assert_int_eq(v, kg_registry_schema_version(reg));
	ck_assert_int_eq(v, pg_mode ? kg_registry_pg_schema_latest() : kg_registry_sqlite_schema_latest());

	import_rows(cas, devs, cr, map);
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), 0);
	ck_assert_uint_eq(bad, 2 + 3 + 3);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(kg_registry_ca_get(reg, cas[i].name, &got_ca), 0);
		assert_same_ca(&cas[i], &got_ca);
		kg_ca_fini(&got_ca);
	}
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(kg_registry_device_get(reg, devs[i].id, &got), 0);
		assert_same_dev(&devs[i], &got);
	}
	/* ordered by kind, then slot: basic primary, sas secondary */
	ck_assert_int_eq(kg_registry_cred_get(reg, "imp/secret", out, &n), 0);
	ck_assert_uint_eq(n, 2);
	for (size_t k = 0; k < 2; k++) {
		ck_assert_int_eq(out[k].kind, cr[k].kind);
		ck_assert_int_eq(out[k].slot, cr[k].slot);
		ck_assert_str_eq(out[k].username, cr[k].username);
		ck_assert_str_eq(out[k].secret, cr[k].secret);
		ck_assert_int_eq(out[k].created_at, cr[k].created_at);
	}
	ck_assert_int_eq(kg_registry_cred_get(reg, "imp/under-ca", out, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(out[0].secret, cr[2].secret);
	ck_assert_int_eq(out[0].created_at, 1600000303);
	/* The pending challenge is the one given: the proof made for it still works. */
	ck_assert_int_eq(kg_registry_ca_set_verified(reg, "imp-ca-pending"), 0);
	/* Nothing at all: nothing written, 0. */
	ck_assert_int_eq(kg_registry_import(reg, NULL, 0, NULL, 0, NULL, NULL, 0, &bad), 0);
	kg_registry_close(reg);
}
END_TEST

/* What a batch must not change. */
static void assert_counts(int cas, int devs, int creds)
{
	ck_assert_int_eq(raw_int("SELECT count(*) FROM cas"), cas);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM devices"), devs);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM credentials"), creds);
}

/* A conflict midway (with the destination, or an earlier row of the batch) leaves
 * nothing written, and *bad names the row in CAs-devices-credentials order. */
START_TEST(test_import_conflict)
{
	struct kg_registry *reg = open_rw();
	struct kg_ca cas[2], held = mkca("held-ca", '9');
	struct kg_device devs[3], hd = mkdev("held/dev", KG_DEV_ENABLED, KG_ATT_THUMBPRINT), got;
	struct kg_credential cr[3], tok;
	size_t map[3], bad = 99;
	char t9[KG_SHA256_HEX_LEN + 1];

	ck_assert_int_eq(kg_registry_ca_add(reg, &held), 0);
	hex64(hd.thumb_primary, 'e');
	ck_assert_int_eq(kg_registry_device_add(reg, &hd), 0);
	hex64(t9, 'd');
	tok = mkcred(KG_ATT_TOKEN, KG_CRED_PRIMARY, "", t9);
	ck_assert_int_eq(kg_registry_cred_set(reg, "held/dev", &tok), 0);
	assert_counts(1, 1, 1);

	/* the destination's: a CA digest, a device id, a thumbprint, a token hash, a user
	 * name; each refused with everything before it rolled back */
	import_rows(cas, devs, cr, map);
	hex64(cas[1].sha256, '9');
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), KG_E_EXISTS);
	ck_assert_uint_eq(bad, 1);
	assert_counts(1, 1, 1);

	import_rows(cas, devs, cr, map);
	snprintf(devs[2].id, sizeof(devs[2].id), "held/dev");
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), KG_E_EXISTS);
	ck_assert_uint_eq(bad, 2 + 2);
	assert_counts(1, 1, 1);

	import_rows(cas, devs, cr, map);
	hex64(devs[0].thumb_secondary, 'e');
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), KG_E_EXISTS);
	ck_assert_uint_eq(bad, 2 + 0);
	ck_assert_ptr_nonnull(strstr(reg->errmsg, "thumbprint of device imp/pinned"));
	assert_counts(1, 1, 1);

	import_rows(cas, devs, cr, map);
	hex64(cr[2].secret, 'd');
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), KG_E_EXISTS);
	ck_assert_uint_eq(bad, 2 + 3 + 2);
	assert_counts(1, 1, 1);
	ck_assert_int_eq(kg_registry_device_get(reg, "imp/pinned", &got), KG_E_NOTFOUND);

	/* the batch's own: the same slot twice (no replacing, unlike cred_set) */
	import_rows(cas, devs, cr, map);
	cr[1] = cr[0];
	snprintf(cr[1].username, sizeof(cr[1].username), "other-user");
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), KG_E_EXISTS);
	ck_assert_uint_eq(bad, 2 + 3 + 1);
	assert_counts(1, 1, 1);

	/* a device's CA in neither: KG_E_NOTFOUND, nothing written */
	import_rows(cas, devs, cr, map);
	snprintf(devs[1].ca_name, sizeof(devs[1].ca_name), "no-such-ca");
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), KG_E_NOTFOUND);
	ck_assert_uint_eq(bad, 2 + 1);
	assert_counts(1, 1, 1);

	/* refused by registry.c before the store sees anything */
	import_rows(cas, devs, cr, map);
	cas[0].verified = false;   /* pending without a challenge */
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), KG_E_INVALID);
	ck_assert_uint_eq(bad, 0);
	import_rows(cas, devs, cr, map);
	cas[1].verified = true;    /* proven with a challenge still pending */
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), KG_E_INVALID);
	ck_assert_uint_eq(bad, 1);
	import_rows(cas, devs, cr, map);
	devs[2].updated_at = -1;
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), KG_E_INVALID);
	ck_assert_uint_eq(bad, 2 + 2);
	import_rows(cas, devs, cr, map);
	map[2] = 3;
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), KG_E_INVALID);
	ck_assert_uint_eq(bad, 2 + 3 + 2);
	assert_counts(1, 1, 1);

	/* and the whole batch still goes in once it is clean */
	import_rows(cas, devs, cr, map);
	ck_assert_int_eq(kg_registry_import(reg, cas, 2, devs, 3, cr, map, 3, &bad), 0);
	assert_counts(3, 4, 4);
	kg_registry_close(reg);
}
END_TEST

START_TEST(test_newer_schema_refused)
{
	char msg[128];

	kg_registry_close(open_rw());
	raw_sql("PRAGMA user_version = 99");
	/* settle the WAL into the main file so "unchanged" means the bytes on disk */
	raw_sql("PRAGMA journal_mode = DELETE");
	snprintf(msg, sizeof(msg), "schema version 99 is newer than this build (%d)",
		 kg_registry_sqlite_schema_latest());
	assert_refused_untouched(KG_REG_READWRITE, KG_E_CORRUPT, msg);
	assert_refused_untouched(KG_REG_READONLY, KG_E_CORRUPT, msg);
}
END_TEST

START_TEST(test_garbage_refused)
{
	static const size_t sizes[] = { 1, 15, 16, 100, 4096, 10000 };
	char buf[10000];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)("not a database\n"[i % 15]);
	for (size_t i = 0; i < KG_NITEMS(sizes); i++) {
		kg_test_write_file(dbpath, buf, sizes[i]);
		assert_refused_untouched(KG_REG_READWRITE, KG_E_CORRUPT,
					 "not a registry database: file is not a database");
		assert_refused_untouched(KG_REG_READONLY, KG_E_CORRUPT,
					 "not a registry database: file is not a database");
	}
}
END_TEST

/* The SQLite magic, then junk: SQLite itself must say no, and we still write nothing. */
START_TEST(test_magic_then_garbage_refused)
{
	char buf[8192];

	memset(buf, 0x5a, sizeof(buf));
	memcpy(buf, "SQLite format 3", 16);
	kg_test_write_file(dbpath, buf, sizeof(buf));
	assert_refused_untouched(KG_REG_READWRITE, KG_E_CORRUPT, "not a registry database");
}
END_TEST

START_TEST(test_foreign_refused)
{
	raw_sql("CREATE TABLE foo (a INTEGER, b TEXT); INSERT INTO foo VALUES (1, 'x');");
	assert_refused_untouched(KG_REG_READWRITE, KG_E_CORRUPT, "foreign SQLite database");
	assert_refused_untouched(KG_REG_READONLY, KG_E_CORRUPT, "foreign SQLite database");
	ck_assert_int_eq(raw_int("SELECT count(*) FROM foo"), 1);
}
END_TEST

/* Another application's id on an otherwise empty database is still not ours. */
START_TEST(test_foreign_app_id_refused)
{
	raw_sql("PRAGMA application_id = 1234");
	assert_refused_untouched(KG_REG_READWRITE, KG_E_CORRUPT, "application_id 0x000004d2");
	raw_sql("PRAGMA application_id = 0; PRAGMA user_version = 7");
	assert_refused_untouched(KG_REG_READWRITE, KG_E_CORRUPT, "foreign SQLite database");
}
END_TEST

/* A 0-byte file is an empty SQLite database: read-write initialises it. */
START_TEST(test_empty_file)
{
	struct kg_registry *reg = NULL;
	char err[KG_ERRBUF];

	kg_test_write_file(dbpath, "", 0);
	ck_assert_int_eq(kg_registry_open(dbpath, KG_REG_READONLY, &reg, err, sizeof(err)),
			 KG_E_CORRUPT);
	ck_assert_msg(strstr(err, "not initialised") != NULL, "%s", err);
	reg = open_rw();
	ck_assert_int_eq(kg_registry_schema_version(reg), kg_registry_sqlite_schema_latest());
	kg_registry_close(reg);
	ck_assert_int_eq(kg_registry_open(dbpath, KG_REG_READONLY, &reg, err, sizeof(err)), 0);
	kg_registry_close(reg);
}
END_TEST

/* Two writers on one file: each sees the other's rows, constraints hold across them. */
START_TEST(test_two_writers)
{
	struct kg_registry *a = open_rw(), *b = open_rw();
	struct kg_device d = mkdev("shared", KG_DEV_ENABLED, KG_ATT_CA), got;

	ck_assert_int_eq(kg_registry_device_add(a, &d), 0);
	ck_assert_int_eq(kg_registry_device_add(b, &d), KG_E_EXISTS);
	ck_assert_int_eq(kg_registry_device_remove(b, "shared"), 0);
	ck_assert_int_eq(kg_registry_device_get(a, "shared", &got), KG_E_NOTFOUND);
	kg_registry_close(a);
	kg_registry_close(b);
}
END_TEST

/*
 * The writer's queue and last-commit gauges (ktlsgate_registry_writer_*): a write held
 * up by another process's lock stays counted in the queue (the batch in flight) and the
 * last commit does not move; once the lock goes, the queue drains to 0 and the commit
 * time advances. What KtlsgateRegistryWriterStuck reads.
 */
START_TEST(test_writer_gauges)
{
	struct kg_registry *reg = open_rw();
	struct kg_device d = mkdev("w1", KG_DEV_ENABLED, KG_ATT_CA), got;
	struct kg_writer *w;
	char err[KG_ERRBUF] = "";
	time_t before = time(NULL);
	int64_t lc0;
	sqlite3 *db;
	int i;

	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	kg_registry_close(reg);
	w = kg_writer_start(dbpath, err, sizeof(err));
	ck_assert_msg(w != NULL, "%s", err);
	lc0 = kg_writer_last_commit(w);   /* nothing committed yet: the start */
	ck_assert_int_ge(lc0, (int64_t)before);
	ck_assert_int_le(lc0, (int64_t)time(NULL));
	ck_assert_int_eq(kg_writer_queue(w), 0);

	/* another process's write lock (BEGIN IMMEDIATE: WAL lets only one writer) */
	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	kg_writer_touch(w, "w1", 1700000000, 0);
	ck_assert_int_eq(kg_writer_queue(w), 1);
	/* past the batch window (200 ms) and into a later second: applying, held up */
	usleep(800 * 1000);
	while (time(NULL) <= (time_t)lc0)
		usleep(50 * 1000);
	ck_assert_int_eq(kg_writer_queue(w), 1);
	ck_assert_int_eq(kg_writer_last_commit(w), lc0);

	ck_assert_int_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	for (i = 0; i < 300 && kg_writer_queue(w) != 0; i++)
		usleep(50 * 1000);
	ck_assert_int_eq(kg_writer_queue(w), 0);
	ck_assert_int_gt(kg_writer_last_commit(w), lc0);
	ck_assert_int_le(kg_writer_last_commit(w), (int64_t)time(NULL));
	kg_writer_stop(w);
	reg = open_rw();
	ck_assert_int_eq(kg_registry_device_get(reg, "w1", &got), 0);
	ck_assert_int_eq(got.last_seen, 1700000000);   /* it was committed, not dropped */
	kg_registry_close(reg);
}
END_TEST

Suite *kg_suite_registry(void)
{
	Suite *s = suite_create("registry");
	TCase *tc = tcase_create("registry");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_status_strings);
	tcase_add_test(tc, test_attestation_strings);
	tcase_add_test(tc, test_open_locations);
	tcase_add_test(tc, test_device_crud);
	tcase_add_test(tc, test_transactions);
	tcase_add_test(tc, test_device_invalid);
	tcase_add_test(tc, test_device_thumbprint);
	tcase_add_test(tc, test_device_touch);
	tcase_add_test(tc, test_device_list);
	tcase_add_test(tc, test_ca_crud);
	tcase_add_test(tc, test_ca_invalid);
	tcase_add_test(tc, test_ca_list);
	tcase_add_test(tc, test_device_ca_link);
	tcase_add_test(tc, test_reopen_persists);
	tcase_add_test(tc, test_readonly);
	tcase_add_test(tc, test_migrations);
	tcase_add_test(tc, test_ca_status);
	tcase_add_test(tc, test_ca_username_check);
	tcase_add_test(tc, test_cred_slot_strings);
	tcase_add_test(tc, test_credentials);
	tcase_add_test(tc, test_credentials_migration);
	tcase_add_test(tc, test_device_add_many_cred);
	tcase_add_test(tc, test_import_round_trip);
	tcase_add_test(tc, test_import_conflict);
	tcase_add_test(tc, test_newer_schema_refused);
	tcase_add_test(tc, test_garbage_refused);
	tcase_add_test(tc, test_magic_then_garbage_refused);
	tcase_add_test(tc, test_foreign_refused);
	tcase_add_test(tc, test_foreign_app_id_refused);
	tcase_add_test(tc, test_empty_file);
	tcase_add_test(tc, test_two_writers);
	tcase_add_test(tc, test_writer_gauges);
	suite_add_tcase(s, tc);

	/* The store-generic cases again, on PostgreSQL. Registered only when there is a
	 * database to run them on: never a pass that tested nothing. Keep PG_GENERIC_CASES
	 * in mk/pg.mk equal to their number. */
	if (getenv("KG_TEST_PG") != NULL && getenv("KG_TEST_PG")[0] != '\0') {
		tc = tcase_create("pg");
		tcase_add_checked_fixture(tc, setup_pg, teardown);
		tcase_set_timeout(tc, 60);
		tcase_add_test(tc, test_device_crud);
		tcase_add_test(tc, test_transactions);
		tcase_add_test(tc, test_device_invalid);
		tcase_add_test(tc, test_device_thumbprint);
		tcase_add_test(tc, test_device_touch);
		tcase_add_test(tc, test_device_list);
		tcase_add_test(tc, test_ca_crud);
		tcase_add_test(tc, test_ca_invalid);
		tcase_add_test(tc, test_ca_list);
		tcase_add_test(tc, test_device_ca_link);
		tcase_add_test(tc, test_credentials);
		tcase_add_test(tc, test_device_add_many_cred);
		tcase_add_test(tc, test_import_round_trip);
		tcase_add_test(tc, test_import_conflict);
		suite_add_tcase(s, tc);
		kg_registry_pg_cases(s);   /* case pg_store: what only that store has */
	}
	return s;
}
