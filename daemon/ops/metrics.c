/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * metrics.c - sums the per-worker counters into Prometheus text and serves it with
 * libmicrohttpd on its own thread. Reads are relaxed atomics: a scrape may see one
 * counter a few increments ahead of another, never a torn value.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <unistd.h>

#include <microhttpd.h>

#include "ops/metrics.h"

const double kg_hs_bucket_le[KG_HS_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, -1.0 /* +Inf */
};

void kg_metrics_observe_handshake(struct kg_metrics *m, uint64_t usec)
{
	double s = (double)usec / 1e6;
	size_t i;

	for (i = 0; i + 1 < KG_HS_BUCKETS; i++)
		if (s <= kg_hs_bucket_le[i])
			break;
	kg_metric_add(&m->hs_bucket[i], 1);
	kg_metric_add(&m->hs_count, 1);
	kg_metric_add(&m->hs_sum_us, usec);
}

void kg_metrics_backend_connect(struct kg_metrics *m, unsigned slot, enum kg_backend_result result,
				int64_t now_ms)
{
	if (slot >= KG_BACKEND_SLOTS)
		slot = KG_BACKEND_SLOT_OTHER;
	kg_metric_add(&m->backend_connects[slot][result], 1);
	atomic_store_explicit(&m->backend_last_ms[slot][result], now_ms, memory_order_relaxed);
}

struct out {
	char *buf;
	size_t len, cap;
	int failed;
};

static void KG_PRINTF(2, 3) put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->failed = 1;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		{
			size_t ncap = o->cap * 2 + (size_t)n;
			char *p = realloc(o->buf, ncap);
			if (p == NULL) {
				o->failed = 1;
				return;
			}
			o->buf = p;
			o->cap = ncap;
		}
	}
}

/* Sum one field over the workers; `off` is its offsetof() in struct kg_metrics. */
static uint64_t sum_u(struct kg_metrics *const *w, size_t n, size_t off)
{
	uint64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s += atomic_load_explicit((_Atomic uint64_t *)((char *)w[i] + off), memory_order_relaxed);
	return s;
}

static int64_t sum_i(struct kg_metrics *const *w, size_t n, size_t off)
{
	int64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s += atomic_load_explicit((_Atomic int64_t *)((char *)w[i] + off), memory_order_relaxed);
	return s;
}

#define SUM_U(field) sum_u(w, n, offsetof(struct kg_metrics, field))
#define SUM_I(field) sum_i(w, n, offsetof(struct kg_metrics, field))

const char *const kg_resume_refusal_names[KG_RESUME_MAX] = {
	[KG_RESUME_OK] = "ok", [KG_RESUME_UNKNOWN_KEY] = "unknown_key",
	[KG_RESUME_BAD_TICKET] = "bad_ticket", [KG_RESUME_TRUST_CHANGED] = "trust_changed",
	[KG_RESUME_LEAF_MISMATCH] = "leaf_mismatch", [KG_RESUME_LEAF_EXPIRED] = "leaf_expired",
	[KG_RESUME_TOO_OLD] = "too_old", [KG_RESUME_POLICY] = "policy",
};

const char *const kg_tpm_op_names[KG_TPM_OP_MAX] = {
	[KG_TPM_OP_CONNECT] = "connect", [KG_TPM_OP_LOAD] = "load", [KG_TPM_OP_SIGN] = "sign",
	[KG_TPM_OP_TIMEOUT] = "timeout", [KG_TPM_OP_QUEUE_FULL] = "queue_full",
	[KG_TPM_OP_SEAL] = "seal",
};

/* A TPM signs in 30-100 ms (swtpm in about 1 ms); the deadline defaults to 1 s. */
const double kg_tpm_sign_bucket_le[KG_TPM_SIGN_BUCKETS] = { 0.002, 0.005, 0.01, 0.025, 0.05,
							    0.1, 0.25, 0.5, 1, -1 };

static void render_tpm(struct out *o, const struct kg_metrics_tpm *t)
{
	if (!t->present)
		return;
	put(o, "# HELP ktlsgate_tpm_up 1 while the TPM signer is connected and has the server key loaded.\n"
	       "# TYPE ktlsgate_tpm_up gauge\n"
	       "ktlsgate_tpm_up %d\n", t->up ? 1 : 0);
	put(o, "# HELP ktlsgate_tpm_sign_queue Signature requests waiting for the TPM.\n"
	       "# TYPE ktlsgate_tpm_sign_queue gauge\n"
	       "ktlsgate_tpm_sign_queue %llu\n", (unsigned long long)t->queue);
	put(o, "# HELP ktlsgate_tpm_sign_seconds Time the TPM took per signature (successful ones).\n"
	       "# TYPE ktlsgate_tpm_sign_seconds histogram\n");
	for (size_t b = 0; b < KG_TPM_SIGN_BUCKETS; b++) {
		if (kg_tpm_sign_bucket_le[b] < 0)
			put(o, "ktlsgate_tpm_sign_seconds_bucket{le=\"+Inf\"} %llu\n",
			    (unsigned long long)t->sign_buckets[b]);
		else
			put(o, "ktlsgate_tpm_sign_seconds_bucket{le=\"%g\"} %llu\n",
			    kg_tpm_sign_bucket_le[b], (unsigned long long)t->sign_buckets[b]);
	}
	put(o, "ktlsgate_tpm_sign_seconds_sum %.6f\n", t->sign_sum);
	put(o, "ktlsgate_tpm_sign_seconds_count %llu\n", (unsigned long long)t->sign_count);
}

int kg_metrics_fd_usage(const char *fd_dir, int64_t *open, int64_t *max)
{
	struct rlimit rl;
	struct statfs sfs;
	struct stat st;
	struct dirent *de;
	DIR *d;
	int64_t n = 0;
	bool procfs;

	*open = -1;
	*max = -1;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		*max = (int64_t)rl.rlim_cur;
	procfs = statfs(fd_dir, &sfs) == 0 && sfs.f_type == PROC_SUPER_MAGIC;
	/* Linux >= 6.2 gives the count as the size of /proc/PID/fd: no walk over a table
	 * that holds two fds per device (the scrape runs on the metrics thread). */
	if (procfs && stat(fd_dir, &st) == 0 && st.st_size > 0) {
		*open = (int64_t)st.st_size;
		return 0;
	}
	d = opendir(fd_dir);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	/* our own directory fd is among /proc/self/fd's entries: not one the daemon holds */
	if (procfs && n > 0)
		n--;
	closedir(d);
	*open = n;
	return 0;
}

