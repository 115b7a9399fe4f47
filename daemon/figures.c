/* figures.c: see figures.h. */
#include "figures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "db_params.h"
#include "db_row.h"
#include "figures_metrics.h"
#include "request.h"
#include "server.h"

/* Read-only sessions: a figure query can neither write nor take a row lock
 * (SELECT ... FOR UPDATE is refused), so it never makes a booking wait. A
 * year's referrals sort in memory with 32 MB (4 MB spills to disk). */
#define FIGURES_SESSION_OPTIONS "-c default_transaction_read_only=on -c work_mem=32MB"

int figures_start(struct server *srv)
{
	/* With a replica, the figures read it: they are read-only, and a year
	 * of a county is the heaviest read there is (docs/scaling.md). */
	const char *dsn = srv->cfg.db_replica_dsn && srv->cfg.db_replica_dsn[0]
				  ? srv->cfg.db_replica_dsn : srv->cfg.db_dsn;
	struct db_pool_settings ps = {
		.dsn = dsn,
		.size = srv->cfg.figures_pool_size,
		.queue_max = srv->cfg.figures_queue_max,
		.queue_timeout_ms = srv->cfg.db_queue_timeout_ms,
		.reconnect_max_ms = srv->cfg.db_reconnect_max_ms,
		.statement_timeout_ms = srv->cfg.figures_statement_timeout_ms,
		.extra_options = FIGURES_SESSION_OPTIONS,
		.schema_version = srv->schema_version,
	};
	srv->figures_db = db_pool_new(srv->base, &ps);
	if (!srv->figures_db)
		return -1;
	srv->figures_metrics = figures_metrics_start(srv, srv->cfg.figures_metrics_interval_ms);
	return srv->figures_metrics ? 0 : -1;
}

void figures_stop(struct server *srv)
{
	figures_metrics_free(srv->figures_metrics);
	srv->figures_metrics = NULL;
	db_pool_free(srv->figures_db);
	srv->figures_db = NULL;
}

void figures_apply_settings(struct server *srv)
{
	db_pool_set_limits(srv->figures_db, srv->cfg.figures_queue_max, srv->cfg.db_queue_timeout_ms,
			   srv->cfg.db_reconnect_max_ms);
	figures_metrics_set_interval(srv->figures_metrics, srv->cfg.figures_metrics_interval_ms);
}

void request_figures(struct request *req, int stmt, const struct db_params *p,
		     void (*done)(void *req, const struct db_result *r))
{
	enum db_outcome refused;
	if (db_exec(req->srv->figures_db, (enum db_stmt)stmt, p->n, p->v, done, req, &refused) < 0) {
		struct db_result r = { .outcome = refused, .column = "" };
		request_fail_db(req, &r);
	}
}

int figures_window(struct request *req, int64_t since, int64_t until, int64_t *out_since,
		   int64_t *out_until)
{
	int64_t now = (int64_t)time(NULL);
	*out_since = since ? since : now - FIGURES_WINDOW_DEFAULT_S;
	*out_until = until ? until : now + FIGURES_WINDOW_DEFAULT_S;
	if (*out_since < 0) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "since",
			     "since is a Unix time, 0 or more");
		return -1;
	}
	if (*out_until <= *out_since) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "until",
			     "the window must end after it starts (since %lld, until %lld)",
			     (long long)*out_since, (long long)*out_until);
		return -1;
	}
	if (*out_until - *out_since > FIGURES_WINDOW_MAX_S) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "since",
			     "a window is at most 366 days long");
		return -1;
	}
	return 0;
}

const char *figures_institution(struct request *req, const char *asked)
{
	const char *scope = request_scope(req);
	if (scope[0] == '\0')
		return asked;
	if (asked[0] && strcmp(asked, scope) != 0) {
		request_fail(req, REFERRAL__ERROR_CODE__PERMISSION_DENIED, "institution_id",
			     "a terminal of %s sees the figures of %s only", scope, scope);
		return NULL;
	}
	return scope;
}

double figures_ratio(double part, double whole)
{
	return whole > 0 ? part / whole : 0;
}

void figures_from_row(Referral__Figures *f, const PGresult *res, int row, int c)
{
	referral__figures__init(f);
	f->institution_id = db_str(res, row, c++);
	f->floor_pct = (uint32_t)db_i64(res, row, c++);
	f->sessions_published = (uint32_t)db_i64(res, row, c++);
	f->sessions_cancelled = (uint32_t)db_i64(res, row, c++);
	f->capacity_units = (uint64_t)db_i64(res, row, c++);
	f->published_units = (uint64_t)db_i64(res, row, c++);
	f->reserved_published = (uint64_t)db_i64(res, row, c++);
	f->sessions_below_floor = (uint32_t)db_i64(res, row, c++);
	f->reserved_pool = (uint64_t)db_i64(res, row, c++);
	f->reserved_booked = (uint64_t)db_i64(res, row, c++);
	f->public_pool = (uint64_t)db_i64(res, row, c++);
	f->public_booked = (uint64_t)db_i64(res, row, c++);
	f->released_units = (uint64_t)db_i64(res, row, c++);
	f->sessions_released = (uint32_t)db_i64(res, row, c++);
	f->emergency_bookings = (uint64_t)db_i64(res, row, c++);
	f->up_referrals = (uint32_t)db_i64(res, row, c++);
	f->down_referrals = (uint32_t)db_i64(res, row, c++);
	f->up_accepted = (uint32_t)db_i64(res, row, c++);
	f->up_rejected = (uint32_t)db_i64(res, row, c++);
	f->up_redirected = (uint32_t)db_i64(res, row, c++);
	f->up_no_show = (uint32_t)db_i64(res, row, c++);
	f->accept_median_seconds = strtod(db_str(res, row, c++), NULL);
	f->accept_p90_seconds = strtod(db_str(res, row, c++), NULL);
	f->waiting_now = (uint32_t)db_i64(res, row, c++);
	f->escalated_waiting_now = (uint32_t)db_i64(res, row, c++);
	f->follow_ups_overdue_now = (uint32_t)db_i64(res, row, c++);
	f->deductible_decisions = (uint32_t)db_i64(res, row, c++);
	f->deductible_fen_waived = db_i64(res, row, c++);

	f->reserved_share = figures_ratio((double)f->reserved_published, (double)f->published_units);
	f->reserved_utilisation = figures_ratio((double)f->reserved_booked, (double)f->reserved_pool);
	f->public_utilisation = figures_ratio((double)f->public_booked, (double)f->public_pool);
	f->down_up_ratio = figures_ratio(f->down_referrals, f->up_referrals);
	f->acceptance_rate = figures_ratio(f->up_accepted, f->up_referrals);
	f->rejection_rate = figures_ratio(f->up_rejected, f->up_referrals);
	f->redirect_rate = figures_ratio(f->up_redirected, f->up_referrals);
	f->no_show_rate = figures_ratio(f->up_no_show, f->up_accepted);
}
