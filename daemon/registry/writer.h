/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * writer.h - the registry writer thread. Workers never write to the registry: they
 * queue an enrolment or a last-seen update here and move on. The queue is bounded;
 * last-seen updates are dropped (and counted) when it is full, enrolments are not.
 *
 * An enrolment's audit line is the writer's: `enrolled` once the row is committed,
 * `enroll_failed` (with the store's words) when it could not be, never `enrolled` for
 * a row that is not there. An insert that finds the id taken (another connection, or
 * another appliance on a shared registry, enrolled it first) is `ok` when that row is
 * CA-attested under the same CA (or none), else `attestation_mismatch` (deny): the
 * first enrolment owns the id. A registry locked by another process is retried for up to
 * KG_WRITER_BUSY_GIVEUP_MS, said in the log and counted (kg_writer_busy()).
 */
#ifndef KTLSGATE_WRITER_H
#define KTLSGATE_WRITER_H

#include <stdint.h>

#include "ktlsgate/compiler.h"
#include "ops/metrics.h"
#include "registry/registry.h"

#define KG_WRITER_BUSY_GIVEUP_MS 10000

struct kg_writer;

/* What the enrolment's audit line says about its connection (copied). */
struct kg_enrol_audit {
	char peer[64];
	char thumbprint[KG_SHA256_HEX_LEN + 1];
	char backend[KG_NAME_MAX];
	uint64_t conn_id;
	int mqtt_level;
};

struct kg_writer *kg_writer_start(const char *registry, char *err, size_t errlen);
void kg_writer_stop(struct kg_writer *w);
void kg_writer_enroll(struct kg_writer *w, const struct kg_device *dev,
		      const struct kg_enrol_audit *audit);
void kg_writer_touch(struct kg_writer *w, const char *id, int64_t seen, int64_t cert_not_after);
uint64_t kg_writer_drops(struct kg_writer *w);
/* Waits for another process's registry lock so far. */
uint64_t kg_writer_busy(struct kg_writer *w);
/* Items queued or in the batch being applied (ktlsgate_registry_writer_queue): above 0
 * while the last commit (kg_writer_last_commit(), unix s; the writer's start before the
 * first) grows old means the writer is stuck, whatever the traffic. Lock-free. */
int64_t kg_writer_queue(struct kg_writer *w);
int64_t kg_writer_last_commit(struct kg_writer *w);
/* The writer's decision counters (enrolled / enroll_failed), summed with the workers'. */
struct kg_metrics *kg_writer_metrics(struct kg_writer *w);

#endif
