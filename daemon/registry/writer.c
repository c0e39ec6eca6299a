/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * writer.c - the registry writer thread: the only daemon thread that writes to the
 * registry, so workers never wait on SQLite's write lock. A bounded FIFO; enrolments
 * always queue (a lost one would only be redone on the next connect, but they are
 * rare and small), last-seen updates are dropped and counted when the queue is full.
 * Items are applied in batches (WRITER_BATCH_MS or WRITER_BATCH_MAX items): the
 * last-seen updates of a batch share one transaction, one commit per batch.
 * A registry locked by another process is retried (each attempt waits the handle's
 * busy timeout, which logs and counts the wait) for up to KG_WRITER_BUSY_GIVEUP_MS;
 * the queue keeps filling meanwhile, so no worker waits.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ktlsgate/clock.h"
#include "ops/audit.h"
#include "ops/err.h"
#include "ops/log.h"
#include "registry/writer.h"

#define WRITER_QUEUE_MAX 65536
#define WRITER_BATCH_MS 200       /* how long a batch collects */
#define WRITER_BATCH_MAX 4096     /* ... or how many items, whichever first */

enum op { OP_ENROLL, OP_TOUCH };

struct item {
	enum op op;
	struct kg_device dev;      /* OP_ENROLL: the row; OP_TOUCH: id + times */
	struct kg_enrol_audit audit;   /* OP_ENROLL */
	struct item *next;
};

struct kg_writer {
	struct kg_registry *reg;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct item *head, *tail;
	size_t queued;
	bool stop;
	_Atomic uint64_t drops;
	/* For /metrics without the lock: items queued or in the batch being applied (a
	 * batch stuck on a locked registry still counts), and the last commit's time. */
	_Atomic int64_t pending;
	_Atomic int64_t last_commit;
	struct kg_metrics metrics;  /* decisions this thread audits (enrolments) */
};

static void committed(struct kg_writer *w)
{
	atomic_store_explicit(&w->last_commit, (int64_t)time(NULL), memory_order_relaxed);
}

/* Run a write until it is not refused for another process's lock, or we give up. */
static int retry_busy(int rc, uint64_t since_ms, const char *what)
{
	if (rc != KG_E_BUSY)
		return 0;
	if (kg_now_ms() - since_ms >= KG_WRITER_BUSY_GIVEUP_MS) {
		kg_log(KG_LOG_ERR, "registry locked by another process for %d s: %s given up",
		       KG_WRITER_BUSY_GIVEUP_MS / 1000, what);
		return 0;
	}
	kg_log(KG_LOG_ERR, "registry locked by another process: %s waits, retrying", what);
	return 1;
}

/* The decision line of an enrolling connection, once its row's fate is known. */
static void audit_enrolment(struct kg_writer *w, const struct item *it, bool allow,
			    enum kg_reason reason, const char *detail)
{
	struct kg_audit_record r = {
		.event = "decision",
		.peer = it->audit.peer,
		.device = it->dev.id,
		.thumbprint = it->audit.thumbprint[0] ? it->audit.thumbprint : NULL,
		.ca = it->dev.ca_name[0] ? it->dev.ca_name : NULL,
		.allow = allow,
		.reason = reason,
		.backend = allow ? it->audit.backend : NULL,   /* a refusal names no broker */
		.conn_id = it->audit.conn_id,
		.mqtt_level = it->audit.mqtt_level,
		.detail = detail,
	};

	kg_audit_emit(&r);
	kg_metric_add(allow ? &w->metrics.decisions_allow[reason] : &w->metrics.decisions_deny[reason], 1);
}

/*
 * The row was there when the insert ran: another connection (on this appliance, or
 * on another one sharing a PostgreSQL registry) enrolled the same id first. It is
 * this device only if it takes the identity this connection proved: CA attestation,
 * and bound to the same CA (or to none). Otherwise the first enrolment owns the id
 * (policy rule 4): this connection is refused as `attestation_mismatch`, never
 * audited as admitted; its session is closed by the revalidation the new row
 * causes (a shared registry's change feed). The row's status is not judged here:
 * a row that is not enabled is the revalidation's, as for any live session.
 */
