/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * instance.h - one ktlsgated per registry. The daemon holds an exclusive flock(2) on
 * "REGISTRY.lock" (its pid written inside) for its whole life; a second daemon with
 * the same registry fails to take it and refuses to start, naming the holder's pid.
 * The kernel drops the lock when the process dies (kill -9 included), so a crash
 * never blocks a restart. The CLI never takes this lock.
 */
#ifndef KTLSGATE_INSTANCE_H
#define KTLSGATE_INSTANCE_H

#include <stddef.h>

#include "ktlsgate/compiler.h"

/* "REGISTRY.lock" for a file registry; "" (no lock file) for a URL registry. */
int kg_instance_lock_path(const char *registry, char *out, size_t cap) KG_MUST_USE;

/* Take the lock. Returns the fd to keep open (close it to release), -2 when the
 * registry is not a file (nothing to lock), or -1 with a message in err. */
int kg_instance_lock(const char *registry, char *err, size_t errlen);

/* A handover (handover.h): fd is the lock the previous daemon passed (SCM_RIGHTS), the
 * same open file description, so the lock is held without a gap; write our pid in it.
 * Only if it is `registry`'s lock file (the same inode): a config whose registry changed
 * must lock its own, or a third daemon could open that one beside us. Returns fd; -1
 * when fd is -1 (nothing passed) or another file's (closed, a warning logged): then take
 * the lock as usual. */
int kg_instance_lock_adopt(int fd, const char *registry);

#endif
