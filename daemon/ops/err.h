/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * err.h - error codes with a category, shared by every module.
 * Functions return 0 on success or a negative enum kg_err; kg_err_str() names it.
 */
#ifndef KTLSGATE_ERR_H
#define KTLSGATE_ERR_H

enum kg_err {
	KG_OK = 0,
	KG_E_AGAIN = -1,     /* would block: wait for the fd / timer */
	KG_E_CLOSED = -2,    /* peer left */
	KG_E_PROTO = -3,     /* peer sent garbage: audit it */
	KG_E_DENIED = -4,    /* policy said no */
	KG_E_RESOURCE = -5,  /* fd, memory, limit */
	KG_E_INTERNAL = -6,  /* our bug */
	KG_E_NOTFOUND = -7,  /* no such row / name */
	KG_E_EXISTS = -8,    /* already there */
	KG_E_INVALID = -9,   /* bad argument / input */
	KG_E_IO = -10,       /* disk or socket I/O failed (see errno) */
	KG_E_CORRUPT = -11,  /* a file is not what it should be */
	KG_E_BUSY = -12,     /* another process holds the lock (registry): retry later */
	KG_E_MIN = -13
};

const char *kg_err_str(int err);

#endif
