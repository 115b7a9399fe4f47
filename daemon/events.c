/* events.c: see events.h. */
#include "events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "db.h"
#include "db_params.h"
#include "db_row.h"
#include "dispatch.h"
#include "log.h"
#include "server.h"

/* Events read per statement; a full batch reads again at once. */
#define EVENTS_BATCH 500

/* The live feed of one community with subscribers on this daemon. */
struct feed {
	struct feed *next;
	struct event_hub *hub;
	char community[64];
	uint64_t seq;      /* read up to here, and handed to every caught-up subscriber */
	int known;         /* seq is set (by the first subscriber's backlog read) */
	int fetching;
	int again;         /* a signal came while reading */
	unsigned subscribers;
};

struct event_hub {
	struct server *srv;
	struct feed *feeds;
	struct event *poll;
	int poll_ms;
};

static struct feed *feed_find(struct event_hub *hub, const char *community)
{
	for (struct feed *f = hub->feeds; f; f = f->next)
		if (strcmp(f->community, community) == 0)
			return f;
	return NULL;
}

static void feed_unlink(struct feed *f)
{
	struct feed **p = &f->hub->feeds;
	while (*p != f)
		p = &(*p)->next;
	*p = f->next;
	free(f);
}

/* ---- one row, one push ------------------------------------------------------ */

