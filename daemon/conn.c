/* conn.c: client connections; see conn.h. */
#include "conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>

#include "dispatch.h"
#include "events.h"
#include "frame.h"
#include "log.h"
#include "server.h"
#include "terminals.h"
#include "tls.h"
#include "wire.h"

/* Our own replies are bounded by page sizes; this is only a backstop. */
#define MAX_REPLY_BYTES (16u * 1024u * 1024u)

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static void describe_peer(const struct sockaddr *addr, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		port = ntohs(in->sin_port);
	} else if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		port = ntohs(in6->sin6_port);
	}
	snprintf(out, len, "%s:%d", host, port);
}

static void schedule_reap(struct conn *c)
{
	if (c->on_reap_list)
		return;
	c->on_reap_list = 1;
	c->reap_next = c->srv->reap;
	c->srv->reap = c;
	event_active(c->srv->reaper, EV_TIMEOUT, 1);
}

static void handshake_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct conn *c = arg;
	if (c->state == CONN_HANDSHAKE || c->state == CONN_AUTHENTICATING) {
		c->srv->stats.timeouts_handshake++;
		conn_close(c, "handshake timeout", 0);
	}
}

void conn_apply_settings(struct conn *c)
{
	if (!c->bev || c->state == CONN_CLOSING)
		return;
	const struct config *cfg = &c->srv->cfg;
	struct timeval idle = { cfg->idle_timeout_ms / 1000, (cfg->idle_timeout_ms % 1000) * 1000 };
	/* A silent reader and a peer that never takes our output both time out. */
	bufferevent_set_timeouts(c->bev, &idle, &idle);
	/* The input never holds more than one maximal frame plus a little:
	 * beyond that libevent stops reading the socket. */
	bufferevent_setwatermark(c->bev, EV_READ, 0,
				 (size_t)cfg->max_frame_bytes + FRAME_HEADER_BYTES + 4096);
	bufferevent_setwatermark(c->bev, EV_WRITE, (size_t)cfg->max_output_bytes / 2, 0);
}

static void send_refusal_and_close(struct server *srv, evutil_socket_t fd)
{
	int draining = srv->draining;
	/* Best effort: a typed answer, then close. The socket is still blocking
	 * and fresh, so a small write either fits in the buffer or fails. */
	Referral__Error err = REFERRAL__ERROR__INIT;
	err.code = draining ? REFERRAL__ERROR_CODE__UNAVAILABLE : REFERRAL__ERROR_CODE__OVERLOADED;
	err.message = draining ? "server shutting down" : "too many connections";
	err.retry_after_ms = 1000;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.error = &err;
	uint8_t buf[128];
	size_t len = referral__response__get_packed_size(&resp);
	if (len + FRAME_HEADER_BYTES <= sizeof buf) {
		frame_put_header(buf, (uint32_t)len);
		referral__response__pack(&resp, buf + FRAME_HEADER_BYTES);
		ssize_t w = send(fd, buf, len + FRAME_HEADER_BYTES, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)w;
	}
	srv->stats.connections_refused++;
	evutil_closesocket(fd);
}

/* The bufferevent of an accepted socket: plain, or TLS as the server side.
 * On failure the socket is closed. */
