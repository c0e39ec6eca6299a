/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * edge_block.c - `ktlsgate block` on the gate's maps by fd (contract in edge_block.h).
 * Deny entries expire on CLOCK_MONOTONIC, the clock bpf_ktime_get_ns() reads in the
 * program, so the CLI and the daemon compute the same expiry on one host.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>

#include "edge/edge_block.h"
#include "edge/edge_conf.h"

static const char *const reason_names[KG_XDP_DENY_REASON_MAX] = {
	[KG_XDP_DENY_MANUAL] = "manual",
	[KG_XDP_DENY_VERIFY] = "verify",
	[KG_XDP_DENY_POLICY] = "policy",
	[KG_XDP_DENY_SOURCE_LIMIT] = "source_limit",
};

static const char *const stat_names[KG_XDP_STAT_MAX] = {
	[KG_XDP_PASSED] = "passed",
	[KG_XDP_DROPPED_DENY] = "dropped_deny",
	[KG_XDP_DROPPED_RATE] = "dropped_rate",
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *kg_edge_block_reason_name(uint32_t reason)
{
	return reason < KG_XDP_DENY_REASON_MAX ? reason_names[reason] : "unknown";
}

const char *kg_edge_block_stat_name(uint32_t stat)
{
	return stat < KG_XDP_STAT_MAX ? stat_names[stat] : "unknown";
}

bool kg_edge_block_entry_from(const uint8_t key[16], const struct kg_xdp_deny *v,
			      uint64_t now_ns, struct kg_edge_block_entry *out)
{
	if (v->expires_ns && v->expires_ns <= now_ns)
		return false;
	memcpy(out->addr, key, 16);
	out->reason = v->reason;
	out->strikes = v->strikes;
	/* Rounded up: an entry added "for 600" reads 600s, not 599s, right after. */
	out->expires_in_s = v->expires_ns ?
		(int64_t)((v->expires_ns - now_ns + 999999999ull) / 1000000000ull) : -1;
	return true;
}

struct json_object *kg_edge_block_entry_json(const struct kg_edge_block_entry *en)
{
	struct json_object *o = json_object_new_object();
	char text[64];

	if (o == NULL)
		return NULL;
	if (kg_edge_addr_str(en->addr, text, sizeof(text)) == NULL)
		snprintf(text, sizeof(text), "?");
	if (json_object_object_add(o, "address", json_object_new_string(text)) < 0 ||
	    json_object_object_add(o, "reason",
				   json_object_new_string(kg_edge_block_reason_name(en->reason))) < 0 ||
	    json_object_object_add(o, "strikes", json_object_new_int64(en->strikes)) < 0 ||
	    json_object_object_add(o, "expires_in_s",
				   en->expires_in_s < 0 ? NULL :
				   json_object_new_int64(en->expires_in_s)) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

int kg_edge_block_entry_parse(const char *line, struct kg_edge_block_entry *out)
{
	struct json_object *o = json_tokener_parse(line), *v;
	const char *s;
	int64_t n;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (o == NULL || !json_object_is_type(o, json_type_object))
		goto out;
	if (!json_object_object_get_ex(o, "address", &v) || !json_object_is_type(v, json_type_string) ||
	    kg_edge_addr_parse(json_object_get_string(v), out->addr) < 0)
		goto out;
	if (!json_object_object_get_ex(o, "reason", &v) || !json_object_is_type(v, json_type_string))
		goto out;
	s = json_object_get_string(v);
	for (out->reason = 0; out->reason < KG_XDP_DENY_REASON_MAX; out->reason++)
		if (strcmp(s, reason_names[out->reason]) == 0)
			break;
	if (out->reason == KG_XDP_DENY_REASON_MAX)
		goto out;
	if (!json_object_object_get_ex(o, "strikes", &v) || !json_object_is_type(v, json_type_int) ||
	    (n = json_object_get_int64(v)) < 0 || n > UINT32_MAX)
		goto out;
	out->strikes = (uint32_t)n;
	/* Present and null: until removed. */
	if (!json_object_object_get_ex(o, "expires_in_s", &v))
		goto out;
	if (v == NULL) {
		out->expires_in_s = -1;
	} else {
		if (!json_object_is_type(v, json_type_int) || (n = json_object_get_int64(v)) < 0)
			goto out;
		out->expires_in_s = n;
	}
	rc = 0;
out:
	json_object_put(o);
	return rc;
}

int kg_edge_block_stats_format(const uint64_t sum[KG_XDP_STAT_MAX], char *buf, size_t cap)
{
	_Static_assert(KG_XDP_STAT_MAX == 3, "one field per verdict below");
	return snprintf(buf, cap, "{\"%s\":%" PRIu64 ",\"%s\":%" PRIu64 ",\"%s\":%" PRIu64 "}",
			stat_names[0], sum[0], stat_names[1], sum[1], stat_names[2], sum[2]);
}

int kg_edge_block_stats_parse(const char *line, uint64_t sum[KG_XDP_STAT_MAX])
{
	struct json_object *o = json_tokener_parse(line), *v;
	int rc = -1;

	if (o == NULL || !json_object_is_type(o, json_type_object))
		goto out;
	for (uint32_t k = 0; k < KG_XDP_STAT_MAX; k++) {
		if (!json_object_object_get_ex(o, stat_names[k], &v) ||
		    !json_object_is_type(v, json_type_int))
			goto out;
		/* Counters past INT64_MAX: json-c keeps them as uint64. */
		sum[k] = json_object_get_uint64(v);
	}
	rc = 0;
out:
	json_object_put(o);
	return rc;
}

int kg_edge_block_add(int deny_fd, const uint8_t addr[16], uint64_t secs)
{
	struct kg_xdp_addr key;
	struct kg_xdp_deny v = { 0 };

	memcpy(key.a, addr, 16);
	v.added_ns = mono_ns();
	v.expires_ns = secs ? v.added_ns + secs * 1000000000ull : 0;
	v.reason = KG_XDP_DENY_MANUAL;
	return bpf_map_update_elem(deny_fd, &key, &v, BPF_ANY) < 0 ? -errno : 0;
}

int kg_edge_block_remove(int deny_fd, const uint8_t addr[16])
{
	struct kg_xdp_addr key;

	memcpy(key.a, addr, 16);
	return bpf_map_delete_elem(deny_fd, &key) < 0 ? -errno : 0;
}

int kg_edge_block_each(int deny_fd, int (*cb)(const struct kg_edge_block_entry *en, void *arg),
		       void *arg)
{
	struct kg_xdp_addr key, next;
	struct kg_edge_block_entry en;
	struct kg_xdp_deny v;
	const void *prev = NULL;
	uint64_t now = mono_ns();
	int rc;

	while (bpf_map_get_next_key(deny_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(deny_fd, &key, &v) < 0)
			continue; /* deleted under us (expired and seen by the program) */
		if (!kg_edge_block_entry_from(key.a, &v, now, &en))
			continue;
		if ((rc = cb(&en, arg)) != 0)
			return rc;
	}
	return 0;
}

int kg_edge_block_stats(int stats_fd, uint64_t sum[KG_XDP_STAT_MAX])
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *vals;

	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	vals = calloc((size_t)ncpu, sizeof(*vals));
	if (vals == NULL)
		return -ENOMEM;
	for (uint32_t k = 0; k < KG_XDP_STAT_MAX; k++) {
		sum[k] = 0;
		if (bpf_map_lookup_elem(stats_fd, &k, vals) < 0)
			continue;
		for (int c = 0; c < ncpu; c++)
			sum[k] += vals[c];
	}
	free(vals);
	return 0;
}

bool kg_edge_block_allowed(int allow_fd, const uint8_t addr[16])
{
	struct kg_xdp_lpm_key lk = { .prefixlen = 128 };
	uint8_t v;

	if (allow_fd < 0)
		return false;
	memcpy(lk.addr.a, addr, 16);
	return bpf_map_lookup_elem(allow_fd, &lk, &v) == 0;
}
