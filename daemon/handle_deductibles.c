/* handle_deductibles.c: inpatient stays and their deductible decisions, and
 * the community's deductible policy. The rule, the chain, who may record
 * which stay and the policy's history live in sql/004_deductibles.sql; this
 * file checks the shape of arguments, passes the caller's identity and
 * scope, and turns rows into answers. */
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

/* ---- names ---------------------------------------------------------------------- */

static const char *const levels[] = { "village", "township", "county", "city" };
static const char *const schemes[] = { "resident", "employee" };
static const char *const policies[] = { "waive", "continuous", "none" };

#define KNOWN(list, s) name_known(list, sizeof list / sizeof list[0], s)

static int name_known(const char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return 1;
	return 0;
}

/* At most one amount per level and scheme. */
#define MAX_AMOUNTS (sizeof levels / sizeof levels[0] * sizeof schemes / sizeof schemes[0])
#define WINDOW_DAYS_MAX 366

/* ---- rows -------------------------------------------------------------------------- */

/* Splits s in place at each sep; returns how many pieces (0 for ""). */
static size_t split(char *s, char sep, char **out, size_t max)
{
	size_t n = 0;
	if (!s[0])
		return 0;
	while (n < max) {
		out[n++] = s;
		char *next = strchr(s, sep);
		if (!next)
			break;
		*next = '\0';
		s = next + 1;
	}
	return n;
}

/* A Deductible and what its strings and chain point into. */
struct deductible_row {
	Referral__Deductible d;
	Referral__ChainStay *links;
	Referral__ChainStay **ptrs;
	char *chain_text;
};

static void row_free(struct deductible_row *x)
{
	free(x->links);
	free(x->ptrs);
	free(x->chain_text);
}

/* The chain column: "stay,institution,level,admitted,discharged,due;...". */
static int fill_chain(struct deductible_row *x, const char *text)
{
	size_t max = 1;
	for (const char *p = text; *p; p++)
		max += *p == ';';
	char **entries = calloc(max, sizeof *entries);
	x->chain_text = strdup(text);
	x->links = calloc(max, sizeof *x->links);
	x->ptrs = calloc(max, sizeof *x->ptrs);
	if (!entries || !x->chain_text || !x->links || !x->ptrs) {
		free(entries);
		return -1;
	}
	size_t n = split(x->chain_text, ';', entries, max);
	for (size_t i = 0; i < n; i++) {
		char *f[6];
		Referral__ChainStay *l = &x->links[i];
		referral__chain_stay__init(l);
		if (split(entries[i], ',', f, 6) != 6) {
			free(entries);
			return -1;
		}
		l->stay_id = f[0];
		l->institution_id = f[1];
		l->level = f[2];
		l->admitted_at = strtoll(f[3], NULL, 10);
		l->discharged_at = strtoll(f[4], NULL, 10);
		l->due_fen = strtoll(f[5], NULL, 10);
		x->ptrs[i] = l;
	}
	free(entries);
	x->d.n_chain = n;
	x->d.chain = x->ptrs;
	return 0;
}

/* Column of DEDUCTIBLE_COLS after the decision's own: the page key. */
#define DEDUCTIBLE_SORT_COL 33

