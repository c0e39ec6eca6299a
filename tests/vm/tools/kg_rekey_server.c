/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kg_rekey_server.c - a finding, not a product: what does OpenSSL 3.0 do when a
 * TLS 1.3 peer asks for our KeyUpdate (update_requested) while the kernel holds our
 * transmit key (SSL_OP_ENABLE_KTLS)? One connection on 127.0.0.1:PORT: read any bytes
 * (the device's CONNECT), answer a CONNACK, then keep reading; after the KeyUpdate and
 * the PINGREQ behind it, SSL_write a PINGRESP and report what OpenSSL said and whether
 * the kernel still had TX. The client (kg-tlsprobe ... requested) reports what reached
 * it. Run in the guest by t-35-openssl-rekey.sh.
 * Usage: kg-rekey-server PORT CERT_CHAIN KEY
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static void print_errors(const char *what)
{
	unsigned long e;
	char buf[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		printf("%s: %s\n", what, buf);
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	static const unsigned char connack[4] = { 0x20, 0x02, 0x00, 0x00 };
	static const unsigned char pingresp[2] = { 0xd0, 0x00 };
	unsigned char buf[4096];
	SSL_CTX *ctx;
	SSL *ssl;
	int ls, fd, one = 1, r;

	if (argc != 4) {
		fprintf(stderr, "usage: kg-rekey-server PORT CERT_CHAIN KEY\n");
		return 2;
	}
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
		print_errors("setup");
		return 2;
	}
	SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
	SSL_CTX_set_num_tickets(ctx, 0);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sin.sin_port = htons((uint16_t)atoi(argv[1]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(ls, 1) < 0) {
		perror("listen");
		return 2;
	}
	printf("listening\n");
	fflush(stdout);
	fd = accept(ls, NULL, NULL);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_accept(ssl) != 1) {
		print_errors("accept");
		return 1;
	}
	printf("ktls: tx=%d rx=%d\n", BIO_get_ktls_send(SSL_get_wbio(ssl)),
	       BIO_get_ktls_recv(SSL_get_rbio(ssl)));
	r = SSL_read(ssl, buf, sizeof(buf));          /* CONNECT */
	printf("read connect: %d\n", r);
	r = SSL_write(ssl, connack, sizeof(connack));
	printf("write connack: %d\n", r);
	r = SSL_read(ssl, buf, sizeof(buf));          /* KeyUpdate(requested) + PINGREQ */
	printf("read after keyupdate: %d (error %d)\n", r, r > 0 ? 0 : SSL_get_error(ssl, r));
	print_errors("read");
	r = SSL_write(ssl, pingresp, sizeof(pingresp));
	printf("write after keyupdate: %d (error %d)\n", r, r > 0 ? 0 : SSL_get_error(ssl, r));
	print_errors("write");
	printf("ktls after: tx=%d\n", BIO_get_ktls_send(SSL_get_wbio(ssl)));
	fflush(stdout);
	sleep(1);
	SSL_free(ssl);
	close(fd);
	close(ls);
	SSL_CTX_free(ctx);
	return 0;
}
