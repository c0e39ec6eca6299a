/* SPDX-License-Identifier: BSD-2-Clause */
/* pipe_pool.c - per-worker splice pipes (contract in pipe_pool.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "relay/pipe_pool.h"

void kg_pipe_pool_init(struct kg_pipe_pool *pool, size_t keep)
{
	pool->free = NULL;
	pool->n_free = pool->n_out = 0;
	pool->keep = keep;
}

static void pipe_destroy(struct kg_pipe *p)
{
	close(p->rd);
	close(p->wr);
	free(p);
}

struct kg_pipe *kg_pipe_get(struct kg_pipe_pool *pool)
{
	struct kg_pipe *p = pool->free;
	int fds[2], sz, saved;

	if (p != NULL) {
		pool->free = p->next;
		pool->n_free--;
		goto out;
	}
	p = malloc(sizeof(*p));
	if (p == NULL)
		return NULL;
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		saved = errno;
		free(p);
		errno = saved;
		return NULL;
	}
	p->rd = fds[0];
	p->wr = fds[1];
	sz = fcntl(p->wr, F_GETPIPE_SZ);
	/* 16 pages unless the admin changed it; a failed query keeps a safe guess. */
	p->cap = sz > 0 ? (uint32_t)sz : 4096u;
out:
	p->len = 0;
	p->next = NULL;
	pool->n_out++;
	return p;
}

void kg_pipe_put(struct kg_pipe_pool *pool, struct kg_pipe *p)
{
	if (p == NULL)
		return;
	pool->n_out--;
	if (p->len != 0 || pool->n_free >= pool->keep) {
		pipe_destroy(p);   /* stale bytes must never reach another session */
		return;
	}
	p->next = pool->free;
	pool->free = p;
	pool->n_free++;
}

void kg_pipe_pool_fini(struct kg_pipe_pool *pool)
{
	while (pool->free != NULL) {
		struct kg_pipe *p = pool->free;

		pool->free = p->next;
		pipe_destroy(p);
	}
	pool->n_free = 0;
}
