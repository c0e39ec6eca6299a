/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * config.c - ktlsgate.conf -> struct kg_config. inih does the INI syntax; this file
 * feeds it through its own line reader so that every message can name FILE:LINE
 * (Debian's inih is built without INI_HANDLER_LINENO), sees section headers itself
 * (inih never reports an empty section and truncates long ones), and rejects what
 * inih would silently accept: over-long lines it would split, continuation lines,
 * unknown sections and keys, duplicates. Keys of the fixed sections are a table;
 * values are parsed strictly (no truncation, no "12abc"). A validation pass then
 * checks what needs the whole file. Pure apart from reading the file: no globals.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ini.h>
#include <openssl/ssl.h>

#include "ops/conf_value.h"
#include "ops/config.h"

#define DEFAULT_LISTEN_V4 "0.0.0.0:8883"
#define DEFAULT_LISTEN_V6 "[::]:8883"
#define DEFAULT_METRICS "127.0.0.1:9883"
#define DEFAULT_CONTROL "/run/ktlsgate/control.sock"
#define DEFAULT_CIPHERS                                                                  \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                     \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                     \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define DEFAULT_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define DEFAULT_GROUPS "X25519:P-256:P-384"
#define DEFAULT_SECURITY_LEVEL 2   /* RSA/DH >= 2048, ECC >= 224, no MD5/SHA-1 signatures */
#define MAX_CRL_GRACE (30 * 86400)

/* A config file is a few kilobytes; the cap keeps a wrong path (a disk image, a
 * log) from being slurped into memory. */
#define MAX_FILE_BYTES (1024 * 1024)
/* inih copies section names into a 50-byte buffer; "backend " + 63 is longer, so
 * the reader keeps the full name and the handler only checks inih's prefix. */
#define INIH_MAX_SECTION 50
#define SECTION_MAX 128 /* longer than any valid "backend NAME" */

enum section {
	SEC_NONE,
	SEC_DAEMON,
	SEC_TLS,
	SEC_LIMITS,
	SEC_CRL,
	SEC_TPM,      /* module sections: keys go to their own parser (sections[]) */
	SEC_EDGE,
	SEC_AUTH,
	SEC_BACKEND,
	SEC_LISTENER,
	SEC_MAX
};

static const char *const section_names[SEC_MAX] = {
	[SEC_DAEMON] = "daemon", [SEC_TLS] = "tls", [SEC_LIMITS] = "limits", [SEC_CRL] = "crl",
	[SEC_TPM] = "tpm", [SEC_EDGE] = "edge", [SEC_AUTH] = "auth",
};

/* Sections whose keys belong to another module: it parses them into its own struct
 * inside kg_config; this file keeps file, line and duplicate detection. */
struct module_section {
	enum section sec;
	size_t off;  /* offsetof(struct kg_config, <section struct>) */
	void (*defaults)(void *sec);
	int (*set)(void *sec, const char *key, const char *value, const char *dir, char *why,
		   size_t whylen);
	int (*validate)(void *sec, const struct kg_config *cfg, char *why, size_t whylen);
};

static const struct module_section module_sections[] = {
	{ SEC_TPM, offsetof(struct kg_config, tpm), kg_tpm_conf_defaults, kg_tpm_conf_set,
	  kg_tpm_conf_validate },
	{ SEC_EDGE, offsetof(struct kg_config, edge), kg_edge_conf_defaults, kg_edge_conf_set,
	  kg_edge_conf_validate },
	{ SEC_AUTH, offsetof(struct kg_config, auth), kg_auth_conf_defaults, kg_auth_conf_set,
	  kg_auth_conf_validate },
};

#define MODULE_KEYS_MAX 64   /* keys remembered per file for duplicate detection */

enum kind {
	K_LISTEN,   /* list of kg_sockaddr */
	K_UINT,     /* unsigned in [min, max] */
	K_PATH,     /* file path, resolved against the config's directory */
	K_REGISTRY, /* K_PATH, or a postgresql:// / postgres:// URI kept as is */
	K_KEYREF,   /* K_PATH, or "handle:0x8100xxxx" (a persistent TPM key) kept as is */
	K_STRING,   /* non-empty text copied as is */
	K_METRICS,  /* kg_sockaddr or "off" */
	K_NAME,     /* a backend name */
	K_CLIENT_ID,
	K_REGDOWN,
	K_USERNAME,
	K_LOG_LEVEL,
	K_RELAY,
	K_PSK_KE,
	K_BOOL,     /* yes/on, no/off (conf_value.h) */
	K_DURATION, /* seconds, or a number with s, m, h or d; min..max in seconds */
};

struct key_def {
	enum section sec;
	const char *name;
	enum kind kind;
	size_t off;       /* offsetof(struct kg_config, field) */
	size_t size;      /* sizeof the field, for strings */
	unsigned min, max;
};

#define FIELD(f) offsetof(struct kg_config, f), sizeof(((struct kg_config *)0)->f)

enum key_id {
	KEY_LISTEN, KEY_WORKERS, KEY_CERT, KEY_KEY, KEY_REGISTRY, KEY_CONTROL, KEY_METRICS,
	KEY_DEFAULT_BACKEND, KEY_CLIENT_ID, KEY_REG_CACHE, KEY_REG_DOWN, KEY_REG_DOWN_SEEN, KEY_USERNAME, KEY_LOG_LEVEL, KEY_RELAY, KEY_DRAIN_TIMEOUT,
	KEY_CIPHERS, KEY_SUITES, KEY_GROUPS, KEY_SECURITY_LEVEL, KEY_CRL_GRACE,
	KEY_RESUMPTION, KEY_TICKET_LIFETIME, KEY_TICKET_KEY_FILE, KEY_TICKET_REUSE, KEY_SESSION_CACHE, KEY_PSK_KE,
	KEY_FAST_EC_DECODE,
	KEY_MAX_CONN, KEY_MAX_HS, KEY_HS_TIMEOUT, KEY_CONNECT_TIMEOUT, KEY_BACKEND_TIMEOUT,
	KEY_MAX_CONNECT_BYTES, KEY_REFUSE_LINGER,
	KEY_SRC_MAX_HS, KEY_SRC_RATE, KEY_SRC_BURST, KEY_SRC_PREFIX_V4, KEY_SRC_PREFIX_V6,
	KEY_SRC_TABLE,
	KEY_AUDIT_LINES, KEY_AUDIT_LINES_TOTAL, KEY_AUDIT_INTERVAL, KEY_IDLE_TIMEOUT,
	KEY_KA_IDLE, KEY_KA_INTERVAL, KEY_KA_COUNT, KEY_METRICS_MAX_CONN, KEY_METRICS_PER_IP,
	KEY_METRICS_TIMEOUT,
	KEY_MAX
};

static const struct key_def keys[KEY_MAX] = {
	[KEY_LISTEN] = { SEC_DAEMON, "listen", K_LISTEN, FIELD(listen), 0, 0 },
	[KEY_WORKERS] = { SEC_DAEMON, "workers", K_UINT, FIELD(workers), 0, 256 },
	[KEY_CERT] = { SEC_DAEMON, "cert", K_PATH, FIELD(cert_file), 0, 0 },
	[KEY_KEY] = { SEC_DAEMON, "key", K_KEYREF, FIELD(key_file), 0, 0 },
	[KEY_REGISTRY] = { SEC_DAEMON, "registry", K_REGISTRY, FIELD(registry), 0, 0 },
	[KEY_CONTROL] = { SEC_DAEMON, "control_socket", K_PATH, FIELD(control_socket), 0, 0 },
	[KEY_METRICS] = { SEC_DAEMON, "metrics_listen", K_METRICS, FIELD(metrics_listen), 0, 0 },
	[KEY_DEFAULT_BACKEND] = { SEC_DAEMON, "default_backend", K_NAME, FIELD(default_backend), 0, 0 },
	[KEY_CLIENT_ID] = { SEC_DAEMON, "client_id_check", K_CLIENT_ID, FIELD(client_id_check), 0, 0 },
	/* entries (0.4..0.7 KB each, docs/registry.md); 1 << 24 bounds a typo's memory */
	[KEY_REG_CACHE] = { SEC_DAEMON, "registry_cache", K_UINT, FIELD(registry_cache), 1, 16777216 },
	[KEY_REG_DOWN] = { SEC_DAEMON, "registry_down", K_REGDOWN, FIELD(registry_down), 0, 0 },
	/* seconds: 7 days at most */
	[KEY_REG_DOWN_SEEN] = { SEC_DAEMON, "registry_down_seen", K_UINT, FIELD(registry_down_seen), 1, 604800 },
	[KEY_USERNAME] = { SEC_DAEMON, "username_check", K_USERNAME, FIELD(username_check), 0, 0 },
	[KEY_LOG_LEVEL] = { SEC_DAEMON, "log_level", K_LOG_LEVEL, FIELD(log_level), 0, 0 },
	[KEY_RELAY] = { SEC_DAEMON, "relay", K_RELAY, FIELD(relay), 0, 0 },
	/* a handover's drain (core/handover.h): 0 cuts the old process's sessions at once */
	[KEY_DRAIN_TIMEOUT] = { SEC_DAEMON, "drain_timeout", K_DURATION, FIELD(drain_timeout), 0,
				KG_DRAIN_TIMEOUT_MAX_S },
	[KEY_CIPHERS] = { SEC_TLS, "ciphers", K_STRING, FIELD(ciphers), 0, 0 },
	[KEY_SUITES] = { SEC_TLS, "ciphersuites", K_STRING, FIELD(ciphersuites), 0, 0 },
	[KEY_GROUPS] = { SEC_TLS, "groups", K_STRING, FIELD(groups), 0, 0 },
	/* 0..5 is OpenSSL's scale; the floor (OpenSSL's default) is checked in validate(). */
	[KEY_SECURITY_LEVEL] = { SEC_TLS, "security_level", K_UINT, FIELD(security_level), 0, 5 },
	[KEY_CRL_GRACE] = { SEC_TLS, "crl_grace", K_UINT, FIELD(crl_grace), 0, MAX_CRL_GRACE },
	[KEY_RESUMPTION] = { SEC_TLS, "resumption", K_BOOL, FIELD(resumption), 0, 0 },
	/* 0 is no lifetime: resumption = off says that; 7 days is RFC 8446's cap */
	[KEY_TICKET_LIFETIME] = { SEC_TLS, "ticket_lifetime", K_DURATION, FIELD(ticket_lifetime),
				  KG_TICKET_LIFETIME_MIN_S, KG_TICKET_LIFETIME_MAX_S },
	[KEY_TICKET_KEY_FILE] = { SEC_TLS, "ticket_key_file", K_PATH, FIELD(ticket_key_file), 0, 0 },
	[KEY_TICKET_REUSE] = { SEC_TLS, "ticket_reuse", K_BOOL, FIELD(ticket_reuse), 0, 0 },
	/* sessions kept in memory instead of stateless tickets (tls/session_cache.h) */
	[KEY_FAST_EC_DECODE] = { SEC_TLS, "fast_ec_decode", K_BOOL, FIELD(fast_ec_decode), 0, 0 },
	[KEY_SESSION_CACHE] = { SEC_TLS, "session_cache", K_UINT, FIELD(session_cache), 0,
				KG_SESSION_CACHE_MAX },
	[KEY_PSK_KE] = { SEC_TLS, "resumption_psk_ke", K_PSK_KE, FIELD(resumption_psk_ke), 0, 0 },
	[KEY_MAX_CONN] = { SEC_LIMITS, "max_connections", K_UINT, FIELD(max_connections), 1, 1000000 },
	[KEY_MAX_HS] = { SEC_LIMITS, "max_handshakes", K_UINT, FIELD(max_handshakes), 1, 1000000 },
	[KEY_HS_TIMEOUT] = { SEC_LIMITS, "handshake_timeout_ms", K_UINT, FIELD(handshake_timeout_ms), 10, 600000 },
	[KEY_CONNECT_TIMEOUT] = { SEC_LIMITS, "connect_timeout_ms", K_UINT, FIELD(connect_timeout_ms), 10, 600000 },
	[KEY_BACKEND_TIMEOUT] = { SEC_LIMITS, "backend_timeout_ms", K_UINT, FIELD(backend_timeout_ms), 10, 600000 },
	/* 268435455: the largest MQTT remaining length (4-byte varint). */
	[KEY_MAX_CONNECT_BYTES] = { SEC_LIMITS, "max_connect_bytes", K_UINT, FIELD(max_connect_bytes), 64, 268435455 },
	[KEY_REFUSE_LINGER] = { SEC_LIMITS, "refuse_linger_ms", K_UINT, FIELD(refuse_linger_ms), 0, 60000 },
	[KEY_SRC_MAX_HS] = { SEC_LIMITS, "source_max_handshakes", K_UINT, FIELD(source_max_handshakes), 0, 1000000 },
	[KEY_SRC_RATE] = { SEC_LIMITS, "source_rate", K_UINT, FIELD(source_rate), 0, 1000000 },
	[KEY_SRC_BURST] = { SEC_LIMITS, "source_burst", K_UINT, FIELD(source_burst), 1, 1000000 },
	[KEY_SRC_PREFIX_V4] = { SEC_LIMITS, "source_prefix_v4", K_UINT, FIELD(source_prefix_v4), 8, 32 },
	[KEY_SRC_PREFIX_V6] = { SEC_LIMITS, "source_prefix_v6", K_UINT, FIELD(source_prefix_v6), 16, 128 },
	/* 1 << 24: srclimit.h's bound on its table */
	[KEY_SRC_TABLE] = { SEC_LIMITS, "source_table", K_UINT, FIELD(source_table), 64, 16777216 },
	[KEY_AUDIT_LINES] = { SEC_LIMITS, "audit_lines", K_UINT, FIELD(audit_lines), 0, 1000000 },
	[KEY_AUDIT_LINES_TOTAL] = { SEC_LIMITS, "audit_lines_total", K_UINT, FIELD(audit_lines_total), 0, 10000000 },
	[KEY_AUDIT_INTERVAL] = { SEC_LIMITS, "audit_interval_ms", K_UINT, FIELD(audit_interval_ms), 100, 3600000 },
	/* seconds: 7 days at most */
	[KEY_IDLE_TIMEOUT] = { SEC_LIMITS, "idle_timeout", K_UINT, FIELD(idle_timeout), 0, 604800 },
	[KEY_KA_IDLE] = { SEC_LIMITS, "tcp_keepalive_idle", K_UINT, FIELD(tcp_keepalive_idle), 0, 32767 },
	[KEY_KA_INTERVAL] = { SEC_LIMITS, "tcp_keepalive_interval", K_UINT, FIELD(tcp_keepalive_interval), 1, 32767 },
	[KEY_KA_COUNT] = { SEC_LIMITS, "tcp_keepalive_count", K_UINT, FIELD(tcp_keepalive_count), 1, 127 },
	[KEY_METRICS_MAX_CONN] = { SEC_LIMITS, "metrics_max_connections", K_UINT, FIELD(metrics_max_connections), 1, 65536 },
	[KEY_METRICS_PER_IP] = { SEC_LIMITS, "metrics_max_per_ip", K_UINT, FIELD(metrics_max_per_ip), 1, 65536 },
	[KEY_METRICS_TIMEOUT] = { SEC_LIMITS, "metrics_timeout", K_UINT, FIELD(metrics_timeout), 1, 3600 },
};

/* The keys of a [listener NAME] section. */
enum lkey {
	LKEY_TYPE, LKEY_LISTEN, LKEY_X509_ONLY, LKEY_ALLOW_PLAIN, LKEY_PROXY_SOURCES,
	LKEY_PROXY_REQUIRE_CRC, LKEY_PROXY_CA, LKEY_MAX
};
static const char *const lkey_names[LKEY_MAX] = {
	[LKEY_TYPE] = "type", [LKEY_LISTEN] = "listen", [LKEY_X509_ONLY] = "x509_only",
	[LKEY_ALLOW_PLAIN] = "allow_plain", [LKEY_PROXY_SOURCES] = "proxy_sources",
	[LKEY_PROXY_REQUIRE_CRC] = "proxy_require_crc", [LKEY_PROXY_CA] = "proxy_ca",
};

const char *const kg_listener_kind_names[KG_LISTENER_KIND_MAX] = {
	[KG_LISTENER_MTLS] = "mtls", [KG_LISTENER_TLS] = "tls", [KG_LISTENER_PLAIN] = "plain",
	[KG_LISTENER_PROXY] = "proxy",
};

struct parse_state {
	struct kg_config *cfg;
	const char *name;          /* file name for messages */
	const char *dir;           /* absolute directory for relative paths, or NULL */
	const char *pos;           /* reader cursor in the NUL-terminated text */
	unsigned line;             /* line the reader handed to inih last */
	const char *linebuf;       /* inih's line buffer, to tell continuations apart */
	size_t linecap;

	enum section sec;          /* current section as the reader saw it */
	char secname[SECTION_MAX];
	size_t backend;            /* index of the current [backend NAME] */
	unsigned sec_line[SEC_MAX];/* where each fixed section was opened */
	unsigned key_line[KEY_MAX];/* where each key was set, 0 = not set */
	unsigned backend_line[KG_MAX_BACKENDS];
	unsigned address_line[KG_MAX_BACKENDS];
	unsigned proxy_line[KG_MAX_BACKENDS];
	size_t listener;           /* index of the current [listener NAME] */
	unsigned listener_line[KG_MAX_LISTENERS];
	unsigned lkey_line[KG_MAX_LISTENERS][LKEY_MAX];
	struct {                   /* module-section keys seen so far */
		enum section sec;
		char name[32];
		unsigned line;
	} module_keys[MODULE_KEYS_MAX];
	size_t n_module_keys;

	bool failed;
	unsigned err_line;         /* 0: message names no line */
	char *err;
	size_t errlen;
};

static void set_err(struct parse_state *st, unsigned line, const char *fmt, ...) KG_PRINTF(3, 4);

/* Keep the first error only: the reader stops after it, and inih's own syntax
 * errors (known only at the end) win if they come from an earlier line. */
static void set_err(struct parse_state *st, unsigned line, const char *fmt, ...)
{
	char msg[KG_ERRBUF];
	const char *name = st->name, *dots = "";
	size_t nlen = strlen(name);
	va_list ap;

	if (st->failed)
		return;
	/* A very deep file name would push the line and the reason out of the
	 * caller's buffer; its tail is what identifies it. */
	if (nlen > 200) {
		name += nlen - 200;
		dots = "...";
	}
	st->failed = true;
	st->err_line = line;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (st->errlen == 0)
		return;
	if (line > 0)
		snprintf(st->err, st->errlen, "%s%s:%u: %s", dots, name, line, msg);
	else
		snprintf(st->err, st->errlen, "%s%s: %s", dots, name, msg);
}

/* Untrusted text inside a message: printable ASCII only, cut with "..." so one
 * log line stays one line. */
static const char *quote(char out[72], const char *v)
{
	size_t i;

	for (i = 0; i < 64 && v[i] != '\0'; i++)
		out[i] = isprint((unsigned char)v[i]) ? v[i] : '?';
	if (v[i] != '\0') {
		memcpy(out + i, "...", 4);
		return out;
	}
	out[i] = '\0';
	return out;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= KG_NAME_MAX)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

/* Strict unsigned parse: digits only (no sign, no space, no suffix), no overflow. */
static int parse_uint(const char *s, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > UINT_MAX)
		return -1;
	*out = v;
	return 0;
}

