/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kg_tlsprobe.c - a test client for what Python's ssl module cannot do: a TLS 1.3
 * KeyUpdate in the middle of an MQTT session. Connects with a client certificate,
 * sends CONNECT, reads the CONNACK, then sends a KeyUpdate (SSL_key_update) followed
 * by a PINGREQ, and reports what the gate did:
 *   "connack 0xNN" then one of
 *   "after keyupdate: alert N" the gate sent alert N (what it must do),
 *   "after keyupdate: eof"     it closed without one,
 *   "after keyupdate: pingresp" the session went on (only valid if it could rekey),
 *   "after keyupdate: timeout" nothing happened within 3 s (a hang: a bug).
 * Usage: kg-tlsprobe PORT CA_FILE CERT_CHAIN KEY CLIENT_ID [ACTION [ARG]]
 *   ACTION keyupdate (default) | requested: as above (requested = update_requested)
 *          ping:  PINGREQ -> "pingresp" (the session relays)
 *          pings N: a PINGREQ every second, N times -> "pings: K of N answered"
 *          close: send close_notify -> "close: close_notify" (the gate answered in
 *                 order) or "close: eof" / "close: timeout"
 *          hold CMD: run `sh -c CMD` and time the gate's cut -> "cut: eof after N ms"
 *                 (or "cut: timeout"; the session is held for at most 5 s)
 * Environment: KG_PROBE_TLS=1.2 forces TLS 1.2 (default 1.3), KG_PROBE_CIPHERS sets the
 * TLS 1.3 suites or the TLS 1.2 cipher list, KG_PROBE_KEEPALIVE the CONNECT's
 * keep-alive in seconds (default 60; `hold true` then times the idle timeout).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "mqtt/mqtt.h"

/* The alert the gate sent, if the last SSL error was one (OpenSSL 3 reports an EOF
 * without close_notify as an SSL error too: that is not an alert). */
static int last_alert = -1;
static char last_error[160];   /* OpenSSL's reason for the last failure, for the log */

static int classify_ssl_error(void)
{
	unsigned long e;

	last_alert = -1;
	last_error[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		int reason = ERR_GET_REASON(e);

		ERR_error_string_n(e, last_error, sizeof(last_error));
		if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET &&
		    reason < SSL_AD_REASON_OFFSET + 256)
			last_alert = reason - SSL_AD_REASON_OFFSET;
	}
	return last_alert >= 0 ? -3 : -1;
}

static int read_exact(SSL *ssl, int fd, uint8_t *buf, size_t n, int timeout_ms)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r;

		if (SSL_pending(ssl) == 0 && poll(&p, 1, timeout_ms) <= 0)
			return -2;   /* timeout */
		r = SSL_read(ssl, buf + got, (int)(n - got));
		if (r <= 0) {
			int e = SSL_get_error(ssl, r);

			if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)
				return -1;
			return classify_ssl_error();
		}
		got += (size_t)r;
	}
	return 0;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Wait up to timeout_ms for the gate to end the session: 0 close_notify, -1 EOF or
 * reset, -2 timeout, -3 alert / TLS error; bytes that arrive first are skipped. */
static int wait_end(SSL *ssl, int fd, int timeout_ms)
{
	double end = now_ms() + timeout_ms;
	uint8_t junk[512];

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(end - now_ms()), r, e;

		if (left <= 0)
			return -2;
		if (SSL_pending(ssl) == 0 && poll(&p, 1, left) <= 0)
			return -2;
		r = SSL_read(ssl, junk, sizeof(junk));
		if (r > 0)
			continue;
		e = SSL_get_error(ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			continue;
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		return e == SSL_ERROR_SYSCALL ? -1 : classify_ssl_error();
	}
}

