/*
 * referrald: the referral and appointment-slot broker of a county medical
 * community. main.c parses the command line, checks the schema, sets up the
 * loop and tears it down; everything else lives in its own room.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <libpq-fe.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "migrate.h"
#include "admin_http.h"
#include "port_file.h"
#include "server.h"
#include "services.h"
#include "tls.h"
#include "token.h"

#define MAX_OVERRIDES 64

static void usage(FILE *out)
{
	fprintf(out,
		"usage: referrald [-c FILE] [-s KEY=VALUE]... [--check-config | --migrate]\n"
		"\n"
		"  -c, --config FILE    read settings from FILE (INI syntax, see referrald.conf(5))\n"
		"  -s, --set KEY=VALUE  override one setting (repeatable; kept across SIGHUP)\n"
		"      --check-config   validate the settings, print them, and exit\n"
		"      --help-config    print every setting with its documentation and exit\n"
		"      --migrate        apply pending schema migrations and exit\n"
		"      --hash-token     read a token on stdin, print its stored hash, exit\n"
		"  -V, --version        print the version and exit\n"
		"  -h, --help           this text\n"
		"\n"
		"Signals: SIGTERM/SIGINT drain and exit, SIGHUP reloads the configuration.\n");
}

/* ---- schema check, blocking: before the loop only --------------------------- */

static PGconn *connect_blocking(const char *dsn)
{
	const char *keys[] = { "connect_timeout", "application_name", "options", "dbname", NULL };
	const char *vals[] = { "5", "referrald-startup", "-c client_min_messages=warning", dsn, NULL };
	return PQconnectdbParams(keys, vals, 1);
}

