/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * conn.c - the connection state machine. One table maps each state to its step
 * function and deadline; kg_conn_run() calls steps while they return KG_STEP_NEXT.
 * kg_conn_set_state() is the only writer of c->state and kg_conn_close() the only
 * teardown (relayd's relay_close()): every failure path ends there, which audits a
 * decision that was not yet audited, counts the close, and frees everything.
 *
 * Parse, decide, act: mqtt.c parses, policy.c decides, this file only acts.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "ktlsgate/audit.h"
#include "ktlsgate/backend.h"
#include "ktlsgate/conn.h"
#include "ktlsgate/err.h"
#include "ktlsgate/log.h"
#include "ktlsgate/edge.h"
#include "ktlsgate/relay.h"
#include "ktlsgate/tls.h"
#include "ktlsgate/worker.h"
#include "ktlsgate/writer.h"

/* Read granularity while waiting for the CONNECT. */
#define CONNECT_READ_CHUNK 4096u

const char *const kg_conn_state_names[KG_ST_MAX] = {
	[KG_ST_ACCEPTED] = "accepted",
	[KG_ST_TLS_HANDSHAKE] = "tls_handshake",
	[KG_ST_IDENTIFIED] = "identified",
	[KG_ST_POLICY] = "policy",
	[KG_ST_MQTT_CONNECT] = "mqtt_connect",
	[KG_ST_BACKEND_CONNECT] = "backend_connect",
	[KG_ST_HANDOFF] = "handoff",
	[KG_ST_RELAYING] = "relaying",
	[KG_ST_REFUSING] = "refusing",
	[KG_ST_CLOSED] = "closed",
};

enum deadline_kind { DL_NONE, DL_HANDSHAKE, DL_CONNECT, DL_BACKEND, DL_REFUSE };

struct state_ops {
	enum kg_step (*step)(struct kg_conn *c);
	enum deadline_kind deadline;
};

static enum kg_step st_accepted(struct kg_conn *c);
static enum kg_step st_handshake(struct kg_conn *c);
static enum kg_step st_identified(struct kg_conn *c);
static enum kg_step st_policy(struct kg_conn *c);
static enum kg_step st_mqtt_connect(struct kg_conn *c);
static enum kg_step st_backend_connect(struct kg_conn *c);
static enum kg_step st_handoff(struct kg_conn *c);
static enum kg_step st_relaying(struct kg_conn *c);
static enum kg_step st_refusing(struct kg_conn *c);

static const struct state_ops states[KG_ST_MAX] = {
	[KG_ST_ACCEPTED] = { st_accepted, DL_HANDSHAKE },
	[KG_ST_TLS_HANDSHAKE] = { st_handshake, DL_HANDSHAKE },
	[KG_ST_IDENTIFIED] = { st_identified, DL_CONNECT },
	[KG_ST_POLICY] = { st_policy, DL_CONNECT },
	[KG_ST_MQTT_CONNECT] = { st_mqtt_connect, DL_CONNECT },
	[KG_ST_BACKEND_CONNECT] = { st_backend_connect, DL_BACKEND },
	[KG_ST_HANDOFF] = { st_handoff, DL_BACKEND },
	[KG_ST_RELAYING] = { st_relaying, DL_NONE },
	[KG_ST_REFUSING] = { st_refusing, DL_REFUSE },
	[KG_ST_CLOSED] = { NULL, DL_NONE },
};

/* ---- buffers ------------------------------------------------------------- */

int kg_buf_reserve(struct kg_buf *b, size_t cap)
{
	uint8_t *p;

	if (b->cap >= cap)
		return 0;
	p = realloc(b->data, cap);
	if (p == NULL)
		return KG_E_RESOURCE;
	b->data = p;
	b->cap = cap;
	return 0;
}

void kg_buf_free(struct kg_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void kg_buf_release(struct kg_buf *b)
{
	if (b->len == b->off)
		kg_buf_free(b);
}

/* ---- helpers ---------------------------------------------------------------- */

static const struct kg_config *conn_cfg(const struct kg_conn *c)
{
	return &c->snap->cfg;
}

int kg_conn_watch(struct kg_conn *c, struct kg_evsrc *src, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };
	int op;

	if (src->fd < 0)
		return 0;
	if (src->events == events)
		return 0;
	/* Registered sources keep an entry even with no interest: EPOLL_CTL_MOD to 0 keeps
	 * error/hangup reporting out of the way until we care again. */
	op = src->events == UINT32_MAX ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
	if (epoll_ctl(c->w->epfd, op, src->fd, &ev) < 0)
		return KG_E_RESOURCE;
	src->events = events;
	return 0;
}

int kg_conn_unwatch(struct kg_conn *c, struct kg_evsrc *src)
{
	if (src->fd < 0 || src->events == UINT32_MAX)
		return 0;
	if (epoll_ctl(c->w->epfd, EPOLL_CTL_DEL, src->fd, NULL) < 0)
		return KG_E_RESOURCE;
	src->events = UINT32_MAX;
	return 0;
}

/* Arm the device fd for what the last TLS call asked for. */
static enum kg_step wait_tls(struct kg_conn *c)
{
	uint32_t ev = 0;

	if (c->want_read)
		ev |= EPOLLIN;
	if (c->want_write)
		ev |= EPOLLOUT;
	if (ev == 0)
		ev = EPOLLIN;
	if (kg_conn_watch(c, &c->dev, ev) < 0) {
		kg_conn_close(c, KG_REASON_IO_ERROR);
		return KG_STEP_DONE;
	}
	return KG_STEP_WAIT;
}

void kg_conn_set_state(struct kg_conn *c, enum kg_conn_state st)
{
	const struct kg_config *cfg = conn_cfg(c);
	unsigned ms = 0;

	kg_log_debug("conn=%llu dev=%s st=%s -> %s", (unsigned long long)c->cid,
		     c->identified ? c->id.device_id : "-", kg_conn_state_names[c->state],
		     kg_conn_state_names[st]);
	kg_metric_gauge(&c->w->metrics.conns_by_state[c->state], -1);
	kg_metric_gauge(&c->w->metrics.conns_by_state[st], 1);
	/* Handshakes in flight: the accept cap, and the steering program's load. */
	if (c->state == KG_ST_TLS_HANDSHAKE && st != KG_ST_TLS_HANDSHAKE) {
		atomic_fetch_sub(&c->w->d->n_handshakes, 1);
		kg_edge_handshake(c->w->d->edge, c->w->idx, -1);
		kg_worker_accept_resume(c->w);
	}
	if (st == KG_ST_TLS_HANDSHAKE && c->state != KG_ST_TLS_HANDSHAKE) {
		atomic_fetch_add(&c->w->d->n_handshakes, 1);
		kg_edge_handshake(c->w->d->edge, c->w->idx, 1);
	}

	/* States that share a deadline kind share the deadline: the handshake timeout
	 * counts from accept, the CONNECT timeout from the end of the handshake. */
	if (c->deadline_ms == 0 || states[st].deadline != states[c->state].deadline ||
	    st == KG_ST_REFUSING) {
		switch (states[st].deadline) {
		case DL_HANDSHAKE: ms = cfg->handshake_timeout_ms; break;
		case DL_CONNECT: ms = cfg->connect_timeout_ms; break;
		case DL_BACKEND: ms = cfg->backend_timeout_ms; break;
		case DL_REFUSE: ms = cfg->refuse_linger_ms; break;
		case DL_NONE: ms = 0; break;
		}
		c->deadline_ms = ms ? kg_now_ms() + ms : 0;
	}
	c->state = st;
}

void kg_conn_audit(struct kg_conn *c, bool allow, enum kg_reason reason, const char *detail)
{
	struct kg_audit_record r = {
		.event = "decision",
		.peer = c->peer,
		.device = c->identified || c->id.device_id[0] ? c->id.device_id : NULL,
		.thumbprint = c->id.thumbprint[0] ? c->id.thumbprint : NULL,
		.ca = c->id.ca_name[0] ? c->id.ca_name : NULL,
		.allow = allow,
		.reason = reason,
		.backend = allow ? c->verdict.backend : NULL,
		.conn_id = c->cid,
		.mqtt_level = c->mqtt_level,
		.detail = detail,
	};

	kg_audit_emit(&r);
	if (allow)
		kg_metric_add(&c->w->metrics.decisions_allow[reason], 1);
	else
		kg_metric_add(&c->w->metrics.decisions_deny[reason], 1);
	/* Verification and policy refusals feed the XDP gate (it ignores the rest). */
	if (!allow && c->peer_salen > 0)
		kg_edge_note_refusal(c->w->d->edge, &c->peer_sa.sa, c->peer_salen, reason);
	c->audited = true;
}

/* ---- start and close ------------------------------------------------------- */

static void format_peer(const struct sockaddr *sa, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, cap, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(out, cap, "unknown");
	}
}

