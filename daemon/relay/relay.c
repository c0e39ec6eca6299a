/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * relay.c - the user-space relay and the choice of data path.
 *
 * Two buffers per session, c->up (device -> broker) and c->down (broker -> device),
 * allocated only while they hold bytes, so an idle session keeps none. pump() moves
 * bytes until nothing moves, then arms exactly the interest that can make progress:
 * a full buffer stops reading its source (back-pressure), a non-empty one waits for
 * its sink. OpenSSL may hold decrypted records epoll cannot see, so reading the
 * device is retried whenever buffer space frees up, without waiting for an event.
 *
 * End of stream: the device's EOF (close_notify or FIN) is passed on as a FIN to the
 * broker once c->up drained; the broker's EOF ends the session once c->down drained
 * (an MQTT broker that hangs up has nothing more to say).
 *
 * Dead peers: once a relay has started, both sockets get TCP keepalive (and a
 * TCP_USER_TIMEOUT as long, so unacknowledged data to a vanished peer cannot hold the
 * session for the kernel's ~15 minutes of retransmissions either), and the session
 * gets an idle timeout: 1.5 x the CONNECT's keep-alive (MQTT 3.1.1 3.1.2.10, 5.0
 * 3.1.2.10), counting only device->broker traffic, as the broker would; with a
 * keep-alive of 0, idle_timeout seconds without traffic either way (a pure subscriber
 * may never send). kg_relay_pump() notes activity, the deadline scan acts on it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/daemon.h"
#include "ops/err.h"
#include "ops/log.h"
#include "relay/relay.h"
#include "tls/tls.h"
#include "core/worker.h"


static bool userspace_usable(const struct kg_conn *c)
{
	return c->ssl != NULL;
}

static int userspace_start(struct kg_conn *c)
{
	/* c->up already holds the CONNECT and whatever the device pipelined behind it:
	 * it is flushed to the broker first by the first pump(). */
	(void)c;
	return 0;
}

int kg_relay_flush_up(struct kg_conn *c, enum kg_reason *why)
{
	int progress = 0;

	while (c->up.off < c->up.len) {
		ssize_t w = send(c->be.fd, c->up.data + c->up.off, c->up.len - c->up.off, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			*why = KG_REASON_BACKEND_CLOSED;
			return -1;
		}
		c->up.off += (size_t)w;
		c->bytes_up += (uint64_t)w;
		kg_metric_add(&c->w->metrics.bytes[KG_DIR_UP], (uint64_t)w);
		progress = 1;
	}
	if (c->up.off == c->up.len) {
		c->up.off = c->up.len = 0;
		kg_buf_release(&c->up);
	}
	return progress;
}

int kg_relay_fill_down(struct kg_conn *c, bool *drained, enum kg_reason *why)
{
	int progress = 0;

	while (!c->be_eof && !(drained && *drained) && c->down.len < KG_RELAY_BUF) {
		size_t want = KG_RELAY_BUF - c->down.len;
		ssize_t n;

		if (kg_buf_reserve(&c->down, KG_RELAY_BUF) < 0) {
			*why = KG_REASON_OVERLOAD;
			return -1;
		}
		n = recv(c->be.fd, c->down.data + c->down.len, want, 0);
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
			c->be_eof = true;
			progress = 1;
			break;
		}
		if (drained && (size_t)n < want)
			*drained = true;
		c->down.len += (size_t)n;
		progress = 1;
	}
	return progress;
}

bool kg_relay_finished(struct kg_conn *c, bool up_pending, bool down_pending,
		       enum kg_reason *why)
{
	/* The broker has said all it will say and it was delivered: the session is over
	 * (the caller sends our close_notify). */
	if (c->be_eof && !down_pending) {
		*why = c->dev_eof ? KG_REASON_PEER_CLOSED : KG_REASON_BACKEND_CLOSED;
		return true;
	}
	/* The device has (close_notify or FIN) and its bytes reached the broker: pass the
	 * FIN on and keep relaying the broker's answer until it closes. Closing at once
	 * would reset the broker over its unread PUBACKs, and it drops PUBLISHes it had
	 * not yet processed. The wait is bounded by refuse_linger_ms. */
	if (c->dev_eof && !up_pending && !c->be_shut) {
		c->be_shut = true;
		if (shutdown(c->be.fd, SHUT_WR) < 0) {
			*why = KG_REASON_PEER_CLOSED;
			return true;
		}
		c->deadline_ms = kg_now_ms() + c->snap->cfg.refuse_linger_ms;
	}
	return false;
}

int kg_relay_arm(struct kg_conn *c, uint32_t dev_ev)
{
	uint32_t be_ev = 0;

	if (!c->be_eof && c->down.len < KG_RELAY_BUF)
		be_ev |= EPOLLIN;
	if (c->up.len > c->up.off)
		be_ev |= EPOLLOUT;
	/* A side at EOF would report HUP/RDHUP forever in level mode: unregister it
	 * unless we still have to write to it. */
	if ((c->dev_eof && !(dev_ev & EPOLLOUT) ? kg_conn_unwatch(c, &c->dev)
						   : kg_conn_watch(c, &c->dev, dev_ev)) < 0 ||
	    (c->be_eof && !(be_ev & EPOLLOUT) ? kg_conn_unwatch(c, &c->be)
					       : kg_conn_watch(c, &c->be, be_ev)) < 0)
		return -1;
	return 0;
}

