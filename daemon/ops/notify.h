/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * notify.h - the daemon's side of systemd: the notify protocol (READY, STATUS,
 * RELOADING, STOPPING, WATCHDOG) and the journal's native protocol. notify.c is the one
 * file that calls libsystemd (docs/systemd.md).
 *
 * Not under systemd (no NOTIFY_SOCKET at start) every kg_notify_* call does nothing and
 * kg_notify_timeout() asks the main loop for no wake-up: the daemon behaves as before.
 * The struct lives in the daemon context and is used by the main thread only (startup,
 * the signal and control-socket loop), so it needs no lock.
 */
#ifndef KTLSGATE_NOTIFY_H
#define KTLSGATE_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* STATUS= is refreshed at most this often (ms), and only when its text changed. */
#define KG_NOTIFY_STATUS_MS 5000u
#define KG_NOTIFY_STATUS_MAX 256

struct kg_notify {
	bool active;                  /* NOTIFY_SOCKET was set at start */
	uint64_t watchdog_ms;         /* WATCHDOG_USEC / 1000 for us; 0: no watchdog */
	uint64_t next_ping_ms;        /* monotonic: the next WATCHDOG=1 is due */
	uint64_t next_status_ms;      /* monotonic: STATUS= may be refreshed */
	char status[KG_NOTIFY_STATUS_MAX];   /* the last STATUS= sent */
};

/* What STATUS= shows, read from the counters render_metrics already sums. */
struct kg_notify_counts {
	int64_t sessions;             /* relaying, all data paths */
	int64_t handshakes;           /* in flight */
	int64_t connections;          /* all live connections */
	int64_t by_mode[7];           /* enum kg_relay_mode order (metrics.h) */
};

/* Read NOTIFY_SOCKET and the watchdog (sd_watchdog_enabled) once, at start. */
void kg_notify_init(struct kg_notify *n);
/* READY=1 with STATUS=status (startup, and the end of a reload). */
void kg_notify_ready(struct kg_notify *n, const char *status);
/* READY=1 with MAINPID=getpid() and STATUS=status: a process that took over from the
 * one systemd started (ktlsgated --takeover, docs/systemd.md). */
void kg_notify_ready_main(struct kg_notify *n, const char *status);
/* MAINPID=pid: the main process hands systemd's watch to the process that took over. */
void kg_notify_main_pid(struct kg_notify *n, pid_t pid);
/* RELOADING=1 with MONOTONIC_USEC= (systemd >= 253 matches it to the reload job), and
 * WATCHDOG=1 when the watchdog runs: the reload blocks the main loop, so it gets a
 * whole interval. */
void kg_notify_reloading(struct kg_notify *n);
/* READY=1 after a reload, STATUS= saying whether it succeeded (err: why not). The
 * periodic STATUS= replaces it after KG_NOTIFY_STATUS_MS. */
void kg_notify_reloaded(struct kg_notify *n, bool ok, const char *err);
/* STOPPING=1 (SIGTERM/SIGINT). */
void kg_notify_stopping(struct kg_notify *n);
/* The main loop's turn: sends STATUS=status if it changed and is due, and WATCHDOG=1 if
 * due and healthy (false: every worker must have run its loop recently; the pings
 * stop and systemd restarts us after WatchdogSec=). status may be NULL (not due). */
void kg_notify_tick(struct kg_notify *n, uint64_t now_ms, const char *status, bool healthy);
/* Is a STATUS= refresh due at now_ms (the caller then builds the text)? */
bool kg_notify_status_due(const struct kg_notify *n, uint64_t now_ms);
/* Is a WATCHDOG=1 due at now_ms (the caller then checks the workers)? */
bool kg_notify_ping_due(const struct kg_notify *n, uint64_t now_ms);
/* Milliseconds until the next notify work, for epoll_wait: -1 when there is none. */
int kg_notify_timeout(const struct kg_notify *n, uint64_t now_ms);
/* A worker whose loop last ran before now_ms - kg_notify_stall_ms() is stalled. */
uint64_t kg_notify_stall_ms(const struct kg_notify *n);

/* Pure: "N session(s) (ktls_splice a, ktls_tx b, userspace c, userspace_ssl d), H
 * handshake(s) in flight, C connection(s)" into buf. Returns buf. */
const char *kg_notify_format_status(const struct kg_notify_counts *c, char *buf, size_t cap);

/* ---- the file descriptor store (FileDescriptorStoreMax=, docs/systemd.md) -------- */

/* One descriptor systemd passed, with its FDNAME ("" when unnamed). */
struct kg_notify_fd {
	int fd;                       /* close-on-exec */
	char name[64];
};
/* The descriptors systemd passed at start (LISTEN_FDS for this pid: the store's
 * contents after a restart) into *out (malloc'd, the caller frees it; NULL when none).
 * LISTEN_* are unset, so a child does not see them. Returns how many (0: none, not
 * under systemd, or out of memory: then they are closed). Once, at start. */
size_t kg_notify_inherited(struct kg_notify_fd **out);
/* Replace what the store holds under name with fds[0..n) (FDSTOREREMOVE=1 then
 * FDSTORE=1, both FDNAME=name): systemd keeps its duplicates until the unit stops
 * without a restart queued. Nothing when not under systemd. 0, or -errno of the last
 * send (systemd refuses them without FileDescriptorStoreMax=: it logs why). */
int kg_notify_fdstore(const struct kg_notify *n, const char *name, const int *fds, size_t count);
/* Add fds[0..n) to the store under name (FDSTORE=1, as many messages as SCM_RIGHTS
 * needs), keeping what it holds. Same results. */
int kg_notify_fdstore_add(const struct kg_notify *n, const char *name, const int *fds,
			  size_t count);

/* ---- journald ------------------------------------------------------------------ */

/* Pure: does JOURNAL_STREAM's value ("DEV:INO", decimal) name this device and inode? */
bool kg_journal_stream_matches(const char *env, dev_t dev, ino_t ino);
/* Is stderr connected to the journal (JOURNAL_STREAM against fstat(2)) and journald's
 * socket there? Read once at start by the log module, which keeps the answer. */
bool kg_journal_stderr(void);
/* One journal entry being built: "FIELD=value" items (iov) pointing into buf. Pure;
 * the log and audit modules fill one on their stack and hand it to kg_journal_send. */
#define KG_JOURNAL_FIELDS 16
struct kg_journal_entry {
	struct iovec iov[KG_JOURNAL_FIELDS];
	int n;
	size_t used;
	bool overflow;                /* a field did not fit: the entry is not sent */
	char buf[4096];
};

void kg_journal_init(struct kg_journal_entry *e);
/* Append NAME=value (len bytes; values may hold any byte, newlines included: the
 * native protocol carries them). Sets e->overflow when it does not fit. */
void kg_journal_add(struct kg_journal_entry *e, const char *name, const char *val, size_t len);
/* Append NAME=value for a NUL-terminated value; nothing when val is NULL or "". */
void kg_journal_add_str(struct kg_journal_entry *e, const char *name, const char *val);
/* The value of field NAME in e (not NUL-terminated: *len), or NULL. For the tests. */
const char *kg_journal_get(const struct kg_journal_entry *e, const char *name, size_t *len);
/* Send e with sd_journal_sendv. 0, or -errno (-E2BIG when e overflowed). */
int kg_journal_send(const struct kg_journal_entry *e);

#endif
