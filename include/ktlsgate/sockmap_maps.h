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
};

#endif
