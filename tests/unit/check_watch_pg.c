/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_watch_pg.c - the PostgreSQL change watcher (registry/watch_pg.h) against a
 * REAL cluster: tests/unit/run-watch-pg.sh starts one with tests/lib/pg.sh and sets
 * KG_TEST_PG (its URI, superuser; only then does run.c register this suite) and
 * KG_TEST_PG_DIR (its directory, for kg_pg_kill / kg_pg_restart from ../lib/pg.sh),
 * the store's suites' convention. Each test recreates the contract's
 * ktlsgate.changes table and, in place of the store's tables, one stand-in table whose
 * trigger appends ('device', id) and notifies as the store's triggers do. The watcher
 * logs in as its own role, kg_watcher, so a test can keep it out (NOLOGIN) while it
 * changes things, which makes "changed while disconnected" deterministic.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ktlsgate/clock.h"
#include "ops/metrics.h"
#include "registry/watch_pg.h"
#include "testlib.h"

Suite *kg_suite_watch_pg(void);

#define MAX_EVENTS 64
#define WAIT_MS 8000     /* generous: 2 shared cores; a reconnect backs off up to 5 s */

struct ev {
	enum kg_watch_kind kind;
	char name[64];
};

/* What the callback saw (it runs on the watcher thread). */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ev ev[MAX_EVENTS];
	int n;
} seen = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, { { 0, "" } }, 0 };

static char super_uri[512], watch_uri[512], pg_port[16];

static void on_change(void *arg, enum kg_watch_kind kind, const char *name, int64_t at)
{
	(void)arg;
	(void)at;
	pthread_mutex_lock(&seen.lock);
	if (seen.n < MAX_EVENTS) {
		seen.ev[seen.n].kind = kind;
		snprintf(seen.ev[seen.n].name, sizeof(seen.ev[0].name), "%s", name);
		seen.n++;
	}
	pthread_cond_broadcast(&seen.cond);
	pthread_mutex_unlock(&seen.lock);
}

/* Wait until at least n events were seen; returns how many there are. */
static int wait_events(int n, int ms)
{
	struct timespec until;
	int have;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&seen.lock);
	while (seen.n < n && pthread_cond_timedwait(&seen.cond, &seen.lock, &until) == 0)
		;
	have = seen.n;
	pthread_mutex_unlock(&seen.lock);
	return have;
}

static void expect(int i, enum kg_watch_kind kind, const char *name)
{
	pthread_mutex_lock(&seen.lock);
	ck_assert_msg(i < seen.n, "event %d not seen (%d seen)", i, seen.n);
	ck_assert_int_eq(seen.ev[i].kind, kind);
	ck_assert_str_eq(seen.ev[i].name, name);
	pthread_mutex_unlock(&seen.lock);
}

static PGconn *db(void)
{
	PGconn *c = PQconnectdb(super_uri);

	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect %s: %s", super_uri, PQerrorMessage(c));
	return c;
}

static void sql(PGconn *c, const char *q)
{
	PGresult *r = PQexec(c, q);
	ExecStatusType st = PQresultStatus(r);

	ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", q,
		      PQresultErrorMessage(r));
	PQclear(r);
}

static void sql1(const char *q)
{
	PGconn *c = db();

	sql(c, q);
	PQfinish(c);
}

static long long sql_int(const char *q)
{
	PGconn *c = db();
	PGresult *r = PQexec(c, q);
	long long v;

	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", q,
		      PQresultErrorMessage(r));
	v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c);
	return v;
}

/* The contract's feed table, a stand-in for the store's devices and its trigger. */
static const char fixture[] =
	"SET client_min_messages = warning;"
	"DROP SCHEMA IF EXISTS ktlsgate CASCADE;"
	"CREATE SCHEMA ktlsgate;"
	"CREATE TABLE ktlsgate.changes (version BIGSERIAL PRIMARY KEY,"
	" kind TEXT NOT NULL CHECK (kind IN ('device', 'ca')), name TEXT NOT NULL,"
	" at BIGINT NOT NULL);"
	"CREATE TABLE ktlsgate.standin (id TEXT PRIMARY KEY, status TEXT);"
	"CREATE FUNCTION ktlsgate.standin_changed() RETURNS trigger LANGUAGE plpgsql AS $$"
	" DECLARE v BIGINT; n TEXT;"
	" BEGIN"
	"  n := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;"
	"  INSERT INTO ktlsgate.changes (kind, name, at)"
	"   VALUES ('device', n, extract(epoch from now())::bigint) RETURNING version INTO v;"
	"  PERFORM pg_notify('ktlsgate_changes', 'device ' || v);"
	"  RETURN NULL;"
	" END $$;"
	"CREATE TRIGGER standin_changed AFTER INSERT OR UPDATE OR DELETE ON ktlsgate.standin"
	" FOR EACH ROW EXECUTE FUNCTION ktlsgate.standin_changed();"
	"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kg_watcher')"
	" THEN CREATE ROLE kg_watcher LOGIN; END IF; END $$;"
	"ALTER ROLE kg_watcher LOGIN;"
	"GRANT USAGE ON SCHEMA ktlsgate TO kg_watcher;"
	"GRANT SELECT, DELETE ON ktlsgate.changes TO kg_watcher;";

