/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * metrics.h - counters, gauges and a histogram, kept per worker (only the owning
 * worker writes; the metrics thread reads with relaxed atomics) and summed when
 * Prometheus scrapes. No per-device labels: cardinality stays bounded by enums.
 * kg_metrics_render() is pure (unit-tested); kg_metrics_http_*() serve it with
 * libmicrohttpd on its own thread.
 */
#ifndef KTLSGATE_METRICS_H
#define KTLSGATE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"
#include "ops/config.h"
#include "policy/reason.h"

enum kg_hs_result { KG_HS_OK, KG_HS_FAILED, KG_HS_TIMEOUT, KG_HS_MAX };
enum kg_dir { KG_DIR_UP, KG_DIR_DOWN, KG_DIR_MAX };   /* device->broker, broker->device */
/* Data paths after the handoff (relay.h): "ktls_splice" kernel TLS both ways and
 * splice(); "ktls_tx" kernel TLS for what we send, the device read through OpenSSL;
 * "userspace" the record relay (OpenSSL's session state freed); "userspace_ssl"
 * relays through SSL_read/SSL_write. Plain device sides (relay_plain.c): "sockmap"
 * the kernel redirects both ways (SK_SKB verdict), "splice" socket -> pipe -> socket,
 * "plain" a user-space copy. */
enum kg_relay_mode {
	KG_MODE_KTLS_SPLICE,
	KG_MODE_KTLS_TX,
	KG_MODE_USERSPACE,
	KG_MODE_USERSPACE_SSL,
	KG_MODE_SOCKMAP,
	KG_MODE_SPLICE,
	KG_MODE_PLAIN,
	KG_MODE_MAX
};

/* Why a session that could have used kernel TLS did not (or not fully). */
enum kg_ktls_fallback {
	KG_KTLS_NO_KERNEL,        /* the kernel has no TLS ULP (CONFIG_TLS off, module absent) */
	KG_KTLS_TX_NOT_OFFLOADED, /* OpenSSL kept TX in user space (cipher the kernel lacks) */
	KG_KTLS_RX_FAILED,        /* installing the receive key failed */
	KG_KTLS_REKEYED,          /* a KeyUpdate before the handoff: keys moved on */
	KG_KTLS_FALLBACK_MAX
};
/* Their label values (the metric's and the audit line's "ktls_fallback"). */
extern const char *const kg_ktls_fallback_names[KG_KTLS_FALLBACK_MAX];

/* Who installed the device socket's kernel receive key at the handoff: OpenSSL itself
 * (TLS 1.2; TLS 1.3 from OpenSSL 3.2 on, e.g. Debian 13's 3.5) or the daemon from the
 * client traffic secret (TLS 1.3 under OpenSSL 3.0, Debian 12: relay_ktls.c). */
enum kg_ktls_rx_by { KG_KTLS_RX_BY_OPENSSL, KG_KTLS_RX_BY_DAEMON, KG_KTLS_RX_BY_MAX };

/* Non-data records read from a kTLS socket. */
enum kg_ktls_ctrl {
	KG_KTLS_CLOSE_NOTIFY,
	KG_KTLS_ALERT,            /* any other alert from the device */
	KG_KTLS_KEYUPDATE_REFUSED,/* answered with a fatal alert, session closed */
	KG_KTLS_KEYUPDATE_FOLLOWED,/* ktls_tx mode: OpenSSL took the new receive key */
	KG_KTLS_OTHER,            /* any other handshake record: fatal alert */
	KG_KTLS_CTRL_MAX
};

/* Per-backend connect outcomes live in slots: a backend name keeps its slot for the
 * daemon's life (counters stay monotonic across reloads). Slots are handed out to new
 * names at reloads; once all are taken, later new names share the last one, rendered
 * as backend="_other" (a config with 64 backends renamed many times over). */
#define KG_BACKEND_SLOTS (2 * KG_MAX_BACKENDS)
#define KG_BACKEND_SLOT_OTHER (KG_BACKEND_SLOTS - 1)
enum kg_backend_result { KG_BACKEND_OK, KG_BACKEND_FAILED, KG_BACKEND_RESULT_MAX };

/* Where the server key of the SSL_CTX in force comes from (tls.h kg_tls_ctx_new()):
 * a PEM file, the TPM, or [tpm] key_fallback because the TPM was unreachable. */
enum kg_key_source { KG_KEY_FILE, KG_KEY_TPM, KG_KEY_TPM_FALLBACK, KG_KEY_TPM_LEAF,
		     KG_KEY_SOURCE_MAX };

/* Which per-source limit closed a connection at accept (srclimit.h). */
enum kg_src_limit { KG_SRC_LIMIT_HANDSHAKES, KG_SRC_LIMIT_RATE, KG_SRC_LIMIT_MAX };

