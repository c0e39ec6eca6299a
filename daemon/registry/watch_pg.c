/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * watch_pg.c - the change watcher of a shared PostgreSQL registry (contract in
 * watch_pg.h). One thread, one libpq connection used asynchronously: every wait
 * (connect, query, notification, backoff) is a poll() on the connection's socket and
 * the stop eventfd, so a stop never waits on the database, and a server that stops
 * answering costs at most QUERY_TIMEOUT_MS before the connection is dropped and made
 * again.
 *
 * Versions: `last` is the highest version handed on. A row above it that is not
 * last + 1 leaves a gap (last + 1 .. v - 1): BIGSERIAL values are taken at insert, so
 * a transaction that inserted earlier may commit later with a lower version. Gaps
 * are kept as ranges for gap_hold_ms and read again on every notification (and once
 * a second while any is open); a version found inside one is delivered and cut out.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ktlsgate/clock.h"
#include "ops/log.h"
#include "registry/registry.h"
#include "registry/watch_pg.h"

#define CONNECT_TIMEOUT_MS 10000
#define QUERY_TIMEOUT_MS 10000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define GAP_RECHECK_MS 1000     /* an open gap is read again at least this often */
#define GAPS_MAX 256            /* more: the two oldest ranges merge (a wider re-read) */
#define PAGE_ROWS 1000          /* rows per read; more pages until a short one */
#define STR_(x) #x
#define STR(x) STR_(x)

#define Q_LISTEN "LISTEN " KG_PG_CHANNEL
#define Q_BOUNDS "SELECT coalesce(min(version), 0), coalesce(max(version), 0) FROM " \
		 KG_PG_SCHEMA ".changes"
#define Q_READ "SELECT version, kind, name, at FROM " KG_PG_SCHEMA ".changes " \
	       "WHERE version > $1 ORDER BY version LIMIT " STR(PAGE_ROWS)
/* The newest row stays: a reconnect compares its last version with min(version), and
 * an empty table would hide that everything after it was pruned. */
#define Q_PRUNE "DELETE FROM " KG_PG_SCHEMA ".changes WHERE at < " \
		"extract(epoch from now())::bigint - $1 AND version < " \
		"(SELECT max(version) FROM " KG_PG_SCHEMA ".changes)"

struct gap {
	int64_t lo, hi;         /* versions lo..hi not seen yet */
	uint64_t until_ms;      /* read again until then */
};

struct kg_watch_pg {
	char *uri;
	kg_watch_pg_cb cb;
	kg_watch_pg_state_cb state_cb;
	void *arg;
	unsigned gap_hold_ms, retention_s, prune_every_ms;
	int wake_fd;            /* eventfd: readable once stop is asked, stays so */
	pthread_t thread;
	PGconn *conn;           /* the thread's */
	/* thread-only state */
	bool started;           /* `last` holds a real starting point */
	bool served;            /* a connection got as far as listening once */
	int64_t last;
	struct gap gaps[GAPS_MAX];
	size_t n_gaps;
	uint64_t next_prune_ms;
	uint64_t next_gap_read_ms;  /* open gaps are read again by then */
	bool prune_warned;
	bool reported_up;       /* what state_cb was last told (starts true) */
	/* stats, read by any thread */
	atomic_bool connected;
	_Atomic uint64_t n_device, n_ca, reconnects, resyncs, prunes;
	_Atomic int64_t last_version, lag_seconds;
};

enum wait_res { W_READY, W_TIMEOUT, W_STOP, W_ERROR };

bool kg_watch_pg_uri(const char *registry)
{
	return registry && (strncmp(registry, "postgresql://", 13) == 0 ||
			    strncmp(registry, "postgres://", 11) == 0);
}

/* Wait until fd is ready for `events`, the stop fd fires, or timeout_ms passes. */
static enum wait_res wait_fd(struct kg_watch_pg *w, int fd, short events, int timeout_ms)
{
	struct pollfd p[2] = {
		{ .fd = w->wake_fd, .events = POLLIN },
		{ .fd = fd, .events = events },
	};
	int n;

