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

#define REFERRALD_VERSION "0.1.0"

struct server {
	struct event_base *base;
	struct config cfg;
	const char *config_path;    /* NULL when running on defaults and --set */
	char *const *overrides;     /* --set key=value, re-applied on reload */
	int n_overrides;

	struct evconnlistener *listener;
	int bound_port;
	struct db_pool *db;
	struct db_pool *figures_db;          /* the figures' own pool (figures.h) */
	struct figures_metrics *figures_metrics;
	struct release_timer *release;
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
