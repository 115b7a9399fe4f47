/*
 * test_frame.c: unit tests of proto/frame.h, the 4-byte big-endian length
 * prefix framing, on raw headers and on evbuffers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "frame.h"

/* ---- helpers ------------------------------------------------------------ */

/* Deterministic xorshift64*, so that a failure reproduces. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rng32(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

/* A frame (header + body) in a fresh heap block; body bytes follow a
 * pattern seeded by `seed` so that frames are told apart. */
static uint8_t *make_frame(uint32_t body_len, uint8_t seed, size_t *total)
{
	*total = FRAME_HEADER_BYTES + (size_t)body_len;
	uint8_t *f = malloc(*total);
	assert_non_null(f);
	f[0] = (uint8_t)(body_len >> 24);
	f[1] = (uint8_t)(body_len >> 16);
	f[2] = (uint8_t)(body_len >> 8);
	f[3] = (uint8_t)body_len;
	for (uint32_t i = 0; i < body_len; i++)
		f[FRAME_HEADER_BYTES + i] = (uint8_t)(seed + i * 7u);
	return f;
}

static struct evbuffer *new_buffer(void)
{
	struct evbuffer *b = evbuffer_new();
	assert_non_null(b);
	return b;
}

/* Appends bytes either by copy (may share a chain with earlier data) or by
 * reference (always a chain of its own, so frame_next must join chains). */
static void append(struct evbuffer *b, const uint8_t *p, size_t n, int by_reference)
{
	if (n == 0)
		return;
	if (by_reference)
		assert_int_equal(evbuffer_add_reference(b, p, n, NULL, NULL), 0);
	else
		assert_int_equal(evbuffer_add(b, p, n), 0);
}

/* Expects a READY frame whose body equals `want`, then consumes it. */
static void expect_ready_and_consume(struct evbuffer *b, uint32_t max,
				     const uint8_t *want, uint32_t want_len)
{
	const uint8_t *body = NULL;
	uint32_t len = 0xDEADBEEF;
	size_t before = evbuffer_get_length(b);
	assert_int_equal(frame_next(b, max, &body, &len), FRAME_READY);
	assert_int_equal(len, want_len);
	assert_non_null(body);
	assert_memory_equal(body, want, want_len);
	/* frame_next only looks; it must not drain. */
	assert_int_equal(evbuffer_get_length(b), before);
	frame_consume(b, len);
	assert_int_equal(evbuffer_get_length(b), before - FRAME_HEADER_BYTES - want_len);
}

static enum frame_result next_result(struct evbuffer *b, uint32_t max)
{
	const uint8_t *body = NULL;
	uint32_t len = 0;
	return frame_next(b, max, &body, &len);
}

/* ---- frame_parse_header on raw bytes ------------------------------------ */

static void test_parse_header_short_input(void **state)
{
	(void)state;
	const uint8_t hdr[4] = { 0, 0, 0, 5 };
	for (size_t avail = 0; avail < FRAME_HEADER_BYTES; avail++) {
		uint32_t len = 0;
		assert_int_equal(frame_parse_header(hdr, avail, 100, &len), FRAME_NEED_MORE);
	}
	/* Even a length prefix that will be too large needs its 4 bytes first. */
	const uint8_t big[4] = { 0xFF, 0xFF, 0xFF, 0xFF };
	for (size_t avail = 0; avail < FRAME_HEADER_BYTES; avail++) {
		uint32_t len = 0;
		assert_int_equal(frame_parse_header(big, avail, 100, &len), FRAME_NEED_MORE);
	}
}

static void test_parse_header_every_prefix(void **state)
{
	(void)state;
	size_t total;
	uint8_t *f = make_frame(10, 1, &total);
	for (size_t avail = 0; avail <= total; avail++) {
		uint32_t len = 0;
		enum frame_result r = frame_parse_header(f, avail, FRAME_DEFAULT_MAX, &len);
		if (avail < total) {
			assert_int_equal(r, FRAME_NEED_MORE);
		} else {
			assert_int_equal(r, FRAME_READY);
			assert_int_equal(len, 10);
		}
	}
	/* Bytes of a following frame do not change the verdict. */
	uint32_t len = 0;
	assert_int_equal(frame_parse_header(f, total + 100, FRAME_DEFAULT_MAX, &len), FRAME_READY);
	assert_int_equal(len, 10);
	free(f);
}

