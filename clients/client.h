/*
 * client.h: the small client library every referrald client shares
 * (referralctl, the benchmark, the tests).
 *
 * Blocking sockets with timeouts (referral-bench runs its own libevent loop and
 * shares only the message builders). A client may pipeline: rc_send() several
 * requests, then rc_recv() the responses in whatever order they come.
 */
#ifndef REFERRAL_CLIENT_H
#define REFERRAL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "referral.pb-c.h"

struct rc_client;

struct rc_client *rc_connect(const char *host, const char *port, int timeout_ms,
			     char *err, size_t errlen);

/* TLS settings of a client: the CA that issued the server's certificate
 * (required), and optionally the terminal's own certificate and key (PEM;
 * the key may sit in the certificate file). */
struct rc_tls {
	const char *ca_file;
	const char *cert_file;
	const char *key_file;
};

/* As rc_connect, then a TLS handshake (TLS 1.2 at least) that checks the
 * server's certificate against the CA and the host name or address. */
struct rc_client *rc_connect_tls(const char *host, const char *port, const struct rc_tls *tls,
				 int timeout_ms, char *err, size_t errlen);
void rc_close(struct rc_client *c);
int rc_fd(const struct rc_client *c);

/* Sends one request; gives it the next request id when its id is 0.
 * Returns 0, or -1 with err set. */
int rc_send(struct rc_client *c, Referral__Request *req, char *err, size_t errlen);
/* Receives the next response (free with referral__response__free_unpacked).
 * NULL on timeout, closed connection or malformed input, with err set. */
Referral__Response *rc_recv(struct rc_client *c, int timeout_ms, char *err, size_t errlen);
/* 1 when the last rc_recv() returned NULL only because its timeout ran out:
 * the connection is still good, and a listener may simply wait again. */
int rc_timed_out(const struct rc_client *c);
/* Sends and waits for the response carrying the same id. */
Referral__Response *rc_call(struct rc_client *c, Referral__Request *req, int timeout_ms,
			    char *err, size_t errlen);

/* Fills a Hello request (both structures are the caller's; the strings are
 * referenced, not copied). For clients that run their own event loop. */
void rc_hello_request(Referral__Request *req, Referral__Hello *hello, const char *community,
		      const char *terminal, const char *token, const char *client_name);
/* The handshake. On a refusal returns the error response (caller checks
 * ->error); NULL only on transport failure. */
Referral__Response *rc_hello(struct rc_client *c, const char *community, const char *terminal,
			     const char *token, const char *client_name, int timeout_ms,
			     char *err, size_t errlen);

#endif
