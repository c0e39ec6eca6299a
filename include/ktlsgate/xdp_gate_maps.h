/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * xdp_gate_maps.h - the one header the BPF programs (bpf/xdp_gate.bpf.c, bpf/steer.bpf.c)
 * and user space (edge.c, steer.c, the `ktlsgate block` CLI, tests) share: map keys
 * and values, counter indices, pin names. Fixed-width types only, explicit padding,
 * no pointers: both sides see the same bytes.
 * Addresses are 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so one map holds
 * both families and an IPv4 CIDR is an IPv6 prefix 96 bits longer.
 */
#ifndef KTLSGATE_XDP_GATE_MAPS_H
#define KTLSGATE_XDP_GATE_MAPS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>   /* user side; the BPF side has vmlinux.h */
#endif

/* Pinned under the configured pin directory ([edge] pin_dir, default below) by these
 * names (LIBBPF_PIN_BY_NAME uses the map's C name). */
#define KG_XDP_PIN_DIR_DEFAULT "/sys/fs/bpf/ktlsgate"
#define KG_XDP_MAP_DENY "kg_deny"
#define KG_XDP_MAP_ALLOW "kg_allow"
#define KG_XDP_MAP_RATE "kg_rate"
#define KG_XDP_MAP_PORTS "kg_ports"
#define KG_XDP_MAP_CFG "kg_cfg"
#define KG_XDP_MAP_STATS "kg_stats"

#define KG_XDP_DENY_MAX 65536      /* LRU: a flood of sources evicts the oldest */
#define KG_XDP_RATE_MAX 65536      /* LRU: per-source SYN buckets */
#define KG_XDP_ALLOW_MAX 1024      /* CIDRs */
#define KG_XDP_PORTS_MAX 65536     /* array indexed by TCP port (host order): u8 1 = gated */

struct kg_xdp_addr {
	__u8 a[16];                 /* network order; IPv4 mapped */
};

/* Deny entry: dropped while bpf_ktime_get_ns() (CLOCK_MONOTONIC) < expires_ns;
 * 0 means until removed. The program deletes an expired entry when it sees one. */
struct kg_xdp_deny {
	__u64 expires_ns;
	__u64 added_ns;             /* CLOCK_MONOTONIC when added (for `block list`) */
	__u32 reason;               /* enum kg_xdp_deny_reason */
	__u32 strikes;              /* how many times this source was denied (policy) */
};

enum kg_xdp_deny_reason {
	KG_XDP_DENY_MANUAL,         /* `ktlsgate block add` */
	KG_XDP_DENY_VERIFY,         /* repeated chain / certificate failures */
	KG_XDP_DENY_POLICY,         /* repeated registry policy refusals */
	KG_XDP_DENY_SOURCE_LIMIT,   /* repeatedly over the per-source connection limits */
	KG_XDP_DENY_REASON_MAX
};

/* LPM trie key for the allow-list. prefixlen counts bits of `addr` (IPv4 /n: 96 + n). */
struct kg_xdp_lpm_key {
	__u32 prefixlen;
	struct kg_xdp_addr addr;
};

/* Per-source SYN pacing, GCRA form of a token bucket: `tat` is the theoretical
 * arrival time of the next SYN; a SYN arriving earlier than tat - burst*interval is
 * over the rate and dropped. One u64 per source, no lock. */
struct kg_xdp_rate {
	__u64 tat_ns;
};

/* Single entry of the kg_cfg array (written by the loader, read per packet). */
struct kg_xdp_cfg {
	__u64 syn_interval_ns;      /* 1e9 / syn_rate; 0 disables pacing */
	__u64 syn_burst_ns;         /* (burst - 1) * interval: the tolerance */
};

enum kg_xdp_stat {
	KG_XDP_PASSED,              /* every packet passed (gated or not) */
	KG_XDP_DROPPED_DENY,
	KG_XDP_DROPPED_RATE,
	KG_XDP_STAT_MAX
};

/* --- worker steering (bpf/steer.bpf.c, daemon/edge/steer.c) ----------------------------
 * kg_socks (REUSEPORT_SOCKARRAY) holds each worker's listening socket at
 * group * KG_STEER_MAX_WORKERS + worker, where a group is one listen address (one
 * SO_REUSEPORT group); kg_groups maps the destination (port, ETH_P_IP/ETH_P_IPV6)
 * of an incoming SYN to its group. kg_load (mmapable array) is each worker's
 * handshakes in flight, updated by the workers with atomic adds on the mapping. */
#define KG_STEER_MAX_WORKERS 64
#define KG_STEER_MAX_GROUPS 16
#define KG_STEER_SLOTS (KG_STEER_MAX_WORKERS * KG_STEER_MAX_GROUPS)

enum kg_steer_mode_bpf {
	KG_STEER_BPF_HASH,          /* the flow hash picks the worker (stable per flow) */
	KG_STEER_BPF_LEAST_LOADED,  /* fewest handshakes in flight; ties by hash */
};

struct kg_steer_cfg {
	__u32 n_workers;            /* 1..KG_STEER_MAX_WORKERS */
	__u32 mode;                 /* enum kg_steer_mode_bpf */
};

struct kg_steer_group_key {
	__u16 port;                 /* host order */
	__u16 eth_proto;            /* host order: 0x0800 or 0x86DD */
};

#endif
