// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only)
/*
 * steer.bpf.c - SK_REUSEPORT program: picks the worker whose listening socket gets a
 * new TCP connection, instead of the kernel's plain hash over the group.
 *
 * The SYN's destination port and family name the group (kg_groups); the worker is
 * chosen by the flow hash (stable per flow, independent of the order in which the
 * sockets joined the group) or as the worker with the fewest handshakes in flight
 * (kg_load, written by the workers). Anything unexpected (no group, empty slot, a
 * socket from another group) returns SK_PASS without a selection, and the kernel
 * falls back to its own hash: steering can never refuse a connection.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ktlsgate/xdp_gate_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, KG_STEER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} kg_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KG_STEER_MAX_GROUPS * 2);
	__type(key, struct kg_steer_group_key);
	__type(value, __u32);
} kg_groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kg_steer_cfg);
} kg_steer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KG_STEER_MAX_WORKERS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} kg_load SEC(".maps");

SEC("sk_reuseport")
int steer_reuseport(struct sk_reuseport_md *md)
{
	void *data = md->data, *end = md->data_end;
	struct kg_steer_group_key gk = {};
	struct tcphdr *th = data;
	struct kg_steer_cfg *cfg;
	__u32 zero = 0, *group, n, pick, key;

	if (md->ip_protocol != IPPROTO_TCP || (void *)(th + 1) > end)
		return SK_PASS;
	cfg = bpf_map_lookup_elem(&kg_steer, &zero);
	if (!cfg || cfg->n_workers == 0 || cfg->n_workers > KG_STEER_MAX_WORKERS)
		return SK_PASS;
	n = cfg->n_workers;
	gk.port = bpf_ntohs(th->dest);
	gk.eth_proto = bpf_ntohs(md->eth_protocol);
	group = bpf_map_lookup_elem(&kg_groups, &gk);
	if (!group || *group >= KG_STEER_MAX_GROUPS)
		return SK_PASS;
	pick = md->hash % n;
	if (cfg->mode == KG_STEER_BPF_LEAST_LOADED) {
		__u64 best = ~0ull;
		__u32 start = pick;

		/* Start at the hash's worker so equal loads spread like the hash does. */
		for (__u32 i = 0; i < KG_STEER_MAX_WORKERS; i++) {
			__u32 w = start + i;
			__u64 *load;

			if (i >= n)
				break;
			if (w >= n)
				w -= n;
			load = bpf_map_lookup_elem(&kg_load, &w);
			if (load && *load < best) {
				best = *load;
				pick = w;
			}
		}
	}
	key = *group * KG_STEER_MAX_WORKERS + pick;
	/* On failure (empty slot: a worker not started yet) the kernel's hash picks. */
	bpf_sk_select_reuseport(md, &kg_socks, &key, 0);
	return SK_PASS;
}
