/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_registry_pg.c - what only the PostgreSQL store has, against the real cluster
 * KG_TEST_PG names (mk/pg.mk starts it; KG_TEST_PG_DIR is its directory, for the
 * outage cases): the schema and its identification (current, newer, foreign, read-only),
 * the change feed (rows and NOTIFYs, what makes none), two processes creating the
 * schema or enrolling one device at once, the busy timeout, surviving a database
 * restart on one handle, and a password that never reaches a message or a log.
 * Each test starts from a database without the ktlsgate schema. The cases "pg_store"
 * and "pg_race" (several processes at once) are added to the registry suite only when
 * KG_TEST_PG is set.
 */
#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ops/err.h"
#include "registry/registry.h"
#include "testlib.h"

/* check_registry.c adds this case to its suite (no run.c entry of its own). */
void kg_registry_pg_cases(Suite *s);

#define PW "Sekr1t-pg-store-pw"

static char uri[1024];   /* KG_TEST_PG with PW added */

static PGconn *raw_conn(void)
{
	PGconn *c = PQconnectdb(getenv("KG_TEST_PG"));

	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
	PQclear(PQexec(c, "SET client_min_messages = warning"));
	return c;
}

static void raw_exec(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);

	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK,
		      "%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

static void raw_sql(const char *sql)
{
	PGconn *c = raw_conn();

	raw_exec(c, sql);
	PQfinish(c);
}

