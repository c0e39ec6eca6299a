/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * conn_xfer.c - a relaying connection leaves one ktlsgated process and goes on in
 * another (contract in conn.h; the channel in handover.c, the record in
 * handover_msg.h).
 *
 * What travels is what the session's relay needs once every byte is the kernel's
 * (kg_relay_transferable()): the two sockets, whose queues and, for ktls_splice, TLS
 * state (keys, record numbers, a half-received record) stay in the kernel, and the
 * connection's own facts: who the device is (identity, leaf issuer and serial for the
 * CRL check), what was decided (backend, user name rule), the MQTT keep-alive and the
 * idle clock, the counters. Nothing buffered in user space goes with it, so nothing can
 * be lost or sent twice: the new process reads the next byte from the socket.
 *
 * The record is checked against this process's configuration as if it came from a
 * stranger: the listen index, the data path, the listener kind, the identity's syntax,
 * and the sockets themselves (TCP streams; a ktls_splice device socket carries the TLS
 * ULP). Then the caller re-runs the policy on it (worker.c).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/auth_check.h"
#include "core/conn.h"
#include "core/handover_msg.h"
#include "core/worker.h"
#include "ops/log.h"
#include "policy/identity.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

/* The flags that travel, both ways. */
static uint16_t flags_of(const struct kg_conn *c)
{
	uint16_t f = 0;

	f |= c->resumed ? KG_HO_S_RESUMED : 0;
	f |= c->tls_done ? KG_HO_S_TLS_DONE : 0;
	f |= c->failopen ? KG_HO_S_FAILOPEN : 0;
	f |= c->io.ktls_tx ? KG_HO_S_KTLS_TX : 0;
	f |= c->io.ktls_rx ? KG_HO_S_KTLS_RX : 0;
	f |= c->io.ktls_ulp ? KG_HO_S_KTLS_ULP : 0;
	f |= c->idle_any_dir ? KG_HO_S_IDLE_ANY_DIR : 0;
	f |= c->io.dev_plain ? KG_HO_S_DEV_PLAIN : 0;
	f |= c->behind_proxy ? KG_HO_S_BEHIND_PROXY : 0;
	f |= c->proxy_cert ? KG_HO_S_PROXY_CERT : 0;
	return f;
}

static void fill_record(const struct kg_conn *c, struct kg_ho_session *s, uint64_t now_ms)
{
	uint64_t idle_for;

	memset(s, 0, sizeof(*s));
	s->mode = (uint8_t)c->io.mode;
	s->method = (uint8_t)c->id.method;
	s->mqtt_level = c->mqtt_level;
	s->cred_kind = c->cred_kind;
	s->username_check = (uint8_t)c->verdict.username_check;
	s->flags = flags_of(c);
	s->listen_idx = (uint16_t)c->listen_idx;
	s->worker = (uint16_t)c->w->idx;
	s->keepalive = c->keepalive;
	s->module_off = (uint16_t)c->id.module_off;
	s->reason = (uint16_t)c->verdict.reason;
	s->idle_ms = c->idle_ms;
	idle_for = now_ms > c->active_ms ? now_ms - c->active_ms : 0;
	s->idle_for_ms = idle_for < UINT32_MAX ? (uint32_t)idle_for : UINT32_MAX;
	s->cid = c->cid;
	s->since = c->since;
	s->not_after = c->id.not_after;
	s->resumed_verified_at = c->resumed_verified_at;
	s->bytes_up = c->io.bytes_up;
	s->bytes_down = c->io.bytes_down;
	memcpy(s->device_id, c->id.device_id, sizeof(s->device_id));
	memcpy(s->thumbprint, c->id.thumbprint, sizeof(s->thumbprint));
	memcpy(s->ca_name, c->id.ca_name, sizeof(s->ca_name));
	memcpy(s->backend, c->verdict.backend, sizeof(s->backend));
	(void)snprintf(s->peer, sizeof(s->peer), "%s", c->peer);
	if (c->peer_salen <= sizeof(s->peer_sa)) {
		memcpy(s->peer_sa, &c->peer_sa, c->peer_salen);
		s->peer_salen = (uint8_t)c->peer_salen;
	}
	memcpy(s->leaf_issuer_md, c->leaf.issuer_md, sizeof(s->leaf_issuer_md));
	memcpy(s->leaf_serial, c->leaf.serial, sizeof(s->leaf_serial));
	s->leaf_serial_len = c->leaf.serial_len;
	s->leaf_serial_neg = c->leaf.serial_neg;
}

