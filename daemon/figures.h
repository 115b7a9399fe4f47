/*
 * figures.h: the monitoring figures' own way to the database.
 *
 * The figures (stats, compliance, the community gauges of /metrics) are
 * computed by PostgreSQL from the whole window of sessions and referrals they
 * describe: heavier than any booking. They run on a pool of their own,
 * figures_pool_size connections (one by default) whose sessions are
 * read-only and have their own statement_timeout. So at most that many figure
 * queries run at once, the others wait in a short queue (figures_queue_max,
 * then OVERLOADED), none of them ever holds a connection that a booking
 * needs, and a read-only transaction cannot lock a row that a booking waits
 * for.
 */
#ifndef REFERRALD_FIGURES_H
#define REFERRALD_FIGURES_H

#include <stdint.h>

#include <libpq-fe.h>

#include "referral.pb-c.h"

struct server;
struct request;
struct db_params;
struct db_result;

/* The default window: the 30 days before now to the 30 days after; a window
 * may be at most 366 days long. */
#define FIGURES_WINDOW_DEFAULT_S (30 * 86400)
#define FIGURES_WINDOW_MAX_S (366 * 86400)

/* Opens the figures pool (srv->figures_db). -1 on failure. */
int figures_start(struct server *srv);
void figures_stop(struct server *srv);
/* Applies the live settings after a reload. */
void figures_apply_settings(struct server *srv);

/* Runs a statement for the request on the figures pool; like request_db(). */
void request_figures(struct request *req, int stmt, const struct db_params *p,
		     void (*done)(void *req, const struct db_result *r));

/* Resolves since/until (0: the default) against now. Returns 0, or -1 after
 * answering the request INVALID_ARGUMENT. */
int figures_window(struct request *req, int64_t since, int64_t until, int64_t *out_since,
		   int64_t *out_until);

/* The institution the figures are for: the caller's own for clinic, desk and
 * billing terminals (asking for another is PERMISSION_DENIED), the one asked
 * for (or "" for all) for monitor and admin terminals. Returns NULL after
 * answering the request. */
const char *figures_institution(struct request *req, const char *asked);

/* Fills f from the FIGURES_COLS of a row, starting at column `first`, and
 * computes its rates. Strings point into res. */
void figures_from_row(Referral__Figures *f, const PGresult *res, int row, int first);

/* part / whole, 0 when whole is 0. */
double figures_ratio(double part, double whole);

#endif
