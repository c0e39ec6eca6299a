/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * relay.c - the user-space relay, the helpers every relay shares, and the choice of
 * data path.
 *
 * Two buffers per session, io->up (device -> broker) and io->down (broker -> device),
 * allocated only while they hold bytes, so an idle session keeps none. pump() moves
 * bytes until nothing moves, then arms exactly the interest that can make progress:
 * a full buffer stops reading its source (back-pressure), a non-empty one waits for
 * its sink. OpenSSL may hold decrypted records epoll cannot see, so reading the
 * device is retried whenever buffer space frees up, without waiting for an event.
 *
 * End of stream: the device's EOF (close_notify or FIN) is passed on as a FIN to the
 * broker once io->up drained; the broker's EOF ends the session once io->down drained
 * (an MQTT broker that hangs up has nothing more to say).
 *
 * Dead peers: once a relay has started, both sockets get TCP keepalive (and a
 * TCP_USER_TIMEOUT as long, so unacknowledged data to a vanished peer cannot hold the
 * session for the kernel's ~15 minutes of retransmissions either), and the session
 * gets an idle timeout: 1.5 x the CONNECT's keep-alive (MQTT 3.1.1 3.1.2.10, 5.0
 * 3.1.2.10), counting only device->broker traffic, as the broker would; with a
 * keep-alive of 0, idle_timeout seconds without traffic either way (a pure subscriber
 * may never send). kg_relay_idle_ms() says which; the connection's RELAYING step
 * (conn.c) notes activity and its deadline scan acts on it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ops/err.h"
#include "ops/log.h"
#include "relay/relay.h"

/* ---- buffers ----------------------------------------------------------------- */

int kg_buf_reserve(struct kg_buf *b, size_t cap)
{
	uint8_t *p;

	if (b->cap >= cap)
		return 0;
	p = realloc(b->data, cap);
	if (p == NULL)
		return KG_E_RESOURCE;
	b->data = p;
	b->cap = cap;
	return 0;
}

void kg_buf_free(struct kg_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void kg_buf_release(struct kg_buf *b)
{
	/* Called after every flush, mostly on a buffer that holds nothing: no free(NULL)
	 * and memset per call on the splice path (perf: docs/benchmarks.md, Issue 3). */
	if (b->data != NULL && b->len == b->off)
		kg_buf_free(b);
}

/* ---- the user-space SSL relay and the shared helpers ------------------------- */

static bool userspace_usable(const struct kg_relay_io *io)
{
	return io->ssl != NULL;
}

static int userspace_start(struct kg_relay_io *io)
{
	/* io->up already holds the CONNECT and whatever the device pipelined behind it:
	 * it is flushed to the broker first by the first pump(). */
	(void)io;
	return 0;
}

int kg_relay_flush_up(struct kg_relay_io *io, enum kg_reason *why)
{
	int progress = 0;

	while (io->up.off < io->up.len) {
		ssize_t w = send(io->be.fd, io->up.data + io->up.off, io->up.len - io->up.off, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			*why = KG_REASON_BACKEND_CLOSED;
			return -1;
		}
		io->up.off += (size_t)w;
		io->bytes_up += (uint64_t)w;
		kg_metric_add(&io->metrics->bytes[KG_DIR_UP], (uint64_t)w);
		progress = 1;
	}
	if (io->up.off == io->up.len) {
		io->up.off = io->up.len = 0;
		kg_buf_release(&io->up);
	}
	return progress;
}

int kg_relay_fill_down(struct kg_relay_io *io, bool *drained, enum kg_reason *why)
{
	int progress = 0;

	while (!io->be_eof && !(drained && *drained) && io->down.len < KG_RELAY_BUF) {
		size_t want = KG_RELAY_BUF - io->down.len;
		ssize_t n;

		if (kg_buf_reserve(&io->down, KG_RELAY_BUF) < 0) {
			*why = KG_REASON_OVERLOAD;
			return -1;
		}
		n = recv(io->be.fd, io->down.data + io->down.len, want, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (drained)
					*drained = true;
				break;
			}
			*why = KG_REASON_BACKEND_CLOSED;
			return -1;
		}
		if (n == 0) {
			io->be_eof = true;
			progress = 1;
			break;
		}
		if (drained && (size_t)n < want)
			*drained = true;
		io->down.len += (size_t)n;
		progress = 1;
	}
	return progress;
}

