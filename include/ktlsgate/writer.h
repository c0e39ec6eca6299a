/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * writer.h - the registry writer thread. Workers never write to the registry: they
 * queue an enrolment or a last-seen update here and move on. The queue is bounded;
 * last-seen updates are dropped (and counted) when it is full, enrolments are not.
 */
#ifndef KTLSGATE_WRITER_H
#define KTLSGATE_WRITER_H

#include <stdint.h>

#include "compiler.h"
#include "registry.h"

struct kg_writer;

struct kg_writer *kg_writer_start(const char *registry, char *err, size_t errlen);
void kg_writer_stop(struct kg_writer *w);
void kg_writer_enroll(struct kg_writer *w, const struct kg_device *dev);
void kg_writer_touch(struct kg_writer *w, const char *id, int64_t seen, int64_t cert_not_after);
uint64_t kg_writer_drops(struct kg_writer *w);

#endif