static const char *const hs_names[KG_HS_MAX] = { "ok", "failed", "timeout" };
static const char *const dir_names[KG_DIR_MAX] = { "device_to_broker", "broker_to_device" };
static const char *const mode_names[KG_MODE_MAX] = {
	[KG_MODE_KTLS_SPLICE] = "ktls_splice", [KG_MODE_KTLS_TX] = "ktls_tx",
	[KG_MODE_USERSPACE] = "userspace", [KG_MODE_USERSPACE_SSL] = "userspace_ssl",
	[KG_MODE_SOCKMAP] = "sockmap", [KG_MODE_SPLICE] = "splice", [KG_MODE_PLAIN] = "plain",
};
const char *const kg_ktls_fallback_names[KG_KTLS_FALLBACK_MAX] = {
	[KG_KTLS_NO_KERNEL] = "kernel_no_tls", [KG_KTLS_TX_NOT_OFFLOADED] = "tx_not_offloaded",
	[KG_KTLS_RX_FAILED] = "rx_install_failed", [KG_KTLS_REKEYED] = "rekeyed_before_handoff",
};
static const char *const rx_by_names[KG_KTLS_RX_BY_MAX] = {
	[KG_KTLS_RX_BY_OPENSSL] = "openssl", [KG_KTLS_RX_BY_DAEMON] = "daemon",
};
static const char *const ctrl_names[KG_KTLS_CTRL_MAX] = {
	[KG_KTLS_CLOSE_NOTIFY] = "close_notify", [KG_KTLS_ALERT] = "alert",
	[KG_KTLS_KEYUPDATE_REFUSED] = "keyupdate_refused",
	[KG_KTLS_KEYUPDATE_FOLLOWED] = "keyupdate_followed", [KG_KTLS_OTHER] = "other",
};

static const char *const key_source_names[KG_KEY_SOURCE_MAX] = {
	[KG_KEY_FILE] = "file", [KG_KEY_TPM] = "tpm", [KG_KEY_TPM_FALLBACK] = "tpm_fallback",
	[KG_KEY_TPM_LEAF] = "tpm_leaf",
};

/* The latest of one slot's "last" times over the workers. */
static int64_t last_ms(struct kg_metrics *const *w, size_t n, unsigned slot, int result)
{
	int64_t t = 0;

	for (size_t i = 0; i < n; i++) {
		int64_t v = atomic_load_explicit(&w[i]->backend_last_ms[slot][result],
						 memory_order_relaxed);
		if (v > t)
			t = v;
	}
	return t;
}

/*
 * Backend b's slot and label value. Backend names are config names ([A-Za-z0-9._-],
 * config.c), safe as label values. Slots past the table share "_other": false for the
 * second and later of those (*other_seen), which print nothing.
 */
static bool backend_label(const struct kg_backend_conf *b, bool *other_seen, unsigned *slot,
			  const char **name)
{
	*slot = b->metrics_slot;
	*name = b->name;
	if (*slot < KG_BACKEND_SLOT_OTHER)
		return true;
	if (*other_seen)
		return false;
	*other_seen = true;
	*slot = KG_BACKEND_SLOT_OTHER;
	*name = "_other";
	return true;
}

/* Connections accepted per listener, and the plain listeners (clear-text credentials:
 * ktlsgate.rules' KtlsgatePlainListener fires while there is one). */
static void render_listeners(struct out *o, struct kg_metrics *const *w, size_t n,
			     const struct kg_metrics_info *info)
{
	size_t plain = 0;

	put(o, "# HELP ktlsgate_listener_connections_total Connections accepted per listener.\n"
	       "# TYPE ktlsgate_listener_connections_total counter\n");
	for (size_t l = 0; l < info->n_listeners && l < KG_MAX_LISTENERS; l++) {
		const struct kg_listener_conf *lc = &info->listeners[l];

		if ((unsigned)lc->kind >= KG_LISTENER_KIND_MAX)
			continue;
		plain += lc->kind == KG_LISTENER_PLAIN;
		put(o, "ktlsgate_listener_connections_total{listener=\"%s\",type=\"%s\"} %llu\n",
		    lc->name, kg_listener_kind_names[lc->kind],
		    (unsigned long long)SUM_U(listener_accepted[l]));
	}
	put(o, "# HELP ktlsgate_plain_listeners Listeners without TLS (credentials cross the network in clear text).\n"
	       "# TYPE ktlsgate_plain_listeners gauge\nktlsgate_plain_listeners %zu\n", plain);
}

/* Per configured backend: connects by result, and up = whether the most recent
 * connect succeeded (absent until one was tried). */
static void render_backends(struct out *o, struct kg_metrics *const *w, size_t n,
			    const struct kg_metrics_info *info)
{
	bool other_seen = false;
	const char *name;
	unsigned s;

	put(o, "# HELP ktlsgate_backend_connects_total Connects to each broker by result.\n"
	       "# TYPE ktlsgate_backend_connects_total counter\n");
	for (size_t b = 0; b < info->n_backends; b++) {
		if (!backend_label(&info->backends[b], &other_seen, &s, &name))
			continue;
		put(o, "ktlsgate_backend_connects_total{backend=\"%s\",result=\"ok\"} %llu\n"
		       "ktlsgate_backend_connects_total{backend=\"%s\",result=\"failed\"} %llu\n",
		    name, (unsigned long long)SUM_U(backend_connects[s][KG_BACKEND_OK]), name,
		    (unsigned long long)SUM_U(backend_connects[s][KG_BACKEND_FAILED]));
	}
	put(o, "# HELP ktlsgate_backend_up Whether the last connect to each broker succeeded (absent before the first).\n"
	       "# TYPE ktlsgate_backend_up gauge\n");
	other_seen = false;
	for (size_t b = 0; b < info->n_backends; b++) {
		int64_t ok, failed;

		if (!backend_label(&info->backends[b], &other_seen, &s, &name))
			continue;
		ok = last_ms(w, n, s, KG_BACKEND_OK);
		failed = last_ms(w, n, s, KG_BACKEND_FAILED);
		if (ok != 0 || failed != 0)
			put(o, "ktlsgate_backend_up{backend=\"%s\"} %d\n", name, ok >= failed);
	}
}

