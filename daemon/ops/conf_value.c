/* SPDX-License-Identifier: BSD-2-Clause */
/* conf_value.c - see conf_value.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ops/conf_value.h"

int kg_conf_uint(const char *v, unsigned min, unsigned max, unsigned *out)
{
	unsigned long n;
	char *end;

	if (*v < '0' || *v > '9')
		return -1;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < min || n > max)
		return -1;
	*out = (unsigned)n;
	return 0;
}

int kg_conf_bool(const char *v, bool *out)
{
	if (strcmp(v, "yes") == 0 || strcmp(v, "on") == 0)
		*out = true;
	else if (strcmp(v, "no") == 0 || strcmp(v, "off") == 0)
		*out = false;
	else
		return -1;
	return 0;
}

int kg_conf_duration(const char *text, unsigned min, unsigned max, unsigned *out)
{
	unsigned long long v = 0, unit = 1;
	size_t i;

	/* Digits only, then at most one unit letter: no sign, space or fraction. */
	for (i = 0; text[i] >= '0' && text[i] <= '9'; i++) {
		v = v * 10 + (unsigned long long)(text[i] - '0');
		if (v > max)
			return -1;
	}
	if (i == 0)
		return -1;
	switch (text[i]) {
	case '\0': break;
	case 's': unit = 1; break;
	case 'm': unit = 60; break;
	case 'h': unit = 3600; break;
	case 'd': unit = 86400; break;
	default: return -1;
	}
	if (text[i] != '\0' && text[i + 1] != '\0')
		return -1;
	v *= unit;
	if (v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}
