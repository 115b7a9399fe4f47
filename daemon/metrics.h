/*
 * metrics.h: request counts and latency histograms per request type, and the
 * Prometheus text exposition of every figure the daemon keeps in memory.
 *
 * Recording is a few increments on the loop thread; rendering happens only
 * when /metrics is scraped.
 */
#ifndef REFERRALD_METRICS_H
#define REFERRALD_METRICS_H

#include "referral.pb-c.h"

struct server;
struct evbuffer;

/* Upper bounds of the latency buckets, in seconds (Prometheus "le"). */
#define METRICS_BUCKETS(X)                                                     \
	X(0.0005) X(0.001) X(0.0025) X(0.005) X(0.01) X(0.025) X(0.05) X(0.1)  \
	X(0.25) X(0.5) X(1) X(2.5) X(5) X(10)
#define X(le) +1
enum { METRICS_N_BUCKETS = 0 METRICS_BUCKETS(X) };
#undef X

/* Error codes are small enum numbers; index 0 (ERROR_NONE) counts successes. */
#define METRICS_N_CODES 16
/* One slot per route, plus one for requests of no known type. */
#define METRICS_MAX_ROUTES 64

struct request_metrics {
	unsigned long long by_code[METRICS_N_CODES];
	unsigned long long buckets[METRICS_N_BUCKETS];  /* not cumulative */
	unsigned long long count;
	double sum_seconds;
};

struct metrics {
	struct request_metrics routes[METRICS_MAX_ROUTES + 1];
};

/* The upper bounds of the buckets, in seconds. */
extern const double metrics_bucket_bounds[METRICS_N_BUCKETS];

/* Roles are small enum numbers; index 0 counts connections before Hello. */
#define METRICS_N_ROLES 8

/* The request type a slot counts ("unknown" for the last one). */
const char *metrics_route_label(unsigned route_index);
/* "ok" or the error code's name. */
const char *metrics_code_label(unsigned code);
/* Open connections by role; by_role[0]: not yet authenticated. */
void metrics_count_connections(const struct server *srv, unsigned by_role[METRICS_N_ROLES]);

/* A request of route `route_index` (-1: unknown type) ended with `code`
 * after `seconds`. */
void metrics_observe(struct metrics *m, int route_index, Referral__ErrorCode code,
		     double seconds);

/* Appends the whole exposition (text format 0.0.4) to out. */
void metrics_render(struct server *srv, struct evbuffer *out);

#endif
