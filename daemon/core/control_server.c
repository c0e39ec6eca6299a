/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * control_server.c - the admin socket's server side (protocol in control.h, contract in
 * control_server.h), run on the main thread. Nothing here blocks: a client is read
 * and written only when epoll says so, its reply is built whole in memory by the
 * dispatch (worker work goes through kg_workers_call(), which never blocks on a
 * client), and one deadline bounds the whole request. Revocation ("device-changed")
 * and SIGHUP are served by the same loop, so no client can delay them.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ops/control.h"
#include "core/control_server.h"
#include "core/handover.h"
#include "core/upgrade.h"
#include "edge/edge.h"
#include "edge/edge_conf.h"
#include "ops/err.h"
#include "ops/log.h"
#include "core/worker.h"

#define CLAIM_TIMEOUT_MS 1000

/* A reply being built, then sent. */
struct out {
	char *buf;
	size_t len, cap, off;
	bool failed;               /* out of memory: the client is just closed */
};

struct client {
	int fd;                    /* -1: free slot */
	uint64_t deadline_ms;
	char line[KG_CONTROL_LINE_MAX];
	size_t have;
	bool replying;             /* request dispatched, reply in `o` being written */
	struct out o;
};

struct kg_control {
	int fd;
	int epfd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev;                 /* the socket inode we bound: only that one is unlinked */
	ino_t ino;
	bool released;             /* its listener went to another process: never unlink */
	struct client clients[KG_CONTROL_CLIENTS_MAX];
};

/* ---- ownership ---------------------------------------------------------------- */

int kg_control_claim(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct ucred cred = { 0 };
	socklen_t clen = sizeof(cred);
	int fd, rc = 0;

	if (kg_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) < 0) {
		snprintf(err, errlen, "control_socket %s: path too long", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return -1;
	}
	/* A live daemon's socket accepts at once; with its backlog full a blocking
	 * unix connect waits, for at most SO_SNDTIMEO (then EAGAIN). */
	{
		struct timeval tv = { .tv_sec = CLAIM_TIMEOUT_MS / 1000,
				      .tv_usec = (CLAIM_TIMEOUT_MS % 1000) * 1000 };
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 && cred.pid > 0)
			snprintf(err, errlen,
				 "control_socket %s: another ktlsgated (pid %ld) is running and answers on it;"
				 " not starting a second one",
				 path, (long)cred.pid);
		else
			snprintf(err, errlen,
				 "control_socket %s: another ktlsgated is running and answers on it;"
				 " not starting a second one",
				 path);
		rc = -1;
	} else if (errno == EAGAIN || errno == EINPROGRESS || errno == ETIMEDOUT) {
		/* Its backlog is full: someone is listening, busy. Still not ours. */
		snprintf(err, errlen,
			 "control_socket %s: another process is listening on it (backlog full);"
			 " not starting a second ktlsgated",
			 path);
		rc = -1;
	}
	/* ENOENT: no socket; ECONNREFUSED: a stale one nobody listens on. */
	close(fd);
	return rc;
}

/* A server for `path` (its address in *sun), no client yet, fd as given (-1: to be
 * bound). NULL with a message: the path does not fit a socket address, or no memory. */
static struct kg_control *control_new(const char *path, int fd, int epfd, struct sockaddr_un *sun,
				      char *err, size_t errlen)
{
	struct kg_control *c;

	if (kg_strlcpy(sun->sun_path, path, sizeof(sun->sun_path)) < 0) {
		snprintf(err, errlen, "control_socket %s: path too long", path);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->fd = fd;
	c->epfd = epfd;
	memcpy(c->path, sun->sun_path, sizeof(c->path));
	for (size_t i = 0; i < KG_CONTROL_CLIENTS_MAX; i++)
		c->clients[i].fd = -1;
	return c;
}

struct kg_control *kg_control_listen(const char *path, int epfd, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct kg_control *c;
	struct stat st;
	mode_t old;

	c = control_new(path, -1, epfd, &sun, err, errlen);
	if (c == NULL)
		return NULL;
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
				goto out_free;
			}
		}
	}
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		goto out_free;
	}
	/* A stale socket from a previous run would make bind fail. kg_control_claim()
	 * found nobody answering on it and the instance lock is ours. Only remove a
	 * socket: never a regular file someone pointed us at by mistake. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		(void)unlink(path);
	old = umask(0077);   /* root-only: the socket can disable devices */
	if (bind(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		umask(old);
		snprintf(err, errlen, "control_socket %s: %s", path, strerror(errno));
		goto out_close;
	}
	umask(old);
	if (lstat(path, &st) < 0) {
		snprintf(err, errlen, "control_socket %s: %s", path, strerror(errno));
		goto out_close;
	}
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	if (listen(c->fd, 16) < 0) {
		snprintf(err, errlen, "control_socket %s: %s", path, strerror(errno));
		goto out_unlink;
	}
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = c->fd };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
			snprintf(err, errlen, "control_socket %s: epoll: %s", path, strerror(errno));
			goto out_unlink;
		}
	}
	return c;

