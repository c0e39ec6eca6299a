/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * steer_check.c - worker steering (steer.h) on the real kernel: four SO_REUSEPORT
 * listeners on 127.0.0.1 stand for four workers; connections are made and each
 * listener's accept() count shows which worker the SK_REUSEPORT program picked.
 *   least_loaded: with workers 0-2 reporting 5 handshakes in flight and worker 3 none,
 *                 every connection goes to worker 3; once worker 3 reports 10, none do.
 *   hash:         connections spread over all workers; with worker 3's slot left
 *                 empty, its share falls back to the kernel's hash: nothing refused.
 * Prints one line per case and exits 0 only if every check held (77: no CAP_BPF).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "edge/steer.h"

#define NW 4

static int listeners(int fds[NW], unsigned short *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int one = 1;

	for (int i = 0; i < NW; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (fds[i] < 0 || setsockopt(fds[i], SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
		    bind(fds[i], (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fds[i], 512) < 0)
			return -1;
		if (i == 0) {
			if (getsockname(fds[0], (struct sockaddr *)&a, &len) < 0)
				return -1;
			*port = ntohs(a.sin_port);
		}
	}
	return 0;
}

/* n connects to port; then drain every listener. counts[w] += accepted on w. */
static int connect_and_count(unsigned short port, int fds[NW], int n, int counts[NW])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int failed = 0;

	for (int i = 0; i < n; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);

		if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
			failed++;
		if (c >= 0)
			close(c);
	}
	for (int w = 0; w < NW; w++) {
		int s;

		while ((s = accept(fds[w], NULL, NULL)) >= 0) {
			counts[w]++;
			close(s);
		}
	}
	return failed;
}

static void show(const char *what, const int c[NW], int failed)
{
	printf("%-34s workers 0..3 accepted %3d %3d %3d %3d, failed connects %d\n", what, c[0], c[1],
	       c[2], c[3], failed);
}

int main(void)
{
	int fds[NW], c[NW] = { 0 }, failed, ok = 1;
	unsigned short port;
	char why[256];
	struct kg_steer *s;

	/* least loaded */
	if (listeners(fds, &port) < 0) {
		perror("steer_check: listeners");
		return 1;
	}
	s = kg_steer_new(KG_STEER_LEAST_LOADED, NW, why, sizeof(why));
	if (s == NULL) {
		printf("SKIP steer_check: %s\n", why);
		return 77;
	}
	for (int w = 0; w < NW; w++) {
		if (kg_steer_add(s, 0, (unsigned)w, fds[w], why, sizeof(why)) < 0) {
			printf("FAIL steer_check: %s\n", why);
			return 1;
		}
	}
	for (int w = 0; w < 3; w++)
		kg_steer_load_add(s, (unsigned)w, 5);
	failed = connect_and_count(port, fds, 60, c);
	show("least_loaded, loads 5 5 5 0:", c, failed);
	ok &= failed == 0 && c[3] == 60;
	memset(c, 0, sizeof(c));
	kg_steer_load_add(s, 3, 10);
	failed = connect_and_count(port, fds, 60, c);
	show("least_loaded, loads 5 5 5 10:", c, failed);
	ok &= failed == 0 && c[3] == 0 && c[0] + c[1] + c[2] == 60;
	kg_steer_free(s);
	for (int w = 0; w < NW; w++)
		close(fds[w]);

	/* hash, worker 3's slot empty */
	if (listeners(fds, &port) < 0) {
		perror("steer_check: listeners");
		return 1;
	}
	s = kg_steer_new(KG_STEER_HASH, NW, why, sizeof(why));
	if (s == NULL) {
		printf("FAIL steer_check: %s\n", why);
		return 1;
	}
	for (int w = 0; w < 3; w++) {
		if (kg_steer_add(s, 0, (unsigned)w, fds[w], why, sizeof(why)) < 0) {
			printf("FAIL steer_check: %s\n", why);
			return 1;
		}
	}
	memset(c, 0, sizeof(c));
	failed = connect_and_count(port, fds, 400, c);
	show("hash, slot 3 empty (kernel picks):", c, failed);
	ok &= failed == 0 && c[0] + c[1] + c[2] + c[3] == 400 && c[0] > 0 && c[1] > 0 && c[2] > 0;
	kg_steer_free(s);
	for (int w = 0; w < NW; w++)
		close(fds[w]);
	printf("%s steer_check\n", ok ? "PASS" : "FAIL");
	return ok ? 0 : 1;
}