/* accept() out of file descriptors: the process's limit, or the system's. A new
 * socket that would eat into the fds kept for /metrics and the control socket
 * counts as EMFILE (worker.c). */
enum kg_accept_err { KG_ACCEPT_EMFILE, KG_ACCEPT_ENFILE, KG_ACCEPT_ERR_MAX };

/* TPM failures by kind (tpm/tpm_signer.h): reaching the TPM (at start, a fallback key
 * may be serving instead; at run time each reconnect attempt), loading the server key
 * into it, a signature the TPM failed, a signature given up at its deadline, a
 * signature refused because the signer's queue was full. */
enum kg_tpm_op {
	KG_TPM_OP_CONNECT, KG_TPM_OP_LOAD, KG_TPM_OP_SIGN, KG_TPM_OP_TIMEOUT, KG_TPM_OP_QUEUE_FULL,
	KG_TPM_OP_SEAL,   /* sealing or unsealing the session-ticket keys */
	KG_TPM_OP_MAX
};
/* ktlsgate_tpm_sign_seconds buckets (last is +Inf): kg_tpm_sign_bucket_le */
#define KG_TPM_SIGN_BUCKETS 10
extern const double kg_tpm_sign_bucket_le[KG_TPM_SIGN_BUCKETS];

/* The TPM signer's state at scrape time (tpm_signer.h). present false: no TPM key. */
struct kg_metrics_tpm {
	bool present;
	bool up;
	uint64_t queue;
	uint64_t sign_buckets[KG_TPM_SIGN_BUCKETS];  /* cumulative */
	uint64_t sign_count;
	double sign_sum;
};

/* TLS 1.3 resumption (tls/tickets.h): why a ticket was not resumed (a full handshake
 * follows), or "policy": a resumed session refused after the handshake. */
enum kg_resume_refusal {
	KG_RESUME_OK,
	KG_RESUME_UNKNOWN_KEY,     /* not ours, or its key's window closed */
	KG_RESUME_BAD_TICKET,      /* no or malformed identity in it */
	KG_RESUME_TRUST_CHANGED,   /* made under another trust generation (CA, CRL, reload) */
	KG_RESUME_LEAF_MISMATCH,   /* its identity is not the session's certificate's */
	KG_RESUME_LEAF_EXPIRED,
	KG_RESUME_TOO_OLD,         /* full verification more than 7 days ago */
	KG_RESUME_POLICY,          /* resumed, then refused (registry, policy, CONNECT) */
	KG_RESUME_MAX
};
extern const char *const kg_resume_refusal_names[KG_RESUME_MAX];
enum kg_hs_kind { KG_HS_FULL, KG_HS_RESUMED, KG_HS_KIND_MAX };

/* CONNECT credential checks (issue 15, auth/auth_check.h): by kind (sas, token,
 * basic: auth_check.h's enum kg_auth_kind order, checked there) and outcome. */
#define KG_AUTH_KINDS 3
enum kg_auth_outcome {
	KG_AUTH_OUTCOME_OK,
	KG_AUTH_OUTCOME_REFUSED,      /* verified and wrong, or naming nothing, or wrong kind */
	KG_AUTH_OUTCOME_RATE_LIMITED, /* refused unchecked by the limiter */
	KG_AUTH_OUTCOME_OVERLOAD,     /* basic: the password-hash queue was full */
	KG_AUTH_OUTCOME_MAX
};

/* The shared parts of the credential check, read at scrape time (auth_pool.h
 * kg_auth_pool_stats(), auth_limit.h kg_auth_limit_stats()). Zero without them. */
struct kg_metrics_auth {
	uint64_t kdf_queued, kdf_running;           /* gauges */
	uint64_t kdf_rejected, kdf_completed, kdf_cancelled;
	uint64_t kdf_ns;                            /* thread time in password checks */
	uint64_t limited, limiter_evictions;        /* counters */
	uint64_t limiter_entries;                   /* gauge */
};

/* The change watcher of a shared PostgreSQL registry (registry/watch_pg.h), read at
 * scrape time. enabled false (a file registry, no watcher): none of its lines. */
struct kg_metrics_regwatch {
	bool enabled;
	bool connected;
	uint64_t changes_device, changes_ca;   /* changes handed to the daemon */
	uint64_t reconnects, resyncs;
	int64_t lag_seconds;                   /* now - at of the last change; -1: none */
	/* Its hot-path view and down rule (registry/registry_cache.h); cache false: none */
	bool cache;
	bool up;                               /* the database counts as up */
	uint64_t cache_hits, cache_misses, cache_evictions;
	uint64_t cache_size, cache_max;
	uint64_t down_refusals, failopen_admits;
};

