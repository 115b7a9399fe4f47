/* handle_terminals.c: terminal management for the community's
 * administrators: add, list, revoke, rotate. A new token is made here,
 * hashed on a worker thread (PBKDF2 is slow on purpose), stored only as its
 * hash, and shown once in the answer. Revoking or rotating closes the
 * terminal's older connections here at once, and on other daemons through
 * the database's notification (terminals.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_params.h"
#include "db_row.h"
#include "dispatch.h"
#include "log.h"
#include "server.h"
#include "terminals.h"
#include "token.h"
#include "wire.h"
#include "workers.h"

/* The columns of TERMINAL_COLS, in order. */
enum { COL_TERMINAL, COL_INSTITUTION, COL_ROLE, COL_PRACTITIONER, COL_CREATED, COL_REVOKED,
       COL_REVOKED_BY, COL_ROTATED, COL_CHANGED, COL_COMMUNITY };

static void terminal_from_row(Referral__TerminalInfo *t, const PGresult *res, int row)
{
	referral__terminal_info__init(t);
	t->terminal_id = db_str(res, row, COL_TERMINAL);
	t->institution_id = db_str(res, row, COL_INSTITUTION);
	t->role = wire_role_from_name(db_str(res, row, COL_ROLE));
	t->practitioner_id = db_str(res, row, COL_PRACTITIONER);
	t->created_at = db_i64(res, row, COL_CREATED);
	t->revoked_at = db_i64(res, row, COL_REVOKED);
	t->revoked_by = db_str(res, row, COL_REVOKED_BY);
	t->rotated_at = db_i64(res, row, COL_ROTATED);
}

/* Answers with the one terminal of r (and the token, when one was made),
 * then closes the terminal's connections older than the change. */
static void reply_terminal(struct request *req, const struct db_result *r, const char *token)
{
	if (PQntuples(r->res) != 1) {
		request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "no terminal returned");
		return;
	}
	Referral__TerminalInfo t;
	terminal_from_row(&t, r->res, 0);
	t.token = (char *)(token ? token : "");
	char community[64], terminal[64];
	snprintf(community, sizeof community, "%s", db_str(r->res, 0, COL_COMMUNITY));
	snprintf(terminal, sizeof terminal, "%s", t.terminal_id);
	long long changed = db_i64(r->res, 0, COL_CHANGED);
	struct server *srv = req->srv;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_TERMINAL;
	resp.terminal = &t;
	request_reply(req, &resp);
	/* After the answer: a terminal rotating its own token gets the new
	 * one before its connection closes. */
	terminals_changed(srv, community, terminal, changed);
}

static int need(struct request *req, const char *value, const char *field)
{
	if (value[0] && strlen(value) < 64)
		return 1;
	request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, field,
		     "%s is required (at most 63 bytes)", field);
	return 0;
}

/* ---- a new token, hashed off the loop, then stored ------------------------------ */

struct token_job {
	struct request *req;
	enum db_stmt stmt;
	int failed;
	char token[64];
	char hash[256];
	int iterations;
};

static void token_stored(void *arg, const struct db_result *r)
{
	struct token_job *job = arg;
	if (r->outcome != DB_OK)
		request_fail_db(job->req, r);
	else
		reply_terminal(job->req, r, job->token);
	explicit_bzero(job->token, sizeof job->token);
	free(job);
}

static void hash_work(void *arg)
{
	struct token_job *job = arg;
	job->failed = token_hash(job->token, job->iterations, job->hash, sizeof job->hash) < 0;
}

static void hash_done(void *arg, int cancelled)
{
	struct token_job *job = arg;
	struct request *req = job->req;
	const struct identity *id = request_identity(req);
	if (cancelled || job->failed) {
		request_fail(req, REFERRAL__ERROR_CODE__UNAVAILABLE, NULL, "cannot hash the token now");
		free(job);
		return;
	}
	struct db_params p = { 0 };
	param_str(&p, id->community_id);
	param_str(&p, id->terminal_id);
	if (job->stmt == DB_STMT_TERMINAL_ADD) {
		Referral__AddTerminal *a = req->msg->add_terminal;
		param_str(&p, a->terminal_id);
		param_str(&p, a->institution_id);
		param_str(&p, wire_role_name(a->role));
		param_opt(&p, a->practitioner_id);
	} else {
		param_str(&p, req->msg->rotate_terminal->terminal_id);
	}
	param_str(&p, job->hash);
	enum db_outcome refused;
	if (db_exec(req->srv->db, job->stmt, p.n, p.v, token_stored, job, &refused) < 0) {
		struct db_result r = { .outcome = refused, .column = "" };
		request_fail_db(req, &r);
		free(job);
	}
}

