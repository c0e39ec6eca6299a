/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * instance.c - the per-registry instance lock (contract in instance.h). A lock file
 * beside the registry, never the registry itself: flock on the database file would
 * be invisible to SQLite, and opening and closing our own fd of it would drop the
 * POSIX locks SQLite holds (see registry_sqlite.c check_magic()).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/instance.h"
#include "ops/log.h"

int kg_instance_lock_path(const char *registry, char *out, size_t cap)
{
	int n;

	if (strstr(registry, "://") != NULL) {
		if (cap)
			out[0] = '\0';
		return 0;
	}
	n = snprintf(out, cap, "%s.lock", registry);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int kg_instance_lock(const char *registry, char *err, size_t errlen)
{
	char path[4096], pid[32] = "";
	int fd, n;

	if (kg_instance_lock_path(registry, path, sizeof(path)) != 0) {
		snprintf(err, errlen, "registry %s: path too long for its lock file", registry);
		return -1;
	}
	if (path[0] == '\0')
		return -2;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "lock file %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		n = (int)pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			snprintf(err, errlen,
				 "registry %s is in use by another ktlsgated (pid %s, holding %s);"
				 " not starting a second one",
				 registry, pid[0] != '\0' ? pid : "unknown", path);
		else
			snprintf(err, errlen, "lock file %s: %s", path, strerror(e));
		close(fd);
		return -1;
	}
	/* Ours: say who holds it, for the next one's message. */
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	/* Without the pid the lock still holds; the next one's message says "unknown". */
	(void)!(ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n);
	(void)fchmod(fd, 0600);
	return fd;
}

int kg_instance_lock_adopt(int fd, const char *registry)
{
	char pid[32], path[PATH_MAX];
	struct stat mine, passed;
	int n;

	if (fd < 0)
		return -1;
	if (kg_instance_lock_path(registry, path, sizeof(path)) != 0 || path[0] == '\0') {
		/* not a file registry now (never quoted: a URI may hold a password) */
		kg_log_warnx("handover: the registry is no longer the running daemon's file: "
			     "its instance lock released");
		close(fd);
		return -1;
	}
	if (stat(path, &mine) != 0 || fstat(fd, &passed) != 0 || mine.st_dev != passed.st_dev ||
	    mine.st_ino != passed.st_ino) {
		kg_log_warnx("handover: the running daemon's instance lock is not %s (the "
			     "registry changed?): taking this registry's own lock", path);
		close(fd);
		return -1;
	}
	/* The flock is the open file description's, which the passed fd shares: held
	 * already. Only the pid inside changes, for the next one's message. */
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	(void)!(ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n);
	return fd;
}
