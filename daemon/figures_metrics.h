/*
 * figures_metrics.h: the community gauges of /metrics (bookings by pool,
 * released units, emergency bookings, referrals by direction and state, ...),
 * one set per community of the database.
 *
 * They come from the database, so they are not computed at scrape time: a
 * timer computes them every figures_metrics_interval_ms on the figures pool
 * (figures.h) and keeps the rendered text, which /metrics serves as it is.
 * Scrapes are therefore cheap whatever their number, and the gauges are at
 * most one interval (plus the query's time) old; their age is exported too.
 */
#ifndef REFERRALD_FIGURES_METRICS_H
#define REFERRALD_FIGURES_METRICS_H

struct server;
struct evbuffer;
struct figures_metrics;

/* Starts the timer (interval 0: never refreshed, nothing exported). The
 * first refresh runs at once. */
struct figures_metrics *figures_metrics_start(struct server *srv, int interval_ms);
void figures_metrics_set_interval(struct figures_metrics *fm, int interval_ms);
/* Safe with a refresh in flight: the pool's answer frees it. */
void figures_metrics_free(struct figures_metrics *fm);

/* Appends the last refresh's gauges and the refresh's own figures. */
void figures_metrics_render(struct figures_metrics *fm, struct evbuffer *out);

#endif
