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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/auth_check.h"
#include "auth/auth_pool.h"
#include "ops/audit.h"
#include "policy/credential.h"
#include "proxy/proxy_v2.h"
#include "relay/backend.h"
#include "core/conn.h"
#include "core/conn_tls.h"
#include "ops/err.h"
#include "ops/log.h"
#include "edge/edge.h"
#include "relay/relay.h"
#include "core/srclimit.h"
#include "core/worker.h"
#include "registry/registry_cache.h"
#include "registry/writer.h"
#include "tls/session_cache.h"

/* Read granularity while waiting for the CONNECT. */
#define CONNECT_READ_CHUNK 4096u
/* What a refused device may still send while we linger (bytes read and dropped). */
#define REFUSE_DRAIN_MAX (16u * 1024u)

const char *const kg_conn_state_names[KG_ST_MAX] = {
	[KG_ST_ACCEPTED] = "accepted",
	[KG_ST_PROXY_HEADER] = "proxy_header",
	[KG_ST_TLS_HANDSHAKE] = "tls_handshake",
	[KG_ST_IDENTIFIED] = "identified",
	[KG_ST_POLICY] = "policy",
	[KG_ST_MQTT_CONNECT] = "mqtt_connect",
	[KG_ST_AUTH] = "auth",
	[KG_ST_BACKEND_CONNECT] = "backend_connect",
	[KG_ST_HANDOFF] = "handoff",
	[KG_ST_RELAYING] = "relaying",
	[KG_ST_REFUSING] = "refusing",
	[KG_ST_CLOSED] = "closed",
};

enum deadline_kind { DL_NONE, DL_HANDSHAKE, DL_CONNECT, DL_BACKEND, DL_REFUSE, DL_IDLE };

struct state_ops {
	enum kg_step (*step)(struct kg_conn *c);
	enum deadline_kind deadline;
};

static enum kg_step st_accepted(struct kg_conn *c);
static enum kg_step st_proxy_header(struct kg_conn *c);
static enum kg_step st_handshake(struct kg_conn *c);
static enum kg_step st_identified(struct kg_conn *c);
static enum kg_step st_policy(struct kg_conn *c);
static enum kg_step st_mqtt_connect(struct kg_conn *c);
static enum kg_step st_auth(struct kg_conn *c);
static void decide(struct kg_conn *c);
/*
 * [backend] proxy_protocol = v2: before any device byte, tell the broker who the device
 * is (docs/config.md): its address and port, the listener's, the certificate's CN (the
 * device id) in an SSL TLV and its SHA-256 in our 0xE0 TLV, with a CRC32C. Sent with one
 * send() on the socket that just connected: the header is under 400 bytes and a fresh
 * socket's send buffer is empty, so a short write means the broker is gone, as any
 * other failure. 0, or -1 with errno.
 */
static int send_proxy_header(struct kg_conn *c)
{
	struct kg_pp2_header h;
	struct sockaddr_storage local = { 0 };
	socklen_t llen = sizeof(local);
	uint8_t sha[32], buf[512];
	const uint8_t *src, *dst;
	uint16_t sport, dport;
	size_t alen, n, sha_len = 0;
	bool with_cert;
	ssize_t w;

	if (getsockname(c->io.dev.fd, (struct sockaddr *)&local, &llen) < 0)
		return -1;
	if (c->peer_sa.sa.sa_family == AF_INET && local.ss_family == AF_INET) {
		const struct sockaddr_in *l = (const struct sockaddr_in *)&local;

		alen = 4;
		src = (const uint8_t *)&c->peer_sa.in.sin_addr;
		sport = ntohs(c->peer_sa.in.sin_port);
		dst = (const uint8_t *)&l->sin_addr;
		dport = ntohs(l->sin_port);
	} else if (c->peer_sa.sa.sa_family == AF_INET6 && local.ss_family == AF_INET6) {
		const struct sockaddr_in6 *l = (const struct sockaddr_in6 *)&local;

		alen = 16;
		src = c->peer_sa.in6.sin6_addr.s6_addr;
		sport = ntohs(c->peer_sa.in6.sin6_port);
		dst = l->sin6_addr.s6_addr;
		dport = ntohs(l->sin6_port);
	} else {
		errno = EAFNOSUPPORT;
		return -1;
	}
	/* the identity keeps the certificate's SHA-256 as hex (verify.c): back to bytes.
	 * A device that proved itself with CONNECT credentials has no certificate: no SSL
	 * TLV, no hash; one a TLS front vouched for without a hash: the CN alone. */
	if (c->id.thumbprint[0] != '\0' &&
	    (OPENSSL_hexstr2buf_ex(sha, sizeof(sha), &sha_len, c->id.thumbprint, '\0') != 1 ||
	     sha_len != sizeof(sha))) {
		errno = EINVAL;
		return -1;
	}
	with_cert = c->id.method == KG_ATT_CA || c->id.method == KG_ATT_THUMBPRINT;
	if (!kg_pp2_device_header(&h, alen, src, sport, dst, dport, with_cert ? c->id.device_id : NULL,
				  strnlen(c->id.device_id, sizeof(c->id.device_id)),
				  sha_len == sizeof(sha) ? sha : NULL) ||
	    (n = kg_pp2_encode(&h, true, buf, sizeof(buf))) == 0) {
		errno = EINVAL;
		return -1;
	}
	w = send(c->io.be.fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0)
		return -1;
	if ((size_t)w != n) {
		errno = EPIPE;
		return -1;
	}
	return 0;
}

static enum kg_step st_backend_connect(struct kg_conn *c);
static enum kg_step st_handoff(struct kg_conn *c);
static enum kg_step st_relaying(struct kg_conn *c);
static enum kg_step st_refusing(struct kg_conn *c);

static const struct state_ops states[KG_ST_MAX] = {
	[KG_ST_ACCEPTED] = { st_accepted, DL_HANDSHAKE },
	[KG_ST_PROXY_HEADER] = { st_proxy_header, DL_HANDSHAKE },
	[KG_ST_TLS_HANDSHAKE] = { st_handshake, DL_HANDSHAKE },
	[KG_ST_IDENTIFIED] = { st_identified, DL_CONNECT },
	[KG_ST_POLICY] = { st_policy, DL_CONNECT },
	[KG_ST_MQTT_CONNECT] = { st_mqtt_connect, DL_CONNECT },
	[KG_ST_AUTH] = { st_auth, DL_CONNECT },
	[KG_ST_BACKEND_CONNECT] = { st_backend_connect, DL_BACKEND },
	[KG_ST_HANDOFF] = { st_handoff, DL_BACKEND },
	[KG_ST_RELAYING] = { st_relaying, DL_IDLE },
	[KG_ST_REFUSING] = { st_refusing, DL_REFUSE },
	[KG_ST_CLOSED] = { NULL, DL_NONE },
};

/* ---- helpers ---------------------------------------------------------------- */

static const struct kg_config *conn_cfg(const struct kg_conn *c)
{
	return &c->snap->cfg;
}

/* Must this connection present a certificate? An mtls listener, or x509_only. */
static bool x509_required(const struct kg_conn *c)
{
	return c->listener->kind == KG_LISTENER_MTLS || c->listener->x509_only ||
	       conn_cfg(c)->auth.x509_only;
}

/* How the device proved (or tried to prove) itself, for the audit line: its
 * attestation once identified, the kind of CONNECT credentials it sent, else nothing. */
