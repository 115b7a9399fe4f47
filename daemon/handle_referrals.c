/* handle_referrals.c: up- and down-referrals, their moves, the worklist and
 * the history. The state machine and every rule about who may do what to
 * which referral live in sql/003_referrals.sql; this file checks the shape of
 * arguments, passes the caller's identity and scope, and shapes answers. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_params.h"
#include "db_row.h"
#include "dispatch.h"
#include "referrals.h"
#include "server.h"
#include "slots.h"
#include "wire.h"

/* ---- names and rows ---------------------------------------------------------- */

static const char *const action_names[] = {
	[REFERRAL__ACTION__ACTION_ACCEPT] = "accept",
	[REFERRAL__ACTION__ACTION_REJECT] = "reject",
	[REFERRAL__ACTION__ACTION_REDIRECT] = "redirect",
	[REFERRAL__ACTION__ACTION_NO_SLOT] = "no_slot",
	[REFERRAL__ACTION__ACTION_RETURN] = "return",
	[REFERRAL__ACTION__ACTION_ARRIVE] = "arrive",
	[REFERRAL__ACTION__ACTION_ADMIT] = "admit",
	[REFERRAL__ACTION__ACTION_DISCHARGE] = "discharge",
	[REFERRAL__ACTION__ACTION_COMPLETE] = "complete",
	[REFERRAL__ACTION__ACTION_CANCEL] = "cancel",
	[REFERRAL__ACTION__ACTION_REVERSE_NO_SHOW] = "reverse_no_show",
	[REFERRAL__ACTION__ACTION_DECLINE] = "decline",
	[REFERRAL__ACTION__ACTION_FOLLOW_UP] = "follow_up",
};

const char *referrals_action_name(Referral__Action action)
{
	if (action > 0 && (size_t)action < sizeof action_names / sizeof action_names[0])
		return action_names[action];
	return NULL;
}

static const char *const urgency_names[] = {
	[REFERRAL__URGENCY__URGENCY_ROUTINE] = "routine",
	[REFERRAL__URGENCY__URGENCY_URGENT] = "urgent",
	[REFERRAL__URGENCY__URGENCY_EMERGENCY] = "emergency",
};

const char *referrals_urgency_name(Referral__Urgency urgency)
{
	if (urgency >= 0 && (size_t)urgency < sizeof urgency_names / sizeof urgency_names[0])
		return urgency_names[urgency];
	return NULL;
}

static Referral__Urgency urgency_from_name(const char *name)
{
	for (size_t i = 0; i < sizeof urgency_names / sizeof urgency_names[0]; i++)
		if (strcmp(urgency_names[i], name) == 0)
			return (Referral__Urgency)i;
	return REFERRAL__URGENCY__URGENCY_ROUTINE;
}

int referrals_state_known(const char *state)
{
	static const char *const states[] = {
		"", "all", "pending", "waiting_slot", "accepted", "rejected", "redirected",
		"returned", "declined", "cancelled", "arrived", "admitted", "discharged",
		"no_show", "followed_up", "completed",
	};
	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
		if (strcmp(states[i], state) == 0)
			return 1;
	return 0;
}

void referral_from_row(Referral__Referral *r, const PGresult *res, int row, int first)
{
	int c = first;
	referral__referral__init(r);
	r->referral_id = db_str(res, row, c++);
	const char *dir = db_str(res, row, c++);
	r->direction = strcmp(dir, "down") == 0 ? REFERRAL__DIRECTION__DIRECTION_DOWN
						: REFERRAL__DIRECTION__DIRECTION_UP;
	r->state = db_str(res, row, c++);
	r->urgency = urgency_from_name(db_str(res, row, c++));
	r->patient_id = db_str(res, row, c++);
	r->from_institution = db_str(res, row, c++);
	r->from_department = db_str(res, row, c++);
	r->from_practitioner = db_str(res, row, c++);
	r->to_institution = db_str(res, row, c++);
	r->to_department = db_str(res, row, c++);
	r->diagnosis = db_str(res, row, c++);
	r->reason = db_str(res, row, c++);
	r->care_plan = db_str(res, row, c++);
	r->follow_up_due = db_str(res, row, c++);
	r->booking_id = db_str(res, row, c++);
	r->session_id = db_i64(res, row, c++);
	r->redirected_from = db_str(res, row, c++);
	r->redirected_to = db_str(res, row, c++);
	r->closes_referral_id = db_str(res, row, c++);
	r->created_at = db_i64(res, row, c++);
	r->state_changed_at = db_i64(res, row, c++);
	r->version = (uint32_t)db_i64(res, row, c++);
	r->escalated = db_bool(res, row, c++);
	r->follow_up_overdue = db_bool(res, row, c++);
	r->patient_display = db_str(res, row, c++);
	r->booking_status = db_str(res, row, c++);
	r->slot_starts_at = db_i64(res, row, c++);
}

