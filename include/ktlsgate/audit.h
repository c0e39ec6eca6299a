/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * audit.h - one JSON line per decision (and per forced close), to stderr, which
 * journald keeps. audit.c is the only writer of decisions. Thread-safe: one write(2)
 * per line.
 */
#ifndef KTLSGATE_AUDIT_H
#define KTLSGATE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reason.h"

struct kg_audit_record {
	const char *event;        /* "decision" or "close" */
	const char *peer;         /* "addr:port" */
	const char *device;       /* NULL or "" when not identified */
	const char *thumbprint;
	const char *ca;
	bool allow;
	enum kg_reason reason;
	const char *backend;      /* on allow */
	uint64_t conn_id;
	int mqtt_level;           /* 0 when unknown */
	const char *detail;       /* optional free text */
};

/* Format the record as one JSON line (with '\n') into buf. Returns its length, or 0 if
 * it does not fit. Pure: used by kg_audit_emit() and the unit tests. */
size_t kg_audit_format(const struct kg_audit_record *r, int64_t ts_ms, char *buf, size_t cap);
/* Format with the current time and write to stderr. */
void kg_audit_emit(const struct kg_audit_record *r);

#endif
