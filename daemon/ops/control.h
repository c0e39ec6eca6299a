/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * control.h - the admin socket between `ktlsgate` (CLI) and `ktlsgated`.
 * A unix stream socket, mode 0600 (root only). One request per connection: a single
 * line "VERB [ARG]\n" of at most KG_CONTROL_LINE_MAX bytes; the reply is zero or more
 * data lines followed by a final line "OK[ text]" or "ERR message". The daemon gives
 * a client 2 s from accept to reply sent (then closes it) and keeps at most 16 open.
 * One daemon answers per socket: a second one refuses to start. Verbs:
 *   ping                       -> OK
 *   status                     -> one JSON object line, then one line per worker
 *                                 ({"worker":N,"accepted":...}: core/worker.h
 *                                 struct kg_worker_stat), OK
 *   reload                     -> OK | ERR why (nothing changed)
 *   device-changed ID          -> re-read the device; close its sessions if it may no
 *                                 longer connect (or its backend moved) -> OK closed=N
 *   ca-changed NAME            -> rebuild trust from the registry; close sessions of a
 *                                 CA that no longer authenticates -> OK closed=N
 *   sessions                   -> one JSON object line per live session, OK
 *   kill ID                    -> OK closed=N (N may be 0)
 *   block-add ADDR SECONDS     -> deny ADDR at XDP for SECONDS (0: until removed)
 *                                 -> OK | OK allow_listed (the gate never drops it)
 *   block-remove ADDR          -> OK removed=1 | OK removed=0 (it was not blocked)
 *   block-list                 -> one JSON object line per live deny entry
 *                                 (edge/edge_block.h: address, reason, strikes,
 *                                 expires_in_s or null), OK
 *   block-stats                -> {"passed":N,"dropped_deny":N,"dropped_rate":N}, OK
 *   block-maps                 -> OK deny=ID allow=ID stats=ID (the kernel's map ids)
 *   handover 1                 -> `ktlsgated --takeover` (core/handover.h): the connection
 *                                 leaves the one-request machinery and becomes the
 *                                 handover channel (binary frames, handover_msg.h, the
 *                                 sockets with SCM_RIGHTS) | ERR why (refused)
 *   The block-* verbs answer "ERR the XDP gate is not active: WHY" without a gate; the
 *   CLI uses them when it cannot open the maps pinned under [edge] pin_dir, or when
 *   block-maps says the pins there are not the running gate's (left by an earlier run).
 * The server side is core/control_server.c; the client call is below
 * (cli/control_client.c).
 */
#ifndef KTLSGATE_CONTROL_H
#define KTLSGATE_CONTROL_H

#include <stddef.h>

#include "ktlsgate/compiler.h"

#define KG_CONTROL_LINE_MAX 4096

/* Called for every data line of the reply (without the newline). */
typedef void (*kg_control_line_cb)(const char *line, void *arg);

/*
 * Send `request` (no newline) to the daemon at socket_path and read the reply.
 * Returns 0 on "OK" (its text, if any, copied to final), KG_E_DENIED on "ERR" (the
 * message copied to final), KG_E_NOTFOUND if no daemon listens there (socket missing
 * or connection refused), KG_E_IO (errno says why: EACCES for a caller the socket's
 * mode shuts out, ETIMEDOUT after timeout_ms) or KG_E_PROTO otherwise.
 */
int kg_control_call(const char *socket_path, const char *request, kg_control_line_cb cb,
		    void *arg, char *final, size_t final_len, int timeout_ms) KG_MUST_USE;

#endif
