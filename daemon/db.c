/* db.c: the asynchronous PostgreSQL pool; see db.h. */
#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "clock.h"
#include "log.h"

#define BACKOFF_START_MS 100
#define SWEEP_INTERVAL_MS 50

enum pgc_state {
	PGC_WAITING,     /* closed; the backoff timer will reconnect */
	PGC_CONNECTING,  /* PQconnectPoll in progress */
	PGC_CHECKING,    /* reading the schema version */
	PGC_PREPARING,   /* preparing statement prepare_next */
	PGC_LISTENING,   /* LISTEN on the pool's channel */
	PGC_IDLE,
	PGC_BUSY,        /* running job */
};

struct db_job {
	struct db_job *next;
	enum db_stmt stmt;
	int nparams;
	long long enqueued_ms;
	db_done_fn done;
	void *arg;
	const char *values[DB_MAX_PARAMS];
	char arena[]; /* the parameter strings */
};

struct pgc {
	struct db_pool *pool;
	int index;
	enum pgc_state state;
	PGconn *conn;
	struct event *io;
	int io_fd;
	short io_what;
	struct event *backoff;
	int backoff_ms;
	int prepare_next;
	struct db_job *job;
	PGresult *result;   /* first result of the command in progress */
};

struct db_pool {
	struct event_base *base;
	struct db_pool_settings s;
	char *dsn;
	char options[256];
	struct pgc *conns;
	struct db_job *queue_head, *queue_tail;
	unsigned queue_length;
	unsigned up;
	int had_failure;     /* a connection failed since the last one came up */
	struct event *sweep;
	struct event *kick;  /* runs pool_dispatch on the next loop turn */
	unsigned long long queries_total, failures_total, reconnects_total;
	char last_error[256];
};

static void pgc_start(struct pgc *c);
static void pgc_io_cb(evutil_socket_t fd, short what, void *arg);
static void pool_dispatch(struct db_pool *pool);

static void set_last_error(struct db_pool *pool, const char *msg)
{
	snprintf(pool->last_error, sizeof pool->last_error, "%s", msg);
	/* libpq messages end in a newline; the status line should not. */
	size_t n = strlen(pool->last_error);
	while (n > 0 && (pool->last_error[n - 1] == '\n' || pool->last_error[n - 1] == ' '))
		pool->last_error[--n] = '\0';
}

/* ---- jobs ---------------------------------------------------------------- */

static void job_answer_unavailable(struct db_pool *pool, struct db_job *job, const char *why)
{
	struct db_result r = { .outcome = DB_UNAVAILABLE, .message = why, .column = "" };
	pool->failures_total++;
	job->done(job->arg, &r);
	free(job);
}

static struct db_job *queue_pop(struct db_pool *pool)
{
	struct db_job *job = pool->queue_head;
	if (job) {
		pool->queue_head = job->next;
		if (!pool->queue_head)
			pool->queue_tail = NULL;
		pool->queue_length--;
		job->next = NULL;
	}
	return job;
}

static void queue_push_front(struct db_pool *pool, struct db_job *job)
{
	job->next = pool->queue_head;
	pool->queue_head = job;
	if (!pool->queue_tail)
		pool->queue_tail = job;
	pool->queue_length++;
}

static void queue_push_back(struct db_pool *pool, struct db_job *job)
{
	job->next = NULL;
	if (pool->queue_tail)
		pool->queue_tail->next = job;
	else
		pool->queue_head = job;
	pool->queue_tail = job;
	pool->queue_length++;
}

static void queue_fail_all(struct db_pool *pool, const char *why)
{
	struct db_job *job;
	while ((job = queue_pop(pool)) != NULL)
		job_answer_unavailable(pool, job, why);
}

/* Answers the jobs that waited too long for a connection. */
static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct db_pool *pool = arg;
	long long deadline = monotonic_ms() - pool->s.queue_timeout_ms;
	while (pool->queue_head && pool->queue_head->enqueued_ms <= deadline)
		job_answer_unavailable(pool, queue_pop(pool),
				       "timed out waiting for a database connection");
}

/* ---- connection I/O -------------------------------------------------------- */

static void pgc_disarm(struct pgc *c)
{
	if (c->io) {
		event_free(c->io);
		c->io = NULL;
	}
}

/* Watches the connection's current socket for `what`. The socket can change
 * between PQconnectPoll calls, so it is read again every time. */
