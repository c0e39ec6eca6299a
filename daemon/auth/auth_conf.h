/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Part auth (daemon/auth/): the CONNECT credential check of issue 15 (SAS tokens, access
 * tokens, user name + password) for devices without a client certificate. auth_conf
 * (the [auth] section, this header), auth_check (the decision: a fast step on the
 * worker, a scrypt job for passwords), auth_pool (the threads that run those jobs),
 * auth_limit (the brute-force limiter every worker shares).
 * Uses policy (the pure credential parsers, reasons), registry, mqtt (CONNACK codes) and
 * ops; core calls it. Formats and decisions: docs/credentials.md.
 */
/*
 * auth_conf.h - the [auth] section of ktlsgate.conf. Parsed by auth_conf.c through
 * config.c's section table (config.c adds file and line to messages and rejects
 * duplicate keys). Plain data, so config.h can embed it. Keys and defaults:
 * docs/config.md "[auth]".
 */
#ifndef KTLSGATE_AUTH_CONF_H
#define KTLSGATE_AUTH_CONF_H

#include <stdbool.h>
#include <stddef.h>

struct kg_config;

#define KG_AUTH_HUB_MAX 253           /* a DNS name, as credential.h's KG_HOST_MAX */

struct kg_auth_conf {
	bool present;                     /* the file sets at least one [auth] key */
	char sas_hub[KG_AUTH_HUB_MAX + 1];/* host a SAS resource must name; "": the user
					   * name's hub (default "") */
	unsigned sas_max_ttl;             /* s; refuse SAS tokens expiring later than now +
					   * this; 0: no limit (default 0) */
	unsigned kdf_threads;             /* scrypt threads (default 1) */
	unsigned kdf_queue;               /* password checks waiting; full: refused (64) */
	unsigned failure_burst;           /* failures allowed at once per device id or
					   * source prefix (default 10) */
	unsigned failure_refill_ms;       /* one failure forgiven per this many ms (6000) */
	unsigned failure_track;           /* ids and prefixes the limiter remembers (4096) */
	bool x509_only;                   /* refuse every credential but a certificate (no) */
};

void kg_auth_conf_defaults(void *sec);
/* One "key = value" of [auth]. Returns 0, or -1 with a reason in why (no file or line:
 * the caller adds them). dir is unused (no paths in this section). */
int kg_auth_conf_set(void *sec, const char *key, const char *value, const char *dir, char *why,
		     size_t whylen);
/* After the whole file. 0, or -1 with why. */
int kg_auth_conf_validate(void *sec, const struct kg_config *cfg, char *why, size_t whylen);

#endif