bool kg_relay_finished(struct kg_relay_io *io, bool up_pending, bool down_pending,
		       enum kg_reason *why)
{
	/* The broker has said all it will say and it was delivered: the session is over
	 * (the caller sends our close_notify). */
	if (io->be_eof && !down_pending) {
		*why = io->dev_eof ? KG_REASON_PEER_CLOSED : KG_REASON_BACKEND_CLOSED;
		return true;
	}
	/* The device has (close_notify or FIN) and its bytes reached the broker: pass the
	 * FIN on and keep relaying the broker's answer until it closes. Closing at once
	 * would reset the broker over its unread PUBACKs, and it drops PUBLISHes it had
	 * not yet processed. The wait is bounded by refuse_linger_ms: the connection
	 * sets that deadline when it sees be_shut become true after the pump. */
	if (io->dev_eof && !up_pending && !io->be_shut) {
		io->be_shut = true;
		if (shutdown(io->be.fd, SHUT_WR) < 0) {
			*why = KG_REASON_PEER_CLOSED;
			return true;
		}
	}
	return false;
}

int kg_relay_arm(struct kg_relay_io *io, uint32_t dev_ev)
{
	uint32_t be_ev = 0;

	if (!io->be_eof && io->down.len < KG_RELAY_BUF)
		be_ev |= EPOLLIN;
	if (io->up.len > io->up.off)
		be_ev |= EPOLLOUT;
	/* A side at EOF would report HUP/RDHUP forever in level mode: unregister it
	 * unless we still have to write to it. */
	if ((io->dev_eof && !(dev_ev & EPOLLOUT) ? kg_evsrc_unwatch(io->epfd, &io->dev)
						   : kg_evsrc_watch(io->epfd, &io->dev, dev_ev)) < 0 ||
	    (io->be_eof && !(be_ev & EPOLLOUT) ? kg_evsrc_unwatch(io->epfd, &io->be)
					       : kg_evsrc_watch(io->epfd, &io->be, be_ev)) < 0)
		return -1;
	return 0;
}

int kg_relay_ssl_up(struct kg_relay_io *io, enum kg_reason *why)
{
	int progress = 0;
	long n;

	/* read from the device while there is room */
	while (!io->dev_eof && io->up.len < KG_RELAY_BUF) {
		if (kg_buf_reserve(&io->up, KG_RELAY_BUF) < 0) {
			*why = KG_REASON_OVERLOAD;
			return -1;
		}
		n = kg_ssl_io_read(io, io->up.data + io->up.len, KG_RELAY_BUF - io->up.len);
		if (n == KG_E_AGAIN)
			break;
		if (n == 0) {
			io->dev_eof = true;
			progress = 1;
			break;
		}
		if (n < 0) {
			*why = KG_REASON_IO_ERROR;
			return -1;
		}
		io->up.len += (size_t)n;
		progress = 1;
	}
	n = kg_relay_flush_up(io, why);
	if (n < 0)
		return -1;
	if (io->up.len == 0)
		kg_buf_release(&io->up);   /* an idle session holds no buffer */
	return progress || n > 0;
}

int kg_relay_ssl_down(struct kg_relay_io *io, enum kg_reason *why)
{
	int progress = kg_relay_fill_down(io, NULL, why);
	long w;

	if (progress < 0)
		return -1;
	while (io->down.off < io->down.len) {
		w = kg_ssl_io_write(io, io->down.data + io->down.off, io->down.len - io->down.off);
		if (w == KG_E_AGAIN)
			break;
		if (w < 0) {
			*why = KG_REASON_PEER_CLOSED;
			return -1;
		}
		io->down.off += (size_t)w;
		io->bytes_down += (uint64_t)w;
		kg_metric_add(&io->metrics->bytes[KG_DIR_DOWN], (uint64_t)w);
		progress = 1;
	}
	if (io->down.off == io->down.len) {
		io->down.off = io->down.len = 0;
		kg_buf_release(&io->down);
	}
	return progress;
}

static enum kg_reason userspace_pump(struct kg_relay_io *io)
{
	enum kg_reason why = KG_REASON_IO_ERROR;
	uint32_t dev_ev = 0;
	bool dev_wants_write = false;
	int a, b;

	do {
		a = kg_relay_ssl_up(io, &why);
		if (a < 0)
			goto out_close;
		/* remember what the device read asked for before the write overwrites it */
		dev_wants_write = io->want_write;
		b = kg_relay_ssl_down(io, &why);
		if (b < 0)
			goto out_close;
	} while (a > 0 || b > 0);

