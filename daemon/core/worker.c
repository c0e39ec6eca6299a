/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * worker.c - one thread per core. Each worker has its own SO_REUSEPORT listeners (the
 * kernel spreads new connections across them), its own epoll loop, a read-only
 * registry handle and per-thread metrics; it owns its connections outright, so no
 * connection state is ever locked.
 *
 * Deadlines: the loop wakes at least every TICK_MS and scans connections that have a
 * deadline: pre-relay states, and relaying sessions' idle timeouts (a comparison each;
 * the relay only notes activity, the scan moves the deadline). The same tick writes
 * the audit flood guard's due summaries.
 *
 * Other threads reach a worker only through its command queue and eventfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ktlsgate/evsrc.h"
#include "ops/audit.h"
#include "ops/err.h"
#include "auth/auth_pool.h"
#include "core/fdstore.h"
#include "core/handover.h"
#include "core/handover_msg.h"
#include "core/listener.h"
#include "ops/log.h"
#include "relay/relay.h"
#include "core/srclimit.h"
#include "core/worker.h"
#include "relay/sockmap.h"

/* Deadlines are scanned at most every TICK_MS while one is near (and at that pace
 * while a relay waits on the kernel or accept is paused); otherwise the loop sleeps
 * until the nearest one, IDLE_SCAN_MS at most (the watchdog's loop_ms stays fresh and
 * the audit flood guard's reports go out). An idle gate costs a few wake-ups a second,
 * not 50 per worker. */
#define TICK_MS 20
#define IDLE_SCAN_MS 500
#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
#define KG_PIPES_KEEP 64   /* empty splice pipes a worker keeps for reuse */
/* Out of fds: accept stays off this long, and says so at most once per interval. */
#define ACCEPT_BACKOFF_MS 100
#define FD_LOG_INTERVAL_MS 10000
/* File descriptors kept free for /metrics, the control socket, the registry writer
 * and backend connects of devices already admitted: a new device socket whose number
 * reaches into them is shed (fds are allocated lowest first, so its number bounds
 * how many are in use). Also the margin of the start-up warning. */
#define FD_HEADROOM 64

static void cmd_done(struct kg_cmd *cmd, unsigned closed, const char *out, size_t out_len)
{
	pthread_mutex_lock(&cmd->lock);
	cmd->closed += closed;
	if (out_len > 0) {
		char *p = realloc(cmd->out, cmd->out_len + out_len + 1);
		if (p != NULL) {
			memcpy(p + cmd->out_len, out, out_len);
			cmd->out_len += out_len;
			p[cmd->out_len] = '\0';
			cmd->out = p;
		}
	}
	cmd->pending--;
	pthread_cond_broadcast(&cmd->cond);
	pthread_mutex_unlock(&cmd->lock);
}

/* Same backend name, same address in both configs? */
static bool same_backend(const struct kg_config *old, const char *old_name,
			 const struct kg_config *cur, const char *cur_name)
{
	const struct kg_backend_conf *a = kg_config_get0_backend(old, old_name);
	const struct kg_backend_conf *b = kg_config_get0_backend(cur, cur_name);

	if (strcmp(old_name, cur_name) != 0 || a == NULL || b == NULL)
		return false;
	return a->addr.len == b->addr.len && memcmp(&a->addr.ss, &b->addr.ss, a->addr.len) == 0;
}

/*
 * Why a live session must end under the current snapshot `cur` (the newest trust and
 * config, not the one the session pinned at accept), or KG_REASON_OK. Cheapest checks
 * first, so a disabled CA closes thousands of sessions without a registry read each:
 * the CA (gone or unproven: revoked; disabled: ca_disabled), the leaf in a CRL
 * (cert_revoked), then the device's row through the policy (status, attestation, the
 * thumbprint pin: revoked), then the backend
 * it would get now (another name, or the same name at another address: backend_moved,
 * so the device reconnects there and no session stays on the old broker).
 */
