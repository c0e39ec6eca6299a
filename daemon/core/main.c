/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * main.c - ktlsgated: startup order, signals, the main thread's loop. Nothing else.
 *
 * Order (each step fails the start with one clear line):
 *   1. parse and validate the config (`-t` stops here, after loading certs and CAs)
 *   2. refuse to run beside a live daemon: one answering on the control socket, or one
 *      holding the instance lock beside the registry (held from here to exit)
 *   2b. open the registry read-write in the writer thread (creates / migrates it;
 *      a corrupt or foreign file stops us before anything is written)
 *   3. build the first snapshot: SSL_CTX, server cert + key, trust from the registry
 *   4. bind the listeners (one per address per worker), the control socket, metrics
 *   4b. drop the capabilities the running daemon does not use (ops/caps.h)
 *   4a. for a shared PostgreSQL registry, the change watcher (its queue in the main
 *      epoll: a change any appliance or SQL makes revalidates sessions here too)
 *   5. start the workers; READY=1 to systemd (ops/notify.h, docs/systemd.md); the main
 *      thread then serves signals and the control socket, and under systemd refreshes
 *      STATUS= and pings the watchdog.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "ops/caps.h"
#include "ops/config.h"
#include "core/conn_tls.h"
#include "core/control_server.h"
#include "auth/auth_limit.h"
#include "auth/auth_pool.h"
#include "relay/sockmap.h"
#include "core/daemon.h"
#include "edge/edge.h"
#include "ops/err.h"
#include "core/fdstore.h"
#include "tls/ec_decode.h"
#include "core/handover.h"
#include "core/upgrade.h"
#include "core/instance.h"
#include "ops/log.h"
#include "ops/notify.h"
#include "tls/leaf.h"
#include "tls/session_cache.h"
#include "tls/tickets.h"
#include "tls/tls.h"
#include "tls/verify.h"
#include "tpm/tpm_key.h"
#include "tpm/tpm_signer.h"
#include "core/worker.h"
#include "registry/writer.h"

#define DEFAULT_CONFIG "/etc/ktlsgate/ktlsgate.conf"

/* Every option, long and short: `ktlsgated --help` is the first thing a new user types. */
static void usage(FILE *f)
{
	fprintf(f, "usage: ktlsgated [-t] [-d] [--takeover] [-c FILE]\n"
		   "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
		   "  -t, --test          check the configuration (and certificates, registry) and exit\n"
		   "  -T, --takeover      take the listening sockets over from the ktlsgated running\n"
		   "                      on the configured control socket (no connection refused;\n"
		   "                      it drains its sessions and exits); none running: a plain start\n"
		   "  -d, --debug         debug logging (overrides [daemon] log_level)\n"
		   "  -h, --help          this help, exit 0\n"
		   "  -V, --version       print the version, exit 0\n"
		   "Runs in the foreground and logs to stderr (to the journal, with fields, when\n"
		   "systemd connects stderr to it); under systemd it sends READY/STATUS/WATCHDOG.\n"
		   "SIGHUP (or `ktlsgate reload`) reloads the configuration, SIGTERM/SIGINT stop\n"
		   "it. See docs/config.md and docs/systemd.md.\n");
}

static enum kg_log_level parse_level(const char *s)
{
	if (strcmp(s, "err") == 0)
		return KG_LOG_ERR;
	if (strcmp(s, "warn") == 0)
		return KG_LOG_WARN;
	if (strcmp(s, "debug") == 0)
		return KG_LOG_DEBUG;
	return KG_LOG_INFO;
}

/* Each listener with its addresses, once at start (-t prints the same); a plain one
 * is a warning: passwords and tokens cross its network in clear text. */
static void describe_listeners(const struct kg_config *cfg, void (*say)(bool warn, const char *line))
{
	char line[512];

	for (size_t l = 0; l < cfg->n_listeners; l++) {
		const struct kg_listener_conf *lc = &cfg->listeners[l];
		int off = snprintf(line, sizeof(line), "listener %s: %s on", lc->name,
				   kg_listener_kind_names[lc->kind]);
		size_t n = 0;

		for (size_t i = 0; i < cfg->n_listen && off > 0 && (size_t)off < sizeof(line); i++) {
			if (cfg->listen_listener[i] != l)
				continue;
			off += snprintf(line + off, sizeof(line) - (size_t)off, "%s %s", n ? "," : "",
					cfg->listen[i].text);
			n++;
		}
		if (n == 0)
			continue;   /* the default listener, when only [listener]s listen */
		if (off > 0 && (size_t)off < sizeof(line) && lc->kind == KG_LISTENER_PROXY)
			off += snprintf(line + off, sizeof(line) - (size_t)off,
					" (PROXY v2 from %zu trusted source block(s)%s%s%s%s)",
					lc->n_proxy_sources, lc->proxy_require_crc ? ", CRC32C required" : "",
					lc->proxy_ca[0] ? ", certificates verified by the front against CA " : "",
					lc->proxy_ca, lc->x509_only ? ", x509_only" : "");
		if (off > 0 && (size_t)off < sizeof(line))
			snprintf(line + off, sizeof(line) - (size_t)off, "%s%s",
				 lc->kind == KG_LISTENER_TLS ? (lc->x509_only ? " (x509_only)"
						: " (certificate or CONNECT credentials)") : "",
				 lc->kind == KG_LISTENER_PLAIN ? ": WARNING: no TLS, passwords and tokens "
						"cross the network in clear text (allow_plain = yes)" : "");
		say(lc->kind == KG_LISTENER_PLAIN, line);
	}
}

static void log_listener_line(bool warn, const char *line)
{
	if (warn)
		kg_log_warnx("%s", line);
	else
		kg_log_info("%s", line);
}

static void print_listener_line(bool warn, const char *line)
{
	(void)warn;
	printf("ktlsgated: %s\n", line);
}

static void log_listeners(const struct kg_config *cfg)
{
	describe_listeners(cfg, log_listener_line);
}

