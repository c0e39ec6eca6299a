/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * relay_plain.c - the data paths of plain sessions (io->dev_plain: `plain` and `proxy`
 * listeners, no TLS on the device side), best first:
 *
 *   sockmap  both sockets go into the SOCKHASH of bpf/sockmap.bpf.c (sockmap.c): the
 *            kernel redirects every skb to the other socket's send queue and counts
 *            it; the daemon watches for hang-ups (EPOLLRDHUP/HUP/ERR) and measures a
 *            session the verdict notices every 16 MiB (back-pressure, below).
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
 * Steady relaying costs the daemon one measurement per KG_SM_CHECK_BYTES per direction
 * (the verdict's notices); a held direction is relayed by the daemon until released.
 */
#include <errno.h>
#include <stddef.h>
#include <linux/tcp.h>   /* struct tcp_info with tcpi_bytes_acked (glibc's lacks it) */
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
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
	uint64_t wbase[2];
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
	rc = kg_sockmap_add(io->sockmap, io->dev.fd, io->be.fd, c, io->worker_idx, wbase);
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
	io->sm_wbase[0] = wbase[0];
	io->sm_wbase[1] = wbase[1];
	memset(io->sm_held, 0, sizeof(io->sm_held));
	memset(io->sm_drained, 0, sizeof(io->sm_drained));
	memset(io->sm_src_done, 0, sizeof(io->sm_src_done));
	memset(io->sm_held_bytes, 0, sizeof(io->sm_held_bytes));
	memset(io->sm_release_asked, 0, sizeof(io->sm_release_asked));
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
	up = io->sm_base_up + k.bytes_up + io->sm_held_bytes[0];
	down = io->sm_base_down + k.bytes_down + io->sm_held_bytes[1];
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
	int64_t w = kg_sockmap_written(sink);

	return w >= 0 && (uint64_t)w - base >= want;
}

/*
 * Back-pressure (the redirect has none: a psock queues whatever the verdict gives it,
 * in memory charged to no socket). A direction's backlog is what the verdict took
 * from its source and the sink's send queue has not yet been written
 * (kg_sockmap_written()).
 * The verdict notices each KG_SM_CHECK_BYTES a socket takes (sockmap_maps.h) and its
 * worker measures the session (kg_sockmap_session_check()); past KG_SM_HOLD_BYTES the
 * source is held (kg_sockmap_hold()): the verdict keeps its bytes on the socket's own
 * psock, charged to its receive memory, so TCP's window closes on its sender as with
 * a proxy that stops reading, and this relay moves them (sm_held_pump()). When it has
 * caught up (its buffer empty, nothing more kept) it asks for the release, which the
 * verdict grants on the next skb if every kept byte is in the sink (struct
 * kg_sm_hold): the direction is the kernel's again. Taking the socket out of the
 * verdict's map instead would race the verdict (sk_psock_verdict_recv() drops an skb
 * it unlinked if the program is gone by the time it looks: bytes TCP already
 * acknowledged).
 *
 * Order: kept bytes come after every redirected one (a socket's verdicts run one at a
 * time), and a redirected skb is counted before its verdict returns. So once we have
 * kept bytes in hand (recv() returned them: their verdict ran, so did every earlier
 * one) and the sink has been written everything counted, nothing redirected is still
 * on its way and we may write (sm_drained, until the release).
 */
/* KG_SM_HOLD_BYTES (sockmap_maps.h, shared with the verdict's notice filter) is about
 * what one TCP socket may buffer here (tcp_rmem's maximum, 32 MiB on the test host): a
 * burst the broker's own socket could have taken does not cost a hold. */

/* Bytes of direction d taken by the verdict and not yet in the sink's send queue; -1
 * when the sink cannot be read. After kg_sockmap_session_sync(). */
static int64_t sm_backlog(struct kg_relay_io *io, enum kg_dir d)
{
	int sink = d == KG_DIR_UP ? io->be.fd : io->dev.fd;
	uint64_t base = d == KG_DIR_UP ? io->sm_wbase[1] : io->sm_wbase[0];
	/* io->bytes_* and kg_sockmap_written() both count what the daemon wrote while held */
	uint64_t taken = d == KG_DIR_UP ? io->bytes_up - io->sm_base_up
					: io->bytes_down - io->sm_base_down;
	int64_t w = kg_sockmap_written(sink);

	if (w < 0)
		return -1;
	return (uint64_t)w - base >= taken ? 0 : (int64_t)(taken - ((uint64_t)w - base));
}