static size_t output_bytes(const struct conn *c)
{
	return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

static int row_has_event(const PGresult *res, int row)
{
	return !PQgetisnull(res, row, 1);
}

static uint64_t row_seq(const PGresult *res, int row, int col)
{
	return strtoull(PQgetvalue(res, row, col), NULL, 10);
}

/* Administrators and monitoring see the whole community; everyone else the
 * events of referrals from or to their institution. */
static int visible(const struct conn *c, const PGresult *res, int row)
{
	Referral__Role role = c->ident.role;
	if (role == REFERRAL__ROLE__ROLE_ADMIN || role == REFERRAL__ROLE__ROLE_MONITOR)
		return 1;
	return strcmp(db_str(res, row, 6), c->ident.institution_id) == 0 ||
	       strcmp(db_str(res, row, 7), c->ident.institution_id) == 0;
}

/* Sends the event in `row`. A live subscriber that lets pushes pile up is
 * cut off (it resumes from its last seq when it reconnects); the backlog
 * instead paces itself on the output (see backlog_next). */
static void push(struct conn *c, const PGresult *res, int row, int live)
{
	Referral__Event ev = REFERRAL__EVENT__INIT;
	ev.seq = row_seq(res, row, 1);
	ev.at = db_i64(res, row, 2);
	ev.kind = db_str(res, row, 3);
	ev.referral_id = db_str(res, row, 4);
	ev.booking_id = db_str(res, row, 5);
	ev.from_institution = db_str(res, row, 6);
	ev.to_institution = db_str(res, row, 7);
	ev.state = db_str(res, row, 8);
	ev.detail = db_str(res, row, 9);
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.request_id = c->sub.request_id;
	resp.body_case = REFERRAL__RESPONSE__BODY_EVENT;
	resp.event = &ev;
	conn_send(c, &resp);
	c->srv->stats.events_pushed++;
	if (live && output_bytes(c) > (size_t)c->srv->cfg.max_output_bytes)
		conn_close(c, "event subscriber not reading", 0);
}

/* ---- a subscriber's backlog ----------------------------------------------------- */

static void backlog_done(void *arg, const struct db_result *r);

/* Reads the next page of c's backlog. The read holds the connection like a
 * request does, so it is not freed under the callback. */
static int backlog_fetch(struct conn *c, enum db_outcome *refused)
{
	struct db_params q = { 0 };
	param_str(&q, c->ident.community_id);
	Referral__Role role = c->ident.role;
	param_str(&q, role == REFERRAL__ROLE__ROLE_ADMIN || role == REFERRAL__ROLE__ROLE_MONITOR
			      ? "" : c->ident.institution_id);
	param_i64(&q, (int64_t)c->sub.cursor);
	param_i64(&q, EVENTS_BATCH);
	if (db_exec(c->srv->db, DB_STMT_EVENTS_SINCE, q.n, q.v, backlog_done, c, refused) < 0)
		return -1;
	c->sub.fetching = 1;
	c->inflight++;
	c->srv->inflight++;
	return 0;
}

/* Reads the next backlog page, unless the client has not yet taken half of
 * what it was sent: then the write callback resumes (events_resume). A
 * refused read is retried by the poll. */
static void backlog_next(struct conn *c)
{
	if (output_bytes(c) > (size_t)c->srv->cfg.max_output_bytes / 2) {
		c->sub.paused = 1;
		return;
	}
	enum db_outcome refused;
	backlog_fetch(c, &refused);
}

void events_resume(struct conn *c)
{
	c->sub.paused = 0;
	if (c->sub.active && c->sub.catching_up && !c->sub.fetching && c->state != CONN_CLOSING)
		backlog_next(c);
}

static void answer_subscribe(struct conn *c, uint64_t last_seq)
{
	struct request *req = c->sub.pending;
	c->sub.pending = NULL;
	Referral__Subscribed s = REFERRAL__SUBSCRIBED__INIT;
	s.last_seq = last_seq;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_SUBSCRIBED;
	resp.subscribed = &s;
	request_reply(req, &resp);
}

/* The backlog is read to last_seq: join the live feed, unless the feed has
 * moved past us meanwhile (then read on). */
static void backlog_caught_up(struct conn *c, uint64_t last_seq)
{
	if (c->sub.cursor < last_seq)
		c->sub.cursor = last_seq;
	struct feed *f = feed_find(c->srv->events, c->ident.community_id);
	if (f && f->known && f->seq > c->sub.cursor) {
		backlog_next(c);
		return;
	}
	c->sub.catching_up = 0;
	if (f && !f->known) {
		f->seq = c->sub.cursor;
		f->known = 1;
	}
}

static void backlog_done(void *arg, const struct db_result *r)
{
	struct conn *c = arg;
	c->sub.fetching = 0;
	if (c->state == CONN_CLOSING || !c->sub.active) {
		if (c->sub.pending) {
			struct request *req = c->sub.pending;
			c->sub.pending = NULL;
			request_fail(req, REFERRAL__ERROR_CODE__UNAVAILABLE, NULL, "connection closing");
		}
	} else if (r->outcome != DB_OK) {
		if (c->sub.pending) {
			struct request *req = c->sub.pending;
			c->sub.pending = NULL;
			events_unsubscribe(c);
			request_fail_db(req, r);
		} else {
			log_warn("events: backlog of %s: %s", c->ident.terminal_id,
				 r->message ? r->message : "failed");
		}
	} else {
		int n = PQntuples(r->res);
		uint64_t last = row_seq(r->res, 0, 0);
		if (c->sub.from_now) {
			/* Read with a cursor past everything: no rows, and "now". */
			c->sub.from_now = 0;
			c->sub.cursor = last;
		}
		if (c->sub.pending)
			answer_subscribe(c, last);
		int i;
		for (i = 0; i < n && row_has_event(r->res, i) && c->state != CONN_CLOSING; i++) {
			push(c, r->res, i, 0);
			c->sub.cursor = row_seq(r->res, i, 1);
		}
		if (c->state != CONN_CLOSING) {
			if (i == EVENTS_BATCH)
				backlog_next(c);
			else
				backlog_caught_up(c, last);
		}
	}
	conn_request_done(c);
}

/* ---- the live feed of a community ------------------------------------------------ */

static void feed_done(void *arg, const struct db_result *r);

static void feed_fetch(struct feed *f)
{
	if (f->fetching) {
		f->again = 1;
		return;
	}
	if (!f->known)
		return; /* the first backlog read sets the starting point */
	struct db_params q = { 0 };
	param_str(&q, f->community);
	param_str(&q, "");
	param_i64(&q, (int64_t)f->seq);
	param_i64(&q, EVENTS_BATCH);
	enum db_outcome refused;
	f->again = 0;
	if (db_exec(f->hub->srv->db, DB_STMT_EVENTS_SINCE, q.n, q.v, feed_done, f, &refused) == 0)
		f->fetching = 1;
}

/* Hands the event in `row` to every caught-up subscriber of the community
 * that has not had it. */
static void feed_deliver(struct feed *f, const PGresult *res, int row)
{
	uint64_t seq = row_seq(res, row, 1);
	struct conn *next;
	for (struct conn *c = f->hub->srv->conns; c; c = next) {
		next = c->next; /* push may close (and unlink) c */
		if (!c->sub.active || c->sub.catching_up || c->sub.cursor >= seq ||
		    strcmp(c->ident.community_id, f->community) != 0)
			continue;
		c->sub.cursor = seq;
		if (visible(c, res, row))
			push(c, res, row, 1);
	}
}

static void feed_done(void *arg, const struct db_result *r)
{
	struct feed *f = arg;
	f->fetching = 0;
	if (f->subscribers == 0) {
		feed_unlink(f);
		return;
	}
	if (r->outcome != DB_OK)
		return; /* the poll tries again */
	int n = PQntuples(r->res), i;
	for (i = 0; i < n && row_has_event(r->res, i); i++)
		feed_deliver(f, r->res, i);
	uint64_t upto = i == EVENTS_BATCH ? row_seq(r->res, i - 1, 1) : row_seq(r->res, 0, 0);
	if (upto > f->seq)
		f->seq = upto;
	/* Events up to f->seq that were not for them: caught-up subscribers
	 * are past them too. */
	for (struct conn *c = f->hub->srv->conns; c; c = c->next)
		if (c->sub.active && !c->sub.catching_up && c->sub.cursor < f->seq &&
		    strcmp(c->ident.community_id, f->community) == 0)
			c->sub.cursor = f->seq;
	if (i == EVENTS_BATCH || f->again)
		feed_fetch(f);
}

void event_hub_notify(struct event_hub *hub, const char *community)
{
	struct feed *f = feed_find(hub, community);
	if (f)
		feed_fetch(f);
}

/* Covers what a lost signal would miss, and retries failed reads. */
static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct event_hub *hub = arg;
	for (struct feed *f = hub->feeds; f; f = f->next)
		feed_fetch(f);
	for (struct conn *c = hub->srv->conns; c; c = c->next) {
		enum db_outcome refused;
		if (c->sub.active && c->sub.catching_up && !c->sub.fetching && !c->sub.pending &&
		    !c->sub.paused)
			backlog_fetch(c, &refused);
	}
}