static int run_migrate(const struct config *cfg)
{
	PGconn *conn = connect_blocking(cfg->db_dsn);
	if (PQstatus(conn) != CONNECTION_OK) {
		log_error("cannot connect to the database: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return 1;
	}
	char err[512] = "";
	int n = migrate_apply(conn, err, sizeof err);
	PQfinish(conn);
	if (n < 0) {
		log_error("migration failed: %s", err);
		return 1;
	}
	log_info("schema at version %d (%d migration%s applied)", migrate_latest(), n,
		 n == 1 ? "" : "s");
	return 0;
}

/* Returns 0 to go on, -1 to refuse to start. An unreachable database is not
 * a reason to refuse: the pool keeps trying and answers UNAVAILABLE. */
static int check_schema(const struct config *cfg)
{
	PGconn *conn = connect_blocking(cfg->db_dsn);
	if (PQstatus(conn) != CONNECTION_OK) {
		log_warn("database not reachable at start (%s); will keep trying",
			 PQerrorMessage(conn));
		PQfinish(conn);
		return 0;
	}
	char err[512] = "";
	int version = migrate_current(conn, err, sizeof err);
	PQfinish(conn);
	if (version < 0) {
		log_error("cannot read the schema version: %s", err);
		return -1;
	}
	if (version > migrate_latest()) {
		log_error("database schema version %d is newer than this binary (%d); "
			  "upgrade referrald", version, migrate_latest());
		return -1;
	}
	if (version < migrate_latest()) {
		log_error("database schema is at version %d, this binary needs %d; "
			  "run referrald --migrate", version, migrate_latest());
		return -1;
	}
	return 0;
}

static int hash_token_from_stdin(const struct config *cfg)
{
	char line[256];
	if (!fgets(line, sizeof line, stdin)) {
		fprintf(stderr, "referrald: no token on stdin\n");
		return 1;
	}
	line[strcspn(line, "\r\n")] = '\0';
	char out[256];
	if (line[0] == '\0' || token_hash(line, cfg->pbkdf2_iterations, out, sizeof out) < 0) {
		fprintf(stderr, "referrald: cannot hash the token\n");
		return 1;
	}
	puts(out);
	return 0;
}

/* ---- lifecycle ----------------------------------------------------------- */

static void loop_exit_if_drained(struct server *srv)
{
	if (srv->draining && srv->n_conns == 0 && srv->n_closing == 0 && srv->inflight == 0)
		event_base_loopexit(srv->base, NULL);
}

void server_request_finished(struct server *srv)
{
	srv->inflight--;
	loop_exit_if_drained(srv);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct server *srv = arg;
	log_warn("shutdown: %u request%s still in flight after %d ms; closing anyway",
		 srv->inflight, srv->inflight == 1 ? "" : "s", srv->cfg.shutdown_timeout_ms);
	event_base_loopexit(srv->base, NULL);
}

void server_begin_drain(struct server *srv)
{
	if (srv->draining)
		return;
	srv->draining = 1;
	sd_notify(0, "STOPPING=1");
	log_info("shutting down: %u connection%s, %u request%s in flight", srv->n_conns,
		 srv->n_conns == 1 ? "" : "s", srv->inflight, srv->inflight == 1 ? "" : "s");
	/* Close the listening socket, so new clients are refused at once
	 * instead of waiting in a backlog nobody accepts from. */
	if (srv->listener) {
		evconnlistener_free(srv->listener);
		srv->listener = NULL;
	}
	if (srv->plain_listener) {
		evconnlistener_free(srv->plain_listener);
		srv->plain_listener = NULL;
	}
	struct conn *c = srv->conns;
	while (c) {
		struct conn *next = c->next;
		if (c->inflight == 0)
			conn_close(c, "server shutting down", 1);
		c = next;
	}
	int ms = srv->cfg.shutdown_timeout_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	srv->drain_timer = evtimer_new(srv->base, drain_timeout_cb, srv);
	evtimer_add(srv->drain_timer, &tv);
	loop_exit_if_drained(srv);
}

/* New TLS connections get a context built from the new settings; open
 * ones keep theirs. A certificate that does not load keeps the old context
 * and the whole old configuration. */
static int reload_tls(struct server *srv, const struct config *next)
{
	char err[512];
	SSL_CTX *ctx = tls_server_ctx_new(next, err, sizeof err);
	if (!ctx) {
		log_error("reload failed, keeping the running configuration: %s", err);
		return -1;
	}
	SSL_CTX_free(srv->tls_ctx);
	srv->tls_ctx = ctx;
	log_info("TLS certificate and key loaded from %s", next->tls_cert_file);
	return 0;
}

static void reload(struct server *srv)
{
	sd_notify(0, "RELOADING=1");
	struct config next;
	char err[512];
	if (config_load(&next, srv->config_path, srv->overrides, srv->n_overrides, err,
			sizeof err) < 0) {
		log_error("reload failed, keeping the running configuration: %s", err);
		sd_notify(0, "READY=1");
		return;
	}
	config_carry_restart_only(&next, &srv->cfg);
	if (srv->tls_ctx && reload_tls(srv, &next) < 0) {
		config_free(&next);
		sd_notify(0, "READY=1");
		return;
	}
	config_free(&srv->cfg);
	srv->cfg = next;
	log_set_level(srv->cfg.log_level);
	services_apply_settings(srv);
	for (struct conn *c = srv->conns; c; c = c->next)
		conn_apply_settings(c);
	log_info("configuration reloaded");
	sd_notify(0, "READY=1");
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct server *srv = arg;
	if (sig == SIGHUP)
		reload(srv);
	else
		server_begin_drain(srv);
}

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct server *srv = arg;
	conn_reap(srv);
	loop_exit_if_drained(srv);
}

static void accept_tls_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr,
			  int len, void *arg)
{
	(void)l;
	struct server *srv = arg;
	conn_accept(srv, fd, addr, len, srv->tls_ctx);
}