static const char *auth_word(const struct kg_conn *c)
{
	if (c->identified)
		return kg_attestation_str(c->id.method);
	if (c->cred_kind < KG_AUTH_KIND_MAX)
		return kg_auth_kind_str((enum kg_auth_kind)c->cred_kind);
	return NULL;
}

/* Listeners other than [daemon] listen's are named in the audit line. */
static const char *listener_name(const struct kg_conn *c)
{
	return c->listener == &conn_cfg(c)->listeners[0] ? NULL : c->listener->name;
}

int kg_conn_watch(struct kg_conn *c, struct kg_evsrc *src, uint32_t events)
{
	return kg_evsrc_watch(c->w->epfd, src, events) < 0 ? KG_E_RESOURCE : 0;
}

int kg_conn_unwatch(struct kg_conn *c, struct kg_evsrc *src)
{
	return kg_evsrc_unwatch(c->w->epfd, src) < 0 ? KG_E_RESOURCE : 0;
}

/* Arm the device fd for what the last TLS call asked for. */
static enum kg_step wait_tls(struct kg_conn *c)
{
	uint32_t ev = 0;

	if (c->io.want_read)
		ev |= EPOLLIN;
	if (c->io.want_write)
		ev |= EPOLLOUT;
	if (ev == 0)
		ev = EPOLLIN;
	if (kg_conn_watch(c, &c->io.dev, ev) < 0) {
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
	/* The source's pending count covers accept to the end of the handshake. */
	if (c->src_held && st != KG_ST_ACCEPTED && st != KG_ST_TLS_HANDSHAKE) {
		kg_srclimit_release(c->w->srclimit, &c->src);
		c->src_held = false;
	}
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
		case DL_IDLE: ms = c->idle_ms; break;   /* set by st_handoff() */
		case DL_NONE: ms = 0; break;
		}
		c->deadline_ms = ms ? kg_now_ms() + ms : 0;
		kg_worker_due(c->w, c->deadline_ms);
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
		.auth = auth_word(c),
		.listener = listener_name(c),
		.allow = allow,
		.reason = reason,
		.backend = allow ? c->verdict.backend : NULL,
		.conn_id = c->cid,
		.mqtt_level = c->mqtt_level,
		.detail = detail,
		.resumed = c->resumed,
		.resumed_psk_ke = c->resumed_psk_ke,
	};

	/* The flood guard: refusals of peers that never authenticated are limited per
	 * (reason, source); every decision about an identified device is written. The
	 * metrics below count every decision either way. */
	if (allow || c->identified)
		kg_audit_emit(&r);
	else if (!kg_audit_emit_limited(&c->w->audit_rl, conn_cfg(c), &r, &c->peer_sa.sa,
					c->peer_salen, kg_now_ms()))
		kg_metric_add(&c->w->metrics.audit_suppressed[reason], 1);
	if (allow)
		kg_metric_add(&c->w->metrics.decisions_allow[reason], 1);
	else
		kg_metric_add(&c->w->metrics.decisions_deny[reason], 1);
	if (!allow && c->resumed)
		kg_metric_add(&c->w->metrics.resume_refusals[KG_RESUME_POLICY], 1);
	if (!allow && reason == KG_REASON_REGISTRY_UNAVAILABLE && c->w->d->regcache != NULL)
		kg_regcache_count_refusal(c->w->d->regcache);
	/* Verification and policy refusals feed the XDP gate (it ignores the rest). */
	if (!allow && c->peer_salen > 0 && !c->behind_proxy)
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

/*
 * A source over its limits is closed before it costs anything but this: no struct
 * kg_conn, no SSL. The refusal is audited (through the audit flood guard) and counted
 * like any other, and feeds the
 * XDP gate, which then drops the source before it reaches accept at all.
 */
static void refuse_at_accept(struct kg_worker *w, const struct kg_config *cfg, int fd,
			     const struct sockaddr *sa, socklen_t salen, enum kg_src_limit which)
{
	char peer[64];
	struct kg_audit_record r = {
		.event = "decision", .peer = peer, .allow = false,
		.reason = KG_REASON_SOURCE_LIMIT,
		.detail = which == KG_SRC_LIMIT_HANDSHAKES ? "over source_max_handshakes"
							   : "over source_rate",
	};

	format_peer(sa, peer, sizeof(peer));
	/* A source over its limits never authenticated: its lines go through the flood
	 * guard like any other unauthenticated refusal (the metrics count every one). */
	if (!kg_audit_emit_limited(&w->audit_rl, cfg, &r, sa, salen, kg_now_ms()))
		kg_metric_add(&w->metrics.audit_suppressed[KG_REASON_SOURCE_LIMIT], 1);
	kg_metric_add(&w->metrics.source_limited[which], 1);
	kg_metric_add(&w->metrics.decisions_deny[KG_REASON_SOURCE_LIMIT], 1);
	kg_metric_add(&w->metrics.closes[KG_REASON_SOURCE_LIMIT], 1);
	kg_edge_note_refusal(w->d->edge, sa, salen, KG_REASON_SOURCE_LIMIT);
	close(fd);
}

/* Per-source admission: true with *held set when the connection may start. */
static bool source_admit(struct kg_worker *w, const struct kg_config *cfg, int fd,
			 const struct sockaddr *sa, socklen_t salen, struct kg_srckey *src,
			 bool *held)
{
	struct kg_srclimit_limits lim = {
		.max_pending = cfg->source_max_handshakes,
		.rate = cfg->source_rate,
		.burst = cfg->source_burst,
	};

	*held = false;
	if ((lim.max_pending == 0 && lim.rate == 0) || w->srclimit == NULL ||
	    kg_srclimit_key(sa, salen, cfg->source_prefix_v4, cfg->source_prefix_v6, src) != 0)
		return true;
	switch (kg_srclimit_admit(w->srclimit, &lim, src, kg_now_ms())) {
	case KG_SRC_OK:
		*held = true;
		return true;
	case KG_SRC_UNTRACKED:
		kg_metric_add(&w->metrics.source_untracked, 1);
		return true;
	case KG_SRC_PENDING:
		refuse_at_accept(w, cfg, fd, sa, salen, KG_SRC_LIMIT_HANDSHAKES);
		return false;
	case KG_SRC_RATE:
		refuse_at_accept(w, cfg, fd, sa, salen, KG_SRC_LIMIT_RATE);
		return false;
	}
	return true;
}

