/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ticket_persist.c - the session-ticket keys across restarts (contract in daemon.h,
 * kg_daemon_tickets_*; the file in tls/ticket_store.h).
 *
 * Only with a TPM server key: the file is sealed to that TPM, so a stolen disk image
 * gives nothing away. With a file key the keys stay in memory: any file we could write
 * would be readable by whoever reads the server key file... and by whoever copies the
 * disk, which is exactly what sealing is for. resumption = off: nothing read or written
 * (an existing file is left alone).
 * The TPM I/O runs here on the main thread, never in a worker's ticket callback: a
 * timerfd rings when the current key is due, the main thread rotates it then (a worker
 * rotates only if this loop is late) and writes the file whenever the rotation count
 * or the trust generation moved.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/daemon.h"
#include "ops/log.h"
#include "tls/ticket_store.h"
#include "tls/tickets.h"
#include "tls/verify.h"

static void save(struct kg_daemon *d, const char *why)
{
	struct kg_ticket_trust tr = { 0 };
	char err[512];

	d->ticket_saved_rot = kg_ticket_keys_rotations(d->tickets);
	d->ticket_saved_gen = tr.gen = kg_trust_generation(d->snap->trust);
	if (kg_trust_fingerprint(d->snap->trust, tr.fp) != 0) {
		kg_log_warnx("session ticket keys: cannot digest the trust (%s)", why);
		return;
	}
	if (kg_ticket_store_save(d->ticket_file, d->tickets, &tr, d->tpm_signer, err, sizeof(err)) != 0)
		kg_log_warnx("session ticket keys: cannot write the sealed file (%s): %s; "
			     "a restart will not resume sessions", why, err);
}

/* Ring at the current key's rotation (now if none, or overdue). */
static void arm(struct kg_daemon *d)
{
	struct itimerspec its = { .it_value = { .tv_sec = (time_t)kg_ticket_keys_next_due(d->tickets) } };

	if (d->ticket_timer_fd < 0)
		return;
	if (its.it_value.tv_sec <= 0)
		its.it_value.tv_sec = 1;   /* 1970: already past, rings at once (0 disarms) */
	if (timerfd_settime(d->ticket_timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		kg_log_warn("session ticket keys: timerfd_settime");
}

void kg_daemon_tickets_timer_start(struct kg_daemon *d)
{
	struct epoll_event ev = { .events = EPOLLIN };

	if (!d->ticket_persist)
		return;
	d->ticket_timer_fd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
	ev.data.fd = d->ticket_timer_fd;
	if (d->ticket_timer_fd < 0 || epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->ticket_timer_fd, &ev) < 0) {
		/* the workers still rotate (lazily); only the file lags until a reload */
		kg_log_warnx("session ticket keys: rotation timer: %s; the sealed file is "
			     "rewritten at reloads only", strerror(errno));
		if (d->ticket_timer_fd >= 0)
			close(d->ticket_timer_fd);
		d->ticket_timer_fd = -1;
		return;
	}
	arm(d);
}

/* Rotate if due, write the file if the keys or the trust moved since the last save. */
static void catch_up(struct kg_daemon *d)
{
	if (!d->ticket_persist || d->snap == NULL || !d->snap->cfg.resumption)
		return;
	(void)!kg_ticket_keys_rotate(d->tickets, (int64_t)time(NULL));
	if (kg_ticket_keys_rotations(d->tickets) != d->ticket_saved_rot)
		save(d, "rotation");
	else if (kg_trust_generation(d->snap->trust) != d->ticket_saved_gen)
		save(d, "trust change");
}

void kg_daemon_tickets_start(struct kg_daemon *d, const struct kg_config *cfg)
{
	struct kg_ticket_trust tr = { 0 };
	uint8_t fp[32];
	char err[512];
	int rc;

	d->ticket_persist = false;
	if (!cfg->resumption)
		return;
	if (d->tpm_signer == NULL) {
		kg_log_info("session ticket keys: in memory only (the server key is not in a "
			    "TPM: nothing to seal them to); a restart makes new ones");
		return;
	}
	if (kg_config_ticket_key_file(cfg, d->ticket_file, sizeof(d->ticket_file)) != 0) {
		kg_log_warnx("session ticket keys: ticket_key_file path too long: in memory only");
		return;
	}
	d->ticket_persist = true;
	rc = kg_ticket_store_load(d->ticket_file, d->tickets, &tr, d->tpm_signer, err, sizeof(err));
	/* The tickets were made under a trust generation; ours is new (random). The same
	 * trust (same fingerprint) takes the old generation back, so they resume; any CA,
	 * CRL or policy change since, and they do not (a full handshake verifies). */
	if (rc > 0 && kg_trust_fingerprint(d->snap->trust, fp) == 0 &&
	    CRYPTO_memcmp(fp, tr.fp, sizeof(fp)) == 0)
		kg_trust_adopt_generation(d->snap->trust, tr.gen);
	else if (rc > 0)
		kg_log_info("session ticket keys: the trust changed since they were saved: "
			    "earlier tickets need a full handshake");
	/* keys past their window were dropped by the import: make a current one if due */
	if (kg_ticket_keys_rotate(d->tickets, (int64_t)time(NULL)) < 0)
		kg_log_warnx("session ticket keys: rotation failed (no randomness)");
	if (rc > 0)
		kg_log_info("session ticket keys: restored from the sealed file %s (%zu keys): "
			    "tickets issued before the restart resume", d->ticket_file,
			    kg_ticket_keys_count(d->tickets));
	else if (rc == 0)
		kg_log_info("session ticket keys: no sealed file %s yet: fresh keys, sealed to "
			    "the TPM", d->ticket_file);
	else
		kg_log_warnx("session ticket keys: cannot restore from %s: %s; fresh keys "
			     "(earlier tickets need a full handshake)", d->ticket_file, err);
	save(d, "start");
}

bool kg_daemon_tickets_owns(const struct kg_daemon *d, int fd)
{
	return d->ticket_timer_fd >= 0 && fd == d->ticket_timer_fd;
}

void kg_daemon_tickets_event(struct kg_daemon *d)
{
	uint64_t ticks;

	(void)!read(d->ticket_timer_fd, &ticks, sizeof(ticks));
	catch_up(d);
	arm(d);
}

void kg_daemon_tickets_published(struct kg_daemon *d)
{
	if (d->ticket_timer_fd < 0)
		return;
	catch_up(d);
	arm(d);   /* the lifetime may have changed */
}

void kg_daemon_tickets_stop(struct kg_daemon *d)
{
	if (d->ticket_timer_fd >= 0)
		close(d->ticket_timer_fd);
	d->ticket_timer_fd = -1;
}
