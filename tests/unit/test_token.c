/*
 * test_token.c: unit tests of daemon/token.h: PBKDF2-SHA256 token hashes
 * in their stored form, and random token generation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "token.h"

#define ITER 1000
#define PREFIX "pbkdf2-sha256$"

/* Independently computed (Python hashlib.pbkdf2_hmac) stored forms. */
#define VECTOR_TOKEN "correct horse battery staple"
#define VECTOR_STORED \
	"pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw==$ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4="
#define VECTOR_EMPTY_STORED \
	"pbkdf2-sha256$1234$/////////////////////w==$MgUzXAaCVaVl5lHzvIbyhXeXzKoQ2BUQm8I/LJtShYk="

/* prefix + "1000" + '$' + 24 (16-byte salt) + '$' + 44 (32-byte hash) */
#define STORED_LEN_1000 (14 + 4 + 1 + 24 + 1 + 44)

static void hash_ok(const char *token, int iterations, char *out, size_t outlen)
{
	assert_int_equal(token_hash(token, iterations, out, outlen), 0);
}

/* ---- hash and verify ------------------------------------------------------- */

static void test_hash_then_verify(void **state)
{
	(void)state;
	char stored[256];
	hash_ok("s3cret-token", ITER, stored, sizeof stored);
	assert_int_equal(strlen(stored), STORED_LEN_1000);
	assert_memory_equal(stored, PREFIX "1000$", strlen(PREFIX "1000$"));
	assert_int_equal(token_verify("s3cret-token", stored), 1);

	/* The layout: salt and hash are padded base64 of 16 and 32 bytes. */
	const char *salt = stored + strlen(PREFIX "1000$");
	assert_int_equal(salt[24], '$');
	assert_memory_equal(salt + 22, "==", 2);
	assert_int_equal(stored[STORED_LEN_1000 - 1], '=');

	/* Other iteration counts are recorded and honoured. */
	hash_ok("s3cret-token", 1001, stored, sizeof stored);
	assert_memory_equal(stored, PREFIX "1001$", strlen(PREFIX "1001$"));
	assert_int_equal(token_verify("s3cret-token", stored), 1);

	/* The empty token and a long one work too. */
	hash_ok("", ITER, stored, sizeof stored);
	assert_int_equal(token_verify("", stored), 1);
	assert_int_equal(token_verify(" ", stored), 0);
	char longtok[2001];
	memset(longtok, 'q', 2000);
	longtok[2000] = '\0';
	hash_ok(longtok, ITER, stored, sizeof stored);
	assert_int_equal(token_verify(longtok, stored), 1);
	longtok[1999] = 'r';
	assert_int_equal(token_verify(longtok, stored), 0);
}

static void test_known_vectors(void **state)
{
	(void)state;
	assert_int_equal(token_verify(VECTOR_TOKEN, VECTOR_STORED), 1);
	assert_int_equal(token_verify("correct horse battery stapler", VECTOR_STORED), 0);
	assert_int_equal(token_verify("", VECTOR_EMPTY_STORED), 1);
	assert_int_equal(token_verify("x", VECTOR_EMPTY_STORED), 0);
}

static void test_wrong_token_fails(void **state)
{
	(void)state;
	char stored[256];
	hash_ok("s3cret-token", ITER, stored, sizeof stored);
	const char *const wrong[] = {
		"s3cret-tokeN", "S3cret-token", "s3cret-toke", "s3cret-token ",
		" s3cret-token", "s3cret-tokenx", "", "s3cret", stored,
	};
	for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
		if (token_verify(wrong[i], stored) != 0)
			fail_msg("token '%s' verified", wrong[i]);
}

