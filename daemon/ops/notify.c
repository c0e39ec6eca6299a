/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * notify.c - systemd's notify protocol and the journal's native protocol, the only
 * calls into libsystemd. sd_notify() is one datagram on NOTIFY_SOCKET; the decisions of
 * when to send what are the main loop's (main.c) and are documented in docs/systemd.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include "ktlsgate/clock.h"
#include "ops/notify.h"

/* Where sd_journal_sendv sends (a LogNamespace= unit gets its namespace's socket
 * mounted here). */
#define KG_JOURNAL_SOCKET "/run/systemd/journal/socket"

void kg_notify_init(struct kg_notify *n)
{
	const char *sock = getenv("NOTIFY_SOCKET");
	uint64_t usec = 0;

	memset(n, 0, sizeof(*n));
	n->active = sock != NULL && sock[0] != '\0';
	if (!n->active)
		return;
	/* > 0: WATCHDOG_USEC is set and WATCHDOG_PID, if set, is our pid. Pings go at
	 * half the interval, as sd_watchdog_enabled(3) recommends. */
	if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000)
		n->watchdog_ms = usec / 1000;
}

static void send_status(struct kg_notify *n, const char *head, const char *status)
{
	char msg[64 + KG_NOTIFY_STATUS_MAX];

	if (status != NULL && status != n->status)
		snprintf(n->status, sizeof(n->status), "%s", status);
	snprintf(msg, sizeof(msg), "%s%sSTATUS=%s", head ? head : "", head ? "\n" : "",
		 n->status);
	(void)sd_notify(0, msg);
}

size_t kg_notify_inherited(struct kg_notify_fd **out)
{
	char **fdnames = NULL;
	int n = sd_listen_fds_with_names(1, &fdnames);   /* 1: unset LISTEN_* */
	struct kg_notify_fd *got = n > 0 ? calloc((size_t)n, sizeof(*got)) : NULL;

	*out = got;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;

		if (got == NULL) {
			close(fd);   /* out of memory: nothing can be adopted */
			continue;
		}
		got[i].fd = fd;
		snprintf(got[i].name, sizeof(got[i].name), "%s",
			 fdnames != NULL && fdnames[i] != NULL ? fdnames[i] : "");
	}
	if (fdnames != NULL) {
		for (int i = 0; i < n; i++)
			free(fdnames[i]);
		free(fdnames);
	}
	return got != NULL ? (size_t)n : 0;
}

int kg_notify_fdstore(const struct kg_notify *n, const char *name, const int *fds, size_t count)
{
	char msg[128];
	int rc;

	if (!n->active)
		return 0;
	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	rc = sd_notify(0, msg);
	if (count == 0)
		return rc < 0 ? rc : 0;
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	rc = sd_pid_notify_with_fds(0, 0, msg, fds, (unsigned)count);
	return rc < 0 ? rc : 0;
}

int kg_notify_fdstore_add(const struct kg_notify *n, const char *name, const int *fds,
			  size_t count)
{
	/* The kernel passes at most SCM_MAX_FD (253) descriptors in one message. */
	const size_t per_msg = 250;
	char msg[128];

	if (!n->active)
		return 0;
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	for (size_t at = 0; at < count; at += per_msg) {
		size_t k = count - at < per_msg ? count - at : per_msg;
		int rc = sd_pid_notify_with_fds(0, 0, msg, fds + at, (unsigned)k);

		if (rc < 0)
			return rc;
	}
	return 0;
}

void kg_notify_ready(struct kg_notify *n, const char *status)
{
	if (!n->active)
		return;
	send_status(n, "READY=1", status);
	n->next_status_ms = kg_now_ms() + KG_NOTIFY_STATUS_MS;
	if (n->watchdog_ms != 0 && n->next_ping_ms == 0) {
		/* the first ping goes with READY: the watchdog runs from here */
		(void)sd_notify(0, "WATCHDOG=1");
		n->next_ping_ms = kg_now_ms() + n->watchdog_ms / 2;
	}
}

void kg_notify_ready_main(struct kg_notify *n, const char *status)
{
	char head[48];

	if (!n->active)
		return;
	/* systemd then follows this process, not the one it started (NotifyAccess=all). */
	snprintf(head, sizeof(head), "MAINPID=%ld\nREADY=1", (long)getpid());
	send_status(n, head, status);
	n->next_status_ms = kg_now_ms() + KG_NOTIFY_STATUS_MS;
	if (n->watchdog_ms != 0 && n->next_ping_ms == 0) {
		(void)sd_notify(0, "WATCHDOG=1");
		n->next_ping_ms = kg_now_ms() + n->watchdog_ms / 2;
	}
}

void kg_notify_main_pid(struct kg_notify *n, pid_t pid)
{
	char msg[32];

	if (!n->active)
		return;
	snprintf(msg, sizeof(msg), "MAINPID=%ld", (long)pid);
	(void)sd_notify(0, msg);
}

void kg_notify_reloading(struct kg_notify *n)
{
	char msg[96];

	if (!n->active)
		return;
	/* A ping rides along: the reload blocks this thread, give it a whole interval. */
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading%s",
		 kg_now_us(), n->watchdog_ms != 0 && n->next_ping_ms != 0 ? "\nWATCHDOG=1" : "");
	(void)sd_notify(0, msg);
	if (n->watchdog_ms != 0 && n->next_ping_ms != 0)
		n->next_ping_ms = kg_now_ms() + n->watchdog_ms / 2;
}

