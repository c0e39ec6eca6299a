/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * worker.h - one thread per core: its own SO_REUSEPORT listeners, epoll loop,
 * deadline scan, registry read handle, connection list and metrics. Other threads
 * talk to a worker only through its command queue + eventfd (kg_worker_call()).
 */
#ifndef KTLSGATE_WORKER_H
#define KTLSGATE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/conn.h"
#include "core/daemon.h"
#include "ops/metrics.h"
#include "relay/pipe_pool.h"
#include "ops/ratelimit.h"
#include "registry/registry.h"
#include "core/srclimit.h"

/* Worker structs are cache-line aligned (their metrics): allocate arrays of them with
 * kg_workers_alloc(). */
#define KG_CACHE_LINE 64

enum kg_cmd_type {
	KG_CMD_REVALIDATE_DEVICE,  /* arg: device id: re-run policy on its sessions */
	KG_CMD_REVALIDATE_CA,      /* arg: CA name: re-check every CA-attested session */
	KG_CMD_REVALIDATE_ALL,     /* after a reload: CRLs, CA status, backends of all */
	KG_CMD_KILL_DEVICE,        /* arg: device id */
	KG_CMD_LIST_SESSIONS,      /* append JSON lines to out */
	KG_CMD_STOP_ACCEPT,        /* a handover: listeners out of epoll and closed; the
				    * connections stay (core/handover.h) */
	KG_CMD_EXPORT_SESSIONS,    /* a handover: pass the sessions that can travel (at most
				    * xfer_quota each) into xfer, xfer_fds (kg_conn_export()) */
	KG_CMD_ADOPT_SESSIONS,     /* a handover: take the n_xfer records of xfer (worker i
				    * those with worker % n_workers == i), their fds in
				    * xfer_fds set to -1 once taken (kg_conn_adopt()) */
	KG_CMD_STOP
};

/* A request from the main thread to every worker; the caller waits on it. */
struct kg_cmd {
	enum kg_cmd_type type;
	char arg[KG_DEVICE_ID_MAX + 1];
	/* results, guarded by lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pending;          /* workers that have not answered yet */
	unsigned closed;           /* sessions closed */
	char *out;                 /* LIST_SESSIONS: malloc'd text */
	size_t out_len;
	/* EXPORT_SESSIONS / ADOPT_SESSIONS (the caller's arrays): worker i writes its
	 * exports at [i * xfer_quota, ...) and their count into xfer_count[i]; two fds a
	 * record. adopted / refused: ADOPT's outcome (refused: the record did not fit). */
	struct kg_ho_session *xfer;
	int *xfer_fds;
	size_t *xfer_count;
	size_t xfer_quota, n_xfer;
	unsigned adopted, refused;
};

struct kg_cmd_node {
	struct kg_cmd *cmd;
	struct kg_cmd_node *next;
};

struct kg_worker {
	struct kg_daemon *d;
	unsigned idx;
	pthread_t thread;
	int epfd;
	struct kg_evsrc wake;                 /* eventfd */
	struct kg_evsrc auth_done;            /* the auth pool's eventfd for this worker
					       * (owned by the pool): password checks done */
	struct kg_evsrc listeners[KG_MAX_LISTEN];
	size_t n_listeners;
	bool accept_paused;
	struct kg_registry *reg;              /* read-only handle, this thread's */
	struct kg_conn *conns;                /* live connections */
	struct kg_conn *auth_waiting;         /* those with a password check in the pool */
	struct kg_conn *dead;                 /* closed in this loop turn, freed after it */
	size_t n_conns;
	uint64_t next_id;
	pthread_mutex_t q_lock;
	struct kg_cmd_node *q_head;
	/* Written by this worker alone, read by the scrape (relaxed): on cache lines of
	 * its own, so neither the main thread's queue pushes above nor the next worker's
	 * fields (d->workers is an array) share a line with the counters. */
	_Alignas(KG_CACHE_LINE) struct kg_metrics metrics;
	_Alignas(KG_CACHE_LINE) clockid_t cpu_clock; /* this thread's CPU clock (start) */
	atomic_bool cpu_clock_ok;             /* cpu_clock set (release; a scrape may run
					       * while the workers start) */
	struct kg_pipe_pool pipes;            /* splice pipes for kTLS sessions */
	struct kg_srclimit *srclimit;         /* per-source admission, this worker's */
	int reserve_fd;                       /* kept open to shed a connection at EMFILE */
	uint64_t fd_limit;                    /* RLIMIT_NOFILE at start */
	uint64_t fd_headroom;                 /* fds below the limit kept for others */
	uint64_t accept_resume_ms;            /* accept backs off until then (out of fds) */
	uint64_t fd_log_ms;                   /* last "out of fds" log line */
	uint64_t fd_log_missed;               /* occurrences since that line */
	struct kg_ratelimit audit_rl;         /* audit flood guard (audit.h), this thread's */
	bool ktls_unavailable;                /* the kernel refused the TLS ULP once */
	_Atomic uint64_t loop_ms;             /* kg_now_ms() of the last deadline scan: the
					       * main thread's watchdog reads it (relaxed) */
	uint64_t next_scan_ms;                /* the loop sleeps until then at most: the
					       * nearest deadline (kg_worker_due()) */
	uint64_t sm_seen;                     /* sockmap notices read (kg_sockmap_notices()) */
	bool stop;
};

