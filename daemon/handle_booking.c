/* handle_booking.c: booking, cancelling and listing bookings. The decisions
 * are made by book_slot() and friends in sql/002_slots.sql; this file checks
 * arguments, scopes the caller and turns outcomes into typed answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "book_batch.h"
#include "db.h"
#include "db_params.h"
#include "db_row.h"
#include "dispatch.h"
#include "server.h"
#include "slots.h"
#include "wire.h"

const char *slots_pool_param(Referral__Pool pool)
{
	switch (pool) {
	case REFERRAL__POOL__POOL_RESERVED: return "reserved";
	case REFERRAL__POOL__POOL_PUBLIC: return "public";
	case REFERRAL__POOL__POOL_AUTO: return "auto";
	default: return NULL;
	}
}

/* book_slot() outcomes and the typed errors they become. */
static const struct slots_refusal book_refusals[] = {
	{ "full", REFERRAL__ERROR_CODE__FULL, "session_id" },
	{ "not_permitted", REFERRAL__ERROR_CODE__PERMISSION_DENIED, "pool" },
	{ "closed", REFERRAL__ERROR_CODE__FAILED_PRECONDITION, "session_id" },
	{ "patient_conflict", REFERRAL__ERROR_CODE__CONFLICT, "patient_id" },
	{ "not_found", REFERRAL__ERROR_CODE__NOT_FOUND, "session_id" },
	{ "bad_referral", REFERRAL__ERROR_CODE__FAILED_PRECONDITION, "referral_id" },
	{ "key_conflict", REFERRAL__ERROR_CODE__CONFLICT, "idempotency_key" },
};

const struct slots_refusal *slots_book_refusal(const char *outcome)
{
	for (size_t i = 0; i < sizeof book_refusals / sizeof book_refusals[0]; i++)
		if (strcmp(outcome, book_refusals[i].outcome) == 0)
			return &book_refusals[i];
	return NULL;
}

void slots_book_answer(struct request *req, const PGresult *res, int row, int col)
{
	const char *outcome = db_str(res, row, col);
	const char *detail = db_str(res, row, col + 3);
	const struct slots_refusal *refusal = slots_book_refusal(outcome);
	if (refusal) {
		const char *field = refusal->field;
		if (strcmp(outcome, "not_found") == 0 && strstr(detail, "patient"))
			field = "patient_id";
		if (refusal->code == REFERRAL__ERROR_CODE__FULL)
			request_fail(req, REFERRAL__ERROR_CODE__FULL, field,
				     "%s (reserved left %s, public left %s)", detail,
				     db_str(res, row, col + 4), db_str(res, row, col + 5));
		else
			request_fail(req, refusal->code, field, "%s", detail);
		return;
	}
	if (strcmp(outcome, "booked") != 0) {
		request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "unexpected outcome %s",
			     outcome);
		return;
	}
	const Referral__Book *b = req->msg->book;
	Referral__Booking bk = REFERRAL__BOOKING__INIT;
	bk.booking_id = db_str(res, row, col + 1);
	bk.session_id = b->session_id;
	bk.patient_id = b->patient_id;
	bk.pool = slots_pool_from_name(db_str(res, row, col + 2));
	bk.replayed = db_bool(res, row, col + 6);
	/* A replay reports what became of the booking since (e.g. cancelled). */
	bk.status = bk.replayed && detail[0] ? (char *)detail : "booked";
	bk.reserved_left = (uint32_t)db_i64(res, row, col + 4);
	bk.public_left = (uint32_t)db_i64(res, row, col + 5);
	bk.booked_by_institution = (char *)request_identity(req)->institution_id;
	bk.referral_id = b->referral_id;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_BOOKING;
	resp.booking = &bk;
	request_reply(req, &resp);
}

static void booked(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK)
		request_fail_db(req, r);
	else
		slots_book_answer(req, r->res, 0, 0);
}

void slots_book_single(struct request *req)
{
	const Referral__Book *b = req->msg->book;
	const struct identity *id = request_identity(req);
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, id->terminal_id);
	param_str(&q, id->institution_id);
	param_str(&q, wire_role_name(id->role));
	param_str(&q, id->practitioner_id);
	param_i64(&q, b->session_id);
	param_str(&q, b->patient_id);
	param_str(&q, slots_pool_param(b->pool));
	param_bool(&q, b->fallback_to_public);
	param_opt(&q, b->referral_id);
	param_str(&q, b->idempotency_key);
	request_db(req, DB_STMT_BOOK, &q, booked);
}

void handle_book(struct request *req)
{
	const Referral__Book *b = req->msg->book;
	const char *pool = slots_pool_param(b->pool);
	if (!pool) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "pool",
			     "pool must be auto, reserved or public");
		return;
	}
	if (!slots_is_uuid(b->patient_id)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "patient_id",
			     "patient_id must be a uuid");
		return;
	}
	if (b->referral_id[0] && !slots_is_uuid(b->referral_id)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "referral_id",
			     "referral_id must be a uuid");
		return;
	}
	size_t klen = strlen(b->idempotency_key);
	if (klen == 0 || klen > 128) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "idempotency_key",
			     "an idempotency key of 1..128 bytes is required");
		return;
	}
	/* A booking for a referral locks the referral first: it goes alone. */
	if (b->referral_id[0] || req->srv->cfg.booking_batch_max == 0)
		slots_book_single(req);
	else
		book_batcher_submit(req->srv->book_batcher, req);
}