void kg_conn_start(struct kg_worker *w, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct kg_conn *c;
	struct timespec now;
	int one = 1;

	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	c->cid = ((uint64_t)w->idx << 48) | ++w->next_id;
	c->w = w;
	c->snap = kg_snapshot_get(w->d);
	c->state = KG_ST_ACCEPTED;
	c->dev = (struct kg_evsrc){ .type = KG_EV_DEVICE, .fd = fd, .events = UINT32_MAX, .owner = c };
	c->be = (struct kg_evsrc){ .type = KG_EV_BACKEND, .fd = -1, .events = UINT32_MAX, .owner = c };
	c->accepted_us = kg_now_us();
	clock_gettime(CLOCK_REALTIME, &now);
	c->since = now.tv_sec;
	c->mode = KG_MODE_USERSPACE;
	format_peer(sa, c->peer, sizeof(c->peer));
	if (salen > 0 && salen <= sizeof(c->peer_sa)) {
		memcpy(&c->peer_sa, sa, salen);
		c->peer_salen = salen;
	}
	/* MQTT is request/response with small packets: Nagle only adds latency. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->n_conns++;
	atomic_fetch_add(&w->d->n_conns, 1);
	kg_metric_add(&w->metrics.accepted, 1);
	kg_metric_gauge(&w->metrics.conns_by_state[KG_ST_ACCEPTED], 1);
	kg_conn_set_state(c, KG_ST_ACCEPTED);
	kg_conn_run(c);
}

void kg_conn_close(struct kg_conn *c, enum kg_reason why)
{
	struct kg_worker *w = c->w;

	/* A connection that ends before its decision was audited gets one record:
	 * every refusal, timeout and garbage peer is visible. */
	if (!c->audited)
		kg_conn_audit(c, false, why, NULL);
	else if (c->state == KG_ST_RELAYING && why != KG_REASON_PEER_CLOSED &&
		 why != KG_REASON_BACKEND_CLOSED) {
		struct kg_audit_record r = {
			.event = "close", .peer = c->peer, .device = c->id.device_id,
			.thumbprint = c->id.thumbprint, .ca = c->id.ca_name, .allow = false,
			.reason = why, .conn_id = c->cid, .mqtt_level = c->mqtt_level,
		};
		kg_audit_emit(&r);
	}
	kg_metric_add(&w->metrics.closes[why], 1);
	if (c->state == KG_ST_RELAYING)
		kg_metric_gauge(&w->metrics.sessions_by_mode[c->mode], -1);
	kg_conn_set_state(c, KG_ST_CLOSED);
	kg_metric_gauge(&w->metrics.conns_by_state[KG_ST_CLOSED], -1);

	if (c->ssl)
		SSL_free(c->ssl);
	kg_record_session_free(c->rec);
	c->rec = NULL;
	kg_ktls_session_release(c);
	kg_tls_key_tracker_wipe(&c->keytrk);
	if (c->dev.fd >= 0)
		close(c->dev.fd);   /* close() also drops the epoll registration */
	if (c->be.fd >= 0)
		close(c->be.fd);
	kg_buf_free(&c->up);
	kg_buf_free(&c->down);

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_conns--;
	atomic_fetch_sub(&w->d->n_conns, 1);
	kg_snapshot_put(c->snap);
	c->snap = NULL;
	/* Freed by kg_worker_reap() after this loop turn: later events of the same
	 * epoll batch may still point at c, and see KG_ST_CLOSED. */
	c->prev = NULL;
	c->next = w->dead;
	w->dead = c;
}

