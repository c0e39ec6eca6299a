/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * control_server.h - the daemon's side of the admin socket (protocol: control.h).
 *
 * Ownership: kg_control_claim() refuses a socket another live daemon answers on;
 * kg_control_listen() replaces only a stale socket and remembers the inode it bound;
 * kg_control_close() unlinks the path only if it still names that inode, so a
 * daemon never removes a socket it does not own.
 *
 * Serving: every client is a small non-blocking state machine in the main loop's
 * epoll (read one line, dispatch, write the buffered reply), with one deadline from
 * accept to reply sent, a bounded request size and a bounded number of clients (the
 * oldest gives way). A stuck or slow client costs a slot until its deadline, never
 * the main thread.
 */
#ifndef KTLSGATE_CONTROL_SERVER_H
#define KTLSGATE_CONTROL_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/daemon.h"

#ifndef KG_VERSION
#define KG_VERSION "0.1.0"
#endif

#define KG_CONTROL_DEADLINE_MS 2000   /* accept -> reply sent, whole request */
#define KG_CONTROL_CLIENTS_MAX 16     /* more at once: the oldest is closed */

struct kg_control;

/*
 * Before anything is bound: if a daemon answers on `path`, fail with a message naming
 * the socket and its pid (SO_PEERCRED). A missing or stale socket (connection
 * refused) is fine. Returns 0, or -1 with a message.
 */
int kg_control_claim(const char *path, char *err, size_t errlen) KG_MUST_USE;

/* Bind the socket (mode 0600 via umask), replacing a stale one, and register it in
 * epfd. Returns the server or NULL with a message. */
struct kg_control *kg_control_listen(const char *path, int epfd, char *err, size_t errlen);
/* Close every client and the socket; unlink the path only if it is still ours. */
void kg_control_close(struct kg_control *c);

/* A handover (handover.h): serve on `fd`, the listening socket the old process bound
 * at `path` (taken over: not bound again, the path not touched). */
struct kg_control *kg_control_adopt(const char *path, int fd, int epfd, char *err,
				    size_t errlen);
/* The listening fd (borrowed; -1 after release): what a handover passes. */
int kg_control_fd(const struct kg_control *c);
/* Stop serving new clients: the listener out of epoll and this process's reference
 * closed; the socket is the new process's, so kg_control_close() will never unlink
 * the path. Clients already accepted are answered. */
void kg_control_release(struct kg_control *c);

/* Does this epoll data.fd belong to the control server? */
bool kg_control_owns(const struct kg_control *c, int fd);
/* Handle readiness of one of its fds (main thread). */
void kg_control_event(struct kg_daemon *d, struct kg_control *c, int fd, uint32_t events);
/* Close clients past their deadline; returns ms until the next deadline, -1 none. */
int kg_control_expire(struct kg_control *c);

#endif
