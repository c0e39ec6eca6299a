/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * main.c - ktlsgated: startup order, signals, the main thread's loop. Nothing else.
 *
 * Order (each step fails the start with one clear line):
 *   1. parse and validate the config (`-t` stops here, after loading certs and CAs)
 *   2. open the registry read-write in the writer thread (creates / migrates it;
 *      a corrupt or foreign file stops us before anything is written)
 *   3. build the first snapshot: SSL_CTX, server cert + key, trust from the registry
 *   4. bind the listeners (one per address per worker), the control socket, metrics
 *   5. start the workers; the main thread then serves signals and the control socket.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "ktlsgate/config.h"
#include "ktlsgate/control_server.h"
#include "ktlsgate/daemon.h"
#include "ktlsgate/edge.h"
#include "ktlsgate/err.h"
#include "ktlsgate/log.h"
#include "ktlsgate/tls.h"
#include "ktlsgate/worker.h"
#include "ktlsgate/writer.h"

#define DEFAULT_CONFIG "/etc/ktlsgate/ktlsgate.conf"

static void usage(FILE *f)
{
	fprintf(f, "usage: ktlsgated [-t] [-d] [-c FILE]\n"
		   "  -c FILE   configuration file (default " DEFAULT_CONFIG ")\n"
		   "  -t        check the configuration (and certificates, registry) and exit\n"
		   "  -d        debug logging\n"
		   "  -h        this help;  -V  version\n");
}

static enum kg_log_level parse_level(const char *s)
{
	if (strcmp(s, "err") == 0)
		return KG_LOG_ERR;
	if (strcmp(s, "warn") == 0)
		return KG_LOG_WARN;
	if (strcmp(s, "debug") == 0)
		return KG_LOG_DEBUG;
	return KG_LOG_INFO;
}

static char *render_metrics(void *arg, size_t *len)
{
	struct kg_daemon *d = arg;
	struct kg_metrics *per[256];
	struct kg_metrics_info info = {
		.state_names = kg_conn_state_names,
		.n_states = KG_ST_MAX,
		.workers = d->n_workers,
		.reloads = atomic_load(&d->reloads),
		.reload_failures = atomic_load(&d->reload_failures),
		.registry_write_drops = kg_writer_drops(d->writer),
		.start_time = d->started,
	};

	char *body, *all = NULL;
	size_t all_len = 0;
	FILE *f;

	for (unsigned i = 0; i < d->n_workers; i++)
		per[i] = &d->workers[i].metrics;
	body = kg_metrics_render(per, d->n_workers, &info, len);
	if (body == NULL)
		return NULL;
	/* The XDP gate's counters follow the daemon's (the HTTP side free()s the body). */
	f = open_memstream(&all, &all_len);
	if (f == NULL)
		return body;
	fwrite(body, 1, *len, f);
	(void)kg_edge_metrics_write(d->edge, f);
	if (fclose(f) != 0) {
		free(all);
		return body;
	}
	free(body);
	*len = all_len;
	return all;
}

/* Devices x 2 fds each: make the soft fd limit the hard one. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * `-t`: validate the file, then load what it names that exists (certificate + key,
 * registry + CAs + CRLs) exactly as a start would. A file that does not exist yet is
 * reported, not fatal: the example config must pass on a machine that has not been
 * provisioned. Nothing is created or written.
 */