/* Something of this worker falls due at `at` (kg_now_ms() time; 0: nothing): its loop
 * scans the deadlines by then. Worker thread only. */
static inline void kg_worker_due(struct kg_worker *w, uint64_t at)
{
	if (at != 0 && at < w->next_scan_ms)
		w->next_scan_ms = at;
}

/* Create listeners and the registry handle. Returns 0 or -1 with a message. */
int kg_worker_init(struct kg_worker *w, struct kg_daemon *d, unsigned idx, char *err,
		   size_t errlen) KG_MUST_USE;
int kg_worker_start(struct kg_worker *w) KG_MUST_USE;
void kg_worker_join(struct kg_worker *w);
void kg_worker_fini(struct kg_worker *w);

/* n zeroed, aligned worker structs (free() them), or NULL. */
struct kg_worker *kg_workers_alloc(unsigned n);

/* Run cmd on every worker and wait for all answers (workers never block). */
int kg_workers_call(struct kg_daemon *d, struct kg_cmd *cmd) KG_MUST_USE;
/* Every worker stops accepting (KG_CMD_STOP_ACCEPT: its listener references closed;
 * the sockets live on where another holds them: a new process, systemd's store). Main
 * thread. */
void kg_workers_stop_accept(struct kg_daemon *d);
/* Sessions relaying now, in every worker and data path (their gauges). Any thread. */
int64_t kg_workers_relaying(const struct kg_daemon *d);
/* The live handover's export (KG_CMD_EXPORT_SESSIONS, kg_conn_export()): at most cap
 * sessions in all (cap / n_workers from each worker) that can travel leave the workers,
 * their records into recs[0..n) and their device and broker sockets into fds[0..2n), in
 * order, now the caller's. recs and fds have room for cap records. Returns n. Main
 * thread. */
size_t kg_workers_export_sessions(struct kg_daemon *d, struct kg_ho_session *recs, int *fds,
				  size_t cap);
/* Wake w's loop (its command eventfd) without a command: it then reads its sockmap
 * notices. Any thread. */
void kg_worker_wake(struct kg_worker *w);
/* Free connections closed during this loop turn. */
void kg_worker_reap(struct kg_worker *w);

/* Re-evaluate interest for accept after a handshake finished. */
void kg_worker_accept_resume(struct kg_worker *w);

/*
 * Per-worker figures (worker_stats.c), read from any thread at scrape or `status`
 * time with relaxed loads: the workers pay nothing per event beyond their own
 * counters. The same counters the aggregate metrics sum, so the per-worker figures
 * add up to them.
 */
struct kg_worker_stat {
	unsigned worker;
	uint64_t accepted;
	uint64_t handshakes[KG_HS_MAX];     /* ok, failed, timeout */
	uint64_t bytes[KG_DIR_MAX];         /* device -> broker, broker -> device */
	int64_t connections;                /* live, any state */
	int64_t sessions;                   /* relaying, any data path */
	double cpu_seconds;                 /* the thread's CPU time; -1: unknown */
};
void kg_worker_stat(const struct kg_worker *w, struct kg_worker_stat *out);
/* The worker thread's CPU time (user + system) in seconds: its pthread CPU clock,
 * taken at kg_worker_start(). -1 before that or once the thread is gone. */
double kg_worker_cpu_seconds(const struct kg_worker *w);
/* Before the first kg_workers_accept_imbalance(), after d->workers exist (main.c). */
void kg_workers_balance_init(struct kg_daemon *d);
void kg_workers_balance_fini(struct kg_daemon *d);
/* The accept imbalance over the workers (ops/balance.h): max / mean of the accepts
 * each took in the last 1-2 minutes; -1 when too few to judge. *window_ms may be NULL.
 * Any thread (serialised by d->balance_lock). */
double kg_workers_accept_imbalance(struct kg_daemon *d, uint64_t *window_ms);

#endif
