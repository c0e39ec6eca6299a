/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * control.c - the admin socket's server side (protocol in control.h), run on the
 * main thread. One request per connection, read with a short deadline so a stuck
 * client cannot hold the main thread; worker work goes through kg_workers_call().
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ktlsgate/control.h"
#include "ktlsgate/control_server.h"
#include "ktlsgate/err.h"
#include "ktlsgate/log.h"
#include "ktlsgate/worker.h"

#define CONTROL_READ_MS 1000

int kg_control_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	mode_t old;
	int fd;

	if (kg_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) < 0) {
		snprintf(err, errlen, "control_socket %s: path too long", path);
		return -1;
	}
	/* The default lives in /run/ktlsgate, which systemd's RuntimeDirectory= makes; a
	 * daemon started by hand makes the one missing level itself (root-only). */
	{
		char dir[sizeof(sun.sun_path)];
		char *slash;

		memcpy(dir, sun.sun_path, sizeof(dir));
		slash = strrchr(dir, '/');
		if (slash != NULL && slash != dir) {
			*slash = '\0';
			if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
				snprintf(err, errlen, "control_socket %s: cannot create %s: %s", path, dir,
					 strerror(errno));
				return -1;
			}
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return -1;
	}
	/* A stale socket from a previous run would make bind fail. Only remove a socket:
	 * never a regular file someone pointed us at by mistake. */
	{
		struct stat st;
		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			(void)unlink(path);
	}
	old = umask(0077);   /* root-only: the socket can disable devices */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		umask(old);
		snprintf(err, errlen, "control_socket %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	if (listen(fd, 16) < 0) {
		snprintf(err, errlen, "control_socket %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void reply(int fd, const char *fmt, ...) KG_PRINTF(2, 3);
static void reply(int fd, const char *fmt, ...)
{
	char line[KG_CONTROL_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(fd, line, (size_t)n);
}

static void write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return;
		}
		p += n;
		len -= (size_t)n;
	}
}

static void do_status(struct kg_daemon *d, int fd)
{
	struct json_object *o = json_object_new_object();
	struct kg_snapshot *s = kg_snapshot_get(d);
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	json_object_object_add(o, "version", json_object_new_string(KG_VERSION));
	json_object_object_add(o, "pid", json_object_new_int((int)getpid()));
	json_object_object_add(o, "uptime_s", json_object_new_int64(now.tv_sec - d->started));
	json_object_object_add(o, "config", json_object_new_string(d->config_path));
	json_object_object_add(o, "config_generation", json_object_new_uint64(s->generation));
	json_object_object_add(o, "workers", json_object_new_int((int)d->n_workers));
	json_object_object_add(o, "connections", json_object_new_int64(atomic_load(&d->n_conns)));
	json_object_object_add(o, "handshakes_in_flight", json_object_new_int64(atomic_load(&d->n_handshakes)));
	json_object_object_add(o, "cas_trusted", json_object_new_uint64(kg_trust_count(s->trust, true)));
	json_object_object_add(o, "registry", json_object_new_string(s->cfg.registry));
	json_object_object_add(o, "reloads", json_object_new_uint64(atomic_load(&d->reloads)));
	json_object_object_add(o, "reload_failures", json_object_new_uint64(atomic_load(&d->reload_failures)));
	reply(fd, "%s", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	kg_snapshot_put(s);
	reply(fd, "OK");
}

static void fan_out(struct kg_daemon *d, int fd, enum kg_cmd_type type, const char *arg)
{
	struct kg_cmd cmd = { .type = type };

	if (arg && kg_strlcpy(cmd.arg, arg, sizeof(cmd.arg)) < 0) {
		reply(fd, "ERR argument too long");
		return;
	}
	if (kg_workers_call(d, &cmd) < 0) {
		free(cmd.out);
		reply(fd, "ERR workers unavailable");
		return;
	}
	if (type == KG_CMD_LIST_SESSIONS) {
		if (cmd.out)
			write_all(fd, cmd.out, cmd.out_len);
		reply(fd, "OK");
	} else {
		reply(fd, "OK closed=%u", cmd.closed);
	}
	free(cmd.out);
}

static void dispatch(struct kg_daemon *d, int fd, char *line)
{
	char *arg = strchr(line, ' ');
	char err[KG_ERRBUF];

	if (arg)
		*arg++ = '\0';
	if (strcmp(line, "ping") == 0) {
		reply(fd, "OK pong");
	} else if (strcmp(line, "status") == 0) {
		do_status(d, fd);
	} else if (strcmp(line, "reload") == 0) {
		if (kg_daemon_reload(d, err, sizeof(err)) < 0)
			reply(fd, "ERR %s", err);
		else
			reply(fd, "OK reloaded");
	} else if (strcmp(line, "device-changed") == 0 && arg) {
		fan_out(d, fd, KG_CMD_REVALIDATE_DEVICE, arg);
	} else if (strcmp(line, "ca-changed") == 0 && arg) {
		if (kg_daemon_refresh_trust(d, err, sizeof(err)) < 0) {
			reply(fd, "ERR %s", err);
			return;
		}
		fan_out(d, fd, KG_CMD_REVALIDATE_CA, arg);
	} else if (strcmp(line, "sessions") == 0) {
		fan_out(d, fd, KG_CMD_LIST_SESSIONS, NULL);
	} else if (strcmp(line, "kill") == 0 && arg) {
		fan_out(d, fd, KG_CMD_KILL_DEVICE, arg);
	} else {
		reply(fd, "ERR unknown request");
	}
}

void kg_control_accept(struct kg_daemon *d)
{
	char line[KG_CONTROL_LINE_MAX];
	size_t have = 0;
	int fd;

	while ((fd = accept4(d->control_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		have = 0;
		for (;;) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			ssize_t n;
			char *nl;

			if (poll(&pfd, 1, CONTROL_READ_MS) <= 0)
				break;
			n = read(fd, line + have, sizeof(line) - 1 - have);
			if (n <= 0)
				break;
			have += (size_t)n;
			line[have] = '\0';
			nl = strchr(line, '\n');
			if (nl != NULL) {
				*nl = '\0';
				dispatch(d, fd, line);
				break;
			}
			if (have == sizeof(line) - 1) {
				reply(fd, "ERR request too long");
				break;
			}
		}
		close(fd);
	}
}