/* Fills x from the DEDUCTIBLE_COLS of a row, starting at column `first`. */
static int deductible_fill(struct deductible_row *x, const PGresult *res, int row, int first)
{
	int c = first;
	Referral__Deductible *d = &x->d;
	memset(x, 0, sizeof *x);
	referral__deductible__init(d);
	d->stay_id = db_str(res, row, c++);
	d->patient_id = db_str(res, row, c++);
	d->institution_id = db_str(res, row, c++);
	d->level = db_str(res, row, c++);
	d->scheme = db_str(res, row, c++);
	d->referral_id = db_str(res, row, c++);
	d->referral_direction = db_str(res, row, c++);
	d->referral_from = db_str(res, row, c++);
	d->referral_from_in_network = db_bool(res, row, c++);
	d->admitted_at = db_i64(res, row, c++);
	d->discharged_at = db_i64(res, row, c++);
	d->decided_at = db_i64(res, row, c++);
	d->policy_version = (uint32_t)db_i64(res, row, c++);
	d->policy = db_str(res, row, c++);
	d->window_days = (uint32_t)db_i64(res, row, c++);
	d->previous_stay_id = db_str(res, row, c++);
	d->previous_discharged_at = db_i64(res, row, c++);
	d->gap_days = (int32_t)db_i64(res, row, c++);
	d->chain_id = db_str(res, row, c++);
	d->chain_position = (uint32_t)db_i64(res, row, c++);
	if (fill_chain(x, db_str(res, row, c++)) < 0)
		return -1;
	d->chain_paid_fen = db_i64(res, row, c++);
	d->amount_configured = db_bool(res, row, c++);
	d->own_deductible_fen = db_i64(res, row, c++);
	d->due_fen = db_i64(res, row, c++);
	d->waived_fen = db_i64(res, row, c++);
	d->rule = db_str(res, row, c++);
	d->explanation = db_str(res, row, c++);
	d->reversed = db_bool(res, row, c++);
	d->reversed_at = db_i64(res, row, c++);
	d->reversal_reason = db_str(res, row, c++);
	d->reversed_by = db_str(res, row, c++);
	d->recorded_by = db_str(res, row, c++);
	return 0;
}

/* Answers with the one stay of a result whose first column says whether
 * the answer is a replay (RecordStay, DischargeStay, ReverseStay, GetDeductible). */
static void deductible_answered(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	struct deductible_row x;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	if (PQntuples(r->res) == 0) {
		request_fail(req, REFERRAL__ERROR_CODE__NOT_FOUND, "stay_id", "no such stay");
		return;
	}
	if (deductible_fill(&x, r->res, 0, 1) < 0) {
		row_free(&x);
		request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "unreadable decision");
		return;
	}
	x.d.replayed = db_bool(r->res, 0, 0);
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_DEDUCTIBLE;
	resp.deductible = &x.d;
	request_reply(req, &resp);
	row_free(&x);
}

/* ---- stays -------------------------------------------------------------------------- */

void handle_record_stay(struct request *req)
{
	const Referral__RecordStay *s = req->msg->record_stay;
	const struct identity *id = request_identity(req);
	/* The idempotency key is checked where it is claimed, in record_stay(). */
	if (!referrals_need_uuid(req, s->patient_id, "patient_id", 0) ||
	    !referrals_need_uuid(req, s->referral_id, "referral_id", 1))
		return;
	if (s->scheme[0] && !KNOWN(schemes, s->scheme)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "scheme",
			     "scheme is resident or employee (or empty: the patient's own)");
		return;
	}
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, id->terminal_id);
	param_str(&q, wire_role_name(id->role));
	param_str(&q, id->institution_id);
	param_str(&q, s->institution_id);
	param_str(&q, s->patient_id);
	param_str(&q, s->scheme);
	param_i64(&q, s->admitted_at);
	param_i64(&q, s->discharged_at);
	param_opt(&q, s->referral_id);
	param_str(&q, s->idempotency_key);
	request_db(req, DB_STMT_RECORD_STAY, &q, deductible_answered);
}

/* DischargeStay and ReverseStay: the caller, its scope and the stay; the
 * caller adds the request's own value. */
static int stay_change_params(struct request *req, const char *stay_id, struct db_params *q)
{
	const struct identity *id = request_identity(req);
	if (!referrals_need_uuid(req, stay_id, "stay_id", 0))
		return 0;
	param_str(q, id->community_id);
	param_str(q, id->terminal_id);
	param_str(q, request_scope(req));
	param_str(q, stay_id);
	return 1;
}

void handle_discharge_stay(struct request *req)
{
	const Referral__DischargeStay *s = req->msg->discharge_stay;
	struct db_params q = { 0 };
	if (!stay_change_params(req, s->stay_id, &q))
		return;
	param_i64(&q, s->discharged_at);
	request_db(req, DB_STMT_DISCHARGE_STAY, &q, deductible_answered);
}

