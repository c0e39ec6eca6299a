/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * conf_value.h - the value words every config section spells the same way: a strict
 * unsigned in a range, a duration, and a boolean. config.c and the module sections (edge_conf.c,
 * auth_conf.c) parse theirs with these, so `yes` means the same in every section.
 * Pure (conf_value.c): no I/O, no allocation, thread-safe.
 */
#ifndef KTLSGATE_CONF_VALUE_H
#define KTLSGATE_CONF_VALUE_H

#include <stdbool.h>

#include "ktlsgate/compiler.h"

/* Decimal digits only (no sign, space or suffix), within [min, max]. 0 or -1. */
int kg_conf_uint(const char *v, unsigned min, unsigned max, unsigned *out) KG_MUST_USE;

/* A duration: decimal seconds, or digits with one unit letter s, m, h or d ("90m",
 * "24h"), in seconds within [min, max]. No sign, space or fraction. 0 or -1. */
int kg_conf_duration(const char *v, unsigned min, unsigned max, unsigned *out) KG_MUST_USE;

/* yes / on: true, no / off: false. 0 or -1 (anything else, any other case). */
int kg_conf_bool(const char *v, bool *out) KG_MUST_USE;

#endif
