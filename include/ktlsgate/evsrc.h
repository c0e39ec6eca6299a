/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * evsrc.h - an epoll registration and the two calls that change its interest. Every fd
 * a worker's epoll watches (listeners, the wake-up eventfd, a session's two sockets,
 * a handshake's async wait fds)
 * is registered with a pointer to its struct kg_evsrc, which remembers the interest
 * last set, so re-arming to the same interest costs no system call. Header-only and
 * owned by no part: the event loop (core) and the relays, which re-arm their session's
 * two sockets themselves, both use it.
 */
#ifndef KTLSGATE_EVSRC_H
#define KTLSGATE_EVSRC_H

#include <stdint.h>
#include <sys/epoll.h>

/* What an epoll registration is for. */
/* KG_EV_ASYNC: an SSL's async wait fd (a handshake paused for the TPM signer). */
enum kg_evtype { KG_EV_LISTEN, KG_EV_WAKE, KG_EV_DEVICE, KG_EV_BACKEND, KG_EV_AUTH, KG_EV_ASYNC };

struct kg_evsrc {
	enum kg_evtype type;
	int fd;
	uint32_t events;     /* currently registered interest; UINT32_MAX: not registered */
	void *owner;         /* struct kg_conn * or struct kg_worker * (the core's business) */
};

/*
 * Set src's interest in epfd to `events` (0 keeps the entry with no interest: error and
 * hangup reports stay out of the way until we care again). A closed fd (-1) or the same
 * interest is a no-op. 0, or -1 with errno set (src unchanged).
 */
static inline int kg_evsrc_watch(int epfd, struct kg_evsrc *src, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };
	int op;

	if (src->fd < 0 || src->events == events)
		return 0;
	op = src->events == UINT32_MAX ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
	if (epoll_ctl(epfd, op, src->fd, &ev) < 0)
		return -1;
	src->events = events;
	return 0;
}

/* Remove src from epfd (marks it "not registered"). 0, or -1 with errno set. */
static inline int kg_evsrc_unwatch(int epfd, struct kg_evsrc *src)
{
	if (src->fd < 0 || src->events == UINT32_MAX)
		return 0;
	if (epoll_ctl(epfd, EPOLL_CTL_DEL, src->fd, NULL) < 0)
		return -1;
	src->events = UINT32_MAX;
	return 0;
}

#endif