static void accept_plain_cb(struct evconnlistener *l, evutil_socket_t fd,
			    struct sockaddr *addr, int len, void *arg)
{
	(void)l;
	conn_accept(arg, fd, addr, len, NULL);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	(void)l, (void)arg;
	/* EMFILE and friends: log and go on; the listener stays armed. */
	log_error("accept: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* Socket activation: systemd passes the listening socket as fd 3 and keeps
 * the port across restarts. Returns the fd, or -1 when not activated. */
static int activated_socket(void)
{
	int n = sd_listen_fds(1);
	if (n < 1)
		return -1;
	if (n > 1)
		log_warn("socket activation passed %d sockets; using the first", n);
	int fd = SD_LISTEN_FDS_START;
	if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
		log_error("socket activation: fd %d is not a listening stream socket", fd);
		return -1;
	}
	evutil_make_socket_nonblocking(fd);
	return fd;
}

/* One client port: the TLS one or the plain one. */
struct port_spec {
	const char *name;            /* for the log */
	const char *addr;
	int port;
	const char *port_file;
	evconnlistener_cb accept;
	struct evconnlistener **listener;
	int *bound_port;
};

static int finish_listening(struct server *srv, const struct port_spec *p, const char *what)
{
	evconnlistener_set_error_cb(*p->listener, accept_error_cb);
	struct sockaddr_storage bound;
	socklen_t blen = sizeof bound;
	getsockname(evconnlistener_get_fd(*p->listener), (struct sockaddr *)&bound, &blen);
	*p->bound_port = ntohs(bound.ss_family == AF_INET6
				       ? ((struct sockaddr_in6 *)&bound)->sin6_port
				       : ((struct sockaddr_in *)&bound)->sin_port);
	if (p->port_file[0] && write_port_file(p->port_file, *p->bound_port) < 0) {
		log_error("cannot write %s", p->port_file);
		return -1;
	}
	log_info("referrald %s listening on %s port %d, %s (protocol 1, schema %d)",
		 REFERRALD_VERSION, what, *p->bound_port, p->name, srv->schema_version);
	return 0;
}

/* Whether a socket passed by systemd is bound to a loopback address. */
static int socket_is_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char host[INET6_ADDRSTRLEN] = "";
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
	return config_is_loopback(host);
}

static int listen_activated(struct server *srv, const struct port_spec *p, int afd)
{
	if (p->accept == accept_plain_cb && !socket_is_loopback(afd)) {
		log_error("the socket passed by systemd is not on loopback, and without "
			  "listen_port (TLS) it would serve without TLS: refusing to start");
		return -1;
	}
	*p->listener = evconnlistener_new(srv->base, p->accept, srv,
					  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, afd);
	if (!*p->listener)
		return -1;
	return finish_listening(srv, p, "the socket passed by systemd");
}

static int listen_on(struct server *srv, const struct port_spec *p)
{
	struct sockaddr_storage ss;
	int sslen;
	char spec[300];
	memset(&ss, 0, sizeof ss);
	/* Not evutil_parse_sockaddr_port: it refuses port 0. */
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, p->addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)p->port);
		sslen = sizeof *in4;
	} else if (inet_pton(AF_INET6, p->addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)p->port);
		sslen = sizeof *in6;
	} else {
		log_error("%s address '%s' is not an IP address", p->name, p->addr);
		return -1;
	}
	snprintf(spec, sizeof spec, strchr(p->addr, ':') ? "[%s]:%d" : "%s:%d", p->addr, p->port);
	*p->listener = evconnlistener_new_bind(srv->base, p->accept, srv,
					       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						       LEV_OPT_CLOSE_ON_EXEC,
					       1024, (struct sockaddr *)&ss, sslen);
	if (!*p->listener) {
		log_error("cannot listen on %s: %s", spec,
			  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return -1;
	}
	return finish_listening(srv, p, p->addr);
}

/* The TLS port (listen_port) and the loopback plain port (plain_port),
 * each unless switched off. A socket passed by systemd takes the place of
 * the TLS port, or of the plain one when there is no TLS port. */
static int start_listening(struct server *srv)
{
	const struct config *cfg = &srv->cfg;
	struct port_spec tls = { "TLS", cfg->listen_addr, cfg->listen_port, cfg->port_file,
				 accept_tls_cb, &srv->listener, &srv->bound_port };
	struct port_spec plain = { "without TLS", cfg->plain_addr, cfg->plain_port,
				   cfg->plain_port_file, accept_plain_cb, &srv->plain_listener,
				   &srv->plain_bound_port };
	if (cfg->listen_port >= 0) {
		char err[512];
		srv->tls_ctx = tls_server_ctx_new(cfg, err, sizeof err);
		if (!srv->tls_ctx) {
			log_error("%s", err);
			return -1;
		}
	}
	int afd = activated_socket();
	if (afd >= 0) {
		if (listen_activated(srv, cfg->listen_port >= 0 ? &tls : &plain, afd) < 0)
			return -1;
		if (cfg->listen_port >= 0 && cfg->plain_port >= 0)
			return listen_on(srv, &plain);
		return 0;
	}
	if (cfg->listen_port >= 0 && listen_on(srv, &tls) < 0)
		return -1;
	if (cfg->plain_port >= 0 && listen_on(srv, &plain) < 0)
		return -1;
	return 0;
}

