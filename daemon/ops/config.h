/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Part ops (daemon/ops/): what the operator sees and every part uses. config.c (the
 * INI file, this header), metrics.c (Prometheus over libmicrohttpd), audit.c (one JSON
 * line per decision) with ratelimit.c (its flood guard, pure), control.h (the admin
 * socket's protocol: the server is core/control_server.c, the client
 * cli/control_client.c), log.c, notify.c (systemd's notify protocol and the journal:
 * the one file that calls libsystemd), err.c (the error codes every part returns).
 * Way in: each header alone; there is no umbrella header.
 * The ground floor: ops includes no other part but plain types, namely each part's
 * config section (edge/edge_conf.h, tpm/tpm_conf.h) and the reason table
 * (policy/reason.h) that audit and metrics count by.
 */
/*
 * config.h - the daemon's configuration: an INI file (inih) parsed once into an
 * immutable struct kg_config, then validated in a separate pass. Every error names
 * the file and line ("ktlsgate.conf:42: backend "b1": port 70000 out of range").
 * Unknown sections and keys are errors. A reload parses a new struct aside; the old
 * one is never modified (daemon.h pins snapshots). Thread-safe: no shared state.
 */
#ifndef KTLSGATE_CONFIG_H
#define KTLSGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>

#include "ktlsgate/compiler.h"
#include "auth/auth_conf.h"
#include "edge/edge_conf.h"
#include "tpm/tpm_conf.h"

#define KG_MAX_LISTEN 16       /* addresses, over all listeners */
#define KG_MAX_LISTENERS 8     /* the [daemon] one ("default") and [listener NAME]s */
#define KG_MAX_PROXY_SOURCES 16
#define KG_MAX_BACKENDS 64
#define KG_MAX_CRLS 64
#define KG_NAME_MAX 64        /* backend and CA names, incl. NUL */
#define KG_ERRBUF 512

struct kg_sockaddr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[80];            /* as written: "0.0.0.0:8883", "[::]:8883" */
};

struct kg_backend_conf {
	char name[KG_NAME_MAX];
	struct kg_sockaddr addr;  /* numeric host:port, resolved at load time */
	bool proxy_v2;            /* proxy_protocol = v2: a PROXY v2 header (the device's
				   * addresses, CN, certificate SHA-256) before its bytes */
	unsigned metrics_slot;    /* its per-backend metrics (metrics.h), set by the daemon
				   * when it builds a snapshot; 0 elsewhere */
};

/* What a listener speaks (docs/config.md, "Listeners"). MTLS: TLS with a client
 * certificate required (X.509 only). TLS: one-way TLS; a certificate is verified when
 * the device sends one, else it proves who it is in the CONNECT (user name, password).
 * PLAIN: no TLS at all, for closed networks; CONNECT credentials only. PROXY: plain
 * TCP from a trusted TLS front (proxy_sources) that opens with a PROXY v2 header: the
 * device's address, and the client certificate the front verified (CN, maybe its
 * SHA-256); devices without one give CONNECT credentials. */
enum kg_listener_kind {
	KG_LISTENER_MTLS, KG_LISTENER_TLS, KG_LISTENER_PLAIN, KG_LISTENER_PROXY,
	KG_LISTENER_KIND_MAX
};

/* An address block: family AF_INET or AF_INET6, the network in network order. */
struct kg_cidr {
	int family;
	uint8_t addr[16];
	unsigned bits;
};

extern const char *const kg_listener_kind_names[KG_LISTENER_KIND_MAX];

struct kg_listener_conf {
	char name[KG_NAME_MAX];           /* "default" for [daemon] listen */
	enum kg_listener_kind kind;
	bool x509_only;                   /* refuse every device without a certificate */
	bool allow_plain;                 /* the operator's yes to a plain listener */
	/* proxy: who may send a PROXY header, whether it must carry a CRC32C, and the
	 * registered CA the front verifies device certificates against ("": not said) */
	struct kg_cidr proxy_sources[KG_MAX_PROXY_SOURCES];
	size_t n_proxy_sources;
	bool proxy_require_crc;
	char proxy_ca[KG_NAME_MAX];
};