static void setup(void)
{
	const char *uri = getenv("KG_TEST_PG");
	PQconninfoOption *opts, *o;
	const char *host = NULL, *port = NULL;
	char *err = NULL;

	ck_assert_msg(uri && getenv("KG_TEST_PG_DIR"),
		      "KG_TEST_PG and KG_TEST_PG_DIR must be set (run-watch-pg.sh)");
	snprintf(super_uri, sizeof(super_uri), "%s", uri);
	/* The watcher's URI: the same server, its own role. */
	opts = PQconninfoParse(uri, &err);
	ck_assert_msg(opts != NULL, "KG_TEST_PG: %s", err ? err : "out of memory");
	for (o = opts; o->keyword; o++) {
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
	}
	snprintf(pg_port, sizeof(pg_port), "%s", port ? port : "5432");
	snprintf(watch_uri, sizeof(watch_uri), "postgresql:///ktlsgate?host=%s&port=%s&user=kg_watcher",
		 host ? host : "/var/run/postgresql", pg_port);
	PQconninfoFree(opts);
	sql1(fixture);
	pthread_mutex_lock(&seen.lock);
	seen.n = 0;
	pthread_mutex_unlock(&seen.lock);
}

static struct kg_watch_pg *start(unsigned gap_hold_ms, unsigned retention_s, unsigned prune_every_ms)
{
	struct kg_watch_pg_opts o = {
		.uri = watch_uri, .cb = on_change, .gap_hold_ms = gap_hold_ms,
		.retention_s = retention_s, .prune_every_ms = prune_every_ms,
	};
	char err[256];
	struct kg_watch_pg *w = kg_watch_pg_start(&o, err, sizeof(err));

	ck_assert_msg(w != NULL, "%s", err);
	return w;
}

static bool wait_connected(struct kg_watch_pg *w, bool want, int ms)
{
	uint64_t until = kg_now_ms() + (uint64_t)ms;
	struct kg_watch_pg_stats st;

	for (;;) {
		kg_watch_pg_stats(w, &st);
		if (st.connected == want)
			return true;
		if (kg_now_ms() > until)
			return false;
		usleep(20000);
	}
}

