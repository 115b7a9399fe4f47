/* handle_stats.c: the figures of a community and the compliance report.
 * Computed by PostgreSQL (sql/005_monitoring.sql) on the figures pool
 * (figures.h); this file checks the window and the scope and shapes the
 * answers. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "db_params.h"
#include "db_row.h"
#include "dispatch.h"
#include "figures.h"
#include "server.h"
#include "slots.h"

#define COMPLIANCE_LIMIT_DEFAULT 50u
#define COMPLIANCE_LIMIT_MAX 500u

/* ---- stats ---------------------------------------------------------------------- */

static void stats_done(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	const Referral__StatsRequest *s = req->msg->stats;
	/* One institution (asked for, or the caller's scope): no total. */
	int one = s->institution_id[0] || request_scope(req)[0];
	int n = PQntuples(r->res);
	Referral__Figures *rows = calloc((size_t)n + 1, sizeof *rows);
	Referral__Figures **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
	if (!request_alloc_ok(req, rows, ptrs))
		return;
	Referral__StatsReply reply = REFERRAL__STATS_REPLY__INIT;
	reply.community_id = (char *)request_identity(req)->community_id;
	reply.institutions = ptrs;
	for (int i = 0; i < n; i++) {
		figures_from_row(&rows[i], r->res, i, 0);
		if (rows[i].institution_id[0] == '\0') {
			/* The total; for one institution it only repeats it. */
			if (!one)
				reply.community = &rows[i];
		} else {
			ptrs[reply.n_institutions++] = &rows[i];
		}
	}
	reply.since = s->since;
	reply.until = s->until;
	reply.generated_at = (int64_t)time(NULL);
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_STATS;
	resp.stats = &reply;
	request_reply(req, &resp);
	free(rows);
	free(ptrs);
}

void handle_stats(struct request *req)
{
	Referral__StatsRequest *s = req->msg->stats;
	const struct identity *id = request_identity(req);
	int64_t since, until;
	if (s->community_id[0] && strcmp(s->community_id, id->community_id) != 0) {
		/* A terminal belongs to one community and sees nothing of another. */
		request_fail(req, REFERRAL__ERROR_CODE__PERMISSION_DENIED, "community_id",
			     "a terminal of %s sees the figures of %s only", id->community_id,
			     id->community_id);
		return;
	}
	const char *institution = figures_institution(req, s->institution_id);
	if (!institution || figures_window(req, s->since, s->until, &since, &until) < 0)
		return;
	s->since = since;   /* the answer names the window it covers */
	s->until = until;
	struct db_params q = { 0 };
	param_str(&q, id->community_id);
	param_str(&q, institution);
	param_i64(&q, since);
	param_i64(&q, until);
	request_figures(req, DB_STMT_FIGURES, &q, stats_done);
}

/* ---- compliance ------------------------------------------------------------------- */

/* What compliance_report() rows hold, by column. */
enum {
	C_KIND, C_RULE, C_DESCRIPTION, C_SOURCE, C_INSTITUTION, C_RULES, C_PUBLISHED,
	C_RESERVED, C_FLOOR, C_SESSIONS, C_BELOW_FLOOR, C_RELEASED_POOL, C_UNUSED, C_OVERDUE,
	C_STRANDED, C_SESSION, C_DEPARTMENT, C_RESOURCE_KIND, C_RESOURCE, C_STARTS, C_REQUIRED,
	C_BOOKED, C_FOUND,
};

struct compliance_rows {
	Referral__ComplianceRule *rules, **rule_ptrs;
	Referral__ComplianceHospital *hospitals, **hospital_ptrs;
	Referral__ComplianceSession *sessions, **session_ptrs;
	char **rule_lists;   /* each hospital's rules, split in place */
	char *rule_text;     /* the strings rule_lists point into */
};

static uint64_t col_u64(const PGresult *res, int row, int col)
{
	return (uint64_t)db_i64(res, row, col);
}

static void rule_from_row(Referral__ComplianceRule *x, const PGresult *res, int i)
{
	referral__compliance_rule__init(x);
	x->rule = db_str(res, i, C_RULE);
	x->description = db_str(res, i, C_DESCRIPTION);
	x->source = db_str(res, i, C_SOURCE);
}

/* rules is "reserve_floor,reserved_unused": split into *text at *list. */
static void hospital_from_row(Referral__ComplianceHospital *h, const PGresult *res, int i,
			      char **list, char **text)
{
	referral__compliance_hospital__init(h);
	h->institution_id = db_str(res, i, C_INSTITUTION);
	h->sessions = (uint32_t)col_u64(res, i, C_SESSIONS);
	h->published_units = col_u64(res, i, C_PUBLISHED);
	h->reserved_published = col_u64(res, i, C_RESERVED);
	h->reserved_share = figures_ratio((double)h->reserved_published, (double)h->published_units);
	h->floor_pct = (uint32_t)col_u64(res, i, C_FLOOR);
	h->sessions_below_floor = (uint32_t)col_u64(res, i, C_BELOW_FLOOR);
	h->released_pool = col_u64(res, i, C_RELEASED_POOL);
	h->unused_units = col_u64(res, i, C_UNUSED);
	h->unused_share = figures_ratio((double)h->unused_units, (double)h->released_pool);
	h->sessions_release_overdue = (uint32_t)col_u64(res, i, C_OVERDUE);
	h->stranded_units = col_u64(res, i, C_STRANDED);
	h->rules = list;
	const char *src = db_str(res, i, C_RULES);
	if (src[0] == '\0')
		return;
	strcpy(*text, src);
	for (char *tok = strtok(*text, ","); tok; tok = strtok(NULL, ","))
		list[h->n_rules++] = tok;
	*text += strlen(src) + 1;
}