static void pgc_arm(struct pgc *c, short what)
{
	int fd = PQsocket(c->conn);
	if (c->io && c->io_fd == fd && c->io_what == what)
		return;
	pgc_disarm(c);
	if (fd < 0)
		return;
	c->io = event_new(c->pool->base, fd, what | EV_PERSIST, pgc_io_cb, c);
	c->io_fd = fd;
	c->io_what = what;
	event_add(c->io, NULL);
}

/* Closes the connection, answers its job and schedules a reconnect. */
static void pgc_fail(struct pgc *c, const char *why, int backoff_ms)
{
	struct db_pool *pool = c->pool;
	int was_up = c->state == PGC_IDLE || c->state == PGC_BUSY;
	set_last_error(pool, why);
	log_warn("db connection %d: %s", c->index, pool->last_error);
	/* Before PQfinish: the fd number is reused at once. */
	pgc_disarm(c);
	if (c->result) {
		PQclear(c->result);
		c->result = NULL;
	}
	if (c->conn) {
		PQfinish(c->conn);
		c->conn = NULL;
	}
	c->state = PGC_WAITING;
	if (was_up)
		pool->up--;
	pool->had_failure = 1;
	struct db_job *job = c->job;
	c->job = NULL;

	if (backoff_ms <= 0) {
		backoff_ms = c->backoff_ms;
		int next = c->backoff_ms * 2;
		c->backoff_ms = next > pool->s.reconnect_max_ms ? pool->s.reconnect_max_ms : next;
	}
	/* Jitter of up to a quarter keeps reconnects of many daemons apart. */
	backoff_ms += rand() % (backoff_ms / 4 + 1);
	struct timeval tv = { backoff_ms / 1000, (backoff_ms % 1000) * 1000 };
	evtimer_add(c->backoff, &tv);

	if (job)
		job_answer_unavailable(pool, job, "connection to the database lost");
	if (pool->up == 0)
		queue_fail_all(pool, "database unavailable");
}

static int pgc_flush(struct pgc *c)
{
	int rc = PQflush(c->conn);
	if (rc < 0)
		return -1;
	/* While output is pending, also read: the server may block on us. */
	pgc_arm(c, rc == 1 ? EV_READ | EV_WRITE : EV_READ);
	return 0;
}

static void pgc_send_next_prepare(struct pgc *c)
{
	const struct db_statement *st = &db_statements[c->prepare_next];
	if (!PQsendPrepare(c->conn, st->name, st->sql, st->nparams, NULL) || pgc_flush(c) < 0)
		pgc_fail(c, PQerrorMessage(c->conn), 0);
}

static void pgc_became_ready(struct pgc *c)
{
	struct db_pool *pool = c->pool;
	c->state = PGC_IDLE;
	c->backoff_ms = BACKOFF_START_MS;
	pool->up++;
	pool->had_failure = 0;
	log_info("db connection %d ready (%d statements prepared)", c->index, DB_STMT_COUNT);
	pool_dispatch(pool);
}

/* The last step of setting a connection up, when the pool has a channel.
 * Listening on every connection (not one) means no single lost connection
 * silences the signal. */
static void pgc_listen(struct pgc *c)
{
	const char *channel = c->pool->s.listen_channel;
	if (!channel) {
		pgc_became_ready(c);
		return;
	}
	char *ident = PQescapeIdentifier(c->conn, channel, strlen(channel));
	char sql[128];
	snprintf(sql, sizeof sql, "LISTEN %s", ident ? ident : "\"\"");
	PQfreemem(ident);
	c->state = PGC_LISTENING;
	if (!PQsendQuery(c->conn, sql) || pgc_flush(c) < 0)
		pgc_fail(c, PQerrorMessage(c->conn), 0);
}

static void pgc_send_job(struct pgc *c, struct db_job *job)
{
	const struct db_statement *st = &db_statements[job->stmt];
	c->job = job;
	c->state = PGC_BUSY;
	c->pool->queries_total++;
	if (!PQsendQueryPrepared(c->conn, st->name, job->nparams, job->values, NULL, NULL, 0) ||
	    pgc_flush(c) < 0) {
		/* Nothing reached the server: the job can safely wait for another. */
		c->job = NULL;
		queue_push_front(c->pool, job);
		pgc_fail(c, PQerrorMessage(c->conn), 0);
	}
}