/* kg_pg_kill / kg_pg_restart on the suite's cluster (the suite runs in tests/unit). */
static void pg_ctl(const char *fn)
{
	char cmd[1024];

	/* kg_pg_restart starts it on KG_PG_PORT: the port of KG_TEST_PG */
	snprintf(cmd, sizeof(cmd), "KG_PG_PORT=%s bash -c '. ../lib/pg.sh && %s \"$KG_TEST_PG_DIR\"'",
		 pg_port, fn);
	ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

/* Keep the watcher out, and cut its session if it has one. */
static void watcher_out(void)
{
	sql1("ALTER ROLE kg_watcher NOLOGIN;"
	     "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	     " WHERE application_name = 'ktlsgated-watch';");
}

START_TEST(test_order)
{
	struct kg_watch_pg *w;
	struct kg_watch_pg_stats st;

	sql1("INSERT INTO ktlsgate.standin VALUES ('before-start', 'enabled')");
	w = start(0, 0, 0);
	ck_assert(wait_connected(w, true, WAIT_MS));
	sql1("INSERT INTO ktlsgate.standin VALUES ('dev-a', 'enabled')");
	sql1("UPDATE ktlsgate.standin SET status = 'disabled' WHERE id = 'dev-b'");   /* none */
	sql1("INSERT INTO ktlsgate.standin VALUES ('dev-b', 'enabled')");
	sql1("INSERT INTO ktlsgate.changes (kind, name, at) VALUES ('ca', 'fleet-ca', 1);"
	     "SELECT pg_notify('ktlsgate_changes', 'ca 0')");
	sql1("DELETE FROM ktlsgate.standin WHERE id = 'dev-a'");
	ck_assert_int_eq(wait_events(4, WAIT_MS), 4);
	usleep(300000);   /* nothing more comes: not the change before the start */
	ck_assert_int_eq(wait_events(5, 0), 4);
	expect(0, KG_WATCH_DEVICE, "dev-a");
	expect(1, KG_WATCH_DEVICE, "dev-b");
	expect(2, KG_WATCH_CA, "fleet-ca");
	expect(3, KG_WATCH_DEVICE, "dev-a");
	kg_watch_pg_stats(w, &st);
	ck_assert_int_eq(st.changes_device, 3);
	ck_assert_int_eq(st.changes_ca, 1);
	ck_assert_int_eq(st.reconnects, 0);
	ck_assert_int_eq(st.resyncs, 0);
	ck_assert_int_eq(st.last_version, sql_int("SELECT max(version) FROM ktlsgate.changes"));
	ck_assert(st.lag_seconds >= 0);
	kg_watch_pg_stop(w);
}
END_TEST

/* Two transactions: the lower version commits second and is still delivered. */
START_TEST(test_gap_filled_late)
{
	struct kg_watch_pg *w = start(0, 0, 0);
	PGconn *slow = db();

	ck_assert(wait_connected(w, true, WAIT_MS));
	sql(slow, "BEGIN");
	sql(slow, "INSERT INTO ktlsgate.standin VALUES ('low', 'enabled')");   /* takes N */
	sql1("INSERT INTO ktlsgate.standin VALUES ('high', 'enabled')");     /* N + 1 */
	ck_assert_int_eq(wait_events(1, WAIT_MS), 1);
	expect(0, KG_WATCH_DEVICE, "high");
	usleep(1500000);   /* past one gap re-read with nothing there yet */
	ck_assert_int_eq(wait_events(2, 0), 1);
	sql(slow, "COMMIT");
	ck_assert_int_eq(wait_events(2, WAIT_MS), 2);
	expect(1, KG_WATCH_DEVICE, "low");
	/* A version rolled back never comes, and does not stall what follows. */
	sql(slow, "BEGIN");
	sql(slow, "INSERT INTO ktlsgate.standin VALUES ('rolled-back', 'enabled')");
	sql(slow, "ROLLBACK");
	sql1("INSERT INTO ktlsgate.standin VALUES ('after', 'enabled')");
	ck_assert_int_eq(wait_events(3, WAIT_MS), 3);
	expect(2, KG_WATCH_DEVICE, "after");
	PQfinish(slow);
	kg_watch_pg_stop(w);
}
END_TEST

/* The cluster killed; a change made after its restart while the watcher is still out
 * is delivered once it is back in. */
START_TEST(test_restart)
{
	struct kg_watch_pg *w = start(0, 0, 0);
	struct kg_watch_pg_stats st;

	ck_assert(wait_connected(w, true, WAIT_MS));
	sql1("INSERT INTO ktlsgate.standin VALUES ('before-kill', 'enabled')");
	ck_assert_int_eq(wait_events(1, WAIT_MS), 1);
	sql1("ALTER ROLE kg_watcher NOLOGIN");   /* its session stays until the kill */
	pg_ctl("kg_pg_kill");
	ck_assert(wait_connected(w, false, WAIT_MS));
	pg_ctl("kg_pg_restart");
	sql1("UPDATE ktlsgate.standin SET status = 'disabled' WHERE id = 'before-kill'");
	kg_watch_pg_stats(w, &st);
	ck_assert(!st.connected);
	ck_assert_int_eq(st.reconnects, 0);
	ck_assert_int_eq(wait_events(2, 0), 1);
	sql1("ALTER ROLE kg_watcher LOGIN");
	ck_assert_int_eq(wait_events(2, WAIT_MS), 2);
	expect(1, KG_WATCH_DEVICE, "before-kill");
	ck_assert(wait_connected(w, true, WAIT_MS));
	kg_watch_pg_stats(w, &st);
	ck_assert_int_eq(st.reconnects, 1);
	ck_assert_int_eq(st.resyncs, 0);
	kg_watch_pg_stop(w);
}
END_TEST

/* Changes pruned while the watcher was away: it says "revalidate everything". */
START_TEST(test_resync_when_pruned)
{
	struct kg_watch_pg *w = start(0, 0, 0);
	struct kg_watch_pg_stats st;

	ck_assert(wait_connected(w, true, WAIT_MS));
	watcher_out();
	ck_assert(wait_connected(w, false, WAIT_MS));
	sql1("INSERT INTO ktlsgate.standin VALUES ('x', 'enabled');"
	     "INSERT INTO ktlsgate.standin VALUES ('y', 'enabled');"
	     "INSERT INTO ktlsgate.standin VALUES ('z', 'enabled');");
	sql1("DELETE FROM ktlsgate.changes WHERE version < (SELECT max(version) FROM ktlsgate.changes)");
	sql1("ALTER ROLE kg_watcher LOGIN");
	ck_assert_int_eq(wait_events(2, WAIT_MS), 2);
	expect(0, KG_WATCH_RESYNC, "");
	expect(1, KG_WATCH_DEVICE, "z");
	kg_watch_pg_stats(w, &st);
	ck_assert_int_eq(st.resyncs, 1);
	ck_assert_int_eq(st.reconnects, 1);
	kg_watch_pg_stop(w);
}
END_TEST

/* Rows older than the retention go; the newest row and recent rows stay. */
START_TEST(test_prune)
{
	struct kg_watch_pg *w;
	struct kg_watch_pg_stats st;
	uint64_t until;

	sql1("INSERT INTO ktlsgate.changes (kind, name, at) SELECT 'device', 'old' || g,"
	     " extract(epoch from now())::bigint - 7200 FROM generate_series(1, 5) g;"
	     "INSERT INTO ktlsgate.changes (kind, name, at)"
	     " VALUES ('device', 'recent', extract(epoch from now())::bigint);"
	     "INSERT INTO ktlsgate.changes (kind, name, at)"
	     " VALUES ('device', 'old-newest', extract(epoch from now())::bigint - 7200);");
	w = start(0, 3600, 200);
	until = kg_now_ms() + WAIT_MS;
	do {
		usleep(50000);
		kg_watch_pg_stats(w, &st);
	} while (st.prunes == 0 && kg_now_ms() < until);
	ck_assert_int_ge(st.prunes, 1);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM ktlsgate.changes"), 2);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM ktlsgate.changes WHERE name IN"
				 " ('recent', 'old-newest')"), 2);
	kg_watch_pg_stop(w);
}
END_TEST

