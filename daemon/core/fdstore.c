/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fdstore.c - the device listeners kept by systemd across a restart (contract in
 * fdstore.h). The sockets are the kernel's: systemd's duplicate keeps each open, with
 * its accept queue and its place in the SO_REUSEPORT group, while no ktlsgated runs.
 * A kept socket is used only if it is what this configuration would have bound: a
 * listening TCP socket on one of its listen addresses. Anything else systemd passed is
 * closed, and publish() drops it from the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/daemon.h"
#include "core/fdstore.h"
#include "core/listener.h"
#include "core/worker.h"
#include "ops/log.h"
#include "ops/metrics.h"
#include "ops/notify.h"

/* What a kept socket is for: a device listener (index: its listen address) or the
 * /metrics listener (METRICS_INDEX). */
#define METRICS_INDEX ((size_t)-1)

struct kg_fdstore {
	size_t n;
	struct {
		int fd;          /* -1 once taken */
		size_t index;    /* its listen address in the configuration, or METRICS_INDEX */
	} kept[];
};

bool kg_fdstore_addr_matches(const struct sockaddr *got, socklen_t len,
			     const struct kg_sockaddr *want)
{
	const struct sockaddr *w = (const struct sockaddr *)&want->ss;

	if (got->sa_family != w->sa_family)
		return false;
	if (got->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)got;
		const struct sockaddr_in *b = (const struct sockaddr_in *)w;

		return len >= (socklen_t)sizeof(*a) && a->sin_port == b->sin_port &&
		       a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	if (got->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)got;
		const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)w;

		return len >= (socklen_t)sizeof(*a) && a->sin6_port == b->sin6_port &&
		       memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
	}
	return false;
}

/* A listening TCP socket's address: 0, or -1 with why. */
static int listening_addr(int fd, struct sockaddr_storage *ss, socklen_t *len, const char **why)
{
	int type = 0;
	socklen_t olen = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen) < 0 || type != SOCK_STREAM) {
		*why = "not a stream socket";
		return -1;
	}
	if (!kg_listener_is_listening(fd)) {
		*why = "not listening";
		return -1;
	}
	*len = sizeof(*ss);
	if (getsockname(fd, (struct sockaddr *)ss, len) < 0) {
		*why = "no address";
		return -1;
	}
	return 0;
}

/* What the socket systemd passed under name is for here (a listen address index,
 * METRICS_INDEX), or -1 with why. */
static int classify(int fd, const char *name, const struct kg_config *cfg, size_t *index,
		    const char **why)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	const struct sockaddr *sa = (const struct sockaddr *)&ss;

	if (strcmp(name, KG_FDSTORE_LISTEN) != 0 && strcmp(name, KG_FDSTORE_METRICS) != 0) {
		*why = "not a name this daemon stores";
		return -1;
	}
	if (listening_addr(fd, &ss, &len, why) < 0)
		return -1;
	if (strcmp(name, KG_FDSTORE_METRICS) == 0) {
		if (cfg->metrics_enabled && kg_fdstore_addr_matches(sa, len, &cfg->metrics_listen)) {
			*index = METRICS_INDEX;
			return 0;
		}
		*why = "not this configuration's metrics_listen";
		return -1;
	}
	for (size_t i = 0; i < cfg->n_listen; i++)
		if (kg_fdstore_addr_matches(sa, len, &cfg->listen[i])) {
			*index = i;
			return 0;
		}
	*why = "on no listen address of this configuration";
	return -1;
}