/* ---- a frame arriving in pieces ----------------------------------------- */

static void check_byte_by_byte(uint32_t body_len, int by_reference)
{
	size_t total;
	uint8_t *f = make_frame(body_len, 3, &total);
	struct evbuffer *b = new_buffer();
	for (size_t i = 0; i < total; i++) {
		assert_int_equal(next_result(b, FRAME_DEFAULT_MAX), FRAME_NEED_MORE);
		assert_int_equal(evbuffer_get_length(b), i);
		append(b, f + i, 1, by_reference);
	}
	expect_ready_and_consume(b, FRAME_DEFAULT_MAX, f + FRAME_HEADER_BYTES, body_len);
	assert_int_equal(evbuffer_get_length(b), 0);
	assert_int_equal(next_result(b, FRAME_DEFAULT_MAX), FRAME_NEED_MORE);
	evbuffer_free(b);
	free(f);
}

static void test_byte_by_byte(void **state)
{
	(void)state;
	check_byte_by_byte(1, 0);
	check_byte_by_byte(1, 1);
	check_byte_by_byte(37, 0);
	check_byte_by_byte(37, 1);
	check_byte_by_byte(3000, 0);
	check_byte_by_byte(3000, 1);
}

static void check_two_chunk_splits(uint32_t body_len, int by_reference)
{
	size_t total;
	uint8_t *f = make_frame(body_len, 5, &total);
	for (size_t split = 0; split <= total; split++) {
		struct evbuffer *b = new_buffer();
		append(b, f, split, by_reference);
		enum frame_result r = next_result(b, FRAME_DEFAULT_MAX);
		assert_int_equal(r, split == total ? FRAME_READY : FRAME_NEED_MORE);
		/* Asking twice gives the same answer and changes nothing. */
		assert_int_equal(next_result(b, FRAME_DEFAULT_MAX), r);
		assert_int_equal(evbuffer_get_length(b), split);
		append(b, f + split, total - split, by_reference);
		expect_ready_and_consume(b, FRAME_DEFAULT_MAX, f + FRAME_HEADER_BYTES, body_len);
		assert_int_equal(evbuffer_get_length(b), 0);
		evbuffer_free(b);
	}
	free(f);
}

static void test_every_two_chunk_split(void **state)
{
	(void)state;
	check_two_chunk_splits(1, 0);
	check_two_chunk_splits(1, 1);
	check_two_chunk_splits(200, 0);
	check_two_chunk_splits(200, 1);
	/* Larger than one evbuffer chain. */
	check_two_chunk_splits(5000, 0);
	check_two_chunk_splits(5000, 1);
}

/* ---- several frames in one buffer --------------------------------------- */

static void test_several_frames_in_one_buffer(void **state)
{
	(void)state;
	static const uint32_t sizes[] = { 1, 2, 300, 7, 70000, 1, 4096, 65 };
	enum { N = sizeof sizes / sizeof sizes[0] };
	uint8_t *frames[N];
	size_t totals[N], all = 0;
	for (size_t i = 0; i < N; i++) {
		frames[i] = make_frame(sizes[i], (uint8_t)(17 * i + 1), &totals[i]);
		all += totals[i];
	}
	/* One contiguous block holding every frame and half of one more. */
	size_t extra_total;
	uint8_t *extra = make_frame(50, 99, &extra_total);
	uint8_t *block = malloc(all + extra_total / 2);
	assert_non_null(block);
	size_t at = 0;
	for (size_t i = 0; i < N; i++) {
		memcpy(block + at, frames[i], totals[i]);
		at += totals[i];
	}
	memcpy(block + at, extra, extra_total / 2);

	struct evbuffer *b = new_buffer();
	append(b, block, all + extra_total / 2, 0);
	for (size_t i = 0; i < N; i++)
		expect_ready_and_consume(b, FRAME_DEFAULT_MAX, frames[i] + FRAME_HEADER_BYTES,
					 sizes[i]);
	/* Only the half frame is left, and it stays put. */
	assert_int_equal(evbuffer_get_length(b), extra_total / 2);
	assert_int_equal(next_result(b, FRAME_DEFAULT_MAX), FRAME_NEED_MORE);
	assert_int_equal(evbuffer_get_length(b), extra_total / 2);
	append(b, extra + extra_total / 2, extra_total - extra_total / 2, 0);
	expect_ready_and_consume(b, FRAME_DEFAULT_MAX, extra + FRAME_HEADER_BYTES, 50);
	assert_int_equal(evbuffer_get_length(b), 0);

	evbuffer_free(b);
	free(block);
	free(extra);
	for (size_t i = 0; i < N; i++)
		free(frames[i]);
}

