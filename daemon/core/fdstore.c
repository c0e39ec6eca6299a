/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fdstore.c - the device listeners kept by systemd across a restart (contract in
 * fdstore.h). The sockets are the kernel's: systemd's duplicate keeps each open, with
 * its accept queue and its place in the SO_REUSEPORT group, while no ktlsgated runs.
 * A kept socket is used only if it is what this configuration would have bound: a
 * listening TCP socket on one of its listen addresses. Anything else systemd passed is
 * closed, and publish() drops it from the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/daemon.h"
#include "core/fdstore.h"
#include "core/handover_msg.h"
#include "core/listener.h"
#include "core/worker.h"
#include "ktlsgate/clock.h"
#include "ops/log.h"
#include "ops/metrics.h"
#include "ops/notify.h"

/* What a kept socket is for: a device listener (index: its listen address) or the
 * /metrics listener (METRICS_INDEX). */
#define METRICS_INDEX ((size_t)-1)

struct kg_fdstore {
	int records;          /* the previous process's session records (memfd), or -1 */
	int *sess;            /* their sockets (-1 once taken) */
	size_t n_sess;
	size_t n;
	struct {
		int fd;          /* -1 once taken */
		size_t index;    /* its listen address in the configuration, or METRICS_INDEX */
	} kept[];
};

bool kg_fdstore_addr_matches(const struct sockaddr *got, socklen_t len,
			     const struct kg_sockaddr *want)
{
	const struct sockaddr *w = (const struct sockaddr *)&want->ss;

	if (got->sa_family != w->sa_family)
		return false;
	if (got->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)got;
		const struct sockaddr_in *b = (const struct sockaddr_in *)w;

		return len >= (socklen_t)sizeof(*a) && a->sin_port == b->sin_port &&
		       a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	if (got->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)got;
		const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)w;

		return len >= (socklen_t)sizeof(*a) && a->sin6_port == b->sin6_port &&
		       memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
	}
	return false;
}

/* A listening TCP socket's address: 0, or -1 with why. */
static int listening_addr(int fd, struct sockaddr_storage *ss, socklen_t *len, const char **why)
{
	int type = 0;
	socklen_t olen = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen) < 0 || type != SOCK_STREAM) {
		*why = "not a stream socket";
		return -1;
	}
	if (!kg_listener_is_listening(fd)) {
		*why = "not listening";
		return -1;
	}
	*len = sizeof(*ss);
	if (getsockname(fd, (struct sockaddr *)ss, len) < 0) {
		*why = "no address";
		return -1;
	}
	return 0;
}

/* What the socket systemd passed under name is for here (a listen address index,
 * METRICS_INDEX), or -1 with why. */
static int classify(int fd, const char *name, const struct kg_config *cfg, size_t *index,
		    const char **why)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	const struct sockaddr *sa = (const struct sockaddr *)&ss;

	if (strcmp(name, KG_FDSTORE_LISTEN) != 0 && strcmp(name, KG_FDSTORE_METRICS) != 0) {
		*why = "not a name this daemon stores";
		return -1;
	}
	if (listening_addr(fd, &ss, &len, why) < 0)
		return -1;
	if (strcmp(name, KG_FDSTORE_METRICS) == 0) {
		if (cfg->metrics_enabled && kg_fdstore_addr_matches(sa, len, &cfg->metrics_listen)) {
			*index = METRICS_INDEX;
			return 0;
		}
		*why = "not this configuration's metrics_listen";
		return -1;
	}
	for (size_t i = 0; i < cfg->n_listen; i++)
		if (kg_fdstore_addr_matches(sa, len, &cfg->listen[i])) {
			*index = i;
			return 0;
		}
	*why = "on no listen address of this configuration";
	return -1;
}