START_TEST(test_stop_connected)
{
	struct kg_watch_pg *w = start(0, 0, 0);
	uint64_t t0;

	ck_assert(wait_connected(w, true, WAIT_MS));
	t0 = kg_now_ms();
	kg_watch_pg_stop(w);
	ck_assert_uint_lt(kg_now_ms() - t0, 1000);
}
END_TEST

/* Stopped while it backs off (logins refused), and while a server that accepted the
 * TCP connection never answers the startup packet. */
START_TEST(test_stop_disconnected)
{
	struct kg_watch_pg *w;
	struct kg_watch_pg_opts o = { .cb = on_change };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	char uri[128], err[256];
	uint64_t t0;
	int fd;

	sql1("ALTER ROLE kg_watcher NOLOGIN");
	w = start(0, 0, 0);
	usleep(700000);   /* a few attempts and a backoff */
	ck_assert(wait_connected(w, false, 0));
	t0 = kg_now_ms();
	kg_watch_pg_stop(w);
	ck_assert_uint_lt(kg_now_ms() - t0, 1000);

	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert(fd >= 0);
	ck_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	ck_assert(listen(fd, 4) == 0);   /* the kernel completes the handshake; no one reads */
	ck_assert(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	snprintf(uri, sizeof(uri), "postgresql://kg_watcher@127.0.0.1:%u/ktlsgate", ntohs(sa.sin_port));
	o.uri = uri;
	w = kg_watch_pg_start(&o, err, sizeof(err));
	ck_assert_msg(w != NULL, "%s", err);
	usleep(500000);   /* inside the connect wait */
	ck_assert(wait_connected(w, false, 0));
	t0 = kg_now_ms();
	kg_watch_pg_stop(w);
	ck_assert_uint_lt(kg_now_ms() - t0, 1000);
	close(fd);
}
END_TEST

/* The watcher's metrics in the daemon's /metrics text. */
START_TEST(test_metrics)
{
	struct kg_metrics m;
	struct kg_metrics *per[1] = { &m };
	struct kg_metrics_info info = { .workers = 1 };
	size_t len;
	char *text;

	memset(&m, 0, sizeof(m));
	text = kg_metrics_render(per, 1, &info, &len);
	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_null(strstr(text, "ktlsgate_registry_watch"));   /* file registry: none */
	free(text);
	info.regwatch = (struct kg_metrics_regwatch){
		.enabled = true, .connected = true, .changes_device = 7, .changes_ca = 2,
		.reconnects = 3, .resyncs = 1, .lag_seconds = 4,
	};
	text = kg_metrics_render(per, 1, &info, &len);
	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_nonnull(strstr(text, "\nktlsgate_registry_watch_connected 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nktlsgate_registry_watch_changes_total{kind=\"device\"} 7\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nktlsgate_registry_watch_changes_total{kind=\"ca\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nktlsgate_registry_watch_reconnects_total 3\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nktlsgate_registry_watch_resyncs_total 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nktlsgate_registry_watch_lag_seconds 4\n"));
	free(text);
}
END_TEST

Suite *kg_suite_watch_pg(void)
{
	Suite *s = suite_create("watch_pg");
	TCase *tc = tcase_create("watch_pg");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_order);
	tcase_add_test(tc, test_gap_filled_late);
	tcase_add_test(tc, test_restart);
	tcase_add_test(tc, test_resync_when_pruned);
	tcase_add_test(tc, test_prune);
	tcase_add_test(tc, test_stop_connected);
	tcase_add_test(tc, test_stop_disconnected);
	tcase_add_test(tc, test_metrics);
	suite_add_tcase(s, tc);
	return s;
}
