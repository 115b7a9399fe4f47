/*
 * clock.h: the monotonic clock, for timeouts, latencies and rates (never
 * wall time: it does not jump when the system clock is set).
 */
#ifndef REFERRALD_CLOCK_H
#define REFERRALD_CLOCK_H

#include <time.h>

static inline long long monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline long long monotonic_ms(void)
{
	return monotonic_ns() / 1000000;
}

#endif