void handle_reverse_stay(struct request *req)
{
	const Referral__ReverseStay *s = req->msg->reverse_stay;
	struct db_params q = { 0 };
	if (!stay_change_params(req, s->stay_id, &q))
		return;
	param_str(&q, s->reason);
	request_db(req, DB_STMT_REVERSE_STAY, &q, deductible_answered);
}

/* ---- reading decisions -------------------------------------------------------------- */

void handle_get_deductible(struct request *req)
{
	const Referral__GetDeductible *g = req->msg->get_deductible;
	const struct identity *id = request_identity(req);
	if (!referrals_need_uuid(req, g->stay_id, "stay_id", 0))
		return;
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, g->stay_id);
	param_str(&q, request_scope(req));
	request_db(req, DB_STMT_GET_DEDUCTIBLE, &q, deductible_answered);
}

/* Columns of LIST_DEDUCTIBLES before DEDUCTIBLE_COLS: the totals. */
#define LIST_FIRST 3

static void deductibles_listed(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	/* One row of totals at least; no decision on it when nothing matched. */
	int n = PQntuples(r->res);
	if (n == 1 && PQgetisnull(r->res, 0, LIST_FIRST))
		n = 0;
	struct deductible_row *rows = calloc((size_t)n + 1, sizeof *rows);
	Referral__Deductible **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
	int ok = rows && ptrs;
	int filled = 0;
	for (; ok && filled < n; filled++) {
		ok = deductible_fill(&rows[filled], r->res, filled, LIST_FIRST) == 0;
		ptrs[filled] = &rows[filled].d;
	}
	if (ok) {
		char token[96] = "";
		if (n > 0 && (unsigned)n == slots_page_size(req->msg->list_deductibles->page_size))
			slots_format_page_token(token, sizeof token,
						db_str(r->res, n - 1, LIST_FIRST + DEDUCTIBLE_SORT_COL),
						db_str(r->res, n - 1, LIST_FIRST));
		Referral__DeductibleList list = REFERRAL__DEDUCTIBLE_LIST__INIT;
		list.n_deductibles = (size_t)n;
		list.deductibles = ptrs;
		list.next_page_token = token;
		list.total_count = (uint32_t)db_i64(r->res, 0, 0);
		list.total_due_fen = db_i64(r->res, 0, 1);
		list.total_waived_fen = db_i64(r->res, 0, 2);
		Referral__Response resp = REFERRAL__RESPONSE__INIT;
		resp.body_case = REFERRAL__RESPONSE__BODY_DEDUCTIBLES;
		resp.deductibles = &list;
		request_reply(req, &resp);
	} else {
		request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "out of memory");
	}
	for (int i = 0; rows && i < filled; i++)
		row_free(&rows[i]);
	free(rows);
	free(ptrs);
}

void handle_list_deductibles(struct request *req)
{
	const Referral__ListDeductibles *l = req->msg->list_deductibles;
	const struct identity *id = request_identity(req);
	/* Page tokens: "<admitted, microseconds>:<stay id>". */
	int64_t after_micros = INT64_MIN;
	char after_id[40] = "00000000-0000-0000-0000-000000000000";
	if (slots_parse_page_token(l->page_token, &after_micros, after_id, sizeof after_id) < 0 ||
	    !slots_is_uuid(after_id)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "page_token",
			     "not a page token from this server");
		return;
	}
	if (!referrals_need_uuid(req, l->patient_id, "patient_id", 1) ||
	    !referrals_need_uuid(req, l->referral_id, "referral_id", 1))
		return;
	if (l->since && l->until && l->until <= l->since) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "until",
			     "until must be after since");
		return;
	}
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, request_scope(req));
	param_str(&q, l->patient_id);
	param_str(&q, l->referral_id);
	param_i64(&q, l->since);
	param_i64(&q, l->until);
	param_bool(&q, l->live_only);
	param_i64(&q, after_micros);
	param_str(&q, after_id);
	param_i64(&q, slots_page_size(l->page_size));
	request_db(req, DB_STMT_LIST_DEDUCTIBLES, &q, deductibles_listed);
}

/* ---- the policy ----------------------------------------------------------------------- */

