/*
 * server.h: the daemon's one context: its loop, settings, listener, pool,
 * connections and counters. Created in main.c, passed to everything else.
 */
#ifndef REFERRALD_SERVER_H
#define REFERRALD_SERVER_H

#include <time.h>

#include "config.h"
#include "metrics.h"
#include "stats.h"

struct event_base;
struct evconnlistener;
struct event;
struct db_pool;
struct conn;
struct ssl_ctx_st;

#define REFERRALD_VERSION "0.1.0"

struct server {
	struct event_base *base;
	struct config cfg;
	const char *config_path;    /* NULL when running on defaults and --set */
	char *const *overrides;     /* --set key=value, re-applied on reload */
	int n_overrides;

	struct evconnlistener *listener;        /* the TLS client port */
	struct evconnlistener *plain_listener;  /* loopback only, without TLS */
	int bound_port;
	int plain_bound_port;
	struct ssl_ctx_st *tls_ctx;             /* for new TLS connections; swapped on SIGHUP */
	struct db_pool *db;
	struct book_batcher *book_batcher;
	struct replica *replica;   /* NULL without db_replica_dsn */
	struct worker_pool *workers;  /* token hashes, off the loop */
	struct patient_key *patient_key;  /* NULL: no patient_id_key_file */
	struct db_pool *figures_db;          /* the figures' own pool (figures.h) */
	struct figures_metrics *figures_metrics;
	struct release_timer *release;
	struct terminal_watch *terminal_watch;  /* closes connections of revoked terminals */
	struct event_hub *events;
	struct admin_http *admin;
	int admin_bound_port;
	int schema_version;

	struct conn *conns;         /* doubly linked list of live connections */
	unsigned n_conns;
	unsigned n_closing;         /* closed, not yet freed */
	struct conn *reap;          /* closed connections to free on the next loop turn */
	struct event *reaper;
	unsigned inflight;          /* requests being processed, all connections */

	int draining;               /* SIGTERM received */
	struct event *drain_timer;
	struct event *watchdog;     /* systemd WatchdogSec pings */
	struct event *signals[4];

	time_t started_at;
	struct server_stats stats;
	struct metrics metrics;
};

/* Stops accepting, answers frames still to come UNAVAILABLE, and exits the
 * loop once nothing is in flight or shutdown_timeout_ms has passed. */
void server_begin_drain(struct server *srv);
/* Called when a request finishes; ends the loop when draining is done. */
void server_request_finished(struct server *srv);

#endif
