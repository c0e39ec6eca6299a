/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * relay_ktls.c - kernel TLS: the two offloaded data paths.
 *
 *   ktls_splice  the kernel encrypts what we send and decrypts what the device sends;
 *                bytes move device -> pipe -> broker and back with splice(), never
 *                through user space; the SSL and its buffers are freed at the start.
 *   ktls_tx      the kernel encrypts what we send (broker -> device is spliced); the
 *                device's records are read through OpenSSL, which can follow a
 *                KeyUpdate the kernel cannot (6.1 and 6.12 refuse a second TLS_RX).
 *
 * Before the handshake kg_ktls_prepare() attaches the TLS ULP and asks OpenSSL to
 * offload (SSL_OP_ENABLE_KTLS): it installs TX for both versions and RX for TLS 1.2.
 * OpenSSL 3.0 does not install TLS 1.3 RX, so ktls_splice installs it from the
 * client traffic secret at the exact record number OpenSSL reached (tls_keys.c);
 * where OpenSSL does it (>= 3.2), BIO_get_ktls_recv() says so and we do nothing.
 *
 * The switch is exact: what OpenSSL decrypted but we have not read is drained into
 * io->up first; a record OpenSSL has only half read makes the start wait for the
 * rest (KG_E_AGAIN); ciphertext still queued in TCP is decrypted by the kernel.
 * io->up (the CONNECT and what was pipelined behind it) reaches the broker before any
 * spliced byte, and data a control-record read returns joins io->up the same way.
 *
 * Non-data records stop splice() (EINVAL) and are read with recvmsg() and their
 * TLS_GET_RECORD_TYPE: close_notify half-closes in order (FIN to the broker, the
 * other direction finishes, our close_notify, close); a KeyUpdate gets a fatal alert
 * and the session closes; any other alert ends it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "ops/err.h"
#include "ops/log.h"
#include "relay/pipe_pool.h"
#include "relay/relay.h"
#include "tls/session_cache.h"
#include "tls/tls_keys.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

/* TLS record content types and the alerts we send. */
#define CT_ALERT 21
#define CT_HANDSHAKE 22
#define CT_APPDATA 23
#define HS_KEY_UPDATE 24
#define ALERT_WARNING 1
#define ALERT_FATAL 2
#define ALERT_CLOSE_NOTIFY 0
#define ALERT_UNEXPECTED_MESSAGE 10

/* Largest control record we expect (alerts: 2 bytes, KeyUpdate: 5). A data record
 * read here is taken in pieces, which the kernel allows. */
#define CTRL_BUF 512

bool kg_ktls_prepare(struct kg_relay_io *io)
{
	enum kg_relay_choice r = io->cfg->relay;

	if ((r != KG_RELAY_AUTO && r != KG_RELAY_KTLS_TX) || *io->ktls_unavailable)
		return false;
	if (setsockopt(io->dev.fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) == 0) {
		io->ktls_ulp = true;
		return true;
	}
	if (errno == ENOENT) {
		/* No TLS ULP in this kernel: say so once per worker, then stop asking. */
		*io->ktls_unavailable = true;
		kg_log_info("worker %u: kernel TLS unavailable (no \"tls\" ULP: CONFIG_TLS off or "
			    "module missing): sessions use the user-space relay",
			    io->worker_idx);
	} else {
		kg_log_debug("conn=%llu: TCP_ULP tls: %s", (unsigned long long)io->cid, strerror(errno));
	}
	kg_metric_add(&io->metrics->ktls_fallbacks[KG_KTLS_NO_KERNEL], 1);
	return false;
}

void kg_ktls_session_release(struct kg_relay_io *io)
{
	for (size_t d = 0; d < KG_DIR_MAX; d++) {
		if (io->pipe[d] == NULL)
			continue;
		kg_pipe_put(io->pipes, io->pipe[d]);
		kg_metric_gauge(&io->metrics->pipes_in_use, -1);
		io->pipe[d] = NULL;
	}
}