static void pgc_finish_job(struct pgc *c)
{
	struct db_job *job = c->job;
	PGresult *res = c->result;
	c->job = NULL;
	c->result = NULL;
	c->state = PGC_IDLE;

	struct db_result r = { .res = res, .column = "" };
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		r.outcome = DB_OK;
	} else {
		const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		const char *col = res ? PQresultErrorField(res, PG_DIAG_COLUMN_NAME) : NULL;
		const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
		r.outcome = DB_FAILED;
		r.sqlstate = state ? state : "XX000";
		r.message = msg ? msg : "statement failed";
		r.column = col ? col : "";
		/* Shutdown and read-only errors mean the server is going away
		 * or is a standby now: treat as unavailable and reconnect. */
		if (strcmp(r.sqlstate, "57P01") == 0 || strcmp(r.sqlstate, "25006") == 0 ||
		    strcmp(r.sqlstate, "57P02") == 0 || strcmp(r.sqlstate, "57P03") == 0) {
			char why[256];
			snprintf(why, sizeof why, "server shutting down or read-only: %s", r.message);
			if (res)
				PQclear(res);
			job_answer_unavailable(c->pool, job, "database is shutting down or read-only");
			pgc_fail(c, why, 0);
			return;
		}
	}
	job->done(job->arg, &r);
	free(job);
	if (res)
		PQclear(res);
}

static void pgc_check_schema(struct pgc *c)
{
	struct db_pool *pool = c->pool;
	PGresult *res = c->result;
	c->result = NULL;
	int version = -1;
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		version = atoi(PQgetvalue(res, 0, 0));
	else if (res && strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE) ?: "", "42P01") == 0)
		version = 0; /* no schema_migrations table yet */
	if (res)
		PQclear(res);
	if (version != pool->s.schema_version) {
		char msg[200];
		if (version < 0)
			snprintf(msg, sizeof msg, "cannot read the schema version");
		else
			snprintf(msg, sizeof msg,
				 "database schema is at version %d, this daemon needs %d "
				 "(run referrald --migrate)", version, pool->s.schema_version);
		pgc_fail(c, msg, pool->s.reconnect_max_ms);
		return;
	}
	c->state = PGC_PREPARING;
	c->prepare_next = 0;
	pgc_send_next_prepare(c);
}

/* A command finished (PQgetResult returned NULL): move on by state. */
static void pgc_command_done(struct pgc *c)
{
	switch (c->state) {
	case PGC_CHECKING:
		pgc_check_schema(c);
		break;
	case PGC_PREPARING: {
		PGresult *res = c->result;
		c->result = NULL;
		int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
		if (!ok) {
			char msg[256];
			snprintf(msg, sizeof msg, "preparing %s failed: %s",
				 db_statements[c->prepare_next].name,
				 res ? PQresultErrorMessage(res) : "no result");
			if (res)
				PQclear(res);
			pgc_fail(c, msg, c->pool->s.reconnect_max_ms);
			return;
		}
		PQclear(res);
		if (++c->prepare_next < DB_STMT_COUNT)
			pgc_send_next_prepare(c);
		else
			pgc_listen(c);
		break;
	}
	case PGC_LISTENING: {
		PGresult *res = c->result;
		c->result = NULL;
		int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
		if (res)
			PQclear(res);
		if (!ok) {
			pgc_fail(c, "LISTEN failed", c->pool->s.reconnect_max_ms);
			return;
		}
		pgc_became_ready(c);
		break;
	}
	case PGC_BUSY:
		pgc_finish_job(c);
		if (c->state == PGC_IDLE)
			pool_dispatch(c->pool);
		break;
	default:
		break;
	}
}

/* Hands on every notification that arrived with the input just read. */
static void pgc_notifications(struct pgc *c)
{
	PGnotify *n;
	while (c->conn && (n = PQnotifies(c->conn)) != NULL) {
		if (c->pool->s.notify)
			c->pool->s.notify(c->pool->s.notify_arg, n->extra);
		PQfreemem(n);
	}
}

