/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ssl_io.c - decrypted bytes in and out of a session's SSL, and close_notify, in the
 * daemon's vocabulary: callers see bytes, 0 for a clean close, KG_E_AGAIN with
 * io->want_read / io->want_write set, or an error; never OpenSSL's error codes. A
 * plain device side (io->dev_plain, no SSL) is its socket itself, in the same words,
 * so the connection and the copy relays need not tell the two apart.
 *
 * Here, in relay/, because a session's SSL is relay state (struct kg_relay_io): the
 * OpenSSL relay and ktls_tx read and write through it, the record relay and
 * ktls_splice drain it at their start, and the connection (core/conn.c) uses the same
 * calls for the CONNECT and a refusal before the handoff. The handshake step
 * (core/conn_tls.c) maps its result with kg_ssl_io_result().
 */
#include <errno.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ops/err.h"
#include "relay/relay.h"

/* Map an SSL_get_error() result; sets want flags. Static, so read and write keep it
 * inlined as they did in tls.c; kg_ssl_io_result() below is the handshake's way in. */
static long ssl_result(struct kg_relay_io *io, int ret)
{
	int e = SSL_get_error(io->ssl, ret);

	io->want_read = io->want_write = false;
	switch (e) {
	case SSL_ERROR_WANT_READ:
		io->want_read = true;
		return KG_E_AGAIN;
	case SSL_ERROR_WANT_WRITE:
		io->want_write = true;
		return KG_E_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		/* EOF without close_notify: for MQTT the session just ends. */
		return (errno == 0 || ret == 0) ? 0 : KG_E_IO;
	default:
		ERR_clear_error();
		return KG_E_PROTO;
	}
}

long kg_ssl_io_result(struct kg_relay_io *io, int ret)
{
	return ssl_result(io, ret);
}

/* The socket's result in the same words: a reset is the end of the stream. */
static long plain_result(struct kg_relay_io *io, ssize_t n, bool writing)
{
	io->want_read = io->want_write = false;
	if (n >= 0)
		return (long)n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
		if (writing)
			io->want_write = true;
		else
			io->want_read = true;
		return KG_E_AGAIN;
	}
	return !writing && errno == ECONNRESET ? 0 : KG_E_IO;
}

long kg_ssl_io_read(struct kg_relay_io *io, void *buf, size_t len)
{
	size_t got = 0;
	int ret;

	if (io->ssl == NULL && io->dev_plain)
		return plain_result(io, recv(io->dev.fd, buf, len, MSG_DONTWAIT), false);
	ERR_clear_error();
	ret = SSL_read_ex(io->ssl, buf, len, &got);
	if (ret == 1) {
		io->want_read = io->want_write = false;
		return (long)got;
	}
	return ssl_result(io, 0);
}

long kg_ssl_io_write(struct kg_relay_io *io, const void *buf, size_t len)
{
	size_t done = 0;
	int ret;

	if (io->ssl == NULL && io->dev_plain)
		return plain_result(io, send(io->dev.fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL),
				    true);
	ERR_clear_error();
	ret = SSL_write_ex(io->ssl, buf, len, &done);
	if (ret == 1) {
		io->want_read = io->want_write = false;
		return (long)done;
	}
	{
		long r = ssl_result(io, 0);
		/* A write that hit a closed peer is an I/O error, not a clean close. */
		return r == 0 ? KG_E_IO : r;
	}
}

void kg_ssl_io_shutdown(struct kg_relay_io *io)
{
	if (io->ssl == NULL)
		return;
	ERR_clear_error();
	(void)SSL_shutdown(io->ssl);
	ERR_clear_error();
}