static int act_hold(SSL *ssl, int fd, const char *cmd)
{
	double t0 = now_ms();
	pid_t pid = fork();
	int r, st;

	if (pid < 0)
		return 2;
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	r = wait_end(ssl, fd, 5000);
	if (r == -2)
		printf("cut: timeout\n");
	else
		printf("cut: %s after %.1f ms\n", r == 0 ? "close_notify" : r == -3 ? "alert" : "eof",
		       now_ms() - t0);
	if (r == -3)
		printf("alert: %d\n", last_alert);
	waitpid(pid, &st, 0);
	printf("cmd: exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return 0;
}

int main(int argc, char **argv)
{
	const char *action = argc > 6 ? argv[6] : "keyupdate";
	const char *tls = getenv("KG_PROBE_TLS"), *ciphers = getenv("KG_PROBE_CIPHERS");
	bool tls12 = tls != NULL && strcmp(tls, "1.2") == 0;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct kg_mqtt_connect_opts co = { .level = KG_MQTT_V311, .keepalive = 60, .clean_start = true };
	uint8_t buf[256];
	SSL_CTX *ctx;
	SSL *ssl;
	size_t n;
	int fd, r;

	if (argc < 6) {
		fprintf(stderr, "usage: kg-tlsprobe PORT CA CERT_CHAIN KEY CLIENT_ID "
				"[keyupdate|requested|ping|pings N|close|hold CMD]\n");
		return 2;
	}
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL ||
	    !SSL_CTX_set_min_proto_version(ctx, tls12 ? TLS1_2_VERSION : TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, tls12 ? TLS1_2_VERSION : TLS1_3_VERSION) ||
	    (ciphers != NULL && !(tls12 ? SSL_CTX_set_cipher_list(ctx, ciphers)
					: SSL_CTX_set_ciphersuites(ctx, ciphers))) ||
	    SSL_CTX_load_verify_locations(ctx, argv[2], NULL) != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, argv[3]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, argv[4], SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 2;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	sin.sin_port = htons((uint16_t)atoi(argv[1]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		perror("connect");
		return 2;
	}
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) {
		printf("tls: handshake failed\n");
		return 1;
	}
	if (getenv("KG_PROBE_KEEPALIVE") != NULL)
		co.keepalive = (uint16_t)atoi(getenv("KG_PROBE_KEEPALIVE"));
	co.client_id = argv[5];
	n = kg_mqtt_encode_connect(&co, buf, sizeof(buf));
	if (n == 0 || SSL_write(ssl, buf, (int)n) != (int)n) {
		printf("tls: write failed\n");
		return 1;
	}
	if (read_exact(ssl, fd, buf, 4, 3000) != 0) {
		printf("no connack\n");
		return 1;
	}
	printf("connack 0x%02x\n", buf[3]);
	printf("tls: %s %s\n", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	fflush(stdout);
	if (strcmp(action, "hold") == 0) {
		if (argc < 8) {
			fprintf(stderr, "kg-tlsprobe: hold needs a command\n");
			return 2;
		}
		r = act_hold(ssl, fd, argv[7]);
		goto out;
	}
	if (strcmp(action, "pings") == 0) {
		/* one PINGREQ a second for N seconds: a session that talks is not idle */
		int want = argc > 7 ? atoi(argv[7]) : 5, got = 0;

		for (int i = 0; i < want; i++) {
			sleep(1);
			n = kg_mqtt_encode_pingreq(buf, sizeof(buf));
			if (SSL_write(ssl, buf, (int)n) != (int)n || read_exact(ssl, fd, buf, 2, 3000) != 0 ||
			    buf[0] != 0xd0)
				break;
			got++;
		}
		printf("pings: %d of %d answered\n", got, want);
		r = 0;
		goto out;
	}
	if (strcmp(action, "ping") == 0) {
		n = kg_mqtt_encode_pingreq(buf, sizeof(buf));
		if (SSL_write(ssl, buf, (int)n) != (int)n || read_exact(ssl, fd, buf, 2, 3000) != 0) {
			printf("ping: no answer\n");
			return 1;
		}
		printf("%s\n", buf[0] == 0xd0 ? "pingresp" : "data");
		r = 0;
		goto out;
	}
	if (strcmp(action, "close") == 0) {
		SSL_shutdown(ssl);
		r = wait_end(ssl, fd, 3000);
		printf("close: %s\n", r == 0 ? "close_notify" : r == -2 ? "timeout" : r == -3 ? "alert" : "eof");
		if (r == -3)
			printf("alert: %d\n", last_alert);
		r = 0;
		goto out;
	}
	if (strcmp(action, "keyupdate") != 0 && strcmp(action, "requested") != 0) {
		fprintf(stderr, "kg-tlsprobe: unknown action %s\n", action);
		return 2;
	}
	if (SSL_key_update(ssl, strcmp(action, "requested") == 0
					? SSL_KEY_UPDATE_REQUESTED
					: SSL_KEY_UPDATE_NOT_REQUESTED) != 1) {
		printf("tls: key update refused locally\n");
		return 1;
	}
	n = kg_mqtt_encode_pingreq(buf, sizeof(buf));
	/* The KeyUpdate goes out ahead of this record. A gate that already closed may
	 * make the write fail: that is an answer too, read it below. */
	(void)SSL_write(ssl, buf, (int)n);
	r = read_exact(ssl, fd, buf, 2, 3000);
	if (r == 0)
		printf("after keyupdate: %s\n", buf[0] == 0xd0 ? "pingresp" : "data");
	else if (r == -2)
		printf("after keyupdate: timeout\n");
	else if (r == -3)
		printf("after keyupdate: alert %d\n", last_alert);
	else
		printf("after keyupdate: eof\n");
	if (r != 0 && last_error[0] != '\0')
		fprintf(stderr, "kg-tlsprobe: %s\n", last_error);
	r = 0;
out:
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return r;
}
