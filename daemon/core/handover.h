/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * handover.h - both sides of the listener handover (`ktlsgated --takeover`, issue 14;
 * docs/operations.md "Restart without refusing a device", docs/architecture.md
 * "Listener handover"). Messages: handover_msg.h.
 *
 * New process: kg_handover_connect() asks the running daemon for its sockets (control
 * verb `handover 1`); the listening sockets, the /metrics listener, the instance lock
 * and the control socket's listener come back with SCM_RIGHTS. Startup then adopts them
 * (kg_handover_take_*), starts its workers and calls kg_handover_accepting(): from then
 * on the old process drains, and this one forwards revocations to it, asks it for its
 * sessions and shows its counts.
 * Old process: the control server hands the requesting client to kg_handover_serve();
 * on "accepting" it stops accepting and serving the control socket, drains its sessions
 * (at most [daemon] drain_timeout), reports its counts, and stops the daemon.
 * Main thread only, except kg_handover_metrics_write() (the metrics thread: atomics).
 */
#ifndef KTLSGATE_HANDOVER_H
#define KTLSGATE_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ktlsgate/compiler.h"

struct kg_daemon;
struct kg_config;
struct json_object;

/* Make d->handover (main thread, before /metrics runs: its reader). 0, or -1. */
int kg_handover_init(struct kg_daemon *d) KG_MUST_USE;

/* ---- new process ---------------------------------------------------------------- */

/*
 * Connect to cfg's control socket and ask for the sockets. Returns 1 with the fds held
 * in d->handover (made here), 0 when no daemon answers there (nothing running: the
 * caller starts normally), -1 with why in err (a daemon answers but refused, or sent
 * something this build cannot use; it keeps serving).
 */
int kg_handover_connect(struct kg_daemon *d, const struct kg_config *cfg, char *err,
			size_t errlen) KG_MUST_USE;
/* Do the received sockets fit cfg (the same listen addresses, in order)? 0, or -1 with
 * why (the old process keeps serving: the caller exits). */
int kg_handover_check(struct kg_daemon *d, const struct kg_config *cfg, char *err,
		      size_t errlen) KG_MUST_USE;
/* The received descriptor for worker `worker`'s socket of listen address `index`, now
 * the caller's (-1: none: open one in the same SO_REUSEPORT group). */
int kg_handover_take_listener(struct kg_daemon *d, unsigned worker, size_t index);
/* The received instance lock, /metrics and control listeners, now the caller's (-1:
 * none came). */
int kg_handover_take_lock(struct kg_daemon *d);
int kg_handover_take_metrics(struct kg_daemon *d);
int kg_handover_take_control(struct kg_daemon *d);
/* The XDP gate's link on ifname (edge.h kg_edge_start_with()), now the caller's, or -1. */
int kg_handover_take_xdp_link(struct kg_daemon *d, const char *ifname);
/* The XDP gate's program or map obj (edge.h enum kg_edge_obj), now the caller's, or -1;
 * the build id of the program it belongs to goes to build_id (at most len bytes). */
int kg_handover_take_xdp_obj(struct kg_daemon *d, unsigned obj, char *build_id, size_t len);
/* Did the old process pass an XDP gate's link (it runs the gate)? */
bool kg_handover_passed_xdp(const struct kg_daemon *d);
/* Workers accept: close what no worker adopted (fewer workers than the old process:
 * the kernel migrates their queue with net.ipv4.tcp_migrate_req=1), tell the old
 * process, audit, and watch the channel in d->epfd. 0, or -1 with why when the old
 * process gave up on us meanwhile (it still serves: the caller exits). */
int kg_handover_accepting(struct kg_daemon *d, char *err, size_t errlen) KG_MUST_USE;
/* A revocation verb the control socket just ran here ("device-changed ID",
 * "ca-changed NAME", "kill ID", "reload"): run it in the draining old process too. */
void kg_handover_forward(struct kg_daemon *d, const char *verb, const char *arg);
/* The old process's session lines (JSON, each with its "pid"), appended to *buf;
 * waits for them at most 1 s. Nothing when no old process drains. */
void kg_handover_peer_sessions(struct kg_daemon *d, char **buf, size_t *len);

/* ---- old process ---------------------------------------------------------------- */

/* The control client `fd` sent "handover [VERSION]" (arg: VERSION or NULL): pass the
 * sockets on it, or write "ERR why" and close it. fd is the handover's from here. */
void kg_handover_serve(struct kg_daemon *d, int fd, const char *arg);

/* ---- both ------------------------------------------------------------------------ */

/* No handover under way on either side (none began, or this process is the one that
 * took over and its old process is gone). */
bool kg_handover_idle(const struct kg_daemon *d);

/* Is this epoll data.fd the channel? Its readiness, main thread. */
bool kg_handover_owns(const struct kg_daemon *d, int fd);
void kg_handover_event(struct kg_daemon *d);
/* Each main-loop turn: the draining old process reports and ends its drain. Returns
 * the epoll timeout it needs (ms, -1: none). */
int kg_handover_tick(struct kg_daemon *d);
/* `status`: the "handover" object. */
void kg_handover_status(struct kg_daemon *d, struct json_object *j);
/* /metrics: ktlsgate_handover_total{role,result}, ktlsgate_draining_sessions,
 * ktlsgate_draining_connections. Any thread. */
void kg_handover_metrics_write(struct kg_daemon *d, FILE *f);
/* Free everything (the channel, fds never taken). NULL-safe. */
void kg_handover_free(struct kg_daemon *d);

#endif