/* Is sa (salen bytes) inside one of the n blocks? An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) counts as its IPv4 address. */
bool kg_cidr_match(const struct kg_cidr *blocks, size_t n, const struct sockaddr *sa,
		   socklen_t salen);

struct kg_crl_conf {
	char ca_name[KG_NAME_MAX]; /* registry CA name the CRL belongs to */
	char path[PATH_MAX];
};

enum kg_client_id_check { KG_CLIENT_ID_EXACT, KG_CLIENT_ID_OFF };
/* New connections while a shared registry is down (docs/registry.md). */
enum kg_registry_down { KG_REGDOWN_FAIL_CLOSED, KG_REGDOWN_FAIL_OPEN };

/* The CONNECT user name of a certificate-authenticated device (docs/security.md).
 * STRICT: absent, empty or the device id, else CONNACK "not authorised"; REWRITE: the
 * broker gets the device id as user name and no password; PASS: forwarded as sent
 * (unsafe in front of a broker whose ACLs use %u). */
enum kg_username_check { KG_USERNAME_STRICT, KG_USERNAME_REWRITE, KG_USERNAME_PASS };

/* Data path after the handshake (relay.h has the ladder). AUTO: the best the session
 * allows (kTLS both ways + splice, else the record relay); KTLS_TX: kernel TLS for
 * what we send only, the device's records read through OpenSSL (fleets that send
 * KeyUpdate, which the kernel cannot follow); USERSPACE: no kernel TLS, the record
 * relay; OPENSSL: relay through SSL_read/SSL_write (kept selectable for diagnosis).
 * Each forces its rung and falls further down the ladder only where it cannot run. */
enum kg_relay_choice { KG_RELAY_AUTO, KG_RELAY_KTLS_TX, KG_RELAY_USERSPACE, KG_RELAY_OPENSSL };
/* [tls] resumption_psk_ke: may a resumption skip its ECDHE (RFC 8446 psk_ke)?
 * off: never (every resumption runs its own ECDHE); allow: when the device offers only
 * psk_ke; prefer: whenever the device offers it (needs OpenSSL >= 3.2). */
enum kg_psk_ke { KG_PSK_KE_OFF, KG_PSK_KE_ALLOW, KG_PSK_KE_PREFER };

struct kg_config {
	char path[PATH_MAX];              /* file it came from */

	/* [daemon] */
	/* Every listening address, flattened over the listeners at validation, each with
	 * the index of its listener in listeners[]. Default, when the file names no
	 * address at all: 0.0.0.0:8883 and [::]:8883, mtls. */
	struct kg_sockaddr listen[KG_MAX_LISTEN];
	uint8_t listen_listener[KG_MAX_LISTEN];
	size_t n_listen;
	/* listeners[0] is [daemon] listen's ("default", mtls); [listener NAME] follow */
	struct kg_listener_conf listeners[KG_MAX_LISTENERS];
	size_t n_listeners;
	unsigned workers;                 /* 0: one per online CPU */
	char cert_file[PATH_MAX];         /* server certificate chain (PEM, leaf first) */
	char key_file[PATH_MAX];          /* server key: PEM or TSS2 PEM file, or "handle:0x81..." */
	char registry[PATH_MAX];          /* SQLite file path (absolute) or a postgresql:// URI */
	/* A PostgreSQL registry's hot-path view and its down rule (issue 16): entries
	 * cached, what new connections get while the database is down, and how recently
	 * (seconds) this appliance must have admitted a device for fail-open to admit it. */
	unsigned registry_cache;
	enum kg_registry_down registry_down;
	unsigned registry_down_seen;
	char control_socket[PATH_MAX];
	struct kg_sockaddr metrics_listen;
	bool metrics_enabled;             /* metrics_listen = off disables */
	char default_backend[KG_NAME_MAX];/* used when neither device nor CA names one */
	enum kg_client_id_check client_id_check;
	enum kg_username_check username_check;  /* strict | rewrite | pass */
	char log_level[16];               /* err|warn|info|debug */
	enum kg_relay_choice relay;       /* auto | ktls_tx | userspace | openssl */
	/* seconds a process that handed its listeners over (ktlsgated --takeover) keeps
	 * its sessions before it closes them and exits */
	unsigned drain_timeout;

