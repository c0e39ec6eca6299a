/* SPDX-License-Identifier: BSD-2-Clause */
/* tpm_conf.c - parse the [tpm] section (contract in tpm_conf.h). */
#include <stdio.h>
#include <string.h>

#include "ktlsgate/tpm_conf.h"

void kg_tpm_conf_defaults(void *sec)
{
	struct kg_tpm_conf *t = sec;

	memset(t, 0, sizeof(*t));
}

int kg_tpm_conf_set(void *sec, const char *key, const char *value, const char *dir, char *why,
		    size_t whylen)
{
	(void)sec;
	(void)value;
	(void)dir;
	snprintf(why, whylen, "unknown key '%s' in [tpm]", key);
	return -1;
}

int kg_tpm_conf_validate(void *sec, const struct kg_config *cfg, char *why, size_t whylen)
{
	(void)sec;
	(void)cfg;
	(void)why;
	(void)whylen;
	return 0;
}
