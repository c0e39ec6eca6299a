/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * relay_record.c - the record relay: user space carries the session's TLS records
 * itself once the handshake is over, so OpenSSL's per-session state (the `SSL`, its
 * session, the peer's certificate chain, about 17 KiB) is freed at the handoff and an
 * idle session keeps only its two AEAD contexts. This is what kTLS does in the kernel
 * (issue 3), on the same exported keys (tls_keys.c), with the record protection of
 * record.c.
 *
 * The switch is exact: bytes OpenSSL already decrypted (the CONNECT, anything
 * pipelined behind it, whatever is still pending in OpenSSL) are in io->up before the
 * keys are exported, read-ahead is off so OpenSSL holds no raw record bytes, and the
 * exported sequence numbers are the next ones on the wire in each direction.
 *
 * Records after the handoff:
 *   application data -> the broker;
 *   alert close_notify -> end of the device's stream (flush, then close);
 *   any other alert -> close;
 *   handshake (a TLS 1.3 KeyUpdate; nothing else is legal) -> cannot be followed
 *   without OpenSSL: fatal alert unexpected_message, close, audited as a protocol
 *   error. Never silent corruption, never a spin.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "ops/err.h"
#include "ops/log.h"
#include "relay/record.h"
#include "relay/relay.h"
#include "tls/session_cache.h"
#include "tls/tls_keys.h"

#define PLAIN_MAX 16384u                          /* TLS max plaintext per record */
#define RAW_IN_CAP (5u + PLAIN_MAX + 256u)        /* one max ciphertext record */
#define RAW_OUT_CAP (2u * (5u + PLAIN_MAX + 256u))

#define TLS_CT_ALERT 21
#define TLS_CT_HANDSHAKE 22
#define TLS_CT_APPDATA 23
#define TLS_ALERT_CLOSE_NOTIFY 0
#define TLS_ALERT_UNEXPECTED_MESSAGE 10
#define TLS_ALERT_BAD_RECORD_MAC 20

struct kg_record_session {
	struct kg_record_dir rx, tx;
	/* Within one pump: a socket that gave a short read or EAGAIN is drained for now;
	 * calling recv() on it again would only cost a syscall that says EAGAIN. */
	bool dev_drained, be_drained;
	struct kg_buf rin;    /* ciphertext from the device, not yet opened */
	struct kg_buf rout;   /* sealed records for the device, not yet sent */
};

void kg_record_session_free(struct kg_record_session *rs)
{
	if (rs == NULL)
		return;
	kg_record_dir_fini(&rs->rx);
	kg_record_dir_fini(&rs->tx);
	kg_buf_free(&rs->rin);
	kg_buf_free(&rs->rout);
	OPENSSL_free(rs);
}

static bool record_usable(const struct kg_relay_io *io)
{
	/* Not once the kernel encrypts what we send: its record numbers are not ours. */
	return io->cfg->relay != KG_RELAY_OPENSSL && io->ssl != NULL &&
	       BIO_get_ktls_send(SSL_get_wbio(io->ssl)) != 1;
}

/*
 * Take the session away from OpenSSL. Everything fallible comes first: drain what
 * OpenSSL decrypted, export the keys, set up both directions. Then the point of no
 * return: SSL_free(). A failure before it leaves the SSL in place, and the handoff
 * tries the next relay.
 */
static int record_start(struct kg_relay_io *io)
{
	struct kg_record_session *rs = NULL;
	struct kg_tls_keys keys;
	int rc;

	/* Decrypted bytes OpenSSL still holds go behind what we already read. */
	while (SSL_pending(io->ssl) > 0) {
		long n;

		if (kg_buf_reserve(&io->up, io->up.len + PLAIN_MAX) < 0)
			return KG_E_RESOURCE;
		n = kg_ssl_io_read(io, io->up.data + io->up.len, io->up.cap - io->up.len);
		if (n <= 0)
			return KG_E_PROTO;
		io->up.len += (size_t)n;
	}
	rc = kg_tls_keys_export(io->ssl, &io->keytrk, &keys);
	if (rc < 0) {
		kg_log_debug("conn=%llu: record relay not possible: %s", (unsigned long long)io->cid,
			     kg_err_str(rc));
		return rc;
	}
	rs = OPENSSL_zalloc(sizeof(*rs));
	if (rs == NULL) {
		rc = KG_E_RESOURCE;
		goto out_wipe;
	}
	if ((rc = kg_record_dir_init(&rs->rx, &keys, true)) < 0 ||
	    (rc = kg_record_dir_init(&rs->tx, &keys, false)) < 0)
		goto out_free;
	kg_tls_keys_wipe(&keys);

	/* Point of no return: no fallible call below. The fd stays ours (SSL_set_fd's
	 * BIO does not close it). */
	kg_ssl_release(io->ssl);
	io->ssl = NULL;
	kg_tls_key_tracker_wipe(&io->keytrk);
	io->rec = rs;
	return 0;

out_free:
	kg_record_session_free(rs);
out_wipe:
	kg_tls_keys_wipe(&keys);
	return rc;
}

