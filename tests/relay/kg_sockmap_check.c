/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kg_sockmap_check.c - the plain sessions' relays (relay_plain.c: sockmap, splice,
 * plain) on the real kernel, called as the daemon calls them: a relay process accepts
 * "devices", reads the first bytes into io->up as the CONNECT step does, connects the
 * "broker", fills a struct kg_relay_io and runs kg_relay_start() then ops->pump() on
 * epoll events, and ends a session as kg_conn_close() does (kg_sockmap_session_end,
 * close both fds). This process drives the device clients and the broker ends over
 * loopback and checks what arrives. Used by tests/relay/run.sh (make check-sockmap).
 *
 *   kg-sockmap-check exact MODE N CONC [MAX_KIB]   N sessions, CONC at a time, each
 *       direction MAX_KIB/2..MAX_KIB KiB (default 256), through the relay
 *       MODE names (sockmap: program loaded, then every capability dropped; splice: no
 *       program; plain: no program and no pipes; cfg-userspace: program loaded but
 *       `relay = userspace`, which must pick plain). Each session: a 20-byte header
 *       (the "CONNECT", with its id and lengths) and a first chunk sent at once, which
 *       the broker must receive before it answers (so bytes queued before the sockets
 *       go into the SOCKHASH must be relayed without newer ones behind them); then the
 *       rest in random write splits and a FIN; the broker answers all but the last
 *       min(half, 64 KiB) of its bytes while reading, those after the device's FIN,
 *       then closes. Checks:
 *       every byte both ways (compared as it arrives), the broker sees the header first,
 *       the FIN after exactly all device bytes, the device its EOF after all broker
 *       bytes, the relay chosen, and the relay's byte counters (io->bytes_up/down).
 *       Prints the relay process's user and system CPU per GB relayed.
 *   kg-sockmap-check revoke N            N sockmap sessions streaming both ways; the
 *       relay process closes every session at once (revocation): each of the 2N peer
 *       sockets must see EOF or a reset within 100 ms.
 *   kg-sockmap-check queued N          N socket pairs with bytes queued both ways
 *       before kg_sockmap_add(): they must be relayed with nothing arriving after them.
 *   kg-sockmap-check nocaps              the program cannot load without capabilities:
 *       kg_sockmap_open() says why, and the plain ladder starts splice.
 *
 * Output: "PASS name" / "FAIL name: why" lines, "STAT ..." lines; exit 0 iff all passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ops/config.h"
#include "ops/err.h"
#include "ops/log.h"
#include "ops/metrics.h"
#include "relay/pipe_pool.h"
#include "relay/relay.h"
#include "relay/sockmap.h"

#define HDR_LEN 20
#define MAGIC 0x4b47534dU   /* "KGSM" */
static uint32_t max_len = 256u * 1024u;   /* each direction's length: max_len/2 .. max_len */
#define MAX_C1 (8u * 1024u)   /* what the CONNECT step leaves queued: it must fit the
					 * broker's send buffer at once, or splice takes over */

static int failures, passes;

static void pass(const char *name)
{
	printf("PASS %s\n", name);
	passes++;
}

