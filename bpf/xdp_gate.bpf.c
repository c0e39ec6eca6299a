// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only)
/*
 * xdp_gate.bpf.c - the XDP gate in front of ktlsgated's listeners.
 *
 * For TCP to a gated port (kg_ports), in this order:
 *   1. source in the allow-list (LPM trie of CIDRs)      -> pass, never dropped;
 *   2. source in the deny map and not expired             -> drop (dropped-deny);
 *      an expired entry is deleted here, so entries expire without a sweeper;
 *   3. a new connection (SYN without ACK) over the source's SYN rate -> drop
 *      (dropped-rate): a reconnect storm is paced, not fed to the handshake workers.
 * Everything else (other ports, UDP, ICMP, ARP, non-first fragments, IPv6 with
 * extension headers before TCP) passes untouched. Maps and their layout:
 * include/ktlsgate/xdp_gate_maps.h. Verdict counters are per-CPU (no atomics here).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ktlsgate/xdp_gate_maps.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KG_XDP_DENY_MAX);
	__type(key, struct kg_xdp_addr);
	__type(value, struct kg_xdp_deny);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kg_deny SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, KG_XDP_ALLOW_MAX);
	__type(key, struct kg_xdp_lpm_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kg_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KG_XDP_RATE_MAX);
	__type(key, struct kg_xdp_addr);
	__type(value, struct kg_xdp_rate);
} kg_rate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KG_XDP_PORTS_MAX);
	__type(key, __u32);
	__type(value, __u8);
} kg_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kg_xdp_cfg);
} kg_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KG_XDP_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kg_stats SEC(".maps");

static __always_inline int verdict(__u32 stat, int action)
{
	__u64 *n = bpf_map_lookup_elem(&kg_stats, &stat);

	if (n)
		*n += 1;
	return action;
}

/* GCRA: true when a SYN from this source at `now` is within rate + burst. */
static __always_inline bool syn_allowed(const struct kg_xdp_addr *src, __u64 now)
{
	__u32 zero = 0;
	struct kg_xdp_cfg *cfg = bpf_map_lookup_elem(&kg_cfg, &zero);
	struct kg_xdp_rate *r, fresh;
	__u64 tat;

	if (!cfg || cfg->syn_interval_ns == 0)
		return true;
	r = bpf_map_lookup_elem(&kg_rate, src);
	if (!r) {
		fresh.tat_ns = now + cfg->syn_interval_ns;
		bpf_map_update_elem(&kg_rate, src, &fresh, BPF_ANY);
		return true;
	}
	tat = r->tat_ns > now ? r->tat_ns : now;
	if (tat - now > cfg->syn_burst_ns)
		return false;
	/* A race between CPUs may lose one increment: pacing stays approximate, which
	 * is fine for a storm brake and needs no lock. */
	r->tat_ns = tat + cfg->syn_interval_ns;
	return true;
}

SEC("xdp")
int gate_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct kg_xdp_lpm_key lpm = {};
	struct kg_xdp_deny *deny;
	struct tcphdr *tcp;
	__u32 port;
	__u16 proto;
	__u8 *gated;
	__u64 now;
	void *l3;

	if ((void *)(eth + 1) > end)
		return verdict(KG_XDP_PASSED, XDP_PASS);
	proto = eth->h_proto;
	l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > end)
			return verdict(KG_XDP_PASSED, XDP_PASS);
		proto = vh->h_vlan_encapsulated_proto;
		l3 = vh + 1;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl < 5 ||
		    (ip->frag_off & bpf_htons(IP_OFFSET)))
			return verdict(KG_XDP_PASSED, XDP_PASS);
		tcp = (void *)ip + ip->ihl * 4;
		lpm.addr.a[10] = 0xff;
		lpm.addr.a[11] = 0xff;
		__builtin_memcpy(&lpm.addr.a[12], &ip->saddr, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return verdict(KG_XDP_PASSED, XDP_PASS);
		tcp = (void *)(ip6 + 1);
		__builtin_memcpy(lpm.addr.a, &ip6->saddr, 16);
	} else {
		return verdict(KG_XDP_PASSED, XDP_PASS);
	}
	if ((void *)(tcp + 1) > end)
		return verdict(KG_XDP_PASSED, XDP_PASS);
	port = bpf_ntohs(tcp->dest);
	gated = bpf_map_lookup_elem(&kg_ports, &port);
	if (!gated || !*gated)
		return verdict(KG_XDP_PASSED, XDP_PASS);

	lpm.prefixlen = 128;
	if (bpf_map_lookup_elem(&kg_allow, &lpm))
		return verdict(KG_XDP_PASSED, XDP_PASS);
	now = bpf_ktime_get_coarse_ns();
	deny = bpf_map_lookup_elem(&kg_deny, &lpm.addr);
	if (deny) {
		if (deny->expires_ns == 0 || now < deny->expires_ns)
			return verdict(KG_XDP_DROPPED_DENY, XDP_DROP);
		bpf_map_delete_elem(&kg_deny, &lpm.addr);
	}
	if (tcp->syn && !tcp->ack && !syn_allowed(&lpm.addr, now))
		return verdict(KG_XDP_DROPPED_RATE, XDP_DROP);
	return verdict(KG_XDP_PASSED, XDP_PASS);
}