static void test_output_buffer_too_small(void **state)
{
	(void)state;
	char stored[STORED_LEN_1000 + 1];
	assert_int_equal(token_hash("t", ITER, stored, sizeof stored - 1), -1);
	assert_int_equal(token_hash("t", ITER, stored, 10), -1);
	assert_int_equal(token_hash("t", ITER, stored, sizeof stored), 0);
	assert_int_equal(strlen(stored), STORED_LEN_1000);
	assert_int_equal(token_verify("t", stored), 1);
}

static void test_salts_differ(void **state)
{
	(void)state;
	char a[256], b[256];
	hash_ok("same-token", ITER, a, sizeof a);
	hash_ok("same-token", ITER, b, sizeof b);
	assert_string_not_equal(a, b);
	/* The salts differ, hence the hashes. */
	const size_t salt_at = strlen(PREFIX "1000$");
	assert_false(memcmp(a + salt_at, b + salt_at, 24) == 0);
	assert_false(memcmp(a + salt_at + 25, b + salt_at + 25, 44) == 0);
	assert_int_equal(token_verify("same-token", a), 1);
	assert_int_equal(token_verify("same-token", b), 1);
}

/* ---- tampered stored strings -------------------------------------------- */

static void expect_rejected(const char *token, const char *stored, const char *what)
{
	int r = token_verify(token, stored);
	if (r != 0)
		fail_msg("token_verify returned %d for %s: '%s'", r, what, stored);
}

