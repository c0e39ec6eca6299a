/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cli_credentials.h - private to the CLI: the secrets of `device add --auth
 * sas|token|basic` and `device credentials` (cli_credentials.c), shared with
 * cli_device.c. Secrets are made here (RAND_bytes, SHA-256, scrypt on OpenSSL) in the
 * stored forms of docs/credentials.md, checked with the pure parsers of
 * policy/credential.h, and printed once; show/list get a summary without them.
 */
#ifndef KTLSGATE_CLI_CREDENTIALS_H
#define KTLSGATE_CLI_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "registry/registry.h"

/* The longest secret shown to an operator: a password read from stdin. */
#define KG_CLI_PASSWORD_MAX 1024
#define KG_CLI_PASSWORD_MIN 8

/* A secret as the device will send it, shown once: its label in text output and JSON
 * ("key", "token", "password") and the value. */
struct kg_cli_secret {
	const char *label;
	char value[KG_CLI_PASSWORD_MAX + 1];
};

/* `--auth WORD`: x509 (the registry's "ca"), thumbprint, sas, token, basic. 0 or -1. */
int kg_cli_auth_parse(const char *s, enum kg_attestation *out) KG_MUST_USE;
/* The CLI's word for a kind ("x509" for ca). */
const char *kg_cli_auth_str(enum kg_attestation a);

/*
 * Read a password for --password-stdin: one line (its newline dropped), KG_CLI_PASSWORD_MIN
 * ..MAX bytes, no NUL. Returns KG_EXIT_OK or an exit code after one error line.
 */
int kg_cli_read_password(const char *cmd, char out[KG_CLI_PASSWORD_MAX + 1]);

/*
 * What a `device add` command line or a `device import` line asks for: the kind
 * (auth), and which of the options (columns) beside it are given. One set of rules for
 * both, so they cannot drift apart.
 */
struct kg_cli_auth_req {
	bool has_auth;               /* --auth / the auth column given */
	enum kg_attestation auth;
	bool pinned;                 /* a thumbprint or a cert given */
	bool username;               /* --username / the username column */
	bool password;               /* --password-stdin (device add): basic only */
	bool secret;                 /* the secret column (import): sas, token, basic */
	bool secondary_secret;       /* the secondary_secret column (import): sas, beside secret */
};

/*
 * The device's kind: auth if given (thumbprint only with a pinned leaf, others only
 * without), else thumbprint when pinned, else x509 (ca); then the options that go with
 * it. opt prefixes names in messages ("--" for options, "" for import's columns).
 * 0, or -1 with a sentence in why.
 */
int kg_cli_auth_resolve(const struct kg_cli_auth_req *q, const char *opt, enum kg_attestation *out,
			char *why, size_t cap);

/*
 * The checks of a secret kind's inputs before anything is made: basic's user name
 * (1..128 of 0x21..0x7e); a given secret (NULL: one will be generated) in the form the
 * device will send: sas a key (padded base64 of 16..64 bytes), token an access token
 * (kg_token_ok), basic a password (KG_CLI_PASSWORD_MIN..MAX bytes). opt as above.
 * KG_EXIT_OK, or KG_EXIT_USAGE with a sentence in why.
 */
int kg_cli_cred_check(enum kg_attestation kind, const char *username, const char *given,
		      const char *opt, char *why, size_t cap);

/*
 * Make a new credential of `kind` for `slot` from the given secret (NULL: generated):
 * *c is the stored form (sas: the key; token: its SHA-256 hex; basic: scrypt PHC with
 * username), *shown what the device will send. Checks with kg_cli_cred_check first.
 * Safe to call from several threads at once (import hashes in parallel). Returns
 * KG_EXIT_OK, or an exit code with a sentence in why; prints nothing.
 */
int kg_cli_cred_build(enum kg_attestation kind, enum kg_cred_slot slot, const char *username,
		      const char *given, struct kg_credential *c, struct kg_cli_secret *shown,
		      char *why, size_t cap);

/* kg_cli_cred_build() for `device add` and `--rotate`: a problem is one error line
 * "ktlsgate: CMD: ..." naming the options ("--username ..."). password: basic's, or
 * NULL (generated). */
int kg_cli_cred_make(const char *cmd, enum kg_attestation kind, enum kg_cred_slot slot,
		     const char *username, const char *password, struct kg_credential *c,
		     struct kg_cli_secret *shown);

/* A new secret as `device add` and `--rotate` show it, once: text lines "username: U"
 * (basic) and "LABEL: VALUE", the label slot-prefixed for sas ("secondary-key: ...");
 * or, into the JSON object o, "slot", "username" (null but for basic) and LABEL. */
void kg_cli_secret_print(const struct kg_credential *c, const struct kg_cli_secret *shown);
void kg_cli_secret_json_add(struct json_object *o, const struct kg_credential *c,
			    const struct kg_cli_secret *shown);

/* Wipe a secret from memory once it is printed. */
void kg_cli_secret_wipe(struct kg_cli_secret *s);

/* Kinds, slots, user names and times of a device's credentials as a JSON array, never
 * a secret or a hash (NULL when out of memory). */
struct json_object *kg_cli_cred_summary_json(const struct kg_credential *c, size_t n);

/* `device credentials ID [--json] [--rotate [--slot S] [--password-stdin]]`. */
int kg_cli_device_credentials(struct kg_cli *cli, int argc, char **argv);

#endif
