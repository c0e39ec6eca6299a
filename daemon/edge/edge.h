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
/*
 * The gate's program and the maps user space writes, in this order: what a handover
 * passes beside the links (kg_edge_gate_fds()), so that a successor that may not load
 * BPF keeps this very program (below). KG_EDGE_BUILD_ID_LEN: the program's identity,
 * the hex SHA-256 of the BPF object this build embeds, with its NUL.
 */
enum kg_edge_obj {
	KG_EDGE_OBJ_PROG, KG_EDGE_OBJ_CFG, KG_EDGE_OBJ_PORTS, KG_EDGE_OBJ_DENY,
	KG_EDGE_OBJ_ALLOW, KG_EDGE_OBJ_STATS, KG_EDGE_OBJ_MAX
};
#define KG_EDGE_BUILD_ID_LEN 65

/* What the previous process passed at a handover (core/handover.h). */
struct kg_edge_passed {
	/* the bpf_link fd it attached to ifname, now the caller's; -1: none */
	int (*take_link)(void *arg, const char *ifname);
	/* its program or map obj, now the caller's, with the build id it ran (copied to
	 * build_id); -1: none */
	int (*take_obj)(void *arg, enum kg_edge_obj obj, char build_id[KG_EDGE_BUILD_ID_LEN]);
	void *arg;
};

/*
 * kg_edge_start() at a handover: the passed links stay attached, so no packet ever meets
 * an interface without the gate. This process loads its program and swaps it into each
 * link (bpf_link_update); the pinned maps are reused as at any start. When it may not
 * load BPF (the successor `ktlsgate upgrade` starts under the unit has no CAP_PERFMON,
 * dropped after start) and the previous process ran the program this build embeds (same
 * build id), it keeps that program and its maps instead: the same code on the same
 * maps, with this config written into them. Passed objects nothing takes are closed.
 */
struct kg_edge *kg_edge_start_with(const struct kg_config *cfg, const struct kg_edge_passed *p);
/* The attached links' fds (borrowed) and interface names, at most max: what a handover
 * passes. Returns how many. */
size_t kg_edge_link_fds(struct kg_edge *e, int *fds, char (*names)[KG_EDGE_IFNAME], size_t max);
/* The program's and maps' fds (borrowed) and this build's program id, for a handover.
 * Returns 0, or -1 when no program is loaded. */
int kg_edge_gate_fds(struct kg_edge *e, int fds[KG_EDGE_OBJ_MAX],
		     char build_id[KG_EDGE_BUILD_ID_LEN]);
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
