/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kg_bench.c - the load generator behind `make bench`: an OpenSSL 3 mTLS + MQTT client
 * that drives any TLS terminator (ktlsgated, HAProxy, nginx, mosquitto's own listener)
 * in one of three modes: full handshakes (TLS 1.3, no resumption, CONNECT/CONNACK, close),
 * QoS 1 publishing with a window of PUBLISHes in flight per connection, and idle
 * connections kept alive with PINGREQ while tests/bench/run.sh samples the server's RSS.
 * Each thread runs its own non-blocking epoll loop (edge-triggered) over its share of
 * the connections; nothing is shared between threads but a few atomic counters. Errors
 * are counted and reported, never retried away: one JSON line at the end, exit 1 if any.
 * --plain drives MQTT straight over TCP instead (a `plain` listener, `make bench-plain`):
 * no TLS, no certificates; the client id is the device CN when --devices is given, else
 * "kgb-N" per connection; --username/--password go into every CONNECT.
 * storm (`make bench-tpm`): a fleet reconnecting at once: every connection is started
 * at the same moment, each its own device, and stays open; a failed attempt is not an
 * error but retried after a jittered backoff, as a device does, until --deadline; the
 * time until the last device has its CONNACK is the result. Only a device still not
 * connected at the deadline (or dropped once connected) is an error.
 * --resume (handshake, storm): an unmeasured first pass gives every device a TLS 1.3
 * session ticket; each later connection of the device offers its latest session, and
 * SSL_session_reused() counts what really resumed (0 resumed is reported and exit 1).
 * --tls-only (handshake): each measured connection ends with close_notify right after
 * its TLS handshake: no MQTT, so the server's CPU is the handshake's (accept, TLS,
 * close) without the backend connect and the CONNECT/CONNACK relay.
 * --server-pids: the server's CPU (utime + stime of those processes) over the measured
 * phase only, so a priming pass is not charged to the handshakes measured.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ktlsgate/compiler.h"
#include "ops/log.h"
#include "mqtt/mqtt.h"
#include "tls/tls.h"

#define RBUF_CAP 4096          /* CONNACK, PUBACK, PINGRESP are tiny; more is a protocol error */
#define TS_SLOTS 1024          /* send timestamps by packet id; the window must not exceed it */
#define MAX_ERR_LINES 10       /* per thread: enough to diagnose, not enough to flood */
#define MAX_THREADS 64
#define MQTT_DISCONNECT_LEN 2

#define MAX_SERVER_PIDS 64

enum mode { MODE_HANDSHAKE, MODE_PUBLISH, MODE_IDLE, MODE_STORM };
static const char *const mode_names[] = { "handshake", "publish", "idle", "storm" };

/* storm: why an attempt failed (it is retried; the kinds are reported, not errors). */
enum fkind { FK_CONNECT, FK_CONNECT_TIMEOUT, FK_HANDSHAKE, FK_HANDSHAKE_TIMEOUT,
	     FK_BEFORE_CONNACK, FK_CONNACK_TIMEOUT, FK_CONNACK_REFUSED, FK_DROPPED, FK_LOCAL,
	     FK_N };
static const char *const fkind_names[FK_N] = {
	"connect", "connect_timeout", "handshake", "handshake_timeout", "before_connack",
	"connack_timeout", "connack_refused", "dropped", "local",
};

struct opts {
	enum mode mode;
	const char *target;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char host[64];            /* numeric host of --target, for the SAN check */
	const char *ca;
	const char *devices;
	const char *servername;   /* SNI + name check; NULL: check the target IP against the SAN */
	long count;               /* handshake: attempts (0: until --duration) */
	long concurrency;         /* handshake/idle: connections being set up at once */
	long conns;               /* publish/idle */
	long msgs;                /* publish: PUBACKs wanted in total */
	long size;                /* publish payload bytes */
	long qos;
	long window;              /* publish: PUBLISHes in flight per connection */
	long hold;                /* idle: seconds to hold once all are connected */
	long gate;                /* publish: -1 = publish at once; else print "ready N" once
				   * all are connected and start publishing this many s later */
	long ping;                /* idle: PINGREQ interval, seconds */
	long timeout_ms;          /* set-up and reply deadline */
	long threads;
	double duration;          /* handshake: stop starting new ones after this many s */
	uint8_t level;            /* MQTT protocol level */
	bool plain;               /* MQTT over TCP, no TLS (--plain) */
	const char *username;     /* CONNECT user name, NULL: none */
	const char *password;     /* CONNECT password, NULL: none */
	bool resume;              /* handshake, storm: prime tickets, then offer them */
	bool psk_ke;              /* --resume: offer psk_ke beside psk_dhe_ke */
	bool tls_only;            /* handshake: close after the TLS handshake (no MQTT) */
	long backoff_min_ms;      /* storm: retry delay after a failed attempt, */
	long backoff_max_ms;      /* uniformly in [min, max] */
	double deadline;          /* storm: stop retrying this many s after the start */
	pid_t server_pids[MAX_SERVER_PIDS]; /* --server-pids: whose CPU to report */
	int nserver_pids;
};

/* One device identity, parsed once up front so the hot loop never touches files. */
struct device {
	X509 *leaf;
	STACK_OF(X509) *chain;    /* intermediates sent after the leaf */
	EVP_PKEY *key;
	char cn[65];
	/* --resume: the device's latest resumable session; taken by the connection that
	 * offers it (exchange), put back or replaced when that connection ends. */
	_Atomic(SSL_SESSION *) sess;
};

/* Read-mostly state shared by all threads; only the atomics change. */
struct shared {
	const struct opts *o;
	SSL_CTX *ctx;
	struct device *dev;
	size_t ndev;
	uint8_t *payload;
	atomic_long next;         /* handshake: attempts started; idle: connections started */
	atomic_long to_send;      /* publish: PUBLISHes not yet reserved (may go negative) */
	atomic_long established;  /* idle, publish: connections that got their CONNACK */
	atomic_long setup_failed; /* idle, publish: connections that failed before their CONNACK */
	atomic_int stop;          /* duration over or signal: start nothing new */
	atomic_ullong hold_end;   /* idle: monotonic ns at which to close; 0 = not yet */
	atomic_int go;            /* publish: may PUBLISH now (--gate) */
	atomic_int running;       /* threads still in their loop */
	atomic_int storm_over;    /* storm: --deadline passed: no more attempts */
	bool priming;             /* --resume's first pass: nothing offered, nothing timed */
};

/* ST_WAIT: storm, between a failed attempt and its retry (no socket). */
enum cstate { ST_FREE, ST_TCP, ST_TLS, ST_CONNACK, ST_READY, ST_WAIT };

struct thread;

struct conn {
	struct thread *t;
	enum cstate state;
	int fd;
	SSL *ssl;                 /* NULL in --plain mode */
	long id;                  /* global connection number: picks the device */
	uint64_t t_start;         /* ns: connect() called */
	uint64_t deadline;        /* ns: set-up or reply deadline, 0 = none */
	uint8_t rbuf[RBUF_CAP];
	size_t rlen;
	uint8_t *wbuf;            /* bytes [woff, wlen) are still to be sent */
	size_t woff, wlen, wcap;
	/* publish: send time by packet id (pid % TS_SLOTS), allocated in publish mode only */
	uint16_t next_pid;
	long inflight;
	struct sent { uint16_t pid; uint64_t ns; } *sent;
	/* idle, storm */
	uint64_t next_ping, ping_sent;
	bool ping_outstanding;
	/* storm */
	uint64_t t_first;         /* ns: first attempt (the device's storm began) */
	uint64_t retry_at;        /* ST_WAIT: ns of the next attempt */
	long attempts;
	int fk;                   /* failure kind decided at the failure site, -1: by state */
	/* --resume: the session offered by this attempt (a reference we hold) */
	SSL_SESSION *offered;
};

struct lat {
	uint32_t *v;              /* microseconds */
	size_t n, cap;
};

struct thread {
	struct shared *sh;
	pthread_t tid;
	int idx;
	int ep;
	struct conn *conns;       /* handshake/idle: concurrency or connection slots */
	size_t nconns;
	long quota;               /* connections this thread owns (publish/idle) */
	long started;             /* of quota; also the next free slot in those modes */
	long active;              /* slots not ST_FREE */
	long setting_up;          /* slots between connect() and CONNACK */
	struct lat lat;
	long ok, errors, err_lines, pings;
	uint64_t first_ns, last_ns; /* first start, last completion */
	long resumed, full;       /* handshakes completed by SSL_session_reused() */
	long resumed_psk_ke;      /* of those resumed, without the server's key share */
	long no_ticket;           /* --resume: completed without a resumable session */
	long waiting;             /* storm: slots in ST_WAIT */
	long retries, unfinished; /* storm: attempts after the first; cut by the deadline */
	long fails[FK_N];         /* storm: failed attempts by kind */
	unsigned int seed;        /* storm: backoff jitter (rand_r) */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int lat_add(struct lat *l, uint64_t ns)
{
	uint64_t us = ns / 1000;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4096;
		uint32_t *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static uint32_t pct(const uint32_t *v, size_t n, double p)
{
	size_t rank;

	if (n == 0)
		return 0;
	rank = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

/* ---- errors ------------------------------------------------------------------ */

/* Count one failure and say why (the first few per thread), draining OpenSSL's queue. */
static void KG_PRINTF(2, 3) note_error(struct thread *t, const char *fmt, ...)
{
	char msg[256], ossl[256] = "";
	unsigned long e;
	va_list ap;

	t->errors++;
	e = ERR_peek_last_error();
	if (e != 0)
		ERR_error_string_n(e, ossl, sizeof(ossl));
	ERR_clear_error();
	if (t->err_lines++ >= MAX_ERR_LINES)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kg_log_warnx("thread %d: %s%s%s", t->idx, msg, ossl[0] ? ": " : "", ossl);
}

/* What an SSL_* failure means, for note_error(). */
static const char *ssl_why(SSL *ssl, int ret, char *buf, size_t cap)
{
	int e = SSL_get_error(ssl, ret);
	long vr;

	switch (e) {
	case SSL_ERROR_ZERO_RETURN:
		return "peer sent close_notify";
	case SSL_ERROR_SYSCALL:
		if (errno == 0 || ret == 0)
			return "peer closed the connection";
		snprintf(buf, cap, "%s", strerror(errno));
		return buf;
	case SSL_ERROR_SSL:
		vr = SSL_get_verify_result(ssl);
		if (vr != X509_V_OK) {
			snprintf(buf, cap, "server certificate: %s", X509_verify_cert_error_string(vr));
			return buf;
		}
		return "TLS error";
	default:
		snprintf(buf, cap, "SSL error %d", e);
		return buf;
	}
}

/* The MQTT client id of connection id: the device CN, or (--plain without --devices)
 * "kgb-ID", so every live session has its own. */
static const char *client_id(const struct shared *sh, long id, char *buf, size_t cap)
{
	if (sh->ndev > 0)
		return sh->dev[(size_t)id % sh->ndev].cn;
	snprintf(buf, cap, "kgb-%ld", id);
	return buf;
}

/* One write on c's transport (TLS, or the bare socket in --plain mode): bytes written
 * (> 0), 0 when it would block, -1 on failure with the reason in why. */
static int io_write(struct conn *c, const uint8_t *buf, size_t len, char *why, size_t cap)
{
	char tmp[128];
	ssize_t n;
	int r;

	if (c->ssl != NULL) {
		r = SSL_write(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
		if (r > 0)
			return r;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_WRITE:
		case SSL_ERROR_WANT_READ:
			return 0;
		default:
			snprintf(why, cap, "%s", ssl_why(c->ssl, r, tmp, sizeof(tmp)));
			return -1;
		}
	}
	n = send(c->fd, buf, len > INT_MAX ? INT_MAX : len, MSG_NOSIGNAL);
	if (n > 0)
		return (int)n;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	snprintf(why, cap, "%s", n == 0 ? "send wrote nothing" : strerror(errno));
	return -1;
}

/* One read, as io_write(); the peer closing is a failure ("peer closed the connection"). */
static int io_read(struct conn *c, uint8_t *buf, size_t len, char *why, size_t cap)
{
	char tmp[128];
	ssize_t n;
	int r;

	if (c->ssl != NULL) {
		r = SSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
		if (r > 0)
			return r;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return 0;
		default:
			snprintf(why, cap, "%s", ssl_why(c->ssl, r, tmp, sizeof(tmp)));
			return -1;
		}
	}
	n = recv(c->fd, buf, len > INT_MAX ? INT_MAX : len, 0);
	if (n > 0)
		return (int)n;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	snprintf(why, cap, "%s", n == 0 ? "peer closed the connection" : strerror(errno));
	return -1;
}

/* ---- connections ------------------------------------------------------------- */

static struct device *conn_device(const struct conn *c)
{
	const struct shared *sh = c->t->sh;

	return sh->ndev > 0 ? &sh->dev[(size_t)c->id % sh->ndev] : NULL;
}

/* --resume: the device keeps s for its next attempt unless a newer session is there. */
static void session_return(struct conn *c, SSL_SESSION *s)
{
	struct device *d = conn_device(c);
	SSL_SESSION *none = NULL;

	if (s == NULL)
		return;
	if (d == NULL || !atomic_compare_exchange_strong(&d->sess, &none, s))
		SSL_SESSION_free(s);
}

static void session_store(struct conn *c, SSL_SESSION *s)
{
	struct device *d = conn_device(c);

	if (d == NULL) {
		SSL_SESSION_free(s);
		return;
	}
	SSL_SESSION_free(atomic_exchange(&d->sess, s));
}

static void conn_release(struct conn *c)
{
	if (c->state != ST_READY)
		c->t->setting_up--;
	session_return(c, c->offered);
	c->offered = NULL;
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);        /* also removes it from the epoll set */
	c->ssl = NULL;
	c->fd = -1;
	c->state = ST_FREE;
	c->rlen = 0;
	c->woff = c->wlen = 0;
	c->inflight = 0;
	c->deadline = 0;
	c->t->active--;
}

/* The kind of a failed storm attempt: what the failure site said, else by state. */
static enum fkind fail_kind(const struct conn *c)
{
	if (c->fk >= 0)
		return (enum fkind)c->fk;
	switch (c->state) {
	case ST_TCP: return FK_CONNECT;
	case ST_TLS: return FK_HANDSHAKE;
	case ST_CONNACK: return FK_BEFORE_CONNACK;
	default: return FK_DROPPED;
	}
}

/* storm: a failed attempt is what a storm does to a fleet: counted by kind, the first few
 * explained, and retried after 0.5-1 s (--backoff-min/max, jittered so the retries do not
 * come back as one wave) while the deadline allows. A connection lost after its CONNACK
 * is an error and not retried (its device would count twice). */
static void storm_fail(struct conn *c, const char *what)
{
	struct thread *t = c->t;
	const struct opts *o = t->sh->o;
	enum fkind k = fail_kind(c);
	char idbuf[32];
	long span = o->backoff_max_ms - o->backoff_min_ms;
	uint64_t delay_ms;

	t->fails[k]++;
	if (k == FK_DROPPED) {
		note_error(t, "conn %ld (%s): lost after CONNACK: %s", c->id,
			   client_id(t->sh, c->id, idbuf, sizeof(idbuf)), what);
		conn_release(c);
		return;
	}
	if (t->err_lines++ < MAX_ERR_LINES)
		kg_log_warnx("thread %d: conn %ld (%s) attempt %ld, %s (retried): %s", t->idx, c->id,
			     client_id(t->sh, c->id, idbuf, sizeof(idbuf)), c->attempts, fkind_names[k], what);
	ERR_clear_error();
	conn_release(c);
	if (atomic_load(&t->sh->storm_over) || atomic_load(&t->sh->stop))
		return;
	delay_ms = (uint64_t)o->backoff_min_ms +
		   (span > 0 ? (uint64_t)rand_r(&t->seed) % (uint64_t)(span + 1) : 0);
	c->retry_at = now_ns() + delay_ms * 1000000u;
	c->state = ST_WAIT;
	t->waiting++;
}

/* A failed connection: counted once, never retried. In-flight PUBLISHes are lost with it. */
static void conn_fail(struct conn *c, const char *what)
{
	struct thread *t = c->t;
	char idbuf[32];

	if (t->sh->o->mode == MODE_STORM) {
		storm_fail(c, what);
		return;
	}
	note_error(t, "conn %ld (%s): %s", c->id, client_id(t->sh, c->id, idbuf, sizeof(idbuf)), what);
	if (t->sh->o->mode != MODE_HANDSHAKE && c->state != ST_READY)
		atomic_fetch_add(&t->sh->setup_failed, 1);
	conn_release(c);
}

/* Orderly end: MQTT DISCONNECT and close_notify, best effort (the socket may be full). */
static void conn_finish(struct conn *c)
{
	static const uint8_t disconnect[MQTT_DISCONNECT_LEN] = { 0xE0, 0x00 };

	if (c->ssl == NULL) {
		if (c->wlen == 0)
			(void)send(c->fd, disconnect, sizeof(disconnect), MSG_NOSIGNAL | MSG_DONTWAIT);
	} else if (c->t->sh->o->tls_only && !c->t->sh->priming) {
		(void)SSL_shutdown(c->ssl);   /* close_notify: no MQTT was spoken */
	} else if (c->wlen == 0 && SSL_write(c->ssl, disconnect, sizeof(disconnect)) > 0) {
		(void)SSL_shutdown(c->ssl);
	}
	ERR_clear_error();
	conn_release(c);
}

static int wbuf_reserve(struct conn *c, size_t need)
{
	uint8_t *p;
	size_t cap;

	if (c->wcap - c->wlen >= need)
		return 0;
	if (c->woff > 0) {
		/* Sent bytes go before growing (the TLS write buffer may move: set in client_ctx) */
		memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
		c->wlen -= c->woff;
		c->woff = 0;
		if (c->wcap - c->wlen >= need)
			return 0;
	}
	cap = c->wcap ? c->wcap : 512;
	while (cap - c->wlen < need)
		cap *= 2;
	p = realloc(c->wbuf, cap);
	if (p == NULL)
		return -1;
	c->wbuf = p;
	c->wcap = cap;
	return 0;
}

/* Push queued bytes. Returns 0 (all sent, or waiting for EPOLLOUT) or -1 (failed).
 * An offset, not a memmove per write: a 64 KiB window is a megabyte per connection. */
static int conn_flush(struct conn *c)
{
	char why[128];

	while (c->wlen > c->woff) {
		int n = io_write(c, c->wbuf + c->woff, c->wlen - c->woff, why, sizeof(why));

		if (n == 0)
			return 0;
		if (n < 0) {
			conn_fail(c, why);
			return -1;
		}
		c->woff += (size_t)n;
	}
	c->woff = c->wlen = 0;
	return 0;
}

/* Set up one TLS client connection to the target with device (id % ndev). */
static int conn_start(struct conn *c, long id)
{
	struct thread *t = c->t;
	struct shared *sh = t->sh;
	const struct opts *o = sh->o;
	struct device *d = sh->ndev > 0 ? &sh->dev[(size_t)id % sh->ndev] : NULL;
	struct epoll_event ev;
	int one = 1;

	c->id = id;
	c->t_start = now_ns();
	if (c->attempts++ == 0)
		c->t_first = c->t_start;
	c->fk = -1;
	if (t->first_ns == 0 && o->mode != MODE_PUBLISH)
		t->first_ns = c->t_start;
	c->deadline = c->t_start + (uint64_t)o->timeout_ms * 1000000u;
	c->rlen = c->woff = c->wlen = 0;
	c->inflight = 0;
	c->next_pid = 1;
	c->ping_outstanding = false;
	t->active++;
	t->setting_up++;
	c->state = ST_TCP;

	c->fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		c->fk = FK_LOCAL;   /* e.g. EMFILE: ours, not the server's */
		conn_fail(c, strerror(errno));
		return -1;
	}
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->plain)
		goto connect;
	c->ssl = SSL_new(sh->ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    SSL_use_certificate(c->ssl, d->leaf) != 1 || SSL_use_PrivateKey(c->ssl, d->key) != 1 ||
	    SSL_set1_chain(c->ssl, d->chain) != 1) {
		c->fk = FK_LOCAL;
		conn_fail(c, "SSL set-up");
		return -1;
	}
	if (o->resume && !sh->priming && d != NULL) {
		/* Offer the device's latest session (held until the attempt ends). */
		c->offered = atomic_exchange(&d->sess, NULL);
		if (c->offered != NULL && SSL_set_session(c->ssl, c->offered) != 1) {
			c->fk = FK_LOCAL;
			conn_fail(c, "SSL_set_session");
			return -1;
		}
	}
	if (o->servername != NULL) {
		if (SSL_set_tlsext_host_name(c->ssl, o->servername) != 1 ||
		    SSL_set1_host(c->ssl, o->servername) != 1) {
			conn_fail(c, "SSL server name");
			return -1;
		}
	} else if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), o->host) != 1) {
		/* No name given: the server certificate must carry the target IP in its SAN. */
		conn_fail(c, "SSL server IP");
		return -1;
	}
	SSL_set_connect_state(c->ssl);

