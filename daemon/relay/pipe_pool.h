/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pipe_pool.h - the splice relay's pipes, per worker (HAProxy's maxpipes idea): a
 * session borrows a pipe only while bytes are in flight in one direction and gives
 * it back as soon as it is empty, so an idle offloaded session holds no pipe (two
 * fds, not six). Up to `keep` empty pipes are kept for reuse; a pipe returned with
 * bytes still in it is closed, never reused. Owned by one worker thread.
 */
#ifndef KTLSGATE_PIPE_POOL_H
#define KTLSGATE_PIPE_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"

struct kg_pipe {
	int rd, wr;
	uint32_t len;            /* bytes in the pipe (spliced in, not yet out) */
	uint32_t cap;            /* the pipe's capacity (F_GETPIPE_SZ) */
	struct kg_pipe *next;    /* free list */
};

struct kg_pipe_pool {
	struct kg_pipe *free;
	size_t n_free, n_out;    /* kept for reuse, lent to sessions */
	size_t keep;             /* most empty pipes kept */
};

void kg_pipe_pool_init(struct kg_pipe_pool *pool, size_t keep);
/* An empty pipe (non-blocking both ends), or NULL with errno (EMFILE...). */
struct kg_pipe *kg_pipe_get(struct kg_pipe_pool *pool) KG_MUST_USE;
/* Give p back (NULL is fine). */
void kg_pipe_put(struct kg_pipe_pool *pool, struct kg_pipe *p);
void kg_pipe_pool_fini(struct kg_pipe_pool *pool);

#endif
