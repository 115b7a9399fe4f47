/* token.c: see token.h. */
#include "token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define SALT_BYTES 16
#define HASH_BYTES 32
#define PREFIX "pbkdf2-sha256$"

static int derive(const char *token, const unsigned char *salt, int saltlen, int iterations,
		  unsigned char out[HASH_BYTES])
{
	return PKCS5_PBKDF2_HMAC(token, (int)strlen(token), salt, saltlen, iterations,
				 EVP_sha256(), HASH_BYTES, out) == 1 ? 0 : -1;
}

int token_hash(const char *token, int iterations, char *out, size_t outlen)
{
	unsigned char salt[SALT_BYTES], hash[HASH_BYTES];
	char salt64[4 * ((SALT_BYTES + 2) / 3) + 1], hash64[4 * ((HASH_BYTES + 2) / 3) + 1];
	if (RAND_bytes(salt, sizeof salt) != 1 || derive(token, salt, sizeof salt, iterations, hash) < 0)
		return -1;
	EVP_EncodeBlock((unsigned char *)salt64, salt, sizeof salt);
	EVP_EncodeBlock((unsigned char *)hash64, hash, sizeof hash);
	int n = snprintf(out, outlen, PREFIX "%d$%s$%s", iterations, salt64, hash64);
	return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* Decodes base64 of a known decoded size; returns 0 on an exact fit. */
static int decode64(const char *in, size_t inlen, unsigned char *out, int want)
{
	unsigned char buf[64];
	if (inlen == 0 || inlen > 4 * sizeof buf / 3 || inlen % 4)
		return -1;
	int n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)inlen);
	/* EVP_DecodeBlock counts the padding bytes as data. */
	for (size_t i = inlen; i > 0 && in[i - 1] == '='; i--)
		n--;
	if (n != want)
		return -1;
	memcpy(out, buf, (size_t)want);
	return 0;
}

int token_verify(const char *token, const char *stored)
{
	if (strncmp(stored, PREFIX, strlen(PREFIX)) != 0)
		return 0;
	const char *p = stored + strlen(PREFIX);
	char *end;
	long iterations = strtol(p, &end, 10);
	if (*end != '$' || iterations < 1 || iterations > 100000000)
		return 0;
	const char *salt64 = end + 1;
	const char *dollar = strchr(salt64, '$');
	if (!dollar)
		return 0;
	const char *hash64 = dollar + 1;
	unsigned char salt[SALT_BYTES], want[HASH_BYTES], got[HASH_BYTES];
	if (decode64(salt64, (size_t)(dollar - salt64), salt, SALT_BYTES) < 0 ||
	    decode64(hash64, strlen(hash64), want, HASH_BYTES) < 0)
		return 0;
	if (derive(token, salt, SALT_BYTES, (int)iterations, got) < 0)
		return 0;
	return CRYPTO_memcmp(got, want, HASH_BYTES) == 0;
}

int token_generate(char *out, size_t outlen)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char raw[32];
	if (outlen < sizeof raw + 1 || RAND_bytes(raw, sizeof raw) != 1)
		return -1;
	for (size_t i = 0; i < sizeof raw; i++)
		out[i] = alphabet[raw[i] & 63];
	out[sizeof raw] = '\0';
	return 0;
}
