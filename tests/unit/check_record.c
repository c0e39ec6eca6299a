/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_record.c - the handoff from OpenSSL to our own record layer, proven against
 * OpenSSL itself: a real client SSL and a real server SSL (built like daemon/tls/tls.c)
 * handshake over a socketpair, exchange some records, then the server exports its
 * keys (tls_keys.c), frees its SSL and carries on with record.c while the client
 * keeps using OpenSSL. Every TLS 1.2/1.3 x AES-128-GCM/AES-256-GCM/ChaCha20 combo is
 * run; byte-exact transfer both ways is the check that keys, IVs and sequence numbers
 * are right, and off-by-one sequence numbers are shown to fail. Also: tampering,
 * record framing limits, padding, close_notify both ways, KeyUpdate/renegotiation
 * surfacing as handshake records, and the export's refusals.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ops/err.h"
#include "mqtt/mqtt.h"
#include "cli/pki.h"
#include "relay/record.h"
#include "tls/tls_keys.h"
#include "testlib.h"

/* Declared in testlib.h once the lead registers the suite; repeated here so this
 * file builds on its own under -Wmissing-prototypes. */
Suite *kg_suite_record(void);

struct combo {
	const char *name;
	uint16_t version;
	const char *suite;      /* ciphersuites (1.3) or cipher list (1.2) for the client */
	enum kg_aead aead;
};

static const struct combo combos[] = {
	{ "1.3 AES-128-GCM", KG_TLS13, "TLS_AES_128_GCM_SHA256", KG_AEAD_AES_128_GCM },
	{ "1.3 AES-256-GCM", KG_TLS13, "TLS_AES_256_GCM_SHA384", KG_AEAD_AES_256_GCM },
	{ "1.3 ChaCha20", KG_TLS13, "TLS_CHACHA20_POLY1305_SHA256", KG_AEAD_CHACHA20_POLY1305 },
	{ "1.2 AES-128-GCM", KG_TLS12, "ECDHE-ECDSA-AES128-GCM-SHA256", KG_AEAD_AES_128_GCM },
	{ "1.2 AES-256-GCM", KG_TLS12, "ECDHE-ECDSA-AES256-GCM-SHA384", KG_AEAD_AES_256_GCM },
	{ "1.2 ChaCha20", KG_TLS12, "ECDHE-ECDSA-CHACHA20-POLY1305", KG_AEAD_CHACHA20_POLY1305 },
	/* Same derivation, RSA server certificate: the suite table's other half. */
	{ "1.2 RSA AES-128-GCM", KG_TLS12, "ECDHE-RSA-AES128-GCM-SHA256", KG_AEAD_AES_128_GCM },
	{ "1.2 RSA AES-256-GCM", KG_TLS12, "ECDHE-RSA-AES256-GCM-SHA384", KG_AEAD_AES_256_GCM },
	{ "1.2 RSA ChaCha20", KG_TLS12, "ECDHE-RSA-CHACHA20-POLY1305", KG_AEAD_CHACHA20_POLY1305 },
};

/* The test PKI, made once per test case in the parent (unchecked fixture). */
static char pki_dir[PATH_MAX];

static void pki_path(char *out, size_t cap, const char *sub, const char *file)
{
	int n = snprintf(out, cap, "%s/%s%s%s", pki_dir, sub, file ? "/" : "", file ? file : "");

	ck_assert(n > 0 && (size_t)n < cap);
}

static void pki_make(enum kg_pki_kind kind, const char *cn, const char *sub, const char *issuer,
		     enum kg_pki_keytype key)
{
	char out[PATH_MAX], iss[PATH_MAX], err[512] = "";
	struct kg_pki_req req = { .kind = kind, .cn = cn, .out_dir = out, .key = key };

	pki_path(out, sizeof(out), sub, NULL);
	if (issuer != NULL) {
		pki_path(iss, sizeof(iss), issuer, NULL);
		req.issuer_dir = iss;
	}
	ck_assert_msg(kg_pki_make(&req, err, sizeof(err)) == 0, "pki %s: %s", cn, err);
}

static void pki_setup(void)
{
	kg_test_tmpdir(pki_dir, sizeof(pki_dir));
	pki_make(KG_PKI_ROOT, "Record Test Root", "root", NULL, KG_KEY_EC_P256);
	pki_make(KG_PKI_SERVER, "gate.test", "server", "root", KG_KEY_EC_P256);
	pki_make(KG_PKI_SERVER, "gate.test", "server-rsa", "root", KG_KEY_RSA2048);
	pki_make(KG_PKI_DEVICE, "dev-0001", "device", "root", KG_KEY_EC_P256);
}

static void pki_teardown(void)
{
	kg_test_rmdir(pki_dir);
}

/* --- an OpenSSL client and server over a socketpair -------------------------- */

struct pair {
	SSL_CTX *sctx, *cctx;
	SSL *srv, *cli;
	int sfd, cfd;
	struct kg_tls_key_tracker trk;
};

/* The daemon's verification lives in verify.c; here any client certificate is fine,
 * but one must be sent (the handshake shape is the daemon's). */
static int accept_any(int ok, X509_STORE_CTX *x)
{
	(void)ok;
	(void)x;
	return 1;
}

