/* handle_hello.c: the handshake. Checks the protocol version, then the
 * terminal's credentials against the database. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dispatch.h"
#include "log.h"
#include "server.h"
#include "token.h"
#include "wire.h"

static int field_ok(const char *s, size_t max)
{
	return s && s[0] && strlen(s) < max;
}

static void hello_refused(struct request *req, Referral__ErrorCode code, const char *field,
			  const char *msg)
{
	struct conn *c = req->conn;
	req->srv->stats.handshakes_failed++;
	/* One try per connection slows down guessing. The connection stays
	 * AUTHENTICATING while the answer is queued, so frames pipelined
	 * behind the Hello are never processed; then it closes. */
	c->state = CONN_AUTHENTICATING;
	request_fail(req, code, field, "%s", msg);
	conn_close(c, msg, 1);
}

static void hello_looked_up(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	Referral__Hello *h = req->msg->hello;
	if (r->outcome != DB_OK) {
		conn_handshake_failed(req->conn);
		request_fail_db(req, r);
		return;
	}
	/* Unknown terminal, revoked terminal and wrong token look the same from
	 * outside; the log says which. */
	const char *why = NULL;
	if (PQntuples(r->res) != 1)
		why = "unknown terminal";
	else if (strcmp(PQgetvalue(r->res, 0, 4), "t") == 0)
		why = "revoked terminal";
	else if (!token_verify(h->token, PQgetvalue(r->res, 0, 3)))
		why = "wrong token";
	if (why) {
		log_info("hello from %s refused: %s %s/%s", req->conn->peer, why, h->community_id,
			 h->terminal_id);
		hello_refused(req, REFERRAL__ERROR_CODE__UNAUTHENTICATED, "hello",
			      "bad credentials");
		return;
	}
	struct identity id;
	memset(&id, 0, sizeof id);
	snprintf(id.community_id, sizeof id.community_id, "%s", h->community_id);
	snprintf(id.terminal_id, sizeof id.terminal_id, "%s", h->terminal_id);
	snprintf(id.institution_id, sizeof id.institution_id, "%s", PQgetvalue(r->res, 0, 0));
	snprintf(id.practitioner_id, sizeof id.practitioner_id, "%s", PQgetvalue(r->res, 0, 2));
	id.role = wire_role_from_name(PQgetvalue(r->res, 0, 1));
	conn_authenticated(req->conn, &id);
	req->srv->stats.handshakes_ok++;
	log_debug("conn from %s authenticated as %s/%s (%s)", req->conn->peer, id.community_id,
		  id.terminal_id, wire_role_name(id.role));

	Referral__HelloReply reply = REFERRAL__HELLO_REPLY__INIT;
	reply.protocol_version = REFERRAL_PROTOCOL_VERSION;
	reply.server_version = REFERRALD_VERSION;
	reply.community_id = id.community_id;
	reply.terminal_id = id.terminal_id;
	reply.institution_id = id.institution_id;
	reply.practitioner_id = id.practitioner_id;
	reply.role = id.role;
	reply.max_frame_bytes = (uint32_t)req->srv->cfg.max_frame_bytes;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_HELLO;
	resp.hello = &reply;
	request_reply(req, &resp);
}

void handle_hello(struct request *req)
{
	Referral__Hello *h = req->msg->hello;
	if (h->protocol_version != REFERRAL_PROTOCOL_VERSION) {
		char msg[128];
		snprintf(msg, sizeof msg, "protocol version %u not supported; this server speaks %u",
			 h->protocol_version, REFERRAL_PROTOCOL_VERSION);
		hello_refused(req, REFERRAL__ERROR_CODE__VERSION_MISMATCH, "hello.protocol_version",
			      msg);
		return;
	}
	const struct {
		const char *value, *field;
	} required[] = {
		{ h->community_id, "hello.community_id" },
		{ h->terminal_id, "hello.terminal_id" },
		{ h->token, "hello.token" },
	};
	for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
		if (!field_ok(required[i].value, 64)) {
			request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, required[i].field,
				     "%s is required (at most 63 bytes)", required[i].field);
			return;
		}
	}
	const char *params[] = { h->community_id, h->terminal_id };
	enum db_outcome refused;
	req->conn->state = CONN_AUTHENTICATING;
	if (db_exec(req->srv->db, DB_STMT_TERMINAL_LOOKUP, 2, params, hello_looked_up, req,
		    &refused) < 0) {
		conn_handshake_failed(req->conn);
		struct db_result r = { .outcome = refused };
		request_fail_db(req, &r);
	}
}