/* The CONNECT credential checks (issue 15, auth/): per-worker verdicts, and the shared
 * scrypt pool and limiter as the scrape found them. */
static void render_auth(struct out *o, struct kg_metrics *const *w, size_t n,
			const struct kg_metrics_auth *a)
{
	static const char *const kinds[KG_AUTH_KINDS] = { "sas", "token", "basic" };
	static const char *const outcomes[KG_AUTH_OUTCOME_MAX] = {
		"ok", "refused", "rate_limited", "overload",
	};

	put(o, "# HELP ktlsgate_auth_attempts_total CONNECT credential checks (SAS, access token, user name and password) by kind and outcome.\n"
	       "# TYPE ktlsgate_auth_attempts_total counter\n");
	for (size_t k = 0; k < KG_AUTH_KINDS; k++)
		for (size_t r = 0; r < KG_AUTH_OUTCOME_MAX; r++)
			put(o, "ktlsgate_auth_attempts_total{kind=\"%s\",result=\"%s\"} %llu\n", kinds[k],
			    outcomes[r], (unsigned long long)SUM_U(auth_attempts[k][r]));
	put(o, "# HELP ktlsgate_auth_kdf_queue Password checks waiting for a scrypt thread.\n"
	       "# TYPE ktlsgate_auth_kdf_queue gauge\nktlsgate_auth_kdf_queue %llu\n"
	       "# HELP ktlsgate_auth_kdf_running Password checks on a scrypt thread.\n"
	       "# TYPE ktlsgate_auth_kdf_running gauge\nktlsgate_auth_kdf_running %llu\n",
	    (unsigned long long)a->kdf_queued, (unsigned long long)a->kdf_running);
	put(o, "# HELP ktlsgate_auth_kdf_jobs_total Password checks by end: completed, cancelled (the connection left), rejected (queue full).\n"
	       "# TYPE ktlsgate_auth_kdf_jobs_total counter\n"
	       "ktlsgate_auth_kdf_jobs_total{result=\"completed\"} %llu\n"
	       "ktlsgate_auth_kdf_jobs_total{result=\"cancelled\"} %llu\n"
	       "ktlsgate_auth_kdf_jobs_total{result=\"rejected\"} %llu\n",
	    (unsigned long long)a->kdf_completed, (unsigned long long)a->kdf_cancelled,
	    (unsigned long long)a->kdf_rejected);
	put(o, "# HELP ktlsgate_auth_kdf_seconds_total Thread time spent in scrypt.\n"
	       "# TYPE ktlsgate_auth_kdf_seconds_total counter\nktlsgate_auth_kdf_seconds_total %.6f\n",
	    (double)a->kdf_ns / 1e9);
	put(o, "# HELP ktlsgate_auth_rate_limited_total Credential attempts refused unchecked by the brute-force limiter.\n"
	       "# TYPE ktlsgate_auth_rate_limited_total counter\nktlsgate_auth_rate_limited_total %llu\n"
	       "# HELP ktlsgate_auth_limiter_entries Device ids and source prefixes the limiter remembers.\n"
	       "# TYPE ktlsgate_auth_limiter_entries gauge\nktlsgate_auth_limiter_entries %llu\n"
	       "# HELP ktlsgate_auth_limiter_evictions_total Limiter entries forgotten before their bucket refilled (table full).\n"
	       "# TYPE ktlsgate_auth_limiter_evictions_total counter\nktlsgate_auth_limiter_evictions_total %llu\n",
	    (unsigned long long)a->limited, (unsigned long long)a->limiter_entries,
	    (unsigned long long)a->limiter_evictions);
}

/*
 * The same counters once more per worker thread (label worker="0".."n-1"; the writer's
 * entry after them is not a worker), so the per-worker series add up to the aggregate
 * ones: connections, handshakes, bytes, the live gauges, the thread's CPU time, and how
 * unevenly new connections reach the workers. Workers are at most 256 (main.c): a
 * bounded label.
 */
