/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * audit.h - one JSON line per decision (and per forced close), to stderr; when stderr
 * is the journal (log.h's sink, chosen once at start), one journal entry per line with
 * the JSON line as MESSAGE and KTLSGATE_AUDIT=1, DEVICE_ID, REASON, PEER, DECISION
 * (docs/systemd.md). audit.c is the only writer of decisions. Thread-safe: one write(2)
 * (or one journal datagram) per line.
 */
#ifndef KTLSGATE_AUDIT_H
#define KTLSGATE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops/notify.h"
#include "ops/ratelimit.h"
#include "policy/reason.h"

struct sockaddr;
struct kg_config;

struct kg_audit_record {
	const char *event;        /* "decision" or "close" */
	const char *peer;         /* "addr:port" */
	const char *device;       /* NULL or "" when not identified */
	const char *thumbprint;
	const char *ca;
	const char *auth;         /* how the device proved itself: "ca", "thumbprint", "sas",
				   * "token", "basic"; NULL before it did */
	const char *listener;     /* the listener's name; NULL: not said (the default) */
	bool allow;
	enum kg_reason reason;
	const char *backend;      /* on allow */
	uint64_t conn_id;
	int mqtt_level;           /* 0 when unknown */
	const char *detail;       /* optional free text */
	bool resumed;             /* TLS resumed from a session ticket: "tls":"resumed" */
	bool resumed_psk_ke;      /* ... without (EC)DHE: "kex":"psk_ke" */
	const char *relay;        /* event "relay": the data path the session got */
	const char *ktls_fallback;/* event "relay": why not kernel TLS (metrics.h names) */
};

/* Format the record as one JSON line (with '\n') into buf. Returns its length, or 0 if
 * it does not fit. Pure: used by kg_audit_emit() and the unit tests. */
size_t kg_audit_format(const struct kg_audit_record *r, int64_t ts_ms, char *buf, size_t cap);
/* Format with the current time and write to stderr (or the journal). */
void kg_audit_emit(const struct kg_audit_record *r);
/* Pure: the journal entry of record r whose JSON line (kg_audit_format's, len bytes,
 * '\n' or not) is line: MESSAGE (the line), PRIORITY (6 allow, 5 otherwise),
 * SYSLOG_IDENTIFIER (ident), KTLSGATE_AUDIT=1, KTLSGATE_EVENT, DECISION, REASON, PEER,
 * DEVICE_ID, KTLSGATE_CA, KTLSGATE_CONN (the last four only when known). */
void kg_audit_journal_fields(const struct kg_audit_record *r, const char *line, size_t len,
			     const char *ident, struct kg_journal_entry *e);

/* An audit line about the daemon itself rather than one connection (a listener
 * handover, core/handover.h): kg_audit_event_new() gives {"ts":..,"event":EVENT} to
 * add fields to; kg_audit_event_emit() writes it as one line (the journal: with
 * KTLSGATE_AUDIT=1 and KTLSGATE_EVENT) and frees it. */
struct json_object;
struct json_object *kg_audit_event_new(const char *event);
void kg_audit_event_emit(struct json_object *o);

/*
 * The flood guard (issue 10): refusals of peers that never authenticated are limited
 * per (reason, source address: IPv4 /32, IPv6 /64) with cfg's audit_lines,
 * audit_lines_total and audit_interval_ms; the caller decides which records are
 * limited (decisions about identified devices never are). rl is the calling worker's.
 * Returns true if the line was written, false if it was held back (counted in rl and
 * reported later by an "audit_suppressed" line).
 */
bool kg_audit_emit_limited(struct kg_ratelimit *rl, const struct kg_config *cfg,
			   const struct kg_audit_record *r, const struct sockaddr *sa,
			   unsigned salen, uint64_t now_ms);
/* Write the "audit_suppressed" lines that are due (all: every pending one, at exit). */
void kg_audit_limiter_tick(struct kg_ratelimit *rl, uint64_t now_ms, bool all);

/* The limiter key for (reason, source address), and back (pure, unit-tested). */
void kg_audit_limit_key(enum kg_reason reason, const struct sockaddr *sa, unsigned salen,
			struct kg_rl_key *key);
/* {"ts":..,"event":"audit_suppressed","reason":..,"peer":..,"count":..,"window_ms":..}
 * Returns its length (with '\n'), or 0 if it does not fit. */
size_t kg_audit_format_suppressed(const struct kg_rl_report *rep, int64_t ts_ms, char *buf,
				  size_t cap);
/* Pure: its journal entry: MESSAGE, PRIORITY 5, SYSLOG_IDENTIFIER, KTLSGATE_AUDIT=1,
 * KTLSGATE_EVENT=audit_suppressed, REASON, PEER (the source: address or /64). */
void kg_audit_journal_suppressed(const struct kg_rl_report *rep, const char *line, size_t len,
				 const char *ident, struct kg_journal_entry *e);

#endif