struct kg_conn *kg_conn_alloc(struct kg_worker *w, struct kg_snapshot *snap,
			      const struct kg_listener_conf *lc, int fd, const struct sockaddr *sa,
			      socklen_t salen)
{
	struct kg_conn *c = calloc(1, sizeof(*c));
	struct timespec now;

	if (c == NULL)
		return NULL;
	c->cid = ((uint64_t)w->idx << 48) | ++w->next_id;
	c->w = w;
	c->snap = snap;
	c->listener = lc;
	c->state = KG_ST_ACCEPTED;
	c->cred_kind = KG_AUTH_KIND_MAX;
	c->io.dev = (struct kg_evsrc){ .type = KG_EV_DEVICE, .fd = fd, .events = UINT32_MAX, .owner = c };
	c->io.be = (struct kg_evsrc){ .type = KG_EV_BACKEND, .fd = -1, .events = UINT32_MAX, .owner = c };
	for (size_t i = 0; i < 2; i++)
		c->async_ev[i] = (struct kg_evsrc){ .type = KG_EV_ASYNC, .fd = -1,
						    .events = UINT32_MAX, .owner = c };
	/* What the relays borrow (relay.h), valid for the connection's life: kTLS is
	 * prepared before the handshake, so all of it is set here, not at the handoff. */
	c->io.cid = c->cid;
	c->io.worker_idx = w->idx;
	c->io.device_id = c->id.device_id;
	c->io.cfg = &snap->cfg;
	c->io.metrics = &w->metrics;
	c->io.pipes = &w->pipes;
	c->io.ktls_unavailable = &w->ktls_unavailable;
	c->io.sockmap = w->d->sockmap;
	/* plain and proxy listeners: no TLS on the device's side, the plain relays' */
	c->io.dev_plain = lc->kind == KG_LISTENER_PLAIN || lc->kind == KG_LISTENER_PROXY;
	c->io.epfd = w->epfd;
	c->accepted_us = kg_now_us();
	clock_gettime(CLOCK_REALTIME, &now);
	c->since = now.tv_sec;
	c->io.mode = KG_MODE_USERSPACE;
	format_peer(sa, c->peer, sizeof(c->peer));
	if (salen > 0 && salen <= sizeof(c->peer_sa)) {
		memcpy(&c->peer_sa, sa, salen);
		c->peer_salen = salen;
	}
	return c;
}

void kg_conn_link(struct kg_conn *c)
{
	struct kg_worker *w = c->w;

	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->n_conns++;
	atomic_fetch_add(&w->d->n_conns, 1);
	kg_metric_gauge(&w->metrics.conns_by_state[c->state], 1);
}