static char *render_metrics(void *arg, size_t *len)
{
	struct kg_daemon *d = arg;
	struct kg_metrics *per[257];   /* the workers', then the writer's (enrolments) */
	double cpu[256];               /* each worker thread's CPU seconds */
	struct kg_metrics_info info = {
		.state_names = kg_conn_state_names,
		.n_states = KG_ST_MAX,
		.workers = d->n_workers,
		.reloads = atomic_load(&d->reloads),
		.reload_failures = atomic_load(&d->reload_failures),
		.registry_write_drops = kg_writer_drops(d->writer),
		.registry_busy = kg_writer_busy(d->writer),
		.registry_queue = kg_writer_queue(d->writer),
		.registry_last_commit = kg_writer_last_commit(d->writer),
		.start_time = d->started,
	};

	char *body, *all = NULL;
	size_t all_len = 0;
	struct kg_snapshot *s;
	FILE *f;

	if (d->tpm_signer != NULL) {
		struct kg_tpm_signer_stats ts;

		kg_tpm_signer_stats(d->tpm_signer, &ts);
		memcpy(info.tpm_errors, ts.errors, sizeof(info.tpm_errors));
		info.tpm = (struct kg_metrics_tpm){ .present = true, .up = ts.up, .queue = ts.queue,
						    .sign_count = ts.sign_count,
						    .sign_sum = ts.sign_sum };
		memcpy(info.tpm.sign_buckets, ts.sign_buckets, sizeof(info.tpm.sign_buckets));
	}
	if (d->tpm_start_failed)
		info.tpm_errors[KG_TPM_OP_CONNECT]++;
	{
		struct kg_auth_pool_stats ps;
		struct kg_auth_limit_stats ls;

		kg_auth_pool_stats(d->auth_pool, &ps);
		kg_auth_limit_stats(d->auth_limit, &ls);
		info.auth = (struct kg_metrics_auth){
			.kdf_queued = ps.queued, .kdf_running = ps.running,
			.kdf_rejected = ps.rejected, .kdf_completed = ps.completed,
			.kdf_cancelled = ps.cancelled, .kdf_ns = ps.kdf_ns,
			.limited = ls.limited, .limiter_evictions = ls.evictions,
			.limiter_entries = ls.entries,
		};
	}
	kg_daemon_watch_metrics(d, &info.regwatch);
	(void)kg_metrics_fd_usage("/proc/self/fd", &info.open_fds, &info.max_fds);
	/* The certificate the SSL_CTX in force serves (a reload's new one once published;
	 * under [tpm] key_fallback the fallback's), not the file as it is now on disk. */
	s = kg_snapshot_get(d);
	/* certified-leaf: the TPM key's certificate, the one an operator renews (the leaf
	 * renews itself; its own gauge is ktlsgate_tpm_leaf_not_after_timestamp_seconds) */
	info.server_cert_not_after = kg_cert_not_after(s->leaf != NULL ? sk_X509_value(s->leaf->chain, 0)
							   : SSL_CTX_get0_certificate(s->ssl_ctx));
	info.key_source = s->key_source;
	info.leaf.enabled = s->cfg.tpm.mode == KG_TPM_MODE_CERTIFIED_LEAF;
	info.leaf.not_after = atomic_load(&d->leaf_not_after);
	info.leaf.rotations = atomic_load(&d->leaf_rotations);
	info.leaf.failures = atomic_load(&d->leaf_failures);
	info.ticket_key_rotations = kg_ticket_keys_rotations(d->tickets);
	if (d->session_cache != NULL) {
		info.session_cache_sessions = kg_session_cache_count(d->session_cache);
		info.session_cache_evictions = kg_session_cache_evictions(d->session_cache);
	}
	info.backends = s->cfg.backends;   /* borrowed from s until the render is done */
	info.n_backends = s->cfg.n_backends;
	info.listeners = s->cfg.listeners;
	info.n_listeners = s->cfg.n_listeners;
	for (unsigned i = 0; i < d->n_workers; i++) {
		per[i] = &d->workers[i].metrics;
		cpu[i] = kg_worker_cpu_seconds(&d->workers[i]);
	}
	per[d->n_workers] = kg_writer_metrics(d->writer);
	info.worker_cpu_seconds = cpu;
	info.accept_imbalance = kg_workers_accept_imbalance(d, NULL);
	body = kg_metrics_render(per, d->n_workers + 1, &info, len);
	kg_snapshot_put(s);
	if (body == NULL)
		return NULL;
	/* The XDP gate's counters follow the daemon's (the HTTP side free()s the body). */
	f = open_memstream(&all, &all_len);
	if (f == NULL)
		return body;
	fwrite(body, 1, *len, f);
	/* Per-CA CRL freshness and CA expiry come from the trust now in force. */
	s = kg_snapshot_get(d);
	(void)kg_trust_crl_metrics_write(s->trust, f, time(NULL));
	(void)kg_trust_ca_metrics_write(s->trust, f);
	kg_snapshot_put(s);
	(void)kg_edge_metrics_write(d->edge, f);
	kg_handover_metrics_write(d, f);   /* the listener handover (core/handover.h) */
	if (fclose(f) != 0) {
		free(all);
		return body;
	}
	free(body);
	*len = all_len;
	return all;
}

/*
 * After the listeners and /metrics are bound (CAP_NET_BIND_SERVICE), the XDP gate is
 * loaded and attached and steering registered (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON), and
 * the TPM opened (a device file, no capability), the daemon keeps only what it still
 * uses: CAP_BPF and CAP_NET_ADMIN while the gate is loaded, because its link thread
 * attaches it to [edge] interfaces that appear later (bpf_link_create) and the workers
 * update its deny map (every bpf(2) command needs CAP_BPF on kernels before 6.5 with
 * unprivileged BPF off, Debian's default). Steering needs nothing after registration
 * (its load counters are mmapped). The sockmap relay (relay/sockmap.h) keeps CAP_BPF
 * only where its map updates need it (probed: kernels before 6.5). Nothing else is
 * used at run time: reloads rebind nothing. docs/packaging.md, "Capabilities".
 */
/* The sockmap relay for plain sessions: privileged to load, so at start, and only
 * where a listener can bring a plain session (never fatal: splice instead). */
static void open_sockmap(struct kg_daemon *d, const struct kg_config *cfg)
{
	char why[256];
	bool plain = false;

	for (size_t l = 0; l < cfg->n_listeners; l++)
		plain = plain || cfg->listeners[l].kind == KG_LISTENER_PLAIN ||
			cfg->listeners[l].kind == KG_LISTENER_PROXY;
	/* relay = userspace / openssl: plain sessions copy in user space (relay.h) */
	if (!plain || (cfg->relay != KG_RELAY_AUTO && cfg->relay != KG_RELAY_KTLS_TX))
		return;
	d->sockmap = kg_sockmap_open(why, sizeof(why));
	if (d->sockmap == NULL) {
		kg_log_warnx("sockmap relay unavailable (%s): plain sessions use splice", why);
		return;
	}
	d->sockmap_needs_cap = kg_sockmap_needs_cap(d->sockmap);
	kg_log_info("sockmap relay loaded: plain sessions are relayed in the kernel");
}

