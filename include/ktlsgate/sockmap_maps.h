/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sockmap_maps.h - what bpf/sockmap.bpf.c and user space (daemon/relay/sockmap.c, the
 * tests) share: the maps' keys and values. Fixed-width types only, explicit padding,
 * no pointers: both sides see the same bytes.
 *
 * Every socket of a relayed plain session is known by its socket cookie (SO_COOKIE,
 * unique per boot, never reused). kg_sm_socks (SOCKHASH, the verdict attached) and
 * kg_sm_targets (SOCKHASH, nothing attached: where the verdict finds the peer) map
 * cookie -> socket;
 * kg_sm_peer (HASH) maps cookie -> struct kg_sm_peer: the other socket of the session
 * and this socket's counters (bytes received and redirected, last activity). The
 * device socket's entry counts device -> broker bytes, the broker socket's the other
 * direction.
 *
 * kg_sm_notices (ARRAY, mmapped by the daemon) has one struct kg_sm_notices per worker:
 * each time a socket's count passes its check_at, the verdict moves check_at
 * KG_SM_CHECK_BYTES on and, if its estimate of the direction's backlog passes
 * KG_SM_NOTICE_BACKLOG, appends the socket's cookie to its owner's ring. The worker reads
 * the ring from memory at its tick and measures those sessions' backlog (what the
 * verdict took and the peer socket has not yet been written), pausing a source whose
 * peer does not drain (relay_plain.c): the redirect itself has no back-pressure.
 */
#ifndef KTLSGATE_SOCKMAP_MAPS_H
#define KTLSGATE_SOCKMAP_MAPS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>   /* user side; the BPF side has vmlinux.h */
#endif

/* Sessions one daemon can relay in the kernel at once (two sockets each). Beyond it
 * the map update fails and the session falls back to splice. */
#define KG_SM_MAX_SESSIONS 65536
#define KG_SM_MAX_SOCKS (2 * KG_SM_MAX_SESSIONS)

struct kg_sm_peer {
	__u64 peer_cookie;          /* key of the other socket in kg_sm_socks */
	__u64 bytes;                /* received on this socket and redirected to the peer */
	__u64 last_ns;              /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the last skb */
	__u64 drops;                /* skbs the redirect refused (peer gone) */
	__u64 check_at;             /* bytes at which the owner is asked to look next */
	__u32 owner;                /* the worker (index into kg_sm_notices) */
	__u32 pad;
	__u64 passed;               /* bytes kept on this socket while held (kg_sm_hold) */
	/* Where the next new byte is in TCP's sequence space: the verdict trims what a
	 * retransmission overlapping bytes already taken repeats (sockmap.bpf.c
	 * trim_overlap()). Set by the verdict from the socket's copied_seq at its first
	 * skb (seq_known 0 until then); the daemon writes zeros. */
	__u32 next_seq;
	__u32 seq_known;
	__u64 trimmed;              /* bytes of overlap the verdict cut (not relayed twice) */
	/* The peer (sink) socket's bytes written (tcpi_bytes_acked + SIOCOUTQ) when the
	 * session went in: the verdict's backlog estimate starts there (notice()). */
	__u64 sink_base;
};

/* kg_sm_hold (HASH cookie -> struct kg_sm_hold, written by the daemon only): while a
 * socket has an entry the verdict keeps its bytes on its own psock (SK_PASS) for the
 * daemon to relay. The daemon asks for the release; the verdict grants it on the next
 * skb if the daemon has written to the sink every byte kept so far (flushed ==
 * passed), deleting the entry and redirecting that skb: so no redirected byte can
 * overtake a kept one. */
struct kg_sm_hold {
	__u64 flushed;              /* kept bytes the daemon has written to the sink */
	__u32 release;              /* non-zero: go back to redirecting once flushed */
	__u32 pad;
};

/* A worker's notices: head counts every notice ever appended; slot head % SLOTS holds
 * the newest cookie. A reader more than SLOTS behind looks at all its sessions. */
#define KG_SM_NOTICE_SLOTS 64   /* a power of two */
#define KG_SM_MAX_WORKERS 256
#define KG_SM_CHECK_BYTES (16ull << 20)
/* A direction whose backlog (taken by the verdict, not yet written to the sink) passes
 * KG_SM_HOLD_BYTES is held (relay_plain.c). The verdict estimates the backlog itself at
 * each check and notices only past KG_SM_NOTICE_BACKLOG: a stream whose sink keeps up
 * costs the daemon nothing. Half the hold mark, so no check the daemon would hold at is
 * filtered out by the estimate's skew (the sink's counters read a moment apart). */
#define KG_SM_HOLD_BYTES (32ull << 20)
#define KG_SM_NOTICE_BACKLOG (KG_SM_HOLD_BYTES / 2)

struct kg_sm_notices {
	__u64 head;
	__u64 cookie[KG_SM_NOTICE_SLOTS];
};

#endif