	/* [tls] */
	char ciphers[512];                /* TLS 1.2 cipher list */
	char ciphersuites[256];           /* TLS 1.3 suites */
	char groups[128];
	unsigned security_level;          /* OpenSSL level: SSL_CTX and device chains;
					   * never below OpenSSL's own default */
	unsigned crl_grace;               /* seconds an expired CRL is still honoured */
	bool resumption;                  /* TLS 1.3 session tickets (tls/tickets.h) */
#define KG_TICKET_LIFETIME_MIN_S 20
#define KG_TICKET_LIFETIME_MAX_S 604800   /* RFC 8446 4.6.1's cap */
#define KG_TICKET_LIFETIME_DEFAULT_S 7200
#define KG_DRAIN_TIMEOUT_DEFAULT_S 300
#define KG_DRAIN_TIMEOUT_MAX_S 86400
	unsigned ticket_lifetime;         /* seconds: a ticket's life, a ticket key's span */
	bool ticket_reuse;                /* a resumption renews the ticket only past half
					   * its life (tickets.h kg_ticket_renew_due) */
#define KG_SESSION_CACHE_MAX 10000000u
	unsigned session_cache;           /* > 0: resume from at most this many sessions
					   * kept in memory, not from stateless tickets
					   * (tls/session_cache.h); 0: tickets */
	enum kg_psk_ke resumption_psk_ke; /* resumptions without ECDHE (tls.h
					   * kg_tls_set_psk_ke); off by default */
	bool fast_ec_decode;              /* OpenSSL < 3.2: device EC keys decoded by the
					   * built-in EC method (tls/ec_decode.h) */
	/* The sealed ticket-key file (tls/ticket_store.h), used only with a TPM key; "":
	 * ticket-keys.sealed beside the SQLite registry, or in /var/lib/ktlsgate for a
	 * PostgreSQL one (kg_config_ticket_key_file()). */
	char ticket_key_file[PATH_MAX];

	/* [limits] */
	unsigned max_connections;         /* per daemon */
	unsigned max_handshakes;          /* in flight, per daemon */
	unsigned handshake_timeout_ms;
	unsigned connect_timeout_ms;      /* MQTT CONNECT after the handshake */
	unsigned backend_timeout_ms;      /* TCP connect to the broker */
	unsigned max_connect_bytes;       /* CONNECT remaining-length cap */
	unsigned refuse_linger_ms;        /* time to flush a CONNACK refusal */
	/* per source (srclimit.h), per worker thread; 0 turns a limit off */
	unsigned source_max_handshakes;   /* connections before their handshake ends */
	unsigned source_rate;             /* new connections per second */
	unsigned source_burst;            /* token bucket size */
	unsigned source_prefix_v4;        /* a source is an IPv4 /N ... */
	unsigned source_prefix_v6;        /* ... or an IPv6 /N */
	unsigned source_table;            /* sources tracked per worker */
	/* audit flood guard (audit.h): unauthenticated refusals per (reason, source) */
	unsigned audit_lines;             /* per key per interval; 0: no limit */
	unsigned audit_lines_total;       /* per worker per interval; 0: no overall cap */
	unsigned audit_interval_ms;
	/* relayed sessions (relay.h) */
	unsigned idle_timeout;            /* s, when the CONNECT's keep-alive is 0; 0: none */
	unsigned tcp_keepalive_idle;      /* s before the first probe; 0: no TCP keepalive */
	unsigned tcp_keepalive_interval;  /* s between probes */
	unsigned tcp_keepalive_count;     /* unanswered probes before the kernel gives up */
	/* the metrics endpoint (metrics.c), fixed at start */
	unsigned metrics_max_connections;
	unsigned metrics_max_per_ip;
	unsigned metrics_timeout;         /* s of inactivity before a connection is closed */

