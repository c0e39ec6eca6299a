/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kg_synflood.c - traffic for the XDP gate tests (hping3 is not in Debian's minimal
 * set). Two modes:
 *   syn     -s SRC -d DST -p PORT -n COUNT [-S SECONDS]
 *           raw TCP SYNs from SRC (a local address: the kernel builds the IP header)
 *           with changing source ports, sent in sendmmsg() batches; prints
 *           "sent N in T s (R pps)". With -S, stops after SECONDS instead of COUNT.
 *   connect -s SRC -d DST -p PORT -n COUNT [-P PARALLEL] [-t TIMEOUT_MS]
 *           real TCP connects bound to SRC, up to PARALLEL in flight, each given
 *           TIMEOUT_MS; prints "established E timeout T refused R other O p50_ms X
 *           max_ms Y" (latencies of the established ones). Closes each at once.
 * IPv4 or IPv6 (from the address syntax). Needs CAP_NET_RAW for syn.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

struct tcp_syn {
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t off;      /* data offset << 4 */
	uint8_t flags;
	uint16_t win, sum, urg;
};

struct opts {
	const char *mode, *src, *dst;
	unsigned port;
	long count, parallel, timeout_ms;
	double seconds;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_addr(const char *s, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*len = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, s, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*len = sizeof(*a6);
		return 0;
	}
	return -1;
}

static uint32_t sum16(const void *p, size_t n, uint32_t s)
{
	const uint8_t *b = p;

	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1)
		s += (uint32_t)(b[n - 1] << 8);
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return htons((uint16_t)~s);
}

static int run_syn(const struct opts *o)
{
	struct sockaddr_storage src, dst;
	socklen_t slen, dlen;
	struct tcp_syn pkt[BATCH];
	struct iovec iov[BATCH];
	struct mmsghdr msg[BATCH];
	long sent = 0;
	uint32_t seq = 0x12345678;
	double t0, t;
	int fd, v6;

	if (parse_addr(o->src, 0, &src, &slen) < 0 || parse_addr(o->dst, 0, &dst, &dlen) < 0 ||
	    src.ss_family != dst.ss_family) {
		fprintf(stderr, "kg-synflood: bad or mixed addresses\n");
		return 2;
	}
	v6 = src.ss_family == AF_INET6;
	fd = socket(src.ss_family, SOCK_RAW, IPPROTO_TCP);
	if (fd < 0 || bind(fd, (struct sockaddr *)&src, slen) < 0) {
		perror("kg-synflood: raw socket");
		return 2;
	}
	if (v6) {
		int off = 16; /* the kernel fills the TCP checksum at this offset */

		if (setsockopt(fd, IPPROTO_IPV6, IPV6_CHECKSUM, &off, sizeof(off)) < 0) {
			perror("kg-synflood: IPV6_CHECKSUM");
			return 2;
		}
	}
	memset(msg, 0, sizeof(msg));
	t0 = now_s();
	for (;;) {
		int n = BATCH, k;

		if (o->seconds > 0 ? now_s() - t0 >= o->seconds : sent >= o->count)
			break;
		if (o->seconds <= 0 && o->count - sent < n)
			n = (int)(o->count - sent);
		for (int i = 0; i < n; i++) {
			struct tcp_syn *p = &pkt[i];

			memset(p, 0, sizeof(*p));
			p->sport = htons((uint16_t)(1024 + (sent + i) % 64000));
			p->dport = htons((uint16_t)o->port);
			p->seq = htonl(seq++);
			p->off = 5 << 4;
			p->flags = 0x02; /* SYN */
			p->win = htons(64240);
			if (!v6) {
				/* pseudo header: src, dst, zero+proto, tcp length */
				const struct sockaddr_in *s4 = (const void *)&src, *d4 = (const void *)&dst;
				uint32_t s = sum16(&s4->sin_addr, 4, 0);

				s = sum16(&d4->sin_addr, 4, s);
				s += IPPROTO_TCP + sizeof(*p);
				p->sum = fold(sum16(p, sizeof(*p), s));
			}
			iov[i].iov_base = p;
			iov[i].iov_len = sizeof(*p);
			msg[i].msg_hdr.msg_iov = &iov[i];
			msg[i].msg_hdr.msg_iovlen = 1;
			msg[i].msg_hdr.msg_name = &dst;
			msg[i].msg_hdr.msg_namelen = dlen;
		}
		k = sendmmsg(fd, msg, (unsigned)n, 0);
		if (k < 0) {
			if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR)
				continue;
			perror("kg-synflood: sendmmsg");
			return 1;
		}
		sent += k;
	}
	t = now_s() - t0;
	printf("sent %ld in %.3f s (%.0f pps)\n", sent, t, t > 0 ? (double)sent / t : 0.0);
	close(fd);
	return 0;
}