/* A session set up for kernel TLS falls to a lower rung: counted, and kept in io for
 * the connection's audit line (the first cause only: one per session). err: the
 * kernel's errno, 0 when there is none. */
static void fallback(struct kg_relay_io *io, enum kg_ktls_fallback f, int err)
{
	char detail[160];

	kg_metric_add(&io->metrics->ktls_fallbacks[f], 1);
	if (!io->ktls_fell_back) {
		io->ktls_fell_back = true;
		io->ktls_fallback = f;
		io->ktls_fallback_errno = err;
		/* static strings of OpenSSL's tables: still valid once the SSL is freed */
		io->ktls_cipher = io->ssl != NULL ? SSL_get_cipher_name(io->ssl) : NULL;
		io->ktls_version = io->ssl != NULL ? SSL_get_version(io->ssl) : NULL;
	}
	kg_log_debug("conn=%llu dev=%s: kTLS not used: %s", (unsigned long long)io->cid,
		     io->device_id, kg_ktls_fallback_detail(io, detail, sizeof(detail)));
}

const char *kg_ktls_fallback_detail(const struct kg_relay_io *io, char *buf, size_t cap)
{
	const char *what = "";

	switch (io->ktls_fallback) {
	case KG_KTLS_NO_KERNEL:
		what = "the kernel has no TLS ULP";
		break;
	case KG_KTLS_TX_NOT_OFFLOADED:
		/* OpenSSL installs the send key itself and says nothing when setsockopt
		 * fails; with our ciphers that is a kernel without the cipher (module
		 * missing or blocked): docs/ktls.md, "When the kernel lacks a cipher". */
		what = "the kernel did not take the send key";
		break;
	case KG_KTLS_RX_FAILED:
		what = "the kernel did not take the receive key";
		break;
	case KG_KTLS_REKEYED:
		what = "a KeyUpdate before the handoff";
		break;
	case KG_KTLS_FALLBACK_MAX:
		break;
	}
	snprintf(buf, cap, "%s %s: %s%s%s", io->ktls_version != NULL ? io->ktls_version : "?",
		 io->ktls_cipher != NULL ? io->ktls_cipher : "?", what,
		 io->ktls_fallback_errno != 0 ? ": " : "",
		 io->ktls_fallback_errno != 0 ? strerror(io->ktls_fallback_errno) : "");
	return buf;
}

/* ---- key installation --------------------------------------------------------- */

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/*
 * Install one direction's key in the kernel. TLS 1.3 and 1.2 AES-GCM: salt = the
 * first 4 IV bytes, iv = the other 8 (1.3) or the explicit-nonce seed (1.2, where
 * the kernel only uses it to send); ChaCha20-Poly1305: the whole 12-byte IV.
 */
