/*
 * db.h: an asynchronous PostgreSQL connection pool on the event loop.
 *
 * Connections are opened with PQconnectStartParams/PQconnectPoll, checked for
 * the expected schema version, have every statement of db_statements.h
 * prepared, and then run one prepared statement at a time. Nothing here
 * blocks the loop. A connection that fails is closed and reopened with
 * exponential backoff; its job in flight is answered DB_UNAVAILABLE (the
 * outcome of a write whose connection died is unknown: clients retry with
 * their idempotency key).
 *
 * The pool knows nothing about protobuf or clients: it takes a statement and
 * its parameters and calls back with the result.
 */
#ifndef REFERRALD_DB_H
#define REFERRALD_DB_H

#include <libpq-fe.h>

#include "db_statements.h"

struct event_base;
struct db_pool;

enum db_outcome {
	DB_OK,          /* res holds the rows */
	DB_FAILED,      /* the statement raised an error: sqlstate, message, column */
	DB_UNAVAILABLE, /* no usable connection, queue timeout, or connection lost */
	DB_OVERLOADED,  /* the wait queue is full */
};

struct db_result {
	enum db_outcome outcome;
	const PGresult *res;   /* DB_OK and DB_FAILED; owned by the pool */
	const char *sqlstate;  /* DB_FAILED */
	const char *message;   /* DB_FAILED, DB_UNAVAILABLE */
	const char *column;    /* DB_FAILED: PG_DIAG_COLUMN_NAME, or "" */
};

/* Called exactly once per accepted db_exec, from the event loop. */
typedef void (*db_done_fn)(void *arg, const struct db_result *r);

struct db_pool_settings {
	const char *dsn;
	int size;
	int queue_max;
	int queue_timeout_ms;
	int reconnect_max_ms;
	int statement_timeout_ms;
	/* Optional: more server settings for every connection, in the form
	 * of libpq's options ("-c name=value ..."). */
	const char *extra_options;
	int schema_version;       /* the version this daemon was built for */
	/* Optional: every connection LISTENs on this channel, and each
	 * notification's payload is passed to notify(). A notification may
	 * come once per connection: treat it as a wake-up, not a message. */
	const char *listen_channel;
	void (*notify)(void *arg, const char *payload);
	void *notify_arg;
};

struct db_pool_stats {
	unsigned connections_total;
	unsigned connections_up;
	unsigned busy;
	unsigned queue_length;
	unsigned long long queries_total;
	unsigned long long failures_total;  /* jobs answered DB_UNAVAILABLE */
	unsigned long long reconnects_total;
	char last_error[256];
};

struct db_pool *db_pool_new(struct event_base *base, const struct db_pool_settings *s);
/* Answers every queued and running job DB_UNAVAILABLE, closes everything. */
void db_pool_free(struct db_pool *pool);
/* Live-changeable limits (SIGHUP). */
void db_pool_set_limits(struct db_pool *pool, int queue_max, int queue_timeout_ms,
			int reconnect_max_ms);

/* Runs a prepared statement. values[i] == NULL is SQL NULL; the values are
 * copied. Returns 0 when accepted (done() will be called later, never from
 * inside db_exec), or -1 with *refused set to DB_UNAVAILABLE or
 * DB_OVERLOADED (done() is not called). */
int db_exec(struct db_pool *pool, enum db_stmt stmt, int nparams,
	    const char *const *values, db_done_fn done, void *arg,
	    enum db_outcome *refused);

void db_pool_get_stats(const struct db_pool *pool, struct db_pool_stats *out);
/* "up" when every connection is ready, "degraded" when some, "down" when none. */
const char *db_pool_state_name(const struct db_pool *pool);

#endif