/* ---- boundaries of the length prefix ------------------------------------ */

static void test_zero_length_is_empty(void **state)
{
	(void)state;
	const uint8_t hdr[8] = { 0, 0, 0, 0, 0, 0, 0, 3 };
	uint32_t len = 0xDEADBEEF;
	assert_int_equal(frame_parse_header(hdr, 4, FRAME_DEFAULT_MAX, &len), FRAME_EMPTY);
	assert_int_equal(len, 0);
	/* EMPTY whatever the maximum, and whatever follows. */
	len = 0xDEADBEEF;
	assert_int_equal(frame_parse_header(hdr, 8, 0, &len), FRAME_EMPTY);
	assert_int_equal(len, 0);

	struct evbuffer *b = new_buffer();
	append(b, hdr, sizeof hdr, 0);
	const uint8_t *body = NULL;
	len = 0xDEADBEEF;
	assert_int_equal(frame_next(b, FRAME_DEFAULT_MAX, &body, &len), FRAME_EMPTY);
	assert_int_equal(len, 0);
	assert_int_equal(evbuffer_get_length(b), sizeof hdr);
	evbuffer_free(b);
}

static void check_max_boundary(uint32_t max)
{
	/* length == max: ready once the body is there. */
	size_t total;
	uint8_t *f = make_frame(max, 9, &total);
	uint32_t len = 0;
	assert_int_equal(frame_parse_header(f, total - 1, max, &len), FRAME_NEED_MORE);
	assert_int_equal(frame_parse_header(f, total, max, &len), FRAME_READY);
	assert_int_equal(len, max);
	struct evbuffer *b = new_buffer();
	append(b, f, total - 1, 0);
	assert_int_equal(next_result(b, max), FRAME_NEED_MORE);
	append(b, f + total - 1, 1, 0);
	expect_ready_and_consume(b, max, f + FRAME_HEADER_BYTES, max);
	free(f);

	/* length == max + 1: refused from the header alone, no body present. */
	uint8_t hdr[4];
	frame_put_header(hdr, max + 1);
	len = 0;
	assert_int_equal(frame_parse_header(hdr, 4, max, &len), FRAME_TOO_LARGE);
	assert_int_equal(len, max + 1);
	append(b, hdr, 4, 0);
	const uint8_t *body = NULL;
	len = 0;
	assert_int_equal(frame_next(b, max, &body, &len), FRAME_TOO_LARGE);
	assert_int_equal(len, max + 1);
	assert_int_equal(evbuffer_get_length(b), 4);
	/* Three bytes of that header are not yet enough to decide. */
	evbuffer_drain(b, 4);
	append(b, hdr, 3, 0);
	assert_int_equal(next_result(b, max), FRAME_NEED_MORE);
	evbuffer_free(b);
}

static void test_max_boundary(void **state)
{
	(void)state;
	check_max_boundary(1);
	check_max_boundary(100);
	check_max_boundary(FRAME_DEFAULT_MAX);
	/* The same holds for a small maximum and a larger frame. */
	uint8_t hdr[4];
	frame_put_header(hdr, FRAME_DEFAULT_MAX);
	uint32_t len = 0;
	assert_int_equal(frame_parse_header(hdr, 4, 64, &len), FRAME_TOO_LARGE);
	assert_int_equal(len, FRAME_DEFAULT_MAX);
}