#define KG_CONN_STATES_MAX 16
#define KG_HS_BUCKETS 13

struct kg_metrics {
	_Atomic int64_t conns_by_state[KG_CONN_STATES_MAX];   /* gauge */
	_Atomic int64_t sessions_by_mode[KG_MODE_MAX];        /* gauge: relaying */
	_Atomic uint64_t sessions_started[KG_MODE_MAX];       /* handoffs by data path */
	_Atomic uint64_t sessions_passed[KG_MODE_MAX];        /* handed to a new process */
	_Atomic uint64_t sessions_adopted[KG_MODE_MAX];       /* taken from an old process */
	_Atomic uint64_t accepted;
	_Atomic uint64_t listener_accepted[KG_MAX_LISTENERS]; /* by config.h listeners[] index */
	_Atomic uint64_t refused_overload;
	_Atomic uint64_t source_limited[KG_SRC_LIMIT_MAX];    /* closed at accept, by limit */
	_Atomic uint64_t source_untracked;                    /* admitted: source table run full */
	_Atomic uint64_t accept_errors[KG_ACCEPT_ERR_MAX];    /* out of fds at accept */
	_Atomic uint64_t handshakes[KG_HS_MAX];
	_Atomic uint64_t handshakes_kind[KG_HS_KIND_MAX];     /* completed: full or resumed */
	_Atomic uint64_t resume_refusals[KG_RESUME_MAX];
	_Atomic uint64_t tickets_reused;                      /* resumed, no new ticket */
	_Atomic uint64_t resumptions_psk_ke;                  /* resumed without (EC)DHE */
	_Atomic uint64_t decisions_allow[KG_REASON_MAX];
	_Atomic uint64_t decisions_deny[KG_REASON_MAX];
	_Atomic uint64_t closes[KG_REASON_MAX];
	_Atomic uint64_t audit_suppressed[KG_REASON_MAX];     /* audit lines held back */
	_Atomic uint64_t bytes[KG_DIR_MAX];
	_Atomic uint64_t ktls_fallbacks[KG_KTLS_FALLBACK_MAX];
	_Atomic uint64_t ktls_ctrl[KG_KTLS_CTRL_MAX];
	_Atomic uint64_t ktls_rx_installed[KG_KTLS_RX_BY_MAX];
	_Atomic int64_t pipes_in_use;                         /* gauge: splice pipes held */
	_Atomic uint64_t handoff_waits;                       /* half a record inside OpenSSL */
	_Atomic uint64_t handoff_carried;                     /* bytes read before, sent first */
	_Atomic uint64_t sockmap_drops;                       /* skbs the sockmap verdict dropped */
	_Atomic uint64_t sockmap_holds;                       /* directions held: sink not draining */
	_Atomic uint64_t sockmap_releases;                    /* held directions back in the kernel */
	_Atomic uint64_t sockmap_checks;                      /* backlogs measured on a notice */
	/* connects to each backend slot by result, and when the last of each happened
	 * (CLOCK_MONOTONIC ms; 0 never): ktlsgate_backend_up is the later of the two */
	_Atomic uint64_t backend_connects[KG_BACKEND_SLOTS][KG_BACKEND_RESULT_MAX];
	_Atomic int64_t backend_last_ms[KG_BACKEND_SLOTS][KG_BACKEND_RESULT_MAX];
	_Atomic uint64_t hs_bucket[KG_HS_BUCKETS];            /* non-cumulative counts */
	_Atomic uint64_t hs_count;
	_Atomic uint64_t hs_sum_us;
	/* CONNECT credential checks by kind and outcome (the worker counts each verdict) */
	_Atomic uint64_t auth_attempts[KG_AUTH_KINDS][KG_AUTH_OUTCOME_MAX];
	/* device chains verified under a cached intermediate / with it sent but not cached
	 * (tls/verify.h enum kg_chain_use; issue 13) */
	_Atomic uint64_t chain_cache_hits;
	_Atomic uint64_t chain_cache_misses;
};

/* Upper bounds of the handshake histogram buckets, in seconds (last is +Inf). */
extern const double kg_hs_bucket_le[KG_HS_BUCKETS];

static inline void kg_metric_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static inline void kg_metric_gauge(_Atomic int64_t *g, int64_t delta)
{
	atomic_fetch_add_explicit(g, delta, memory_order_relaxed);
}

void kg_metrics_observe_handshake(struct kg_metrics *m, uint64_t usec);
/* A connect to the backend in `slot` ended with `result` at now_ms (monotonic). */
void kg_metrics_backend_connect(struct kg_metrics *m, unsigned slot, enum kg_backend_result result,
				int64_t now_ms);