	if (kg_relay_finished(io, io->up.len > io->up.off, io->down.len > io->down.off, &why))
		goto out_close;
	if (!io->dev_eof && io->up.len < KG_RELAY_BUF)
		dev_ev |= EPOLLIN;
	if (io->down.len > io->down.off || dev_wants_write || io->want_write)
		dev_ev |= io->want_read ? EPOLLIN : EPOLLOUT;
	if (kg_relay_arm(io, dev_ev) < 0)
		goto out_close;
	return KG_REASON_OK;

out_close:
	if (why == KG_REASON_PEER_CLOSED || why == KG_REASON_BACKEND_CLOSED)
		kg_ssl_io_shutdown(io);
	return why;
}

const struct kg_relay_ops kg_relay_userspace = {
	.name = "userspace_ssl",
	.mode = KG_MODE_USERSPACE_SSL,
	.usable = userspace_usable,
	.start = userspace_start,
	.pump = userspace_pump,
};

/* In order of preference (the ladders): each start() may refuse, and the next is
 * tried. A TLS device side never tries a plain relay and a plain one never a TLS relay
 * (io->dev_plain). The last rung of each always starts. */
static const struct kg_relay_ops *const relays[] = {
	&kg_relay_ktls_splice,
	&kg_relay_ktls_tx,
	&kg_relay_record,
	&kg_relay_userspace,
};
static const struct kg_relay_ops *const relays_plain[] = {
	&kg_relay_sockmap,
	&kg_relay_splice,
	&kg_relay_plain,
};

uint32_t kg_relay_idle_ms(uint16_t keepalive, unsigned idle_timeout_s, bool *any_dir)
{
	if (keepalive != 0) {
		*any_dir = false;
		return (uint32_t)keepalive * 1500u;
	}
	*any_dir = true;
	return idle_timeout_s * 1000u;
}

static void set_keepalive(const struct kg_relay_io *io, int fd)
{
	const struct kg_config *cfg = io->cfg;
	int on = 1, idle = (int)cfg->tcp_keepalive_idle, intvl = (int)cfg->tcp_keepalive_interval;
	int cnt = (int)cfg->tcp_keepalive_count;
	unsigned user_ms = (cfg->tcp_keepalive_idle + cfg->tcp_keepalive_interval *
			    cfg->tcp_keepalive_count) * 1000u;

	if (fd < 0 || idle == 0)
		return;
	/* Best effort: a socket that refuses still has the idle timeout. */
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof(user_ms)) < 0)
		kg_log_debug("conn=%llu: TCP keepalive on fd %d: %s", (unsigned long long)io->cid, fd,
			     strerror(errno));
}

const struct kg_relay_ops *kg_relay_start(struct kg_relay_io *io, bool *again)
{
	const struct kg_relay_ops *const *ladder = io->dev_plain ? relays_plain : relays;
	size_t n = io->dev_plain ? KG_NITEMS(relays_plain) : KG_NITEMS(relays);

	*again = false;
	for (size_t i = 0; i < n; i++) {
		int rc;

		if (!ladder[i]->usable(io))
			continue;
		rc = ladder[i]->start(io);
		if (rc == 0) {
			/* What every data path shares once it has the session: dead-peer
			 * detection (the idle timeout is the connection's, conn.c). */
			set_keepalive(io, io->dev.fd);
			set_keepalive(io, io->be.fd);
			io->mode = ladder[i]->mode;
			return ladder[i];
		}
		if (rc == KG_E_AGAIN) {
			*again = true;   /* this rung needs more bytes first: not a fallback */
			return NULL;
		}
	}
	return NULL;
}

bool kg_relay_transferable(const struct kg_relay_io *io)
{
	bool mode_ok;

	switch (io->mode) {
	case KG_MODE_KTLS_SPLICE:
		/* both keys in the kernel: the SSL is gone, nothing of TLS is ours */
		mode_ok = io->ktls_tx && io->ktls_rx && io->ssl == NULL;
		break;
	case KG_MODE_SPLICE:
	case KG_MODE_PLAIN:
		mode_ok = io->dev_plain;
		break;
	default:
		mode_ok = false;
		break;
	}
	return mode_ok && io->rec == NULL && !io->sm_in && !io->recheck && !io->dev_eof &&
	       !io->be_eof && !io->be_shut && io->dev.fd >= 0 && io->be.fd >= 0 &&
	       !kg_relay_pending(io, KG_DIR_UP) && !kg_relay_pending(io, KG_DIR_DOWN);
}

const struct kg_relay_ops *kg_relay_for_mode(enum kg_relay_mode mode)
{
	for (size_t i = 0; i < KG_NITEMS(relays); i++)
		if (relays[i]->mode == mode)
			return relays[i];
	for (size_t i = 0; i < KG_NITEMS(relays_plain); i++)
		if (relays_plain[i]->mode == mode)
			return relays_plain[i];
	return &kg_relay_userspace;
}