static void fail(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("FAIL %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	failures++;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* The byte stream of a session's direction, by position (nothing stored: a bulk run
 * moves gigabytes): splitmix64 of seed and pos/8. */
static void fill(uint8_t *p, size_t n, uint64_t seed, uint64_t pos)
{
	uint64_t blk = UINT64_MAX, v = 0;

	for (size_t i = 0; i < n; i++, pos++) {
		if (pos >> 3 != blk) {
			blk = pos >> 3;
			v = seed ^ (blk * 0x9e3779b97f4a7c15ULL);
			v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9ULL;
			v = (v ^ (v >> 27)) * 0x94d049bb133111ebULL;
			v ^= v >> 31;
		}
		p[i] = (uint8_t)(v >> ((pos & 7) * 8));
	}
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int listen_lo(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		perror("listen");
		exit(2);
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static int connect_lo(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Drop every capability (effective, permitted, inheritable) of this process. */
static int drop_caps(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	return (int)syscall(SYS_capset, &h, d);
}

/* ==== the relay process (what the daemon does) ==================================== */

struct rsess {
	struct kg_relay_io io;
	const struct kg_relay_ops *ops;
	uint32_t su, sd;
	bool closed;                 /* closed in this epoll batch: freed after it */
	struct rsess *next;
};

static volatile sig_atomic_t stop_flag, revoke_flag, mark_flag;
static void on_sig(int sig)
{
	if (sig == SIGUSR1)
		revoke_flag = 1;
	else if (sig == SIGUSR2)
		mark_flag = 1;
	else
		stop_flag = 1;
}

struct rstats {
	unsigned sessions, wrong_relay, bad_counts, start_failed, open_sessions;
	uint64_t pumps;
	uint64_t bytes;
	char relay_seen[32];
};

static void rsess_close(struct rsess *s, struct rstats *st, bool check_counts)
{
	/* kg_conn_close()'s order: the relay's leftovers, then both fds. */
	kg_sockmap_session_end(&s->io);
	kg_ktls_session_release(&s->io);
	if (check_counts && (s->io.bytes_up != HDR_LEN + (uint64_t)s->su || s->io.bytes_down != s->sd)) {
		if (st->bad_counts++ < 5)
			fprintf(stderr, "relay: counters up %" PRIu64 " (want %u) down %" PRIu64
				" (want %u)\n", s->io.bytes_up, HDR_LEN + s->su, s->io.bytes_down, s->sd);
	}
	st->bytes += s->io.bytes_up + s->io.bytes_down;
	close(s->io.dev.fd);
	close(s->io.be.fd);
	kg_buf_free(&s->io.up);
	kg_buf_free(&s->io.down);
}

/* Read exactly n bytes (the CONNECT step), waiting up to 5 s. */
static int read_exact(int fd, uint8_t *p, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&pf, 1, 5000) != 1)
			return -1;
		r = recv(fd, p + got, n - got, MSG_DONTWAIT);
		if (r <= 0) {
			if (r < 0 && errno == EAGAIN)
				continue;
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

static int relay_main(int lfd, uint16_t be_port, const char *want, bool with_sockmap,
		      bool with_pipes, enum kg_relay_choice choice, int report_fd)
{
	static struct kg_metrics metrics;
	struct kg_config cfg;
	struct kg_pipe_pool pool;
	struct kg_sockmap *sm = NULL;
	struct rstats st = { 0 };
	struct rsess *list = NULL;
	struct kg_evsrc lsrc = { .type = KG_EV_LISTEN, .fd = lfd, .events = UINT32_MAX };
	struct rusage ru, ru0, mark;
	uint64_t mark_pumps = 0;
	bool ktls_unavail = true;
	char why[256];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	uint64_t cid = 0;

	memset(&cfg, 0, sizeof(cfg));
	cfg.relay = choice;
	kg_log_set_level(getenv("KG_DEBUG") ? KG_LOG_DEBUG : KG_LOG_WARN);
	kg_pipe_pool_init(&pool, 64);
	if (with_sockmap) {
		sm = kg_sockmap_open(why, sizeof(why));
		if (sm == NULL) {
			dprintf(report_fd, "ERR %s\n", why);
			return 1;
		}
		/* The daemon drops its capabilities after start: the relay must work on. */
		if (drop_caps() < 0) {
			dprintf(report_fd, "ERR capset: %s\n", strerror(errno));
			return 1;
		}
	}
	nonblock(lfd);
	if (kg_evsrc_watch(ep, &lsrc, EPOLLIN) < 0)
		return 1;
	/* CPU from here: relaying (and the sessions' setup), not loading the program */
	getrusage(RUSAGE_SELF, &ru0);
	mark = ru0;
	while (!stop_flag) {
		struct epoll_event evs[64];
		/* 20 ms: the daemon's tick, which also paces the sessions' rechecks */
		int n = epoll_wait(ep, evs, 64, 20);

		if (mark_flag) {
			/* the revoke run's sessions are set up: count the steady state from here */
			getrusage(RUSAGE_SELF, &mark);
			mark_pumps = st.pumps;
			mark_flag = 0;
			dprintf(report_fd, "MARK\n");
		}
		if (revoke_flag) {
			/* Revocation: the connection closes both fds, nothing else. */
			while (list) {
				struct rsess *s = list;

				list = s->next;
				rsess_close(s, &st, false);
				free(s);
			}
			revoke_flag = 0;
			getrusage(RUSAGE_SELF, &ru);
			dprintf(report_fd, "REVOKED user_us=%lld pumps=%" PRIu64 "\n",
				(long long)(ru.ru_utime.tv_sec - mark.ru_utime.tv_sec) * 1000000 +
					(ru.ru_utime.tv_usec - mark.ru_utime.tv_usec),
				st.pumps - mark_pumps);
		}
		for (int i = 0; i < n; i++) {
			struct kg_evsrc *src = evs[i].data.ptr;

			if (src == &lsrc) {
				for (;;) {
					int dev = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
					uint8_t hdr[HDR_LEN], extra[4096];
					struct rsess *s;
					bool again;
					ssize_t x;
					int be;

					if (dev < 0)
						break;
					s = calloc(1, sizeof(*s));
					/* the CONNECT step: the header, and for odd ids whatever the
					 * device pipelined behind it */
					if (s == NULL || read_exact(dev, hdr, HDR_LEN) < 0 ||
					    get32(hdr) != MAGIC || (be = connect_lo(be_port)) < 0) {
						close(dev);
						free(s);
						st.start_failed++;
						continue;
					}
					nonblock(dev);
					nonblock(be);
					s->su = get32(hdr + 8);
					s->sd = get32(hdr + 12);
					if (kg_buf_reserve(&s->io.up, HDR_LEN + sizeof(extra)) < 0)
						abort();
					memcpy(s->io.up.data, hdr, HDR_LEN);
					s->io.up.len = HDR_LEN;
					if (get32(hdr + 4) & 1) {
						x = recv(dev, extra, sizeof(extra), MSG_DONTWAIT);
						if (x > 0) {
							memcpy(s->io.up.data + s->io.up.len, extra, (size_t)x);
							s->io.up.len += (size_t)x;
						}
					}
					s->io.dev = (struct kg_evsrc){ KG_EV_DEVICE, dev, UINT32_MAX, s };
					s->io.be = (struct kg_evsrc){ KG_EV_BACKEND, be, UINT32_MAX, s };
					s->io.dev_plain = true;
					s->io.cid = ++cid;
					s->io.device_id = "test";
					s->io.cfg = &cfg;
					s->io.metrics = &metrics;
					s->io.pipes = with_pipes ? &pool : NULL;
					s->io.ktls_unavailable = &ktls_unavail;
					s->io.sockmap = sm;
					s->io.epfd = ep;
					s->ops = kg_relay_start(&s->io, &again);
					st.sessions++;
					if (s->ops == NULL) {
						st.start_failed++;
						close(dev);
						close(be);
						kg_buf_free(&s->io.up);
						free(s);
						continue;
					}
					snprintf(st.relay_seen, sizeof(st.relay_seen), "%s", s->ops->name);
					if (strcmp(s->ops->name, want) != 0 ||
					    kg_relay_for_mode(s->io.mode) != s->ops)
						st.wrong_relay++;
					s->next = list;
					list = s;
					st.open_sessions++;
					src = &s->io.dev;   /* pump at once, as st_handoff -> st_relaying */
					goto pump;
				}
				continue;
			}
pump:
			{
				struct rsess *s = src->owner;

				enum kg_reason r = s->closed ? KG_REASON_OK : s->ops->pump(&s->io);

				st.pumps++;

				if (getenv("KG_DEBUG") && r != KG_REASON_OK)
					fprintf(stderr, "relay: session %llu ends: reason %d dev_eof %d be_eof %d be_shut %d\n", (unsigned long long)s->io.cid, (int)r, s->io.dev_eof, s->io.be_eof, s->io.be_shut);
				if (!s->closed && r != KG_REASON_OK) {
					rsess_close(s, &st, true);
					s->closed = true;
					st.open_sessions--;
				}
			}
		}
		/* Sessions whose relay waits on the kernel (io.recheck): pumped again here, as
		 * the daemon's worker does at each tick (worker.c scan_deadlines). */
		for (struct rsess *s = list; s != NULL; s = s->next) {
			enum kg_reason r;

			if (s->closed || !s->io.recheck)
				continue;
			s->io.recheck = false;
			r = s->ops->pump(&s->io);
			st.pumps++;
			if (r != KG_REASON_OK) {
				rsess_close(s, &st, true);
				s->closed = true;
				st.open_sessions--;
			}
		}
		/* the batch may name a session closed earlier in it: free them only now */
		for (struct rsess **pp = &list; *pp != NULL;) {
			struct rsess *s = *pp;

			if (s->closed) {
				*pp = s->next;
				free(s);
			} else {
				pp = &s->next;
			}
		}
	}
	getrusage(RUSAGE_SELF, &ru);
	dprintf(report_fd,
		"RESULT relay=%s sessions=%u wrong_relay=%u bad_counts=%u start_failed=%u open=%u "
		"bytes=%" PRIu64 " pumps=%" PRIu64 " user_us=%lld sys_us=%lld metric_up=%" PRIu64 " metric_down=%" PRIu64 "\n",
		st.relay_seen[0] ? st.relay_seen : "-", st.sessions, st.wrong_relay, st.bad_counts,
		st.start_failed, st.open_sessions, st.bytes, st.pumps,
		(long long)(ru.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1000000 +
			(ru.ru_utime.tv_usec - ru0.ru_utime.tv_usec),
		(long long)(ru.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1000000 +
			(ru.ru_stime.tv_usec - ru0.ru_stime.tv_usec),
		(uint64_t)metrics.bytes[KG_DIR_UP], (uint64_t)metrics.bytes[KG_DIR_DOWN]);
	kg_sockmap_free(sm);
	kg_pipe_pool_fini(&pool);
	return 0;
}

struct relay_proc {
	pid_t pid;
	int report;     /* read end of the relay's report pipe */
	uint16_t dev_port;
};

static void start_relay(struct relay_proc *rp, uint16_t be_port, const char *want, bool sockmap,
			bool pipes, enum kg_relay_choice choice)
{
	int pfd[2];
	int lfd = listen_lo(&rp->dev_port);

	if (pipe2(pfd, O_CLOEXEC) < 0)
		exit(2);
	rp->pid = fork();
	if (rp->pid == 0) {
		struct sigaction sa = { .sa_handler = on_sig };

		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGUSR1, &sa, NULL);
		sigaction(SIGUSR2, &sa, NULL);
		close(pfd[0]);
		_exit(relay_main(lfd, be_port, want, sockmap, pipes, choice, pfd[1]));
	}
	close(lfd);
	close(pfd[1]);
	rp->report = pfd[0];
}

/* One line from the relay's report (blocking up to ms), or "" on timeout. */
static void report_line(struct relay_proc *rp, char *buf, size_t cap, int ms)
{
	size_t n = 0;

	buf[0] = 0;
	while (n + 1 < cap) {
		struct pollfd pf = { .fd = rp->report, .events = POLLIN };
		char c;

		if (poll(&pf, 1, ms) != 1 || read(rp->report, &c, 1) != 1)
			break;
		if (c == '\n')
			break;
		buf[n++] = c;
		buf[n] = 0;
	}
}

static void stop_relay(struct relay_proc *rp, char *result, size_t cap)
{
	int status;

	kill(rp->pid, SIGTERM);
	report_line(rp, result, cap, 10000);
	(void)waitpid(rp->pid, &status, 0);
	close(rp->report);
}

/* ==== the device clients and the broker ends ====================================== */

struct gsess {
	uint32_t id, su, sd, c1;
	int dc, bs;                        /* device client, broker end (-1: none / closed) */
	bool live;
	uint8_t hdr[HDR_LEN];              /* the "CONNECT": magic, id, su, sd, c1 */
	size_t up_len;                     /* HDR_LEN + su */
	size_t up_sent, up_rcvd, down_sent, down_rcvd;
	bool dc_fin, bs_eof, dc_eof, bs_done, failed;
};

/* Broker ends whose header has not arrived yet (not yet matched to a session). */
struct pend {
	int fd;
	uint8_t hdr[HDR_LEN];
	size_t got;
};

static size_t split(size_t left)
{
	static const size_t caps[] = { 7, 100, 1460, 16384, 65536 };
	size_t c = 1 + rnd() % caps[rnd() % 5];

	return c < left ? c : left;
}

static void gfail(struct gsess *g, const char *what)
{
	static unsigned told;

	if (!g->failed && told++ < 20)
		fprintf(stderr, "session %u (su %u sd %u c1 %u): %s\n", g->id, g->su, g->sd, g->c1, what);
	g->failed = true;
}

/* The stream's bytes [pos, pos + n): the header first for the device's stream. */
static void stream(const struct gsess *g, bool up, uint8_t *p, size_t n, size_t pos)
{
	if (up) {
		while (n > 0 && pos < HDR_LEN) {
			*p++ = g->hdr[pos++];
			n--;
		}
		fill(p, n, g->id * 2 + 1, pos - HDR_LEN);
	} else {
		fill(p, n, g->id * 2 + 2, pos);
	}
}

/* Write the stream from *off up to lim in random splits until EAGAIN. */
static int gwrite(const struct gsess *g, bool up, int fd, size_t *off, size_t lim)
{
	uint8_t buf[65536];

	while (*off < lim) {
		size_t len = split(lim - *off);
		ssize_t w;

		stream(g, up, buf, len, *off);
		w = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0)
			return errno == EAGAIN ? 0 : -1;
		*off += (size_t)w;
	}
	return 0;
}

/* Do the n bytes received at stream position pos match? */
static bool expect(const struct gsess *g, bool up, const uint8_t *p, size_t n, size_t pos)
{
	uint8_t want[65536];

	stream(g, up, want, n, pos);
	return memcmp(p, want, n) == 0;
}

static void gsess_init(struct gsess *g, uint32_t id, uint16_t dev_port)
{
	memset(g, 0, sizeof(*g));
	g->live = true;
	g->id = id;
	g->su = max_len / 2 + (uint32_t)(rnd() % (max_len / 2)) + 2;
	g->sd = max_len / 2 + (uint32_t)(rnd() % (max_len / 2)) + 2;
	g->c1 = (uint32_t)(rnd() % MAX_C1) + 1;
	if (g->c1 >= g->su)   /* the device keeps sending after the handoff (no FIN yet) */
		g->c1 = g->su - 1;
	g->up_len = HDR_LEN + g->su;
	put32(g->hdr, MAGIC);
	put32(g->hdr + 4, id);
	put32(g->hdr + 8, g->su);
	put32(g->hdr + 12, g->sd);
	put32(g->hdr + 16, g->c1);
	g->bs = -1;
	g->dc = connect_lo(dev_port);
	if (g->dc < 0) {
		gfail(g, "connect to the relay");
		return;
	}
	nonblock(g->dc);
}

static bool gsess_over(const struct gsess *g)
{
	return g->failed || (g->dc_eof && g->bs_done);
}

static void gsess_free(struct gsess *g)
{
	if (g->dc >= 0)
		close(g->dc);
	if (g->bs >= 0)
		close(g->bs);
	g->live = false;
	g->dc = g->bs = -1;
}

/* Advance one session as far as it goes without blocking. */
static void gsess_step(struct gsess *g)
{
	uint8_t buf[65536];
	ssize_t n;

	if (!g->live || g->failed || g->dc < 0)
		return;
	/* device client: header + first chunk at once; the rest once the broker answered */
	{
		size_t lim = g->down_rcvd > 0 ? g->up_len : HDR_LEN + g->c1;

		if (gwrite(g, true, g->dc, &g->up_sent, lim) < 0)
			return gfail(g, "device write failed");
		if (g->up_sent == g->up_len && !g->dc_fin) {
			shutdown(g->dc, SHUT_WR);
			g->dc_fin = true;
		}
	}
	while (!g->dc_eof && (n = recv(g->dc, buf, sizeof(buf), MSG_DONTWAIT)) >= 0) {
		if (n == 0) {
			if (g->down_rcvd != g->sd)
				return gfail(g, "device saw EOF before every broker byte");
			g->dc_eof = true;
			break;
		}
		if (g->down_rcvd + (size_t)n > g->sd || !expect(g, false, buf, (size_t)n, g->down_rcvd))
			return gfail(g, "device received wrong bytes");
		g->down_rcvd += (size_t)n;
	}
	if (!g->dc_eof && errno != EAGAIN)
		return gfail(g, "device read error");
	if (g->bs < 0)
		return;
	/* broker end: reads the device's stream; half of its answer once the first chunk
	 * arrived, the rest after the device's FIN, then closes */
	while (!g->bs_eof && (n = recv(g->bs, buf, sizeof(buf), MSG_DONTWAIT)) >= 0) {
		if (n == 0) {
			if (g->up_rcvd != g->up_len)
				return gfail(g, "broker saw the FIN before every device byte");
			g->bs_eof = true;
			break;
		}
		if (g->up_rcvd + (size_t)n > g->up_len || !expect(g, true, buf, (size_t)n, g->up_rcvd))
			return gfail(g, "broker received wrong bytes");
		g->up_rcvd += (size_t)n;
	}
	if (!g->bs_eof && errno != EAGAIN)
		return gfail(g, "broker read error");
	if (g->up_rcvd >= HDR_LEN + g->c1 && !g->bs_done) {
		/* at most 64 KiB after the FIN: what the kernel still moves after a FIN is
		 * waited for by polling (relay_plain.c), which a bulk run must not measure */
		size_t tail = g->sd / 2 < 65536 ? g->sd / 2 : 65536;
		size_t lim = g->bs_eof ? g->sd : g->sd - tail;

		if (gwrite(g, false, g->bs, &g->down_sent, lim) < 0)
			return gfail(g, "broker write failed");
		if (g->bs_eof && g->down_sent == g->sd) {
			close(g->bs);
			g->bs = -1;
			g->bs_done = true;
		}
	}
}

/* The broker listener's new connections: read their header, match the session. */
static void accept_brokers(int lb, struct pend *pend, size_t *npend, size_t maxpend, struct gsess *gs,
			   size_t ng)
{
	int fd;

	while (*npend < maxpend && (fd = accept4(lb, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0)
		pend[(*npend)++] = (struct pend){ .fd = fd };
	for (size_t i = 0; i < *npend;) {
		struct pend *p = &pend[i];
		ssize_t n = recv(p->fd, p->hdr + p->got, HDR_LEN - p->got, MSG_DONTWAIT);
		bool matched = false;

		if (n > 0)
			p->got += (size_t)n;
		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			close(p->fd);
			pend[i] = pend[--*npend];
			continue;
		}
		if (p->got < HDR_LEN) {
			i++;
			continue;
		}
		for (size_t k = 0; k < ng; k++) {
			struct gsess *g = &gs[k];

			if (g->live && g->bs < 0 && !g->bs_done && g->id == get32(p->hdr + 4)) {
				if (get32(p->hdr) != MAGIC || memcmp(p->hdr, g->hdr, HDR_LEN))
					gfail(g, "the broker's first bytes are not the CONNECT");
				g->bs = p->fd;
				g->up_rcvd = HDR_LEN;
				matched = true;
				break;
			}
		}
		if (!matched)
			close(p->fd);   /* "the CONNECT first" failed: the session will time out */
		pend[i] = pend[--*npend];
	}
}

/* Wait until some socket of a live session can move (or 20 ms). */
static void gwait(int lb, struct gsess *gs, size_t ng, struct pend *pend, size_t npend)
{
	struct pollfd pf[2048];
	nfds_t n = 0;

	pf[n++] = (struct pollfd){ .fd = lb, .events = POLLIN };
	for (size_t i = 0; i < npend && n < 2048; i++)
		pf[n++] = (struct pollfd){ .fd = pend[i].fd, .events = POLLIN };
	for (size_t i = 0; i < ng && n + 2 < 2048; i++) {
		struct gsess *g = &gs[i];

		if (!g->live || g->failed)
			continue;
		if (g->dc >= 0)
			pf[n++] = (struct pollfd){ .fd = g->dc, .events = POLLIN |
						     (g->up_sent < g->up_len ? POLLOUT : 0) };
		if (g->bs >= 0)
			pf[n++] = (struct pollfd){ .fd = g->bs, .events = POLLIN |
						     (g->down_sent < g->sd ? POLLOUT : 0) };
	}
	(void)poll(pf, n, 20);
}

static void parse_result(const char *r, const char *key, unsigned long long *v)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(r, pat);
	*v = p ? strtoull(p + strlen(pat), NULL, 10) : ~0ULL;
}

static int run_exact(const char *mode, unsigned total, unsigned conc)
{
	bool sockmap = strcmp(mode, "sockmap") == 0 || strcmp(mode, "cfg-userspace") == 0;
	bool pipes = strcmp(mode, "plain") != 0;
	const char *want = strcmp(mode, "cfg-userspace") == 0 ? "plain" : mode;
	enum kg_relay_choice choice = strcmp(mode, "cfg-userspace") == 0 ? KG_RELAY_USERSPACE
									  : KG_RELAY_AUTO;
	struct relay_proc rp;
	uint16_t be_port;
	int lb = listen_lo(&be_port);
	struct gsess *gs = calloc(conc, sizeof(*gs));
	struct pend *pend = calloc(2 * conc, sizeof(*pend));
	size_t npend = 0;
	unsigned started = 0, done = 0, bad = 0;
	uint64_t t0 = now_ns(), deadline = t0 + 100ull * 1000000000u, user_payload = 0;
	char name[64], result[512];
	unsigned long long sessions, wrong, badc, sfail, open, bytes, user_us, sys_us, mup, mdown;

	nonblock(lb);
	start_relay(&rp, be_port, want, sockmap, pipes, choice);
	while (done < total && now_ns() < deadline) {
		if (waitpid(rp.pid, NULL, WNOHANG) != 0)
			break;   /* the relay process is gone (its report says why) */
		for (unsigned i = 0; i < conc; i++) {
			struct gsess *g = &gs[i];

			if (g->live && gsess_over(g)) {
				bad += g->failed;
				user_payload += g->up_len + g->sd;
				gsess_free(g);
				done++;
			}
			if (!g->live && started < total)
				gsess_init(g, started++, rp.dev_port);
		}
		accept_brokers(lb, pend, &npend, 2 * conc, gs, conc);
		for (unsigned i = 0; i < conc; i++)
			if (gs[i].live)
				gsess_step(&gs[i]);
		gwait(lb, gs, conc, pend, npend);
	}
	/* let the relay see the last hang-ups before its report */
	usleep(200000);
	stop_relay(&rp, result, sizeof(result));
	for (unsigned i = 0; i < conc; i++)
		if (gs[i].live)
			gsess_free(&gs[i]);
	for (size_t i = 0; i < npend; i++)
		close(pend[i].fd);
	close(lb);
	printf("STAT %s: %s wall_ms=%llu\n", mode, result,
	       (unsigned long long)((now_ns() - t0) / 1000000));
	if (strncmp(result, "ERR", 3) == 0 || strncmp(result, "RESULT", 6) != 0) {
		snprintf(name, sizeof(name), "%s_relay_ran", mode);
		fail(name, "%s", result[0] ? result : "no report from the relay process");
		return 1;
	}
	parse_result(result, "sessions", &sessions);
	parse_result(result, "wrong_relay", &wrong);
	parse_result(result, "bad_counts", &badc);
	parse_result(result, "start_failed", &sfail);
	parse_result(result, "open", &open);
	parse_result(result, "bytes", &bytes);
	parse_result(result, "user_us", &user_us);
	parse_result(result, "sys_us", &sys_us);
	parse_result(result, "metric_up", &mup);
	parse_result(result, "metric_down", &mdown);

	snprintf(name, sizeof(name), "%s_selected", mode);
	if (sessions == total && wrong == 0 && sfail == 0)
		pass(name);
	else
		fail(name, "%llu of %u sessions started, %llu not by \"%s\", %llu failed to start",
		     sessions, total, wrong, want, sfail);
	snprintf(name, sizeof(name), "%s_byte_exact", mode);
	if (done == total && bad == 0)
		pass(name);
	else
		fail(name, "%u of %u sessions finished, %u wrong (see stderr)", done, total, bad);
	snprintf(name, sizeof(name), "%s_counters", mode);
	if (badc == 0 && open == 0 && bytes == user_payload && mup + mdown == user_payload)
		pass(name);
	else
		fail(name, "%llu sessions with wrong io->bytes_*, %llu still open, relay counted %llu "
		     "(metrics %llu), clients moved %llu", badc, open, bytes, mup + mdown,
		     (unsigned long long)user_payload);
	if (bytes > 0 && bytes != ~0ULL)
		printf("STAT %s: user_cpu_ms_per_gb=%.1f sys_cpu_ms_per_gb=%.1f gb=%.3f conns=%u\n", mode,
		       (double)user_us / 1000.0 / ((double)bytes / 1e9),
		       (double)sys_us / 1000.0 / ((double)bytes / 1e9), (double)bytes / 1e9, total);
	free(gs);
	free(pend);
	return 0;
}

/* ==== revocation ==================================================================== */

static int run_revoke(unsigned n)
{
	struct relay_proc rp;
	uint16_t be_port;
	int lb = listen_lo(&be_port);
	int *dc = calloc(n, sizeof(int)), *bs = calloc(n, sizeof(int));
	bool *cut = calloc(2 * n, sizeof(bool));
	uint8_t buf[65536], hdr[HDR_LEN];
	char line[512];
	uint64_t t0, t_last = 0, deadline, moved = 0;
	unsigned long long user_us, pumps;
	unsigned ncut = 0, flowing = 0;

	memset(buf, 0xa5, sizeof(buf));
	start_relay(&rp, be_port, "sockmap", true, true, KG_RELAY_AUTO);
	for (unsigned i = 0; i < n; i++) {
		put32(hdr, MAGIC);
		put32(hdr + 4, 2 * i);
		put32(hdr + 8, 1u << 30);
		put32(hdr + 12, 1u << 30);
		put32(hdr + 16, 1);
		dc[i] = connect_lo(rp.dev_port);
		if (dc[i] < 0 || send(dc[i], hdr, HDR_LEN, 0) != HDR_LEN) {
			fail("revoke_setup", "connect/send: %s", strerror(errno));
			return 1;
		}
		bs[i] = accept4(lb, NULL, NULL, SOCK_CLOEXEC);
		if (bs[i] < 0 || read_exact(bs[i], hdr, HDR_LEN) < 0) {
			fail("revoke_setup", "broker accept: %s", strerror(errno));
			return 1;
		}
		nonblock(dc[i]);
		nonblock(bs[i]);
	}
	/* both directions streaming through the kernel for 2 s: the relay's steady cost,
	 * counted from the moment every session is set up (and pumped once) */
	usleep(100000);
	kill(rp.pid, SIGUSR2);
	report_line(&rp, line, sizeof(line), 2000);
	if (strcmp(line, "MARK") != 0) {
		fail("revoke_setup", "the relay did not mark the steady state: \"%s\"", line);
		return 1;
	}
	{
		bool *up_ok = calloc(n, sizeof(bool)), *down_ok = calloc(n, sizeof(bool));

		deadline = now_ns() + 2000000000ull;
		while (now_ns() < deadline) {
			for (unsigned i = 0; i < n; i++) {
				ssize_t a, b;

				(void)send(dc[i], buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
				(void)send(bs[i], buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
				a = recv(bs[i], buf, sizeof(buf), MSG_DONTWAIT);
				b = recv(dc[i], buf, sizeof(buf), MSG_DONTWAIT);
				up_ok[i] |= a > 0;
				down_ok[i] |= b > 0;
				moved += (uint64_t)(a > 0 ? a : 0) + (uint64_t)(b > 0 ? b : 0);
			}
		}
		for (unsigned i = 0; i < n; i++)
			flowing += up_ok[i] && down_ok[i];
		free(up_ok);
		free(down_ok);
	}
	if (flowing < n) {
		fail("revoke_setup", "only %u of %u sessions moved bytes both ways", flowing, n);
		return 1;
	}
	t0 = now_ns();
	kill(rp.pid, SIGUSR1);
	deadline = t0 + 2000000000ull;
	while (ncut < 2 * n && now_ns() < deadline) {
		for (unsigned i = 0; i < 2 * n; i++) {
			int fd = i < n ? dc[i] : bs[i - n];
			ssize_t r;

			if (cut[i])
				continue;
			/* keep writing, as a live peer does; read until EOF or an error */
			(void)send(fd, buf, 1024, MSG_DONTWAIT | MSG_NOSIGNAL);
			while ((r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
				;
			if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				cut[i] = true;
				ncut++;
				t_last = now_ns();
			}
		}
	}
	report_line(&rp, line, sizeof(line), 2000);
	printf("STAT revoke: %u sessions, %u of %u peers cut, last after %.1f ms (relay said \"%s\")\n",
	       n, ncut, 2 * n, t_last ? (double)(t_last - t0) / 1e6 : -1.0, line);
	parse_result(line, "user_us", &user_us);
	parse_result(line, "pumps", &pumps);
	if (user_us != ~0ULL && moved > 0)
		printf("STAT sockmap steady: %.3f GB moved in 2 s by %u sessions, relay user CPU %.1f ms "
		       "(%.2f ms/GB), %llu pumps\n", (double)moved / 1e9, n,
		       (double)user_us / 1000.0, (double)user_us / 1000.0 / ((double)moved / 1e9), pumps);
	/* once set up, the relay never ran for them: the kernel moved every byte */
	if (user_us != ~0ULL && pumps == 0 && moved > 100000000ull)
		pass("sockmap_steady_no_daemon_work");
	else
		fail("sockmap_steady_no_daemon_work", "%llu pumps in the steady state of %u sessions, "
		     "%llu bytes moved", pumps, n, (unsigned long long)moved);
	if (ncut == 2 * n && t_last - t0 < 100000000ull && strncmp(line, "REVOKED", 7) == 0)
		pass("revoke_cuts_within_100ms");
	else
		fail("revoke_cuts_within_100ms", "%u of %u peers cut, last after %.1f ms", ncut, 2 * n,
		     t_last ? (double)(t_last - t0) / 1e6 : -1.0);
	stop_relay(&rp, line, sizeof(line));
	for (unsigned i = 0; i < n; i++) {
		close(dc[i]);
		close(bs[i]);
	}
	close(lb);
	free(dc);
	free(bs);
	free(cut);
	return 0;
}

/* ==== bytes queued before the insert ================================================ */

/* kg_sockmap_add() alone: bytes already in a socket's receive queue when it goes into
 * the SOCKHASH (the window between the relay's last read and the insert, made wide
 * here) must be relayed at once, with nothing arriving after them to wake the verdict. */
static int run_queued(unsigned n)
{
	char why[256];
	struct kg_sockmap *sm = kg_sockmap_open(why, sizeof(why));
	uint16_t pd, pb;
	int ld, lb;
	unsigned ok = 0, wrong = 0;
	uint64_t t0, worst = 0;

	if (sm == NULL) {
		fail("queued_bytes_relayed", "%s", why);
		return 1;
	}
	ld = listen_lo(&pd);
	lb = listen_lo(&pb);
	for (unsigned i = 0; i < n; i++) {
		uint8_t up[3000], down[700], got_up[3000], got_down[700];
		uint64_t ck[2], wbase[2];
		int rc;
		int dc = connect_lo(pd), dev = accept(ld, NULL, NULL);
		int be = connect_lo(pb), bs = accept(lb, NULL, NULL);
		size_t gu = 0, gd = 0;

		fill(up, sizeof(up), i, 0);
		fill(down, sizeof(down), i + 1000000, 0);
		/* both directions queued, unread, before the insert */
		if (dc < 0 || dev < 0 || be < 0 || bs < 0 || send(dc, up, sizeof(up), 0) != sizeof(up) ||
		    send(bs, down, sizeof(down), 0) != sizeof(down)) {
			fail("queued_bytes_relayed", "setup: %s", strerror(errno));
			return 1;
		}
		usleep(2000);   /* let them reach the receive queues */
		ck[0] = kg_sockmap_cookie(dev);
		ck[1] = kg_sockmap_cookie(be);
		if ((rc = kg_sockmap_add(sm, dev, be, ck, 0, wbase)) < 0) {
			fail("queued_bytes_relayed", "kg_sockmap_add: %s", strerror(-rc));
			return 1;
		}
		t0 = now_ns();
		nonblock(bs);
		nonblock(dc);
		while ((gu < sizeof(up) || gd < sizeof(down)) && now_ns() - t0 < 1000000000ull) {
			ssize_t r = recv(bs, got_up + gu, sizeof(up) - gu, 0);

			if (r > 0)
				gu += (size_t)r;
			r = recv(dc, got_down + gd, sizeof(down) - gd, 0);
			if (r > 0)
				gd += (size_t)r;
			if (r <= 0)
				usleep(200);
		}
		if (gu == sizeof(up) && gd == sizeof(down)) {
			ok++;
			if (memcmp(got_up, up, sizeof(up)) != 0 || memcmp(got_down, down, sizeof(down)) != 0)
				wrong++;
			if (now_ns() - t0 > worst)
				worst = now_ns() - t0;
		}
		kg_sockmap_remove(sm, ck);
		close(dc);
		close(dev);
		close(be);
		close(bs);
	}
	close(ld);
	close(lb);
	kg_sockmap_free(sm);
	printf("STAT queued: %u of %u pairs relayed what was queued before the insert, worst %.1f ms\n",
	       ok, n, (double)worst / 1e6);
	if (ok == n && wrong == 0)
		pass("queued_bytes_relayed");
	else
		fail("queued_bytes_relayed", "%u of %u pairs got their queued bytes (%u wrong) within 1 s",
		     ok, n, wrong);
	return 0;
}

/* ==== without capabilities ========================================================== */

static int run_nocaps(void)
{
	int pfd[2];
	pid_t pid;
	char line[512] = "";
	ssize_t n;

	if (pipe(pfd) < 0)
		return 2;
	pid = fork();
	if (pid == 0) {
		char why[256] = "";
		struct kg_sockmap *sm;

		close(pfd[0]);
		if (drop_caps() < 0)
			_exit(3);
		sm = kg_sockmap_open(why, sizeof(why));
		dprintf(pfd[1], "%s|%s", sm ? "loaded" : "unavailable", why);
		kg_sockmap_free(sm);
		_exit(0);
	}
	close(pfd[1]);
	n = read(pfd[0], line, sizeof(line) - 1);
	line[n > 0 ? n : 0] = 0;
	waitpid(pid, NULL, 0);
	close(pfd[0]);
	printf("STAT nocaps: %s\n", line);
	if (strncmp(line, "unavailable|sockmap program: ", 29) == 0)
		pass("nocaps_unavailable_with_reason");
	else
		fail("nocaps_unavailable_with_reason", "got \"%s\"", line);
	{
		/* the probe the daemon uses to decide whether to keep CAP_BPF after start */
		char why[256];
		struct kg_sockmap *sm = kg_sockmap_open(why, sizeof(why));
		struct utsname u;
		unsigned maj = 0, min = 0;
		bool old, needs;

		uname(&u);
		sscanf(u.release, "%u.%u", &maj, &min);
		old = maj < 6 || (maj == 6 && min < 5);
		if (sm == NULL) {
			fail("needs_cap_probe", "%s", why);
			return 1;
		}
		needs = kg_sockmap_needs_cap(sm);
		kg_sockmap_free(sm);
		printf("STAT nocaps: kernel %s: map updates %s CAP_BPF after the load\n", u.release,
		       needs ? "need" : "do not need");
		if (needs == old)
			pass("needs_cap_probe");
		else
			fail("needs_cap_probe", "kernel %s, probe says %s", u.release,
			     needs ? "needed" : "not needed");
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	rng_state ^= (uint64_t)getpid() << 17;
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "exact") == 0) {
		if (argc == 6)
			max_len = (uint32_t)strtoul(argv[5], NULL, 10) * 1024u;
		run_exact(argv[2], (unsigned)atoi(argv[3]), (unsigned)atoi(argv[4]));
	}
	else if (argc == 3 && strcmp(argv[1], "revoke") == 0)
		run_revoke((unsigned)atoi(argv[2]));
	else if (argc == 3 && strcmp(argv[1], "queued") == 0)
		run_queued((unsigned)atoi(argv[2]));
	else if (argc == 2 && strcmp(argv[1], "nocaps") == 0)
		run_nocaps();
	else {
		fprintf(stderr, "usage: %s exact sockmap|splice|plain|cfg-userspace N CONC [MAX_KIB] | revoke N | queued N | "
				"nocaps\n", argv[0]);
		return 2;
	}
	printf("%d passed, %d failed\n", passes, failures);
	return failures == 0 && passes > 0 ? 0 : 1;
}