/* The parser behind kg_sockaddr_parse; *why says what was wrong. */
static int sockaddr_parse(const char *text, struct kg_sockaddr *out, const char **why)
{
	struct kg_sockaddr sa;
	char host[INET6_ADDRSTRLEN];
	const char *colon, *hstart;
	size_t hlen;
	unsigned long port;

	memset(&sa, 0, sizeof(sa));
	if (kg_strlcpy(sa.text, text, sizeof(sa.text)) != 0) {
		*why = "address too long";
		return -1;
	}
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':') {
			*why = "want [IPv6]:port";
			return -1;
		}
		hstart = text + 1;
		hlen = (size_t)(close - hstart);
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL) {
			*why = "missing :port";
			return -1;
		}
		hstart = text;
		hlen = (size_t)(colon - text);
	}
	if (hlen == 0 || hlen >= sizeof(host)) {
		*why = "not a numeric IP address";
		return -1;
	}
	memcpy(host, hstart, hlen);
	host[hlen] = '\0';
	if (parse_uint(colon + 1, &port) != 0 || port == 0 || port > 65535) {
		*why = "port must be a number in 1..65535";
		return -1;
	}
	if (text[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa.ss;

		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
			*why = "not a numeric IPv6 address";
			return -1;
		}
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		sa.len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&sa.ss;

		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
			*why = "not a numeric IPv4 address (IPv6 goes in brackets)";
			return -1;
		}
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		sa.len = sizeof(*s4);
	}
	*out = sa;
	return 0;
}

