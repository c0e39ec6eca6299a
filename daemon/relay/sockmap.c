/* SPDX-License-Identifier: BSD-2-Clause */
/* sockmap.c - load bpf/sockmap.bpf.c and fill its maps (contract in sockmap.h). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <linux/tcp.h>   /* struct tcp_info with tcpi_bytes_acked (glibc's lacks it) */
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "ktlsgate/sockmap_maps.h"
#include "relay/sockmap.h"
#include "sockmap.skel.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

_Static_assert(sizeof(struct kg_sm_peer) == 80, "BPF ABI");
_Static_assert(sizeof(struct kg_sm_hold) == 16, "BPF ABI");
_Static_assert(sizeof(struct kg_sm_notices) % 8 == 0, "array elements are 8-aligned");

struct kg_sockmap {
	struct sockmap_bpf *skel;
	int socks_fd, targets_fd, peer_fd;   /* kg_sm_socks, kg_sm_targets, kg_sm_peer */
	int hold_fd;                         /* kg_sm_hold */
	struct kg_sm_notices *notices;       /* kg_sm_notices, mmapped (workers read it) */
	size_t notices_len;
	struct ring_buffer *bell;            /* kg_sm_bell: which workers to wake */
	bool rung[KG_SM_MAX_WORKERS];        /* owners seen by the current consume */
};

static int on_bell(void *ctx, void *data, size_t len)
{
	struct kg_sockmap *sm = ctx;
	uint32_t owner;

	if (len >= sizeof(owner)) {
		memcpy(&owner, data, sizeof(owner));
		sm->rung[owner % KG_SM_MAX_WORKERS] = true;
	}
	return 0;
}

/* Does the running kernel's BTF lack this kfunc? false when there is no BTF to tell
 * (the load's own error says that). */
static bool kernel_lacks_kfunc(const char *name)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	bool lacks;

	if (vmlinux == NULL)
		return false;
	lacks = btf__find_by_name_kind(vmlinux, name, BTF_KIND_FUNC) < 0;
	btf__free(vmlinux);
	return lacks;
}

struct kg_sockmap *kg_sockmap_open(char *why, size_t whylen)
{
	struct kg_sockmap *sm = calloc(1, sizeof(*sm));
	const char *step = "open";
	int err;

	if (sm == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	sm->skel = sockmap_bpf__open();
	if (sm->skel == NULL) {
		err = errno;
		goto out_err;
	}
	step = "load (CAP_BPF, BTF and CONFIG_BPF_STREAM_PARSER needed)";
	err = -sockmap_bpf__load(sm->skel);
	/* The verdict trims retransmitted overlaps with the kernel's skb (sockmap.bpf.c
	 * trim_overlap()), so it cannot load without that kfunc (before 6.2): say so
	 * rather than in libbpf's words. Looked up only then: the load itself has read
	 * the kernel's BTF already. */
	if (err && kernel_lacks_kfunc("bpf_cast_to_kern_ctx")) {
		snprintf(why, whylen, "sockmap program: the kernel lacks bpf_cast_to_kern_ctx() "
			 "(Linux 6.2 and later have it), which the verdict needs to trim "
			 "retransmitted bytes");
		kg_sockmap_free(sm);
		return NULL;
	}
	if (err)
		goto out_err;
	sm->socks_fd = bpf_map__fd(sm->skel->maps.kg_sm_socks);
	sm->targets_fd = bpf_map__fd(sm->skel->maps.kg_sm_targets);
	sm->peer_fd = bpf_map__fd(sm->skel->maps.kg_sm_peer);
	sm->hold_fd = bpf_map__fd(sm->skel->maps.kg_sm_hold);
	step = "open the doorbell ring";
	sm->bell = ring_buffer__new(bpf_map__fd(sm->skel->maps.kg_sm_bell), on_bell, sm, NULL);
	if (sm->bell == NULL) {
		err = errno;
		goto out_err;
	}
	step = "map the notices";
	sm->notices_len = sizeof(struct kg_sm_notices) * KG_SM_MAX_WORKERS;
	sm->notices = mmap(NULL, sm->notices_len, PROT_READ, MAP_SHARED,
			   bpf_map__fd(sm->skel->maps.kg_sm_notices), 0);
	if (sm->notices == MAP_FAILED) {
		sm->notices = NULL;
		err = errno;
		goto out_err;
	}
	/* Attached to the map, not to a socket: every socket added later gets it. */
	step = "attach the verdict to the SOCKHASH";
	if (bpf_prog_attach(bpf_program__fd(sm->skel->progs.kg_sm_verdict), sm->socks_fd,
			    BPF_SK_SKB_VERDICT, 0) < 0) {
		err = errno;
		goto out_err;
	}
	return sm;
out_err:
	snprintf(why, whylen, "sockmap program: %s: %s", step, strerror(err));
	kg_sockmap_free(sm);
	return NULL;
}

void kg_sockmap_free(struct kg_sockmap *sm)
{
	if (sm == NULL)
		return;
	if (sm->notices != NULL)
		munmap(sm->notices, sm->notices_len);
	ring_buffer__free(sm->bell);
	sockmap_bpf__destroy(sm->skel);
	free(sm);
}

bool kg_sockmap_needs_cap(const struct kg_sockmap *sm)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct none[2];
	int status = 0;
	pid_t pid;