static void new_token_then(struct request *req, enum db_stmt stmt)
{
	struct token_job *job = calloc(1, sizeof *job);
	if (!job || token_generate(job->token, sizeof job->token) < 0) {
		free(job);
		request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "cannot make a token");
		return;
	}
	job->req = req;
	job->stmt = stmt;
	job->iterations = req->srv->cfg.pbkdf2_iterations;
	if (workers_submit(req->srv->workers, hash_work, hash_done, job) < 0) {
		free(job);
		request_fail(req, REFERRAL__ERROR_CODE__OVERLOADED, NULL, "too many tokens being hashed");
	}
}

/* ---- the requests --------------------------------------------------------------- */

void handle_add_terminal(struct request *req)
{
	Referral__AddTerminal *a = req->msg->add_terminal;
	if (!need(req, a->terminal_id, "terminal_id") || !need(req, a->institution_id, "institution_id"))
		return;
	if (a->role < REFERRAL__ROLE__ROLE_CLINIC || a->role > REFERRAL__ROLE__ROLE_ADMIN) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "role",
			     "role must be clinic, desk, billing, monitor or admin");
		return;
	}
	if (strlen(a->practitioner_id) >= 64) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "practitioner_id",
			     "practitioner_id is at most 63 bytes");
		return;
	}
	new_token_then(req, DB_STMT_TERMINAL_ADD);
}

void handle_rotate_terminal(struct request *req)
{
	if (need(req, req->msg->rotate_terminal->terminal_id, "terminal_id"))
		new_token_then(req, DB_STMT_TERMINAL_ROTATE);
}

static void revoked(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	log_info("terminal %s/%s revoked by %s", request_identity(req)->community_id,
		 req->msg->revoke_terminal->terminal_id, request_identity(req)->terminal_id);
	reply_terminal(req, r, NULL);
}

void handle_revoke_terminal(struct request *req)
{
	const char *t = req->msg->revoke_terminal->terminal_id;
	if (!need(req, t, "terminal_id"))
		return;
	/* An administrator who locks itself out needs the database to get in. */
	if (strcmp(t, request_identity(req)->terminal_id) == 0) {
		request_fail(req, REFERRAL__ERROR_CODE__FAILED_PRECONDITION, "terminal_id",
			     "a terminal cannot revoke itself; use another administrator terminal");
		return;
	}
	struct db_params p = { 0 };
	param_str(&p, request_identity(req)->community_id);
	param_str(&p, request_identity(req)->terminal_id);
	param_str(&p, t);
	request_db(req, DB_STMT_TERMINAL_REVOKE, &p, revoked);
}

static void listed(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	int n = PQntuples(r->res);
	Referral__TerminalInfo *items = calloc((size_t)n + 1, sizeof *items);
	Referral__TerminalInfo **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
	if (!request_alloc_ok(req, items, ptrs))
		return;
	for (int i = 0; i < n; i++) {
		terminal_from_row(&items[i], r->res, i);
		ptrs[i] = &items[i];
	}
	Referral__TerminalInfoList list = REFERRAL__TERMINAL_INFO_LIST__INIT;
	list.n_terminals = (size_t)n;
	list.terminals = ptrs;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_TERMINALS;
	resp.terminals = &list;
	request_reply(req, &resp);
	free(items);
	free(ptrs);
}

void handle_list_terminals(struct request *req)
{
	Referral__ListTerminals *l = req->msg->list_terminals;
	if (strlen(l->institution_id) >= 64) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "institution_id",
			     "institution_id is at most 63 bytes");
		return;
	}
	struct db_params p = { 0 };
	param_str(&p, request_identity(req)->community_id);
	param_str(&p, l->institution_id);
	param_bool(&p, l->include_revoked);
	request_db(req, DB_STMT_TERMINAL_LIST, &p, listed);
}
