/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * log.h - small, compiler-checked logging to stderr, or, when stderr is the journal,
 * to journald as native entries (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER: docs/systemd.md).
 * kg_log_warn() appends strerror(errno); kg_log_warnx() does not (relayd's split).
 * Thread-safe: each call is one write(2) (or one sd_journal_sendv datagram).
 */
#ifndef KTLSGATE_LOG_H
#define KTLSGATE_LOG_H

#include <stdbool.h>

#include "ktlsgate/compiler.h"

enum kg_log_level { KG_LOG_ERR, KG_LOG_WARN, KG_LOG_INFO, KG_LOG_DEBUG };

void kg_log_set_level(enum kg_log_level lvl);
void kg_log_set_ident(const char *ident);
const char *kg_log_ident(void);
/* Choose the sink once, at start, before threads: the journal when JOURNAL_STREAM names
 * stderr (systemd's StandardError=journal), else stderr as before. The audit module
 * asks kg_log_journal() so both streams follow the one choice. */
void kg_log_choose_sink(void);
bool kg_log_journal(void);
void kg_log(enum kg_log_level lvl, const char *fmt, ...) KG_PRINTF(2, 3);
void kg_log_warn(const char *fmt, ...) KG_PRINTF(1, 2);
void kg_log_warnx(const char *fmt, ...) KG_PRINTF(1, 2);
void kg_log_info(const char *fmt, ...) KG_PRINTF(1, 2);
void kg_log_debug(const char *fmt, ...) KG_PRINTF(1, 2);
/* Drain OpenSSL's error queue into one warning line naming `what`. */
void kg_log_ossl(const char *what);
/* "what: <OpenSSL's last error>" (or "what: failed") into err; clears the queue. */
void kg_ossl_err(char *err, size_t errlen, const char *what);

#define kg_warn_f(fmt, ...) kg_log_warn("%s: " fmt, __func__, ##__VA_ARGS__)
#define kg_warnx_f(fmt, ...) kg_log_warnx("%s: " fmt, __func__, ##__VA_ARGS__)

#endif
