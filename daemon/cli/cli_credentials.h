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
 * Make a new credential of `kind` for `slot`: *c is the stored form, *shown what the
 * device will send. basic: username (1..128 of 0x21..0x7e, checked here) and password
 * (NULL: generated). Returns KG_EXIT_OK or an exit code after one error line.
 */
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
