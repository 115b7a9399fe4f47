/* figures_metrics.c: see figures_metrics.h. */
#include "figures_metrics.h"

#include <stdlib.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "db.h"
#include "db_params.h"
#include "db_row.h"
#include "figures.h"
#include "log.h"
#include "server.h"

struct figures_metrics {
	struct server *srv;
	struct event *timer;
	int interval_ms;
	int running;              /* a refresh's statement is in flight */
	int stopping;             /* freed when the statement in flight answers */
	int64_t since, until;     /* the window of the refresh in progress */
	struct timespec started;
	struct evbuffer *text;    /* the gauges of the last good refresh */
	struct evbuffer *next;    /* the refresh in progress */
	double refreshed_at;      /* Unix seconds of the last good refresh; 0: none */
	double duration_s;
	unsigned long long failures;
};

/* ---- the gauges, one table -------------------------------------------------------- */

#define GETTER(field) \
	static double get_##field(const Referral__Figures *f) { return (double)f->field; }
GETTER(sessions_published)
GETTER(sessions_cancelled)
GETTER(capacity_units)
GETTER(reserved_published)
GETTER(sessions_below_floor)
GETTER(reserved_booked)
GETTER(public_booked)
GETTER(emergency_bookings)
GETTER(released_units)
GETTER(sessions_released)
GETTER(waiting_now)
GETTER(escalated_waiting_now)
GETTER(follow_ups_overdue_now)
GETTER(deductible_decisions)
GETTER(deductible_fen_waived)
GETTER(accept_median_seconds)
GETTER(accept_p90_seconds)
#undef GETTER

/* Rows of one family follow each other; the first carries its help. */
static const struct {
	const char *family;
	const char *label;        /* extra label, "" for none */
	double (*get)(const Referral__Figures *f);
	const char *help;
} gauges[] = {
	{ "referrald_community_sessions", "status=\"open\"", get_sessions_published,
	  "Sessions starting in the window, by status." },
	{ "referrald_community_sessions", "status=\"cancelled\"", get_sessions_cancelled, NULL },
	{ "referrald_community_capacity_units", "", get_capacity_units,
	  "Capacity of the open sessions starting in the window, in units." },
	{ "referrald_community_reserved_published_units", "", get_reserved_published,
	  "Reserved units of those sessions, as published." },
	{ "referrald_community_sessions_below_floor", "", get_sessions_below_floor,
	  "Open sessions whose published reserved share is below the community's floor." },
	{ "referrald_community_bookings", "pool=\"reserved\"", get_reserved_booked,
	  "Live bookings of the open sessions starting in the window, by pool." },
	{ "referrald_community_bookings", "pool=\"public\"", get_public_booked, NULL },
	{ "referrald_community_bookings", "pool=\"emergency\"", get_emergency_bookings, NULL },
	{ "referrald_community_released_units", "", get_released_units,
	  "Units released from the reserved to the public pool, of those sessions." },
	{ "referrald_community_sessions_released", "", get_sessions_released,
	  "Sessions of the window whose reserved pool has been released." },
	{ "referrald_community_referrals_waiting", "", get_waiting_now,
	  "Referrals pending or waiting for a slot now." },
	{ "referrald_community_referrals_escalated", "", get_escalated_waiting_now,
	  "Of those, the ones flagged for escalation." },
	{ "referrald_community_follow_ups_overdue", "", get_follow_ups_overdue_now,
	  "Down-referrals whose follow-up is overdue now." },
	{ "referrald_community_deductible_decisions", "", get_deductible_decisions,
	  "Deductible decisions of the stays admitted in the window (reversed ones left out)." },
	{ "referrald_community_deductible_waived_fen", "", get_deductible_fen_waived,
	  "Deductible waived by those decisions, in fen." },
	{ "referrald_community_accept_median_seconds", "", get_accept_median_seconds,
	  "Median time from an up-referral made in the window to its acceptance." },
	{ "referrald_community_accept_p90_seconds", "", get_accept_p90_seconds,
	  "90th percentile of the same." },
};
#define N_GAUGES (sizeof gauges / sizeof gauges[0])

static void help_line(struct evbuffer *out, const char *family, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", family, help, family);
}

/* The FIGURES_TOTALS rows: the community id, then FIGURES_COLS. */
static void render_totals(struct evbuffer *out, const PGresult *res)
{
	int n = PQntuples(res);
	Referral__Figures *f = calloc((size_t)n + 1, sizeof *f);
	if (!f)
		return;
	for (int i = 0; i < n; i++)
		figures_from_row(&f[i], res, i, 1);
	for (size_t g = 0; g < N_GAUGES; g++) {
		if (gauges[g].help)
			help_line(out, gauges[g].family, gauges[g].help);
		for (int i = 0; i < n; i++)
			evbuffer_add_printf(out, "%s{community=\"%s\"%s%s} %.17g\n", gauges[g].family,
					    db_str(res, i, 0), gauges[g].label[0] ? "," : "",
					    gauges[g].label, gauges[g].get(&f[i]));
	}
	free(f);
}

static void render_states(struct evbuffer *out, const PGresult *res)
{
	help_line(out, "referrald_community_referrals",
		  "Referrals made in the window, by direction and the state they are in now.");
	for (int i = 0; i < PQntuples(res); i++)
		evbuffer_add_printf(out,
				    "referrald_community_referrals{community=\"%s\",direction=\"%s\","
				    "state=\"%s\"} %s\n",
				    db_str(res, i, 0), db_str(res, i, 1), db_str(res, i, 2),
				    db_str(res, i, 3));
}

/* ---- the refresh --------------------------------------------------------------------- */