void kg_conn_start(struct kg_worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
		   size_t listen_idx)
{
	struct kg_snapshot *snap = kg_snapshot_get(w->d);
	struct kg_conn *c;
	struct kg_srckey src;
	bool held;
	int one = 1;

	const struct kg_listener_conf *lc = kg_config_listener_of(&snap->cfg, listen_idx);

	/* A trusted TLS front carries many devices on one address: the per-source limits
	 * would throttle the whole fleet behind it (the front limits its own clients). */
	if (lc->kind == KG_LISTENER_PROXY &&
	    kg_cidr_match(lc->proxy_sources, lc->n_proxy_sources, sa, salen)) {
		held = false;
		memset(&src, 0, sizeof(src));
	} else if (!source_admit(w, &snap->cfg, fd, sa, salen, &src, &held)) {
		kg_snapshot_put(snap);
		return;
	}
	c = kg_conn_alloc(w, snap, lc, fd, sa, salen);
	if (c == NULL) {
		if (held)
			kg_srclimit_release(w->srclimit, &src);
		kg_snapshot_put(snap);
		close(fd);
		return;
	}
	kg_metric_add(&w->metrics.listener_accepted[c->listener - snap->cfg.listeners], 1);
	c->listen_idx = (uint16_t)listen_idx;
	c->src = src;
	c->src_held = held;
	/* MQTT is request/response with small packets: Nagle only adds latency. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	kg_conn_link(c);
	kg_metric_add(&w->metrics.accepted, 1);
	kg_conn_set_state(c, KG_ST_ACCEPTED);
	kg_conn_run(c);
}

/* A password check for c is in the pool: c goes on its worker's auth_waiting list. */
static void auth_wait(struct kg_conn *c)
{
	struct kg_worker *w = c->w;

	c->auth_pending = true;
	c->auth_prev = NULL;
	c->auth_next = w->auth_waiting;
	if (w->auth_waiting != NULL)
		w->auth_waiting->auth_prev = c;
	w->auth_waiting = c;
}

static void auth_unwait(struct kg_conn *c)
{
	if (!c->auth_pending)
		return;
	if (c->auth_prev != NULL)
		c->auth_prev->auth_next = c->auth_next;
	else
		c->w->auth_waiting = c->auth_next;
	if (c->auth_next != NULL)
		c->auth_next->auth_prev = c->auth_prev;
	c->auth_prev = c->auth_next = NULL;
	c->auth_pending = false;
}

void kg_conn_close(struct kg_conn *c, enum kg_reason why)
{
	struct kg_worker *w = c->w;

	/* A sockmap session's bytes were the kernel's: its final counters in, its map
	 * entries out, before anything below reads them or closes the fds. */
	kg_sockmap_session_end(&c->io);
	/* A connection that ends before its decision was audited gets one record:
	 * every refusal, timeout and garbage peer is visible. */
	if (!c->audited)
		kg_conn_audit(c, false, why, NULL);
	else if (c->state == KG_ST_RELAYING && why != KG_REASON_PEER_CLOSED &&
		 why != KG_REASON_BACKEND_CLOSED) {
		struct kg_audit_record r = {
			.event = "close", .peer = c->peer, .device = c->id.device_id,
			.thumbprint = c->id.thumbprint, .ca = c->id.ca_name,
			.auth = kg_attestation_str(c->id.method), .listener = listener_name(c),
			.resumed = c->resumed,
			.allow = false,
			.reason = why, .conn_id = c->cid, .mqtt_level = c->mqtt_level,
		};
		kg_audit_emit(&r);
	}
	if (c->auth_pending) {
		(void)kg_auth_pool_cancel(w->d->auth_pool, w->idx, c->cid);
		auth_unwait(c);
	}
	kg_metric_add(&w->metrics.closes[why], 1);
	if (c->state == KG_ST_RELAYING)
		kg_metric_gauge(&w->metrics.sessions_by_mode[c->io.mode], -1);
	kg_conn_release(c);
}

void kg_conn_release(struct kg_conn *c)
{
	struct kg_worker *w = c->w;

	kg_conn_set_state(c, KG_ST_CLOSED);
	kg_metric_gauge(&w->metrics.conns_by_state[KG_ST_CLOSED], -1);

	if (c->io.ssl) {
		kg_conn_tls_async_end(c);   /* a job paused for the TPM ends first */
		kg_ssl_release(c->io.ssl);
	}
	kg_record_session_free(c->io.rec);
	c->io.rec = NULL;
	kg_ktls_session_release(&c->io);
	kg_tls_key_tracker_wipe(&c->io.keytrk);
	if (c->io.dev.fd >= 0)
		close(c->io.dev.fd);   /* close() also drops the epoll registration */
	if (c->io.be.fd >= 0)
		close(c->io.be.fd);
	kg_buf_free(&c->io.up);
	kg_buf_free(&c->io.down);

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
	if (c->io.be.fd >= 0) {
		close(c->io.be.fd);
		c->io.be.fd = -1;
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
		if (c->state == KG_ST_BACKEND_CONNECT) {   /* in HANDOFF it was counted ok */
			const struct kg_backend_conf *b =
				kg_config_get0_backend(conn_cfg(c), c->verdict.backend);

			if (b != NULL)
				kg_metrics_backend_connect(&c->w->metrics, b->metrics_slot,
							   KG_BACKEND_FAILED, kg_now_ms());
		}
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
	case KG_ST_RELAYING:
		/* The device's stream ended and the broker got its FIN: the linger that
		 * st_relaying() set when kg_relay_finished() sent it is over. */
		if (c->io.be_shut) {
			kg_conn_close(c, KG_REASON_TIMEOUT);
			break;
		}
		/* In the kernel's hands (sockmap) no pump sees the bytes: ask its counters. */
		{
			bool up_moved = false;

			if (kg_sockmap_session_sync(&c->io, &up_moved) && (up_moved || c->idle_any_dir))
				c->active_ms = kg_now_ms();
		}
		/* Idle: pumps only refresh active_ms (no syscall, no deadline write per
		 * event); the deadline moves here, lazily, while there was traffic. */
		if (c->idle_ms != 0 && kg_now_ms() < c->active_ms + c->idle_ms) {
			c->deadline_ms = c->active_ms + c->idle_ms;
			kg_worker_due(c->w, c->deadline_ms);
			break;
		}
		kg_conn_close(c, KG_REASON_IDLE_TIMEOUT);
		break;
	default:
		kg_conn_close(c, KG_REASON_TIMEOUT);
		break;
	}
}

/* ---- the states ------------------------------------------------------------ */

static enum kg_step st_accepted(struct kg_conn *c)
{
	uint8_t b;
	ssize_t n;

	/* No SSL until the device says something: a silent connection costs this
	 * struct and a deadline (the handshake timeout, from accept), not an SSL. */
	n = recv(c->io.dev.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0) {
		kg_conn_close(c, KG_REASON_PEER_CLOSED);
		return KG_STEP_DONE;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		if (kg_conn_watch(c, &c->io.dev, EPOLLIN) < 0) {
			kg_conn_close(c, KG_REASON_IO_ERROR);
			return KG_STEP_DONE;
		}
		return KG_STEP_WAIT;
	}
	if (n < 0) {
		kg_conn_close(c, errno == ECONNRESET ? KG_REASON_PEER_CLOSED : KG_REASON_IO_ERROR);
		return KG_STEP_DONE;
	}
	if (c->listener->kind == KG_LISTENER_PROXY) {
		if (!kg_cidr_match(c->listener->proxy_sources, c->listener->n_proxy_sources,
				   &c->peer_sa.sa, c->peer_salen)) {
			kg_conn_close(c, KG_REASON_PROXY_UNTRUSTED);
			return KG_STEP_DONE;
		}
		kg_conn_set_state(c, KG_ST_PROXY_HEADER);
		return KG_STEP_NEXT;
	}
	if (c->listener->kind == KG_LISTENER_PLAIN) {
		/* No TLS: the CONNECT is the first thing on the wire, and the credentials
		 * in it are all the device has to prove who it is. */
		kg_conn_set_state(c, KG_ST_MQTT_CONNECT);
		return KG_STEP_NEXT;
	}
	if (kg_conn_tls_new(c, !x509_required(c)) < 0) {
		kg_conn_close(c, KG_REASON_OVERLOAD);
		return KG_STEP_DONE;
	}
	c->hs_start_us = kg_now_us();
	kg_conn_set_state(c, KG_ST_TLS_HANDSHAKE);
	return KG_STEP_NEXT;
}

/*
 * Read more of the device's stream (TLS or plain) into io.up, up to `upto` bytes in
 * all: what the PROXY header and the CONNECT states parse. KG_STEP_NEXT: bytes came,
 * parse again; KG_STEP_WAIT: armed for more; KG_STEP_DONE: closed (the device hung up,
 * an error, no memory).
 */
static enum kg_step read_up(struct kg_conn *c, size_t upto)
{
	long n;

	if (kg_buf_reserve(&c->io.up, upto) < 0) {
		kg_conn_close(c, KG_REASON_OVERLOAD);
		return KG_STEP_DONE;
	}
	n = kg_ssl_io_read(&c->io, c->io.up.data + c->io.up.len, upto - c->io.up.len);
	if (n == KG_E_AGAIN)
		return wait_tls(c);
	if (n <= 0) {
		kg_conn_close(c, n == 0 ? KG_REASON_PEER_CLOSED : KG_REASON_IO_ERROR);
		return KG_STEP_DONE;
	}
	c->io.up.len += (size_t)n;
	return KG_STEP_NEXT;
}

/*
 * The device the front's certificate TLVs name: the CN (a valid device id) as the
 * identity, attested through the listener's proxy_ca ("" when not said; st_policy
 * turns it into a thumbprint identity when the device is pinned and the front sent
 * the certificate's SHA-256). false: the CN is no device id.
 */
static bool proxy_identity(struct kg_conn *c, const struct kg_pp2_header *h)
{
	size_t off = 0;

	if (h->ssl_cn.len == 0 || h->ssl_cn.len > KG_DEVICE_ID_MAX ||
	    !kg_identity_valid((const char *)h->ssl_cn.p, h->ssl_cn.len, &off))
		return false;
	memset(&c->id, 0, sizeof(c->id));
	memcpy(c->id.device_id, h->ssl_cn.p, h->ssl_cn.len);
	c->id.module_off = off;
	c->id.method = KG_ATT_CA;
	(void)kg_strlcpy(c->id.ca_name, c->listener->proxy_ca, sizeof(c->id.ca_name));
	if (h->cert_sha256.p != NULL) {
		kg_hex_lower(h->cert_sha256.p, h->cert_sha256.len, c->id.thumbprint);
		c->has_proxy_sha256 = true;
	}
	return true;
}

/* A refusal of the PROXY header: audited with what was wrong, then closed. */
static enum kg_step proxy_refuse(struct kg_conn *c, enum kg_reason why, const char *detail)
{
	kg_conn_audit(c, false, why, detail);
	kg_conn_close(c, why);
	return KG_STEP_DONE;
}

/*
 * A `proxy` listener: the front's PROXY v2 header comes before anything of the
 * device's. Read it (bounded: KG_PP2_DEFAULT_MAX bytes), take the device's address
 * from it, and its certificate when the front verified one; what follows the header
 * is the device's MQTT and stays in io.up.
 */
static enum kg_step st_proxy_header(struct kg_conn *c)
{
	struct kg_pp2_header h;
	struct kg_pp2_result pr;
	enum kg_step st;

	for (;;) {
		pr = kg_pp2_parse(c->io.up.data, c->io.up.len, KG_PP2_DEFAULT_MAX, &h);
		if (pr.status != KG_PP2_NEED_MORE)
			break;
		/* Exactly what the header still needs: the device's bytes behind it are
		 * read by the CONNECT state, under its own limits. */
		if ((st = read_up(c, pr.need)) != KG_STEP_NEXT)
			return st;
	}
	if (pr.status != KG_PP2_OK)
		return proxy_refuse(c, KG_REASON_BAD_PROXY_HEADER, pr.why);
	if (c->listener->proxy_require_crc && !h.has_crc32c)
		return proxy_refuse(c, KG_REASON_BAD_PROXY_HEADER, "no CRC32C TLV (proxy_require_crc)");
	/* LOCAL (the front's own health check): the real endpoints are the front's. */
	if (h.command == KG_PP2_PROXY && h.family == KG_PP2_AF_INET) {
		c->peer_sa.in = (struct sockaddr_in){ .sin_family = AF_INET,
						      .sin_port = htons(h.src_port) };
		memcpy(&c->peer_sa.in.sin_addr, h.src_addr, 4);
		c->peer_salen = sizeof(c->peer_sa.in);
		c->behind_proxy = true;
	} else if (h.command == KG_PP2_PROXY && h.family == KG_PP2_AF_INET6) {
		c->peer_sa.in6 = (struct sockaddr_in6){ .sin6_family = AF_INET6,
							.sin6_port = htons(h.src_port) };
		memcpy(&c->peer_sa.in6.sin6_addr, h.src_addr, 16);
		c->peer_salen = sizeof(c->peer_sa.in6);
		c->behind_proxy = true;
	}
	if (c->behind_proxy) {
		char front[sizeof(c->peer)];

		memcpy(front, c->peer, sizeof(front));
		format_peer(&c->peer_sa.sa, c->peer, sizeof(c->peer));
		kg_log_debug("conn=%llu: device %s via front %s", (unsigned long long)c->cid, c->peer,
			     front);
	}
	/* A certificate the front asked for, got and verified (verify 0), with a CN. */
	if (h.has_ssl && (h.ssl_client & KG_PP2_CLIENT_SSL) &&
	    (h.ssl_client & (KG_PP2_CLIENT_CERT_CONN | KG_PP2_CLIENT_CERT_SESS)) &&
	    h.ssl_verify == 0 && h.ssl_cn.p != NULL) {
		if (!proxy_identity(c, &h))
			return proxy_refuse(c, KG_REASON_BAD_IDENTITY, "the front's CN is no device id");
		c->proxy_cert = true;
	}
	/* The device's own bytes, if any came with the header, move to the front. */
	memmove(c->io.up.data, c->io.up.data + h.len, c->io.up.len - h.len);
	c->io.up.len -= h.len;
	if (c->proxy_cert) {
		c->identified = true;
		kg_conn_set_state(c, KG_ST_POLICY);
	} else {
		kg_conn_set_state(c, KG_ST_MQTT_CONNECT);
	}
	return KG_STEP_NEXT;
}

static enum kg_step st_handshake(struct kg_conn *c)
{
	enum kg_reason why = KG_REASON_TLS_FAILED;
	int rc;

	/* Paused for the TPM signer: only its answer or deadline (an async fd) steps
	 * the handshake on (a step without either gives the signature up, tpm_key.h). */
	if (c->tpm_wait) {
		if (c->ev_type == KG_EV_DEVICE &&
		    (c->ev_events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))) {
			kg_conn_close(c, KG_REASON_PEER_CLOSED);
			return KG_STEP_DONE;
		}
		if (c->ev_type != KG_EV_ASYNC)
			return KG_STEP_WAIT;
		c->tpm_wait = false;
	}
	rc = kg_conn_tls_handshake(c, &why);
	if (rc == KG_E_AGAIN)
		return wait_tls(c);
	if (rc == KG_CONN_TLS_ASYNC) {
		if (kg_conn_tls_async_watch(c) < 0) {
			kg_conn_close(c, KG_REASON_OVERLOAD);
			return KG_STEP_DONE;
		}
		return KG_STEP_WAIT;
	}
	if (rc < 0) {
		kg_metric_add(&c->w->metrics.handshakes[KG_HS_FAILED], 1);
		kg_log_debug("conn=%llu peer=%s handshake failed: %s", (unsigned long long)c->cid,
			     c->peer, kg_reason_str(why));
		if (why == KG_REASON_PEER_CLOSED) {   /* nobody left to read an alert */
			kg_conn_close(c, why);
			return KG_STEP_DONE;
		}
		/* OpenSSL has written its alert (no certificate, unknown CA, bad chain...)
		 * but the device's next flight (its Finished, a TLS 1.3 CONNECT) may sit
		 * unread in the socket: closing now would answer with a RST that destroys
		 * the alert before the device reads it. Linger like a refusal. */
		c->verdict.reason = why;
		kg_conn_audit(c, false, why, kg_conn_tls_verify_detail(c));
		c->refusal_len = c->refusal_off = 0;
		/* Nothing more goes through TLS: the linger costs a socket, not an SSL. */
		kg_ssl_release(c->io.ssl);
		c->io.ssl = NULL;
		kg_conn_set_state(c, KG_ST_REFUSING);
		return KG_STEP_NEXT;
	}
	kg_metric_add(&c->w->metrics.handshakes[KG_HS_OK], 1);
	kg_metric_add(&c->w->metrics.handshakes_kind[c->resumed ? KG_HS_RESUMED : KG_HS_FULL], 1);
	if (c->resumed_psk_ke)
		kg_metric_add(&c->w->metrics.resumptions_psk_ke, 1);
	c->tls_done = true;
	kg_metrics_observe_handshake(&c->w->metrics, kg_now_us() - c->hs_start_us);
	kg_conn_set_state(c, KG_ST_IDENTIFIED);
	return KG_STEP_NEXT;
}

