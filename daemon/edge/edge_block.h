/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * edge_block.h - `ktlsgate block` on the gate's maps, given their fds: add and remove a
 * deny entry, walk the live entries, sum the per-CPU verdict counters, probe the
 * allow-list. The two ways to reach the maps share it: the CLI on the maps pinned under
 * [edge] pin_dir (cli_block.c), the daemon on the maps it holds, for a CLI that cannot
 * open the pins (edge.c, asked over the control socket). Both then show the same
 * entries the same way: the names and the JSON form of an entry and of the counters
 * are here too, and the JSON lines are also the control protocol's (control.h).
 * No state: every function takes the fds; bpf(2) calls only, any thread.
 */
#ifndef KTLSGATE_EDGE_BLOCK_H
#define KTLSGATE_EDGE_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/xdp_gate_maps.h"

struct json_object;

/* One live deny entry as `ktlsgate block list` shows it. */
struct kg_edge_block_entry {
	uint8_t addr[16];             /* IPv4 mapped */
	uint32_t reason;              /* enum kg_xdp_deny_reason */
	uint32_t strikes;
	int64_t expires_in_s;         /* whole seconds left, rounded up; -1: until removed */
};

/* "manual", "verify", "policy", "source_limit"; "unknown" out of range. */
const char *kg_edge_block_reason_name(uint32_t reason);
/* "passed", "dropped_deny", "dropped_rate"; "unknown" out of range. */
const char *kg_edge_block_stat_name(uint32_t stat);

/* The entry a map value shows at now_ns (CLOCK_MONOTONIC). False when it has expired
 * (the program deletes it on the source's next packet; nobody should see it). Pure. */
bool kg_edge_block_entry_from(const uint8_t key[16], const struct kg_xdp_deny *v,
			      uint64_t now_ns, struct kg_edge_block_entry *out);

/* {"address":"10.0.0.1","reason":"manual","strikes":0,"expires_in_s":600|null}: an
 * element of `block list --json`, and a data line of the control verb block-list.
 * NULL when out of memory. Pure. */
struct json_object *kg_edge_block_entry_json(const struct kg_edge_block_entry *en);
/* The inverse of kg_edge_block_entry_json() for one JSON text line. 0, or -1 when a
 * field is missing or wrong (unknown reason name, bad address). Pure. */
int kg_edge_block_entry_parse(const char *line, struct kg_edge_block_entry *out);

/* {"passed":N,"dropped_deny":N,"dropped_rate":N} (no newline): `block stats --json` and
 * the control verb block-stats' data line. Returns snprintf's count. Pure. */
int kg_edge_block_stats_format(const uint64_t sum[KG_XDP_STAT_MAX], char *buf, size_t cap);
/* The inverse: every counter must be there. 0 or -1. Pure. */
int kg_edge_block_stats_parse(const char *line, uint64_t sum[KG_XDP_STAT_MAX]);

/* Deny addr from now on: for secs seconds, or until removed (secs 0), reason manual.
 * 0 or -errno. */
int kg_edge_block_add(int deny_fd, const uint8_t addr[16], uint64_t secs);
/* Lift a deny: 0, -ENOENT when addr was not denied, or -errno. */
int kg_edge_block_remove(int deny_fd, const uint8_t addr[16]);
/* Call cb for every live (unexpired) entry; cb returns 0 to go on, else the walk stops
 * and returns that value. One syscall pair per entry, bounded by the map size; entries
 * deleted during the walk are skipped. Returns 0 or cb's value. */
int kg_edge_block_each(int deny_fd, int (*cb)(const struct kg_edge_block_entry *en, void *arg),
		       void *arg);
/* Sum the per-CPU verdict counters into sum[]. 0 or -errno (ENOMEM). */
int kg_edge_block_stats(int stats_fd, uint64_t sum[KG_XDP_STAT_MAX]);
/* True when the allow-list trie covers addr (the program checks it first: such a
 * source is never dropped). allow_fd < 0: false. */
bool kg_edge_block_allowed(int allow_fd, const uint8_t addr[16]);

#endif
