/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * handover.c - both sides of the listener handover (contract in handover.h; the frames
 * in handover_msg.c; the design in docs/architecture.md "Listener handover").
 *
 * The sockets are the kernel's: passing a descriptor with SCM_RIGHTS gives the new
 * process another reference to the same listening socket, with its accept queue and
 * its place in the SO_REUSEPORT group. Nothing is closed or re-bound, so no SYN and no
 * queued connection meets a closed port: the old process only stops calling accept()
 * on them and closes its references once the new one says it accepts. The instance lock
 * is an flock on an open file description, which the passed fd shares: the lock never
 * has a gap either.
 *
 * Every message on the channel is a frame (handover_msg.h). The old process never
 * waits on the new one (its reads are non-blocking in the main epoll); the new one
 * waits on the old one only for a session list (1 s at most) and at connect.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <json-c/json_object_iterator.h>

#include "core/control_server.h"
#include "core/daemon.h"
#include "core/handover.h"
#include "core/handover_msg.h"
#include "core/listener.h"
#include "core/worker.h"
#include "edge/edge.h"
#include "ops/audit.h"
#include "ops/err.h"
#include "ops/log.h"
#include "ops/metrics.h"

/* The new process has this long from receiving the sockets to "accepting"; then the old
 * one gives up on it (it never stopped serving) and closes the channel. */
#define ACCEPT_WAIT_MS 120000
/* A draining old process reports its counts this often. */
#define STATE_EVERY_MS 1000
#define LIST_WAIT_MS 1000
#define SEND_TIMEOUT_MS 2000
#define CONNECT_REPLY_MS 10000

enum ho_state {
	HO_IDLE,
	HO_OLD_PASSED,     /* old: the sockets are passed, waiting for "accepting" */
	HO_OLD_DRAINING,   /* old: not accepting, sessions draining */
	HO_NEW_RECEIVED,   /* new: sockets received, starting up */
	HO_NEW_PEER,       /* new: accepting; the old process drains (channel open) */
};

static const char *const state_names[] = {
	[HO_IDLE] = "none", [HO_OLD_PASSED] = "passed", [HO_OLD_DRAINING] = "draining",
	[HO_NEW_RECEIVED] = "receiving", [HO_NEW_PEER] = "peer_draining",
};

enum ho_role { ROLE_NEW, ROLE_OLD, ROLE_MAX };
enum ho_result { RES_OK, RES_REFUSED, RES_ABORTED, RES_DRAINED, RES_TIMEOUT, RES_MAX };
static const char *const role_names[ROLE_MAX] = { "new", "old" };
static const char *const result_names[RES_MAX] = { "ok", "refused", "aborted", "drained",
						   "timeout" };

struct kg_handover {
	enum ho_state state;
	int chan;                      /* the channel (the control connection); -1: none */
	pid_t peer_pid;
	uint64_t t0_ms;                /* the handover began (connect / request) */
	/* new: what came with KG_HO_FDS; fds[i] is -1 once taken */
	struct kg_ho_msg *rx;
	int fds[KG_HO_MAX_FDS];
	unsigned n_fds;
	unsigned adopted, opened;
	/* old */
	unsigned passed;
	uint64_t accept_deadline_ms;
	uint64_t drain_deadline_ms;
	uint64_t next_state_ms;
	int64_t conns_at_drain;
	/* the live-session handover: old, the new process adopts sessions (it said so)
	 * and passing has not failed; both, what moved */
	bool peer_adopts;
	bool pass_off;
	uint64_t next_pass_ms;         /* old: the next drain tick that looks for sessions */
	_Atomic uint64_t sessions_passed, sessions_adopted, sessions_refused;
	/* the channel's read buffer, and the descriptors that came with it, in order (the
	 * sockets of the SESSIONS frames not yet decoded) */
	uint8_t *rbuf;
	size_t rlen, rcap;
	int *rx_fds;
	size_t n_rx_fds, cap_rx_fds;
	uint32_t list_seq;
	/* read by the metrics thread */
	_Atomic uint32_t peer_conns, peer_sessions, peer_hs;
	_Atomic bool peer_counting;    /* new: an old process drains and reports */
	_Atomic uint64_t results[ROLE_MAX][RES_MAX];
};

/* ---- small helpers ----------------------------------------------------------------- */

static struct kg_handover *ho_of(struct kg_daemon *d);

int kg_handover_init(struct kg_daemon *d)
{
	return ho_of(d) != NULL ? 0 : -1;
}

static struct kg_handover *ho_of(struct kg_daemon *d)
{
	if (d->handover == NULL) {
		struct kg_handover *h = calloc(1, sizeof(*h));

		if (h == NULL)
			return NULL;
		h->chan = -1;
		for (size_t i = 0; i < KG_HO_MAX_FDS; i++)
			h->fds[i] = -1;
		d->handover = h;
	}
	return d->handover;
}

static uint32_t clamp32(int64_t v)
{
	return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* Whole frame, blocking up to SEND_TIMEOUT_MS (the peer reads in its main loop). */
static int send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t until = kg_now_ms() + SEND_TIMEOUT_MS;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			uint64_t now = kg_now_ms();

			if (errno == EINTR)
				continue;
			if ((errno != EAGAIN && errno != EWOULDBLOCK) || now >= until)
				return -1;
			(void)poll(&pfd, 1, (int)(until - now));
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Each descriptor an SCM_RIGHTS control message of mh carried, to keep(h, fd): the
 * connect-time reply's (into h->fds) and the channel's (into h->rx_fds) alike. */
static void each_passed_fd(struct msghdr *mh, struct kg_handover *h,
			   void (*keep)(struct kg_handover *h, int fd))
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
		size_t k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			keep(h, fd);
		}
	}
}

/* Keep a descriptor that came with the channel's bytes (FIFO). -1 when there is no room. */
static int rx_fd_push(struct kg_handover *h, int fd)
{
	if (h->n_rx_fds == h->cap_rx_fds) {
		size_t cap = h->cap_rx_fds ? h->cap_rx_fds * 2 : 2 * KG_HO_MAX_FDS;
		int *nf = realloc(h->rx_fds, cap * sizeof(*nf));

		if (nf == NULL)
			return -1;
		h->rx_fds = nf;
		h->cap_rx_fds = cap;
	}
	h->rx_fds[h->n_rx_fds++] = fd;
	return 0;
}

static void rx_fd_keep(struct kg_handover *h, int fd)
{
	if (rx_fd_push(h, fd) < 0)
		close(fd);   /* the frame then lacks it: malformed, channel closed */
}

static void rx_fds_consume(struct kg_handover *h, size_t n)
{
	memmove(h->rx_fds, h->rx_fds + n, (h->n_rx_fds - n) * sizeof(*h->rx_fds));
	h->n_rx_fds -= n;
}

static void rx_fds_close(struct kg_handover *h)
{
	for (size_t i = 0; i < h->n_rx_fds; i++)
		close(h->rx_fds[i]);
	h->n_rx_fds = 0;
}

