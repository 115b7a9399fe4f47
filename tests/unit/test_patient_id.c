/* Unit tests for patient_id.c: the form of resident ID numbers, their
 * masks, masked names and the key file's checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "patient_id.h"

static void test_normalise(void **state)
{
	(void)state;
	char out[19];
	const char *why = NULL;
	assert_int_equal(patient_id_normalise("11010519491231002X", out, &why), 0);
	assert_string_equal(out, "11010519491231002X");
	assert_int_equal(patient_id_normalise("11010519491231002x", out, &why), 0);
	assert_string_equal(out, "11010519491231002X");
	assert_int_equal(patient_id_normalise("410102198002291237", out, &why), 0); /* leap day */

	const struct { const char *id, *why; } bad[] = {
		{ "11010519491231002", "a resident ID number has 18 characters" },
		{ "11010519491231002X1", "a resident ID number has 18 characters" },
		{ "1101051949123100AX", "a resident ID number has 17 digits and a check character" },
		{ "110105194912310021", "the resident ID number's check character is wrong" },
		{ "410102198102291230", "the birth date in the resident ID number is not a date" },
		{ "410102198013011230", "the birth date in the resident ID number is not a date" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(patient_id_normalise(bad[i].id, out, &why), -1);
		assert_string_equal(why, bad[i].why);
	}
}

static void test_masks(void **state)
{
	(void)state;
	char m[19];
	patient_id_mask("11010519491231002X", m);
	assert_string_equal(m, "1101**********002X");
	char name[64];
	assert_int_equal(patient_name_mask("张三丰", name, sizeof name), 0);
	assert_string_equal(name, "张**");
	assert_int_equal(patient_name_mask("Li", name, sizeof name), 0);
	assert_string_equal(name, "L*");
	assert_int_equal(patient_name_mask("王", name, sizeof name), 0);
	assert_string_equal(name, "王");
	assert_int_equal(patient_name_mask("", name, sizeof name), -1);
	assert_int_equal(patient_name_mask("张三丰", name, 4), -1);
}

static void test_hash_depends_on_key(void **state)
{
	(void)state;
	struct patient_key a = { .len = 32 }, b = { .len = 32 };
	memset(a.bytes, 'a', 32);
	memset(b.bytes, 'b', 32);
	char ha[65], ha2[65], hb[65];
	patient_id_hash_hex(&a, "11010519491231002X", ha);
	patient_id_hash_hex(&a, "11010519491231002X", ha2);
	patient_id_hash_hex(&b, "11010519491231002X", hb);
	assert_int_equal(strlen(ha), 64);
	assert_string_equal(ha, ha2);
	assert_string_not_equal(ha, hb);
}

static void write_key(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static void test_key_file(void **state)
{
	(void)state;
	const char *dir = getenv("REFERRAL_TEST_TMPDIR");
	char path[1024], err[256];
	snprintf(path, sizeof path, "%s/patient-key-%d", dir ? dir : "/tmp", (int)getpid());
	struct patient_key key;
	write_key(path, "0123456789abcdef0123456789abcdef\n", 0600);
	assert_int_equal(patient_key_load(&key, path, err, sizeof err), 0);
	assert_int_equal(key.len, 32);
	write_key(path, "0123456789abcdef0123456789abcdef\n", 0640);
	assert_int_equal(patient_key_load(&key, path, err, sizeof err), -1);
	assert_non_null(strstr(err, "is readable by others (mode 640)"));
	write_key(path, "too short\n", 0600);
	assert_int_equal(patient_key_load(&key, path, err, sizeof err), -1);
	assert_non_null(strstr(err, "must hold 32 to 255 bytes"));
	unlink(path);
	assert_int_equal(patient_key_load(&key, path, err, sizeof err), -1);
	assert_non_null(strstr(err, "cannot read patient_id_key_file"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalise),
		cmocka_unit_test(test_masks),
		cmocka_unit_test(test_hash_depends_on_key),
		cmocka_unit_test(test_key_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
