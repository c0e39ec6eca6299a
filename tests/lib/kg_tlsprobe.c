/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kg_tlsprobe.c - a test client for what Python's ssl module cannot do: a TLS 1.3
 * KeyUpdate in the middle of an MQTT session. Connects with a client certificate,
 * sends CONNECT, reads the CONNACK, then sends a KeyUpdate (SSL_key_update) followed
 * by a PINGREQ, and reports what the gate did:
 *   "connack 0xNN" then one of
 *   "after keyupdate: alert"   the gate sent an alert (what it must do),
 *   "after keyupdate: eof"     it closed without one,
 *   "after keyupdate: pingresp" the session went on (only valid if it could rekey),
 *   "after keyupdate: timeout" nothing happened within 3 s (a hang: a bug).
 * Usage: kg-tlsprobe PORT CA_FILE CERT_CHAIN KEY CLIENT_ID [requested]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ktlsgate/mqtt.h"

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

			return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? -1 : -3;
		}
		got += (size_t)r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct kg_mqtt_connect_opts co = { .level = KG_MQTT_V311, .keepalive = 60, .clean_start = true };
	uint8_t buf[256];
	SSL_CTX *ctx;
	SSL *ssl;
	size_t n;
	int fd, r;

	if (argc < 6) {
		fprintf(stderr, "usage: kg-tlsprobe PORT CA CERT_CHAIN KEY CLIENT_ID [requested]\n");
		return 2;
	}
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
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
	fflush(stdout);
	if (SSL_key_update(ssl, argc > 6 && strcmp(argv[6], "requested") == 0
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
		printf("after keyupdate: alert\n");
	else
		printf("after keyupdate: eof\n");
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return 0;
}