static int check_only(const struct kg_config *cfg, const char *path)
{
	struct kg_registry *reg = NULL;
	struct kg_trust *trust = NULL;
	char err[KG_ERRBUF];
	size_t cas = 0;
	int rc = 1;

	/* "handle:0x81..." names a key in the TPM, not a file: always checked */
	if (access(cfg->cert_file, F_OK) == 0 &&
	    (strncmp(cfg->key_file, "handle:", 7) == 0 || access(cfg->key_file, F_OK) == 0)) {
		SSL_CTX *ctx = kg_tls_ctx_new(cfg, err, sizeof(err));

		if (ctx == NULL) {
			fprintf(stderr, "ktlsgated: %s: %s\n", path, err);
			return 1;
		}
		SSL_CTX_free(ctx);
	} else {
		printf("ktlsgated: note: %s or %s does not exist yet: not checked\n", cfg->cert_file,
		       cfg->key_file);
	}
	if (access(cfg->registry, F_OK) == 0) {
		trust = kg_trust_new();
		if (trust == NULL ||
		    kg_registry_open(cfg->registry, KG_REG_READONLY, &reg, err, sizeof(err)) < 0 ||
		    kg_trust_load(trust, reg, cfg, err, sizeof(err)) < 0) {
			fprintf(stderr, "ktlsgated: %s\n", trust ? err : "out of memory");
			goto out;
		}
		cas = kg_trust_count(trust, true);
		/* What a reload refuses, -t refuses too. */
		if (kg_daemon_check_backends(cfg, cfg->registry, err, sizeof(err)) < 0) {
			fprintf(stderr, "ktlsgated: %s: %s\n", path, err);
			goto out;
		}
	} else {
		printf("ktlsgated: note: registry %s does not exist yet: it is created at start\n",
		       cfg->registry);
	}
	printf("ktlsgated: configuration %s ok (%zu CA(s) trusted, %zu backend(s))\n", path, cas,
	       cfg->n_backends);
	rc = 0;
out:
	if (reg)
		kg_registry_close(reg);
	kg_trust_free(trust);
	return rc;
}