static enum kg_reason revalidate(struct kg_worker *w, struct kg_conn *c,
				 const struct kg_snapshot *cur)
{
	const struct kg_ca *ca = NULL;
	struct kg_device dev;
	struct kg_policy_input in = { .id = &c->id, .cfg = &cur->cfg };
	struct kg_verdict v;
	int rc;

	if (c->id.method == KG_ATT_CA) {
		ca = kg_trust_get0_ca(cur->trust, c->id.ca_name);
		if (ca == NULL || !ca->verified)
			return KG_REASON_REVOKED;
		if (kg_policy_ca_status(&c->id, ca, NULL) != KG_REASON_OK)
			return KG_REASON_CA_DISABLED;
		if (kg_trust_leaf_revoked(cur->trust, &c->leaf))
			return KG_REASON_CERT_REVOKED;
	}
	/* From the store: a change (or a resync) brought us here, and the cache may not
	 * say more than the database does now. */
	rc = kg_registry_device_get_fresh(w->reg, c->id.device_id, &dev);
	if (rc == 0) {
		in.device = &dev;
	} else if (rc != KG_E_NOTFOUND) {
		/* Cannot read the registry: do not cut sessions on a hiccup, but say so. */
		kg_log_warnx("conn=%llu dev=%s: revalidation skipped: registry read failed: %s",
			     (unsigned long long)c->cid, c->id.device_id, kg_err_str(rc));
		return KG_REASON_OK;
	}
	in.ca = ca;
	kg_policy_decide(&in, &v);
	if (!v.allow)
		return v.reason == KG_REASON_CA_DISABLED ? v.reason : KG_REASON_REVOKED;
	if (c->state >= KG_ST_BACKEND_CONNECT &&
	    !same_backend(&c->snap->cfg, c->verdict.backend, &cur->cfg, v.backend))
		return KG_REASON_BACKEND_MOVED;
	return KG_REASON_OK;
}

/* One `session list` line. json-c escapes: device ids may hold '"' and '\\'. */
static size_t session_json(const struct kg_conn *c, char *buf, size_t cap)
{
	struct json_object *o = json_object_new_object();
	const char *s;
	size_t n = 0;

	if (o == NULL)
		return 0;
	json_object_object_add(o, "id", json_object_new_uint64(c->cid));
	json_object_object_add(o, "device", json_object_new_string(c->identified ? c->id.device_id : ""));
	json_object_object_add(o, "peer", json_object_new_string(c->peer));
	json_object_object_add(o, "state", json_object_new_string(kg_conn_state_names[c->state]));
	json_object_object_add(o, "mode", json_object_new_string(
		c->state == KG_ST_RELAYING ? kg_relay_for_mode(c->io.mode)->name : ""));
	/* What the kernel really does for this session, not what was configured. */
	json_object_object_add(o, "ktls", json_object_new_string(
		c->io.ktls_tx && c->io.ktls_rx ? "tx+rx" : c->io.ktls_tx ? "tx"
					 : c->io.ktls_rx ? "rx" : "none"));
	/* How its TLS handshake went: a resumed session's identity came from its ticket
	 * (tls/tickets.h). "" before the handshake ends and on plain or proxy listeners. */
	json_object_object_add(o, "tls", json_object_new_string(
		!c->tls_done ? "" : c->resumed ? "resumed" : "full"));
	json_object_object_add(o, "backend", json_object_new_string(c->verdict.allow ? c->verdict.backend : ""));
	json_object_object_add(o, "ca", json_object_new_string(c->id.ca_name));
	json_object_object_add(o, "method", json_object_new_string(
		c->identified ? kg_attestation_str(c->id.method) : ""));
	json_object_object_add(o, "since", json_object_new_int64(c->since));
	json_object_object_add(o, "bytes_up", json_object_new_uint64(c->io.bytes_up));
	json_object_object_add(o, "bytes_down", json_object_new_uint64(c->io.bytes_down));
	json_object_object_add(o, "worker", json_object_new_int((int)c->w->idx));
	json_object_object_add(o, "listener", json_object_new_string(c->listener->name));
	/* Which process holds it: during a handover the old one's sessions are listed by
	 * the new one too (core/handover.h). */
	json_object_object_add(o, "pid", json_object_new_int((int)getpid()));
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (s != NULL) {
		n = strlen(s);
		if (n + 2 <= cap) {
			memcpy(buf, s, n);
			buf[n++] = '\n';
		} else {
			n = 0;
		}
	}
	json_object_put(o);
	return n;
}

