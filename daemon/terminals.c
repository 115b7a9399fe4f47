/* terminals.c: see terminals.h. */
#include "terminals.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "conn.h"
#include "db.h"
#include "db_params.h"
#include "db_row.h"
#include "log.h"
#include "server.h"

struct terminal_watch {
	struct server *srv;
	struct event *timer;
	int interval_ms;
	int running;             /* a sweep is waiting for the database */
	long long since_us;      /* the database's clock at the last sweep; 0: none yet */
};

void terminals_changed(struct server *srv, const char *community, const char *terminal,
		       long long changed_us)
{
	struct conn *c = srv->conns;
	while (c) {
		struct conn *next = c->next;   /* conn_close unlinks c */
		const struct identity *id = &c->ident;
		if (c->state == CONN_READY && id->credentials_us < changed_us &&
		    strcmp(id->terminal_id, terminal) == 0 && strcmp(id->community_id, community) == 0) {
			log_info("conn %llu (%s/%s): closed: the terminal was revoked or its token "
				 "rotated", (unsigned long long)c->serial, community, terminal);
			conn_close(c, "credentials revoked or rotated", 1);
		}
		c = next;
	}
}

int terminals_notified(struct server *srv, const char *payload)
{
	char community[64], terminal[64];
	long long us;
	if (strncmp(payload, "terminal ", 9) != 0)
		return 0;
	if (sscanf(payload + 9, "%63s %63s %lld", community, terminal, &us) == 3)
		terminals_changed(srv, community, terminal, us);
	return 1;
}

static void arm(struct terminal_watch *w)
{
	struct timeval tv = { w->interval_ms / 1000, (w->interval_ms % 1000) * 1000 };
	evtimer_add(w->timer, &tv);
}

static void swept(void *arg, const struct db_result *r)
{
	struct terminal_watch *w = arg;
	w->running = 0;
	if (r->outcome == DB_OK) {
		for (int i = 0; i < PQntuples(r->res); i++) {
			if (i == 0)
				w->since_us = db_i64(r->res, 0, 0);
			if (!PQgetisnull(r->res, i, 1))
				terminals_changed(w->srv, db_str(r->res, i, 1), db_str(r->res, i, 2),
						  db_i64(r->res, i, 3));
		}
	} /* else: the cursor stays, and the next sweep looks again */
	if (w->timer)
		arm(w);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct terminal_watch *w = arg;
	if (w->running || w->srv->draining) {
		arm(w);
		return;
	}
	struct db_params p = { 0 };
	if (w->since_us)
		param_i64(&p, w->since_us);
	else
		p.v[p.n++] = NULL;   /* the first sweep starts from the database's now */
	enum db_outcome refused;
	w->running = db_exec(w->srv->db, DB_STMT_TERMINAL_CHANGES, p.n, p.v, swept, w, &refused) == 0;
	if (!w->running)
		arm(w);
}

struct terminal_watch *terminal_watch_start(struct server *srv, int interval_ms)
{
	struct terminal_watch *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->srv = srv;
	w->interval_ms = interval_ms;
	w->timer = evtimer_new(srv->base, sweep_cb, w);
	if (!w->timer) {
		free(w);
		return NULL;
	}
	event_active(w->timer, EV_TIMEOUT, 1);
	return w;
}

void terminal_watch_set_interval(struct terminal_watch *w, int interval_ms)
{
	w->interval_ms = interval_ms;
}

void terminal_watch_free(struct terminal_watch *w)
{
	if (!w)
		return;
	/* Called after the pool is freed: a sweep that was waiting has been
	 * answered by then. */
	event_free(w->timer);
	free(w);
}
