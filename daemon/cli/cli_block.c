/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_block.c - `ktlsgate block add|remove|list|stats`: the XDP gate's deny map by
 * hand. Two ways to the maps, the same operations (edge/edge_block.h) and the same
 * output on both: the maps the daemon pinned under [edge] pin_dir (edge.h), which need
 * no running daemon; or, when they cannot be opened (not pinned: the packaged unit's
 * user cannot create pins under a root-only /sys/fs/bpf; or no CAP_BPF to open
 * them), the daemon over its control socket, acting on the maps it holds (control.h,
 * block-*). Either way the next packet of a blocked source is dropped in the driver.
 * When neither works, one line gives both reasons.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "cli/cli.h"
#include "edge/edge_block.h"
#include "edge/edge_conf.h"
#include "ops/control.h"
#include "ops/err.h"
#include "ktlsgate/xdp_gate_maps.h"

/* In `ktlsgate --help` too (cli.c), like every noun's usage. */
const char kg_cli_usage_block[] =
	"ktlsgate block add ADDR [--for SECONDS]   deny ADDR at XDP (default: until removed)\n"
	"ktlsgate block remove ADDR                lift a deny\n"
	"ktlsgate block list [--json]              live deny entries\n"
	"ktlsgate block stats [--json]             XDP packets by verdict\n"
	"  ADDR: numeric IPv4 or IPv6; the maps the daemon pinned under [edge] pin_dir\n"
	"  (default " KG_XDP_PIN_DIR_DEFAULT "), else the running daemon's (control socket)\n";

#define WHY_LEN 512

/* Open the pinned map `name` under [edge] pin_dir. Returns an fd, or -1 with why. */
static int open_pin(const struct kg_cli *cli, const char *name, char *why, size_t whylen)
{
	char path[sizeof(cli->cfg->edge.pin_dir) + 16];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", cli->cfg->edge.pin_dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
	return fd;
}

/* A wedged daemon delays the pinned path by this much at most. */
#define MAPS_PROBE_MS 1000

/*
 * The pinned map `name` if it is the gate's: -1 with why when it cannot be opened, or
 * when a running daemon's gate holds another map (block-maps): pins an earlier run
 * left where this one could not pin (a root run, then the unit's user). Editing those
 * would change nothing the gate sees, so the daemon is asked instead. No daemon, no
 * gate in it, or a daemon that does not know block-maps: the pins are all there is.
 */
static int open_gate_pin(const struct kg_cli *cli, const char *name, char *why, size_t whylen)
{
	static const char *const names[3] = { KG_XDP_MAP_DENY, KG_XDP_MAP_ALLOW, KG_XDP_MAP_STATS };
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	char final[KG_CONTROL_LINE_MAX];
	unsigned long ids[3];
	int fd, i;

	if ((fd = open_pin(cli, name, why, whylen)) < 0)
		return -1;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return fd;
	if (kg_control_call(cli->control_socket, "block-maps", NULL, NULL, final, sizeof(final),
			    MAPS_PROBE_MS) != 0 ||
	    sscanf(final, "deny=%lu allow=%lu stats=%lu", &ids[0], &ids[1], &ids[2]) != 3)
		return fd;
	for (i = 0; i < 3 && strcmp(name, names[i]) != 0; i++)
		;
	if (i == 3 || ids[i] == info.id)
		return fd;
	close(fd);
	snprintf(why, whylen, "%s/%s: not the running gate's map (id %u, the gate's is %lu): "
		 "left by an earlier run", cli->cfg->edge.pin_dir, name, info.id, ids[i]);
	kg_cli_err("note: %s", why);
	return -1;
}

/*
 * The pins could not be opened (pin_why): ask the daemon instead. KG_EXIT_OK with the
 * final line's text in final, or one line naming both reasons and KG_EXIT_RUNTIME.
 */
