/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kg_mqttcheck.c - kg-mqttcheck: proves that MQTT traffic through ktlsgated is byte-exact
 * in both directions and that the gate's switch from the handshake to its relay (user
 * space or kernel TLS) loses, reorders and corrupts nothing. Self-contained (libc,
 * OpenSSL 3.0, libkg's MQTT codec) so it runs in the busybox guest too.
 *
 * Each connection i has two clients:
 *   - the device: mTLS to the gate (--gw), MQTT 3.1.1 client id from --client-id;
 *   - its peer at the broker: plain TCP straight to mosquitto (--broker).
 * Up (--dir up): the peer subscribes to TOPIC/<client id>/up (QoS 1), then the device
 * publishes --n QoS 1 messages; the peer checks each one byte for byte and in order.
 * Down (--dir down): the device subscribes (through the gate) to .../down, the peer
 * publishes, the device checks. --dir both does both at once.
 * Payload k of connection i in direction d has a size in [--min, --max] and content
 * that are a pure function of (--seed, d, i, k), so the receiver regenerates what it
 * expects. A message that differs is classified: "lost" (it is a later message: the
 * ones between never came), "order" (an earlier one again), else "corrupt" with the
 * first differing byte offset.
 *
 * The switch stress: --split cuts the device's plaintext at random points into
 * separate SSL_write calls and writes the ciphertext to TCP (TCP_NODELAY) in random
 * chunks with small random pauses: OpenSSL writes into a memory BIO and this program
 * does the socket writes, so record and segment boundaries land anywhere, including
 * inside the handshake's last flight. --pipeline[=K] (implies --split unless
 * --no-split) sends CONNECT, the SUBSCRIBE and the first K publishes right behind the
 * handshake without waiting for the CONNACK, so they are in flight while the gate
 * hands the session over. --conns N --parallel P runs N connections, P at a time
 * (threads, one per connection in flight).
 * Plain sessions (--plain, for the gate's `plain` listener): no TLS, the device's MQTT
 * bytes go to TCP with the same random chunks and pauses (--split) and are read
 * straight from it; the CONNECT is sent on connect, so --pipeline puts the SUBSCRIBE
 * and publishes behind it while the gate checks it and hands the sockets to its
 * relay. The device closes with a FIN (--close eof). --username / --password fill
 * the CONNECT's credentials (an access token, a basic device's), either mode.
 *
 * Close (--close): notify = the device sends close_notify after its last PUBACK (and
 * last received message); notify-early = right after its last PUBLISH, before any
 * PUBACK (only with --dir up: proves the gate delivers what precedes the close_notify);
 * eof = a TCP FIN without close_notify. Then it waits for the gate to end the session
 * and reports how: close_notify back, eof, or an alert. --close-reply notify|eof|any
 * says what is acceptable (default any); a timeout always fails.
 * KeyUpdate (--keyupdate not-requested|requested, TLS 1.3): once half the messages
 * are through (acknowledged and received), the device sends a KeyUpdate and goes on.
 * The outcome is continued (everything else got through), alert(N), eof, or hang
 * (timeout: always a failure); --expect continue|alert|alert:N|close (close = any
 * clean end: alert or eof or close_notify) says which is right.
 *
 * Output: failures one per line on stderr (connection index, direction, message index,
 * first differing byte), a human summary on stderr, and one JSON line on stdout:
 *   {"connections":..,"ok":..,"messages":{"up":..,"down":..},"bytes":{"up":..,"down":..},
 *    "failures":{"connect":..,...},"close":{...},"keyupdate":{...},"tls":[...],"elapsed_s":..}
 * Exit status: 0 only if every check of every connection passed; 1 a check failed;
 * 2 usage or setup error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "mqtt/mqtt.h"

/* ---- options -------------------------------------------------------------------- */

enum dir_mask { DIR_UP = 1, DIR_DOWN = 2 };
enum close_mode { CLOSE_NOTIFY, CLOSE_NOTIFY_EARLY, CLOSE_EOF };
enum close_reply { REPLY_ANY, REPLY_NOTIFY, REPLY_EOF };
enum ku_mode { KU_NONE, KU_NOT_REQUESTED, KU_REQUESTED };
enum ku_expect { EXPECT_CONTINUE, EXPECT_ALERT, EXPECT_CLOSE };

struct opts {
	const char *gw_host, *gw_port, *br_host, *br_port;
	const char *ca, *cert, *key, *cert_dir, *client_id, *topic;
	const char *username, *password; /* the device's CONNECT credentials, NULL: none */
	bool plain;                 /* the device speaks MQTT straight over TCP (no TLS) */
	int tls;                    /* 0 any, 12, 13 */
	const char *ciphersuites, *cipher;
	unsigned n, conns, parallel, window, pipeline;
	size_t min, max;
	uint64_t seed;
	unsigned dir;               /* enum dir_mask bits */
	bool split;
	unsigned delay_us;          /* largest random pause between TCP chunks */
	double timeout;             /* seconds per connection */
	enum close_mode close;
	enum close_reply close_reply;
	enum ku_mode ku;
	enum ku_expect expect;
	int expect_alert;           /* -1: any alert */
	int inject;                 /* self-test: 0 none, 'c' corrupt, 'd' drop one message */
	bool verbose;
};

/* ---- deterministic PRNG: splitmix64 ------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	r->s += 0x9e3779b97f4a7c15ull;
	return mix64(r->s);
}

/* Uniform in [lo, hi]. */
static size_t rng_range(struct rng *r, size_t lo, size_t hi)
{
	return lo + (size_t)(rng_next(r) % ((uint64_t)(hi - lo) + 1u));
}

static unsigned bitlen(size_t v)
{
	unsigned b = 0;

	while (v != 0) {
		b++;
		v >>= 1;
	}
	return b;
}

/* The generator of message k of connection conn in direction d (1 up, 2 down). */
static struct rng msg_rng(uint64_t seed, unsigned d, unsigned conn, unsigned k)
{
	struct rng r = { mix64(seed ^ mix64(((uint64_t)d << 60) ^ ((uint64_t)conn << 28) ^ k)) };

	return r;
}

/* Half the sizes uniform in [min, max], half log-uniform (a uniform bit length, then
 * uniform within it) so that small payloads and the varint and record boundaries
 * (127/128, 16383/16384) are well represented beside the large ones. */
static size_t msg_size(const struct opts *o, struct rng *r)
{
	unsigned b0, b1, b;
	size_t lo, hi;

	if (rng_next(r) & 1u)
		return rng_range(r, o->min, o->max);
	b0 = bitlen(o->min);
	b1 = bitlen(o->max);
	b = (unsigned)rng_range(r, b0, b1);
	lo = b <= 1 ? 0 : (size_t)1 << (b - 1);
	hi = b == 0 ? 0 : ((size_t)1 << b) - 1;
	if (lo < o->min)
		lo = o->min;
	if (hi > o->max)
		hi = o->max;
	return rng_range(r, lo, hi);
}

static void fill_payload(struct rng *r, uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint64_t v = rng_next(r);
		size_t k = len - i < 8 ? len - i : 8;

		memcpy(p + i, &v, k);
		i += k;
	}
}

/* ---- shared run state ---------------------------------------------------------------- */

enum fail_kind {
	F_CONNECT, F_CONNACK, F_CORRUPT, F_LOST, F_ORDER, F_PROTOCOL, F_EOF, F_KEYUPDATE,
	F_CLOSE, F_TIMEOUT, F_MAX
};
static const char *const fail_names[F_MAX] = {
	"connect", "connack", "corrupt", "lost", "order", "protocol", "eof", "keyupdate",
	"close", "timeout"
};

enum end_kind { END_NONE, END_NOTIFY, END_EOF, END_ALERT, END_TIMEOUT, END_CONTINUED };

#define MAX_TLS_NAMES 8

struct run {
	const struct opts *o;
	SSL_CTX *shared_ctx;        /* NULL with --cert-dir: one context per connection */
	atomic_uint next_conn;
	pthread_mutex_t lock;       /* guards everything below and stderr lines */
	unsigned long ok_conns;
	unsigned long msgs[2], bytes[2]; /* [0] up, [1] down: verified at the receiver */
	unsigned long fails[F_MAX];
	unsigned long close_end[END_CONTINUED + 1];
	unsigned long ku_end[END_CONTINUED + 1];
	unsigned long ku_peer_updates;   /* KeyUpdate messages the gate sent us */
	unsigned long alerts[256];
	char tls_names[MAX_TLS_NAMES][64];
	unsigned long tls_count[MAX_TLS_NAMES];
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- byte buffers ------------------------------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t off, len, cap;       /* live bytes are p[off .. len) */
};