int kg_sockaddr_parse(const char *text, struct kg_sockaddr *out)
{
	const char *why;

	return sockaddr_parse(text, out, &why);
}

void kg_config_defaults(struct kg_config *cfg)
{
	const char *why;

	memset(cfg, 0, sizeof(*cfg));
	cfg->workers = 0;
	memcpy(cfg->control_socket, DEFAULT_CONTROL, sizeof(DEFAULT_CONTROL));
	/* A constant that parses; should it ever not, metrics stay off rather than
	 * listening on garbage. */
	cfg->metrics_enabled = sockaddr_parse(DEFAULT_METRICS, &cfg->metrics_listen, &why) == 0;
	memcpy(cfg->listeners[0].name, "default", sizeof("default"));
	cfg->listeners[0].kind = KG_LISTENER_MTLS;
	cfg->n_listeners = 1;
	cfg->client_id_check = KG_CLIENT_ID_EXACT;
	/* a fleet of 100 000 X.509 devices: a row and a thumbprint lookup each */
	cfg->registry_cache = 200000;
	cfg->registry_down = KG_REGDOWN_FAIL_CLOSED;
	cfg->registry_down_seen = 600;
	cfg->username_check = KG_USERNAME_STRICT;
	memcpy(cfg->log_level, "info", sizeof("info"));
	memcpy(cfg->ciphers, DEFAULT_CIPHERS, sizeof(DEFAULT_CIPHERS));
	memcpy(cfg->ciphersuites, DEFAULT_SUITES, sizeof(DEFAULT_SUITES));
	memcpy(cfg->groups, DEFAULT_GROUPS, sizeof(DEFAULT_GROUPS));
	cfg->security_level = DEFAULT_SECURITY_LEVEL;
	cfg->crl_grace = 0;
	cfg->resumption = true;
	cfg->ticket_reuse = true;
	cfg->fast_ec_decode = true;
	cfg->ticket_lifetime = KG_TICKET_LIFETIME_DEFAULT_S;
	cfg->drain_timeout = KG_DRAIN_TIMEOUT_DEFAULT_S;
	cfg->max_connections = 10000;
	cfg->max_handshakes = 1024;
	cfg->handshake_timeout_ms = 10000;
	cfg->connect_timeout_ms = 10000;
	cfg->backend_timeout_ms = 3000;
	cfg->max_connect_bytes = 65536;
	cfg->refuse_linger_ms = 1000;
	/* Generous enough for a fleet behind one NAT address, tight enough that one
	 * source cannot take the handshake slots (max_handshakes) from everyone else. */
	cfg->source_max_handshakes = 32;
	cfg->source_rate = 50;
	cfg->source_burst = 100;
	cfg->source_prefix_v4 = 32;
	cfg->source_prefix_v6 = 64;
	cfg->source_table = 4096;
	cfg->audit_lines = 10;
	cfg->audit_lines_total = 100;
	cfg->audit_interval_ms = 10000;
	cfg->idle_timeout = 600;
	cfg->tcp_keepalive_idle = 60;
	cfg->tcp_keepalive_interval = 10;
	cfg->tcp_keepalive_count = 6;
	cfg->metrics_max_connections = 256;
	cfg->metrics_max_per_ip = 8;
	cfg->metrics_timeout = 5;
	for (size_t i = 0; i < KG_NITEMS(module_sections); i++)
		module_sections[i].defaults((char *)cfg + module_sections[i].off);
}

/* Copy a path, prefixing the config's directory when it is relative. */
static int resolve_path(struct parse_state *st, const char *key, const char *value, char *dst,
			size_t cap)
{
	char q[72];
	int n;

	if (value[0] == '/' || st->dir == NULL)
		n = snprintf(dst, cap, "%s", value);
	else
		n = snprintf(dst, cap, "%s/%s", st->dir, value);
	if (n < 0 || (size_t)n >= cap) {
		set_err(st, st->line, "'%s': path '%s' too long (max %zu bytes once resolved)", key,
			quote(q, value), cap - 1);
		return -1;
	}
	return 0;
}

