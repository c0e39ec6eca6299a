/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * clock.h - the monotonic clock every part reads deadlines from (milliseconds and
 * microseconds since an arbitrary start; never the wall clock, which an operator or
 * NTP may step). Header-only, so a part can tell time without depending on the event
 * loop that also uses it.
 */
#ifndef KTLSGATE_CLOCK_H
#define KTLSGATE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t kg_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t kg_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif
