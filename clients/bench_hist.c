/* bench_hist.c: see bench_hist.h. */
#include "bench_hist.h"

static unsigned msb(uint64_t v)
{
	return 63u - (unsigned)__builtin_clzll(v);
}

static unsigned bucket_of(uint64_t v)
{
	if (v < 2 * HIST_SUB)
		return (unsigned)v;
	unsigned shift = msb(v) - HIST_SUB_BITS;      /* >= 1: v >> shift in [64, 128) */
	return 2 * HIST_SUB + (shift - 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

/* The lowest value of bucket b, and its width. */
static void bucket_range(unsigned b, uint64_t *low, uint64_t *width)
{
	if (b < 2 * HIST_SUB) {
		*low = b;
		*width = 1;
		return;
	}
	unsigned shift = (b - 2 * HIST_SUB) / HIST_SUB + 1;
	uint64_t mantissa = HIST_SUB + (b - 2 * HIST_SUB) % HIST_SUB;
	*low = mantissa << shift;
	*width = (uint64_t)1 << shift;
}

void hist_record(struct hist *h, uint64_t value)
{
	h->buckets[bucket_of(value)]++;
	h->count++;
	h->sum += (double)value;
	if (value > h->max)
		h->max = value;
}

void hist_merge(struct hist *into, const struct hist *from)
{
	for (unsigned b = 0; b < HIST_BUCKETS; b++)
		into->buckets[b] += from->buckets[b];
	into->count += from->count;
	into->sum += from->sum;
	if (from->max > into->max)
		into->max = from->max;
}

uint64_t hist_percentile(const struct hist *h, double pct)
{
	if (h->count == 0)
		return 0;
	/* The rank of the record asked for, 1-based, rounded up: p99 of 1,000
	 * records is the 990th (the slack keeps 99.9% of 1,000 from rounding
	 * up to 1,000 through a binary fraction). */
	double want = pct / 100.0 * (double)h->count - 1e-9;
	uint64_t rank = want > 0 ? (uint64_t)want : 0;
	if ((double)rank < want || rank == 0)
		rank++;
	if (rank >= h->count)
		return h->max;   /* the largest record is known exactly */
	uint64_t seen = 0;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += h->buckets[b];
		if (seen >= rank) {
			uint64_t low, width;
			bucket_range(b, &low, &width);
			uint64_t mid = low + width / 2;
			return mid > h->max ? h->max : mid;
		}
	}
	return h->max;
}

double hist_mean(const struct hist *h)
{
	return h->count ? h->sum / (double)h->count : 0.0;
}