static void pgc_read(struct pgc *c)
{
	if (!PQconsumeInput(c->conn)) {
		pgc_fail(c, PQerrorMessage(c->conn), 0);
		return;
	}
	pgc_notifications(c);
	while (c->conn && !PQisBusy(c->conn)) {
		if (c->state == PGC_IDLE || c->state == PGC_WAITING)
			break; /* nothing in progress: input was a notice or EOF */
		PGresult *res = PQgetResult(c->conn);
		if (res == NULL) {
			pgc_command_done(c);
			continue;
		}
		/* Keep the first result, unless a later one is an error: an error
		 * after the rows (at COMMIT, when the Sync is processed) means the
		 * transaction did not commit, and must not be answered as done. */
		if (c->result == NULL) {
			c->result = res;
		} else if (PQresultStatus(res) == PGRES_FATAL_ERROR &&
			   PQresultStatus(c->result) != PGRES_FATAL_ERROR) {
			PQclear(c->result);
			c->result = res;
		} else {
			PQclear(res);
		}
	}
	if (c->conn && PQstatus(c->conn) == CONNECTION_BAD)
		pgc_fail(c, PQerrorMessage(c->conn), 0);
}

static void pgc_connected(struct pgc *c)
{
	PQsetnonblocking(c->conn, 1);
	c->state = PGC_CHECKING;
	if (!PQsendQuery(c->conn, "SELECT coalesce(max(version), 0) FROM schema_migrations") ||
	    pgc_flush(c) < 0)
		pgc_fail(c, PQerrorMessage(c->conn), 0);
}

static void pgc_poll_connect(struct pgc *c)
{
	PostgresPollingStatusType st = PQconnectPoll(c->conn);
	/* A failed attempt on one host of a multi-host DSN closes its socket and
	 * opens the next host's, which usually gets the same fd number. The
	 * kernel forgot the closed one (epoll drops closed files), so an event
	 * kept for "the same fd" would never fire again: always watch afresh. */
	pgc_disarm(c);
	switch (st) {
	case PGRES_POLLING_READING:
		pgc_arm(c, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		pgc_arm(c, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		pgc_connected(c);
		break;
	default:
		pgc_fail(c, PQerrorMessage(c->conn), 0);
		break;
	}
}

static void pgc_io_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct pgc *c = arg;
	if (c->state == PGC_CONNECTING) {
		pgc_poll_connect(c);
		return;
	}
	if ((what & EV_WRITE) && pgc_flush(c) < 0) {
		pgc_fail(c, PQerrorMessage(c->conn), 0);
		return;
	}
	if (what & EV_READ)
		pgc_read(c);
}

static void notice_cb(void *arg, const PGresult *res)
{
	struct pgc *c = arg;
	log_info("db connection %d notice: %s", c->index,
		 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?: "");
}

static void pgc_start(struct pgc *c)
{
	struct db_pool *pool = c->pool;
	/* Our defaults first; the operator's DSN (expanded from dbname) last,
	 * so that it wins. */
	const char *keys[] = { "application_name", "connect_timeout", "keepalives_idle",
			       "keepalives_interval", "keepalives_count", "options",
			       "dbname", NULL };
	const char *vals[] = { "referrald", "5", "10", "5", "3", pool->options, pool->dsn, NULL };
	c->conn = PQconnectStartParams(keys, vals, 1);
	pool->reconnects_total++;
	if (c->conn == NULL) {
		pgc_fail(c, "out of memory", 0);
		return;
	}
	if (PQstatus(c->conn) == CONNECTION_BAD) {
		pgc_fail(c, PQerrorMessage(c->conn), 0);
		return;
	}
	PQsetNoticeReceiver(c->conn, notice_cb, c);
	c->state = PGC_CONNECTING;
	pgc_arm(c, EV_WRITE);
}

static void backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	pgc_start(arg);
}

/* ---- pool ------------------------------------------------------------------ */

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	pool_dispatch(arg);
}

static void pool_dispatch(struct db_pool *pool)
{
	for (int i = 0; i < pool->s.size && pool->queue_head; i++) {
		struct pgc *c = &pool->conns[i];
		if (c->state == PGC_IDLE)
			pgc_send_job(c, queue_pop(pool));
	}
}