void kg_conn_run(struct kg_conn *c)
{
	enum kg_step r;

	do {
		r = states[c->state].step(c);
	} while (r == KG_STEP_NEXT);
}

/*
 * Refuse the CONNECT: audit the decision, queue the CONNACK for the CONNECT's
 * protocol level, and let REFUSING flush it, send close_notify and linger briefly so
 * the device reads the answer instead of a reset.
 */
static enum kg_step conn_refuse(struct kg_conn *c, enum kg_reason why, enum kg_connack code,
				const char *detail)
{
	c->verdict.allow = false;
	c->verdict.reason = why;
	c->verdict.connack = code;
	kg_conn_audit(c, false, why, detail);
	c->refusal_len = kg_mqtt_encode_connack(c->mqtt_level, code, c->refusal, sizeof(c->refusal));
	c->refusal_off = 0;
	if (c->be.fd >= 0) {
		close(c->be.fd);
		c->be.fd = -1;
	}
	kg_conn_set_state(c, KG_ST_REFUSING);
	return KG_STEP_NEXT;
}

void kg_conn_timeout(struct kg_conn *c)
{
	switch (c->state) {
	case KG_ST_ACCEPTED:
	case KG_ST_TLS_HANDSHAKE:
		kg_metric_add(&c->w->metrics.handshakes[KG_HS_TIMEOUT], 1);
		kg_conn_close(c, KG_REASON_TIMEOUT);
		break;
	case KG_ST_BACKEND_CONNECT:
	case KG_ST_HANDOFF:
		kg_log_warnx("conn=%llu dev=%s backend %s: connect timed out",
			     (unsigned long long)c->cid, c->id.device_id, c->verdict.backend);
		c->audited = false;   /* the allow was audited; this refusal is a new decision */
		if (conn_refuse(c, KG_REASON_BACKEND_DOWN, KG_CONNACK_SERVER_UNAVAILABLE,
				"backend connect timed out") == KG_STEP_NEXT)
			kg_conn_run(c);
		break;
	case KG_ST_REFUSING:
		kg_conn_close(c, c->verdict.reason);
		break;
	default:
		kg_conn_close(c, KG_REASON_TIMEOUT);
		break;
	}
}

