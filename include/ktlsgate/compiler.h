/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * compiler.h - attributes and tiny helpers shared by every module.
 * No state, no includes beyond the C library.
 */
#ifndef KTLSGATE_COMPILER_H
#define KTLSGATE_COMPILER_H

#include <stddef.h>

#define KG_MUST_USE __attribute__((warn_unused_result))
#define KG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define KG_UNUSED __attribute__((unused))
#define KG_NITEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Copy a NUL-terminated string into a fixed buffer; returns -1 if it does not fit. */
static inline int kg_strlcpy(char *dst, const char *src, size_t cap)
{
	size_t i;

	for (i = 0; i + 1 < cap && src[i] != '\0'; i++)
		dst[i] = src[i];
	if (cap > 0)
		dst[i] = '\0';
	return src[i] == '\0' ? 0 : -1;
}

#endif
