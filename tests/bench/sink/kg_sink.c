/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kg_sink.c - a minimal MQTT 3.1.1 broker stand-in for `make bench-plain`
 * (PLAIN_BACKEND=sink): it answers CONNECT with CONNACK 0, every QoS 1 PUBLISH with its
 * PUBACK, PINGREQ with PINGRESP, closes on DISCONNECT, and throws payloads away unread
 * (recv with MSG_TRUNC: the kernel drops them without a copy). No topics, no sessions,
 * no delivery: it exists so a relay's own ceiling shows when mosquitto, which parses
 * and copies every byte, is the bottleneck. One thread, level-triggered epoll.
 * Usage: kg-sink HOST:PORT (numeric IPv4); runs until SIGTERM/SIGINT.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define VH_MAX 256          /* PUBLISH topic + packet id are read; the rest is dropped */
#define RBUF 65536
#define WBUF 4096           /* PUBACKs waiting for the socket: a window's worth is ~64 B */

struct sconn {
	int fd;
	uint8_t hdr[5];     /* fixed header being collected */
	size_t hlen;
	size_t rem;         /* body bytes still to come (after the fixed header) */
	uint8_t vh[VH_MAX]; /* the first body bytes */
	size_t vlen, vwant;
	bool in_body;
	uint8_t w[WBUF];
	size_t wlen;
	bool want_out;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void sc_close(int ep, struct sconn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

static int sc_queue(struct sconn *c, const uint8_t *b, size_t n)
{
	if (WBUF - c->wlen < n)
		return -1;   /* the client stopped reading its acks: drop it */
	memcpy(c->w + c->wlen, b, n);
	c->wlen += n;
	return 0;
}

/* Send what is queued; arm EPOLLOUT only while something is left. */
static int sc_flush(int ep, struct sconn *c)
{
	struct epoll_event ev = { .data.ptr = c };
	ssize_t n;

	while (c->wlen > 0) {
		n = send(c->fd, c->w, c->wlen, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0)
			return -1;
		memmove(c->w, c->w + n, c->wlen - (size_t)n);
		c->wlen -= (size_t)n;
	}
	if ((c->wlen > 0) != c->want_out) {
		c->want_out = c->wlen > 0;
		ev.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0);
		if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
			return -1;
	}
	return 0;
}

/* A packet's fixed header and first body bytes are in; answer it. -1: close. */
static int sc_packet(struct sconn *c)
{
	static const uint8_t connack[] = { 0x20, 0x02, 0x00, 0x00 };
	static const uint8_t pingresp[] = { 0xD0, 0x00 };
	uint8_t type = c->hdr[0] >> 4, qos = (c->hdr[0] >> 1) & 3;
	uint8_t puback[4] = { 0x40, 0x02, 0, 0 };
	size_t tl;

	switch (type) {
	case 1: return sc_queue(c, connack, sizeof(connack));
	case 12: return sc_queue(c, pingresp, sizeof(pingresp));
	case 14: return -1;
	case 3:
		if (qos == 0)
			return 0;
		if (c->vlen < 2)
			return -1;
		tl = (size_t)c->vh[0] << 8 | c->vh[1];
		if (c->vlen < 2 + tl + 2)
			return -1;
		puback[2] = c->vh[2 + tl];
		puback[3] = c->vh[3 + tl];
		return sc_queue(c, puback, sizeof(puback));
	default:
		return 0;
	}
}

/* Consume n bytes of the stream. -1: protocol error or the write queue is full. */
static int sc_feed(struct sconn *c, const uint8_t *p, size_t n)
{
	while (n > 0) {
		if (!c->in_body) {
			c->hdr[c->hlen++] = *p++;
			n--;
			if (c->hlen >= 2 && !(c->hdr[c->hlen - 1] & 0x80)) {
				size_t mult = 1;

				c->rem = 0;
				for (size_t i = 1; i < c->hlen; i++, mult *= 128)
					c->rem += (c->hdr[i] & 0x7f) * mult;
				c->in_body = true;
				c->vlen = 0;
				c->vwant = c->rem < VH_MAX ? c->rem : VH_MAX;
			} else if (c->hlen == 5) {
				return -1;   /* malformed remaining length */
			}
		} else if (c->vlen < c->vwant) {
			size_t k = c->vwant - c->vlen < n ? c->vwant - c->vlen : n;

			memcpy(c->vh + c->vlen, p, k);
			c->vlen += k;
			c->rem -= k;
			p += k;
			n -= k;
		} else {
			size_t k = c->rem < n ? c->rem : n;

			c->rem -= k;
			p += k;
			n -= k;
		}
		if (c->in_body && c->vlen == c->vwant && c->rem == 0) {
			if (sc_packet(c) != 0)
				return -1;
			c->in_body = false;
			c->hlen = 0;
		}
	}
	return 0;
}

/* Readable: headers through a buffer, long payload stretches dropped in the kernel. */
static int sc_read(struct sconn *c)
{
	static uint8_t buf[RBUF];
	ssize_t n;

	for (int rounds = 0; rounds < 16; rounds++) {
		if (c->in_body && c->vlen == c->vwant && c->rem > 1024) {
			/* mid-payload: drop all but the last byte unread, it completes the packet */
			n = recv(c->fd, NULL, c->rem - 1, MSG_TRUNC | MSG_DONTWAIT);
			if (n > 0) {
				c->rem -= (size_t)n;
				continue;
			}
		} else {
			n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n > 0) {
				if (sc_feed(c, buf, (size_t)n) != 0)
					return -1;
				continue;
			}
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		return -1;   /* closed or failed */
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct epoll_event ev, evs[256];
	struct sigaction act = { .sa_handler = on_signal };
	char host[64], *colon;
	int lfd = -1, ep = -1, one = 1, ret = 1;

	if (argc != 2 || strlen(argv[1]) >= sizeof(host) || (colon = strrchr(argv[1], ':')) == NULL) {
		fprintf(stderr, "usage: kg-sink HOST:PORT\n");
		return 2;
	}
	memcpy(host, argv[1], (size_t)(colon - argv[1]));
	host[colon - argv[1]] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "kg-sink: %s: not a numeric IPv4 address\n", host);
		return 2;
	}
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (lfd < 0 || ep < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1024) != 0) {
		perror("kg-sink: listen");
		goto out;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
		goto out;
	while (!stop) {
		int n = epoll_wait(ep, evs, 256, 200);

		for (int i = 0; i < n; i++) {
			struct sconn *c = evs[i].data.ptr;

			if (c == NULL) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

				if (fd < 0)
					continue;
				(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				c = calloc(1, sizeof(*c));
				ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = c };
				if (c == NULL || (c->fd = fd, epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) != 0) {
					free(c);
					close(fd);
				}
				continue;
			}
			if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && sc_read(c) != 0) {
				sc_close(ep, c);
				continue;
			}
			if (sc_flush(ep, c) != 0)
				sc_close(ep, c);
		}
	}
	ret = 0;
out:
	if (lfd >= 0)
		close(lfd);
	if (ep >= 0)
		close(ep);
	return ret;
}