	memset(none, 0, sizeof(none));
	pid = fork();
	if (pid < 0)
		return true;   /* cannot tell: keep it */
	if (pid == 0) {
		uint64_t key = 0;
		struct kg_sm_peer v;

		/* ENOENT: the command ran (no entry 0); EPERM: it needs the capability */
		if (syscall(SYS_capset, &h, none) < 0)
			_exit(2);
		_exit(bpf_map_lookup_elem(sm->peer_fd, &key, &v) < 0 && errno == EPERM ? 1 : 0);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return true;
	return WEXITSTATUS(status) != 0;
}

uint64_t kg_sockmap_cookie(int fd)
{
	uint64_t c = 0;
	socklen_t len = sizeof(c);

	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len) < 0)
		return 0;
	return c;
}

/* Run the socket's data_ready: setting SO_RCVLOWAT makes TCP check whether the receive
 * queue is readable (tcp_set_rcvlowat -> tcp_data_ready), which under the psock is
 * the verdict reading the queue. Bytes queued before the insert saw no verdict: this
 * hands them to it, ahead of anything newer (tcp_read_skb takes the queue in order). */
static void kick(int fd)
{
	int one = 1;

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
}

/*
 * Keep what the kernel relay has sent but the peer's window has not taken small. The
 * verdict hands each skb to the psock of the other socket, whose work item sends it
 * (tcp_sendmsg) as far as the send buffer allows. Left at the default, that buffer
 * autotunes to megabytes: when the broker reads slower than the device writes (a
 * broker is the bottleneck of a QoS 1 stream), megabytes wait in our send queue, and
 * every window update the broker sends (each read(), each PUBACK) makes our socket
 * transmit from inside the broker's own system call: loopback delivery and ACK
 * processing billed to the broker's one thread. Measured behind mosquitto 2.0 with 64
 * KiB payloads: mosquitto CPU 1.2 s/GB instead of 0.5 s/GB behind HAProxy, and the
 * stream at 0.55x HAProxy's rate. With TCP_NOTSENT_LOWAT the send queue holds at most
 * this much unsent; the rest waits in the psock queue, which the kworker sends from
 * (that queue is charged to no socket: relay_plain.c's back-pressure bounds it).
 * docs/benchmarks.md "Issue 15"; test-relay-plain.sh t_notsent_lowat_sockmap.
 */
#define KG_SM_NOTSENT_LOWAT 4096

static void limit_unsent(int fd)
{
	int lowat = KG_SM_NOTSENT_LOWAT;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
}

int64_t kg_sockmap_written(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int outq = 0;

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked) ||
	    ioctl(fd, SIOCOUTQ, &outq) < 0)
		return -1;
	return (int64_t)ti.tcpi_bytes_acked + outq;
}

int kg_sockmap_add(struct kg_sockmap *sm, int dev_fd, int be_fd, const uint64_t cookie[2],
		   unsigned owner, uint64_t written_at_add[2])
{
	int64_t w_dev = kg_sockmap_written(dev_fd), w_be = kg_sockmap_written(be_fd);
	/* each entry's sink is the other socket */
	struct kg_sm_peer pd = { .peer_cookie = cookie[1], .check_at = KG_SM_CHECK_BYTES,
				 .owner = owner % KG_SM_MAX_WORKERS, .sink_base = (uint64_t)w_be };
	struct kg_sm_peer pb = { .peer_cookie = cookie[0], .check_at = KG_SM_CHECK_BYTES,
				 .owner = owner % KG_SM_MAX_WORKERS, .sink_base = (uint64_t)w_dev };
	uint64_t fd_dev = (uint64_t)dev_fd, fd_be = (uint64_t)be_fd;
	int err;

	if (w_dev < 0 || w_be < 0)
		return -errno;
	written_at_add[0] = (uint64_t)w_dev;
	written_at_add[1] = (uint64_t)w_be;

	/* Peer entries first: a socket in the SOCKHASH without one would drop its skbs. */
	if (bpf_map_update_elem(sm->peer_fd, &cookie[0], &pd, BPF_NOEXIST) < 0 ||
	    bpf_map_update_elem(sm->peer_fd, &cookie[1], &pb, BPF_NOEXIST) < 0)
		goto fail;
	/* Both as redirect targets before either meets the verdict: whichever side's
	 * bytes come first after its insert below, the other is there to take them. */
	if (bpf_map_update_elem(sm->targets_fd, &cookie[0], &fd_dev, BPF_NOEXIST) < 0 ||
	    bpf_map_update_elem(sm->targets_fd, &cookie[1], &fd_be, BPF_NOEXIST) < 0)
		goto fail;
	/* Then under the verdict; the order no longer matters for the redirect. */
	if (bpf_map_update_elem(sm->socks_fd, &cookie[1], &fd_be, BPF_NOEXIST) < 0 ||
	    bpf_map_update_elem(sm->socks_fd, &cookie[0], &fd_dev, BPF_NOEXIST) < 0)
		goto fail;
	limit_unsent(dev_fd);
	limit_unsent(be_fd);
	kick(dev_fd);
	kick(be_fd);
	return 0;
fail:
	err = errno;
	kg_sockmap_remove(sm, cookie);
	return -err;
}