static size_t buf_live(const struct buf *b)
{
	return b->len - b->off;
}

/* Room for `more` bytes at p + len; false on allocation failure. */
static bool buf_reserve(struct buf *b, size_t more)
{
	uint8_t *np;
	size_t need, cap;

	if (b->off > 0 && (b->off == b->len || b->len + more > b->cap)) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	need = b->len + more;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < need)
		cap *= 2;
	np = realloc(b->p, cap);
	if (np == NULL)
		return false;
	b->p = np;
	b->cap = cap;
	return true;
}

static bool buf_put(struct buf *b, const void *d, size_t n)
{
	if (!buf_reserve(b, n))
		return false;
	memcpy(b->p + b->len, d, n);
	b->len += n;
	return true;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	*b = (struct buf){ 0 };
}

/* ---- one connection --------------------------------------------------------------------- */

/* Per-direction message accounting. The sender numbers messages 0..n-1; the receiver
 * expects them in that order. */
struct flow {
	bool on;
	char topic[256];
	unsigned sent;              /* publishes queued by the sender */
	unsigned acked;             /* PUBACKs the sender received */
	unsigned inflight;
	unsigned expect;            /* next index the receiver expects */
	unsigned received;          /* messages the receiver accepted as exact */
	bool ready;                 /* the receiver's SUBACK came */
};

struct conn {
	struct run *run;
	const struct opts *o;
	unsigned idx;
	struct rng rng;             /* split points, chunk sizes, pauses */
	char cid[128];
	SSL_CTX *own_ctx;
	double t0, deadline;

	/* device side */
	int dfd;
	SSL *ssl;
	BIO *wbio;                  /* OpenSSL writes ciphertext here; we send it */
	struct buf ptx, ctx, drx;   /* plaintext to SSL_write, ciphertext to send, plaintext read */
	bool hs_done, connack, dev_started, dev_rd_closed, dev_wr_closed;
	bool connect_queued, sub_queued; /* the device's CONNECT / SUBSCRIBE are in ptx */
	double next_write;
	int alert;                  /* last alert received, -1 none */
	unsigned peer_ku;           /* KeyUpdate messages received */

	/* broker side */
	int bfd;
	struct buf btx, brx;
	bool b_connack, b_closed;

	struct flow up, down;
	unsigned ku_at;             /* both flows pause at this index for the KeyUpdate */
	bool ku_sent;
	enum end_kind ku_end;
	bool closing;               /* device sent its close (notify/eof) */
	enum end_kind close_end;
	bool failed, done;
	uint8_t *scratch;           /* expected payload for checks */
};

static void conn_fail(struct conn *c, enum fail_kind k, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void conn_fail(struct conn *c, enum fail_kind k, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&c->run->lock);
	c->run->fails[k]++;
	fprintf(stderr, "FAIL conn %u (%s) %s: ", c->idx, c->cid, fail_names[k]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&c->run->lock);
	c->failed = true;
}

/* SSL errors go to stderr under the lock, tagged with the connection. */
static void conn_ssl_errors(struct conn *c)
{
	unsigned long e;
	char s[200];

	pthread_mutex_lock(&c->run->lock);
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, s, sizeof(s));
		fprintf(stderr, "  conn %u: %s\n", c->idx, s);
	}
	pthread_mutex_unlock(&c->run->lock);
}

/* Received alerts and KeyUpdates, seen as they are parsed (more reliable than the
 * error queue, which does not say why a read failed in every case). */
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
		   SSL *ssl, void *arg)
{
	struct conn *c = arg;
	const uint8_t *b = buf;

	(void)version;
	(void)ssl;
	if (write_p)
		return;
	if (content_type == SSL3_RT_ALERT && len >= 2 && b[1] != SSL_AD_CLOSE_NOTIFY)
		c->alert = b[1];
	else if (content_type == SSL3_RT_HANDSHAKE && len >= 1 && b[0] == SSL3_MT_KEY_UPDATE)
		c->peer_ku++;
}

static int tcp_connect(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *a;
	int fd = -1, one = 1;

	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	for (a = res; a != NULL; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd >= 0) {
		/* every chunk its own segment: that is the point of --split */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	}
	return fd;
}

/* ---- MQTT encoding ---------------------------------------------------------------------- */

static size_t put_varint(uint8_t *p, size_t v)
{
	size_t n = 0;

	do {
		uint8_t b = v & 0x7f;

		v >>= 7;
		p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
	} while (v);
	return n;
}

static bool q_connect(struct buf *b, const char *cid, const char *user, const char *pass)
{
	struct kg_mqtt_connect_opts co = {
		.level = KG_MQTT_V311, .client_id = cid, .username = user, .password = pass,
		.keepalive = 120, .clean_start = true
	};
	uint8_t tmp[2048];
	size_t n = kg_mqtt_encode_connect(&co, tmp, sizeof(tmp));

	return n > 0 && buf_put(b, tmp, n);
}

static bool q_subscribe(struct buf *b, const char *topic, uint16_t pid)
{
	size_t tl = strlen(topic), rem = 2 + 2 + tl + 1, n = 0;
	uint8_t h[8];

	h[n++] = 0x82;
	n += put_varint(h + n, rem);
	if (!buf_reserve(b, n + rem))
		return false;
	memcpy(b->p + b->len, h, n);
	b->len += n;
	b->p[b->len++] = (uint8_t)(pid >> 8);
	b->p[b->len++] = (uint8_t)pid;
	b->p[b->len++] = (uint8_t)(tl >> 8);
	b->p[b->len++] = (uint8_t)tl;
	memcpy(b->p + b->len, topic, tl);
	b->len += tl;
	b->p[b->len++] = 1; /* QoS 1 */
	return true;
}

static bool q_puback(struct buf *b, uint16_t pid)
{
	uint8_t p[4] = { 0x40, 2, (uint8_t)(pid >> 8), (uint8_t)pid };

	return buf_put(b, p, sizeof(p));
}

static uint16_t pid_of(unsigned k)
{
	return (uint16_t)(k % 65535u + 1u);
}

/* Is message k of direction d the one --inject damages or omits? */
static bool injected(const struct conn *c, unsigned d, unsigned k)
{
	return c->o->inject && c->idx == 0 && k == c->o->n / 2 &&
	       d == ((c->o->dir & DIR_UP) ? DIR_UP : DIR_DOWN);
}

/* Queue PUBLISH k of direction d (QoS 1) with its generated payload. */
static bool q_publish(struct conn *c, struct buf *b, unsigned d, const char *topic, unsigned k)
{
	struct rng r = msg_rng(c->o->seed, d, c->idx, k);
	size_t len = msg_size(c->o, &r), cap = len + strlen(topic) + 16, n;

	fill_payload(&r, c->scratch, len);
	if (!buf_reserve(b, cap))
		return false;
	n = kg_mqtt_encode_publish(KG_MQTT_V311, topic, 1, pid_of(k), c->scratch, len,
				   b->p + b->len, cap);
	if (n == 0)
		return false;
	/* --inject: prove the checker sees what it is for (connection 0, message n/2 of
	 * the first direction checked) */
	if (injected(c, d, k)) {
		if (c->o->inject == 'd')
			return true;
		if (len > 0)
			b->p[b->len + n - len + len / 2] ^= 0x5a;
	}
	b->len += n;
	return true;
}

/* ---- checking a received message ---------------------------------------------------------- */

static bool payload_is(struct conn *c, unsigned d, unsigned k, const uint8_t *p, size_t len,
		       size_t *diff_at, size_t *want_len)
{
	struct rng r = msg_rng(c->o->seed, d, c->idx, k);
	size_t want = msg_size(c->o, &r), i, m;

	fill_payload(&r, c->scratch, want);
	*want_len = want;
	m = len < want ? len : want;
	for (i = 0; i < m && p[i] == c->scratch[i]; i++)
		;
	*diff_at = i;
	return i == m && len == want;
}

