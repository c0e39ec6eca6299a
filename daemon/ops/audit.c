/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * audit.c - one JSON line per decision, built with json-c (device ids may hold quotes
 * and backslashes), written with one write(2) so lines from different workers never
 * interleave; or, when log.c chose the journal, sent as one journal entry whose fields
 * a query can select on (journalctl KTLSGATE_AUDIT=1 DEVICE_ID=...).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ops/audit.h"
#include "ops/config.h"
#include "ops/log.h"

/* Limiter key layout: reason, address family (4, 6, or 0: unknown), address bytes. */
#define KEY_REASON 0
#define KEY_FAMILY 1
#define KEY_ADDR 2

static void add_str(struct json_object *o, const char *key, const char *val)
{
	if (val != NULL && val[0] != '\0')
		json_object_object_add(o, key, json_object_new_string(val));
}

static void add_ts(struct json_object *o, int64_t ts_ms)
{
	char ts[40];
	struct tm tm;
	time_t secs = (time_t)(ts_ms / 1000);

	gmtime_r(&secs, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03dZ", (int)(ts_ms % 1000));
	json_object_object_add(o, "ts", json_object_new_string(ts));
}

/* The object as one line with '\n' into buf; frees o. Returns the length or 0. */
static size_t finish_line(struct json_object *o, char *buf, size_t cap)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	size_t n = 0;

	if (s != NULL) {
		n = strlen(s);
		if (n + 2 <= cap) {
			memcpy(buf, s, n);
			buf[n++] = '\n';
			buf[n] = '\0';
		} else {
			n = 0;
		}
	}
	json_object_put(o);
	return n;
}

size_t kg_audit_format(const struct kg_audit_record *r, int64_t ts_ms, char *buf, size_t cap)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL)
		return 0;
	add_ts(o, ts_ms);
	add_str(o, "event", r->event ? r->event : "decision");
	json_object_object_add(o, "conn", json_object_new_uint64(r->conn_id));
	add_str(o, "peer", r->peer);
	add_str(o, "device", r->device);
	add_str(o, "thumbprint", r->thumbprint);
	add_str(o, "ca", r->ca);
	add_str(o, "auth", r->auth);
	add_str(o, "listener", r->listener);
	/* Said only when true: the identity came from a ticket, the policy ran again. */
	if (r->resumed)
		add_str(o, "tls", "resumed");
	/* Said only when the resumption skipped ECDHE ([tls] resumption_psk_ke): the
	 * session's keys then hang on the ticket's secret alone (docs/security.md). */
	if (r->resumed_psk_ke)
		add_str(o, "kex", "psk_ke");
	json_object_object_add(o, "decision", json_object_new_string(r->allow ? "allow" : "deny"));
	json_object_object_add(o, "reason", json_object_new_string(kg_reason_str(r->reason)));
	add_str(o, "backend", r->backend);
	add_str(o, "relay", r->relay);
	add_str(o, "ktls_fallback", r->ktls_fallback);
	if (r->mqtt_level)
		json_object_object_add(o, "mqtt", json_object_new_int(r->mqtt_level));
	add_str(o, "detail", r->detail);
	return finish_line(o, buf, cap);
}

static int64_t wall_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* The common head of both kinds of entry: the line without its '\n' as MESSAGE. */
static void journal_head(struct kg_journal_entry *e, const char *line, size_t len, bool notice,
			 const char *ident, const char *event)
{
	kg_journal_init(e);
	if (len > 0 && line[len - 1] == '\n')
		len--;
	kg_journal_add(e, "MESSAGE", line, len);
	kg_journal_add(e, "PRIORITY", notice ? "5" : "6", 1);   /* LOG_NOTICE, LOG_INFO */
	kg_journal_add_str(e, "SYSLOG_IDENTIFIER", ident);
	kg_journal_add(e, "KTLSGATE_AUDIT", "1", 1);
	kg_journal_add_str(e, "KTLSGATE_EVENT", event);
}

void kg_audit_journal_fields(const struct kg_audit_record *r, const char *line, size_t len,
			     const char *ident, struct kg_journal_entry *e)
{
	char conn[24];

	journal_head(e, line, len, !r->allow, ident, r->event ? r->event : "decision");
	kg_journal_add_str(e, "DECISION", r->allow ? "allow" : "deny");
	kg_journal_add_str(e, "REASON", kg_reason_str(r->reason));
	kg_journal_add_str(e, "PEER", r->peer);
	kg_journal_add_str(e, "DEVICE_ID", r->device);
	kg_journal_add_str(e, "KTLSGATE_CA", r->ca);
	if (r->conn_id != 0) {
		snprintf(conn, sizeof(conn), "%llu", (unsigned long long)r->conn_id);
		kg_journal_add_str(e, "KTLSGATE_CONN", conn);
	}
}

/* The journal (log.c's one choice) or stderr; stderr too if the journal refused. */
static void write_out(const char *line, size_t n, const struct kg_journal_entry *e)
{
	if (e != NULL && kg_journal_send(e) >= 0)
		return;
	(void)!write(STDERR_FILENO, line, n);
}

void kg_audit_emit(const struct kg_audit_record *r)
{
	struct kg_journal_entry e;
	char line[2048];
	size_t n;

	n = kg_audit_format(r, wall_ms(), line, sizeof(line));
	if (n == 0)
		return;
	if (kg_log_journal()) {
		kg_audit_journal_fields(r, line, n, kg_log_ident(), &e);
		write_out(line, n, &e);
	} else {
		write_out(line, n, NULL);
	}
}

