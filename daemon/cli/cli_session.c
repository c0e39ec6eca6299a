/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_session.c - `ktlsgate session list|kill`, `ktlsgate status` and `ktlsgate reload`:
 * requests to the running daemon over its control socket (control.h). The daemon answers
 * JSON lines; this file turns them into a table or key: value text, or passes them on as
 * JSON.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "ops/control.h"
#include "ops/err.h"
#include "policy/identity.h"

struct lines {
	struct json_object *arr;  /* parsed data lines */
	bool bad;                 /* a line was not a JSON object */
};

static void collect_line(const char *line, void *arg)
{
	struct lines *l = arg;
	struct json_object *o = json_tokener_parse(line);

	if (o == NULL || !json_object_is_type(o, json_type_object) ||
	    json_object_array_add(l->arr, o) != 0) {
		json_object_put(o);
		l->bad = true;
	}
}

/* A control request that failed other than by an ERR reply (no daemon, I/O, protocol):
 * the one-line error, and the exit code. */
static int control_failed(const struct kg_cli *cli, int rc)
{
	if (rc == KG_E_NOTFOUND)
		kg_cli_err("daemon not running (control socket %s)", cli->control_socket);
	else
		kg_cli_err("control socket %s: %s", cli->control_socket, kg_err_str(rc));
	return KG_EXIT_RUNTIME;
}

/* One control request; prints the one-line error itself. */
static int call(const struct kg_cli *cli, const char *req, struct lines *l, char *final,
		size_t cap)
{
	int rc;

	final[0] = '\0';
	rc = kg_control_call(cli->control_socket, req, collect_line, l, final, cap,
			     KG_CLI_CONTROL_TIMEOUT_MS);
	if (rc == KG_E_DENIED) {
		kg_cli_err("daemon refused \"%s\": %s", req, final[0] != '\0' ? final : "ERR");
		return KG_EXIT_RUNTIME;
	}
	if (rc != 0)
		return control_failed(cli, rc);
	if (l != NULL && l->bad) {
		kg_cli_err("daemon sent a line that is not a JSON object");
		return KG_EXIT_RUNTIME;
	}
	return KG_EXIT_OK;
}

static int parse_json_flag(int argc, char **argv, const char *cmd, const char *usage, bool *json)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			*json = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return -1;
		default:
			return kg_cli_bad_option(c, argv, cmd);
		}
	}
	if (optind < argc)
		return kg_cli_usage_err("%s: unexpected argument '%s'", cmd, argv[optind]);
	return KG_EXIT_OK;
}

static const char *str_field(struct json_object *o, const char *key)
{
	struct json_object *v;
	const char *s;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return "-";
	s = json_object_get_string(v);
	return s != NULL && s[0] != '\0' ? s : "-";
}

static int64_t int_field(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && v != NULL ? json_object_get_int64(v) : 0;
}

static int session_list(struct kg_cli *cli, int argc, char **argv)
{
	char final[KG_CONTROL_LINE_MAX];
	struct lines l = { 0 };
	bool json = false;
	int64_t now, since;
	struct timespec ts;
	size_t i, n;
	int rc;

	rc = parse_json_flag(argc, argv, "session list", kg_cli_usage_session, &json);
	if (rc != KG_EXIT_OK)
		return rc < 0 ? KG_EXIT_OK : rc;
	if ((rc = kg_cli_setup(cli, false)) != KG_EXIT_OK)
		return rc;
	l.arr = json_object_new_array();
	if (l.arr == NULL) {
		kg_cli_err("out of memory");
		return KG_EXIT_RUNTIME;
	}
	rc = call(cli, "sessions", &l, final, sizeof(final));
	if (rc != KG_EXIT_OK) {
		json_object_put(l.arr);
		return rc;
	}
	if (json) {
		kg_cli_json_print(l.arr);
		return KG_EXIT_OK;
	}
	/* Not time(NULL): glibc serves it from the coarse clock, which can lag a tick behind
	 * the daemon's CLOCK_REALTIME and make a session's age read one second short. */
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (int64_t)ts.tv_sec;
	/* PID last: during a handover (ktlsgated --takeover) the old process's draining
	 * sessions are listed too, and this says which process holds each. */
	printf("%-8s %-32s %-24s %-15s %-10s %-7s %-12s %8s %12s %6s %8s\n", "ID", "DEVICE", "PEER",
	       "STATE", "MODE", "TLS", "BACKEND", "AGE", "BYTES", "WORKER", "PID");
	n = json_object_array_length(l.arr);
	for (i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(l.arr, i);

		since = int_field(o, "since");
		printf("%-8s %-32s %-24s %-15s %-10s %-7s %-12s %7" PRId64 "s %12" PRId64 " %6s %8s\n",
		       str_field(o, "id"), str_field(o, "device"), str_field(o, "peer"),
		       str_field(o, "state"), str_field(o, "mode"), str_field(o, "tls"),
		       str_field(o, "backend"),
		       since > 0 && since <= now ? now - since : 0,
		       int_field(o, "bytes_up") + int_field(o, "bytes_down"), str_field(o, "worker"),
		       str_field(o, "pid"));
	}
	json_object_put(l.arr);
	return KG_EXIT_OK;
}