static int ktls_install(int fd, int optname, uint16_t version, enum kg_aead aead,
			const struct kg_tls_dir_keys *k)
{
	union {
		struct tls12_crypto_info_aes_gcm_128 g128;
		struct tls12_crypto_info_aes_gcm_256 g256;
		struct tls12_crypto_info_chacha20_poly1305 cc;
	} ci;
	socklen_t len;
	uint16_t v = version == KG_TLS13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;
	uint8_t seq[8];
	int rc;

	memset(&ci, 0, sizeof(ci));
	put_be64(seq, k->seq);
	switch (aead) {
	case KG_AEAD_AES_128_GCM:
		ci.g128.info.version = v;
		ci.g128.info.cipher_type = TLS_CIPHER_AES_GCM_128;
		memcpy(ci.g128.key, k->key, sizeof(ci.g128.key));
		memcpy(ci.g128.salt, k->iv, sizeof(ci.g128.salt));
		if (version == KG_TLS13)
			memcpy(ci.g128.iv, k->iv + 4, sizeof(ci.g128.iv));
		else
			memcpy(ci.g128.iv, seq, sizeof(ci.g128.iv));
		memcpy(ci.g128.rec_seq, seq, sizeof(seq));
		len = sizeof(ci.g128);
		break;
	case KG_AEAD_AES_256_GCM:
		ci.g256.info.version = v;
		ci.g256.info.cipher_type = TLS_CIPHER_AES_GCM_256;
		memcpy(ci.g256.key, k->key, sizeof(ci.g256.key));
		memcpy(ci.g256.salt, k->iv, sizeof(ci.g256.salt));
		if (version == KG_TLS13)
			memcpy(ci.g256.iv, k->iv + 4, sizeof(ci.g256.iv));
		else
			memcpy(ci.g256.iv, seq, sizeof(ci.g256.iv));
		memcpy(ci.g256.rec_seq, seq, sizeof(seq));
		len = sizeof(ci.g256);
		break;
	case KG_AEAD_CHACHA20_POLY1305:
		ci.cc.info.version = v;
		ci.cc.info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
		memcpy(ci.cc.key, k->key, sizeof(ci.cc.key));
		memcpy(ci.cc.iv, k->iv, sizeof(ci.cc.iv));
		memcpy(ci.cc.rec_seq, seq, sizeof(seq));
		len = sizeof(ci.cc);
		break;
	default:
		errno = EINVAL;
		return -1;
	}
	rc = setsockopt(fd, SOL_TLS, optname, &ci, len);
	OPENSSL_cleanse(&ci, sizeof(ci));
	return rc;
}

/* Move what OpenSSL decrypted but we have not read into io->up. KG_OK, KG_E_AGAIN
 * (half a record still inside OpenSSL: wait for the rest), or an error. */
static int drain_openssl(struct kg_relay_io *io)
{
	for (;;) {
		long n;

		if (SSL_pending(io->ssl) == 0 && !SSL_has_pending(io->ssl))
			return KG_OK;
		if (kg_buf_reserve(&io->up, io->up.len + KG_RELAY_BUF) < 0)
			return KG_E_RESOURCE;
		n = kg_ssl_io_read(io, io->up.data + io->up.len, io->up.cap - io->up.len);
		if (n == KG_E_AGAIN)
			return SSL_pending(io->ssl) == 0 && !SSL_has_pending(io->ssl) ? KG_OK : KG_E_AGAIN;
		if (n <= 0)
			return KG_E_PROTO;   /* EOF or alert inside the switch: nothing to relay */
		io->up.len += (size_t)n;
	}
}

/* ---- control records ---------------------------------------------------------- */