static void render_workers(struct out *o, struct kg_metrics *const *w, size_t n,
			   const struct kg_metrics_info *info)
{
	size_t nw = info->workers < n ? info->workers : n;

	put(o, "# HELP ktlsgate_worker_accepted_total TCP connections accepted, per worker thread.\n"
	       "# TYPE ktlsgate_worker_accepted_total counter\n");
	for (size_t i = 0; i < nw; i++)
		put(o, "ktlsgate_worker_accepted_total{worker=\"%zu\"} %llu\n", i,
		    (unsigned long long)atomic_load_explicit(&w[i]->accepted, memory_order_relaxed));
	put(o, "# HELP ktlsgate_worker_handshakes_total TLS handshakes by result, per worker thread.\n"
	       "# TYPE ktlsgate_worker_handshakes_total counter\n");
	for (size_t i = 0; i < nw; i++)
		for (size_t r = 0; r < KG_HS_MAX; r++)
			put(o, "ktlsgate_worker_handshakes_total{worker=\"%zu\",result=\"%s\"} %llu\n", i,
			    hs_names[r], (unsigned long long)atomic_load_explicit(&w[i]->handshakes[r],
										 memory_order_relaxed));
	put(o, "# HELP ktlsgate_worker_bytes_relayed_total Payload bytes relayed, per worker thread.\n"
	       "# TYPE ktlsgate_worker_bytes_relayed_total counter\n");
	for (size_t i = 0; i < nw; i++)
		for (size_t d = 0; d < KG_DIR_MAX; d++)
			put(o, "ktlsgate_worker_bytes_relayed_total{worker=\"%zu\",direction=\"%s\"} %llu\n", i,
			    dir_names[d], (unsigned long long)atomic_load_explicit(&w[i]->bytes[d],
										  memory_order_relaxed));
	put(o, "# HELP ktlsgate_worker_connections Live connections (any state), per worker thread.\n"
	       "# TYPE ktlsgate_worker_connections gauge\n");
	for (size_t i = 0; i < nw; i++) {
		int64_t c = 0;

		for (size_t s = 0; s < info->n_states && s < KG_CONN_STATES_MAX; s++)
			if (strcmp(info->state_names[s], "closed") != 0)
				c += atomic_load_explicit(&w[i]->conns_by_state[s], memory_order_relaxed);
		put(o, "ktlsgate_worker_connections{worker=\"%zu\"} %lld\n", i, (long long)c);
	}
	put(o, "# HELP ktlsgate_worker_sessions Relaying sessions (any data path), per worker thread.\n"
	       "# TYPE ktlsgate_worker_sessions gauge\n");
	for (size_t i = 0; i < nw; i++) {
		int64_t c = 0;

		for (size_t m = 0; m < KG_MODE_MAX; m++)
			c += atomic_load_explicit(&w[i]->sessions_by_mode[m], memory_order_relaxed);
		put(o, "ktlsgate_worker_sessions{worker=\"%zu\"} %lld\n", i, (long long)c);
	}
	put(o, "# HELP ktlsgate_worker_cpu_seconds_total CPU time (user and system) of each worker thread.\n"
	       "# TYPE ktlsgate_worker_cpu_seconds_total counter\n");
	for (size_t i = 0; info->worker_cpu_seconds != NULL && i < nw; i++)
		if (info->worker_cpu_seconds[i] >= 0)
			put(o, "ktlsgate_worker_cpu_seconds_total{worker=\"%zu\"} %.6f\n", i,
			    info->worker_cpu_seconds[i]);
	put(o, "# HELP ktlsgate_worker_accept_imbalance Connections accepted by the busiest worker over the mean per worker, in the last 1-2 minutes (1: even; absent: too few to judge).\n"
	       "# TYPE ktlsgate_worker_accept_imbalance gauge\n");
	if (info->accept_imbalance > 0)
		put(o, "ktlsgate_worker_accept_imbalance %.4f\n", info->accept_imbalance);
}

