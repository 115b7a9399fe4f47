/*
 * replica.h: reads that may be served by a streaming replica.
 *
 * With db_replica_dsn set, the daemon keeps a second, small pool on a hot
 * standby and sends it the read-only requests that tolerate a bounded delay
 * (session search and monitoring figures; never a booking, never anything a
 * write decides on). How far behind the replica is, is measured, not
 * assumed: every REPLICA_CHECK_MS the daemon samples the primary's WAL
 * position with the time, and the replica's replayed position. Once the
 * replica has replayed a position sampled at time t, it shows every write
 * committed before t; its staleness now is now - t. While that is within
 * db_replica_max_lag_ms (and the replica is reachable) reads go to it;
 * otherwise to the primary, and the fallback is counted.
 */
#ifndef REFERRALD_REPLICA_H
#define REFERRALD_REPLICA_H

#define REPLICA_CHECK_MS 250

struct server;
struct db_pool;
struct replica;

/* Starts the replica pool and its lag checks; *failed is set when
 * configured but impossible to start. NULL without db_replica_dsn. */
struct replica *replica_start(struct server *srv, int *failed);
void replica_free(struct replica *r);

/* The pool for a read that tolerates db_replica_max_lag_ms of staleness:
 * the replica's when it is within bounds, else the primary's. */
struct db_pool *replica_read_pool(struct server *srv);

/* Seconds the replica's data is behind now, or a negative number when
 * unknown (no replica configured, or no position matched yet). */
double replica_staleness_s(const struct replica *r);
/* 1 when reads go to the replica now. */
int replica_usable(const struct replica *r);

#endif