/* KG_CMD_ADOPT_SESSIONS: this worker's share of the records. Each adopted session is
 * judged again at once under the newest registry: a revocation made while it was
 * between the processes (neither listed it) reaches it here. */
static void adopt_sessions(struct kg_worker *w, struct kg_cmd *cmd, struct kg_snapshot **cur,
			   unsigned *closed)
{
	unsigned adopted = 0, refused = 0;

	for (size_t i = 0; i < cmd->n_xfer; i++) {
		const struct kg_ho_session *s = &cmd->xfer[i];
		int *fds = &cmd->xfer_fds[2 * i];
		char why[128];
		struct kg_conn *c;
		enum kg_reason r;

		if (s->worker % w->d->n_workers != w->idx || fds[0] < 0 || fds[1] < 0)
			continue;
		c = kg_conn_adopt(w, s, fds[0], fds[1], why, sizeof(why));
		fds[0] = fds[1] = -1;
		if (c == NULL) {
			kg_log_warnx("handover: session of %s (conn=%llu in the old process) not "
				     "adopted: %s: closed", s->device_id, (unsigned long long)s->cid, why);
			refused++;
			continue;
		}
		adopted++;
		if (c->state == KG_ST_CLOSED)
			continue;
		if (*cur == NULL)
			*cur = kg_snapshot_get(w->d);
		if ((r = revalidate(w, c, *cur)) != KG_REASON_OK) {
			kg_conn_close(c, r);
			(*closed)++;
		}
	}
	pthread_mutex_lock(&cmd->lock);
	cmd->adopted += adopted;
	cmd->refused += refused;
	pthread_mutex_unlock(&cmd->lock);
}

static void run_cmd(struct kg_worker *w, struct kg_cmd *cmd)
{
	struct kg_snapshot *cur = NULL;   /* taken on first use: the newest trust + config */
	struct kg_conn *c, *next;
	unsigned closed = 0;
	char *out = NULL;
	size_t out_len = 0, out_cap = 0, exported = 0;

	if (cmd->type == KG_CMD_ADOPT_SESSIONS)
		adopt_sessions(w, cmd, &cur, &closed);
	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		switch (cmd->type) {
		case KG_CMD_REVALIDATE_DEVICE:
		case KG_CMD_REVALIDATE_CA:
		case KG_CMD_REVALIDATE_ALL: {
			enum kg_reason why;

			/* Sessions not (yet) admitted are judged by the policy step. */
			if (!c->identified || !c->verdict.allow || c->state == KG_ST_REFUSING)
				break;
			if (cmd->type == KG_CMD_REVALIDATE_DEVICE && strcmp(c->id.device_id, cmd->arg) != 0)
				break;
			/* A CA's status reaches the CAs it issued: every CA-attested session. */
			if (cmd->type == KG_CMD_REVALIDATE_CA && c->id.method != KG_ATT_CA)
				break;
			if (cur == NULL)
				cur = kg_snapshot_get(w->d);
			if ((why = revalidate(w, c, cur)) != KG_REASON_OK) {
				kg_conn_close(c, why);
				closed++;
			}
			break;
		}
		case KG_CMD_KILL_DEVICE:
			if (c->identified && strcmp(c->id.device_id, cmd->arg) == 0) {
				kg_conn_close(c, KG_REASON_KILLED);
				closed++;
			}
			break;
		case KG_CMD_LIST_SESSIONS: {
			char line[768];
			size_t n;

			/* A sockmap session's byte counts are the kernel's: bring them in, and
			 * note the traffic for the idle deadline as kg_conn_timeout() would
			 * (the sync reports movement once). */
			{
				bool up_moved = false;

				if (kg_sockmap_session_sync(&c->io, &up_moved) &&
				    (up_moved || c->idle_any_dir))
					c->active_ms = kg_now_ms();
			}
			n = session_json(c, line, sizeof(line));
			if (n == 0)
				break;
			if (out == NULL || out_len + n + 1 > out_cap) {
				size_t ncap = out_cap ? out_cap * 2 : 4096;
				char *p;

				while (ncap < out_len + n + 1)
					ncap *= 2;
				p = realloc(out, ncap);
				if (p == NULL)
					break;
				out = p;
				out_cap = ncap;
			}
			memcpy(out + out_len, line, n);
			out_len += n;
			break;
		}
		case KG_CMD_STOP:
			kg_conn_close(c, KG_REASON_SHUTDOWN);
			break;
		case KG_CMD_STOP_ACCEPT:
		case KG_CMD_ADOPT_SESSIONS:
			break;
		case KG_CMD_EXPORT_SESSIONS: {
			size_t k = w->idx * cmd->xfer_quota + exported;

			if (exported < cmd->xfer_quota &&
			    kg_conn_export(c, &cmd->xfer[k], &cmd->xfer_fds[2 * k]))
				exported++;
			break;
		}
		}
	}
	if (cmd->type == KG_CMD_EXPORT_SESSIONS) {
		pthread_mutex_lock(&cmd->lock);
		cmd->xfer_count[w->idx] = exported;
		pthread_mutex_unlock(&cmd->lock);
	}
	/* The sockets live on in the process that took them over: only our references
	 * go; their queues are that process's to accept. */
	if (cmd->type == KG_CMD_STOP_ACCEPT) {
		for (size_t i = 0; i < w->n_listeners; i++) {
			(void)kg_evsrc_unwatch(w->epfd, &w->listeners[i]);
			close(w->listeners[i].fd);
			w->listeners[i].fd = -1;
		}
		/* No listener left to pause or resume: the loop serves connections only. */
		w->n_listeners = 0;
		w->accept_paused = false;
	}
	kg_snapshot_put(cur);
	if (cmd->type == KG_CMD_STOP)
		w->stop = true;
	cmd_done(cmd, closed, out, out_len);
	free(out);
}

