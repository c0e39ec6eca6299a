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
 * A retransmission that overlaps bytes already taken is trimmed to its new bytes first
 * (trim_overlap()).
 * Back-pressure (relay_plain.c, "Back-pressure"): every KG_SM_CHECK_BYTES a socket takes,
 * the verdict estimates the direction's backlog and, if large, notes its cookie in its
 * worker's ring (kg_sm_notices) and rings kg_sm_bell;
 * a socket with a kg_sm_hold entry has its skbs kept (SK_PASS, on its own psock) for the
 * daemon, until the release the daemon asks for can be granted in order.
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

/* Mmapped by the daemon (BPF_F_MMAPABLE): the workers read their notices without a
 * system call. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KG_SM_MAX_WORKERS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct kg_sm_notices);
} kg_sm_notices SEC(".maps");

/* The doorbell: each notice also puts its owner here, which wakes the daemon's main
 * thread (the ring's fd is in its epoll), which wakes that worker: a sleeping worker
 * sees the notice at once, not at its next deadline. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} kg_sm_bell SEC(".maps");

/* Sockets whose bytes the verdict keeps (SK_PASS: queued on the socket's own psock,
 * charged to its receive memory, read by the daemon with recv()): a source whose sink
 * did not drain (relay_plain.c, "Back-pressure"; struct kg_sm_hold). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KG_SM_MAX_SOCKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct kg_sm_hold);
} kg_sm_hold SEC(".maps");

/* The kernel's own skb behind the program's context (Linux 6.2+): where the verdict
 * reads the skb's TCP sequence number. Without it the program does not load and
 * plain sessions use splice (sockmap.c). */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* The kernel fields read, as CO-RE views ("___kg": relocated to struct sk_buff and
 * struct tcp_sock of the running kernel): naming the full types would copy their whole
 * type graph into the object's BTF (16 KiB -> 660 KiB). */
struct sk_buff___kg {
	char cb[48];
} __attribute__((preserve_access_index));

struct tcp_sock___kg {
	__u32 copied_seq;
	__u64 bytes_acked;
	__u32 write_seq;
	__u32 snd_una;
} __attribute__((preserve_access_index));

/* bpf_skc_to_tcp_sock() declared without its kernel return type: the declaration in
 * bpf_helper_defs.h names struct tcp_sock, whose whole definition clang then writes
 * into the object's debug info (and the skeleton embeds it: 16 KiB -> 650 KiB). */
static void *(*const kg_skc_to_tcp_sock)(void *sk) = (void *)BPF_FUNC_skc_to_tcp_sock;

/* TCP's control block in skb->cb (struct tcp_skb_cb): the first field is the
 * sequence number of the skb's first byte. */
struct tcp_skb_cb___kg {
	__u32 seq;
};

/* bpf_skb_adjust_room() takes at most this much off an sk_skb's head per call. */
#define KG_SM_TRIM_STEP 0xfff
/* Calls one verdict may make: 256 * 4095 bytes, more than any skb TCP queues. */
#define KG_SM_TRIM_CALLS 256

/*
 * Cut from the head of skb the bytes this socket has already taken. TCP queues a
 * retransmitted segment that overlaps bytes it already received untrimmed (a reader
 * skips the overlap at its read position: tcp_recv_skb()'s offset), but the
 * parser-less verdict is handed whole skbs (tcp_read_skb()), so without this the
 * overlap reached the peer twice and an MQTT stream lost its framing. The socket's
 * position is kept in p->next_seq, started from copied_seq at the first skb (what
 * the daemon read with recv() before the insert, maybe part of this very skb) and
 * moved to each skb's end; copied_seq itself is no use later: while the socket is
 * held it lags behind what the verdict has taken. The kernel charges copied_seq by
 * the skb's length after the verdict (tcp_eat_skb()), so a trimmed skb keeps it
 * right. 0, or -1 when the skb could not be trimmed (the caller drops it: the
 * session's stream is then broken, and its counters say so).
 */
static __always_inline int trim_overlap(struct __sk_buff *skb, struct kg_sm_peer *p)
{
	struct sk_buff___kg *kskb = bpf_cast_to_kern_ctx(skb);
	__u32 seq = ((struct tcp_skb_cb___kg *)kskb->cb)->seq;
	__u32 end = seq + skb->len;
	__s32 over;

	if (!p->seq_known) {
		struct bpf_sock *sk = skb->sk;
		struct tcp_sock___kg *tp;

		if (sk == NULL)
			return -1;
		tp = kg_skc_to_tcp_sock(sk);
		if (tp == NULL)
			return -1;
		p->next_seq = tp->copied_seq;
		p->seq_known = 1;
	}
	over = (__s32)(p->next_seq - seq);
	if ((__s32)(end - p->next_seq) > 0)
		p->next_seq = end;
	if (over <= 0)
		return 0;
	if ((__u32)over > skb->len)
		over = (__s32)skb->len;
	p->trimmed += (__u32)over;
	for (int i = 0; i < KG_SM_TRIM_CALLS && over > 0; i++) {
		__s32 step = over > KG_SM_TRIM_STEP ? KG_SM_TRIM_STEP : over;

		if (bpf_skb_adjust_room(skb, -step, 0, 0) != 0)
			return -1;
		over -= step;
	}
	return over > 0 ? -1 : 0;
}

