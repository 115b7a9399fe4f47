/*
 * test_bench_hist.c: unit tests of clients/bench_hist.h, referral-bench's
 * log-linear latency histogram: percentiles within its stated precision,
 * exact below 128, the maximum kept exactly, merging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bench_hist.h"

/* Within the 1/64 relative precision the header promises. */
static void assert_close(uint64_t got, uint64_t want)
{
	double err = got > want ? (double)(got - want) : (double)(want - got);
	if (err > (double)want / 64.0 + 1.0)
		fail_msg("got %llu, want %llu (+-1/64)", (unsigned long long)got,
			 (unsigned long long)want);
}

static struct hist *new_hist(void)
{
	struct hist *h = calloc(1, sizeof *h);
	assert_non_null(h);
	return h;
}

static void empty_is_zero(void **state)
{
	(void)state;
	struct hist *h = new_hist();
	assert_int_equal(hist_percentile(h, 50), 0);
	assert_int_equal(hist_percentile(h, 100), 0);
	assert_true(hist_mean(h) == 0.0);
	free(h);
}

static void small_values_are_exact(void **state)
{
	(void)state;
	struct hist *h = new_hist();
	for (uint64_t v = 1; v <= 100; v++)
		hist_record(h, v);
	assert_int_equal(hist_percentile(h, 50), 50);
	assert_int_equal(hist_percentile(h, 99), 99);
	assert_int_equal(hist_percentile(h, 99.9), 100);
	assert_int_equal(hist_percentile(h, 100), 100);
	assert_int_equal(h->count, 100);
	assert_true(hist_mean(h) == 50.5);
	free(h);
}

static void uniform_percentiles_within_precision(void **state)
{
	(void)state;
	struct hist *h = new_hist();
	for (uint64_t v = 1; v <= 100000; v++)
		hist_record(h, v);
	assert_close(hist_percentile(h, 50), 50000);
	assert_close(hist_percentile(h, 90), 90000);
	assert_close(hist_percentile(h, 99), 99000);
	assert_close(hist_percentile(h, 99.9), 99900);
	assert_int_equal(hist_percentile(h, 100), 100000);
	assert_int_equal(h->max, 100000);
	free(h);
}

static void one_value_everywhere(void **state)
{
	(void)state;
	struct hist *h = new_hist();
	hist_record(h, 123456789);
	/* Never above the largest value recorded. */
	assert_int_equal(hist_percentile(h, 50), 123456789);
	assert_int_equal(hist_percentile(h, 99.9), 123456789);
	free(h);
}

static void huge_values_fit(void **state)
{
	(void)state;
	struct hist *h = new_hist();
	hist_record(h, UINT64_MAX);
	hist_record(h, 1ull << 40);
	hist_record(h, 3);
	assert_int_equal(h->max, UINT64_MAX);
	assert_close(hist_percentile(h, 50), 1ull << 40);
	assert_int_equal(hist_percentile(h, 10), 3);
	free(h);
}

static void tail_is_seen(void **state)
{
	(void)state;
	struct hist *h = new_hist();
	/* 999 fast answers and one slow one: p99.9 finds it, p99 does not. */
	for (int i = 0; i < 999; i++)
		hist_record(h, 1000);
	hist_record(h, 2000000);
	assert_close(hist_percentile(h, 99), 1000);
	assert_close(hist_percentile(h, 99.9), 1000);
	assert_close(hist_percentile(h, 99.95), 2000000);
	assert_int_equal(h->max, 2000000);
	free(h);
}

static void merge_adds_up(void **state)
{
	(void)state;
	struct hist *a = new_hist(), *b = new_hist();
	for (uint64_t v = 1; v <= 500; v++)
		hist_record(a, v * 10);
	for (uint64_t v = 501; v <= 1000; v++)
		hist_record(b, v * 10);
	hist_merge(a, b);
	assert_int_equal(a->count, 1000);
	assert_int_equal(a->max, 10000);
	assert_close(hist_percentile(a, 50), 5000);
	assert_close(hist_percentile(a, 90), 9000);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_is_zero),
		cmocka_unit_test(small_values_are_exact),
		cmocka_unit_test(uniform_percentiles_within_precision),
		cmocka_unit_test(one_value_everywhere),
		cmocka_unit_test(huge_values_fit),
		cmocka_unit_test(tail_is_seen),
		cmocka_unit_test(merge_adds_up),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
