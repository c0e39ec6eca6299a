/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * auth_pool.c - the scrypt thread pool (contract in auth_pool.h). One mutex for the
 * queue, the running slots and the completion lists: a job costs a KDF (tens of ms
 * and more), so the lock is never the bottleneck.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include <openssl/crypto.h>

#include "auth/auth_pool.h"
#include "ops/err.h"

struct node {
	struct node *next;
	unsigned worker;
	uint64_t tag;
	bool cancelled;               /* running: drop the result */
	uint64_t kdf_ns;
	struct kg_auth_job job;
	struct kg_auth_result res;
};

struct list {
	struct node *head, *tail;
};

struct kg_auth_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	unsigned n_threads, started, queue_cap, n_workers;
	pthread_t *threads;
	struct node **running;        /* per thread: the job it runs, or NULL */
	struct list queue;
	struct list *done;            /* per worker */
	int *efd;                     /* per worker */
	struct kg_auth_pool_stats st;
};

struct thread_arg {
	struct kg_auth_pool *p;
	unsigned idx;
};

static void push(struct list *l, struct node *n)
{
	n->next = NULL;
	if (l->tail)
		l->tail->next = n;
	else
		l->head = n;
	l->tail = n;
}

static struct node *shift(struct list *l)
{
	struct node *n = l->head;

	if (n) {
		l->head = n->next;
		if (l->head == NULL)
			l->tail = NULL;
	}
	return n;
}

/* Unlink the node of (worker, tag) from l; NULL when none. */
static struct node *unlink_tag(struct list *l, unsigned worker, uint64_t tag)
{
	struct node *prev = NULL;

	for (struct node *n = l->head; n; prev = n, n = n->next) {
		if (n->worker != worker || n->tag != tag)
			continue;
		if (prev)
			prev->next = n->next;
		else
			l->head = n->next;
		if (l->tail == n)
			l->tail = prev;
		return n;
	}
	return NULL;
}

static void node_free(struct node *n)
{
	OPENSSL_cleanse(&n->job, sizeof(n->job));
	free(n);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *thread_main(void *arg)
{
	struct thread_arg *ta = arg;
	struct kg_auth_pool *p = ta->p;
	unsigned idx = ta->idx;

	free(ta);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct node *n;
		uint64_t t0;

		while (!p->stop && p->queue.head == NULL)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		n = shift(&p->queue);
		p->st.queued--;
		p->st.running++;
		p->running[idx] = n;
		pthread_mutex_unlock(&p->mu);

		t0 = mono_ns();
		kg_auth_job_run(&n->job, &n->res);
		n->kdf_ns = mono_ns() - t0;

		pthread_mutex_lock(&p->mu);
		p->running[idx] = NULL;
		p->st.running--;
		p->st.kdf_ns += n->kdf_ns;
		if (n->cancelled) {
			p->st.cancelled++;
			node_free(n);
			continue;
		}
		push(&p->done[n->worker], n);
		/* Under the lock, so pop's "list empty: reset the eventfd" cannot race it. */
		if (eventfd_write(p->efd[n->worker], 1) != 0) {
			/* EAGAIN only at a counter of 2^64 - 2: it is readable anyway. */
		}
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int kg_auth_pool_new(unsigned threads, unsigned queue_cap, unsigned workers,
		     struct kg_auth_pool **out)
{
	struct kg_auth_pool *p;

	*out = NULL;
	if (threads == 0 || queue_cap == 0 || workers == 0)
		return KG_E_INVALID;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return KG_E_RESOURCE;
	p->n_threads = threads;
	p->queue_cap = queue_cap;
	p->n_workers = workers;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->threads = calloc(threads, sizeof(*p->threads));
	p->running = calloc(threads, sizeof(*p->running));
	p->done = calloc(workers, sizeof(*p->done));
	p->efd = calloc(workers, sizeof(*p->efd));
	if (!p->threads || !p->running || !p->done || !p->efd)
		goto fail;
	for (unsigned w = 0; w < workers; w++)
		p->efd[w] = -1;
	for (unsigned w = 0; w < workers; w++) {
		p->efd[w] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (p->efd[w] < 0)
			goto fail;
	}
	for (unsigned t = 0; t < threads; t++) {
		struct thread_arg *ta = malloc(sizeof(*ta));

		if (ta == NULL)
			goto fail;
		ta->p = p;
		ta->idx = t;
		if (pthread_create(&p->threads[t], NULL, thread_main, ta) != 0) {
			free(ta);
			goto fail;
		}
		{
			char name[32];   /* the kernel keeps 15 bytes */

			snprintf(name, sizeof(name), "kg-kdf%u", t);
			name[15] = '\0';
			(void)pthread_setname_np(p->threads[t], name);
		}
		p->started++;
	}
	*out = p;
	return 0;
fail:
	kg_auth_pool_free(p);
	return KG_E_RESOURCE;
}

void kg_auth_pool_free(struct kg_auth_pool *p)
{
	struct node *n;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned t = 0; t < p->started; t++)
		pthread_join(p->threads[t], NULL);
	while ((n = shift(&p->queue)) != NULL) {
		kg_auth_job_wipe(&n->job);
		node_free(n);
	}
	for (unsigned w = 0; p->done && w < p->n_workers; w++)
		while ((n = shift(&p->done[w])) != NULL)
			node_free(n);
	for (unsigned w = 0; p->efd && w < p->n_workers; w++)
		if (p->efd[w] >= 0)
			close(p->efd[w]);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p->running);
	free(p->done);
	free(p->efd);
	free(p);
}