static void session_from_row(Referral__ComplianceSession *x, const PGresult *res, int i)
{
	referral__compliance_session__init(x);
	x->rule = db_str(res, i, C_RULE);
	x->session_id = db_i64(res, i, C_SESSION);
	x->institution_id = db_str(res, i, C_INSTITUTION);
	x->department_id = db_str(res, i, C_DEPARTMENT);
	x->kind = slots_kind_from_name(db_str(res, i, C_RESOURCE_KIND));
	x->resource_id = db_str(res, i, C_RESOURCE);
	x->starts_at = db_i64(res, i, C_STARTS);
	x->capacity_published = (uint32_t)col_u64(res, i, C_PUBLISHED);
	x->reserved_published = (uint32_t)col_u64(res, i, C_RESERVED);
	x->reserved_required = (uint32_t)col_u64(res, i, C_REQUIRED);
	x->reserved_booked = (uint32_t)col_u64(res, i, C_BOOKED);
	x->unused_units = (uint32_t)col_u64(res, i, C_UNUSED);
}

static void compliance_rows_free(struct compliance_rows *c)
{
	free(c->rules);
	free(c->rule_ptrs);
	free(c->hospitals);
	free(c->hospital_ptrs);
	free(c->sessions);
	free(c->session_ptrs);
	free(c->rule_lists);
	free(c->rule_text);
}

/* Room for every row as any kind: the report is a few hundred rows. */
static int compliance_rows_alloc(struct compliance_rows *c, const PGresult *res)
{
	size_t n = (size_t)PQntuples(res) + 1, text = 1;
	for (int i = 0; i < PQntuples(res); i++)
		text += strlen(db_str(res, i, C_RULES)) + 1;
	c->rules = calloc(n, sizeof *c->rules);
	c->rule_ptrs = calloc(n, sizeof *c->rule_ptrs);
	c->hospitals = calloc(n, sizeof *c->hospitals);
	c->hospital_ptrs = calloc(n, sizeof *c->hospital_ptrs);
	c->sessions = calloc(n, sizeof *c->sessions);
	c->session_ptrs = calloc(n, sizeof *c->session_ptrs);
	c->rule_lists = calloc(n * 3, sizeof *c->rule_lists);
	c->rule_text = malloc(text);
	return c->rules && c->rule_ptrs && c->hospitals && c->hospital_ptrs && c->sessions &&
	       c->session_ptrs && c->rule_lists && c->rule_text ? 0 : -1;
}

static void compliance_done(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	const Referral__ComplianceRequest *q = req->msg->compliance;
	struct compliance_rows c = { 0 };
	if (compliance_rows_alloc(&c, r->res) < 0) {
		compliance_rows_free(&c);
		request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "out of memory");
		return;
	}
	Referral__ComplianceReply reply = REFERRAL__COMPLIANCE_REPLY__INIT;
	reply.community_id = (char *)request_identity(req)->community_id;
	reply.rules = c.rule_ptrs;
	reply.hospitals = c.hospital_ptrs;
	reply.sessions = c.session_ptrs;
	char *text = c.rule_text;
	for (int i = 0; i < PQntuples(r->res); i++) {
		const char *kind = db_str(r->res, i, C_KIND);
		if (strcmp(kind, "rule") == 0) {
			rule_from_row(&c.rules[i], r->res, i);
			c.rule_ptrs[reply.n_rules++] = &c.rules[i];
		} else if (strcmp(kind, "hospital") == 0) {
			hospital_from_row(&c.hospitals[i], r->res, i, &c.rule_lists[i * 3], &text);
			reply.hospitals[reply.n_hospitals++] = &c.hospitals[i];
		} else {
			session_from_row(&c.sessions[i], r->res, i);
			reply.sessions[reply.n_sessions++] = &c.sessions[i];
			reply.sessions_found = (uint32_t)col_u64(r->res, i, C_FOUND);
		}
	}
	reply.since = q->since;
	reply.until = q->until;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_COMPLIANCE;
	resp.compliance = &reply;
	request_reply(req, &resp);
	compliance_rows_free(&c);
}

void handle_compliance(struct request *req)
{
	Referral__ComplianceRequest *q = req->msg->compliance;
	const struct identity *id = request_identity(req);
	int64_t since, until;
	const char *institution = figures_institution(req, q->institution_id);
	if (!institution || figures_window(req, q->since, q->until, &since, &until) < 0)
		return;
	q->since = since;
	q->until = until;
	unsigned limit = q->limit == 0 ? COMPLIANCE_LIMIT_DEFAULT
				       : q->limit > COMPLIANCE_LIMIT_MAX ? COMPLIANCE_LIMIT_MAX : q->limit;
	struct db_params p = { 0 };
	param_str(&p, id->community_id);
	param_str(&p, institution);
	param_i64(&p, since);
	param_i64(&p, until);
	param_i64(&p, limit);
	request_figures(req, DB_STMT_COMPLIANCE, &p, compliance_done);
}