static void test_tampered_stored_strings(void **state)
{
	(void)state;
	const char *tok = VECTOR_TOKEN;
	const char *good = VECTOR_STORED;
	const char *salt = "AAECAwQFBgcICQoLDA0ODw==";
	const char *hash = "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4=";
	assert_int_equal(token_verify(tok, good), 1);

	char s[512];
	/* Prefix. */
	expect_rejected(tok, "", "empty");
	expect_rejected(tok, "pbkdf2-sha256", "prefix only, no '$'");
	expect_rejected(tok, "pbkdf2-sha256$", "prefix only");
	snprintf(s, sizeof s, "pbkdf2-sha1$1000$%s$%s", salt, hash);
	expect_rejected(tok, s, "other algorithm");
	snprintf(s, sizeof s, "PBKDF2-SHA256$1000$%s$%s", salt, hash);
	expect_rejected(tok, s, "upper-case prefix");
	snprintf(s, sizeof s, " pbkdf2-sha256$1000$%s$%s", salt, hash);
	expect_rejected(tok, s, "leading space");
	snprintf(s, sizeof s, "pbkdf2-sha256%s$%s", salt, hash);
	expect_rejected(tok, s, "no iteration field");

	/* Iteration count. */
	static const char *const iters[] = {
		"", "0", "-1000", "abc", "1000x", "x1000", "100000001",
		"99999999999999999999999999", "999", "1001", "10000",
	};
	for (size_t i = 0; i < sizeof iters / sizeof iters[0]; i++) {
		snprintf(s, sizeof s, PREFIX "%s$%s$%s", iters[i], salt, hash);
		expect_rejected(tok, s, "bad iteration count");
	}

	/* Another separator after the count. */
	snprintf(s, sizeof s, PREFIX "1000#%s$%s", salt, hash);
	expect_rejected(tok, s, "'#' after the iteration count");
	snprintf(s, sizeof s, PREFIX "1000 %s$%s", salt, hash);
	expect_rejected(tok, s, "' ' after the iteration count");

	/* Missing parts. */
	snprintf(s, sizeof s, PREFIX "1000$%s", salt);
	expect_rejected(tok, s, "no hash part");
	snprintf(s, sizeof s, PREFIX "1000$%s$", salt);
	expect_rejected(tok, s, "empty hash");
	snprintf(s, sizeof s, PREFIX "1000$$%s", hash);
	expect_rejected(tok, s, "empty salt");
	snprintf(s, sizeof s, PREFIX "1000$");
	expect_rejected(tok, s, "nothing after iterations");

	/* Truncated salt or hash, by one character and by one base64 group. */
	snprintf(s, sizeof s, PREFIX "1000$%.*s$%s", 23, salt, hash);
	expect_rejected(tok, s, "salt short by 1");
	snprintf(s, sizeof s, PREFIX "1000$%.*s$%s", 20, salt, hash);
	expect_rejected(tok, s, "salt short by 4");
	snprintf(s, sizeof s, PREFIX "1000$%.*s$%s", 22, salt, hash);
	expect_rejected(tok, s, "salt without padding");
	snprintf(s, sizeof s, PREFIX "1000$%s$%.*s", salt, 43, hash);
	expect_rejected(tok, s, "hash short by 1");
	snprintf(s, sizeof s, PREFIX "1000$%s$%.*s", salt, 40, hash);
	expect_rejected(tok, s, "hash short by 4");
	/* Too long. */
	snprintf(s, sizeof s, PREFIX "1000$%sAAAA$%s", salt, hash);
	expect_rejected(tok, s, "salt longer");
	snprintf(s, sizeof s, PREFIX "1000$%s$%sAAAA", salt, hash);
	expect_rejected(tok, s, "hash longer");
	snprintf(s, sizeof s, PREFIX "1000$%s$%s$", salt, hash);
	expect_rejected(tok, s, "trailing '$'");
	snprintf(s, sizeof s, PREFIX "1000$%s$%s\n", salt, hash);
	expect_rejected(tok, s, "trailing newline");

	/* Characters outside base64. */
	snprintf(s, sizeof s, PREFIX "1000$%s$%s", salt, hash);
	const size_t salt_at = strlen(PREFIX "1000$"), hash_at = salt_at + 25;
	static const char bad_chars[] = { '!', '*', '.', '-', '_', ' ', '\x80', '$' };
	for (size_t i = 0; i < sizeof bad_chars; i++) {
		char t[512];
		strcpy(t, s);
		t[salt_at + 5] = bad_chars[i];
		expect_rejected(tok, t, "bad character in salt");
		strcpy(t, s);
		t[hash_at + 5] = bad_chars[i];
		expect_rejected(tok, t, "bad character in hash");
	}
	/* Padding in the middle. */
	snprintf(s, sizeof s, PREFIX "1000$%s$%s", "AAE=AwQFBgcICQoLDA0ODw==", hash);
	expect_rejected(tok, s, "padding inside the salt");

	/* Well-formed but altered: one hash or salt character changed. */
	snprintf(s, sizeof s, PREFIX "1000$%s$%s", salt, hash);
	s[hash_at] = s[hash_at] == 'p' ? 'q' : 'p';
	expect_rejected(tok, s, "altered hash");
	snprintf(s, sizeof s, PREFIX "1000$%s$%s", salt, hash);
	s[salt_at] = 'B';
	expect_rejected(tok, s, "altered salt");
	/* The hash with one bit of its last byte, or of a middle byte, flipped:
	 * every one of the 32 bytes is compared. */
	snprintf(s, sizeof s, PREFIX "1000$%s$%s", salt,
		 "ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ8=");
	expect_rejected(tok, s, "last hash byte altered");
	snprintf(s, sizeof s, PREFIX "1000$%s$%s", salt,
		 "ppsXnjrdPB4KryJ6DrOqqqhkWrhv7PbKAMF1Eml8cZ4=");
	expect_rejected(tok, s, "middle hash byte altered");
	/* Salt and hash swapped. */
	snprintf(s, sizeof s, PREFIX "1000$%s$%s", hash, salt);
	expect_rejected(tok, s, "salt and hash swapped");

	/* Very long fields (valid base64, a multiple of 4 long) do not overflow
	 * the decoder. */
	enum { HUGE = 16000 };
	char huge[HUGE + 200];
	int n = snprintf(huge, sizeof huge, PREFIX "1000$%s$", salt);
	memset(huge + n, 'A', HUGE);
	huge[n + HUGE] = '\0';
	expect_rejected(tok, huge, "huge hash");
	n = snprintf(huge, sizeof huge, PREFIX "1000$");
	memset(huge + n, 'A', HUGE);
	snprintf(huge + n + HUGE, sizeof huge - (size_t)n - HUGE, "$%s", hash);
	expect_rejected(tok, huge, "huge salt");
	/* Base64 groups of a length just over the decoder's buffer. */
	for (size_t len = 4; len <= 96; len += 4) {
		n = snprintf(huge, sizeof huge, PREFIX "1000$%s$", salt);
		memset(huge + n, 'A', len);
		huge[(size_t)n + len] = '\0';
		expect_rejected(tok, huge, "hash of the wrong size");
	}
}