static void drain_queue(struct kg_worker *w)
{
	struct kg_cmd_node *list, *n;
	uint64_t v;

	(void)!read(w->wake.fd, &v, sizeof(v));
	pthread_mutex_lock(&w->q_lock);
	list = w->q_head;
	w->q_head = NULL;
	pthread_mutex_unlock(&w->q_lock);
	/* The queue is LIFO; run oldest first. */
	{
		struct kg_cmd_node *rev = NULL;
		while (list) {
			n = list->next;
			list->next = rev;
			rev = list;
			list = n;
		}
		list = rev;
	}
	while (list) {
		n = list->next;
		run_cmd(w, list->cmd);
		free(list);
		list = n;
	}
}

static void set_accept(struct kg_worker *w, bool on)
{
	if (w->accept_paused == !on)
		return;
	for (size_t i = 0; i < w->n_listeners; i++)
		(void)kg_evsrc_watch(w->epfd, &w->listeners[i], on ? EPOLLIN : 0);
	w->accept_paused = !on;
}

void kg_worker_accept_resume(struct kg_worker *w)
{
	if (w->accept_paused && kg_now_ms() >= w->accept_resume_ms)
		set_accept(w, true);
}

/* The soft fd limit, as a number fds are compared with. */
static uint64_t fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return UINT64_MAX;
	return rl.rlim_cur;
}

/*
 * Out of file descriptors (accept failed with EMFILE/ENFILE, or the new socket would
 * eat into FD_HEADROOM). As nginx and HAProxy do: give back the reserve fd, accept the
 * pending connection and close it at once (the device hears now instead of waiting
 * in the backlog, and the level-triggered listener stops firing), take the reserve
 * again. Then accept stays off for ACCEPT_BACKOFF_MS instead of spinning, and the log
 * says so once per FD_LOG_INTERVAL_MS with the count of what it did not say.
 */
