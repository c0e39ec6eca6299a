/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * steer.h - worker steering: an SK_REUSEPORT program (bpf/steer.bpf.c) over a
 * REUSEPORT_SOCKARRAY picks the worker for each new connection, by flow hash or as
 * the worker with the fewest handshakes in flight, instead of the kernel's plain
 * hash. The daemon registers each worker's listening socket once (main thread, at
 * start); workers then report handshakes begun/ended (any thread, lock-free: an
 * atomic add on the mmapped load array the program reads). When the program cannot
 * be loaded the caller keeps the kernel's own spreading: nothing else changes.
 */
#ifndef KTLSGATE_STEER_H
#define KTLSGATE_STEER_H

#include <stddef.h>

#include "ktlsgate/compiler.h"

enum kg_steer_mode { KG_STEER_HASH, KG_STEER_LEAST_LOADED };

struct kg_steer;

/* Load the program for n_workers (1..64). NULL with why on failure (no CAP_BPF...). */
struct kg_steer *kg_steer_new(enum kg_steer_mode mode, unsigned n_workers, char *why,
			      size_t whylen);
void kg_steer_free(struct kg_steer *s);

/*
 * Register worker's listening socket of listen address number `group` (0..15; every
 * worker's socket for one address is in one SO_REUSEPORT group). The first socket of
 * a group also attaches the program to the group. Call after bind(), before or after
 * listen(). Returns 0 or -1 with why.
 */
int kg_steer_add(struct kg_steer *s, unsigned group, unsigned worker, int listen_fd, char *why,
		 size_t whylen) KG_MUST_USE;

/* A handshake began (+1) or ended (-1) on worker: feeds least-loaded steering. */
void kg_steer_load_add(struct kg_steer *s, unsigned worker, int delta);

#endif