static int session_kill(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char final[KG_CONTROL_LINE_MAX], req[KG_DEVICE_ID_MAX + 16];
	const char *id, *closed;
	unsigned long n = 0;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(kg_cli_usage_session, stdout);
			return KG_EXIT_OK;
		}
		return kg_cli_bad_option(c, argv, "session kill");
	}
	if (argc - optind != 1)
		return kg_cli_usage_err("session kill: expected one DEVICE_ID");
	id = argv[optind];
	/* Validated here too: the id travels inside a one-line request. */
	if ((rc = kg_cli_check_device_id("session kill", id)) != KG_EXIT_OK)
		return rc;
	if ((rc = kg_cli_setup(cli, false)) != KG_EXIT_OK)
		return rc;
	snprintf(req, sizeof(req), "kill %s", id);
	if ((rc = call(cli, req, NULL, final, sizeof(final))) != KG_EXIT_OK)
		return rc;
	closed = strstr(final, "closed=");
	if (closed != NULL)
		n = strtoul(closed + strlen("closed="), NULL, 10);
	if (n == 0) {
		kg_cli_err("no live session for %s", id);
		return KG_EXIT_REFUSED;
	}
	printf("device %s: closed %lu live sessions\n", id, n);
	return KG_EXIT_OK;
}

int kg_cli_session(struct kg_cli *cli, int argc, char **argv)
{
	static const struct kg_cli_verb verbs[] = {
		{ "list", session_list },
		{ "kill", session_kill },
		{ NULL, NULL },
	};

	return kg_cli_dispatch(cli, argc, argv, verbs, kg_cli_usage_session);
}

/*
 * The status reply: the daemon's object, then one object per worker ({"worker": N,
 * ...}: control.h). *o: the first, with the others moved into its "per_worker" array
 * (an older daemon sends none: no array). A later line that is not a worker's is the
 * daemon speaking another protocol: an error, not something to guess at.
 */
static int gather_workers(struct json_object *arr, struct json_object **o)
{
	size_t n = json_object_array_length(arr);
	struct json_object *per;

	*o = json_object_array_get_idx(arr, 0);
	if (n == 1)
		return KG_EXIT_OK;
	per = json_object_new_array();
	if (per == NULL || json_object_object_add(*o, "per_worker", per) != 0) {
		json_object_put(per);
		kg_cli_err("out of memory");
		return KG_EXIT_RUNTIME;
	}
	for (size_t i = 1; i < n; i++) {
		struct json_object *w = json_object_array_get_idx(arr, i), *idx;

		if (!json_object_object_get_ex(w, "worker", &idx)) {
			kg_cli_err("daemon sent a status line %zu that is not a worker's", i + 1);
			return KG_EXIT_RUNTIME;
		}
		if (json_object_array_add(per, json_object_get(w)) != 0) {
			json_object_put(w);
			kg_cli_err("out of memory");
			return KG_EXIT_RUNTIME;
		}
	}
	return KG_EXIT_OK;
}