static enum kg_step st_identified(struct kg_conn *c)
{
	/* One-way TLS and no certificate: the CONNECT's credentials will tell. OpenSSL
	 * asked for a certificate as optional only where x509_required() is false. */
	if (!c->verify_ran && SSL_get0_peer_certificate(c->io.ssl) == NULL && !x509_required(c)) {
		kg_conn_set_state(c, KG_ST_MQTT_CONNECT);
		return KG_STEP_NEXT;
	}
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
	decide(c);
	/* An enrolment is queued with the allow decision (st_mqtt_connect), not here:
	 * a device refused at CONNECT is not enrolled. */
	if (c->verdict.allow && !c->verdict.enroll)
		kg_writer_touch(c->w->d->writer, c->id.device_id, c->since, c->id.not_after);
	kg_conn_set_state(c, KG_ST_MQTT_CONNECT);
	return KG_STEP_NEXT;
}

/* The policy on c->id: the device's row (and its CA's from the trust snapshot) in,
 * c->verdict out. */
static void decide(struct kg_conn *c)
{
	struct kg_device dev;
	struct kg_policy_input in = { .id = &c->id, .cfg = conn_cfg(c) };
	int rc;

	/* Kept for the session's life: the SSL may be freed at the handoff. */
	if (c->id.method == KG_ATT_CA && c->io.ssl != NULL)
		(void)kg_leaf_ref_from_cert(c->snap->trust, SSL_get0_peer_certificate(c->io.ssl),
					    &c->leaf);
	rc = kg_registry_device_get(c->w->reg, c->id.device_id, &dev);
	c->failopen = rc == 0 && kg_registry_served_failopen(c->w->reg);
	if (rc == 0)
		in.device = &dev;
	else if (rc != KG_E_NOTFOUND && c->w->d->regcache == NULL)
		kg_log_warnx("conn=%llu dev=%s: registry read failed: %s", (unsigned long long)c->cid,
			     c->id.device_id, kg_err_str(rc));
	/* Through a front: a pinned device is itself only when the front sent its
	 * certificate's SHA-256 and it is one of the pinned ones. */
	if (rc == 0 && c->proxy_cert && dev.attestation == KG_ATT_THUMBPRINT && c->has_proxy_sha256 &&
	    kg_policy_pinned(&dev, c->id.thumbprint)) {
		c->id.method = KG_ATT_THUMBPRINT;
		c->id.ca_name[0] = '\0';
	}
	/* The CA row comes with the trust snapshot: no registry read, no PEM copy. */
	if (c->id.method == KG_ATT_CA && c->id.ca_name[0])
		in.ca = kg_trust_get0_ca(c->snap->trust, c->id.ca_name);
	/* A pinned leaf is checked against the row just read (kg_policy_pinned()): a
	 * session resumed from a ticket has had no pin lookup since its full handshake. */
	kg_policy_decide(&in, &c->verdict);
	/* The registry could not say who this is: never decide it as unknown (with an
	 * auto-enrol CA that admitted a disabled device, whose enrolment then found its
	 * row). A shared registry that is down (registry_cache.h): the down rule refused,
	 * or could not answer, registry_unavailable, its state change logged once by the
	 * view; a file registry's read error: io_error, logged above. Either way the
	 * device hears "server unavailable". */
	if (rc != 0 && rc != KG_E_NOTFOUND) {
		c->verdict.allow = false;
		c->verdict.enroll = false;
		c->verdict.reason = c->w->d->regcache != NULL ? KG_REASON_REGISTRY_UNAVAILABLE
							      : KG_REASON_IO_ERROR;
		c->verdict.connack = KG_CONNACK_SERVER_UNAVAILABLE;
	}
	c->decided = true;
}