static int ask_daemon(const struct kg_cli *cli, const char *cmd, const char *pin_why,
		      const char *req, kg_control_line_cb cb, void *arg, char *final,
		      size_t cap)
{
	int rc;

	rc = kg_control_call(cli->control_socket, req, cb, arg, final, cap,
			     KG_CLI_CONTROL_TIMEOUT_MS);
	if (rc == 0)
		return KG_EXIT_OK;
	if (rc == KG_E_NOTFOUND)
		kg_cli_err("%s: cannot reach the XDP gate: pinned map %s; daemon: not running "
			   "(control socket %s)", cmd, pin_why, cli->control_socket);
	else if (rc == KG_E_DENIED)
		kg_cli_err("%s: cannot reach the XDP gate: pinned map %s; daemon: %s", cmd, pin_why,
			   final);
	else
		kg_cli_err("%s: cannot reach the XDP gate: pinned map %s; daemon: control socket "
			   "%s: %s", cmd, pin_why, cli->control_socket,
			   rc == KG_E_IO ? strerror(errno) : kg_err_str(rc));
	return KG_EXIT_RUNTIME;
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

static int block_add(struct kg_cli *cli, int argc, char **argv)
{
	char why[WHY_LEN], req[128], final[KG_CONTROL_LINE_MAX], text[64];
	struct kg_xdp_addr key;
	bool allowed = false;
	int64_t secs = 0;
	int rc, fd;

	if ((rc = parse_opts(argc, argv, "block add", NULL, &secs)) >= 0)
		return rc;
	if ((rc = one_addr(argc, argv, "block add", &key)) >= 0)
		return rc;
	if ((rc = kg_cli_setup(cli, false)) != KG_EXIT_OK)
		return rc;
	if ((fd = open_gate_pin(cli, KG_XDP_MAP_DENY, why, sizeof(why))) >= 0) {
		char unused[WHY_LEN];   /* no allow pin: no note, nothing to say */
		int afd = open_pin(cli, KG_XDP_MAP_ALLOW, unused, sizeof(unused));

		rc = kg_edge_block_add(fd, key.a, (uint64_t)secs);
		close(fd);
		if (rc < 0) {
			if (afd >= 0)
				close(afd);
			kg_cli_err("block add %s: %s", argv[optind], strerror(-rc));
			return KG_EXIT_RUNTIME;
		}
		allowed = kg_edge_block_allowed(afd, key.a);
		if (afd >= 0)
			close(afd);
	} else {
		snprintf(req, sizeof(req), "block-add %s %" PRId64,
			 kg_edge_addr_str(key.a, text, sizeof(text)), secs);
		if ((rc = ask_daemon(cli, "block add", why, req, NULL, NULL, final,
				     sizeof(final))) != KG_EXIT_OK)
			return rc;
		allowed = strcmp(final, "allow_listed") == 0;
	}
	if (secs)
		printf("blocked %s for %" PRId64 "s\n", argv[optind], secs);
	else
		printf("blocked %s until removed\n", argv[optind]);
	if (allowed)
		printf("note: %s is in the [edge] allow list: the gate never drops it\n",
		       argv[optind]);
	return KG_EXIT_OK;
}

static int block_remove(struct kg_cli *cli, int argc, char **argv)
{
	char why[WHY_LEN], req[128], final[KG_CONTROL_LINE_MAX], text[64];
	struct kg_xdp_addr key;
	int rc, fd;

	if ((rc = parse_opts(argc, argv, "block remove", NULL, NULL)) >= 0)
		return rc;
	if ((rc = one_addr(argc, argv, "block remove", &key)) >= 0)
		return rc;
	if ((rc = kg_cli_setup(cli, false)) != KG_EXIT_OK)
		return rc;
	if ((fd = open_gate_pin(cli, KG_XDP_MAP_DENY, why, sizeof(why))) >= 0) {
		rc = kg_edge_block_remove(fd, key.a);
		close(fd);
	} else {
		snprintf(req, sizeof(req), "block-remove %s",
			 kg_edge_addr_str(key.a, text, sizeof(text)));
		if ((rc = ask_daemon(cli, "block remove", why, req, NULL, NULL, final,
				     sizeof(final))) != KG_EXIT_OK)
			return rc;
		if (strcmp(final, "removed=1") == 0) {
			rc = 0;
		} else if (strcmp(final, "removed=0") == 0) {
			rc = -ENOENT;
		} else {
			kg_cli_err("block remove: the daemon answered \"OK %s\"", final);
			return KG_EXIT_RUNTIME;
		}
	}
	if (rc == -ENOENT) {
		kg_cli_err("block remove: %s is not blocked", argv[optind]);
		return KG_EXIT_REFUSED;
	}
	if (rc < 0) {
		kg_cli_err("block remove %s: %s", argv[optind], strerror(-rc));
		return KG_EXIT_RUNTIME;
	}
	printf("unblocked %s\n", argv[optind]);
	return KG_EXIT_OK;
}

/* The live entries, from either path, before anything is printed. */
struct entries {
	struct kg_edge_block_entry *v;
	size_t n, cap;
	bool failed;            /* out of memory, or a daemon line that is not an entry */
};

static int keep_entry(const struct kg_edge_block_entry *en, void *arg)
{
	struct entries *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct kg_edge_block_entry *nv = realloc(l->v, cap * sizeof(*nv));

		if (nv == NULL) {
			l->failed = true;
			return -1;
		}
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = *en;
	return 0;
}

static void daemon_entry(const char *line, void *arg)
{
	struct entries *l = arg;
	struct kg_edge_block_entry en;

	if (l->failed)
		return;
	if (kg_edge_block_entry_parse(line, &en) < 0)
		l->failed = true;
	else
		(void)keep_entry(&en, l);
}

static int print_entries(const struct entries *l, bool json)
{
	struct json_object *arr = NULL;

	if (json && (arr = json_object_new_array()) == NULL)
		return KG_EXIT_RUNTIME;
	if (!json)
		printf("%-40s %-8s %-7s %s\n", "ADDRESS", "REASON", "STRIKES", "EXPIRES_IN");
	for (size_t i = 0; i < l->n; i++) {
		const struct kg_edge_block_entry *en = &l->v[i];
		char text[64], exp[32];

		if (json) {
			struct json_object *o = kg_edge_block_entry_json(en);

			if (o != NULL && json_object_array_add(arr, o) != 0)
				json_object_put(o);
			continue;
		}
		if (en->expires_in_s < 0)
			snprintf(exp, sizeof(exp), "never");
		else
			snprintf(exp, sizeof(exp), "%" PRId64 "s", en->expires_in_s);
		printf("%-40s %-8s %-7u %s\n", kg_edge_addr_str(en->addr, text, sizeof(text)),
		       kg_edge_block_reason_name(en->reason), en->strikes, exp);
	}
	if (json) {
		puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
		json_object_put(arr);
	}
	return KG_EXIT_OK;
}

static int block_list(struct kg_cli *cli, int argc, char **argv)
{
	char why[WHY_LEN], final[KG_CONTROL_LINE_MAX];
	struct entries l = { 0 };
	bool json = false;
	int rc, fd;

	if ((rc = parse_opts(argc, argv, "block list", &json, NULL)) >= 0)
		return rc;
	if (optind < argc)
		return kg_cli_usage_err("block list: unexpected argument '%s'", argv[optind]);
	if ((rc = kg_cli_setup(cli, false)) != KG_EXIT_OK)
		return rc;
	if ((fd = open_gate_pin(cli, KG_XDP_MAP_DENY, why, sizeof(why))) >= 0) {
		(void)kg_edge_block_each(fd, keep_entry, &l);
		close(fd);
		if (l.failed)
			kg_cli_err("block list: out of memory");
	} else {
		rc = ask_daemon(cli, "block list", why, "block-list", daemon_entry, &l, final,
				sizeof(final));
		if (rc != KG_EXIT_OK) {
			free(l.v);
			return rc;
		}
		if (l.failed)
			kg_cli_err("block list: the daemon sent a line that is not a deny entry");
	}
	rc = l.failed ? KG_EXIT_RUNTIME : print_entries(&l, json);
	free(l.v);
	return rc;
}

struct stats_reply {
	uint64_t sum[KG_XDP_STAT_MAX];
	int lines, bad;
};

static void daemon_stats(const char *line, void *arg)
{
	struct stats_reply *r = arg;

	r->lines++;
	if (kg_edge_block_stats_parse(line, r->sum) < 0)
		r->bad++;
}

static int block_stats(struct kg_cli *cli, int argc, char **argv)
{
	char why[WHY_LEN], final[KG_CONTROL_LINE_MAX], line[256];
	struct stats_reply r = { { 0 }, 0, 0 };
	bool json = false;
	int rc, fd;

	if ((rc = parse_opts(argc, argv, "block stats", &json, NULL)) >= 0)
		return rc;
	if (optind < argc)
		return kg_cli_usage_err("block stats: unexpected argument '%s'", argv[optind]);
	if ((rc = kg_cli_setup(cli, false)) != KG_EXIT_OK)
		return rc;
	if ((fd = open_gate_pin(cli, KG_XDP_MAP_STATS, why, sizeof(why))) >= 0) {
		rc = kg_edge_block_stats(fd, r.sum);
		close(fd);
		if (rc < 0) {
			kg_cli_err("block stats: %s", strerror(-rc));
			return KG_EXIT_RUNTIME;
		}
	} else {
		rc = ask_daemon(cli, "block stats", why, "block-stats", daemon_stats, &r, final,
				sizeof(final));
		if (rc != KG_EXIT_OK)
			return rc;
		if (r.lines != 1 || r.bad) {
			kg_cli_err("block stats: the daemon did not send one line of counters");
			return KG_EXIT_RUNTIME;
		}
	}
	if (json) {
		(void)kg_edge_block_stats_format(r.sum, line, sizeof(line));
		puts(line);
		return KG_EXIT_OK;
	}
	for (uint32_t k = 0; k < KG_XDP_STAT_MAX; k++)
		printf("%-13s %" PRIu64 "\n", kg_edge_block_stat_name(k), r.sum[k]);
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