	do
		n = poll(p, fd >= 0 ? 2 : 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return W_ERROR;
	if (p[0].revents)
		return W_STOP;
	if (n == 0)
		return W_TIMEOUT;
	return W_READY;
}

static int remaining(uint64_t deadline)
{
	uint64_t now = kg_now_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

/* What the server says outside a query (a NOTICE, or "FATAL: terminating connection
 * due to administrator command" when it shuts down) reaches libpq's notice processor,
 * whose default prints it on stderr, past the daemon's log: into the log instead, at
 * debug (the lost connection itself is logged where it is seen). */
static void log_notice(void *arg, const char *msg)
{
	size_t n = strlen(msg);

	(void)arg;
	while (n > 0 && msg[n - 1] == '\n')
		n--;
	kg_log_debug("registry watch: server says: %.*s", (int)n, msg);
}

/* Connect without blocking (PQconnectPoll): a stop interrupts it. */
static enum wait_res connect_db(struct kg_watch_pg *w, char *err, size_t errlen)
{
	uint64_t deadline = kg_now_ms() + CONNECT_TIMEOUT_MS;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	const char *keys[] = { "dbname", "application_name", NULL };
	const char *vals[] = { w->uri, "ktlsgated-watch", NULL };

	w->conn = PQconnectStartParams(keys, vals, 1);
	if (w->conn == NULL) {
		snprintf(err, errlen, "out of memory");
		return W_ERROR;
	}
	(void)PQsetNoticeProcessor(w->conn, log_notice, NULL);
	if (PQstatus(w->conn) == CONNECTION_BAD)
		goto fail;
	for (;;) {
		enum wait_res r;

		if (st == PGRES_POLLING_OK)
			return W_READY;
		if (st == PGRES_POLLING_FAILED)
			goto fail;
		r = wait_fd(w, PQsocket(w->conn), st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
			    remaining(deadline));
		if (r == W_STOP)
			return W_STOP;
		if (r == W_TIMEOUT) {
			snprintf(err, errlen, "no answer within %d ms", CONNECT_TIMEOUT_MS);
			return W_ERROR;
		}
		st = PQconnectPoll(w->conn);
	}
fail:
	snprintf(err, errlen, "%s", PQerrorMessage(w->conn));
	err[strcspn(err, "\n")] = '\0';
	return W_ERROR;
}

/* One statement, asynchronously. *res: the result (caller PQclear()s) on W_READY. */
static enum wait_res query(struct kg_watch_pg *w, const char *sql, int n, const char *const *params,
			   PGresult **res, char *err, size_t errlen)
{
	uint64_t deadline = kg_now_ms() + QUERY_TIMEOUT_MS;
	PGresult *r, *first = NULL;
	ExecStatusType st;

	*res = NULL;
	if (!PQsendQueryParams(w->conn, sql, n, NULL, params, NULL, NULL, 0))
		goto fail;
	while (PQisBusy(w->conn)) {
		enum wait_res wr = wait_fd(w, PQsocket(w->conn), POLLIN, remaining(deadline));

		if (wr == W_STOP)
			return W_STOP;
		if (wr == W_TIMEOUT) {
			snprintf(err, errlen, "no answer within %d ms", QUERY_TIMEOUT_MS);
			return W_ERROR;
		}
		if (wr == W_ERROR || !PQconsumeInput(w->conn))
			goto fail;
	}
	while ((r = PQgetResult(w->conn)) != NULL) {
		if (first == NULL)
			first = r;
		else
			PQclear(r);
	}
	if (first == NULL)
		goto fail;
	st = PQresultStatus(first);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(first));
		err[strcspn(err, "\n")] = '\0';
		PQclear(first);
		return W_ERROR;
	}
	*res = first;
	return W_READY;
fail:
	snprintf(err, errlen, "%s", PQerrorMessage(w->conn));
	err[strcspn(err, "\n")] = '\0';
	return W_ERROR;
}

/* Drop what libpq has queued: true if any notification was there. */
static bool drain_notifies(struct kg_watch_pg *w)
{
	PGnotify *n;
	bool any = false;

	while ((n = PQnotifies(w->conn)) != NULL) {
		any = true;
		PQfreemem(n);
	}
	return any;
}

static void deliver(struct kg_watch_pg *w, int64_t version, const char *kind, const char *name,
		    int64_t at)
{
	enum kg_watch_kind k;

	if (strcmp(kind, "device") == 0) {
		k = KG_WATCH_DEVICE;
		atomic_fetch_add(&w->n_device, 1);
	} else if (strcmp(kind, "ca") == 0) {
		k = KG_WATCH_CA;
		atomic_fetch_add(&w->n_ca, 1);
	} else {
		kg_log_warnx("registry watch: change %" PRId64 " has unknown kind '%s': skipped",
			     version, kind);
		return;
	}
	{
		/* `at` is extract(epoch from now())::bigint, rounded, not truncated: a change
		 * this second may look one second ahead of time(). */
		int64_t lag = (int64_t)time(NULL) - at;

		atomic_store(&w->lag_seconds, lag < 0 ? 0 : lag);
	}
	w->cb(w->arg, k, name, at);
}