/*
 * username_check = rewrite: replace the CONNECT at the start of c->io.up by one whose user
 * name is the device id and that has no password. What the device pipelined behind
 * the CONNECT follows byte for byte; connect_len becomes the rewritten length, which
 * is all the relays and the handoff count rely on (c->io.up is forwarded as a whole).
 * *mc borrows from the old buffer and is dead afterwards. KG_E_INVALID: the device id
 * is no MQTT user name; KG_E_RESOURCE: no memory.
 */
static int rewrite_connect(struct kg_conn *c, const struct kg_mqtt_connect *mc)
{
	const char *id = c->id.device_id;
	size_t id_len = strnlen(id, sizeof(c->id.device_id)), need, tail, n;
	struct kg_buf nb = { 0 };

	need = kg_mqtt_rewrite_len(mc, id_len);
	if (need == 0)
		return KG_E_INVALID;
	tail = c->io.up.len - mc->packet_len;
	if (kg_buf_reserve(&nb, need + tail) < 0)
		return KG_E_RESOURCE;
	n = kg_mqtt_rewrite_connect(c->io.up.data, mc, id, id_len, nb.data, nb.cap);
	if (n == 0) {
		kg_buf_free(&nb);
		return KG_E_INVALID;
	}
	if (tail > 0)
		memcpy(nb.data + n, c->io.up.data + mc->packet_len, tail);
	nb.len = n + tail;
	kg_buf_free(&c->io.up);
	c->io.up = nb;
	c->connect_len = (uint32_t)n;
	return 0;
}

/*
 * An auto-enrolment: the writer inserts the row and only then writes this
 * connection's decision line (`enrolled`), or `enroll_failed` with the cause; the
 * audit never says `enrolled` for a write that did not commit. The session goes on
 * meanwhile: its CA allows it either way.
 */
static void queue_enrolment(struct kg_conn *c)
{
	struct kg_device nd = { .status = KG_DEV_ENABLED, .attestation = KG_ATT_CA };
	struct kg_enrol_audit a = { .conn_id = c->cid, .mqtt_level = c->mqtt_level };

	memcpy(nd.id, c->id.device_id, sizeof(nd.id));
	memcpy(nd.ca_name, c->id.ca_name, sizeof(nd.ca_name));
	nd.cert_not_after = c->id.not_after;
	nd.last_seen = c->since;
	(void)kg_strlcpy(a.peer, c->peer, sizeof(a.peer));
	(void)kg_strlcpy(a.thumbprint, c->id.thumbprint, sizeof(a.thumbprint));
	(void)kg_strlcpy(a.backend, c->verdict.backend, sizeof(a.backend));
	kg_writer_enroll(c->w->d->writer, &nd, &a);
	c->audited = true;
}

static enum kg_step admit_connect(struct kg_conn *c, const struct kg_mqtt_connect *mc);

static enum kg_step st_mqtt_connect(struct kg_conn *c)
{
	const struct kg_config *cfg = conn_cfg(c);
	struct kg_mqtt_connect mc;
	enum kg_parse pr;
	enum kg_step st;

	for (;;) {
		/* Parse what we have first: a CONNECT may already be complete. */
		pr = c->io.up.len ? kg_mqtt_parse_connect(c->io.up.data, c->io.up.len,
							  cfg->max_connect_bytes, &mc)
				  : KG_PARSE_SHORT;
		if (pr != KG_PARSE_SHORT)
			break;
		if ((st = read_up(c, c->io.up.len + CONNECT_READ_CHUNK)) != KG_STEP_NEXT)
			return st;
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
	c->keepalive = mc.keepalive;   /* the relay's idle timeout derives from it */
	if (!c->identified) {
		kg_conn_set_state(c, KG_ST_AUTH);
		return KG_STEP_NEXT;
	}
	return admit_connect(c, &mc);
}

/*
 * The CONNECT of an identified device whose policy verdict is in: the verdict, the
 * client id, the user name rule; then the allow is audited (or the enrolment queued)
 * and the broker connected. mc borrows c->io.up.
 */
static enum kg_step admit_connect(struct kg_conn *c, const struct kg_mqtt_connect *mc_in)
{
	const struct kg_config *cfg = conn_cfg(c);
	struct kg_mqtt_connect mc = *mc_in;
	const char *detail = NULL;
	size_t id_len;
	bool other_user;
	int rc;

	if (!c->verdict.allow)
		return conn_refuse(c, c->verdict.reason, c->verdict.connack, NULL);
	if (!kg_policy_client_id_ok(cfg, &c->id, mc.client_id, mc.client_id_len))
		return conn_refuse(c, KG_REASON_CLIENT_ID_MISMATCH, KG_CONNACK_BAD_CLIENT_ID, NULL);
	/* The certificate proved the device id: a user name naming anyone else would get
	 * another device's topics from a broker whose ACLs use %u (docs/security.md). */
	id_len = strnlen(c->id.device_id, sizeof(c->id.device_id));
	other_user = !kg_mqtt_username_matches(&mc, c->id.device_id, id_len);
	/* The device's CA may override [daemon] username_check; st_policy chose. */
	switch (c->verdict.username_check) {
	case KG_USERNAME_STRICT:
		if (other_user)
			return conn_refuse(c, KG_REASON_USERNAME_MISMATCH, KG_CONNACK_NOT_AUTHORIZED,
					   NULL);
		break;
	case KG_USERNAME_REWRITE:
		if (other_user || mc.has_password)
			detail = "username set to the device id, password removed";
		rc = rewrite_connect(c, &mc);
		if (rc == KG_E_RESOURCE) {
			kg_conn_close(c, KG_REASON_OVERLOAD);
			return KG_STEP_DONE;
		}
		if (rc < 0)
			return conn_refuse(c, KG_REASON_USERNAME_MISMATCH, KG_CONNACK_NOT_AUTHORIZED,
					   "device id is no MQTT user name");
		break;
	case KG_USERNAME_PASS:
		break;
	}
	if (c->failopen) {
		detail = "admitted from the cache: registry down (registry_down = fail-open)";
		kg_regcache_count_failopen(c->w->d->regcache);
	}
	if (c->verdict.enroll)
		queue_enrolment(c);   /* the writer audits it once the row's fate is known */
	else
		kg_conn_audit(c, true, c->verdict.reason, detail);
	/* fail-open's memory: devices admitted here recently */
	if (c->w->d->regcache != NULL && !c->verdict.enroll)
		kg_regcache_admitted(c->w->d->regcache, c->id.device_id, (int64_t)time(NULL));
	kg_conn_set_state(c, KG_ST_BACKEND_CONNECT);
	return KG_STEP_NEXT;
}

/*
 * A device without a certificate: its CONNECT (complete at the start of c->io.up)
 * must name a device and prove it with a credential the registry holds for it.
 */
/* The limiter's key for misses that name no device: the source's block as text
 * ([limits] source_prefix_v4 / _v6, as the per-source limits count it). */
static void source_block(const struct kg_conn *c, char *out, size_t cap)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const struct kg_config *cfg = conn_cfg(c);
	char host[INET6_ADDRSTRLEN] = "?";
	struct kg_srckey k;