/* `registry =`: a libpq URI is kept as is (libpq parses it at open); any other
 * "scheme://" is a typo or a database we do not speak, which resolve_path would have
 * turned into a file "DIR/mysql:/..." created at start. The value is shown redacted:
 * the config error may end up in a journal. */
static int set_registry(struct parse_state *st, const char *key, const char *value, char *dst,
			size_t cap)
{
	char shown[PATH_MAX], q[72];

	if (!kg_registry_location_has_scheme(value))
		return resolve_path(st, key, value, dst, cap);
	(void)kg_registry_location_redact(value, shown, sizeof(shown));
	if (!kg_registry_location_is_uri(value)) {
		set_err(st, st->line,
			"'%s': '%s' is neither a file path nor a PostgreSQL URI "
			"(postgresql://... or postgres://...)", key, quote(q, shown));
		return -1;
	}
	if (kg_strlcpy(dst, value, cap) != 0) {
		set_err(st, st->line, "'%s': URI '%s' too long (max %zu bytes)", key, quote(q, shown),
			cap - 1);
		return -1;
	}
	return 0;
}

bool kg_registry_location_is_uri(const char *loc)
{
	return strncmp(loc, "postgresql://", 13) == 0 || strncmp(loc, "postgres://", 11) == 0;
}

bool kg_registry_location_has_scheme(const char *loc)
{
	size_t i = 0;

	/* RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
	if (!isalpha((unsigned char)loc[0]))
		return false;
	while (isalnum((unsigned char)loc[i]) || loc[i] == '+' || loc[i] == '-' || loc[i] == '.')
		i++;
	return strncmp(loc + i, "://", 3) == 0;
}

/* Append n bytes of s to out[*off..cap), keeping it terminated; -1 once it is full. */
static int redact_put(char *out, size_t cap, size_t *off, const char *s, size_t n)
{
	int rc = 0;

	if (*off + n >= cap) {
		n = cap - 1 - *off;
		rc = -1;
	}
	memcpy(out + *off, s, n);
	*off += n;
	out[*off] = '\0';
	return rc;
}

int kg_registry_location_redact(const char *loc, char *out, size_t cap)
{
	const char *p, *auth, *at, *colon, *q;
	size_t off = 0;
	int rc = 0;

	if (cap == 0)
		return -1;
	out[0] = '\0';
	/* Any scheme, not only ours: a refused "mysql://u:pw@h" is shown in its error. */
	if (!kg_registry_location_has_scheme(loc))
		return redact_put(out, cap, &off, loc, strlen(loc));
	auth = strstr(loc, "://") + 3;
	/* libpq (conninfo_uri_parse_options): user info ends at the first '@' before any '/' */
	at = auth + strcspn(auth, "@/");
	if (*at == '@') {
		colon = memchr(auth, ':', (size_t)(at - auth));
		if (colon != NULL) {
			rc |= redact_put(out, cap, &off, loc, (size_t)(colon + 1 - loc));
			rc |= redact_put(out, cap, &off, "***", 3);
			p = at;
		} else {
			p = loc;
		}
	} else {
		p = loc;
	}
	/* Query parameters: "password=VALUE" up to the next '&' (or the end). */
	q = strchr(at, '?');
	if (q == NULL) {
		rc |= redact_put(out, cap, &off, p, strlen(p));
		return rc ? -1 : 0;
	}
	rc |= redact_put(out, cap, &off, p, (size_t)(q + 1 - p));
	for (p = q + 1; *p != '\0';) {
		size_t len = strcspn(p, "&");

		if (len >= 9 && strncmp(p, "password=", 9) == 0) {
			rc |= redact_put(out, cap, &off, p, 9);
			rc |= redact_put(out, cap, &off, "***", 3);
		} else {
			rc |= redact_put(out, cap, &off, p, len);
		}
		p += len;
		if (*p == '&')
			rc |= redact_put(out, cap, &off, p++, 1);
	}
	return rc ? -1 : 0;
}

void kg_registry_location_redact_in(const char *s, const char *loc, char *out, size_t cap)
{
	char shown[PATH_MAX];
	size_t off = 0, n = strlen(loc);
	const char *hit;

	if (cap == 0)
		return;
	(void)kg_registry_location_redact(loc, shown, sizeof(shown));
	out[0] = '\0';
	while (n > 0 && off < cap && (hit = strstr(s, loc)) != NULL) {
		off += (size_t)snprintf(out + off, cap - off, "%.*s%s", (int)(hit - s), s, shown);
		s = hit + n;
	}
	if (off < cap)
		snprintf(out + off, cap - off, "%s", s);
}

/* `listen = ADDR[, ADDR...]` of listener `owner` (0: [daemon]'s), appended to the
 * flat cfg->listen[]; an address may be listened on once, by one listener. */
static int set_listen(struct parse_state *st, const char *value, size_t owner)
{
	struct kg_config *cfg = st->cfg;
	const char *p = value, *why;
	char tok[sizeof(cfg->listen[0].text)], q[72];
	size_t given = 0;

	for (;;) {
		size_t len;

		p += strspn(p, ", \t");
		if (*p == '\0')
			break;
		len = strcspn(p, ", \t");
		if (len >= sizeof(tok)) {
			set_err(st, st->line, "'listen': address '%s' too long", quote(q, p));
			return -1;
		}
		memcpy(tok, p, len);
		tok[len] = '\0';
		p += len;
		if (cfg->n_listen == KG_MAX_LISTEN) {
			set_err(st, st->line, "'listen': too many addresses (max %d over all listeners)",
				KG_MAX_LISTEN);
			return -1;
		}
		if (sockaddr_parse(tok, &cfg->listen[cfg->n_listen], &why) != 0) {
			set_err(st, st->line, "'listen': bad address '%s': %s", quote(q, tok), why);
			return -1;
		}
		for (size_t i = 0; i < cfg->n_listen; i++) {
			if (cfg->listen[i].len == cfg->listen[cfg->n_listen].len &&
			    memcmp(&cfg->listen[i].ss, &cfg->listen[cfg->n_listen].ss,
				   cfg->listen[i].len) == 0) {
				set_err(st, st->line, "'listen': address '%s' given twice%s%s", quote(q, tok),
					cfg->listen_listener[i] == owner ? "" : ": also in listener ",
					cfg->listen_listener[i] == owner ? ""
						: cfg->listeners[cfg->listen_listener[i]].name);
				return -1;
			}
		}
		cfg->listen_listener[cfg->n_listen++] = (uint8_t)owner;
		given++;
	}
	if (given == 0) {
		set_err(st, st->line, "'listen': empty list");
		return -1;
	}
	return 0;
}

static int set_key(struct parse_state *st, const struct key_def *k, const char *value)
{
	char *field = (char *)st->cfg + k->off;
	const char *why;
	char q[72];
	unsigned long v;

	if (value[0] == '\0' && k->kind != K_LISTEN) {
		set_err(st, st->line, "'%s': empty value", k->name);
		return -1;
	}
	switch (k->kind) {
	case K_LISTEN:
		return set_listen(st, value, 0);
	case K_UINT:
		if (parse_uint(value, &v) != 0 || v < k->min || v > k->max) {
			set_err(st, st->line, "'%s': '%s' is not a number in %u..%u", k->name,
				quote(q, value), k->min, k->max);
			return -1;
		}
		*(unsigned *)(void *)field = (unsigned)v;
		return 0;
	case K_KEYREF:
		if (strncmp(value, "handle:", 7) == 0) {
			/* Checked by the TPM module, which knows what a handle may be. */
			if (kg_strlcpy(field, value, k->size) != 0) {
				set_err(st, st->line, "'%s': value too long", k->name);
				return -1;
			}
			return 0;
		}
		return resolve_path(st, k->name, value, field, k->size);
	case K_PATH:
		return resolve_path(st, k->name, value, field, k->size);
	case K_REGISTRY:
		return set_registry(st, k->name, value, field, k->size);
	case K_STRING:
		if (kg_strlcpy(field, value, k->size) != 0) {
			set_err(st, st->line, "'%s': value too long (max %zu bytes)", k->name, k->size - 1);
			return -1;
		}
		return 0;
	case K_METRICS:
		if (strcmp(value, "off") == 0) {
			st->cfg->metrics_enabled = false;
			memset(&st->cfg->metrics_listen, 0, sizeof(st->cfg->metrics_listen));
			return 0;
		}
		if (sockaddr_parse(value, &st->cfg->metrics_listen, &why) != 0) {
			set_err(st, st->line, "'%s': bad address '%s': %s (or \"off\")", k->name,
				quote(q, value), why);
			return -1;
		}
		st->cfg->metrics_enabled = true;
		return 0;
	case K_NAME:
		if (!valid_name(value)) {
			set_err(st, st->line, "'%s': '%s' is not a backend name ([A-Za-z0-9_.-]{1,63})",
				k->name, quote(q, value));
			return -1;
		}
		memcpy(field, value, strlen(value) + 1);
		return 0;
	case K_CLIENT_ID:
		if (strcmp(value, "exact") == 0)
			st->cfg->client_id_check = KG_CLIENT_ID_EXACT;
		else if (strcmp(value, "off") == 0)
			st->cfg->client_id_check = KG_CLIENT_ID_OFF;
		else {
			set_err(st, st->line, "'%s': '%s' is not one of exact, off", k->name,
				quote(q, value));
			return -1;
		}
		return 0;
	case K_REGDOWN:
		if (strcmp(value, "fail-closed") == 0)
			st->cfg->registry_down = KG_REGDOWN_FAIL_CLOSED;
		else if (strcmp(value, "fail-open") == 0)
			st->cfg->registry_down = KG_REGDOWN_FAIL_OPEN;
		else {
			set_err(st, st->line, "'%s': '%s' is not one of fail-closed, fail-open", k->name,
				quote(q, value));
			return -1;
		}
		return 0;
	case K_USERNAME:
		if (strcmp(value, "strict") == 0)
			st->cfg->username_check = KG_USERNAME_STRICT;
		else if (strcmp(value, "rewrite") == 0)
			st->cfg->username_check = KG_USERNAME_REWRITE;
		else if (strcmp(value, "pass") == 0)
			st->cfg->username_check = KG_USERNAME_PASS;
		else {
			set_err(st, st->line, "'%s': '%s' is not one of strict, rewrite, pass",
				k->name, quote(q, value));
			return -1;
		}
		return 0;
	case K_RELAY:
		if (strcmp(value, "auto") == 0)
			st->cfg->relay = KG_RELAY_AUTO;
		else if (strcmp(value, "ktls_tx") == 0)
			st->cfg->relay = KG_RELAY_KTLS_TX;
		else if (strcmp(value, "userspace") == 0)
			st->cfg->relay = KG_RELAY_USERSPACE;
		else if (strcmp(value, "openssl") == 0)
			st->cfg->relay = KG_RELAY_OPENSSL;
		else {
			set_err(st, st->line, "'%s': '%s' is not one of auto, ktls_tx, userspace, openssl",
				k->name, quote(q, value));
			return -1;
		}
		return 0;
	case K_PSK_KE:
		if (strcmp(value, "off") == 0)
			st->cfg->resumption_psk_ke = KG_PSK_KE_OFF;
		else if (strcmp(value, "allow") == 0)
			st->cfg->resumption_psk_ke = KG_PSK_KE_ALLOW;
		else if (strcmp(value, "prefer") == 0) {
#ifdef SSL_OP_PREFER_NO_DHE_KEX
			st->cfg->resumption_psk_ke = KG_PSK_KE_PREFER;
#else
			/* A server before 3.2 cannot choose psk_ke over a key share the
			 * device sent: refused here rather than silently meaning allow. */
			set_err(st, st->line, "'%s': 'prefer' needs OpenSSL 3.2 or later (this build: %s); "
				"'allow' serves devices that offer only psk_ke", k->name,
				OPENSSL_VERSION_TEXT);
			return -1;
#endif
		} else {
			set_err(st, st->line, "'%s': '%s' is not one of off, allow, prefer", k->name,
				quote(q, value));
			return -1;
		}
		return 0;
	case K_BOOL:
		if (kg_conf_bool(value, (bool *)(void *)field) != 0) {
			set_err(st, st->line, "'%s': '%s' is not one of on, off, yes, no", k->name,
				quote(q, value));
			return -1;
		}
		return 0;
	case K_DURATION:
		if (kg_conf_duration(value, k->min, k->max, (unsigned *)(void *)field) != 0) {
			set_err(st, st->line, "'%s': '%s' is not a duration in %us..%us (a number "
				"of seconds, or with s, m, h or d)", k->name, quote(q, value),
				k->min, k->max);
			return -1;
		}
		return 0;
	case K_LOG_LEVEL:
		if (strcmp(value, "err") != 0 && strcmp(value, "warn") != 0 &&
		    strcmp(value, "info") != 0 && strcmp(value, "debug") != 0) {
			set_err(st, st->line, "'%s': '%s' is not one of err, warn, info, debug",
				k->name, quote(q, value));
			return -1;
		}
		memcpy(field, value, strlen(value) + 1);
		return 0;
	}
	set_err(st, st->line, "'%s': internal error: unhandled kind", k->name);
	return -1;
}

static int fixed_key(struct parse_state *st, const char *name, const char *value)
{
	char q[72];

	for (size_t i = 0; i < KEY_MAX; i++) {
		if (keys[i].sec != st->sec || strcmp(keys[i].name, name) != 0)
			continue;
		if (st->key_line[i] != 0) {
			set_err(st, st->line, "duplicate key '%s' in [%s] (first on line %u)", name,
				st->secname, st->key_line[i]);
			return -1;
		}
		st->key_line[i] = st->line;
		return set_key(st, &keys[i], value);
	}
	set_err(st, st->line, "unknown key '%s' in [%s]", quote(q, name), st->secname);
	return -1;
}

static int backend_key(struct parse_state *st, const char *name, const char *value)
{
	struct kg_backend_conf *b = &st->cfg->backends[st->backend];
	const char *why;
	char q[72];

	if (strcmp(name, "proxy_protocol") == 0) {
		if (st->proxy_line[st->backend] != 0) {
			set_err(st, st->line, "duplicate key 'proxy_protocol' in [%s] (first on line %u)",
				st->secname, st->proxy_line[st->backend]);
			return -1;
		}
		st->proxy_line[st->backend] = st->line;
		if (strcmp(value, "v2") != 0 && strcmp(value, "off") != 0) {
			set_err(st, st->line, "backend '%s': proxy_protocol '%s': want v2 or off",
				b->name, quote(q, value));
			return -1;
		}
		b->proxy_v2 = strcmp(value, "v2") == 0;
		return 0;
	}
	if (strcmp(name, "address") != 0) {
		set_err(st, st->line, "unknown key '%s' in [%s]", quote(q, name), st->secname);
		return -1;
	}
	if (st->address_line[st->backend] != 0) {
		set_err(st, st->line, "duplicate key 'address' in [%s] (first on line %u)",
			st->secname, st->address_line[st->backend]);
		return -1;
	}
	st->address_line[st->backend] = st->line;
	if (sockaddr_parse(value, &b->addr, &why) != 0) {
		set_err(st, st->line, "backend '%s': bad address '%s': %s", b->name, quote(q, value),
			why);
		return -1;
	}
	return 0;
}

/* "ADDR[/BITS]": a numeric IPv4 or IPv6 address and an optional prefix length (the
 * whole address without one). Host bits set under the prefix are refused: a block
 * spelt as one of its addresses is usually a typo for a narrower one. */
static int cidr_parse(const char *text, struct kg_cidr *out, const char **why)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t hlen = slash ? (size_t)(slash - text) : strlen(text), nbytes;
	unsigned long bits;
	unsigned max;

	memset(out, 0, sizeof(*out));
	if (hlen == 0 || hlen >= sizeof(host)) {
		*why = "not a numeric IP address";
		return -1;
	}
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		*why = "not a numeric IPv4 or IPv6 address";
		return -1;
	}
	bits = max;
	if (slash != NULL && (parse_uint(slash + 1, &bits) != 0 || bits > max)) {
		*why = out->family == AF_INET ? "prefix length must be 0..32" : "prefix length must be 0..128";
		return -1;
	}
	out->bits = (unsigned)bits;
	nbytes = max / 8;
	for (size_t i = 0; i < nbytes; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? (unsigned)(bits - 8 * i) : 0;
		uint8_t mask = keep == 0 ? 0 : (uint8_t)(0xffu << (8 - keep));

		if (out->addr[i] & (uint8_t)~mask) {
			*why = "host bits set below the prefix length";
			return -1;
		}
	}
	return 0;
}

