/*
 * bench_hist.h: a log-linear latency histogram for referral-bench.
 *
 * Values (microseconds) below 128 have a bucket each; above, every power of
 * two is split into 64 buckets, so a reported percentile is within 1/64
 * (about 1.6%) of the true value, from a microsecond to days, in a fixed
 * 30 KiB. Recording is a few shifts and an increment: cheap enough for
 * every answer.
 */
#ifndef REFERRAL_BENCH_HIST_H
#define REFERRAL_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)             /* buckets per power of two */
#define HIST_BUCKETS (2 * HIST_SUB + (64 - HIST_SUB_BITS - 1) * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t max;
	double sum;
	uint64_t buckets[HIST_BUCKETS];
};

void hist_record(struct hist *h, uint64_t value);
void hist_merge(struct hist *into, const struct hist *from);
/* The value at or below which `pct` percent of the records lie (0..100):
 * the middle of its bucket, never above the largest value recorded, and
 * that value exactly for the last record. 0 for an empty histogram. */
uint64_t hist_percentile(const struct hist *h, double pct);
double hist_mean(const struct hist *h);

#endif