/* First column of the first row as text into buf ("" when no row). */
static const char *raw_text(const char *sql, char *buf, size_t cap)
{
	PGconn *c = raw_conn();
	PGresult *res = PQexec(c, sql);

	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
	snprintf(buf, cap, "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
	PQclear(res);
	PQfinish(c);
	return buf;
}

static long raw_long(const char *sql)
{
	char buf[64];

	raw_text(sql, buf, sizeof(buf));
	ck_assert_msg(buf[0] != '\0', "%s: no value", sql);
	return strtol(buf, NULL, 10);
}

static void setup(void)
{
	const char *base = getenv("KG_TEST_PG");

	ck_assert_ptr_nonnull(base);
	snprintf(uri, sizeof(uri), "%s%cpassword=" PW, base, strchr(base, '?') != NULL ? '&' : '?');
	raw_sql("DROP SCHEMA IF EXISTS " KG_PG_SCHEMA " CASCADE");
}

static struct kg_registry *open_mode(enum kg_registry_mode mode)
{
	struct kg_registry *reg = NULL;
	char err[KG_ERRBUF];
	int rc = kg_registry_open(uri, mode, &reg, err, sizeof(err));

	ck_assert_msg(rc == 0, "open: %d %s", rc, err);
	return reg;
}

static struct kg_device mkdev(const char *id, enum kg_device_status st)
{
	struct kg_device d;

	memset(&d, 0, sizeof(d));
	ck_assert_int_eq(kg_strlcpy(d.id, id, sizeof(d.id)), 0);
	d.status = st;
	d.attestation = KG_ATT_CA;
	return d;
}

static struct kg_ca mkca(const char *name, char shachar)
{
	struct kg_ca ca;

	memset(&ca, 0, sizeof(ca));
	ck_assert_int_eq(kg_strlcpy(ca.name, name, sizeof(ca.name)), 0);
	memset(ca.sha256, shachar, KG_SHA256_HEX_LEN);
	snprintf(ca.subject, sizeof(ca.subject), "CN=%s", name);
	ca.pem = (char *)"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
	return ca;
}

/* Run a tests/lib/pg.sh function on the test cluster (the cases run in tests/unit). */
static void cluster(const char *fn)
{
	char cmd[512];
	const char *dir = getenv("KG_TEST_PG_DIR");

	ck_assert_msg(dir != NULL, "KG_TEST_PG_DIR is not set");
	snprintf(cmd, sizeof(cmd), "bash -c '. ../lib/pg.sh && %s \"$KG_TEST_PG_DIR\"'", fn);
	ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

/* ---- schema ------------------------------------------------------------------------ */

START_TEST(test_pg_schema_created)
{
	struct kg_registry *reg;
	char buf[64];

	reg = open_mode(KG_REG_READWRITE);
	ck_assert_int_eq(kg_registry_pg_schema_latest(), 6);
	ck_assert_int_eq(kg_registry_schema_version(reg), 6);
	kg_registry_close(reg);
	ck_assert_str_eq(raw_text("SELECT value FROM " KG_PG_SCHEMA ".meta WHERE name = 'schema_version'",
				  buf, sizeof(buf)), "6");
	ck_assert_int_eq(raw_long("SELECT count(*) FROM pg_tables WHERE schemaname = '" KG_PG_SCHEMA
				  "' AND tablename IN ('meta', 'cas', 'devices', 'credentials', 'changes')"), 5);
	ck_assert_int_eq(raw_long("SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
				  " JOIN pg_namespace n ON n.oid = c.relnamespace"
				  " WHERE n.nspname = '" KG_PG_SCHEMA "' AND NOT t.tgisinternal"), 4);
	/* a second open finds it current and changes nothing */
	reg = open_mode(KG_REG_READWRITE);
	ck_assert_int_eq(kg_registry_schema_version(reg), 6);
	kg_registry_close(reg);
	ck_assert_int_eq(raw_long("SELECT count(*) FROM " KG_PG_SCHEMA ".meta"), 1);
}
END_TEST

START_TEST(test_pg_readonly)
{
	struct kg_registry *reg = NULL, *rw;
	struct kg_device d = mkdev("ro-1", KG_DEV_ENABLED), got;
	char err[KG_ERRBUF];

	/* no schema: refused, and none created */
	ck_assert_int_eq(kg_registry_open(uri, KG_REG_READONLY, &reg, err, sizeof(err)), KG_E_NOTFOUND);
	ck_assert_ptr_null(reg);
	ck_assert_msg(strstr(err, "read-write once") != NULL, "%s", err);
	ck_assert_int_eq(raw_long("SELECT count(*) FROM pg_namespace WHERE nspname = '" KG_PG_SCHEMA "'"), 0);

	rw = open_mode(KG_REG_READWRITE);
	ck_assert_int_eq(kg_registry_device_add(rw, &d), 0);
	reg = open_mode(KG_REG_READONLY);
	ck_assert_int_eq(kg_registry_device_get(reg, "ro-1", &got), 0);
	d.status = KG_DEV_DISABLED;
	ck_assert_int_eq(kg_registry_device_update(rw, &d), 0);
	ck_assert_int_eq(kg_registry_device_get(reg, "ro-1", &got), 0);
	ck_assert_int_eq(got.status, KG_DEV_DISABLED);
	ck_assert_int_eq(kg_registry_device_update(reg, &d), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_device_touch(reg, "ro-1", 5, 5), KG_E_INVALID);
	ck_assert_int_eq(kg_registry_begin(reg), KG_E_INVALID);
	kg_registry_close(reg);

	/* an older schema: read-only says so and leaves it */
	raw_sql("UPDATE " KG_PG_SCHEMA ".meta SET value = '5' WHERE name = 'schema_version'");
	reg = NULL;
	ck_assert_int_eq(kg_registry_open(uri, KG_REG_READONLY, &reg, err, sizeof(err)), KG_E_INVALID);
	ck_assert_msg(strstr(err, "older than this build") != NULL, "%s", err);
	ck_assert_int_eq(raw_long("SELECT value::int FROM " KG_PG_SCHEMA ".meta"), 5);
	kg_registry_close(rw);
}
END_TEST

START_TEST(test_pg_newer_refused)
{
	struct kg_registry *reg = open_mode(KG_REG_READWRITE);
	char err[KG_ERRBUF];
	long changes;

	kg_registry_close(reg);
	raw_sql("UPDATE " KG_PG_SCHEMA ".meta SET value = '99' WHERE name = 'schema_version'");
	changes = raw_long("SELECT count(*) FROM " KG_PG_SCHEMA ".changes");
	for (int m = 0; m < 2; m++) {
		reg = NULL;
		ck_assert_int_eq(kg_registry_open(uri, m == 0 ? KG_REG_READWRITE : KG_REG_READONLY, &reg,
						  err, sizeof(err)),
				 KG_E_CORRUPT);
		ck_assert_ptr_null(reg);
		ck_assert_msg(strstr(err, "schema version 99 is newer than this build (6)") != NULL, "%s",
			      err);
	}
	ck_assert_int_eq(raw_long("SELECT value::int FROM " KG_PG_SCHEMA ".meta"), 99);
	ck_assert_int_eq(raw_long("SELECT count(*) FROM " KG_PG_SCHEMA ".meta"), 1);
	ck_assert_int_eq(raw_long("SELECT count(*) FROM " KG_PG_SCHEMA ".changes"), changes);
}
END_TEST

START_TEST(test_pg_foreign_refused)
{
	struct kg_registry *reg = NULL;
	char err[KG_ERRBUF];

	raw_sql("CREATE SCHEMA " KG_PG_SCHEMA "; CREATE TABLE " KG_PG_SCHEMA ".devices (x int)");
	ck_assert_int_eq(kg_registry_open(uri, KG_REG_READWRITE, &reg, err, sizeof(err)), KG_E_CORRUPT);
	ck_assert_ptr_null(reg);
	ck_assert_msg(strstr(err, "not a registry database") != NULL, "%s", err);
	ck_assert_int_eq(raw_long("SELECT count(*) FROM pg_tables WHERE schemaname = '" KG_PG_SCHEMA "'"), 1);
}
END_TEST

/* ---- the change feed ------------------------------------------------------------- */

/* Notifications on `c` (LISTENing) within ms milliseconds, payloads joined by ','. */
static void notifications(PGconn *c, int ms, char *out, size_t cap)
{
	struct pollfd p = { .fd = PQsocket(c), .events = POLLIN };
	PGnotify *n;

	out[0] = '\0';
	for (;;) {
		ck_assert_int_eq(PQconsumeInput(c), 1);
		while ((n = PQnotifies(c)) != NULL) {
			ck_assert_str_eq(n->relname, KG_PG_CHANNEL);
			snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "," : "", n->extra);
			PQfreemem(n);
		}
		if (poll(&p, 1, ms) <= 0)
			return;
		ms = 100;   /* the rest of a burst comes right after */
	}
}

static long last_version(void)
{
	return raw_long("SELECT coalesce(max(version), 0) FROM " KG_PG_SCHEMA ".changes");
}

/* The newest changes row as "KIND NAME", and its NOTIFY payload "KIND VERSION". */
static void expect_one_change(PGconn *l, long before, const char *kind, const char *name)
{
	char got[256], want[128], buf[256];
	long v = last_version();

	ck_assert_int_eq(v, before + 1);
	snprintf(buf, sizeof(buf), "SELECT kind || ' ' || name FROM " KG_PG_SCHEMA ".changes"
		 " WHERE version = %ld", v);
	snprintf(want, sizeof(want), "%s %s", kind, name);
	ck_assert_str_eq(raw_text(buf, got, sizeof(got)), want);
	notifications(l, 2000, got, sizeof(got));
	snprintf(want, sizeof(want), "%s %ld", kind, v);
	ck_assert_str_eq(got, want);
}

START_TEST(test_pg_change_feed)
{
	struct kg_registry *reg = open_mode(KG_REG_READWRITE);
	struct kg_device d = mkdev("feed-1", KG_DEV_ENABLED);
	struct kg_ca ca = mkca("feed-ca", 'f');
	struct kg_credential c;
	PGconn *l = raw_conn();
	char got[256];
	long v;

	raw_exec(l, "LISTEN " KG_PG_CHANNEL);
	ck_assert_int_eq(last_version(), 0);

	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	expect_one_change(l, 0, "device", "feed-1");
	/* a status update: one row, one notification */
	v = last_version();
	d.status = KG_DEV_DISABLED;
	ck_assert_int_eq(kg_registry_device_update(reg, &d), 0);
	expect_one_change(l, v, "device", "feed-1");
	/* last-seen writes and an update that changes nothing that matters: none */
	v = last_version();
	ck_assert_int_eq(kg_registry_device_touch(reg, "feed-1", 1700000000, 1800000000), 0);
	ck_assert_int_eq(kg_registry_device_update(reg, &d), 0);
	ck_assert_int_eq(last_version(), v);
	notifications(l, 300, got, sizeof(got));
	ck_assert_str_eq(got, "");
	/* a backend change does */
	strcpy(d.backend, "other");
	ck_assert_int_eq(kg_registry_device_update(reg, &d), 0);
	expect_one_change(l, v, "device", "feed-1");

	/* a credential change names its device */
	v = last_version();
	memset(&c, 0, sizeof(c));
	c.kind = KG_ATT_TOKEN;
	c.slot = KG_CRED_PRIMARY;
	memset(c.secret, 'a', KG_SHA256_HEX_LEN);
	ck_assert_int_eq(kg_registry_cred_set(reg, "feed-1", &c), 0);
	expect_one_change(l, v, "device", "feed-1");
	v = last_version();
	ck_assert_int_eq(kg_registry_cred_clear(reg, "feed-1", KG_ATT_TOKEN, KG_CRED_PRIMARY), 0);
	expect_one_change(l, v, "device", "feed-1");

	/* a CA change names the CA */
	v = last_version();
	ck_assert_int_eq(kg_registry_ca_add(reg, &ca), 0);
	expect_one_change(l, v, "ca", "feed-ca");
	v = last_version();
	ca.status = KG_CA_DISABLED;
	ck_assert_int_eq(kg_registry_ca_update(reg, &ca), 0);
	expect_one_change(l, v, "ca", "feed-ca");

	/* plain SQL from an operator's tooling counts too */
	v = last_version();
	raw_sql("UPDATE " KG_PG_SCHEMA ".devices SET status = 'suspended' WHERE id = 'feed-1'");
	expect_one_change(l, v, "device", "feed-1");

	/* a rolled-back transaction: no row, no notification */
	v = last_version();
	ck_assert_int_eq(kg_registry_begin(reg), 0);
	ck_assert_int_eq(kg_registry_device_remove(reg, "feed-1"), 0);
	ck_assert_int_eq(kg_registry_ca_remove(reg, "feed-ca"), 0);
	kg_registry_rollback(reg);
	ck_assert_int_eq(last_version(), v);
	notifications(l, 300, got, sizeof(got));
	ck_assert_str_eq(got, "");
	/* a write that opens its own transaction is refused inside a batch (it would
	 * commit the batch), and the batch is still whole */
	ck_assert_int_eq(kg_registry_begin(reg), 0);
	ck_assert_int_eq(kg_registry_device_touch(reg, "feed-1", 1700000001, 0), 0);
	ck_assert_int_eq(kg_registry_device_update(reg, &d), KG_E_INVALID);
	kg_registry_rollback(reg);
	ck_assert_int_eq(kg_registry_commit(reg), KG_E_INVALID);   /* nothing open */
	ck_assert_int_eq(raw_long("SELECT last_seen FROM " KG_PG_SCHEMA ".devices WHERE id = 'feed-1'"),
			 1700000000);
	/* the same, committed: device and CA both announced, in order */
	ck_assert_int_eq(kg_registry_begin(reg), 0);
	ck_assert_int_eq(kg_registry_device_remove(reg, "feed-1"), 0);
	ck_assert_int_eq(kg_registry_ca_remove(reg, "feed-ca"), 0);
	ck_assert_int_eq(kg_registry_commit(reg), 0);
	{
		char want[128], sql[256];
		long dv, cv;

		/* the rolled-back transaction used up versions: a gap, as the contract says */
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM " KG_PG_SCHEMA ".changes WHERE version > %ld", v);
		ck_assert_int_eq(raw_long(sql), 2);
		dv = raw_long("SELECT max(version) FROM " KG_PG_SCHEMA ".changes WHERE kind = 'device'");
		cv = raw_long("SELECT max(version) FROM " KG_PG_SCHEMA ".changes WHERE kind = 'ca'");
		ck_assert_int_gt(dv, v + 1);
		ck_assert_int_eq(cv, dv + 1);
		snprintf(want, sizeof(want), "device %ld,ca %ld", dv, cv);
		notifications(l, 2000, got, sizeof(got));
		ck_assert_str_eq(got, want);
	}
	PQfinish(l);
	kg_registry_close(reg);
}
END_TEST

/* ---- two processes ---------------------------------------------------------------- */

/* Fork n children that wait on a pipe, then all run fn at once; each child's exit status
 * is fn's result (0..255) into st[]. */
static void race(int n, int (*fn)(int i), int *st)
{
	int gate[2];
	pid_t pids[8];
	char go = 0;

	ck_assert_int_le(n, 8);
	ck_assert_int_eq(pipe(gate), 0);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			close(gate[1]);
			if (read(gate[0], &go, 1) < 0)
				_exit(250);
			_exit(fn(i));
		}
	}
	close(gate[0]);
	usleep(200 * 1000);   /* let every child reach its read */
	close(gate[1]);       /* EOF: all go at once */
	for (int i = 0; i < n; i++) {
		int ws;

		ck_assert_int_eq(waitpid(pids[i], &ws, 0), pids[i]);
		st[i] = WIFEXITED(ws) ? WEXITSTATUS(ws) : 255;
	}
}