static int drop_capabilities(struct kg_daemon *d)
{
	char err[KG_ERRBUF];
	bool gate = kg_edge_active(d->edge);
	bool sm = d->sockmap != NULL && d->sockmap_needs_cap;
	uint64_t keep = (gate ? KG_CAP(KG_CAP_BPF) | KG_CAP(KG_CAP_NET_ADMIN) : 0) |
			(sm ? KG_CAP(KG_CAP_BPF) : 0);

	if (kg_caps_drop(keep,
			 gate ? "the XDP gate follows [edge] interfaces and feeds its deny map"
			 : sm ? "plain sessions go into the sockmap (bpf(2) needs it before 6.5)"
			      : NULL,
			 err, sizeof(err)) < 0) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		return -1;
	}
	return 0;
}

/* Devices x 2 fds each: make the soft fd limit the hard one. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* What -t and the start say about username_check = pass (docs/security.md). */
#define PASS_WARNING                                                                      \
	" (unsafe: devices choose the MQTT user name the broker sees; never in front of "  \
	"a broker whose ACLs use %u)"

/* [tls] fast_ec_decode applies to this configuration's key (tls/ec_decode.h): not beside
 * a TPM key in direct mode, where the tpm2 provider signs every handshake and the engine
 * would take the EC contexts it makes by name. */
static bool ec_decode_wanted(const struct kg_config *cfg)
{
	return cfg->fast_ec_decode &&
	       (!kg_tpm_keyref_is_tpm(cfg->key_file) || cfg->tpm.mode == KG_TPM_MODE_CERTIFIED_LEAF);
}

static const char *username_check_name(enum kg_username_check m)
{
	switch (m) {
	case KG_USERNAME_STRICT: return "strict";
	case KG_USERNAME_REWRITE: return "rewrite";
	case KG_USERNAME_PASS: return "pass";
	}
	return "?";
}

/* -t: one line per CA whose devices follow a username_check other than the config's
 * (set on the CA or inherited from one above it: the trust snapshot holds the
 * effective rule), with the same warning as the global pass. */
static int print_ca_username_check(const struct kg_ca *row, void *arg)
{
	const struct kg_ca *eff = kg_trust_get0_ca(arg, row->name);

	if (eff == NULL || !eff->has_username_check)
		return 0;
	printf("ktlsgated: CA %s: username_check = %s (%s)%s\n", row->name,
	       username_check_name(eff->username_check),
	       row->has_username_check ? "its own" : "from a CA above it",
	       eff->username_check == KG_USERNAME_PASS ? PASS_WARNING : "");
	return 0;
}

/*
 * `-t` on a registry URI: connect read-only as a worker would and report the schema.
 * 1 with *reg open on a current schema; 0 when the database has no schema yet or an
 * older one (the start creates or migrates it: KG_E_NOTFOUND / KG_E_INVALID from a
 * read-only open, as the SQLite store gives for a missing or older file; the note
 * quotes the store's words); -1 after an error line (unreachable, refused, foreign,
 * newer than this build). The store's message is not trusted to hide the password.
 */
static int check_registry_uri(const struct kg_config *cfg, const char *shown,
			      struct kg_registry **reg)
{
	char err[KG_ERRBUF] = "", msg[KG_ERRBUF + PATH_MAX];
	bool named;
	int rc;

	rc = kg_registry_open(cfg->registry, KG_REG_READONLY, reg, err, sizeof(err));
	kg_registry_location_redact_in(err, cfg->registry, msg, sizeof(msg));
	if (rc == 0) {
		printf("ktlsgated: registry %s: schema %d\n", shown, kg_registry_schema_version(*reg));
		return 1;
	}
	*reg = NULL;
	if (msg[0] == '\0')
		snprintf(msg, sizeof(msg), "%s", kg_err_str(rc));
	/* the store's words usually name the registry already: then not twice */
	named = strstr(msg, shown) != NULL;
	if (rc == KG_E_NOTFOUND || rc == KG_E_INVALID) {
		int v = -1;

		/* No schema yet, or an older one: the numbers of the migration the start makes,
		 * read without writing (as for a file), else the store's words. */
		if (kg_registry_version(cfg->registry, &v, err, sizeof(err)) != 0)
			v = -1;
		if (v == 0)
			printf("ktlsgated: note: registry %s is empty: it is initialised at start\n",
			       shown);
		else if (v > 0)
			printf("ktlsgated: note: registry %s has schema version %d; this build "
			       "migrates it to %d at start (CAs not checked)\n", shown, v,
			       kg_registry_pg_schema_latest());
		else
			printf("ktlsgated: note: %s%s%s%s: it is created or migrated at start (CAs not "
			       "checked)\n", named ? "" : "registry ", named ? "" : shown,
			       named ? "" : ": ", msg);
		return 0;
	}
	fprintf(stderr, "ktlsgated: %s%s%s%s\n", named ? "" : "registry ", named ? "" : shown,
		named ? "" : ": ", msg);
	return -1;
}

/* -t in certified-leaf mode: make one leaf as the start would (one TPM signature): the
 * TPM certificate can issue it, the TPM signs it. 0, or 1 after the error line. */
static int check_leaf(const struct kg_config *cfg, struct kg_tpm_signer *tpm, const char *path)
{
	struct kg_leaf *leaf = NULL;
	char err[KG_ERRBUF];

	if (kg_daemon_leaf_make(cfg, tpm, &leaf, err, sizeof(err)) != 0) {
		fprintf(stderr, "ktlsgated: %s: %s\n", path, err);
		return 1;
	}
	if (leaf == NULL)
		printf("ktlsgated: [tpm] mode = certified-leaf: TPM unavailable, the fallback key "
		       "serves directly\n");
	else
		printf("ktlsgated: [tpm] mode = certified-leaf: the TPM key issues P-256 leaves valid "
		       "%us, renewed every %us\n", cfg->tpm.leaf_lifetime, cfg->tpm.leaf_lifetime / 2);
	kg_leaf_free(leaf);
	return 0;
}

/*
 * `-t`: validate the file, then load what it names that exists (certificate + key,
 * registry + CAs + CRLs) exactly as a start would. A file that does not exist yet is
 * reported, not fatal: the example config must pass on a machine that has not been
 * provisioned. Nothing is created or written.
 */
