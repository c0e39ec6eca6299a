/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tpm_signer.c - the TPM signer thread (contract in tpm_signer.h).
 *
 * A request is shared by its submitter and the thread: a reference each, the last one
 * frees it (and closes its dup of the submitter's eventfd, so a submitter that gave up
 * and closed its own fd never has its number written to by us). Its state moves
 * QUEUED -> RUNNING -> DONE|FAILED on the thread; the submitter only ever sets
 * `abandoned`. Both are seq_cst: whichever of "thread starts it" and "submitter gives
 * up" comes second sees the other, so an abandoned request is either never run, or the
 * submitter knows a TPM call outlived its deadline (stalled).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ops/config.h"
#include "ops/log.h"
#include "tpm/tpm_conf.h"
#include "tpm/tpm_key.h"
#include "tpm/tpm_signer.h"

enum req_state { RQ_QUEUED, RQ_RUNNING, RQ_DONE, RQ_FAILED };

struct kg_tpm_req {
	atomic_int refs;
	atomic_int state;
	atomic_bool abandoned;
	struct kg_tpm_signer *s;
	enum kg_tpm_req_op op;
	int fd;                     /* dup of the submitter's eventfd */
	uint64_t deadline_ns;
	uint8_t in[KG_TPM_REQ_BUF];
	size_t in_len;
	uint8_t out[KG_TPM_REQ_BUF];
	size_t out_len;
	char err[160];              /* why a seal/unseal failed (their caller logs it) */
	struct kg_tpm_req *next;
};

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct kg_tpm_signer {
	char tcti[256];
	char keyref[PATH_MAX];
	uint32_t handle;            /* blob NULL: a persistent key */
	struct kg_tss2_key blob;
	bool is_blob;
	struct kg_tpm_pub pub;      /* as loaded at start: the certificate's key */
	unsigned queue_max;
	uint64_t timeout_ns;

	pthread_t thread;
	bool started;
	pthread_mutex_t lock;       /* the queue, stop, and the thread's wake-ups */
	pthread_cond_t cond;
	struct kg_tpm_req *head, *tail;
	unsigned depth;
	bool stop;
	atomic_bool exited;         /* the thread has returned */

	atomic_bool up;
	atomic_bool stalled;        /* a TPM call outlived its request's deadline */
	_Atomic uint64_t errors[KG_TPM_OP_MAX];
	_Atomic uint64_t sign_buckets[KG_TPM_SIGN_BUCKETS]; /* per bucket, not cumulative */
	_Atomic uint64_t sign_count;
	_Atomic uint64_t sign_sum_ns;

	/* the thread's alone (and new()/free() when it is not running) */
	struct kg_tpm *tpm;
	struct kg_tpm_loaded key;
	bool key_loaded;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void count(struct kg_tpm_signer *s, enum kg_tpm_op op)
{
	atomic_fetch_add_explicit(&s->errors[op], 1, memory_order_relaxed);
}

static void observe(struct kg_tpm_signer *s, uint64_t ns)
{
	double sec = (double)ns / 1e9;
	size_t b;

	for (b = 0; b + 1 < KG_TPM_SIGN_BUCKETS; b++)
		if (sec <= kg_tpm_sign_bucket_le[b])
			break;
	atomic_fetch_add_explicit(&s->sign_buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->sign_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->sign_sum_ns, ns, memory_order_relaxed);
}

static void req_put(struct kg_tpm_req *r)
{
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	if (r->fd >= 0)
		close(r->fd);
	/* a seal's input or an unseal's output is a secret (the ticket wrapping key) */
	if (r->op == KG_TPM_REQ_SEAL || r->op == KG_TPM_REQ_UNSEAL)
		explicit_bzero(r, sizeof(*r));
	free(r);
}

/* The thread finished r (state DONE or FAILED set): wake the submitter, drop our hold. */
static void req_finish(struct kg_tpm_req *r, enum req_state st)
{
	uint64_t one = 1;

	atomic_store(&r->state, st);
	if (write(r->fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		kg_log_debug("TPM signer: eventfd write: %m");
	req_put(r);
}

/* ---- the TPM side (signer thread, or new() before the thread exists) ---- */

static void tpm_drop(struct kg_tpm_signer *s)
{
	if (s->tpm == NULL)
		return;
	if (s->key_loaded)
		kg_tpm_key_unload(s->tpm, &s->key);
	s->key_loaded = false;
	kg_tpm_close(s->tpm);
	s->tpm = NULL;
}

/* Connect and load the key. 0, or -1 with *failed and err. */
static int tpm_bring_up(struct kg_tpm_signer *s, enum kg_tpm_op *failed, char *err, size_t errlen)
{
	unsigned flushed = 0;
	char why[256];

	if (kg_tpm_open(s->tcti, &s->tpm, err, errlen) != 0) {
		*failed = KG_TPM_OP_CONNECT;
		return -1;
	}
	/* Without a resource manager a crashed ktlsgated (kill -9) leaves its loaded key
	 * in the TPM, and swtpm has three transient slots: clear them before loading. */
	if (kg_tpm_flush_transients(s->tpm, &flushed, why, sizeof(why)) != 0)
		kg_log_warnx("TPM: cannot flush leftover objects: %s", why);
	else if (flushed > 0)
		kg_log_warnx("TPM: flushed %u transient object(s)/session(s) left by an earlier "
			     "process", flushed);
	if (kg_tpm_key_load(s->tpm, s->handle, s->is_blob ? &s->blob : NULL, &s->key, why,
			    sizeof(why)) != 0) {
		snprintf(err, errlen, "server key %s in the TPM: %s", s->keyref, why);
		*failed = KG_TPM_OP_LOAD;
		tpm_drop(s);
		return -1;
	}
	s->key_loaded = true;
	return 0;
}

/* A sealed object as one request buffer: u16 pub_len, pub, u16 priv_len, priv (the
 * lengths big-endian). Same layout both ways (seal's result, unseal's input). */
static size_t sealed_put(const struct kg_tpm_sealed *o, uint8_t *b)
{
	b[0] = (uint8_t)(o->pub_len >> 8);
	b[1] = (uint8_t)o->pub_len;
	memcpy(b + 2, o->pub, o->pub_len);
	b[2 + o->pub_len] = (uint8_t)(o->priv_len >> 8);
	b[3 + o->pub_len] = (uint8_t)o->priv_len;
	memcpy(b + 4 + o->pub_len, o->priv, o->priv_len);
	return 4 + o->pub_len + o->priv_len;
}

static int sealed_get(const uint8_t *b, size_t len, struct kg_tpm_sealed *o)
{
	size_t pl, vl;

	if (len < 4)
		return -1;
	pl = (size_t)b[0] << 8 | b[1];
	if (pl > sizeof(o->pub) || len < 4 + pl)
		return -1;
	vl = (size_t)b[2 + pl] << 8 | b[3 + pl];
	if (vl > sizeof(o->priv) || len != 4 + pl + vl)
		return -1;
	memcpy(o->pub, b + 2, pl);
	o->pub_len = pl;
	memcpy(o->priv, b + 4 + pl, vl);
	o->priv_len = vl;
	return 0;
}

/* Run r against the TPM. */
static enum kg_tpm_res run_req(struct kg_tpm_signer *s, struct kg_tpm_req *r, char *err,
			       size_t errlen)
{
	struct kg_tpm_sealed so;
	enum kg_tpm_res res;

	if (r->op == KG_TPM_REQ_SEAL) {
		res = kg_tpm_seal(s->tpm, r->in, r->in_len, &so, err, errlen);
		if (res == KG_TPM_OK)
			r->out_len = sealed_put(&so, r->out);
		return res;
	}
	if (r->op == KG_TPM_REQ_UNSEAL) {
		if (sealed_get(r->in, r->in_len, &so) != 0) {
			snprintf(err, errlen, "unseal: malformed sealed object");
			return KG_TPM_REFUSED;
		}
		return kg_tpm_unseal(s->tpm, &so, r->out, KG_TPM_SEAL_MAX, &r->out_len, err, errlen);
	}
	if (r->op == KG_TPM_REQ_ECDSA) {
		r->out_len = 64;
		return kg_tpm_sign_ecdsa(s->tpm, &s->key, r->in, r->in_len, r->out, r->out + 32, err,
					 errlen);
	}
	r->out_len = r->in_len;
	return kg_tpm_rsa_raw(s->tpm, &s->key, r->in, r->in_len, r->out, err, errlen);
}

/* Everything queued fails now (the signer went down, or is stopping). Lock held. */
static void fail_queue(struct kg_tpm_signer *s)
{
	struct kg_tpm_req *r;

	while ((r = s->head) != NULL) {
		s->head = r->next;
		s->depth--;
		req_finish(r, RQ_FAILED);
	}
	s->tail = NULL;
}

/* Down: reconnect with backoff until up or stopping. Lock held on entry and exit. */
static void reconnect(struct kg_tpm_signer *s)
{
	unsigned backoff = BACKOFF_MIN_MS;
	enum kg_tpm_op failed = KG_TPM_OP_CONNECT;
	char err[512], last[512] = "";

	while (!s->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += backoff / 1000;
		ts.tv_nsec += (long)(backoff % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &ts) != ETIMEDOUT)
			;
		if (s->stop)
			return;
		pthread_mutex_unlock(&s->lock);
		if (tpm_bring_up(s, &failed, err, sizeof(err)) == 0) {
			if (memcmp(&s->key.pub, &s->pub, sizeof(s->pub)) == 0) {
				pthread_mutex_lock(&s->lock);
				atomic_store(&s->up, true);
				kg_log_warnx("TPM signer: up again (%s, key %s reloaded)",
					     s->tcti[0] ? s->tcti : "(default)", s->keyref);
				return;
			}
			snprintf(err, sizeof(err), "server key %.200s in the TPM is not the key of "
				 "the certificate in use", s->keyref);
			failed = KG_TPM_OP_LOAD;
			tpm_drop(s);
		}
		count(s, failed);
		/* one line per transition: a new reason is one, the same one again is not */
		if (strcmp(err, last) != 0) {
			kg_log_warnx("TPM signer: still down: %s (retrying every %u ms at most)", err,
				     BACKOFF_MAX_MS);
			memcpy(last, err, sizeof(last));
		}
		pthread_mutex_lock(&s->lock);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
}

static void *signer_main(void *arg)
{
	struct kg_tpm_signer *s = arg;
	char err[512];

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		struct kg_tpm_req *r;
		enum kg_tpm_res res;
		uint64_t t0;

		if (!atomic_load(&s->up)) {
			reconnect(s);
			continue;
		}
		if (s->head == NULL) {
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		r = s->head;
		s->head = r->next;
		if (s->head == NULL)
			s->tail = NULL;
		s->depth--;
		atomic_store(&r->state, RQ_RUNNING);
		if (atomic_load(&r->abandoned) || now_ns() >= r->deadline_ns) {
			/* its submitter counted the timeout and gave up: nobody waits */
			req_finish(r, RQ_FAILED);
			continue;
		}
		pthread_mutex_unlock(&s->lock);
		t0 = now_ns();
		err[0] = '\0';
		res = run_req(s, r, err, sizeof(err));
		if (res == KG_TPM_OK && (r->op == KG_TPM_REQ_ECDSA || r->op == KG_TPM_REQ_RSA_RAW))
			observe(s, now_ns() - t0);
		if (res != KG_TPM_OK)
			snprintf(r->err, sizeof(r->err), "%.*s", (int)sizeof(r->err) - 1, err);
		/* the call returned: whatever stalled us is over */
		atomic_store(&s->stalled, false);
		if (res != KG_TPM_OK) {
			count(s, r->op == KG_TPM_REQ_SEAL || r->op == KG_TPM_REQ_UNSEAL ? KG_TPM_OP_SEAL
											 : KG_TPM_OP_SIGN);
			kg_log_debug("TPM signer: %s", err);
		}
		req_finish(r, res == KG_TPM_OK ? RQ_DONE : RQ_FAILED);
		pthread_mutex_lock(&s->lock);
		if (res == KG_TPM_BROKEN) {
			atomic_store(&s->up, false);
			kg_log_warnx("TPM signer: down (%s): handshakes needing the TPM fail until "
				     "it is back", err);
			fail_queue(s);
			pthread_mutex_unlock(&s->lock);
			tpm_drop(s);
			pthread_mutex_lock(&s->lock);
		}
	}
	fail_queue(s);
	pthread_mutex_unlock(&s->lock);
	tpm_drop(s);
	atomic_store(&s->exited, true);
	return NULL;
}

/* ---- the API ---- */

static int parse_keyref(struct kg_tpm_signer *s, const char *keyref, char *err, size_t errlen)
{
	FILE *f;
	char *text;
	size_t n;
	int rc;

	if (strncmp(keyref, KG_TPM_HANDLE_PREFIX, strlen(KG_TPM_HANDLE_PREFIX)) == 0) {
		if (kg_tpm_parse_keyref(keyref, &s->handle) != 0) {
			snprintf(err, errlen, "%s: not a persistent handle (0x81000000..0x81ffffff)",
				 keyref);
			return -1;
		}
		return 0;
	}
	f = fopen(keyref, "re");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %m", keyref);
		return -1;
	}
	text = malloc(16384);
	n = text ? fread(text, 1, 16383, f) : 0;
	fclose(f);
	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	text[n] = '\0';
	rc = kg_tss2_key_from_pem(text, n, &s->blob);
	free(text);
	if (rc != 0) {
		snprintf(err, errlen, "%s: not a loadable TSS2 PRIVATE KEY", keyref);
		return -1;
	}
	s->is_blob = true;
	return 0;
}

/*
 * The bring-up (connect, flush, load) on a thread of its own, waited for up to
 * KG_TPM_START_TIMEOUT_S: a TPM that accepts the connection and never answers (a
 * stopped swtpm, a wedged TPM behind a resource manager) would otherwise hang the
 * start (and `ktlsgated -t`) for good. tpm2-tss's socket TCTIs take no receive
 * timeout, hence the thread. Given up, the thread owns the signer and frees it if the
 * call ever returns; the caller fails with a message naming the wait.
 */
struct bringup {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct kg_tpm_signer *s;
	int state;                  /* 0 running, 1 up, -1 failed */
	bool abandoned;
	enum kg_tpm_op failed;
	char err[512];
};

static void signer_destroy(struct kg_tpm_signer *s)
{
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static void bringup_free(struct bringup *b)
{
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static void *bringup_main(void *arg)
{
	struct bringup *b = arg;
	enum kg_tpm_op f = KG_TPM_OP_LOAD;
	char err[512] = "";
	int rc = tpm_bring_up(b->s, &f, err, sizeof(err));
	bool abandoned;

	pthread_mutex_lock(&b->lock);
	abandoned = b->abandoned;
	if (!abandoned) {
		b->state = rc == 0 ? 1 : -1;
		b->failed = f;
		memcpy(b->err, err, sizeof(err));
		pthread_cond_signal(&b->cond);
	}
	pthread_mutex_unlock(&b->lock);
	if (abandoned) {
		/* the start gave up long ago: nobody else holds these */
		if (rc == 0)
			tpm_drop(b->s);
		signer_destroy(b->s);
		bringup_free(b);
	}
	return NULL;
}

/* 0 up; -1 failed or timed out (err says which). On a timeout *s is no longer the
 * caller's (the bring-up thread frees it). */
static int bring_up_bounded(struct kg_tpm_signer **sp, enum kg_tpm_op *failed, char *err,
			    size_t errlen)
{
	struct bringup *b = calloc(1, sizeof(*b));
	pthread_condattr_t ca;
	pthread_t th;
	struct timespec until;
	int rc = 0;

	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&b->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cond, &ca);
	pthread_condattr_destroy(&ca);
	b->s = *sp;
	if (pthread_create(&th, NULL, bringup_main, b) != 0) {
		bringup_free(b);
		return tpm_bring_up(*sp, failed, err, errlen);   /* no thread: unbounded */
	}
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += KG_TPM_START_TIMEOUT_S;
	pthread_mutex_lock(&b->lock);
	while (b->state == 0 && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&b->cond, &b->lock, &until);
	if (b->state == 0) {
		b->abandoned = true;
		pthread_mutex_unlock(&b->lock);
		(void)pthread_detach(th);
		*sp = NULL;
		*failed = KG_TPM_OP_CONNECT;
		snprintf(err, errlen, "the TPM did not answer within %d s (stopped, or wedged?)",
			 KG_TPM_START_TIMEOUT_S);
		return -1;
	}
	pthread_mutex_unlock(&b->lock);
	(void)pthread_join(th, NULL);
	rc = b->state == 1 ? 0 : -1;
	if (rc != 0) {
		*failed = b->failed;
		snprintf(err, errlen, "%s", b->err);
	}
	bringup_free(b);
	return rc;
}

int kg_tpm_signer_new(const struct kg_tpm_signer_opts *o, struct kg_tpm_signer **out,
		      enum kg_tpm_op *failed, char *err, size_t errlen)
{
	struct kg_tpm_signer *s = calloc(1, sizeof(*s));
	const char *tcti = o->tcti ? o->tcti : "";
	enum kg_tpm_op f = KG_TPM_OP_LOAD;

	*out = NULL;
	if (s == NULL || strlen(tcti) >= sizeof(s->tcti) || strlen(o->keyref) >= sizeof(s->keyref)) {
		snprintf(err, errlen, s ? "TCTI or key name too long" : "out of memory");
		free(s);
		if (failed)
			*failed = f;
		return -1;
	}
	memcpy(s->tcti, tcti, strlen(tcti) + 1);
	memcpy(s->keyref, o->keyref, strlen(o->keyref) + 1);
	s->queue_max = o->queue_max ? o->queue_max : 64;
	s->timeout_ns = (o->timeout_ms ? o->timeout_ms : 1000) * 1000000u;
	pthread_mutex_init(&s->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (parse_keyref(s, o->keyref, err, errlen) != 0)
		goto fail;
	/* tpm2-tss logs every failed TCTI probe to stderr, several lines each; our
	 * caller reports the failure in one line. TSS2_LOG set by the operator wins.
	 * (Before any thread exists: the environment is process-wide.) */
	(void)setenv("TSS2_LOG", "all+none", 0);
	if (bring_up_bounded(&s, &f, err, errlen) != 0) {
		if (s == NULL) {   /* timed out: the bring-up thread owns it now */
			if (failed)
				*failed = f;
			return -1;
		}
		goto fail;
	}
	s->pub = s->key.pub;
	atomic_store(&s->up, true);
	if (pthread_create(&s->thread, NULL, signer_main, s) != 0) {
		snprintf(err, errlen, "cannot start the TPM signer thread");
		f = KG_TPM_OP_CONNECT;
		tpm_drop(s);
		goto fail;
	}
	(void)pthread_setname_np(s->thread, "kg-tpm-signer");
	s->started = true;
	*out = s;
	return 0;
fail:
	if (failed)
		*failed = f;
	signer_destroy(s);
	return -1;
}

void kg_tpm_signer_free(struct kg_tpm_signer *s)
{
	struct timespec ts;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->started) {
		/* A thread inside a TPM call that never returns (a stopped TPM) cannot be
		 * joined: leave it and its memory to the exiting process. */
		for (int i = 0; i < 300 && !atomic_load(&s->exited); i++) {
			ts = (struct timespec){ .tv_nsec = 10 * 1000000L };
			nanosleep(&ts, NULL);
		}
		if (!atomic_load(&s->exited)) {
			kg_log_warnx("TPM signer: stuck in a TPM call, not waiting for it");
			(void)pthread_detach(s->thread);
			return;
		}
		(void)pthread_join(s->thread, NULL);
	} else {
		tpm_drop(s);
	}
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const struct kg_tpm_pub *kg_tpm_signer_pub(const struct kg_tpm_signer *s)
{
	return &s->pub;
}

bool kg_tpm_signer_matches(const struct kg_tpm_signer *s, const char *tcti, const char *keyref)
{
	return strcmp(s->tcti, tcti ? tcti : "") == 0 && strcmp(s->keyref, keyref) == 0;
}

struct kg_tpm_req *kg_tpm_signer_submit(struct kg_tpm_signer *s, enum kg_tpm_req_op op,
					const uint8_t *in, size_t len, int notify_fd)
{
	struct kg_tpm_req *r;

	if (len == 0 || len > sizeof(r->in))
		return NULL;
	/* down or stalled: fail at once rather than queue behind a TPM that is not
	 * answering (the handshake's own deadline would otherwise be the limit) */
	if (!atomic_load(&s->up) || atomic_load(&s->stalled))
		return NULL;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->fd = fcntl(notify_fd, F_DUPFD_CLOEXEC, 0);
	if (r->fd < 0) {
		free(r);
		return NULL;
	}
	atomic_init(&r->refs, 2);
	atomic_init(&r->state, RQ_QUEUED);
	atomic_init(&r->abandoned, false);
	r->s = s;
	r->op = op;
	memcpy(r->in, in, len);
	r->in_len = len;
	r->deadline_ns = now_ns() + s->timeout_ns;
	pthread_mutex_lock(&s->lock);
	if (s->stop || !atomic_load(&s->up) || s->depth >= s->queue_max) {
		bool full = !s->stop && atomic_load(&s->up);

		pthread_mutex_unlock(&s->lock);
		if (full)
			count(s, KG_TPM_OP_QUEUE_FULL);
		close(r->fd);
		free(r);
		return NULL;
	}
	if (s->tail)
		s->tail->next = r;
	else
		s->head = r;
	s->tail = r;
	s->depth++;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return r;
}

uint64_t kg_tpm_req_deadline(const struct kg_tpm_req *r)
{
	return r->deadline_ns;
}

bool kg_tpm_req_done(const struct kg_tpm_req *r)
{
	return atomic_load(&r->state) >= RQ_DONE;
}

bool kg_tpm_req_wait(struct kg_tpm_req *r, int notify_fd)
{
	while (!kg_tpm_req_done(r)) {
		uint64_t now = now_ns();
		struct pollfd p = { .fd = notify_fd, .events = POLLIN };
		uint64_t left;

		if (now >= r->deadline_ns)
			return false;
		left = (r->deadline_ns - now + 999999) / 1000000;
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return false;
		if (p.revents & POLLIN) {
			uint64_t v;

			(void)!read(notify_fd, &v, sizeof(v));
		}
	}
	return true;
}

int kg_tpm_req_result(const struct kg_tpm_req *r, uint8_t *out, size_t cap, size_t *len)
{
	if (atomic_load(&r->state) != RQ_DONE || r->out_len > cap)
		return -1;
	memcpy(out, r->out, r->out_len);
	*len = r->out_len;
	return 0;
}

/* One seal/unseal, synchronous: an eventfd of its own, submit, wait, result. */
static int sync_req(struct kg_tpm_signer *s, enum kg_tpm_req_op op, const uint8_t *in, size_t len,
		    uint8_t *out, size_t cap, size_t *out_len, char *err, size_t errlen)
{
	struct kg_tpm_req *r;
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), ret = -1;

	if (fd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -1;
	}
	r = kg_tpm_signer_submit(s, op, in, len, fd);
	if (r == NULL) {
		snprintf(err, errlen, "the TPM signer is down, stalled or busy");
		goto out;
	}
	if (!kg_tpm_req_wait(r, fd)) {
		snprintf(err, errlen, "no answer from the TPM within the signer's deadline");
	} else if (kg_tpm_req_result(r, out, cap, out_len) != 0) {
		snprintf(err, errlen, "%s", r->err[0] ? r->err : "the TPM refused");
	} else {
		ret = 0;
	}
	kg_tpm_req_release(r);   /* the last hold wipes it (req_put) */
out:
	close(fd);
	return ret;
}

int kg_tpm_signer_seal(struct kg_tpm_signer *s, const uint8_t *secret, size_t len,
		       uint8_t *out, size_t cap, size_t *out_len, char *err, size_t errlen)
{
	if (len == 0 || len > KG_TPM_SEAL_MAX) {
		snprintf(err, errlen, "seal: %zu bytes (1..%d)", len, KG_TPM_SEAL_MAX);
		return -1;
	}
	return sync_req(s, KG_TPM_REQ_SEAL, secret, len, out, cap, out_len, err, errlen);
}

int kg_tpm_signer_unseal(struct kg_tpm_signer *s, const uint8_t *sealed, size_t len,
			 uint8_t *out, size_t cap, size_t *out_len, char *err, size_t errlen)
{
	return sync_req(s, KG_TPM_REQ_UNSEAL, sealed, len, out, cap, out_len, err, errlen);
}

void kg_tpm_req_release(struct kg_tpm_req *r)
{
	if (!kg_tpm_req_done(r)) {
		atomic_store(&r->abandoned, true);
		/* Given up at its deadline, not because its connection went away first:
		 * a timeout; and if the thread is inside the TPM call for it, the TPM is
		 * not answering in time, so later requests fail fast until it returns. */
		if (now_ns() >= r->deadline_ns) {
			count(r->s, KG_TPM_OP_TIMEOUT);
			if (atomic_load(&r->state) == RQ_RUNNING)
				atomic_store(&r->s->stalled, true);
		}
	}
	req_put(r);
}

void kg_tpm_signer_stats(struct kg_tpm_signer *s, struct kg_tpm_signer_stats *out)
{
	uint64_t cum = 0;

	memset(out, 0, sizeof(*out));
	out->up = atomic_load(&s->up) && !atomic_load(&s->stalled);
	pthread_mutex_lock(&s->lock);
	out->queue = s->depth;
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < KG_TPM_OP_MAX; i++)
		out->errors[i] = atomic_load_explicit(&s->errors[i], memory_order_relaxed);
	for (size_t b = 0; b < KG_TPM_SIGN_BUCKETS; b++) {
		cum += atomic_load_explicit(&s->sign_buckets[b], memory_order_relaxed);
		out->sign_buckets[b] = cum;
	}
	out->sign_count = atomic_load_explicit(&s->sign_count, memory_order_relaxed);
	out->sign_sum = (double)atomic_load_explicit(&s->sign_sum_ns, memory_order_relaxed) / 1e9;
}

int kg_tpm_signer_from_config(const struct kg_config *cfg, struct kg_tpm_signer **out,
			      enum kg_tpm_op *failed, char *err, size_t errlen)
{
	const struct kg_tpm_conf *tc = &cfg->tpm;
	struct kg_tpm_signer_opts o = {
		.tcti = tc->tcti, .keyref = cfg->key_file,
		.queue_max = tc->sign_queue, .timeout_ms = tc->sign_timeout_ms,
	};
	enum kg_tpm_op f = KG_TPM_OP_CONNECT;
	char why[512];

	*out = NULL;
	if (!kg_tpm_keyref_is_tpm(cfg->key_file))
		return 0;
	if (kg_tpm_signer_new(&o, out, &f, why, sizeof(why)) == 0)
		return 0;
	if (failed != NULL)
		*failed = f;
	/* the fallback stands in for an absent TPM, not for a key it cannot load */
	if (tc->key_fallback[0] == '\0' || f != KG_TPM_OP_CONNECT) {
		snprintf(err, errlen, "server key %s: %s", cfg->key_file, why);
		return -1;
	}
	/* Loud on purpose: the server key is now a file an attacker with the disk can
	 * copy, which is what the TPM was there to prevent. */
	kg_log_warnx("TPM UNAVAILABLE (%s): server key FALLBACK to the file %s instead of the "
		     "TPM key %s; the server key is NOT protected by the TPM",
		     why, tc->key_fallback, cfg->key_file);
	return 1;
}