static void test_all_ones_length_does_not_wrap(void **state)
{
	(void)state;
	const uint8_t ones[4] = { 0xFF, 0xFF, 0xFF, 0xFF };
	uint32_t len = 0;
	assert_int_equal(frame_parse_header(ones, 4, FRAME_DEFAULT_MAX, &len), FRAME_TOO_LARGE);
	assert_int_equal(len, 0xFFFFFFFFu);
	/* With no maximum to stop it, it must wait for 4 GiB, not be "ready". */
	len = 0;
	assert_int_equal(frame_parse_header(ones, 4, UINT32_MAX, &len), FRAME_NEED_MORE);
	for (uint32_t near = 0xFFFFFFFCu; near != 0; near++) {
		uint8_t hdr[4];
		frame_put_header(hdr, near);
		for (size_t avail = 4; avail < 12; avail++)
			assert_int_equal(frame_parse_header(hdr, avail, UINT32_MAX, &len),
					 FRAME_NEED_MORE);
	}
	/* The comparison is made in size_t: only 4 + 0xFFFFFFFF bytes will do.
	 * (parse_header reads only the 4 header bytes, whatever avail says.) */
	if (sizeof(size_t) > 4) {
		assert_int_equal(frame_parse_header(ones, (size_t)UINT32_MAX + 3, UINT32_MAX, &len),
				 FRAME_NEED_MORE);
		assert_int_equal(frame_parse_header(ones, (size_t)UINT32_MAX + 4, UINT32_MAX, &len),
				 FRAME_READY);
		assert_int_equal(len, 0xFFFFFFFFu);
	}

	struct evbuffer *b = new_buffer();
	const uint8_t some[12] = { 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4, 5, 6, 7, 8 };
	append(b, some, sizeof some, 0);
	const uint8_t *body = NULL;
	len = 0;
	assert_int_equal(frame_next(b, FRAME_DEFAULT_MAX, &body, &len), FRAME_TOO_LARGE);
	assert_int_equal(len, 0xFFFFFFFFu);
	assert_int_equal(next_result(b, UINT32_MAX), FRAME_NEED_MORE);
	assert_int_equal(evbuffer_get_length(b), sizeof some);
	evbuffer_free(b);
}

