/* handle_hello.c: the handshake. Checks the protocol version, looks the
 * terminal up in the database, and verifies its token on a worker thread
 * (PBKDF2 is slow on purpose; on the loop it would stall every connection). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dispatch.h"
#include "log.h"
#include "server.h"
#include "terminals.h"
#include "token.h"
#include "wire.h"
#include "workers.h"

/* A Hello whose token is being checked on a worker thread. The thread sees
 * only the strings copied here. */
struct hello_check {
	struct request *req;
	const char *why;          /* set when refused before the check */
	int ok;                   /* the worker's verdict */
	int by_certificate;       /* the TLS client certificate vouches; no token given */
	char token[64];
	char stored[256];
	struct identity id;
};

/* Unknown terminals are checked against this, so that they take as long
 * to refuse as a wrong token does: timing does not tell which ids exist. */
static const char dummy_hash[] =
	"pbkdf2-sha256$10000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

static int field_ok(const char *s, size_t max)
{
	return s && s[0] && strlen(s) < max;
}

/* With a client certificate the Hello may leave the terminal out: the
 * certificate names it. */
static const char *hello_community(const struct request *req, const Referral__Hello *h)
{
	return h->community_id[0] || !req->conn->has_cert ? h->community_id
							   : req->conn->cert_community;
}

static const char *hello_terminal(const struct request *req, const Referral__Hello *h)
{
	return h->terminal_id[0] || !req->conn->has_cert ? h->terminal_id : req->conn->cert_terminal;
}

/* A Hello on a connection with a client certificate must name the
 * certificate's terminal, if it names one at all. */
static int matches_certificate(const struct request *req, const Referral__Hello *h)
{
	const struct conn *c = req->conn;
	return !c->has_cert || (strcmp(hello_community(req, h), c->cert_community) == 0 &&
				strcmp(hello_terminal(req, h), c->cert_terminal) == 0);
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

static void hello_accepted(struct request *req, const struct identity *id, int by_certificate)
{
	if (req->conn->state != CONN_CLOSING) {
		req->conn->term = terminals_attach(req->srv, id);
		if (!req->conn->term) {
			log_info("hello from %s refused: %s/%s has %d connections already",
				 req->conn->peer, id->community_id, id->terminal_id,
				 req->srv->cfg.max_connections_per_terminal);
			hello_refused(req, REFERRAL__ERROR_CODE__OVERLOADED, "hello",
				      "too many connections for this terminal");
			return;
		}
	}
	conn_authenticated(req->conn, id);
	req->srv->stats.handshakes_ok++;
	log_debug("conn from %s authenticated as %s/%s (%s)", req->conn->peer, id->community_id,
		  id->terminal_id, wire_role_name(id->role));

	Referral__HelloReply reply = REFERRAL__HELLO_REPLY__INIT;
	reply.protocol_version = REFERRAL_PROTOCOL_VERSION;
	reply.server_version = REFERRALD_VERSION;
	reply.community_id = (char *)id->community_id;
	reply.terminal_id = (char *)id->terminal_id;
	reply.institution_id = (char *)id->institution_id;
	reply.practitioner_id = (char *)id->practitioner_id;
	reply.role = id->role;
	reply.max_frame_bytes = (uint32_t)req->srv->cfg.max_frame_bytes;
	reply.authenticated_by = by_certificate ? "certificate" : "token";
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_HELLO;
	resp.hello = &reply;
	request_reply(req, &resp);
}

static void verify_work(void *arg)
{
	struct hello_check *hc = arg;
	hc->ok = hc->by_certificate || token_verify(hc->token, hc->stored);
}

static void verify_done(void *arg, int cancelled)
{
	struct hello_check *hc = arg;
	struct request *req = hc->req;
	if (cancelled) {
		conn_handshake_failed(req->conn);
		request_fail(req, REFERRAL__ERROR_CODE__UNAVAILABLE, NULL, "server shutting down");
	} else if (hc->why || !hc->ok) {
		Referral__Hello *h = req->msg->hello;
		/* Unknown terminal, revoked terminal and wrong token look the
		 * same from outside; the log says which. */
		log_info("hello from %s refused: %s %s/%s", req->conn->peer,
			 hc->why ? hc->why : "wrong token", hello_community(req, h),
			 hello_terminal(req, h));
		hello_refused(req, REFERRAL__ERROR_CODE__UNAUTHENTICATED, "hello", "bad credentials");
	} else {
		hello_accepted(req, &hc->id, hc->by_certificate);
	}
	explicit_bzero(hc->token, sizeof hc->token);
	free(hc);
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
	struct hello_check *hc = calloc(1, sizeof *hc);
	if (!hc) {
		conn_handshake_failed(req->conn);
		request_fail(req, REFERRAL__ERROR_CODE__OVERLOADED, NULL, "out of memory");
		return;
	}
	hc->req = req;
	snprintf(hc->token, sizeof hc->token, "%s", h->token);
	hc->by_certificate = req->conn->has_cert && !h->token[0];
	if (PQntuples(r->res) != 1) {
		hc->why = "unknown terminal";
		snprintf(hc->stored, sizeof hc->stored, "%s", dummy_hash);
	} else {
		snprintf(hc->stored, sizeof hc->stored, "%s", PQgetvalue(r->res, 0, 3));
		if (strcmp(PQgetvalue(r->res, 0, 4), "t") == 0)
			hc->why = "revoked terminal";
		struct identity *id = &hc->id;
		snprintf(id->community_id, sizeof id->community_id, "%s", hello_community(req, h));
		snprintf(id->terminal_id, sizeof id->terminal_id, "%s", hello_terminal(req, h));
		snprintf(id->institution_id, sizeof id->institution_id, "%s", PQgetvalue(r->res, 0, 0));
		snprintf(id->practitioner_id, sizeof id->practitioner_id, "%s", PQgetvalue(r->res, 0, 2));
		id->role = wire_role_from_name(PQgetvalue(r->res, 0, 1));
		id->credentials_us = strtoll(PQgetvalue(r->res, 0, 5), NULL, 10);
	}
	if (workers_submit(req->srv->workers, verify_work, verify_done, hc) < 0) {
		free(hc);
		conn_handshake_failed(req->conn);
		request_fail(req, REFERRAL__ERROR_CODE__OVERLOADED, NULL,
			     "too many handshakes being checked");
	}
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
		{ hello_community(req, h), "hello.community_id" },
		{ hello_terminal(req, h), "hello.terminal_id" },
		{ req->conn->has_cert && !h->token[0] ? "-" : h->token, "hello.token" },
	};
	for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
		if (!field_ok(required[i].value, 64)) {
			request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, required[i].field,
				     "%s is required (at most 63 bytes)", required[i].field);
			return;
		}
	}
	if (!matches_certificate(req, h)) {
		log_info("hello from %s refused: certificate of %s/%s, hello for %s/%s",
			 req->conn->peer, req->conn->cert_community, req->conn->cert_terminal,
			 h->community_id, h->terminal_id);
		hello_refused(req, REFERRAL__ERROR_CODE__UNAUTHENTICATED, "hello", "bad credentials");
		return;
	}
	const char *params[] = { hello_community(req, h), hello_terminal(req, h) };
	enum db_outcome refused;
	req->conn->state = CONN_AUTHENTICATING;
	if (db_exec(req->srv->db, DB_STMT_TERMINAL_LOOKUP, 2, params, hello_looked_up, req,
		    &refused) < 0) {
		conn_handshake_failed(req->conn);
		struct db_result r = { .outcome = refused };
		request_fail_db(req, &r);
	}
}