/* Column of REFERRAL_COLS after the referral's own: the worklist's sort key. */
#define REFERRAL_SORT_COL 27

static void reply_referral(struct request *req, const PGresult *res, int first, int replayed)
{
	Referral__Referral r;
	referral_from_row(&r, res, 0, first);
	r.replayed = replayed;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_REFERRAL;
	resp.referral = &r;
	request_reply(req, &resp);
}

/* ---- argument checks ------------------------------------------------------------ */

int referrals_need_uuid(struct request *req, const char *value, const char *field, int optional)
{
	if ((optional && value[0] == '\0') || slots_is_uuid(value))
		return 1;
	request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, field, "%s must be a uuid", field);
	return 0;
}

static int need_key(struct request *req, const char *key)
{
	size_t n = strlen(key);
	if (n > 0 && n <= 128)
		return 1;
	request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "idempotency_key",
		     "an idempotency key of 1..128 bytes is required");
	return 0;
}

/* "YYYY-MM-DD", a day that exists (checked here, so that a 30th of February
 * is the caller's field error, not a database error). */
static int is_date(const char *s)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, m, d;
	char tail;
	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' ||
	    sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || y < 1 || m < 1 || m > 12)
		return 0;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return d >= 1 && d <= days[m - 1] + (m == 2 && leap);
}

/* ---- creating --------------------------------------------------------------------- */

static void referral_made(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	const char *outcome = db_str(r->res, 0, 0);
	const char *detail = db_str(r->res, 0, 1);
	if (strcmp(outcome, "made") == 0) {
		reply_referral(req, r->res, 3, db_bool(r->res, 0, 2));
		return;
	}
	/* The booking's refusal made nothing. ReferUp has no referral_id
	 * field: a session that is not at the target is the session's fault. */
	const struct slots_refusal *refusal = slots_book_refusal(outcome);
	if (refusal) {
		request_fail(req, refusal->code,
			     strcmp(outcome, "bad_referral") == 0 ? "session_id" : refusal->field,
			     "no referral made: %s", detail);
		return;
	}
	request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "unexpected outcome %s", outcome);
}

void handle_refer_up(struct request *req)
{
	const Referral__ReferUp *u = req->msg->refer_up;
	const struct identity *id = request_identity(req);
	const char *urgency = referrals_urgency_name(u->urgency);
	const char *pool = slots_pool_param(u->pool);
	if (!need_key(req, u->idempotency_key) ||
	    !referrals_need_uuid(req, u->patient_id, "patient_id", 0))
		return;
	if (!urgency || !pool) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, urgency ? "pool" : "urgency",
			     "unknown %s", urgency ? "pool" : "urgency");
		return;
	}
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, id->terminal_id);
	param_str(&q, id->institution_id);
	param_str(&q, id->practitioner_id);
	param_str(&q, u->patient_id);
	param_str(&q, u->to_institution);
	param_opt(&q, u->to_department);
	param_str(&q, u->diagnosis);
	param_str(&q, u->reason);
	param_str(&q, urgency);
	if (u->session_id > 0)
		param_i64(&q, u->session_id);
	else
		param_opt(&q, NULL);
	param_str(&q, pool);
	param_bool(&q, u->fallback_to_public);
	param_bool(&q, u->wait_if_full);
	param_str(&q, u->idempotency_key);
	request_db(req, DB_STMT_REFER_UP, &q, referral_made);
}

