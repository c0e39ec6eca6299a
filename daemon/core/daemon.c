/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * daemon.c - configuration snapshots: build whole, publish with one pointer swap,
 * release when the last connection pinning them closes. A reload that fails at any
 * step frees what it built and leaves the running snapshot alone. And the hand-over
 * of a shared registry's changes (issue 16) from the watcher thread to the main loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/conn_tls.h"
#include "auth/auth_limit.h"
#include "core/daemon.h"
#include "ops/err.h"
#include "ops/log.h"
#include "registry/registry.h"
#include "registry/registry_cache.h"
#include "registry/watch_pg.h"
#include "tls/leaf.h"
#include "tls/session_cache.h"
#include "tls/tickets.h"
#include "tls/tls.h"
#include "core/worker.h"

/* Every start, reload and trust refresh says which CRLs have expired (one warning per
 * line of kg_trust_crl_report() that is one). */
static void warn_expired_crls(const struct kg_trust *t)
{
	char *buf = NULL, *line, *save = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return;
	(void)kg_trust_crl_report(t, f, time(NULL));
	if (fclose(f) == 0)
		for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			if (strncmp(line, "WARNING: ", 9) == 0)
				kg_log_warnx("%s", line + 9);
	free(buf);
}

static void snapshot_free(struct kg_snapshot *s)
{
	SSL_CTX_free(s->ssl_ctx);
	kg_leaf_free(s->leaf);   /* the old key is cleared once no SSL_CTX holds it */
	kg_trust_free(s->trust);
	free(s);
}

/*
 * Give each backend of cfg its metrics slot: the one its name had before (so a reload
 * keeps its counters), else the first free one; names past the table share the last
 * slot ("_other"). Slots are never taken back: a name that leaves the config and comes
 * back finds its counters where it left them.
 */
static void assign_backend_slots(struct kg_daemon *d, struct kg_config *cfg)
{
	for (size_t b = 0; b < cfg->n_backends; b++) {
		const char *name = cfg->backends[b].name;
		unsigned s;

		for (s = 0; s < KG_BACKEND_SLOT_OTHER; s++)
			if (d->backend_slot_names[s][0] == '\0' ||
			    strcmp(d->backend_slot_names[s], name) == 0)
				break;
		if (s < KG_BACKEND_SLOT_OTHER && d->backend_slot_names[s][0] == '\0')
			snprintf(d->backend_slot_names[s], sizeof(d->backend_slot_names[s]), "%s", name);
		cfg->backends[b].metrics_slot = s;
	}
}

/*
 * certified-leaf: the leaf a snapshot of cfg serves. The running one when it was issued
 * by the same TPM certificate and key through the same TCTI, is not yet due and is not
 * valid longer than cfg's lifetime (a reload or a trust refresh costs no TPM
 * signature); else a new one. NULL in direct mode and under the fallback file key.
 * 0, or -1 with err.
 */
static int leaf_for(struct kg_daemon *d, const struct kg_config *cfg, bool new_leaf,
		    struct kg_leaf **out, char *err, size_t errlen)
{
	struct kg_snapshot *cur = NULL;
	STACK_OF(X509) *chain;
	bool keep = false;

	*out = NULL;
	if (cfg->tpm.mode != KG_TPM_MODE_CERTIFIED_LEAF)
		return 0;
	/* Same TPM key and TCTI too: a reload that changes them must meet the TPM (and fail
	 * as in direct mode when the TCTI changed), not keep a leaf made elsewhere. */
	if (!new_leaf && d->snap != NULL && (cur = kg_snapshot_get(d))->leaf != NULL &&
	    strcmp(cur->cfg.key_file, cfg->key_file) == 0 &&
	    strcmp(cur->cfg.tpm.tcti, cfg->tpm.tcti) == 0 &&
	    (chain = kg_leaf_chain_load(cfg->cert_file, err, errlen)) != NULL) {
		keep = kg_leaf_fits(cur->leaf, chain, cfg->tpm.leaf_lifetime, (int64_t)time(NULL));
		sk_X509_pop_free(chain, X509_free);
	}
	if (keep)
		*out = kg_leaf_up_ref(cur->leaf);
	kg_snapshot_put(cur);
	if (keep) {
		kg_log_info("certified-leaf: keeping the leaf in force (serial %s, renewed at %lld)",
			    (*out)->serial, (long long)kg_leaf_renew_at(*out));
		return 0;
	}
	return kg_daemon_leaf_make(cfg, d->tpm_signer, out, err, errlen);
}

