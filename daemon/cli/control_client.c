/* SPDX-License-Identifier: BSD-2-Clause */
/* control_client.c - the CLI's side of the admin socket (protocol in control.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ops/control.h"
#include "ops/err.h"

int kg_control_call(const char *socket_path, const char *request, kg_control_line_cb cb, void *arg,
		    char *final, size_t final_len, int timeout_ms)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char buf[KG_CONTROL_LINE_MAX + 1];
	size_t have = 0;
	int fd, rc = KG_E_PROTO;

	if (final_len)
		final[0] = '\0';
	if (kg_strlcpy(sun.sun_path, socket_path, sizeof(sun.sun_path)) < 0)
		return KG_E_INVALID;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return KG_E_IO;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		rc = (errno == ENOENT || errno == ECONNREFUSED) ? KG_E_NOTFOUND : KG_E_IO;
		goto out_close;
	}
	{
		char line[KG_CONTROL_LINE_MAX];
		int n = snprintf(line, sizeof(line), "%s\n", request);
		ssize_t w;

		if (n < 0 || (size_t)n >= sizeof(line)) {
			errno = EMSGSIZE;
			rc = KG_E_IO;
			goto out_close;
		}
		w = write(fd, line, (size_t)n);
		if (w != n) {
			if (w >= 0)
				errno = EIO;   /* a short write */
			rc = KG_E_IO;
			goto out_close;
		}
	}
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		char *nl;
		ssize_t n;

		while ((nl = memchr(buf, '\n', have)) != NULL) {
			*nl = '\0';
			if (strncmp(buf, "OK", 2) == 0 && (buf[2] == '\0' || buf[2] == ' ')) {
				snprintf(final, final_len, "%s", buf[2] ? buf + 3 : "");
				rc = 0;
				goto out_close;
			}
			if (strncmp(buf, "ERR", 3) == 0) {
				snprintf(final, final_len, "%s", buf[3] ? buf + 4 : "error");
				rc = KG_E_DENIED;
				goto out_close;
			}
			if (cb)
				cb(buf, arg);
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have);
		}
		if (have == KG_CONTROL_LINE_MAX) {
			rc = KG_E_PROTO;   /* a line longer than the protocol allows */
			goto out_close;
		}
		n = poll(&pfd, 1, timeout_ms);
		if (n <= 0) {
			if (n == 0)
				errno = ETIMEDOUT;
			rc = KG_E_IO;
			goto out_close;
		}
		n = read(fd, buf + have, KG_CONTROL_LINE_MAX - have);
		if (n <= 0) {
			rc = KG_E_PROTO;   /* daemon hung up without a final line */
			goto out_close;
		}
		have += (size_t)n;
	}

out_close:
	{
		int saved = errno;   /* KG_E_IO: errno says why (control.h) */

		close(fd);
		errno = saved;
	}
	return rc;
}