static int check_only(const struct kg_config *cfg, const char *path)
{
	struct kg_registry *reg = NULL;
	struct kg_trust *trust = NULL;
	char err[KG_ERRBUF], shown[PATH_MAX], msg[KG_ERRBUF + PATH_MAX];
	size_t cas = 0, crls_refusing = 0;
	int schema = 0, rc = 1, exists;

	/* "handle:0x81..." names a key in the TPM, not a file: always checked */
	if (access(cfg->cert_file, F_OK) == 0 &&
	    (strncmp(cfg->key_file, "handle:", 7) == 0 || access(cfg->key_file, F_OK) == 0)) {
		struct kg_tpm_signer *tpm = NULL;
		enum kg_tpm_op failed = KG_TPM_OP_CONNECT;
		SSL_CTX *ctx = NULL;

		/* a TPM key: signed with as a start would, through a signer of its own */
		bool ok;

		if (kg_tpm_signer_from_config(cfg, &tpm, &failed, err, sizeof(err)) >= 0)
			ctx = kg_tls_ctx_new(cfg, tpm, kg_conn_tls_verify_cb, NULL, err, sizeof(err));
		ok = ctx != NULL && (tpm == NULL || kg_tpm_key_selftest(SSL_CTX_get0_privatekey(ctx),
									 err, sizeof(err)) == 0);
		SSL_CTX_free(ctx);
		if (!ok) {
			kg_tpm_signer_free(tpm);
			fprintf(stderr, "ktlsgated: %s: %s\n", path, err);
			return 1;
		}
		if (tpm != NULL)
			printf("ktlsgated: TPM key %s: test signature made and verified\n",
			       cfg->key_file);
		if (cfg->tpm.mode == KG_TPM_MODE_CERTIFIED_LEAF && check_leaf(cfg, tpm, path) != 0) {
			kg_tpm_signer_free(tpm);
			return 1;
		}
		kg_tpm_signer_free(tpm);
		if (cfg->tpm.mode == KG_TPM_MODE_DIRECT && kg_tpm_keyref_is_tpm(cfg->key_file))
			printf("ktlsgated: [tpm] mode = direct: every full handshake is signed by the TPM\n");
	} else {
		printf("ktlsgated: note: %s or %s does not exist yet: not checked\n", cfg->cert_file,
		       cfg->key_file);
	}
	/* The registry as it may be printed: a URI's password never is. */
	(void)kg_registry_location_redact(cfg->registry, shown, sizeof(shown));
	if (kg_registry_location_is_uri(cfg->registry)) {
		exists = check_registry_uri(cfg, shown, &reg);
		if (exists < 0)
			goto out;
	} else {
		exists = access(cfg->registry, F_OK) == 0;
	}
	if (reg == NULL && exists &&
	    kg_registry_sqlite_version(cfg->registry, &schema, err, sizeof(err)) < 0) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		goto out;
	}
	if (reg == NULL && exists && schema < kg_registry_sqlite_schema_latest()) {
		/* An upgrade's first -t (the unit's ExecStartPre) runs before the start that
		 * migrates: refusing here would keep the new build from ever starting. The CAs
		 * are read at start, under the new schema. */
		if (schema == 0)
			printf("ktlsgated: note: registry %s is empty: it is initialised at start\n",
			       shown);
		else
			printf("ktlsgated: note: registry %s has schema version %d; this build "
			       "migrates it to %d at start (CAs not checked)\n",
			       shown, schema, kg_registry_sqlite_schema_latest());
	} else if (exists) {
		trust = kg_trust_new();
		if (trust == NULL ||
		    (reg == NULL &&
		     kg_registry_open(cfg->registry, KG_REG_READONLY, &reg, err, sizeof(err)) < 0) ||
		    kg_trust_load(trust, reg, cfg, err, sizeof(err)) < 0) {
			kg_registry_location_redact_in(err, cfg->registry, msg, sizeof(msg));
			fprintf(stderr, "ktlsgated: %s\n", trust ? msg : "out of memory");
			goto out;
		}
		cas = kg_trust_count(trust, true);
		/* What a reload refuses, -t refuses too. */
		if (kg_daemon_check_backends(cfg, cfg->registry, err, sizeof(err)) < 0) {
			kg_registry_location_redact_in(err, cfg->registry, msg, sizeof(msg));
			fprintf(stderr, "ktlsgated: %s: %s\n", path, msg);
			goto out;
		}
		/* An expired CRL refuses devices but is no configuration error: failing here
		 * would keep the whole daemon from starting (ExecStartPre). Say it loudly. */
		crls_refusing = kg_trust_crl_report(trust, stdout, time(NULL));
	} else if (!kg_registry_location_is_uri(cfg->registry)) {
		printf("ktlsgated: note: registry %s does not exist yet: it is created at start\n",
		       shown);
	}
	printf("ktlsgated: configuration %s ok (%zu CA(s) trusted, %zu backend(s), security level %u)\n",
	       path, cas, cfg->n_backends, cfg->security_level);
	if (crls_refusing > 0)
		printf("ktlsgated: WARNING: %zu expired CRL(s): their CAs' devices are refused\n",
		       crls_refusing);
	describe_listeners(cfg, print_listener_line);
	if (cfg->resumption) {
		char tkf[PATH_MAX];

		printf("ktlsgated: resumption = on (TLS 1.3 session tickets, ticket_lifetime %us, "
		       "ticket_reuse %s)\n",
		       cfg->ticket_lifetime, cfg->ticket_reuse ? "on" : "off");
		if (cfg->resumption_psk_ke != KG_PSK_KE_OFF)
			printf("ktlsgated: resumption_psk_ke = %s (resumptions without ECDHE %s: "
			       "no forward secrecy for them against the ticket's secret)\n",
			       cfg->resumption_psk_ke == KG_PSK_KE_PREFER ? "prefer" : "allow",
			       cfg->resumption_psk_ke == KG_PSK_KE_PREFER
				       ? "whenever the device offers psk_ke"
				       : "for devices that offer only psk_ke");
		if (cfg->session_cache > 0)
			printf("ktlsgated: session_cache = %u (the sessions are kept in memory, a "
			       "ticket is a session's id: no ticket keys; lost at a restart)\n",
			       cfg->session_cache);
		/* where a TPM key keeps them across restarts (docs/security.md) */
		if (kg_config_ticket_key_file(cfg, tkf, sizeof(tkf)) == 0)
			printf("ktlsgated: ticket_key_file = %s (%s)\n", tkf,
			       kg_tpm_keyref_is_tpm(cfg->key_file)
				       ? "sealed to the TPM"
				       : "unused: the server key is a file, the keys stay in memory");
	} else
		printf("ktlsgated: resumption = off\n");
	printf("ktlsgated: fast_ec_decode = %s\n",
	       !cfg->fast_ec_decode ? "off (OpenSSL's decoders)"
	       : !ec_decode_wanted(cfg) ? "on, not used beside a TPM key in direct mode"
	       : kg_tls_ec_decode_needed(OpenSSL_version_num())
		       ? "on (this OpenSSL is older than 3.2: device EC keys by the built-in EC method)"
		       : "on, not needed (OpenSSL 3.2 or later caches its decoders)");
	printf("ktlsgated: drain_timeout = %us (after a --takeover, the old process's sessions)\n",
	       cfg->drain_timeout);
	printf("ktlsgated: username_check = %s%s\n", username_check_name(cfg->username_check),
	       cfg->username_check == KG_USERNAME_PASS ? PASS_WARNING : "");
	if (reg != NULL && kg_registry_ca_list(reg, print_ca_username_check, trust) != 0) {
		fprintf(stderr, "ktlsgated: registry %s: cannot list CAs\n", shown);
		goto out;
	}
	if (kg_registry_location_is_uri(cfg->registry)) {
		if (cfg->registry_down == KG_REGDOWN_FAIL_OPEN)
			printf("ktlsgated: shared registry: cache of %u entries; database down: fail-open "
			       "(devices admitted here in the last %us are admitted from the cache, "
			       "others refused)\n", cfg->registry_cache, cfg->registry_down_seen);
		else
			printf("ktlsgated: shared registry: cache of %u entries; database down: "
			       "fail-closed (every new connection refused)\n", cfg->registry_cache);
	}
	if (cfg->source_max_handshakes == 0 && cfg->source_rate == 0)
		printf("ktlsgated: per-source limits off\n");
	else
		printf("ktlsgated: per-source limits (per worker, IPv4 /%u, IPv6 /%u): %u handshakes, "
		       "%u new connections/s (burst %u)\n", cfg->source_prefix_v4,
		       cfg->source_prefix_v6, cfg->source_max_handshakes, cfg->source_rate,
		       cfg->source_burst);
	printf("ktlsgated: idle sessions: 1.5 x MQTT keep-alive, else %us (0: never); TCP keepalive "
	       "%us/%us x%u (0: off)\n", cfg->idle_timeout, cfg->tcp_keepalive_idle,
	       cfg->tcp_keepalive_interval, cfg->tcp_keepalive_count);
	printf("ktlsgated: audit of unauthenticated refusals: %u line(s) per reason and source, %u per "
	       "worker, per %ums (0: no limit); metrics: %u connection(s), %u per address, %us timeout\n",
	       cfg->audit_lines, cfg->audit_lines_total, cfg->audit_interval_ms,
	       cfg->metrics_max_connections, cfg->metrics_max_per_ip, cfg->metrics_timeout);
	if (kg_tpm_keyref_is_tpm(cfg->key_file))
		printf("ktlsgated: TPM signer: queue of %u signature(s), %ums deadline each\n",
		       cfg->tpm.sign_queue, cfg->tpm.sign_timeout_ms);
	rc = 0;