static void out_of_fds(struct kg_worker *w, struct kg_evsrc *l, int err)
{
	uint64_t now = kg_now_ms();
	enum kg_accept_err which = err == ENFILE ? KG_ACCEPT_ENFILE : KG_ACCEPT_EMFILE;

	kg_metric_add(&w->metrics.accept_errors[which], 1);
	if (err != 0 && w->reserve_fd >= 0) {
		int fd;

		close(w->reserve_fd);
		fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			close(fd);
		w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	w->accept_resume_ms = now + ACCEPT_BACKOFF_MS;
	set_accept(w, false);
	kg_worker_due(w, w->accept_resume_ms);
	if (w->fd_log_ms == 0 || now - w->fd_log_ms >= FD_LOG_INTERVAL_MS) {
		kg_log_warnx("worker %u: out of file descriptors (%s): shedding new connections "
			     "for %d ms (%llu more since the last message; fd limit %llu)", w->idx,
			     err == ENFILE ? "ENFILE" : "EMFILE", ACCEPT_BACKOFF_MS,
			     (unsigned long long)w->fd_log_missed, (unsigned long long)fd_limit());
		w->fd_log_ms = now;
		w->fd_log_missed = 0;
	} else {
		w->fd_log_missed++;
	}
}

static void do_accept(struct kg_worker *w, struct kg_evsrc *l)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		if ((uint64_t)atomic_load(&w->d->n_handshakes) >= w->d->max_handshakes) {
			/* Leave the rest in the backlog: the kernel queues them, and a
			 * finished handshake resumes accepting (another worker's, at our
			 * next tick). */
			set_accept(w, false);
			kg_worker_due(w, kg_now_ms() + TICK_MS);
			return;
		}
		len = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				out_of_fds(w, l, errno);
			return;
		}
		if ((uint64_t)fd + w->fd_headroom >= w->fd_limit) {
			close(fd);
			out_of_fds(w, l, 0);
			return;
		}
		if ((uint64_t)atomic_load(&w->d->n_conns) >= w->d->max_connections) {
			kg_metric_add(&w->metrics.refused_overload, 1);
			close(fd);
			continue;
		}
		kg_conn_start(w, fd, (struct sockaddr *)&ss, len, (size_t)(l - w->listeners));
	}
}

/*
 * Password checks the auth pool finished for this worker: each goes to the connection
 * still waiting for it under its tag (the connection id), found on the list of those
 * waiting (what the pool holds for this worker), not among every live one. One that
 * closed meanwhile cancelled its job, and a result that races the cancel finds nobody
 * here: dropped.
 */
static void auth_results(struct kg_worker *w)
{
	struct kg_auth_done done[16];
	size_t n;

	while ((n = kg_auth_pool_pop(w->d->auth_pool, w->idx, done, KG_NITEMS(done))) > 0) {
		for (size_t i = 0; i < n; i++) {
			struct kg_conn *c;

			for (c = w->auth_waiting; c != NULL; c = c->auth_next)
				if (c->cid == done[i].tag)
					break;
			if (c != NULL)
				kg_conn_auth_done(c, &done[i].res);
		}
		kg_worker_reap(w);
	}
}

/* The sockmap sessions the verdict noticed since the last look (a socket took another
 * KG_SM_CHECK_BYTES): measured now, and held if their sink does not drain
 * (relay_plain.c, "Back-pressure"). The notices are shared memory, read after every
 * wake-up at no system call's cost; the verdict's doorbell (sockmap.h) makes the main
 * thread wake this worker (its command eventfd) when one comes. */
static void sockmap_notices(struct kg_worker *w)
{
	uint64_t cookies[KG_SM_NOTICE_SLOTS];
	bool overrun = false;
	size_t n;

	if (w->d->sockmap == NULL)
		return;
	n = kg_sockmap_notices(w->d->sockmap, w->idx, &w->sm_seen, cookies, &overrun);
	if (n == 0 && !overrun)
		return;
	for (struct kg_conn *c = w->conns; c != NULL; c = c->next) {
		bool hit = overrun;

		if (c->state != KG_ST_RELAYING || !c->io.sm_in)
			continue;
		for (size_t i = 0; !hit && i < n; i++)
			hit = cookies[i] == c->io.sm_cookie[0] || cookies[i] == c->io.sm_cookie[1];
		if (!hit)
			continue;
		kg_sockmap_session_check(&c->io);
		if (c->io.recheck)
			kg_worker_due(w, kg_now_ms() + TICK_MS);
	}
}

