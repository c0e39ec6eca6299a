/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * edge_conf.h - the [edge] section of ktlsgate.conf: the XDP gate (interfaces, deny
 * thresholds and periods, allow-list, SYN pacing) and worker steering. Parsed by edge_conf.c through config.c's section table
 * (config.c adds file and line to messages and rejects duplicate keys). Plain data:
 * no libbpf types here, so config.h can embed it.
 */
#ifndef KTLSGATE_EDGE_CONF_H
#define KTLSGATE_EDGE_CONF_H

#include <stdbool.h>
#include <stddef.h>

struct kg_config;

struct kg_edge_conf {
	bool present;      /* the file has an [edge] section */
};

void kg_edge_conf_defaults(void *sec);
/* One "key = value" of [edge]; dir anchors relative paths (NULL: none). Returns 0, or
 * -1 with a reason in why (no file or line: the caller adds them). */
int kg_edge_conf_set(void *sec, const char *key, const char *value, const char *dir, char *why,
		    size_t whylen);
/* After the whole file: cross-checks against the rest of cfg. 0, or -1 with why. */
int kg_edge_conf_validate(void *sec, const struct kg_config *cfg, char *why, size_t whylen);

#endif