int kg_relay_ssl_up(struct kg_conn *c, enum kg_reason *why)
{
	int progress = 0;
	long n;

	/* read from the device while there is room */
	while (!c->dev_eof && c->up.len < KG_RELAY_BUF) {
		if (kg_buf_reserve(&c->up, KG_RELAY_BUF) < 0) {
			*why = KG_REASON_OVERLOAD;
			return -1;
		}
		n = kg_tls_read(c, c->up.data + c->up.len, KG_RELAY_BUF - c->up.len);
		if (n == KG_E_AGAIN)
			break;
		if (n == 0) {
			c->dev_eof = true;
			progress = 1;
			break;
		}
		if (n < 0) {
			*why = KG_REASON_IO_ERROR;
			return -1;
		}
		c->up.len += (size_t)n;
		progress = 1;
	}
	n = kg_relay_flush_up(c, why);
	return n < 0 ? -1 : (progress || n > 0);
}

static int move_broker_to_device(struct kg_conn *c, enum kg_reason *why)
{
	int progress = kg_relay_fill_down(c, NULL, why);
	long w;

	if (progress < 0)
		return -1;
	while (c->down.off < c->down.len) {
		w = kg_tls_write(c, c->down.data + c->down.off, c->down.len - c->down.off);
		if (w == KG_E_AGAIN)
			break;
		if (w < 0) {
			*why = KG_REASON_PEER_CLOSED;
			return -1;
		}
		c->down.off += (size_t)w;
		c->bytes_down += (uint64_t)w;
		kg_metric_add(&c->w->metrics.bytes[KG_DIR_DOWN], (uint64_t)w);
		progress = 1;
	}
	if (c->down.off == c->down.len) {
		c->down.off = c->down.len = 0;
		kg_buf_release(&c->down);
	}
	return progress;
}

static enum kg_step userspace_pump(struct kg_conn *c)
{
	enum kg_reason why = KG_REASON_IO_ERROR;
	uint32_t dev_ev = 0;
	bool dev_wants_write = false;
	int a, b;

	do {
		a = kg_relay_ssl_up(c, &why);
		if (a < 0)
			goto out_close;
		/* remember what the device read asked for before the write overwrites it */
		dev_wants_write = c->want_write;
		b = move_broker_to_device(c, &why);
		if (b < 0)
			goto out_close;
	} while (a > 0 || b > 0);

	if (kg_relay_finished(c, c->up.len > c->up.off, c->down.len > c->down.off, &why))
		goto out_close;
	if (!c->dev_eof && c->up.len < KG_RELAY_BUF)
		dev_ev |= EPOLLIN;
	if (c->down.len > c->down.off || dev_wants_write || c->want_write)
		dev_ev |= c->want_read ? EPOLLIN : EPOLLOUT;
	if (kg_relay_arm(c, dev_ev) < 0)
		goto out_close;
	return KG_STEP_WAIT;

out_close:
	if (why == KG_REASON_PEER_CLOSED || why == KG_REASON_BACKEND_CLOSED)
		kg_tls_shutdown(c);
	kg_conn_close(c, why);
	return KG_STEP_DONE;
}

const struct kg_relay_ops kg_relay_userspace = {
	.name = "userspace_ssl",
	.mode = KG_MODE_USERSPACE_SSL,
	.usable = userspace_usable,
	.start = userspace_start,
	.pump = userspace_pump,
};

/* In order of preference (the ladder): each start() may refuse, and the next is tried. */
static const struct kg_relay_ops *const relays[] = {
	&kg_relay_ktls_splice,
	&kg_relay_ktls_tx,
	&kg_relay_record,
	&kg_relay_userspace,
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

static void set_keepalive(const struct kg_conn *c, int fd, const struct kg_config *cfg)
{
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
		kg_log_debug("conn=%llu: TCP keepalive on fd %d: %s", (unsigned long long)c->cid, fd,
			     strerror(errno));
}

/* What every data path shares once it has the session: dead-peer detection. */
static void session_setup(struct kg_conn *c)
{
	const struct kg_config *cfg = &c->snap->cfg;

	set_keepalive(c, c->dev.fd, cfg);
	set_keepalive(c, c->be.fd, cfg);
	c->idle_ms = kg_relay_idle_ms(c->keepalive, cfg->idle_timeout, &c->idle_any_dir);
	c->active_ms = kg_now_ms();
}

enum kg_step kg_relay_pump(struct kg_conn *c)
{
	uint64_t up = c->bytes_up, down = c->bytes_down;
	enum kg_step r = kg_relay_for_mode(c->mode)->pump(c);

	/* One clock read per event that moved bytes, not per byte; c is gone on DONE. */
	if (r != KG_STEP_DONE && c->idle_ms != 0 &&
	    (c->bytes_up != up || (c->idle_any_dir && c->bytes_down != down)))
		c->active_ms = kg_now_ms();
	return r;
}

const struct kg_relay_ops *kg_relay_start(struct kg_conn *c, bool *again)
{
	*again = false;
	for (size_t i = 0; i < sizeof(relays) / sizeof(relays[0]); i++) {
		int rc;

		if (!relays[i]->usable(c))
			continue;
		rc = relays[i]->start(c);
		if (rc == 0) {
			session_setup(c);
			return relays[i];
		}
		if (rc == KG_E_AGAIN) {
			*again = true;   /* this rung needs more bytes first: not a fallback */
			return NULL;
		}
	}
	return NULL;
}

const struct kg_relay_ops *kg_relay_for_mode(enum kg_relay_mode mode)
{
	for (size_t i = 0; i < sizeof(relays) / sizeof(relays[0]); i++)
		if (relays[i]->mode == mode)
			return relays[i];
	return &kg_relay_userspace;
}