/* Static facts shown beside the counters. */
struct kg_metrics_info {
	const char *const *state_names;  /* n_states names for the connection gauge */
	size_t n_states;
	unsigned workers;
	uint64_t reloads, reload_failures, registry_write_drops;
	uint64_t registry_busy;          /* writer waits for another process's lock */
	int64_t registry_queue;          /* writer: items queued or being applied */
	int64_t registry_last_commit;    /* writer: last commit, unix s (its start before) */
	int64_t server_cert_not_after;   /* the SSL_CTX's certificate; 0: unknown, omitted */
	uint64_t tpm_errors[KG_TPM_OP_MAX]; /* TPM failures by kind (tpm_signer.h) */
	struct kg_metrics_tpm tpm;       /* the signer thread (issue 13) */
	int64_t open_fds, max_fds;       /* kg_metrics_fd_usage(); -1: unknown, omitted */
	enum kg_key_source key_source;   /* the SSL_CTX in force's server key */
	/* The listeners (fixed at start: a reload keeps them), names borrowed */
	const struct kg_listener_conf *listeners;
	size_t n_listeners;
	/* The backends of the config in force and their slots (names borrowed) */
	const struct kg_backend_conf *backends;
	size_t n_backends;
	int64_t start_time;
	struct kg_metrics_auth auth;     /* scrypt pool and limiter (issue 15) */
	struct kg_metrics_regwatch regwatch; /* shared registry's watcher (issue 16) */
	/* [tpm] mode = certified-leaf (issue 13): the leaf in force; enabled false in
	 * direct mode (the series are then omitted) */
	struct {
		bool enabled;
		int64_t not_after;         /* unix s; 0: no leaf yet */
		uint64_t rotations, failures;
	} leaf;
	uint64_t ticket_key_rotations;   /* tls/tickets.h: new ticket encryption keys */
	uint64_t session_cache_sessions; /* tls/session_cache.h: sessions kept */
	uint64_t session_cache_evictions;   /* ... dropped, the oldest first, to make room */
	/* Per worker (issue 14): the first `workers` entries of per_worker are the worker
	 * threads', rendered once more each with a worker="i" label. Their threads' CPU
	 * seconds, `workers` of them (NULL, or an entry < 0: not shown), and the accept
	 * imbalance over them (ops/balance.h; 0 or less: not judged, no sample). */
	const double *worker_cpu_seconds;
	double accept_imbalance;
};

/* Names of the TPM failure kinds counted in ktlsgate_tpm_errors_total{kind}. */
extern const char *const kg_tpm_op_names[KG_TPM_OP_MAX];

/*
 * The process's file descriptors for process_open_fds / process_max_fds: *open counts
 * the entries of fd_dir ("/proc/self/fd"; st_size of the procfs directory on Linux >= 6.2,
 * O(1), else one readdir pass, O(open fds)) and *max is RLIMIT_NOFILE's soft limit
 * (-1 when unlimited). Runs on the scrape only. 0, or -1 (*open = -1) on error.
 */
int kg_metrics_fd_usage(const char *fd_dir, int64_t *open, int64_t *max);

/* Render the sum of per-worker metrics as Prometheus text (version 0.0.4).
 * Returns a malloc'd NUL-terminated buffer (caller frees) or NULL. */
char *kg_metrics_render(struct kg_metrics *const *per_worker, size_t n,
			const struct kg_metrics_info *info, size_t *len_out);

struct kg_metrics_http;
typedef char *(*kg_metrics_render_fn)(void *arg, size_t *len_out);
/* Serve GET /metrics on cfg->metrics_listen, with at most cfg->metrics_max_connections
 * connections (cfg->metrics_max_per_ip from one address), each closed after
 * cfg->metrics_timeout seconds without progress: idle or half-sent requests cannot
 * hold the endpoint. Returns NULL with a message in err on failure. */
struct kg_metrics_http *kg_metrics_http_start(const struct kg_config *cfg, kg_metrics_render_fn fn,
					      void *arg, char *err, size_t errlen);
/* The same on an already listening socket (listen_fd, taken over; -1: bind as above). */
struct kg_metrics_http *kg_metrics_http_start_fd(const struct kg_config *cfg, int listen_fd,
						 kg_metrics_render_fn fn, void *arg, char *err,
						 size_t errlen);
/* The listening socket (borrowed; -1: none, or NULL h): what a handover passes. */
int kg_metrics_http_listen_fd(const struct kg_metrics_http *h);
/* Stop accepting and close this process's reference to the listener, without shutting
 * the socket down (another process serves on it now); requests in flight finish. */
void kg_metrics_http_quiesce(struct kg_metrics_http *h);
void kg_metrics_http_stop(struct kg_metrics_http *h);

#endif
