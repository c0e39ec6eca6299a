/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kg_ktls_ciphers.c - which ciphers this kernel's TLS takes, asked the way OpenSSL and
 * the daemon ask it: a connected loopback TCP pair, TCP_ULP "tls" on one end, then
 * setsockopt(SOL_TLS, TLS_TX) and TLS_RX with a TLS 1.3 key of that cipher (zeros: the
 * key is never used). The kernel allocates the cipher's AEAD there, so a cipher whose
 * modules are missing (or cannot be loaded) fails right in the setsockopt.
 * Usage: kg-ktls-ciphers CIPHER... (aes128gcm, aes256gcm, chacha20poly1305)
 * Prints one line per cipher: "CIPHER tx=ok rx=ok" or "tx=ERRNO_NAME(N)"; exit 0, or 2
 * when the test itself could not run (no loopback, no TLS ULP, unknown cipher).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

/* A connected pair over 127.0.0.1: fd[0] the client end, fd[1] the accepted one. */
static int tcp_pair(int fd[2])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	fd[0] = fd[1] = -1;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sin, &len) < 0)
		goto out_fail;
	fd[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (fd[0] < 0 || connect(fd[0], (struct sockaddr *)&sin, sizeof(sin)) < 0)
		goto out_fail;
	fd[1] = accept(l, NULL, NULL);
	if (fd[1] < 0)
		goto out_fail;
	close(l);
	return 0;

out_fail:
	perror("kg-ktls-ciphers: loopback pair");
	if (fd[0] >= 0)
		close(fd[0]);
	if (l >= 0)
		close(l);
	return -1;
}

/* One direction's setsockopt: 0 or the errno. */
static int install(int fd, int dir, const char *cipher)
{
	union {
		struct tls12_crypto_info_aes_gcm_128 g128;
		struct tls12_crypto_info_aes_gcm_256 g256;
		struct tls12_crypto_info_chacha20_poly1305 cc;
	} ci;
	socklen_t len;

	memset(&ci, 0, sizeof(ci));
	if (strcmp(cipher, "aes128gcm") == 0) {
		ci.g128.info.version = TLS_1_3_VERSION;
		ci.g128.info.cipher_type = TLS_CIPHER_AES_GCM_128;
		len = sizeof(ci.g128);
	} else if (strcmp(cipher, "aes256gcm") == 0) {
		ci.g256.info.version = TLS_1_3_VERSION;
		ci.g256.info.cipher_type = TLS_CIPHER_AES_GCM_256;
		len = sizeof(ci.g256);
	} else {
		ci.cc.info.version = TLS_1_3_VERSION;
		ci.cc.info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
		len = sizeof(ci.cc);
	}
	return setsockopt(fd, SOL_TLS, dir, &ci, len) == 0 ? 0 : errno;
}

static const char *errname(int e)
{
	switch (e) {
	case 0: return "ok";
	case ENOENT: return "ENOENT";
	case EINVAL: return "EINVAL";
	case EBUSY: return "EBUSY";
	case ENOMEM: return "ENOMEM";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	default: return "errno";
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: kg-ktls-ciphers aes128gcm|aes256gcm|chacha20poly1305...\n");
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		int fd[2], tx, rx;

		if (strcmp(argv[i], "aes128gcm") != 0 && strcmp(argv[i], "aes256gcm") != 0 &&
		    strcmp(argv[i], "chacha20poly1305") != 0) {
			fprintf(stderr, "kg-ktls-ciphers: unknown cipher %s\n", argv[i]);
			return 2;
		}
		if (tcp_pair(fd) < 0)
			return 2;
		if (setsockopt(fd[0], SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0) {
			fprintf(stderr, "kg-ktls-ciphers: TCP_ULP tls: %s\n", strerror(errno));
			return 2;
		}
		tx = install(fd[0], TLS_TX, argv[i]);
		rx = install(fd[0], TLS_RX, argv[i]);
		printf("%s tx=%s", argv[i], errname(tx));
		if (tx != 0)
			printf("(%d)", tx);
		printf(" rx=%s", errname(rx));
		if (rx != 0)
			printf("(%d)", rx);
		printf("\n");
		close(fd[0]);
		close(fd[1]);
	}
	return 0;
}