static SSL_CTX *server_ctx(bool keylog, int tickets)
{
	char cert[PATH_MAX], key[PATH_MAX];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	ck_assert(ctx != NULL);
	pki_path(cert, sizeof(cert), "server", "chain.pem");
	pki_path(key, sizeof(key), "server", "key.pem");
	/* As daemon/tls/tls.c: 1.2-1.3, no renegotiation, no tickets, released buffers,
	 * read_ahead left off. */
	ck_assert(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1);
	ck_assert(SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET |
				 SSL_OP_SINGLE_ECDH_USE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	ck_assert(SSL_CTX_set_num_tickets(ctx, 0) == 1);
	/* The Debian default list leaves out CBC suites we need for a refusal test. */
	ck_assert(SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES") == 1);
	ck_assert(SSL_CTX_use_certificate_chain_file(ctx, cert) == 1);
	ck_assert(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1);
	/* A second, RSA, certificate: OpenSSL picks by the client's suite. */
	pki_path(cert, sizeof(cert), "server-rsa", "chain.pem");
	pki_path(key, sizeof(key), "server-rsa", "key.pem");
	ck_assert(SSL_CTX_use_certificate_chain_file(ctx, cert) == 1);
	ck_assert(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
	if (keylog)
		ck_assert_int_eq(kg_tls_keys_ctx_setup(ctx), KG_OK);
	if (tickets > 0) {
		/* What issue 4 will turn on: the record counts must not shift. */
		SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
		ck_assert(SSL_CTX_set_num_tickets(ctx, (size_t)tickets) == 1);
	}
	return ctx;
}

static SSL_CTX *client_ctx(uint16_t version, const char *suite)
{
	char cert[PATH_MAX], key[PATH_MAX];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	ck_assert(ctx != NULL);
	pki_path(cert, sizeof(cert), "device", "cert.pem");
	pki_path(key, sizeof(key), "device", "key.pem");
	ck_assert(SSL_CTX_set_min_proto_version(ctx, version) == 1);
	ck_assert(SSL_CTX_set_max_proto_version(ctx, version) == 1);
	if (version == KG_TLS13)
		ck_assert_msg(SSL_CTX_set_ciphersuites(ctx, suite) == 1, "%s", suite);
	else
		ck_assert_msg(SSL_CTX_set_cipher_list(ctx, suite) == 1, "%s", suite);
	ck_assert(SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) == 1);
	ck_assert(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

static bool want_io(SSL *ssl, int ret)
{
	int e = SSL_get_error(ssl, ret);

	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Handshake both ends in one thread on non-blocking fds; the tracker is attached
 * before and started exactly when SSL_accept first returns 1, as conn.c will. */
static void pair_open_opts(struct pair *p, uint16_t version, const char *suite, bool keylog,
			   int tickets)
{
	int sv[2];
	bool cdone = false, sdone = false;

	memset(p, 0, sizeof(*p));
	ck_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	p->sfd = sv[0];
	p->cfd = sv[1];
	p->sctx = server_ctx(keylog, tickets);
	p->cctx = client_ctx(version, suite);
	p->srv = SSL_new(p->sctx);
	p->cli = SSL_new(p->cctx);
	ck_assert(p->srv != NULL && p->cli != NULL);
	ck_assert(SSL_set_fd(p->srv, p->sfd) == 1 && SSL_set_fd(p->cli, p->cfd) == 1);
	ck_assert_int_eq(kg_tls_keys_track(p->srv, &p->trk), KG_OK);
	SSL_set_accept_state(p->srv);
	SSL_set_connect_state(p->cli);
	for (int i = 0; i < 1000 && !(cdone && sdone); i++) {
		int r;

		if (!cdone) {
			r = SSL_do_handshake(p->cli);
			cdone = r == 1;
			ck_assert_msg(cdone || want_io(p->cli, r), "client handshake failed");
		}
		if (!sdone) {
			r = SSL_do_handshake(p->srv);
			sdone = r == 1;
			ck_assert_msg(sdone || want_io(p->srv, r), "server handshake failed");
			if (sdone)
				kg_tls_keys_handshake_done(p->srv, &p->trk);
		}
	}
	ck_assert(cdone && sdone);
	ck_assert_int_eq(SSL_version(p->srv), version);
}

static void pair_open(struct pair *p, uint16_t version, const char *suite, bool keylog)
{
	pair_open_opts(p, version, suite, keylog, 0);
}

static void pair_close(struct pair *p)
{
	SSL_free(p->srv);
	SSL_free(p->cli);
	SSL_CTX_free(p->sctx);
	SSL_CTX_free(p->cctx);
	close(p->sfd);
	close(p->cfd);
	kg_tls_key_tracker_wipe(&p->trk);
}

static void wait_fd(int fd, short ev)
{
	struct pollfd pfd = { .fd = fd, .events = ev };

	ck_assert_msg(poll(&pfd, 1, 2000) == 1, "fd %d not ready", fd);
}

static void write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EAGAIN) {
			wait_fd(fd, POLLOUT);
			continue;
		}
		ck_assert_msg(n > 0, "write: %s", strerror(errno));
		buf += n;
		len -= (size_t)n;
	}
}

/* OpenSSL side: write exactly one record (len <= 2^14) / read exactly len bytes. */
static void ssl_write_all(SSL *ssl, const uint8_t *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		size_t n = 0;
		int r = SSL_write_ex(ssl, buf + done, len - done, &n);

		if (r == 1) {
			done += n;
			continue;
		}
		ck_assert_msg(want_io(ssl, r), "SSL_write failed");
		wait_fd(SSL_get_fd(ssl), SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT);
	}
}

static void ssl_read_exact(SSL *ssl, uint8_t *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		size_t n = 0;
		int r = SSL_read_ex(ssl, buf + done, len - done, &n);

		if (r == 1) {
			done += n;
			continue;
		}
		ck_assert_msg(want_io(ssl, r), "SSL_read failed: %d", SSL_get_error(ssl, r));
		wait_fd(SSL_get_fd(ssl), POLLIN);
	}
}

/* Our side: a stream buffer and one complete record out of it. */
struct rbuf {
	uint8_t data[2 * KG_TLS_MAX_RECORD];
	size_t have;
};

static size_t next_record(int fd, struct rbuf *b)
{
	size_t rl = 0;

	for (;;) {
		enum kg_parse pr = kg_record_next(b->data, b->have, &rl);
		ssize_t n;

		if (pr == KG_PARSE_OK)
			return rl;
		ck_assert_int_eq(pr, KG_PARSE_SHORT);
		n = read(fd, b->data + b->have, sizeof(b->data) - b->have);
		if (n < 0 && errno == EAGAIN) {
			wait_fd(fd, POLLIN);
			continue;
		}
		ck_assert_msg(n > 0, "read: %s", n == 0 ? "EOF" : strerror(errno));
		b->have += (size_t)n;
	}
}