connect:
	if (connect(c->fd, (const struct sockaddr *)&o->addr, o->addrlen) != 0 &&
	    errno != EINPROGRESS) {
		conn_fail(c, strerror(errno));
		return -1;
	}
	/* Added after connect(): an unconnected socket polls as EPOLLHUP. Both directions,
	 * edge-triggered, for life: the state machine always runs until OpenSSL would block. */
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.ptr = c;
	if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		conn_fail(c, strerror(errno));
		return -1;
	}
	return 0;
}

/* Queue PUBLISHes while the window and the global budget allow. */
static int publish_fill(struct conn *c)
{
	struct shared *sh = c->t->sh;
	const struct opts *o = sh->o;
	size_t need = (size_t)o->size + 64;

	if (!atomic_load(&sh->go))
		return 0;   /* --gate: not yet */
	while (c->inflight < o->window) {
		uint16_t pid = c->next_pid;
		size_t n;

		if (atomic_fetch_sub(&sh->to_send, 1) <= 0)
			break;
		if (wbuf_reserve(c, need) != 0) {
			conn_fail(c, "out of memory");
			return -1;
		}
		n = kg_mqtt_encode_publish(o->level, "bench/load", (uint8_t)o->qos, pid, sh->payload,
					   (size_t)o->size, c->wbuf + c->wlen, c->wcap - c->wlen);
		if (n == 0) {
			conn_fail(c, "kg_mqtt_encode_publish failed");
			return -1;
		}
		c->wlen += n;
		c->sent[pid % TS_SLOTS] = (struct sent){ .pid = pid, .ns = now_ns() };
		/* The publish rate is timed from the first PUBLISH, not from the set-up. */
		if (c->t->first_ns == 0)
			c->t->first_ns = c->sent[pid % TS_SLOTS].ns;
		c->inflight++;
		c->next_pid = pid == UINT16_MAX ? 1 : (uint16_t)(pid + 1);
	}
	return 0;
}

