/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * log.c - stderr logging, one write(2) per line so threads never interleave; or one
 * journal entry per line when stderr is the journal (the stream would lose the level).
 * The level, ident and sink are set once at startup before threads exist; after that
 * they are only read.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <openssl/err.h>

#include "ops/log.h"
#include "ops/notify.h"

static enum kg_log_level log_level = KG_LOG_INFO;
static const char *log_ident = "ktlsgate";
static bool log_journal;   /* the sink: native journal entries instead of stderr */

void kg_log_set_level(enum kg_log_level lvl) { log_level = lvl; }
void kg_log_set_ident(const char *ident) { log_ident = ident; }
const char *kg_log_ident(void) { return log_ident; }
void kg_log_choose_sink(void) { log_journal = kg_journal_stderr(); }
bool kg_log_journal(void) { return log_journal; }

/* One journal entry: MESSAGE without the "ident: level: " prefix (the journal keeps
 * both as fields). 0, or -1 if it could not be sent (the caller writes stderr). */
static int vlog_journal(enum kg_log_level lvl, int errnum, const char *fmt, va_list ap)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	struct kg_journal_entry e;
	char msg[1024], pr[2] = { (char)('0' + prio[lvl]), '\0' };
	int n;

	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof(msg))
		n = (int)sizeof(msg) - 1;
	if (errnum != 0)
		n += snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(errnum));
	if ((size_t)n >= sizeof(msg))
		n = (int)sizeof(msg) - 1;
	kg_journal_init(&e);
	kg_journal_add(&e, "MESSAGE", msg, (size_t)n);
	kg_journal_add(&e, "PRIORITY", pr, 1);
	kg_journal_add_str(&e, "SYSLOG_IDENTIFIER", log_ident);
	return kg_journal_send(&e) < 0 ? -1 : 0;
}

static void vlog(enum kg_log_level lvl, int errnum, const char *fmt, va_list ap)
{
	static const char *const tags[] = { "error", "warning", "info", "debug" };
	char line[1024];
	int n;

	if (lvl > log_level)
		return;
	if (log_journal) {
		va_list copy;
		int rc;

		va_copy(copy, ap);
		rc = vlog_journal(lvl, errnum, fmt, copy);
		va_end(copy);
		if (rc == 0)
			return;
	}
	n = snprintf(line, sizeof(line), "%s: %s: ", log_ident, tags[lvl]);
	if (n < 0)
		return;
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if ((size_t)n >= sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	if (errnum != 0)
		n += snprintf(line + n, sizeof(line) - (size_t)n, ": %s", strerror(errnum));
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)n);
}

void kg_log(enum kg_log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(lvl, 0, fmt, ap);
	va_end(ap);
}

void kg_log_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vlog(KG_LOG_WARN, saved, fmt, ap);
	va_end(ap);
}

void kg_log_warnx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(KG_LOG_WARN, 0, fmt, ap);
	va_end(ap);
}

void kg_log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(KG_LOG_INFO, 0, fmt, ap);
	va_end(ap);
}

void kg_log_debug(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(KG_LOG_DEBUG, 0, fmt, ap);
	va_end(ap);
}

void kg_ossl_err(char *err, size_t errlen, const char *what)
{
	char buf[256] = "";
	unsigned long e = ERR_peek_last_error();

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s", what, buf[0] ? buf : "failed");
}

void kg_log_ossl(const char *what)
{
	char buf[256], all[768] = "";
	unsigned long e;
	size_t used = 0;

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		if (used < sizeof(all) - 1)
			used += (size_t)snprintf(all + used, sizeof(all) - used, "%s%s",
						 used ? "; " : "", buf);
	}
	kg_log_warnx("%s failed%s%s", what, used ? ": " : "", all);
}