static void test_truncated_frame_needs_more_forever(void **state)
{
	(void)state;
	size_t total;
	uint8_t *f = make_frame(64, 11, &total);
	struct evbuffer *b = new_buffer();
	append(b, f, total - 1, 0);
	for (int i = 0; i < 100; i++) {
		const uint8_t *body = NULL;
		uint32_t len = 0;
		assert_int_equal(frame_next(b, FRAME_DEFAULT_MAX, &body, &len), FRAME_NEED_MORE);
		assert_null(body);
		assert_int_equal(evbuffer_get_length(b), total - 1);
	}
	/* Truncated header, too. */
	evbuffer_drain(b, evbuffer_get_length(b));
	append(b, f, 2, 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(next_result(b, FRAME_DEFAULT_MAX), FRAME_NEED_MORE);
	assert_int_equal(evbuffer_get_length(b), 2);
	evbuffer_free(b);
	free(f);
}

/* ---- random headers against an independent statement of the rules ------ */

static enum frame_result expected_verdict(uint32_t len, size_t avail, uint32_t max)
{
	if (avail < 4)
		return FRAME_NEED_MORE;
	if (len == 0)
		return FRAME_EMPTY;
	if (len > max)
		return FRAME_TOO_LARGE;
	return (uint64_t)avail - 4 >= (uint64_t)len ? FRAME_READY : FRAME_NEED_MORE;
}

static void test_garbage_headers(void **state)
{
	(void)state;
	int seen[4] = { 0, 0, 0, 0 };
	uint8_t bytes[4 + 80];
	for (int iter = 0; iter < 20000; iter++) {
		for (size_t i = 0; i < sizeof bytes; i++)
			bytes[i] = (uint8_t)rng32();
		/* Bias some lengths small, so that READY and EMPTY occur too. */
		switch (rng32() % 8) {
		case 0: case 1: frame_put_header(bytes, rng32() % 80); break;
		case 2: frame_put_header(bytes, rng32() % 0x10000); break;
		case 3: frame_put_header(bytes, 0); break;
		default: break;
		}
		uint32_t max;
		switch (rng32() % 5) {
		case 0: max = rng32(); break;
		case 1: max = rng32() % 100; break;
		case 2: max = FRAME_DEFAULT_MAX; break;
		case 3: max = UINT32_MAX; break;
		default: max = 0; break;
		}
		size_t avail = rng32() % (sizeof bytes + 1);
		uint32_t announced = ((uint32_t)bytes[0] << 24) | ((uint32_t)bytes[1] << 16) |
				     ((uint32_t)bytes[2] << 8) | bytes[3];
		enum frame_result want = expected_verdict(announced, avail, max);
		seen[want]++;

		uint32_t len = 0;
		enum frame_result r = frame_parse_header(bytes, avail, max, &len);
		assert_int_equal(r, want);
		if (r == FRAME_READY || r == FRAME_TOO_LARGE)
			assert_int_equal(len, announced);

		/* The same bytes in an evbuffer. */
		struct evbuffer *b = new_buffer();
		append(b, bytes, avail, iter & 1);
		const uint8_t *body = NULL;
		len = 0;
		r = frame_next(b, max, &body, &len);
		assert_int_equal(r, want);
		if (r == FRAME_READY) {
			assert_int_equal(len, announced);
			assert_memory_equal(body, bytes + 4, len);
		}
		if (r == FRAME_TOO_LARGE)
			assert_int_equal(len, announced);
		assert_int_equal(evbuffer_get_length(b), avail);
		evbuffer_free(b);
	}
	/* The generator really exercised every verdict. */
	for (int v = 0; v < 4; v++)
		assert_true(seen[v] > 100);
}

/* ---- frame_put_header ---------------------------------------------------- */

static void test_put_header_round_trip(void **state)
{
	(void)state;
	uint8_t hdr[4];
	frame_put_header(hdr, 0x01020304u);
	const uint8_t want[4] = { 0x01, 0x02, 0x03, 0x04 };
	assert_memory_equal(hdr, want, 4);
	frame_put_header(hdr, 0xA0B0C0D0u);
	const uint8_t want2[4] = { 0xA0, 0xB0, 0xC0, 0xD0 };
	assert_memory_equal(hdr, want2, 4);

	static const uint32_t fixed[] = { 1, 2, 255, 256, 65535, 65536, 0xFFFFFF, 0x1000000,
					  0x7FFFFFFF, 0x80000000u, 0xFFFFFFFEu, 0xFFFFFFFFu };
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] + 1000; i++) {
		uint32_t v = i < sizeof fixed / sizeof fixed[0] ? fixed[i] : (rng32() | 1u);
		frame_put_header(hdr, v);
		uint32_t len = 0;
		/* Any non-zero length is "too large" against a maximum of 0. */
		assert_int_equal(frame_parse_header(hdr, 4, 0, &len), FRAME_TOO_LARGE);
		assert_int_equal(len, v);
		len = 0;
		assert_int_equal(frame_parse_header(hdr, 4, v - 1, &len), FRAME_TOO_LARGE);
		assert_int_equal(len, v);
	}
	frame_put_header(hdr, 0);
	const uint8_t zero[4] = { 0, 0, 0, 0 };
	assert_memory_equal(hdr, zero, 4);
}

static void test_result_names(void **state)
{
	(void)state;
	assert_string_equal(frame_result_name(FRAME_NEED_MORE), "need-more");
	assert_string_equal(frame_result_name(FRAME_READY), "ready");
	assert_string_equal(frame_result_name(FRAME_EMPTY), "empty");
	assert_string_equal(frame_result_name(FRAME_TOO_LARGE), "too-large");
	assert_string_equal(frame_result_name((enum frame_result)42), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_header_short_input),
		cmocka_unit_test(test_parse_header_every_prefix),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_every_two_chunk_split),
		cmocka_unit_test(test_several_frames_in_one_buffer),
		cmocka_unit_test(test_zero_length_is_empty),
		cmocka_unit_test(test_max_boundary),
		cmocka_unit_test(test_all_ones_length_does_not_wrap),
		cmocka_unit_test(test_truncated_frame_needs_more_forever),
		cmocka_unit_test(test_garbage_headers),
		cmocka_unit_test(test_put_header_round_trip),
		cmocka_unit_test(test_result_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