void handle_refer_down(struct request *req)
{
	const Referral__ReferDown *d = req->msg->refer_down;
	const struct identity *id = request_identity(req);
	if (!need_key(req, d->idempotency_key) ||
	    !referrals_need_uuid(req, d->patient_id, "patient_id", 0) ||
	    !referrals_need_uuid(req, d->closes_referral_id, "closes_referral_id", 1))
		return;
	if (!is_date(d->follow_up_due)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "follow_up_due",
			     "follow_up_due must be a date, YYYY-MM-DD");
		return;
	}
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, id->terminal_id);
	param_str(&q, id->institution_id);
	param_str(&q, id->practitioner_id);
	param_str(&q, d->patient_id);
	param_str(&q, d->to_institution);
	param_opt(&q, d->from_department);
	param_str(&q, d->diagnosis);
	param_str(&q, d->reason);
	param_str(&q, d->care_plan);
	param_str(&q, d->follow_up_due);
	param_opt(&q, d->closes_referral_id);
	param_str(&q, d->idempotency_key);
	request_db(req, DB_STMT_REFER_DOWN, &q, referral_made);
}

/* ---- moving and reading one -------------------------------------------------------- */

static void referral_row(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	if (PQntuples(r->res) == 0) {
		request_fail(req, REFERRAL__ERROR_CODE__NOT_FOUND, "referral_id", "no such referral");
		return;
	}
	reply_referral(req, r->res, 0, 0);
}

void handle_referral_action(struct request *req)
{
	const Referral__ReferralAction *a = req->msg->referral_action;
	const struct identity *id = request_identity(req);
	const char *action = referrals_action_name(a->action);
	if (!referrals_need_uuid(req, a->referral_id, "referral_id", 0))
		return;
	if (!action) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "action",
			     "action %d is not known", (int)a->action);
		return;
	}
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, id->terminal_id);
	param_str(&q, id->institution_id);
	param_str(&q, wire_role_name(id->role));
	param_str(&q, id->practitioner_id);
	param_str(&q, a->referral_id);
	param_str(&q, action);
	param_str(&q, a->reason);
	param_i64(&q, a->if_version);
	if (a->session_id > 0)
		param_i64(&q, a->session_id);
	else
		param_opt(&q, NULL);
	param_str(&q, a->to_institution);
	param_opt(&q, a->to_department);
	request_db(req, DB_STMT_REFERRAL_ACT, &q, referral_row);
}

void handle_get_referral(struct request *req)
{
	const Referral__GetReferral *g = req->msg->get_referral;
	const struct identity *id = request_identity(req);
	if (!referrals_need_uuid(req, g->referral_id, "referral_id", 0))
		return;
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, g->referral_id);
	param_str(&q, request_scope(req));
	request_db(req, DB_STMT_GET_REFERRAL, &q, referral_row);
}

/* ---- the worklist ---------------------------------------------------------------------- */

/* Worklist page tokens: "<urgency rank>:<created, microseconds>:<id>". */
struct worklist_key {
	int64_t rank;
	int64_t micros;
	char id[40];
};

static int parse_worklist_token(const char *token, struct worklist_key *k)
{
	if (token[0] == '\0') {
		/* Above every real key: the first page. */
		k->rank = 3;
		k->micros = INT64_MAX;
		snprintf(k->id, sizeof k->id, "ffffffff-ffff-ffff-ffff-ffffffffffff");
		return 0;
	}
	char tail;
	if (sscanf(token, "%" SCNd64 ":%" SCNd64 ":%36s%c", &k->rank, &k->micros, k->id, &tail) != 3)
		return -1;
	return slots_is_uuid(k->id) ? 0 : -1;
}