/* The receiver of flow f (direction d) got a PUBLISH on topic with payload p. */
static void check_message(struct conn *c, struct flow *f, unsigned d, const char *topic,
			  size_t tlen, const uint8_t *p, size_t len)
{
	const char *dn = d == DIR_UP ? "up" : "down";
	size_t diff, want, d2, w2;
	unsigned k = f->expect, j;

	if (tlen != strlen(f->topic) || memcmp(topic, f->topic, tlen) != 0) {
		conn_fail(c, F_PROTOCOL, "%s msg %u: PUBLISH on topic '%.*s', want '%s'", dn, k,
			  (int)(tlen > 200 ? 200 : tlen), topic, f->topic);
		return;
	}
	if (k >= c->o->n) {
		conn_fail(c, F_ORDER, "%s: message beyond the last (%u sent), %zu bytes", dn,
			  c->o->n, len);
		return;
	}
	if (payload_is(c, d, k, p, len, &diff, &want)) {
		f->expect++;
		f->received++;
		pthread_mutex_lock(&c->run->lock);
		c->run->msgs[d == DIR_UP ? 0 : 1]++;
		c->run->bytes[d == DIR_UP ? 0 : 1] += len;
		pthread_mutex_unlock(&c->run->lock);
		return;
	}
	/* Not the expected one: a later one (loss), an earlier one (duplicate or
	 * reorder), or corruption. Look a window either side. */
	for (j = k + 1; j < c->o->n && j <= k + 64; j++) {
		if (payload_is(c, d, j, p, len, &d2, &w2)) {
			conn_fail(c, F_LOST, "%s msg %u..%u missing: got msg %u instead", dn, k, j - 1, j);
			f->expect = j + 1;
			return;
		}
	}
	for (j = k > 64 ? k - 64 : 0; j < k; j++) {
		if (payload_is(c, d, j, p, len, &d2, &w2)) {
			conn_fail(c, F_ORDER, "%s msg %u: got msg %u again (duplicate or reordered)",
				  dn, k, j);
			return;
		}
	}
	conn_fail(c, F_CORRUPT, "%s msg %u: %zu bytes (want %zu), first differing byte at offset %zu",
		  dn, k, len, want, diff);
	f->expect++;
}

/* ---- packet handling ----------------------------------------------------------------------- */

/* One complete packet from the device's side (from_dev) or the broker peer. */
static void on_packet(struct conn *c, bool from_dev, uint8_t tf, const uint8_t *b, size_t rem)
{
	const char *side = from_dev ? "device" : "broker";
	unsigned type = tf >> 4;

	switch (type) {
	case 2: /* CONNACK */
		if (rem != 2 || b[1] != 0) {
			conn_fail(c, F_CONNACK, "%s: CONNACK return code 0x%02x", side, rem >= 2 ? b[1] : 0xff);
			return;
		}
		if (from_dev)
			c->connack = true;
		else
			c->b_connack = true;
		return;
	case 9: /* SUBACK */
		if (rem != 3 || b[2] > 2) {
			conn_fail(c, F_PROTOCOL, "%s: SUBACK refused (0x%02x)", side, rem >= 3 ? b[2] : 0xff);
			return;
		}
		if (from_dev)
			c->down.ready = true;
		else
			c->up.ready = true;
		return;
	case 4: { /* PUBACK */
		struct flow *f = from_dev ? &c->up : &c->down;
		uint16_t pid = rem >= 2 ? (uint16_t)(b[0] << 8 | b[1]) : 0;

		/* --inject drop: that message was never sent, so no PUBACK comes for it;
		 * the next one's must not read as a protocol error (it raced the receiver's
		 * report of the loss, which is what the self-test checks) */
		if (c->o->inject == 'd' && f->inflight > 0 &&
		    injected(c, from_dev ? DIR_UP : DIR_DOWN, f->acked)) {
			f->acked++;
			f->inflight--;
		}
		if (rem < 2 || f->inflight == 0 || pid != pid_of(f->acked)) {
			conn_fail(c, F_PROTOCOL, "%s: unexpected PUBACK %u (want %u, %u in flight)",
				  side, pid, pid_of(f->acked), f->inflight);
			return;
		}
		f->acked++;
		f->inflight--;
		return;
	}
	case 3: { /* PUBLISH */
		struct flow *f = from_dev ? &c->down : &c->up;
		unsigned qos = (tf >> 1) & 3u;
		size_t tl, off;

		if (rem < 2 || qos != 1 || (tl = (size_t)(b[0] << 8 | b[1])) + 4 > rem) {
			conn_fail(c, F_PROTOCOL, "%s: malformed or QoS %u PUBLISH", side, qos);
			return;
		}
		off = 2 + tl + 2;
		check_message(c, f, from_dev ? DIR_DOWN : DIR_UP, (const char *)b + 2, tl, b + off,
			      rem - off);
		if (!q_puback(from_dev ? &c->ptx : &c->btx, (uint16_t)(b[2 + tl] << 8 | b[3 + tl])))
			conn_fail(c, F_PROTOCOL, "out of memory");
		return;
	}
	case 13: /* PINGRESP */
		return;
	default:
		conn_fail(c, F_PROTOCOL, "%s: unexpected packet type %u", side, type);
	}
}

/* Split rx into packets. The device's first packet must be the CONNACK. */
static void parse_packets(struct conn *c, bool from_dev, struct buf *rx)
{
	while (!c->failed && buf_live(rx) > 0) {
		uint8_t tf;
		size_t rem, hl;
		enum kg_parse r = kg_mqtt_parse_fixed_header(rx->p + rx->off, buf_live(rx), &tf, &rem, &hl);

		if (r == KG_PARSE_SHORT)
			return;
		if (r != KG_PARSE_OK || rem > (16u << 20)) {
			conn_fail(c, F_PROTOCOL, "%s: bad fixed header (first byte 0x%02x)",
				  from_dev ? "device" : "broker", rx->p[rx->off]);
			return;
		}
		if (buf_live(rx) < hl + rem)
			return;
		if (from_dev && !c->connack && (tf >> 4) != 2) {
			conn_fail(c, F_PROTOCOL, "device: packet type %u before the CONNACK", tf >> 4);
			return;
		}
		on_packet(c, from_dev, tf, rx->p + rx->off + hl, rem);
		rx->off += hl + rem;
	}
}

/* ---- device I/O ----------------------------------------------------------------------------- */

/* A random piece size: many tiny ones, some around a segment, some over a record. */
static size_t rand_piece(struct rng *r, size_t left, bool plaintext)
{
	uint64_t sel = rng_next(r) % 10;
	size_t hi;

	if (sel < 2)
		hi = 16;
	else if (sel < 5)
		hi = plaintext ? 512 : 1460;
	else if (sel < 8)
		hi = 4096;
	else
		hi = plaintext ? 20000 : 17000;
	hi = rng_range(r, 1, hi);
	return hi < left ? hi : left;
}

static void drain_wbio(struct conn *c)
{
	size_t pend;

	if (c->wbio == NULL) /* --plain */
		return;
	while ((pend = BIO_ctrl_pending(c->wbio)) > 0) {
		int n;

		if (!buf_reserve(&c->ctx, pend)) {
			conn_fail(c, F_PROTOCOL, "out of memory");
			return;
		}
		n = BIO_read(c->wbio, c->ctx.p + c->ctx.len, (int)pend);
		if (n <= 0)
			return;
		c->ctx.len += (size_t)n;
	}
}

/* How the device's read side ended (SSL_read or SSL_do_handshake returned r). */
static enum end_kind dev_end_kind(struct conn *c, int r)
{
	int e = SSL_get_error(c->ssl, r);

	if (e == SSL_ERROR_ZERO_RETURN)
		return END_NOTIFY;
	ERR_clear_error();
	return c->alert >= 0 ? END_ALERT : END_EOF;
}

static void dev_ended(struct conn *c, enum end_kind k);

static void dev_handshake(struct conn *c)
{
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		char name[64];
		unsigned i;

		c->hs_done = true;
		snprintf(name, sizeof(name), "%s %s", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
		pthread_mutex_lock(&c->run->lock);
		for (i = 0; i < MAX_TLS_NAMES; i++) {
			if (c->run->tls_names[i][0] == '\0')
				snprintf(c->run->tls_names[i], sizeof(c->run->tls_names[i]), "%s", name);
			if (strcmp(c->run->tls_names[i], name) == 0) {
				c->run->tls_count[i]++;
				break;
			}
		}
		pthread_mutex_unlock(&c->run->lock);
	} else {
		int e = SSL_get_error(c->ssl, r);

		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			drain_wbio(c);
			if (c->alert >= 0)
				conn_fail(c, F_CONNECT, "TLS handshake failed: alert %d", c->alert);
			else
				conn_fail(c, F_CONNECT, "TLS handshake failed (error %d)", e);
			conn_ssl_errors(c);
		}
	}
	drain_wbio(c);
}

/* Move plaintext through SSL_write (in random pieces with --split), then ciphertext
 * to the socket (in random chunks, with random pauses, with --split). */
