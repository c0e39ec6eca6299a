/* SPDX-License-Identifier: BSD-2-Clause */
/* auth_conf.c - parse the [auth] section (contract in auth_conf.h). */
#include <stdio.h>
#include <string.h>

#include "ops/conf_value.h"
#include "auth/auth_conf.h"
#include "policy/credential.h"

void kg_auth_conf_defaults(void *sec)
{
	struct kg_auth_conf *a = sec;

	memset(a, 0, sizeof(*a));
	a->kdf_threads = 1;
	a->kdf_queue = 64;
	a->failure_burst = 10;
	a->failure_refill_ms = 6000;
	a->failure_track = 4096;
}

static const struct {
	const char *key;
	size_t off;
	unsigned min, max;
} uints[] = {
	/* 10 years at most: a longer limit is no limit, say 0. */
	{ "sas_max_ttl", offsetof(struct kg_auth_conf, sas_max_ttl), 0, 315360000 },
	/* Each thread may hold 128 MiB (the scrypt memory bound) while it works. */
	{ "kdf_threads", offsetof(struct kg_auth_conf, kdf_threads), 1, 64 },
	{ "kdf_queue", offsetof(struct kg_auth_conf, kdf_queue), 1, 65536 },
	{ "failure_burst", offsetof(struct kg_auth_conf, failure_burst), 1, 1000000 },
	{ "failure_refill_ms", offsetof(struct kg_auth_conf, failure_refill_ms), 1, 86400000 },
	{ "failure_track", offsetof(struct kg_auth_conf, failure_track), 64, 1u << 22 },
};

int kg_auth_conf_set(void *sec, const char *key, const char *value, const char *dir, char *why,
		     size_t whylen)
{
	struct kg_auth_conf *a = sec;

	(void)dir;
	a->present = true;
	for (size_t i = 0; i < sizeof(uints) / sizeof(uints[0]); i++) {
		if (strcmp(key, uints[i].key) != 0)
			continue;
		if (kg_conf_uint(value, uints[i].min, uints[i].max,
			    (unsigned *)((char *)a + uints[i].off)) < 0) {
			snprintf(why, whylen, "[auth] %s: '%s' is not an integer in %u..%u", key,
				 value, uints[i].min, uints[i].max);
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "x509_only") == 0) {
		if (kg_conf_bool(value, &a->x509_only) < 0) {
			snprintf(why, whylen, "[auth] x509_only: '%s' is not yes or no", value);
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "sas_hub") == 0) {
		/* Empty is the default spelled out: take the user name's hub. */
		if (value[0] != '\0' && !kg_host_ok(value, strlen(value))) {
			snprintf(why, whylen,
				 "[auth] sas_hub: '%.64s' is not a host name (letters, digits, '-', '.')",
				 value);
			return -1;
		}
		snprintf(a->sas_hub, sizeof(a->sas_hub), "%s", value);
		return 0;
	}
	snprintf(why, whylen, "unknown key '%s' in [auth]", key);
	return -1;
}

int kg_auth_conf_validate(void *sec, const struct kg_config *cfg, char *why, size_t whylen)
{
	const struct kg_auth_conf *a = sec;

	(void)cfg;
	/* The limiter's table is set-associative (auth_limit.c): fewer entries than one
	 * set's ways would leave it without a whole set. Bounds already hold that. */
	if (a->failure_track < 64) {
		snprintf(why, whylen, "[auth] failure_track below 64");
		return -1;
	}
	return 0;
}