/* Send one alert through kernel TLS (best effort: the session is ending). */
static void send_alert(struct kg_relay_io *io, uint8_t level, uint8_t desc)
{
	uint8_t body[2] = { level, desc };
	char cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = { .iov_base = body, .iov_len = sizeof(body) };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cm;

	memset(cbuf, 0, sizeof(cbuf));
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(sizeof(uint8_t));
	*CMSG_DATA(cm) = CT_ALERT;
	if (sendmsg(io->dev.fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		kg_log_debug("conn=%llu: alert %u not sent: %s", (unsigned long long)io->cid, desc,
			     strerror(errno));
}

/* Read the record splice() stopped at. >0 progress, <0 close with *why. */
static int read_control(struct kg_relay_io *io, enum kg_reason *why)
{
	uint8_t buf[CTRL_BUF];
	char cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cm;
	uint8_t type = CT_APPDATA;
	ssize_t n = recvmsg(io->dev.fd, &msg, MSG_DONTWAIT);

	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		kg_log_info("conn=%llu dev=%s: kTLS receive failed: %s", (unsigned long long)io->cid,
			    io->device_id, strerror(errno));
		*why = errno == EBADMSG ? KG_REASON_TLS_FAILED : KG_REASON_IO_ERROR;
		return -1;
	}
	for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE)
			type = *CMSG_DATA(cm);
	if (n == 0 && type == CT_APPDATA) {
		io->dev_eof = true;   /* FIN without close_notify */
		return 1;
	}
	switch (type) {
	case CT_APPDATA:
		if (kg_buf_reserve(&io->up, io->up.len + (size_t)n) < 0) {
			*why = KG_REASON_OVERLOAD;
			return -1;
		}
		memcpy(io->up.data + io->up.len, buf, (size_t)n);
		io->up.len += (size_t)n;
		return 1;
	case CT_ALERT:
		if (n >= 2 && buf[1] == ALERT_CLOSE_NOTIFY) {
			kg_metric_add(&io->metrics->ktls_ctrl[KG_KTLS_CLOSE_NOTIFY], 1);
			io->dev_eof = true;
			return 1;
		}
		kg_metric_add(&io->metrics->ktls_ctrl[KG_KTLS_ALERT], 1);
		kg_log_info("conn=%llu dev=%s: alert %u from the device", (unsigned long long)io->cid,
			    io->device_id, n >= 2 ? buf[1] : 0);
		*why = KG_REASON_PEER_CLOSED;
		return -1;
	case CT_HANDSHAKE:
		if (n >= 1 && buf[0] == HS_KEY_UPDATE) {
			/* The kernel cannot take a second receive key (EBUSY on 6.1 and 6.12),
			 * and the records after this one are under it: end the session now. */
			kg_metric_add(&io->metrics->ktls_ctrl[KG_KTLS_KEYUPDATE_REFUSED], 1);
			kg_log_warnx("conn=%llu dev=%s: TLS KeyUpdate on an offloaded session: closing "
				     "(configure relay = ktls_tx for fleets that rekey)",
				     (unsigned long long)io->cid, io->device_id);
			send_alert(io, ALERT_FATAL, ALERT_UNEXPECTED_MESSAGE);
			*why = KG_REASON_KEY_UPDATE;
			return -1;
		}
		/* no other post-handshake message is acceptable from a client */
		__attribute__((fallthrough));
	default:
		kg_metric_add(&io->metrics->ktls_ctrl[KG_KTLS_OTHER], 1);
		kg_log_warnx("conn=%llu dev=%s: TLS record type %u on an offloaded session: closing",
			     (unsigned long long)io->cid, io->device_id, type);
		send_alert(io, ALERT_FATAL, ALERT_UNEXPECTED_MESSAGE);
		*why = KG_REASON_TLS_FAILED;
		return -1;
	}
}

/* ---- splice -------------------------------------------------------------------- */

static void count(struct kg_relay_io *io, enum kg_dir d, size_t n)
{
	if (d == KG_DIR_UP)
		io->bytes_up += n;
	else
		io->bytes_down += n;
	kg_metric_add(&io->metrics->bytes[d], n);
}

/* Send a user-space buffer (io->up to the broker, io->down to the device: plain send()
 * on a kTLS socket is encrypted by the kernel). >0 progress, 0 none, <0 error. */
static int flush_buf(struct kg_relay_io *io, enum kg_dir d, enum kg_reason *why)
{
	struct kg_buf *b = d == KG_DIR_UP ? &io->up : &io->down;
	int fd = d == KG_DIR_UP ? io->be.fd : io->dev.fd;
	int progress = 0;

	while (b->off < b->len) {
		ssize_t w = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return progress;
			*why = d == KG_DIR_UP ? KG_REASON_BACKEND_CLOSED : KG_REASON_PEER_CLOSED;
			return -1;
		}
		b->off += (size_t)w;
		count(io, d, (size_t)w);
		progress = 1;
	}
	b->off = b->len = 0;
	kg_buf_release(b);
	return progress;
}

bool kg_relay_pending(const struct kg_relay_io *io, enum kg_dir d)
{
	const struct kg_buf *b = d == KG_DIR_UP ? &io->up : &io->down;

	return b->len > b->off || (io->pipe[d] != NULL && io->pipe[d]->len > 0);
}

/* Below this many bytes waiting in the source, copying beats splicing: measured in
 * the guest (docs/benchmarks.md), 256-byte MQTT messages cost about twice the CPU
 * spliced. For a kTLS source FIONREAD counts ciphertext still in TCP, a fair guess. */
