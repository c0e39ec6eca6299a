/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fdstore.h - the listeners kept by systemd across `systemctl restart`, a crash restart
 * and the package's upgrade (FileDescriptorStoreMax= in the unit; issue 14;
 * docs/systemd.md "Restart"). systemd holds a duplicate of every worker's listening
 * socket, so while one process stops and the next starts the sockets stay open: SYNs
 * complete in their accept queues instead of meeting a closed port, and the new process
 * accepts them.
 *
 * At start (not after a --takeover, which brings the same sockets itself):
 * kg_fdstore_load() keeps the passed sockets named KG_FDSTORE_LISTEN that match a
 * configured listen address (and the one named KG_FDSTORE_METRICS on metrics_listen);
 * each worker's kg_fdstore_take() gets one before opening a new socket in the same
 * SO_REUSEPORT group; once the workers run, kg_fdstore_publish() closes what nothing
 * took (fewer workers, an address gone: the kernel migrates their queues with
 * net.ipv4.tcp_migrate_req=1) and replaces the store's contents with the workers'
 * sockets and the /metrics one. Main thread (load, publish) and worker init, which
 * runs on the main thread before the workers start (take).
 */
#ifndef KTLSGATE_FDSTORE_H
#define KTLSGATE_FDSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "ktlsgate/compiler.h"
#include "ops/config.h"

/* The FDNAMEs in systemd's store: the device listeners, the /metrics listener; at a
 * stop, the live sessions' sockets and a memfd with their records. */
#define KG_FDSTORE_LISTEN "kg-listen"
#define KG_FDSTORE_METRICS "kg-metrics"
#define KG_FDSTORE_SESSION "kg-sess"
#define KG_FDSTORE_RECORDS "kg-sessions"
/* The most live sessions kept across a restart (two descriptors each; the unit's
 * FileDescriptorStoreMax= leaves room for them and the listeners). */
#define KG_FDSTORE_SESSIONS_MAX 8000
/* At a stop, how long connections still on their way in (handshake, CONNECT, broker
 * connect) get to become sessions that can be stored instead of being reset. */
#define KG_FDSTORE_SETTLE_MS 3000

struct kg_daemon;
struct kg_fdstore;

/* Pure: is the bound address `got` (len bytes, from getsockname) the configured `want`
 * (same family, port and address; IPv6 flow info and scope are not compared: the
 * configuration cannot name a scope)? */
bool kg_fdstore_addr_matches(const struct sockaddr *got, socklen_t len,
			     const struct kg_sockaddr *want) KG_MUST_USE;

/* Take the sockets systemd passed (LISTEN_FDS) into d->fdstore (made here; NULL when
 * none came). Each is a listening TCP socket on one of cfg's listen addresses, or is
 * closed with a log line saying why. -1 only when out of memory. */
int kg_fdstore_load(struct kg_daemon *d, const struct kg_config *cfg) KG_MUST_USE;
/* A kept socket for listen address `index`, now the caller's; -1: none left. */
int kg_fdstore_take(struct kg_daemon *d, size_t index);
/* The kept /metrics listener, now the caller's; -1: none. */
int kg_fdstore_take_metrics(struct kg_daemon *d);
/* Workers accept: close the kept sockets nobody took, and hand every worker's listener
 * to systemd's store (nothing when not under systemd). Logs what it kept and passed. */
void kg_fdstore_publish(struct kg_daemon *d);
/*
 * Live sessions across `systemctl restart` and the package's upgrade (issue 14): at a
 * stop under systemd, kg_fdstore_save_sessions() takes the relaying sessions whose state
 * is all the kernel's (kg_relay_transferable(): ktls_splice, plain copied or spliced)
 * out of the workers, and stores their sockets (KG_FDSTORE_SESSION) and a memfd of their
 * records (KG_FDSTORE_RECORDS, handover_msg.h's SESSIONS frames; each record names its
 * sockets by SO_COOKIE) in systemd's store; the rest close as before. First the
 * workers stop accepting (the store keeps the listeners and their queues for the next
 * start) and the connections still on their way in get up to KG_FDSTORE_SETTLE_MS to
 * reach RELAYING, so a device in its handshake at a restart keeps its connection.
 * Returns how many it stored. Main thread, with the workers running, before KG_CMD_STOP.
 * At the next start kg_fdstore_load() keeps what came under those names and, once the
 * workers accept, kg_fdstore_adopt_sessions() drops systemd's copies (a session closed
 * here must really close) and gives the sessions to the workers, which judge each
 * again under the newest registry (as after a --takeover).
 */
size_t kg_fdstore_save_sessions(struct kg_daemon *d);
void kg_fdstore_adopt_sessions(struct kg_daemon *d);
/* Close what is still kept and free d->fdstore. */
void kg_fdstore_free(struct kg_daemon *d);

#endif