int kg_fdstore_load(struct kg_daemon *d, const struct kg_config *cfg)
{
	struct kg_notify_fd *in = NULL;
	size_t n = kg_notify_inherited(&in), dropped = 0;
	struct kg_fdstore *fs;

	if (n == 0) {
		free(in);
		return 0;
	}
	fs = calloc(1, sizeof(*fs) + n * sizeof(fs->kept[0]));
	if (fs == NULL) {
		for (size_t i = 0; i < n; i++)
			close(in[i].fd);
		free(in);
		return -1;
	}
	fs->records = -1;
	fs->sess = calloc(n, sizeof(*fs->sess));
	for (size_t i = 0; i < n; i++) {
		const char *why = NULL;
		size_t index = 0;
		int fd = in[i].fd;
		int ok;

		/* A live session's socket, and the memfd of their records: kept for
		 * kg_fdstore_adopt_sessions(), which checks them against the records. */
		if (strcmp(in[i].name, KG_FDSTORE_SESSION) == 0 && fs->sess != NULL) {
			fs->sess[fs->n_sess++] = fd;
			continue;
		}
		if (strcmp(in[i].name, KG_FDSTORE_RECORDS) == 0 && fs->records < 0) {
			fs->records = fd;
			continue;
		}
		ok = classify(fd, in[i].name, cfg, &index, &why);
		int fl = fcntl(fd, F_GETFL);

		if (ok == 0 && (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
			why = "cannot make it non-blocking";
			ok = -1;
		}
		if (ok < 0) {
			kg_log_warnx("systemd passed descriptor %d (%s): %s: closed", fd,
				     in[i].name[0] != '\0' ? in[i].name : "unnamed", why);
			close(fd);
			dropped++;
			continue;
		}
		fs->kept[fs->n].fd = fd;
		fs->kept[fs->n].index = index;
		fs->n++;
	}
	free(in);
	{
		size_t metrics = 0;

		for (size_t i = 0; i < fs->n; i++)
			metrics += fs->kept[i].index == METRICS_INDEX;
		kg_log_info("systemd kept %zu device listener(s)%s across the restart%s",
			    fs->n - metrics, metrics != 0 ? " and the /metrics listener" : "",
			    dropped != 0 ? " (and passed others, closed)" : "");
		if (fs->n_sess != 0 || fs->records >= 0)
			kg_log_info("systemd kept %zu live session socket(s)%s", fs->n_sess,
				    fs->records >= 0 ? " and their records" : ", but no records");
	}
	d->fdstore = fs;
	return 0;
}

int kg_fdstore_take_metrics(struct kg_daemon *d)
{
	return kg_fdstore_take(d, METRICS_INDEX);
}

int kg_fdstore_take(struct kg_daemon *d, size_t index)
{
	struct kg_fdstore *fs = d->fdstore;

	if (fs == NULL)
		return -1;
	for (size_t i = 0; i < fs->n; i++)
		if (fs->kept[i].fd >= 0 && fs->kept[i].index == index) {
			int fd = fs->kept[i].fd;

			fs->kept[i].fd = -1;
			return fd;
		}
	return -1;
}

static void close_kept(struct kg_fdstore *fs, size_t *closed)
{
	for (size_t i = 0; fs != NULL && i < fs->n; i++)
		if (fs->kept[i].fd >= 0) {
			close(fs->kept[i].fd);
			fs->kept[i].fd = -1;
			if (closed != NULL)
				(*closed)++;
		}
}

void kg_fdstore_publish(struct kg_daemon *d)
{
	size_t unused = 0, n = 0;
	int *fds, mfd;
	int rc;

	close_kept(d->fdstore, &unused);
	if (unused != 0)
		kg_log_info("closed %zu listening socket(s) systemd kept that nothing here took "
			    "(a device listener's queue migrates with net.ipv4.tcp_migrate_req=1)",
			    unused);
	if (!d->notify.active)
		return;
	fds = calloc((size_t)d->n_workers * KG_MAX_LISTEN, sizeof(*fds));
	if (fds == NULL) {
		kg_log_warnx("fdstore: out of memory: a restart will refuse connections");
		return;
	}
	for (unsigned w = 0; w < d->n_workers; w++)
		for (size_t i = 0; i < d->workers[w].n_listeners; i++)
			fds[n++] = d->workers[w].listeners[i].fd;
	rc = kg_notify_fdstore(&d->notify, KG_FDSTORE_LISTEN, fds, n);
	if (rc < 0)
		kg_log_warnx("fdstore: systemd did not take the %zu listening socket(s): %s", n,
			     strerror(-rc));
	free(fds);
	/* /metrics too: a scrape during the restart waits instead of failing */
	mfd = kg_metrics_http_listen_fd(d->metrics_http);
	rc = kg_notify_fdstore(&d->notify, KG_FDSTORE_METRICS, &mfd, mfd >= 0 ? 1 : 0);
	if (rc < 0)
		kg_log_warnx("fdstore: systemd did not take the metrics socket: %s", strerror(-rc));
}

/* ---- live sessions ---------------------------------------------------------------- */

/* Accept nothing more (systemd's store keeps the listeners, and what queues on them
 * waits for the next start), then give the connections still on their way in up to
 * KG_FDSTORE_SETTLE_MS to reach RELAYING: resetting them would cost their devices a
 * reconnect, storing them costs nothing. Bounded: a peer that stalls in its handshake
 * holds the stop KG_FDSTORE_SETTLE_MS at most (the unit's TimeoutStopSec is far above). */
static void settle_in_flight(struct kg_daemon *d)
{
	uint64_t deadline = kg_now_ms() + KG_FDSTORE_SETTLE_MS;
	int64_t first, left;

	kg_workers_stop_accept(d);
	first = left = atomic_load(&d->n_conns) - kg_workers_relaying(d);
	if (left <= 0)
		return;
	kg_log_info("stopping: waiting up to %d ms for %lld connection(s) on their way in",
		    KG_FDSTORE_SETTLE_MS, (long long)left);
	while (left > 0 && kg_now_ms() < deadline) {
		(void)usleep(10000);
		left = atomic_load(&d->n_conns) - kg_workers_relaying(d);
	}
	if (left > 0)
		kg_log_warnx("stopping: %lld of %lld connection(s) still on their way in after %d ms:"
			     " they end here", (long long)left, (long long)first, KG_FDSTORE_SETTLE_MS);
}

/* Export the sessions that can travel from every worker, a few rounds apart: one with a
 * byte in flight goes in the next round. Fills recs/fds (cap records), returns how many. */
static size_t export_sessions(struct kg_daemon *d, struct kg_ho_session *recs, int *fds,
			      size_t cap)
{
	size_t n = 0;

	for (unsigned round = 0; round < 5 && n < cap; round++) {
		size_t got;

		if (round > 0)
			(void)usleep(10000);
		got = kg_workers_export_sessions(d, recs + n, fds + 2 * n, cap - n);
		n += got;
		if (got == 0)
			break;
	}
	return n;
}

/* The records as SESSIONS frames, KG_HO_SESSIONS_MAX a frame, into a memfd. */
static int write_records(const struct kg_ho_session *recs, size_t n)
{
	size_t cap = kg_ho_sessions_size(KG_HO_SESSIONS_MAX);
	uint8_t *frame = malloc(cap);
	int mfd = memfd_create(KG_FDSTORE_RECORDS, MFD_CLOEXEC);

	if (frame == NULL || mfd < 0)
		goto fail;
	for (size_t at = 0; at < n;) {
		uint16_t k = (uint16_t)(n - at < KG_HO_SESSIONS_MAX ? n - at : KG_HO_SESSIONS_MAX);
		size_t len = kg_ho_encode_sessions(frame, cap, (uint32_t)getpid(), recs + at, k);

		if (len == 0) {
			errno = EINVAL;
			goto fail;
		}
		for (size_t off = 0; off < len;) {
			ssize_t w = write(mfd, frame + off, len - off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				goto fail;
			off += (size_t)w;
		}
		at += k;
	}
	free(frame);
	return mfd;
fail:
	free(frame);
	if (mfd >= 0)
		close(mfd);
	return -1;
}

size_t kg_fdstore_save_sessions(struct kg_daemon *d)
{
	struct kg_ho_session *recs;
	int *fds, mfd = -1;
	size_t n = 0;
	int rc = 0;

	if (!d->notify.active || d->n_workers == 0)
		return 0;
	recs = calloc(KG_FDSTORE_SESSIONS_MAX, sizeof(*recs));
	fds = malloc(2 * KG_FDSTORE_SESSIONS_MAX * sizeof(*fds));
	if (recs == NULL || fds == NULL)
		goto out;
	settle_in_flight(d);
	n = export_sessions(d, recs, fds, KG_FDSTORE_SESSIONS_MAX);
	if (n == 0)
		goto out;
	/* Old records first out: a store left from a start that failed. */
	(void)kg_notify_fdstore(&d->notify, KG_FDSTORE_SESSION, NULL, 0);
	(void)kg_notify_fdstore(&d->notify, KG_FDSTORE_RECORDS, NULL, 0);
	mfd = write_records(recs, n);
	if (mfd < 0) {
		kg_log_warn("fdstore: writing %zu session record(s)", n);
		rc = -1;
	} else if ((rc = kg_notify_fdstore_add(&d->notify, KG_FDSTORE_SESSION, fds, 2 * n)) < 0 ||
		   (rc = kg_notify_fdstore_add(&d->notify, KG_FDSTORE_RECORDS, &mfd, 1)) < 0) {
		kg_log_warnx("fdstore: systemd did not take the live sessions: %s", strerror(-rc));
		(void)kg_notify_fdstore(&d->notify, KG_FDSTORE_SESSION, NULL, 0);
	}
	if (rc == 0)
		kg_log_info("stored %zu live session(s) in systemd's fd store for the next start", n);
	else
		kg_log_warnx("%zu live session(s) end here", n);
	/* Ours go either way: systemd holds the sockets now, or nobody does. */
	for (size_t i = 0; i < 2 * n; i++)
		close(fds[i]);
	if (mfd >= 0)
		close(mfd);
out:
	free(recs);
	free(fds);
	return rc == 0 ? n : 0;
}

/* A socket's SO_COOKIE and where it is, sorted by cookie. */
struct cookie_fd {
	uint64_t cookie;
	size_t at;
};

static int cookie_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct cookie_fd *)a)->cookie, y = ((const struct cookie_fd *)b)->cookie;

	return x < y ? -1 : x > y;
}