/* [tls] resumption = on: the context kg_tls_ctx_new() made without resumption gets
 * the daemon's ticket keys and the connection's ticket callbacks (conn_tls.h), or with
 * [tls] session_cache the daemon's session cache and the same identity check. */
static int snapshot_resumption(struct kg_daemon *d, struct kg_snapshot *s,
			       const struct kg_config *cfg, char *err, size_t errlen)
{
	if (d->session_cache != NULL)
		kg_session_cache_set_max(d->session_cache, cfg->resumption ? cfg->session_cache : 0);
	if (!cfg->resumption)
		return 0;
	if (cfg->session_cache > 0 && d->session_cache != NULL) {
		if (kg_session_cache_ctx_setup(s->ssl_ctx, d->session_cache, cfg->ticket_lifetime) < 0) {
			snprintf(err, errlen, "[tls] session_cache: cannot set up the session cache");
			return -1;
		}
	} else if (d->tickets != NULL) {
		if (kg_tickets_ctx_setup(s->ssl_ctx, d->tickets, cfg->ticket_lifetime,
					 kg_conn_tls_ticket_gen_cb, kg_conn_tls_ticket_dec_cb, NULL) < 0) {
			snprintf(err, errlen, "[tls] resumption: cannot set up session tickets");
			return -1;
		}
	} else
		return 0;
	kg_tls_set_psk_ke(s->ssl_ctx, cfg->resumption_psk_ke);
	return 0;
}

struct kg_snapshot *kg_snapshot_build(struct kg_daemon *d, const struct kg_config *cfg, char *err,
				      size_t errlen)
{
	return kg_snapshot_build_ex(d, cfg, false, err, errlen);
}

struct kg_snapshot *kg_snapshot_build_ex(struct kg_daemon *d, const struct kg_config *cfg,
					 bool new_leaf, char *err, size_t errlen)
{
	struct kg_snapshot *s = calloc(1, sizeof(*s));
	struct kg_registry *reg = NULL;

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = *cfg;
	atomic_init(&s->refs, 1);
	assign_backend_slots(d, &s->cfg);
	if (leaf_for(d, cfg, new_leaf, &s->leaf, err, errlen) != 0)
		goto out_free;
	s->ssl_ctx = s->leaf != NULL ? kg_tls_ctx_new_leaf(cfg, kg_conn_tls_verify_cb, s->leaf,
							   &s->key_source, err, errlen)
				     : kg_tls_ctx_new(cfg, d->tpm_signer, kg_conn_tls_verify_cb,
						      &s->key_source, err, errlen);
	if (s->ssl_ctx == NULL)
		goto out_free;
	if (snapshot_resumption(d, s, cfg, err, errlen) < 0)
		goto out_free;
	s->trust = kg_trust_new();
	if (s->trust == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	if (kg_registry_open(cfg->registry, KG_REG_READONLY, &reg, err, errlen) < 0) {
		char why[KG_ERRBUF];

		/* the store's words may quote a URI registry: never its password */
		snprintf(why, sizeof(why), "%s", err);
		kg_registry_location_redact_in(why, cfg->registry, err, errlen);
		goto out_free;
	}
	if (kg_trust_load(s->trust, reg, cfg, err, errlen) < 0)
		goto out_close;
	kg_registry_close(reg);
	warn_expired_crls(s->trust);
	pthread_mutex_lock(&d->snap_lock);
	s->generation = ++d->generation;
	pthread_mutex_unlock(&d->snap_lock);
	return s;

out_close:
	kg_registry_close(reg);
out_free:
	snapshot_free(s);
	return NULL;
}

struct kg_snapshot *kg_snapshot_get(struct kg_daemon *d)
{
	struct kg_snapshot *s;

	pthread_mutex_lock(&d->snap_lock);
	s = d->snap;
	atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&d->snap_lock);
	return s;
}

void kg_snapshot_put(struct kg_snapshot *s)
{
	if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
		snapshot_free(s);
}

