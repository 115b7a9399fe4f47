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

#include <event2/buffer.h>

#include "frame.h"
#include "wire.h"

/* Responses can be larger than requests (pages of results). */
#define CLIENT_MAX_FRAME (16u * 1024u * 1024u)

struct rc_client {
	int fd;
	uint64_t next_id;
	struct evbuffer *in;
	int timed_out;   /* the last rc_recv() ran out of time, nothing worse */
};

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

void rc_close(struct rc_client *c)
{
	if (!c)
		return;
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
	while (evbuffer_get_length(out) > 0) {
		if (wait_fd(c->fd, POLLOUT, 10000) <= 0) {
			snprintf(err, errlen, "timed out sending");
			evbuffer_free(out);
			return -1;
		}
		if (evbuffer_write(out, c->fd) < 0 && errno != EAGAIN && errno != EINTR) {
			snprintf(err, errlen, "send failed: %s", strerror(errno));
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
		long long left = deadline - now_ms();
		int ready = left > 0 ? wait_fd(c->fd, POLLIN, (int)left) : 0;
		if (ready <= 0) {
			snprintf(err, errlen, "timed out waiting for the server");
			c->timed_out = ready == 0;
			return NULL;
		}
		int n = evbuffer_read(c->in, c->fd, 65536);
		if (n == 0) {
			snprintf(err, errlen, "server closed the connection");
			return NULL;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			snprintf(err, errlen, "receive failed: %s", strerror(errno));
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