bool kg_conn_export(struct kg_conn *c, struct kg_ho_session *out, int fds[2])
{
	struct kg_worker *w = c->w;
	enum kg_relay_mode mode = c->io.mode;

	if (c->state != KG_ST_RELAYING || !c->identified || !c->verdict.allow || c->auth_pending ||
	    !kg_relay_transferable(&c->io))
		return false;
	/* Out of this worker's epoll: the sockets stay open (they are passed on), and an
	 * open socket keeps its registration. */
	if (kg_conn_unwatch(c, &c->io.dev) < 0 || kg_conn_unwatch(c, &c->io.be) < 0) {
		kg_conn_close(c, KG_REASON_IO_ERROR);
		return false;
	}
	fill_record(c, out, kg_now_ms());
	for (int i = 0; i < 2; i++) {
		socklen_t len = sizeof(out->cookie[i]);

		if (getsockopt(i == 0 ? c->io.dev.fd : c->io.be.fd, SOL_SOCKET, SO_COOKIE,
			       &out->cookie[i], &len) < 0)
			out->cookie[i] = 0;
	}
	fds[0] = c->io.dev.fd;
	fds[1] = c->io.be.fd;
	c->io.dev.fd = -1;
	c->io.be.fd = -1;
	kg_metric_gauge(&w->metrics.sessions_by_mode[mode], -1);
	kg_metric_add(&w->metrics.sessions_passed[mode], 1);
	kg_log_debug("conn=%llu dev=%s: %s session handed over", (unsigned long long)c->cid,
		     c->id.device_id, kg_relay_for_mode(mode)->name);
	kg_conn_release(c);
	return true;
}

/* Is fd a connected TCP socket (and, want_tls, one with the TLS ULP)? */
static bool socket_is(int fd, bool want_tls)
{
	int type = 0, proto = 0;
	socklen_t len = sizeof(type);
	char ulp[16] = "";

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
		return false;
	len = sizeof(proto);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) < 0 || proto != IPPROTO_TCP)
		return false;
	if (!want_tls)
		return true;
	len = sizeof(ulp);
	return getsockopt(fd, IPPROTO_TCP, TCP_ULP, ulp, &len) == 0 && strcmp(ulp, "tls") == 0;
}

/* Does the record fit this configuration? NULL, or why not. */
static const char *record_misfit(const struct kg_ho_session *s, const struct kg_config *cfg)
{
	const struct kg_listener_conf *lc;
	bool plain_listener;
	size_t module_off;

	if (s->listen_idx >= cfg->n_listen)
		return "its listen address is not configured here";
	lc = kg_config_listener_of(cfg, s->listen_idx);
	plain_listener = lc->kind == KG_LISTENER_PLAIN || lc->kind == KG_LISTENER_PROXY;
	if (s->mode == KG_MODE_KTLS_SPLICE) {
		if (plain_listener || (s->flags & (KG_HO_S_DEV_PLAIN)) ||
		    (s->flags & (KG_HO_S_KTLS_TX | KG_HO_S_KTLS_RX | KG_HO_S_KTLS_ULP)) !=
			    (KG_HO_S_KTLS_TX | KG_HO_S_KTLS_RX | KG_HO_S_KTLS_ULP))
			return "a ktls_splice session without both kernel keys";
	} else if (s->mode == KG_MODE_SPLICE || s->mode == KG_MODE_PLAIN) {
		if (!plain_listener || !(s->flags & KG_HO_S_DEV_PLAIN))
			return "a plain data path on a TLS listener";
	} else {
		return "a data path that does not travel";
	}
	if (s->method >= KG_ATT_MAX || s->username_check > KG_USERNAME_PASS ||
	    s->cred_kind > KG_AUTH_KIND_MAX || s->reason >= KG_REASON_MAX)
		return "a value out of range";
	if (!kg_identity_valid(s->device_id, strlen(s->device_id), &module_off) ||
	    module_off != s->module_off)
		return "an invalid device id";
	if (s->peer_salen != 0 &&
	    !(s->peer_salen == sizeof(struct sockaddr_in) &&
	      ((const struct sockaddr *)(const void *)s->peer_sa)->sa_family == AF_INET) &&
	    !(s->peer_salen == sizeof(struct sockaddr_in6) &&
	      ((const struct sockaddr *)(const void *)s->peer_sa)->sa_family == AF_INET6))
		return "a peer address of no known family";
	return NULL;
}