/* Queue one sealed alert for the device (best effort: the session ends anyway). */
static void queue_alert(struct kg_relay_io *io, uint8_t level, uint8_t desc)
{
	struct kg_record_session *rs = io->rec;
	size_t n = 0;

	if (kg_buf_reserve(&rs->rout, rs->rout.len + 5 + 2 + 256) < 0)
		return;
	if (kg_record_seal_alert(&rs->tx, level, desc, rs->rout.data + rs->rout.len,
				 rs->rout.cap - rs->rout.len, &n) == 0)
		rs->rout.len += n;
}

static void flush_rout(struct kg_relay_io *io)
{
	struct kg_record_session *rs = io->rec;

	while (rs->rout.off < rs->rout.len) {
		ssize_t w = send(io->dev.fd, rs->rout.data + rs->rout.off, rs->rout.len - rs->rout.off,
				 MSG_NOSIGNAL);
		if (w <= 0)
			return;
		rs->rout.off += (size_t)w;
	}
}

/* Device -> broker. Returns >0 progress, 0 none, <0 close with *why. */
static int pump_up(struct kg_relay_io *io, enum kg_reason *why)
{
	struct kg_record_session *rs = io->rec;
	int progress = 0;

	/* ciphertext in */
	while (!io->dev_eof && !rs->dev_drained && rs->rin.len < RAW_IN_CAP) {
		size_t want = RAW_IN_CAP - rs->rin.len;
		ssize_t n;

		if (kg_buf_reserve(&rs->rin, RAW_IN_CAP) < 0) {
			*why = KG_REASON_OVERLOAD;
			return -1;
		}
		n = recv(io->dev.fd, rs->rin.data + rs->rin.len, want, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				rs->dev_drained = true;
				break;
			}
			*why = KG_REASON_IO_ERROR;
			return -1;
		}
		if (n > 0 && (size_t)n < want)
			rs->dev_drained = true;
		if (n == 0) {
			/* FIN without close_notify: a truncation an attacker could cause,
			 * but for MQTT the broker sees the same as a dropped link. */
			io->dev_eof = true;
			progress = 1;
			break;
		}
		rs->rin.len += (size_t)n;
		progress = 1;
	}
	/* records out of rin, plaintext into io->up while it has room */
	while (rs->rin.off < rs->rin.len && io->up.len < KG_RELAY_BUF) {
		uint8_t *rec = rs->rin.data + rs->rin.off, *plain = NULL, type = 0;
		size_t rec_len = 0, plain_len = 0;
		enum kg_parse pr = kg_record_next(rec, rs->rin.len - rs->rin.off, &rec_len);

		if (pr == KG_PARSE_SHORT)
			break;
		if (pr != KG_PARSE_OK) {
			queue_alert(io, 2, TLS_ALERT_UNEXPECTED_MESSAGE);
			*why = KG_REASON_TLS_FAILED;
			return -1;
		}
		if (kg_record_open(&rs->rx, rec, rec_len, &type, &plain, &plain_len) < 0) {
			queue_alert(io, 2, TLS_ALERT_BAD_RECORD_MAC);
			*why = KG_REASON_TLS_FAILED;
			return -1;
		}
		if (type == TLS_CT_APPDATA) {
			if (kg_buf_reserve(&io->up, io->up.len + plain_len) < 0) {
				*why = KG_REASON_OVERLOAD;
				return -1;
			}
			memcpy(io->up.data + io->up.len, plain, plain_len);
			io->up.len += plain_len;
		} else if (type == TLS_CT_ALERT && plain_len == 2 && plain[1] == TLS_ALERT_CLOSE_NOTIFY) {
			io->dev_eof = true;
		} else if (type == TLS_CT_ALERT) {
			*why = KG_REASON_PEER_CLOSED;
			return -1;
		} else {
			/* A KeyUpdate (TLS 1.3) or anything else we cannot follow. */
			bool key_update = type == TLS_CT_HANDSHAKE && plain_len >= 1 && plain[0] == 24;

			kg_log_warnx("conn=%llu dev=%s: TLS %s after the handoff: closing",
				     (unsigned long long)io->cid, io->device_id,
				     key_update ? "KeyUpdate" : "non-data record");
			queue_alert(io, 2, TLS_ALERT_UNEXPECTED_MESSAGE);
			*why = key_update ? KG_REASON_KEY_UPDATE : KG_REASON_TLS_FAILED;
			return -1;
		}
		rs->rin.off += rec_len;
		progress = 1;
	}
	if (rs->rin.off == rs->rin.len) {
		rs->rin.off = rs->rin.len = 0;
		kg_buf_release(&rs->rin);
	} else if (rs->rin.off > 0) {
		memmove(rs->rin.data, rs->rin.data + rs->rin.off, rs->rin.len - rs->rin.off);
		rs->rin.len -= rs->rin.off;
		rs->rin.off = 0;
	}
	/* plaintext to the broker */
	{
		int sent = kg_relay_flush_up(io, why);

		if (sent < 0)
			return -1;
		progress |= sent;
	}
	return progress;
}