/* ---- the states ------------------------------------------------------------ */

static enum kg_step st_accepted(struct kg_conn *c)
{
	if (kg_tls_conn_new(c) < 0) {
		kg_conn_close(c, KG_REASON_OVERLOAD);
		return KG_STEP_DONE;
	}
	c->hs_start_us = kg_now_us();
	kg_conn_set_state(c, KG_ST_TLS_HANDSHAKE);
	return KG_STEP_NEXT;
}

static enum kg_step st_handshake(struct kg_conn *c)
{
	enum kg_reason why = KG_REASON_TLS_FAILED;
	int rc = kg_tls_handshake(c, &why);

	if (rc == KG_E_AGAIN)
		return wait_tls(c);
	if (rc < 0) {
		kg_metric_add(&c->w->metrics.handshakes[KG_HS_FAILED], 1);
		kg_log_debug("conn=%llu peer=%s handshake failed: %s", (unsigned long long)c->cid,
			     c->peer, kg_reason_str(why));
		if (!c->verify_ran) {
			kg_conn_close(c, why);
			return KG_STEP_DONE;
		}
		/* A TLS 1.3 client finishes its side before we judge its certificate and
		 * may already be sending CONNECT: closing now, with that unread, would
		 * answer with a RST that can overtake the alert. Linger like a refusal. */
		c->verdict.reason = why;
		kg_conn_audit(c, false, why, NULL);
		c->refusal_len = c->refusal_off = 0;
		kg_conn_set_state(c, KG_ST_REFUSING);
		return KG_STEP_NEXT;
	}
	kg_metric_add(&c->w->metrics.handshakes[KG_HS_OK], 1);
	kg_metrics_observe_handshake(&c->w->metrics, kg_now_us() - c->hs_start_us);
	kg_conn_set_state(c, KG_ST_IDENTIFIED);
	return KG_STEP_NEXT;
}

static enum kg_step st_identified(struct kg_conn *c)
{
	/* The verify callback ran and accepted, or the handshake would have failed;
	 * this is the invariant that lets everything below trust c->id. */
	if (!c->verify_ran || c->verify_reason != KG_REASON_OK) {
		kg_log_warnx("conn=%llu: handshake completed without verification", (unsigned long long)c->cid);
		kg_conn_close(c, KG_REASON_TLS_FAILED);
		return KG_STEP_DONE;
	}
	c->identified = true;
	kg_conn_set_state(c, KG_ST_POLICY);
	return KG_STEP_NEXT;
}

static enum kg_step st_policy(struct kg_conn *c)
{
	struct kg_device dev;
	struct kg_policy_input in = { .id = &c->id, .cfg = conn_cfg(c) };
	int rc;

	/* Kept for the session's life: the SSL may be freed at the handoff. */
	if (c->id.method == KG_ATT_CA)
		(void)kg_leaf_ref_from_cert(SSL_get0_peer_certificate(c->ssl), &c->leaf);
	rc = kg_registry_device_get(c->w->reg, c->id.device_id, &dev);
	if (rc == 0)
		in.device = &dev;
	else if (rc != KG_E_NOTFOUND)
		kg_log_warnx("conn=%llu dev=%s: registry read failed: %s", (unsigned long long)c->cid,
			     c->id.device_id, kg_err_str(rc));
	/* The CA row comes with the trust snapshot: no registry read, no PEM copy. */
	if (c->id.method == KG_ATT_CA && c->id.ca_name[0])
		in.ca = kg_trust_get0_ca(c->snap->trust, c->id.ca_name);
	kg_policy_decide(&in, &c->verdict);
	c->decided = true;

