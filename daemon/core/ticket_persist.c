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
 * The TPM I/O runs here on the main thread, never in a worker's ticket callback: the
 * main loop rotates the keys ahead of time (a worker rotates only if this loop is
 * late) and writes the file whenever the rotation count moved.
 */
#include <time.h>

#include "core/daemon.h"
#include "ops/log.h"
#include "tls/ticket_store.h"
#include "tls/tickets.h"

/* How often the main loop looks at the keys: a rotation is due at most this late. */
#define TICKET_TICK_MS 1000

static void save(struct kg_daemon *d, const char *why)
{
	char err[512];

	d->ticket_saved_rot = kg_ticket_keys_rotations(d->tickets);
	if (kg_ticket_store_save(d->ticket_file, d->tickets, d->tpm_signer, err, sizeof(err)) != 0)
		kg_log_warnx("session ticket keys: cannot write the sealed file (%s): %s; "
			     "a restart will not resume sessions", why, err);
}

void kg_daemon_tickets_start(struct kg_daemon *d, const struct kg_config *cfg)
{
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
	rc = kg_ticket_store_load(d->ticket_file, d->tickets, d->tpm_signer, err, sizeof(err));
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

void kg_daemon_tickets_tick(struct kg_daemon *d)
{
	if (!d->ticket_persist || d->snap == NULL || !d->snap->cfg.resumption)
		return;
	(void)!kg_ticket_keys_rotate(d->tickets, (int64_t)time(NULL));
	if (kg_ticket_keys_rotations(d->tickets) != d->ticket_saved_rot)
		save(d, "rotation");
}

int kg_daemon_ticket_timeout(const struct kg_daemon *d)
{
	return d->ticket_persist ? TICKET_TICK_MS : -1;
}