/* Full or resumed, and with --resume the session the device offers next time: the one
 * this connection ends with (its newest ticket), else the one it offered. */
static void count_session(struct conn *c)
{
	struct thread *t = c->t;
	SSL_SESSION *s;

	if (c->ssl == NULL)
		return;
	if (SSL_session_reused(c->ssl)) {
		t->resumed++;
		if (kg_tls_resumed_without_ecdhe(c->ssl))
			t->resumed_psk_ke++;
	} else
		t->full++;
	if (!t->sh->o->resume)
		return;
	s = SSL_get1_session(c->ssl);
	if (s != NULL && SSL_SESSION_is_resumable(s)) {
		session_store(c, s);
		SSL_SESSION_free(c->offered);
		c->offered = NULL;
		return;
	}
	SSL_SESSION_free(s);
	t->no_ticket++;
}

/* The CONNACK arrived with code 0: what each mode does next. Returns -1 if c is gone. */
static int on_connected(struct conn *c)
{
	struct thread *t = c->t;
	struct shared *sh = t->sh;
	const struct opts *o = sh->o;
	uint64_t now = now_ns();

	c->state = ST_READY;
	t->setting_up--;
	count_session(c);
	switch (o->mode) {
	case MODE_HANDSHAKE:
		if (lat_add(&t->lat, now - c->t_start) != 0) {
			conn_fail(c, "out of memory");
			return -1;
		}
		t->ok++;
		t->last_ns = now;
		conn_finish(c);
		return -1;
	case MODE_PUBLISH:
		c->deadline = now + (uint64_t)o->timeout_ms * 1000000u;
		atomic_fetch_add(&sh->established, 1);   /* for --gate's "ready" */
		return publish_fill(c);
	case MODE_IDLE:
	case MODE_STORM:
		/* storm: the device's time to reconnect, from its first attempt */
		if (lat_add(&t->lat, now - (o->mode == MODE_STORM ? c->t_first : c->t_start)) != 0) {
			conn_fail(c, "out of memory");
			return -1;
		}
		c->deadline = 0;
		/* Stagger the pings so they do not arrive at the server in one burst. */
		c->next_ping = now + (uint64_t)o->ping * 1000000000u +
			       (uint64_t)(c->id % 1000) * (uint64_t)o->ping * 1000000u;
		t->last_ns = now;
		atomic_fetch_add(&sh->established, 1);
		return 0;
	}
	return 0;
}

