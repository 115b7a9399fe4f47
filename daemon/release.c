/* release.c: see release.h. */
#include "release.h"

#include <stdlib.h>

#include <event2/event.h>

#include "db.h"
#include "db_params.h"
#include "log.h"
#include "server.h"

/* Sessions released per statement; a full batch asks again at once. */
#define RELEASE_BATCH 500

struct release_timer {
	struct server *srv;
	struct event *ev;
	int interval_ms;
	int running;        /* a release_due() call is in flight */
	int stopping;
	unsigned long long released_sessions;
};

static void schedule(struct release_timer *t, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(t->ev, &tv);
}

static void released(void *arg, const struct db_result *r)
{
	struct release_timer *t = arg;
	t->running = 0;
	if (t->stopping) {
		free(t);
		return;
	}
	if (r->outcome != DB_OK) {
		if (r->outcome == DB_FAILED)
			log_error("release: %s: %s", r->sqlstate, r->message);
		schedule(t, t->interval_ms);
		return;
	}
	int n = PQntuples(r->res);
	for (int i = 0; i < n; i++)
		log_info("released %s reserved unit(s) of session %s/%s to the public pool",
			 PQgetvalue(r->res, i, 2), PQgetvalue(r->res, i, 0), PQgetvalue(r->res, i, 1));
	t->released_sessions += (unsigned long long)n;
	schedule(t, n == RELEASE_BATCH ? 0 : t->interval_ms);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct release_timer *t = arg;
	if (t->running || t->srv->draining)
		return;
	struct db_params q = { 0 };
	param_i64(&q, RELEASE_BATCH);
	enum db_outcome refused;
	if (db_exec(t->srv->db, DB_STMT_RELEASE_DUE, q.n, q.v, released, t, &refused) < 0) {
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
