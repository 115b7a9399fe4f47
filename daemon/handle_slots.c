/* handle_slots.c: publishing, changing, cancelling and searching sessions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "db_params.h"
#include "db_row.h"
#include "dispatch.h"
#include "server.h"
#include "slots.h"

/* ---- shared helpers --------------------------------------------------------- */

static const char *const kind_names[] = {
	[REFERRAL__RESOURCE_KIND__KIND_EXPERT] = "expert",
	[REFERRAL__RESOURCE_KIND__KIND_EXAM] = "exam",
	[REFERRAL__RESOURCE_KIND__KIND_BED] = "bed",
};

const char *slots_kind_name(Referral__ResourceKind kind)
{
	if (kind > 0 && (size_t)kind < sizeof kind_names / sizeof kind_names[0])
		return kind_names[kind];
	return NULL;
}

Referral__ResourceKind slots_kind_from_name(const char *name)
{
	for (size_t i = 1; i < sizeof kind_names / sizeof kind_names[0]; i++)
		if (strcmp(kind_names[i], name) == 0)
			return (Referral__ResourceKind)i;
	return REFERRAL__RESOURCE_KIND__KIND_UNSPECIFIED;
}

Referral__Pool slots_pool_from_name(const char *name)
{
	if (strcmp(name, "reserved") == 0)
		return REFERRAL__POOL__POOL_RESERVED;
	if (strcmp(name, "public") == 0)
		return REFERRAL__POOL__POOL_PUBLIC;
	if (strcmp(name, "emergency") == 0)
		return REFERRAL__POOL__POOL_EMERGENCY;
	return REFERRAL__POOL__POOL_AUTO;
}

void slots_session_from_row(Referral__Session *s, const PGresult *res, int row)
{
	referral__session__init(s);
	s->session_id = db_i64(res, row, 0);
	s->institution_id = db_str(res, row, 1);
	s->department_id = db_str(res, row, 2);
	s->kind = slots_kind_from_name(db_str(res, row, 3));
	s->resource_id = db_str(res, row, 4);
	s->starts_at = db_i64(res, row, 5);
	s->ends_at = db_i64(res, row, 6);
	s->capacity = (uint32_t)db_i64(res, row, 7);
	s->reserved_capacity = (uint32_t)db_i64(res, row, 8);
	s->reserved_left = (uint32_t)db_i64(res, row, 9);
	s->public_left = (uint32_t)db_i64(res, row, 10);
	s->emergency_booked = (uint32_t)db_i64(res, row, 11);
	s->released = db_bool(res, row, 12);
	s->cancelled = db_bool(res, row, 13);
	s->reserved_initial = (uint32_t)db_i64(res, row, 14);
}

int slots_parse_page_token(const char *token, int64_t *seconds, char *id, size_t idlen)
{
	if (!token || !token[0])
		return 0;
	char *end;
	long long v = strtoll(token, &end, 10);
	if (*end != ':' || strlen(end + 1) == 0 || strlen(end + 1) >= idlen)
		return -1;
	*seconds = v;
	snprintf(id, idlen, "%s", end + 1);
	return 0;
}

void slots_format_page_token(char *out, size_t len, const char *seconds, const char *id)
{
	snprintf(out, len, "%s:%s", seconds, id);
}

unsigned slots_page_size(uint32_t asked)
{
	if (asked == 0)
		return SLOTS_PAGE_DEFAULT;
	return asked > SLOTS_PAGE_MAX ? SLOTS_PAGE_MAX : asked;
}

int slots_is_uuid(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	if (!s || strlen(s) != sizeof shape - 1)
		return 0;
	for (size_t i = 0; shape[i]; i++) {
		char c = s[i];
		int hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
		if (shape[i] == '-' ? c != '-' : !hex)
			return 0;
	}
	return 1;
}

/* Desks act for their own institution; admins name one. Returns the
 * institution to act for, or NULL after answering the request. */
static const char *acting_institution(struct request *req, const char *asked)
{
	const struct identity *id = request_identity(req);
	if (id->role == REFERRAL__ROLE__ROLE_ADMIN) {
		if (!asked || !asked[0]) {
			request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "institution_id",
				     "an admin must name the institution");
			return NULL;
		}
		return asked;
	}
	if (asked && asked[0] && strcmp(asked, id->institution_id) != 0) {
		request_fail(req, REFERRAL__ERROR_CODE__PERMISSION_DENIED, "institution_id",
			     "a desk manages its own institution's sessions only");
		return NULL;
	}
	return id->institution_id;
}

