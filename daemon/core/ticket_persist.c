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

#include <openssl/crypto.h>

#include "core/daemon.h"
#include "ops/log.h"
#include "tls/ticket_store.h"
#include "tls/tickets.h"
#include "tls/verify.h"

/* How often the main loop looks at the keys: a rotation is due at most this late. */
#define TICKET_TICK_MS 1000

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

void kg_daemon_tickets_tick(struct kg_daemon *d)
{
	if (!d->ticket_persist || d->snap == NULL || !d->snap->cfg.resumption)
		return;
	(void)!kg_ticket_keys_rotate(d->tickets, (int64_t)time(NULL));
	if (kg_ticket_keys_rotations(d->tickets) != d->ticket_saved_rot)
		save(d, "rotation");
	else if (kg_trust_generation(d->snap->trust) != d->ticket_saved_gen)
		save(d, "trust change");
}

int kg_daemon_ticket_timeout(const struct kg_daemon *d)
{
	return d->ticket_persist ? TICKET_TICK_MS : -1;
}
