/*
 * token.h: terminal tokens, stored only as salted PBKDF2-SHA256 hashes.
 *
 * Stored form: "pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>".
 * Verification compares in constant time.
 */
#ifndef REFERRALD_TOKEN_H
#define REFERRALD_TOKEN_H

#include <stddef.h>

/* Writes the stored form of `token` to out. Returns 0, or -1. */
int token_hash(const char *token, int iterations, char *out, size_t outlen);
/* Returns 1 when `token` matches `stored`, 0 when not (or stored is bad). */
int token_verify(const char *token, const char *stored);
/* A fresh random token (URL-safe, 32 chars). Returns 0, or -1. */
int token_generate(char *out, size_t outlen);

#endif
