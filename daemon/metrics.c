/* metrics.c: see metrics.h. Names follow the Prometheus conventions: a
 * referrald_ prefix, base units (seconds), counters ending in _total. */
#include "metrics.h"

#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "conn.h"
#include "db.h"
#include "dispatch.h"
#include "replica.h"
#include "figures_metrics.h"
#include "server.h"
#include "wire.h"

const double metrics_bucket_bounds[METRICS_N_BUCKETS] = {
#define X(le) le,
	METRICS_BUCKETS(X)
#undef X
};

void metrics_observe(struct metrics *m, int route_index, Referral__ErrorCode code,
		     double seconds)
{
	if (route_index < 0 || route_index >= METRICS_MAX_ROUTES)
		route_index = METRICS_MAX_ROUTES;
	struct request_metrics *r = &m->routes[route_index];
	r->by_code[(unsigned)code < METRICS_N_CODES ? (unsigned)code : 0]++;
	r->count++;
	r->sum_seconds += seconds;
	for (int b = 0; b < METRICS_N_BUCKETS; b++) {
		if (seconds <= metrics_bucket_bounds[b]) {
			r->buckets[b]++;
			break;
		}
	}
}

const char *metrics_route_label(unsigned i)
{
	return i < routes_count ? routes[i].name : "unknown";
}

const char *metrics_code_label(unsigned code)
{
	return code == 0 ? "ok" : wire_error_code_name((Referral__ErrorCode)code);
}

void metrics_count_connections(const struct server *srv, unsigned by_role[METRICS_N_ROLES])
{
	memset(by_role, 0, METRICS_N_ROLES * sizeof by_role[0]);
	for (const struct conn *c = srv->conns; c; c = c->next) {
		if (c->state == CONN_READY && (unsigned)c->ident.role < METRICS_N_ROLES)
			by_role[c->ident.role]++;
		else
			by_role[0]++;
	}
}