/* The per-worker lines as a table under the key: value lines (nothing without them). */
static void print_workers(struct json_object *o)
{
	struct json_object *per;
	size_t n;

	if (!json_object_object_get_ex(o, "per_worker", &per) ||
	    !json_object_is_type(per, json_type_array))
		return;
	n = json_object_array_length(per);
	printf("%-6s %10s %10s %10s %10s %8s %14s %14s %10s\n", "WORKER", "ACCEPTED", "HS_OK",
	       "HS_FAILED", "CONNS", "SESSIONS", "BYTES_UP", "BYTES_DOWN", "CPU_S");
	for (size_t i = 0; i < n; i++) {
		struct json_object *w = json_object_array_get_idx(per, i);

		printf("%-6s %10" PRId64 " %10" PRId64 " %10" PRId64 " %10" PRId64 " %8" PRId64
		       " %14" PRId64 " %14" PRId64 " %10s\n",
		       str_field(w, "worker"), int_field(w, "accepted"), int_field(w, "handshakes_ok"),
		       int_field(w, "handshakes_failed") + int_field(w, "handshakes_timeout"),
		       int_field(w, "connections"), int_field(w, "sessions"), int_field(w, "bytes_up"),
		       int_field(w, "bytes_down"), str_field(w, "cpu_s"));
	}
}

int kg_cli_status(struct kg_cli *cli, int argc, char **argv)
{
	char final[KG_CONTROL_LINE_MAX];
	struct lines l = { 0 };
	struct json_object *o;
	bool json = false;
	int rc;

	rc = parse_json_flag(argc, argv, "status", kg_cli_usage_status, &json);
	if (rc != KG_EXIT_OK)
		return rc < 0 ? KG_EXIT_OK : rc;
	if ((rc = kg_cli_setup(cli, false)) != KG_EXIT_OK)
		return rc;
	l.arr = json_object_new_array();
	if (l.arr == NULL) {
		kg_cli_err("out of memory");
		return KG_EXIT_RUNTIME;
	}
	rc = call(cli, "status", &l, final, sizeof(final));
	if (rc == KG_EXIT_OK && json_object_array_length(l.arr) < 1) {
		kg_cli_err("daemon sent no status line");
		rc = KG_EXIT_RUNTIME;
	}
	if (rc == KG_EXIT_OK)
		rc = gather_workers(l.arr, &o);
	if (rc != KG_EXIT_OK) {
		json_object_put(l.arr);
		return rc;
	}
	if (json) {
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		json_object_object_foreach(o, key, val) {
			if (strcmp(key, "per_worker") == 0)
				continue;   /* a table below */
			printf("%s: %s\n", key,
			       val == NULL ? "null"
					   : json_object_is_type(val, json_type_string)
						     ? json_object_get_string(val)
						     : json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN));
		}
		print_workers(o);
	}
	json_object_put(l.arr);
	return KG_EXIT_OK;
}

/*
 * The daemon re-reads the config file it was started with (not this CLI's -c, which
 * only locates the control socket). A config that does not load or build is refused and
 * the running one kept: that is a refusal (exit 2) with the daemon's own reason, so a
 * deploy script can tell "your file is wrong" from "no daemon" (exit 3).
 */
int kg_cli_reload(struct kg_cli *cli, int argc, char **argv)
{
	char final[KG_CONTROL_LINE_MAX] = "";
	bool json = false;
	int rc;

	rc = parse_json_flag(argc, argv, "reload", kg_cli_usage_reload, &json);
	if (rc != KG_EXIT_OK)
		return rc < 0 ? KG_EXIT_OK : rc;
	if (json)
		return kg_cli_usage_err("reload: --json does not apply");
	/* A file that does not parse is refused here with the loader's FILE:LINE message,
	 * the one the daemon would give: the CLI needs the file for the control socket. */
	if (access(cli->config_path, F_OK) == 0) {
		char err[KG_ERRBUF] = "";
		struct kg_config *c = calloc(1, sizeof(*c));

		if (c == NULL) {
			kg_cli_err("out of memory");
			return KG_EXIT_RUNTIME;
		}
		rc = kg_config_load(cli->config_path, c, err, sizeof(err));
		free(c);
		if (rc != 0) {
			kg_cli_err("reload refused (not sent to the daemon): %s",
				   err[0] != '\0' ? err : cli->config_path);
			return KG_EXIT_REFUSED;
		}
	}
	if ((rc = kg_cli_setup(cli, false)) != KG_EXIT_OK)
		return rc;
	rc = kg_control_call(cli->control_socket, "reload", NULL, NULL, final, sizeof(final),
			     KG_CLI_CONTROL_TIMEOUT_MS);
	if (rc == KG_E_DENIED) {
		kg_cli_err("reload refused, running configuration kept: %s",
			   final[0] != '\0' ? final : "no reason given");
		return KG_EXIT_REFUSED;
	}
	if (rc != 0)
		return control_failed(cli, rc);
	printf("%s\n", final[0] != '\0' ? final : "reloaded");
	return KG_EXIT_OK;
}