/* The stored socket with this cookie, taken out of fs->sess; -1: none. */
static int take_cookie(struct kg_fdstore *fs, struct cookie_fd *map, size_t n, uint64_t cookie)
{
	struct cookie_fd key = { .cookie = cookie }, *hit;
	int fd;

	if (cookie == 0)
		return -1;
	hit = bsearch(&key, map, n, sizeof(*map), cookie_cmp);
	if (hit == NULL || fs->sess[hit->at] < 0)
		return -1;
	fd = fs->sess[hit->at];
	fs->sess[hit->at] = -1;
	return fd;
}

/* The records memfd, whole (at most KG_HO_PAYLOAD_MAX a frame times the frames the
 * largest store needs). NULL with *len 0 when unreadable. */
static uint8_t *read_records(int fd, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t max = (KG_FDSTORE_SESSIONS_MAX / KG_HO_SESSIONS_MAX + 1) *
		     kg_ho_sessions_size(KG_HO_SESSIONS_MAX);

	*len = 0;
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || (size_t)st.st_size > max)
		return NULL;
	buf = malloc((size_t)st.st_size);
	if (buf == NULL)
		return NULL;
	for (size_t off = 0; off < (size_t)st.st_size;) {
		ssize_t r = pread(fd, buf + off, (size_t)st.st_size - off, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(buf);
			return NULL;
		}
		off += (size_t)r;
	}
	*len = (size_t)st.st_size;
	return buf;
}

