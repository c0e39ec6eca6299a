/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * auth_pool.h - the threads that run password checks (scrypt, auth_check.h's jobs), so
 * a worker's event loop never spends a KDF's tenth of a second.
 *
 * N threads, one bounded queue of waiting jobs: submit says queued or full (the caller
 * refuses the CONNECT with "server unavailable", reason auth_overload). Each result goes
 * back to the worker that submitted it: a per-worker completion list and an eventfd the
 * worker polls (kg_auth_pool_fd()); on readiness it calls kg_auth_pool_pop().
 * A job is known by the worker's own tag (e.g. connection id and generation), never a
 * pointer: a connection closed before its result came calls kg_auth_pool_cancel(): a
 * waiting job is dropped unrun, a running one's result is dropped, a finished one
 * removed. A worker that does not cancel must still ignore a tag it no longer knows.
 * Passwords are copied into the pool and wiped (OPENSSL_cleanse) when the job ends.
 * Threads and the worker count are fixed for the pool's life (a reload keeps them).
 */
#ifndef KTLSGATE_AUTH_POOL_H
#define KTLSGATE_AUTH_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "ktlsgate/compiler.h"
#include "auth/auth_check.h"

struct kg_auth_pool;

struct kg_auth_done {
	uint64_t tag;                 /* as submitted */
	struct kg_auth_result res;    /* status OK or REFUSED */
	uint64_t kdf_ns;              /* the thread's time on it (for a histogram) */
};

struct kg_auth_pool_stats {
	uint64_t queued;              /* gauge: jobs waiting */
	uint64_t running;             /* gauge: jobs on a thread */
	uint64_t submitted;           /* counters from here */
	uint64_t rejected;            /* refused: queue full */
	uint64_t completed;           /* results a worker popped */
	uint64_t cancelled;           /* dropped: their worker cancelled them */
	uint64_t kdf_ns;              /* total thread time in jobs */
};

/* threads >= 1, queue_cap >= 1, workers >= 1 (each gets a completion list and an
 * eventfd). 0 or a negative kg_err (KG_E_RESOURCE: threads, eventfds, memory). */
int kg_auth_pool_new(unsigned threads, unsigned queue_cap, unsigned workers,
		     struct kg_auth_pool **out) KG_MUST_USE;
/* Stop the threads (a running job finishes first), wipe and free everything. */
void kg_auth_pool_free(struct kg_auth_pool *p);

/* The eventfd (nonblocking, close-on-exec) worker `worker` adds to its epoll: readable
 * while its completion list is not empty. Owned by the pool. */
int kg_auth_pool_fd(struct kg_auth_pool *p, unsigned worker);

/* Queue job for `worker` under `tag`. The pool copies it; the caller's copy is wiped
 * either way. 0: queued; KG_E_BUSY: the queue is full (the job's limiter token given
 * back: it was not judged); KG_E_INVALID: no such worker. Any thread. */
int kg_auth_pool_submit(struct kg_auth_pool *p, unsigned worker, uint64_t tag,
			struct kg_auth_job *job) KG_MUST_USE;

/* Up to max finished results of `worker`, oldest first; resets its eventfd when its
 * list is empty. Call from that worker's thread. */
size_t kg_auth_pool_pop(struct kg_auth_pool *p, unsigned worker, struct kg_auth_done *out,
			size_t max);

/* Forget `tag` of `worker`: see above. Returns 1 if something was dropped, else 0. */
int kg_auth_pool_cancel(struct kg_auth_pool *p, unsigned worker, uint64_t tag);

void kg_auth_pool_stats(struct kg_auth_pool *p, struct kg_auth_pool_stats *out);

#endif