/* One complete packet from the server. Returns -1 if c is gone. */
static int on_packet(struct conn *c, const uint8_t *pkt, size_t hdr, size_t rem)
{
	struct thread *t = c->t;
	const struct opts *o = t->sh->o;
	uint8_t type = pkt[0] >> 4;
	char why[64];

	if (c->state == ST_CONNACK) {
		bool sp;
		uint8_t code;
		size_t used;

		if (type != 2) {
			snprintf(why, sizeof(why), "expected CONNACK, got packet type %u", type);
			conn_fail(c, why);
			return -1;
		}
		if (kg_mqtt_parse_connack(pkt, hdr + rem, o->level, &sp, &code, &used) != KG_PARSE_OK) {
			conn_fail(c, "malformed CONNACK");
			return -1;
		}
		if (code != 0) {
			c->fk = FK_CONNACK_REFUSED;
			snprintf(why, sizeof(why), "CONNACK refused, code %u", code);
			conn_fail(c, why);
			return -1;
		}
		return on_connected(c);
	}

	switch (type) {
	case 4: { /* PUBACK */
		uint16_t pid;
		uint64_t now = now_ns();

		if (o->mode != MODE_PUBLISH || rem < 2) {
			conn_fail(c, "unexpected PUBACK");
			return -1;
		}
		pid = (uint16_t)(pkt[hdr] << 8 | pkt[hdr + 1]);
		if (c->sent[pid % TS_SLOTS].pid != pid || c->sent[pid % TS_SLOTS].ns == 0) {
			snprintf(why, sizeof(why), "PUBACK for unknown packet id %u", pid);
			conn_fail(c, why);
			return -1;
		}
		if (rem >= 3 && pkt[hdr + 2] >= 0x80) {
			snprintf(why, sizeof(why), "PUBACK reason code 0x%02x", pkt[hdr + 2]);
			conn_fail(c, why);
			return -1;
		}
		if (lat_add(&t->lat, now - c->sent[pid % TS_SLOTS].ns) != 0) {
			conn_fail(c, "out of memory");
			return -1;
		}
		c->sent[pid % TS_SLOTS].ns = 0;
		c->inflight--;
		c->deadline = now + (uint64_t)o->timeout_ms * 1000000u;
		t->ok++;
		t->last_ns = now;
		return 0;
	}
	case 13: /* PINGRESP */
		if (!c->ping_outstanding) {
			conn_fail(c, "unexpected PINGRESP");
			return -1;
		}
		c->ping_outstanding = false;
		t->pings++;
		return 0;
	case 14: /* DISCONNECT (5.0: the server closes us) */
		conn_fail(c, "server sent DISCONNECT");
		return -1;
	default:
		snprintf(why, sizeof(why), "unexpected packet type %u", type);
		conn_fail(c, why);
		return -1;
	}
}

/* Read until OpenSSL wants more, handling every whole packet. Returns -1 if c is gone. */
static int conn_read(struct conn *c)
{
	char why[128];

	for (;;) {
		size_t off = 0;
		int n;

		if (c->rlen == sizeof(c->rbuf)) {
			conn_fail(c, "packet larger than the read buffer");
			return -1;
		}
		n = io_read(c, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, why, sizeof(why));
		if (n == 0)
			return 0;
		if (n < 0) {
			conn_fail(c, why);
			return -1;
		}
		c->rlen += (size_t)n;
		while (off < c->rlen) {
			uint8_t tf;
			size_t rem, hdr;
			enum kg_parse r = kg_mqtt_parse_fixed_header(c->rbuf + off, c->rlen - off, &tf,
								     &rem, &hdr);

			if (r == KG_PARSE_SHORT)
				break;
			if (r != KG_PARSE_OK) {
				conn_fail(c, "malformed MQTT fixed header");
				return -1;
			}
			if (rem > sizeof(c->rbuf) - hdr) {
				conn_fail(c, "packet larger than the read buffer");
				return -1;
			}
			if (hdr + rem > c->rlen - off)
				break;
			if (on_packet(c, c->rbuf + off, hdr, rem) != 0)
				return -1;
			off += hdr + rem;
		}
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
}

/* Advance c as far as the sockets allow (edge-triggered: always until EAGAIN). */
static void conn_drive(struct conn *c, uint32_t events)
{
	struct shared *sh = c->t->sh;
	const struct opts *o = sh->o;
	char why[160], sslwhy[128];

	if (c->state == ST_TCP) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err != 0) {
			snprintf(why, sizeof(why), "connect: %s", strerror(err));
			conn_fail(c, why);
			return;
		}
		c->state = ST_TLS;
	}
	if (c->state == ST_TLS) {
		char idbuf[32];
		struct kg_mqtt_connect_opts co = {
			.level = o->level,
			.client_id = client_id(sh, c->id, idbuf, sizeof(idbuf)),
			.username = o->username,
			.password = o->password,
			.keepalive = 60,
			.clean_start = true,
		};
		int r = c->ssl == NULL ? 1 : SSL_do_handshake(c->ssl);   /* --plain: no TLS */
		size_t n;

		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);

			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return;
			snprintf(why, sizeof(why), "handshake: %s",
				 ssl_why(c->ssl, r, sslwhy, sizeof(sslwhy)));
			conn_fail(c, why);
			return;
		}
		if (o->tls_only && !sh->priming && c->ssl != NULL) {
			(void)on_connected(c);   /* handshake mode: counted, timed, closed */
			return;
		}
		if (wbuf_reserve(c, 512) != 0) {
			conn_fail(c, "out of memory");
			return;
		}
		n = kg_mqtt_encode_connect(&co, c->wbuf + c->wlen, c->wcap - c->wlen);
		if (n == 0) {
			conn_fail(c, "kg_mqtt_encode_connect failed");
			return;
		}
		c->wlen += n;
		c->state = ST_CONNACK;
	}
	if (conn_flush(c) != 0 || conn_read(c) != 0)
		return;
	if (c->state == ST_READY && o->mode == MODE_PUBLISH) {
		if (publish_fill(c) != 0)
			return;
		if (c->inflight == 0 && c->wlen == 0 && atomic_load(&c->t->sh->go)) {
			conn_finish(c);  /* budget spent and everything acknowledged */
			return;
		}
	}
	(void)conn_flush(c);
}

/* Start what the mode allows: handshake mode reuses its slots until --count or the
 * stop; publish and idle use each of their slots once, idle at most --concurrency
 * (split over the threads) in set-up at a time. */
static void fill_slots(struct thread *t)
{
	struct shared *sh = t->sh;
	const struct opts *o = sh->o;

	if (o->mode == MODE_HANDSHAKE) {
		for (size_t i = 0; i < t->nconns; i++) {
			struct conn *c = &t->conns[i];
			long id;

			if (c->state != ST_FREE)
				continue;
			if (atomic_load(&sh->stop))
				return;
			id = atomic_fetch_add(&sh->next, 1);
			if (o->count > 0 && id >= o->count)
				return;
			if (conn_start(c, id) == 0)
				conn_drive(c, 0);
		}
		return;
	}
	while (t->started < t->quota && !atomic_load(&sh->stop)) {
		struct conn *c = &t->conns[t->started];

		/* storm: no limit, every device at once (bounded only by file descriptors) */
		if (o->mode == MODE_IDLE &&
		    t->setting_up >= (o->concurrency + o->threads - 1) / o->threads)
			return;
		t->started++;
		if (conn_start(c, atomic_fetch_add(&sh->next, 1)) == 0)
			conn_drive(c, 0);
	}
}

