/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_block.c - `ktlsgate block add|remove|list|stats`: the XDP gate's deny map by
 * hand. Works on the maps the daemon pinned under [edge] pin_dir (edge.h), so it
 * needs no running daemon and acts at once: the next packet of a blocked source is
 * dropped in the driver. Entries carry an expiry on CLOCK_MONOTONIC, the clock the
 * BPF program compares against.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "cli/cli.h"
#include "edge/edge_conf.h"
#include "ktlsgate/xdp_gate_maps.h"

/* In `ktlsgate --help` too (cli.c), like every noun's usage. */
const char kg_cli_usage_block[] =
	"ktlsgate block add ADDR [--for SECONDS]   deny ADDR at XDP (default: until removed)\n"
	"ktlsgate block remove ADDR                lift a deny\n"
	"ktlsgate block list [--json]              live deny entries\n"
	"ktlsgate block stats [--json]             XDP packets by verdict\n"
	"  ADDR: numeric IPv4 or IPv6; the maps the daemon pinned under [edge] pin_dir\n"
	"  (default " KG_XDP_PIN_DIR_DEFAULT ")\n";

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

/* Open the pinned map `name`; prints why not. Returns an fd or -1. */
static int open_pinned(struct kg_cli *cli, const char *name)
{
	char path[512];
	int fd, rc;

	if ((rc = kg_cli_setup(cli, false)) != KG_EXIT_OK)
		return -1;
	snprintf(path, sizeof(path), "%s/%s", cli->cfg->edge.pin_dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		kg_cli_err("%s: %s (is the daemon's XDP gate loaded? see [edge] in the config)",
			   path, strerror(errno));
	return fd;
}

/* getopt over the verb's flags: --json, --for SECONDS. Returns an exit code or -1
 * to go on; positional arguments stay at argv[optind..]. */
static int parse_opts(int argc, char **argv, const char *cmd, bool *json, int64_t *secs)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "for", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			if (json == NULL)
				return kg_cli_usage_err("%s: --json not accepted here", cmd);
			*json = true;
			break;
		case 'f':
			if (secs == NULL)
				return kg_cli_usage_err("%s: --for not accepted here", cmd);
			if (kg_cli_parse_i64(optarg, 1, 86400LL * 3650, secs) < 0)
				return kg_cli_usage_err("%s: --for: '%s' is not a number of seconds",
							cmd, optarg);
			break;
		case 'h':
			fputs(kg_cli_usage_block, stdout);
			return KG_EXIT_OK;
		default:
			return kg_cli_bad_option(c, argv, cmd);
		}
	}
	return -1;
}

static int one_addr(int argc, char **argv, const char *cmd, struct kg_xdp_addr *key)
{
	if (argc - optind != 1)
		return kg_cli_usage_err("%s: expected one address", cmd);
	if (kg_edge_addr_parse(argv[optind], key->a) < 0)
		return kg_cli_usage_err("%s: '%s' is not a numeric IPv4 or IPv6 address", cmd,
					argv[optind]);
	return -1;
}

/* True when the pinned allow-list trie covers key (the program checks it first). */
static bool allow_listed(struct kg_cli *cli, const struct kg_xdp_addr *key)
{
	struct kg_xdp_lpm_key lk = { .prefixlen = 128, .addr = *key };
	char path[512];
	uint8_t v;
	bool hit;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", cli->cfg->edge.pin_dir, KG_XDP_MAP_ALLOW);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return false;
	hit = bpf_map_lookup_elem(fd, &lk, &v) == 0;
	close(fd);
	return hit;
}

static int block_add(struct kg_cli *cli, int argc, char **argv)
{
	struct kg_xdp_addr key;
	struct kg_xdp_deny v = { 0 };
	int64_t secs = 0;
	int rc, fd;

	if ((rc = parse_opts(argc, argv, "block add", NULL, &secs)) >= 0)
		return rc;
	if ((rc = one_addr(argc, argv, "block add", &key)) >= 0)
		return rc;
	if ((fd = open_pinned(cli, KG_XDP_MAP_DENY)) < 0)
		return KG_EXIT_RUNTIME;
	v.added_ns = mono_ns();
	v.expires_ns = secs ? v.added_ns + (uint64_t)secs * 1000000000ull : 0;
	v.reason = KG_XDP_DENY_MANUAL;
	rc = bpf_map_update_elem(fd, &key, &v, BPF_ANY);
	close(fd);
	if (rc < 0) {
		kg_cli_err("block add %s: %s", argv[optind], strerror(errno));
		return KG_EXIT_RUNTIME;
	}
	if (secs)
		printf("blocked %s for %" PRId64 "s\n", argv[optind], secs);
	else
		printf("blocked %s until removed\n", argv[optind]);
	if (allow_listed(cli, &key))
		printf("note: %s is in the [edge] allow list: the gate never drops it\n",
		       argv[optind]);
	return KG_EXIT_OK;
}