bool kg_cidr_match(const struct kg_cidr *blocks, size_t n, const struct sockaddr *sa,
		   socklen_t salen)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const uint8_t *a;
	int family;

	if (sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
		family = AF_INET;
		a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6 && salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
		a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		family = AF_INET6;
		if (memcmp(a, mapped, sizeof(mapped)) == 0) {
			family = AF_INET;
			a += 12;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		const struct kg_cidr *b = &blocks[i];
		unsigned full = b->bits / 8, rest = b->bits % 8;

		if (b->family != family || memcmp(a, b->addr, full) != 0)
			continue;
		if (rest == 0 || ((a[full] ^ b->addr[full]) & (uint8_t)(0xffu << (8 - rest))) == 0)
			return true;
	}
	return false;
}

static int set_proxy_sources(struct parse_state *st, struct kg_listener_conf *l, const char *value)
{
	const char *p = value, *why;
	char tok[INET6_ADDRSTRLEN + 8], q[72];

	for (;;) {
		size_t len;

		p += strspn(p, ", \t");
		if (*p == '\0')
			break;
		len = strcspn(p, ", \t");
		if (len >= sizeof(tok)) {
			set_err(st, st->line, "listener '%s': proxy_sources: '%s' too long", l->name,
				quote(q, p));
			return -1;
		}
		memcpy(tok, p, len);
		tok[len] = '\0';
		p += len;
		if (l->n_proxy_sources == KG_MAX_PROXY_SOURCES) {
			set_err(st, st->line, "listener '%s': proxy_sources: too many (max %d)", l->name,
				KG_MAX_PROXY_SOURCES);
			return -1;
		}
		if (cidr_parse(tok, &l->proxy_sources[l->n_proxy_sources], &why) != 0) {
			set_err(st, st->line, "listener '%s': proxy_sources: '%s': %s", l->name,
				quote(q, tok), why);
			return -1;
		}
		l->n_proxy_sources++;
	}
	if (l->n_proxy_sources == 0) {
		set_err(st, st->line, "listener '%s': proxy_sources: empty list", l->name);
		return -1;
	}
	return 0;
}