out:
	if (reg)
		kg_registry_close(reg);
	kg_trust_free(trust);
	return rc;
}

/* STATUS= for systemd from the counters render_metrics sums: the daemon's atomics and
 * each worker's per-mode gauges, read relaxed (no lock; a slightly stale sum is fine). */
static const char *status_text(struct kg_daemon *d, char *buf, size_t cap)
{
	struct kg_notify_counts c = {
		.handshakes = atomic_load_explicit(&d->n_handshakes, memory_order_relaxed),
		.connections = atomic_load_explicit(&d->n_conns, memory_order_relaxed),
	};

	_Static_assert(KG_MODE_MAX == sizeof(c.by_mode) / sizeof(c.by_mode[0]),
		       "notify.h's by_mode follows enum kg_relay_mode");
	for (unsigned i = 0; i < d->n_workers; i++)
		for (unsigned m = 0; m < KG_MODE_MAX; m++)
			c.by_mode[m] += atomic_load_explicit(&d->workers[i].metrics.sessions_by_mode[m],
							     memory_order_relaxed);
	for (unsigned m = 0; m < KG_MODE_MAX; m++)
		c.sessions += c.by_mode[m];
	return kg_notify_format_status(&c, buf, cap);
}

/* The watchdog's health: every worker ran its loop within the stall limit (half the
 * watchdog interval). One relaxed load per worker: a stuck worker stops the pings and
 * systemd restarts the daemon, rather than a share of the devices hanging unseen. */
static bool workers_alive(const struct kg_daemon *d, uint64_t now_ms)
{
	uint64_t limit = kg_notify_stall_ms(&d->notify);

	for (unsigned i = 0; i < d->n_workers; i++) {
		uint64_t seen = atomic_load_explicit(&d->workers[i].loop_ms, memory_order_relaxed);

		if (now_ms > seen && now_ms - seen > limit) {
			kg_log_warnx("worker %u: no loop turn for %llu ms: watchdog ping withheld",
				     i, (unsigned long long)(now_ms - seen));
			return false;
		}
	}
	return true;
}

static void notify_tick(struct kg_daemon *d)
{
	char st[KG_NOTIFY_STATUS_MAX];
	uint64_t now = kg_now_ms();

	if (!d->notify.active)
		return;
	/* Both looked at only when due: the main loop also wakes for control clients. */
	kg_notify_tick(&d->notify, now,
		       kg_notify_status_due(&d->notify, now) ? status_text(d, st, sizeof(st)) : NULL,
		       !kg_notify_ping_due(&d->notify, now) || workers_alive(d, now));
}

/* The earlier of two epoll timeouts (-1: none). */
static int min_timeout(int a, int b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return a < b ? a : b;
}

/* The sockmap verdict rang for a worker (sockmap.h): wake it to read its notices. */
static void wake_worker(unsigned owner, void *arg)
{
	struct kg_daemon *d = arg;

	if (owner < d->n_workers)
		kg_worker_wake(&d->workers[owner]);
}

/* kg_edge_start_with()'s way to the XDP links, program and maps a handover passed. */
static int take_xdp_link(void *arg, const char *ifname)
{
	return kg_handover_take_xdp_link(arg, ifname);
}

static int take_xdp_obj(void *arg, enum kg_edge_obj obj, char build_id[KG_EDGE_BUILD_ID_LEN])
{
	return kg_handover_take_xdp_obj(arg, (unsigned)obj, build_id, KG_EDGE_BUILD_ID_LEN);
}

/* Tests only (tests/edge/test-handover.sh): hold a takeover between receiving the
 * sockets and starting its workers, so a test can kill it there and see the old
 * process serve on. */
static void handover_test_pause(void)
{
	const char *ms = getenv("KTLSGATED_TEST_HANDOVER_PAUSE_MS");

	if (ms != NULL && *ms != '\0') {
		struct timespec ts = { .tv_sec = atol(ms) / 1000, .tv_nsec = (atol(ms) % 1000) * 1000000L };

		kg_log_warnx("KTLSGATED_TEST_HANDOVER_PAUSE_MS: pausing %s ms (tests only)", ms);
		nanosleep(&ts, NULL);
	}
}