static int block_remove(struct kg_cli *cli, int argc, char **argv)
{
	struct kg_xdp_addr key;
	int rc, fd, e;

	if ((rc = parse_opts(argc, argv, "block remove", NULL, NULL)) >= 0)
		return rc;
	if ((rc = one_addr(argc, argv, "block remove", &key)) >= 0)
		return rc;
	if ((fd = open_pinned(cli, KG_XDP_MAP_DENY)) < 0)
		return KG_EXIT_RUNTIME;
	rc = bpf_map_delete_elem(fd, &key);
	e = errno;
	close(fd);
	if (rc < 0 && e == ENOENT) {
		kg_cli_err("block remove: %s is not blocked", argv[optind]);
		return KG_EXIT_REFUSED;
	}
	if (rc < 0) {
		kg_cli_err("block remove %s: %s", argv[optind], strerror(e));
		return KG_EXIT_RUNTIME;
	}
	printf("unblocked %s\n", argv[optind]);
	return KG_EXIT_OK;
}

static int block_list(struct kg_cli *cli, int argc, char **argv)
{
	struct kg_xdp_addr key, next;
	struct kg_xdp_deny v;
	struct json_object *arr = NULL;
	const void *prev = NULL;
	bool json = false;
	uint64_t now;
	int rc, fd;

	if ((rc = parse_opts(argc, argv, "block list", &json, NULL)) >= 0)
		return rc;
	if (optind < argc)
		return kg_cli_usage_err("block list: unexpected argument '%s'", argv[optind]);
	if ((fd = open_pinned(cli, KG_XDP_MAP_DENY)) < 0)
		return KG_EXIT_RUNTIME;
	if (json && (arr = json_object_new_array()) == NULL) {
		close(fd);
		return KG_EXIT_RUNTIME;
	}
	if (!json)
		printf("%-40s %-8s %-7s %s\n", "ADDRESS", "REASON", "STRIKES", "EXPIRES_IN");
	now = mono_ns();
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		char text[64];
		const char *reason;
		int64_t left;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &v) < 0)
			continue; /* deleted under us (expired and seen by the program) */
		if (v.expires_ns && v.expires_ns <= now)
			continue; /* expired: the program deletes it on the next packet */
		left = v.expires_ns ? (int64_t)((v.expires_ns - now + 999999999ull) / 1000000000ull) : -1;
		reason = v.reason < KG_XDP_DENY_REASON_MAX ? reason_names[v.reason] : "unknown";
		kg_edge_addr_str(key.a, text, sizeof(text));
		if (json) {
			struct json_object *o = json_object_new_object();

			if (o == NULL)
				continue;
			json_object_object_add(o, "address", json_object_new_string(text));
			json_object_object_add(o, "reason", json_object_new_string(reason));
			json_object_object_add(o, "strikes", json_object_new_int64(v.strikes));
			json_object_object_add(o, "expires_in_s",
					       left < 0 ? NULL : json_object_new_int64(left));
			json_object_array_add(arr, o);
		} else {
			char exp[32];

			if (left < 0)
				snprintf(exp, sizeof(exp), "never");
			else
				snprintf(exp, sizeof(exp), "%" PRId64 "s", left);
			printf("%-40s %-8s %-7u %s\n", text, reason, v.strikes, exp);
		}
	}
	close(fd);
	if (json) {
		puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
		json_object_put(arr);
	}
	return KG_EXIT_OK;
}

static int block_stats(struct kg_cli *cli, int argc, char **argv)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *vals, sum[KG_XDP_STAT_MAX] = { 0 };
	bool json = false;
	int rc, fd;

	if ((rc = parse_opts(argc, argv, "block stats", &json, NULL)) >= 0)
		return rc;
	if (optind < argc)
		return kg_cli_usage_err("block stats: unexpected argument '%s'", argv[optind]);
	if (ncpu <= 0 || (vals = calloc((size_t)ncpu, sizeof(*vals))) == NULL)
		return KG_EXIT_RUNTIME;
	if ((fd = open_pinned(cli, KG_XDP_MAP_STATS)) < 0) {
		free(vals);
		return KG_EXIT_RUNTIME;
	}
	for (uint32_t k = 0; k < KG_XDP_STAT_MAX; k++) {
		if (bpf_map_lookup_elem(fd, &k, vals) < 0)
			continue;
		for (int c = 0; c < ncpu; c++)
			sum[k] += vals[c];
	}
	close(fd);
	free(vals);
	for (uint32_t k = 0; k < KG_XDP_STAT_MAX; k++) {
		if (json)
			printf("%s\"%s\":%" PRIu64 "%s", k ? "," : "{", stat_names[k], sum[k],
			       k + 1 == KG_XDP_STAT_MAX ? "}\n" : "");
		else
			printf("%-13s %" PRIu64 "\n", stat_names[k], sum[k]);
	}
	return KG_EXIT_OK;
}

int kg_cli_block(struct kg_cli *cli, int argc, char **argv)
{
	static const struct kg_cli_verb verbs[] = {
		{ "add", block_add },
		{ "remove", block_remove },
		{ "list", block_list },
		{ "stats", block_stats },
		{ NULL, NULL },
	};

	return kg_cli_dispatch(cli, argc, argv, verbs, kg_cli_usage_block);
}