static void schedule(struct figures_metrics *fm, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(fm->timer, &tv);
}

static void run(struct figures_metrics *fm, enum db_stmt stmt, db_done_fn done)
{
	struct db_params q = { 0 };
	enum db_outcome refused;
	param_i64(&q, fm->since);
	param_i64(&q, fm->until);
	fm->running = 1;
	if (db_exec(fm->srv->figures_db, stmt, q.n, q.v, done, fm, &refused) < 0) {
		struct db_result r = { .outcome = refused, .message = "refused by the figures pool",
				       .column = "" };
		done(fm, &r);
	}
}

/* After the last step, or a failure: keep what was good, wait the interval. */
static void finish(struct figures_metrics *fm, const struct db_result *failed)
{
	fm->running = 0;
	if (failed) {
		fm->failures++;
		log_warn("community gauges not refreshed: %s",
			 failed->message ? failed->message : "database error");
		evbuffer_drain(fm->next, evbuffer_get_length(fm->next));
	} else {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		fm->duration_s = (double)(now.tv_sec - fm->started.tv_sec) +
				 (double)(now.tv_nsec - fm->started.tv_nsec) / 1e9;
		fm->refreshed_at = (double)time(NULL);
		struct evbuffer *old = fm->text;
		fm->text = fm->next;
		fm->next = old;
		evbuffer_drain(fm->next, evbuffer_get_length(fm->next));
	}
	if (fm->interval_ms > 0)
		schedule(fm, fm->interval_ms);
}

/* A statement's answer. Returns 1 when the refresh is to go on. */
static int step_ok(struct figures_metrics *fm, const struct db_result *r)
{
	fm->running = 0;
	if (fm->stopping) {
		figures_metrics_free(fm);
		return 0;
	}
	if (r->outcome != DB_OK) {
		finish(fm, r);
		return 0;
	}
	return 1;
}

static void states_done(void *arg, const struct db_result *r)
{
	struct figures_metrics *fm = arg;
	if (!step_ok(fm, r))
		return;
	render_states(fm->next, r->res);
	finish(fm, NULL);
}

static void totals_done(void *arg, const struct db_result *r)
{
	struct figures_metrics *fm = arg;
	if (!step_ok(fm, r))
		return;
	render_totals(fm->next, r->res);
	run(fm, DB_STMT_FIGURES_REFERRAL_STATES, states_done);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct figures_metrics *fm = arg;
	if (fm->running || fm->interval_ms <= 0)
		return;
	int64_t now = (int64_t)time(NULL);
	fm->since = now - FIGURES_WINDOW_DEFAULT_S;
	fm->until = now + FIGURES_WINDOW_DEFAULT_S;
	clock_gettime(CLOCK_MONOTONIC, &fm->started);
	run(fm, DB_STMT_FIGURES_TOTALS, totals_done);
}

struct figures_metrics *figures_metrics_start(struct server *srv, int interval_ms)
{
	struct figures_metrics *fm = calloc(1, sizeof *fm);
	if (!fm)
		return NULL;
	fm->srv = srv;
	fm->interval_ms = interval_ms;
	fm->timer = evtimer_new(srv->base, timer_cb, fm);
	fm->text = evbuffer_new();
	fm->next = evbuffer_new();
	if (!fm->timer || !fm->text || !fm->next) {
		figures_metrics_free(fm);
		return NULL;
	}
	if (interval_ms > 0)
		schedule(fm, 0);
	return fm;
}

void figures_metrics_set_interval(struct figures_metrics *fm, int interval_ms)
{
	int was = fm->interval_ms;
	fm->interval_ms = interval_ms;
	if (interval_ms <= 0) {
		evtimer_del(fm->timer);
		evbuffer_drain(fm->text, evbuffer_get_length(fm->text));
		fm->refreshed_at = 0;
	} else if (interval_ms != was && !fm->running) {
		schedule(fm, was <= 0 ? 0 : interval_ms);
	}
}

void figures_metrics_free(struct figures_metrics *fm)
{
	if (!fm)
		return;
	if (fm->running) {
		fm->stopping = 1;
		return;
	}
	if (fm->timer)
		event_free(fm->timer);
	if (fm->text)
		evbuffer_free(fm->text);
	if (fm->next)
		evbuffer_free(fm->next);
	free(fm);
}

void figures_metrics_render(struct figures_metrics *fm, struct evbuffer *out)
{
	if (!fm || fm->interval_ms <= 0)
		return;
	evbuffer_add_printf(out,
			    "# HELP referrald_figures_refreshed_timestamp_seconds When the community "
			    "gauges were last computed, Unix seconds (0: not yet).\n"
			    "# TYPE referrald_figures_refreshed_timestamp_seconds gauge\n"
			    "referrald_figures_refreshed_timestamp_seconds %.0f\n"
			    "# HELP referrald_figures_refresh_duration_seconds How long that took.\n"
			    "# TYPE referrald_figures_refresh_duration_seconds gauge\n"
			    "referrald_figures_refresh_duration_seconds %.6f\n"
			    "# HELP referrald_figures_refresh_failures_total Refreshes of the "
			    "community gauges that failed (the last good ones stay).\n"
			    "# TYPE referrald_figures_refresh_failures_total counter\n"
			    "referrald_figures_refresh_failures_total %llu\n",
			    fm->refreshed_at, fm->duration_s, fm->failures);
	/* evbuffer_add_buffer would move the text out: copy it. */
	size_t len = evbuffer_get_length(fm->text);
	if (len)
		evbuffer_add(out, evbuffer_pullup(fm->text, -1), len);
}