struct kg_conn *kg_conn_adopt(struct kg_worker *w, const struct kg_ho_session *s, int dev_fd,
			      int be_fd, char *why, size_t whylen)
{
	struct kg_snapshot *snap = kg_snapshot_get(w->d);
	struct sockaddr_storage sa = { .ss_family = AF_UNSPEC };
	const char *misfit = record_misfit(s, &snap->cfg);
	struct kg_conn *c;
	uint64_t now;

	if (misfit == NULL && (!socket_is(dev_fd, s->mode == KG_MODE_KTLS_SPLICE) ||
			       !socket_is(be_fd, false)))
		misfit = "its sockets are not what the record says";
	if (misfit != NULL) {
		snprintf(why, whylen, "%s", misfit);
		goto refuse;
	}
	memcpy(&sa, s->peer_sa, s->peer_salen);
	c = kg_conn_alloc(w, snap, kg_config_listener_of(&snap->cfg, s->listen_idx), dev_fd,
			  (const struct sockaddr *)&sa, s->peer_salen);
	if (c == NULL) {
		snprintf(why, whylen, "out of memory");
		goto refuse;
	}
	c->listen_idx = s->listen_idx;
	if (s->peer_salen == 0)
		(void)snprintf(c->peer, sizeof(c->peer), "%s", s->peer);
	c->io.be.fd = be_fd;
	c->since = s->since;
	memcpy(c->id.device_id, s->device_id, sizeof(c->id.device_id));
	c->id.module_off = s->module_off;
	memcpy(c->id.thumbprint, s->thumbprint, sizeof(c->id.thumbprint));
	c->id.method = (enum kg_attestation)s->method;
	memcpy(c->id.ca_name, s->ca_name, sizeof(c->id.ca_name));
	c->id.not_after = s->not_after;
	memcpy(c->leaf.issuer_md, s->leaf_issuer_md, sizeof(c->leaf.issuer_md));
	memcpy(c->leaf.serial, s->leaf_serial, sizeof(c->leaf.serial));
	c->leaf.serial_len = s->leaf_serial_len;
	c->leaf.serial_neg = s->leaf_serial_neg;
	c->verdict.allow = true;
	c->verdict.reason = (enum kg_reason)s->reason;
	c->verdict.username_check = (enum kg_username_check)s->username_check;
	memcpy(c->verdict.backend, s->backend, sizeof(c->verdict.backend));
	c->identified = c->verify_ran = c->decided = c->audited = true;
	c->resumed = s->flags & KG_HO_S_RESUMED;
	c->ticket_id = c->resumed;
	c->tls_done = s->flags & KG_HO_S_TLS_DONE;
	c->failopen = s->flags & KG_HO_S_FAILOPEN;
	c->behind_proxy = s->flags & KG_HO_S_BEHIND_PROXY;
	c->proxy_cert = s->flags & KG_HO_S_PROXY_CERT;
	c->resumed_verified_at = s->resumed_verified_at;
	c->mqtt_level = s->mqtt_level;
	c->keepalive = s->keepalive;
	c->cred_kind = s->cred_kind;
	c->io.mode = (enum kg_relay_mode)s->mode;
	c->io.ktls_tx = s->flags & KG_HO_S_KTLS_TX;
	c->io.ktls_rx = s->flags & KG_HO_S_KTLS_RX;
	c->io.ktls_ulp = s->flags & KG_HO_S_KTLS_ULP;
	c->io.bytes_up = s->bytes_up;
	c->io.bytes_down = s->bytes_down;
	c->idle_ms = s->idle_ms;
	c->idle_any_dir = s->flags & KG_HO_S_IDLE_ANY_DIR;
	now = kg_now_ms();
	c->active_ms = now > s->idle_for_ms ? now - s->idle_for_ms : 0;

	/* Straight into RELAYING: linked there, then the state's deadline from the idle
	 * clock it brought along (kg_conn_timeout() moves it while there is traffic). */
	c->state = KG_ST_RELAYING;
	kg_conn_link(c);
	kg_conn_set_state(c, KG_ST_RELAYING);
	if (c->idle_ms != 0) {
		c->deadline_ms = c->active_ms + c->idle_ms;
		kg_worker_due(w, c->deadline_ms);
	}
	kg_metric_gauge(&w->metrics.sessions_by_mode[c->io.mode], 1);
	kg_metric_add(&w->metrics.sessions_adopted[c->io.mode], 1);
	kg_log_debug("conn=%llu dev=%s: %s session adopted (conn=%llu in the old process)",
		     (unsigned long long)c->cid, c->id.device_id, kg_relay_for_mode(c->io.mode)->name,
		     (unsigned long long)s->cid);
	/* The first pump arms both sockets in this worker's epoll and moves what came
	 * meanwhile. */
	kg_conn_run(c);
	return c;

refuse:
	kg_snapshot_put(snap);
	close(dev_fd);
	close(be_fd);
	return NULL;
}