void kg_sockmap_session_check(struct kg_relay_io *io)
{
	if (!io->sm_in)
		return;
	kg_metric_add(&io->metrics->sockmap_checks, 1);
	(void)kg_sockmap_session_sync(io, NULL);
	for (unsigned s = 0; s < 2; s++) {
		enum kg_dir d = s == 0 ? KG_DIR_UP : KG_DIR_DOWN;
		int64_t b;
		int rc;

		if (io->sm_held[s])
			continue;
		b = sm_backlog(io, d);
		if (b <= (int64_t)KG_SM_HOLD_BYTES)
			continue;
		rc = kg_sockmap_hold(io->sockmap, io->sm_cookie[s]);
		if (rc == -EEXIST) {
			/* released by us but not yet granted: the hold stands, keep relaying */
			io->sm_held[s] = true;
			continue;
		}
		if (rc < 0) {
			kg_log_warnx("conn=%llu: sockmap: cannot hold the %s socket: %s",
				     (unsigned long long)io->cid, s == 0 ? "device" : "broker",
				     strerror(-rc));
			continue;
		}
		io->sm_held[s] = true;
		io->sm_drained[s] = io->sm_release_asked[s] = false;
		io->recheck = true;   /* pumped at the next tick: arms the held direction */
		kg_metric_add(&io->metrics->sockmap_holds, 1);
		kg_log_debug("conn=%llu: sockmap: %s -> %s held (%lld bytes not yet taken): "
			     "relayed by the daemon from here", (unsigned long long)io->cid,
			     s == 0 ? "device" : "broker", s == 0 ? "broker" : "device", (long long)b);
	}
}

/* The verdict granted the release of source s: the kernel relays that direction again. */
static void sm_released(struct kg_relay_io *io, unsigned s)
{
	io->sm_held[s] = io->sm_drained[s] = io->sm_release_asked[s] = false;
	kg_metric_add(&io->metrics->sockmap_releases, 1);
	kg_log_debug("conn=%llu: sockmap: %s -> %s released to the kernel",
		     (unsigned long long)io->cid, s == 0 ? "device" : "broker",
		     s == 0 ? "broker" : "device");
}

/* Move a held direction as far as it goes now: read what the verdict kept (recv()
 * reads the psock's queue), then, once drained (above), write it to the sink; when
 * caught up, ask for the release, and notice when it was granted. Returns -1 with
 * *why on a hard error; sets *pending while bytes of this direction remain (the FIN
 * waits for them). */
static int sm_held_pump(struct kg_relay_io *io, unsigned s, bool *pending, enum kg_reason *why)
{
	enum kg_dir d = s == 0 ? KG_DIR_UP : KG_DIR_DOWN;
	int src = s == 0 ? io->dev.fd : io->be.fd, dst = s == 0 ? io->be.fd : io->dev.fd;
	struct kg_buf *b = s == 0 ? &io->up : &io->down;
	bool empty = false;
	int rc;

	/* Granted: every kept byte went out before it, the kernel relays again. */
	if (io->sm_release_asked[s] && !kg_sockmap_held(io->sockmap, io->sm_cookie[s])) {
		sm_released(io, s);
		*pending = false;
		return 0;
	}
	/* Until the source is empty (EAGAIN) or the sink full: a buffer filled exactly as
	 * the source ran dry would otherwise wait for an EPOLLIN that never comes, and the
	 * release below with it. */
	for (;;) {
		while (!io->sm_src_done[s] && b->len < KG_RELAY_BUF) {
			ssize_t n;

			if (kg_buf_reserve(b, KG_RELAY_BUF) < 0) {
				*why = KG_REASON_OVERLOAD;
				return -1;
			}
			n = recv(src, b->data + b->len, KG_RELAY_BUF - b->len, MSG_DONTWAIT);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					empty = true;
					break;
				}
				*why = s == 0 ? KG_REASON_PEER_CLOSED : KG_REASON_BACKEND_CLOSED;
				return -1;
			}
			if (n == 0) {
				io->sm_src_done[s] = true;
				break;
			}
			b->len += (size_t)n;
		}
		if (!io->sm_drained[s] && b->len > b->off) {
			(void)kg_sockmap_session_sync(io, NULL);
			io->sm_drained[s] = sm_backlog(io, d) == 0;
		}
		while (io->sm_drained[s] && b->off < b->len) {
			ssize_t w = send(dst, b->data + b->off, b->len - b->off, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				*why = s == 0 ? KG_REASON_BACKEND_CLOSED : KG_REASON_PEER_CLOSED;
				return -1;
			}
			b->off += (size_t)w;
			/* io->bytes_* and the byte metrics follow in kg_sockmap_session_sync() */
			io->sm_held_bytes[s] += (uint64_t)w;
		}
		if (b->off == b->len) {
			b->off = b->len = 0;
			kg_buf_release(b);
		}
		if (b->len > 0 || empty || io->sm_src_done[s] || !io->sm_drained[s])
			break;
	}
	/* Caught up: all that was kept is written (sm_held_bytes counts it all). */
	if (empty && b->len == 0 && !io->sm_src_done[s]) {
		rc = kg_sockmap_release(io->sockmap, io->sm_cookie[s], io->sm_held_bytes[s]);
		if (rc == 0)
			io->sm_release_asked[s] = true;
		else if (rc == -ENOENT)   /* granted already (an skb came meanwhile) */
			sm_released(io, s);
	}
	*pending = io->sm_held[s] && (!io->sm_src_done[s] || b->len > 0 || !io->sm_drained[s]);
	return 0;
}