void kg_notify_reloaded(struct kg_notify *n, bool ok, const char *err)
{
	char st[KG_NOTIFY_STATUS_MAX];

	if (!n->active)
		return;
	if (ok)
		snprintf(st, sizeof(st), "reloaded");
	else
		snprintf(st, sizeof(st), "reload failed, the previous configuration stays: %s",
			 err ? err : "?");
	send_status(n, "READY=1", st);
	n->next_status_ms = kg_now_ms() + KG_NOTIFY_STATUS_MS;
}

void kg_notify_stopping(struct kg_notify *n)
{
	if (!n->active)
		return;
	(void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

bool kg_notify_status_due(const struct kg_notify *n, uint64_t now_ms)
{
	return n->active && now_ms >= n->next_status_ms;
}

bool kg_notify_ping_due(const struct kg_notify *n, uint64_t now_ms)
{
	return n->active && n->watchdog_ms != 0 && n->next_ping_ms != 0 && now_ms >= n->next_ping_ms;
}

void kg_notify_tick(struct kg_notify *n, uint64_t now_ms, const char *status, bool healthy)
{
	if (!n->active)
		return;
	if (status != NULL && now_ms >= n->next_status_ms) {
		if (strcmp(status, n->status) != 0)
			send_status(n, NULL, status);
		n->next_status_ms = now_ms + KG_NOTIFY_STATUS_MS;
	}
	if (kg_notify_ping_due(n, now_ms)) {
		/* A stalled worker withholds the ping; the next turn looks again. */
		if (healthy)
			(void)sd_notify(0, "WATCHDOG=1");
		n->next_ping_ms = now_ms + n->watchdog_ms / 2;
	}
}

int kg_notify_timeout(const struct kg_notify *n, uint64_t now_ms)
{
	uint64_t due;

	if (!n->active || n->next_status_ms == 0)
		return -1;   /* before READY nothing is periodic */
	due = n->next_status_ms;
	if (n->watchdog_ms != 0 && n->next_ping_ms != 0 && n->next_ping_ms < due)
		due = n->next_ping_ms;
	return due <= now_ms ? 0 : (int)(due - now_ms);
}

uint64_t kg_notify_stall_ms(const struct kg_notify *n)
{
	return n->watchdog_ms / 2;
}

const char *kg_notify_format_status(const struct kg_notify_counts *c, char *buf, size_t cap)
{
	/* The data-path names of metrics.h's enum kg_relay_mode (and of /metrics). */
	snprintf(buf, cap,
		 "%" PRId64 " session(s) (ktls_splice %" PRId64 ", ktls_tx %" PRId64
		 ", userspace %" PRId64 ", userspace_ssl %" PRId64 ", sockmap %" PRId64
		 ", splice %" PRId64 ", plain %" PRId64 "), %" PRId64
		 " handshake(s) in flight, %" PRId64 " connection(s)",
		 c->sessions, c->by_mode[0], c->by_mode[1], c->by_mode[2], c->by_mode[3],
		 c->by_mode[4], c->by_mode[5], c->by_mode[6],
		 c->handshakes, c->connections);
	return buf;
}

/* ---- journald ------------------------------------------------------------------ */

bool kg_journal_stream_matches(const char *env, dev_t dev, ino_t ino)
{
	unsigned long long d, i;
	int end = 0;

	if (env == NULL || env[0] < '0' || env[0] > '9' ||
	    sscanf(env, "%llu:%llu%n", &d, &i, &end) != 2 || env[end] != '\0')
		return false;
	return (dev_t)d == dev && (ino_t)i == ino;
}

bool kg_journal_stderr(void)
{
	struct stat st;

	if (fstat(STDERR_FILENO, &st) < 0 ||
	    !kg_journal_stream_matches(getenv("JOURNAL_STREAM"), st.st_dev, st.st_ino))
		return false;
	/* sd_journal_sendv drops an entry without a word (returns 0) when journald's
	 * socket is missing: stay on stderr then, rather than log into nothing. */
	return access(KG_JOURNAL_SOCKET, W_OK) == 0;
}

void kg_journal_init(struct kg_journal_entry *e)
{
	e->n = 0;
	e->used = 0;
	e->overflow = false;
}

void kg_journal_add(struct kg_journal_entry *e, const char *name, const char *val, size_t len)
{
	size_t nl = strlen(name);
	char *p = e->buf + e->used;

	if (e->n >= KG_JOURNAL_FIELDS || nl + 1 + len > sizeof(e->buf) - e->used) {
		e->overflow = true;
		return;
	}
	memcpy(p, name, nl);
	p[nl] = '=';
	memcpy(p + nl + 1, val, len);
	e->iov[e->n].iov_base = p;
	e->iov[e->n].iov_len = nl + 1 + len;
	e->n++;
	e->used += nl + 1 + len;
}

void kg_journal_add_str(struct kg_journal_entry *e, const char *name, const char *val)
{
	if (val != NULL && val[0] != '\0')
		kg_journal_add(e, name, val, strlen(val));
}

const char *kg_journal_get(const struct kg_journal_entry *e, const char *name, size_t *len)
{
	size_t nl = strlen(name);

	for (int i = 0; i < e->n; i++) {
		const char *f = e->iov[i].iov_base;

		if (e->iov[i].iov_len > nl && memcmp(f, name, nl) == 0 && f[nl] == '=') {
			*len = e->iov[i].iov_len - nl - 1;
			return f + nl + 1;
		}
	}
	return NULL;
}

int kg_journal_send(const struct kg_journal_entry *e)
{
	if (e->overflow || e->n == 0)
		return -E2BIG;
	return sd_journal_sendv(e->iov, e->n);
}
