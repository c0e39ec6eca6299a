// SPDX-License-Identifier: BSD-2-Clause
/*
 * kg-gtls-bench - TLS 1.3 mTLS handshakes with GnuTLS's client, for the one offer
 * kg-bench (OpenSSL) cannot make: a resumption whose psk_key_exchange_modes is psk_ke
 * alone, as a constrained device's stack can be set to send. bench-tpm's gnutls-*
 * variants (tests/bench/README.md) measure with it what [tls] resumption_psk_ke = allow
 * saves on an OpenSSL that cannot prefer psk_ke itself (before 3.2).
 *
 *   kg-gtls-bench --target HOST:PORT --ca ROOT.pem --devices DIR --count N
 *                 [--concurrency C] [--resume] [--psk-ke] [--server-pids PID,...]
 *
 * Each connection: TCP connect, a TLS 1.3 handshake with its device's certificate
 * (DIR/dev-*, chain.pem and key.pem; X25519 key share, as kg-bench's), close_notify,
 * close; no MQTT (kg-bench handshake --tls-only does the same). Connection i uses
 * device i mod the number of devices. --resume: an unmeasured first pass gives every
 * device a session (the server's ticket), then every measured connection offers its
 * device's session; --psk-ke offers psk_ke alone instead of psk_dhe_ke and psk_ke.
 * C threads with blocking sockets share the count. The server's CPU (utime + stime of
 * the --server-pids processes, /proc/PID/stat) is read before and after the measured
 * phase. Output, one JSON line: count, errors, rate (handshakes/s), full, resumed,
 * primed (--resume: the devices given a session),
 * resumed_psk_ke (resumed without an (EC)DHE exchange: no group was negotiated),
 * server_cpu_us (per handshake). Exit 1 on any error.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <gnutls/gnutls.h>

#define MAX_SERVER_PIDS 16
#define IO_TIMEOUT_MS 10000

struct device {
	gnutls_certificate_credentials_t cred;
	gnutls_datum_t session;   /* --resume: from the priming pass; read-only after it */
};

struct options {
	const char *host, *port, *ca, *dir;
	long count, concurrency;
	bool resume, psk_ke;
	pid_t server_pids[MAX_SERVER_PIDS];
	size_t nserver_pids;
};

struct run {
	const struct options *o;
	gnutls_psk_client_credentials_t psk; /* --psk-ke: an external PSK nobody knows */
	struct device *dev;
	size_t ndev;
	const char *priority;
	bool priming;
	atomic_long next;          /* the next connection's number */
	long limit;                /* connections in this pass */
	atomic_long errors, full, resumed, resumed_psk_ke;
};

static int tcp_connect(const struct options *o)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	struct timeval tv = { .tv_sec = IO_TIMEOUT_MS / 1000 };
	int fd = -1, one = 1;

	if (getaddrinfo(o->host, o->port, &hints, &ai) != 0)
		return -1;
	for (struct addrinfo *a = ai; a != NULL && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	return fd;
}

/* One connection for device d: 0, or -1 (counted as an error by the caller). */
static int one_connection(struct run *r, struct device *d)
{
	gnutls_session_t s = NULL;
	int fd, ret, rc = -1;

	fd = tcp_connect(r->o);
	if (fd < 0)
		return -1;
	if (gnutls_init(&s, GNUTLS_CLIENT) != GNUTLS_E_SUCCESS)
		goto out;
	if (gnutls_priority_set_direct(s, r->priority, NULL) != GNUTLS_E_SUCCESS ||
	    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, d->cred) != GNUTLS_E_SUCCESS ||
	    (r->psk != NULL && gnutls_credentials_set(s, GNUTLS_CRD_PSK, r->psk) != GNUTLS_E_SUCCESS))
		goto out;
	/* the server's certificate is issued for localhost (bench-tpm's PKI) */
	gnutls_session_set_verify_cert(s, "localhost", 0);
	if (!r->priming && r->o->resume && d->session.size > 0 &&
	    gnutls_session_set_data(s, d->session.data, d->session.size) != GNUTLS_E_SUCCESS)
		goto out;
	gnutls_transport_set_int(s, fd);
	gnutls_handshake_set_timeout(s, IO_TIMEOUT_MS);
	do
		ret = gnutls_handshake(s);
	while (ret < 0 && gnutls_error_is_fatal(ret) == 0);
	if (ret < 0) {
		fprintf(stderr, "kg-gtls-bench: handshake: %s\n", gnutls_strerror(ret));
		goto out;
	}
	if (r->priming) {
		/* TLS 1.3: the ticket follows the handshake. get_data2 waits for it only
		 * briefly (a busy server's ticket comes later), so read until it is here. */
		char buf[64];

		gnutls_record_set_timeout(s, 100);
		for (int tries = 0; tries < 50 && !(gnutls_session_get_flags(s) & GNUTLS_SFLAGS_SESSION_TICKET);
		     tries++) {
			ret = gnutls_record_recv(s, buf, sizeof(buf));
			if (ret < 0 && ret != GNUTLS_E_TIMEDOUT && ret != GNUTLS_E_AGAIN &&
			    ret != GNUTLS_E_INTERRUPTED)
				break;
		}
		if (!(gnutls_session_get_flags(s) & GNUTLS_SFLAGS_SESSION_TICKET) ||
		    gnutls_session_get_data2(s, &d->session) != GNUTLS_E_SUCCESS) {
			fprintf(stderr, "kg-gtls-bench: no session ticket from the server\n");
			goto out;
		}
	} else if (gnutls_session_is_resumed(s)) {
		atomic_fetch_add(&r->resumed, 1);
		/* no group: the server sent no key share (psk_ke) */
		if (gnutls_group_get(s) == GNUTLS_GROUP_INVALID)
			atomic_fetch_add(&r->resumed_psk_ke, 1);
	} else
		atomic_fetch_add(&r->full, 1);
	(void)gnutls_bye(s, GNUTLS_SHUT_WR);
	rc = 0;