	/* [backend NAME] sections */
	struct kg_backend_conf backends[KG_MAX_BACKENDS];
	size_t n_backends;

	/* [crl] section: CA_NAME = FILE */
	struct kg_crl_conf crls[KG_MAX_CRLS];
	size_t n_crls;

	/* Sections parsed by their modules (tpm_conf.c, edge_conf.c, auth_conf.c). */
	struct kg_tpm_conf tpm;
	struct kg_edge_conf edge;
	struct kg_auth_conf auth;
};

/* Fill *cfg with the defaults (no backends; listen defaults applied at validation
 * when no listen key was given). */
void kg_config_defaults(struct kg_config *cfg);

/*
 * Parse and validate a config file. Returns 0, or -1 with a one-line message
 * "FILE:LINE: what" (or "FILE: what") in err.
 */
int kg_config_load(const char *path, struct kg_config *cfg, char *err, size_t errlen) KG_MUST_USE;

/* Same from a string; `name` stands for the file name in messages (fuzzing, tests). */
int kg_config_parse_string(const char *text, const char *name, struct kg_config *cfg,
			   char *err, size_t errlen) KG_MUST_USE;

/* The listener address i (an index into cfg->listen) belongs to. */
static inline const struct kg_listener_conf *kg_config_listener_of(const struct kg_config *cfg,
								   size_t i)
{
	return &cfg->listeners[i < cfg->n_listen ? cfg->listen_listener[i] : 0];
}

/* Borrowed pointer to the backend called `name`, or NULL. Inline so the pure policy
 * (and its fuzz target) use it without linking the parser (inih, OpenSSL). */
static inline const struct kg_backend_conf *kg_config_get0_backend(const struct kg_config *cfg,
								   const char *name)
{
	for (size_t i = 0; i < cfg->n_backends; i++)
		if (strcmp(cfg->backends[i].name, name) == 0)
			return &cfg->backends[i];
	return NULL;
}

/*
 * Registry locations (`registry =`, `ktlsgate -r`): a file path (the SQLite store) or a
 * libpq connection URI, "postgresql://..." or "postgres://..." (the PostgreSQL store).
 * kg_registry_location_is_uri(): is loc such a URI (the store is not a file: no stat,
 * lock file or chmod)? kg_registry_location_has_scheme(): does loc start like a URI
 * ("word://"), whether or not one we know ("mysql://" is a mistake, not a file name).
 */
bool kg_registry_location_is_uri(const char *loc);
bool kg_registry_location_has_scheme(const char *loc);
/*
 * loc as it may be shown (messages, logs, `status`): a URI's ("scheme://...") password, in the user
 * info ("postgresql://u:SECRET@h/db") or a "password=" query parameter, becomes "***";
 * anything else is copied as is. Parses the user info as libpq does (up to the first
 * '@' or '/', user and password split at the first ':'). Always NUL-terminates out
 * (cap > 0); returns 0, or -1 when out was too short (truncated, never the password).
 */
int kg_registry_location_redact(const char *loc, char *out, size_t cap);
/* Copy the message s to out[cap] (truncated if need be), each occurrence of the location
 * loc replaced by its redacted form: a store's message may quote the URI it was given. */
void kg_registry_location_redact_in(const char *s, const char *loc, char *out, size_t cap);

/* Parse "host:port", "[v6]:port" (numeric hosts only). Returns 0 or -1. */
int kg_sockaddr_parse(const char *text, struct kg_sockaddr *out) KG_MUST_USE;

/* The sealed ticket-key file's path: [tls] ticket_key_file, else the default above.
 * 0, or -1 if it does not fit. */
int kg_config_ticket_key_file(const struct kg_config *cfg, char *out, size_t cap) KG_MUST_USE;

#endif
