/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * watch_pg.h - the change watcher of a shared PostgreSQL registry (issue 16).
 *
 * One thread ("kg-regwatch") with its own libpq connection LISTENs on KG_PG_CHANNEL
 * and, on each notification, reads KG_PG_SCHEMA.changes past the last version it
 * handed on, calling the owner's callback once per change (kind, name). Contract:
 *   - nothing is missed: versions missing below the highest seen (a transaction that
 *     took its version earlier but commits later) are read again for gap_hold_ms;
 *     a lost connection is retried with backoff (100 ms .. 5 s) and, once back,
 *     every change since the last version seen is delivered; when the table no
 *     longer holds them (pruned, or the table was recreated) KG_WATCH_RESYNC says
 *     "revalidate everything";
 *   - a change may be delivered twice (revalidating twice is harmless);
 *   - it starts at max(version): older changes are not delivered;
 *   - it deletes changes older than retention_s, at most once per prune_every_ms,
 *     always keeping the newest row (the marker a reconnect compares against);
 *   - the callback runs on the watcher thread and must not block;
 *   - kg_watch_pg_stop() returns promptly whatever the connection is doing.
 */
#ifndef KTLSGATE_WATCH_PG_H
#define KTLSGATE_WATCH_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kg_watch_kind {
	KG_WATCH_DEVICE,   /* name: a device id */
	KG_WATCH_CA,       /* name: a CA name */
	KG_WATCH_RESYNC,   /* name "": changes may have been lost: revalidate everything */
};

typedef void (*kg_watch_pg_cb)(void *arg, enum kg_watch_kind kind, const char *name,
			       int64_t at);
/* The watcher's connection state changed: up once it listens again and every change
 * missed meanwhile has been delivered; down when it is lost (or the first connect
 * fails: the state starts as up, as the daemon's read handles just connected). */
typedef void (*kg_watch_pg_state_cb)(void *arg, bool up);

#define KG_WATCH_GAP_HOLD_MS 10000        /* how long a missing version is read again */
#define KG_WATCH_RETENTION_S 3600         /* changes older than this are pruned */
#define KG_WATCH_PRUNE_EVERY_MS 60000     /* at most one prune per watcher this often */

struct kg_watch_pg_opts {
	const char *uri;                  /* libpq URI (postgresql:// or postgres://) */
	kg_watch_pg_cb cb;
	kg_watch_pg_state_cb state_cb;    /* NULL: not told */
	void *arg;                        /* for both */
	/* 0: the defaults above (the tests shorten them) */
	unsigned gap_hold_ms;
	unsigned retention_s;
	unsigned prune_every_ms;
};

struct kg_watch_pg_stats {
	bool connected;
	uint64_t changes_device, changes_ca;  /* delivered */
	uint64_t reconnects;                  /* connections made again after a loss */
	uint64_t resyncs;                     /* KG_WATCH_RESYNC delivered */
	uint64_t prunes;                      /* DELETEs run */
	int64_t last_version;                 /* highest version delivered (or start) */
	int64_t lag_seconds;                  /* now - at of the last change delivered;
					       * -1: none yet */
};

struct kg_watch_pg;

/* Is this registry value a PostgreSQL URI (the only kind a watcher runs for)? */
bool kg_watch_pg_uri(const char *registry);

/* Start the thread (it connects on its own; a database down at start is retried).
 * Returns NULL with a message in err. */
struct kg_watch_pg *kg_watch_pg_start(const struct kg_watch_pg_opts *o, char *err,
				      size_t errlen);
/* Wake the thread, join it, close its connection, free. NULL is fine. */
void kg_watch_pg_stop(struct kg_watch_pg *w);
/* Any thread. */
void kg_watch_pg_stats(struct kg_watch_pg *w, struct kg_watch_pg_stats *out);

#endif
