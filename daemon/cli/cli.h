/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Part cli (daemon/cli/): the `ktlsgate` admin CLI. cli.c (options, noun dispatch,
 * helpers, this header), one cli_NOUN.c per command family, control_client.c (the
 * admin socket's client), pki.c (the PKI for tests and demos; pki.h).
 * Way in: cli.c's main(). Uses registry, tls (offline verify), tpm, edge (`block`),
 * policy and ops; the daemon uses nothing of it (pki.c and control_client.c are in
 * libkg for the tests and the bench).
 */
/*
 * cli.h - private to the `ktlsgate` admin CLI (daemon/cli/cli*.c): the invocation context
 * shared by the command files, the exit codes scripts rely on, and small helpers
 * (one-line errors, registry/config/control access, parsing). Not part of libkg.
 * Single-threaded; nothing here is used by the daemon.
 */
#ifndef KTLSGATE_CLI_H
#define KTLSGATE_CLI_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>
#include <openssl/x509.h>

#include "ktlsgate/compiler.h"
#include "ops/config.h"
#include "registry/registry.h"

/* Exit codes (documented in docs/cli.md; scripts depend on them). */
enum kg_cli_exit {
	KG_EXIT_OK = 0,
	KG_EXIT_USAGE = 1,    /* bad or missing arguments, unknown command, bad values */
	KG_EXIT_REFUSED = 2,  /* not found, refused, verification failed */
	KG_EXIT_RUNTIME = 3,  /* I/O, corrupt registry, daemon unreachable, other */
};

#define KG_CLI_DEFAULT_CONFIG "/etc/ktlsgate/ktlsgate.conf"
#define KG_CLI_DEFAULT_CONTROL "/run/ktlsgate/control.sock"
#define KG_CLI_CONTROL_TIMEOUT_MS 5000

struct kg_cli {
	const char *config_path;        /* -c, or the default */
	const char *registry_override;  /* -r, NULL if not given */
	struct kg_config *cfg;          /* heap; file values or kg_config_defaults() */
	bool cfg_from_file;             /* cfg was loaded from config_path */
	char registry[PATH_MAX];        /* resolved registry location (path or URI) */
	char registry_shown[PATH_MAX];  /* the same for messages: a URI's password as "***" */
	char control_socket[PATH_MAX];  /* resolved control socket path */
};

/* Print "ktlsgate: <message>" as exactly one line on stderr (newlines and control
 * bytes in the message become spaces). */
void kg_cli_err(const char *fmt, ...) KG_PRINTF(1, 2);
/* kg_cli_err() and return KG_EXIT_USAGE. */
int kg_cli_usage_err(const char *fmt, ...) KG_PRINTF(1, 2);
/* A DEVICE_ID argument of `cmd`: KG_EXIT_OK if it is a device id (kg_identity_valid()),
 * else one "CMD: bad device id 'ID'" line and KG_EXIT_USAGE. */
int kg_cli_check_device_id(const char *cmd, const char *id);
/*
 * A registry LOCATION given on the command line (-r, `registry copy --from/--to`):
 * "sqlite:PATH" or a plain PATH (the SQLite store; the prefix is dropped), or a
 * "postgresql://" / "postgres://" URI (kept as is). Another "scheme://" is refused:
 * one usage line naming `what`, password redacted, and KG_EXIT_USAGE.
 */
int kg_cli_location(const char *what, const char *arg, char *out, size_t cap);
/* Map a negative enum kg_err to an exit code. */
int kg_cli_exit_for(int err);

/*
 * Resolve config, registry and control socket. need_registry: the command needs the
 * registry path, so without -r the config file must load. A missing config file is
 * otherwise tolerated (defaults); a config file that exists but is invalid is an error.
 * Returns KG_EXIT_OK or an exit code (message printed).
 */
int kg_cli_setup(struct kg_cli *cli, bool need_registry);

/* Open the registry. must_exist: refuse (exit 3) instead of creating a missing file.
 * Returns KG_EXIT_OK or an exit code (message printed). */
/* After kg_cli_setup(): is backend `b` ("" or NULL: none named, fine) configured in
 * the config file? Else one line naming the configured ones and KG_EXIT_REFUSED. With
 * no config file (-r only) nothing can be checked: a warning, and KG_EXIT_OK. */
int kg_cli_check_backend_configured(const struct kg_cli *cli, const char *cmd, const char *b);
int kg_cli_open_registry(struct kg_cli *cli, enum kg_registry_mode mode, bool must_exist,
			 struct kg_registry **out);
/* kg_registry_open() on a location (no file check): 0, or the negative kg_err after
 * one line naming the location (password redacted) and the store's reason. */
int kg_cli_open_location(const char *loc, enum kg_registry_mode mode, struct kg_registry **out);

/*
 * Tell the daemon "verb arg" after a registry write. Returns 0 with text set to
 * "closed N live sessions", 1 with text "daemon not running", or KG_EXIT_RUNTIME
 * after printing why the daemon did not apply it.
 */
int kg_cli_notify(const struct kg_cli *cli, const char *verb, const char *arg, char *text,
		  size_t cap);

/* Strict integer parse of the whole string within [min, max]. */
int kg_cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) KG_MUST_USE;
/* Thumbprint: 64 hex digits, or 32 colon-separated hex pairs; written lowercase. */
int kg_cli_parse_thumb(const char *s, char out[KG_SHA256_HEX_LEN + 1]) KG_MUST_USE;
/* CA and backend names: 1..63 of [A-Za-z0-9._-] (they travel in control lines). */
bool kg_cli_name_valid(const char *s);
/* UTC "YYYY-MM-DDTHH:MM:SSZ", or "never" for 0. */
void kg_cli_fmt_time(int64_t t, char *buf, size_t cap);
/* An ASN1_TIME as unix seconds; 0 if it cannot be converted. */
int64_t kg_cli_asn1_time(const ASN1_TIME *t);
/* Print a json-c value pretty on stdout with a final newline; releases it. */
void kg_cli_json_print(struct json_object *o);
/* json-c string, or JSON null for "" (unset fields). */
struct json_object *kg_cli_json_str_or_null(const char *s);