static int open_create(int i)
{
	struct kg_registry *reg = NULL;
	char err[KG_ERRBUF];
	int rc = kg_registry_open(uri, KG_REG_READWRITE, &reg, err, sizeof(err));

	(void)i;
	if (rc != 0) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	rc = kg_registry_schema_version(reg) == 6 ? 0 : 2;
	kg_registry_close(reg);
	return rc;
}

/* Appliances starting at once on an empty database: one creates, the others wait on
 * the advisory lock and find the schema current. Without the lock they collide on the
 * catalog (duplicate schema / relation). */
START_TEST(test_pg_concurrent_create)
{
	int st[6];

	for (int round = 0; round < 3; round++) {
		raw_sql("DROP SCHEMA IF EXISTS " KG_PG_SCHEMA " CASCADE");
		race(6, open_create, st);
		for (int i = 0; i < 6; i++)
			ck_assert_msg(st[i] == 0, "round %d: opener %d: %d", round, i, st[i]);
		ck_assert_int_eq(raw_long("SELECT count(*) FROM " KG_PG_SCHEMA ".meta"), 1);
	}
}
END_TEST

static int enrol_same(int i)
{
	struct kg_registry *reg = NULL;
	struct kg_device d = mkdev("twice", KG_DEV_ENABLED);
	char err[KG_ERRBUF];
	int rc;

	if (kg_registry_open(uri, KG_REG_READWRITE, &reg, err, sizeof(err)) != 0)
		return 100;
	memset(d.thumb_primary, i < 3 ? 'a' : 'b', KG_SHA256_HEX_LEN);
	d.attestation = KG_ATT_THUMBPRINT;
	rc = kg_registry_device_add(reg, &d);
	kg_registry_close(reg);
	return rc == 0 ? 0 : rc == KG_E_EXISTS ? 1 : 99;
}

