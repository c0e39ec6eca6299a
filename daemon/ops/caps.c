/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * caps.c - keep only the capabilities the running daemon needs, in every thread.
 *
 * capset(2) and the ambient/bounding prctl(2)s change the calling thread only, and
 * glibc broadcasts setuid-family calls but not these. The registry writer, the XDP
 * gate's link thread and libmicrohttpd's thread already run when main drops, each
 * with the capabilities main had when it made them; a thread that kept them would
 * keep them for the whole process (one address space). So main applies the change to
 * itself, then signals each other thread, whose handler applies the same change with
 * raw syscalls (async-signal-safe) and counts itself done; then every thread's status
 * is read back and compared, up to four rounds (a thread made meanwhile by an
 * unchanged parent is caught by the next round). This is what libcap's libpsx does;
 * written out here it needs no wrapping of pthread_create and no new library.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/capability.h>

#include "ops/caps.h"
#include "ops/log.h"

static const char *const cap_names[] = {
	"cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid",
	"cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable",
	"cap_net_bind_service", "cap_net_broadcast", "cap_net_admin", "cap_net_raw",
	"cap_ipc_lock", "cap_ipc_owner", "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot",
	"cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice",
	"cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
	"cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override",
	"cap_mac_admin", "cap_syslog", "cap_wake_alarm", "cap_block_suspend", "cap_audit_read",
	"cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
};

static int parse_line(const char *text, const char *key, uint64_t *out)
{
	const char *p = text;
	size_t klen = strlen(key);
	char *end;

	while ((p = strstr(p, key)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[klen] == ':') {
			p += klen + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			errno = 0;
			*out = strtoull(p, &end, 16);
			return end == p || errno != 0 || (*end != '\n' && *end != '\0') ? -1 : 0;
		}
		p += klen;
	}
	return -1;
}

int kg_caps_parse_status(const char *text, struct kg_caps *out)
{
	if (parse_line(text, "CapInh", &out->inh) < 0 || parse_line(text, "CapPrm", &out->prm) < 0 ||
	    parse_line(text, "CapEff", &out->eff) < 0 || parse_line(text, "CapBnd", &out->bnd) < 0 ||
	    parse_line(text, "CapAmb", &out->amb) < 0)
		return -1;
	return 0;
}

size_t kg_caps_names(uint64_t mask, char *buf, size_t cap)
{
	size_t len = 0;
	int n;

	if (cap > 0)
		buf[0] = '\0';
	if (mask == 0)
		return (size_t)snprintf(buf, cap, "none");
	for (unsigned c = 0; c < 64; c++) {
		if (!(mask & KG_CAP(c)))
			continue;
		if (c < sizeof(cap_names) / sizeof(cap_names[0]))
			n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, "%s%s",
				     len ? " " : "", cap_names[c]);
		else
			n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
				     "%scap_%u", len ? " " : "", c);
		len += n > 0 ? (size_t)n : 0;
	}
	return len;
}

void kg_caps_target(const struct kg_caps *now, uint64_t keep, struct kg_caps *out)
{
	out->prm = now->prm & keep;
	out->eff = now->prm & keep;
	/* What came ambient (the unit's AmbientCapabilities=) and is kept stays ambient,
	 * so the successor `ktlsgate upgrade` starts (upgrade.h) holds it too; an ambient
	 * bit needs its inheritable one. */
	out->amb = now->amb & now->prm & keep;
	out->inh = out->amb;
	out->bnd = (now->eff & KG_CAP(KG_CAP_SETPCAP)) ? now->bnd & keep : now->bnd;
}

/*
 * The one piece of state outside the daemon context: what the signal handler applies.
 * A handler gets no argument; it is written before the first signal and read only by
 * handlers main waits for.
 */
static struct {
	struct kg_caps target;
	uint64_t bnd_drop;          /* the bounding-set bits to drop (needs CAP_SETPCAP) */
	atomic_uint done;           /* handlers finished */
	atomic_uint failed;         /* handlers whose change the kernel refused */
} drop;

