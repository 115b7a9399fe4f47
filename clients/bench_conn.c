/* bench_conn.c: referral-bench's connections: non-blocking connect, Hello,
 * frames in and out on bufferevents. Connections are opened in waves so
 * that ten thousand of them do not all knock at once (the server's listen
 * backlog and its handshake timeout would turn that into refusals). */
#include "bench.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "client.h"
#include "frame.h"
#include "wire.h"

/* Connections in the middle of connect + Hello at any moment. */
#define BENCH_HANDSHAKES_AT_ONCE 128
/* Answers can be pages of sessions; the server never sends more than this. */
#define BENCH_MAX_FRAME (16u * 1024u * 1024u)
#define HELLO_REQUEST_ID 1

int bench_resolve(struct bench *b)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	int rc = getaddrinfo(b->o.host, b->o.port, &hints, &res);
	if (rc != 0) {
		bench_fail(b, BENCH_ERR_TRANSPORT, "cannot resolve %s:%s: %s", b->o.host,
			   b->o.port, gai_strerror(rc));
		return -1;
	}
	memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
	b->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int bench_conn_write(struct bconn *c, const Referral__Request *req)
{
	return wire_write(bufferevent_get_output(c->bev), &req->base, BENCH_MAX_FRAME);
}

static void conn_dead(struct bconn *c, const char *why)
{
	struct bench *b = c->b;
	enum bconn_state was = c->state;
	c->state = BC_DEAD;
	/* Freed at the end: a bufferevent is not freed inside its own callback. */
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	if (was != BC_READY) {
		bench_fail(b, BENCH_ERR_TRANSPORT, "connection %u: %s", c->idx, why);
		return;
	}
	if (c->idle) {
		b->idle_lost++;
		return;
	}
	b->conn_errors++;
	if (b->phase != PH_DONE)
		fprintf(stderr, "referral-bench: connection %u lost: %s\n", c->idx, why);
	bench_on_conn_lost(b, c);
}

static void hello_answered(struct bconn *c, Referral__Response *resp)
{
	struct bench *b = c->b;
	if (resp->error) {
		int auth = resp->error->code == REFERRAL__ERROR_CODE__UNAUTHENTICATED ||
			   resp->error->code == REFERRAL__ERROR_CODE__VERSION_MISMATCH;
		bench_fail(b, auth ? BENCH_ERR_AUTH : BENCH_ERR_TRANSPORT, "Hello refused: %s: %s",
			   wire_error_code_name(resp->error->code), resp->error->message);
		return;
	}
	c->state = BC_READY;
	b->handshaking--;
	b->ready++;
	bench_on_ready(b, c);
	bench_connect_more(b);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct bconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	while (c->state == BC_HELLO || c->state == BC_READY) {
		const uint8_t *body;
		uint32_t len;
		enum frame_result r = frame_next(in, BENCH_MAX_FRAME, &body, &len);
		if (r == FRAME_NEED_MORE)
			return;
		if (r != FRAME_READY) {
			conn_dead(c, frame_result_name(r));
			return;
		}
		Referral__Response *resp = (Referral__Response *)wire_unpack(
			&referral__response__descriptor, body, len);
		frame_consume(in, len);
		if (!resp) {
			conn_dead(c, "malformed response");
			return;
		}
		if (resp->request_id == 0 && resp->error) {
			char why[160];
			snprintf(why, sizeof why, "server: %s: %s",
				 wire_error_code_name(resp->error->code), resp->error->message);
			referral__response__free_unpacked(resp, NULL);
			conn_dead(c, why);
			return;
		}
		if (c->state == BC_HELLO && resp->request_id == HELLO_REQUEST_ID)
			hello_answered(c, resp);
		else if (c->state == BC_READY)
			bench_on_answer(c->b, c, resp);
		referral__response__free_unpacked(resp, NULL);
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct bconn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		Referral__Hello hello;
		Referral__Request req;
		rc_hello_request(&req, &hello, c->b->o.community, c->b->o.terminal, c->b->o.token,
				 "referral-bench " BENCH_VERSION);
		req.request_id = HELLO_REQUEST_ID;
		c->state = BC_HELLO;
		if (bench_conn_write(c, &req) < 0)
			conn_dead(c, "cannot encode Hello");
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		char why[160];
		snprintf(why, sizeof why, "%s",
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		conn_dead(c, why);
	} else if (what & BEV_EVENT_EOF) {
		conn_dead(c, "server closed the connection");
	}
}

static void connect_one(struct bench *b, struct bconn *c)
{
	c->bev = bufferevent_socket_new(b->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		bench_fail(b, BENCH_ERR_TRANSPORT, "out of memory");
		return;
	}
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->state = BC_CONNECTING;
	b->handshaking++;
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&b->addr, (int)b->addrlen) < 0)
		conn_dead(c, "connect failed (out of file descriptors?)");
}

void bench_connect_more(struct bench *b)
{
	while (b->phase == PH_CONNECT && b->next_connect < b->nconns &&
	       b->handshaking < BENCH_HANDSHAKES_AT_ONCE)
		connect_one(b, &b->conns[b->next_connect++]);
}

void bench_conns_free(struct bench *b)
{
	for (unsigned i = 0; i < b->nconns; i++) {
		if (b->conns[i].bev)
			bufferevent_free(b->conns[i].bev);
		free(b->conns[i].slots);
	}
	free(b->conns);
	b->conns = NULL;
}