struct json_object *kg_audit_event_new(const char *event)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	add_ts(o, wall_ms());
	json_object_object_add(o, "event", json_object_new_string(event));
	return o;
}

void kg_audit_event_emit(struct json_object *o)
{
	struct json_object *ev;
	struct kg_journal_entry e;
	char line[2048], event[64] = "";
	size_t n;

	if (json_object_object_get_ex(o, "event", &ev))
		snprintf(event, sizeof(event), "%s", json_object_get_string(ev));
	n = finish_line(o, line, sizeof(line));   /* frees o */
	if (n == 0)
		return;
	if (kg_log_journal()) {
		journal_head(&e, line, n, false, kg_log_ident(), event);
		write_out(line, n, &e);
	} else {
		write_out(line, n, NULL);
	}
}

/* ---- the flood guard ------------------------------------------------------------ */

void kg_audit_limit_key(enum kg_reason reason, const struct sockaddr *sa, unsigned salen,
			struct kg_rl_key *key)
{
	memset(key, 0, sizeof(*key));
	key->b[KEY_REASON] = (uint8_t)reason;
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
		key->b[KEY_FAMILY] = 4;
		memcpy(&key->b[KEY_ADDR], &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			/* a dual-stack listener: one IPv4 host, not one /64 for all of IPv4 */
			key->b[KEY_FAMILY] = 4;
			memcpy(&key->b[KEY_ADDR], &a->s6_addr[12], 4);
		} else {
			/* one host holds a whole /64: limit the prefix, not the address */
			key->b[KEY_FAMILY] = 6;
			memcpy(&key->b[KEY_ADDR], a->s6_addr, 8);
		}
	}
}

static void key_peer(const struct kg_rl_key *key, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (key->b[KEY_FAMILY] == 4) {
		inet_ntop(AF_INET, &key->b[KEY_ADDR], host, sizeof(host));
		snprintf(out, cap, "%s", host);
	} else if (key->b[KEY_FAMILY] == 6) {
		uint8_t a[16] = { 0 };

		memcpy(a, &key->b[KEY_ADDR], 8);
		inet_ntop(AF_INET6, a, host, sizeof(host));
		snprintf(out, cap, "%s/64", host);
	} else {
		snprintf(out, cap, "unknown");
	}
}

size_t kg_audit_format_suppressed(const struct kg_rl_report *rep, int64_t ts_ms, char *buf,
				  size_t cap)
{
	struct json_object *o = json_object_new_object();
	char peer[INET6_ADDRSTRLEN + 8];
	enum kg_reason reason = (enum kg_reason)rep->key.b[KEY_REASON];

	if (o == NULL)
		return 0;
	key_peer(&rep->key, peer, sizeof(peer));
	add_ts(o, ts_ms);
	json_object_object_add(o, "event", json_object_new_string("audit_suppressed"));
	json_object_object_add(o, "reason", json_object_new_string(kg_reason_str(reason)));
	json_object_object_add(o, "peer", json_object_new_string(peer));
	json_object_object_add(o, "count", json_object_new_uint64(rep->suppressed));
	json_object_object_add(o, "window_ms", json_object_new_uint64(rep->end_ms - rep->start_ms));
	return finish_line(o, buf, cap);
}

void kg_audit_journal_suppressed(const struct kg_rl_report *rep, const char *line, size_t len,
				 const char *ident, struct kg_journal_entry *e)
{
	char peer[INET6_ADDRSTRLEN + 8];

	key_peer(&rep->key, peer, sizeof(peer));
	journal_head(e, line, len, true, ident, "audit_suppressed");
	kg_journal_add_str(e, "REASON", kg_reason_str((enum kg_reason)rep->key.b[KEY_REASON]));
	kg_journal_add_str(e, "PEER", peer);
}

static void emit_report(void *arg, const struct kg_rl_report *rep)
{
	struct kg_journal_entry e;
	char line[512];
	size_t n;

	(void)arg;
	n = kg_audit_format_suppressed(rep, wall_ms(), line, sizeof(line));
	if (n == 0)
		return;
	if (kg_log_journal()) {
		kg_audit_journal_suppressed(rep, line, n, kg_log_ident(), &e);
		write_out(line, n, &e);
	} else {
		write_out(line, n, NULL);
	}
}

bool kg_audit_emit_limited(struct kg_ratelimit *rl, const struct kg_config *cfg,
			   const struct kg_audit_record *r, const struct sockaddr *sa,
			   unsigned salen, uint64_t now_ms)
{
	struct kg_rl_conf conf = { .per_key = cfg->audit_lines, .total = cfg->audit_lines_total,
				   .interval_ms = cfg->audit_interval_ms };
	struct kg_rl_report rep;
	struct kg_rl_key key;
	bool ok;

	kg_audit_limit_key(r->reason, sa, salen, &key);
	ok = kg_rl_check(rl, &conf, &key, now_ms, &rep);
	if (rep.suppressed > 0)
		emit_report(NULL, &rep);
	if (ok)
		kg_audit_emit(r);
	return ok;
}

void kg_audit_limiter_tick(struct kg_ratelimit *rl, uint64_t now_ms, bool all)
{
	(void)kg_rl_flush(rl, now_ms, all, emit_report, NULL);
}