void kg_snapshot_publish(struct kg_daemon *d, struct kg_snapshot *s)
{
	struct kg_snapshot *old;

	pthread_mutex_lock(&d->snap_lock);
	old = d->snap;
	d->snap = s;
	pthread_mutex_unlock(&d->snap_lock);
	/* The keys' span follows the config in force (a failed reload changes nothing). */
	if (d->tickets != NULL && s->cfg.resumption)
		kg_ticket_keys_set_lifetime(d->tickets, s->cfg.ticket_lifetime);
	kg_snapshot_put(old);
	kg_daemon_leaf_published(d, s);   /* certified-leaf: its timer and gauges */
	kg_daemon_tickets_published(d);   /* the sealed ticket keys: trust, lifetime */
}

/*
 * What a reload cannot change in a running process, and says so. The listeners are
 * the workers' sockets, opened at start: a connection finds its listener's settings by
 * the socket's index in the snapshot it pins, so a changed set of listeners is kept
 * as it runs in the new snapshot, never half applied.
 */
static void keep_fixed(const struct kg_config *old, struct kg_config *new)
{
	bool same = old->n_listen == new->n_listen && old->n_listeners == new->n_listeners;

	for (size_t i = 0; same && i < old->n_listen; i++)
		same = strcmp(old->listen[i].text, new->listen[i].text) == 0 &&
		       old->listen_listener[i] == new->listen_listener[i];
	for (size_t i = 0; same && i < old->n_listeners; i++)
		same = memcmp(&old->listeners[i], &new->listeners[i], sizeof(old->listeners[i])) == 0;
	if (!same) {
		kg_log_warnx("reload: listeners changed: they take effect at restart; the "
			     "running ones stay as they are");
		memcpy(new->listen, old->listen, sizeof(new->listen));
		memcpy(new->listen_listener, old->listen_listener, sizeof(new->listen_listener));
		new->n_listen = old->n_listen;
		memcpy(new->listeners, old->listeners, sizeof(new->listeners));
		new->n_listeners = old->n_listeners;
	}
	if (old->workers != new->workers || old->max_connections != new->max_connections ||
	    old->max_handshakes != new->max_handshakes)
		kg_log_warnx("reload: workers/max_connections/max_handshakes take effect at restart");
	if (old->auth.kdf_threads != new->auth.kdf_threads ||
	    old->auth.kdf_queue != new->auth.kdf_queue ||
	    old->auth.failure_track != new->auth.failure_track)
		kg_log_warnx("reload: [auth] kdf_threads, kdf_queue and failure_track take effect at restart");
	if (strcmp(old->registry, new->registry) != 0 || strcmp(old->control_socket, new->control_socket) != 0 ||
	    strcmp(old->metrics_listen.text, new->metrics_listen.text) != 0)
		kg_log_warnx("reload: registry, control_socket and metrics_listen take effect at restart");
}

struct backend_check {
	const struct kg_config *cfg;
	char *err;
	size_t errlen;
	bool bad;
};

static int check_one_backend(const char *name, int64_t devices, int64_t cas, void *arg)
{
	struct backend_check *bc = arg;
	size_t off;

	if (kg_config_get0_backend(bc->cfg, name) != NULL)
		return 0;
	off = (size_t)snprintf(bc->err, bc->errlen,
			       "backend \"%s\" is named by %lld device(s) and %lld CA(s) in the registry"
			       " but is not configured (configured:", name, (long long)devices,
			       (long long)cas);
	for (size_t i = 0; i < bc->cfg->n_backends && off < bc->errlen; i++)
		off += (size_t)snprintf(bc->err + off, bc->errlen - off, " %s", bc->cfg->backends[i].name);
	if (off < bc->errlen)
		snprintf(bc->err + off, bc->errlen - off, "%s)", bc->cfg->n_backends ? "" : " none");
	bc->bad = true;
	return 1;
}