static void resync(struct kg_watch_pg *w, const char *why)
{
	kg_log_warnx("registry watch: %s: revalidating every session", why);
	atomic_fetch_add(&w->resyncs, 1);
	w->cb(w->arg, KG_WATCH_RESYNC, "", (int64_t)time(NULL));
}

/* Remember lo..hi as not seen yet. Ranges are kept in version order. */
static void gap_add(struct kg_watch_pg *w, int64_t lo, int64_t hi)
{
	if (w->n_gaps == GAPS_MAX) {
		/* Merge the two oldest: versions between them already delivered may be
		 * delivered again (harmless); none is forgotten. */
		w->gaps[0].hi = w->gaps[1].hi;
		if (w->gaps[1].until_ms > w->gaps[0].until_ms)
			w->gaps[0].until_ms = w->gaps[1].until_ms;
		memmove(&w->gaps[1], &w->gaps[2], (GAPS_MAX - 2) * sizeof(w->gaps[0]));
		w->n_gaps--;
	}
	w->gaps[w->n_gaps++] = (struct gap){ .lo = lo, .hi = hi,
					     .until_ms = kg_now_ms() + w->gap_hold_ms };
}

/* Is v in a gap? Then cut it out of it and say so. */
static bool gap_take(struct kg_watch_pg *w, int64_t v)
{
	for (size_t i = 0; i < w->n_gaps; i++) {
		struct gap *g = &w->gaps[i];

		if (v < g->lo || v > g->hi)
			continue;
		if (g->lo == g->hi) {
			memmove(g, g + 1, (w->n_gaps - i - 1) * sizeof(*g));
			w->n_gaps--;
		} else if (v == g->lo) {
			g->lo++;
		} else if (v == g->hi) {
			g->hi--;
		} else {
			struct gap tail = { .lo = v + 1, .hi = g->hi, .until_ms = g->until_ms };

			g->hi = v - 1;
			if (w->n_gaps == GAPS_MAX) {
				/* no room for the split: keep v inside (delivered again later) */
				g->hi = tail.hi;
			} else {
				memmove(g + 2, g + 1, (w->n_gaps - i - 1) * sizeof(*g));
				g[1] = tail;
				w->n_gaps++;
			}
		}
		return true;
	}
	return false;
}

static void gaps_expire(struct kg_watch_pg *w)
{
	uint64_t now = kg_now_ms();
	size_t j = 0;

	for (size_t i = 0; i < w->n_gaps; i++) {
		if (w->gaps[i].until_ms > now)
			w->gaps[j++] = w->gaps[i];
		else
			kg_log_debug("registry watch: versions %" PRId64 "..%" PRId64
				     " never committed (rolled back)", w->gaps[i].lo, w->gaps[i].hi);
	}
	w->n_gaps = j;
}

/* Everything new since `last`, and whatever filled a gap. */
static enum wait_res read_changes(struct kg_watch_pg *w, char *err, size_t errlen)
{
	int64_t cursor = w->n_gaps ? w->gaps[0].lo - 1 : w->last;
	int rows;

	do {
		char cur[24];
		const char *p[1] = { cur };
		PGresult *res;
		enum wait_res r;

		snprintf(cur, sizeof(cur), "%" PRId64, cursor);
		r = query(w, Q_READ, 1, p, &res, err, errlen);
		if (r != W_READY)
			return r;
		rows = PQntuples(res);
		for (int i = 0; i < rows; i++) {
			int64_t v = strtoll(PQgetvalue(res, i, 0), NULL, 10);
			const char *kind = PQgetvalue(res, i, 1), *name = PQgetvalue(res, i, 2);
			int64_t at = strtoll(PQgetvalue(res, i, 3), NULL, 10);

			cursor = v;
			if (v > w->last) {
				if (v > w->last + 1)
					gap_add(w, w->last + 1, v - 1);
				w->last = v;
				atomic_store(&w->last_version, v);
				deliver(w, v, kind, name, at);
			} else if (gap_take(w, v)) {
				kg_log_debug("registry watch: version %" PRId64 " committed late", v);
				deliver(w, v, kind, name, at);
			}
		}
		PQclear(res);
	} while (rows == PAGE_ROWS);
	return W_READY;
}

