/* tls.c: see tls.h. */
#include "tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "config.h"

const char *tls_last_error(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	if (e == 0)
		snprintf(buf, len, "unknown TLS error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

static SSL_CTX *fail(SSL_CTX *ctx, char *err, size_t errlen, const char *what, const char *file)
{
	char why[256];
	snprintf(err, errlen, "%s %s: %s", what, file, tls_last_error(why, sizeof why));
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_server_ctx_new(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return fail(NULL, err, errlen, "cannot create a TLS context", "");
	/* Clinics' old systems are no excuse: nothing below TLS 1.2. */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* Each connection is one session; no tickets to keep safe. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1)
		return fail(ctx, err, errlen, "cannot load tls_cert_file", cfg->tls_cert_file);
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key_file, SSL_FILETYPE_PEM) != 1)
		return fail(ctx, err, errlen, "cannot load tls_key_file", cfg->tls_key_file);
	if (SSL_CTX_check_private_key(ctx) != 1)
		return fail(ctx, err, errlen, "tls_key_file does not match", cfg->tls_cert_file);
	if (cfg->tls_ca_file[0]) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca_file, NULL) != 1)
			return fail(ctx, err, errlen, "cannot load tls_ca_file", cfg->tls_ca_file);
		/* A certificate is asked for but not required: terminals may
		 * use a token instead. One that is sent must verify (issuer,
		 * dates), or the handshake fails. */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_verify_depth(ctx, 4);
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_ca_file);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
	}
	return ctx;
}

static int subject_entry(X509_NAME *name, int nid, char *out, size_t len)
{
	int i = X509_NAME_get_index_by_NID(name, nid, -1);
	if (i < 0 || X509_NAME_get_index_by_NID(name, nid, i) >= 0)
		return 0; /* absent, or ambiguous */
	ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	int n = ASN1_STRING_length(s);
	const unsigned char *p = ASN1_STRING_get0_data(s);
	if (n <= 0 || (size_t)n >= len || memchr(p, '\0', (size_t)n))
		return 0;
	memcpy(out, p, (size_t)n);
	out[n] = '\0';
	return 1;
}

int tls_peer_terminal(SSL *ssl, char *community, size_t clen, char *terminal, size_t tlen)
{
	X509 *peer = SSL_get0_peer_certificate(ssl);
	/* Only certificates that were asked for and verified count. */
	if (!peer || !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) ||
	    SSL_get_verify_result(ssl) != X509_V_OK)
		return 0;
	X509_NAME *name = X509_get_subject_name(peer);
	return subject_entry(name, NID_commonName, terminal, tlen) &&
	       subject_entry(name, NID_organizationName, community, clen);
}
