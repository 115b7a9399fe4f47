/* request.c: answering requests; see request.h. */
#include "request.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "db_params.h"
#include "dispatch.h"
#include "log.h"
#include "replica.h"
#include "server.h"
#include "wire.h"

static void request_free(struct request *req)
{
	struct conn *c = req->conn;
	if (req->msg)
		referral__request__free_unpacked(req->msg, NULL);
	free(req);
	conn_request_done(c);
}

static void observe(struct request *req, const Referral__Response *resp)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	long long now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	int route = req->route ? (int)(req->route - routes) : -1;
	metrics_observe(&req->srv->metrics, route,
			resp->error ? resp->error->code : REFERRAL__ERROR_CODE__ERROR_NONE,
			(double)(now - req->started_ns) / 1e9);
}

void request_reply(struct request *req, Referral__Response *resp)
{
	observe(req, resp);
	resp->request_id = req->id;
	req->srv->stats.requests_total++;
	if (resp->error)
		req->srv->stats.errors_total++;
	conn_send(req->conn, resp);
	request_free(req);
}

void request_fail(struct request *req, Referral__ErrorCode code, const char *field,
		  const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	Referral__Error err = REFERRAL__ERROR__INIT;
	err.code = code;
	err.message = msg;
	err.field = (char *)(field ? field : "");
	if (code == REFERRAL__ERROR_CODE__OVERLOADED || code == REFERRAL__ERROR_CODE__UNAVAILABLE)
		err.retry_after_ms = 500;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.error = &err;
	log_debug("request %llu (%s) failed: %s: %s", (unsigned long long)req->id,
		  req->route ? req->route->name : "?", wire_error_code_name(code), msg);
	request_reply(req, &resp);
}

/* Our SQL functions raise errors with SQLSTATEs of class "R" named for the
 * typed error they mean; PostgreSQL's own classes map as below. */
static const struct {
	const char *sqlstate;
	Referral__ErrorCode code;
	const char *field;   /* when PostgreSQL names no column */
} sqlstate_map[] = {
	{ "RINVA", REFERRAL__ERROR_CODE__INVALID_ARGUMENT, NULL },
	{ "RNFND", REFERRAL__ERROR_CODE__NOT_FOUND, NULL },
	{ "RPERM", REFERRAL__ERROR_CODE__PERMISSION_DENIED, NULL },
	{ "RCONF", REFERRAL__ERROR_CODE__CONFLICT, NULL },
	{ "RFULL", REFERRAL__ERROR_CODE__FULL, NULL },
	{ "RSTAT", REFERRAL__ERROR_CODE__FAILED_PRECONDITION, NULL },
	{ "23505", REFERRAL__ERROR_CODE__CONFLICT, NULL },          /* unique_violation */
	/* exclusion_violation: the only exclusion constraint is one patient's
	 * overlapping bookings */
	{ "23P01", REFERRAL__ERROR_CODE__CONFLICT, "patient_id" },
	{ "23503", REFERRAL__ERROR_CODE__NOT_FOUND, NULL },         /* foreign_key_violation */
	{ "23514", REFERRAL__ERROR_CODE__INVALID_ARGUMENT, NULL },  /* check_violation */
	{ "22P02", REFERRAL__ERROR_CODE__INVALID_ARGUMENT, NULL },  /* invalid_text_representation */
	{ "22021", REFERRAL__ERROR_CODE__INVALID_ARGUMENT, NULL },  /* character_not_in_repertoire */
	{ "22007", REFERRAL__ERROR_CODE__INVALID_ARGUMENT, NULL },  /* invalid_datetime_format */
	{ "22008", REFERRAL__ERROR_CODE__INVALID_ARGUMENT, NULL },  /* datetime_field_overflow */
	{ "22003", REFERRAL__ERROR_CODE__INVALID_ARGUMENT, NULL },  /* numeric_value_out_of_range */
	{ "40001", REFERRAL__ERROR_CODE__CONFLICT, NULL },          /* serialization_failure */
	{ "40P01", REFERRAL__ERROR_CODE__CONFLICT, NULL },          /* deadlock_detected */
	{ "57014", REFERRAL__ERROR_CODE__UNAVAILABLE, NULL },       /* query_canceled (timeout) */
	{ "55P03", REFERRAL__ERROR_CODE__CONFLICT, NULL },          /* lock_not_available */
};

int request_alloc_ok(struct request *req, void *rows, void *ptrs)
{
	if (rows && ptrs)
		return 1;
	free(rows);
	free(ptrs);
	request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "out of memory");
	return 0;
}

void request_fail_db(struct request *req, const struct db_result *r)
{
	switch (r->outcome) {
	case DB_OK:
		request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "unexpected success");
		return;
	case DB_UNAVAILABLE:
		request_fail(req, REFERRAL__ERROR_CODE__UNAVAILABLE, NULL, "%s",
			     r->message ? r->message : "database unavailable");
		return;
	case DB_OVERLOADED:
		request_fail(req, REFERRAL__ERROR_CODE__OVERLOADED, NULL, "database queue full");
		return;
	case DB_FAILED:
		break;
	}
	for (size_t i = 0; i < sizeof sqlstate_map / sizeof sqlstate_map[0]; i++) {
		if (strcmp(sqlstate_map[i].sqlstate, r->sqlstate) == 0) {
			const char *field = r->column && r->column[0] ? r->column
								      : sqlstate_map[i].field;
			request_fail(req, sqlstate_map[i].code, field, "%s", r->message);
			return;
		}
	}
	/* Not an error we expect: the details go to the log, not the client. */
	log_error("request %llu (%s): database error %s: %s", (unsigned long long)req->id,
		  req->route ? req->route->name : "?", r->sqlstate, r->message);
	request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "internal database error (%s)",
		     r->sqlstate);
}

static void request_db_on(struct request *req, struct db_pool *pool, int stmt,
			  const struct db_params *p,
			  void (*done)(void *req, const struct db_result *r))
{
	enum db_outcome refused;
	if (db_exec(pool, (enum db_stmt)stmt, p->n, p->v, done, req, &refused) < 0) {
		struct db_result r = { .outcome = refused, .column = "" };
		request_fail_db(req, &r);
	}
}

void request_db(struct request *req, int stmt, const struct db_params *p,
		void (*done)(void *req, const struct db_result *r))
{
	request_db_on(req, req->srv->db, stmt, p, done);
}

void request_db_read(struct request *req, int stmt, const struct db_params *p,
		     void (*done)(void *req, const struct db_result *r))
{
	request_db_on(req, replica_read_pool(req->srv), stmt, p, done);
}