static int pin_same(int i)
{
	struct kg_registry *reg = NULL;
	struct kg_device d;
	char id[32], err[KG_ERRBUF];
	int rc;

	snprintf(id, sizeof(id), "pin-%d", i);
	d = mkdev(id, KG_DEV_ENABLED);
	d.attestation = KG_ATT_THUMBPRINT;
	memset(d.thumb_primary, 'c', KG_SHA256_HEX_LEN);
	if (kg_registry_open(uri, KG_REG_READWRITE, &reg, err, sizeof(err)) != 0)
		return 100;
	rc = kg_registry_device_add(reg, &d);
	kg_registry_close(reg);
	return rc == 0 ? 0 : rc == KG_E_EXISTS ? 1 : 99;
}

/* Auto-enrolment of one device from several appliances at once creates it once; one
 * leaf pinned by several new devices at once goes to one (the thumbprint check runs
 * under the write lock: no unique index covers primary against secondary). */
START_TEST(test_pg_concurrent_enrol)
{
	struct kg_registry *reg = open_mode(KG_REG_READWRITE);
	int st[6], ok = 0, exists = 0;

	kg_registry_close(reg);
	race(6, enrol_same, st);
	for (int i = 0; i < 6; i++) {
		ok += st[i] == 0;
		exists += st[i] == 1;
	}
	ck_assert_msg(ok == 1 && exists == 5, "added %d, exists %d", ok, exists);
	ck_assert_int_eq(raw_long("SELECT count(*) FROM " KG_PG_SCHEMA ".devices WHERE id = 'twice'"), 1);

	ok = exists = 0;
	race(6, pin_same, st);
	for (int i = 0; i < 6; i++) {
		ok += st[i] == 0;
		exists += st[i] == 1;
	}
	ck_assert_msg(ok == 1 && exists == 5, "pinned %d, exists %d", ok, exists);
	ck_assert_int_eq(raw_long("SELECT count(*) FROM " KG_PG_SCHEMA ".devices WHERE thumb_primary = "
				  "repeat('c', 64)"), 1);
}
END_TEST