#define SPLICE_MIN 8192

/* Bytes queued in src's TCP receive queue (ciphertext for a kTLS source), or -1. */
static int src_avail(int src)
{
	int avail = 0;

	return ioctl(src, FIONREAD, &avail) == 0 ? avail : -1;
}

/* Read what src has into the direction's user-space buffer (allocated only while it
 * holds bytes). >0 read (2: and a plain source is drained for now: a short read from a
 * stream socket), 0 nothing now (or a control record consumed nothing), <0 close with
 * *why. EOF sets the direction's eof flag and counts as progress. */
static int copy_in(struct kg_relay_io *io, enum kg_dir d, int src, bool src_ktls,
		   enum kg_reason *why)
{
	struct kg_buf *b = d == KG_DIR_UP ? &io->up : &io->down;
	bool *eof = d == KG_DIR_UP ? &io->dev_eof : &io->be_eof;
	int dst = d == KG_DIR_UP ? io->be.fd : io->dev.fd;
	uint8_t tmp[KG_RELAY_BUF];
	ssize_t n, w;

	/* Read onto the stack and send at once (the caller emptied b first): only what
	 * the sink does not take is copied into b, so a small message (a PUBACK) costs
	 * no malloc/free (perf in the guest: docs/benchmarks.md, Issue 3). */
	n = recv(src, tmp, sizeof(tmp), MSG_DONTWAIT);
	if (n > 0) {
		w = send(dst, tmp, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			*why = d == KG_DIR_UP ? KG_REASON_BACKEND_CLOSED : KG_REASON_PEER_CLOSED;
			return -1;
		}
		if (w < 0)
			w = 0;
		count(io, d, (size_t)w);
		if (w < n) {
			if (kg_buf_reserve(b, KG_RELAY_BUF) < 0) {
				*why = KG_REASON_OVERLOAD;
				return -1;
			}
			memcpy(b->data, tmp + w, (size_t)(n - w));
			b->off = 0;
			b->len = (size_t)(n - w);
		}
		/* A kTLS receive returns whole records only, so a short read says nothing
		 * about what is queued behind; a TCP one does. */
		return !src_ktls && (size_t)n < KG_RELAY_BUF ? 2 : 1;
	}
	if (n == 0) {
		*eof = true;
		return 1;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	if (src_ktls && (errno == EINVAL || errno == EIO))
		return read_control(io, why);   /* a non-data record is next */
	if (src_ktls && errno == EBADMSG) {
		kg_log_info("conn=%llu dev=%s: kTLS receive: %s", (unsigned long long)io->cid,
			    io->device_id, strerror(errno));
		*why = KG_REASON_TLS_FAILED;
		return -1;
	}
	*why = d == KG_DIR_UP ? KG_REASON_PEER_CLOSED : KG_REASON_BACKEND_CLOSED;
	return -1;
}

/*
 * One direction: user-space bytes first, then the pipe, then splice more from the
 * source, until nothing moves. The pipe is borrowed only while it holds bytes.
 * src_ktls: the source is a kTLS receive socket whose control records stop splice().
 * >0 progress, 0 none, <0 close with *why.
 */
int kg_relay_splice_dir(struct kg_relay_io *io, enum kg_dir d, bool src_ktls, enum kg_reason *why)
{
	int src = d == KG_DIR_UP ? io->dev.fd : io->be.fd;
	int dst = d == KG_DIR_UP ? io->be.fd : io->dev.fd;
	bool *eof = d == KG_DIR_UP ? &io->dev_eof : &io->be_eof;
	int progress = 0, r;
	/* The source has nothing more for now: stop asking it (the worker's epoll is
	 * level-triggered, so bytes or an EOF arriving later wake the session again). */
	bool dry = false;

	for (;;) {
		struct kg_pipe *p = io->pipe[d];
		ssize_t n;

		r = flush_buf(io, d, why);
		if (r < 0)
			return -1;
		progress |= r;
		if ((d == KG_DIR_UP ? io->up.len : io->down.len) > 0)
			break;   /* destination full */
		/* Fill the pipe with what the source has (a kTLS source gives one record per
		 * call), then drain it with one splice: fewer calls, larger TCP sends. */
		if (!*eof && !dry && (p == NULL || p->len < p->cap)) {
			/* Asked only with the pipe empty (to choose copy or splice): once
			 * splicing, an empty source answers EAGAIN just as cheaply. */
			int avail = p == NULL || p->len == 0 ? src_avail(src) : SPLICE_MIN;

			if (avail == 0 && progress) {
				/* Nothing queued after bytes moved: asking again would only
				 * return EAGAIN (two syscalls per wake-up, per direction). An
				 * EOF also reads 0 here, but it keeps the socket readable: the
				 * next wake-up's first read sees it. A kTLS source's records
				 * already decrypted keep it readable the same way. */
				dry = true;
				continue;
			}
			if (avail < SPLICE_MIN) {
				/* Little to move: one copy through a small buffer costs less
				 * than two splices and a pipe (HAProxy's splice-auto idea). */
				r = copy_in(io, d, src, src_ktls, why);
				if (r < 0)
					return -1;
				if (r == 0)
					break;
				dry = r == 2;
				progress = 1;
				continue;
			}
			if (p == NULL) {
				p = kg_pipe_get(io->pipes);
				if (p == NULL) {
					kg_log_warnx("conn=%llu: no pipe for splice: %s",
						     (unsigned long long)io->cid, strerror(errno));
					*why = KG_REASON_OVERLOAD;
					return -1;
				}
				io->pipe[d] = p;
				kg_metric_gauge(&io->metrics->pipes_in_use, 1);
			}
			n = splice(src, NULL, p->wr, NULL, p->cap - p->len,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n > 0) {
				p->len += (uint32_t)n;
				progress = 1;
				continue;
			}
			if (n == 0) {
				*eof = true;
				progress = 1;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
				/* the source is empty, or the pipe's slots are: drain below */
			} else if (src_ktls && (errno == EINVAL || errno == EIO)) {
				/* A non-data record is next. Read it only with the pipe empty, so
				 * whatever recvmsg returns is in order behind what went before. */
				if (p->len == 0) {
					r = read_control(io, why);
					if (r < 0)
						return -1;
					if (r == 0)
						break;
					progress = 1;
					continue;
				}
			} else {
				kg_log_info("conn=%llu dev=%s: splice %s: %s", (unsigned long long)io->cid,
					    io->device_id,
					    d == KG_DIR_UP ? "device->broker" : "broker->device",
					    strerror(errno));
				if (src_ktls && errno == EBADMSG)
					*why = KG_REASON_TLS_FAILED;   /* decryption failed */
				else
					*why = d == KG_DIR_UP ? KG_REASON_PEER_CLOSED
							      : KG_REASON_BACKEND_CLOSED;
				return -1;
			}
		}
		if (p != NULL && p->len > 0) {
			n = splice(p->rd, NULL, dst, NULL, p->len, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				*why = d == KG_DIR_UP ? KG_REASON_BACKEND_CLOSED : KG_REASON_PEER_CLOSED;
				return -1;
			}
			p->len -= (uint32_t)n;
			count(io, d, (size_t)n);
			progress = 1;
			continue;
		}
		break;
	}
	if (io->pipe[d] != NULL && io->pipe[d]->len == 0) {
		kg_pipe_put(io->pipes, io->pipe[d]);
		kg_metric_gauge(&io->metrics->pipes_in_use, -1);
		io->pipe[d] = NULL;
	}
	return progress;
}

/* End of stream, in order: kg_relay_finished() with the pipes counted as pending. */
static bool ktls_finished(struct kg_relay_io *io, enum kg_reason *why)
{
	return kg_relay_finished(io, kg_relay_pending(io, KG_DIR_UP), kg_relay_pending(io, KG_DIR_DOWN), why);
}

/* Arm epoll: read a source only when its direction holds nothing (back-pressure),
 * wait for a sink only when it does. */
int kg_relay_splice_arm(struct kg_relay_io *io, bool dev_read_ssl)
{
	uint32_t dev_ev = 0, be_ev = 0;

	if (!io->dev_eof && !kg_relay_pending(io, KG_DIR_UP))
		dev_ev |= EPOLLIN;
	if (kg_relay_pending(io, KG_DIR_DOWN))
		dev_ev |= EPOLLOUT;
	if (dev_read_ssl && io->want_write)
		dev_ev |= EPOLLOUT;
	if (!io->be_eof && !kg_relay_pending(io, KG_DIR_DOWN))
		be_ev |= EPOLLIN;
	if (kg_relay_pending(io, KG_DIR_UP))
		be_ev |= EPOLLOUT;
	/* A side at EOF reports HUP forever in level mode: drop it unless written to. */
	if ((dev_ev == 0 && io->dev_eof ? kg_evsrc_unwatch(io->epfd, &io->dev)
				       : kg_evsrc_watch(io->epfd, &io->dev, dev_ev)) < 0 ||
	    (be_ev == 0 && io->be_eof ? kg_evsrc_unwatch(io->epfd, &io->be)
				     : kg_evsrc_watch(io->epfd, &io->be, be_ev)) < 0)
		return -1;
	return 0;
}

static enum kg_reason close_with(struct kg_relay_io *io, enum kg_reason why)
{
	/* An orderly end gets our close_notify (the kernel seals it); errors do not. */
	if (why == KG_REASON_PEER_CLOSED || why == KG_REASON_BACKEND_CLOSED)
		send_alert(io, ALERT_WARNING, ALERT_CLOSE_NOTIFY);
	return why;
}

/* ---- ktls_splice ----------------------------------------------------------------- */

static bool offloaded_tx(const struct kg_relay_io *io)
{
	return io->ssl != NULL && io->ktls_ulp && BIO_get_ktls_send(SSL_get_wbio(io->ssl)) == 1;
}

static bool splice_usable(const struct kg_relay_io *io)
{
	return io->ssl != NULL && io->ktls_ulp;
}

static int splice_start(struct kg_relay_io *io)
{
	struct kg_tls_keys keys;
	int rc, err;

	if (!offloaded_tx(io)) {
		fallback(io, KG_KTLS_TX_NOT_OFFLOADED, 0);
		return KG_E_INVALID;
	}
	io->ktls_tx = true;
	if (BIO_get_ktls_recv(SSL_get_rbio(io->ssl)) == 1) {
		/* OpenSSL offloaded receive itself (TLS 1.2; 1.3 from OpenSSL 3.2 on). */
		rc = drain_openssl(io);
		if (rc < 0)
			return rc;
		kg_metric_add(&io->metrics->ktls_rx_installed[KG_KTLS_RX_BY_OPENSSL], 1);
		goto handed_over;
	}
	/* Fleets that rekey keep RX in OpenSSL: the ktls_tx rung below. */
	if (io->cfg->relay == KG_RELAY_KTLS_TX)
		return KG_E_INVALID;
	if (io->keytrk.rekeyed) {
		fallback(io, KG_KTLS_REKEYED, 0);
		return KG_E_INVALID;
	}
	rc = drain_openssl(io);
	if (rc < 0)
		return rc;   /* KG_E_AGAIN: the handoff waits for the rest of a record */
	rc = kg_tls_keys_export(io->ssl, &io->keytrk, &keys);
	if (rc == KG_E_AGAIN)
		return rc;   /* not a fallback: the start is tried again */
	if (rc < 0) {
		fallback(io, KG_KTLS_RX_FAILED, 0);
		return KG_E_INVALID;
	}
	rc = ktls_install(io->dev.fd, TLS_RX, keys.version, keys.aead, &keys.rx);
	err = errno;
	kg_tls_keys_wipe(&keys);
	if (rc < 0) {
		/* Nothing changed on the socket: the ktls_tx rung can still take it. */
		fallback(io, KG_KTLS_RX_FAILED, err);
		return KG_E_INVALID;
	}
	kg_metric_add(&io->metrics->ktls_rx_installed[KG_KTLS_RX_BY_DAEMON], 1);

handed_over:
	/* Point of no return: the kernel owns both directions. The fd stays ours. */
	io->ktls_rx = true;
	kg_ssl_release(io->ssl);
	io->ssl = NULL;
	kg_tls_key_tracker_wipe(&io->keytrk);
	return KG_OK;
}

static enum kg_reason splice_pump(struct kg_relay_io *io)
{
	enum kg_reason why = KG_REASON_IO_ERROR;