/* Deadlines, pings and the idle hold: scanned a few times a second. */
static void tick(struct thread *t, uint64_t now)
{
	struct shared *sh = t->sh;
	const struct opts *o = sh->o;
	uint64_t hold_end = atomic_load(&sh->hold_end);
	uint64_t timeout = (uint64_t)o->timeout_ms * 1000000u;
	bool storm_over = atomic_load(&sh->storm_over) != 0;

	for (size_t i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];

		if (c->state == ST_FREE)
			continue;
		if (c->state == ST_WAIT) {
			if (storm_over || atomic_load(&sh->stop)) {
				c->state = ST_FREE;   /* the device gave up */
				t->waiting--;
			} else if (now >= c->retry_at) {
				c->state = ST_FREE;
				t->waiting--;
				t->retries++;
				if (conn_start(c, c->id) == 0)
					conn_drive(c, 0);
			}
			continue;
		}
		if (o->mode == MODE_STORM && c->state != ST_READY && storm_over) {
			/* in flight at the deadline: not connected, no failure of its own */
			t->unfinished++;
			conn_release(c);
			continue;
		}
		if (o->mode == MODE_PUBLISH && c->state == ST_READY && !atomic_load(&sh->go)) {
			c->deadline = now + timeout;   /* waiting at the --gate is not a timeout */
			continue;
		}
		if (o->mode == MODE_PUBLISH && c->state == ST_READY && c->inflight == 0 &&
		    c->wlen == 0 && atomic_load(&sh->to_send) > 0) {
			/* the --gate opened: start this connection's window */
			if (publish_fill(c) != 0)
				continue;
			(void)conn_flush(c);
			continue;
		}
		if (c->deadline != 0 && now > c->deadline) {
			if (c->state == ST_READY && o->mode == MODE_PUBLISH && c->inflight == 0 &&
			    atomic_load(&sh->to_send) <= 0) {
				conn_finish(c);
				continue;
			}
			c->fk = c->state == ST_TCP ? FK_CONNECT_TIMEOUT : c->state == ST_TLS ?
				FK_HANDSHAKE_TIMEOUT : c->state == ST_CONNACK ? FK_CONNACK_TIMEOUT : -1;
			conn_fail(c, c->state == ST_READY ? "timed out waiting for PUBACK" :
				     c->state == ST_CONNACK ? "timed out waiting for CONNACK" :
				     c->state == ST_TLS ? "TLS handshake timed out" : "TCP connect timed out");
			continue;
		}
		if ((o->mode != MODE_IDLE && o->mode != MODE_STORM) || c->state != ST_READY)
			continue;
		if ((hold_end != 0 && now >= hold_end) || atomic_load(&sh->stop)) {
			/* A ping sent just before the end may still be on its way back. */
			if (c->ping_outstanding && now - c->ping_sent > timeout) {
				conn_fail(c, "no PINGRESP before the end of the hold");
				continue;
			}
			conn_finish(c);
			continue;
		}
		if (now >= c->next_ping) {
			size_t n;

			if (c->ping_outstanding) {
				conn_fail(c, "no PINGRESP within the ping interval");
				continue;
			}
			if (wbuf_reserve(c, 2) != 0) {
				conn_fail(c, "out of memory");
				continue;
			}
			n = kg_mqtt_encode_pingreq(c->wbuf + c->wlen, c->wcap - c->wlen);
			if (n == 0) {
				conn_fail(c, "kg_mqtt_encode_pingreq failed");
				continue;
			}
			c->wlen += n;
			c->ping_outstanding = true;
			c->ping_sent = now;
			c->next_ping = now + (uint64_t)o->ping * 1000000000u;
			(void)conn_flush(c);
		}
	}
}

static void *thread_main(void *arg)
{
	struct thread *t = arg;
	struct shared *sh = t->sh;
	const struct opts *o = sh->o;
	struct epoll_event evs[256];
	uint64_t last_tick = 0;

	fill_slots(t);
	for (;;) {
		uint64_t now;
		int n = epoll_wait(t->ep, evs, (int)KG_NITEMS(evs), 50);

		if (n < 0 && errno != EINTR) {
			note_error(t, "epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			/* A connection closed earlier in this batch may have left a stale event
			 * behind; its slot is free or waiting to retry (or restarted, and then
			 * driving it is harmless). */
			if (c->state != ST_FREE && c->state != ST_WAIT)
				conn_drive(c, evs[i].events);
		}
		now = now_ns();
		if (now - last_tick > 100000000u) {
			tick(t, now);
			last_tick = now;
		}
		fill_slots(t);
		if (t->active == 0 && t->waiting == 0) {
			if (o->mode == MODE_HANDSHAKE)
				break;
			if (t->started >= t->quota || atomic_load(&sh->stop))
				break;
		}
	}
	atomic_fetch_sub(&sh->running, 1);
	return NULL;
}

/* ---- set-up ------------------------------------------------------------------ */

static int dev_filter(const struct dirent *d)
{
	return strncmp(d->d_name, "dev-", 4) == 0;
}

static int load_device(const char *dir, const char *name, struct device *d)
{
	char path[PATH_MAX];
	BIO *bio = NULL;
	X509 *x;
	int ret = -1;

	if (snprintf(path, sizeof(path), "%s/%s/chain.pem", dir, name) >= (int)sizeof(path))
		goto out;
	bio = BIO_new_file(path, "r");
	if (bio == NULL || (d->leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL) {
		kg_log_warnx("%s: cannot read a certificate", path);
		goto out;
	}
	d->chain = sk_X509_new_null();
	if (d->chain == NULL)
		goto out;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(d->chain, x)) {
			X509_free(x);
			goto out;
		}
	}
	ERR_clear_error();   /* end of file */
	BIO_free(bio);
	bio = NULL;
	if (snprintf(path, sizeof(path), "%s/%s/key.pem", dir, name) >= (int)sizeof(path))
		goto out_nobio;
	bio = BIO_new_file(path, "r");
	if (bio == NULL || (d->key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) == NULL) {
		kg_log_warnx("%s: cannot read the key", path);
		goto out;
	}
	if (X509_check_private_key(d->leaf, d->key) != 1) {
		kg_log_warnx("%s/%s: key does not match the certificate", dir, name);
		goto out;
	}
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(d->leaf), NID_commonName, d->cn,
				      sizeof(d->cn)) <= 0) {
		kg_log_warnx("%s/%s: certificate has no CN", dir, name);
		goto out;
	}
	ret = 0;
out:
	BIO_free(bio);
out_nobio:
	return ret;
}

static void free_devices(struct device *dev, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		SSL_SESSION_free(atomic_load(&dev[i].sess));
		X509_free(dev[i].leaf);
		sk_X509_pop_free(dev[i].chain, X509_free);
		EVP_PKEY_free(dev[i].key);
	}
	free(dev);
}

/* Load the first `want` devices of dir (all if want <= 0), sorted by name. */
static struct device *load_devices(const char *dir, long want, size_t *n_out)
{
	struct dirent **names = NULL;
	struct device *dev = NULL;
	int n = scandir(dir, &names, dev_filter, alphasort);
	size_t use, i;

	if (n < 0) {
		kg_log_warn("%s", dir);
		return NULL;
	}
	if (n == 0) {
		kg_log_warnx("%s: no dev-* directories", dir);
		goto out;
	}
	use = want > 0 && (size_t)want < (size_t)n ? (size_t)want : (size_t)n;
	dev = calloc(use, sizeof(*dev));
	if (dev == NULL)
		goto out;
	for (i = 0; i < use; i++) {
		if (load_device(dir, names[i]->d_name, &dev[i]) != 0) {
			free_devices(dev, i + 1);
			dev = NULL;
			goto out;
		}
	}
	*n_out = use;
out:
	for (int j = 0; j < n; j++)
		free(names[j]);
	free(names);
	return dev;
}

static SSL_CTX *client_ctx(const char *ca, bool resume, bool psk_ke)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		kg_log_ossl(ca);
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Every handshake is a full one: no tickets kept, no session cache. --resume keeps
	 * the tickets itself, per device (SSL_get1_session), so the cache stays off. */
	if (!resume)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	/* --psk-ke: offer psk_ke too (an OpenSSL client always offers psk_dhe_ke and a key
	 * share; a server that prefers psk_ke, OpenSSL >= 3.2, then skips the ECDHE) */
	if (psk_ke)
		SSL_CTX_set_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
}

static void raise_nofile(long need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < need + 64)
		kg_log_warnx("RLIMIT_NOFILE is %ld, %ld connections may not fit", (long)rl.rlim_cur, need);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kg-bench handshake --target HOST:PORT --ca ROOT.pem --devices DIR\n"
		"                          [--count N] [--concurrency C] [--duration S]\n"
		"       kg-bench publish   --target HOST:PORT --ca ROOT.pem --devices DIR\n"
		"                          --conns N --msgs M [--size BYTES] [--qos 1] [--window W]\n"
		"                          [--gate S]  (print \"ready N\" when connected, publish S s later)\n"
		"       kg-bench idle      --target HOST:PORT --ca ROOT.pem --devices DIR\n"
		"                          --conns N --hold S [--ping S] [--concurrency C]\n"
		"       kg-bench storm     --target HOST:PORT --ca ROOT.pem --devices DIR\n"
		"                          --conns N [--deadline S] [--hold S] [--ping S]\n"
		"                          [--backoff-min MS] [--backoff-max MS]\n"
		"                          (all N at once; failed attempts retried until S)\n"
		"common: [-t THREADS] [--timeout MS] [--mqtt 3|4|5] [--servername NAME]\n"
		"        [--username U] [--password P]  (in every CONNECT)\n"
		"        [--plain]  MQTT over TCP, no TLS: --ca not used, --devices optional\n"
		"        [--resume]  handshake, storm: prime a ticket per device (unmeasured,\n"
		"                    --concurrency in flight), then resume with it\n"
		"        [--psk-ke]  with --resume: offer psk_ke beside psk_dhe_ke (the JSON's\n"
		"                    resumed_psk_ke counts resumptions the server did without ECDHE)\n"
		"        [--tls-only]  handshake: close after the TLS handshake, no MQTT\n"
		"                    (the --resume priming pass still connects in full)\n"
		"        [--server-pids PID,...]  report those processes' CPU over the measured phase\n"
		"DIR holds dev-*/{chain.pem,key.pem}; the MQTT client id is the device CN\n"
		"(--plain without --devices: kgb-N, one per connection).\n"
		"Prints one JSON line; idle and storm print \"ready N\" once N connections are up.\n"
		"Exit status 1 if any error was counted.\n");
}

