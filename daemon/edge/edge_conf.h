/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * edge_conf.h - the [edge] section of ktlsgate.conf: the XDP gate (interfaces, deny
 * thresholds and periods, allow-list, SYN pacing) and worker steering. Parsed by edge_conf.c through config.c's section table
 * (config.c adds file and line to messages and rejects duplicate keys). Plain data:
 * no libbpf types here, so config.h can embed it. The gate runs when `interfaces`
 * names at least one interface and `xdp` is not off.
 */
#ifndef KTLSGATE_EDGE_CONF_H
#define KTLSGATE_EDGE_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kg_config;

#define KG_EDGE_MAX_IFACES 16
#define KG_EDGE_MAX_PORTS 16
#define KG_EDGE_MAX_ALLOW 64
#define KG_EDGE_IFNAME 16         /* IFNAMSIZ */

struct kg_edge_cidr {
	uint8_t addr[16];             /* IPv4 mapped (::ffff:a.b.c.d) */
	unsigned prefix;              /* over the 128 bits: IPv4 /n is 96 + n */
	char text[64];                /* as written */
};

enum kg_edge_xdp_mode { KG_EDGE_MODE_AUTO, KG_EDGE_MODE_NATIVE, KG_EDGE_MODE_GENERIC };
/* Who picks the worker for a new connection: the kernel's SO_REUSEPORT hash, or the
 * SK_REUSEPORT program (steer.h) by flow hash or fewest handshakes in flight. */
enum kg_edge_steer { KG_EDGE_STEER_KERNEL, KG_EDGE_STEER_HASH, KG_EDGE_STEER_LEAST_LOADED };

struct kg_edge_conf {
	bool present;                 /* the file sets at least one [edge] key */
	bool xdp;                     /* xdp = on|off (default on) */
	enum kg_edge_xdp_mode mode;   /* xdp_mode = auto (native, else generic) | native | generic */
	enum kg_edge_steer steer;     /* steer = kernel (default) | hash | least_loaded */
	char ifaces[KG_EDGE_MAX_IFACES][KG_EDGE_IFNAME];
	size_t n_ifaces;              /* interfaces = eth0 eth1 (space or comma separated) */
	uint16_t ports[KG_EDGE_MAX_PORTS];
	size_t n_ports;               /* ports = 8883; default: the [daemon] listen ports */
	unsigned fail_threshold;      /* failures within fail_window_s that deny (5) */
	unsigned fail_window_s;       /* (60) */
	unsigned deny_base_s;         /* first deny period (60) */
	unsigned deny_max_s;          /* cap of the doubling periods (3600) */
	unsigned track_sources;       /* sources the policy remembers (65536) */
	struct kg_edge_cidr allow[KG_EDGE_MAX_ALLOW];
	size_t n_allow;               /* allow = 10.0.0.0/8, fd00::/8: never dropped */
	unsigned syn_rate;            /* new connections per second per source; 0: off (20) */
	unsigned syn_burst;           /* bucket depth (40) */
	char pin_dir[256];            /* bpffs dir for the maps (/sys/fs/bpf/ktlsgate) */
};

void kg_edge_conf_defaults(void *sec);
/* One "key = value" of [edge]; dir anchors relative paths (NULL: none). Returns 0, or
 * -1 with a reason in why (no file or line: the caller adds them). */
int kg_edge_conf_set(void *sec, const char *key, const char *value, const char *dir, char *why,
		    size_t whylen);
/* After the whole file: cross-checks against the rest of cfg. 0, or -1 with why. */
int kg_edge_conf_validate(void *sec, const struct kg_config *cfg, char *why, size_t whylen);

/* Parse "a.b.c.d/n", "v6/n" or a bare address (/32, /128) into *out. 0 or -1. */
int kg_edge_cidr_parse(const char *text, struct kg_edge_cidr *out);
/* Parse a numeric IPv4/IPv6 address into 16 bytes (IPv4 mapped). 0 or -1. */
int kg_edge_addr_parse(const char *text, uint8_t out[16]);
/* Format 16 bytes (IPv4 mapped shown as dotted quad) into buf. */
const char *kg_edge_addr_str(const uint8_t a[16], char *buf, size_t len);

#endif
