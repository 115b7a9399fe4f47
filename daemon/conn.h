/*
 * conn.h: one client connection: framing, limits, timeouts, back-pressure,
 * and a reason on every close.
 *
 * A connection is never freed inside one of its own callbacks: conn_close()
 * marks it, and the server's reaper frees it on a later loop turn, once no
 * request of it is in flight.
 */
#ifndef REFERRALD_CONN_H
#define REFERRALD_CONN_H

#include <stdint.h>

#include <event2/util.h>

#include "referral.pb-c.h"

struct server;
struct sockaddr;
struct ssl_ctx_st;
struct terminal_state;

struct identity {
	char community_id[64];
	char terminal_id[64];
	char institution_id[64];
	char practitioner_id[64];
	Referral__Role role;
	long long credentials_us;   /* when the terminal's credentials last changed */
};

enum conn_state {
	CONN_HANDSHAKE,      /* waiting for Hello */
	CONN_AUTHENTICATING, /* Hello sent to the database; further frames wait */
	CONN_READY,
	CONN_CLOSING,
};

/* A live event subscription (events.c). */
struct conn_subscription {
	int active;
	uint64_t request_id;   /* events carry the Subscribe's request id */
	uint64_t cursor;       /* every event up to here is delivered or not for us */
	int catching_up;       /* reading the backlog; the live feed skips us */
	int fetching;          /* a backlog read is in flight */
	int from_now;          /* the first read only learns where "now" is */
	int paused;            /* backlog reading waits for the output to drain */
	struct request *pending;  /* the Subscribe, answered by the first read */
};

struct conn {
	struct server *srv;
	struct conn *prev, *next;   /* server's live list */
	struct conn *reap_next;     /* server's reap list */
	struct bufferevent *bev;
	enum conn_state state;
	uint64_t serial;
	char peer[64];
	int tls;                    /* accepted on the TLS port */
	int tls_up;                 /* the TLS handshake is done */
	int has_cert;               /* a verified client certificate names a terminal */
	char cert_community[64];
	char cert_terminal[64];
	struct identity ident;
	struct terminal_state *term;  /* its terminal's count and bucket (terminals.h) */
	struct event *handshake_timer;
	unsigned inflight;
	int processing;             /* inside conn_process_input */
	int paused_output;          /* reading stopped: too much unsent output */
	int on_reap_list;
	struct conn_subscription sub;
};

/* Takes over an accepted socket; with a TLS context, TLS is spoken on it. */
void conn_accept(struct server *srv, evutil_socket_t fd, const struct sockaddr *addr, int len,
		 struct ssl_ctx_st *tls_ctx);

/* Sends one Response frame (dropped when the connection is closing). */
void conn_send(struct conn *c, const Referral__Response *resp);
/* Closes the connection; with flush, after its pending output is written. */
void conn_close(struct conn *c, const char *reason, int flush);
/* A request of this connection is answered. */
void conn_request_done(struct conn *c);
/* Hello verified: the connection may now make requests as `ident`. */
void conn_authenticated(struct conn *c, const struct identity *ident);
/* Hello refused or failed: back to waiting for Hello (used before closing). */
void conn_handshake_failed(struct conn *c);

/* Applies the live limits (frame size, timeouts, output) after a reload. */
void conn_apply_settings(struct conn *c);

/* Frees connections whose close is complete (the reaper's job). */
void conn_reap(struct server *srv);
/* Frees every connection, at exit. */
void conn_free_all(struct server *srv);

#endif
