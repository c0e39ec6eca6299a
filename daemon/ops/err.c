/* SPDX-License-Identifier: BSD-2-Clause */
/* err.c - names for enum kg_err. */
#include "ops/err.h"

static const char *const err_names[] = {
	[0] = "ok",
	[-KG_E_AGAIN] = "would block",
	[-KG_E_CLOSED] = "peer closed",
	[-KG_E_PROTO] = "protocol error",
	[-KG_E_DENIED] = "denied",
	[-KG_E_RESOURCE] = "out of resources",
	[-KG_E_INTERNAL] = "internal error",
	[-KG_E_NOTFOUND] = "not found",
	[-KG_E_EXISTS] = "already exists",
	[-KG_E_INVALID] = "invalid argument",
	[-KG_E_IO] = "I/O error",
	[-KG_E_CORRUPT] = "corrupt or foreign data",
	[-KG_E_BUSY] = "locked by another process",
};

const char *kg_err_str(int err)
{
	if (err > 0 || err <= KG_E_MIN)
		return "unknown error";
	return err_names[-err];
}