out:
	if (s != NULL)
		gnutls_deinit(s);
	close(fd);
	return rc;
}

static void *worker(void *arg)
{
	struct run *r = arg;
	long i;

	while ((i = atomic_fetch_add(&r->next, 1)) < r->limit)
		if (one_connection(r, &r->dev[(size_t)i % r->ndev]) != 0)
			atomic_fetch_add(&r->errors, 1);
	return NULL;
}

static int run_pass(struct run *r, long n, bool priming)
{
	pthread_t th[256];
	long nth = r->o->concurrency < n ? r->o->concurrency : n, started = 0;

	r->priming = priming;
	r->limit = n;
	atomic_store(&r->next, 0);
	for (; started < nth; started++)
		if (pthread_create(&th[started], NULL, worker, r) != 0)
			break;
	for (long t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	return started > 0 ? 0 : -1;
}

/* utime + stime of the server processes, in microseconds; -1 if one cannot be read. */
static long long server_cpu_us(const struct options *o)
{
	long long total = 0;
	long tck = sysconf(_SC_CLK_TCK);

	for (size_t i = 0; i < o->nserver_pids; i++) {
		char path[64], buf[1024], *p;
		unsigned long long ut, st;
		FILE *f;
		size_t n;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)o->server_pids[i]);
		f = fopen(path, "r");
		if (f == NULL)
			return -1;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		/* after "(comm)": state is field 3, utime and stime fields 14 and 15 */
		p = strrchr(buf, ')');
		if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
					&ut, &st) != 2)
			return -1;
		total += (long long)(ut + st) * 1000000LL / tck;
	}
	return total;
}

static int load_devices(const struct options *o, struct device **out, size_t *nout)
{
	struct dirent **names = NULL;
	struct device *dev;
	int n = scandir(o->dir, &names, NULL, alphasort);
	size_t k = 0;

	if (n < 0)
		return -1;
	dev = calloc((size_t)n + 1, sizeof(*dev));
	for (int i = 0; i < n; i++) {
		char chain[4096], key[4096];

		if (dev != NULL && strncmp(names[i]->d_name, "dev-", 4) == 0) {
			snprintf(chain, sizeof(chain), "%s/%s/chain.pem", o->dir, names[i]->d_name);
			snprintf(key, sizeof(key), "%s/%s/key.pem", o->dir, names[i]->d_name);
			if (gnutls_certificate_allocate_credentials(&dev[k].cred) != GNUTLS_E_SUCCESS ||
			    gnutls_certificate_set_x509_trust_file(dev[k].cred, o->ca, GNUTLS_X509_FMT_PEM) < 1 ||
			    gnutls_certificate_set_x509_key_file(dev[k].cred, chain, key, GNUTLS_X509_FMT_PEM) !=
				    GNUTLS_E_SUCCESS) {
				fprintf(stderr, "kg-gtls-bench: cannot load %s (or the CA %s)\n", chain, o->ca);
				if (dev[k].cred != NULL)
					gnutls_certificate_free_credentials(dev[k].cred);
				dev[k].cred = NULL;
				free(names[i]);
				names[i] = NULL;
				continue;
			}
			k++;
		}
		free(names[i]);
	}
	free(names);
	if (dev == NULL || k == 0) {
		free(dev);
		return -1;
	}
	*out = dev;
	*nout = k;
	return 0;
}