static int parse_long(const char *name, const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		kg_log_warnx("--%s: %s is not a number in [%ld, %ld]", name, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

/* "127.0.0.1:8883" or "[::1]:8883", numeric only: a benchmark must not wait on DNS. */
static int parse_target(struct opts *o)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	const char *port, *host = o->target;
	size_t hlen;
	int rc;

	if (host[0] == '[') {
		const char *close_br = strchr(host, ']');

		if (close_br == NULL || close_br[1] != ':')
			goto bad;
		host++;
		hlen = (size_t)(close_br - host);
		port = close_br + 2;
	} else {
		port = strrchr(host, ':');
		if (port == NULL)
			goto bad;
		hlen = (size_t)(port - host);
		port++;
	}
	if (hlen == 0 || hlen >= sizeof(o->host))
		goto bad;
	memcpy(o->host, host, hlen);
	o->host[hlen] = '\0';
	rc = getaddrinfo(o->host, port, &hints, &res);
	if (rc != 0) {
		kg_log_warnx("--target %s: %s", o->target, gai_strerror(rc));
		return -1;
	}
	memcpy(&o->addr, res->ai_addr, res->ai_addrlen);
	o->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
bad:
	kg_log_warnx("--target: %s is not HOST:PORT with a numeric host", o->target);
	return -1;
}

/* --server-pids 12,34: the server's processes (all threads of each are counted). */
static int parse_pids(const char *arg, struct opts *o)
{
	const char *p = arg;

	o->nserver_pids = 0;
	while (*p != '\0') {
		char *end;
		long v;

		errno = 0;
		v = strtol(p, &end, 10);
		if (errno != 0 || end == p || v <= 0 || v > INT_MAX || (*end != ',' && *end != '\0') ||
		    o->nserver_pids == MAX_SERVER_PIDS) {
			kg_log_warnx("--server-pids: %s is not a list of up to %d pids", arg, MAX_SERVER_PIDS);
			return -1;
		}
		o->server_pids[o->nserver_pids++] = (pid_t)v;
		p = *end == ',' ? end + 1 : end;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "target", required_argument, NULL, 'T' },
		{ "ca", required_argument, NULL, 'a' },
		{ "devices", required_argument, NULL, 'd' },
		{ "count", required_argument, NULL, 'n' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "duration", required_argument, NULL, 'D' },
		{ "conns", required_argument, NULL, 'N' },
		{ "msgs", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 's' },
		{ "qos", required_argument, NULL, 'q' },
		{ "window", required_argument, NULL, 'w' },
		{ "hold", required_argument, NULL, 'H' },
		{ "gate", required_argument, NULL, 'G' },
		{ "ping", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 'o' },
		{ "threads", required_argument, NULL, 't' },
		{ "mqtt", required_argument, NULL, 'L' },
		{ "servername", required_argument, NULL, 'S' },
		{ "plain", no_argument, NULL, 'P' },
		{ "username", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'W' },
		{ "resume", no_argument, NULL, 'R' },
		{ "psk-ke", no_argument, NULL, 'K' },
		{ "tls-only", no_argument, NULL, 'O' },
		{ "deadline", required_argument, NULL, 'E' },
		{ "backoff-min", required_argument, NULL, 'b' },
		{ "backoff-max", required_argument, NULL, 'B' },
		{ "server-pids", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long level = KG_MQTT_V311;
	int ch, rc = 0;
	bool ping_set = false, hold_set = false;
	char *end;

	*o = (struct opts){ .count = 1000, .concurrency = 50, .conns = 10, .msgs = 10000,
			    .size = 256, .qos = 1, .window = 16, .hold = 10, .gate = -1, .ping = 5,
			    .timeout_ms = 10000, .threads = 1, .backoff_min_ms = 500,
			    .backoff_max_ms = 1000, .deadline = 600 };
	if (argc < 2) {
		usage(stderr);
		return -1;
	}
	if (strcmp(argv[1], "handshake") == 0)
		o->mode = MODE_HANDSHAKE;
	else if (strcmp(argv[1], "publish") == 0)
		o->mode = MODE_PUBLISH;
	else if (strcmp(argv[1], "idle") == 0)
		o->mode = MODE_IDLE;
	else if (strcmp(argv[1], "storm") == 0)
		o->mode = MODE_STORM;
	else {
		usage(strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ? stdout : stderr);
		return -1;
	}
	optind = 2;
	while (rc == 0 && (ch = getopt_long(argc, argv, "t:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'T': o->target = optarg; break;
		case 'a': o->ca = optarg; break;
		case 'd': o->devices = optarg; break;
		case 'S': o->servername = optarg; break;
		case 'P': o->plain = true; break;
		case 'u': o->username = optarg; break;
		case 'W': o->password = optarg; break;
		case 'n': rc = parse_long("count", optarg, 0, LONG_MAX / 2, &o->count); break;
		case 'c': rc = parse_long("concurrency", optarg, 1, 100000, &o->concurrency); break;
		case 'N': rc = parse_long("conns", optarg, 1, 1000000, &o->conns); break;
		case 'm': rc = parse_long("msgs", optarg, 1, LONG_MAX / 2, &o->msgs); break;
		case 's': rc = parse_long("size", optarg, 0, 1 << 20, &o->size); break;
		case 'q': rc = parse_long("qos", optarg, 1, 1, &o->qos); break;
		case 'w': rc = parse_long("window", optarg, 1, TS_SLOTS, &o->window); break;
		case 'H': rc = parse_long("hold", optarg, 0, 86400, &o->hold); hold_set = true; break;
		case 'G': rc = parse_long("gate", optarg, 0, 3600, &o->gate); break;
		case 'p': rc = parse_long("ping", optarg, 1, 3600, &o->ping); ping_set = true; break;
		case 'R': o->resume = true; break;
		case 'K': o->psk_ke = true; break;
		case 'O': o->tls_only = true; break;
		case 'b': rc = parse_long("backoff-min", optarg, 0, 3600000, &o->backoff_min_ms); break;
		case 'B': rc = parse_long("backoff-max", optarg, 0, 3600000, &o->backoff_max_ms); break;
		case 'C': rc = parse_pids(optarg, o); break;
		case 'E':
			errno = 0;
			o->deadline = strtod(optarg, &end);
			if (errno != 0 || end == optarg || *end != '\0' || o->deadline <= 0) {
				kg_log_warnx("--deadline: %s is not a positive number", optarg);
				rc = -1;
			}
			break;
		case 'o': rc = parse_long("timeout", optarg, 1, 3600000, &o->timeout_ms); break;
		case 't': rc = parse_long("threads", optarg, 1, MAX_THREADS, &o->threads); break;
		case 'L': rc = parse_long("mqtt", optarg, 3, 5, &level); break;
		case 'D':
			errno = 0;
			o->duration = strtod(optarg, &end);
			if (errno != 0 || end == optarg || *end != '\0' || o->duration <= 0) {
				kg_log_warnx("--duration: %s is not a positive number", optarg);
				rc = -1;
			}
			break;
		case 'h': usage(stdout); return -1;
		default: usage(stderr); return -1;
		}
	}
	if (rc != 0)
		return -1;
	if (optind != argc) {
		kg_log_warnx("unexpected argument: %s", argv[optind]);
		return -1;
	}
	o->level = (uint8_t)level;
	if (o->target == NULL || (!o->plain && (o->ca == NULL || o->devices == NULL))) {
		kg_log_warnx(o->plain ? "--target is required" :
			     "--target, --ca and --devices are required");
		return -1;
	}
	if (o->password != NULL && o->username == NULL) {
		/* MQTT 3.1.1 3.1.2.9: no password without a user name */
		kg_log_warnx("--password needs --username");
		return -1;
	}
	if (parse_target(o) != 0)
		return -1;
	if (o->mode == MODE_HANDSHAKE && o->count == 0 && o->duration <= 0) {
		kg_log_warnx("handshake: --count 0 needs --duration");
		return -1;
	}
	if (o->tls_only && (o->plain || o->mode != MODE_HANDSHAKE)) {
		kg_log_warnx("--tls-only: handshake mode over TLS only");
		return -1;
	}
	if (o->resume && (o->plain || (o->mode != MODE_HANDSHAKE && o->mode != MODE_STORM) ||
			  (o->mode == MODE_HANDSHAKE && o->count == 0))) {
		kg_log_warnx("--resume: handshake (with --count) and storm modes over TLS only");
		return -1;
	}
	if (o->backoff_max_ms < o->backoff_min_ms) {
		kg_log_warnx("--backoff-max is below --backoff-min");
		return -1;
	}
	if (o->mode == MODE_STORM) {
		/* A storm can last minutes: ping well inside the CONNECT's 60 s keepalive
		 * without adding load of our own; close as soon as the last one is in. */
		if (!ping_set)
			o->ping = 30;
		if (!hold_set)
			o->hold = 0;
	}
	return 0;
}

/* Wait for SIGINT/SIGTERM for up to ms; true if one arrived. */
static bool wait_signal(const sigset_t *set, long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	return sigtimedwait(set, NULL, &ts) > 0;
}

/* utime + stime of the --server-pids in clock ticks (/proc/PID/stat counts every thread,
 * also the ones that ended); -1 if one is gone: no number rather than a wrong one. */
static long long server_ticks(const struct opts *o)
{
	long long sum = 0;

	for (int i = 0; i < o->nserver_pids; i++) {
		char path[64], buf[1024];
		unsigned long long ut, st;
		const char *p;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)o->server_pids[i]);
		f = fopen(path, "r");
		if (f == NULL)
			return -1;
		p = fgets(buf, sizeof(buf), f);
		fclose(f);
		if (p == NULL || (p = strrchr(buf, ')')) == NULL)
			return -1;
		/* after "(comm) ": fields 3..13, then utime (14) and stime (15) */
		if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
			return -1;
		sum += (long long)(ut + st);
	}
	return sum;
}

/* Size each thread's share for the phase sh->o describes and zero its counters. */
static void phase_setup(struct shared *sh, struct thread *th, long nthreads)
{
	const struct opts *o = sh->o;
	long slots = o->mode == MODE_HANDSHAKE ? (o->concurrency + nthreads - 1) / nthreads : 0;

	atomic_store(&sh->next, 0);
	atomic_store(&sh->to_send, o->mode == MODE_PUBLISH ? o->msgs : 0);
	atomic_store(&sh->go, o->mode != MODE_PUBLISH || o->gate < 0);
	atomic_store(&sh->established, 0);
	atomic_store(&sh->setup_failed, 0);
	atomic_store(&sh->hold_end, 0);
	atomic_store(&sh->storm_over, 0);
	for (long i = 0; i < nthreads; i++) {
		struct thread *t = &th[i];

		t->quota = o->mode == MODE_HANDSHAKE ? 0 : o->conns / nthreads + (i < o->conns % nthreads);
		t->nconns = (size_t)(o->mode == MODE_HANDSHAKE ? slots : t->quota);
		t->started = t->active = t->setting_up = t->waiting = 0;
		t->ok = t->errors = t->err_lines = t->pings = 0;
		t->resumed = t->full = t->resumed_psk_ke = t->no_ticket = t->retries = t->unfinished = 0;
		memset(t->fails, 0, sizeof(t->fails));
		t->first_ns = t->last_ns = 0;
		t->lat.n = 0;
		for (size_t j = 0; j < t->nconns; j++)
			t->conns[j].attempts = 0;
	}
}

/* Run the threads over the phase sh->o describes; this thread coordinates the duration,
 * "ready", the hold, the storm's deadline and signals. 0, 1 if a signal stopped it, -1
 * if the threads could not be started. */
static int run_phase(struct shared *sh, struct thread *th, long nthreads, const sigset_t *sigs)
{
	const struct opts *o = sh->o;
	uint64_t t0 = now_ns(), gate_at = 0;
	bool ready_said = false, interrupted = false;
	long started = nthreads;

	atomic_store(&sh->stop, 0);
	for (long i = 0; i < nthreads; i++) {
		atomic_fetch_add(&sh->running, 1);
		if (pthread_create(&th[i].tid, NULL, thread_main, &th[i]) != 0) {
			atomic_fetch_sub(&sh->running, 1);
			atomic_store(&sh->stop, 1);
			kg_log_warnx("pthread_create failed");
			started = i;
			break;
		}
	}
	while (atomic_load(&sh->running) > 0) {
		uint64_t now = now_ns();

		if (wait_signal(sigs, 20)) {
			interrupted = true;
			atomic_store(&sh->stop, 1);
		}
		if (o->duration > 0 && (double)(now - t0) / 1e9 >= o->duration)
			atomic_store(&sh->stop, 1);
		if (o->mode == MODE_STORM && (double)(now - t0) / 1e9 >= o->deadline)
			atomic_store(&sh->storm_over, 1);
		if (o->mode == MODE_PUBLISH && o->gate >= 0 && !ready_said &&
		    atomic_load(&sh->established) + atomic_load(&sh->setup_failed) >= o->conns) {
			/* --gate: the caller samples the server between "ready" and the start */
			printf("ready %ld\n", atomic_load(&sh->established));
			fflush(stdout);
			ready_said = true;
			gate_at = now + (uint64_t)o->gate * 1000000000u;
		}
		if (gate_at != 0 && now >= gate_at && !atomic_load(&sh->go))
			atomic_store(&sh->go, 1);
		if ((o->mode == MODE_IDLE || o->mode == MODE_STORM) && !ready_said &&
		    (atomic_load(&sh->established) + atomic_load(&sh->setup_failed) >= o->conns ||
		     atomic_load(&sh->storm_over))) {
			printf("ready %ld\n", atomic_load(&sh->established));
			fflush(stdout);
			ready_said = true;
			atomic_store(&sh->hold_end, now_ns() + (uint64_t)o->hold * 1000000000u);
		}
	}
	for (long i = 0; i < started; i++)
		pthread_join(th[i].tid, NULL);
	if (started < nthreads)
		return -1;
	return interrupted ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct opts o, po;
	struct shared sh = { .o = &o };
	struct thread *th = NULL;
	struct lat all = { 0 };
	sigset_t sigs;
	long ok = 0, errors = 0, pings = 0, wanted, nthreads, nalloc = 0, cap;
	long resumed = 0, resumed_psk_ke = 0, full = 0, no_ticket = 0, retries = 0, unfinished = 0, fails[FK_N] = { 0 };
	long prime_errors = 0, primed = 0;
	long long c0 = -1, c1 = -1;
	uint64_t first = 0, last = 0;
	bool interrupted = false;
	double wall;
	int ret = 1, r;

	kg_log_set_ident("kg-bench");
	if (parse_args(argc, argv, &o) != 0)
		return 2;
	nthreads = o.threads;
	/* Threads inherit this mask: only the main thread takes the signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	switch (o.mode) {
	case MODE_HANDSHAKE: wanted = o.count > 0 ? o.count : 0; break;
	case MODE_PUBLISH: wanted = o.conns; break;
	default: wanted = o.conns; break;
	}
	raise_nofile(o.mode == MODE_HANDSHAKE ? o.concurrency * 2 : o.conns);
	if (o.devices != NULL) {
		sh.dev = load_devices(o.devices, wanted, &sh.ndev);
		if (sh.dev == NULL)
			return 2;
	}
	if ((o.mode == MODE_IDLE || o.mode == MODE_STORM) && sh.ndev > 0 && (long)sh.ndev < o.conns) {
		/* Two live sessions with one client id would make the broker drop the first. */
		kg_log_warnx("%s: %ld connections need %ld devices, %s has %zu", mode_names[o.mode],
			     o.conns, o.conns, o.devices, sh.ndev);
		goto out_devices;
	}
	if (!o.plain) {
		sh.ctx = client_ctx(o.ca, o.resume, o.psk_ke);
		if (sh.ctx == NULL)
			goto out_devices;
	}
	sh.payload = malloc((size_t)o.size + 1);
	if (sh.payload == NULL)
		goto out_ctx;
	for (long i = 0; i < o.size; i++)
		sh.payload[i] = (uint8_t)('a' + i % 26);
	atomic_init(&sh.next, 0);
	atomic_init(&sh.to_send, 0);
	atomic_init(&sh.go, 0);
	atomic_init(&sh.established, 0);
	atomic_init(&sh.setup_failed, 0);
	atomic_init(&sh.stop, 0);
	atomic_init(&sh.hold_end, 0);
	atomic_init(&sh.running, 0);
	atomic_init(&sh.storm_over, 0);

	if (o.mode != MODE_HANDSHAKE && nthreads > o.conns)
		nthreads = o.conns;
	if (o.mode == MODE_HANDSHAKE && nthreads > o.concurrency)
		nthreads = o.concurrency;
	o.threads = nthreads;
	th = calloc((size_t)nthreads, sizeof(*th));
	if (th == NULL)
		goto out_payload;
	nalloc = nthreads;
	/* Slots per thread: the measured mode's, or the --resume priming pass's if more. */
	cap = o.mode == MODE_HANDSHAKE || o.resume ? (o.concurrency + nthreads - 1) / nthreads : 0;
	if (o.mode != MODE_HANDSHAKE && o.conns / nthreads + 1 > cap)
		cap = o.conns / nthreads + 1;
	for (long i = 0; i < nthreads; i++) {
		struct thread *t = &th[i];

		t->sh = &sh;
		t->idx = (int)i;
		t->ep = -1;
		t->seed = (unsigned int)(now_ns() ^ (uint64_t)i * 2654435761u);
		t->nconns = (size_t)cap;
		t->conns = calloc(t->nconns, sizeof(*t->conns));
		t->ep = epoll_create1(EPOLL_CLOEXEC);
		if (t->conns == NULL || t->ep < 0) {
			kg_log_warn("thread set-up");
			goto out_threads;
		}
		for (size_t j = 0; j < t->nconns; j++) {
			t->conns[j].t = t;
			t->conns[j].fd = -1;
			if (o.mode == MODE_PUBLISH) {
				t->conns[j].sent = calloc(TS_SLOTS, sizeof(*t->conns[j].sent));
				if (t->conns[j].sent == NULL) {
					kg_log_warnx("out of memory");
					goto out_threads;
				}
			}
		}
	}

	if (o.resume) {
		/* Unmeasured: every device once, a full handshake that leaves it a ticket. */
		po = o;
		po.mode = MODE_HANDSHAKE;
		po.count = o.mode == MODE_STORM ? o.conns : (long)sh.ndev;
		po.duration = 0;
		sh.o = &po;
		sh.priming = true;
		phase_setup(&sh, th, nthreads);
		r = run_phase(&sh, th, nthreads, &sigs);
		for (long i = 0; i < nthreads; i++)
			prime_errors += th[i].errors;
		for (size_t i = 0; i < sh.ndev; i++)
			primed += atomic_load(&sh.dev[i].sess) != NULL;
		sh.o = &o;
		sh.priming = false;
		if (r < 0)
			goto out_threads;
		interrupted = r > 0;
		if (primed == 0)
			kg_log_warnx("--resume: the priming pass left no device a resumable session "
				     "(the server sent no ticket?)");
	}
	if (!interrupted) {
		phase_setup(&sh, th, nthreads);
		c0 = server_ticks(&o);
		r = run_phase(&sh, th, nthreads, &sigs);
		c1 = server_ticks(&o);
		if (r < 0)
			goto out_threads;
		interrupted = r > 0;
	}

	for (long i = 0; i < nthreads; i++) {
		struct thread *t = &th[i];

		ok += t->ok;
		errors += t->errors;
		pings += t->pings;
		resumed += t->resumed;
		resumed_psk_ke += t->resumed_psk_ke;
		full += t->full;
		no_ticket += t->no_ticket;
		retries += t->retries;
		unfinished += t->unfinished;
		for (int k = 0; k < FK_N; k++)
			fails[k] += t->fails[k];
		if (t->first_ns != 0 && (first == 0 || t->first_ns < first))
			first = t->first_ns;
		if (t->last_ns > last)
			last = t->last_ns;
		if (t->lat.n > 0) {
			uint32_t *v = realloc(all.v, (all.n + t->lat.n) * sizeof(*v));

			if (v == NULL)
				goto out_threads;
			all.v = v;
			memcpy(all.v + all.n, t->lat.v, t->lat.n * sizeof(*v));
			all.n += t->lat.n;
		}
	}
	if (o.mode == MODE_IDLE || o.mode == MODE_STORM)
		ok = atomic_load(&sh.established);
	/* storm: a device not connected by the deadline is the storm's error */
	if (o.mode == MODE_STORM && !interrupted && ok < o.conns)
		errors += o.conns - ok;
	/* Work that never happened is an error too (e.g. stopped by a signal). */
	if (!interrupted && o.mode == MODE_PUBLISH && ok + errors < o.msgs && errors == 0)
		errors = o.msgs - ok;
	if (all.n > 0)
		qsort(all.v, all.n, sizeof(*all.v), cmp_u32);
	wall = last > first ? (double)(last - first) / 1e9 : 0.0;
	printf("{\"mode\":\"%s\",\"count\":%ld,\"errors\":%ld,\"rate\":%.1f,\"p50_us\":%" PRIu32
	       ",\"p99_us\":%" PRIu32 ",\"wall_s\":%.3f,\"threads\":%ld,\"devices\":%zu",
	       mode_names[o.mode], ok, errors, wall > 0 ? (double)ok / wall : 0.0,
	       pct(all.v, all.n, 50), pct(all.v, all.n, 99), wall, nthreads, sh.ndev);
	if (o.mode == MODE_PUBLISH)
		printf(",\"conns\":%ld,\"size\":%ld,\"window\":%ld", o.conns, o.size, o.window);
	if (o.mode == MODE_IDLE)
		printf(",\"conns\":%ld,\"pings\":%ld,\"hold_s\":%ld", o.conns, pings, o.hold);
	if (o.mode == MODE_HANDSHAKE)
		printf(",\"concurrency\":%ld", o.concurrency);
	if (o.mode == MODE_STORM) {
		printf(",\"conns\":%ld,\"connected\":%ld,\"complete\":%s,\"storm_s\":%.3f,"
		       "\"retries\":%ld,\"unfinished\":%ld,\"deadline_s\":%.1f,\"timeout_ms\":%ld",
		       o.conns, ok, ok >= o.conns ? "true" : "false", wall, retries, unfinished,
		       o.deadline, o.timeout_ms);
		for (int k = 0; k < FK_N; k++)
			printf(",\"f_%s\":%ld", fkind_names[k], fails[k]);
	}
	if (!o.plain)
		printf(",\"full\":%ld,\"resumed\":%ld", full, resumed);
	if (o.resume)
		printf(",\"resume\":true,\"primed\":%ld,\"prime_errors\":%ld,\"no_ticket\":%ld,"
		       "\"resumed_psk_ke\":%ld", primed, prime_errors, no_ticket, resumed_psk_ke);
	if (o.nserver_pids > 0 && c0 >= 0 && c1 >= c0) {
		double cpu_s = (double)(c1 - c0) / (double)sysconf(_SC_CLK_TCK);

		printf(",\"server_cpu_s\":%.2f,\"server_cpu_us\":%.1f", cpu_s,
		       ok > 0 ? cpu_s * 1e6 / (double)ok : 0.0);
	}
	printf(",\"transport\":\"%s\",\"interrupted\":%s}\n", o.plain ? "tcp" : "tls",
	       interrupted ? "true" : "false");
	fflush(stdout);
	ret = errors > 0 || interrupted ? 1 : 0;
	if (o.resume && !interrupted && resumed == 0) {
		/* Never let full handshakes pass for resumed ones. */
		kg_log_warnx("--resume: none of %ld connections resumed its session", full);
		ret = 1;
	}

out_threads:
	for (long i = 0; i < nalloc; i++) {
		struct thread *t = &th[i];

		for (size_t j = 0; t->conns != NULL && j < (size_t)cap; j++) {
			if (t->conns[j].state != ST_FREE && t->conns[j].state != ST_WAIT)
				conn_release(&t->conns[j]);
			free(t->conns[j].wbuf);
			free(t->conns[j].sent);
		}
		free(t->conns);
		free(t->lat.v);
		if (t->ep >= 0)
			close(t->ep);
	}
	free(th);
	free(all.v);
out_payload:
	free(sh.payload);
out_ctx:
	SSL_CTX_free(sh.ctx);
out_devices:
	free_devices(sh.dev, sh.ndev);
	return ret;
}