int kg_daemon_check_backends(const struct kg_config *cfg, const char *registry, char *err,
			     size_t errlen)
{
	struct backend_check bc = { cfg, err, errlen, false };
	struct kg_registry *reg = NULL;
	char shown[PATH_MAX], why[KG_ERRBUF];
	int rc;

	/* Messages name the registry without a URI's password: they reach logs and the
	 * reload's reply. */
	if (kg_registry_open(registry, KG_REG_READONLY, &reg, why, sizeof(why)) < 0) {
		kg_registry_location_redact_in(why, registry, err, errlen);
		return -1;
	}
	rc = kg_registry_backends_in_use(reg, check_one_backend, &bc);
	kg_registry_close(reg);
	if (bc.bad)
		return -1;
	if (rc != 0) {
		(void)kg_registry_location_redact(registry, shown, sizeof(shown));
		snprintf(err, errlen, "registry %s: cannot list backends in use: %s", shown,
			 kg_err_str(rc));
		return -1;
	}
	return 0;
}

int kg_daemon_reload(struct kg_daemon *d, char *err, size_t errlen)
{
	struct kg_config *cfg = malloc(sizeof(*cfg));
	struct kg_cmd cmd = { 0 };
	struct kg_snapshot *s, *cur;

	if (cfg == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out_fail;
	}
	if (kg_config_load(d->config_path, cfg, err, errlen) < 0)
		goto out_free;
	cur = kg_snapshot_get(d);
	keep_fixed(&cur->cfg, cfg);
	/* Keep the fixed settings of the running process so the snapshot tells the truth. */
	memcpy(cfg->registry, cur->cfg.registry, sizeof(cfg->registry));
	kg_snapshot_put(cur);
	if (kg_daemon_check_backends(cfg, cfg->registry, err, errlen) < 0)
		goto out_free;
	s = kg_snapshot_build(d, cfg, err, errlen);
	if (s == NULL)
		goto out_free;
	kg_snapshot_publish(d, s);
	/* The limiter's burst and refill apply at once (its table keeps its size). */
	kg_auth_limit_set(d->auth_limit, s->cfg.auth.failure_burst, s->cfg.auth.failure_refill_ms);
	free(cfg);
	atomic_fetch_add(&d->reloads, 1);
	kg_log_info("reloaded %s (generation %llu, %zu CA(s) trusted)", d->config_path,
		    (unsigned long long)s->generation, kg_trust_count(s->trust, true));
	/* Live sessions pinned the old snapshot: re-check them against the new one (a new
	 * CRL, a backend at a new address), as `device-changed` does for one device. */
	cmd.type = KG_CMD_REVALIDATE_ALL;
	if (kg_workers_call(d, &cmd) == 0 && cmd.closed > 0)
		kg_log_info("reload: %u session(s) closed by revalidation", cmd.closed);
	return 0;

out_free:
	free(cfg);
out_fail:
	atomic_fetch_add(&d->reload_failures, 1);
	kg_log_warnx("reload failed, running configuration kept: %s", err);
	return -1;
}

int kg_daemon_refresh_trust(struct kg_daemon *d, char *err, size_t errlen)
{
	struct kg_snapshot *cur = kg_snapshot_get(d), *s;

	s = kg_snapshot_build(d, &cur->cfg, err, errlen);
	kg_snapshot_put(cur);
	if (s == NULL) {
		kg_log_warnx("trust refresh failed, previous CAs kept: %s", err);
		return -1;
	}
	kg_snapshot_publish(d, s);
	kg_log_info("trust refreshed (%zu CA(s) trusted)", kg_trust_count(s->trust, true));
	return 0;
}

/* ---- a shared registry's changes (issue 16) ------------------------------------- */

/*
 * The watcher thread's callback only queues; the main thread revalidates. Why not
 * call kg_workers_call() from the watcher: it is the main thread's (the control
 * socket's fan-out and a reload use it, one command at a time), and a CA change must
 * first rebuild and publish the trust snapshot (kg_daemon_refresh_trust()), which
 * writes main-thread-only state (backend_slot_names). Serving the watcher's changes
 * in the main loop, like `device-changed`, keeps one path for both.
 * The queue is bounded: when it is full (or the watcher asks for a resync) the
 * entries are dropped and one "revalidate everything" replaces them, so a burst of
 * changes costs at most one full pass and is never lost.
 */
#define REGWATCH_QUEUE 1024

struct regwatch_ev {
	enum kg_watch_kind kind;
	char name[KG_DEVICE_ID_MAX + 1];
};

