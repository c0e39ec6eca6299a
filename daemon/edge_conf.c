/* SPDX-License-Identifier: BSD-2-Clause */
/* edge_conf.c - parse the [edge] section (contract in edge_conf.h). */
#include <stdio.h>
#include <string.h>

#include "ktlsgate/edge_conf.h"

void kg_edge_conf_defaults(void *sec)
{
	struct kg_edge_conf *t = sec;

	memset(t, 0, sizeof(*t));
}

int kg_edge_conf_set(void *sec, const char *key, const char *value, const char *dir, char *why,
		    size_t whylen)
{
	(void)sec;
	(void)value;
	(void)dir;
	snprintf(why, whylen, "unknown key '%s' in [edge]", key);
	return -1;
}

int kg_edge_conf_validate(void *sec, const struct kg_config *cfg, char *why, size_t whylen)
{
	(void)sec;
	(void)cfg;
	(void)why;
	(void)whylen;
	return 0;
}