/* Admins may act on any session of the community: "" lifts the scope. */
static const char *session_scope(const struct request *req)
{
	const struct identity *id = request_identity(req);
	return id->role == REFERRAL__ROLE__ROLE_ADMIN ? "" : id->institution_id;
}

static void reply_sessions(struct request *req, const PGresult *res, int as_publish)
{
	int n = PQntuples(res);
	Referral__Session *rows = calloc((size_t)n + 1, sizeof *rows);
	Referral__Session **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
	if (!request_alloc_ok(req, rows, ptrs))
		return;
	for (int i = 0; i < n; i++) {
		slots_session_from_row(&rows[i], res, i);
		ptrs[i] = &rows[i];
	}
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	Referral__PublishReply pub = REFERRAL__PUBLISH_REPLY__INIT;
	Referral__SessionList list = REFERRAL__SESSION_LIST__INIT;
	char token[96] = "";
	if (as_publish) {
		pub.n_sessions = (size_t)n;
		pub.sessions = ptrs;
		resp.body_case = REFERRAL__RESPONSE__BODY_PUBLISH;
		resp.publish = &pub;
	} else {
		list.n_sessions = (size_t)n;
		list.sessions = ptrs;
		/* A full page may have a successor; the token resumes after its
		 * last row. */
		unsigned page = slots_page_size(req->msg->search->page_size);
		if ((unsigned)n == page)
			slots_format_page_token(token, sizeof token, db_str(res, n - 1, 5),
						db_str(res, n - 1, 0));
		list.next_page_token = token;
		resp.body_case = REFERRAL__RESPONSE__BODY_SESSIONS;
		resp.sessions = &list;
	}
	request_reply(req, &resp);
	free(rows);
	free(ptrs);
}

/* ---- publish -------------------------------------------------------------------- */

static void published(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	reply_sessions(req, r->res, 1);
}

/* "{\"2026-12-07 00:00:00+00\",...}" for a timestamptz[] parameter. */
static char *timestamps_literal(Referral__SessionTime **t, size_t n, int ends)
{
	size_t cap = 2 + n * 28, len = 0;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	out[len++] = '{';
	for (size_t i = 0; i < n; i++) {
		time_t secs = (time_t)(ends ? t[i]->ends_at : t[i]->starts_at);
		struct tm tm;
		gmtime_r(&secs, &tm);
		len += strftime(out + len, cap - len, i ? ",\"%Y-%m-%d %H:%M:%S+00\""
							: "\"%Y-%m-%d %H:%M:%S+00\"", &tm);
	}
	out[len++] = '}';
	out[len] = '\0';
	return out;
}

static int check_publish(struct request *req, const Referral__PublishSessions *p)
{
	if (!slots_kind_name(p->kind)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "kind",
			     "kind must be expert, exam or bed");
		return -1;
	}
	if (!p->department_id[0] || !p->resource_id[0]) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT,
			     p->department_id[0] ? "resource_id" : "department_id", "required");
		return -1;
	}
	if (p->reserved_pct > 100) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "reserved_pct",
			     "reserved_pct is a percentage (0..100)");
		return -1;
	}
	if ((p->n_times > 0) == (p->weekly != NULL)) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "times",
			     "give either explicit times or a weekly pattern");
		return -1;
	}
	if (p->n_times > 1000) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "times",
			     "at most 1000 sessions per request");
		return -1;
	}
	if (p->weekly) {
		const Referral__WeeklyPattern *w = p->weekly;
		if (w->weeks < 1 || w->weeks > 52 || w->n_weekdays < 1 || w->n_weekdays > 7) {
			request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "weekly",
				     "1..52 weeks and 1..7 weekdays");
			return -1;
		}
		for (size_t i = 0; i < w->n_weekdays; i++) {
			if (w->weekdays[i] < 1 || w->weekdays[i] > 7) {
				request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT,
					     "weekly.weekdays", "weekdays are 1 (Monday) .. 7");
				return -1;
			}
		}
	}
	return 0;
}