/* ---- busy, outages, passwords ------------------------------------------------------ */

/* Another session holds the row past the lock timeout: KG_E_BUSY, counted once, and the
 * write did not happen. */
START_TEST(test_pg_busy)
{
	struct kg_registry *reg = open_mode(KG_REG_READWRITE);
	struct kg_device d = mkdev("held", KG_DEV_ENABLED), got;
	PGconn *holder = raw_conn();
	time_t t0;

	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	raw_exec(holder, "BEGIN");
	raw_exec(holder, "SELECT 1 FROM " KG_PG_SCHEMA ".devices WHERE id = 'held' FOR UPDATE");
	t0 = time(NULL);
	ck_assert_uint_eq(atomic_load(&reg->busy_waits), 0);
	ck_assert_int_eq(kg_registry_device_touch(reg, "held", 42, 0), KG_E_BUSY);
	ck_assert_int_ge(time(NULL) - t0, 4);   /* it waited its 5 s */
	ck_assert_uint_eq(atomic_load(&reg->busy_waits), 1);
	ck_assert_msg(strstr(kg_registry_strerror(reg, KG_E_BUSY), "lock") != NULL, "%s",
		      kg_registry_strerror(reg, KG_E_BUSY));
	raw_exec(holder, "ROLLBACK");
	PQfinish(holder);
	/* the handle goes on working, and nothing was written */
	ck_assert_int_eq(kg_registry_device_get(reg, "held", &got), 0);
	ck_assert_int_eq(got.last_seen, 0);
	ck_assert_int_eq(kg_registry_device_touch(reg, "held", 43, 0), 0);
	kg_registry_close(reg);
}
END_TEST