static void header(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(struct evbuffer *out, const char *name, const char *help, double value)
{
	header(out, name, "gauge", help);
	evbuffer_add_printf(out, "%s %.17g\n", name, value);
}

static void counter(struct evbuffer *out, const char *name, const char *help,
		    unsigned long long value)
{
	header(out, name, "counter", help);
	evbuffer_add_printf(out, "%s %llu\n", name, value);
}

static void render_requests(struct server *srv, struct evbuffer *out)
{
	const struct metrics *m = &srv->metrics;
	header(out, "referrald_requests_total", "counter",
	       "Requests answered, by request type and outcome (ok or the error code).");
	for (unsigned i = 0; i <= METRICS_MAX_ROUTES; i++)
		for (unsigned c = 0; c < METRICS_N_CODES; c++)
			if (m->routes[i].by_code[c])
				evbuffer_add_printf(out, "referrald_requests_total{type=\"%s\",code=\"%s\"} %llu\n",
						    metrics_route_label(i),
						    metrics_code_label(c),
						    m->routes[i].by_code[c]);
	header(out, "referrald_request_duration_seconds", "histogram",
	       "Time from a request's arrival to its answer being queued, by request type.");
	for (unsigned i = 0; i <= METRICS_MAX_ROUTES; i++) {
		const struct request_metrics *r = &m->routes[i];
		if (r->count == 0)
			continue;
		unsigned long long cum = 0;
		for (int b = 0; b < METRICS_N_BUCKETS; b++) {
			cum += r->buckets[b];
			evbuffer_add_printf(out, "referrald_request_duration_seconds_bucket{type=\"%s\",le=\"%g\"} %llu\n",
					    metrics_route_label(i), metrics_bucket_bounds[b], cum);
		}
		evbuffer_add_printf(out,
				    "referrald_request_duration_seconds_bucket{type=\"%s\",le=\"+Inf\"} %llu\n"
				    "referrald_request_duration_seconds_sum{type=\"%s\"} %.9f\n"
				    "referrald_request_duration_seconds_count{type=\"%s\"} %llu\n",
				    metrics_route_label(i), r->count, metrics_route_label(i), r->sum_seconds,
				    metrics_route_label(i), r->count);
	}
}

/* The daemon's own counters (stats.h), except the two that
 * referrald_requests_total already breaks down. */
static void render_counters(struct server *srv, struct evbuffer *out)
{
#define X(field, help)                                                                    \
	if (strcmp(#field, "requests_total") != 0 && strcmp(#field, "errors_total") != 0) \
		counter(out, "referrald_" #field "_total", help, srv->stats.field);
	SERVER_COUNTERS(X)
#undef X
}

static void render_connections(struct server *srv, struct evbuffer *out)
{
	unsigned by_role[METRICS_N_ROLES];
	metrics_count_connections(srv, by_role);
	header(out, "referrald_connections", "gauge",
	       "Open client connections, by role (none: not yet authenticated).");
	evbuffer_add_printf(out, "referrald_connections{role=\"none\"} %u\n", by_role[0]);
	for (int r = REFERRAL__ROLE__ROLE_CLINIC; r <= REFERRAL__ROLE__ROLE_ADMIN; r++)
		evbuffer_add_printf(out, "referrald_connections{role=\"%s\"} %u\n",
				    wire_role_name((Referral__Role)r), by_role[r]);
	gauge(out, "referrald_requests_in_flight", "Requests being processed.", srv->inflight);
}

static void render_database(struct server *srv, struct evbuffer *out)
{
	struct db_pool_stats st;
	db_pool_get_stats(srv->db, &st);
	gauge(out, "referrald_db_connections", "Configured PostgreSQL connections.",
	      st.connections_total);
	gauge(out, "referrald_db_connections_up", "PostgreSQL connections ready for work.",
	      st.connections_up);
	gauge(out, "referrald_db_connections_busy", "PostgreSQL connections running a statement.",
	      st.busy);
	gauge(out, "referrald_db_queue_length", "Requests waiting for a database connection.",
	      st.queue_length);
	counter(out, "referrald_db_queries_total", "Statements sent to PostgreSQL.", st.queries_total);
	counter(out, "referrald_db_unavailable_total",
		"Statements answered unavailable (no connection, queue timeout, connection lost).",
		st.failures_total);
	counter(out, "referrald_db_connects_total", "Connection attempts to PostgreSQL.",
		st.reconnects_total);
}

/* Only with a replica configured (replica.h). */
static void render_replica(struct server *srv, struct evbuffer *out)
{
	if (!srv->replica)
		return;
	gauge(out, "referrald_replica_usable",
	      "1 while reads that tolerate staleness go to the replica, 0 while they go to the primary.",
	      replica_usable(srv->replica));
	gauge(out, "referrald_replica_staleness_seconds",
	      "How far the replica's data is behind now (-1: not known yet).",
	      replica_staleness_s(srv->replica));
}

/* The figures' own pool (figures.h): its queue is where spammed figure
 * requests wait, apart from the bookings. */
static void render_figures_pool(struct server *srv, struct evbuffer *out)
{
	struct db_pool_stats st;
	if (!srv->figures_db)
		return;
	db_pool_get_stats(srv->figures_db, &st);
	gauge(out, "referrald_figures_db_connections_up",
	      "Figures connections (stats, compliance, community gauges) ready for work.",
	      st.connections_up);
	gauge(out, "referrald_figures_db_busy", "Figures connections running a query.", st.busy);
	gauge(out, "referrald_figures_queue_length", "Figure requests waiting for a figures connection.",
	      st.queue_length);
	counter(out, "referrald_figures_queries_total", "Figure queries sent to PostgreSQL.",
		st.queries_total);
	counter(out, "referrald_figures_unavailable_total",
		"Figure queries answered unavailable (no connection, queue timeout, connection lost).",
		st.failures_total);
}

void metrics_render(struct server *srv, struct evbuffer *out)
{
	header(out, "referrald_build_info", "gauge", "Always 1; the labels say what runs.");
	evbuffer_add_printf(out, "referrald_build_info{version=\"%s\",schema=\"%d\"} 1\n",
			    REFERRALD_VERSION, srv->schema_version);
	gauge(out, "referrald_start_time_seconds", "When the daemon started, Unix seconds.",
	      (double)srv->started_at);
	gauge(out, "referrald_draining", "1 while shutting down.", srv->draining);
	render_requests(srv, out);
	render_counters(srv, out);
	render_connections(srv, out);
	render_database(srv, out);
	render_replica(srv, out);
	render_figures_pool(srv, out);
	figures_metrics_render(srv->figures_metrics, out);
}