static void policy_answered(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	if (PQntuples(r->res) == 0) {
		request_fail(req, REFERRAL__ERROR_CODE__NOT_FOUND, "version",
			     "no such version of the deductible policy");
		return;
	}
	const PGresult *res = r->res;
	char *text = strdup(db_str(res, 0, 4));
	char *entries[MAX_AMOUNTS];
	Referral__DeductibleAmount amounts[MAX_AMOUNTS], *ptrs[MAX_AMOUNTS];
	size_t n = text ? split(text, ';', entries, MAX_AMOUNTS) : 0;
	for (size_t i = 0; i < n; i++) {
		char *f[3] = { "", "", "0" };
		referral__deductible_amount__init(&amounts[i]);
		split(entries[i], ',', f, 3);
		amounts[i].level = f[0];
		amounts[i].scheme = f[1];
		amounts[i].amount_fen = strtoll(f[2], NULL, 10);
		ptrs[i] = &amounts[i];
	}
	Referral__DeductiblePolicy p = REFERRAL__DEDUCTIBLE_POLICY__INIT;
	p.version = (uint32_t)db_i64(res, 0, 0);
	p.effective_from = db_i64(res, 0, 1);
	p.policy = db_str(res, 0, 2);
	p.window_days = (uint32_t)db_i64(res, 0, 3);
	p.n_amounts = n;
	p.amounts = ptrs;
	p.set_by = db_str(res, 0, 5);
	p.latest_version = (uint32_t)db_i64(res, 0, 6);
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_DEDUCTIBLE_POLICY;
	resp.deductible_policy = &p;
	request_reply(req, &resp);
	free(text);
}

/* Appends a name or number to a PostgreSQL array literal being built. The
 * names were checked against the lists above, so they need no quoting. */
static void array_add(char *buf, size_t len, const char *item)
{
	size_t used = strlen(buf);
	snprintf(buf + used, len - used, "%s%s", used > 1 ? "," : "", item);
}

void handle_set_deductible_policy(struct request *req)
{
	const Referral__SetDeductiblePolicy *s = req->msg->set_deductible_policy;
	const struct identity *id = request_identity(req);
	char lv[128] = "{", sc[128] = "{", am[256] = "{", num[24];
	if (!KNOWN(policies, s->policy)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "policy",
			     "policy is waive, continuous or none");
		return;
	}
	if (s->window_days > WINDOW_DAYS_MAX || s->n_amounts > MAX_AMOUNTS) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT,
			     s->n_amounts > MAX_AMOUNTS ? "amounts" : "window_days",
			     "window_days is 0..%d; at most %zu amounts", WINDOW_DAYS_MAX,
			     (size_t)MAX_AMOUNTS);
		return;
	}
	for (size_t i = 0; i < s->n_amounts; i++) {
		const Referral__DeductibleAmount *a = s->amounts[i];
		if (!KNOWN(levels, a->level) || !KNOWN(schemes, a->scheme) || a->amount_fen < 0) {
			request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "amounts",
				     "amount %zu: level is village, township, county or city; scheme "
				     "resident or employee; amount_fen whole fen, 0 or more", i + 1);
			return;
		}
		snprintf(num, sizeof num, "%" PRId64, a->amount_fen);
		array_add(lv, sizeof lv, a->level);
		array_add(sc, sizeof sc, a->scheme);
		array_add(am, sizeof am, num);
	}
	strcat(lv, "}");
	strcat(sc, "}");
	strcat(am, "}");
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, id->terminal_id);
	param_str(&q, s->policy);
	param_i64(&q, s->window_days);
	param_str(&q, lv);
	param_str(&q, sc);
	param_str(&q, am);
	request_db(req, DB_STMT_SET_DEDUCTIBLE_POLICY, &q, policy_answered);
}

void handle_get_deductible_policy(struct request *req)
{
	const struct identity *id = request_identity(req);
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_i64(&q, req->msg->get_deductible_policy->version);
	request_db(req, DB_STMT_GET_DEDUCTIBLE_POLICY, &q, policy_answered);
}