/* ---- subscribing ----------------------------------------------------------------- */

void handle_subscribe(struct request *req)
{
	struct conn *c = req->conn;
	struct event_hub *hub = req->srv->events;
	if (c->sub.active) {
		request_fail(req, REFERRAL__ERROR_CODE__FAILED_PRECONDITION, NULL,
			     "this connection is already subscribed");
		return;
	}
	struct feed *f = feed_find(hub, c->ident.community_id);
	if (!f) {
		f = calloc(1, sizeof *f);
		if (!f) {
			request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "out of memory");
			return;
		}
		f->hub = hub;
		snprintf(f->community, sizeof f->community, "%s", c->ident.community_id);
		f->next = hub->feeds;
		hub->feeds = f;
	}
	f->subscribers++;
	c->sub = (struct conn_subscription){
		.active = 1,
		.request_id = req->id,
		.cursor = req->msg->subscribe->from_now ? (uint64_t)INT64_MAX
							 : req->msg->subscribe->after_seq,
		.from_now = req->msg->subscribe->from_now,
		.catching_up = 1,
		.pending = req,
	};
	enum db_outcome refused;
	if (backlog_fetch(c, &refused) < 0) {
		c->sub.pending = NULL;
		events_unsubscribe(c);
		request_fail(req, refused == DB_OVERLOADED ? REFERRAL__ERROR_CODE__OVERLOADED
							   : REFERRAL__ERROR_CODE__UNAVAILABLE,
			     NULL, "database unavailable");
	}
}

void events_unsubscribe(struct conn *c)
{
	if (!c->sub.active)
		return;
	c->sub.active = 0;
	struct feed *f = feed_find(c->srv->events, c->ident.community_id);
	if (f && --f->subscribers == 0 && !f->fetching)
		feed_unlink(f);
}

/* ---- the hub ------------------------------------------------------------------------ */

struct event_hub *event_hub_new(struct server *srv, int poll_ms)
{
	struct event_hub *hub = calloc(1, sizeof *hub);
	if (!hub)
		return NULL;
	hub->srv = srv;
	hub->poll = event_new(srv->base, -1, EV_PERSIST, poll_cb, hub);
	if (!hub->poll) {
		free(hub);
		return NULL;
	}
	event_hub_set_poll(hub, poll_ms);
	return hub;
}

void event_hub_set_poll(struct event_hub *hub, int poll_ms)
{
	hub->poll_ms = poll_ms;
	struct timeval tv = { poll_ms / 1000, (poll_ms % 1000) * 1000 };
	event_add(hub->poll, &tv);
}

/* After the pool is freed: no read is in flight any more. */
void event_hub_free(struct event_hub *hub)
{
	if (!hub)
		return;
	event_free(hub->poll);
	while (hub->feeds)
		feed_unlink(hub->feeds);
	free(hub);
}
