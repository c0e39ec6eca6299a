/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Part edge (daemon/edge/): the user side of the XDP gate and of worker steering.
 * edge.c (load, pin, attach and feed the gate, this header), edge_policy.c (when a
 * refusing source is denied in XDP, pure), edge_conf.c (the [edge] section and
 * `ktlsgate block` parsing; edge_conf.h), edge_block.c (`ktlsgate block` on the maps
 * by fd, for the CLI's pins and the daemon alike; edge_block.h), steer.c
 * (SO_REUSEPORT steering, steer.h).
 * The BPF programs are in bpf/; both sides share their map structs through
 * include/ktlsgate/xdp_gate_maps.h.
 * Way in: this header. Uses ops and policy's reasons; never the connection.
 */
/*
 * edge.h - the XDP gate's user side: loads bpf/xdp_gate.bpf.c (skeleton), pins its
 * deny / allow / stats maps under [edge] pin_dir for `ktlsgate block`, attaches it to
 * the configured interfaces (native mode where the driver has it, else generic),
 * follows link events (libnl cache manager, own thread) so an interface that appears
 * later is attached, and detaches on stop. Workers report refusals through
 * kg_edge_note_refusal(); edge_policy.c decides when a source is denied. Also owns
 * worker steering (steer.h) so the daemon holds one pointer for both.
 * Never fatal: without CAP_BPF / XDP the gate is inactive and says why, and every
 * function accepts an inactive gate or NULL. Thread-safe after kg_edge_start().
 */
#ifndef KTLSGATE_EDGE_H
#define KTLSGATE_EDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "edge/edge_block.h"
#include "edge/edge_conf.h"

struct kg_config;
struct kg_edge;

/* Start the gate for cfg->edge (copied). Returns a gate, active or not (the reason is
 * logged once and kept for metrics), or NULL only when out of memory. */
struct kg_edge *kg_edge_start(const struct kg_config *cfg);
/* The same, at a handover (core/handover.h): take_link(arg, ifname) returns the bpf_link
 * fd the previous process attached to that interface (-1: none), which the gate keeps
 * attached and points at its own program (bpf_link_update: no moment without a gate);
 * the pinned maps are reused as at any start. Links no interface takes are closed. */
struct kg_edge *kg_edge_start_with(const struct kg_config *cfg,
				   int (*take_link)(void *arg, const char *ifname), void *arg);
/* The attached links' fds (borrowed) and interface names, at most max: what a handover
 * passes. Returns how many. */
size_t kg_edge_link_fds(struct kg_edge *e, int *fds, char (*names)[KG_EDGE_IFNAME], size_t max);
/* Detach from every interface, stop the link thread, free. Pinned maps stay (the
 * deny list survives a restart). NULL is fine. */
void kg_edge_stop(struct kg_edge *e);

/* True while the program is loaded (attached or waiting for a configured link). */
bool kg_edge_active(const struct kg_edge *e);

/*
 * A device from `src` was refused; `reason` is an enum kg_reason. Verification and
 * policy refusals count toward a deny (edge_policy.h); others are ignored, and so
 * are allow-listed sources. Cheap (one mutex, a table probe; a map update only when
 * the source crosses the threshold). Any thread.
 */
void kg_edge_note_refusal(struct kg_edge *e, const struct sockaddr *src, socklen_t len,
			  int reason);

/*
 * Worker steering ([edge] steer = hash | least_loaded; see steer.h). Main thread, at
 * start, once per worker per listen address (group = index of the address in
 * [daemon] listen): registers the worker's SO_REUSEPORT socket with the SK_REUSEPORT
 * program, loading it on the first call. Returns 1 when steering is on, 0 when the
 * kernel's own hash stays in charge (steer = kernel, or the program could not be
 * loaded: said once in the log), -1 on a registration error (logged; the kernel's
 * hash still serves the socket).
 */
int kg_edge_steer_listener(struct kg_edge *e, unsigned n_workers, unsigned group,
			   unsigned worker, int fd);
/* A handshake began (+1) / ended (-1) on worker: least_loaded reads these. Any
 * thread, lock-free; a no-op without steering. */
void kg_edge_handshake(struct kg_edge *e, unsigned worker, int delta);

/*
 * `ktlsgate block` served by the daemon (control verbs block-add, block-remove,
 * block-list, block-stats in control.h) for a CLI that cannot open the pinned maps: the
 * packaged unit's user cannot pin under a root-only /sys/fs/bpf, and a user without
 * CAP_BPF cannot open pins at all. The operations and their meaning are the pins' ones
 * (edge_block.h), on the maps this gate holds. Each returns 0, or a negative errno with
 * why set: -ENODEV "the XDP gate is not active: <why it is not>", -ENOENT from
 * kg_edge_gate_unblock() when addr was not blocked, another from bpf(2). Main thread or any.
 */
/* Deny addr for secs seconds (0: until removed); *allow_listed: the [edge] allow list
 * covers it, so the gate will not drop it anyway. */
int kg_edge_gate_block(struct kg_edge *e, const uint8_t addr[16], uint64_t secs,
		       bool *allow_listed, char *why, size_t whylen);
int kg_edge_gate_unblock(struct kg_edge *e, const uint8_t addr[16], char *why, size_t whylen);
/* cb for every live deny entry (kg_edge_block_each()); a non-zero cb value stops the
 * walk and is returned. */
int kg_edge_gate_list(struct kg_edge *e,
		      int (*cb)(const struct kg_edge_block_entry *en, void *arg), void *arg,
		      char *why, size_t whylen);
/* XDP packets by verdict, per-CPU counters summed. */
int kg_edge_gate_verdicts(struct kg_edge *e, uint64_t sum[KG_XDP_STAT_MAX], char *why,
			  size_t whylen);

/* The kernel's ids of the maps this gate holds (deny, allow, stats), so the CLI can tell
 * the gate's pins from pins an earlier run left where this one could not pin. */
int kg_edge_gate_map_ids(struct kg_edge *e, uint32_t ids[3], char *why, size_t whylen);

/* Append the gate's metrics in Prometheus text format to f: gate state, XDP packets
 * by verdict (per-CPU counters summed), deny-map entries, entries added by reason,
 * attached interfaces with their mode. Any thread. Returns 0 or -1 (write error). */
int kg_edge_metrics_write(struct kg_edge *e, FILE *f);

#endif