struct db_pool *db_pool_new(struct event_base *base, const struct db_pool_settings *s)
{
	struct db_pool *pool = calloc(1, sizeof *pool);
	if (!pool)
		return NULL;
	pool->base = base;
	pool->s = *s;
	pool->dsn = strdup(s->dsn);
	pool->s.dsn = pool->dsn;
	snprintf(pool->options, sizeof pool->options, "-c statement_timeout=%d %s",
		 s->statement_timeout_ms, s->extra_options ? s->extra_options : "");
	pool->conns = calloc((size_t)s->size, sizeof *pool->conns);
	pool->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, pool);
	pool->kick = event_new(base, -1, 0, kick_cb, pool);
	if (!pool->dsn || !pool->conns || !pool->sweep || !pool->kick) {
		db_pool_free(pool);
		return NULL;
	}
	struct timeval tv = { 0, SWEEP_INTERVAL_MS * 1000 };
	event_add(pool->sweep, &tv);
	for (int i = 0; i < s->size; i++) {
		struct pgc *c = &pool->conns[i];
		c->pool = pool;
		c->index = i;
		c->backoff_ms = BACKOFF_START_MS;
		c->backoff = evtimer_new(base, backoff_cb, c);
		pgc_start(c);
	}
	return pool;
}

void db_pool_free(struct db_pool *pool)
{
	if (!pool)
		return;
	queue_fail_all(pool, "server shutting down");
	for (int i = 0; pool->conns && i < pool->s.size; i++) {
		struct pgc *c = &pool->conns[i];
		if (c->io)
			event_free(c->io);
		if (c->backoff)
			event_free(c->backoff);
		if (c->result)
			PQclear(c->result);
		if (c->conn)
			PQfinish(c->conn);
		if (c->job)
			job_answer_unavailable(pool, c->job, "server shutting down");
	}
	if (pool->sweep)
		event_free(pool->sweep);
	if (pool->kick)
		event_free(pool->kick);
	free(pool->conns);
	free(pool->dsn);
	free(pool);
}

void db_pool_set_limits(struct db_pool *pool, int queue_max, int queue_timeout_ms,
			int reconnect_max_ms)
{
	pool->s.queue_max = queue_max;
	pool->s.queue_timeout_ms = queue_timeout_ms;
	pool->s.reconnect_max_ms = reconnect_max_ms;
}

int db_exec(struct db_pool *pool, enum db_stmt stmt, int nparams,
	    const char *const *values, db_done_fn done, void *arg,
	    enum db_outcome *refused)
{
	if (pool->up == 0 && pool->had_failure) {
		*refused = DB_UNAVAILABLE;
		pool->failures_total++;
		return -1;
	}
	if (pool->queue_length >= (unsigned)pool->s.queue_max) {
		*refused = DB_OVERLOADED;
		return -1;
	}
	size_t arena = 0;
	for (int i = 0; i < nparams; i++)
		if (values[i])
			arena += strlen(values[i]) + 1;
	struct db_job *job = malloc(sizeof *job + arena);
	if (!job) {
		*refused = DB_OVERLOADED;
		return -1;
	}
	job->stmt = stmt;
	job->nparams = nparams;
	job->done = done;
	job->arg = arg;
	job->enqueued_ms = monotonic_ms();
	char *p = job->arena;
	for (int i = 0; i < nparams; i++) {
		if (!values[i]) {
			job->values[i] = NULL;
			continue;
		}
		size_t n = strlen(values[i]) + 1;
		memcpy(p, values[i], n);
		job->values[i] = p;
		p += n;
	}
	queue_push_back(pool, job);
	/* Dispatch from the loop, not from here: a send that fails would
	 * otherwise answer the job inside db_exec. */
	if (pool->up > 0)
		event_active(pool->kick, EV_TIMEOUT, 1);
	return 0;
}

void db_pool_get_stats(const struct db_pool *pool, struct db_pool_stats *out)
{
	memset(out, 0, sizeof *out);
	out->connections_total = (unsigned)pool->s.size;
	out->connections_up = pool->up;
	for (int i = 0; i < pool->s.size; i++)
		if (pool->conns[i].state == PGC_BUSY)
			out->busy++;
	out->queue_length = pool->queue_length;
	out->queries_total = pool->queries_total;
	out->failures_total = pool->failures_total;
	out->reconnects_total = pool->reconnects_total;
	snprintf(out->last_error, sizeof out->last_error, "%s", pool->last_error);
}

const char *db_pool_state_name(const struct db_pool *pool)
{
	if (pool->up == 0)
		return "down";
	return pool->up == (unsigned)pool->s.size ? "up" : "degraded";
}