	if (c->verdict.allow && c->verdict.enroll) {
		struct kg_device nd = { .status = KG_DEV_ENABLED, .attestation = KG_ATT_CA };

		memcpy(nd.id, c->id.device_id, sizeof(nd.id));
		memcpy(nd.ca_name, c->id.ca_name, sizeof(nd.ca_name));
		nd.cert_not_after = c->id.not_after;
		nd.last_seen = c->since;
		kg_writer_enroll(c->w->d->writer, &nd);
	} else if (c->verdict.allow) {
		kg_writer_touch(c->w->d->writer, c->id.device_id, c->since, c->id.not_after);
	}
	kg_conn_set_state(c, KG_ST_MQTT_CONNECT);
	return KG_STEP_NEXT;
}

static enum kg_step st_mqtt_connect(struct kg_conn *c)
{
	const struct kg_config *cfg = conn_cfg(c);
	struct kg_mqtt_connect mc;
	enum kg_parse pr;
	long n;

	for (;;) {
		/* Parse what we have first: a CONNECT may already be complete. */
		pr = c->up.len ? kg_mqtt_parse_connect(c->up.data, c->up.len, cfg->max_connect_bytes, &mc)
			       : KG_PARSE_SHORT;
		if (pr != KG_PARSE_SHORT)
			break;
		if (kg_buf_reserve(&c->up, c->up.len + CONNECT_READ_CHUNK) < 0) {
			kg_conn_close(c, KG_REASON_OVERLOAD);
			return KG_STEP_DONE;
		}
		n = kg_tls_read(c, c->up.data + c->up.len, c->up.cap - c->up.len);
		if (n == KG_E_AGAIN)
			return wait_tls(c);
		if (n <= 0) {
			kg_conn_close(c, n == 0 ? KG_REASON_PEER_CLOSED : KG_REASON_IO_ERROR);
			return KG_STEP_DONE;
		}
		c->up.len += (size_t)n;
	}
	if (pr == KG_PARSE_UNSUPPORTED) {
		/* 3.1.1 3.1.2.2: answer an unsupported level with return code 1. The level
		 * is unknown, so the 3.x format, which every client version can read. */
		c->mqtt_level = KG_MQTT_V311;
		return conn_refuse(c, KG_REASON_BAD_MQTT, KG_CONNACK_BAD_PROTOCOL,
				   "unsupported protocol level");
	}
	if (pr != KG_PARSE_OK) {
		static const char *const why[] = {
			[KG_PARSE_MALFORMED] = "malformed CONNECT",
			[KG_PARSE_TOO_BIG] = "CONNECT over max_connect_bytes",
			[KG_PARSE_NOT_CONNECT] = "first packet is not CONNECT",
		};
		kg_conn_audit(c, false, KG_REASON_BAD_MQTT, why[pr]);
		kg_conn_close(c, KG_REASON_BAD_MQTT);
		return KG_STEP_DONE;
	}
	c->mqtt_level = mc.level;
	c->connect_len = (uint32_t)mc.packet_len;
	if (!c->verdict.allow)
		return conn_refuse(c, c->verdict.reason, c->verdict.connack, NULL);
	if (!kg_policy_client_id_ok(cfg, &c->id, mc.client_id, mc.client_id_len))
		return conn_refuse(c, KG_REASON_CLIENT_ID_MISMATCH, KG_CONNACK_BAD_CLIENT_ID, NULL);
	kg_conn_audit(c, true, c->verdict.reason, NULL);
	kg_conn_set_state(c, KG_ST_BACKEND_CONNECT);
	return KG_STEP_NEXT;
}

static enum kg_step st_backend_connect(struct kg_conn *c)
{
	const struct kg_backend_conf *b;

