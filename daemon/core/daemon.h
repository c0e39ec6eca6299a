/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Part core (daemon/core/): the process and its event loop. main.c (startup order,
 * signals, the main thread's epoll), daemon.c (the context and its snapshots, this
 * header), worker.c (one thread per core: accept, epoll, deadline scan, command queue),
 * listener.c (SO_REUSEPORT sockets), conn.c (the connection state machine and its one
 * close path, conn.h), conn_tls.c (a connection's SSL, handshake step and verify
 * callback, conn_tls.h), srclimit.c (per-source admission, pure), control_server.c
 * (the admin socket's server), instance.c (one daemon per registry), leaf_timer.c
 * (certified-leaf mode: making and rotating the leaf), handover.c (ktlsgated --takeover:
 * both sides of the listener handover; its frames in handover_msg.c, pure), upgrade.c
 * (`ktlsgate upgrade`: the daemon starts its own successor with --takeover).
 * Way in: this header (the context, snapshots); conn.h for one connection.
 * Core is the top of the daemon: it calls every other part (tls, policy, registry,
 * mqtt, relay, edge, ops), and no part reaches back into it: none includes a core
 * header (scripts/lint-layers.sh checks it).
 */
/*
 * daemon.h - the daemon's context and its configuration snapshots.
 *
 * struct kg_daemon is the only home of process-wide mutable state. A struct
 * kg_snapshot bundles what a reload replaces (config, SSL_CTX, trust store); it is
 * built whole aside, published with one pointer swap under snap_lock, and pinned by
 * every connection for its life, so a reload never touches a live session and a
 * failed reload changes nothing.
 */
#ifndef KTLSGATE_DAEMON_H
#define KTLSGATE_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "ktlsgate/clock.h"
#include "ktlsgate/compiler.h"
#include "ops/balance.h"
#include "ops/config.h"
#include "ops/metrics.h"
#include "ops/notify.h"
#include "tls/verify.h"

struct kg_worker;
struct kg_writer;
struct kg_metrics_http;
struct kg_control;
struct kg_sockmap;
struct kg_watch_pg;
struct kg_regwatch_q;
struct kg_tpm_signer;
struct kg_ticket_keys;
struct kg_handover;
struct kg_fdstore;
struct kg_session_cache;

struct kg_snapshot {
	atomic_int refs;
	uint64_t generation;
	struct kg_config cfg;
	SSL_CTX *ssl_ctx;        /* owns a reference */
	enum kg_key_source key_source; /* where ssl_ctx's server key comes from */
	struct kg_trust *trust;  /* read-only once published */
	struct kg_leaf *leaf;    /* certified-leaf: the leaf ssl_ctx serves (a reference);
				  * NULL in direct mode and under [tpm] key_fallback */
};

struct kg_daemon {
	char config_path[PATH_MAX];
	char exe_path[PATH_MAX];            /* our binary as it was at start (upgrade.h) */
	pid_t successor;                    /* `ktlsgate upgrade`'s child; 0: none */
	pthread_mutex_t snap_lock;          /* guards `snap` pointer swaps and gets */
	struct kg_snapshot *snap;           /* current; holds one reference */
	uint64_t generation;

	struct kg_worker *workers;
	unsigned n_workers;
	/* The accept imbalance's window (ops/balance.h), looked at by scrapes (metrics
	 * thread) and `status` (main thread): worker_stats.c, under balance_lock. */
	pthread_mutex_t balance_lock;
	struct kg_balance balance;
	struct kg_writer *writer;           /* registry writes off the hot path */
	struct kg_metrics_http *metrics_http;
	struct kg_edge *edge;               /* XDP gate (edge.h); inactive without BPF */
	/* CONNECT credentials (auth/): the scrypt threads with a completion eventfd per
	 * worker, and the brute-force limiter every worker shares; made at start */
	struct kg_auth_pool *auth_pool;
	struct kg_auth_limit *auth_limit;
	/* The in-kernel relay of plain sessions (relay/sockmap.h), loaded at start when a
	 * plain or proxy listener exists; NULL: those sessions splice. Shared read-only
	 * by the workers (io->sockmap) */
	struct kg_sockmap *sockmap;
	bool sockmap_needs_cap;             /* its map updates need CAP_BPF (kernel < 6.5) */
	/* Backend names owning a metrics slot (metrics.h KG_BACKEND_SLOTS), in the order
	 * they first appeared; written by kg_snapshot_build() on the main thread only. */
	char backend_slot_names[KG_BACKEND_SLOTS][KG_NAME_MAX];

	/* The TPM signer thread (tpm/tpm_signer.h) when [daemon] key is a TPM key, made at
	 * start, kept across reloads, freed at exit after the last snapshot. NULL: a file
	 * key, or the TPM was unreachable at start and [tpm] key_fallback serves
	 * (tpm_start_failed: that failed connect, for ktlsgate_tpm_errors_total). */
	struct kg_tpm_signer *tpm_signer;
	bool tpm_start_failed;

	/* TLS 1.3 session ticket keys (tls/tickets.h), made at start, shared by every
	 * worker and every snapshot's SSL_CTX (a reload keeps the tickets valid). */
	struct kg_ticket_keys *tickets;
	/* [tls] session_cache > 0: the sessions themselves (tls/session_cache.h), shared
	 * by the workers and kept across reloads; made at start, sized by each snapshot. */
	struct kg_session_cache *session_cache;
	/* Their sealed file (tls/ticket_store.h; ticket_persist.c, main thread only):
	 * ticket_persist when a TPM key serves and resumption is on at start; the key set
	 * as of ticket_saved_rot rotations is on disk (or its save was tried). */
	bool ticket_persist;
	char ticket_file[PATH_MAX];
	uint64_t ticket_saved_rot;
	uint64_t ticket_saved_gen;          /* the trust generation saved with them */
	int ticket_timer_fd;                /* rings at the next key rotation; -1 unused */
	struct kg_control *control;         /* admin socket and its clients (main thread) */
	/* The listener handover (core/handover.h): either side's state and its channel;
	 * made at start, main thread (the metrics thread reads its atomics). */
	struct kg_handover *handover;
	/* The listeners systemd kept across a restart (core/fdstore.h), until the workers
	 * took them; NULL: none came. Main thread. */
	struct kg_fdstore *fdstore;
	/* A shared PostgreSQL registry (issue 16): the change watcher thread and the queue
	 * its callback fills for the main thread (kg_daemon_watch_*). NULL: a file
	 * registry, no watcher. */
	struct kg_watch_pg *regwatch;
	struct kg_regwatch_q *regwatch_q;
	/* Its hot-path view and down state (registry/registry_cache.h), shared by every
	 * worker's read handle; owned by regwatch_q, NULL with a file registry. */
	struct kg_regcache *regcache;
	int lock_fd;                        /* instance lock beside the registry (instance.h) */
	int signal_fd;
	int epfd;                           /* main thread: signals + control */
	struct kg_notify notify;            /* systemd notify state (main thread only) */

	uint64_t max_connections;           /* fixed at start (a reload keeps them) */
	uint64_t max_handshakes;
	_Atomic int64_t n_conns;            /* all live connections */
	_Atomic int64_t n_handshakes;       /* in TLS_HANDSHAKE */
	_Atomic uint64_t reloads, reload_failures;
	atomic_bool stopping;
	int64_t started;
	/* [tpm] mode = certified-leaf (core/leaf_timer.c): the rotation timer (a timerfd in
	 * epfd, main thread; -1: none) and what /metrics shows of the leaf */
	int leaf_timer_fd;
	_Atomic int64_t leaf_not_after;
	_Atomic uint64_t leaf_rotations, leaf_failures;
};

/* Build a complete snapshot from a config (copied): SSL_CTX + trust from the registry.
 * Returns NULL with a message in err; nothing global is touched. */
struct kg_snapshot *kg_snapshot_build(struct kg_daemon *d, const struct kg_config *cfg, char *err,
				      size_t errlen);
/* The same; new_leaf: in certified-leaf mode make a new leaf even if the current one
 * still fits (the rotation). */
struct kg_snapshot *kg_snapshot_build_ex(struct kg_daemon *d, const struct kg_config *cfg,
					 bool new_leaf, char *err, size_t errlen);
/* Take a reference on the current snapshot. */
struct kg_snapshot *kg_snapshot_get(struct kg_daemon *d);
void kg_snapshot_put(struct kg_snapshot *s);
/* Swap in s (takes over the caller's reference), drop the old one. */
void kg_snapshot_publish(struct kg_daemon *d, struct kg_snapshot *s);

/* Every backend the registry names (devices, CAs) is configured in cfg? 0, or -1 with
 * which one is not and the configured ones in err. A reload and `-t` refuse a config
 * that would strand devices (CONNACK "server unavailable" forever). */
int kg_daemon_check_backends(const struct kg_config *cfg, const char *registry, char *err,
			     size_t errlen) KG_MUST_USE;
/* Reload from d->config_path. Returns 0, or -1 with why in err (nothing changed). */
int kg_daemon_reload(struct kg_daemon *d, char *err, size_t errlen) KG_MUST_USE;
/* Rebuild trust from the registry with the current config (a CA changed). */
int kg_daemon_refresh_trust(struct kg_daemon *d, char *err, size_t errlen) KG_MUST_USE;

/*
 * Every appliance sharing a PostgreSQL registry hears every change (issue 16). For a
 * postgresql:// or postgres:// registry, make the hot-path view (d->regcache, sized
 * and ruled by cfg's registry_cache / registry_down / registry_down_seen), start the
 * watcher (registry/watch_pg.h) and add its queue's eventfd to d->epfd; for a file registry do nothing. Returns 0, or -1
 * with why in err. Main thread, before serving.
 */
int kg_daemon_watch_start(struct kg_daemon *d, const struct kg_config *cfg, char *err,
			  size_t errlen) KG_MUST_USE;
/* Is this epoll data.fd the watcher queue's eventfd? */
bool kg_daemon_watch_owns(const struct kg_daemon *d, int fd);
/* Main thread, its eventfd readable: run the revalidation `device-changed` /
 * `ca-changed` run (everything after a resync or a full queue), once per change. */
void kg_daemon_watch_event(struct kg_daemon *d);
/* Stop the watcher and free its queue (NULL-safe, idempotent). */
void kg_daemon_watch_stop(struct kg_daemon *d);
/* Its metrics for render_metrics() (enabled false without a watcher). Any thread. */
void kg_daemon_watch_metrics(struct kg_daemon *d, struct kg_metrics_regwatch *out);

/*
 * Certified-leaf mode (core/leaf_timer.c; docs/tpm.md "Certified-leaf mode").
 * kg_daemon_leaf_make: a new leaf for cfg, signed by its TPM key through tpm (the signer); *leaf NULL (and 0)
 * when the TPM is absent and [tpm] key_fallback serves instead. 0, or -1 with err.
 * kg_daemon_leaf_start: the rotation timer in d->epfd, armed for d->snap (main thread,
 * after the first snapshot; disarmed in direct mode, which a reload may change). kg_daemon_leaf_owns: is this
 * epoll fd the timer. kg_daemon_leaf_event: it rang: make a new leaf and publish it in
 * a new snapshot; on failure keep the current one, retry in a minute (a quarter of the lifetime if shorter), log (loudly once
 * the leaf has expired) and count. kg_daemon_leaf_published: s was just published:
 * rearm the timer and update what /metrics shows. kg_daemon_leaf_stop: close the timer.
 */
struct kg_leaf;
int kg_daemon_leaf_make(const struct kg_config *cfg, struct kg_tpm_signer *tpm,
			struct kg_leaf **leaf, char *err, size_t errlen) KG_MUST_USE;
int kg_daemon_leaf_start(struct kg_daemon *d, char *err, size_t errlen) KG_MUST_USE;
bool kg_daemon_leaf_owns(const struct kg_daemon *d, int fd);
void kg_daemon_leaf_event(struct kg_daemon *d);
void kg_daemon_leaf_published(struct kg_daemon *d, const struct kg_snapshot *s);
void kg_daemon_leaf_stop(struct kg_daemon *d);

/* ticket_persist.c: at start (after d->tickets, d->tpm_signer and the first snapshot,
 * before any worker runs), restore the ticket keys from their sealed file or start
 * fresh and write it (one log line either way; never fails the start).
 * kg_daemon_tickets_timer_start (once d->epfd exists): a timerfd in it, armed at the
 * current key's rotation (only when the keys are persisted). kg_daemon_tickets_owns: is this
 * epoll fd that timer; kg_daemon_tickets_event: it rang: rotate ahead of the workers,
 * write the file, re-arm. kg_daemon_tickets_published (kg_snapshot_publish): a reload
 * may have changed the trust (write the file with its generation) or the lifetime
 * (re-arm). kg_daemon_tickets_stop: close the timer. Main thread only. */
void kg_daemon_tickets_start(struct kg_daemon *d, const struct kg_config *cfg);
void kg_daemon_tickets_timer_start(struct kg_daemon *d);
bool kg_daemon_tickets_owns(const struct kg_daemon *d, int fd);
void kg_daemon_tickets_event(struct kg_daemon *d);
void kg_daemon_tickets_published(struct kg_daemon *d);
void kg_daemon_tickets_stop(struct kg_daemon *d);

#endif
