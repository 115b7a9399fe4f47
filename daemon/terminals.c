/* terminals.c: see terminals.h. */
#include "terminals.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "clock.h"
#include "conn.h"
#include "db.h"
#include "db_params.h"
#include "db_row.h"
#include "log.h"
#include "request.h"
#include "server.h"

#define TABLE_SIZE 1024

struct terminal_state {
	struct terminal_state *next;      /* in its hash chain */
	char community[64];
	char terminal[64];
	unsigned conns;
	double tokens;                    /* the bucket: requests that may come now */
	long long refilled_ns;
};

struct terminal_watch {
	struct server *srv;
	struct terminal_state *table[TABLE_SIZE];
	struct event *timer;
	int interval_ms;
	int running;             /* a sweep is waiting for the database */
	long long since_us;      /* the database's clock at the last sweep; 0: none yet */
};

/* ---- connections and token buckets ----------------------------------------------- */

static unsigned slot_of(const char *community, const char *terminal)
{
	uint32_t h = 2166136261u;   /* FNV-1a */
	for (const char *p = community; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (const char *p = terminal; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h % TABLE_SIZE;
}

/* Refills the bucket for the time since the last refill. */
static void refill(struct terminal_state *t, const struct config *cfg, long long now)
{
	double burst = cfg->terminal_rate_burst;
	t->tokens += (double)(now - t->refilled_ns) / 1e9 * cfg->terminal_rate_per_s;
	if (t->tokens > burst)
		t->tokens = burst;
	t->refilled_ns = now;
}

struct terminal_state *terminals_attach(struct server *srv, const struct identity *id)
{
	struct terminal_watch *w = srv->terminal_watch;
	unsigned slot = slot_of(id->community_id, id->terminal_id);
	struct terminal_state *t = w->table[slot];
	while (t && (strcmp(t->terminal, id->terminal_id) || strcmp(t->community, id->community_id)))
		t = t->next;
	if (!t) {
		t = calloc(1, sizeof *t);
		if (!t)
			return NULL;
		snprintf(t->community, sizeof t->community, "%s", id->community_id);
		snprintf(t->terminal, sizeof t->terminal, "%s", id->terminal_id);
		t->tokens = srv->cfg.terminal_rate_burst;
		t->refilled_ns = monotonic_ns();
		t->next = w->table[slot];
		w->table[slot] = t;
	}
	if (t->conns >= (unsigned)srv->cfg.max_connections_per_terminal)
		return NULL;
	t->conns++;
	return t;
}

void terminals_detach(struct server *srv, struct terminal_state *t)
{
	(void)srv;
	/* Kept while its bucket is not full again: reconnecting does not
	 * refill it. The sweep frees it later. */
	t->conns--;
}

/* Frees the states of terminals without connections whose bucket is full. */
static void evict_idle(struct terminal_watch *w)
{
	long long now = monotonic_ns();
	for (unsigned i = 0; i < TABLE_SIZE; i++) {
		struct terminal_state **p = &w->table[i];
		while (*p) {
			struct terminal_state *t = *p;
			refill(t, &w->srv->cfg, now);
			if (t->conns == 0 && t->tokens >= w->srv->cfg.terminal_rate_burst) {
				*p = t->next;
				free(t);
			} else {
				p = &t->next;
			}
		}
	}
}

int terminals_admit(struct request *req)
{
	const struct config *cfg = &req->srv->cfg;
	struct terminal_state *t = req->conn->term;
	if (!t || cfg->terminal_rate_per_s == 0)
		return 1;
	refill(t, cfg, monotonic_ns());
	if (t->tokens >= 1.0) {
		t->tokens -= 1.0;
		return 1;
	}
	/* Until one whole token has come back. */
	unsigned wait_ms = (unsigned)((1.0 - t->tokens) * 1000.0 / cfg->terminal_rate_per_s) + 1;
	req->srv->stats.requests_rate_limited++;
	Referral__Error err = REFERRAL__ERROR__INIT;
	err.code = REFERRAL__ERROR_CODE__OVERLOADED;
	err.message = "too many requests from this terminal";
	err.retry_after_ms = wait_ms;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.error = &err;
	request_reply(req, &resp);
	return 0;
}

/* ---- credential changes -------------------------------------------------------- */

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
	evict_idle(w);
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
	/* The first look after one interval: it starts from the database's
	 * now, less the overlap. */
	arm(w);
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
	/* Called after the pool is freed (a sweep that was waiting has been
	 * answered by then) and after every connection is. */
	for (unsigned i = 0; i < TABLE_SIZE; i++) {
		while (w->table[i]) {
			struct terminal_state *t = w->table[i];
			w->table[i] = t->next;
			free(t);
		}
	}
	event_free(w->timer);
	free(w);
}