int kg_fdstore_load(struct kg_daemon *d, const struct kg_config *cfg)
{
	struct kg_notify_fd *in = NULL;
	size_t n = kg_notify_inherited(&in), dropped = 0;
	struct kg_fdstore *fs;

	if (n == 0) {
		free(in);
		return 0;
	}
	fs = calloc(1, sizeof(*fs) + n * sizeof(fs->kept[0]));
	if (fs == NULL) {
		for (size_t i = 0; i < n; i++)
			close(in[i].fd);
		free(in);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *why = NULL;
		size_t index = 0;
		int fd = in[i].fd;
		int ok = classify(fd, in[i].name, cfg, &index, &why);
		int fl = fcntl(fd, F_GETFL);

		if (ok == 0 && (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
			why = "cannot make it non-blocking";
			ok = -1;
		}
		if (ok < 0) {
			kg_log_warnx("systemd passed descriptor %d (%s): %s: closed", fd,
				     in[i].name[0] != '\0' ? in[i].name : "unnamed", why);
			close(fd);
			dropped++;
			continue;
		}
		fs->kept[fs->n].fd = fd;
		fs->kept[fs->n].index = index;
		fs->n++;
	}
	free(in);
	{
		size_t metrics = 0;

		for (size_t i = 0; i < fs->n; i++)
			metrics += fs->kept[i].index == METRICS_INDEX;
		kg_log_info("systemd kept %zu device listener(s)%s across the restart%s",
			    fs->n - metrics, metrics != 0 ? " and the /metrics listener" : "",
			    dropped != 0 ? " (and passed others, closed)" : "");
	}
	d->fdstore = fs;
	return 0;
}

int kg_fdstore_take_metrics(struct kg_daemon *d)
{
	return kg_fdstore_take(d, METRICS_INDEX);
}

int kg_fdstore_take(struct kg_daemon *d, size_t index)
{
	struct kg_fdstore *fs = d->fdstore;

	if (fs == NULL)
		return -1;
	for (size_t i = 0; i < fs->n; i++)
		if (fs->kept[i].fd >= 0 && fs->kept[i].index == index) {
			int fd = fs->kept[i].fd;

			fs->kept[i].fd = -1;
			return fd;
		}
	return -1;
}

static void close_kept(struct kg_fdstore *fs, size_t *closed)
{
	for (size_t i = 0; fs != NULL && i < fs->n; i++)
		if (fs->kept[i].fd >= 0) {
			close(fs->kept[i].fd);
			fs->kept[i].fd = -1;
			if (closed != NULL)
				(*closed)++;
		}
}

void kg_fdstore_publish(struct kg_daemon *d)
{
	size_t unused = 0, n = 0;
	int *fds, mfd;
	int rc;

	close_kept(d->fdstore, &unused);
	if (unused != 0)
		kg_log_info("closed %zu listening socket(s) systemd kept that nothing here took "
			    "(a device listener's queue migrates with net.ipv4.tcp_migrate_req=1)",
			    unused);
	if (!d->notify.active)
		return;
	fds = calloc((size_t)d->n_workers * KG_MAX_LISTEN, sizeof(*fds));
	if (fds == NULL) {
		kg_log_warnx("fdstore: out of memory: a restart will refuse connections");
		return;
	}
	for (unsigned w = 0; w < d->n_workers; w++)
		for (size_t i = 0; i < d->workers[w].n_listeners; i++)
			fds[n++] = d->workers[w].listeners[i].fd;
	rc = kg_notify_fdstore(&d->notify, KG_FDSTORE_LISTEN, fds, n);
	if (rc < 0)
		kg_log_warnx("fdstore: systemd did not take the %zu listening socket(s): %s", n,
			     strerror(-rc));
	free(fds);
	/* /metrics too: a scrape during the restart waits instead of failing */
	mfd = kg_metrics_http_listen_fd(d->metrics_http);
	rc = kg_notify_fdstore(&d->notify, KG_FDSTORE_METRICS, &mfd, mfd >= 0 ? 1 : 0);
	if (rc < 0)
		kg_log_warnx("fdstore: systemd did not take the metrics socket: %s", strerror(-rc));
}

void kg_fdstore_free(struct kg_daemon *d)
{
	close_kept(d->fdstore, NULL);
	free(d->fdstore);
	d->fdstore = NULL;
}