static void dev_flush(struct conn *c)
{
	double t;

	if (c->dev_wr_closed && buf_live(&c->ctx) == 0)
		return;
	if (c->o->plain && buf_live(&c->ptx) > 0 && !c->dev_wr_closed) {
		/* no TLS: the MQTT bytes are what goes to TCP, cut by the chunking below */
		if (!buf_put(&c->ctx, c->ptx.p + c->ptx.off, buf_live(&c->ptx))) {
			conn_fail(c, F_PROTOCOL, "out of memory");
			return;
		}
		c->ptx.off = c->ptx.len;
	}
	if (!c->hs_done && !c->failed)
		dev_handshake(c);
	while (c->hs_done && !c->dev_wr_closed && buf_live(&c->ptx) > 0 && buf_live(&c->ctx) < 65536) {
		size_t left = buf_live(&c->ptx), n = c->o->split ? rand_piece(&c->rng, left, true) : left;
		int r;

		if (n > 1u << 30)
			n = 1u << 30;
		r = SSL_write(c->ssl, c->ptx.p + c->ptx.off, (int)n);
		if (r <= 0) {
			/* the gate may already have ended the session: its answer is read below */
			ERR_clear_error();
			break;
		}
		c->ptx.off += (size_t)r;
		drain_wbio(c);
	}
	drain_wbio(c);
	while (buf_live(&c->ctx) > 0) {
		size_t n = buf_live(&c->ctx);
		ssize_t w;

		if (c->o->split) {
			t = now_s();
			if (t < c->next_write)
				return;
			n = rand_piece(&c->rng, n, false);
			if (c->o->delay_us > 0 && rng_next(&c->rng) % 4 == 0)
				c->next_write = t + (double)rng_range(&c->rng, 0, c->o->delay_us) / 1e6;
		}
		w = send(c->dfd, c->ctx.p + c->ctx.off, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			/* reset by the gate: a read will tell how it ended */
			c->ctx.off = c->ctx.len;
			return;
		}
		c->ctx.off += (size_t)w;
	}
}

/* --plain: straight from TCP. A reset counts as an end without close (eof), like a
 * TLS session's FIN without close_notify. */
static void dev_read_plain(struct conn *c)
{
	for (;;) {
		ssize_t r;

		if (!buf_reserve(&c->drx, 65536)) {
			conn_fail(c, F_PROTOCOL, "out of memory");
			return;
		}
		r = recv(c->dfd, c->drx.p + c->drx.len, c->drx.cap - c->drx.len, 0);
		if (r > 0) {
			c->drx.len += (size_t)r;
			continue;
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		parse_packets(c, true, &c->drx);
		dev_ended(c, END_EOF);
		return;
	}
	parse_packets(c, true, &c->drx);
}

static void dev_read(struct conn *c)
{
	uint8_t tmp[16384];

	if (c->o->plain) {
		dev_read_plain(c);
		return;
	}
	if (!c->hs_done) {
		dev_handshake(c);
		if (!c->hs_done)
			return;
	}
	for (;;) {
		int r = SSL_read(c->ssl, tmp, sizeof(tmp));

		if (r > 0) {
			if (!buf_put(&c->drx, tmp, (size_t)r)) {
				conn_fail(c, F_PROTOCOL, "out of memory");
				return;
			}
			continue;
		}
		if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ)
			break;
		parse_packets(c, true, &c->drx);
		dev_ended(c, dev_end_kind(c, r));
		return;
	}
	drain_wbio(c); /* e.g. our answer to a requested KeyUpdate */
	parse_packets(c, true, &c->drx);
}

/* ---- broker side I/O ------------------------------------------------------------------------ */

static void brk_flush(struct conn *c)
{
	while (buf_live(&c->btx) > 0) {
		ssize_t w = send(c->bfd, c->btx.p + c->btx.off, buf_live(&c->btx), MSG_NOSIGNAL);

		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				conn_fail(c, F_PROTOCOL, "broker peer: send: %s", strerror(errno));
				c->btx.off = c->btx.len;
			}
			return;
		}
		c->btx.off += (size_t)w;
	}
}