static void lost_race(struct kg_writer *w, const struct item *it)
{
	const struct kg_device *dev = &it->dev;
	struct kg_device row;
	char detail[KG_NAME_MAX + 96];
	int rc = kg_registry_device_get(w->reg, dev->id, &row);

	if (rc == 0 && row.attestation != KG_ATT_CA) {
		snprintf(detail, sizeof(detail), "registered meanwhile with attestation %s",
			 kg_attestation_str(row.attestation));
	} else if (rc == 0 && row.ca_name[0] != '\0' &&
		   strncmp(row.ca_name, dev->ca_name, sizeof(row.ca_name)) != 0) {
		snprintf(detail, sizeof(detail), "enrolled under CA %s by a concurrent connection",
			 row.ca_name);
	} else {
		/* Same CA (or the row is gone again / unreadable: the next connect decides). */
		audit_enrolment(w, it, true, KG_REASON_OK, "enrolled by a concurrent connection");
		return;
	}
	kg_log_warnx("enrolment of %s under CA %s refused: %s", dev->id, dev->ca_name, detail);
	audit_enrolment(w, it, false, KG_REASON_ATTESTATION_MISMATCH, detail);
}

static void apply_enroll(struct kg_writer *w, const struct item *it)
{
	const struct kg_device *dev = &it->dev;
	uint64_t since = kg_now_ms();
	char what[KG_DEVICE_ID_MAX + 32];
	int rc;

	snprintf(what, sizeof(what), "enrolment of %s", dev->id);
	do
		rc = kg_registry_device_add(w->reg, dev);
	while (retry_busy(rc, since, what));
	if (rc == 0) {
		committed(w);
		kg_log_info("device %s enrolled under CA %s", dev->id, dev->ca_name);
		audit_enrolment(w, it, true, KG_REASON_ENROLLED, NULL);
	} else if (rc == KG_E_EXISTS) {
		lost_race(w, it);
	} else {
		const char *why = kg_registry_strerror(w->reg, rc);

		kg_log_warnx("enrolment of %s under CA %s failed: %s", dev->id, dev->ca_name, why);
		audit_enrolment(w, it, true, KG_REASON_ENROLL_FAILED, why);
	}
}

/*
 * Apply one batch: enrolments first, each in its own transaction (a device's touch in
 * the same batch must find its row), then every last-seen update in one transaction,
 * which is the point: one commit per batch, not one per connection.
 */
static void apply_batch(struct kg_writer *w, struct item *list)
{
	struct item *it;
	int rc;

	uint64_t since;
	size_t n = 0;

	for (it = list; it != NULL; it = it->next)
		if (it->op == OP_ENROLL)
			apply_enroll(w, it);
	since = kg_now_ms();
	do
		rc = kg_registry_begin(w->reg);
	while (retry_busy(rc, since, "last-seen batch"));
	if (rc != 0) {
		for (it = list; it != NULL; it = it->next)
			n += it->op == OP_TOUCH;
		atomic_fetch_add(&w->drops, n);
		kg_log_warnx("registry: last-seen batch of %zu dropped: %s", n,
			     kg_registry_strerror(w->reg, rc));
		return;
	}
	for (it = list; it != NULL; it = it->next) {
		rc = kg_registry_device_touch(w->reg, it->dev.id, it->dev.last_seen, it->dev.cert_not_after);
		if (rc < 0 && rc != KG_E_NOTFOUND)  /* removed meanwhile: nothing to update */
			kg_log_warnx("registry update %s: %s", it->dev.id,
				     kg_registry_strerror(w->reg, rc));
	}
	if ((rc = kg_registry_commit(w->reg)) != 0) {
		kg_log_warnx("registry: last-seen batch not committed: %s",
			     kg_registry_strerror(w->reg, rc));
		kg_registry_rollback(w->reg);
		return;
	}
	committed(w);
}

static void free_list(struct item *list)
{
	while (list) {
		struct item *next = list->next;

		free(list);
		list = next;
	}
}