static void consume(struct rbuf *b, size_t n)
{
	memmove(b->data, b->data + n, b->have - n);
	b->have -= n;
}

/* Deterministic sizes and bytes, so a failure replays. */
static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void fill(uint8_t *buf, size_t len, uint32_t *s)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)rnd(s);
}

/* Before the handoff: an MQTT CONNECT and a PUBLISH up (read by OpenSSL on the
 * server, so rx seq > 0), one record down. Returns how many of each. */
static void pre_handoff_traffic(struct pair *p, int *up, int *down)
{
	struct kg_mqtt_connect_opts o = { KG_MQTT_V311, "dev-0001", NULL, NULL, 60, true };
	uint8_t pkt[256], got[256];
	size_t n;

	n = kg_mqtt_encode_connect(&o, pkt, sizeof(pkt));
	ck_assert(n > 0);
	ssl_write_all(p->cli, pkt, n);
	ssl_read_exact(p->srv, got, n);
	ck_assert(memcmp(pkt, got, n) == 0);
	n = kg_mqtt_encode_publish(KG_MQTT_V311, "t/1", 0, 0, (const uint8_t *)"22.5", 4, pkt,
				   sizeof(pkt));
	ck_assert(n > 0);
	ssl_write_all(p->cli, pkt, n);
	ssl_read_exact(p->srv, got, n);
	ck_assert(memcmp(pkt, got, n) == 0);
	ssl_write_all(p->srv, (const uint8_t *)"\x20\x02\x00\x00", 4); /* CONNACK */
	ssl_read_exact(p->cli, got, 4);
	ck_assert(memcmp(got, "\x20\x02\x00\x00", 4) == 0);
	*up = 2;
	*down = 1;
}

/* Export, check the sequence numbers against the records seen, and drop the SSL. */
static void handoff_opts(struct pair *p, const struct combo *c, int up, int down,
			 int tickets, struct kg_tls_keys *k)
{
	/* TLS 1.2: each direction's Finished was record 0 under the traffic keys. */
	uint64_t base = c->version == KG_TLS12 ? 1 : 0;

	ck_assert_int_eq(kg_tls_keys_export(p->srv, &p->trk, k), KG_OK);
	ck_assert_int_eq(k->version, c->version);
	ck_assert_int_eq(k->aead, c->aead);
	ck_assert_uint_eq(k->rx.seq, base + (uint64_t)up);
	/* TLS 1.3 tickets follow the server Finished, under the application key;
	 * TLS 1.2 sends its ticket before ChangeCipherSpec. */
	ck_assert_uint_eq(k->tx.seq, base + (uint64_t)down +
					     (c->version == KG_TLS13 ? (uint64_t)tickets : 0));
	ck_assert_uint_eq(k->rx.key_len, kg_tls_aead_key_len(c->aead));
	ck_assert_uint_eq(k->tx.iv_len, kg_tls_aead_iv_len(c->version, c->aead));
	ck_assert(memcmp(k->rx.key, k->tx.key, k->rx.key_len) != 0);
	SSL_free(p->srv);  /* SSL_set_fd's BIO does not close the fd */
	p->srv = NULL;
}

static void handoff(struct pair *p, const struct combo *c, int up, int down,
		    struct kg_tls_keys *k)
{
	handoff_opts(p, c, up, down, 0, k);
}

/* The record with a sequence number one off either way must not authenticate. */
static void check_seq_exact(const struct kg_tls_keys *k, const uint8_t *rec, size_t len)
{
	static uint8_t copy[KG_TLS_MAX_RECORD];
	struct kg_tls_keys off = *k;
	struct kg_record_dir d;
	uint8_t type, *plain;
	size_t plain_len;

	for (int delta = -1; delta <= 1; delta += 2) {
		if (delta < 0 && k->rx.seq == 0)
			continue;
		off.rx.seq = k->rx.seq + (uint64_t)(int64_t)delta;
		ck_assert_int_eq(kg_record_dir_init(&d, &off, true), KG_OK);
		memcpy(copy, rec, len);
		ck_assert_int_eq(kg_record_open(&d, copy, len, &type, &plain, &plain_len),
				 KG_E_PROTO);
		ck_assert_uint_eq(d.seq, off.rx.seq);
		ck_assert(plain == NULL && plain_len == 0);
		kg_record_dir_fini(&d);
	}
	kg_tls_keys_wipe(&off);
}

/* A flipped byte anywhere (header, nonce, ciphertext, tag) fails; seq stays. */
static void check_tamper(struct kg_record_dir *rx, const uint8_t *rec, size_t len)
{
	static uint8_t copy[KG_TLS_MAX_RECORD];
	const size_t where[] = { 0, 2, 4, 5, 6, len / 2, len - 17, len - 16, len - 1 };
	uint64_t seq = rx->seq;
	uint8_t type, *plain;
	size_t plain_len;

	for (size_t i = 0; i < KG_NITEMS(where); i++) {
		memcpy(copy, rec, len);
		copy[where[i]] ^= 0x01;
		ck_assert_msg(kg_record_open(rx, copy, len, &type, &plain, &plain_len) == KG_E_PROTO,
			      "flip at %zu of %zu accepted", where[i], len);
		ck_assert_uint_eq(rx->seq, seq);
	}
	/* A truncated record is SHORT to the framer, and refused if forced on open. */
	{
		size_t rl;

		ck_assert_int_eq(kg_record_next(rec, len - 1, &rl), KG_PARSE_SHORT);
		ck_assert_int_eq(kg_record_next(rec, 3, &rl), KG_PARSE_SHORT);
		ck_assert_int_eq(kg_record_next(rec, 0, &rl), KG_PARSE_SHORT);
		memcpy(copy, rec, len);
		ck_assert_int_eq(kg_record_open(rx, copy, len - 1, &type, &plain, &plain_len),
				 KG_E_PROTO);
		ck_assert_uint_eq(rx->seq, seq);
	}
}