/* stderr into a file for the rest of the test (logs must not carry the password). */
static int capture_stderr(const char *path)
{
	/* CLOEXEC: the servers kg_pg_restart starts must not inherit our stderr. */
	int saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
	close(fd);
	return saved;
}

static void restore_stderr(int saved)
{
	ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
	close(saved);
}

/* One handle across database outages: a stop and a start between two calls costs
 * nothing (the dead connection is noticed and replaced before the call); a call while
 * the server is down is KG_E_IO; a crash (immediate stop) is survived the same way. No
 * message and no log line carries the password. */
START_TEST(test_pg_restart)
{
	struct kg_registry *reg = open_mode(KG_REG_READWRITE);
	struct kg_device d = mkdev("survivor", KG_DEV_ENABLED), got;
	char tmp[256], logpath[512], *log;
	size_t len;
	int saved;

	kg_test_tmpdir(tmp, sizeof(tmp));
	snprintf(logpath, sizeof(logpath), "%s/stderr", tmp);
	ck_assert_int_eq(kg_registry_device_add(reg, &d), 0);
	saved = capture_stderr(logpath);

	cluster("kg_pg_stop");
	cluster("kg_pg_restart");
	ck_assert_int_eq(kg_registry_device_get(reg, "survivor", &got), 0);
	d.status = KG_DEV_DISABLED;
	ck_assert_int_eq(kg_registry_device_update(reg, &d), 0);

	cluster("kg_pg_stop");
	ck_assert_int_eq(kg_registry_device_get(reg, "survivor", &got), KG_E_IO);
	ck_assert_msg(strstr(reg->errmsg, PW) == NULL, "password in \"%s\"", reg->errmsg);
	ck_assert_int_eq(kg_registry_device_touch(reg, "survivor", 7, 0), KG_E_IO);
	cluster("kg_pg_restart");
	ck_assert_int_eq(kg_registry_device_get(reg, "survivor", &got), 0);
	ck_assert_int_eq(got.status, KG_DEV_DISABLED);

	cluster("kg_pg_kill");
	cluster("kg_pg_restart");
	ck_assert_int_eq(kg_registry_device_touch(reg, "survivor", 8, 0), 0);
	ck_assert_int_eq(kg_registry_device_get(reg, "survivor", &got), 0);
	ck_assert_int_eq(got.last_seen, 8);
	/* a transaction cut by the outage fails as I/O; the handle recovers after it */
	ck_assert_int_eq(kg_registry_begin(reg), 0);
	ck_assert_int_eq(kg_registry_device_touch(reg, "survivor", 9, 0), 0);
	cluster("kg_pg_kill");
	cluster("kg_pg_restart");
	ck_assert_int_eq(kg_registry_device_touch(reg, "survivor", 10, 0), KG_E_IO);
	kg_registry_rollback(reg);
	ck_assert_int_eq(kg_registry_device_get(reg, "survivor", &got), 0);
	ck_assert_int_eq(got.last_seen, 8);
	kg_registry_close(reg);

	restore_stderr(saved);
	{
		FILE *f = fopen(logpath, "r");

		ck_assert_ptr_nonnull(f);
		log = calloc(1, 65536);
		ck_assert_ptr_nonnull(log);
		len = fread(log, 1, 65535, f);
		fclose(f);
	}
	ck_assert_msg(len > 0 && strstr(log, "registry") != NULL, "the outage was not logged");
	ck_assert_msg(strstr(log, PW) == NULL, "password in the log: %s", log);
	ck_assert_msg(strstr(log, "password=***") != NULL, "log names no database: %s", log);
	free(log);
	kg_test_rmdir(tmp);
}
END_TEST

