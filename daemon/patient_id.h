/*
 * patient_id.h: resident ID numbers (居民身份证号) never reach the database
 * or the log in clear. The daemon checks a number's form, keys an
 * HMAC-SHA256 of it with a server secret (patient_id_key_file) for lookups,
 * and keeps a masked form for display. Names are masked the same way.
 */
#ifndef REFERRALD_PATIENT_ID_H
#define REFERRALD_PATIENT_ID_H

#include <stddef.h>

#define PATIENT_KEY_MIN 32
#define PATIENT_KEY_MAX 256

struct patient_key {
	unsigned char bytes[PATIENT_KEY_MAX];
	size_t len;
};

/* Reads the secret: the file must be readable by its owner only and hold
 * at least PATIENT_KEY_MIN bytes (a trailing newline is not part of it).
 * Returns 0, or -1 with a message in err. */
int patient_key_load(struct patient_key *key, const char *path, char *err, size_t errlen);

/* Normalises an 18-character resident ID number (a final 'x' becomes 'X')
 * into out[19] and checks its birth date and check digit (GB 11643). Returns
 * 0, or -1 with the reason (never the number) in why. */
int patient_id_normalise(const char *in, char out[19], const char **why);

/* The lookup hash as 64 hex digits, and "4101**********1234". */
void patient_id_hash_hex(const struct patient_key *key, const char id[19], char out[65]);
void patient_id_mask(const char id[19], char out[19]);

/* A name for display: its first character, then one '*' per further
 * character (UTF-8 aware): "张三丰" -> "张**". Returns -1 when the name is
 * empty or longer than fits. */
int patient_name_mask(const char *name, char *out, size_t outlen);

#endif
