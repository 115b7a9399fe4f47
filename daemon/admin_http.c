/* admin_http.c: see admin_http.h. */
#include "admin_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "port_file.h"
#include "server.h"

struct admin_http {
	struct server *srv;
	struct evhttp *http;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason,
		       const char *content_type, struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", content_type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

static int only_get(struct evhttp_request *req)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)
		return 1;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
	evhttp_send_error(req, 405, "Method Not Allowed");
	return 0;
}

static void metrics_cb(struct evhttp_request *req, void *arg)
{
	struct admin_http *a = arg;
	if (!only_get(req))
		return;
	struct evbuffer *body = evbuffer_new();
	if (!body) {
		evhttp_send_error(req, 500, "Internal Server Error");
		return;
	}
	metrics_render(a->srv, body);
	reply_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
	evbuffer_free(body);
}

/* A pool connection is ready only after it has checked the schema version,
 * so "some connection up" means reachable and migrated. */
static void healthz_cb(struct evhttp_request *req, void *arg)
{
	struct admin_http *a = arg;
	if (!only_get(req))
		return;
	struct db_pool_stats st;
	db_pool_get_stats(a->srv->db, &st);
	struct evbuffer *body = evbuffer_new();
	if (!body) {
		evhttp_send_error(req, 500, "Internal Server Error");
		return;
	}
	int code = 200;
	if (a->srv->draining) {
		code = 503;
		evbuffer_add_printf(body, "shutting down\n");
	} else if (st.connections_up == 0) {
		/* libpq's messages run over several lines: the first says it. */
		const char *why = st.last_error[0] ? st.last_error : "connecting";
		code = 503;
		evbuffer_add_printf(body, "database unavailable: %.*s\n", (int)strcspn(why, "\n"),
				    why);
	} else {
		evbuffer_add_printf(body, "ok: database %s (%u of %u connections), schema %d\n",
				    db_pool_state_name(a->srv->db), st.connections_up,
				    st.connections_total, a->srv->schema_version);
	}
	reply_text(req, code, code == 200 ? "OK" : "Service Unavailable",
		   "text/plain; charset=utf-8", body);
	evbuffer_free(body);
}

static void not_found_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, 404, "Not Found");
}

/* Writes the bound port where tests and scripts find it (admin_port 0). */
static void note_port(struct server *srv, struct evhttp_bound_socket *bs)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int port = 0;
	if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &len) == 0)
		port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						      : ((struct sockaddr_in *)&ss)->sin_port);
	srv->admin_bound_port = port;
	log_info("admin endpoint on %s port %d (/metrics, /healthz)", srv->cfg.admin_addr, port);
	const char *path = srv->cfg.admin_port_file;
	if (path && path[0] && write_port_file(path, port) < 0)
		log_warn("cannot write admin_port_file %s", path);
}

struct admin_http *admin_http_start(struct server *srv, int *failed)
{
	*failed = 0;
	if (srv->cfg.admin_port < 0)
		return NULL;
	struct admin_http *a = calloc(1, sizeof *a);
	if (!a || !(a->http = evhttp_new(srv->base))) {
		free(a);
		*failed = 1;
		return NULL;
	}
	a->srv = srv;
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
	evhttp_set_max_headers_size(a->http, 8192);
	evhttp_set_max_body_size(a->http, 0);
	evhttp_set_timeout(a->http, 10);
	evhttp_set_cb(a->http, "/metrics", metrics_cb, a);
	evhttp_set_cb(a->http, "/healthz", healthz_cb, a);
	evhttp_set_gencb(a->http, not_found_cb, a);
	struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(
		a->http, srv->cfg.admin_addr, (ev_uint16_t)srv->cfg.admin_port);
	if (!bs) {
		log_error("cannot listen for the admin endpoint on %s port %d", srv->cfg.admin_addr,
			  srv->cfg.admin_port);
		admin_http_free(a);
		*failed = 1;
		return NULL;
	}
	note_port(srv, bs);
	return a;
}

void admin_http_free(struct admin_http *a)
{
	if (!a)
		return;
	evhttp_free(a->http);
	free(a);
}