	/* One pass: each direction already moves until its source or sink stops, and the
	 * two share nothing (no SSL left), so a second round would only ask both sources
	 * again for an EAGAIN. */
	if (kg_relay_splice_dir(io, KG_DIR_UP, true, &why) < 0 ||
	    kg_relay_splice_dir(io, KG_DIR_DOWN, false, &why) < 0)
		return close_with(io, why);
	if (ktls_finished(io, &why))
		return close_with(io, why);
	if (kg_relay_splice_arm(io, false) < 0)
		return close_with(io, KG_REASON_IO_ERROR);
	return KG_REASON_OK;
}

const struct kg_relay_ops kg_relay_ktls_splice = {
	.name = "ktls_splice",
	.mode = KG_MODE_KTLS_SPLICE,
	.usable = splice_usable,
	.start = splice_start,
	.pump = splice_pump,
};

/* ---- ktls_tx ------------------------------------------------------------------- */

static bool tx_usable(const struct kg_relay_io *io)
{
	return offloaded_tx(io);
}

static int tx_start(struct kg_relay_io *io)
{
	io->ktls_tx = true;
	io->ktls_rx = BIO_get_ktls_recv(SSL_get_rbio(io->ssl)) == 1;
	if (io->ktls_rx)   /* TLS 1.2 (or 1.3 on OpenSSL >= 3.2): OpenSSL reads via the kernel */
		kg_metric_add(&io->metrics->ktls_rx_installed[KG_KTLS_RX_BY_OPENSSL], 1);
	return KG_OK;
}

static enum kg_reason tx_pump(struct kg_relay_io *io)
{
	enum kg_reason why = KG_REASON_IO_ERROR;
	int a, b;

