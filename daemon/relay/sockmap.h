/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sockmap.h - the daemon's handle on bpf/sockmap.bpf.c (the in-kernel relay of plain
 * sessions): loaded once per daemon while it still holds CAP_BPF / CAP_NET_ADMIN
 * (kg_sockmap_open at start); later updates through the held map fds need no
 * capability on kernels >= 6.5 (docs/architecture.md, "Relays"). Shared read-only by
 * every worker: the maps are the kernel's, their updates are atomic, so no lock.
 * A session's two sockets go in with kg_sockmap_add() and out with kg_sockmap_remove()
 * (closing an fd also takes its socket out of the SOCKHASH; the counters entry stays
 * until removed). The relay that uses it is relay_plain.c ("sockmap").
 */
#ifndef KTLSGATE_SOCKMAP_H
#define KTLSGATE_SOCKMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"
#include "ktlsgate/sockmap_maps.h"

struct kg_sockmap;

/* What the kernel counted for one session (struct kg_sm_peer of both sockets). */
struct kg_sm_counts {
	uint64_t bytes_up, bytes_down;     /* redirected device -> broker, broker -> device */
	uint64_t last_up_ns, last_down_ns; /* CLOCK_MONOTONIC of the last skb; 0: none yet */
	uint64_t drops;                    /* skbs dropped (the peer socket had left) */
};

/* Load and attach the verdict program. NULL with why set ("no BTF", "permission
 * denied: CAP_BPF", a kernel without bpf_cast_to_kern_ctx(), i.e. before 6.2...) when
 * the kernel or our capabilities cannot: plain sessions then use splice. */
struct kg_sockmap *kg_sockmap_open(char *why, size_t whylen) KG_MUST_USE;
void kg_sockmap_free(struct kg_sockmap *sm);

/* Do map updates through the held fds still need CAP_BPF? Probed in a child process
 * that drops every capability: true on kernels before 6.5 with unprivileged BPF off
 * (every bpf(2) command checked it; the program needs 6.2, so 6.2-6.4), false from 6.5 on (only map and
 * program creation do). The daemon keeps CAP_BPF after start only when true. */
bool kg_sockmap_needs_cap(const struct kg_sockmap *sm);

/* SO_COOKIE of fd: 0 with errno on failure. */
uint64_t kg_sockmap_cookie(int fd);

/* Put a session's sockets in: peer entries first, then the SOCKHASH (from then on the
 * kernel relays new skbs), then each socket is kicked (SO_RCVLOWAT) so bytes that
 * arrived before the insert pass the verdict too, in order. cookie[0] = dev_fd's,
 * cookie[1] = be_fd's; owner is the worker whose notices (below) name the session.
 * written_at_add gets each socket's kg_sockmap_written() at the insert (the base of
 * the backlog both the verdict and the daemon measure). Both sockets get
 * TCP_NOTSENT_LOWAT (sockmap.c limit_unsent()). 0, or -errno with nothing left in the
 * maps. */
int kg_sockmap_add(struct kg_sockmap *sm, int dev_fd, int be_fd, const uint64_t cookie[2],
		   unsigned owner, uint64_t written_at_add[2]) KG_MUST_USE;
/* Bytes ever written into fd's send queue (tcpi_bytes_acked + SIOCOUTQ), or -1: what a
 * sink has taken, for the backlog (relay_plain.c, "Back-pressure"). */
int64_t kg_sockmap_written(int fd);
/* Back-pressure for a redirect that has none (struct kg_sm_hold): hold makes the
 * verdict keep the socket's bytes on its own psock (SK_PASS: charged to its receive
 * memory, so TCP's window closes on its sender; read in order with recv()) instead of
 * redirecting them. release asks to go back once `flushed` (every byte recv() returned,
 * all written to the sink) equals what the verdict kept: the verdict grants it on the
 * next skb. held says whether the hold is still there. 0 or -errno (release: -ENOENT
 * once granted). */
int kg_sockmap_hold(struct kg_sockmap *sm, uint64_t cookie) KG_MUST_USE;
int kg_sockmap_release(struct kg_sockmap *sm, uint64_t cookie, uint64_t flushed) KG_MUST_USE;
bool kg_sockmap_held(const struct kg_sockmap *sm, uint64_t cookie);
/* The cookies the verdict noticed for worker `owner` since *seen (which moves on), into
 * out; *overrun when more came than the ring holds (look at every session). Reads
 * shared memory only: no system call. */
size_t kg_sockmap_notices(const struct kg_sockmap *sm, unsigned owner, uint64_t *seen,
			  uint64_t out[KG_SM_NOTICE_SLOTS], bool *overrun);
/* The doorbell: an fd for the main thread's epoll, readable when a notice was made;
 * consume calls wake() once for each worker that got one. Main thread only. */
int kg_sockmap_bell_fd(const struct kg_sockmap *sm);
void kg_sockmap_bell_consume(struct kg_sockmap *sm, void (*wake)(unsigned owner, void *arg),
			     void *arg);
/* Take a session's entries out (either fd may be closed already). */
void kg_sockmap_remove(struct kg_sockmap *sm, const uint64_t cookie[2]);
/* The kernel's counters for the session. 0, or -errno (not in the maps). */
int kg_sockmap_read(const struct kg_sockmap *sm, const uint64_t cookie[2],
		    struct kg_sm_counts *out) KG_MUST_USE;

#endif