out_unlink:
	(void)unlink(path);
out_close:
	close(c->fd);
out_free:
	free(c);
	return NULL;
}

static void client_close(struct kg_control *c, struct client *cl)
{
	if (cl->fd < 0)
		return;
	(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, cl->fd, NULL);
	close(cl->fd);
	free(cl->o.buf);
	memset(&cl->o, 0, sizeof(cl->o));
	cl->fd = -1;
	cl->have = 0;
	cl->replying = false;
}

void kg_control_close(struct kg_control *c)
{
	struct stat st;

	if (c == NULL)
		return;
	for (size_t i = 0; i < KG_CONTROL_CLIENTS_MAX; i++)
		client_close(c, &c->clients[i]);
	if (c->fd >= 0)
		close(c->fd);
	if (c->released) {
		/* A handover: the same socket, at the same path, is the new process's now. */
		free(c);
		return;
	}
	/* Another daemon may have replaced the socket since (by hand, or an older build):
	 * its socket is not ours to remove. */
	if (lstat(c->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == c->dev &&
	    st.st_ino == c->ino)
		(void)unlink(c->path);
	else
		kg_log_warnx("control_socket %s: no longer the socket we bound; left in place", c->path);
	free(c);
}

struct kg_control *kg_control_adopt(const char *path, int fd, int epfd, char *err,
				    size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct kg_control *c;
	struct stat st;

	c = control_new(path, fd, epfd, &sun, err, errlen);
	if (c == NULL)
		return NULL;
	/* The path names the socket the old process bound, which is this one: ours to
	 * unlink at exit from now on. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		c->dev = st.st_dev;
		c->ino = st.st_ino;
	}
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			snprintf(err, errlen, "control_socket %s: epoll: %s", path, strerror(errno));
			free(c);
			return NULL;
		}
	}
	return c;
}

int kg_control_fd(const struct kg_control *c)
{
	return c != NULL ? c->fd : -1;
}

void kg_control_release(struct kg_control *c)
{
	if (c == NULL || c->fd < 0)
		return;
	(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->released = true;
}

/* ---- replies ------------------------------------------------------------------ */

static void out_put(struct out *o, const char *p, size_t len)
{
	if (o->failed)
		return;
	if (o->len + len > o->cap) {
		size_t cap = o->cap ? o->cap : 512;
		char *nb;

		while (cap < o->len + len)
			cap *= 2;
		nb = realloc(o->buf, cap);
		if (nb == NULL) {
			o->failed = true;
			return;
		}
		o->buf = nb;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, p, len);
	o->len += len;
}

static void reply(struct out *o, const char *fmt, ...) KG_PRINTF(2, 3);
static void reply(struct out *o, const char *fmt, ...)
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
	out_put(o, line, (size_t)n);
}

/* One line per worker after the status object (the CLI gathers them into its
 * "per_worker" array): a line each keeps every reply line far below
 * KG_CONTROL_LINE_MAX, whatever the worker count. */
static void do_status_workers(struct kg_daemon *d, struct out *o)
{
	for (unsigned i = 0; i < d->n_workers; i++) {
		struct json_object *j = json_object_new_object();
		struct kg_worker_stat st;
		char cpu[32];

		if (j == NULL) {
			o->failed = true;
			return;
		}
		kg_worker_stat(&d->workers[i], &st);
		json_object_object_add(j, "worker", json_object_new_int((int)st.worker));
		json_object_object_add(j, "accepted", json_object_new_uint64(st.accepted));
		json_object_object_add(j, "handshakes_ok", json_object_new_uint64(st.handshakes[KG_HS_OK]));
		json_object_object_add(j, "handshakes_failed",
				       json_object_new_uint64(st.handshakes[KG_HS_FAILED]));
		json_object_object_add(j, "handshakes_timeout",
				       json_object_new_uint64(st.handshakes[KG_HS_TIMEOUT]));
		json_object_object_add(j, "connections", json_object_new_int64(st.connections));
		json_object_object_add(j, "sessions", json_object_new_int64(st.sessions));
		json_object_object_add(j, "bytes_up", json_object_new_uint64(st.bytes[KG_DIR_UP]));
		json_object_object_add(j, "bytes_down", json_object_new_uint64(st.bytes[KG_DIR_DOWN]));
		/* to the millisecond: more digits are noise at the scale operators read */
		snprintf(cpu, sizeof(cpu), "%.3f", st.cpu_seconds);
		json_object_object_add(j, "cpu_s", st.cpu_seconds >= 0
				       ? json_object_new_double_s(st.cpu_seconds, cpu) : NULL);
		reply(o, "%s", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
		json_object_put(j);
	}
}

static void do_status(struct kg_daemon *d, struct out *o)
{
	struct json_object *j = json_object_new_object();
	struct kg_snapshot *s = kg_snapshot_get(d);
	struct timespec now;
	char shown[PATH_MAX];

	clock_gettime(CLOCK_REALTIME, &now);
	json_object_object_add(j, "version", json_object_new_string(KG_VERSION));
	json_object_object_add(j, "pid", json_object_new_int((int)getpid()));
	json_object_object_add(j, "uptime_s", json_object_new_int64(now.tv_sec - d->started));
	json_object_object_add(j, "config", json_object_new_string(d->config_path));
	json_object_object_add(j, "config_generation", json_object_new_uint64(s->generation));
	json_object_object_add(j, "workers", json_object_new_int((int)d->n_workers));
	json_object_object_add(j, "connections", json_object_new_int64(atomic_load(&d->n_conns)));
	json_object_object_add(j, "handshakes_in_flight", json_object_new_int64(atomic_load(&d->n_handshakes)));
	json_object_object_add(j, "cas_trusted", json_object_new_uint64(kg_trust_count(s->trust, true)));
	/* status is read by operators and scripts: a URI's password is not theirs */
	(void)kg_registry_location_redact(s->cfg.registry, shown, sizeof(shown));
	json_object_object_add(j, "registry", json_object_new_string(shown));
	json_object_object_add(j, "reloads", json_object_new_uint64(atomic_load(&d->reloads)));
	json_object_object_add(j, "reload_failures", json_object_new_uint64(atomic_load(&d->reload_failures)));
	{
		uint64_t window_ms = 0;
		double imb = kg_workers_accept_imbalance(d, &window_ms);
		char txt[32];

		/* null: too few accepts in the window to judge (ops/balance.h) */
		snprintf(txt, sizeof(txt), "%.3f", imb);
		json_object_object_add(j, "accept_imbalance",
				       imb > 0 ? json_object_new_double_s(imb, txt) : NULL);
		json_object_object_add(j, "accept_window_s", json_object_new_uint64(window_ms / 1000));
	}
	kg_handover_status(d, j);
	reply(o, "%s", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
	json_object_put(j);
	kg_snapshot_put(s);
	do_status_workers(d, o);
	reply(o, "OK");
}

static void fan_out(struct kg_daemon *d, struct out *o, enum kg_cmd_type type, const char *arg)
{
	struct kg_cmd cmd = { .type = type };

	if (arg && kg_strlcpy(cmd.arg, arg, sizeof(cmd.arg)) < 0) {
		reply(o, "ERR argument too long");
		return;
	}
	if (kg_workers_call(d, &cmd) < 0) {
		free(cmd.out);
		reply(o, "ERR workers unavailable");
		return;
	}
	if (type == KG_CMD_LIST_SESSIONS) {
		char *peer = NULL;
		size_t peer_len = 0;

		if (cmd.out)
			out_put(o, cmd.out, cmd.out_len);
		/* A draining old process's sessions too, each naming its pid. */
		kg_handover_peer_sessions(d, &peer, &peer_len);
		if (peer != NULL)
			out_put(o, peer, peer_len);
		free(peer);
		reply(o, "OK");
	} else {
		reply(o, "OK closed=%u", cmd.closed);
	}
	free(cmd.out);
}

/* ---- the XDP gate's deny list (`ktlsgate block` without the pins) --------------- */

/* The longest `block add --for` the CLI takes: ten years. */
#define BLOCK_SECS_MAX (86400ull * 3650)

static int block_addr(struct out *o, const char *text, uint8_t addr[16])
{
	if (text == NULL || kg_edge_addr_parse(text, addr) < 0) {
		reply(o, "ERR '%s' is not a numeric IPv4 or IPv6 address", text ? text : "");
		return -1;
	}
	return 0;
}

/* "ADDR SECONDS" (0: until removed) -> OK [allow_listed] */
static void do_block_add(struct kg_daemon *d, struct out *o, char *arg)
{
	char *secs_text = arg ? strchr(arg, ' ') : NULL, *end;
	char why[KG_ERRBUF];
	unsigned long long secs;
	uint8_t addr[16];
	bool allowed;

	if (secs_text == NULL) {
		reply(o, "ERR usage: block-add ADDR SECONDS");
		return;
	}
	*secs_text++ = '\0';
	if (block_addr(o, arg, addr) < 0)
		return;
	errno = 0;
	secs = strtoull(secs_text, &end, 10);
	if (*secs_text < '0' || *secs_text > '9' || *end != '\0' || errno || secs > BLOCK_SECS_MAX) {
		reply(o, "ERR '%s' is not a number of seconds (0..%llu)", secs_text,
		      BLOCK_SECS_MAX);
		return;
	}
	if (kg_edge_gate_block(d->edge, addr, secs, &allowed, why, sizeof(why)) < 0)
		reply(o, "ERR %s", why);
	else
		reply(o, allowed ? "OK allow_listed" : "OK");
}

/* "ADDR" -> OK removed=1 | OK removed=0 (it was not blocked) */
static void do_block_remove(struct kg_daemon *d, struct out *o, const char *arg)
{
	char why[KG_ERRBUF];
	uint8_t addr[16];
	int rc;

	if (block_addr(o, arg, addr) < 0)
		return;
	rc = kg_edge_gate_unblock(d->edge, addr, why, sizeof(why));
	if (rc == -ENOENT)
		reply(o, "OK removed=0");
	else if (rc < 0)
		reply(o, "ERR %s", why);
	else
		reply(o, "OK removed=1");
}

static int block_line(const struct kg_edge_block_entry *en, void *arg)
{
	struct json_object *j = kg_edge_block_entry_json(en);

	if (j == NULL) {
		((struct out *)arg)->failed = true;   /* the client sees a hang-up, not half a list */
		return -1;
	}
	reply(arg, "%s", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
	json_object_put(j);
	return 0;
}

/* -> one JSON object line per live entry, OK */
static void do_block_list(struct kg_daemon *d, struct out *o)
{
	char why[KG_ERRBUF];

	if (kg_edge_gate_list(d->edge, block_line, o, why, sizeof(why)) < 0) {
		if (!o->failed)
			reply(o, "ERR %s", why);
		return;
	}
	reply(o, "OK");
}

/* -> {"passed":N,"dropped_deny":N,"dropped_rate":N}, OK */
static void do_block_stats(struct kg_daemon *d, struct out *o)
{
	uint64_t sum[KG_XDP_STAT_MAX];
	char why[KG_ERRBUF], line[256];

	if (kg_edge_gate_verdicts(d->edge, sum, why, sizeof(why)) < 0) {
		reply(o, "ERR %s", why);
		return;
	}
	(void)kg_edge_block_stats_format(sum, line, sizeof(line));
	reply(o, "%s", line);
	reply(o, "OK");
}

/* -> OK deny=ID allow=ID stats=ID */
static void do_block_maps(struct kg_daemon *d, struct out *o)
{
	char why[KG_ERRBUF];
	uint32_t ids[3];

	if (kg_edge_gate_map_ids(d->edge, ids, why, sizeof(why)) < 0)
		reply(o, "ERR %s", why);
	else
		reply(o, "OK deny=%" PRIu32 " allow=%" PRIu32 " stats=%" PRIu32, ids[0], ids[1],
		      ids[2]);
}

static void dispatch(struct kg_daemon *d, struct out *o, char *line)
{
	char *arg = strchr(line, ' ');
	char err[KG_ERRBUF];

	if (arg)
		*arg++ = '\0';
	if (strcmp(line, "ping") == 0) {
		reply(o, "OK pong");
	} else if (strcmp(line, "status") == 0) {
		do_status(d, o);
	} else if (strcmp(line, "reload") == 0) {
		bool ok;

		kg_notify_reloading(&d->notify);   /* systemd: around it, as for SIGHUP */
		ok = kg_daemon_reload(d, err, sizeof(err)) == 0;
		kg_notify_reloaded(&d->notify, ok, err);
		if (!ok) {
			reply(o, "ERR %s", err);
		} else {
			reply(o, "OK reloaded");
			kg_handover_forward(d, line, NULL);
		}
	} else if (strcmp(line, "device-changed") == 0 && arg) {
		/* A draining old process (handover.h) holds sessions too: it revokes its own. */
		kg_handover_forward(d, line, arg);
		fan_out(d, o, KG_CMD_REVALIDATE_DEVICE, arg);
	} else if (strcmp(line, "ca-changed") == 0 && arg) {
		kg_handover_forward(d, line, arg);
		if (kg_daemon_refresh_trust(d, err, sizeof(err)) < 0) {
			reply(o, "ERR %s", err);
			return;
		}
		fan_out(d, o, KG_CMD_REVALIDATE_CA, arg);
	} else if (strcmp(line, "upgrade") == 0 && arg == NULL) {
		pid_t pid;

		if (kg_upgrade_spawn(d, &pid, err, sizeof(err)) < 0)
			reply(o, "ERR %s", err);
		else
			reply(o, "OK %ld", (long)pid);
	} else if (strcmp(line, "sessions") == 0) {
		fan_out(d, o, KG_CMD_LIST_SESSIONS, NULL);
	} else if (strcmp(line, "kill") == 0 && arg) {
		kg_handover_forward(d, line, arg);
		fan_out(d, o, KG_CMD_KILL_DEVICE, arg);
	} else if (strcmp(line, "block-add") == 0) {
		do_block_add(d, o, arg);
	} else if (strcmp(line, "block-remove") == 0) {
		do_block_remove(d, o, arg);
	} else if (strcmp(line, "block-list") == 0 && arg == NULL) {
		do_block_list(d, o);
	} else if (strcmp(line, "block-stats") == 0 && arg == NULL) {
		do_block_stats(d, o);
	} else if (strcmp(line, "block-maps") == 0 && arg == NULL) {
		do_block_maps(d, o);
	} else {
		reply(o, "ERR unknown request");
	}
}

/* ---- clients ------------------------------------------------------------------ */

bool kg_control_owns(const struct kg_control *c, int fd)
{
	if (c == NULL)
		return false;
	if (fd == c->fd)
		return true;
	for (size_t i = 0; i < KG_CONTROL_CLIENTS_MAX; i++)
		if (c->clients[i].fd == fd)
			return true;
	return false;
}

static struct client *client_of(struct kg_control *c, int fd)
{
	for (size_t i = 0; i < KG_CONTROL_CLIENTS_MAX; i++)
		if (c->clients[i].fd == fd)
			return &c->clients[i];
	return NULL;
}

/* Write what the socket takes; true when the client is finished (all sent or gone). */
static bool client_flush(struct client *cl)
{
	while (cl->o.off < cl->o.len) {
		ssize_t n = send(cl->fd, cl->o.buf + cl->o.off, cl->o.len - cl->o.off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno != EAGAIN && errno != EWOULDBLOCK;
		}
		cl->o.off += (size_t)n;
	}
	return true;
}

/* Reply is built: send it, or wait for EPOLLOUT. True when the client can go. */
static bool client_reply(struct kg_control *c, struct client *cl)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.fd = cl->fd };

	cl->replying = true;
	if (cl->o.failed || client_flush(cl))
		return true;
	(void)epoll_ctl(c->epfd, EPOLL_CTL_MOD, cl->fd, &ev);
	return false;
}

/* Read what is there; dispatch on a full line. True when the client can go. */
static bool client_read(struct kg_daemon *d, struct kg_control *c, struct client *cl)
{
	for (;;) {
		ssize_t n = recv(cl->fd, cl->line + cl->have, sizeof(cl->line) - 1 - cl->have,
				 MSG_DONTWAIT);
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (n <= 0)
			return true;   /* hung up before a whole line: nothing to answer */
		cl->have += (size_t)n;
		cl->line[cl->have] = '\0';
		nl = memchr(cl->line, '\n', cl->have);
		if (nl != NULL) {
			*nl = '\0';
			/* `ktlsgated --takeover`: this connection becomes the handover channel,
			 * out of the one-request machinery (and its deadline) from here. */
			if (strncmp(cl->line, "handover", 8) == 0 &&
			    (cl->line[8] == '\0' || cl->line[8] == ' ')) {
				char arg[16] = "";
				int fd = cl->fd;

				if (cl->line[8] == ' ')
					(void)kg_strlcpy(arg, cl->line + 9, sizeof(arg));
				(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
				cl->fd = -1;
				cl->have = 0;
				kg_handover_serve(d, fd, cl->line[8] == ' ' ? arg : NULL);
				return false;
			}
			(void)epoll_ctl(c->epfd, EPOLL_CTL_MOD, cl->fd,
					&(struct epoll_event){ .events = 0, .data.fd = cl->fd });
			dispatch(d, &cl->o, cl->line);
			return client_reply(c, cl);
		}
		if (cl->have == sizeof(cl->line) - 1) {
			reply(&cl->o, "ERR request too long");
			return client_reply(c, cl);
		}
	}
}

/* The client to close when all slots are taken: the oldest that is still silent or
 * reading (one whose request ran is only waiting for its reply to drain: closing it
 * would hide an applied change from its CLI), else the oldest. */
static struct client *oldest(struct kg_control *c)
{
	struct client *best = NULL, *any = &c->clients[0];

	for (size_t i = 0; i < KG_CONTROL_CLIENTS_MAX; i++) {
		struct client *cl = &c->clients[i];

		if (cl->deadline_ms < any->deadline_ms)
			any = cl;
		if (!cl->replying && (best == NULL || cl->deadline_ms < best->deadline_ms))
			best = cl;
	}
	return best != NULL ? best : any;
}

static void accept_all(struct kg_control *c)
{
	int fd;

	while ((fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
		struct client *cl = client_of(c, -1);
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

		if (cl == NULL) {
			/* Full: the oldest gives way. Stuck clients cannot lock the operator
			 * out (a revocation's "device-changed" must get through); a flood of
			 * fresh ones still costs only slots, never the main thread. */
			cl = oldest(c);
			kg_log_warnx("control_socket %s: %d clients open: the oldest closed", c->path,
				     KG_CONTROL_CLIENTS_MAX);
			client_close(c, cl);
		}
		if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			continue;
		}
		memset(cl, 0, sizeof(*cl));
		cl->fd = fd;
		cl->deadline_ms = kg_now_ms() + KG_CONTROL_DEADLINE_MS;
	}
}

void kg_control_event(struct kg_daemon *d, struct kg_control *c, int fd, uint32_t events)
{
	struct client *cl;
	bool finished;

	if (fd == c->fd) {
		accept_all(c);
		return;
	}
	cl = client_of(c, fd);
	if (cl == NULL)
		return;
	if (cl->replying)
		finished = (events & (EPOLLERR | EPOLLHUP)) != 0 || client_flush(cl);
	else
		finished = client_read(d, c, cl);
	if (finished)
		client_close(c, cl);
}

int kg_control_expire(struct kg_control *c)
{
	uint64_t now = kg_now_ms(), next = 0;

	if (c == NULL)
		return -1;
	for (size_t i = 0; i < KG_CONTROL_CLIENTS_MAX; i++) {
		struct client *cl = &c->clients[i];

		if (cl->fd < 0)
			continue;
		if (cl->deadline_ms <= now) {
			kg_log_debug("control client %s after %d ms: closed",
				     cl->replying ? "did not read its reply" : "sent no whole request",
				     KG_CONTROL_DEADLINE_MS);
			client_close(c, cl);
			continue;
		}
		if (next == 0 || cl->deadline_ms < next)
			next = cl->deadline_ms;
	}
	return next == 0 ? -1 : (int)(next - now);
}