START_TEST(test_selftalk)
{
	const struct combo *c = &combos[_i];
	static struct rbuf rb;
	static uint8_t msg[KG_TLS_MAX_PLAINTEXT], got[KG_TLS_MAX_PLAINTEXT];
	static uint8_t rec[KG_TLS_MAX_RECORD];
	struct kg_record_dir rx, tx;
	struct kg_tls_keys k;
	struct pair p;
	uint32_t seed = 0x9e3779b9u ^ (uint32_t)_i;
	uint8_t type, *plain;
	size_t plain_len, rl, n;
	int up, down;

	pair_open(&p, c->version, c->suite, true);
	pre_handoff_traffic(&p, &up, &down);
	handoff(&p, c, up, down, &k);
	ck_assert_int_eq(kg_record_dir_init(&rx, &k, true), KG_OK);
	ck_assert_int_eq(kg_record_dir_init(&tx, &k, false), KG_OK);
	kg_tls_keys_wipe(&k);
	rb.have = 0;

	/* The first record after the handoff: exact seq only, tamper-proof, then good. */
	n = 100;
	fill(msg, n, &seed);
	ssl_write_all(p.cli, msg, n);
	rl = next_record(p.sfd, &rb);
	check_tamper(&rx, rb.data, rl);
	ck_assert_int_eq(kg_record_open(&rx, rb.data, rl, &type, &plain, &plain_len), KG_OK);
	ck_assert_int_eq(type, KG_TLS_CT_APPLICATION_DATA);
	ck_assert_uint_eq(plain_len, n);
	ck_assert(memcmp(plain, msg, n) == 0);
	consume(&rb, rl);

	/* Random sizes both ways, with the extremes pinned. */
	for (int i = 0; i < 24; i++) {
		n = i == 0 ? 1 : i == 1 ? KG_TLS_MAX_PLAINTEXT : 1 + rnd(&seed) % KG_TLS_MAX_PLAINTEXT;
		fill(msg, n, &seed);
		if (c->version == KG_TLS13)
			/* OpenSSL pads when asked: the open must strip it. */
			ck_assert(SSL_set_block_padding(p.cli, (i % 3) ? 0 : 512) == 1);
		ssl_write_all(p.cli, msg, n);
		rl = next_record(p.sfd, &rb);
		ck_assert_int_eq(kg_record_open(&rx, rb.data, rl, &type, &plain, &plain_len),
				 KG_OK);
		ck_assert_int_eq(type, KG_TLS_CT_APPLICATION_DATA);
		ck_assert_uint_eq(plain_len, n);
		ck_assert(memcmp(plain, msg, n) == 0);
		consume(&rb, rl);

		n = i == 0 ? KG_TLS_MAX_PLAINTEXT : i == 1 ? 1 : 1 + rnd(&seed) % KG_TLS_MAX_PLAINTEXT;
		fill(msg, n, &seed);
		ck_assert_int_eq(kg_record_seal(&tx, KG_TLS_CT_APPLICATION_DATA, msg, n, rec,
						sizeof(rec), &rl), KG_OK);
		ck_assert_uint_eq(rl, n + kg_record_seal_overhead(c->version, c->aead));
		write_all(p.sfd, rec, rl);
		ssl_read_exact(p.cli, got, n);
		ck_assert(memcmp(got, msg, n) == 0);
	}
	ck_assert(SSL_set_block_padding(p.cli, 0) == 1);

	/* Our close_notify: OpenSSL sees a clean close. */
	ck_assert_int_eq(kg_record_seal_close_notify(&tx, rec, sizeof(rec), &rl), KG_OK);
	write_all(p.sfd, rec, rl);
	{
		size_t r = 0;

		wait_fd(p.cfd, POLLIN);
		ck_assert_int_eq(SSL_read_ex(p.cli, got, sizeof(got), &r), 0);
		ck_assert_int_eq(SSL_get_error(p.cli, 0), SSL_ERROR_ZERO_RETURN);
	}
	/* Theirs: an alert record carrying warning / close_notify. */
	ck_assert_int_eq(SSL_shutdown(p.cli), 1);
	rl = next_record(p.sfd, &rb);
	ck_assert_int_eq(kg_record_open(&rx, rb.data, rl, &type, &plain, &plain_len), KG_OK);
	ck_assert_int_eq(type, KG_TLS_CT_ALERT);
	ck_assert_uint_eq(plain_len, 2);
	ck_assert(plain[0] == 1 && plain[1] == 0);
	consume(&rb, rl);
	ck_assert_uint_eq(rb.have, 0);

	kg_record_dir_fini(&rx);
	kg_record_dir_fini(&tx);
	ck_assert(rx.ctx == NULL && tx.ctx == NULL);
	pair_close(&p);
}
END_TEST

/* The exported sequence numbers are exact: one off either way fails, for a
 * handoff right after the handshake and after traffic. */
START_TEST(test_seq_exact)
{
	const struct combo *c = &combos[_i / 2];
	bool traffic = _i % 2;
	static struct rbuf rb;
	struct kg_record_dir rx;
	struct kg_tls_keys k;
	struct pair p;
	uint8_t type, *plain;
	size_t plain_len, rl;
	int up = 0, down = 0;

	pair_open(&p, c->version, c->suite, true);
	if (traffic)
		pre_handoff_traffic(&p, &up, &down);
	handoff(&p, c, up, down, &k);
	ssl_write_all(p.cli, (const uint8_t *)"\xc0\x00", 2); /* PINGREQ */
	rb.have = 0;
	rl = next_record(p.sfd, &rb);
	check_seq_exact(&k, rb.data, rl);
	ck_assert_int_eq(kg_record_dir_init(&rx, &k, true), KG_OK);
	ck_assert_int_eq(kg_record_open(&rx, rb.data, rl, &type, &plain, &plain_len), KG_OK);
	ck_assert(type == KG_TLS_CT_APPLICATION_DATA && plain_len == 2 && plain[0] == 0xc0);
	ck_assert_uint_eq(rx.seq, k.rx.seq + 1);
	kg_record_dir_fini(&rx);
	kg_tls_keys_wipe(&k);
	pair_close(&p);
}
END_TEST

