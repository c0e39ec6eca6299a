/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * relay_plain.c - the data paths of plain sessions (io->dev_plain: `plain` and `proxy`
 * listeners, no TLS on the device side), best first:
 *
 *   sockmap  both sockets go into the SOCKHASH of bpf/sockmap.bpf.c (sockmap.c): the
 *            kernel redirects every skb to the other socket's send queue and counts
 *            it; the daemon only watches for hang-ups (EPOLLRDHUP/HUP/ERR).
 *   splice   socket -> pipe -> socket both ways (relay_ktls.c's splice machinery,
 *            without kTLS): zero copy through the daemon.
 *   plain    recv/send through io->up and io->down.
 *
 * sockmap, in order: both receive queues are first read empty (into io->up and
 * io->down: the verdict would relay an skb the CONNECT step read part of from its
 * start again, tcp_read_skb ignores the offset), then io->up (the CONNECT, what was
 * pipelined behind it, what was just read) and io->down are sent whole before the
 * sockets go in, so they are in the send queues ahead of any redirected byte; if a
 * socket cannot take them at once, start() refuses and splice takes the session.
 * Bytes that reach a socket between that last read and the insert sit in its receive
 * queue, which the psock's verdict only reads when more data arrives;
 * kg_sockmap_add() kicks each socket (SO_RCVLOWAT -> data_ready) so they go through
 * the verdict at once, ahead of anything newer. check-sockmap proves both.
 *
 * End of stream (kg_relay_finished()'s contract): "delivered" is measured, not
 * assumed: the verdict counts what it redirected from a socket, and TCP says how
 * much was written to the other (tcpi_bytes_acked + SIOCOUTQ, read in that order so
 * a racing ACK can only make it look smaller). The device's FIN reaches the broker
 * once the broker socket was written everything the verdict took from the device;
 * the broker's FIN ends the session once the device socket was written everything
 * from the broker. While the kernel still moves those last bytes the pump sets
 * io->recheck and the worker pumps again at its next tick (20 ms): the psock's queue
 * has no event of its own, and a sink that never filled up raises none either, so
 * watching EPOLLOUT would spin for as long as the tail (a redirect queue has no
 * back-pressure: a broker that bursts megabytes and closes makes a tail of megabytes,
 * ~1400 spins per MB on loopback). The FIN then follows its bytes at most a tick late.
 * Steady relaying costs the daemon nothing: no event at all until a hang-up.
 */
#include <errno.h>
#include <stddef.h>
#include <linux/tcp.h>   /* struct tcp_info with tcpi_bytes_acked (glibc's lacks it) */
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <unistd.h>

#include "ops/config.h"
#include "ops/err.h"
#include "ops/log.h"
#include "relay/relay.h"
#include "relay/sockmap.h"

/* `relay =` names the TLS paths; for plain sessions auto and ktls_tx mean "best
 * available", userspace and openssl the user-space copy (docs/config.md). */
static bool kernel_paths_allowed(const struct kg_relay_io *io)
{
	return io->cfg->relay == KG_RELAY_AUTO || io->cfg->relay == KG_RELAY_KTLS_TX;
}

/* ---- sockmap ------------------------------------------------------------------- */

/* Bytes written to fd since it was connected (see the header comment), or -1. */
static int64_t written(int fd)
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

static bool sockmap_usable(const struct kg_relay_io *io)
{
	return io->dev_plain && io->ssl == NULL && io->sockmap != NULL && kernel_paths_allowed(io) &&
	       io->dev.fd >= 0 && io->be.fd >= 0;
}

/* Read everything src has now into b (up to SM_DRAIN_MAX). 0: drained (EAGAIN seen),
 * KG_E_RESOURCE: too much or out of memory, KG_E_CLOSED: EOF or error (*eof set on
 * EOF). */
#define SM_DRAIN_MAX (256u * 1024u)
static int drain(int src, struct kg_buf *b, bool *eof)
{
	for (;;) {
		ssize_t n;

		if (b->len >= SM_DRAIN_MAX)
			return KG_E_RESOURCE;
		if (kg_buf_reserve(b, b->len + KG_RELAY_BUF) < 0)
			return KG_E_RESOURCE;
		n = recv(src, b->data + b->len, b->cap - b->len, MSG_DONTWAIT);
		if (n > 0) {
			b->len += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n == 0)
			*eof = true;
		return KG_E_CLOSED;
	}
}

/* Send all of b to dst now, or fail (KG_E_AGAIN: dst is full). */
static int flush_all(struct kg_relay_io *io, int dst, struct kg_buf *b, enum kg_dir d)
{
	while (b->off < b->len) {
		ssize_t w = send(dst, b->data + b->off, b->len - b->off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? KG_E_AGAIN : KG_E_IO;
		b->off += (size_t)w;
		if (d == KG_DIR_UP)
			io->bytes_up += (uint64_t)w;
		else
			io->bytes_down += (uint64_t)w;
		kg_metric_add(&io->metrics->bytes[d], (uint64_t)w);
	}
	b->off = b->len = 0;
	kg_buf_release(b);
	return 0;
}

static int sockmap_start(struct kg_relay_io *io)
{
	uint64_t c[2] = { kg_sockmap_cookie(io->dev.fd), kg_sockmap_cookie(io->be.fd) };
	int64_t w_dev, w_be;
	int rc;

	if (c[0] == 0 || c[1] == 0)
		return KG_E_INVALID;
	/*
	 * Empty both receive queues first. The verdict reads a queue whole skb by whole
	 * skb (tcp_read_skb) and ignores how much of the first one recv() already took:
	 * an skb the CONNECT step read half of would be relayed again from its start.
	 * After recv() said EAGAIN no skb is half read; what arrives later is whole.
	 */
	rc = drain(io->dev.fd, &io->up, &io->dev_eof);
	if (rc == 0)
		rc = drain(io->be.fd, &io->down, &io->be_eof);
	/* Then what was read, whole: nothing the kernel redirects may overtake it. */
	if (rc == 0)
		rc = flush_all(io, io->be.fd, &io->up, KG_DIR_UP);
	if (rc == 0)
		rc = flush_all(io, io->dev.fd, &io->down, KG_DIR_DOWN);
	if (rc < 0) {
		/* io stays consistent for the next rung: what was read is in io->up/down. */
		kg_log_debug("conn=%llu: sockmap: %s: splice instead", (unsigned long long)io->cid,
			     rc == KG_E_AGAIN ? "a socket did not take the first bytes at once"
			     : rc == KG_E_CLOSED ? "a side closed during the switch"
			     : "more than 256 KiB queued");
		return rc == KG_E_CLOSED ? KG_E_CLOSED : KG_E_RESOURCE;
	}
	w_dev = written(io->dev.fd);
	w_be = written(io->be.fd);
	if (w_dev < 0 || w_be < 0)
		return KG_E_IO;
	rc = kg_sockmap_add(io->sockmap, io->dev.fd, io->be.fd, c);
	if (rc < 0) {
		kg_log_debug("conn=%llu: sockmap: cannot add the session: %s: splice instead",
			     (unsigned long long)io->cid, strerror(-rc));
		return KG_E_RESOURCE;
	}
	/* Point of no return: the kernel relays both directions from here. */
	io->sm_cookie[0] = c[0];
	io->sm_cookie[1] = c[1];
	io->sm_base_up = io->bytes_up;
	io->sm_base_down = io->bytes_down;
	io->sm_wbase[0] = (uint64_t)w_dev;
	io->sm_wbase[1] = (uint64_t)w_be;
	io->sm_in = true;
	return KG_OK;
}

bool kg_sockmap_session_sync(struct kg_relay_io *io, bool *up_moved)
{
	struct kg_sm_counts k;
	uint64_t up, down;
	bool moved = false;

	if (up_moved)
		*up_moved = false;
	if (!io->sm_in || kg_sockmap_read(io->sockmap, io->sm_cookie, &k) < 0)
		return false;
	up = io->sm_base_up + k.bytes_up;
	down = io->sm_base_down + k.bytes_down;
	if (up > io->bytes_up) {
		kg_metric_add(&io->metrics->bytes[KG_DIR_UP], up - io->bytes_up);
		io->bytes_up = up;
		moved = true;
		if (up_moved)
			*up_moved = true;
	}
	if (down > io->bytes_down) {
		kg_metric_add(&io->metrics->bytes[KG_DIR_DOWN], down - io->bytes_down);
		io->bytes_down = down;
		moved = true;
	}
	return moved;
}

void kg_sockmap_session_end(struct kg_relay_io *io)
{
	struct kg_sm_counts k;

	if (!io->sm_in)
		return;
	(void)kg_sockmap_session_sync(io, NULL);
	/* Drops lose bytes of a live stream: never expected, so counted and said. */
	if (kg_sockmap_read(io->sockmap, io->sm_cookie, &k) == 0 && k.drops > 0) {
		kg_metric_add(&io->metrics->sockmap_drops, k.drops);
		kg_log_warnx("conn=%llu dev=%s: sockmap dropped %llu packet(s) of this session",
			     (unsigned long long)io->cid, io->device_id, (unsigned long long)k.drops);
	}
	kg_sockmap_remove(io->sockmap, io->sm_cookie);
	io->sm_in = false;
}

/* The socket's pending error (0: none), read and cleared. */
static int sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

/* The peer of fd has sent its FIN (or the socket is gone): nothing consumed. */
static bool hung_up(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* Has every byte the verdict took from direction d's source reached its sink's send
 * queue? Read after the source's TCP_INFO (sync below), which takes the source's socket
 * lock: a verdict still running for the skbs before its FIN has finished by then. */
static bool sm_delivered(struct kg_relay_io *io, enum kg_dir d)
{
	int sink = d == KG_DIR_UP ? io->be.fd : io->dev.fd;
	uint64_t base = d == KG_DIR_UP ? io->sm_wbase[1] : io->sm_wbase[0];
	uint64_t want = d == KG_DIR_UP ? io->bytes_up - io->sm_base_up
				       : io->bytes_down - io->sm_base_down;
	int64_t w = written(sink);

	return w >= 0 && (uint64_t)w - base >= want;
}

static enum kg_reason sockmap_pump(struct kg_relay_io *io)
{
	enum kg_reason why = KG_REASON_IO_ERROR;
	bool up_pending = false, down_pending = false;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int err;

	/* A reset or error on either side ends the session (no orderly end to wait for). */
	if ((err = sock_error(io->dev.fd)) != 0) {
		kg_log_debug("conn=%llu: sockmap: device socket: %s", (unsigned long long)io->cid,
			     strerror(err));
		return KG_REASON_PEER_CLOSED;
	}
	if ((err = sock_error(io->be.fd)) != 0) {
		kg_log_debug("conn=%llu: sockmap: broker socket: %s", (unsigned long long)io->cid,
			     strerror(err));
		return KG_REASON_BACKEND_CLOSED;
	}
	if (!io->dev_eof && hung_up(io->dev.fd))
		io->dev_eof = true;
	if (!io->be_eof && hung_up(io->be.fd))
		io->be_eof = true;
	/* Serialise with the softirq that delivered the FINs (socket locks), then count. */
	if (io->dev_eof)
		(void)getsockopt(io->dev.fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
	len = sizeof(ti);
	if (io->be_eof)
		(void)getsockopt(io->be.fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
	(void)kg_sockmap_session_sync(io, NULL);
	if (io->dev_eof && !io->be_shut)
		up_pending = !sm_delivered(io, KG_DIR_UP);
	if (io->be_eof)
		down_pending = !sm_delivered(io, KG_DIR_DOWN);
	if (kg_relay_finished(io, up_pending, down_pending, &why))
		return why;
	/* A tail still in the kernel (the psock's worker moves it): no event on our
	 * sockets says when it is done (a sink that never filled up wakes nobody), and
	 * polling EPOLLOUT would spin. Look again at the worker's next tick: the FIN
	 * follows its bytes at most a tick late, and costs one pump per tick meanwhile. */
	io->recheck = up_pending || down_pending;
	/* Only hang-ups interest us (EPOLLHUP/ERR come unasked). */
	if ((io->dev_eof ? kg_evsrc_unwatch(io->epfd, &io->dev)
			 : kg_evsrc_watch(io->epfd, &io->dev, EPOLLRDHUP)) < 0 ||
	    (io->be_eof ? kg_evsrc_unwatch(io->epfd, &io->be)
			: kg_evsrc_watch(io->epfd, &io->be, EPOLLRDHUP)) < 0)
		return KG_REASON_IO_ERROR;
	return KG_REASON_OK;
}

const struct kg_relay_ops kg_relay_sockmap = {
	.name = "sockmap",
	.mode = KG_MODE_SOCKMAP,
	.usable = sockmap_usable,
	.start = sockmap_start,
	.pump = sockmap_pump,
};

/* ---- splice -------------------------------------------------------------------- */

static bool splice_usable(const struct kg_relay_io *io)
{
	return io->dev_plain && io->ssl == NULL && io->pipes != NULL && kernel_paths_allowed(io);
}

static int nothing_to_start(struct kg_relay_io *io)
{
	/* io->up is flushed to the broker first by the first pump(). */
	(void)io;
	return KG_OK;
}

static enum kg_reason splice_pump(struct kg_relay_io *io)
{
	enum kg_reason why = KG_REASON_IO_ERROR;
	int a, b;

	do {
		a = kg_relay_splice_dir(io, KG_DIR_UP, false, &why);
		if (a < 0)
			return why;
		b = kg_relay_splice_dir(io, KG_DIR_DOWN, false, &why);
		if (b < 0)
			return why;
	} while (a > 0 || b > 0);
	if (kg_relay_finished(io, kg_relay_pending(io, KG_DIR_UP), kg_relay_pending(io, KG_DIR_DOWN),
			      &why))
		return why;
	if (kg_relay_splice_arm(io, false) < 0)
		return KG_REASON_IO_ERROR;
	return KG_REASON_OK;
}

const struct kg_relay_ops kg_relay_splice = {
	.name = "splice",
	.mode = KG_MODE_SPLICE,
	.usable = splice_usable,
	.start = nothing_to_start,
	.pump = splice_pump,
};

/* ---- plain (user-space copy) --------------------------------------------------- */

static bool plain_usable(const struct kg_relay_io *io)
{
	return io->dev_plain && io->ssl == NULL;
}

static enum kg_reason plain_pump(struct kg_relay_io *io)
{
	enum kg_reason why = KG_REASON_IO_ERROR;
	uint32_t dev_ev = 0;
	int a, b;

	do {
		/* the SSL relay's two directions: kg_ssl_io_* speak the plain socket too */
		a = kg_relay_ssl_up(io, &why);
		if (a < 0)
			return why;
		b = kg_relay_ssl_down(io, &why);
		if (b < 0)
			return why;
	} while (a > 0 || b > 0);
	if (kg_relay_finished(io, io->up.len > io->up.off, io->down.len > io->down.off, &why))
		return why;
	if (!io->dev_eof && io->up.len < KG_RELAY_BUF)
		dev_ev |= EPOLLIN;
	if (io->down.len > io->down.off)
		dev_ev |= EPOLLOUT;
	if (kg_relay_arm(io, dev_ev) < 0)
		return KG_REASON_IO_ERROR;
	return KG_REASON_OK;
}

const struct kg_relay_ops kg_relay_plain = {
	.name = "plain",
	.mode = KG_MODE_PLAIN,
	.usable = plain_usable,
	.start = nothing_to_start,
	.pump = plain_pump,
};