static int listener_key(struct parse_state *st, const char *name, const char *value)
{
	struct kg_listener_conf *l = &st->cfg->listeners[st->listener];
	enum lkey k;
	char q[72];

	for (k = 0; k < LKEY_MAX; k++)
		if (strcmp(name, lkey_names[k]) == 0)
			break;
	if (k == LKEY_MAX) {
		set_err(st, st->line, "unknown key '%s' in [%s]", quote(q, name), st->secname);
		return -1;
	}
	if (st->lkey_line[st->listener][k] != 0) {
		set_err(st, st->line, "duplicate key '%s' in [%s] (first on line %u)", name,
			st->secname, st->lkey_line[st->listener][k]);
		return -1;
	}
	st->lkey_line[st->listener][k] = st->line;
	switch (k) {
	case LKEY_TYPE:
		for (enum kg_listener_kind t = 0; t < KG_LISTENER_KIND_MAX; t++) {
			if (strcmp(value, kg_listener_kind_names[t]) == 0) {
				l->kind = t;
				return 0;
			}
		}
		set_err(st, st->line, "listener '%s': type '%s' is not one of mtls, tls, plain, proxy",
			l->name, quote(q, value));
		return -1;
	case LKEY_LISTEN:
		return set_listen(st, value, st->listener);
	case LKEY_PROXY_SOURCES:
		return set_proxy_sources(st, l, value);
	case LKEY_PROXY_CA:
		if (!valid_name(value)) {
			set_err(st, st->line, "listener '%s': proxy_ca '%s' is not a CA name "
				"([A-Za-z0-9_.-]{1,63})", l->name, quote(q, value));
			return -1;
		}
		memcpy(l->proxy_ca, value, strlen(value) + 1);
		return 0;
	case LKEY_X509_ONLY:
	case LKEY_ALLOW_PLAIN:
	case LKEY_PROXY_REQUIRE_CRC:
		if (kg_conf_bool(value, k == LKEY_X509_ONLY ? &l->x509_only
				 : k == LKEY_ALLOW_PLAIN ? &l->allow_plain
							 : &l->proxy_require_crc) != 0) {
			set_err(st, st->line, "listener '%s': %s '%s': want yes or no", l->name, name,
				quote(q, value));
			return -1;
		}
		return 0;
	case LKEY_MAX:
		break;
	}
	return -1;
}

static int crl_key(struct parse_state *st, const char *name, const char *value)
{
	struct kg_config *cfg = st->cfg;
	struct kg_crl_conf *c;
	char q[72];

	if (!valid_name(name)) {
		set_err(st, st->line, "[crl]: '%s' is not a CA name ([A-Za-z0-9_.-]{1,63})",
			quote(q, name));
		return -1;
	}
	for (size_t i = 0; i < cfg->n_crls; i++) {
		if (strcmp(cfg->crls[i].ca_name, name) == 0) {
			set_err(st, st->line, "duplicate key '%s' in [crl]", name);
			return -1;
		}
	}
	if (cfg->n_crls == KG_MAX_CRLS) {
		set_err(st, st->line, "too many CRLs (max %d)", KG_MAX_CRLS);
		return -1;
	}
	if (value[0] == '\0') {
		set_err(st, st->line, "'%s': empty value", name);
		return -1;
	}
	c = &cfg->crls[cfg->n_crls];
	memcpy(c->ca_name, name, strlen(name) + 1);
	if (resolve_path(st, name, value, c->path, sizeof(c->path)) != 0)
		return -1;
	cfg->n_crls++;
	return 0;
}

static const struct module_section *module_section_of(enum section sec)
{
	for (size_t i = 0; i < KG_NITEMS(module_sections); i++)
		if (module_sections[i].sec == sec)
			return &module_sections[i];
	return NULL;
}

static int module_key(struct parse_state *st, const char *name, const char *value)
{
	const struct module_section *ms = module_section_of(st->sec);
	char why[KG_ERRBUF - 80], q[72];
	size_t i;

	if (ms == NULL) {
		set_err(st, st->line, "internal error: section [%s] has no parser", st->secname);
		return -1;
	}
	for (i = 0; i < st->n_module_keys; i++) {
		if (st->module_keys[i].sec == st->sec && strcmp(st->module_keys[i].name, name) == 0) {
			set_err(st, st->line, "duplicate key '%s' in [%s] (first on line %u)",
				quote(q, name), st->secname, st->module_keys[i].line);
			return -1;
		}
	}
	if (strlen(name) >= sizeof(st->module_keys[0].name)) {
		set_err(st, st->line, "unknown key '%s' in [%s]", quote(q, name), st->secname);
		return -1;
	}
	if (st->n_module_keys == MODULE_KEYS_MAX) {
		set_err(st, st->line, "too many keys in module sections (max %d)", MODULE_KEYS_MAX);
		return -1;
	}
	why[0] = '\0';
	if (ms->set((char *)st->cfg + ms->off, name, value, st->dir, why, sizeof(why)) != 0) {
		set_err(st, st->line, "%s", why[0] ? why : "bad value");
		return -1;
	}
	st->module_keys[st->n_module_keys].sec = st->sec;
	memcpy(st->module_keys[st->n_module_keys].name, name, strlen(name) + 1);
	st->module_keys[st->n_module_keys].line = st->line;
	st->n_module_keys++;
	return 0;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_state *st = user;
	uintptr_t np = (uintptr_t)name, lb = (uintptr_t)st->linebuf;
	size_t slen = strlen(section);

	if (st->failed)
		return 0;
	/* inih hands a continuation line's value with its saved previous name, which
	 * lives outside the line buffer: the one way to tell it from a real key. */
	if (np < lb || np >= lb + st->linecap) {
		set_err(st, st->line, "continuation lines are not supported (remove the indentation)");
		return 0;
	}
	/* Our section and inih's must agree (inih's may be cut at 49 bytes). */
	if (strncmp(section, st->secname, slen) != 0 ||
	    (slen < INIH_MAX_SECTION - 1 && st->secname[slen] != '\0')) {
		set_err(st, st->line, "malformed section header before this line");
		return 0;
	}
	switch (st->sec) {
	case SEC_NONE:
		set_err(st, st->line, "key '%s' outside any section", name);
		return 0;
	case SEC_BACKEND:
		return backend_key(st, name, value) == 0;
	case SEC_LISTENER:
		return listener_key(st, name, value) == 0;
	case SEC_CRL:
		return crl_key(st, name, value) == 0;
	case SEC_TPM:
	case SEC_EDGE:
	case SEC_AUTH:
		return module_key(st, name, value) == 0;
	default:
		return fixed_key(st, name, value) == 0;
	}
}