static int parse_pids(const char *s, struct options *o)
{
	char *copy = strdup(s), *save = NULL;

	if (copy == NULL)
		return -1;
	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		char *end;
		long v = strtol(t, &end, 10);

		if (*end != '\0' || v <= 0 || o->nserver_pids == MAX_SERVER_PIDS) {
			free(copy);
			return -1;
		}
		o->server_pids[o->nserver_pids++] = (pid_t)v;
	}
	free(copy);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: kg-gtls-bench --target HOST:PORT --ca ROOT.pem --devices DIR --count N\n"
			"                     [--concurrency C] [--resume] [--psk-ke] [--server-pids PID,...]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "target", required_argument, NULL, 'T' }, { "ca", required_argument, NULL, 'a' },
		{ "devices", required_argument, NULL, 'd' }, { "count", required_argument, NULL, 'n' },
		{ "concurrency", required_argument, NULL, 'c' }, { "resume", no_argument, NULL, 'R' },
		{ "psk-ke", no_argument, NULL, 'K' }, { "server-pids", required_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	struct options o = { .count = 1000, .concurrency = 20 };
	static char host[256];
	struct run r = { .o = &o };
	struct timespec t0, t1;
	long long c0, c1;
	double wall;
	char *colon, *end;
	int ch;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'T':
			colon = strrchr(optarg, ':');
			if (colon == NULL || (size_t)(colon - optarg) >= sizeof(host)) {
				usage();
				return 2;
			}
			memcpy(host, optarg, (size_t)(colon - optarg));
			o.host = host;
			o.port = colon + 1;
			break;
		case 'a': o.ca = optarg; break;
		case 'd': o.dir = optarg; break;
		case 'n': o.count = strtol(optarg, &end, 10); if (*end || o.count < 1) { usage(); return 2; } break;
		case 'c': o.concurrency = strtol(optarg, &end, 10); if (*end || o.concurrency < 1 || o.concurrency > 256) { usage(); return 2; } break;
		case 'R': o.resume = true; break;
		case 'K': o.psk_ke = true; break;
		case 'C': if (parse_pids(optarg, &o) != 0) { usage(); return 2; } break;
		default: usage(); return 2;
		}
	}
	if (o.host == NULL || o.ca == NULL || o.dir == NULL || optind != argc || (o.psk_ke && !o.resume)) {
		usage();
		return 2;
	}
	if (gnutls_global_init() != GNUTLS_E_SUCCESS || load_devices(&o, &r.dev, &r.ndev) != 0) {
		fprintf(stderr, "kg-gtls-bench: no device credentials in %s\n", o.dir);
		return 1;
	}
	/* TLS 1.3 only, X25519 first (kg-bench's share). psk_ke alone: the PSK key exchange
	 * without its (EC)DHE forms (GnuTLS sends the modes its key exchanges allow). */
	r.priority = o.psk_ke ? "NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1"
				":+PSK:-ECDHE-PSK:-DHE-PSK"
			      : "NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1";
	/* GnuTLS keeps a key exchange in the priority only with credentials for it: PSK
	 * credentials (an identity no server knows, offered after the ticket and skipped)
	 * keep "PSK", so the client sends psk_key_exchange_modes = psk_ke alone. */
	if (o.psk_ke) {
		static unsigned char unknown_key[16] = { 0x6b, 0x67 };
		const gnutls_datum_t key = { unknown_key, sizeof(unknown_key) };

		if (gnutls_psk_allocate_client_credentials(&r.psk) != GNUTLS_E_SUCCESS ||
		    gnutls_psk_set_client_credentials(r.psk, "kg-gtls-bench", &key, GNUTLS_PSK_KEY_RAW) !=
			    GNUTLS_E_SUCCESS) {
			fprintf(stderr, "kg-gtls-bench: cannot make the PSK credentials\n");
			return 1;
		}
	}
	if (o.resume) {
		if (run_pass(&r, (long)r.ndev, true) != 0 || atomic_load(&r.errors) > 0) {
			fprintf(stderr, "kg-gtls-bench: the priming pass failed (%ld errors)\n", atomic_load(&r.errors));
			return 1;
		}
	}
	c0 = server_cpu_us(&o);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (run_pass(&r, o.count, false) != 0)
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	c1 = server_cpu_us(&o);
	wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("{\"count\":%ld,\"errors\":%ld,\"rate\":%.1f,\"full\":%ld,\"resumed\":%ld,\"resumed_psk_ke\":%ld",
	       o.count - atomic_load(&r.errors), atomic_load(&r.errors), (double)o.count / wall,
	       atomic_load(&r.full), atomic_load(&r.resumed), atomic_load(&r.resumed_psk_ke));
	if (o.resume)
		printf(",\"primed\":%zu", r.ndev);
	if (o.nserver_pids > 0 && c0 >= 0 && c1 >= c0)
		printf(",\"server_cpu_us\":%.0f", (double)(c1 - c0) / (double)o.count);
	printf("}\n");
	for (size_t i = 0; i < r.ndev; i++) {
		gnutls_free(r.dev[i].session.data);
		gnutls_certificate_free_credentials(r.dev[i].cred);
	}
	free(r.dev);
	if (r.psk != NULL)
		gnutls_psk_free_client_credentials(r.psk);
	gnutls_global_deinit();
	return atomic_load(&r.errors) > 0 ? 1 : 0;
}