struct slot {
	int fd;
	double started;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int run_connect(const struct opts *o)
{
	struct sockaddr_storage src, dst;
	socklen_t slen, dlen;
	struct slot *slots = calloc((size_t)o->parallel, sizeof(*slots));
	struct pollfd *pfd = calloc((size_t)o->parallel, sizeof(*pfd));
	double *lat = calloc((size_t)o->count + 1, sizeof(*lat));
	long started = 0, done = 0, est = 0, tmo = 0, refused = 0, other = 0, inflight = 0;

	if (!slots || !pfd || !lat ||
	    parse_addr(o->src, 0, &src, &slen) < 0 ||
	    parse_addr(o->dst, (uint16_t)o->port, &dst, &dlen) < 0) {
		fprintf(stderr, "kg-synflood: bad addresses or out of memory\n");
		free(slots);
		free(pfd);
		free(lat);
		return 2;
	}
	for (long i = 0; i < o->parallel; i++)
		slots[i].fd = -1;
	while (done < o->count) {
		double t = now_s();

		for (long i = 0; i < o->parallel && started < o->count; i++) {
			int fd;

			if (slots[i].fd >= 0)
				continue;
			fd = socket(src.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (fd < 0 || bind(fd, (struct sockaddr *)&src, slen) < 0) {
				perror("kg-synflood: socket/bind");
				exit(2); /* a test tool: the process ends here */
			}
			started++;
			if (connect(fd, (struct sockaddr *)&dst, dlen) == 0) {
				lat[est++] = 0;
				done++;
				close(fd);
				continue;
			}
			if (errno != EINPROGRESS) {
				if (errno == ECONNREFUSED)
					refused++;
				else
					other++;
				done++;
				close(fd);
				continue;
			}
			slots[i].fd = fd;
			slots[i].started = t;
			inflight++;
		}
		for (long i = 0; i < o->parallel; i++) {
			pfd[i].fd = slots[i].fd;
			pfd[i].events = POLLOUT;
			pfd[i].revents = 0;
		}
		if (inflight == 0)
			continue;
		(void)poll(pfd, (nfds_t)o->parallel, 20);
		t = now_s();
		for (long i = 0; i < o->parallel; i++) {
			int fd = slots[i].fd, soerr = 0;
			socklen_t el = sizeof(soerr);

			if (fd < 0)
				continue;
			if (pfd[i].revents) {
				(void)getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el);
				if (soerr == 0)
					lat[est++] = t - slots[i].started;
				else if (soerr == ECONNREFUSED)
					refused++;
				else
					other++;
			} else if ((t - slots[i].started) * 1000 >= (double)o->timeout_ms) {
				tmo++;
			} else {
				continue;
			}
			close(fd);
			slots[i].fd = -1;
			inflight--;
			done++;
		}
	}
	qsort(lat, (size_t)est, sizeof(*lat), cmp_double);
	printf("established %ld timeout %ld refused %ld other %ld p50_ms %.1f max_ms %.1f\n", est, tmo,
	       refused, other, est ? lat[est / 2] * 1000 : 0.0, est ? lat[est - 1] * 1000 : 0.0);
	free(slots);
	free(pfd);
	free(lat);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .count = 1, .parallel = 1, .timeout_ms = 2000 };
	int c;

	if (argc < 2) {
		fprintf(stderr, "usage: kg-synflood syn|connect -s SRC -d DST -p PORT -n COUNT "
				"[-S SECONDS] [-P PARALLEL] [-t TIMEOUT_MS]\n");
		return 2;
	}
	o.mode = argv[1];
	optind = 2;
	while ((c = getopt(argc, argv, "s:d:p:n:S:P:t:")) != -1) {
		switch (c) {
		case 's': o.src = optarg; break;
		case 'd': o.dst = optarg; break;
		case 'p': o.port = (unsigned)atoi(optarg); break;
		case 'n': o.count = atol(optarg); break;
		case 'S': o.seconds = atof(optarg); break;
		case 'P': o.parallel = atol(optarg); break;
		case 't': o.timeout_ms = atol(optarg); break;
		default: return 2;
		}
	}
	if (!o.src || !o.dst || o.port == 0 || o.port > 65535 || o.count < 1 || o.parallel < 1) {
		fprintf(stderr, "kg-synflood: -s, -d, -p and a positive -n are required\n");
		return 2;
	}
	if (strcmp(o.mode, "syn") == 0)
		return run_syn(&o);
	if (strcmp(o.mode, "connect") == 0)
		return run_connect(&o);
	fprintf(stderr, "kg-synflood: unknown mode %s\n", o.mode);
	return 2;
}
