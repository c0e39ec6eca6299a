/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * upgrade.c - the daemon starts its successor (contract in upgrade.h).
 *
 * fork() in a threaded process: the child may only make async-signal-safe calls until
 * it execs (another thread may have held malloc's lock at the fork), so everything it
 * needs (argv, the environment) is built before the fork, and the child only resets its
 * signal mask, closes what it inherited and execs.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/daemon.h"
#include "core/handover.h"
#include "core/upgrade.h"
#include "ops/log.h"

extern char **environ;

void kg_upgrade_init(struct kg_daemon *d)
{
	ssize_t n = readlink("/proc/self/exe", d->exe_path, sizeof(d->exe_path) - 1);

	d->exe_path[n > 0 ? n : 0] = '\0';
	d->successor = 0;
}

/* Inherited from systemd for this process only: LISTEN_* named our fds at start (the
 * successor gets its sockets from us), WATCHDOG_PID names our pid (unset, the successor
 * pings for itself: sd_watchdog_enabled(3)). NOTIFY_SOCKET and WATCHDOG_USEC stay. */
static bool drop_var(const char *kv)
{
	static const char *const names[] = { "LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES=",
					     "WATCHDOG_PID=" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strncmp(kv, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

/* The successor's environment: ours without drop_var()'s. NULL: out of memory. */
static char **successor_env(void)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n] != NULL)
		n++;
	env = calloc(n + 1, sizeof(*env));
	if (env == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!drop_var(environ[i]))
			env[k++] = environ[i];
	return env;
}

/* The child, between fork and exec: async-signal-safe calls only. Never returns. */
static void exec_successor(const char *path, char *const argv[], char *const env[])
{
	sigset_t none;

	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);   /* ours blocks what the signalfd reads */
	(void)signal(SIGPIPE, SIG_DFL);                /* an ignored signal stays ignored */
	/* Nothing of ours goes with it: a session socket held by the successor would keep a
	 * connection open after we close it. 0-2 stay (the journal streams). */
	if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0) {
		for (int fd = 3; fd < 65536; fd++)
			(void)close(fd);
	}
	execve(path, argv, env);
	_exit(127);
}

int kg_upgrade_spawn(struct kg_daemon *d, pid_t *pid, char *err, size_t errlen)
{
	char *argv[] = { d->exe_path, "--takeover", "-c", d->config_path, NULL };
	char **env;
	pid_t child;

	if (d->successor > 0) {
		snprintf(err, errlen, "a successor (pid %ld) is already starting", (long)d->successor);
		return -1;
	}
	if (!kg_handover_idle(d)) {
		snprintf(err, errlen, "a handover is under way");
		return -1;
	}
	if (d->exe_path[0] != '/') {
		snprintf(err, errlen, "the path of this daemon's binary is unknown");
		return -1;
	}
	if (access(d->exe_path, X_OK) < 0) {
		snprintf(err, errlen, "%s: %s", d->exe_path, strerror(errno));
		return -1;
	}
	env = successor_env();
	if (env == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	child = fork();
	if (child == 0)
		exec_successor(d->exe_path, argv, env);
	free(env);
	if (child < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	d->successor = child;
	*pid = child;
	kg_log_info("upgrade: started %s --takeover -c %s as pid %ld", d->exe_path,
		    d->config_path, (long)child);
	return 0;
}

void kg_upgrade_reap(struct kg_daemon *d)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid != d->successor)
			continue;
		d->successor = 0;
		/* Before it took over, we still serve; after, we only drain. */
		if (WIFEXITED(status))
			kg_log_warnx("upgrade: the successor (pid %ld) exited with status %d%s",
				     (long)pid, WEXITSTATUS(status),
				     kg_handover_idle(d) ? "; this process serves on" : "");
		else if (WIFSIGNALED(status))
			kg_log_warnx("upgrade: the successor (pid %ld) was killed by signal %d%s",
				     (long)pid, WTERMSIG(status),
				     kg_handover_idle(d) ? "; this process serves on" : "");
	}
}