static int serve(struct kg_daemon *d)
{
	struct epoll_event ev;
	char err[KG_ERRBUF];

	while (!atomic_load(&d->stopping)) {
		/* Control clients past their deadline are closed; the wait ends at the next,
		 * or at the next STATUS=/WATCHDOG=1 (never, when not under systemd). */
		int n = epoll_wait(d->epfd, &ev, 1,
				   min_timeout(min_timeout(kg_control_expire(d->control),
							   kg_notify_timeout(&d->notify, kg_now_ms())),
					       kg_handover_tick(d)));

		notify_tick(d);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			kg_log_warn("epoll_wait");
			return -1;
		}
		if (n == 0)
			continue;
		if (ev.data.fd == d->signal_fd) {
			struct signalfd_siginfo si;

			if (read(d->signal_fd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGCHLD) {
				kg_upgrade_reap(d);
			} else if (si.ssi_signo == SIGHUP) {
				bool ok;

				kg_log_info("SIGHUP: reloading %s", d->config_path);
				kg_notify_reloading(&d->notify);
				ok = kg_daemon_reload(d, err, sizeof(err)) == 0;   /* logs why not */
				kg_notify_reloaded(&d->notify, ok, err);
			} else {
				kg_log_info("signal %u: shutting down", si.ssi_signo);
				kg_notify_stopping(&d->notify);
				atomic_store(&d->stopping, true);
			}
		} else if (kg_control_owns(d->control, ev.data.fd)) {
			kg_control_event(d, d->control, ev.data.fd, ev.events);
		} else if (kg_daemon_leaf_owns(d, ev.data.fd)) {
			kg_daemon_leaf_event(d);
		} else if (kg_daemon_tickets_owns(d, ev.data.fd)) {
			kg_daemon_tickets_event(d);
		} else if (kg_daemon_watch_owns(d, ev.data.fd)) {
			kg_daemon_watch_event(d);
		} else if (kg_handover_owns(d, ev.data.fd)) {
			kg_handover_event(d);
		} else if (d->sockmap != NULL && ev.data.fd == kg_sockmap_bell_fd(d->sockmap)) {
			kg_sockmap_bell_consume(d->sockmap, wake_worker, d);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "debug", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "takeover", no_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	static struct kg_daemon daemon_ctx;   /* the one context; static only for its size */
	struct kg_daemon *d = &daemon_ctx;
	struct kg_config *cfg = NULL;
	const char *path = DEFAULT_CONFIG;
	bool test_only = false, debug = false, takeover = false, handed = false;
	char err[KG_ERRBUF], msg[KG_ERRBUF + PATH_MAX];
	sigset_t sigs;
	struct timespec now;
	int opt, status = 1;
	unsigned started_workers = 0;

	kg_log_set_ident("ktlsgated");
	/* Before any key exists: private scalars (the certified leaf's, tls/leaf.h) and the
	 * session ticket keys (tls/tickets.h) go to
	 * OpenSSL's secure heap, locked in RAM, MADV_DONTDUMP, cleared on free. 1 MiB: it
	 * also takes every handshake's ephemeral keys, and an exhausted heap fails the
	 * allocation (no fallback). 0: no secure heap, said once the log is set up. */
	int secure_heap = CRYPTO_secure_malloc_init(1 << 20, 16);
	/* Both read the environment once, before any thread: the journal or stderr for
	 * logs and audit lines, and whether systemd listens on NOTIFY_SOCKET. */
	kg_log_choose_sink();
	kg_notify_init(&d->notify);
	d->lock_fd = -1;
	/* Block the signals we handle before any thread exists (the registry writer,
	 * libmicrohttpd, workers), so they all inherit the mask and only the signalfd
	 * sees them; a SIGHUP delivered to another thread would kill the process. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGCHLD);   /* `ktlsgate upgrade`'s successor ending (upgrade.h) */
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	while ((opt = getopt_long(argc, argv, "c:tdhVT", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 't': test_only = true; break;
		case 'd': debug = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("ktlsgated %s\n", KG_VERSION); return 0;
		case 'T': takeover = true; break;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	cfg = malloc(sizeof(*cfg));
	if (cfg == NULL)
		return 1;
	/* 1. configuration */
	if (kg_config_load(path, cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		goto out_free_cfg;
	}
	kg_log_set_level(debug ? KG_LOG_DEBUG : parse_level(cfg->log_level));
	if (secure_heap != 1 && !test_only)
		kg_log_warnx("OpenSSL secure heap %s: private keys in memory may be swapped%s",
			     secure_heap == 0 ? "unavailable" : "not locked (RLIMIT_MEMLOCK)",
			     secure_heap == 0 ? " or dumped" : "");
	if (kg_strlcpy(d->config_path, path, sizeof(d->config_path)) < 0)
		goto out_free_cfg;
	kg_upgrade_init(d);
	pthread_mutex_init(&d->snap_lock, NULL);
	d->lock_fd = d->signal_fd = d->epfd = d->leaf_timer_fd = d->ticket_timer_fd = -1;
	clock_gettime(CLOCK_REALTIME, &now);
	d->started = now.tv_sec;
	d->max_connections = cfg->max_connections;
	d->max_handshakes = cfg->max_handshakes;

	if (test_only) {
		status = check_only(cfg, path);
		goto out_free_cfg;
	}
	if (kg_handover_init(d) < 0)
		goto out_free_cfg;
	/* 2'. --takeover: the running daemon passes its sockets and its instance lock
	 * (core/handover.h); it serves on until this one accepts. Nobody running: a
	 * plain start. */
	if (takeover) {
		int rc = kg_handover_connect(d, cfg, err, sizeof(err));

		if (rc == 0)
			kg_log_info("--takeover: no ktlsgated answers on %s: starting normally",
				    cfg->control_socket);
		else if (rc < 0 || kg_handover_check(d, cfg, err, sizeof(err)) < 0) {
			fprintf(stderr, "ktlsgated: --takeover: %s\n", err);
			goto out_free_cfg;
		}
		handed = rc == 1;
		handover_test_pause();
	}
	/* 2''. a restart under systemd: the listeners it kept (core/fdstore.h). After a
	 * takeover they are the sockets that came with it: systemd's stay as they are. */
	if (!handed && kg_fdstore_load(d, cfg) < 0) {
		fprintf(stderr, "ktlsgated: out of memory\n");
		goto out_free_cfg;
	}
	/* 2. one daemon per control socket and per registry. The connect test gives the
	 * clear message (with the pid) when the other one is up; the lock also covers one
	 * still starting, or one with another control_socket on the same registry. */
	if (!handed && kg_control_claim(cfg->control_socket, err, sizeof(err)) < 0) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		goto out_free_cfg;
	}
	if (handed)
		d->lock_fd = kg_instance_lock_adopt(kg_handover_take_lock(d), cfg->registry);
	if (d->lock_fd == -1)
		d->lock_fd = kg_instance_lock(cfg->registry, err, sizeof(err));
	if (d->lock_fd == -1) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		goto out_free_cfg;
	}
	/* 2b. registry (writer thread owns the read-write handle). A store's message may
	 * quote a URI registry: printed without its password. */
	d->writer = kg_writer_start(cfg->registry, err, sizeof(err));
	if (d->writer == NULL) {
		char shown[PATH_MAX];

		/* "registry LOCATION: why", whether or not the store's words name it */
		kg_registry_location_redact_in(err, cfg->registry, msg, sizeof(msg));
		(void)kg_registry_location_redact(cfg->registry, shown, sizeof(shown));
		if (strstr(msg, shown) != NULL)
			fprintf(stderr, "ktlsgated: %s\n", msg);
		else
			fprintf(stderr, "ktlsgated: registry %s: %s\n", shown, msg);
		goto out_free_cfg;
	}
	/* 2c. the TPM signer thread, when the server key is in a TPM (the one TPM
	 * connection of the process, kept across reloads) */
	{
		enum kg_tpm_op failed = KG_TPM_OP_CONNECT;
		int rc = kg_tpm_signer_from_config(cfg, &d->tpm_signer, &failed, err, sizeof(err));

		if (rc < 0) {
			fprintf(stderr, "ktlsgated: %s\n", err);
			goto out_writer;
		}
		d->tpm_start_failed = rc > 0;
	}
	/* 3. first snapshot: TLS context, server certificate, trust; the ticket keys
	 * first (every snapshot's context shares them), one made now */
	d->tickets = kg_ticket_keys_new(cfg->ticket_lifetime);
	if (d->tickets == NULL || kg_ticket_keys_rotate(d->tickets, (int64_t)time(NULL)) < 0) {
		fprintf(stderr, "ktlsgated: session ticket keys: out of memory or randomness\n");
		goto out_writer;
	}
	/* [tls] session_cache: sized by each snapshot (0 keeps nothing) */
	d->session_cache = kg_session_cache_new(cfg->session_cache, kg_conn_tls_ticket_gen_cb,
						kg_conn_tls_session_check);
	if (d->session_cache == NULL) {
		fprintf(stderr, "ktlsgated: session cache: out of memory\n");
		goto out_writer;
	}
	d->snap = kg_snapshot_build(d, cfg, err, sizeof(err));
	if (d->snap == NULL) {
		kg_registry_location_redact_in(err, cfg->registry, msg, sizeof(msg));
		fprintf(stderr, "ktlsgated: %s\n", msg);
		goto out_writer;
	}
	/* the ticket keys from their sealed file (TPM key only); may take the saved trust
	 * generation back into this unpublished snapshot's trust */
	kg_daemon_tickets_start(d, cfg);
	if (kg_trust_count(d->snap->trust, true) == 0)
		kg_log_warnx("no verified CA in the registry: only thumbprint devices can connect");
	/* A start does not refuse (the registry may be shared and ahead of this file), but
	 * devices on a missing backend get "server unavailable": say so at once. */
	if (kg_daemon_check_backends(cfg, cfg->registry, err, sizeof(err)) < 0) {
		kg_registry_location_redact_in(err, cfg->registry, msg, sizeof(msg));
		kg_log_warnx("%s", msg);
	}
	if (cfg->username_check == KG_USERNAME_PASS)
		kg_log_warnx("username_check = pass%s", PASS_WARNING);
	/* XDP gate (privileged, never fatal: without BPF it says so and stays off) */
	if (handed) {
		const struct kg_edge_passed passed = { .take_link = take_xdp_link,
						       .take_obj = take_xdp_obj, .arg = d };

		d->edge = kg_edge_start_with(cfg, &passed);
	} else {
		d->edge = kg_edge_start(cfg);
	}
	/* A takeover must not take the gate down: the old process keeps it (and serves on)
	 * unless we can run it. Under the unit, the successor `ktlsgate upgrade` starts
	 * lacks CAP_PERFMON (dropped after start) for the verifier, and keeps the running
	 * program when it is this build's (edge.h); another build's it cannot. */
	if (handed && kg_handover_passed_xdp(d) && !kg_edge_active(d->edge)) {
		fprintf(stderr, "ktlsgated: --takeover: the running daemon runs the XDP gate and this "
			"process cannot load it (the line above says why): not taking over; the "
			"running daemon serves on\n");
		goto out_snap;
	}
	open_sockmap(d, cfg);

	/* 4. sockets */
	raise_fd_limit();
	d->signal_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->signal_fd < 0 || d->epfd < 0) {
		kg_log_warn("signalfd/epoll");
		goto out_snap;
	}
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = d->signal_fd };
		(void)epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->signal_fd, &ev);
	}
	if (d->sockmap != NULL) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = kg_sockmap_bell_fd(d->sockmap) };

		(void)epoll_ctl(d->epfd, EPOLL_CTL_ADD, ev.data.fd, &ev);
	}
	/* A takeover serves the control socket only once it accepts (below): until then
	 * the old process answers there, alone. */
	if (!handed)
		d->control = kg_control_listen(cfg->control_socket, d->epfd, err, sizeof(err));
	if (!handed && d->control == NULL) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		goto out_fds;
	}
	kg_daemon_tickets_timer_start(d);   /* rotation timer of the sealed ticket keys */
	/* certified-leaf: the rotation timer, armed for the leaf the first snapshot serves */
	if (kg_daemon_leaf_start(d, err, sizeof(err)) < 0) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		goto out_fds;
	}
	/* 4a. changes made through other appliances (or SQL) reach this one; they queue
	 * until serve() runs them, after the workers started. */
	if (kg_daemon_watch_start(d, cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		goto out_fds;
	}
	d->n_workers = cfg->workers ? cfg->workers : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (d->n_workers == 0 || d->n_workers > 256)
		d->n_workers = 1;
	/* Before the workers: each adds its completion eventfd to its epoll. */
	if (kg_auth_pool_new(cfg->auth.kdf_threads, cfg->auth.kdf_queue, d->n_workers,
			     &d->auth_pool) < 0 ||
	    (d->auth_limit = kg_auth_limit_new(cfg->auth.failure_burst, cfg->auth.failure_refill_ms,
					       cfg->auth.failure_track)) == NULL) {
		fprintf(stderr, "ktlsgated: cannot start the password-hash threads\n");
		goto out_auth;
	}
	d->workers = kg_workers_alloc(d->n_workers);   /* cache-line aligned (worker.h) */
	if (d->workers == NULL)
		goto out_auth;
	kg_workers_balance_init(d);
	for (unsigned i = 0; i < d->n_workers; i++) {
		if (kg_worker_init(&d->workers[i], d, i, err, sizeof(err)) < 0) {
			/* a worker's read handle fails with the store's words */
			kg_registry_location_redact_in(err, cfg->registry, msg, sizeof(msg));
			fprintf(stderr, "ktlsgated: %s\n", msg);
			kg_worker_fini(&d->workers[i]);
			goto out_workers;
		}
		started_workers = i + 1;
	}
	/* Worker steering: each worker's listener joins the reuseport group's sockarray. */
	for (unsigned i = 0; i < d->n_workers; i++)
		for (size_t j = 0; j < d->workers[i].n_listeners; j++)
			(void)kg_edge_steer_listener(d->edge, d->n_workers, (unsigned)j, i,
						     d->workers[i].listeners[j].fd);
	if (cfg->metrics_enabled) {
		int mfd = kg_handover_take_metrics(d);

		if (mfd < 0)
			mfd = kg_fdstore_take_metrics(d);
		d->metrics_http = kg_metrics_http_start_fd(cfg, mfd, render_metrics, d, err,
							   sizeof(err));
		if (d->metrics_http == NULL) {
			fprintf(stderr, "ktlsgated: %s\n", err);
			goto out_workers;
		}
	}
	/* 4b. everything privileged is done: keep only what the running daemon uses */
	if (drop_capabilities(d) < 0)
		goto out_metrics;
	/* 4c. device EC keys by the built-in EC method (tls/ec_decode.h): once the start's
	 * TPM work is done. */
	switch (kg_tls_ec_decode_init(ec_decode_wanted(cfg), err, sizeof(err))) {
	case 1:
		kg_log_info("%s: device EC keys decoded by the built-in EC method "
			    "([tls] fast_ec_decode)", OpenSSL_version(OPENSSL_VERSION));
		break;
	case -1:
		kg_log_warnx("[tls] fast_ec_decode: %s", err);
		break;
	default:
		break;
	}
	/* 5. run */
	for (unsigned i = 0; i < d->n_workers; i++) {
		if (kg_worker_start(&d->workers[i]) < 0) {
			kg_log_warnx("cannot start worker %u", i);
			atomic_store(&d->stopping, true);
			d->n_workers = i;
			break;
		}
	}
	/* A takeover: every worker accepts; now the old process may stop (it drains),
	 * and this one answers on the control socket. */
	if (handed && !atomic_load(&d->stopping)) {
		if (kg_handover_accepting(d, err, sizeof(err)) < 0) {
			fprintf(stderr, "ktlsgated: --takeover: %s\n", err);
			atomic_store(&d->stopping, true);
			status = 1;
			goto out_stop;
		}
		d->control = kg_control_adopt(cfg->control_socket, kg_handover_take_control(d),
					      d->epfd, err, sizeof(err));
		if (d->control == NULL)
			d->control = kg_control_listen(cfg->control_socket, d->epfd, err, sizeof(err));
		if (d->control == NULL)
			kg_log_warnx("control socket: %s: `ktlsgate` cannot reach this daemon", err);
	}
	kg_log_info("listening on %s%s (%u workers, %zu CA(s) trusted, metrics %s)",
		    cfg->listen[0].text, cfg->n_listen > 1 ? " and more" : "", d->n_workers,
		    kg_trust_count(d->snap->trust, true),
		    cfg->metrics_enabled ? cfg->metrics_listen.text : "off");
	log_listeners(cfg);
	/* Listeners bound (connections queue until a worker accepts), registry open,
	 * metrics serving, the XDP gate attached or reported off: systemd may go on. */
	if (!atomic_load(&d->stopping)) {
		char st[KG_NOTIFY_STATUS_MAX];

		if (handed)
			kg_notify_ready_main(&d->notify, status_text(d, st, sizeof(st)));
		else
			kg_notify_ready(&d->notify, status_text(d, st, sizeof(st)));
		/* Every worker accepts: systemd keeps their sockets for the next start
		 * (after a takeover too, once this is its main process). */
		kg_fdstore_publish(d);
		/* ... and the live sessions the previous process left there. */
		kg_fdstore_adopt_sessions(d);
	}
	status = serve(d) == 0 ? 0 : 1;
	/* A stop under systemd: the sessions that can travel wait in its store for the
	 * next start (a restart, the package's upgrade); at a plain stop systemd closes
	 * them. Not after a handover: this process is no longer systemd's. */
	if (status == 0)
		(void)kg_fdstore_save_sessions(d);
out_stop:

	{
		struct kg_cmd stop = { .type = KG_CMD_STOP };
		(void)!kg_workers_call(d, &stop);
		free(stop.out);
	}
	for (unsigned i = 0; i < d->n_workers; i++)
		kg_worker_join(&d->workers[i]);
out_metrics:
	kg_metrics_http_stop(d->metrics_http);
out_workers:
	for (unsigned i = 0; i < started_workers; i++)
		kg_worker_fini(&d->workers[i]);
	kg_workers_balance_fini(d);
	free(d->workers);
out_auth:
	kg_auth_pool_free(d->auth_pool);   /* after the workers: no submit, pop or cancel */
	kg_auth_limit_free(d->auth_limit);
out_fds:
	kg_daemon_watch_stop(d);   /* after the workers and /metrics: nothing uses it now */
	kg_daemon_leaf_stop(d);
	kg_daemon_tickets_stop(d);
	kg_control_close(d->control);   /* unlinks the socket only if it is still ours */
	if (d->signal_fd >= 0)
		close(d->signal_fd);
	if (d->epfd >= 0)
		close(d->epfd);
out_snap:
	kg_sockmap_free(d->sockmap);
	kg_edge_stop(d->edge);
	kg_snapshot_put(d->snap);
out_writer:
	kg_tpm_signer_free(d->tpm_signer);   /* after the last snapshot: its keys point here */
	kg_writer_stop(d->writer);
	kg_ticket_keys_free(d->tickets);   /* after every SSL_CTX that points at it */
	kg_session_cache_free(d->session_cache);
out_free_cfg:
	kg_handover_free(d);   /* the channel, and sockets nobody took */
	kg_fdstore_free(d);
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	free(cfg);
	return status;
}
