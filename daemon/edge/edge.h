/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Part edge (daemon/edge/): the user side of the XDP gate and of worker steering.
 * edge.c (load, pin, attach and feed the gate, this header), edge_policy.c (when a
 * refusing source is denied in XDP, pure), edge_conf.c (the [edge] section and
 * `ktlsgate block` parsing; edge_conf.h), steer.c (SO_REUSEPORT steering, steer.h).
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
#include <stdio.h>
#include <sys/socket.h>

struct kg_config;
struct kg_edge;

/* Start the gate for cfg->edge (copied). Returns a gate, active or not (the reason is
 * logged once and kept for metrics), or NULL only when out of memory. */
struct kg_edge *kg_edge_start(const struct kg_config *cfg);
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

/* Append the gate's metrics in Prometheus text format to f: gate state, XDP packets
 * by verdict (per-CPU counters summed), deny-map entries, entries added by reason,
 * attached interfaces with their mode. Any thread. Returns 0 or -1 (write error). */
int kg_edge_metrics_write(struct kg_edge *e, FILE *f);

#endif