/* The change, in the calling thread. Raw syscalls only: also runs in a handler. */
static int apply_self(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	int rc = 0;

	/* Bounding first: dropping from it needs CAP_SETPCAP, which capset removes. */
	for (unsigned c = 0; c < 64; c++)
		if ((drop.bnd_drop & KG_CAP(c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
		    errno != EINVAL)
			rc = -1;
	/* EINVAL: a kernel without ambient capabilities (< 4.3) has none to clear. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		rc = -1;
	memset(data, 0, sizeof(data));
	data[0].permitted = (uint32_t)drop.target.prm;
	data[1].permitted = (uint32_t)(drop.target.prm >> 32);
	data[0].effective = (uint32_t)drop.target.eff;
	data[1].effective = (uint32_t)(drop.target.eff >> 32);
	data[0].inheritable = (uint32_t)drop.target.inh;
	data[1].inheritable = (uint32_t)(drop.target.inh >> 32);
	if (syscall(SYS_capset, &hdr, data) < 0)
		rc = -1;
	/* Back into the ambient set: the kept ones that were there (permitted and
	 * inheritable now, as raising needs). */
	for (unsigned c = 0; c < 64; c++)
		if ((drop.target.amb & KG_CAP(c)) &&
		    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
			rc = -1;
	return rc;
}

static void on_signal(int sig)
{
	int saved = errno;

	(void)sig;
	if (apply_self() < 0)
		atomic_fetch_add(&drop.failed, 1);
	atomic_fetch_add(&drop.done, 1);
	errno = saved;
}

static int read_status(const char *path, struct kg_caps *out)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return kg_caps_parse_status(buf, out);
}

static bool same(const struct kg_caps *a, const struct kg_caps *b)
{
	return a->prm == b->prm && a->eff == b->eff && a->inh == b->inh && a->amb == b->amb &&
	       a->bnd == b->bnd;
}

/* One round: signal every other thread whose sets differ from the target and wait for
 * their handlers. Returns the number of threads found off target before the round
 * (0: all done), or -1 when /proc cannot be read. *threads: how many there are. */
static int round_trip(int sig, pid_t self, unsigned *threads, char *err, size_t errlen)
{
	DIR *dir = opendir("/proc/self/task");
	struct dirent *de;
	unsigned sent = 0;
	int off = 0;

	if (dir == NULL) {
		snprintf(err, errlen, "capabilities: /proc/self/task: %s", strerror(errno));
		return -1;
	}
	*threads = 0;
	atomic_store(&drop.done, 0);
	while ((de = readdir(dir)) != NULL) {
		char path[64];
		struct kg_caps now;
		pid_t tid = (pid_t)atoi(de->d_name);

		if (tid <= 0)
			continue;
		(*threads)++;
		snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
		if (read_status(path, &now) < 0)
			continue;   /* it ended meanwhile */
		if (same(&now, &drop.target))
			continue;
		off++;
		if (tid != self && syscall(SYS_tgkill, getpid(), tid, sig) == 0)
			sent++;
	}
	closedir(dir);
	/* Generous: a thread in a long SQLite write runs the handler when it returns to
	 * user space, which is at once; 5 s is for a machine under load. */
	for (int i = 0; i < 500 && atomic_load(&drop.done) < sent; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	if (atomic_load(&drop.done) < sent) {
		snprintf(err, errlen, "capabilities: %u of %u thread(s) did not answer the drop",
			 sent - atomic_load(&drop.done), sent);
		return -1;
	}
	return off;
}

int kg_caps_drop(uint64_t keep, const char *why, char *err, size_t errlen)
{
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
	struct kg_caps now;
	char kept[256], dropped[1024];
	unsigned threads = 0;
	int sig = SIGRTMIN + 2, off = 1, rc = -1;

	if (read_status("/proc/thread-self/status", &now) < 0) {
		snprintf(err, errlen, "capabilities: cannot read /proc/thread-self/status");
		return -1;
	}
	if (now.prm == 0 && now.inh == 0 && now.amb == 0) {
		kg_log_info("capabilities: none held, none needed");
		return 0;
	}
	kg_caps_target(&now, keep, &drop.target);
	drop.bnd_drop = now.bnd & ~drop.target.bnd;
	atomic_store(&drop.failed, 0);
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) < 0) {
		snprintf(err, errlen, "capabilities: sigaction: %s", strerror(errno));
		return -1;
	}
	if (apply_self() < 0) {
		snprintf(err, errlen, "capabilities: cannot drop in the main thread: %s",
			 strerror(errno));
		goto out;
	}
	for (int round = 0; round < 4 && off > 0; round++) {
		off = round_trip(sig, (pid_t)syscall(SYS_gettid), &threads, err, errlen);
		if (off < 0)
			goto out;
	}
	if (off > 0 || atomic_load(&drop.failed) > 0) {
		snprintf(err, errlen, "capabilities: %u thread(s) still hold more than they "
			 "should", off > 0 ? (unsigned)off : atomic_load(&drop.failed));
		goto out;
	}
	kg_caps_names(keep & now.prm, kept, sizeof(kept));
	kg_caps_names(now.prm & ~keep, dropped, sizeof(dropped));
	kg_log_info("capabilities: kept %s%s%s%s; dropped %s in %u thread(s)%s", kept,
		    (keep & now.prm) && why ? " (" : "", (keep & now.prm) && why ? why : "",
		    (keep & now.prm) && why ? ")" : "", dropped, threads,
		    drop.bnd_drop ? ", bounding set too" : "");
	rc = 0;
out:
	/* Every handler has run (or the start fails): a stray late signal is ignored. */
	sa.sa_handler = SIG_IGN;
	(void)sigaction(sig, &sa, NULL);
	return rc;
}