/* Broker -> device. */
static int pump_down(struct kg_relay_io *io, enum kg_reason *why)
{
	struct kg_record_session *rs = io->rec;
	int progress = kg_relay_fill_down(io, &rs->be_drained, why);

	if (progress < 0)
		return -1;
	/* seal as much as fits: whole records of up to 16 KiB */
	while (io->down.off < io->down.len) {
		size_t chunk = io->down.len - io->down.off, n = 0;

		if (chunk > PLAIN_MAX)
			chunk = PLAIN_MAX;
		if (rs->rout.len + 5 + chunk + 256 > RAW_OUT_CAP)
			break;
		if (kg_buf_reserve(&rs->rout, RAW_OUT_CAP) < 0) {
			*why = KG_REASON_OVERLOAD;
			return -1;
		}
		if (kg_record_seal(&rs->tx, TLS_CT_APPDATA, io->down.data + io->down.off, chunk,
				   rs->rout.data + rs->rout.len, rs->rout.cap - rs->rout.len, &n) < 0) {
			*why = KG_REASON_IO_ERROR;
			return -1;
		}
		rs->rout.len += n;
		io->down.off += chunk;
		io->bytes_down += chunk;
		kg_metric_add(&io->metrics->bytes[KG_DIR_DOWN], chunk);
		progress = 1;
	}
	if (io->down.off == io->down.len) {
		io->down.off = io->down.len = 0;
		kg_buf_release(&io->down);
	}
	/* ciphertext to the device */
	while (rs->rout.off < rs->rout.len) {
		ssize_t w = send(io->dev.fd, rs->rout.data + rs->rout.off, rs->rout.len - rs->rout.off,
				 MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			*why = KG_REASON_PEER_CLOSED;
			return -1;
		}
		rs->rout.off += (size_t)w;
		progress = 1;
	}
	if (rs->rout.off == rs->rout.len) {
		rs->rout.off = rs->rout.len = 0;
		kg_buf_release(&rs->rout);
	}
	return progress;
}

static enum kg_reason record_pump(struct kg_relay_io *io)
{
	struct kg_record_session *rs = io->rec;
	enum kg_reason why = KG_REASON_IO_ERROR;
	uint32_t dev_ev = 0;
	int a, b;

	rs->dev_drained = rs->be_drained = false;
	do {
		if ((a = pump_up(io, &why)) < 0 || (b = pump_down(io, &why)) < 0)
			goto out_close;
	} while (a > 0 || b > 0);

	if (kg_relay_finished(io, io->up.len > io->up.off,
			      io->down.len > io->down.off || rs->rout.len > rs->rout.off, &why)) {
		/* an orderly end in either direction gets our close_notify (RFC 8446 6.1) */
		queue_alert(io, 1, TLS_ALERT_CLOSE_NOTIFY);
		goto out_close;
	}
	if (!io->dev_eof && rs->rin.len < RAW_IN_CAP)
		dev_ev |= EPOLLIN;
	if (rs->rout.len > rs->rout.off)
		dev_ev |= EPOLLOUT;
	if (kg_relay_arm(io, dev_ev) < 0)
		goto out_close;
	return KG_REASON_OK;

out_close:
	flush_rout(io);
	return why;
}

const struct kg_relay_ops kg_relay_record = {
	.name = "userspace",
	.mode = KG_MODE_USERSPACE,
	.usable = record_usable,
	.start = record_start,
	.pump = record_pump,
};