int kg_auth_pool_fd(struct kg_auth_pool *p, unsigned worker)
{
	return worker < p->n_workers ? p->efd[worker] : -1;
}

int kg_auth_pool_submit(struct kg_auth_pool *p, unsigned worker, uint64_t tag,
			struct kg_auth_job *job)
{
	struct node *n = NULL;
	int rc = 0;

	if (worker >= p->n_workers) {
		rc = KG_E_INVALID;
		goto refuse;
	}
	n = malloc(sizeof(*n));
	if (n == NULL) {
		rc = KG_E_RESOURCE;
		goto refuse;
	}
	memset(n, 0, sizeof(*n));
	n->worker = worker;
	n->tag = tag;
	pthread_mutex_lock(&p->mu);
	if (p->st.queued >= p->queue_cap) {
		p->st.rejected++;
		pthread_mutex_unlock(&p->mu);
		free(n);
		rc = KG_E_BUSY;
		goto refuse;
	}
	n->job = *job;
	push(&p->queue, n);
	p->st.queued++;
	p->st.submitted++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	/* The pool has its copy; the caller's is no longer needed. */
	OPENSSL_cleanse(job->password, sizeof(job->password));
	job->password_len = 0;
	return 0;
refuse:
	kg_auth_job_wipe(job);
	return rc;
}

size_t kg_auth_pool_pop(struct kg_auth_pool *p, unsigned worker, struct kg_auth_done *out,
			size_t max)
{
	size_t k = 0;
	eventfd_t v;

	if (worker >= p->n_workers)
		return 0;
	pthread_mutex_lock(&p->mu);
	while (k < max) {
		struct node *n = shift(&p->done[worker]);

		if (n == NULL)
			break;
		out[k].tag = n->tag;
		out[k].res = n->res;
		out[k].kdf_ns = n->kdf_ns;
		k++;
		p->st.completed++;
		node_free(n);
	}
	if (p->done[worker].head == NULL)
		(void)eventfd_read(p->efd[worker], &v);   /* EAGAIN when already 0: fine */
	pthread_mutex_unlock(&p->mu);
	return k;
}

int kg_auth_pool_cancel(struct kg_auth_pool *p, unsigned worker, uint64_t tag)
{
	struct node *n;
	int dropped = 0;
	eventfd_t v;

	if (worker >= p->n_workers)
		return 0;
	pthread_mutex_lock(&p->mu);
	if ((n = unlink_tag(&p->queue, worker, tag)) != NULL) {
		p->st.queued--;
		p->st.cancelled++;
		kg_auth_job_wipe(&n->job);
		node_free(n);
		dropped = 1;
		goto out;
	}
	for (unsigned t = 0; t < p->n_threads; t++) {
		n = p->running[t];
		if (n && n->worker == worker && n->tag == tag && !n->cancelled) {
			n->cancelled = true;    /* the thread frees it when the KDF returns */
			dropped = 1;
			goto out;
		}
	}
	if ((n = unlink_tag(&p->done[worker], worker, tag)) != NULL) {
		p->st.cancelled++;
		node_free(n);
		dropped = 1;
		if (p->done[worker].head == NULL)
			(void)eventfd_read(p->efd[worker], &v);
	}
out:
	pthread_mutex_unlock(&p->mu);
	return dropped;
}

void kg_auth_pool_stats(struct kg_auth_pool *p, struct kg_auth_pool_stats *out)
{
	pthread_mutex_lock(&p->mu);
	*out = p->st;
	pthread_mutex_unlock(&p->mu);
}