void kg_fdstore_adopt_sessions(struct kg_daemon *d)
{
	struct kg_fdstore *fs = d->fdstore;
	struct kg_cmd cmd = { .type = KG_CMD_ADOPT_SESSIONS };
	struct kg_ho_msg *m = NULL;
	struct cookie_fd *map = NULL;
	uint8_t *buf = NULL;
	size_t len = 0, off = 0, unmatched = 0, leftover = 0;

	if (fs == NULL || (fs->n_sess == 0 && fs->records < 0))
		return;
	/* systemd's duplicates go first: a session this process closes must close. */
	(void)kg_notify_fdstore(&d->notify, KG_FDSTORE_SESSION, NULL, 0);
	(void)kg_notify_fdstore(&d->notify, KG_FDSTORE_RECORDS, NULL, 0);
	if (fs->records >= 0)
		buf = read_records(fs->records, &len);
	map = calloc(fs->n_sess ? fs->n_sess : 1, sizeof(*map));
	cmd.xfer = calloc(fs->n_sess / 2 + 1, sizeof(*cmd.xfer));
	cmd.xfer_fds = malloc((fs->n_sess + 2) * sizeof(*cmd.xfer_fds));
	m = malloc(sizeof(*m));
	if (buf == NULL || map == NULL || cmd.xfer == NULL || cmd.xfer_fds == NULL || m == NULL) {
		kg_log_warnx("fdstore: the %zu stored session socket(s) cannot be adopted (%s): "
			     "closed", fs->n_sess, buf == NULL ? "no readable records" : "out of memory");
		goto out;
	}
	for (size_t i = 0; i < fs->n_sess; i++) {
		socklen_t cl = sizeof(map[i].cookie);

		map[i].at = i;
		if (getsockopt(fs->sess[i], SOL_SOCKET, SO_COOKIE, &map[i].cookie, &cl) < 0)
			map[i].cookie = 0;
	}
	qsort(map, fs->n_sess, sizeof(*map), cookie_cmp);
	while (off < len) {
		const uint8_t *cur;
		size_t used, left;
		struct kg_ho_session rec;

		if (kg_ho_decode(buf + off, len - off, m, &used) != KG_HO_OK ||
		    m->type != KG_HO_SESSIONS) {
			kg_log_warnx("fdstore: the stored session records are damaged at byte %zu: "
				     "the sessions after it are closed", off);
			break;
		}
		cur = (const uint8_t *)m->text;
		left = m->text_len;
		while (kg_ho_session_next(&cur, &left, &rec)) {
			int dev = take_cookie(fs, map, fs->n_sess, rec.cookie[0]);
			int be = take_cookie(fs, map, fs->n_sess, rec.cookie[1]);

			if (dev < 0 || be < 0 || cmd.n_xfer >= fs->n_sess / 2) {
				unmatched++;
				if (dev >= 0)
					close(dev);
				if (be >= 0)
					close(be);
				continue;
			}
			cmd.xfer[cmd.n_xfer] = rec;
			cmd.xfer_fds[2 * cmd.n_xfer] = dev;
			cmd.xfer_fds[2 * cmd.n_xfer + 1] = be;
			cmd.n_xfer++;
		}
		off += used;
	}
	if (cmd.n_xfer > 0 && kg_workers_call(d, &cmd) < 0)
		kg_log_warnx("fdstore: not every worker was given its sessions");
	for (size_t i = 0; i < 2 * cmd.n_xfer; i++)
		if (cmd.xfer_fds[i] >= 0)
			close(cmd.xfer_fds[i]);
	kg_log_info("adopted %u live session(s) kept across the restart (%u refused, %u closed "
		    "by the policy since, %zu without their sockets)", cmd.adopted, cmd.refused,
		    cmd.closed, unmatched);
out:
	for (size_t i = 0; i < fs->n_sess; i++)
		if (fs->sess[i] >= 0) {
			close(fs->sess[i]);
			fs->sess[i] = -1;
			leftover++;
		}
	if (leftover != 0)
		kg_log_info("closed %zu stored session socket(s) no record named", leftover);
	fs->n_sess = 0;
	if (fs->records >= 0)
		close(fs->records);
	fs->records = -1;
	free(buf);
	free(map);
	free(m);
	free(cmd.xfer);
	free(cmd.xfer_fds);
	free(cmd.out);
}

void kg_fdstore_free(struct kg_daemon *d)
{
	struct kg_fdstore *fs = d->fdstore;

	close_kept(fs, NULL);
	if (fs != NULL) {
		for (size_t i = 0; i < fs->n_sess; i++)
			if (fs->sess[i] >= 0)
				close(fs->sess[i]);
		if (fs->records >= 0)
			close(fs->records);
		free(fs->sess);
	}
	free(fs);
	d->fdstore = NULL;
}