static void brk_read(struct conn *c)
{
	for (;;) {
		ssize_t r;

		if (!buf_reserve(&c->brx, 65536)) {
			conn_fail(c, F_PROTOCOL, "out of memory");
			return;
		}
		r = recv(c->bfd, c->brx.p + c->brx.len, c->brx.cap - c->brx.len, 0);
		if (r > 0) {
			c->brx.len += (size_t)r;
			continue;
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		c->b_closed = true;
		break;
	}
	parse_packets(c, false, &c->brx);
	if (c->b_closed && !c->failed)
		conn_fail(c, F_PROTOCOL, "broker peer: the broker closed the connection");
}

/* ---- the state machine ------------------------------------------------------------------- */

static const char *end_name(enum end_kind k, int alert, char *buf, size_t cap)
{
	switch (k) {
	case END_NOTIFY: return "close_notify";
	case END_EOF: return "eof";
	case END_ALERT:
		if (alert < 0)
			return "alert";
		snprintf(buf, cap, "alert(%d)", alert);
		return buf;
	case END_TIMEOUT: return "hang";
	case END_CONTINUED: return "continued";
	default: return "none";
	}
}

static bool flow_done(const struct conn *c, const struct flow *f)
{
	return !f->on || (f->acked == c->o->n && f->received == c->o->n);
}

/* Judge the KeyUpdate outcome once it is known. */
static void ku_judge(struct conn *c, enum end_kind k)
{
	const struct opts *o = c->o;
	char nb[32];
	bool ok;

	if (c->ku_end != END_NONE)
		return;
	c->ku_end = k;
	switch (o->expect) {
	case EXPECT_CONTINUE: ok = k == END_CONTINUED; break;
	case EXPECT_ALERT: ok = k == END_ALERT && (o->expect_alert < 0 || c->alert == o->expect_alert); break;
	default: ok = k == END_ALERT || k == END_EOF || k == END_NOTIFY; break;
	}
	if (!ok)
		conn_fail(c, F_KEYUPDATE, "after the KeyUpdate: %s (expected %s%s)",
			  end_name(k, c->alert, nb, sizeof(nb)),
			  o->expect == EXPECT_CONTINUE ? "continue" : o->expect == EXPECT_ALERT ? "alert" : "close",
			  o->expect == EXPECT_ALERT && o->expect_alert >= 0 ? " with that description" : "");
}

/* Judge how the gate answered our close. */
static void close_judge(struct conn *c, enum end_kind k)
{
	char nb[32];
	bool ok;

	if (c->close_end != END_NONE)
		return;
	c->close_end = k;
	switch (c->o->close_reply) {
	case REPLY_NOTIFY: ok = k == END_NOTIFY; break;
	case REPLY_EOF: ok = k == END_EOF; break;
	default: ok = k == END_NOTIFY || k == END_EOF || k == END_ALERT; break;
	}
	if (!ok)
		conn_fail(c, F_CLOSE, "after our %s the gate answered %s",
			  c->o->close == CLOSE_EOF ? "FIN" : "close_notify",
			  end_name(k, c->alert, nb, sizeof(nb)));
}

/* The device's session ended (read side): judge it against where we are. */
static void dev_ended(struct conn *c, enum end_kind k)
{
	char nb[32];

	c->dev_rd_closed = true;
	if (c->closing) {
		close_judge(c, k);
		return;
	}
	if (c->ku_sent && c->ku_end == END_NONE) {
		ku_judge(c, k);
		return;
	}
	if (!c->failed)
		conn_fail(c, F_EOF, "the gate ended the session early: %s (up %u/%u acked, down %u/%u received)",
			  end_name(k, c->alert, nb, sizeof(nb)), c->up.acked, c->o->n, c->down.received, c->o->n);
}

/* A client context with the run's TLS settings and the identity cert/key (NULL: none).
 * NULL on failure, the reason in OpenSSL's error queue. */
static SSL_CTX *make_ctx(const struct opts *o, const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1 ||
	    (o->tls == 12 && (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
			      !SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION))) ||
	    (o->tls == 13 && (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
			      !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))) ||
	    (o->ciphersuites != NULL && !SSL_CTX_set_ciphersuites(ctx, o->ciphersuites)) ||
	    (o->cipher != NULL && !SSL_CTX_set_cipher_list(ctx, o->cipher)) ||
	    (cert != NULL && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) ||
	    (key != NULL && SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

static void dev_start(struct conn *c)
{
	const struct opts *o = c->o;
	SSL_CTX *ctx = c->run->shared_ctx;
	BIO *rbio;

	c->dev_started = true;
	if (o->plain) {
		c->dfd = tcp_connect(o->gw_host, o->gw_port);
		if (c->dfd < 0)
			conn_fail(c, F_CONNECT, "cannot connect to the gate %s:%s: %s", o->gw_host,
				  o->gw_port, strerror(errno));
		else
			c->hs_done = true; /* nothing to negotiate: the CONNECT goes first */
		return;
	}
	if (ctx == NULL) {
		char cert[1024], key[1024];

		snprintf(cert, sizeof(cert), "%s/%s/chain.pem", o->cert_dir, c->cid);
		snprintf(key, sizeof(key), "%s/%s/key.pem", o->cert_dir, c->cid);
		ctx = c->own_ctx = make_ctx(o, cert, key);
		if (ctx == NULL) {
			conn_fail(c, F_CONNECT, "cannot set up TLS with %s / %s", cert, key);
			conn_ssl_errors(c);
			return;
		}
	}
	c->dfd = tcp_connect(o->gw_host, o->gw_port);
	if (c->dfd < 0) {
		conn_fail(c, F_CONNECT, "cannot connect to the gate %s:%s: %s", o->gw_host, o->gw_port,
			  strerror(errno));
		return;
	}
	c->ssl = SSL_new(ctx);
	rbio = BIO_new_socket(c->dfd, BIO_NOCLOSE);
	c->wbio = BIO_new(BIO_s_mem());
	if (c->ssl == NULL || rbio == NULL || c->wbio == NULL) {
		BIO_free(rbio);
		BIO_free(c->wbio);
		c->wbio = NULL;
		conn_fail(c, F_CONNECT, "out of memory");
		return;
	}
	SSL_set_bio(c->ssl, rbio, c->wbio); /* the SSL owns both BIOs now */
	SSL_set_msg_callback(c->ssl, msg_cb);
	SSL_set_msg_callback_arg(c->ssl, c);
	SSL_set_connect_state(c->ssl);
	dev_handshake(c);
}

/* Queue the next publishes of both flows while windows and buffers allow. */
static void pump_publishers(struct conn *c)
{
	const struct opts *o = c->o;
	unsigned pre = o->pipeline;

	/* device -> broker: after the CONNACK, or the first `pre` before it */
	while (c->up.on && c->hs_done && !c->closing && c->up.ready && c->up.sent < o->n &&
	       c->up.inflight < o->window && buf_live(&c->ptx) < 65536 &&
	       (c->connack || c->up.sent < pre) && (c->ku_at == 0 || c->up.sent < c->ku_at || c->ku_sent) &&
	       !c->dev_rd_closed) {
		if (!q_publish(c, &c->ptx, DIR_UP, c->up.topic, c->up.sent)) {
			conn_fail(c, F_PROTOCOL, "out of memory");
			return;
		}
		c->up.sent++;
		c->up.inflight++;
	}
	/* broker -> device: once the device's subscription is active */
	while (c->down.on && c->down.ready && c->b_connack && c->down.sent < o->n &&
	       c->down.inflight < o->window && buf_live(&c->btx) < 65536 &&
	       (c->ku_at == 0 || c->down.sent < c->ku_at || c->ku_sent) && !c->dev_rd_closed) {
		if (!q_publish(c, &c->btx, DIR_DOWN, c->down.topic, c->down.sent)) {
			conn_fail(c, F_PROTOCOL, "out of memory");
			return;
		}
		c->down.sent++;
		c->down.inflight++;
	}
}

/* Advance whatever can advance. */
static void step(struct conn *c)
{
	const struct opts *o = c->o;

	if (c->failed)
		return;
	/* the broker peer first: subscribed before the device publishes */
	if (!c->dev_started && c->b_connack && (!c->up.on || c->up.ready))
		dev_start(c);
	if (c->failed || !c->dev_started)
		return;
	if (c->hs_done && !c->connect_queued) {
		/* right after the handshake: CONNECT, and with --pipeline the SUBSCRIBE
		 * right behind it (and the first publishes, below) */
		c->connect_queued = true;
		if (!q_connect(&c->ptx, c->cid, o->username, o->password)) {
			conn_fail(c, F_PROTOCOL, "out of memory");
			return;
		}
	}
	if (c->down.on && !c->sub_queued && (c->connack || (o->pipeline && c->connect_queued))) {
		c->sub_queued = true;
		if (!q_subscribe(&c->ptx, c->down.topic, 1)) {
			conn_fail(c, F_PROTOCOL, "out of memory");
			return;
		}
	}
	/* KeyUpdate at the halfway point, once everything before it is through */
	if (c->ku_at > 0 && !c->ku_sent && c->connack &&
	    (!c->up.on || (c->up.acked == c->ku_at && c->up.received == c->ku_at)) &&
	    (!c->down.on || (c->down.received == c->ku_at && c->down.acked == c->ku_at))) {
		if (SSL_key_update(c->ssl, o->ku == KU_REQUESTED ? SSL_KEY_UPDATE_REQUESTED
								 : SSL_KEY_UPDATE_NOT_REQUESTED) != 1) {
			conn_fail(c, F_KEYUPDATE, "SSL_key_update refused locally (TLS 1.3 only)");
			conn_ssl_errors(c);
			return;
		}
		(void)SSL_do_handshake(c->ssl); /* sends it now */
		ERR_clear_error();
		drain_wbio(c);
		c->ku_sent = true;
	}
	pump_publishers(c);
	if (c->ku_sent && c->ku_end == END_NONE && flow_done(c, &c->up) && flow_done(c, &c->down))
		ku_judge(c, END_CONTINUED);
	/* the close */
	if (!c->closing && !c->dev_rd_closed && c->connack &&
	    (o->close == CLOSE_NOTIFY_EARLY ? c->up.sent == o->n && buf_live(&c->ptx) == 0
					    : flow_done(c, &c->up) && flow_done(c, &c->down) &&
					      buf_live(&c->ptx) == 0)) {
		c->closing = true;
		if (o->close == CLOSE_EOF) {
			dev_flush(c);
			/* wait for the ciphertext to leave first; the FIN follows in dev_close_eof */
		} else {
			(void)SSL_shutdown(c->ssl);
			ERR_clear_error();
			drain_wbio(c);
			c->dev_wr_closed = true;
		}
	}
	if (c->closing && o->close == CLOSE_EOF && !c->dev_wr_closed && buf_live(&c->ctx) == 0) {
		(void)shutdown(c->dfd, SHUT_WR);
		c->dev_wr_closed = true;
	}
	/* done: the device's session is over and every message the receivers still
	 * expect is in */
	if (c->dev_rd_closed) {
		bool need_all = c->closing || c->ku_end == END_CONTINUED;
		bool up_in = !c->up.on || c->up.received == (need_all ? o->n : c->up.acked);

		if (c->failed || up_in)
			c->done = true;
	}
}

/* A fingerprint of everything step() and the flushes act on: equal before and after
 * a round means the connection waits for its sockets (or a timer). */
static uint64_t conn_sig(const struct conn *c)
{
	uint64_t h = 0x84222325cbf29ce4ull;
	const uint64_t v[] = {
		c->hs_done, c->connect_queued, c->sub_queued, c->closing, c->dev_wr_closed, c->ku_sent,
		c->dev_started, c->done, c->failed, c->ptx.off, c->ptx.len, c->ctx.off, c->ctx.len,
		c->btx.off, c->btx.len, c->up.sent, c->down.sent
	};
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		h = mix64(h ^ v[i]) + i;
	return h | 1u; /* never 0, the "no previous round" value */
}

static void run_conn(struct run *run, unsigned idx)
{
	const struct opts *o = run->o;
	struct conn c = { .run = run, .o = o, .idx = idx, .dfd = -1, .bfd = -1, .alert = -1 };
	char nb[32];

	c.rng.s = mix64(o->seed ^ 0x5bd1e995u ^ ((uint64_t)idx << 20));
	snprintf(c.cid, sizeof(c.cid), o->client_id, idx);
	c.t0 = now_s();
	c.deadline = c.t0 + o->timeout;
	c.up.on = (o->dir & DIR_UP) != 0;
	c.down.on = (o->dir & DIR_DOWN) != 0;
	snprintf(c.up.topic, sizeof(c.up.topic), "%s/%s/up", o->topic, c.cid);
	snprintf(c.down.topic, sizeof(c.down.topic), "%s/%s/down", o->topic, c.cid);
	c.ku_at = o->ku != KU_NONE ? (o->n + 1) / 2 : 0;
	c.scratch = malloc(o->max + 1);
	if (c.scratch == NULL) {
		conn_fail(&c, F_CONNECT, "out of memory");
		return;
	}

	/* the broker peer: plain MQTT, subscribed to the up topic if needed */
	c.bfd = tcp_connect(o->br_host, o->br_port);
	if (c.bfd < 0) {
		conn_fail(&c, F_CONNECT, "cannot connect to the broker %s:%s: %s", o->br_host, o->br_port,
			  strerror(errno));
		goto out;
	}
	{
		char bid[160];

		snprintf(bid, sizeof(bid), "kgmc-peer-%ld-%u", (long)getpid(), idx);
		if (!q_connect(&c.btx, bid, NULL, NULL) || (c.up.on && !q_subscribe(&c.btx, c.up.topic, 1))) {
			conn_fail(&c, F_CONNECT, "out of memory");
			goto out;
		}
	}

	while (!c.done) {
		struct pollfd p[2];
		nfds_t np = 0;
		int di = -1, bi = -1, ms;
		double t, wake;

		uint64_t sig, prev = 0;

		/* A flush can enable the next step (the handshake may complete in it, the
		 * close waits for ptx to drain, the FIN for the ciphertext): alternate until
		 * nothing changes any more, then wait for the sockets. */
		do {
			step(&c);
			if (c.dev_started && (c.ssl != NULL || c.dfd >= 0))
				dev_flush(&c);
			brk_flush(&c);
			sig = conn_sig(&c);
			if (sig == prev)
				break;
			prev = sig;
		} while (!c.done && !c.failed);
		if (c.done || c.failed)
			break;
		t = now_s();
		if (t >= c.deadline) {
			if (c.ku_sent && c.ku_end == END_NONE) {
				ku_judge(&c, END_TIMEOUT);
			} else if (c.closing && c.close_end == END_NONE && !c.dev_rd_closed) {
				close_judge(&c, END_TIMEOUT);
				/* our side's state, to tell a gate that hangs from bytes we never sent */
				conn_fail(&c, F_TIMEOUT, "no answer to our close within %.1f s (%zu of our bytes still unsent)",
					  o->timeout, buf_live(&c.ctx));
			} else {
				conn_fail(&c, F_TIMEOUT,
					  "after %.1f s: handshake %s, connack %s, up sent %u acked %u received %u, down sent %u acked %u received %u of %u",
					  o->timeout, c.hs_done ? "done" : "not done", c.connack ? "yes" : "no",
					  c.up.sent, c.up.acked, c.up.received, c.down.sent, c.down.acked,
					  c.down.received, o->n);
			}
			break;
		}
		wake = c.deadline;
		if ((c.ssl != NULL || c.dfd >= 0) && !c.dev_rd_closed) {
			short ev = POLLIN;

			if (buf_live(&c.ctx) > 0) {
				if (t >= c.next_write)
					ev |= POLLOUT;
				else if (c.next_write < wake)
					wake = c.next_write;
			}
			p[np] = (struct pollfd){ .fd = c.dfd, .events = ev };
			di = (int)np++;
		}
		if (c.bfd >= 0 && !c.b_closed) {
			p[np] = (struct pollfd){ .fd = c.bfd, .events = POLLIN | (buf_live(&c.btx) ? POLLOUT : 0) };
			bi = (int)np++;
		}
		ms = (int)((wake - t) * 1000.0) + 1;
		if (np == 0) {
			conn_fail(&c, F_PROTOCOL, "nothing left to wait for (internal)");
			break;
		}
		if (poll(p, np, ms) < 0 && errno != EINTR) {
			conn_fail(&c, F_PROTOCOL, "poll: %s", strerror(errno));
			break;
		}
		if (di >= 0 && (p[di].revents & (POLLIN | POLLHUP | POLLERR)))
			dev_read(&c);
		if (bi >= 0 && (p[bi].revents & (POLLIN | POLLHUP | POLLERR)))
			brk_read(&c);
	}
	if (c.dev_rd_closed && c.closing && c.close_end == END_NONE)
		close_judge(&c, END_EOF);

	pthread_mutex_lock(&run->lock);
	if (c.close_end != END_NONE)
		run->close_end[c.close_end]++;
	if (c.ku_end != END_NONE)
		run->ku_end[c.ku_end]++;
	if (c.alert >= 0)
		run->alerts[c.alert]++;
	run->ku_peer_updates += c.peer_ku;
	if (!c.failed)
		run->ok_conns++;
	if (o->verbose)
		fprintf(stderr, "conn %u (%s): %s in %.3f s; up %u/%u, down %u/%u, close %s\n", idx, c.cid,
			c.failed ? "FAILED" : "ok", now_s() - c.t0, c.up.received, c.up.on ? o->n : 0,
			c.down.received, c.down.on ? o->n : 0, end_name(c.close_end, c.alert, nb, sizeof(nb)));
	pthread_mutex_unlock(&run->lock);
	if (c.bfd >= 0 && !c.b_closed) {
		static const uint8_t disc[2] = { 0xe0, 0 };

		(void)send(c.bfd, disc, sizeof(disc), MSG_NOSIGNAL);
	}
out:
	SSL_free(c.ssl);
	SSL_CTX_free(c.own_ctx);
	if (c.dfd >= 0)
		close(c.dfd);
	if (c.bfd >= 0)
		close(c.bfd);
	buf_free(&c.ptx);
	buf_free(&c.ctx);
	buf_free(&c.drx);
	buf_free(&c.btx);
	buf_free(&c.brx);
	free(c.scratch);
}

static void *worker(void *arg)
{
	struct run *run = arg;
	unsigned i;

	while ((i = atomic_fetch_add(&run->next_conn, 1)) < run->o->conns)
		run_conn(run, i);
	return NULL;
}

/* ---- setup, report, options --------------------------------------------------------------- */

static void report(const struct run *run, double elapsed)
{
	const struct opts *o = run->o;
	unsigned long nfail = 0;
	unsigned i;
	char nb[32];
	bool first;

	for (i = 0; i < F_MAX; i++)
		nfail += run->fails[i];
	fprintf(stderr, "kg-mqttcheck: %u connections (%lu ok) in %.2f s; up %lu msgs / %lu bytes, "
			"down %lu msgs / %lu bytes verified byte for byte\n",
		o->conns, run->ok_conns, elapsed, run->msgs[0], run->bytes[0], run->msgs[1], run->bytes[1]);
	for (i = 0; i < MAX_TLS_NAMES && run->tls_names[i][0]; i++)
		fprintf(stderr, "  tls: %s x%lu\n", run->tls_names[i], run->tls_count[i]);
	for (i = END_NOTIFY; i <= END_CONTINUED; i++) {
		if (run->close_end[i])
			fprintf(stderr, "  close: %s x%lu\n", end_name((enum end_kind)i, -1, nb, sizeof(nb)),
				run->close_end[i]);
		if (run->ku_end[i])
			fprintf(stderr, "  keyupdate: %s x%lu\n", end_name((enum end_kind)i, -1, nb, sizeof(nb)),
				run->ku_end[i]);
	}
	for (i = 0; i < 256; i++)
		if (run->alerts[i])
			fprintf(stderr, "  alerts received: %u x%lu\n", i, run->alerts[i]);
	if (run->ku_peer_updates)
		fprintf(stderr, "  KeyUpdate messages from the gate: %lu\n", run->ku_peer_updates);
	for (i = 0; i < F_MAX; i++)
		if (run->fails[i])
			fprintf(stderr, "  failures %s: %lu\n", fail_names[i], run->fails[i]);
	fprintf(stderr, "kg-mqttcheck: %s\n", nfail == 0 && run->ok_conns == o->conns ? "PASS" : "FAIL");

	printf("{\"connections\":%u,\"ok\":%lu,\"messages\":{\"up\":%lu,\"down\":%lu},"
	       "\"bytes\":{\"up\":%lu,\"down\":%lu},\"failures\":{",
	       o->conns, run->ok_conns, run->msgs[0], run->msgs[1], run->bytes[0], run->bytes[1]);
	for (i = 0; i < F_MAX; i++)
		printf("%s\"%s\":%lu", i ? "," : "", fail_names[i], run->fails[i]);
	printf("},\"close\":{");
	first = true;
	for (i = END_NOTIFY; i <= END_TIMEOUT; i++) {
		printf("%s\"%s\":%lu", first ? "" : ",", i == END_ALERT ? "alert" : end_name((enum end_kind)i, -1, nb, sizeof(nb)),
		       run->close_end[i]);
		first = false;
	}
	printf("},\"keyupdate\":{");
	first = true;
	for (i = END_NOTIFY; i <= END_CONTINUED; i++) {
		printf("%s\"%s\":%lu", first ? "" : ",", i == END_ALERT ? "alert" : end_name((enum end_kind)i, -1, nb, sizeof(nb)),
		       run->ku_end[i]);
		first = false;
	}
	printf(",\"peer_updates\":%lu},\"alerts\":{", run->ku_peer_updates);
	first = true;
	for (i = 0; i < 256; i++) {
		if (run->alerts[i]) {
			printf("%s\"%u\":%lu", first ? "" : ",", i, run->alerts[i]);
			first = false;
		}
	}
	printf("},\"tls\":[");
	for (i = 0; i < MAX_TLS_NAMES && run->tls_names[i][0]; i++)
		printf("%s\"%s\"", i ? "," : "", run->tls_names[i]);
	printf("],\"elapsed_s\":%.3f,\"pass\":%s}\n", elapsed,
	       nfail == 0 && run->ok_conns == o->conns ? "true" : "false");
	fflush(stdout);
}

static void usage(FILE *f)
{
	fputs("usage: kg-mqttcheck --gw HOST:PORT --broker HOST:PORT --ca FILE\n"
	      "                    (--cert CHAIN --key KEY | --cert-dir DIR) [options]\n"
	      "       kg-mqttcheck --plain --gw HOST:PORT --broker HOST:PORT [options]\n"
	      "Checks MQTT traffic through ktlsgated byte for byte (see the top of\n"
	      "tests/lib/kg_mqttcheck.c and docs/testing-tools.md).\n"
	      "  --gw HOST:PORT          the gate (device side, mTLS; plain TCP with --plain)\n"
	      "  --plain                 no TLS: MQTT straight to TCP (--split cuts and paces\n"
	      "                          its bytes as it does the ciphertext); closes with a FIN\n"
	      "  --username U            CONNECT user name (e.g. an access token)\n"
	      "  --password P            CONNECT password (needs --username)\n"
	      "  --broker HOST:PORT      the backend broker, reached directly (plain TCP)\n"
	      "  --ca FILE               CA to verify the gate's certificate\n"
	      "  --cert FILE --key FILE  one device identity for every connection\n"
	      "  --cert-dir DIR          DIR/<client id>/chain.pem and key.pem per connection\n"
	      "  --client-id FMT         printf format with %u = connection index (default kgmc-%u)\n"
	      "  --topic PREFIX          topics are PREFIX/<client id>/up|down (default kgmc)\n"
	      "  --tls 1.2|1.3           force the version\n"
	      "  --ciphersuites LIST     TLS 1.3 suites (e.g. TLS_CHACHA20_POLY1305_SHA256)\n"
	      "  --cipher LIST           TLS 1.2 cipher list (e.g. ECDHE-ECDSA-AES256-GCM-SHA384)\n"
	      "  --dir up|down|both      direction(s) checked (default both)\n"
	      "  --n N                   QoS 1 messages per direction per connection (default 20)\n"
	      "  --min B --max B         payload sizes in bytes (default 1 and 262144)\n"
	      "  --seed S                PRNG seed: sizes, contents, split points (default 1)\n"
	      "  --window W              QoS 1 messages in flight per direction (default 8)\n"
	      "  --split / --no-split    random SSL_write pieces and TCP chunks with pauses\n"
	      "                          (--plain: random TCP chunks with pauses)\n"
	      "  --pipeline[=K]          CONNECT, SUBSCRIBE and K publishes before the CONNACK\n"
	      "                          (default K = window; implies --split)\n"
	      "  --delay-us U            largest pause between TCP chunks (default 300)\n"
	      "  --conns N --parallel P  N connections, P at a time (default 1, 1)\n"
	      "  --timeout S             seconds per connection (default 30)\n"
	      "  --close notify|notify-early|eof   how the device ends (default notify; eof\n"
	      "                          with --plain)\n"
	      "  --close-reply any|notify|eof      acceptable answer of the gate (default any)\n"
	      "  --keyupdate none|not-requested|requested   TLS 1.3 KeyUpdate halfway\n"
	      "  --expect continue|alert|alert:N|close      the right outcome (default continue)\n"
	      "  --inject corrupt|drop   self-test: connection 0 damages / omits message n/2\n"
	      "                          (the run must then fail with corrupt / lost)\n"
	      "  -v, --verbose           one line per connection\n"
	      "Output: failures and a summary on stderr, one JSON line on stdout.\n"
	      "Exit: 0 every check passed, 1 a check failed, 2 usage or setup error.\n",
	      f);
}

static bool split_hostport(const char *s, const char **host, const char **port, char *store, size_t cap)
{
	const char *colon = strrchr(s, ':');

	if (colon == NULL || colon == s || colon[1] == '\0' || (size_t)(colon - s) >= cap)
		return false;
	memcpy(store, s, (size_t)(colon - s));
	store[colon - s] = '\0';
	*host = store;
	*port = colon + 1;
	return true;
}

static bool parse_uns(const char *s, unsigned long long lo, unsigned long long hi, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* The client id format must have exactly one %u (or none): it is a printf format. */
static bool client_id_ok(const char *f)
{
	const char *p = f;
	unsigned conv = 0;

	while ((p = strchr(p, '%')) != NULL) {
		if (p[1] == '%') {
			p += 2;
			continue;
		}
		if (p[1] != 'u')
			return false;
		conv++;
		p += 2;
	}
	return conv <= 1 && strlen(f) < 100;
}

enum { O_GW = 256, O_BROKER, O_CA, O_CERT, O_KEY, O_CERTDIR, O_CID, O_TOPIC, O_TLS, O_SUITES,
       O_CIPHER, O_DIR, O_N, O_MIN, O_MAX, O_SEED, O_WINDOW, O_SPLIT, O_NOSPLIT, O_PIPE,
       O_DELAY, O_CONNS, O_PAR, O_TIMEOUT, O_CLOSE, O_REPLY, O_KU, O_EXPECT, O_INJECT,
       O_PLAIN, O_USER, O_PASS };

static const struct option long_opts[] = {
	{ "gw", required_argument, NULL, O_GW }, { "broker", required_argument, NULL, O_BROKER },
	{ "ca", required_argument, NULL, O_CA }, { "cert", required_argument, NULL, O_CERT },
	{ "key", required_argument, NULL, O_KEY }, { "cert-dir", required_argument, NULL, O_CERTDIR },
	{ "client-id", required_argument, NULL, O_CID }, { "topic", required_argument, NULL, O_TOPIC },
	{ "tls", required_argument, NULL, O_TLS }, { "ciphersuites", required_argument, NULL, O_SUITES },
	{ "cipher", required_argument, NULL, O_CIPHER }, { "dir", required_argument, NULL, O_DIR },
	{ "n", required_argument, NULL, O_N }, { "min", required_argument, NULL, O_MIN },
	{ "max", required_argument, NULL, O_MAX }, { "seed", required_argument, NULL, O_SEED },
	{ "window", required_argument, NULL, O_WINDOW }, { "split", no_argument, NULL, O_SPLIT },
	{ "no-split", no_argument, NULL, O_NOSPLIT }, { "pipeline", optional_argument, NULL, O_PIPE },
	{ "delay-us", required_argument, NULL, O_DELAY }, { "conns", required_argument, NULL, O_CONNS },
	{ "parallel", required_argument, NULL, O_PAR }, { "timeout", required_argument, NULL, O_TIMEOUT },
	{ "close", required_argument, NULL, O_CLOSE }, { "close-reply", required_argument, NULL, O_REPLY },
	{ "keyupdate", required_argument, NULL, O_KU }, { "expect", required_argument, NULL, O_EXPECT },
	{ "inject", required_argument, NULL, O_INJECT }, { "plain", no_argument, NULL, O_PLAIN },
	{ "username", required_argument, NULL, O_USER }, { "password", required_argument, NULL, O_PASS },
	{ "verbose", no_argument, NULL, 'v' }, { "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

/* Returns 0, or 2 after printing why. */
static int parse_opts(int argc, char **argv, struct opts *o, char *gwbuf, char *brbuf, size_t cap)
{
	int ch, split = -1;
	bool pipe_set = false, close_set = false, tls_set = false;
	long pipe_k = -1;
	unsigned long long v;

	*o = (struct opts){ .client_id = "kgmc-%u", .topic = "kgmc", .n = 20, .conns = 1,
			    .parallel = 1, .window = 8, .min = 1, .max = 262144, .seed = 1,
			    .dir = DIR_UP | DIR_DOWN, .delay_us = 300, .timeout = 30,
			    .expect_alert = -1 };
	while ((ch = getopt_long(argc, argv, "vh", long_opts, NULL)) != -1) {
		const char *a = optarg;
		bool ok = true;

		switch (ch) {
		case O_GW: ok = split_hostport(a, &o->gw_host, &o->gw_port, gwbuf, cap); break;
		case O_BROKER: ok = split_hostport(a, &o->br_host, &o->br_port, brbuf, cap); break;
		case O_CA: o->ca = a; tls_set = true; break;
		case O_CERT: o->cert = a; tls_set = true; break;
		case O_KEY: o->key = a; tls_set = true; break;
		case O_CERTDIR: o->cert_dir = a; tls_set = true; break;
		case O_PLAIN: o->plain = true; break;
		case O_USER: o->username = a; ok = strlen(a) < 1024; break;
		case O_PASS: o->password = a; ok = strlen(a) < 1024; break;
		case O_CID: o->client_id = a; ok = client_id_ok(a); break;
		case O_TOPIC: o->topic = a; ok = strlen(a) < 100; break;
		case O_TLS:
			o->tls = strcmp(a, "1.2") == 0 ? 12 : strcmp(a, "1.3") == 0 ? 13 : -1;
			ok = o->tls > 0;
			tls_set = true;
			break;
		case O_SUITES: o->ciphersuites = a; tls_set = true; break;
		case O_CIPHER: o->cipher = a; tls_set = true; break;
		case O_DIR:
			o->dir = strcmp(a, "up") == 0 ? DIR_UP : strcmp(a, "down") == 0 ? DIR_DOWN
				 : strcmp(a, "both") == 0 ? DIR_UP | DIR_DOWN : 0;
			ok = o->dir != 0;
			break;
		case O_N: ok = parse_uns(a, 1, 10000000, &v); o->n = (unsigned)v; break;
		case O_MIN: ok = parse_uns(a, 0, 16u << 20, &v); o->min = (size_t)v; break;
		case O_MAX: ok = parse_uns(a, 0, 16u << 20, &v); o->max = (size_t)v; break;
		case O_SEED: ok = parse_uns(a, 0, UINT64_MAX, &v); o->seed = v; break;
		case O_WINDOW: ok = parse_uns(a, 1, 1000, &v); o->window = (unsigned)v; break;
		case O_SPLIT: split = 1; break;
		case O_NOSPLIT: split = 0; break;
		case O_PIPE:
			pipe_set = true;
			if (a != NULL) {
				ok = parse_uns(a, 0, 1000000, &v);
				pipe_k = (long)v;
			}
			break;
		case O_DELAY: ok = parse_uns(a, 0, 1000000, &v); o->delay_us = (unsigned)v; break;
		case O_CONNS: ok = parse_uns(a, 1, 10000000, &v); o->conns = (unsigned)v; break;
		case O_PAR: ok = parse_uns(a, 1, 4096, &v); o->parallel = (unsigned)v; break;
		case O_TIMEOUT: ok = parse_uns(a, 1, 86400, &v); o->timeout = (double)v; break;
		case O_CLOSE:
			close_set = true;
			o->close = strcmp(a, "notify") == 0 ? CLOSE_NOTIFY
				   : strcmp(a, "notify-early") == 0 ? CLOSE_NOTIFY_EARLY
				   : strcmp(a, "eof") == 0 ? CLOSE_EOF : (enum close_mode)-1;
			ok = (int)o->close >= 0;
			break;
		case O_REPLY:
			o->close_reply = strcmp(a, "any") == 0 ? REPLY_ANY : strcmp(a, "notify") == 0 ? REPLY_NOTIFY
					 : strcmp(a, "eof") == 0 ? REPLY_EOF : (enum close_reply)-1;
			ok = (int)o->close_reply >= 0;
			break;
		case O_KU:
			o->ku = strcmp(a, "none") == 0 ? KU_NONE : strcmp(a, "not-requested") == 0 ? KU_NOT_REQUESTED
				: strcmp(a, "requested") == 0 ? KU_REQUESTED : (enum ku_mode)-1;
			ok = (int)o->ku >= 0;
			break;
		case O_EXPECT:
			if (strcmp(a, "continue") == 0) {
				o->expect = EXPECT_CONTINUE;
			} else if (strcmp(a, "close") == 0) {
				o->expect = EXPECT_CLOSE;
			} else if (strncmp(a, "alert", 5) == 0) {
				o->expect = EXPECT_ALERT;
				if (a[5] == ':') {
					ok = parse_uns(a + 6, 0, 255, &v);
					o->expect_alert = (int)v;
				} else {
					ok = a[5] == '\0';
				}
			} else {
				ok = false;
			}
			break;
		case O_INJECT:
			o->inject = strcmp(a, "corrupt") == 0 ? 'c' : strcmp(a, "drop") == 0 ? 'd' : -1;
			ok = o->inject > 0;
			break;
		case 'v': o->verbose = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
		if (!ok) {
			const struct option *lo = long_opts;

			while (lo->name != NULL && lo->val != ch)
				lo++;
			fprintf(stderr, "kg-mqttcheck: bad value for --%s: '%s'\n",
				lo->name ? lo->name : "?", a ? a : "");
			return 2;
		}
	}
	if (o->plain) {
		/* no TLS: nothing to verify or present; the FIN is the only close there is */
		if (tls_set || o->ku != KU_NONE || (close_set && o->close != CLOSE_EOF)) {
			fprintf(stderr, "kg-mqttcheck: --plain takes no TLS options, no --keyupdate, "
					"and --close eof only\n");
			return 2;
		}
		o->close = CLOSE_EOF;
	}
	if (o->password != NULL && o->username == NULL) {
		fprintf(stderr, "kg-mqttcheck: --password needs --username\n");
		return 2;
	}
	if (optind != argc || o->gw_host == NULL || o->br_host == NULL ||
	    (!o->plain && (o->ca == NULL || ((o->cert == NULL || o->key == NULL) && o->cert_dir == NULL)))) {
		fprintf(stderr, "kg-mqttcheck: --gw, --broker, and (without --plain) --ca and --cert/--key or --cert-dir are required\n");
		usage(stderr);
		return 2;
	}
	if (o->min > o->max) {
		fprintf(stderr, "kg-mqttcheck: --min is larger than --max\n");
		return 2;
	}
	if (o->close == CLOSE_NOTIFY_EARLY && o->dir != DIR_UP) {
		fprintf(stderr, "kg-mqttcheck: --close notify-early needs --dir up\n");
		return 2;
	}
	if (o->ku != KU_NONE && o->n < 2) {
		fprintf(stderr, "kg-mqttcheck: --keyupdate needs --n 2 or more\n");
		return 2;
	}
	if (o->conns > 1 && strstr(o->client_id, "%u") == NULL) {
		/* the broker would take over one session with the next */
		fprintf(stderr, "kg-mqttcheck: --conns > 1 needs %%u in --client-id\n");
		return 2;
	}
	if (pipe_set)
		o->pipeline = pipe_k >= 0 ? (unsigned)pipe_k : o->window;
	o->split = split >= 0 ? split == 1 : pipe_set;
	if (o->pipeline > o->window)
		o->window = o->pipeline;
	if (o->parallel > o->conns)
		o->parallel = o->conns;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct run run = { .o = &o };
	char gwbuf[256], brbuf[256];
	pthread_t *th = NULL;
	unsigned i, started = 0;
	double t0;
	int rc;

	rc = parse_opts(argc, argv, &o, gwbuf, brbuf, sizeof(gwbuf));
	if (rc != 0)
		return rc;
	if (!o.plain && o.cert_dir == NULL) {
		run.shared_ctx = make_ctx(&o, o.cert, o.key);
		if (run.shared_ctx == NULL) {
			ERR_print_errors_fp(stderr);
			fprintf(stderr, "kg-mqttcheck: cannot set up TLS (CA, certificate, key, ciphers)\n");
			return 2;
		}
	}
	pthread_mutex_init(&run.lock, NULL);
	atomic_init(&run.next_conn, 0);
	th = calloc(o.parallel, sizeof(*th));
	if (th == NULL) {
		rc = 2;
		goto out;
	}
	t0 = now_s();
	for (i = 0; i < o.parallel; i++) {
		pthread_attr_t at;

		pthread_attr_init(&at);
		pthread_attr_setstacksize(&at, 1u << 20); /* a 16 KiB read buffer, OpenSSL, ASan */
		if (pthread_create(&th[i], &at, worker, &run) != 0) {
			pthread_attr_destroy(&at);
			break;
		}
		pthread_attr_destroy(&at);
		started++;
	}
	if (started == 0) {
		fprintf(stderr, "kg-mqttcheck: cannot start threads\n");
		rc = 2;
		goto out;
	}
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	report(&run, now_s() - t0);
	rc = run.ok_conns == o.conns ? 0 : 1;
	for (i = 0; i < F_MAX; i++)
		if (run.fails[i])
			rc = 1;
out:
	free(th);
	SSL_CTX_free(run.shared_ctx);
	pthread_mutex_destroy(&run.lock);
	return rc;
}