static struct bufferevent *new_bev(struct server *srv, evutil_socket_t fd, SSL_CTX *tls_ctx)
{
	if (!tls_ctx) {
		struct bufferevent *bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
		if (!bev)
			evutil_closesocket(fd);
		return bev;
	}
	SSL *ssl = SSL_new(tls_ctx);
	/* The socket variant, not the filter one (libevent#952); with
	 * CLOSE_ON_FREE freeing the bufferevent frees the SSL too. */
	struct bufferevent *bev = ssl ? bufferevent_openssl_socket_new(srv->base, fd, ssl,
					BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (!bev) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		return NULL;
	}
	/* A client that drops the connection without close_notify is an
	 * ordinary end of stream, not an error worth a log line. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

void conn_accept(struct server *srv, evutil_socket_t fd, const struct sockaddr *addr, int len,
		 SSL_CTX *tls_ctx)
{
	(void)len;
	static uint64_t next_serial = 1;
	if (srv->draining || srv->n_conns >= (unsigned)srv->cfg.max_connections) {
		/* The TLS port cannot answer before a handshake: it just closes. */
		if (tls_ctx) {
			srv->stats.connections_refused++;
			evutil_closesocket(fd);
		} else {
			send_refusal_and_close(srv, fd);
		}
		return;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (!c) {
		srv->stats.connections_refused++;
		evutil_closesocket(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	evutil_make_socket_nonblocking(fd);
	c->srv = srv;
	c->serial = next_serial++;
	c->state = CONN_HANDSHAKE;
	c->tls = tls_ctx != NULL;
	describe_peer(addr, c->peer, sizeof c->peer);
	c->bev = new_bev(srv, fd, tls_ctx);
	c->handshake_timer = evtimer_new(srv->base, handshake_timeout_cb, c);
	if (!c->bev || !c->handshake_timer) {
		if (c->bev)
			bufferevent_free(c->bev);
		if (c->handshake_timer)
			event_free(c->handshake_timer);
		free(c);
		srv->stats.connections_refused++;
		return;
	}
	const struct config *cfg = &srv->cfg;
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	conn_apply_settings(c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	struct timeval hs = { cfg->handshake_timeout_ms / 1000,
			      (cfg->handshake_timeout_ms % 1000) * 1000 };
	evtimer_add(c->handshake_timer, &hs);

	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->n_conns++;
	srv->stats.connections_accepted++;
	log_debug("conn %llu from %s accepted", (unsigned long long)c->serial, c->peer);
}

static void send_error(struct conn *c, uint64_t id, Referral__ErrorCode code, const char *msg)
{
	Referral__Error err = REFERRAL__ERROR__INIT;
	err.code = code;
	err.message = (char *)msg;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.request_id = id;
	resp.error = &err;
	conn_send(c, &resp);
}

/* Frames that arrive during shutdown get a typed answer, not silence. */
static void refuse_frame_draining(struct conn *c, const uint8_t *body, uint32_t len)
{
	Referral__Request *req = (Referral__Request *)wire_unpack(&referral__request__descriptor,
								  body, len);
	send_error(c, req ? req->request_id : 0, REFERRAL__ERROR_CODE__UNAVAILABLE,
		   "server shutting down");
	if (req)
		referral__request__free_unpacked(req, NULL);
}

static void conn_process_input(struct conn *c)
{
	if (c->processing || !c->bev)
		return;
	c->processing = 1;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	uint32_t max = (uint32_t)c->srv->cfg.max_frame_bytes;
	while (c->state != CONN_CLOSING && c->state != CONN_AUTHENTICATING && !c->paused_output &&
	       c->inflight < (unsigned)c->srv->cfg.max_inflight_per_conn) {
		const uint8_t *body;
		uint32_t len;
		enum frame_result r = frame_next(in, max, &body, &len);
		if (r == FRAME_NEED_MORE)
			break;
		if (r == FRAME_EMPTY || r == FRAME_TOO_LARGE) {
			char msg[96];
			if (r == FRAME_EMPTY) {
				snprintf(msg, sizeof msg, "empty frame (length 0)");
				c->srv->stats.frames_malformed++;
				send_error(c, 0, REFERRAL__ERROR_CODE__MALFORMED, msg);
			} else {
				snprintf(msg, sizeof msg, "frame of %u bytes exceeds the maximum of %u",
					 len, max);
				c->srv->stats.frames_too_large++;
				send_error(c, 0, REFERRAL__ERROR_CODE__FRAME_TOO_LARGE, msg);
			}
			conn_close(c, msg, 1);
			break;
		}
		if (c->srv->draining)
			refuse_frame_draining(c, body, len);
		else if (dispatch_frame(c, body, len) < 0)
			conn_close(c, "malformed frame", 1);
		/* The bufferevent lives on while processing: conn_close defers. */
		frame_consume(in, len);
	}
	c->processing = 0;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_process_input(arg);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
	if (c->state == CONN_CLOSING) {
		if (pending == 0)
			schedule_reap(c);
		return;
	}
	if (c->paused_output && pending <= (size_t)c->srv->cfg.max_output_bytes / 2) {
		c->paused_output = 0;
		bufferevent_enable(bev, EV_READ);
		conn_process_input(c);
	}
	if (c->sub.paused && pending <= (size_t)c->srv->cfg.max_output_bytes / 2)
		events_resume(c);
}

/* The TLS handshake is done: note the terminal its certificate names. */
static void conn_tls_established(struct conn *c)
{
	c->tls_up = 1;
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	c->has_cert = tls_peer_terminal(ssl, c->cert_community, sizeof c->cert_community,
					c->cert_terminal, sizeof c->cert_terminal);
	log_debug("conn %llu: TLS %s established%s%s%s%s", (unsigned long long)c->serial,
		  SSL_get_version(ssl), c->has_cert ? ", certificate of " : "",
		  c->has_cert ? c->cert_community : "", c->has_cert ? "/" : "",
		  c->has_cert ? c->cert_terminal : "");
}

/* Why a TLS connection failed, from OpenSSL's error queue of the bev. */
static void tls_error_reason(struct bufferevent *bev, char *buf, size_t len)
{
	/* Most recent first; libevent also queues bare SSL_get_error() codes,
	 * which name no library: skip those. */
	unsigned long e, best = 0;
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (!best && ERR_GET_LIB(e) != 0)
			best = e;
	if (best)
		ERR_error_string_n(best, buf, len);
	else
		snprintf(buf, len, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	/* Say what was wrong with a client certificate: expired, unknown CA... */
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	size_t n = strlen(buf);
	if (v != X509_V_OK && n < len)
		snprintf(buf + n, len - n, " (%s)", X509_verify_cert_error_string(v));
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		conn_tls_established(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if ((what & BEV_EVENT_READING) && (c->inflight > 0 || c->sub.active)) {
			/* Quiet because it waits for us or listens: not idle. */
			bufferevent_enable(bev, EV_READ);
			return;
		}
		c->srv->stats.timeouts_idle++;
		conn_close(c, (what & BEV_EVENT_WRITING) ? "peer not reading (write timeout)"
							 : "idle timeout", 0);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		conn_close(c, "peer closed", 0);
	} else if (what & BEV_EVENT_ERROR) {
		char why[256] = "";
		if (c->tls) {
			tls_error_reason(bev, why, sizeof why);
			if (!c->tls_up) {
				/* Wrong CA, expired certificate, old protocol... */
				c->srv->stats.tls_handshakes_failed++;
				log_info("conn %llu from %s: TLS handshake failed: %s",
					 (unsigned long long)c->serial, c->peer, why);
			}
		} else {
			snprintf(why, sizeof why, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		}
		conn_close(c, why, 0);
	}
}

void conn_send(struct conn *c, const Referral__Response *resp)
{
	if (c->state == CONN_CLOSING || !c->bev)
		return;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (wire_write(out, &resp->base, MAX_REPLY_BYTES) < 0) {
		log_error("conn %llu: reply to request %llu too large to send",
			  (unsigned long long)c->serial, (unsigned long long)resp->request_id);
		send_error(c, resp->request_id, REFERRAL__ERROR_CODE__INTERNAL, "reply too large");
		return;
	}
	if (!c->paused_output && evbuffer_get_length(out) > (size_t)c->srv->cfg.max_output_bytes) {
		/* The peer is not keeping up: read nothing more until it does. */
		c->paused_output = 1;
		bufferevent_disable(c->bev, EV_READ);
	}
}

void conn_close(struct conn *c, const char *reason, int flush)
{
	if (c->state == CONN_CLOSING)
		return;
	struct server *srv = c->srv;
	c->state = CONN_CLOSING;
	log_debug("conn %llu (%s, %s) closing: %s", (unsigned long long)c->serial, c->peer,
		  c->ident.terminal_id[0] ? c->ident.terminal_id : "-", reason);
	evtimer_del(c->handshake_timer);
	/* Unlink now so the count of live connections is right at once. */
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	srv->n_conns--;
	srv->n_closing++;
	if (c->term) {
		terminals_detach(srv, c->term);
		c->term = NULL;
	}
	if (c->sub.active)
		events_unsubscribe(c);
	srv->stats.connections_closed++;
	if (c->bev) {
		bufferevent_disable(c->bev, EV_READ);
		struct evbuffer *out = bufferevent_get_output(c->bev);
		if (flush && evbuffer_get_length(out) > 0) {
			bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
			return; /* conn_write_cb schedules the reap once written */
		}
	}
	schedule_reap(c);
}

void conn_request_done(struct conn *c)
{
	c->inflight--;
	server_request_finished(c->srv);
	if (c->state == CONN_CLOSING) {
		if (c->inflight == 0 && !c->bev)
			schedule_reap(c);
		return;
	}
	/* While draining, this answers frames already buffered UNAVAILABLE. */
	conn_process_input(c);
	if (c->srv->draining && c->inflight == 0 && c->state != CONN_CLOSING)
		conn_close(c, "server shutting down", 1);
}

void conn_authenticated(struct conn *c, const struct identity *ident)
{
	if (c->state == CONN_CLOSING)
		return;
	c->ident = *ident;
	c->state = CONN_READY;
	evtimer_del(c->handshake_timer);
}

void conn_handshake_failed(struct conn *c)
{
	if (c->state == CONN_AUTHENTICATING)
		c->state = CONN_HANDSHAKE;
}

/* Frees the bufferevent (and with it the socket and the SSL). A TLS
 * connection first says close_notify, without waiting for the peer's. */
static void conn_free_bev(struct conn *c)
{
	SSL *ssl = c->tls ? bufferevent_openssl_get_ssl(c->bev) : NULL;
	if (ssl && c->tls_up) {
		SSL_set_shutdown(ssl, SSL_RECEIVED_SHUTDOWN);
		SSL_shutdown(ssl);
		ERR_clear_error();
	}
	bufferevent_free(c->bev);
	c->bev = NULL;
}

static void conn_free(struct conn *c)
{
	c->srv->n_closing--;
	if (c->bev)
		conn_free_bev(c);
	event_free(c->handshake_timer);
	free(c);
}

void conn_reap(struct server *srv)
{
	struct conn *list = srv->reap;
	srv->reap = NULL;
	while (list) {
		struct conn *c = list;
		list = c->reap_next;
		c->on_reap_list = 0;
		if (c->bev) {
			conn_free_bev(c);
		}
		/* Requests still in flight hold the struct; the last one reaps it. */
		if (c->inflight == 0)
			conn_free(c);
	}
}

void conn_free_all(struct server *srv)
{
	while (srv->conns)
		conn_close(srv->conns, "server exiting", 0);
	conn_reap(srv);
}