int kg_sockmap_hold(struct kg_sockmap *sm, uint64_t cookie)
{
	struct kg_sm_hold h = { 0 };

	return bpf_map_update_elem(sm->hold_fd, &cookie, &h, BPF_NOEXIST) < 0 ? -errno : 0;
}

int kg_sockmap_release(struct kg_sockmap *sm, uint64_t cookie, uint64_t flushed)
{
	struct kg_sm_hold h = { .flushed = flushed, .release = 1 };

	/* BPF_EXIST: an entry the verdict has deleted (released) is not made again */
	return bpf_map_update_elem(sm->hold_fd, &cookie, &h, BPF_EXIST) < 0 ? -errno : 0;
}

bool kg_sockmap_held(const struct kg_sockmap *sm, uint64_t cookie)
{
	struct kg_sm_hold h;

	return bpf_map_lookup_elem(sm->hold_fd, &cookie, &h) == 0;
}

int kg_sockmap_bell_fd(const struct kg_sockmap *sm)
{
	return ring_buffer__epoll_fd(sm->bell);
}

void kg_sockmap_bell_consume(struct kg_sockmap *sm, void (*wake)(unsigned owner, void *arg),
			     void *arg)
{
	memset(sm->rung, 0, sizeof(sm->rung));
	(void)ring_buffer__consume(sm->bell);
	for (unsigned o = 0; o < KG_SM_MAX_WORKERS; o++)
		if (sm->rung[o])
			wake(o, arg);
}

size_t kg_sockmap_notices(const struct kg_sockmap *sm, unsigned owner, uint64_t *seen,
			  uint64_t out[KG_SM_NOTICE_SLOTS], bool *overrun)
{
	const struct kg_sm_notices *n = &sm->notices[owner % KG_SM_MAX_WORKERS];
	uint64_t head = __atomic_load_n(&n->head, __ATOMIC_ACQUIRE), from = *seen;
	size_t k = 0;

	*overrun = head - from > KG_SM_NOTICE_SLOTS;
	if (*overrun)
		from = head - KG_SM_NOTICE_SLOTS;
	for (uint64_t i = from; i < head; i++)
		out[k++] = __atomic_load_n(&n->cookie[i & (KG_SM_NOTICE_SLOTS - 1)], __ATOMIC_RELAXED);
	*seen = head;
	return k;
}

void kg_sockmap_remove(struct kg_sockmap *sm, const uint64_t cookie[2])
{
	for (int i = 0; i < 2; i++) {
		(void)bpf_map_delete_elem(sm->socks_fd, &cookie[i]);
		(void)bpf_map_delete_elem(sm->targets_fd, &cookie[i]);
		(void)bpf_map_delete_elem(sm->peer_fd, &cookie[i]);
		(void)bpf_map_delete_elem(sm->hold_fd, &cookie[i]);
	}
}

int kg_sockmap_read(const struct kg_sockmap *sm, const uint64_t cookie[2], struct kg_sm_counts *out)
{
	struct kg_sm_peer d, b;

	if (bpf_map_lookup_elem(sm->peer_fd, &cookie[0], &d) < 0 ||
	    bpf_map_lookup_elem(sm->peer_fd, &cookie[1], &b) < 0)
		return -errno;
	out->bytes_up = d.bytes;
	out->bytes_down = b.bytes;
	out->last_up_ns = d.last_ns;
	out->last_down_ns = b.last_ns;
	out->drops = d.drops + b.drops;
	return 0;
}
