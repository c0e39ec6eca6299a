/* SPDX-License-Identifier: BSD-2-Clause */
/* edge_conf.c - parse the [edge] section (contract in edge_conf.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "ops/conf_value.h"
#include "ops/config.h"
#include "edge/edge_conf.h"
#include "ktlsgate/xdp_gate_maps.h"

#define LIST_SEP " \t,"

void kg_edge_conf_defaults(void *sec)
{
	struct kg_edge_conf *t = sec;

	memset(t, 0, sizeof(*t));
	t->xdp = true;
	t->fail_threshold = 5;
	t->fail_window_s = 60;
	t->deny_base_s = 60;
	t->deny_max_s = 3600;
	t->track_sources = 65536;
	t->syn_rate = 20;
	t->syn_burst = 40;
	snprintf(t->pin_dir, sizeof(t->pin_dir), "%s", KG_XDP_PIN_DIR_DEFAULT);
}

int kg_edge_addr_parse(const char *text, uint8_t out[16])
{
	struct in_addr a4;

	if (inet_pton(AF_INET, text, &a4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a4, 4);
		return 0;
	}
	return inet_pton(AF_INET6, text, out) == 1 ? 0 : -1;
}

const char *kg_edge_addr_str(const uint8_t a[16], char *buf, size_t len)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (memcmp(a, mapped, 12) == 0)
		return inet_ntop(AF_INET, a + 12, buf, (socklen_t)len);
	return inet_ntop(AF_INET6, a, buf, (socklen_t)len);
}

int kg_edge_cidr_parse(const char *text, struct kg_edge_cidr *out)
{
	char host[64], *slash, *end;
	unsigned long n;
	bool v4;

	if (strlen(text) >= sizeof(host) || strlen(text) >= sizeof(out->text))
		return -1;
	snprintf(host, sizeof(host), "%s", text);
	slash = strchr(host, '/');
	if (slash)
		*slash++ = '\0';
	if (kg_edge_addr_parse(host, out->addr) < 0)
		return -1;
	v4 = strchr(host, ':') == NULL;
	if (slash == NULL) {
		n = v4 ? 32 : 128;
	} else {
		errno = 0;
		n = strtoul(slash, &end, 10);
		if (errno || end == slash || *end || n > (v4 ? 32ul : 128ul) || *slash == '-' ||
		    *slash == '+')
			return -1;
	}
	out->prefix = (unsigned)n + (v4 ? 96 : 0);
	/* Host bits cleared: the trie matches on the prefix anyway, and the list shows
	 * what is really allowed. */
	for (unsigned bit = out->prefix; bit < 128; bit++)
		out->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
	snprintf(out->text, sizeof(out->text), "%s", text);
	return 0;
}