	if (c->be.fd < 0) {
		b = kg_config_get0_backend(conn_cfg(c), c->verdict.backend);
		if (b == NULL)   /* policy checked it; a reload cannot change our snapshot */
			return conn_refuse(c, KG_REASON_NO_BACKEND, KG_CONNACK_SERVER_UNAVAILABLE, NULL);
		c->be.fd = kg_backend_connect_start(b);
		if (c->be.fd < 0) {
			c->audited = false;
			return conn_refuse(c, KG_REASON_BACKEND_DOWN, KG_CONNACK_SERVER_UNAVAILABLE,
					   strerror(errno));
		}
		/* Stop reading the device while the broker is not there: bytes it pipelines
		 * wait in the socket, the CONNECT waits in c->up. */
		if (kg_conn_watch(c, &c->dev, 0) < 0 || kg_conn_watch(c, &c->be, EPOLLOUT) < 0) {
			kg_conn_close(c, KG_REASON_IO_ERROR);
			return KG_STEP_DONE;
		}
		return KG_STEP_WAIT;
	}
	if (c->ev_type == KG_EV_DEVICE) {
		/* The device is not read here; only its hangup matters. */
		if (c->ev_events & (EPOLLHUP | EPOLLERR)) {
			kg_conn_close(c, KG_REASON_PEER_CLOSED);
			return KG_STEP_DONE;
		}
		return KG_STEP_WAIT;
	}
	if (kg_backend_connect_finish(c->be.fd) < 0) {
		kg_log_warnx("conn=%llu dev=%s backend %s: %s", (unsigned long long)c->cid,
			     c->id.device_id, c->verdict.backend, strerror(errno));
		c->audited = false;
		return conn_refuse(c, KG_REASON_BACKEND_DOWN, KG_CONNACK_SERVER_UNAVAILABLE,
				   strerror(errno));
	}
	kg_conn_set_state(c, KG_ST_HANDOFF);
	return KG_STEP_NEXT;
}

static enum kg_step st_handoff(struct kg_conn *c)
{
	bool again;
	const struct kg_relay_ops *r = kg_relay_start(c, &again);

	if (r == NULL && again) {
		kg_metric_add(&c->w->metrics.handoff_waits, 1);
		/* Half a TLS record sits inside OpenSSL: wait for the rest of it, and
		 * leave the broker alone meanwhile (the handoff deadline still runs). */
		if (kg_conn_watch(c, &c->dev, EPOLLIN) < 0 || kg_conn_watch(c, &c->be, 0) < 0) {
			kg_conn_close(c, KG_REASON_IO_ERROR);
			return KG_STEP_DONE;
		}
		return KG_STEP_WAIT;
	}
	if (r == NULL) {
		kg_conn_close(c, KG_REASON_IO_ERROR);
		return KG_STEP_DONE;
	}
	c->mode = r->mode;
	/* the CONNECT is not counted: only what the device pipelined behind it */
	if (c->up.len > c->up.off + c->connect_len)
		kg_metric_add(&c->w->metrics.handoff_carried, c->up.len - c->up.off - c->connect_len);
	kg_metric_gauge(&c->w->metrics.sessions_by_mode[c->mode], 1);
	kg_metric_add(&c->w->metrics.sessions_started[c->mode], 1);
	kg_log_debug("conn=%llu dev=%s: relaying in %s mode", (unsigned long long)c->cid,
		     c->id.device_id, r->name);
	kg_conn_set_state(c, KG_ST_RELAYING);
	return KG_STEP_NEXT;
}

static enum kg_step st_relaying(struct kg_conn *c)
{
	return kg_relay_for_mode(c->mode)->pump(c);
}

static enum kg_step st_refusing(struct kg_conn *c)
{
	uint8_t sink[512];
	long n;

	while (c->refusal_off < c->refusal_len) {
		n = kg_tls_write(c, c->refusal + c->refusal_off, c->refusal_len - c->refusal_off);
		if (n == KG_E_AGAIN)
			return wait_tls(c);
		if (n <= 0) {
			kg_conn_close(c, c->verdict.reason);
			return KG_STEP_DONE;
		}
		c->refusal_off += (size_t)n;
		if (c->refusal_off == c->refusal_len)
			kg_tls_shutdown(c);
	}
	if (!c->dev_eof) {
		/* Half-close, then drain until the device hangs up or the linger deadline:
		 * closing with unread input would send a RST that can destroy the CONNACK
		 * (or the TLS alert) before the device reads it. dev_eof marks it done. */
		(void)shutdown(c->dev.fd, SHUT_WR);
		c->dev_eof = true;
	}
	for (;;) {
		n = read(c->dev.fd, sink, sizeof(sink));
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (kg_conn_watch(c, &c->dev, EPOLLIN | EPOLLRDHUP) < 0)
				break;
			return KG_STEP_WAIT;
		}
		break;
	}
	kg_conn_close(c, c->verdict.reason);
	return KG_STEP_DONE;
}
