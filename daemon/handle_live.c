/* handle_live.c: the daemon's live counters for `referralctl top`, answered
 * from memory. The figures are the ones /metrics shows (metrics.h, stats.h,
 * the pools' own), read where they are kept, cumulative since the start; the
 * client turns two answers into rates and recent percentiles. */
#include <stdlib.h>
#include <time.h>

#include "db.h"
#include "dispatch.h"
#include "server.h"
#include "wire.h"

/* Every piece of the reply, allocated at once and freed after sending. */
struct live {
	Referral__LiveCounters reply;
	Referral__NamedCount conns[METRICS_N_ROLES], *conn_ptrs[METRICS_N_ROLES];
	Referral__NamedCount counters[32], *counter_ptrs[32];
	double bounds[METRICS_N_BUCKETS];
	Referral__RequestCounters types[METRICS_MAX_ROUTES + 1], *type_ptrs[METRICS_MAX_ROUTES + 1];
	uint64_t buckets[METRICS_MAX_ROUTES + 1][METRICS_N_BUCKETS];
	Referral__NamedCount codes[METRICS_MAX_ROUTES + 1][METRICS_N_CODES];
	Referral__NamedCount *code_ptrs[METRICS_MAX_ROUTES + 1][METRICS_N_CODES];
	Referral__PoolCounters pools[2];
	struct db_pool_stats pool_stats[2];
};

static void named(Referral__NamedCount *n, const char *name, uint64_t value)
{
	referral__named_count__init(n);
	n->name = (char *)name;
	n->value = value;
}

static void live_connections(struct live *l, const struct server *srv)
{
	unsigned by_role[METRICS_N_ROLES];
	metrics_count_connections(srv, by_role);
	for (int r = 0; r <= REFERRAL__ROLE__ROLE_ADMIN; r++) {
		named(&l->conns[r], r == 0 ? "none" : wire_role_name((Referral__Role)r), by_role[r]);
		l->conn_ptrs[l->reply.n_connections++] = &l->conns[r];
	}
	l->reply.connections = l->conn_ptrs;
}

/* One entry per request type answered at least once. */
static void live_requests(struct live *l, const struct metrics *m)
{
	for (int b = 0; b < METRICS_N_BUCKETS; b++)
		l->bounds[b] = metrics_bucket_bounds[b];
	l->reply.n_bucket_bounds = METRICS_N_BUCKETS;
	l->reply.bucket_bounds = l->bounds;
	l->reply.requests = l->type_ptrs;
	for (unsigned i = 0; i <= METRICS_MAX_ROUTES; i++) {
		const struct request_metrics *r = &m->routes[i];
		if (r->count == 0)
			continue;
		Referral__RequestCounters *t = &l->types[i];
		referral__request_counters__init(t);
		t->type = (char *)metrics_route_label(i);
		t->count = r->count;
		t->sum_seconds = r->sum_seconds;
		for (int b = 0; b < METRICS_N_BUCKETS; b++)
			l->buckets[i][b] = r->buckets[b];
		t->n_buckets = METRICS_N_BUCKETS;
		t->buckets = l->buckets[i];
		t->codes = l->code_ptrs[i];
		for (unsigned c = 0; c < METRICS_N_CODES; c++) {
			if (r->by_code[c] == 0)
				continue;
			named(&l->codes[i][c], metrics_code_label(c), r->by_code[c]);
			l->code_ptrs[i][t->n_codes++] = &l->codes[i][c];
		}
		l->type_ptrs[l->reply.n_requests++] = t;
	}
}

static void live_counters(struct live *l, const struct server *srv)
{
	l->reply.counters = l->counter_ptrs;
#define X(field, help)                                                               \
	if (l->reply.n_counters < sizeof l->counters / sizeof l->counters[0]) {      \
		named(&l->counters[l->reply.n_counters], #field, srv->stats.field);   \
		l->counter_ptrs[l->reply.n_counters] = &l->counters[l->reply.n_counters]; \
		l->reply.n_counters++;                                                \
	}
	SERVER_COUNTERS(X)
#undef X
}

static Referral__PoolCounters *live_pool(Referral__PoolCounters *p, struct db_pool_stats *st,
					 const struct db_pool *pool)
{
	referral__pool_counters__init(p);
	if (!pool)
		return p;
	db_pool_get_stats(pool, st);
	p->state = (char *)db_pool_state_name(pool);
	p->connections = st->connections_total;
	p->connections_up = st->connections_up;
	p->busy = st->busy;
	p->queue_length = st->queue_length;
	p->queries_total = st->queries_total;
	p->unavailable_total = st->failures_total;
	p->connects_total = st->reconnects_total;
	p->last_error = st->connections_up == st->connections_total ? "" : st->last_error;
	return p;
}

void handle_live(struct request *req)
{
	struct server *srv = req->srv;
	struct live *l = calloc(1, sizeof *l);
	if (!l) {
		request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "out of memory");
		return;
	}
	referral__live_counters__init(&l->reply);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	l->reply.server_version = REFERRALD_VERSION;
	l->reply.uptime_seconds = (double)(now.tv_sec - srv->started_at) + now.tv_nsec / 1e9;
	l->reply.requests_in_flight = srv->inflight;
	live_connections(l, srv);
	live_requests(l, &srv->metrics);
	live_counters(l, srv);
	l->reply.database = live_pool(&l->pools[0], &l->pool_stats[0], srv->db);
	l->reply.figures = live_pool(&l->pools[1], &l->pool_stats[1], srv->figures_db);
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_LIVE;
	resp.live = &l->reply;
	request_reply(req, &resp);
	free(l);
}
