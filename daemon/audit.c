/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * audit.c - one JSON line per decision, built with json-c (device ids may hold quotes
 * and backslashes), written with one write(2) so lines from different workers never
 * interleave.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ktlsgate/audit.h"

static void add_str(struct json_object *o, const char *key, const char *val)
{
	if (val != NULL && val[0] != '\0')
		json_object_object_add(o, key, json_object_new_string(val));
}

size_t kg_audit_format(const struct kg_audit_record *r, int64_t ts_ms, char *buf, size_t cap)
{
	struct json_object *o = json_object_new_object();
	const char *s;
	char ts[40];
	struct tm tm;
	time_t secs = (time_t)(ts_ms / 1000);
	size_t n = 0;

	if (o == NULL)
		return 0;
	gmtime_r(&secs, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03dZ", (int)(ts_ms % 1000));
	json_object_object_add(o, "ts", json_object_new_string(ts));
	add_str(o, "event", r->event ? r->event : "decision");
	json_object_object_add(o, "conn", json_object_new_uint64(r->conn_id));
	add_str(o, "peer", r->peer);
	add_str(o, "device", r->device);
	add_str(o, "thumbprint", r->thumbprint);
	add_str(o, "ca", r->ca);
	json_object_object_add(o, "decision", json_object_new_string(r->allow ? "allow" : "deny"));
	json_object_object_add(o, "reason", json_object_new_string(kg_reason_str(r->reason)));
	add_str(o, "backend", r->backend);
	if (r->mqtt_level)
		json_object_object_add(o, "mqtt", json_object_new_int(r->mqtt_level));
	add_str(o, "detail", r->detail);
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
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

void kg_audit_emit(const struct kg_audit_record *r)
{
	struct timespec now;
	char line[2048];
	size_t n;

	clock_gettime(CLOCK_REALTIME, &now);
	n = kg_audit_format(r, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, line, sizeof(line));
	if (n > 0)
		(void)!write(STDERR_FILENO, line, n);
}