static enum kg_reason sockmap_pump(struct kg_relay_io *io)
{
	enum kg_reason why = KG_REASON_IO_ERROR;
	bool up_pending = false, down_pending = false, held_up = false, held_down = false;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	uint32_t dev_ev, be_ev;
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
	if (io->sm_held[0] && sm_held_pump(io, 0, &held_up, &why) < 0)
		return why;
	if (io->sm_held[1] && sm_held_pump(io, 1, &held_down, &why) < 0)
		return why;
	/* Serialise with the softirq that delivered the FINs (socket locks), then count. */
	if (io->dev_eof)
		(void)getsockopt(io->dev.fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
	len = sizeof(ti);
	if (io->be_eof)
		(void)getsockopt(io->be.fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
	(void)kg_sockmap_session_sync(io, NULL);
	if (io->dev_eof && !io->be_shut)
		up_pending = io->sm_held[0] ? held_up : !sm_delivered(io, KG_DIR_UP);
	if (io->be_eof)
		down_pending = io->sm_held[1] ? held_down : !sm_delivered(io, KG_DIR_DOWN);
	/* a release asked for is looked at each tick (granted on the source's next skb) */
	if (kg_relay_finished(io, up_pending, down_pending, &why))
		return why;
	/* A tail still in the kernel (the psock's worker moves it), or held bytes waiting
	 * for the redirected ones before them: no event on our sockets says when that is
	 * done (a sink that never filled up wakes nobody), and polling EPOLLOUT would
	 * spin. Look again at the worker's next tick: the FIN follows its bytes at most a
	 * tick late, and costs one pump per tick meanwhile. */
	io->recheck = up_pending || down_pending ||
		      (io->sm_held[0] && ((!io->sm_drained[0] && io->up.len > 0) || io->sm_release_asked[0])) ||
		      (io->sm_held[1] && ((!io->sm_drained[1] && io->down.len > 0) || io->sm_release_asked[1]));
	/* Hang-ups (EPOLLHUP/ERR come unasked); for a held direction, its source's bytes
	 * while there is room, and its sink's room while bytes wait. */
	dev_ev = io->dev_eof ? 0 : EPOLLRDHUP;
	be_ev = io->be_eof ? 0 : EPOLLRDHUP;
	if (io->sm_held[0] && !io->sm_src_done[0] && io->up.len < KG_RELAY_BUF)
		dev_ev |= EPOLLIN;
	if (io->sm_held[0] && io->sm_drained[0] && io->up.len > io->up.off)
		be_ev |= EPOLLOUT;
	if (io->sm_held[1] && !io->sm_src_done[1] && io->down.len < KG_RELAY_BUF)
		be_ev |= EPOLLIN;
	if (io->sm_held[1] && io->sm_drained[1] && io->down.len > io->down.off)
		dev_ev |= EPOLLOUT;
	if ((dev_ev == 0 ? kg_evsrc_unwatch(io->epfd, &io->dev)
			 : kg_evsrc_watch(io->epfd, &io->dev, dev_ev)) < 0 ||
	    (be_ev == 0 ? kg_evsrc_unwatch(io->epfd, &io->be)
			: kg_evsrc_watch(io->epfd, &io->be, be_ev)) < 0)
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
