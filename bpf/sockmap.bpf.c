// SPDX-License-Identifier: BSD-2-Clause
/*
 * sockmap.bpf.c - the in-kernel relay of plain (non-TLS) sessions: an SK_SKB verdict
 * program (section "sk_skb": libbpf 1.1 knows no "sk_skb/verdict"; sockmap.c attaches it
 * as BPF_SK_SKB_VERDICT: no stream parser, every skb as it comes)
 * over the SOCKHASH kg_sm_socks. Each skb received on a session's socket is counted
 * in that socket's kg_sm_peer entry and redirected to the egress (send queue) of the
 * peer socket; the daemon sees neither direction's bytes. The peer is looked up in a
 * second SOCKHASH, kg_sm_targets, which has no program: the daemon puts both sockets
 * there before either goes into kg_sm_socks, so the first socket's verdict never
 * looks for a peer that is not in yet (one map would leave a window between the two
 * inserts in which, say, the broker's CONNACK finds no device and is lost). A socket
 * without a peer entry, or whose peer left the map (closed), has its skb dropped: the
 * session is ending and the daemon closes both sockets. Empty skbs (a bare FIN) are dropped: the
 * daemon passes FINs on itself, in order (relay_plain.c).
 * Keys and values: include/ktlsgate/sockmap_maps.h. Loaded by daemon/relay/sockmap.c.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "ktlsgate/sockmap_maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, KG_SM_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u64);
} kg_sm_socks SEC(".maps");

/* The redirect targets: the same sockets, in first, no verdict attached. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, KG_SM_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u64);
} kg_sm_targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KG_SM_MAX_SOCKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct kg_sm_peer);
} kg_sm_peer SEC(".maps");

SEC("sk_skb")
int kg_sm_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct kg_sm_peer *p = bpf_map_lookup_elem(&kg_sm_peer, &cookie);
	__u64 peer;
	long rc;

	/* A FIN arrives as an skb without data (tcp_read_skb hands it over too). TCP has
	 * already noted the FIN (the daemon sees EPOLLRDHUP); redirected, the empty skb
	 * would make the peer's psock report EPIPE and stop sending (sk_psock_backlog
	 * treats a 0-byte send as a hard error). */
	if (skb->len == 0)
		return SK_DROP;
	if (p == NULL)
		return SK_DROP;
	peer = p->peer_cookie;
	/* flags 0: the peer's egress, i.e. sent to the other end of the session */
	rc = bpf_sk_redirect_hash(skb, &kg_sm_targets, &peer, 0);
	if (rc != SK_PASS) {
		__sync_fetch_and_add(&p->drops, 1);
		return SK_DROP;
	}
	__sync_fetch_and_add(&p->bytes, skb->len);
	p->last_ns = bpf_ktime_get_ns();
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