/* Session tickets on (num_tickets 2): the handoff still lands on the right
 * sequence numbers, and traffic flows both ways afterwards. */
START_TEST(test_tickets)
{
	const struct combo *c = &combos[_i];
	static struct rbuf rb;
	static uint8_t rec[KG_TLS_MAX_RECORD];
	struct kg_record_dir rx, tx;
	struct kg_tls_keys k;
	struct pair p;
	uint8_t type, *plain, got[16];
	size_t plain_len, rl;
	int up, down;

	pair_open_opts(&p, c->version, c->suite, true, 2);
	pre_handoff_traffic(&p, &up, &down);  /* the client's SSL_read eats the tickets */
	handoff_opts(&p, c, up, down, 2, &k);
	ck_assert_int_eq(kg_record_dir_init(&rx, &k, true), KG_OK);
	ck_assert_int_eq(kg_record_dir_init(&tx, &k, false), KG_OK);
	kg_tls_keys_wipe(&k);
	ssl_write_all(p.cli, (const uint8_t *)"\xc0\x00", 2);
	rb.have = 0;
	rl = next_record(p.sfd, &rb);
	ck_assert_int_eq(kg_record_open(&rx, rb.data, rl, &type, &plain, &plain_len), KG_OK);
	ck_assert(type == 23 && plain_len == 2 && plain[0] == 0xc0);
	ck_assert_int_eq(kg_record_seal(&tx, 23, (const uint8_t *)"\xd0\x00", 2, rec, sizeof(rec),
					&rl), KG_OK);
	write_all(p.sfd, rec, rl);
	ssl_read_exact(p.cli, got, 2);
	ck_assert(got[0] == 0xd0 && got[1] == 0);
	kg_record_dir_fini(&rx);
	kg_record_dir_fini(&tx);
	pair_close(&p);
}
END_TEST

/* A KeyUpdate OpenSSL already processed moved the keys past the traffic secrets
 * we hold: export must refuse rather than hand out stale keys. */