struct kg_regwatch_q {
	struct kg_regcache *cache;             /* the daemon's view, invalidated here first */
	pthread_mutex_t lock;
	int efd;                               /* in d->epfd; written after each post */
	struct regwatch_ev ev[REGWATCH_QUEUE];
	unsigned head, n;
	bool all;                              /* revalidate everything (resync, full) */
};

/* Watcher thread: queue the change, wake the main loop. Never blocks. */
static void regwatch_post(void *arg, enum kg_watch_kind kind, const char *name, int64_t at)
{
	struct kg_regwatch_q *q = arg;
	uint64_t one = 1;

	(void)at;
	/* The view first, on this thread: a worker's next read of the device goes to the
	 * store, and a read already under way cannot store its row (the generation). */
	if (kind == KG_WATCH_DEVICE)
		kg_regcache_drop_device(q->cache, name);
	else if (kind == KG_WATCH_RESYNC)
		kg_regcache_drop_all(q->cache);
	/* KG_WATCH_CA: CAs are not in the view; the trust snapshot is rebuilt below. */
	pthread_mutex_lock(&q->lock);
	if (kind == KG_WATCH_RESYNC || q->n == REGWATCH_QUEUE ||
	    strlen(name) >= sizeof(q->ev[0].name)) {
		q->all = true;
		q->n = 0;
	} else if (!q->all) {
		struct regwatch_ev *e = &q->ev[(q->head + q->n) % REGWATCH_QUEUE];

		e->kind = kind;
		memcpy(e->name, name, strlen(name) + 1);
		q->n++;
	}
	pthread_mutex_unlock(&q->lock);
	(void)!write(q->efd, &one, sizeof(one));
}

/* Watcher thread: the database came back or went away (the down rule's input). */
static void regwatch_state(void *arg, bool up)
{
	struct kg_regwatch_q *q = arg;

	kg_regcache_watch_up(q->cache, up);
}

int kg_daemon_watch_start(struct kg_daemon *d, const struct kg_config *cfg, char *err,
			  size_t errlen)
{
	struct kg_regwatch_q *q;
	struct epoll_event ev = { .events = EPOLLIN };
	struct kg_watch_pg_opts o = { .uri = cfg->registry, .cb = regwatch_post,
				      .state_cb = regwatch_state };

	if (!kg_watch_pg_uri(cfg->registry))
		return 0;
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		snprintf(err, errlen, "registry watch: out of memory");
		return -1;
	}
	q->cache = kg_regcache_new(cfg->registry_cache, cfg->registry_down == KG_REGDOWN_FAIL_OPEN,
				   cfg->registry_down_seen);
	if (q->cache == NULL) {
		snprintf(err, errlen, "registry cache (%u entries): out of memory", cfg->registry_cache);
		free(q);
		return -1;
	}
	pthread_mutex_init(&q->lock, NULL);
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ev.data.fd = q->efd;
	if (q->efd < 0 || epoll_ctl(d->epfd, EPOLL_CTL_ADD, q->efd, &ev) < 0) {
		snprintf(err, errlen, "registry watch: eventfd: %s", strerror(errno));
		goto fail;
	}
	o.arg = q;
	d->regwatch = kg_watch_pg_start(&o, err, errlen);
	if (d->regwatch == NULL)
		goto fail;
	d->regwatch_q = q;
	d->regcache = q->cache;
	kg_log_info("registry watch: listening for changes on %s; cache of %u entries; "
		    "database down: %s", KG_PG_CHANNEL, cfg->registry_cache,
		    cfg->registry_down == KG_REGDOWN_FAIL_OPEN ? "fail-open" : "fail-closed");
	return 0;
fail:
	if (q->efd >= 0)
		close(q->efd);
	pthread_mutex_destroy(&q->lock);
	kg_regcache_free(q->cache);
	free(q);
	return -1;
}

bool kg_daemon_watch_owns(const struct kg_daemon *d, int fd)
{
	return d->regwatch_q != NULL && d->regwatch_q->efd == fd;
}

