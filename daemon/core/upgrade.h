/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * upgrade.h - `ktlsgate upgrade` (control verb `upgrade`, issue 14): the running daemon
 * starts its own successor, `ktlsgated --takeover -c CONFIG`, from the binary's path as
 * it was when this process started (a package upgrade has put the new binary there).
 * Started by the daemon, the successor is in its cgroup, under its user, sandbox and
 * kept capabilities (caps.h), so under systemd it is part of the service; once it
 * accepts, the old process names it systemd's main pid (MAINPID=, handover.c) and
 * drains. From the exec on it is an ordinary takeover (handover.h); a successor that
 * fails exits, this process reaps it (SIGCHLD) and serves on.
 * Main thread only.
 */
#ifndef KTLSGATE_UPGRADE_H
#define KTLSGATE_UPGRADE_H

#include <stddef.h>
#include <sys/types.h>

#include "ktlsgate/compiler.h"

struct kg_daemon;

/* At start: remember the path of our own binary (/proc/self/exe now: later it may name
 * a deleted file). Nothing to free. */
void kg_upgrade_init(struct kg_daemon *d);

/* Start the successor. 0 with its pid in *pid, or -1 with why in err (one is already
 * running, a handover is under way, this process is itself draining, no binary path,
 * fork failed). */
int kg_upgrade_spawn(struct kg_daemon *d, pid_t *pid, char *err, size_t errlen) KG_MUST_USE;

/* SIGCHLD: collect every child that ended; log the successor's end if it ended before
 * it took over (that is a failed upgrade: this process still serves). */
void kg_upgrade_reap(struct kg_daemon *d);

#endif