/* The direction's backlog as the daemon measures it (relay_plain.c sm_backlog()): what
 * this socket's verdict took (redirected, and kept while held) minus what its peer,
 * the sink, has had written into its send queue since the insert (tcpi_bytes_acked +
 * SIOCOUTQ: bytes_acked + write_seq - snd_una, read without the peer's lock, so an
 * estimate). Past KG_SM_NOTICE_BACKLOG, or when the peer cannot be read, true: let the
 * daemon look. */
static __always_inline bool backlogged(struct kg_sm_peer *p)
{
	__u64 peer = p->peer_cookie, taken = p->bytes + p->passed, written;
	struct bpf_sock *sk = bpf_map_lookup_elem(&kg_sm_targets, &peer);
	struct tcp_sock___kg *tp;
	bool big = true;

	if (sk == NULL)
		return true;
	tp = kg_skc_to_tcp_sock(sk);
	if (tp != NULL) {
		written = tp->bytes_acked + (__u32)(tp->write_seq - tp->snd_una) - p->sink_base;
		if ((__s64)written < 0)   /* fields read mid-update */
			written = 0;
		big = taken > written + KG_SM_NOTICE_BACKLOG;
	}
	bpf_sk_release(sk);
	return big;
}

/* Ask the socket's worker to measure the session's backlog (sockmap_maps.h) when the
 * verdict's own estimate says it is large: a stream whose sink keeps up never wakes
 * the daemon. One socket's verdict runs under its socket lock, so check_at has one
 * writer; a ring slot may be read before it is written (the worker then misses one
 * notice, and the next one of a session still backlogged comes KG_SM_CHECK_BYTES
 * later). */
static __always_inline void notice(struct kg_sm_peer *p, __u64 cookie)
{
	struct kg_sm_notices *n;
	__u32 owner = p->owner;
	__u64 i;

	if (p->bytes < p->check_at)
		return;
	p->check_at = p->bytes + KG_SM_CHECK_BYTES;
	if (!backlogged(p))
		return;
	n = bpf_map_lookup_elem(&kg_sm_notices, &owner);
	if (n == NULL)
		return;
	i = __sync_fetch_and_add(&n->head, 1);
	n->cookie[i & (KG_SM_NOTICE_SLOTS - 1)] = cookie;
	/* A full ring (the main thread behind) loses a ring, not the notice: the worker
	 * reads its notices whenever it wakes. */
	bpf_ringbuf_output(&kg_sm_bell, &owner, sizeof(owner), 0);
}

SEC("sk_skb")
int kg_sm_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct kg_sm_peer *p = bpf_map_lookup_elem(&kg_sm_peer, &cookie);
	struct kg_sm_hold *h;
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
	if (trim_overlap(skb, p) != 0) {
		__sync_fetch_and_add(&p->drops, 1);
		return SK_DROP;
	}
	/* Nothing new in it (an overlap the trim emptied): nothing to relay. */
	if (skb->len == 0)
		return SK_DROP;
	/* Held: kept on this socket, in order, behind everything redirected before (this
	 * socket's verdicts run one at a time); counted in p->passed, not p->bytes. The
	 * release asked for is granted here, once every kept byte is in the sink. */
	h = bpf_map_lookup_elem(&kg_sm_hold, &cookie);
	if (h != NULL) {
		if (!h->release || h->flushed != p->passed) {
			__sync_fetch_and_add(&p->passed, skb->len);
			return SK_PASS;
		}
		bpf_map_delete_elem(&kg_sm_hold, &cookie);
	}
	peer = p->peer_cookie;
	/* flags 0: the peer's egress, i.e. sent to the other end of the session */
	rc = bpf_sk_redirect_hash(skb, &kg_sm_targets, &peer, 0);
	if (rc != SK_PASS) {
		__sync_fetch_and_add(&p->drops, 1);
		return SK_DROP;
	}
	__sync_fetch_and_add(&p->bytes, skb->len);
	p->last_ns = bpf_ktime_get_ns();
	notice(p, cookie);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