/* Run what is due, and note when the next deadline of a connection that stays is
 * (w->next_scan_ms). */
static void scan_deadlines(struct kg_worker *w)
{
	uint64_t now = kg_now_ms();
	struct kg_conn *c, *next;

	w->next_scan_ms = now + IDLE_SCAN_MS;
	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		/* A relay waiting on the kernel alone (relay.h, recheck) looks again now. */
		if (c->state == KG_ST_RELAYING && c->io.recheck) {
			c->io.recheck = false;
			c->ev_type = KG_EV_BACKEND;
			c->ev_events = 0;
			kg_conn_run(c);
			if (c->state == KG_ST_CLOSED)
				continue;
		}
		if (c->deadline_ms != 0 && now >= c->deadline_ms)
			kg_conn_timeout(c);
		if (c->state == KG_ST_CLOSED)
			continue;
		kg_worker_due(w, c->deadline_ms);
		if (c->io.recheck)
			kg_worker_due(w, now + TICK_MS);
	}
}

static void *worker_main(void *arg)
{
	struct kg_worker *w = arg;
	struct epoll_event evs[MAX_EVENTS];
	uint64_t last_scan = kg_now_ms();

	w->next_scan_ms = last_scan + TICK_MS;
	while (!w->stop) {
		uint64_t now = kg_now_ms();
		/* At least a tick between scans; at most until the nearest deadline. */
		uint64_t due = w->next_scan_ms > last_scan + TICK_MS ? w->next_scan_ms
								      : last_scan + TICK_MS;
		int n = epoll_wait(w->epfd, evs, MAX_EVENTS, due > now ? (int)(due - now) : 0);

		for (int i = 0; i < n; i++) {
			struct kg_evsrc *src = evs[i].data.ptr;
			struct kg_conn *c;

			switch (src->type) {
			case KG_EV_LISTEN:
				do_accept(w, src);
				break;
			case KG_EV_WAKE:
				drain_queue(w);
				break;
			case KG_EV_AUTH:
				auth_results(w);
				break;
			case KG_EV_DEVICE:
			case KG_EV_BACKEND:
			case KG_EV_ASYNC:
				c = src->owner;
				/* Closed earlier in this batch: its memory waits on w->dead
				 * until the batch is over, exactly for this check. */
				if (c->state == KG_ST_CLOSED)
					break;
				c->ev_type = src->type;
				c->ev_events = evs[i].events;
				kg_conn_run(c);
				break;
			}
		}
		kg_worker_reap(w);
		sockmap_notices(w);
		now = kg_now_ms();
		if (now >= w->next_scan_ms && now - last_scan >= TICK_MS) {
			last_scan = now;
			atomic_store_explicit(&w->loop_ms, last_scan, memory_order_relaxed);
			scan_deadlines(w);
			kg_worker_reap(w);
			kg_audit_limiter_tick(&w->audit_rl, kg_now_ms(), false);
			if (w->accept_paused && last_scan >= w->accept_resume_ms &&
			    (uint64_t)atomic_load(&w->d->n_handshakes) < w->d->max_handshakes)
				set_accept(w, true);
			/* Paused accept is looked at each tick: other workers' handshakes
			 * ending wake nobody here. */
			if (w->accept_paused)
				kg_worker_due(w, last_scan + TICK_MS);
		}
	}
	return NULL;
}