/* After a (re)connect: the starting point, or the catch-up since `last`. */
static enum wait_res catch_up(struct kg_watch_pg *w, char *err, size_t errlen)
{
	PGresult *res;
	enum wait_res r = query(w, Q_BOUNDS, 0, NULL, &res, err, errlen);
	int64_t min, max;

	if (r != W_READY)
		return r;
	min = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	max = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	if (!w->started) {
		/* A fresh daemon checks every device at its handshake: older changes
		 * matter to nobody here. */
		w->started = true;
		w->last = max;
		atomic_store(&w->last_version, max);
		return W_READY;
	}
	if (max < w->last) {
		/* The table was recreated or the database restored from a backup. */
		resync(w, "the change feed restarted below the last version seen");
		w->last = max;
		w->n_gaps = 0;
		atomic_store(&w->last_version, max);
	} else if (min > w->last + 1) {
		char why[128];

		/* The versions after `last` were pruned while we were away (or never
		 * committed: then the resync was not needed, and is harmless). */
		snprintf(why, sizeof(why), "changes %" PRId64 "..%" PRId64 " are no longer in the feed",
			 w->last + 1, min - 1);
		resync(w, why);
	}
	return read_changes(w, err, errlen);
}

static enum wait_res prune(struct kg_watch_pg *w, char *err, size_t errlen)
{
	char ret[24];
	const char *p[1] = { ret };
	PGresult *res;
	enum wait_res r;

	w->next_prune_ms = kg_now_ms() + w->prune_every_ms;
	snprintf(ret, sizeof(ret), "%u", w->retention_s);
	r = query(w, Q_PRUNE, 1, p, &res, err, errlen);
	if (r == W_READY) {
		atomic_fetch_add(&w->prunes, 1);
		kg_log_debug("registry watch: pruned %s old change(s)", PQcmdTuples(res));
		PQclear(res);
		return W_READY;
	}
	if (r == W_ERROR && PQstatus(w->conn) == CONNECTION_OK) {
		/* Refused (a read-only role): another appliance may prune; not fatal. */
		if (!w->prune_warned)
			kg_log_warnx("registry watch: cannot prune old changes: %s", err);
		w->prune_warned = true;
		return W_READY;
	}
	return r;
}

/* Tell the owner of a change of the connection's state, once per change. */
static void report(struct kg_watch_pg *w, bool up)
{
	if (w->reported_up == up)
		return;
	w->reported_up = up;
	if (w->state_cb != NULL)
		w->state_cb(w->arg, up);
}

/* Serve one connection until it is lost (W_ERROR, err says why) or stop (W_STOP). */
static enum wait_res serve(struct kg_watch_pg *w, char *err, size_t errlen)
{
	PGresult *res;
	enum wait_res r = query(w, Q_LISTEN, 0, NULL, &res, err, errlen);

	if (r != W_READY)
		return r;
	PQclear(res);
	if (w->served) {
		atomic_fetch_add(&w->reconnects, 1);
		kg_log_info("registry watch: connected again, catching up from version %" PRId64, w->last);
	}
	w->served = true;
	/* LISTEN before the read: a change committed in between is both read and
	 * announced, never neither. */
	r = catch_up(w, err, errlen);
	if (r != W_READY)
		return r;
	atomic_store(&w->connected, true);   /* listening, and the starting point read */
	/* Up only now: what changed while it was away has been handed on (and dropped
	 * from the owner's cache) first. */
	report(w, true);
	w->next_gap_read_ms = kg_now_ms() + GAP_RECHECK_MS;
	for (;;) {
		/* Notifications libpq took in during a query are not on the socket any
		 * more: look at its queue before waiting. */
		bool notified = drain_notifies(w);
		uint64_t now = kg_now_ms();
		int timeout;

		if (notified || (w->n_gaps && now >= w->next_gap_read_ms)) {
			/* Read, then expire: a gap filled just before its end still counts. */
			r = read_changes(w, err, errlen);
			if (r != W_READY)
				return r;
			gaps_expire(w);
			w->next_gap_read_ms = kg_now_ms() + GAP_RECHECK_MS;
			continue;
		}
		if (now >= w->next_prune_ms) {
			r = prune(w, err, errlen);
			if (r != W_READY)
				return r;
			continue;
		}
		timeout = remaining(w->next_prune_ms);
		if (w->n_gaps && remaining(w->next_gap_read_ms) < timeout)
			timeout = remaining(w->next_gap_read_ms);
		r = wait_fd(w, PQsocket(w->conn), POLLIN, timeout);
		if (r == W_STOP)
			return W_STOP;
		if (r == W_TIMEOUT)
			continue;
		if (r == W_ERROR || !PQconsumeInput(w->conn) || PQstatus(w->conn) != CONNECTION_OK) {
			snprintf(err, errlen, "%s", PQerrorMessage(w->conn));
			err[strcspn(err, "\n")] = '\0';
			return W_ERROR;
		}
	}
}