	/* the per-source limits' own masking (an IPv4 source as ::ffff:a.b.c.d) */
	if (kg_srclimit_key(&c->peer_sa.sa, c->peer_salen, cfg->source_prefix_v4,
			    cfg->source_prefix_v6, &k) != 0) {
		snprintf(out, cap, "unknown");
		return;
	}
	if (memcmp(k.a, mapped, sizeof(mapped)) == 0) {
		(void)inet_ntop(AF_INET, k.a + 12, host, sizeof(host));
		snprintf(out, cap, "%s/%u", host, cfg->source_prefix_v4);
	} else {
		(void)inet_ntop(AF_INET6, k.a, host, sizeof(host));
		snprintf(out, cap, "%s/%u", host, cfg->source_prefix_v6);
	}
}

static const enum kg_attestation kind_attestation[KG_AUTH_KIND_MAX] = {
	[KG_AUTH_SAS] = KG_ATT_SAS, [KG_AUTH_TOKEN] = KG_ATT_TOKEN, [KG_AUTH_BASIC] = KG_ATT_BASIC,
};

/*
 * A credential verdict (the fast step's or the pool's) applied: counted by kind and
 * outcome, a refusal answered with its CONNACK; a verified device becomes the
 * identity, and from there it is any device: the policy (status, backend), the client
 * id rule, then the broker. Its CONNECT reaches the broker with the device id as user
 * name and no password (the credential was for the gate, not for the broker).
 */
static enum kg_step auth_verdict(struct kg_conn *c, const struct kg_auth_result *res)
{
	struct kg_mqtt_connect mc;

	if (res->kind < KG_AUTH_KIND_MAX) {
		kg_metric_add(&c->w->metrics.auth_attempts[res->kind][kg_auth_outcome(res)], 1);
		c->cred_kind = (uint8_t)res->kind;
	}
	if (res->device.id[0] != '\0') {
		/* named: the audit line says who was refused, and how */
		memcpy(c->id.device_id, res->device.id, sizeof(c->id.device_id));
		if (res->kind < KG_AUTH_KIND_MAX)
			c->id.method = kind_attestation[res->kind];
	}
	if (res->status != KG_AUTH_OK)
		return conn_refuse(c, res->reason, res->connack, res->why);
	c->identified = true;
	decide(c);
	c->verdict.username_check = KG_USERNAME_REWRITE;
	if (c->verdict.allow)
		kg_writer_touch(c->w->d->writer, c->id.device_id, c->since, 0);
	/* The CONNECT was parsed before the check; io.up has not moved since. */
	if (kg_mqtt_parse_connect(c->io.up.data, c->io.up.len, conn_cfg(c)->max_connect_bytes,
				  &mc) != KG_PARSE_OK) {
		kg_conn_close(c, KG_REASON_BAD_MQTT);
		return KG_STEP_DONE;
	}
	return admit_connect(c, &mc);
}

/*
 * A device without a certificate: its CONNECT (complete at the start of c->io.up)
 * must name a device and prove it with a credential the registry holds for it
 * (auth/auth_check.h). SAS and tokens are checked here; a password goes to the auth
 * pool (scrypt takes a fifth of a second) and the device waits, unread.
 */
static enum kg_step st_auth(struct kg_conn *c)
{
	struct kg_mqtt_connect mc;
	struct kg_auth_input in;
	struct kg_auth_result res;
	struct kg_auth_job job;
	struct timespec now;
	char block[INET6_ADDRSTRLEN + 8];
	int rc;

	if (c->auth_pending) {   /* woken by the device while the pool works: a hangup? */
		if (c->ev_type == KG_EV_DEVICE && (c->ev_events & (EPOLLHUP | EPOLLERR))) {
			kg_conn_close(c, KG_REASON_PEER_CLOSED);
			return KG_STEP_DONE;
		}
		return KG_STEP_WAIT;
	}
	if (kg_mqtt_parse_connect(c->io.up.data, c->io.up.len, conn_cfg(c)->max_connect_bytes,
				  &mc) != KG_PARSE_OK) {
		kg_conn_close(c, KG_REASON_BAD_MQTT);
		return KG_STEP_DONE;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	source_block(c, block, sizeof(block));
	in = (struct kg_auth_input){
		.username = (const char *)mc.username, .username_len = mc.username_len,
		.password = mc.password, .password_len = mc.password_len,
		.client_id = (const char *)mc.client_id, .client_id_len = mc.client_id_len,
		.now = now.tv_sec, .now_ms = kg_now_ms(), .source_key = block,
		.x509_only = x509_required(c),
	};
	kg_auth_check(&conn_cfg(c)->auth, c->w->reg, c->w->d->auth_limit, &in, &res, &job);
	if (res.status != KG_AUTH_PENDING)
		return auth_verdict(c, &res);
	rc = kg_auth_pool_submit(c->w->d->auth_pool, c->w->idx, c->cid, &job);
	if (rc != 0) {
		res.status = KG_AUTH_REFUSED;
		res.reason = KG_REASON_AUTH_OVERLOAD;
		res.connack = KG_CONNACK_SERVER_UNAVAILABLE;
		res.why = "password checks queue full (kdf_queue)";
		return auth_verdict(c, &res);
	}
	auth_wait(c);
	/* Nothing more is read meanwhile: bytes the device pipelines wait in the socket.
	 * Only its hangup matters (the CONNECT deadline still runs). */
	if (kg_conn_watch(c, &c->io.dev, 0) < 0) {
		kg_conn_close(c, KG_REASON_IO_ERROR);
		return KG_STEP_DONE;
	}
	return KG_STEP_WAIT;
}

void kg_conn_auth_done(struct kg_conn *c, const struct kg_auth_result *res)
{
	auth_unwait(c);
	if (auth_verdict(c, res) == KG_STEP_NEXT)
		kg_conn_run(c);
}

static bool local_shortage(int e)
{
	return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM || e == EADDRNOTAVAIL;
}

static enum kg_step st_backend_connect(struct kg_conn *c)
{
	const struct kg_backend_conf *b;