/* getopt_long() returned '?' or ':' (optstring starts with ':', opterr = 0): print
 * one line naming the option and return KG_EXIT_USAGE. */
int kg_cli_bad_option(int c, char **argv, const char *cmd);
/* "--help", "-h" or "help". */
bool kg_cli_is_help(const char *arg);

/* A verb of a noun: argv[0] is the verb; getopt_long() starts over (optind = 0). */
struct kg_cli_verb {
	const char *name;
	int (*fn)(struct kg_cli *cli, int argc, char **argv);
};
/* argv[0] is the noun, argv[1] the verb; handles missing/unknown verbs and --help. */
int kg_cli_dispatch(struct kg_cli *cli, int argc, char **argv, const struct kg_cli_verb *verbs,
		    const char *usage);

/* Fill ca->sha256, subject, not_after and (if NULL) pem (malloc) from x. 0 or -1. */
int kg_cli_ca_from_cert(X509 *x, struct kg_ca *ca) KG_MUST_USE;

/* Commands: argv[0] is the noun; each returns an exit code. */
int kg_cli_pki(struct kg_cli *cli, int argc, char **argv);
int kg_cli_ca(struct kg_cli *cli, int argc, char **argv);
int kg_cli_device(struct kg_cli *cli, int argc, char **argv);
int kg_cli_verify(struct kg_cli *cli, int argc, char **argv);
int kg_cli_session(struct kg_cli *cli, int argc, char **argv);
int kg_cli_tpm(struct kg_cli *cli, int argc, char **argv);     /* cli_tpm.c */
int kg_cli_block(struct kg_cli *cli, int argc, char **argv);   /* cli_block.c */
int kg_cli_status(struct kg_cli *cli, int argc, char **argv);
int kg_cli_reload(struct kg_cli *cli, int argc, char **argv);  /* cli_session.c */
int kg_cli_upgrade(struct kg_cli *cli, int argc, char **argv); /* cli_session.c */
/* `device import` (cli_import.c); argv[0] is the verb. */
int kg_cli_device_import(struct kg_cli *cli, int argc, char **argv);
int kg_cli_reasons(struct kg_cli *cli, int argc, char **argv); /* cli_reasons.c */
int kg_cli_registry(struct kg_cli *cli, int argc, char **argv); /* cli_registry.c */

/* Usage text per noun (kept in sync with docs/cli.md). */
extern const char kg_cli_usage_pki[];
extern const char kg_cli_usage_ca[];
extern const char kg_cli_usage_device[];
extern const char kg_cli_usage_verify[];
extern const char kg_cli_usage_session[];
extern const char kg_cli_usage_status[];
extern const char kg_cli_usage_tpm[];
extern const char kg_cli_usage_reasons[];
extern const char kg_cli_usage_reload[];
extern const char kg_cli_usage_upgrade[];
extern const char kg_cli_usage_block[];
extern const char kg_cli_usage_registry[];

#endif