static void *watch_main(void *arg)
{
	struct kg_watch_pg *w = arg;
	unsigned backoff = BACKOFF_MIN_MS;
	bool down_logged = false;
	char err[512];

	w->next_prune_ms = kg_now_ms() + w->prune_every_ms;
	for (;;) {
		enum wait_res r;

		err[0] = '\0';
		r = connect_db(w, err, sizeof(err));
		if (r == W_READY) {
			r = serve(w, err, sizeof(err));
			if (atomic_load(&w->connected)) {
				/* It served: the next loss starts the backoff afresh. */
				backoff = BACKOFF_MIN_MS;
				down_logged = false;
			}
		}
		atomic_store(&w->connected, false);
		PQfinish(w->conn);
		w->conn = NULL;
		if (r == W_STOP)
			break;
		report(w, false);
		if (!down_logged)
			kg_log_warnx("registry watch: %s; retrying (every %u..%u ms)",
				     err[0] ? err : "connection lost", BACKOFF_MIN_MS, BACKOFF_MAX_MS);
		else
			kg_log_debug("registry watch: %s", err);
		down_logged = true;
		if (wait_fd(w, -1, 0, (int)backoff) == W_STOP)
			break;
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	return NULL;
}

struct kg_watch_pg *kg_watch_pg_start(const struct kg_watch_pg_opts *o, char *err, size_t errlen)
{
	struct kg_watch_pg *w = calloc(1, sizeof(*w));
	int rc;

	if (w == NULL || (w->uri = strdup(o->uri)) == NULL) {
		snprintf(err, errlen, "registry watch: out of memory");
		goto fail;
	}
	w->cb = o->cb;
	w->state_cb = o->state_cb;
	w->reported_up = true;
	w->arg = o->arg;
	w->gap_hold_ms = o->gap_hold_ms ? o->gap_hold_ms : KG_WATCH_GAP_HOLD_MS;
	w->retention_s = o->retention_s ? o->retention_s : KG_WATCH_RETENTION_S;
	w->prune_every_ms = o->prune_every_ms ? o->prune_every_ms : KG_WATCH_PRUNE_EVERY_MS;
	atomic_init(&w->lag_seconds, -1);
	w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->wake_fd < 0) {
		snprintf(err, errlen, "registry watch: eventfd: %s", strerror(errno));
		goto fail;
	}
	rc = pthread_create(&w->thread, NULL, watch_main, w);
	if (rc != 0) {
		snprintf(err, errlen, "registry watch: thread: %s", strerror(rc));
		close(w->wake_fd);
		goto fail;
	}
	pthread_setname_np(w->thread, "kg-regwatch");
	return w;
fail:
	if (w)
		free(w->uri);
	free(w);
	return NULL;
}

void kg_watch_pg_stop(struct kg_watch_pg *w)
{
	uint64_t one = 1;

	if (w == NULL)
		return;
	(void)!write(w->wake_fd, &one, sizeof(one));
	pthread_join(w->thread, NULL);
	close(w->wake_fd);
	free(w->uri);
	free(w);
}

void kg_watch_pg_stats(struct kg_watch_pg *w, struct kg_watch_pg_stats *out)
{
	*out = (struct kg_watch_pg_stats){
		.connected = atomic_load(&w->connected),
		.changes_device = atomic_load(&w->n_device),
		.changes_ca = atomic_load(&w->n_ca),
		.reconnects = atomic_load(&w->reconnects),
		.resyncs = atomic_load(&w->resyncs),
		.prunes = atomic_load(&w->prunes),
		.last_version = atomic_load(&w->last_version),
		.lag_seconds = atomic_load(&w->lag_seconds),
	};
}
