/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * backend.h - the connection to the broker: non-blocking connect with a deadline
 * (the conn's BACKEND_CONNECT state), completion check.
 */
#ifndef KTLSGATE_BACKEND_H
#define KTLSGATE_BACKEND_H

#include "ktlsgate/compiler.h"
#include "ops/config.h"

/* Start a non-blocking connect. Returns the fd (connecting or connected) or -1. */
int kg_backend_connect_start(const struct kg_backend_conf *b) KG_MUST_USE;
/* After the fd turned writable: 0 connected, -1 failed (errno set). */
int kg_backend_connect_finish(int fd) KG_MUST_USE;

#endif