START_TEST(test_export_after_key_update)
{
	uint8_t got[4];
	struct kg_tls_keys k;
	struct pair p;

	pair_open(&p, KG_TLS13, "TLS_AES_128_GCM_SHA256", true);
	ck_assert(SSL_key_update(p.cli, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
	ssl_write_all(p.cli, (const uint8_t *)"\xc0\x00", 2);
	ssl_read_exact(p.srv, got, 2);
	ck_assert_int_eq(kg_tls_keys_export(p.srv, &p.trk, &k), KG_E_INVALID);
	pair_close(&p);
}
END_TEST

/* Export refuses while OpenSSL holds unread plaintext, and works once drained. */
START_TEST(test_export_pending)
{
	const struct combo *c = &combos[_i];
	uint8_t msg[100], got[100];
	struct kg_tls_keys k;
	struct pair p;
	size_t n = 0;
	uint32_t seed = 7;

	pair_open(&p, c->version, c->suite, true);
	fill(msg, sizeof(msg), &seed);
	ssl_write_all(p.cli, msg, sizeof(msg));
	wait_fd(p.sfd, POLLIN);
	ck_assert_int_eq(SSL_read_ex(p.srv, got, 10, &n), 1);
	ck_assert_uint_eq(n, 10);
	ck_assert_int_gt(SSL_pending(p.srv), 0);
	ck_assert_int_eq(kg_tls_keys_export(p.srv, &p.trk, &k), KG_E_AGAIN);
	ck_assert_uint_eq(k.rx.key_len, 0);  /* zeroed on error */
	ssl_read_exact(p.srv, got + 10, sizeof(msg) - 10);
	ck_assert(memcmp(got, msg, sizeof(msg)) == 0);
	ck_assert_int_eq(kg_tls_keys_export(p.srv, &p.trk, &k), KG_OK);
	ck_assert_uint_eq(k.rx.seq, (c->version == KG_TLS12 ? 1u : 0u) + 1u);
	kg_tls_keys_wipe(&k);
	pair_close(&p);
}
END_TEST

/* A record OpenSSL has half read (header partly, or header and part of the body)
 * is also "pending": the bytes are gone from the socket. Verified that OpenSSL
 * 3.0's SSL_has_pending() reports both. */
START_TEST(test_export_partial_record)
{
	const struct combo *c = &combos[_i / 2];
	size_t split = _i % 2 ? 10 : 3;
	uint8_t raw[256], got[64];
	struct kg_tls_keys k;
	struct pair p;
	ssize_t n;

	pair_open(&p, c->version, c->suite, true);
	ssl_write_all(p.cli, (const uint8_t *)"partial record", 14);
	wait_fd(p.sfd, POLLIN);
	/* Take the record off the wire and feed the server part of it. */
	n = read(p.sfd, raw, sizeof(raw));
	ck_assert(n > 20);
	write_all(p.cfd, raw, split);
	wait_fd(p.sfd, POLLIN);
	{
		size_t r = 0;
		int ret = SSL_read_ex(p.srv, got, sizeof(got), &r);

		ck_assert_int_eq(ret, 0);
		ck_assert_int_eq(SSL_get_error(p.srv, ret), SSL_ERROR_WANT_READ);
	}
	ck_assert_int_eq(kg_tls_keys_export(p.srv, &p.trk, &k), KG_E_AGAIN);
	write_all(p.cfd, raw + split, (size_t)n - split);
	ssl_read_exact(p.srv, got, 14);
	ck_assert(memcmp(got, "partial record", 14) == 0);
	ck_assert_int_eq(kg_tls_keys_export(p.srv, &p.trk, &k), KG_OK);
	ck_assert_uint_eq(k.rx.seq, (c->version == KG_TLS12 ? 1u : 0u) + 1u);
	kg_tls_keys_wipe(&k);
	pair_close(&p);
}
END_TEST

/* The other refusals: unsupported cipher, handshake_done not called, no keylog. */
START_TEST(test_export_refusals)
{
	struct kg_tls_keys k;
	struct pair p;

	pair_open(&p, KG_TLS12, "ECDHE-ECDSA-AES128-SHA256", true);
	ck_assert_int_eq(kg_tls_keys_export(p.srv, &p.trk, &k), KG_E_INVALID);
	pair_close(&p);

	pair_open(&p, KG_TLS13, "TLS_AES_128_GCM_SHA256", false);
	ck_assert_int_eq(kg_tls_keys_export(p.srv, &p.trk, &k), KG_E_NOTFOUND);
	ck_assert_uint_eq(p.trk.client_secret_len, 0);
	pair_close(&p);

	pair_open(&p, KG_TLS13, "TLS_AES_256_GCM_SHA384", true);
	ck_assert_uint_eq(p.trk.client_secret_len, 48);
	ck_assert_uint_eq(p.trk.server_secret_len, 48);
	p.trk.done = false;
	ck_assert_int_eq(kg_tls_keys_export(p.srv, &p.trk, &k), KG_E_INVALID);
	kg_tls_keys_untrack(p.srv);
	pair_close(&p);
}
END_TEST

/* KeyUpdate (1.3) and renegotiation (1.2) are not followed: they surface as
 * handshake records for the caller, who ends the session. */
START_TEST(test_handshake_after_handoff)
{
	const struct combo *c = &combos[_i == 0 ? 0 : 3];
	static struct rbuf rb;
	struct kg_record_dir rx;
	struct kg_tls_keys k;
	struct pair p;
	uint8_t type, *plain;
	size_t plain_len, rl;
	int r;

	pair_open(&p, c->version, c->suite, true);
	handoff(&p, c, 0, 0, &k);
	ck_assert_int_eq(kg_record_dir_init(&rx, &k, true), KG_OK);
	kg_tls_keys_wipe(&k);
	if (c->version == KG_TLS13)
		ck_assert(SSL_key_update(p.cli, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
	else
		ck_assert(SSL_renegotiate(p.cli) == 1);
	r = SSL_do_handshake(p.cli);
	ck_assert(r == 1 || want_io(p.cli, r));
	rb.have = 0;
	rl = next_record(p.sfd, &rb);
	ck_assert_int_eq(kg_record_open(&rx, rb.data, rl, &type, &plain, &plain_len), KG_OK);
	ck_assert_int_eq(type, KG_TLS_CT_HANDSHAKE);
	ck_assert_uint_gt(plain_len, 4);
	/* KeyUpdate is handshake type 24; a renegotiating client sends ClientHello (1). */
	ck_assert_int_eq(plain[0], c->version == KG_TLS13 ? 24 : 1);
	kg_record_dir_fini(&rx);
	pair_close(&p);
}
END_TEST

/* Framing limits, as data. */
START_TEST(test_record_next)
{
	static const struct {
		uint8_t hdr[5];
		size_t len;
		enum kg_parse want;
		size_t rec_len;
	} cases[] = {
		{ { 0x17, 0x03, 0x03, 0x00, 0x10 }, 5, KG_PARSE_SHORT, 0 },
		{ { 0x17, 0x03, 0x03, 0x00, 0x0f }, 5, KG_PARSE_MALFORMED, 0 },   /* under a tag */
		{ { 0x17, 0x03, 0x03, 0x41, 0x00 }, 5, KG_PARSE_SHORT, 0 },       /* 2^14 + 256 */
		{ { 0x17, 0x03, 0x03, 0x41, 0x01 }, 5, KG_PARSE_MALFORMED, 0 },   /* one over */
		{ { 0x17, 0x03, 0x03, 0xff, 0xff }, 5, KG_PARSE_MALFORMED, 0 },
		{ { 0x14, 0x03, 0x03, 0x00, 0x10 }, 5, KG_PARSE_SHORT, 0 },
		{ { 0x15, 0x03, 0x03, 0x00, 0x10 }, 5, KG_PARSE_SHORT, 0 },
		{ { 0x16, 0x03, 0x03, 0x00, 0x10 }, 5, KG_PARSE_SHORT, 0 },
		{ { 0x13, 0x03, 0x03, 0x00, 0x10 }, 5, KG_PARSE_MALFORMED, 0 },
		{ { 0x18, 0x03, 0x03, 0x00, 0x10 }, 5, KG_PARSE_MALFORMED, 0 },   /* heartbeat */
		{ { 0x17, 0x03, 0x01, 0x00, 0x10 }, 5, KG_PARSE_MALFORMED, 0 },
		{ { 0x17, 0x02, 0x03, 0x00, 0x10 }, 5, KG_PARSE_MALFORMED, 0 },
		{ { 0x00 }, 1, KG_PARSE_MALFORMED, 0 },                          /* early refusal */
		{ { 0x17, 0x03, 0x04 }, 3, KG_PARSE_MALFORMED, 0 },
		{ { 0x17, 0x03 }, 2, KG_PARSE_SHORT, 0 },
		{ { 0 }, 0, KG_PARSE_SHORT, 0 },
	};
	static uint8_t buf[KG_TLS_MAX_RECORD + 10];

	for (size_t i = 0; i < KG_NITEMS(cases); i++) {
		size_t rl = 99;

		ck_assert_msg(kg_record_next(cases[i].hdr, cases[i].len, &rl) == cases[i].want,
			      "case %zu", i);
		ck_assert_uint_eq(rl, cases[i].rec_len);
	}
	/* Complete records at both length limits, with trailing bytes after them. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, "\x17\x03\x03\x41\x00", 5);
	{
		size_t rl = 0;

		ck_assert_int_eq(kg_record_next(buf, sizeof(buf), &rl), KG_PARSE_OK);
		ck_assert_uint_eq(rl, KG_TLS_MAX_RECORD);
		ck_assert_int_eq(kg_record_next(buf, KG_TLS_MAX_RECORD - 1, &rl), KG_PARSE_SHORT);
		memcpy(buf, "\x15\x03\x03\x00\x10", 5);
		ck_assert_int_eq(kg_record_next(buf, 21, &rl), KG_PARSE_OK);
		ck_assert_uint_eq(rl, 21);
	}
}
END_TEST

/* Pure record layer: seal/open against itself, every combo; the refusals of seal
 * and open; 1.3 all-zero inner plaintext; sequence exhaustion. */
START_TEST(test_loopback)
{
	const struct combo *c = &combos[_i];
	struct kg_tls_keys k = { .version = c->version, .aead = c->aead };
	struct kg_record_dir tx, rx;
	static uint8_t rec[KG_TLS_MAX_RECORD], msg[KG_TLS_MAX_PLAINTEXT + 1];
	uint8_t type, *plain;
	size_t rl, plain_len, over = kg_record_seal_overhead(c->version, c->aead);
	uint32_t seed = 1234;

	/* The same keys both ways: what we seal we can open. */
	k.rx.key_len = k.tx.key_len = (uint8_t)kg_tls_aead_key_len(c->aead);
	k.rx.iv_len = k.tx.iv_len = (uint8_t)kg_tls_aead_iv_len(c->version, c->aead);
	fill(k.rx.key, sizeof(k.rx.key), &seed);
	fill(k.rx.iv, sizeof(k.rx.iv), &seed);
	k.tx = k.rx;
	k.rx.seq = k.tx.seq = 41;
	ck_assert_int_eq(kg_record_dir_init(&tx, &k, false), KG_OK);
	ck_assert_int_eq(kg_record_dir_init(&rx, &k, true), KG_OK);
	ck_assert_uint_eq(over, c->version == KG_TLS13 ? 22 :
				c->aead == KG_AEAD_CHACHA20_POLY1305 ? 21 : 29);

	/* Empty data, an alert, a handshake record, the maximum. */
	ck_assert_int_eq(kg_record_seal(&tx, KG_TLS_CT_APPLICATION_DATA, NULL, 0, rec,
					sizeof(rec), &rl), KG_OK);
	ck_assert_uint_eq(rl, over);
	ck_assert_int_eq(kg_record_open(&rx, rec, rl, &type, &plain, &plain_len), KG_OK);
	ck_assert(type == KG_TLS_CT_APPLICATION_DATA && plain_len == 0);
	ck_assert_int_eq(kg_record_seal_alert(&tx, KG_TLS_ALERT_FATAL,
					      KG_TLS_ALERT_INTERNAL_ERROR, rec, sizeof(rec), &rl),
			 KG_OK);
	ck_assert_int_eq(rec[0], c->version == KG_TLS13 ? 23 : 21);
	ck_assert_int_eq(kg_record_open(&rx, rec, rl, &type, &plain, &plain_len), KG_OK);
	ck_assert(type == KG_TLS_CT_ALERT && plain_len == 2 && plain[0] == 2 && plain[1] == 80);
	fill(msg, KG_TLS_MAX_PLAINTEXT, &seed);
	ck_assert_int_eq(kg_record_seal(&tx, KG_TLS_CT_HANDSHAKE, msg, KG_TLS_MAX_PLAINTEXT, rec,
					sizeof(rec), &rl), KG_OK);
	ck_assert_int_eq(kg_record_open(&rx, rec, rl, &type, &plain, &plain_len), KG_OK);
	ck_assert(type == KG_TLS_CT_HANDSHAKE && plain_len == KG_TLS_MAX_PLAINTEXT);
	ck_assert(memcmp(plain, msg, plain_len) == 0);
	ck_assert_uint_eq(tx.seq, 44);
	ck_assert_uint_eq(rx.seq, 44);

	/* Seal refusals: too long, bad type, no room, exhausted seq; seq unchanged. */
	ck_assert_int_eq(kg_record_seal(&tx, 23, msg, KG_TLS_MAX_PLAINTEXT + 1, rec, sizeof(rec),
					&rl), KG_E_INVALID);
	ck_assert_int_eq(kg_record_seal(&tx, 20, msg, 1, rec, sizeof(rec), &rl), KG_E_INVALID);
	ck_assert_int_eq(kg_record_seal(&tx, 0, msg, 1, rec, sizeof(rec), &rl), KG_E_INVALID);
	ck_assert_int_eq(kg_record_seal(&tx, 23, msg, 10, rec, 10 + over - 1, &rl), KG_E_INVALID);
	ck_assert_int_eq(kg_record_seal(&tx, 23, msg, 10, rec, 10 + over, &rl), KG_OK);
	ck_assert_int_eq(kg_record_open(&rx, rec, rl, &type, &plain, &plain_len), KG_OK);
	tx.seq = UINT64_MAX;
	ck_assert_int_eq(kg_record_seal(&tx, 23, msg, 1, rec, sizeof(rec), &rl), KG_E_INVALID);
	ck_assert_uint_eq(tx.seq, UINT64_MAX);
	tx.seq = rx.seq;

	if (c->version == KG_TLS13) {
		/* Data ending in zero bytes: the zeros before the type byte are data, not
		 * padding, and must survive the padding strip. */
		const uint8_t zeros[4] = { 0, 0, 0, 0 };

		ck_assert_int_eq(kg_record_seal(&tx, 23, zeros, sizeof(zeros), rec, sizeof(rec),
						&rl), KG_OK);
		ck_assert_int_eq(kg_record_open(&rx, rec, rl, &type, &plain, &plain_len), KG_OK);
		ck_assert(type == 23 && plain_len == 4 && memcmp(plain, zeros, 4) == 0);
	}
	kg_record_dir_fini(&tx);
	kg_record_dir_fini(&rx);
	kg_record_dir_fini(&rx);  /* idempotent */
	kg_tls_keys_wipe(&k);
}
END_TEST

/* TLS 1.3 inner plaintexts the sealer never makes, built with EVP directly from the
 * RFC 8446 5.2 recipe: all zeros (no type) and a CCS inside must be refused, and
 * padding after the type must be stripped. */
START_TEST(test_tls13_inner)
{
	static const struct {
		uint8_t inner[8];
		size_t len;
		int want;
		uint8_t type;
		size_t plain_len;
	} cases[] = {
		{ { 0, 0, 0, 0 }, 4, KG_E_PROTO, 0, 0 },          /* all padding */
		{ { 0 }, 1, KG_E_PROTO, 0, 0 },
		{ { 'a', 20 }, 2, KG_E_PROTO, 0, 0 },             /* CCS inside */
		{ { 'a', 24 }, 2, KG_E_PROTO, 0, 0 },             /* unknown type */
		{ { 'a', 'b', 23, 0, 0, 0 }, 6, KG_OK, 23, 2 },   /* padded data */
		{ { 1, 0, 21, 0 }, 4, KG_OK, 21, 2 },             /* padded alert */
		{ { 23 }, 1, KG_OK, 23, 0 },                      /* empty data */
	};
	const uint8_t key[16] = "0123456789abcdef", iv[12] = "ivivivivivi";
	struct kg_tls_keys k = { .version = KG_TLS13, .aead = KG_AEAD_AES_128_GCM };
	struct kg_record_dir rx;

	memcpy(k.rx.key, key, 16);
	memcpy(k.rx.iv, iv, 12);
	k.rx.key_len = 16;
	k.rx.iv_len = 12;
	for (size_t i = 0; i < KG_NITEMS(cases); i++) {
		uint8_t rec[64], nonce[12], *plain;
		size_t body = cases[i].len + 16, plain_len;
		uint8_t type;
		int outl;
		EVP_CIPHER_CTX *e = EVP_CIPHER_CTX_new();

		k.rx.seq = i;
		ck_assert_int_eq(kg_record_dir_init(&rx, &k, true), KG_OK);
		memcpy(rec, "\x17\x03\x03", 3);
		rec[3] = 0;
		rec[4] = (uint8_t)body;
		memcpy(nonce, iv, 12);
		nonce[11] ^= (uint8_t)i;
		ck_assert(EVP_EncryptInit_ex(e, EVP_aes_128_gcm(), NULL, key, nonce) == 1);
		ck_assert(EVP_EncryptUpdate(e, NULL, &outl, rec, 5) == 1);
		ck_assert(EVP_EncryptUpdate(e, rec + 5, &outl, cases[i].inner, (int)cases[i].len) == 1);
		ck_assert(EVP_EncryptFinal_ex(e, rec + 5 + cases[i].len, &outl) == 1);
		ck_assert(EVP_CIPHER_CTX_ctrl(e, EVP_CTRL_AEAD_GET_TAG, 16, rec + 5 + cases[i].len) == 1);
		EVP_CIPHER_CTX_free(e);
		ck_assert_msg(kg_record_open(&rx, rec, 5 + body, &type, &plain, &plain_len) ==
				      cases[i].want, "case %zu", i);
		if (cases[i].want == KG_OK) {
			ck_assert_int_eq(type, cases[i].type);
			ck_assert_uint_eq(plain_len, cases[i].plain_len);
			ck_assert(memcmp(plain, cases[i].inner, plain_len) == 0);
			ck_assert_uint_eq(rx.seq, i + 1);
		} else {
			ck_assert_uint_eq(rx.seq, i);
		}
		kg_record_dir_fini(&rx);
	}
}
END_TEST

START_TEST(test_init_refusals)
{
	struct kg_tls_keys k = { .version = KG_TLS13, .aead = KG_AEAD_AES_128_GCM };
	struct kg_record_dir d;

	k.rx.key_len = 16;
	k.rx.iv_len = 12;
	ck_assert_int_eq(kg_record_dir_init(&d, &k, true), KG_OK);
	kg_record_dir_fini(&d);
	k.rx.key_len = 32;  /* wrong for AES-128 */
	ck_assert_int_eq(kg_record_dir_init(&d, &k, true), KG_E_INVALID);
	ck_assert(d.ctx == NULL);
	k.rx.key_len = 16;
	k.version = KG_TLS12;  /* 1.2 GCM wants a 4-byte salt */
	ck_assert_int_eq(kg_record_dir_init(&d, &k, true), KG_E_INVALID);
	k.version = 0x0302;
	ck_assert_int_eq(kg_record_dir_init(&d, &k, true), KG_E_INVALID);
	k.version = KG_TLS13;
	k.aead = KG_AEAD_NONE;
	ck_assert_int_eq(kg_record_dir_init(&d, &k, true), KG_E_INVALID);
	ck_assert_uint_eq(kg_record_seal_overhead(KG_TLS13, KG_AEAD_NONE), 0);
	ck_assert_uint_eq(kg_record_seal_overhead(0x0302, KG_AEAD_AES_128_GCM), 0);
}
END_TEST

Suite *kg_suite_record(void)
{
	Suite *s = suite_create("record");
	TCase *tc = tcase_create("selftalk");
	TCase *pure = tcase_create("pure");

	tcase_add_unchecked_fixture(tc, pki_setup, pki_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_selftalk, 0, (int)KG_NITEMS(combos));
	tcase_add_loop_test(tc, test_seq_exact, 0, 2 * (int)KG_NITEMS(combos));
	tcase_add_loop_test(tc, test_tickets, 0, (int)KG_NITEMS(combos));
	tcase_add_loop_test(tc, test_export_pending, 0, (int)KG_NITEMS(combos));
	tcase_add_test(tc, test_export_after_key_update);
	tcase_add_loop_test(tc, test_export_partial_record, 0, 2 * (int)KG_NITEMS(combos));
	tcase_add_test(tc, test_export_refusals);
	tcase_add_loop_test(tc, test_handshake_after_handoff, 0, 2);
	suite_add_tcase(s, tc);

	tcase_add_test(pure, test_record_next);
	tcase_add_loop_test(pure, test_loopback, 0, (int)KG_NITEMS(combos));
	tcase_add_test(pure, test_tls13_inner);
	tcase_add_test(pure, test_init_refusals);
	suite_add_tcase(s, pure);
	return s;
}