/* A server that answers and refuses: its message reaches the caller, the password not. */
START_TEST(test_pg_password_not_leaked)
{
	struct kg_registry *reg = NULL;
	char err[KG_ERRBUF], bad[1200];

	snprintf(bad, sizeof(bad), "%s&dbname=no_such_db", uri);
	ck_assert_int_eq(kg_registry_open(bad, KG_REG_READWRITE, &reg, err, sizeof(err)), KG_E_IO);
	ck_assert_ptr_null(reg);
	ck_assert_msg(strstr(err, "does not exist") != NULL, "%s", err);
	ck_assert_msg(strstr(err, PW) == NULL, "password in \"%s\"", err);
}
END_TEST

void kg_registry_pg_cases(Suite *s)
{
	TCase *tc = tcase_create("pg_store");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_pg_schema_created);
	tcase_add_test(tc, test_pg_readonly);
	tcase_add_test(tc, test_pg_newer_refused);
	tcase_add_test(tc, test_pg_foreign_refused);
	tcase_add_test(tc, test_pg_change_feed);
	tcase_add_test(tc, test_pg_busy);
	tcase_add_test(tc, test_pg_restart);
	tcase_add_test(tc, test_pg_password_not_leaked);
	suite_add_tcase(s, tc);

	/* Several processes at once: their own case, so mk/pg.mk reports them apart. */
	tc = tcase_create("pg_race");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_pg_concurrent_create);
	tcase_add_test(tc, test_pg_concurrent_enrol);
	suite_add_tcase(s, tc);
}
