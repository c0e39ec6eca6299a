/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * caps.h - drop the capabilities the daemon no longer needs once it is up (issue 12).
 *
 * Called once by main after everything privileged is done: listeners and /metrics
 * bound (CAP_NET_BIND_SERVICE for a port < 1024), the XDP gate loaded and attached and
 * steering registered (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON), the TPM opened (a device
 * file: no capability). What stays is the caller's `keep` mask; everything else leaves
 * the permitted, effective, inheritable and ambient sets (a kept one that came ambient
 * stays ambient: `ktlsgate upgrade`'s successor needs it), and the bounding set shrinks to `keep` when the process may change it (CAP_SETPCAP: root).
 * Capabilities are per thread: the change is made in every thread that exists (the
 * registry writer, the gate's link thread, /metrics), each by itself on a signal, and
 * every thread's /proc status is checked afterwards. A process that holds no
 * capability (a non-root user, the unit without drop-ins) is left as it is.
 * Pure parts (parse, name, target) are unit-tested in tests/unit/check_caps.c.
 */
#ifndef KTLSGATE_CAPS_H
#define KTLSGATE_CAPS_H

#include <stddef.h>
#include <stdint.h>

#define KG_CAP(c) (UINT64_C(1) << (c))
/* The numbers, so old kernel headers (no CAP_BPF/CAP_PERFMON) still build. */
enum {
	KG_CAP_SETPCAP = 8,
	KG_CAP_NET_BIND_SERVICE = 10,
	KG_CAP_NET_ADMIN = 12,
	KG_CAP_PERFMON = 38,
	KG_CAP_BPF = 39,
};

/* One thread's sets, as /proc/PID/task/TID/status shows them (Cap* lines). */
struct kg_caps {
	uint64_t inh, prm, eff, bnd, amb;
};

/* Parse the CapInh/CapPrm/CapEff/CapBnd/CapAmb lines of a status file's text.
 * 0, or -1 when one of the five is missing or not hex. Pure. */
int kg_caps_parse_status(const char *text, struct kg_caps *out);
/* "cap_bpf cap_net_admin" (lower case, by number), "none" for 0. Pure; always
 * NUL-terminates; returns the length it needed (snprintf's convention). */
size_t kg_caps_names(uint64_t mask, char *buf, size_t cap);
/* The sets a thread holding `now` ends with when it keeps `keep`: permitted and
 * effective = held & keep; ambient = what was ambient & held & keep, inheritable the
 * same (so a successor exec'd by `ktlsgate upgrade` starts with what this process
 * kept, and nothing more); bounding & keep only when `now` has CAP_SETPCAP effective
 * (else the bounding set cannot change). Pure. */
void kg_caps_target(const struct kg_caps *now, uint64_t keep, struct kg_caps *out);

/*
 * Keep only `keep` in every thread of the process. `why` names what the kept ones are
 * for (logged with them). Logs one line. 0: done, or nothing held (no-op); -1: a thread
 * could not be changed (err says which): the caller refuses to run with more than it
 * meant to keep.
 */
int kg_caps_drop(uint64_t keep, const char *why, char *err, size_t errlen);

#endif
