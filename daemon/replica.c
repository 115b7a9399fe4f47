/* replica.c: see replica.h. */
#include "replica.h"

#include <stdlib.h>

#include <event2/event.h>

#include "clock.h"
#include "db.h"
#include "db_row.h"
#include "log.h"
#include "server.h"

/* Primary WAL positions with the time they were read: enough to cover a
 * replica REPLICA_SAMPLES * REPLICA_CHECK_MS behind (16 s). A replica
 * further behind than that is too stale for any sensible bound anyway. */
#define REPLICA_SAMPLES 64

struct wal_sample {
	long long lsn;
	long long at_ms;
};

struct replica {
	struct server *srv;
	struct db_pool *pool;
	struct event *tick;
	struct wal_sample samples[REPLICA_SAMPLES];
	unsigned n_samples, next_sample;
	long long covered_ms;   /* the replica shows every commit before this; 0: unknown */
	int primary_asked, replica_asked;
	long long primary_asked_ms;
	int was_usable;
};

static void primary_position(void *arg, const struct db_result *res)
{
	struct replica *r = arg;
	r->primary_asked = 0;
	if (res->outcome != DB_OK || PQntuples(res->res) != 1)
		return;
	struct wal_sample *s = &r->samples[r->next_sample];
	/* Stamped with the time it was asked: every commit before then has a
	 * position at or below the one read. */
	s->lsn = db_i64(res->res, 0, 0);
	s->at_ms = r->primary_asked_ms;
	r->next_sample = (r->next_sample + 1) % REPLICA_SAMPLES;
	if (r->n_samples < REPLICA_SAMPLES)
		r->n_samples++;
}

/* The newest primary sample the replica has replayed moves covered_ms. */
static void replica_position(void *arg, const struct db_result *res)
{
	struct replica *r = arg;
	r->replica_asked = 0;
	if (res->outcome != DB_OK || PQntuples(res->res) != 1)
		return;
	long long replayed = db_i64(res->res, 0, 0);
	for (unsigned i = 0; i < r->n_samples; i++) {
		const struct wal_sample *s = &r->samples[i];
		if (s->lsn <= replayed && s->at_ms > r->covered_ms)
			r->covered_ms = s->at_ms;
	}
}

static void note_change(struct replica *r)
{
	int usable = replica_usable(r);
	if (usable != r->was_usable)
		log_info("replica %s (behind by %.3f s, bound %d ms)",
			 usable ? "in use for reads" : "not used for reads: too far behind or down",
			 replica_staleness_s(r), r->srv->cfg.db_replica_max_lag_ms);
	r->was_usable = usable;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct replica *r = arg;
	enum db_outcome refused;
	if (!r->replica_asked &&
	    db_exec(r->pool, DB_STMT_WAL_POSITION, 0, NULL, replica_position, r, &refused) == 0)
		r->replica_asked = 1;
	if (!r->primary_asked &&
	    db_exec(r->srv->db, DB_STMT_WAL_POSITION, 0, NULL, primary_position, r, &refused) == 0) {
		r->primary_asked = 1;
		r->primary_asked_ms = monotonic_ms();
	}
	note_change(r);
}

struct replica *replica_start(struct server *srv, int *failed)
{
	*failed = 0;
	if (!srv->cfg.db_replica_dsn || !srv->cfg.db_replica_dsn[0])
		return NULL;
	struct replica *r = calloc(1, sizeof *r);
	*failed = 1;
	if (!r)
		return NULL;
	r->srv = srv;
	struct db_pool_settings ps = {
		.dsn = srv->cfg.db_replica_dsn,
		.size = srv->cfg.db_replica_pool_size,
		.queue_max = srv->cfg.db_queue_max,
		.queue_timeout_ms = srv->cfg.db_queue_timeout_ms,
		.reconnect_max_ms = srv->cfg.db_reconnect_max_ms,
		.statement_timeout_ms = srv->cfg.db_statement_timeout_ms,
		.schema_version = srv->schema_version,
	};
	r->pool = db_pool_new(srv->base, &ps);
	r->tick = event_new(srv->base, -1, EV_PERSIST, tick_cb, r);
	struct timeval tv = { 0, REPLICA_CHECK_MS * 1000 };
	if (!r->pool || !r->tick || event_add(r->tick, &tv) < 0) {
		replica_free(r);
		return NULL;
	}
	*failed = 0;
	log_info("reads that tolerate %d ms of staleness may go to the replica",
		 srv->cfg.db_replica_max_lag_ms);
	return r;
}

void replica_free(struct replica *r)
{
	if (!r)
		return;
	if (r->tick)
		event_free(r->tick);
	/* Answers its own lag checks (and reads) UNAVAILABLE. */
	db_pool_free(r->pool);
	free(r);
}

double replica_staleness_s(const struct replica *r)
{
	if (!r || r->covered_ms == 0)
		return -1;
	return (double)(monotonic_ms() - r->covered_ms) / 1000.0;
}

int replica_usable(const struct replica *r)
{
	if (!r || r->covered_ms == 0)
		return 0;
	struct db_pool_stats st;
	db_pool_get_stats(r->pool, &st);
	return st.connections_up > 0 &&
	       monotonic_ms() - r->covered_ms <= r->srv->cfg.db_replica_max_lag_ms;
}

struct db_pool *replica_read_pool(struct server *srv)
{
	if (!srv->replica)
		return srv->db;
	if (replica_usable(srv->replica)) {
		srv->stats.replica_reads++;
		return srv->replica->pool;
	}
	srv->stats.replica_fallbacks++;
	return srv->db;
}