/* ---- cancel ------------------------------------------------------------------- */

static void booking_cancelled(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	Referral__Booking bk = REFERRAL__BOOKING__INIT;
	bk.booking_id = db_str(r->res, 0, 0);
	bk.session_id = db_i64(r->res, 0, 1);
	bk.pool = slots_pool_from_name(db_str(r->res, 0, 2));
	bk.status = db_str(r->res, 0, 3);
	/* Already cancelled is an answer, not an error: cancelling is idempotent. */
	bk.replayed = db_bool(r->res, 0, 4);
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_BOOKING;
	resp.booking = &bk;
	request_reply(req, &resp);
}

void handle_cancel_booking(struct request *req)
{
	const Referral__CancelBooking *c = req->msg->cancel_booking;
	const struct identity *id = request_identity(req);
	if (!slots_is_uuid(c->booking_id)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "booking_id",
			     "booking_id must be a uuid");
		return;
	}
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, id->terminal_id);
	param_str(&q, request_scope(req));
	param_str(&q, c->booking_id);
	param_str(&q, c->reason);
	request_db(req, DB_STMT_CANCEL_BOOKING, &q, booking_cancelled);
}

/* ---- emergency ------------------------------------------------------------------ */

static void emergency_booked(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	const Referral__EmergencyBook *e = req->msg->emergency_book;
	Referral__Booking bk = REFERRAL__BOOKING__INIT;
	bk.booking_id = db_str(r->res, 0, 0);
	bk.session_id = e->session_id;
	bk.patient_id = e->patient_id;
	bk.pool = REFERRAL__POOL__POOL_EMERGENCY;
	bk.status = "booked";
	bk.referral_id = e->referral_id;
	bk.booked_by_institution = (char *)request_identity(req)->institution_id;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_BOOKING;
	resp.booking = &bk;
	request_reply(req, &resp);
}

void handle_emergency_book(struct request *req)
{
	const Referral__EmergencyBook *e = req->msg->emergency_book;
	const struct identity *id = request_identity(req);
	if (!slots_is_uuid(e->patient_id)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "patient_id",
			     "patient_id must be a uuid");
		return;
	}
	if (e->referral_id[0] && !slots_is_uuid(e->referral_id)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "referral_id",
			     "referral_id must be a uuid");
		return;
	}
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, id->terminal_id);
	param_str(&q, id->institution_id);
	param_i64(&q, e->session_id);
	param_str(&q, e->patient_id);
	param_opt(&q, e->referral_id);
	param_str(&q, e->reason);
	request_db(req, DB_STMT_BOOK_EMERGENCY, &q, emergency_booked);
}

/* ---- list ------------------------------------------------------------------------ */

static void bookings_listed(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	int n = PQntuples(r->res);
	Referral__Booking *rows = calloc((size_t)n + 1, sizeof *rows);
	Referral__Booking **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
	if (!request_alloc_ok(req, rows, ptrs))
		return;
	for (int i = 0; i < n; i++) {
		Referral__Booking *b = &rows[i];
		referral__booking__init(b);
		b->booking_id = db_str(r->res, i, 0);
		b->session_id = db_i64(r->res, i, 1);
		b->patient_id = db_str(r->res, i, 2);
		b->pool = slots_pool_from_name(db_str(r->res, i, 3));
		b->status = db_str(r->res, i, 4);
		b->booked_by_institution = db_str(r->res, i, 5);
		b->created_at = db_i64(r->res, i, 6);
		b->starts_at = db_i64(r->res, i, 7);
		b->referral_id = db_str(r->res, i, 8);
		b->cancel_reason = db_str(r->res, i, 9);
		ptrs[i] = b;
	}
	char token[96] = "";
	if ((unsigned)n == slots_page_size(req->msg->list_bookings->page_size))
		slots_format_page_token(token, sizeof token, db_str(r->res, n - 1, 7),
					db_str(r->res, n - 1, 0));
	Referral__BookingList list = REFERRAL__BOOKING_LIST__INIT;
	list.n_bookings = (size_t)n;
	list.bookings = ptrs;
	list.next_page_token = token;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_BOOKINGS;
	resp.bookings = &list;
	request_reply(req, &resp);
	free(rows);
	free(ptrs);
}

void handle_list_bookings(struct request *req)
{
	const Referral__ListBookings *l = req->msg->list_bookings;
	const struct identity *id = request_identity(req);
	int64_t after_secs = 0;
	char after_id[48] = "00000000-0000-0000-0000-000000000000";
	if (slots_parse_page_token(l->page_token, &after_secs, after_id, sizeof after_id) < 0 ||
	    !slots_is_uuid(after_id)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "page_token",
			     "not a page token from this server");
		return;
	}
	if (l->patient_id[0] && !slots_is_uuid(l->patient_id)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "patient_id",
			     "patient_id must be a uuid");
		return;
	}
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, request_scope(req));
	param_i64(&q, l->session_id);
	param_str(&q, l->patient_id);
	param_bool(&q, l->include_cancelled);
	param_i64(&q, after_secs);
	param_str(&q, after_id);
	param_i64(&q, slots_page_size(l->page_size));
	request_db(req, DB_STMT_LIST_BOOKINGS, &q, bookings_listed);
}