	do {
		a = kg_relay_ssl_up(io, &why);
		if (a < 0)
			return close_with(io, why);
		if (io->keytrk.update_requested) {
			/* Our answer would need a second TX key, which the kernel refuses
			 * (EBUSY): end the session cleanly instead of half-following. */
			kg_metric_add(&io->metrics->ktls_ctrl[KG_KTLS_KEYUPDATE_REFUSED], 1);
			kg_log_warnx("conn=%llu dev=%s: KeyUpdate requesting ours: the kernel cannot "
				     "rekey what we send: closing",
				     (unsigned long long)io->cid, io->device_id);
			send_alert(io, ALERT_FATAL, ALERT_UNEXPECTED_MESSAGE);
			return KG_REASON_KEY_UPDATE;
		}
		if (io->keytrk.rekeyed) {
			io->keytrk.rekeyed = false;
			kg_metric_add(&io->metrics->ktls_ctrl[KG_KTLS_KEYUPDATE_FOLLOWED], 1);
		}
		b = kg_relay_splice_dir(io, KG_DIR_DOWN, false, &why);
		if (b < 0)
			return close_with(io, why);
	} while (a > 0 || b > 0);
	if (ktls_finished(io, &why))
		return close_with(io, why);
	if (kg_relay_splice_arm(io, true) < 0)
		return close_with(io, KG_REASON_IO_ERROR);
	return KG_REASON_OK;
}

const struct kg_relay_ops kg_relay_ktls_tx = {
	.name = "ktls_tx",
	.mode = KG_MODE_KTLS_TX,
	.usable = tx_usable,
	.start = tx_start,
	.pump = tx_pump,
};