static void *writer_main(void *arg)
{
	struct kg_writer *w = arg;
	struct item *batch;
	struct timespec until;
	size_t n;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->head == NULL && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->head == NULL && w->stop)
			break;
		/* Collect for a short window: a reconnect storm becomes a few commits. */
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += WRITER_BATCH_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!w->stop && w->queued < WRITER_BATCH_MAX &&
		       pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0)
			;
		batch = w->head;
		n = w->queued;
		w->head = w->tail = NULL;
		w->queued = 0;
		pthread_mutex_unlock(&w->lock);
		apply_batch(w, batch);
		free_list(batch);
		atomic_fetch_sub_explicit(&w->pending, (int64_t)n, memory_order_relaxed);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

struct kg_writer *kg_writer_start(const char *registry, char *err, size_t errlen)
{
	struct kg_writer *w = calloc(1, sizeof(*w));

	if (w == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (kg_registry_open(registry, KG_REG_READWRITE, &w->reg, err, errlen) < 0)
		goto out_free;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	atomic_init(&w->pending, 0);
	atomic_init(&w->last_commit, (int64_t)time(NULL));   /* nothing to commit yet */
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
		snprintf(err, errlen, "cannot start the registry writer thread");
		goto out_close;
	}
	(void)pthread_setname_np(w->thread, "kg-writer");
	return w;

out_close:
	kg_registry_close(w->reg);
out_free:
	free(w);
	return NULL;
}

void kg_writer_stop(struct kg_writer *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);   /* drains the queue first */
	kg_registry_close(w->reg);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}

static void enqueue(struct kg_writer *w, struct item *it, bool droppable)
{
	pthread_mutex_lock(&w->lock);
	if (droppable && w->queued >= WRITER_QUEUE_MAX) {
		pthread_mutex_unlock(&w->lock);
		atomic_fetch_add(&w->drops, 1);
		free(it);
		return;
	}
	it->next = NULL;
	if (w->tail)
		w->tail->next = it;
	else
		w->head = it;
	w->tail = it;
	w->queued++;
	atomic_fetch_add_explicit(&w->pending, 1, memory_order_relaxed);
	/* Wake the writer only when a batch starts or fills: a signal per connection
	 * would cost a futex wake per handshake. */
	if (w->queued == 1 || w->queued == WRITER_BATCH_MAX)
		pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void kg_writer_enroll(struct kg_writer *w, const struct kg_device *dev,
		      const struct kg_enrol_audit *audit)
{
	struct item *it = calloc(1, sizeof(*it));

	if (it == NULL) {
		struct item tmp = { .op = OP_ENROLL, .dev = *dev, .audit = *audit };

		audit_enrolment(w, &tmp, true, KG_REASON_ENROLL_FAILED, "out of memory");
		return;
	}
	it->op = OP_ENROLL;
	it->dev = *dev;
	it->audit = *audit;
	enqueue(w, it, false);
}

void kg_writer_touch(struct kg_writer *w, const char *id, int64_t seen, int64_t cert_not_after)
{
	struct item *it = calloc(1, sizeof(*it));

	if (it == NULL) {
		atomic_fetch_add(&w->drops, 1);
		return;
	}
	it->op = OP_TOUCH;
	if (kg_strlcpy(it->dev.id, id, sizeof(it->dev.id)) < 0) {
		free(it);
		return;
	}
	it->dev.last_seen = seen;
	it->dev.cert_not_after = cert_not_after;
	enqueue(w, it, true);
}

uint64_t kg_writer_drops(struct kg_writer *w)
{
	return w ? atomic_load(&w->drops) : 0;
}

uint64_t kg_writer_busy(struct kg_writer *w)
{
	return w ? atomic_load(&w->reg->busy_waits) : 0;
}

int64_t kg_writer_queue(struct kg_writer *w)
{
	return w ? atomic_load_explicit(&w->pending, memory_order_relaxed) : 0;
}

int64_t kg_writer_last_commit(struct kg_writer *w)
{
	return w ? atomic_load_explicit(&w->last_commit, memory_order_relaxed) : 0;
}

struct kg_metrics *kg_writer_metrics(struct kg_writer *w)
{
	return &w->metrics;
}