int kg_worker_init(struct kg_worker *w, struct kg_daemon *d, unsigned idx, char *err, size_t errlen)
{
	const struct kg_config *cfg = &d->snap->cfg;
	uint64_t seed;
	int rc;

	memset(w, 0, sizeof(*w));
	w->reserve_fd = -1;
	kg_pipe_pool_init(&w->pipes, KG_PIPES_KEEP);
	kg_rl_init(&w->audit_rl, KG_RL_SLOTS);
	w->d = d;
	w->idx = idx;
	w->epfd = -1;
	w->wake.fd = -1;
	pthread_mutex_init(&w->q_lock, NULL);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0) {
		snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
		return -1;
	}
	w->wake = (struct kg_evsrc){ .type = KG_EV_WAKE, .owner = w, .events = UINT32_MAX,
				     .fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) };
	if (w->wake.fd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -1;
	}
	if (kg_evsrc_watch(w->epfd, &w->wake, EPOLLIN) < 0) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		return -1;
	}
	w->auth_done = (struct kg_evsrc){ .type = KG_EV_AUTH, .owner = w, .events = UINT32_MAX,
					  .fd = kg_auth_pool_fd(d->auth_pool, idx) };
	if (kg_evsrc_watch(w->epfd, &w->auth_done, EPOLLIN) < 0) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < cfg->n_listen; i++) {
		/* A takeover: the old process's socket for this worker and address, its
		 * queue included; after a restart under systemd, one the store kept; else
		 * a new one in the same SO_REUSEPORT group. */
		int fd = kg_handover_take_listener(d, idx, i);

		if (fd < 0)
			fd = kg_fdstore_take(d, i);
		if (fd < 0)
			fd = kg_listener_open(&cfg->listen[i], err, errlen);

		if (fd < 0)
			return -1;
		w->listeners[i] = (struct kg_evsrc){ .type = KG_EV_LISTEN, .fd = fd, .owner = w,
						     .events = UINT32_MAX };
		w->n_listeners++;
		if (kg_evsrc_watch(w->epfd, &w->listeners[i], EPOLLIN) < 0) {
			snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
			return -1;
		}
	}
	rc = kg_registry_open(cfg->registry, KG_REG_READONLY, &w->reg, err, errlen);
	if (rc < 0)
		return -1;
	kg_registry_set_cache(w->reg, d->regcache);   /* NULL: a file registry, read directly */
	if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		seed = kg_now_us() ^ ((uint64_t)idx << 32);
	w->srclimit = kg_srclimit_new(cfg->source_table, seed);
	if (w->srclimit == NULL) {
		snprintf(err, errlen, "source table (%u): out of memory", cfg->source_table);
		return -1;
	}
	/* One fd kept to give back when accept hits EMFILE (out_of_fds()). */
	w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	w->fd_limit = fd_limit();
	/* a tiny limit (tests, containers) keeps three quarters for devices */
	w->fd_headroom = w->fd_limit / 4 < FD_HEADROOM ? w->fd_limit / 4 : FD_HEADROOM;
	if (idx == 0 && w->fd_limit < (uint64_t)d->max_connections * 2 + FD_HEADROOM)
		kg_log_warnx("fd limit %llu is below max_connections x 2 + %d (%llu): past about "
			     "%llu connections new ones are shed (raise LimitNOFILE / ulimit -n)",
			     (unsigned long long)w->fd_limit, FD_HEADROOM,
			     (unsigned long long)d->max_connections * 2 + FD_HEADROOM,
			     (unsigned long long)(w->fd_limit > 2 * FD_HEADROOM
							  ? (w->fd_limit - FD_HEADROOM) / 2 : 0));
	return 0;
}

int kg_worker_start(struct kg_worker *w)
{
	char name[32];   /* the kernel keeps 15 bytes */

	atomic_store_explicit(&w->loop_ms, kg_now_ms(), memory_order_relaxed);
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		return KG_E_RESOURCE;
	/* Taken now, while w->thread is certainly valid: a scrape reads the clock later
	 * from another thread (worker_stats.c), possibly after the join. */
	if (pthread_getcpuclockid(w->thread, &w->cpu_clock) == 0)
		atomic_store_explicit(&w->cpu_clock_ok, true, memory_order_release);
	/* "kg-worker3" in top -H, ps -L and /proc/PID/task/TID/comm */
	snprintf(name, sizeof(name), "kg-worker%u", w->idx);
	name[15] = '\0';
	(void)pthread_setname_np(w->thread, name);
	return 0;
}

void kg_worker_join(struct kg_worker *w)
{
	pthread_join(w->thread, NULL);
}

void kg_worker_reap(struct kg_worker *w)
{
	while (w->dead) {
		struct kg_conn *c = w->dead;

		w->dead = c->next;
		free(c);
	}
}

