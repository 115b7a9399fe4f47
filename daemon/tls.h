/*
 * tls.h: TLS on the client port.
 *
 * The server context is built from tls_cert_file, tls_key_file and, when
 * set, tls_ca_file (the community CA whose client certificates identify
 * terminals). TLS 1.2 is the floor. On SIGHUP a new context is built and
 * used for new connections; open connections keep the one they started with
 * (each SSL holds a reference to its context).
 *
 * A client certificate names its terminal in its subject: CN = terminal id,
 * O = community id.
 */
#ifndef REFERRALD_TLS_H
#define REFERRALD_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

struct config;

/* Builds a server context from the settings. NULL with a message in err. */
SSL_CTX *tls_server_ctx_new(const struct config *cfg, char *err, size_t errlen);

/* The terminal named by the verified peer certificate of ssl. Returns 1 and
 * fills community and terminal; 0 when there is no (usable) certificate. */
int tls_peer_terminal(SSL *ssl, char *community, size_t clen, char *terminal, size_t tlen);

/* The last OpenSSL error of this thread as text (for logs). */
const char *tls_last_error(char *buf, size_t len);

#endif