void handle_publish(struct request *req)
{
	const Referral__PublishSessions *p = req->msg->publish;
	if (check_publish(req, p) < 0)
		return;
	const char *inst = acting_institution(req, p->institution_id);
	if (!inst)
		return;
	const struct identity *id = request_identity(req);
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, id->terminal_id);
	param_str(&q, inst);
	param_str(&q, p->department_id);
	param_str(&q, slots_kind_name(p->kind));
	param_str(&q, p->resource_id);
	param_i64(&q, p->capacity);
	param_i64(&q, p->reserved_slots);
	param_i64(&q, p->reserved_pct);
	if (p->weekly) {
		const Referral__WeeklyPattern *w = p->weekly;
		char days[32];
		size_t len = 0;
		days[len++] = '{';
		for (size_t i = 0; i < w->n_weekdays; i++)
			len += (size_t)snprintf(days + len, sizeof days - len, i ? ",%u" : "%u",
						w->weekdays[i]);
		snprintf(days + len, sizeof days - len, "}");
		param_str(&q, w->first_date);
		param_i64(&q, w->weeks);
		param_str(&q, days);
		param_str(&q, w->start_time);
		param_str(&q, w->end_time);
		request_db(req, DB_STMT_PUBLISH_WEEKLY, &q, published);
		return;
	}
	char *starts = timestamps_literal(p->times, p->n_times, 0);
	char *ends = timestamps_literal(p->times, p->n_times, 1);
	if (!request_alloc_ok(req, starts, ends))
		return;
	param_str(&q, starts);
	param_str(&q, ends);
	request_db(req, DB_STMT_PUBLISH_SESSIONS, &q, published);
	free(starts);
	free(ends);
}

/* ---- change capacity, cancel session --------------------------------------------- */

static void capacity_changed(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	Referral__Session s;
	slots_session_from_row(&s, r->res, 0);
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_SESSION;
	resp.session = &s;
	request_reply(req, &resp);
}

void handle_change_capacity(struct request *req)
{
	const Referral__ChangeCapacity *c = req->msg->change_capacity;
	const struct identity *id = request_identity(req);
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, session_scope(req));
	param_i64(&q, c->session_id);
	param_i64(&q, c->capacity);
	request_db(req, DB_STMT_CHANGE_CAPACITY, &q, capacity_changed);
}

static void session_cancelled(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	Referral__CancelSessionReply reply = REFERRAL__CANCEL_SESSION_REPLY__INIT;
	reply.session_id = db_i64(r->res, 0, 0);
	reply.bookings_flagged = (uint32_t)db_i64(r->res, 0, 1);
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_CANCEL_SESSION;
	resp.cancel_session = &reply;
	request_reply(req, &resp);
}

void handle_cancel_session(struct request *req)
{
	const Referral__CancelSession *c = req->msg->cancel_session;
	const struct identity *id = request_identity(req);
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, session_scope(req));
	param_str(&q, id->terminal_id);
	param_i64(&q, c->session_id);
	param_str(&q, c->reason);
	request_db(req, DB_STMT_CANCEL_SESSION, &q, session_cancelled);
}

/* ---- search ------------------------------------------------------------------------ */

static void searched(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	reply_sessions(req, r->res, 0);
}

void handle_search(struct request *req)
{
	const Referral__SearchSessions *s = req->msg->search;
	const struct identity *id = request_identity(req);
	int64_t after_secs = 0;
	char after_id[32] = "0";
	if (slots_parse_page_token(s->page_token, &after_secs, after_id, sizeof after_id) < 0) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "page_token",
			     "not a page token from this server");
		return;
	}
	int64_t from = s->from ? s->from : (int64_t)time(NULL);
	int64_t until = s->until ? s->until : from + 14 * 86400;
	if (until <= from) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "until",
			     "until must be after from");
		return;
	}
	const char *kind = s->kind ? slots_kind_name(s->kind) : "";
	if (!kind) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "kind", "unknown kind");
		return;
	}
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, s->institution_id);
	param_str(&q, s->department_id);
	param_str(&q, kind);
	param_str(&q, s->resource_id);
	param_i64(&q, from);
	param_i64(&q, until);
	param_bool(&q, s->only_available);
	param_i64(&q, after_secs);
	param_str(&q, after_id);
	param_i64(&q, slots_page_size(s->page_size));
	/* A slot shown free may be gone: Book decides, on the primary. */
	request_db_read(req, DB_STMT_SEARCH_SESSIONS, &q, searched);
}
