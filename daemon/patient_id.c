/* patient_id.c: see patient_id.h. */
#include "patient_id.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int patient_key_load(struct patient_key *key, const char *path, char *err, size_t errlen)
{
	memset(key, 0, sizeof *key);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "cannot read patient_id_key_file %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen, "patient_id_key_file %s is readable by others (mode %03o): "
			 "chmod 600 it", path, (unsigned)(st.st_mode & 0777));
		close(fd);
		return -1;
	}
	ssize_t n = read(fd, key->bytes, sizeof key->bytes);
	close(fd);
	while (n > 0 && (key->bytes[n - 1] == '\n' || key->bytes[n - 1] == '\r'))
		n--;
	if (n < PATIENT_KEY_MIN || (size_t)n >= sizeof key->bytes) {
		snprintf(err, errlen, "patient_id_key_file %s must hold %d to %d bytes of secret "
			 "(e.g. head -c 32 /dev/urandom | base64)", path, PATIENT_KEY_MIN,
			 PATIENT_KEY_MAX - 1);
		OPENSSL_cleanse(key->bytes, sizeof key->bytes);
		return -1;
	}
	key->len = (size_t)n;
	return 0;
}

static int valid_date(const char *d)
{
	int y = 0, m = 0, day = 0;
	for (int i = 0; i < 4; i++)
		y = y * 10 + (d[i] - '0');
	m = (d[4] - '0') * 10 + (d[5] - '0');
	day = (d[6] - '0') * 10 + (d[7] - '0');
	static const int days[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (y < 1880 || y > 2200 || m < 1 || m > 12 || day < 1 || day > days[m - 1])
		return 0;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return !(m == 2 && day == 29 && !leap);
}

int patient_id_normalise(const char *in, char out[19], const char **why)
{
	if (strlen(in) != 18) {
		*why = "a resident ID number has 18 characters";
		return -1;
	}
	static const int weight[17] = { 7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2 };
	static const char check[] = "10X98765432";
	int sum = 0;
	for (int i = 0; i < 17; i++) {
		if (in[i] < '0' || in[i] > '9') {
			*why = "a resident ID number has 17 digits and a check character";
			return -1;
		}
		out[i] = in[i];
		sum += (in[i] - '0') * weight[i];
	}
	out[17] = in[17] == 'x' ? 'X' : in[17];
	out[18] = '\0';
	if (!valid_date(out + 6)) {
		*why = "the birth date in the resident ID number is not a date";
		return -1;
	}
	if (out[17] != check[sum % 11]) {
		*why = "the resident ID number's check character is wrong";
		return -1;
	}
	return 0;
}

void patient_id_hash_hex(const struct patient_key *key, const char id[19], char out[65])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	HMAC(EVP_sha256(), key->bytes, (int)key->len, (const unsigned char *)id, 18, mac, &len);
	for (unsigned i = 0; i < 32 && i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
	out[64] = '\0';
	OPENSSL_cleanse(mac, sizeof mac);
}

void patient_id_mask(const char id[19], char out[19])
{
	memcpy(out, id, 4);
	memset(out + 4, '*', 10);
	memcpy(out + 14, id + 14, 4);
	out[18] = '\0';
}

int patient_name_mask(const char *name, char *out, size_t outlen)
{
	size_t first = 1, n = 0;
	const unsigned char *p = (const unsigned char *)name;
	if (!p[0])
		return -1;
	/* The first character: one byte, plus its UTF-8 continuation bytes. */
	while ((p[first] & 0xC0) == 0x80)
		first++;
	if (first + 1 > outlen)
		return -1;
	memcpy(out, name, first);
	n = first;
	for (const unsigned char *q = p + first; *q; q++) {
		if ((*q & 0xC0) == 0x80)
			continue; /* the rest of a character already counted */
		if (n + 2 > outlen)
			return -1;
		out[n++] = '*';
	}
	out[n] = '\0';
	return 0;
}