/* Every truncation of a valid stored string is rejected, none crashes. */
static void test_every_truncation_rejected(void **state)
{
	(void)state;
	char s[256];
	hash_ok("tok", ITER, s, sizeof s);
	size_t full = strlen(s);
	for (size_t len = 0; len < full; len++) {
		char t[256];
		memcpy(t, s, len);
		t[len] = '\0';
		/* Removing only the final '=' leaves a length that is not a
		 * multiple of 4: still refused. */
		expect_rejected("tok", t, "truncation");
	}
	assert_int_equal(token_verify("tok", s), 1);
}

/* ---- token_generate --------------------------------------------------------- */

static int url_safe(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

static void test_generate(void **state)
{
	(void)state;
	char a[64], b[64];
	memset(a, 'x', sizeof a);
	assert_int_equal(token_generate(a, sizeof a), 0);
	assert_int_equal(strlen(a), 32);
	for (size_t i = 0; i < 32; i++)
		assert_true(url_safe(a[i]));
	assert_int_equal(token_generate(b, sizeof b), 0);
	assert_int_equal(strlen(b), 32);
	assert_string_not_equal(a, b);

	/* Exactly 33 bytes suffice; 32 do not (and are left alone). */
	char exact[33];
	assert_int_equal(token_generate(exact, sizeof exact), 0);
	assert_int_equal(strlen(exact), 32);
	char small[32];
	memset(small, 'x', sizeof small);
	assert_int_equal(token_generate(small, sizeof small), -1);
	for (size_t i = 0; i < sizeof small; i++)
		assert_int_equal(small[i], 'x');

	/* A generated token is a usable secret. */
	char stored[256];
	hash_ok(a, ITER, stored, sizeof stored);
	assert_int_equal(token_verify(a, stored), 1);
	assert_int_equal(token_verify(b, stored), 0);
}

static void test_generate_uses_whole_alphabet(void **state)
{
	(void)state;
	enum { N = 1000 };
	static char tokens[N][33];
	int counts[256] = { 0 };
	for (int i = 0; i < N; i++) {
		assert_int_equal(token_generate(tokens[i], sizeof tokens[i]), 0);
		assert_int_equal(strlen(tokens[i]), 32);
		for (int k = 0; k < 32; k++) {
			assert_true(url_safe(tokens[i][k]));
			counts[(unsigned char)tokens[i][k]]++;
		}
	}
	/* All 64 symbols occur; each about 500 times in 32000 characters. */
	int symbols = 0;
	for (int c = 0; c < 256; c++) {
		if (counts[c] == 0)
			continue;
		symbols++;
		assert_in_range(counts[c], 300, 700);
	}
	assert_int_equal(symbols, 64);
	/* No two tokens alike. */
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			assert_string_not_equal(tokens[i], tokens[j]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash_then_verify),
		cmocka_unit_test(test_known_vectors),
		cmocka_unit_test(test_wrong_token_fails),
		cmocka_unit_test(test_output_buffer_too_small),
		cmocka_unit_test(test_salts_differ),
		cmocka_unit_test(test_tampered_stored_strings),
		cmocka_unit_test(test_every_truncation_rejected),
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_generate_uses_whole_alphabet),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