/* Append what the channel has to rbuf (grown up to one largest frame), and the
 * descriptors riding on it to rx_fds (a SESSIONS frame's sockets). Returns bytes
 * read, 0 at EOF, -1 with errno (EAGAIN: nothing now). */
static ssize_t chan_read(struct kg_handover *h)
{
	char cbuf[CMSG_SPACE(sizeof(int) * KG_HO_MAX_FDS)];
	struct iovec iov;
	struct msghdr mh;
	ssize_t n;

	if (h->rcap - h->rlen < 65536) {
		size_t cap = h->rcap ? h->rcap * 2 : 131072;
		uint8_t *nb;

		if (cap > KG_HO_HEADER + KG_HO_PAYLOAD_MAX + 65536)
			cap = KG_HO_HEADER + KG_HO_PAYLOAD_MAX + 65536;
		if (cap <= h->rlen) {
			errno = EMSGSIZE;
			return -1;
		}
		nb = realloc(h->rbuf, cap);
		if (nb == NULL)
			return -1;
		h->rbuf = nb;
		h->rcap = cap;
	}
	do {
		iov = (struct iovec){ .iov_base = h->rbuf + h->rlen, .iov_len = h->rcap - h->rlen };
		mh = (struct msghdr){ .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				      .msg_controllen = sizeof(cbuf) };
		n = recvmsg(h->chan, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		each_passed_fd(&mh, h, rx_fd_keep);
	if (n > 0)
		h->rlen += (size_t)n;
	return n;
}

static void chan_consume(struct kg_handover *h, size_t used)
{
	memmove(h->rbuf, h->rbuf + used, h->rlen - used);
	h->rlen -= used;
}

static void chan_close(struct kg_daemon *d, struct kg_handover *h)
{
	if (h->chan >= 0) {
		(void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, h->chan, NULL);
		close(h->chan);
	}
	h->chan = -1;
	h->rlen = 0;
	rx_fds_close(h);
}

/* One audit line per handover and side; peer, t0: the other process, when it began
 * (0: a refusal, no duration). */
static void audit_line(struct kg_handover *h, enum ho_role role, enum ho_result res, pid_t peer,
		       uint64_t t0, const char *detail, struct json_object *extra)
{
	struct json_object *o = kg_audit_event_new("handover");

	atomic_fetch_add(&h->results[role][res], 1);
	if (o == NULL) {
		json_object_put(extra);
		return;
	}
	json_object_object_add(o, "role", json_object_new_string(role_names[role]));
	json_object_object_add(o, "result", json_object_new_string(result_names[res]));
	json_object_object_add(o, "pid", json_object_new_int((int)getpid()));
	json_object_object_add(o, "peer_pid", json_object_new_int((int)peer));
	json_object_object_add(o, "duration_ms", json_object_new_uint64(t0 ? kg_now_ms() - t0 : 0));
	if (extra != NULL) {
		struct json_object_iterator it = json_object_iter_begin(extra);
		struct json_object_iterator end = json_object_iter_end(extra);

		for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
			json_object_object_add(o, json_object_iter_peek_name(&it),
					       json_object_get(json_object_iter_peek_value(&it)));
		json_object_put(extra);
	}
	if (detail != NULL)
		json_object_object_add(o, "detail", json_object_new_string(detail));
	kg_audit_event_emit(o);
}

/* ---- old process ------------------------------------------------------------------ */

/* "ERR why" to the requester; why (without "ERR ") also into out, for the audit line. */
static void say_err(int fd, char *out, size_t cap, const char *fmt, ...) KG_PRINTF(4, 5);
static void say_err(int fd, char *out, size_t cap, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	memcpy(line, "ERR ", 4);
	va_start(ap, fmt);
	n = vsnprintf(line + 4, sizeof(line) - 6, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	snprintf(out, cap, "%s", line + 4);
	n = (int)strlen(line);
	line[n++] = '\n';
	(void)!send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void add_fd(struct kg_ho_fd *fds, int *raw, uint16_t *n, int fd, uint8_t kind,
		   unsigned worker, size_t index, const char *text)
{
	if (fd < 0 || *n >= KG_HO_MAX_FDS)
		return;
	fds[*n] = (struct kg_ho_fd){ .kind = kind, .worker = (uint16_t)worker,
				     .index = (uint16_t)index };
	if (text != NULL)
		(void)kg_strlcpy(fds[*n].text, text, sizeof(fds[*n].text));
	raw[(*n)++] = fd;
}

/* Send the frame with the descriptors (SCM_RIGHTS rides on its first byte). */
static int send_fds(int chan, const uint8_t *frame, size_t len, const int *raw, uint16_t n)
{
	size_t cl = CMSG_SPACE(sizeof(int) * (n ? n : 1));
	char *cbuf = calloc(1, cl);
	struct iovec iov = { .iov_base = (void *)frame, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t sent;
	int rc = -1;

	if (cbuf == NULL)
		return -1;
	if (n > 0) {
		struct cmsghdr *cm;

		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(cm), raw, sizeof(int) * n);
	}
	do
		sent = sendmsg(chan, &mh, MSG_NOSIGNAL);
	while (sent < 0 && errno == EINTR);
	if (sent > 0 && (size_t)sent <= len)
		rc = send_all(chan, frame + sent, len - (size_t)sent);
	free(cbuf);
	return rc;
}

void kg_handover_serve(struct kg_daemon *d, int fd, const char *arg)
{
	struct kg_handover *h = ho_of(d);
	struct kg_snapshot *s;
	struct kg_ho_fd *fds;
	int raw[KG_HO_MAX_FDS];
	uint16_t n = 0;
	uint8_t *frame;
	size_t len, cap;
	struct ucred cred = { 0 };
	socklen_t clen = sizeof(cred);
	char why[512] = "";
	pid_t peer;

	(void)getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen);
	peer = cred.pid;
	if (h == NULL) {
		say_err(fd, why, sizeof(why), "out of memory");
		goto out_close;
	}
	if (arg != NULL && strcmp(arg, "1") != 0) {
		say_err(fd, why, sizeof(why),
			"handover protocol version %s not supported (this ktlsgated speaks 1)", arg);
		goto out_refused;
	}
	if (h->state == HO_OLD_PASSED || h->state == HO_OLD_DRAINING) {
		say_err(fd, why, sizeof(why), "a handover to pid %ld is already in progress",
			(long)h->peer_pid);
		goto out_refused;
	}
	if (h->state == HO_NEW_PEER || h->state == HO_NEW_RECEIVED) {
		say_err(fd, why, sizeof(why),
			"the previous ktlsgated (pid %ld) is still draining %" PRIu32
			" connection(s) from the last handover; try again when it has exited",
			(long)h->peer_pid, atomic_load(&h->peer_conns));
		goto out_refused;
	}
	if (atomic_load(&d->stopping)) {
		say_err(fd, why, sizeof(why), "this ktlsgated is stopping");
		goto out_refused;
	}
	fds = calloc(KG_HO_MAX_FDS, sizeof(*fds));
	cap = KG_HO_HEADER + 8 + (size_t)KG_HO_MAX_FDS * (6 + KG_HO_TEXT_MAX);
	frame = malloc(cap);
	if (fds == NULL || frame == NULL) {
		free(fds);
		free(frame);
		say_err(fd, why, sizeof(why), "out of memory");
		goto out_close;
	}
	s = kg_snapshot_get(d);
	for (unsigned w = 0; w < d->n_workers; w++)
		for (size_t j = 0; j < d->workers[w].n_listeners; j++)
			add_fd(fds, raw, &n, d->workers[w].listeners[j].fd, KG_HO_FD_LISTEN, w, j,
			       j < s->cfg.n_listen ? s->cfg.listen[j].text : "");
	kg_snapshot_put(s);
	add_fd(fds, raw, &n, kg_metrics_http_listen_fd(d->metrics_http), KG_HO_FD_METRICS, 0, 0,
	       NULL);
	add_fd(fds, raw, &n, d->lock_fd, KG_HO_FD_LOCK, 0, 0, NULL);
	add_fd(fds, raw, &n, kg_control_fd(d->control), KG_HO_FD_CONTROL, 0, 0, NULL);
	{
		int lfd[KG_EDGE_MAX_IFACES];
		char names[KG_EDGE_MAX_IFACES][KG_EDGE_IFNAME];
		size_t nl = kg_edge_link_fds(d->edge, lfd, names, KG_EDGE_MAX_IFACES);

		int gfd[KG_EDGE_OBJ_MAX];
		char id[KG_EDGE_BUILD_ID_LEN];

		for (size_t i = 0; i < nl; i++)
			add_fd(fds, raw, &n, lfd[i], KG_HO_FD_XDP_LINK, 0, i, names[i]);
		/* the program and maps too: a successor that may not load BPF keeps them */
		if (nl > 0 && kg_edge_gate_fds(d->edge, gfd, id) == 0)
			for (unsigned i = 0; i < KG_EDGE_OBJ_MAX; i++)
				add_fd(fds, raw, &n, gfd[i], KG_HO_FD_XDP_GATE, 0, i, id);
	}
	len = kg_ho_encode_fds(frame, cap, (uint32_t)getpid(), (uint16_t)d->n_workers, fds, n);
	free(fds);
	if (len == 0 || n >= KG_HO_MAX_FDS) {
		free(frame);
		say_err(fd, why, sizeof(why), "too many sockets to pass in one message (%u workers)",
			d->n_workers);
		goto out_refused;
	}
	if (send_fds(fd, frame, len, raw, n) < 0) {
		kg_log_warn("handover: passing %u socket(s) to pid %ld", n, (long)peer);
		free(frame);
		goto out_close;
	}
	free(frame);
	h->state = HO_OLD_PASSED;
	h->chan = fd;
	h->peer_pid = peer;
	h->passed = n;
	h->t0_ms = kg_now_ms();
	h->accept_deadline_ms = h->t0_ms + ACCEPT_WAIT_MS;
	h->rlen = 0;
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

		(void)epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev);
	}
	kg_log_info("handover: passed %u socket(s) to pid %ld; serving until it accepts", n,
		    (long)peer);
	return;

out_refused:
	kg_log_warnx("handover: refused pid %ld: %s", (long)peer, why);
	audit_line(h, ROLE_OLD, RES_REFUSED, peer, 0, why, NULL);
out_close:
	close(fd);
}

static void send_state(struct kg_daemon *d, struct kg_handover *h, bool done)
{
	uint8_t frame[64];
	size_t n;

	if (h->chan < 0)
		return;
	n = kg_ho_encode_state(frame, sizeof(frame), (uint32_t)getpid(),
			       clamp32(atomic_load(&d->n_conns)), clamp32(kg_workers_relaying(d)),
			       clamp32(atomic_load(&d->n_handshakes)), done);
	if (n > 0 && send_all(h->chan, frame, n) < 0)
		chan_close(d, h);   /* the new process is gone: drain on alone */
}

/* Give the sessions taken back after a failed pass to the workers again (any worker
 * adopts a record; this process knows its own). */
static void keep_sessions(struct kg_daemon *d, struct kg_ho_session *recs, int *fds, size_t n)
{
	struct kg_cmd cmd = { .type = KG_CMD_ADOPT_SESSIONS, .xfer = recs, .xfer_fds = fds,
			      .n_xfer = n };

	if (n == 0)
		return;
	if (kg_workers_call(d, &cmd) < 0)
		kg_log_warnx("handover: could not give %zu session(s) back to every worker", n);
	for (size_t i = 0; i < 2 * n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	kg_log_info("handover: %u session(s) kept here, %u could not be", cmd.adopted,
		    cmd.refused);
	free(cmd.out);
}

/*
 * The live handover, old side: the relaying sessions whose state is all the kernel's
 * (kg_relay_transferable()) leave the workers (KG_CMD_EXPORT_SESSIONS) and go to the
 * new process, KG_HO_SESSIONS_MAX to a frame with their sockets. Called when the drain
 * begins and at every drain tick after, so a session that had bytes in flight, or was
 * still in its handshake, goes once it is quiet. Our references are closed once a frame
 * is sent (the kernel holds the sockets in flight); a frame that cannot be sent takes
 * its sessions and the rest back into our workers, and passing stops: they drain here.
 * Returns the sessions passed.
 */
static size_t pass_sessions(struct kg_daemon *d, struct kg_handover *h)
{
	size_t cap = (size_t)KG_HO_SESSIONS_MAX * d->n_workers, n = 0, sent = 0;
	struct kg_ho_session *recs = NULL;
	int *fds = NULL;
	uint8_t *frame = NULL;

	if (!h->peer_adopts || h->pass_off || h->chan < 0 || kg_workers_relaying(d) == 0)
		return 0;
	recs = calloc(cap, sizeof(*recs));
	fds = malloc(2 * cap * sizeof(*fds));
	frame = malloc(kg_ho_sessions_size(KG_HO_SESSIONS_MAX));
	if (recs == NULL || fds == NULL || frame == NULL)
		goto out;
	n = kg_workers_export_sessions(d, recs, fds, cap);
	while (sent < n) {
		uint16_t k = (uint16_t)(n - sent < KG_HO_SESSIONS_MAX ? n - sent : KG_HO_SESSIONS_MAX);
		size_t len = kg_ho_encode_sessions(frame, kg_ho_sessions_size(k), (uint32_t)getpid(),
						   &recs[sent], k);

		if (len == 0 || send_fds(h->chan, frame, len, &fds[2 * sent],
					 (uint16_t)(2 * k)) < 0) {
			kg_log_warnx("handover: passing %u session(s) to pid %ld failed%s: they and the"
				     " %zu after them stay here", k, (long)h->peer_pid,
				     len == 0 ? " (a record did not encode)" : "", n - sent - k);
			h->pass_off = true;
			keep_sessions(d, &recs[sent], &fds[2 * sent], n - sent);
			break;
		}
		for (size_t i = 2 * sent; i < 2 * (sent + k); i++)
			close(fds[i]);
		sent += k;
	}
	if (sent > 0) {
		/* the first batch at info, the rest at debug: the audit line has the total */
		if (atomic_fetch_add(&h->sessions_passed, sent) == 0)
			kg_log_info("handover: passed %zu live session(s) to pid %ld", sent,
				    (long)h->peer_pid);
		else
			kg_log_debug("handover: passed %zu more live session(s) to pid %ld", sent,
				     (long)h->peer_pid);
	}
out:
	free(frame);
	free(recs);
	free(fds);
	return sent;
}

/* "accepting": the new process's workers accept on the same sockets. */
static void start_drain(struct kg_daemon *d, struct kg_handover *h)
{
	struct kg_snapshot *s = kg_snapshot_get(d);
	unsigned drain_s = s->cfg.drain_timeout;

	kg_snapshot_put(s);
	kg_workers_stop_accept(d);
	kg_control_release(d->control);
	kg_metrics_http_quiesce(d->metrics_http);
	/* The new process is systemd's main pid now: said by us, the main pid, so the
	 * unit's NotifyAccess=main takes it (the new one's own MAINPID= needs =all), and
	 * it is accepted when the new one is in the unit's cgroup (`ktlsgate upgrade`
	 * started it, upgrade.h). Then nothing more from us. */
	kg_notify_main_pid(&d->notify, h->peer_pid);
	d->notify.active = false;
	h->state = HO_OLD_DRAINING;
	h->conns_at_drain = atomic_load(&d->n_conns);
	h->drain_deadline_ms = kg_now_ms() + (uint64_t)drain_s * 1000;
	h->next_state_ms = 0;
	kg_log_info("handover: pid %ld accepts: stopped accepting; draining %lld connection(s)"
		    " (%lld relaying, %lld handshake(s)), at most %us%s", (long)h->peer_pid,
		    (long long)h->conns_at_drain, (long long)kg_workers_relaying(d),
		    (long long)atomic_load(&d->n_handshakes), drain_s,
		    h->peer_adopts ? "; live sessions move to it" : "");
	(void)pass_sessions(d, h);
	send_state(d, h, false);
}

/* A revocation the new process ran: run it on our sessions too. */
static void run_forward(struct kg_daemon *d, const char *text, size_t len)
{
	char line[KG_HO_TEXT_MAX + 1], err[KG_ERRBUF];
	struct kg_cmd cmd = { 0 };
	char *arg;

	memcpy(line, text, len);
	line[len] = '\0';
	arg = strchr(line, ' ');
	if (arg != NULL)
		*arg++ = '\0';
	if (strcmp(line, "reload") == 0 && arg == NULL) {
		if (kg_daemon_reload(d, err, sizeof(err)) < 0)
			kg_log_warnx("handover: forwarded reload failed here: %s", err);
		return;
	}
	if (arg == NULL || kg_strlcpy(cmd.arg, arg, sizeof(cmd.arg)) < 0) {
		kg_log_warnx("handover: forwarded '%s': not a revocation verb, ignored", line);
		return;
	}
	if (strcmp(line, "device-changed") == 0) {
		cmd.type = KG_CMD_REVALIDATE_DEVICE;
	} else if (strcmp(line, "kill") == 0) {
		cmd.type = KG_CMD_KILL_DEVICE;
	} else if (strcmp(line, "ca-changed") == 0) {
		if (kg_daemon_refresh_trust(d, err, sizeof(err)) < 0) {
			kg_log_warnx("handover: forwarded ca-changed %s: %s", arg, err);
			return;
		}
		cmd.type = KG_CMD_REVALIDATE_CA;
	} else {
		kg_log_warnx("handover: forwarded '%s': not a revocation verb, ignored", line);
		return;
	}
	if (kg_workers_call(d, &cmd) == 0)
		kg_log_info("handover: forwarded %s %s: %u session(s) closed here", line, arg,
			    cmd.closed);
	free(cmd.out);
}

static void send_list(struct kg_daemon *d, struct kg_handover *h, uint32_t seq)
{
	struct kg_cmd cmd = { .type = KG_CMD_LIST_SESSIONS };
	size_t tl, cap;
	uint8_t *frame;

	if (kg_workers_call(d, &cmd) < 0) {
		free(cmd.out);
		cmd.out = NULL;
		cmd.out_len = 0;
	}
	tl = cmd.out_len;
	if (tl > KG_HO_PAYLOAD_MAX - 4) {
		/* Cut at the last whole line that fits. */
		tl = KG_HO_PAYLOAD_MAX - 4;
		while (tl > 0 && cmd.out[tl - 1] != '\n')
			tl--;
	}
	cap = kg_ho_list_reply_size(tl);
	frame = malloc(cap);
	if (frame != NULL) {
		size_t n = kg_ho_encode_list_reply(frame, cap, seq, cmd.out ? cmd.out : "", tl);

		if (n > 0 && send_all(h->chan, frame, n) < 0)
			chan_close(d, h);
	}
	free(frame);
	free(cmd.out);
}

/* ---- new process ------------------------------------------------------------------ */

static void close_received(struct kg_handover *h)
{
	for (unsigned i = 0; i < h->n_fds; i++)
		if (h->fds[i] >= 0) {
			close(h->fds[i]);
			h->fds[i] = -1;
		}
	h->n_fds = 0;
}

static void fds_keep(struct kg_handover *h, int fd)
{
	if (h->n_fds < KG_HO_MAX_FDS)
		h->fds[h->n_fds++] = fd;
	else
		close(fd);
}

/* Read the reply to "handover 1": a text "ERR ..." line, or the FDS frame with its
 * descriptors. 0, or -1 with why. */
static int receive_fds(struct kg_handover *h, char *err, size_t errlen)
{
	uint64_t until = kg_now_ms() + CONNECT_REPLY_MS;

	for (;;) {
		char cbuf[CMSG_SPACE(sizeof(int) * KG_HO_MAX_FDS)];
		struct iovec iov;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		struct pollfd pfd = { .fd = h->chan, .events = POLLIN };
		uint64_t now = kg_now_ms();
		enum kg_ho_parse pr;
		size_t used;
		ssize_t n;

		if (now >= until) {
			snprintf(err, errlen, "no reply to the handover request in %d s",
				 CONNECT_REPLY_MS / 1000);
			return -1;
		}
		if (poll(&pfd, 1, (int)(until - now)) <= 0)
			continue;
		if (h->rcap - h->rlen < 65536) {
			uint8_t *nb = realloc(h->rbuf, h->rcap + 131072);

			if (nb == NULL) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			h->rbuf = nb;
			h->rcap += 131072;
		}
		iov = (struct iovec){ .iov_base = h->rbuf + h->rlen, .iov_len = h->rcap - h->rlen };
		n = recvmsg(h->chan, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			snprintf(err, errlen, "reading the handover reply: %s", strerror(errno));
			return -1;
		}
		each_passed_fd(&mh, h, fds_keep);
		if (mh.msg_flags & MSG_CTRUNC) {
			snprintf(err, errlen, "the handover reply carried more descriptors than %d",
				 KG_HO_MAX_FDS);
			return -1;
		}
		if (n == 0) {
			snprintf(err, errlen, "the running ktlsgated closed the handover connection");
			return -1;
		}
		h->rlen += (size_t)n;
		/* A text reply: the daemon refused (or does not know the verb: an older build). */
		if (h->rlen >= 1 && h->rbuf[0] != 'K') {
			uint8_t *nl = memchr(h->rbuf, '\n', h->rlen);

			if (nl == NULL && h->rlen < 512)
				continue;
			if (nl != NULL)
				*nl = '\0';
			else
				h->rbuf[511] = '\0';
			snprintf(err, errlen, "the running ktlsgated refused the handover: %s",
				 strncmp((char *)h->rbuf, "ERR ", 4) == 0 ? (char *)h->rbuf + 4
									: (char *)h->rbuf);
			return -1;
		}
		pr = kg_ho_decode(h->rbuf, h->rlen, h->rx, &used);
		if (pr == KG_HO_SHORT)
			continue;
		if (pr != KG_HO_OK || h->rx->type != KG_HO_FDS) {
			snprintf(err, errlen, "the running ktlsgated sent %s",
				 pr == KG_HO_UNSUPPORTED ? "another handover protocol version"
							 : "a malformed handover message");
			return -1;
		}
		if (h->rx->n_fds != h->n_fds) {
			snprintf(err, errlen, "the handover message names %u descriptor(s), %u came",
				 h->rx->n_fds, h->n_fds);
			return -1;
		}
		chan_consume(h, used);
		return 0;
	}
}

int kg_handover_connect(struct kg_daemon *d, const struct kg_config *cfg, char *err,
			size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct kg_handover *h = ho_of(d);
	static const char req[] = "handover 1\n";

	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (kg_strlcpy(sun.sun_path, cfg->control_socket, sizeof(sun.sun_path)) < 0) {
		snprintf(err, errlen, "control_socket %s: path too long", cfg->control_socket);
		return -1;
	}
	h->rx = calloc(1, sizeof(*h->rx));
	h->chan = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (h->rx == NULL || h->chan < 0) {
		snprintf(err, errlen, "handover: %s", strerror(errno));
		return -1;
	}
	h->t0_ms = kg_now_ms();
	if (connect(h->chan, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;

		close(h->chan);
		h->chan = -1;
		if (e == ENOENT || e == ECONNREFUSED)
			return 0;   /* nobody serves there: a plain start */
		snprintf(err, errlen, "control_socket %s: %s", cfg->control_socket, strerror(e));
		return -1;
	}
	{
		struct ucred cred = { 0 };
		socklen_t clen = sizeof(cred);

		if (getsockopt(h->chan, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
			h->peer_pid = cred.pid;
	}
	if (send_all(h->chan, req, sizeof(req) - 1) < 0) {
		snprintf(err, errlen, "control_socket %s: sending the handover request: %s",
			 cfg->control_socket, strerror(errno));
		goto out_fail;
	}
	if (receive_fds(h, err, errlen) < 0)
		goto out_fail;
	if (h->rx->pid != 0)
		h->peer_pid = (pid_t)h->rx->pid;
	h->state = HO_NEW_RECEIVED;
	kg_log_info("handover: received %u socket(s) from pid %ld (%u worker(s))", h->n_fds,
		    (long)h->peer_pid, h->rx->workers);
	return 1;

out_fail:
	close_received(h);
	close(h->chan);
	h->chan = -1;
	return -1;
}

int kg_handover_check(struct kg_daemon *d, const struct kg_config *cfg, char *err,
		      size_t errlen)
{
	struct kg_handover *h = d->handover;
	bool seen[KG_MAX_LISTEN] = { false };

	if (h == NULL || h->state != HO_NEW_RECEIVED)
		return 0;
	for (unsigned i = 0; i < h->n_fds; i++) {
		const struct kg_ho_fd *f = &h->rx->fds[i];

		if (f->kind != KG_HO_FD_LISTEN)
			continue;
		if (f->index >= cfg->n_listen || strcmp(f->text, cfg->listen[f->index].text) != 0) {
			snprintf(err, errlen, "the running daemon listens on %s, this configuration "
				 "%s%s there: a takeover keeps the listen addresses (restart instead)",
				 f->text, f->index < cfg->n_listen ? "has " : "has no address",
				 f->index < cfg->n_listen ? cfg->listen[f->index].text : "");
			return -1;
		}
		if (!kg_listener_is_listening(h->fds[i])) {
			snprintf(err, errlen, "the descriptor passed for %s is not a listening socket",
				 f->text);
			return -1;
		}
		seen[f->index] = true;
	}
	for (size_t j = 0; j < cfg->n_listen; j++)
		if (!seen[j]) {
			snprintf(err, errlen, "the running daemon does not listen on %s: a takeover "
				 "keeps the listen addresses (restart instead)", cfg->listen[j].text);
			return -1;
		}
	return 0;
}

static int take(struct kg_handover *h, uint8_t kind, unsigned worker, size_t index)
{
	if (h == NULL || h->state != HO_NEW_RECEIVED)
		return -1;
	for (unsigned i = 0; i < h->n_fds; i++) {
		const struct kg_ho_fd *f = &h->rx->fds[i];

		if (f->kind == kind && h->fds[i] >= 0 &&
		    (kind != KG_HO_FD_LISTEN || (f->worker == worker && f->index == index))) {
			int fd = h->fds[i];

			h->fds[i] = -1;
			return fd;
		}
	}
	return -1;
}

int kg_handover_take_listener(struct kg_daemon *d, unsigned worker, size_t index)
{
	struct kg_handover *h = d->handover;
	int fd = take(h, KG_HO_FD_LISTEN, worker, index);

	if (h != NULL && h->state == HO_NEW_RECEIVED) {
		if (fd >= 0)
			h->adopted++;
		else
			h->opened++;
	}
	return fd;
}

int kg_handover_take_lock(struct kg_daemon *d)
{
	return take(d->handover, KG_HO_FD_LOCK, 0, 0);
}

int kg_handover_take_metrics(struct kg_daemon *d)
{
	return take(d->handover, KG_HO_FD_METRICS, 0, 0);
}

int kg_handover_take_control(struct kg_daemon *d)
{
	return take(d->handover, KG_HO_FD_CONTROL, 0, 0);
}

int kg_handover_take_xdp_link(struct kg_daemon *d, const char *ifname)
{
	struct kg_handover *h = d->handover;

	if (h == NULL || h->state != HO_NEW_RECEIVED)
		return -1;
	for (unsigned i = 0; i < h->n_fds; i++)
		if (h->rx->fds[i].kind == KG_HO_FD_XDP_LINK && h->fds[i] >= 0 &&
		    strcmp(h->rx->fds[i].text, ifname) == 0) {
			int fd = h->fds[i];

			h->fds[i] = -1;
			return fd;
		}
	return -1;
}

int kg_handover_take_xdp_obj(struct kg_daemon *d, unsigned obj, char *build_id, size_t len)
{
	struct kg_handover *h = d->handover;

	if (h == NULL || h->state != HO_NEW_RECEIVED)
		return -1;
	for (unsigned i = 0; i < h->n_fds; i++)
		if (h->rx->fds[i].kind == KG_HO_FD_XDP_GATE && h->rx->fds[i].index == obj &&
		    h->fds[i] >= 0) {
			int fd = h->fds[i];

			h->fds[i] = -1;
			snprintf(build_id, len, "%s", h->rx->fds[i].text);
			return fd;
		}
	return -1;
}

bool kg_handover_passed_xdp(const struct kg_daemon *d)
{
	const struct kg_handover *h = d->handover;

	if (h == NULL || h->rx == NULL)
		return false;
	for (unsigned i = 0; i < h->n_fds; i++)
		if (h->rx->fds[i].kind == KG_HO_FD_XDP_LINK)
			return true;
	return false;
}

/* Is pid gone (or a zombie nobody reaped yet)? */
static bool pid_gone(pid_t pid)
{
	char path[64], buf[256];
	FILE *f;
	char *rp;
	bool gone = false;

	if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
		return true;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return true;
	if (fgets(buf, sizeof(buf), f) != NULL && (rp = strrchr(buf, ')')) != NULL)
		gone = rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
	fclose(f);
	return gone;
}

int kg_handover_accepting(struct kg_daemon *d, char *err, size_t errlen)
{
	struct kg_handover *h = d->handover;
	unsigned unused = 0, received;
	uint8_t frame[32];
	size_t n;
	struct json_object *extra;

	if (h == NULL || h->state != HO_NEW_RECEIVED)
		return 0;
	received = h->n_fds;
	/* What no worker adopted (the old process had more workers, or this configuration
	 * has no /metrics): closed here; the old process closes its references after
	 * "accepting", and a listener's queue then moves to its group's other sockets
	 * (tcp_migrate_req). */
	for (unsigned i = 0; i < h->n_fds; i++)
		if (h->fds[i] >= 0) {
			if (h->rx->fds[i].kind == KG_HO_FD_LISTEN)
				unused++;
			close(h->fds[i]);
			h->fds[i] = -1;
		}
	/* We adopt live sessions (an older old process skips the message: its sessions
	 * drain there), then: we accept. */
	n = kg_ho_encode_adopt(frame, sizeof(frame), (uint32_t)getpid());
	if (send_all(h->chan, frame, n) == 0)
		n = kg_ho_encode_accepting(frame, sizeof(frame), (uint32_t)getpid());
	else
		n = 0;
	if (n == 0 || send_all(h->chan, frame, n) < 0) {
		if (!pid_gone(h->peer_pid)) {
			snprintf(err, errlen, "the running ktlsgated (pid %ld) gave up the handover "
				 "and keeps serving", (long)h->peer_pid);
			audit_line(h, ROLE_NEW, RES_ABORTED, h->peer_pid, h->t0_ms, err, NULL);
			return -1;
		}
		kg_log_warnx("handover: the old ktlsgated (pid %ld) is gone: serving alone",
			     (long)h->peer_pid);
		close(h->chan);
		h->chan = -1;
		h->state = HO_IDLE;
	} else {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = h->chan };

		(void)fcntl(h->chan, F_SETFL, fcntl(h->chan, F_GETFL) | O_NONBLOCK);
		(void)epoll_ctl(d->epfd, EPOLL_CTL_ADD, h->chan, &ev);
		h->state = HO_NEW_PEER;
		atomic_store(&h->peer_counting, true);
	}
	extra = json_object_new_object();
	if (extra != NULL) {
		json_object_object_add(extra, "sockets_received", json_object_new_int((int)received));
		json_object_object_add(extra, "listeners_adopted", json_object_new_int((int)h->adopted));
		json_object_object_add(extra, "listeners_opened", json_object_new_int((int)h->opened));
		json_object_object_add(extra, "listeners_closed", json_object_new_int((int)unused));
		json_object_object_add(extra, "peer_workers", json_object_new_int(h->rx->workers));
		json_object_object_add(extra, "workers", json_object_new_int((int)d->n_workers));
	}
	audit_line(h, ROLE_NEW, RES_OK, h->peer_pid, h->t0_ms, NULL, extra);
	if (h->state == HO_NEW_PEER)
		kg_log_info("handover: accepting on %u adopted and %u new listener(s); pid %ld "
			    "drains", h->adopted, h->opened, (long)h->peer_pid);
	else
		kg_log_info("handover: accepting on %u adopted and %u new listener(s)", h->adopted,
			    h->opened);
	if (unused > 0)
		kg_log_info("handover: %u listener(s) of the old process's extra workers closed "
			    "(their queue migrates with net.ipv4.tcp_migrate_req=1)", unused);
	return 0;
}

void kg_handover_forward(struct kg_daemon *d, const char *verb, const char *arg)
{
	struct kg_handover *h = d->handover;
	char line[KG_HO_TEXT_MAX + 1];
	uint8_t frame[KG_HO_HEADER + 2 + KG_HO_TEXT_MAX];
	size_t n;

	if (h == NULL || h->state != HO_NEW_PEER || h->chan < 0)
		return;
	if (snprintf(line, sizeof(line), "%s%s%s", verb, arg ? " " : "", arg ? arg : "") >=
	    (int)sizeof(line))
		return;
	n = kg_ho_encode_forward(frame, sizeof(frame), line);
	if (n == 0)
		return;
	if (send_all(h->chan, frame, n) < 0)
		kg_log_warnx("handover: could not forward '%s' to the draining pid %ld", line,
			     (long)h->peer_pid);
}

/*
 * The live handover, new side: a SESSIONS frame's records and the sockets that came
 * with it (two a record, in order, at the head of rx_fds) go to the workers, which
 * adopt them and judge each again under the newest registry. false: the frame lacks
 * its sockets (the channel is then closed).
 */
static bool take_sessions(struct kg_daemon *d, struct kg_handover *h, const struct kg_ho_msg *m)
{
	size_t need = 2 * (size_t)m->n_sessions, n = 0;
	struct kg_cmd cmd = { .type = KG_CMD_ADOPT_SESSIONS };
	const uint8_t *cur = (const uint8_t *)m->text;
	size_t left = m->text_len;

	if (h->n_rx_fds < need) {
		kg_log_warnx("handover: pid %ld sent %u session(s) with %zu socket(s), not %zu",
			     (long)h->peer_pid, m->n_sessions, h->n_rx_fds, need);
		return false;
	}
	cmd.xfer = calloc(m->n_sessions, sizeof(*cmd.xfer));
	if (cmd.xfer != NULL)
		while (n < m->n_sessions && kg_ho_session_next(&cur, &left, &cmd.xfer[n]))
			n++;
	if (cmd.xfer != NULL && n == m->n_sessions) {
		cmd.xfer_fds = h->rx_fds;
		cmd.n_xfer = n;
		if (kg_workers_call(d, &cmd) < 0)
			kg_log_warnx("handover: not every worker was given its sessions");
	} else {
		kg_log_warnx("handover: %u session(s) from pid %ld could not be read: closed",
			     m->n_sessions, (long)h->peer_pid);
		cmd.refused = m->n_sessions;
	}
	/* What no worker took (out of memory above) is closed: the device reconnects. */
	for (size_t i = 0; i < need; i++)
		if (h->rx_fds[i] >= 0)
			close(h->rx_fds[i]);
	rx_fds_consume(h, need);
	/* The first frame, and any with a refusal or a revocation, at info; the total when
	 * the old process is done (peer_gone()). */
	if (atomic_fetch_add(&h->sessions_adopted, cmd.adopted) == 0 || cmd.refused != 0 ||
	    cmd.closed != 0)
		kg_log_info("handover: adopted %u live session(s) from pid %ld (%u refused, %u "
			    "closed by the policy since)", cmd.adopted, (long)h->peer_pid, cmd.refused,
			    cmd.closed);
	else
		kg_log_debug("handover: adopted %u more live session(s) from pid %ld", cmd.adopted,
			     (long)h->peer_pid);
	atomic_fetch_add(&h->sessions_refused, cmd.refused);
	free(cmd.xfer);
	free(cmd.out);
	return true;
}

/* ---- the channel ------------------------------------------------------------------ */

/* One decoded frame. Returns false when the channel must be closed. */
static bool on_frame(struct kg_daemon *d, struct kg_handover *h, const struct kg_ho_msg *m,
		     char **list, size_t *list_len, uint32_t want_seq, bool *got_list)
{
	switch (m->type) {
	case KG_HO_ADOPT:
		if (h->state == HO_OLD_PASSED)
			h->peer_adopts = true;
		return true;
	case KG_HO_ACCEPTING:
		if (h->state == HO_OLD_PASSED)
			start_drain(d, h);
		return true;
	case KG_HO_SESSIONS:
		return h->state == HO_NEW_PEER && take_sessions(d, h, m);
	case KG_HO_FORWARD:
		if (h->state == HO_OLD_DRAINING || h->state == HO_OLD_PASSED)
			run_forward(d, m->text, m->text_len);
		return true;
	case KG_HO_LIST:
		if (h->state == HO_OLD_DRAINING || h->state == HO_OLD_PASSED)
			send_list(d, h, m->seq);
		return h->chan >= 0;
	case KG_HO_STATE:
		if (h->state == HO_NEW_PEER) {
			atomic_store(&h->peer_conns, m->connections);
			atomic_store(&h->peer_sessions, m->sessions);
			atomic_store(&h->peer_hs, m->handshakes);
		}
		return true;
	case KG_HO_LIST_REPLY:
		if (list != NULL && m->seq == want_seq) {
			char *nb = realloc(*list, *list_len + m->text_len + 1);

			if (nb != NULL) {
				memcpy(nb + *list_len, m->text, m->text_len);
				*list_len += m->text_len;
				nb[*list_len] = '\0';
				*list = nb;
			}
			*got_list = true;
		}
		return true;
	default:
		return true;   /* a newer peer's message */
	}
}

/* Decode what rbuf holds. false: the channel is broken (malformed). */
static bool drain_frames(struct kg_daemon *d, struct kg_handover *h, char **list,
			 size_t *list_len, uint32_t want_seq, bool *got_list)
{
	struct kg_ho_msg *m = malloc(sizeof(*m));
	bool ok = true;

	if (m == NULL)
		return true;   /* try again on the next event */
	while (ok && h->chan >= 0 && h->rlen > 0) {
		size_t used;
		enum kg_ho_parse pr = kg_ho_decode(h->rbuf, h->rlen, m, &used);

		if (pr == KG_HO_SHORT)
			break;
		if (pr != KG_HO_OK) {
			kg_log_warnx("handover: %s message from pid %ld: channel closed",
				     pr == KG_HO_UNSUPPORTED ? "unsupported" : "malformed",
				     (long)h->peer_pid);
			ok = false;
			break;
		}
		ok = on_frame(d, h, m, list, list_len, want_seq, got_list);
		if (h->chan >= 0)
			chan_consume(h, used);
	}
	free(m);
	return ok;
}

/* The peer hung up (or broke the channel). */
static void peer_gone(struct kg_daemon *d, struct kg_handover *h)
{
	switch (h->state) {
	case HO_OLD_PASSED:
		kg_log_warnx("handover: pid %ld went away before accepting: still serving",
			     (long)h->peer_pid);
		audit_line(h, ROLE_OLD, RES_ABORTED, h->peer_pid, h->t0_ms,
			   "the new process went away before accepting", NULL);
		h->state = HO_IDLE;
		break;
	case HO_OLD_DRAINING:
		kg_log_warnx("handover: pid %ld closed the channel; draining on alone",
			     (long)h->peer_pid);
		break;
	case HO_NEW_PEER:
		kg_log_info("handover: the old ktlsgated (pid %ld) is done; %llu live session(s) "
			    "adopted from it", (long)h->peer_pid,
			    (unsigned long long)atomic_load(&h->sessions_adopted));
		atomic_store(&h->peer_counting, false);
		atomic_store(&h->peer_conns, 0);
		atomic_store(&h->peer_sessions, 0);
		atomic_store(&h->peer_hs, 0);
		h->state = HO_IDLE;
		break;
	default:
		break;
	}
	chan_close(d, h);
}

bool kg_handover_idle(const struct kg_daemon *d)
{
	return d->handover == NULL || d->handover->state == HO_IDLE;
}

bool kg_handover_owns(const struct kg_daemon *d, int fd)
{
	return d->handover != NULL && d->handover->chan >= 0 && d->handover->chan == fd;
}

void kg_handover_event(struct kg_daemon *d)
{
	struct kg_handover *h = d->handover;

	for (;;) {
		ssize_t n = chan_read(h);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			(void)drain_frames(d, h, NULL, NULL, 0, NULL);
			if (h->chan >= 0)
				peer_gone(d, h);
			return;
		}
		if (!drain_frames(d, h, NULL, NULL, 0, NULL)) {
			peer_gone(d, h);
			return;
		}
		if (h->chan < 0)
			return;
	}
}

void kg_handover_peer_sessions(struct kg_daemon *d, char **buf, size_t *len)
{
	struct kg_handover *h = d->handover;
	uint8_t frame[32];
	uint64_t until;
	uint32_t seq;
	bool got = false;
	size_t n;

	if (h == NULL || h->state != HO_NEW_PEER || h->chan < 0)
		return;
	seq = ++h->list_seq;
	n = kg_ho_encode_list(frame, sizeof(frame), seq);
	if (send_all(h->chan, frame, n) < 0)
		return;
	until = kg_now_ms() + LIST_WAIT_MS;
	while (!got && h->chan >= 0) {
		struct pollfd pfd = { .fd = h->chan, .events = POLLIN };
		uint64_t now = kg_now_ms();
		ssize_t r;

		if (now >= until) {
			kg_log_warnx("handover: no session list from pid %ld in %d ms",
				     (long)h->peer_pid, LIST_WAIT_MS);
			return;
		}
		if (poll(&pfd, 1, (int)(until - now)) <= 0)
			continue;
		r = chan_read(h);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0 || !drain_frames(d, h, buf, len, seq, &got)) {
			peer_gone(d, h);
			return;
		}
	}
}

int kg_handover_tick(struct kg_daemon *d)
{
	struct kg_handover *h = d->handover;
	uint64_t now = kg_now_ms();
	int64_t conns;

	if (h == NULL)
		return -1;
	if (h->state == HO_OLD_PASSED) {
		if (now >= h->accept_deadline_ms) {
			kg_log_warnx("handover: pid %ld did not accept within %d s: still serving",
				     (long)h->peer_pid, ACCEPT_WAIT_MS / 1000);
			audit_line(h, ROLE_OLD, RES_ABORTED, h->peer_pid, h->t0_ms,
				   "the new process did not accept in time", NULL);
			h->state = HO_IDLE;
			chan_close(d, h);
			return -1;
		}
		return (int)(h->accept_deadline_ms - now);
	}
	if (h->state != HO_OLD_DRAINING || atomic_load(&d->stopping))
		return -1;
	/* Sessions that were busy, or still in their handshake, go once they are quiet:
	 * looked for every 250 ms (at once again after a full batch). */
	if (now >= h->next_pass_ms) {
		size_t full = (size_t)KG_HO_SESSIONS_MAX * d->n_workers;

		h->next_pass_ms = pass_sessions(d, h) >= full ? now : now + 250;
	}
	conns = atomic_load(&d->n_conns);
	if (conns == 0 || now >= h->drain_deadline_ms) {
		struct json_object *extra = json_object_new_object();

		if (extra != NULL) {
			json_object_object_add(extra, "sockets_passed", json_object_new_int((int)h->passed));
			json_object_object_add(extra, "connections_to_drain",
					       json_object_new_int64(h->conns_at_drain));
			json_object_object_add(extra, "connections_cut", json_object_new_int64(conns));
			json_object_object_add(extra, "sessions_passed",
					       json_object_new_uint64(atomic_load(&h->sessions_passed)));
		}
		audit_line(h, ROLE_OLD, conns == 0 ? RES_DRAINED : RES_TIMEOUT, h->peer_pid, h->t0_ms,
			   NULL, extra);
		kg_log_info("handover: %s: exiting", conns == 0 ? "every connection ended"
			    : "drain_timeout reached: closing the rest");
		send_state(d, h, true);
		atomic_store(&d->stopping, true);
		return 0;
	}
	if (now >= h->next_state_ms) {
		send_state(d, h, false);
		h->next_state_ms = now + STATE_EVERY_MS;
	}
	now = kg_now_ms();
	{
		uint64_t next = h->next_state_ms < h->drain_deadline_ms ? h->next_state_ms
									 : h->drain_deadline_ms;

		/* n_conns falling to 0 wakes nobody: look at least every 100 ms. */
		return next > now ? (int)(next - now < 100 ? next - now : 100) : 0;
	}
}

void kg_handover_status(struct kg_daemon *d, struct json_object *j)
{
	struct kg_handover *h = d->handover;
	struct json_object *o = json_object_new_object();

	if (o == NULL)
		return;
	json_object_object_add(o, "state", json_object_new_string(
		state_names[h != NULL ? h->state : HO_IDLE]));
	if (h != NULL) {
		json_object_object_add(o, "sessions_passed",
				       json_object_new_uint64(atomic_load(&h->sessions_passed)));
		json_object_object_add(o, "sessions_adopted",
				       json_object_new_uint64(atomic_load(&h->sessions_adopted)));
	}
	if (h != NULL && h->state != HO_IDLE) {
		json_object_object_add(o, "peer_pid", json_object_new_int((int)h->peer_pid));
		if (h->state == HO_NEW_PEER) {
			json_object_object_add(o, "peer_connections",
					       json_object_new_int64(atomic_load(&h->peer_conns)));
			json_object_object_add(o, "peer_sessions",
					       json_object_new_int64(atomic_load(&h->peer_sessions)));
			json_object_object_add(o, "peer_handshakes",
					       json_object_new_int64(atomic_load(&h->peer_hs)));
		}
	}
	json_object_object_add(j, "handover", o);
}

void kg_handover_metrics_write(struct kg_daemon *d, FILE *f)
{
	struct kg_handover *h = d->handover;

	fprintf(f, "# HELP ktlsgate_handover_total Listener handovers (ktlsgated --takeover) by "
		   "this process's role and how they ended.\n"
		   "# TYPE ktlsgate_handover_total counter\n");
	/* new: ok | aborted; old: refused | aborted | drained | timeout */
	for (unsigned r = 0; r < ROLE_MAX; r++)
		for (unsigned k = 0; k < RES_MAX; k++)
			if ((r == ROLE_NEW) == (k == RES_OK || k == RES_ABORTED) || k == RES_ABORTED)
				fprintf(f, "ktlsgate_handover_total{role=\"%s\",result=\"%s\"} %" PRIu64
					"\n", role_names[r], result_names[k],
					h != NULL ? atomic_load(&h->results[r][k]) : 0);
	fprintf(f, "# HELP ktlsgate_draining_sessions Relaying sessions the previous process "
		   "still holds after a handover (0: none draining).\n"
		   "# TYPE ktlsgate_draining_sessions gauge\n"
		   "ktlsgate_draining_sessions %" PRIu32 "\n",
		h != NULL ? atomic_load(&h->peer_sessions) : 0);
	fprintf(f, "# HELP ktlsgate_draining_connections Connections of any state the previous "
		   "process still holds after a handover.\n"
		   "# TYPE ktlsgate_draining_connections gauge\n"
		   "ktlsgate_draining_connections %" PRIu32 "\n",
		h != NULL ? atomic_load(&h->peer_conns) : 0);
}

void kg_handover_free(struct kg_daemon *d)
{
	struct kg_handover *h = d->handover;

	if (h == NULL)
		return;
	close_received(h);
	rx_fds_close(h);
	free(h->rx_fds);
	if (h->chan >= 0)
		close(h->chan);
	free(h->rbuf);
	free(h->rx);
	free(h);
	d->handover = NULL;
}