/* Split a list value; calls one(item) for each. */
static int each_item(struct kg_edge_conf *t, const char *key, const char *value, char *why,
		     size_t whylen, int (*one)(struct kg_edge_conf *, const char *, char *, size_t))
{
	char buf[2048], *save = NULL, *tok;

	if (strlen(value) >= sizeof(buf)) {
		snprintf(why, whylen, "[edge] %s: value too long", key);
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", value);
	for (tok = strtok_r(buf, LIST_SEP, &save); tok; tok = strtok_r(NULL, LIST_SEP, &save))
		if (one(t, tok, why, whylen) < 0)
			return -1;
	return 0;
}

static int add_iface(struct kg_edge_conf *t, const char *s, char *why, size_t whylen)
{
	if (strlen(s) >= KG_EDGE_IFNAME || strchr(s, '/')) {
		snprintf(why, whylen, "[edge] interfaces: bad interface name '%s'", s);
		return -1;
	}
	if (t->n_ifaces == KG_EDGE_MAX_IFACES) {
		snprintf(why, whylen, "[edge] interfaces: more than %d", KG_EDGE_MAX_IFACES);
		return -1;
	}
	snprintf(t->ifaces[t->n_ifaces++], KG_EDGE_IFNAME, "%s", s);
	return 0;
}

static int add_port(struct kg_edge_conf *t, const char *s, char *why, size_t whylen)
{
	unsigned p;

	if (kg_conf_uint(s, 1, 65535, &p) < 0) {
		snprintf(why, whylen, "[edge] ports: '%s' is not a port", s);
		return -1;
	}
	if (t->n_ports == KG_EDGE_MAX_PORTS) {
		snprintf(why, whylen, "[edge] ports: more than %d", KG_EDGE_MAX_PORTS);
		return -1;
	}
	t->ports[t->n_ports++] = (uint16_t)p;
	return 0;
}

static int add_allow(struct kg_edge_conf *t, const char *s, char *why, size_t whylen)
{
	if (t->n_allow == KG_EDGE_MAX_ALLOW) {
		snprintf(why, whylen, "[edge] allow: more than %d CIDRs", KG_EDGE_MAX_ALLOW);
		return -1;
	}
	if (kg_edge_cidr_parse(s, &t->allow[t->n_allow]) < 0) {
		snprintf(why, whylen, "[edge] allow: '%s' is not an address or CIDR", s);
		return -1;
	}
	t->n_allow++;
	return 0;
}

static const struct {
	const char *key;
	size_t off;
	unsigned min, max;
} uints[] = {
	{ "fail_threshold", offsetof(struct kg_edge_conf, fail_threshold), 1, 1000000 },
	{ "fail_window_s", offsetof(struct kg_edge_conf, fail_window_s), 1, 86400 },
	{ "deny_base_s", offsetof(struct kg_edge_conf, deny_base_s), 1, 86400 * 30 },
	{ "deny_max_s", offsetof(struct kg_edge_conf, deny_max_s), 1, 86400 * 365 },
	{ "track_sources", offsetof(struct kg_edge_conf, track_sources), 16, 1u << 24 },
	{ "syn_rate", offsetof(struct kg_edge_conf, syn_rate), 0, 1000000 },
	{ "syn_burst", offsetof(struct kg_edge_conf, syn_burst), 1, 1000000 },
};

int kg_edge_conf_set(void *sec, const char *key, const char *value, const char *dir, char *why,
		    size_t whylen)
{
	struct kg_edge_conf *t = sec;

	t->present = true;
	for (size_t i = 0; i < sizeof(uints) / sizeof(uints[0]); i++) {
		if (strcmp(key, uints[i].key) != 0)
			continue;
		if (kg_conf_uint(value, uints[i].min, uints[i].max,
			    (unsigned *)((char *)t + uints[i].off)) < 0) {
			snprintf(why, whylen, "[edge] %s: '%s' is not an integer in %u..%u", key,
				 value, uints[i].min, uints[i].max);
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "xdp") == 0) {
		if (kg_conf_bool(value, &t->xdp) < 0) {
			snprintf(why, whylen, "[edge] xdp: '%s' is not on or off", value);
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "xdp_mode") == 0) {
		if (strcmp(value, "auto") == 0)
			t->mode = KG_EDGE_MODE_AUTO;
		else if (strcmp(value, "native") == 0)
			t->mode = KG_EDGE_MODE_NATIVE;
		else if (strcmp(value, "generic") == 0)
			t->mode = KG_EDGE_MODE_GENERIC;
		else {
			snprintf(why, whylen, "[edge] xdp_mode: '%s' is not auto, native or generic",
				 value);
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "steer") == 0) {
		if (strcmp(value, "kernel") == 0)
			t->steer = KG_EDGE_STEER_KERNEL;
		else if (strcmp(value, "hash") == 0)
			t->steer = KG_EDGE_STEER_HASH;
		else if (strcmp(value, "least_loaded") == 0)
			t->steer = KG_EDGE_STEER_LEAST_LOADED;
		else {
			snprintf(why, whylen,
				 "[edge] steer: '%s' is not kernel, hash or least_loaded", value);
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "interfaces") == 0)
		return each_item(t, key, value, why, whylen, add_iface);
	if (strcmp(key, "ports") == 0)
		return each_item(t, key, value, why, whylen, add_port);
	if (strcmp(key, "allow") == 0)
		return each_item(t, key, value, why, whylen, add_allow);
	if (strcmp(key, "pin_dir") == 0) {
		int n;

		if (value[0] != '/' && dir)
			n = snprintf(t->pin_dir, sizeof(t->pin_dir), "%s/%s", dir, value);
		else
			n = snprintf(t->pin_dir, sizeof(t->pin_dir), "%s", value);
		if (n < 0 || (size_t)n >= sizeof(t->pin_dir) || value[0] == '\0') {
			snprintf(why, whylen, "[edge] pin_dir: path empty or too long");
			return -1;
		}
		return 0;
	}
	snprintf(why, whylen, "unknown key '%s' in [edge]", key);
	return -1;
}

static uint16_t sockaddr_port(const struct kg_sockaddr *sa)
{
	if (sa->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&sa->ss)->sin_port);
	if (sa->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&sa->ss)->sin6_port);
	return 0;
}

int kg_edge_conf_validate(void *sec, const struct kg_config *cfg, char *why, size_t whylen)
{
	struct kg_edge_conf *t = sec;

	if (t->deny_max_s < t->deny_base_s) {
		snprintf(why, whylen, "deny_max_s (%u) is below deny_base_s (%u)",
			 t->deny_max_s, t->deny_base_s);
		return -1;
	}
	if (t->syn_rate && t->syn_burst == 0) {
		snprintf(why, whylen, "syn_burst must be at least 1");
		return -1;
	}
	/* Default: gate what we listen on (every listener; config.c has applied the
	 * listen defaults already); a port twice is kept once. */
	if (t->n_ports == 0) {
		for (size_t i = 0; i < cfg->n_listen && t->n_ports < KG_EDGE_MAX_PORTS; i++) {
			uint16_t p = sockaddr_port(&cfg->listen[i]);
			bool dup = false;

			for (size_t k = 0; k < t->n_ports; k++)
				dup = dup || t->ports[k] == p;
			if (p && !dup)
				t->ports[t->n_ports++] = p;
		}
	}
	return 0;
}