static int serve(struct kg_daemon *d)
{
	struct epoll_event ev;
	char err[KG_ERRBUF];

	while (!atomic_load(&d->stopping)) {
		int n = epoll_wait(d->epfd, &ev, 1, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			kg_log_warn("epoll_wait");
			return -1;
		}
		if (n == 0)
			continue;
		if (ev.data.fd == d->signal_fd) {
			struct signalfd_siginfo si;

			if (read(d->signal_fd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				kg_log_info("SIGHUP: reloading %s", d->config_path);
				(void)!kg_daemon_reload(d, err, sizeof(err)); /* logs why */
			} else {
				kg_log_info("signal %u: shutting down", si.ssi_signo);
				atomic_store(&d->stopping, true);
			}
		} else if (ev.data.fd == d->control_fd) {
			kg_control_accept(d);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct kg_daemon daemon_ctx;   /* the one context; static only for its size */
	struct kg_daemon *d = &daemon_ctx;
	struct kg_config *cfg = NULL;
	const char *path = DEFAULT_CONFIG;
	bool test_only = false, debug = false;
	char err[KG_ERRBUF];
	sigset_t sigs;
	struct timespec now;
	int opt, status = 1;
	unsigned started_workers = 0;

	kg_log_set_ident("ktlsgated");
	/* Block the signals we handle before any thread exists (the registry writer,
	 * libmicrohttpd, workers), so they all inherit the mask and only the signalfd
	 * sees them; a SIGHUP delivered to another thread would kill the process. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	while ((opt = getopt(argc, argv, "c:tdhV")) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 't': test_only = true; break;
		case 'd': debug = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("ktlsgated %s\n", KG_VERSION); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	cfg = malloc(sizeof(*cfg));
	if (cfg == NULL)
		return 1;
	/* 1. configuration */
	if (kg_config_load(path, cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		goto out_free_cfg;
	}
	kg_log_set_level(debug ? KG_LOG_DEBUG : parse_level(cfg->log_level));
	if (kg_strlcpy(d->config_path, path, sizeof(d->config_path)) < 0)
		goto out_free_cfg;
	pthread_mutex_init(&d->snap_lock, NULL);
	d->control_fd = d->signal_fd = d->epfd = -1;
	clock_gettime(CLOCK_REALTIME, &now);
	d->started = now.tv_sec;
	d->max_connections = cfg->max_connections;
	d->max_handshakes = cfg->max_handshakes;

	if (test_only) {
		status = check_only(cfg, path);
		goto out_free_cfg;
	}
	/* 2. registry (writer thread owns the read-write handle) */
	d->writer = kg_writer_start(cfg->registry, err, sizeof(err));
	if (d->writer == NULL) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		goto out_free_cfg;
	}
	/* 3. first snapshot: TLS context, server certificate, trust */
	d->snap = kg_snapshot_build(d, cfg, err, sizeof(err));
	if (d->snap == NULL) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		goto out_writer;
	}
	if (kg_trust_count(d->snap->trust, true) == 0)
		kg_log_warnx("no verified CA in the registry: only thumbprint devices can connect");
	/* A start does not refuse (the registry may be shared and ahead of this file), but
	 * devices on a missing backend get "server unavailable": say so at once. */
	if (kg_daemon_check_backends(cfg, cfg->registry, err, sizeof(err)) < 0)
		kg_log_warnx("%s", err);
	/* XDP gate (privileged, never fatal: without BPF it says so and stays off) */
	d->edge = kg_edge_start(cfg);

	/* 4. sockets */
	raise_fd_limit();
	d->signal_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->signal_fd < 0 || d->epfd < 0) {
		kg_log_warn("signalfd/epoll");
		goto out_snap;
	}
	d->control_fd = kg_control_listen(cfg->control_socket, err, sizeof(err));
	if (d->control_fd < 0) {
		fprintf(stderr, "ktlsgated: %s\n", err);
		goto out_fds;
	}
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = d->signal_fd };
		struct epoll_event ev2 = { .events = EPOLLIN, .data.fd = d->control_fd };
		(void)epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->signal_fd, &ev);
		(void)epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->control_fd, &ev2);
	}
	d->n_workers = cfg->workers ? cfg->workers : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (d->n_workers == 0 || d->n_workers > 256)
		d->n_workers = 1;
	d->workers = calloc(d->n_workers, sizeof(*d->workers));
	if (d->workers == NULL)
		goto out_fds;
	for (unsigned i = 0; i < d->n_workers; i++) {
		if (kg_worker_init(&d->workers[i], d, i, err, sizeof(err)) < 0) {
			fprintf(stderr, "ktlsgated: %s\n", err);
			kg_worker_fini(&d->workers[i]);
			goto out_workers;
		}
		started_workers = i + 1;
	}
	/* Worker steering: each worker's listener joins the reuseport group's sockarray. */
	for (unsigned i = 0; i < d->n_workers; i++)
		for (size_t j = 0; j < d->workers[i].n_listeners; j++)
			(void)kg_edge_steer_listener(d->edge, d->n_workers, (unsigned)j, i,
						     d->workers[i].listeners[j].fd);
	if (cfg->metrics_enabled) {
		d->metrics_http = kg_metrics_http_start(&cfg->metrics_listen, render_metrics, d, err,
							sizeof(err));
		if (d->metrics_http == NULL) {
			fprintf(stderr, "ktlsgated: %s\n", err);
			goto out_workers;
		}
	}
	/* 5. run */
	for (unsigned i = 0; i < d->n_workers; i++) {
		if (kg_worker_start(&d->workers[i]) < 0) {
			kg_log_warnx("cannot start worker %u", i);
			atomic_store(&d->stopping, true);
			d->n_workers = i;
			break;
		}
	}
	kg_log_info("listening on %s%s (%u workers, %zu CA(s) trusted, metrics %s)",
		    cfg->listen[0].text, cfg->n_listen > 1 ? " and more" : "", d->n_workers,
		    kg_trust_count(d->snap->trust, true),
		    cfg->metrics_enabled ? cfg->metrics_listen.text : "off");
	status = serve(d) == 0 ? 0 : 1;

	{
		struct kg_cmd stop = { .type = KG_CMD_STOP };
		(void)!kg_workers_call(d, &stop);
		free(stop.out);
	}
	for (unsigned i = 0; i < d->n_workers; i++)
		kg_worker_join(&d->workers[i]);
	kg_metrics_http_stop(d->metrics_http);
out_workers:
	for (unsigned i = 0; i < started_workers; i++)
		kg_worker_fini(&d->workers[i]);
	free(d->workers);
out_fds:
	if (d->control_fd >= 0) {
		close(d->control_fd);
		(void)unlink(cfg->control_socket);
	}
	if (d->signal_fd >= 0)
		close(d->signal_fd);
	if (d->epfd >= 0)
		close(d->epfd);
out_snap:
	kg_edge_stop(d->edge);
	kg_snapshot_put(d->snap);
out_writer:
	kg_writer_stop(d->writer);
out_free_cfg:
	free(cfg);
	return status;
}