	if (c->io.be.fd < 0) {
		b = kg_config_get0_backend(conn_cfg(c), c->verdict.backend);
		if (b == NULL)   /* policy checked it; a reload cannot change our snapshot */
			return conn_refuse(c, KG_REASON_NO_BACKEND, KG_CONNACK_SERVER_UNAVAILABLE, NULL);
		c->io.be.fd = kg_backend_connect_start(b);
		if (c->io.be.fd < 0) {
			int e = errno;

			if (!local_shortage(e))
				kg_metrics_backend_connect(&c->w->metrics, b->metrics_slot,
							   KG_BACKEND_FAILED, kg_now_ms());
			c->audited = false;
			/* Out of fds, buffers or local ports is our shortage, not the broker's. */
			return conn_refuse(c, local_shortage(e) ? KG_REASON_OVERLOAD : KG_REASON_BACKEND_DOWN,
					   KG_CONNACK_SERVER_UNAVAILABLE, strerror(e));
		}
		/* Stop reading the device while the broker is not there: bytes it pipelines
		 * wait in the socket, the CONNECT waits in c->io.up. */
		if (kg_conn_watch(c, &c->io.dev, 0) < 0 || kg_conn_watch(c, &c->io.be, EPOLLOUT) < 0) {
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
	b = kg_config_get0_backend(conn_cfg(c), c->verdict.backend);
	if (kg_backend_connect_finish(c->io.be.fd) < 0) {
		int e = errno;

		if (b != NULL)
			kg_metrics_backend_connect(&c->w->metrics, b->metrics_slot, KG_BACKEND_FAILED,
						   kg_now_ms());
		kg_log_warnx("conn=%llu dev=%s backend %s: %s", (unsigned long long)c->cid,
			     c->id.device_id, c->verdict.backend, strerror(e));
		c->audited = false;
		return conn_refuse(c, KG_REASON_BACKEND_DOWN, KG_CONNACK_SERVER_UNAVAILABLE,
				   strerror(e));
	}
	if (b != NULL && b->proxy_v2 && send_proxy_header(c) < 0) {
		int e = errno;

		kg_metrics_backend_connect(&c->w->metrics, b->metrics_slot, KG_BACKEND_FAILED,
					   kg_now_ms());
		kg_log_warnx("conn=%llu dev=%s backend %s: PROXY header: %s",
			     (unsigned long long)c->cid, c->id.device_id, c->verdict.backend,
			     strerror(e));
		c->audited = false;
		return conn_refuse(c, KG_REASON_BACKEND_DOWN, KG_CONNACK_SERVER_UNAVAILABLE,
				   strerror(e));
	}
	if (b != NULL)
		kg_metrics_backend_connect(&c->w->metrics, b->metrics_slot, KG_BACKEND_OK, kg_now_ms());
	kg_conn_set_state(c, KG_ST_HANDOFF);
	return KG_STEP_NEXT;
}

/* A session that was set up for kernel TLS and fell to a lower rung gets one audit
 * line at its handoff: the relay it got and why (relay_ktls.c recorded the first
 * cause). Not a decision: no decision metric moves (the fallback has its own). */
static void audit_relay_fallback(struct kg_conn *c, const struct kg_relay_ops *r)
{
	char detail[160];
	struct kg_audit_record rec = {
		.event = "relay", .peer = c->peer, .device = c->id.device_id,
		.thumbprint = c->id.thumbprint[0] ? c->id.thumbprint : NULL,
		.ca = c->id.ca_name[0] ? c->id.ca_name : NULL, .auth = auth_word(c),
		.listener = listener_name(c), .resumed = c->resumed,
		.resumed_psk_ke = c->resumed_psk_ke, .allow = true,
		.reason = c->verdict.reason, .backend = c->verdict.backend, .conn_id = c->cid,
		.mqtt_level = c->mqtt_level, .relay = r->name,
		.ktls_fallback = kg_ktls_fallback_names[c->io.ktls_fallback],
		.detail = kg_ktls_fallback_detail(&c->io, detail, sizeof(detail)),
	};

	kg_audit_emit(&rec);
}

static enum kg_step st_handoff(struct kg_conn *c)
{
	bool again;
	const struct kg_relay_ops *r = kg_relay_start(&c->io, &again);

	if (r == NULL && again) {
		kg_metric_add(&c->w->metrics.handoff_waits, 1);
		/* Half a TLS record sits inside OpenSSL: wait for the rest of it, and
		 * leave the broker alone meanwhile (the handoff deadline still runs). */
		if (kg_conn_watch(c, &c->io.dev, EPOLLIN) < 0 || kg_conn_watch(c, &c->io.be, 0) < 0) {
			kg_conn_close(c, KG_REASON_IO_ERROR);
			return KG_STEP_DONE;
		}
		return KG_STEP_WAIT;
	}
	if (r == NULL) {
		kg_conn_close(c, KG_REASON_IO_ERROR);
		return KG_STEP_DONE;
	}
	/* The idle timeout (relay.c says why these values): kg_conn_set_state() below
	 * arms it, st_relaying() notes activity, kg_conn_timeout() acts on it. */
	c->idle_ms = kg_relay_idle_ms(c->keepalive, conn_cfg(c)->idle_timeout, &c->idle_any_dir);
	c->active_ms = kg_now_ms();
	/* the CONNECT is not counted: only what the device pipelined behind it */
	if (c->io.up.len > c->io.up.off + c->connect_len)
		kg_metric_add(&c->w->metrics.handoff_carried,
			      c->io.up.len - c->io.up.off - c->connect_len);
	kg_metric_gauge(&c->w->metrics.sessions_by_mode[c->io.mode], 1);
	kg_metric_add(&c->w->metrics.sessions_started[c->io.mode], 1);
	if (c->io.ktls_fell_back)
		audit_relay_fallback(c, r);
	kg_log_debug("conn=%llu dev=%s: relaying in %s mode", (unsigned long long)c->cid,
		     c->id.device_id, r->name);
	kg_conn_set_state(c, KG_ST_RELAYING);
	return KG_STEP_NEXT;
}

/*
 * The session's relay pumps. Its close reason is acted on here (the relay has sent
 * what an orderly end sends); a FIN it passed on to the broker starts the linger that
 * bounds the broker's answer; traffic that counts refreshes the idle deadline
 * (active_ms: one clock read per event that moved bytes, not per byte).
 */
static enum kg_step st_relaying(struct kg_conn *c)
{
	uint64_t up = c->io.bytes_up, down = c->io.bytes_down;
	bool shut = c->io.be_shut;
	enum kg_reason why = kg_relay_for_mode(c->io.mode)->pump(&c->io);

	if (why != KG_REASON_OK) {
		kg_conn_close(c, why);
		return KG_STEP_DONE;
	}
	if (c->io.be_shut && !shut) {
		c->deadline_ms = kg_now_ms() + conn_cfg(c)->refuse_linger_ms;
		kg_worker_due(c->w, c->deadline_ms);
	}
	/* a relay waiting on the kernel alone: pumped again at the next tick */
	if (c->io.recheck)
		kg_worker_due(c->w, kg_now_ms() + 1);
	if (c->idle_ms != 0 &&
	    (c->io.bytes_up != up || (c->idle_any_dir && c->io.bytes_down != down)))
		c->active_ms = kg_now_ms();
	return KG_STEP_WAIT;
}

static enum kg_step st_refusing(struct kg_conn *c)
{
	uint8_t sink[512];
	long n;

	while (c->refusal_off < c->refusal_len) {
		n = kg_ssl_io_write(&c->io, c->refusal + c->refusal_off, c->refusal_len - c->refusal_off);
		if (n == KG_E_AGAIN)
			return wait_tls(c);
		if (n <= 0) {
			kg_conn_close(c, c->verdict.reason);
			return KG_STEP_DONE;
		}
		c->refusal_off += (size_t)n;
		if (c->refusal_off == c->refusal_len)
			kg_ssl_io_shutdown(&c->io);
	}
	if (!c->io.dev_eof) {
		/* Half-close, then drain until the device hangs up or the linger deadline:
		 * closing with unread input would send a RST that can destroy the CONNACK
		 * (or the TLS alert) before the device reads it. dev_eof marks it done. */
		(void)shutdown(c->io.dev.fd, SHUT_WR);
		c->io.dev_eof = true;
	}
	for (;;) {
		n = read(c->io.dev.fd, sink, sizeof(sink));
		if (n > 0) {
			/* Bounded in bytes as in time: a peer that keeps sending is cut
			 * (a RST then is its own doing). */
			c->drained += (size_t)n;
			if (c->drained >= REFUSE_DRAIN_MAX)
				break;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (kg_conn_watch(c, &c->io.dev, EPOLLIN | EPOLLRDHUP) < 0)
				break;
			return KG_STEP_WAIT;
		}
		break;
	}
	kg_conn_close(c, c->verdict.reason);
	return KG_STEP_DONE;
}
