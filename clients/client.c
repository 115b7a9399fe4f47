/* client.c: see client.h. */
#include "client.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "frame.h"
#include "wire.h"

/* Responses can be larger than requests (pages of results). */
#define CLIENT_MAX_FRAME (16u * 1024u * 1024u)

struct rc_client {
	int fd;
	SSL_CTX *tls_ctx;   /* NULL: plain TCP */
	SSL *ssl;
	uint64_t next_id;
	struct evbuffer *in;
	int timed_out;   /* the last rc_recv() ran out of time, nothing worse */
};

#define IO_WAIT (-2)   /* would block: poll for *want and try again */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = { fd, events, 0 };
	int rc;
	do
		rc = poll(&p, 1, timeout_ms);
	while (rc < 0 && errno == EINTR);
	return rc;
}

static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return -1;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		int soerr = errno;
		socklen_t len = sizeof soerr;
		if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, timeout_ms) <= 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0) {
			close(fd);
			errno = soerr ? soerr : ETIMEDOUT;
			return -1;
		}
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

struct rc_client *rc_connect(const char *host, const char *port, int timeout_ms,
			     char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s:%s: %s", host, port, gai_strerror(rc));
		return NULL;
	}
	int fd = -1;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
		fd = connect_one(ai, timeout_ms);
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to %s:%s: %s", host, port, strerror(errno));
		return NULL;
	}
	struct rc_client *c = calloc(1, sizeof *c);
	if (!c || !(c->in = evbuffer_new())) {
		free(c);
		close(fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->fd = fd;
	c->next_id = 1;
	return c;
}

/* ---- TLS ------------------------------------------------------------------ */

static void tls_error(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char why[256] = "unknown error";
	if (e)
		ERR_error_string_n(e, why, sizeof why);
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s", what, why);
}

static SSL_CTX *tls_client_ctx(const struct rc_tls *tls, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		tls_error(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	const char *what = NULL;
	if (!tls->ca_file || !tls->ca_file[0])
		snprintf(err, errlen, "TLS needs the CA certificate that issued the server's");
	else if (SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1)
		what = "cannot load the CA certificate";
	else if (tls->cert_file && tls->cert_file[0] &&
		 SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1)
		what = "cannot load the client certificate";
	else if (tls->cert_file && tls->cert_file[0] &&
		 SSL_CTX_use_PrivateKey_file(ctx, tls->key_file && tls->key_file[0] ? tls->key_file
										 : tls->cert_file,
					     SSL_FILETYPE_PEM) != 1)
		what = "cannot load the client key";
	else
		return ctx;
	if (what)
		tls_error(err, errlen, what);
	SSL_CTX_free(ctx);
	return NULL;
}

static int io_wait_ssl(SSL *ssl, int rc, short *want)
{
	switch (SSL_get_error(ssl, rc)) {
	case SSL_ERROR_WANT_READ: *want = POLLIN; return IO_WAIT;
	case SSL_ERROR_WANT_WRITE: *want = POLLOUT; return IO_WAIT;
	case SSL_ERROR_ZERO_RETURN: return 0;
	default: return -1;
	}
}

/* The TLS handshake on the connected socket, within the timeout. The
 * server is checked against the CA and the host name or address. */
static int tls_handshake(struct rc_client *c, const char *host, int timeout_ms, char *err,
			 size_t errlen)
{
	c->ssl = SSL_new(c->tls_ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
		tls_error(err, errlen, "cannot set up TLS");
		return -1;
	}
	struct in6_addr a6;
	struct in_addr a4;
	int is_ip = inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
	X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
	if (is_ip) {
		X509_VERIFY_PARAM_set1_ip_asc(vp, host);
	} else {
		SSL_set_tlsext_host_name(c->ssl, host);
		SSL_set1_host(c->ssl, host);
	}
	long long deadline = now_ms() + timeout_ms;
	for (;;) {
		int rc = SSL_connect(c->ssl);
		if (rc == 1)
			return 0;
		short want = 0;
		if (io_wait_ssl(c->ssl, rc, &want) != IO_WAIT) {
			long v = SSL_get_verify_result(c->ssl);
			if (v != X509_V_OK)
				snprintf(err, errlen, "TLS handshake failed: server certificate: %s",
					 X509_verify_cert_error_string(v));
			else
				tls_error(err, errlen, "TLS handshake failed");
			return -1;
		}
		long long left = deadline - now_ms();
		if (left <= 0 || wait_fd(c->fd, want, (int)left) <= 0) {
			snprintf(err, errlen, "timed out in the TLS handshake");
			return -1;
		}
	}
}

struct rc_client *rc_connect_tls(const char *host, const char *port, const struct rc_tls *tls,
				 int timeout_ms, char *err, size_t errlen)
{
	SSL_CTX *ctx = tls_client_ctx(tls, err, errlen);
	if (!ctx)
		return NULL;
	struct rc_client *c = rc_connect(host, port, timeout_ms, err, errlen);
	if (!c) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	c->tls_ctx = ctx;
	if (tls_handshake(c, host, timeout_ms, err, errlen) < 0) {
		rc_close(c);
		return NULL;
	}
	return c;
}

/* ---- bytes in and out, plain or TLS ------------------------------------------- */

/* Returns the bytes moved, 0 at end of stream, -1 on error, or IO_WAIT with
 * the poll event to wait for in *want. */
static int io_read(struct rc_client *c, void *buf, size_t n, short *want)
{
	if (c->ssl) {
		ERR_clear_error();
		int rc = SSL_read(c->ssl, buf, (int)n);
		return rc > 0 ? rc : io_wait_ssl(c->ssl, rc, want);
	}
	ssize_t rc = read(c->fd, buf, n);
	if (rc < 0 && (errno == EAGAIN || errno == EINTR)) {
		*want = POLLIN;
		return IO_WAIT;
	}
	return (int)rc;
}

static int io_write(struct rc_client *c, const void *buf, size_t n, short *want)
{
	if (c->ssl) {
		ERR_clear_error();
		int rc = SSL_write(c->ssl, buf, (int)n);
		return rc > 0 ? rc : io_wait_ssl(c->ssl, rc, want);
	}
	ssize_t rc = send(c->fd, buf, n, MSG_NOSIGNAL);
	if (rc < 0 && (errno == EAGAIN || errno == EINTR)) {
		*want = POLLOUT;
		return IO_WAIT;
	}
	return (int)rc;
}

void rc_close(struct rc_client *c)
{
	if (!c)
		return;
	if (c->ssl) {
		SSL_shutdown(c->ssl);   /* close_notify, best effort */
		SSL_free(c->ssl);
	}
	SSL_CTX_free(c->tls_ctx);
	close(c->fd);
	evbuffer_free(c->in);
	free(c);
}

int rc_fd(const struct rc_client *c) { return c->fd; }

int rc_timed_out(const struct rc_client *c) { return c->timed_out; }

int rc_send(struct rc_client *c, Referral__Request *req, char *err, size_t errlen)
{
	if (req->request_id == 0)
		req->request_id = c->next_id++;
	struct evbuffer *out = evbuffer_new();
	if (!out || wire_write(out, &req->base, CLIENT_MAX_FRAME) < 0) {
		snprintf(err, errlen, "cannot encode the request");
		if (out)
			evbuffer_free(out);
		return -1;
	}
	size_t len = evbuffer_get_length(out), done = 0;
	const uint8_t *data = evbuffer_pullup(out, -1);
	while (done < len) {
		short want = POLLOUT;
		int n = io_write(c, data + done, len - done, &want);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n != IO_WAIT) {
			snprintf(err, errlen, "send failed: %s", c->ssl ? "TLS error" : strerror(errno));
			evbuffer_free(out);
			return -1;
		}
		if (wait_fd(c->fd, want, 10000) <= 0) {
			snprintf(err, errlen, "timed out sending");
			evbuffer_free(out);
			return -1;
		}
	}
	evbuffer_free(out);
	return 0;
}

Referral__Response *rc_recv(struct rc_client *c, int timeout_ms, char *err, size_t errlen)
{
	long long deadline = now_ms() + timeout_ms;
	c->timed_out = 0;
	for (;;) {
		const uint8_t *body;
		uint32_t len;
		enum frame_result r = frame_next(c->in, CLIENT_MAX_FRAME, &body, &len);
		if (r == FRAME_READY) {
			Referral__Response *resp = (Referral__Response *)wire_unpack(
				&referral__response__descriptor, body, len);
			frame_consume(c->in, len);
			if (!resp)
				snprintf(err, errlen, "malformed response from server");
			return resp;
		}
		if (r != FRAME_NEED_MORE) {
			snprintf(err, errlen, "bad frame from server (%s)", frame_result_name(r));
			return NULL;
		}
		/* Read first, poll only when nothing is there: TLS may hold
		 * decrypted bytes that poll() cannot see. */
		uint8_t buf[16384];
		short want = POLLIN;
		int n = io_read(c, buf, sizeof buf, &want);
		if (n > 0) {
			evbuffer_add(c->in, buf, (size_t)n);
			continue;
		}
		if (n == 0) {
			snprintf(err, errlen, "server closed the connection");
			return NULL;
		}
		if (n != IO_WAIT) {
			snprintf(err, errlen, "receive failed: %s", c->ssl ? "TLS error" : strerror(errno));
			return NULL;
		}
		long long left = deadline - now_ms();
		int ready = left > 0 ? wait_fd(c->fd, want, (int)left) : 0;
		if (ready <= 0) {
			snprintf(err, errlen, "timed out waiting for the server");
			c->timed_out = ready == 0;
			return NULL;
		}
	}
}

Referral__Response *rc_call(struct rc_client *c, Referral__Request *req, int timeout_ms,
			    char *err, size_t errlen)
{
	if (rc_send(c, req, err, errlen) < 0)
		return NULL;
	for (;;) {
		Referral__Response *resp = rc_recv(c, timeout_ms, err, errlen);
		if (!resp || resp->request_id == req->request_id)
			return resp;
		/* An error not tied to a request ends the exchange too. */
		if (resp->request_id == 0 && resp->error)
			return resp;
		referral__response__free_unpacked(resp, NULL);
	}
}

void rc_hello_request(Referral__Request *req, Referral__Hello *hello, const char *community,
		      const char *terminal, const char *token, const char *client_name)
{
	referral__hello__init(hello);
	hello->protocol_version = REFERRAL_PROTOCOL_VERSION;
	hello->client_name = (char *)client_name;
	hello->community_id = (char *)community;
	hello->terminal_id = (char *)terminal;
	hello->token = (char *)token;
	referral__request__init(req);
	req->body_case = REFERRAL__REQUEST__BODY_HELLO;
	req->hello = hello;
}

Referral__Response *rc_hello(struct rc_client *c, const char *community, const char *terminal,
			     const char *token, const char *client_name, int timeout_ms,
			     char *err, size_t errlen)
{
	Referral__Hello hello;
	Referral__Request req;
	rc_hello_request(&req, &hello, community, terminal, token, client_name);
	return rc_call(c, &req, timeout_ms, err, errlen);
}