/* The pid of the daemon answering on the control socket now; 0: none answers (or no
 * pid in its status). Quiet: the caller polls it while the daemons change over. */
static long answering_pid(const char *sock)
{
	struct lines l = { .arr = json_object_new_array(), .bad = false };
	struct json_object *pid;
	char final[KG_CONTROL_LINE_MAX];
	long v = 0;

	if (l.arr != NULL &&
	    kg_control_call(sock, "status", collect_line, &l, final, sizeof(final),
			    KG_CLI_CONTROL_TIMEOUT_MS) == 0 &&
	    json_object_array_length(l.arr) > 0 &&
	    json_object_object_get_ex(json_object_array_get_idx(l.arr, 0), "pid", &pid))
		v = (long)json_object_get_int64(pid);
	json_object_put(l.arr);
	return v;
}

/*
 * The daemon starts its successor (`ktlsgated --takeover`, the binary now at its path:
 * daemon/core/upgrade.h); we wait until the successor answers on the control socket
 * (it has every listener and accepts; the old process drains), or it ends (it failed:
 * the old one serves on), or --timeout.
 */
int kg_cli_upgrade(struct kg_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = { { "timeout", required_argument, NULL, 't' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	char final[KG_CONTROL_LINE_MAX] = "", *end;
	long timeout_s = 60, child, old, now;
	struct timespec tick = { .tv_nsec = 100 * 1000 * 1000 };
	int opt, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 't':
			errno = 0;
			timeout_s = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || timeout_s < 1 ||
			    timeout_s > 3600)
				return kg_cli_usage_err("upgrade: --timeout wants seconds, 1 to 3600");
			break;
		case 'h':
			fputs(kg_cli_usage_upgrade, stdout);
			return KG_EXIT_OK;
		default:
			fputs(kg_cli_usage_upgrade, stderr);
			return KG_EXIT_USAGE;
		}
	}
	if (optind != argc)
		return kg_cli_usage_err("upgrade: no arguments besides --timeout");
	if ((rc = kg_cli_setup(cli, false)) != KG_EXIT_OK)
		return rc;
	old = answering_pid(cli->control_socket);
	rc = kg_control_call(cli->control_socket, "upgrade", NULL, NULL, final, sizeof(final),
			     KG_CLI_CONTROL_TIMEOUT_MS);
	if (rc == KG_E_DENIED) {
		kg_cli_err("upgrade refused: %s", final[0] != '\0' ? final : "no reason given");
		return KG_EXIT_REFUSED;
	}
	if (rc != 0)
		return control_failed(cli, rc);
	child = strtol(final, &end, 10);
	if (child <= 0 || *end != '\0') {
		kg_cli_err("upgrade: the daemon answered '%s'", final);
		return KG_EXIT_RUNTIME;
	}
	for (long waited_ms = 0; waited_ms < timeout_s * 1000; waited_ms += 100) {
		now = answering_pid(cli->control_socket);
		if (now == child) {
			if (old > 0)
				printf("upgraded: pid %ld accepts; pid %ld drains its sessions\n",
				       child, old);
			else
				printf("upgraded: pid %ld accepts\n", child);
			return KG_EXIT_OK;
		}
		/* ESRCH: it ended and the old process reaped it (EPERM: alive, not ours). */
		if (kill((pid_t)child, 0) < 0 && errno == ESRCH) {
			kg_cli_err("upgrade failed: the successor (pid %ld) exited before it took "
				   "over; pid %ld serves on (its log says why)", child, old);
			return KG_EXIT_RUNTIME;
		}
		nanosleep(&tick, NULL);
	}
	kg_cli_err("upgrade: pid %ld did not take over within %ld s", child, timeout_s);
	return KG_EXIT_RUNTIME;
}