static void worklist_listed(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	int n = PQntuples(r->res);
	Referral__Referral *rows = calloc((size_t)n + 1, sizeof *rows);
	Referral__Referral **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
	if (!request_alloc_ok(req, rows, ptrs))
		return;
	for (int i = 0; i < n; i++) {
		referral_from_row(&rows[i], r->res, i, 0);
		ptrs[i] = &rows[i];
	}
	char token[96] = "";
	if ((unsigned)n == slots_page_size(req->msg->worklist->page_size))
		snprintf(token, sizeof token, "%s:%s:%s", db_str(r->res, n - 1, REFERRAL_SORT_COL),
			 db_str(r->res, n - 1, REFERRAL_SORT_COL + 1), db_str(r->res, n - 1, 0));
	Referral__ReferralList list = REFERRAL__REFERRAL_LIST__INIT;
	list.n_referrals = (size_t)n;
	list.referrals = ptrs;
	list.next_page_token = token;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_REFERRALS;
	resp.referrals = &list;
	request_reply(req, &resp);
	free(rows);
	free(ptrs);
}

static const char *direction_filter(Referral__Direction d)
{
	switch (d) {
	case REFERRAL__DIRECTION__DIRECTION_UP: return "up";
	case REFERRAL__DIRECTION__DIRECTION_DOWN: return "down";
	case REFERRAL__DIRECTION__DIRECTION_ANY: return "";
	default: return NULL;
	}
}

void handle_worklist(struct request *req)
{
	const Referral__Worklist *w = req->msg->worklist;
	const struct identity *id = request_identity(req);
	struct worklist_key k;
	const char *direction = direction_filter(w->direction);
	if (parse_worklist_token(w->page_token, &k) < 0) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "page_token",
			     "not a page token from this server");
		return;
	}
	if (!referrals_state_known(w->state) || !direction) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, direction ? "state" : "direction",
			     "unknown %s", direction ? "state" : "direction");
		return;
	}
	if (!referrals_need_uuid(req, w->patient_id, "patient_id", 1))
		return;
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, request_scope(req));
	param_str(&q, w->state);
	param_str(&q, direction);
	param_str(&q, w->department_id);
	param_i64(&q, w->min_age_minutes);
	param_bool(&q, w->escalated_only);
	param_str(&q, w->patient_id);
	param_i64(&q, k.rank);
	param_i64(&q, k.micros);
	param_str(&q, k.id);
	param_i64(&q, slots_page_size(w->page_size));
	request_db(req, DB_STMT_WORKLIST, &q, worklist_listed);
}

/* ---- history --------------------------------------------------------------------------- */

static void history_listed(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	int n = PQntuples(r->res);
	if (n == 0) {
		/* Every referral has its creation entry: none means not visible. */
		request_fail(req, REFERRAL__ERROR_CODE__NOT_FOUND, "referral_id", "no such referral");
		return;
	}
	Referral__HistoryEntry *rows = calloc((size_t)n, sizeof *rows);
	Referral__HistoryEntry **ptrs = calloc((size_t)n, sizeof *ptrs);
	if (!request_alloc_ok(req, rows, ptrs))
		return;
	for (int i = 0; i < n; i++) {
		Referral__HistoryEntry *e = &rows[i];
		referral__history_entry__init(e);
		e->seq = (uint32_t)db_i64(r->res, i, 0);
		e->at = db_i64(r->res, i, 1);
		e->action = db_str(r->res, i, 2);
		e->from_state = db_str(r->res, i, 3);
		e->to_state = db_str(r->res, i, 4);
		e->terminal_id = db_str(r->res, i, 5);
		e->role = db_str(r->res, i, 6);
		e->institution_id = db_str(r->res, i, 7);
		e->practitioner_id = db_str(r->res, i, 8);
		e->reason = db_str(r->res, i, 9);
		e->booking_id = db_str(r->res, i, 10);
		e->at_micros = db_i64(r->res, i, 11);
		ptrs[i] = e;
	}
	Referral__History h = REFERRAL__HISTORY__INIT;
	h.referral_id = req->msg->history->referral_id;
	h.n_entries = (size_t)n;
	h.entries = ptrs;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_HISTORY;
	resp.history = &h;
	request_reply(req, &resp);
	free(rows);
	free(ptrs);
}

void handle_history(struct request *req)
{
	const Referral__GetHistory *g = req->msg->history;
	const struct identity *id = request_identity(req);
	if (!referrals_need_uuid(req, g->referral_id, "referral_id", 0))
		return;
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, g->referral_id);
	param_str(&q, request_scope(req));
	request_db(req, DB_STMT_REFERRAL_HISTORY, &q, history_listed);
}