/* "[listener NAME]": a new listener; "default" is [daemon] listen's. */
static void listener_section(struct parse_state *st, size_t nlen)
{
	struct kg_config *cfg = st->cfg;
	const char *name = st->secname + 9;
	char q[72];

	if (!valid_name(name)) {
		set_err(st, st->line, "[%s]: bad listener name (want [A-Za-z0-9_.-]{1,63})",
			quote(q, st->secname));
		return;
	}
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		if (strcmp(cfg->listeners[i].name, name) == 0) {
			set_err(st, st->line, i == 0 ? "listener name 'default' is [daemon] listen's"
						     : "duplicate listener '%s'", name);
			return;
		}
	}
	if (cfg->n_listeners == KG_MAX_LISTENERS) {
		set_err(st, st->line, "too many listeners (max %d)", KG_MAX_LISTENERS - 1);
		return;
	}
	st->sec = SEC_LISTENER;
	st->listener = cfg->n_listeners++;
	memcpy(cfg->listeners[st->listener].name, name, nlen - 9 + 1);
	st->listener_line[st->listener] = st->line;
}

/* A "[...]" line, seen before inih parses it: sections with no keys never reach
 * the handler, yet "[bogus]" and an empty "[backend x]" are errors. */
static void section_line(struct parse_state *st, const char *start, size_t len)
{
	struct kg_config *cfg = st->cfg;
	const char *close = memchr(start, ']', len), *rest;
	size_t nlen;
	char q[72];

	if (close == NULL) {
		set_err(st, st->line, "section header without ']'");
		return;
	}
	nlen = (size_t)(close - start - 1);
	if (nlen >= sizeof(st->secname)) {
		set_err(st, st->line, "section name too long");
		return;
	}
	for (rest = close + 1; rest < start + len && isspace((unsigned char)*rest); rest++)
		;
	if (rest < start + len && *rest != ';') {
		set_err(st, st->line, "unexpected text after ']'");
		return;
	}
	memcpy(st->secname, start + 1, nlen);
	st->secname[nlen] = '\0';
	for (enum section s = SEC_DAEMON; s < SEC_BACKEND; s++) {
		if (strcmp(st->secname, section_names[s]) != 0)
			continue;
		if (st->sec_line[s] != 0) {
			set_err(st, st->line, "duplicate section [%s] (first on line %u)",
				st->secname, st->sec_line[s]);
			return;
		}
		st->sec_line[s] = st->line;
		st->sec = s;
		return;
	}
	if (strncmp(st->secname, "listener ", 9) == 0) {
		listener_section(st, nlen);
		return;
	}
	if (strncmp(st->secname, "backend ", 8) != 0) {
		set_err(st, st->line, "unknown section [%s]", quote(q, st->secname));
		return;
	}
	if (!valid_name(st->secname + 8)) {
		set_err(st, st->line, "[%s]: bad backend name (want [A-Za-z0-9_.-]{1,63})",
			quote(q, st->secname));
		return;
	}
	if (kg_config_get0_backend(cfg, st->secname + 8) != NULL) {
		set_err(st, st->line, "duplicate backend '%s'", st->secname + 8);
		return;
	}
	if (cfg->n_backends == KG_MAX_BACKENDS) {
		set_err(st, st->line, "too many backends (max %d)", KG_MAX_BACKENDS);
		return;
	}
	st->sec = SEC_BACKEND;
	st->backend = cfg->n_backends++;
	memcpy(cfg->backends[st->backend].name, st->secname + 8, nlen - 8 + 1);
	st->backend_line[st->backend] = st->line;
	st->address_line[st->backend] = 0;
	st->proxy_line[st->backend] = 0;
}

/* inih's fgets-style reader: one line per call, so st->line is the line inih is
 * about to parse. A line that does not fit inih's buffer is an error here, since
 * inih would parse the rest as a new line. */
static char *reader(char *str, int num, void *stream)
{
	struct parse_state *st = stream;
	const char *nl, *start;
	size_t len, clen;

	if (st->failed || *st->pos == '\0' || num < 4)
		return NULL;
	nl = strchr(st->pos, '\n');
	len = nl != NULL ? (size_t)(nl - st->pos) + 1 : strlen(st->pos);
	st->line++;
	if (len > (size_t)num - 1) {
		set_err(st, st->line, "line too long (max %d bytes)", num - 2);
		return NULL;
	}
	memcpy(str, st->pos, len);
	str[len] = '\0';
	st->linebuf = str;
	st->linecap = (size_t)num;

	start = st->pos;
	clen = len;
	if (st->line == 1 && len >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
		start += 3;
		clen -= 3;
	}
	while (clen > 0 && isspace((unsigned char)*start)) {
		start++;
		clen--;
	}
	while (clen > 0 && isspace((unsigned char)start[clen - 1]))
		clen--;
	if (clen > 0 && *start == '[')
		section_line(st, start, clen);
	st->pos += len;
	return st->failed ? NULL : str;
}

/*
 * The security level a fresh SSL_CTX gets from this OpenSSL and its openssl.cnf (1 when
 * built stock, 2 on distributions that raise it). Read at run time: the floor moves
 * with the library and the system policy, not with our source. -1 if unknown.
 */
static int openssl_default_security_level(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	int level;

	if (ctx == NULL)
		return -1;
	level = SSL_CTX_get_security_level(ctx);
	SSL_CTX_free(ctx);
	return level;
}

/* security_level: never below OpenSSL's default; unset, the higher of ours and it. */
static void validate_security_level(struct parse_state *st)
{
	struct kg_config *cfg = st->cfg;
	int floor = openssl_default_security_level();

	if (floor < 0) {
		set_err(st, 0, "[tls] security_level: cannot read OpenSSL's default level");
		return;
	}
	if (st->key_line[KEY_SECURITY_LEVEL] == 0) {
		if ((unsigned)floor > cfg->security_level)
			cfg->security_level = (unsigned)floor;
		return;
	}
	if (cfg->security_level < (unsigned)floor)
		set_err(st, st->key_line[KEY_SECURITY_LEVEL],
			"security_level %u is below OpenSSL's default level %d: it would admit "
			"keys and signatures OpenSSL itself refuses", cfg->security_level, floor);
}

/* Every [listener NAME] complete and consistent; the default addresses when the file
 * names none. Before the module sections: [edge] gates the listened ports. */
static void validate_listeners(struct parse_state *st)
{
	struct kg_config *cfg = st->cfg;
	const char *why;

	for (size_t i = 1; i < cfg->n_listeners; i++) {
		const struct kg_listener_conf *l = &cfg->listeners[i];
		const unsigned *kl = st->lkey_line[i];

		if (kl[LKEY_TYPE] == 0 || kl[LKEY_LISTEN] == 0) {
			set_err(st, st->listener_line[i], "listener '%s' has no '%s'", l->name,
				kl[LKEY_TYPE] == 0 ? "type" : "listen");
			return;
		}
		if (l->kind == KG_LISTENER_PLAIN && !l->allow_plain) {
			set_err(st, kl[LKEY_TYPE], "listener '%s': type plain carries passwords and "
				"tokens in clear text: for a closed network only; say so with "
				"allow_plain = yes", l->name);
			return;
		}
		if (kl[LKEY_ALLOW_PLAIN] != 0 && l->kind != KG_LISTENER_PLAIN) {
			set_err(st, kl[LKEY_ALLOW_PLAIN], "listener '%s': allow_plain is for type plain only",
				l->name);
			return;
		}
		if (l->kind == KG_LISTENER_PROXY && kl[LKEY_PROXY_SOURCES] == 0) {
			set_err(st, st->listener_line[i], "listener '%s': type proxy needs proxy_sources "
				"(the TLS fronts allowed to send a PROXY header)", l->name);
			return;
		}
		for (enum lkey k = LKEY_PROXY_SOURCES; k <= LKEY_PROXY_CA; k++) {
			if (kl[k] != 0 && l->kind != KG_LISTENER_PROXY) {
				set_err(st, kl[k], "listener '%s': %s is for type proxy only", l->name,
					lkey_names[k]);
				return;
			}
		}
		if (l->x509_only && l->kind == KG_LISTENER_PLAIN) {
			set_err(st, kl[LKEY_X509_ONLY], "listener '%s': x509_only = yes on a plain "
				"listener would refuse every device (no certificate comes over plain TCP)",
				l->name);
			return;
		}
	}
	if (cfg->n_listen == 0) {
		if (sockaddr_parse(DEFAULT_LISTEN_V4, &cfg->listen[0], &why) != 0 ||
		    sockaddr_parse(DEFAULT_LISTEN_V6, &cfg->listen[1], &why) != 0) {
			set_err(st, 0, "internal error: default listen address: %s", why);
			return;
		}
		cfg->listen_listener[0] = cfg->listen_listener[1] = 0;
		cfg->n_listen = 2;
	}
}