void kg_worker_fini(struct kg_worker *w)
{
	while (w->conns)
		kg_conn_close(w->conns, KG_REASON_SHUTDOWN);
	kg_worker_reap(w);
	kg_audit_limiter_tick(&w->audit_rl, kg_now_ms(), true);   /* what was held back */
	kg_pipe_pool_fini(&w->pipes);
	for (size_t i = 0; i < w->n_listeners; i++)
		if (w->listeners[i].fd >= 0)
			close(w->listeners[i].fd);
	if (w->wake.fd >= 0)
		close(w->wake.fd);
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->reg)
		kg_registry_close(w->reg);
	kg_srclimit_free(w->srclimit);
	if (w->reserve_fd >= 0)
		close(w->reserve_fd);
	pthread_mutex_destroy(&w->q_lock);
}

void kg_worker_wake(struct kg_worker *w)
{
	uint64_t one = 1;

	(void)!write(w->wake.fd, &one, sizeof(one));
}

int kg_workers_call(struct kg_daemon *d, struct kg_cmd *cmd)
{
	uint64_t one = 1;
	int rc = 0;

	pthread_mutex_init(&cmd->lock, NULL);
	pthread_cond_init(&cmd->cond, NULL);
	cmd->pending = d->n_workers;
	for (unsigned i = 0; i < d->n_workers; i++) {
		struct kg_worker *w = &d->workers[i];
		struct kg_cmd_node *node = malloc(sizeof(*node));

		if (node == NULL) {
			pthread_mutex_lock(&cmd->lock);
			cmd->pending--;
			pthread_mutex_unlock(&cmd->lock);
			rc = KG_E_RESOURCE;
			continue;
		}
		node->cmd = cmd;
		pthread_mutex_lock(&w->q_lock);
		node->next = w->q_head;
		w->q_head = node;
		pthread_mutex_unlock(&w->q_lock);
		(void)!write(w->wake.fd, &one, sizeof(one));
	}
	/* No timeout: workers never block, and cmd lives on our stack until all answered. */
	pthread_mutex_lock(&cmd->lock);
	while (cmd->pending > 0)
		pthread_cond_wait(&cmd->cond, &cmd->lock);
	pthread_mutex_unlock(&cmd->lock);
	pthread_mutex_destroy(&cmd->lock);
	pthread_cond_destroy(&cmd->cond);
	return rc;
}

void kg_workers_stop_accept(struct kg_daemon *d)
{
	struct kg_cmd cmd = { .type = KG_CMD_STOP_ACCEPT };

	(void)!kg_workers_call(d, &cmd);
	free(cmd.out);
}

int64_t kg_workers_relaying(const struct kg_daemon *d)
{
	int64_t n = 0;

	for (unsigned i = 0; i < d->n_workers; i++)
		for (unsigned m = 0; m < KG_MODE_MAX; m++)
			n += atomic_load_explicit(&d->workers[i].metrics.sessions_by_mode[m],
						  memory_order_relaxed);
	return n;
}

size_t kg_workers_export_sessions(struct kg_daemon *d, struct kg_ho_session *recs, int *fds,
				  size_t cap)
{
	struct kg_cmd cmd = { .type = KG_CMD_EXPORT_SESSIONS, .xfer = recs, .xfer_fds = fds,
			      .xfer_quota = d->n_workers ? cap / d->n_workers : 0 };
	size_t n = 0;

	if (cmd.xfer_quota == 0)
		return 0;
	cmd.xfer_count = calloc(d->n_workers, sizeof(*cmd.xfer_count));
	if (cmd.xfer_count == NULL)
		return 0;
	if (kg_workers_call(d, &cmd) < 0)
		kg_log_warnx("not every worker was asked for its live sessions");
	/* Each worker wrote its slice at [w * quota]: close the gaps, in order (a record
	 * only ever moves down). */
	for (unsigned w = 0; w < d->n_workers; w++)
		for (size_t j = 0; j < cmd.xfer_count[w]; j++, n++) {
			size_t k = w * cmd.xfer_quota + j;

			recs[n] = recs[k];
			fds[2 * n] = fds[2 * k];
			fds[2 * n + 1] = fds[2 * k + 1];
		}
	free(cmd.xfer_count);
	free(cmd.out);
	return n;
}