/* One change, as the control socket's device-changed / ca-changed runs it. */
static void regwatch_apply(struct kg_daemon *d, const struct regwatch_ev *e)
{
	struct kg_cmd cmd = { 0 };
	char err[KG_ERRBUF];

	if (e->kind == KG_WATCH_CA && kg_daemon_refresh_trust(d, err, sizeof(err)) < 0)
		return;   /* logged; the previous trust stays, as for ca-changed */
	cmd.type = e->kind == KG_WATCH_CA ? KG_CMD_REVALIDATE_CA : KG_CMD_REVALIDATE_DEVICE;
	memcpy(cmd.arg, e->name, sizeof(cmd.arg) < sizeof(e->name) ? sizeof(cmd.arg) : sizeof(e->name));
	cmd.arg[sizeof(cmd.arg) - 1] = '\0';
	if (kg_workers_call(d, &cmd) < 0) {
		kg_log_warnx("registry change: %s %s: workers unavailable",
			     e->kind == KG_WATCH_CA ? "ca" : "device", e->name);
		return;
	}
	if (cmd.closed > 0)
		kg_log_info("registry change: %s %s: %u session(s) closed",
			    e->kind == KG_WATCH_CA ? "ca" : "device", e->name, cmd.closed);
	else
		kg_log_debug("registry change: %s %s: no session closed",
			     e->kind == KG_WATCH_CA ? "ca" : "device", e->name);
}

void kg_daemon_watch_event(struct kg_daemon *d)
{
	struct kg_regwatch_q *q = d->regwatch_q;
	uint64_t v;

	if (q == NULL)
		return;
	(void)!read(q->efd, &v, sizeof(v));
	for (;;) {
		struct regwatch_ev e;
		bool all;

		pthread_mutex_lock(&q->lock);
		all = q->all;
		q->all = false;
		if (!all && q->n == 0) {
			pthread_mutex_unlock(&q->lock);
			return;
		}
		if (!all) {
			e = q->ev[q->head];
			q->head = (q->head + 1) % REGWATCH_QUEUE;
			q->n--;
		}
		pthread_mutex_unlock(&q->lock);
		if (all) {
			/* What a reload does for live sessions: new trust, then every one. */
			struct kg_cmd cmd = { .type = KG_CMD_REVALIDATE_ALL };
			char err[KG_ERRBUF];

			(void)!kg_daemon_refresh_trust(d, err, sizeof(err));
			if (kg_workers_call(d, &cmd) == 0)
				kg_log_info("registry change: every session revalidated, %u closed",
					    cmd.closed);
			continue;
		}
		regwatch_apply(d, &e);
	}
}

void kg_daemon_watch_stop(struct kg_daemon *d)
{
	struct kg_regwatch_q *q = d->regwatch_q;

	kg_watch_pg_stop(d->regwatch);   /* first: no post after the queue is gone */
	d->regwatch = NULL;
	if (q == NULL)
		return;
	if (d->epfd >= 0)
		(void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, q->efd, NULL);
	close(q->efd);
	pthread_mutex_destroy(&q->lock);
	kg_regcache_free(q->cache);   /* the workers (its readers) are gone */
	d->regcache = NULL;
	free(q);
	d->regwatch_q = NULL;
}

void kg_daemon_watch_metrics(struct kg_daemon *d, struct kg_metrics_regwatch *out)
{
	struct kg_watch_pg_stats st;

	*out = (struct kg_metrics_regwatch){ .enabled = false };
	if (d->regwatch == NULL)
		return;
	kg_watch_pg_stats(d->regwatch, &st);
	*out = (struct kg_metrics_regwatch){
		.enabled = true, .connected = st.connected,
		.changes_device = st.changes_device, .changes_ca = st.changes_ca,
		.reconnects = st.reconnects, .resyncs = st.resyncs,
		.lag_seconds = st.lag_seconds,
	};
	if (d->regcache != NULL) {
		struct kg_regcache_stats cs;

		kg_regcache_stats(d->regcache, &cs);
		out->cache = true;
		out->up = cs.up;
		out->cache_hits = cs.hits;
		out->cache_misses = cs.misses;
		out->cache_evictions = cs.evictions;
		out->cache_size = cs.size;
		out->cache_max = cs.max;
		out->down_refusals = cs.refusals;
		out->failopen_admits = cs.failopen_admits;
	}
}