static void validate(struct parse_state *st)
{
	struct kg_config *cfg = st->cfg;
	static const enum key_id required[] = { KEY_CERT, KEY_KEY, KEY_REGISTRY };
	char mwhy[KG_ERRBUF - 80];

	validate_listeners(st);
	if (st->failed)
		return;
	for (size_t i = 0; i < KG_NITEMS(module_sections); i++) {
		const struct module_section *ms = &module_sections[i];

		mwhy[0] = '\0';
		if (ms->validate((char *)cfg + ms->off, cfg, mwhy, sizeof(mwhy)) != 0) {
			set_err(st, st->sec_line[ms->sec], "[%s]: %s", section_names[ms->sec],
				mwhy[0] ? mwhy : "invalid");
			return;
		}
	}

	for (size_t i = 0; i < KG_NITEMS(required); i++) {
		if (st->key_line[required[i]] == 0) {
			set_err(st, 0, "missing required key '%s' in [daemon]", keys[required[i]].name);
			return;
		}
	}
	for (size_t i = 0; i < cfg->n_backends; i++) {
		if (st->address_line[i] == 0) {
			set_err(st, st->backend_line[i], "backend '%s' has no 'address'",
				cfg->backends[i].name);
			return;
		}
	}
	if (cfg->default_backend[0] != '\0' &&
	    kg_config_get0_backend(cfg, cfg->default_backend) == NULL) {
		set_err(st, st->key_line[KEY_DEFAULT_BACKEND],
			"default_backend '%s' has no [backend %s] section", cfg->default_backend,
			cfg->default_backend);
		return;
	}
	if (cfg->max_handshakes > cfg->max_connections) {
		unsigned line = st->key_line[KEY_MAX_HS] != 0 ? st->key_line[KEY_MAX_HS]
							      : st->key_line[KEY_MAX_CONN];

		set_err(st, line, "max_handshakes (%u) exceeds max_connections (%u)",
			cfg->max_handshakes, cfg->max_connections);
		return;
	}
	validate_security_level(st);
	if (st->failed)
		return;
	if (cfg->metrics_max_per_ip > cfg->metrics_max_connections) {
		unsigned line = st->key_line[KEY_METRICS_PER_IP] != 0 ? st->key_line[KEY_METRICS_PER_IP]
									: st->key_line[KEY_METRICS_MAX_CONN];

		set_err(st, line, "metrics_max_per_ip (%u) exceeds metrics_max_connections (%u)",
			cfg->metrics_max_per_ip, cfg->metrics_max_connections);
		return;
	}
}

/* Parse NUL-terminated text; dir (absolute) or NULL anchors relative paths. */
static int parse_text(const char *text, const char *name, const char *dir, struct kg_config *cfg,
		      char *err, size_t errlen)
{
	struct parse_state st;
	int rc;

	memset(&st, 0, sizeof(st));
	st.cfg = cfg;
	st.name = name;
	st.dir = dir;
	st.pos = text;
	st.err = err;
	st.errlen = errlen;
	if (errlen > 0)
		err[0] = '\0';

	kg_config_defaults(cfg);
	if (kg_strlcpy(cfg->path, name, sizeof(cfg->path)) != 0) {
		set_err(&st, 0, "file name too long");
		return -1;
	}
	rc = ini_parse_stream(reader, &st, handler, &st);
	/* inih's syntax errors ("no '=' found", "no ']' found") surface only as its
	 * return value: the first bad line, which wins over a later error of ours. */
	if (rc > 0 && (!st.failed || (unsigned)rc < st.err_line)) {
		st.failed = false;
		set_err(&st, (unsigned)rc, "syntax error (want '[section]' or 'key = value')");
	} else if (rc < 0 && !st.failed) {
		set_err(&st, 0, "inih failed (%d)", rc);
	}
	if (!st.failed)
		validate(&st);
	return st.failed ? -1 : 0;
}

int kg_config_parse_string(const char *text, const char *name, struct kg_config *cfg, char *err,
			   size_t errlen)
{
	return parse_text(text, name, NULL, cfg, err, errlen);
}

/* Read a whole (small, regular) file into a NUL-terminated heap buffer. */
static char *slurp(const char *path, char *err, size_t errlen)
{
	struct stat sb;
	char *buf = NULL;
	size_t n;
	FILE *f;

	f = fopen(path, "re");
	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &sb) != 0) {
		snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out_close;
	}
	if (sb.st_size > MAX_FILE_BYTES) {
		snprintf(err, errlen, "%s: too large (max %d bytes)", path, MAX_FILE_BYTES);
		goto out_close;
	}
	buf = malloc((size_t)sb.st_size + 2);
	if (buf == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto out_close;
	}
	/* Read one byte more than fstat said, to notice a file growing under us. */
	n = fread(buf, 1, (size_t)sb.st_size + 1, f);
	if (ferror(f) || n > (size_t)sb.st_size) {
		snprintf(err, errlen, "%s: read failed%s", path, ferror(f) ? "" : " (file changed)");
		goto out_free;
	}
	buf[n] = '\0';
	if (memchr(buf, '\0', n) != NULL) {
		unsigned line = 1;

		for (const char *p = buf; *p != '\0'; p++)
			line += *p == '\n';
		snprintf(err, errlen, "%s:%u: NUL byte in file", path, line);
		goto out_free;
	}
	fclose(f);
	return buf;

out_free:
	free(buf);
	buf = NULL;
out_close:
	fclose(f);
	return buf;
}

int kg_config_load(const char *path, struct kg_config *cfg, char *err, size_t errlen)
{
	char dirbuf[PATH_MAX], absdir[PATH_MAX];
	const char *slash;
	char *text;
	int rc = -1;

	if (errlen > 0)
		err[0] = '\0';
	slash = strrchr(path, '/');
	if (slash == NULL)
		memcpy(dirbuf, ".", 2);
	else if (slash == path)
		memcpy(dirbuf, "/", 2);
	else if ((size_t)(slash - path) < sizeof(dirbuf)) {
		memcpy(dirbuf, path, (size_t)(slash - path));
		dirbuf[slash - path] = '\0';
	} else {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	text = slurp(path, err, errlen);
	if (text == NULL)
		return -1;
	/* Absolute, so paths stay valid whatever the daemon's cwd becomes. */
	if (realpath(dirbuf, absdir) == NULL) {
		snprintf(err, errlen, "%s: cannot resolve directory: %s", path, strerror(errno));
		goto out_free;
	}
	/* "/" + "x" would give "//x"; harmless, but say it plainly. */
	if (strcmp(absdir, "/") == 0)
		absdir[0] = '\0';
	rc = parse_text(text, path, absdir, cfg, err, errlen);
out_free:
	free(text);
	return rc;
}

int kg_config_ticket_key_file(const struct kg_config *cfg, char *out, size_t cap)
{
	const char *slash;
	int n;

	if (cfg->ticket_key_file[0] != '\0') {
		n = snprintf(out, cap, "%s", cfg->ticket_key_file);
	} else if (kg_registry_location_is_uri(cfg->registry) ||
		   (slash = strrchr(cfg->registry, '/')) == NULL) {
		/* a PostgreSQL registry has no directory of ours: the daemon's state dir */
		n = snprintf(out, cap, "/var/lib/ktlsgate/ticket-keys.sealed");
	} else {
		/* beside the SQLite registry: the directory the daemon already keeps state in */
		n = snprintf(out, cap, "%.*s/ticket-keys.sealed", (int)(slash - cfg->registry),
			     cfg->registry);
	}
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}
