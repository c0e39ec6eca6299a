/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * leaf_timer.c - certified-leaf mode's life cycle in the daemon (contract in daemon.h):
 * make a leaf with the TPM key, rotate it at half its lifetime from the main thread's
 * epoll (a timerfd), retry a failed rotation every minute.
 *
 * Why the main thread: a rotation publishes a new snapshot, which is the main thread's
 * job (reload, trust refresh); one TPM signature there costs the workers nothing, and
 * the SSL_CTX swap is the snapshot's atomic pointer swap: live sessions keep the
 * SSL_CTX (and leaf key) they pinned, new handshakes get the new one.
 * The timer is CLOCK_REALTIME and absolute: the leaf's validity is wall-clock time,
 * so a suspended machine or a stepped clock rotates at the right moment anyway.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "core/daemon.h"
#include "ops/log.h"
#include "tls/leaf.h"
#include "tls/ec_decode.h"
#include "tpm/tpm_key.h"

/* A failed rotation (TPM down) is tried again after a minute, or a quarter of the
 * lifetime when that is shorter (a 60 s test leaf gets three tries before it expires). */
#define LEAF_RETRY_S 60

static int64_t retry_after(unsigned lifetime)
{
	return lifetime / 4 < LEAF_RETRY_S ? lifetime / 4 : LEAF_RETRY_S;
}

static int leaf_make(const struct kg_config *cfg, struct kg_tpm_signer *tpm,
		     struct kg_leaf **leaf, char *err, size_t errlen)
{
	struct kg_tpm_server_key sk;
	STACK_OF(X509) *chain;

	*leaf = NULL;
	if (kg_tpm_server_key_get(cfg, tpm, &sk, err, errlen) != 0)
		return -1;
	if (sk.fallback) {
		/* kg_tpm_server_key_get() said it loudly: the file key serves directly */
		EVP_PKEY_free(sk.key);
		return 0;
	}
	if (sk.key == NULL) {
		snprintf(err, errlen, "[tpm] mode = certified-leaf needs a TPM key in [daemon] key "
			 "(handle:0x81... or a TSS2 key file), not %s", cfg->key_file);
		return -1;
	}
	chain = kg_leaf_chain_load(sk.cert_file, err, errlen);
	if (chain != NULL)
		*leaf = kg_leaf_new(chain, sk.key, cfg->tpm.leaf_lifetime, (int64_t)time(NULL), err,
				    errlen);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(sk.key);
	if (*leaf == NULL)
		return -1;
	kg_log_info("certified-leaf: new leaf serial %s, valid until %lld, signed by the TPM key "
		    "%s", (*leaf)->serial, (long long)(*leaf)->not_after, cfg->key_file);
	return 0;
}

int kg_daemon_leaf_make(const struct kg_config *cfg, struct kg_tpm_signer *tpm,
			struct kg_leaf **leaf, char *err, size_t errlen)
{
	int rc;

	/* The TPM key is loaded through the tpm2 provider, the leaf's key made by name and
	 * its certificate signed by the TPM key: none of it through the built-in EC method
	 * (tls/ec_decode.h), which steps aside meanwhile. */
	kg_tls_ec_decode_pause();
	rc = leaf_make(cfg, tpm, leaf, err, errlen);
	kg_tls_ec_decode_resume();
	return rc;
}

static void arm_at(struct kg_daemon *d, int64_t when)
{
	struct itimerspec its = { .it_value = { .tv_sec = (time_t)when } };

	if (d->leaf_timer_fd < 0)
		return;
	if (when <= 0)
		its.it_value.tv_sec = 0;   /* disarm */
	if (timerfd_settime(d->leaf_timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		kg_log_warn("certified-leaf: timerfd_settime");
}

void kg_daemon_leaf_published(struct kg_daemon *d, const struct kg_snapshot *s)
{
	if (s->leaf == NULL) {
		atomic_store(&d->leaf_not_after, 0);
		arm_at(d, 0);
		return;
	}
	/* A new leaf in force counts as a rotation; a kept one (reload) does not. */
	if (atomic_exchange(&d->leaf_not_after, s->leaf->not_after) != s->leaf->not_after)
		atomic_fetch_add(&d->leaf_rotations, 1);
	arm_at(d, kg_leaf_renew_at(s->leaf));
}

int kg_daemon_leaf_start(struct kg_daemon *d, char *err, size_t errlen)
{
	struct epoll_event ev = { .events = EPOLLIN };

	/* Made in every mode: a reload may switch to certified-leaf. Disarmed it costs
	 * nothing. */
	d->leaf_timer_fd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
	ev.data.fd = d->leaf_timer_fd;
	if (d->leaf_timer_fd < 0 || epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->leaf_timer_fd, &ev) < 0) {
		snprintf(err, errlen, "certified-leaf: rotation timer: %s", strerror(errno));
		if (d->leaf_timer_fd >= 0)
			close(d->leaf_timer_fd);
		d->leaf_timer_fd = -1;
		return -1;
	}
	/* The first snapshot was not published through kg_snapshot_publish(). */
	atomic_store(&d->leaf_not_after, 0);
	kg_daemon_leaf_published(d, d->snap);
	if (d->snap->leaf != NULL)
		kg_log_info("certified-leaf: the TPM key signs a leaf valid %us, renewed every %us; "
			    "handshakes are signed by the in-memory leaf key", d->snap->leaf->lifetime,
			    d->snap->leaf->lifetime / 2);
	return 0;
}

bool kg_daemon_leaf_owns(const struct kg_daemon *d, int fd)
{
	return d->leaf_timer_fd >= 0 && fd == d->leaf_timer_fd;
}

void kg_daemon_leaf_event(struct kg_daemon *d)
{
	struct kg_snapshot *cur, *s;
	char err[KG_ERRBUF];
	uint64_t ticks;
	int64_t now = (int64_t)time(NULL), not_after, retry;

	(void)!read(d->leaf_timer_fd, &ticks, sizeof(ticks));
	cur = kg_snapshot_get(d);
	s = kg_snapshot_build_ex(d, &cur->cfg, true, err, sizeof(err));
	not_after = cur->leaf != NULL ? cur->leaf->not_after : 0;
	retry = retry_after(cur->cfg.tpm.leaf_lifetime);
	kg_snapshot_put(cur);
	/* The TPM went away and [tpm] key_fallback answered: a leaf the TPM signed is
	 * better than the file key while it lasts, so that is a failed rotation here. */
	if (s != NULL && s->leaf == NULL) {
		kg_snapshot_put(s);
		s = NULL;
		snprintf(err, sizeof(err), "TPM unavailable");
	}
	if (s != NULL) {
		kg_snapshot_publish(d, s);   /* rearms the timer for the new leaf */
		return;
	}
	atomic_fetch_add(&d->leaf_failures, 1);
	if (not_after != 0 && now >= not_after)
		kg_log_warnx("certified-leaf: ERROR: the leaf in force EXPIRED at %lld and no new one can be "
			   "made (%s): devices refuse its handshakes; retrying in %llds",
			   (long long)not_after, err, (long long)retry);
	else
		kg_log_warnx("certified-leaf: rotation failed (%s): the current leaf serves until "
			     "%lld; retrying in %llds", err, (long long)not_after, (long long)retry);
	arm_at(d, now + retry);
}

void kg_daemon_leaf_stop(struct kg_daemon *d)
{
	if (d->leaf_timer_fd < 0)
		return;
	if (d->epfd >= 0)
		(void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, d->leaf_timer_fd, NULL);
	close(d->leaf_timer_fd);
	d->leaf_timer_fd = -1;
}