/* The watchdog ping comes from a loop timer: a stuck loop stops pinging
 * and systemd restarts the daemon. */
static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	sd_notify(0, "WATCHDOG=1");
}

static int start_watchdog(struct server *srv)
{
	uint64_t usec;
	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	srv->watchdog = event_new(srv->base, -1, EV_PERSIST, watchdog_cb, srv);
	if (!srv->watchdog)
		return -1;
	usec /= 2;
	struct timeval tv = { (time_t)(usec / 1000000), (suseconds_t)(usec % 1000000) };
	event_add(srv->watchdog, &tv);
	log_info("systemd watchdog: pinging every %llu ms", (unsigned long long)usec / 1000);
	return 0;
}

static int setup(struct server *srv)
{
	srv->base = event_base_new();
	if (!srv->base)
		return -1;
	const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	for (int i = 0; i < 3; i++) {
		srv->signals[i] = evsignal_new(srv->base, sigs[i], signal_cb, srv);
		event_add(srv->signals[i], NULL);
	}
	srv->reaper = event_new(srv->base, -1, 0, reaper_cb, srv);
	srv->started_at = time(NULL);
	srv->schema_version = migrate_latest();
	if (services_start(srv) < 0 || start_watchdog(srv) < 0)
		return -1;
	if (start_listening(srv) < 0)
		return -1;
	int failed;
	srv->admin = admin_http_start(srv, &failed);
	return failed ? -1 : 0;
}

static void teardown(struct server *srv)
{
	if (srv->listener)
		evconnlistener_free(srv->listener);
	if (srv->plain_listener)
		evconnlistener_free(srv->plain_listener);
	conn_free_all(srv);
	/* Answers what is still waiting on the database; their connections
	 * are closed, so nothing is sent, and the reaper frees them. */
	admin_http_free(srv->admin);
	services_stop(srv);
	conn_reap(srv);
	for (int i = 0; i < 3; i++)
		if (srv->signals[i])
			event_free(srv->signals[i]);
	if (srv->reaper)
		event_free(srv->reaper);
	if (srv->drain_timer)
		event_free(srv->drain_timer);
	if (srv->watchdog)
		event_free(srv->watchdog);
	if (srv->base)
		event_base_free(srv->base);
	SSL_CTX_free(srv->tls_ctx);
	config_free(&srv->cfg);
	libevent_global_shutdown();
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 's' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "help-config", no_argument, NULL, 'H' },
		{ "migrate", no_argument, NULL, 'M' },
		{ "hash-token", no_argument, NULL, 'T' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static char *overrides[MAX_OVERRIDES];
	static struct server srv;
	int n_overrides = 0, mode = 0, ch;
	const char *config_path = NULL;
	while ((ch = getopt_long(argc, argv, "c:s:Vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': config_path = optarg; break;
		case 's':
			if (n_overrides == MAX_OVERRIDES) {
				fprintf(stderr, "referrald: too many --set options\n");
				return 2;
			}
			overrides[n_overrides++] = optarg;
			break;
		case 'C': case 'H': case 'M': case 'T': mode = ch; break;
		case 'V': printf("referrald %s (protocol 1, schema %d)\n", REFERRALD_VERSION,
				 migrate_latest()); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (mode == 'H') {
		config_print_help(stdout);
		return 0;
	}
	char err[512];
	if (config_load(&srv.cfg, config_path, overrides, n_overrides, err, sizeof err) < 0) {
		log_error("configuration error: %s", err);
		return 1;
	}
	log_set_level(srv.cfg.log_level);
	srv.config_path = config_path;
	srv.overrides = overrides;
	srv.n_overrides = n_overrides;
	int rc = 0;
	switch (mode) {
	case 'C':
		config_print(stdout, &srv.cfg);
		printf("# configuration OK\n");
		break;
	case 'M': rc = run_migrate(&srv.cfg); break;
	case 'T': rc = hash_token_from_stdin(&srv.cfg); break;
	default:
		signal(SIGPIPE, SIG_IGN);
		if (check_schema(&srv.cfg) < 0 || setup(&srv) < 0) {
			rc = 1;
			break;
		}
		sd_notify(0, "READY=1");
		event_base_dispatch(srv.base);
		log_info("stopped");
		teardown(&srv);
		return 0;
	}
	config_free(&srv.cfg);
	return rc;
}