char *kg_metrics_render(struct kg_metrics *const *w, size_t n, const struct kg_metrics_info *info,
			size_t *len_out)
{
	struct out o = { .cap = 8192 };
	uint64_t cum = 0;

	o.buf = malloc(o.cap);
	if (o.buf == NULL)
		return NULL;
	o.buf[0] = '\0';

	put(&o, "# HELP ktlsgate_connections Live connections by state.\n"
		"# TYPE ktlsgate_connections gauge\n");
	for (size_t s = 0; s < info->n_states && s < KG_CONN_STATES_MAX; s++) {
		if (strcmp(info->state_names[s], "closed") == 0)
			continue;
		put(&o, "ktlsgate_connections{state=\"%s\"} %lld\n", info->state_names[s],
		    (long long)SUM_I(conns_by_state[s]));
	}
	put(&o, "# HELP ktlsgate_sessions Relaying sessions by data path.\n"
		"# TYPE ktlsgate_sessions gauge\n");
	for (size_t m = 0; m < KG_MODE_MAX; m++)
		put(&o, "ktlsgate_sessions{mode=\"%s\"} %lld\n", mode_names[m],
		    (long long)SUM_I(sessions_by_mode[m]));
	put(&o, "# HELP ktlsgate_sessions_started_total Handoffs by the data path chosen.\n"
		"# TYPE ktlsgate_sessions_started_total counter\n");
	for (size_t m = 0; m < KG_MODE_MAX; m++)
		put(&o, "ktlsgate_sessions_started_total{mode=\"%s\"} %llu\n", mode_names[m],
		    (unsigned long long)SUM_U(sessions_started[m]));
	/* The live handover (core/handover.h): only the data paths that travel. */
	put(&o, "# HELP ktlsgate_sessions_handed_over_total Relaying sessions passed to or taken from another ktlsgated process at a takeover, by direction and data path.\n"
		"# TYPE ktlsgate_sessions_handed_over_total counter\n");
	for (size_t m = 0; m < KG_MODE_MAX; m++) {
		if (m != KG_MODE_KTLS_SPLICE && m != KG_MODE_SPLICE && m != KG_MODE_PLAIN)
			continue;
		put(&o, "ktlsgate_sessions_handed_over_total{direction=\"passed\",mode=\"%s\"} %llu\n",
		    mode_names[m], (unsigned long long)SUM_U(sessions_passed[m]));
		put(&o, "ktlsgate_sessions_handed_over_total{direction=\"adopted\",mode=\"%s\"} %llu\n",
		    mode_names[m], (unsigned long long)SUM_U(sessions_adopted[m]));
	}
	put(&o, "# HELP ktlsgate_ktls_fallbacks_total Sessions that tried kernel TLS and fell back, by reason.\n"
		"# TYPE ktlsgate_ktls_fallbacks_total counter\n");
	for (size_t f = 0; f < KG_KTLS_FALLBACK_MAX; f++)
		put(&o, "ktlsgate_ktls_fallbacks_total{reason=\"%s\"} %llu\n", kg_ktls_fallback_names[f],
		    (unsigned long long)SUM_U(ktls_fallbacks[f]));
	put(&o, "# HELP ktlsgate_ktls_rx_installed_total Device sockets given a kernel receive key at the handoff, by who installed it.\n"
		"# TYPE ktlsgate_ktls_rx_installed_total counter\n");
	for (size_t b = 0; b < KG_KTLS_RX_BY_MAX; b++)
		put(&o, "ktlsgate_ktls_rx_installed_total{by=\"%s\"} %llu\n", rx_by_names[b],
		    (unsigned long long)SUM_U(ktls_rx_installed[b]));
	put(&o, "# HELP ktlsgate_ktls_control_records_total Non-data TLS records met on offloaded sessions.\n"
		"# TYPE ktlsgate_ktls_control_records_total counter\n");
	for (size_t k = 0; k < KG_KTLS_CTRL_MAX; k++)
		put(&o, "ktlsgate_ktls_control_records_total{kind=\"%s\"} %llu\n", ctrl_names[k],
		    (unsigned long long)SUM_U(ktls_ctrl[k]));
	put(&o, "# HELP ktlsgate_chain_cache_hits_total Device chains accepted by verifying the leaf alone under an intermediate verified before (the trust's intermediates cache).\n"
		"# TYPE ktlsgate_chain_cache_hits_total counter\n"
		"ktlsgate_chain_cache_hits_total %llu\n", (unsigned long long)SUM_U(chain_cache_hits));
	put(&o, "# HELP ktlsgate_chain_cache_misses_total Device chains whose leaf's issuer was sent but not found usable in the intermediates cache: verified in full.\n"
		"# TYPE ktlsgate_chain_cache_misses_total counter\n"
		"ktlsgate_chain_cache_misses_total %llu\n", (unsigned long long)SUM_U(chain_cache_misses));
	put(&o, "# HELP ktlsgate_handoff_waits_total Handoffs that waited for the rest of a TLS record.\n"
		"# TYPE ktlsgate_handoff_waits_total counter\n"
		"ktlsgate_handoff_waits_total %llu\n", (unsigned long long)SUM_U(handoff_waits));
	put(&o, "# HELP ktlsgate_handoff_carried_bytes_total Device bytes read before the handoff (pipelined behind the CONNECT), sent to the broker first.\n"
		"# TYPE ktlsgate_handoff_carried_bytes_total counter\n"
		"ktlsgate_handoff_carried_bytes_total %llu\n", (unsigned long long)SUM_U(handoff_carried));
	put(&o, "# HELP ktlsgate_sockmap_drops_total Packets of sockmap sessions the kernel relay dropped (no peer socket to redirect to).\n"
		"# TYPE ktlsgate_sockmap_drops_total counter\n"
		"ktlsgate_sockmap_drops_total %llu\n", (unsigned long long)SUM_U(sockmap_drops));
	put(&o, "# HELP ktlsgate_sockmap_holds_total Directions of sockmap sessions the daemon took over because the other side did not drain (back-pressure).\n"
		"# TYPE ktlsgate_sockmap_holds_total counter\n"
		"ktlsgate_sockmap_holds_total %llu\n", (unsigned long long)SUM_U(sockmap_holds));
	put(&o, "# HELP ktlsgate_sockmap_releases_total Held directions of sockmap sessions the kernel relays again (the daemon caught up).\n"
		"# TYPE ktlsgate_sockmap_releases_total counter\n"
		"ktlsgate_sockmap_releases_total %llu\n", (unsigned long long)SUM_U(sockmap_releases));
	put(&o, "# HELP ktlsgate_sockmap_checks_total Sessions whose backlog the daemon measured because the sockmap verdict estimated it large.\n"
		"# TYPE ktlsgate_sockmap_checks_total counter\n"
		"ktlsgate_sockmap_checks_total %llu\n", (unsigned long long)SUM_U(sockmap_checks));
	put(&o, "# HELP ktlsgate_splice_pipes Pipes held by sessions with bytes in flight.\n"
		"# TYPE ktlsgate_splice_pipes gauge\n"
		"ktlsgate_splice_pipes %lld\n", (long long)SUM_I(pipes_in_use));
	put(&o, "# HELP ktlsgate_accepted_total TCP connections accepted.\n"
		"# TYPE ktlsgate_accepted_total counter\n"
		"ktlsgate_accepted_total %llu\n", (unsigned long long)SUM_U(accepted));
	put(&o, "# HELP ktlsgate_refused_overload_total Connections closed at accept: connection cap.\n"
		"# TYPE ktlsgate_refused_overload_total counter\n"
		"ktlsgate_refused_overload_total %llu\n", (unsigned long long)SUM_U(refused_overload));
	put(&o, "# HELP ktlsgate_source_limited_total Connections closed at accept: their source was over a per-source limit.\n"
		"# TYPE ktlsgate_source_limited_total counter\n"
		"ktlsgate_source_limited_total{limit=\"handshakes\"} %llu\n"
		"ktlsgate_source_limited_total{limit=\"rate\"} %llu\n",
		(unsigned long long)SUM_U(source_limited[KG_SRC_LIMIT_HANDSHAKES]),
		(unsigned long long)SUM_U(source_limited[KG_SRC_LIMIT_RATE]));
	put(&o, "# HELP ktlsgate_source_untracked_total Connections admitted without per-source limits: the source table was full.\n"
		"# TYPE ktlsgate_source_untracked_total counter\n"
		"ktlsgate_source_untracked_total %llu\n", (unsigned long long)SUM_U(source_untracked));
	put(&o, "# HELP ktlsgate_accept_errors_total Connections not served for lack of file descriptors.\n"
		"# TYPE ktlsgate_accept_errors_total counter\n"
		"ktlsgate_accept_errors_total{errno=\"EMFILE\"} %llu\n"
		"ktlsgate_accept_errors_total{errno=\"ENFILE\"} %llu\n",
		(unsigned long long)SUM_U(accept_errors[KG_ACCEPT_EMFILE]),
		(unsigned long long)SUM_U(accept_errors[KG_ACCEPT_ENFILE]));
	put(&o, "# HELP ktlsgate_handshakes_total TLS handshakes by result.\n"
		"# TYPE ktlsgate_handshakes_total counter\n");
	for (size_t r = 0; r < KG_HS_MAX; r++)
		put(&o, "ktlsgate_handshakes_total{result=\"%s\"} %llu\n", hs_names[r],
		    (unsigned long long)SUM_U(handshakes[r]));
	/* A separate family: result="ok" split by kind, so sums over result stay true. */
	put(&o, "# HELP ktlsgate_handshakes_completed_total Completed TLS handshakes: full, or resumed from a ticket.\n"
		"# TYPE ktlsgate_handshakes_completed_total counter\n"
		"ktlsgate_handshakes_completed_total{kind=\"full\"} %llu\n"
		"ktlsgate_handshakes_completed_total{kind=\"resumed\"} %llu\n",
		(unsigned long long)SUM_U(handshakes_kind[KG_HS_FULL]),
		(unsigned long long)SUM_U(handshakes_kind[KG_HS_RESUMED]));
	put(&o, "# HELP ktlsgate_resumption_refusals_total Session tickets not resumed (a full handshake follows), and resumed sessions refused after the handshake (reason=\"policy\").\n"
		"# TYPE ktlsgate_resumption_refusals_total counter\n");
	for (size_t r = 1; r < KG_RESUME_MAX; r++)
		put(&o, "ktlsgate_resumption_refusals_total{reason=\"%s\"} %llu\n",
		    kg_resume_refusal_names[r], (unsigned long long)SUM_U(resume_refusals[r]));
	put(&o, "# HELP ktlsgate_ticket_reuses_total Resumptions after which the device kept its ticket: no new ticket sent ([tls] ticket_reuse, until half the ticket's life).\n"
		"# TYPE ktlsgate_ticket_reuses_total counter\n"
		"ktlsgate_ticket_reuses_total %llu\n",
		(unsigned long long)SUM_U(tickets_reused));
	put(&o, "# HELP ktlsgate_resumptions_psk_ke_total Resumptions without an (EC)DHE exchange (psk_ke, [tls] resumption_psk_ke): their keys depend on the ticket's secret alone.\n"
		"# TYPE ktlsgate_resumptions_psk_ke_total counter\n"
		"ktlsgate_resumptions_psk_ke_total %llu\n",
		(unsigned long long)SUM_U(resumptions_psk_ke));
	put(&o, "# HELP ktlsgate_ticket_key_rotations_total New session ticket encryption keys made ([tls] ticket_lifetime).\n"
		"# TYPE ktlsgate_ticket_key_rotations_total counter\n"
		"ktlsgate_ticket_key_rotations_total %llu\n",
		(unsigned long long)info->ticket_key_rotations);
	put(&o, "# HELP ktlsgate_session_cache_sessions TLS 1.3 sessions kept in memory for resumption ([tls] session_cache; 0 with tickets).\n"
		"# TYPE ktlsgate_session_cache_sessions gauge\n"
		"ktlsgate_session_cache_sessions %llu\n"
		"# HELP ktlsgate_session_cache_evictions_total Sessions dropped from the cache, the oldest first, to make room for new ones.\n"
		"# TYPE ktlsgate_session_cache_evictions_total counter\n"
		"ktlsgate_session_cache_evictions_total %llu\n",
		(unsigned long long)info->session_cache_sessions,
		(unsigned long long)info->session_cache_evictions);
	put(&o, "# HELP ktlsgate_decisions_total Access decisions by outcome and reason.\n"
		"# TYPE ktlsgate_decisions_total counter\n");
	for (size_t r = 0; r < KG_REASON_MAX; r++) {
		uint64_t a = SUM_U(decisions_allow[r]), d = SUM_U(decisions_deny[r]);
		if (a)
			put(&o, "ktlsgate_decisions_total{decision=\"allow\",reason=\"%s\"} %llu\n",
			    kg_reason_str((enum kg_reason)r), (unsigned long long)a);
		if (d)
			put(&o, "ktlsgate_decisions_total{decision=\"deny\",reason=\"%s\"} %llu\n",
			    kg_reason_str((enum kg_reason)r), (unsigned long long)d);
	}
	put(&o, "# HELP ktlsgate_closes_total Connections closed, by reason.\n"
		"# TYPE ktlsgate_closes_total counter\n");
	for (size_t r = 0; r < KG_REASON_MAX; r++) {
		uint64_t v = SUM_U(closes[r]);
		if (v)
			put(&o, "ktlsgate_closes_total{reason=\"%s\"} %llu\n",
			    kg_reason_str((enum kg_reason)r), (unsigned long long)v);
	}
	put(&o, "# HELP ktlsgate_audit_suppressed_total Audit lines of unauthenticated refusals held back by the flood guard (reported in audit_suppressed lines), by reason.\n"
		"# TYPE ktlsgate_audit_suppressed_total counter\n");
	for (size_t r = 0; r < KG_REASON_MAX; r++) {
		uint64_t v = SUM_U(audit_suppressed[r]);
		if (v)
			put(&o, "ktlsgate_audit_suppressed_total{reason=\"%s\"} %llu\n",
			    kg_reason_str((enum kg_reason)r), (unsigned long long)v);
	}
	put(&o, "# HELP ktlsgate_bytes_relayed_total Payload bytes relayed.\n"
		"# TYPE ktlsgate_bytes_relayed_total counter\n");
	for (size_t d = 0; d < KG_DIR_MAX; d++)
		put(&o, "ktlsgate_bytes_relayed_total{direction=\"%s\"} %llu\n", dir_names[d],
		    (unsigned long long)SUM_U(bytes[d]));
	put(&o, "# HELP ktlsgate_handshake_seconds Full TLS handshake latency.\n"
		"# TYPE ktlsgate_handshake_seconds histogram\n");
	for (size_t b = 0; b < KG_HS_BUCKETS; b++) {
		cum += SUM_U(hs_bucket[b]);
		if (kg_hs_bucket_le[b] < 0)
			put(&o, "ktlsgate_handshake_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
		else
			put(&o, "ktlsgate_handshake_seconds_bucket{le=\"%g\"} %llu\n", kg_hs_bucket_le[b],
			    (unsigned long long)cum);
	}
	put(&o, "ktlsgate_handshake_seconds_sum %.6f\n", (double)SUM_U(hs_sum_us) / 1e6);
	put(&o, "ktlsgate_handshake_seconds_count %llu\n", (unsigned long long)SUM_U(hs_count));
	put(&o, "# HELP ktlsgate_workers Worker threads.\n# TYPE ktlsgate_workers gauge\n"
		"ktlsgate_workers %u\n", info->workers);
	render_workers(&o, w, n, info);
	put(&o, "# HELP ktlsgate_reloads_total Configuration reloads by result.\n"
		"# TYPE ktlsgate_reloads_total counter\n"
		"ktlsgate_reloads_total{result=\"ok\"} %llu\n"
		"ktlsgate_reloads_total{result=\"failed\"} %llu\n",
	    (unsigned long long)info->reloads, (unsigned long long)info->reload_failures);
	put(&o, "# HELP ktlsgate_registry_write_drops_total last-seen updates dropped (queue full).\n"
		"# TYPE ktlsgate_registry_write_drops_total counter\n"
		"ktlsgate_registry_write_drops_total %llu\n", (unsigned long long)info->registry_write_drops);
	put(&o, "# HELP ktlsgate_registry_busy_total times the registry writer waited for another process's lock.\n"
		"# TYPE ktlsgate_registry_busy_total counter\n"
		"ktlsgate_registry_busy_total %llu\n", (unsigned long long)info->registry_busy);
	put(&o, "# HELP ktlsgate_registry_writer_queue Registry writes queued or being applied by the writer thread.\n"
		"# TYPE ktlsgate_registry_writer_queue gauge\n"
		"ktlsgate_registry_writer_queue %lld\n", (long long)info->registry_queue);
	put(&o, "# HELP ktlsgate_registry_writer_last_commit_timestamp_seconds Last registry commit by the writer thread (its start before the first), unix time.\n"
		"# TYPE ktlsgate_registry_writer_last_commit_timestamp_seconds gauge\n"
		"ktlsgate_registry_writer_last_commit_timestamp_seconds %lld\n",
		(long long)info->registry_last_commit);
	if (info->regwatch.enabled) {
		const struct kg_metrics_regwatch *rw = &info->regwatch;

		put(&o, "# HELP ktlsgate_registry_watch_connected Whether the shared registry's change watcher holds its connection (1) or is reconnecting (0).\n"
			"# TYPE ktlsgate_registry_watch_connected gauge\n"
			"ktlsgate_registry_watch_connected %d\n", rw->connected ? 1 : 0);
		put(&o, "# HELP ktlsgate_registry_watch_changes_total Registry changes (by any appliance or by SQL) handed to revalidation, by kind.\n"
			"# TYPE ktlsgate_registry_watch_changes_total counter\n"
			"ktlsgate_registry_watch_changes_total{kind=\"device\"} %llu\n"
			"ktlsgate_registry_watch_changes_total{kind=\"ca\"} %llu\n",
		    (unsigned long long)rw->changes_device, (unsigned long long)rw->changes_ca);
		put(&o, "# HELP ktlsgate_registry_watch_reconnects_total Connections of the change watcher made again after a loss.\n"
			"# TYPE ktlsgate_registry_watch_reconnects_total counter\n"
			"ktlsgate_registry_watch_reconnects_total %llu\n", (unsigned long long)rw->reconnects);
		put(&o, "# HELP ktlsgate_registry_watch_resyncs_total Times every session was revalidated because changes had left the feed before this appliance read them.\n"
			"# TYPE ktlsgate_registry_watch_resyncs_total counter\n"
			"ktlsgate_registry_watch_resyncs_total %llu\n", (unsigned long long)rw->resyncs);
		if (rw->cache) {
			put(&o, "# HELP ktlsgate_registry_up Whether the shared registry counts as up (1) or down (0: its change watcher is disconnected or a read failed; registry_down rules new connections).\n"
				"# TYPE ktlsgate_registry_up gauge\n"
				"ktlsgate_registry_up %d\n", rw->up ? 1 : 0);
			put(&o, "# HELP ktlsgate_registry_down_refusals_total New connections refused because the shared registry was down (reason registry_unavailable).\n"
				"# TYPE ktlsgate_registry_down_refusals_total counter\n"
				"ktlsgate_registry_down_refusals_total %llu\n", (unsigned long long)rw->down_refusals);
			put(&o, "# HELP ktlsgate_registry_failopen_admissions_total Devices admitted from the cache while the shared registry was down (registry_down = fail-open).\n"
				"# TYPE ktlsgate_registry_failopen_admissions_total counter\n"
				"ktlsgate_registry_failopen_admissions_total %llu\n", (unsigned long long)rw->failopen_admits);
			put(&o, "# HELP ktlsgate_registry_cache_hits_total Hot-path registry reads answered by the cache.\n"
				"# TYPE ktlsgate_registry_cache_hits_total counter\n"
				"ktlsgate_registry_cache_hits_total %llu\n", (unsigned long long)rw->cache_hits);
			put(&o, "# HELP ktlsgate_registry_cache_misses_total Hot-path registry reads the cache could not answer (the database was asked).\n"
				"# TYPE ktlsgate_registry_cache_misses_total counter\n"
				"ktlsgate_registry_cache_misses_total %llu\n", (unsigned long long)rw->cache_misses);
			put(&o, "# HELP ktlsgate_registry_cache_evictions_total Cache entries evicted to stay within registry_cache.\n"
				"# TYPE ktlsgate_registry_cache_evictions_total counter\n"
				"ktlsgate_registry_cache_evictions_total %llu\n", (unsigned long long)rw->cache_evictions);
			put(&o, "# HELP ktlsgate_registry_cache_entries Entries in the cache (bound: registry_cache).\n"
				"# TYPE ktlsgate_registry_cache_entries gauge\n"
				"ktlsgate_registry_cache_entries %llu\n", (unsigned long long)rw->cache_size);
		}
		put(&o, "# HELP ktlsgate_registry_watch_lag_seconds Age of the last change when the watcher handed it on (now - changes.at).\n"
			"# TYPE ktlsgate_registry_watch_lag_seconds gauge\n");
		if (rw->lag_seconds >= 0)
			put(&o, "ktlsgate_registry_watch_lag_seconds %lld\n", (long long)rw->lag_seconds);
	}
	put(&o, "# HELP ktlsgate_server_cert_not_after_timestamp_seconds notAfter of the server certificate in use, unix time.\n"
		"# TYPE ktlsgate_server_cert_not_after_timestamp_seconds gauge\n");
	if (info->server_cert_not_after != 0)
		put(&o, "ktlsgate_server_cert_not_after_timestamp_seconds %lld\n",
		    (long long)info->server_cert_not_after);
	put(&o, "# HELP ktlsgate_tpm_errors_total TPM failures by kind.\n"
		"# TYPE ktlsgate_tpm_errors_total counter\n");
	for (size_t op = 0; op < KG_TPM_OP_MAX; op++)
		put(&o, "ktlsgate_tpm_errors_total{kind=\"%s\"} %llu\n", kg_tpm_op_names[op],
		    (unsigned long long)info->tpm_errors[op]);
	render_tpm(&o, &info->tpm);
	render_auth(&o, w, n, &info->auth);
	render_backends(&o, w, n, info);
	render_listeners(&o, w, n, info);
	if (info->leaf.enabled) {
		put(&o, "# HELP ktlsgate_tpm_leaf_not_after_timestamp_seconds notAfter of the certified leaf in use, unix time.\n"
			"# TYPE ktlsgate_tpm_leaf_not_after_timestamp_seconds gauge\n"
			"ktlsgate_tpm_leaf_not_after_timestamp_seconds %lld\n", (long long)info->leaf.not_after);
		put(&o, "# HELP ktlsgate_tpm_leaf_rotations_total Certified leaves made and put in force (the first included).\n"
			"# TYPE ktlsgate_tpm_leaf_rotations_total counter\n"
			"ktlsgate_tpm_leaf_rotations_total %llu\n", (unsigned long long)info->leaf.rotations);
		put(&o, "# HELP ktlsgate_tpm_leaf_rotation_failures_total Failed attempts to make a certified leaf.\n"
			"# TYPE ktlsgate_tpm_leaf_rotation_failures_total counter\n"
			"ktlsgate_tpm_leaf_rotation_failures_total %llu\n", (unsigned long long)info->leaf.failures);
	}
	put(&o, "# HELP ktlsgate_server_key_source Where the server key in use comes from (1 on the one in force).\n"
		"# TYPE ktlsgate_server_key_source gauge\n");
	for (size_t k = 0; k < KG_KEY_SOURCE_MAX; k++)
		put(&o, "ktlsgate_server_key_source{source=\"%s\"} %d\n", key_source_names[k],
		    info->key_source == (enum kg_key_source)k);
	if (info->open_fds >= 0)
		put(&o, "# HELP process_open_fds Number of open file descriptors.\n"
			"# TYPE process_open_fds gauge\nprocess_open_fds %lld\n",
		    (long long)info->open_fds);
	if (info->max_fds >= 0)
		put(&o, "# HELP process_max_fds Maximum number of open file descriptors.\n"
			"# TYPE process_max_fds gauge\nprocess_max_fds %lld\n",
		    (long long)info->max_fds);
	put(&o, "# HELP ktlsgate_start_time_seconds Daemon start, unix time.\n"
		"# TYPE ktlsgate_start_time_seconds gauge\nktlsgate_start_time_seconds %lld\n",
	    (long long)info->start_time);
	if (o.failed) {
		free(o.buf);
		return NULL;
	}
	if (len_out)
		*len_out = o.len;
	return o.buf;
}

struct kg_metrics_http {
	struct MHD_Daemon *mhd;
	bool quiesced;             /* its listener went to another process (handover) */
	kg_metrics_render_fn fn;
	void *arg;
};

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_size, void **con_cls)
{
	struct kg_metrics_http *h = cls;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *body;
	size_t len = 0;
	unsigned status = MHD_HTTP_OK;

	(void)version;
	(void)upload_data;
	(void)upload_size;
	(void)con_cls;
	if (strcmp(method, "GET") != 0)
		return MHD_NO;
	if (strcmp(url, "/metrics") != 0) {
		static const char nf[] = "not found: try /metrics\n";
		resp = MHD_create_response_from_buffer(sizeof(nf) - 1, (void *)nf, MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_NOT_FOUND;
	} else {
		body = h->fn(h->arg, &len);
		if (body == NULL)
			return MHD_NO;
		resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	}
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/*
 * One internal thread polls every connection (epoll): an idle connection costs a slot,
 * never the thread. What used to blind the endpoint was the slot count: 64 slots and
 * a 10 s timeout, so 64 idle sockets refused every scrape for 10 s. Now the slots are
 * bounded per address (one address cannot take them all, so a scraper elsewhere
 * always gets one) and in total (fds), and a connection that makes no progress for
 * metrics_timeout seconds (idle, or half a request) is closed.
 */
struct kg_metrics_http *kg_metrics_http_start(const struct kg_config *cfg, kg_metrics_render_fn fn,
					      void *arg, char *err, size_t errlen)
{
	return kg_metrics_http_start_fd(cfg, -1, fn, arg, err, errlen);
}

struct kg_metrics_http *kg_metrics_http_start_fd(const struct kg_config *cfg, int listen_fd,
						 kg_metrics_render_fn fn, void *arg, char *err,
						 size_t errlen)
{
	const struct kg_sockaddr *addr = &cfg->metrics_listen;
	struct kg_metrics_http *h = calloc(1, sizeof(*h));
	/* MHD_USE_ITC: kg_metrics_http_quiesce() needs it with the internal thread. */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY | MHD_USE_ITC;

	if (h == NULL) {
		snprintf(err, errlen, "metrics: out of memory");
		return NULL;
	}
	h->fn = fn;
	h->arg = arg;
	if (addr->ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (listen_fd >= 0)
		/* A socket passed at a handover (core/handover.h): already bound and
		 * listening, the address is its own. */
		h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, h,
					  MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd,
					  MHD_OPTION_CONNECTION_LIMIT, cfg->metrics_max_connections,
					  MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->metrics_max_per_ip,
					  MHD_OPTION_CONNECTION_TIMEOUT, cfg->metrics_timeout,
					  MHD_OPTION_END);
	else
		h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, h,
					  MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&addr->ss,
					  MHD_OPTION_CONNECTION_LIMIT, cfg->metrics_max_connections,
					  MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->metrics_max_per_ip,
					  MHD_OPTION_CONNECTION_TIMEOUT, cfg->metrics_timeout,
					  MHD_OPTION_END);
	if (h->mhd == NULL) {
		snprintf(err, errlen, "metrics_listen %s: cannot listen", addr->text);
		free(h);
		return NULL;
	}
	return h;
}

int kg_metrics_http_listen_fd(const struct kg_metrics_http *h)
{
	const union MHD_DaemonInfo *i;

	if (h == NULL || h->quiesced)
		return -1;
	i = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_LISTEN_FD);
	return i != NULL ? (int)i->listen_fd : -1;
}

void kg_metrics_http_quiesce(struct kg_metrics_http *h)
{
	MHD_socket fd;

	if (h == NULL || h->quiesced)
		return;
	/* MHD gives the socket back without shutdown(): the new process's copy lives on. */
	fd = MHD_quiesce_daemon(h->mhd);
	h->quiesced = true;
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

void kg_metrics_http_stop(struct kg_metrics_http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->mhd);
	free(h);
}
