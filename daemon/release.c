/* release.c: see release.h. */
#include "release.h"

#include <stdlib.h>

#include <event2/event.h>

#include "db.h"
#include "db_params.h"
#include "log.h"
#include "server.h"

/* Rows handled per statement; a full batch asks again at once. */
#define TIMER_BATCH 500

/* The timer's work, in order, each one statement that is safe to run from
 * any number of daemons at once (see the SQL functions). */
static void log_release(const PGresult *res, int row)
{
	log_info("released %s reserved unit(s) of session %s/%s to the public pool",
		 PQgetvalue(res, row, 2), PQgetvalue(res, row, 0), PQgetvalue(res, row, 1));
}

static void log_housekeeping(const PGresult *res, int row)
{
	log_info("referral %s/%s: %s", PQgetvalue(res, row, 0), PQgetvalue(res, row, 1),
		 PQgetvalue(res, row, 2));
}

static const struct {
	const char *name;
	enum db_stmt stmt;
	void (*log_row)(const PGresult *res, int row);
} steps[] = {
	{ "release", DB_STMT_RELEASE_DUE, log_release },
	{ "referral housekeeping", DB_STMT_REFERRAL_HOUSEKEEPING, log_housekeeping },
};
#define N_STEPS (sizeof steps / sizeof steps[0])

struct release_timer {
	struct server *srv;
	struct event *ev;
	int interval_ms;
	unsigned step;      /* the step to run next */
	int running;        /* a step's statement is in flight */
	int stopping;
	unsigned long long released_sessions;
};

static void schedule(struct release_timer *t, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(t->ev, &tv);
}

/* After a step: a full batch runs it again at once, otherwise the next step
 * runs at once, and after the last one the timer waits its interval. */
static void step_done(void *arg, const struct db_result *r)
{
	struct release_timer *t = arg;
	t->running = 0;
	if (t->stopping) {
		free(t);
		return;
	}
	int n = 0;
	if (r->outcome == DB_OK) {
		n = PQntuples(r->res);
		for (int i = 0; i < n; i++)
			steps[t->step].log_row(r->res, i);
		if (t->step == 0)
			t->released_sessions += (unsigned long long)n;
	} else if (r->outcome == DB_FAILED) {
		log_error("%s: %s: %s", steps[t->step].name, r->sqlstate, r->message);
	}
	if (n == TIMER_BATCH) {
		schedule(t, 0);
		return;
	}
	t->step = (t->step + 1) % N_STEPS;
	schedule(t, t->step == 0 ? t->interval_ms : 0);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct release_timer *t = arg;
	if (t->running || t->srv->draining)
		return;
	struct db_params q = { 0 };
	param_i64(&q, TIMER_BATCH);
	enum db_outcome refused;
	if (db_exec(t->srv->db, steps[t->step].stmt, q.n, q.v, step_done, t, &refused) < 0) {
		t->step = 0;
		schedule(t, t->interval_ms);
		return;
	}
	t->running = 1;
}

struct release_timer *release_timer_start(struct server *srv, int interval_ms)
{
	struct release_timer *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->srv = srv;
	t->interval_ms = interval_ms;
	t->ev = evtimer_new(srv->base, tick, t);
	if (!t->ev) {
		free(t);
		return NULL;
	}
	schedule(t, 0);
	return t;
}

void release_timer_set_interval(struct release_timer *t, int interval_ms)
{
	t->interval_ms = interval_ms;
}

void release_timer_free(struct release_timer *t)
{
	if (!t)
		return;
	event_free(t->ev);
	/* A call in flight still holds t: its callback frees it. */
	if (t->running)
		t->stopping = 1;
	else
		free(t);
}
