/* dispatch.c: the request table and the path from frame to handler. */
#include "dispatch.h"

#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "server.h"
#include "terminals.h"
#include "wire.h"

#define CLINIC ROLE_BIT(REFERRAL__ROLE__ROLE_CLINIC)
#define DESK ROLE_BIT(REFERRAL__ROLE__ROLE_DESK)
#define BILLING ROLE_BIT(REFERRAL__ROLE__ROLE_BILLING)
#define MONITOR ROLE_BIT(REFERRAL__ROLE__ROLE_MONITOR)
#define ADMIN ROLE_BIT(REFERRAL__ROLE__ROLE_ADMIN)
#define R(body_enum, name, fn, roles) { REFERRAL__REQUEST__BODY_##body_enum, name, fn, roles }

/* The one authorisation table: who may make each request. */
const struct route routes[] = {
	R(HELLO, "hello", handle_hello, ROLES_HANDSHAKE),
	R(PING, "ping", handle_ping, ROLES_ANY),
	R(STATUS, "status", handle_status, MONITOR | ADMIN),
	R(PUBLISH, "publish", handle_publish, DESK | ADMIN),
	R(CHANGE_CAPACITY, "change_capacity", handle_change_capacity, DESK | ADMIN),
	R(CANCEL_SESSION, "cancel_session", handle_cancel_session, DESK | ADMIN),
	R(SEARCH, "search", handle_search, CLINIC | DESK | MONITOR | ADMIN),
	R(BOOK, "book", handle_book, CLINIC | DESK | ADMIN),
	R(CANCEL_BOOKING, "cancel_booking", handle_cancel_booking, CLINIC | DESK | ADMIN),
	R(EMERGENCY_BOOK, "emergency_book", handle_emergency_book, DESK),
	R(LIST_BOOKINGS, "list_bookings", handle_list_bookings, CLINIC | DESK | MONITOR | ADMIN),
	/* Referrals: who may move which referral (the receiving or referring
	 * side) is decided per action by the state machine in the database. */
	R(REFER_UP, "refer_up", handle_refer_up, CLINIC),
	R(REFER_DOWN, "refer_down", handle_refer_down, DESK),
	R(REFERRAL_ACTION, "referral_action", handle_referral_action, CLINIC | DESK | ADMIN),
	R(GET_REFERRAL, "get_referral", handle_get_referral, CLINIC | DESK | BILLING | MONITOR | ADMIN),
	R(WORKLIST, "worklist", handle_worklist, CLINIC | DESK | BILLING | MONITOR | ADMIN),
	R(HISTORY, "history", handle_history, CLINIC | DESK | BILLING | MONITOR | ADMIN),
	R(SUBSCRIBE, "subscribe", handle_subscribe, CLINIC | DESK | BILLING | MONITOR | ADMIN),
	/* Deductibles: a billing office records the stays of its own institution
	 * admitted without a referral (admissions through a referral are
	 * recorded by the referral's admit move) and reads their decisions. */
	R(RECORD_STAY, "record_stay", handle_record_stay, BILLING | ADMIN),
	R(DISCHARGE_STAY, "discharge_stay", handle_discharge_stay, BILLING | ADMIN),
	R(REVERSE_STAY, "reverse_stay", handle_reverse_stay, BILLING | ADMIN),
	R(GET_DEDUCTIBLE, "get_deductible", handle_get_deductible, BILLING | MONITOR | ADMIN),
	R(LIST_DEDUCTIBLES, "list_deductibles", handle_list_deductibles, BILLING | MONITOR | ADMIN),
	R(SET_DEDUCTIBLE_POLICY, "set_deductible_policy", handle_set_deductible_policy, ADMIN),
	R(GET_DEDUCTIBLE_POLICY, "get_deductible_policy", handle_get_deductible_policy, ROLES_ANY),
	/* Security (docs/security.md). */
	R(ADD_TERMINAL, "add_terminal", handle_add_terminal, ADMIN),
	R(LIST_TERMINALS, "list_terminals", handle_list_terminals, ADMIN),
	R(REVOKE_TERMINAL, "revoke_terminal", handle_revoke_terminal, ADMIN),
	R(ROTATE_TERMINAL, "rotate_terminal", handle_rotate_terminal, ADMIN),
	R(RESOLVE_PATIENT, "resolve_patient", handle_resolve_patient, CLINIC | DESK | BILLING | ADMIN),
	/* Monitoring: desks see their own hospital's figures (handle_stats.c
	 * scopes them); the live counters are the daemon's, for operators. */
	R(STATS, "stats", handle_stats, DESK | MONITOR | ADMIN),
	R(COMPLIANCE, "compliance", handle_compliance, DESK | MONITOR | ADMIN),
	R(LIVE, "live", handle_live, MONITOR | ADMIN),
};
const unsigned routes_count = sizeof routes / sizeof routes[0];
/* Every route has its own row in the request metrics. */
_Static_assert(sizeof routes / sizeof routes[0] <= METRICS_MAX_ROUTES,
	       "raise METRICS_MAX_ROUTES in metrics.h");

const struct route *dispatch_find(Referral__Request__BodyCase body)
{
	for (unsigned i = 0; i < routes_count; i++)
		if (routes[i].body == body)
			return &routes[i];
	return NULL;
}

/* Checks everything that does not need the handler: the request is known,
 * complete, and allowed in this connection state for this role. */
static int admissible(struct request *req)
{
	struct conn *c = req->conn;
	char path[128];
	if (req->msg->body_case == REFERRAL__REQUEST__BODY__NOT_SET) {
		if (wire_find_unknown_field(&req->msg->base, path, sizeof path))
			request_fail(req, REFERRAL__ERROR_CODE__UNIMPLEMENTED, path,
				     "request type %s is not known to this server", path);
		else
			request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "body",
				     "request has no body");
		return 0;
	}
	if (wire_find_unknown_field(&req->msg->base, path, sizeof path)) {
		/* A field we would silently ignore could be one the clinic
		 * relies on: refuse rather than half-understand. */
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, path,
			     "unknown field %s", path);
		return 0;
	}
	if (req->route == NULL) {
		request_fail(req, REFERRAL__ERROR_CODE__UNIMPLEMENTED, NULL,
			     "request type %d is not implemented", (int)req->msg->body_case);
		return 0;
	}
	if (req->route->roles == ROLES_HANDSHAKE) {
		if (c->state != CONN_HANDSHAKE) {
			request_fail(req, REFERRAL__ERROR_CODE__FAILED_PRECONDITION, NULL,
				     "already authenticated");
			return 0;
		}
		return 1;
	}
	if (c->state != CONN_READY) {
		request_fail(req, REFERRAL__ERROR_CODE__UNAUTHENTICATED, NULL,
			     "send Hello with valid credentials first");
		return 0;
	}
	if (!(req->route->roles & ROLE_BIT(c->ident.role))) {
		request_fail(req, REFERRAL__ERROR_CODE__PERMISSION_DENIED, NULL,
			     "role %s may not make %s requests", wire_role_name(c->ident.role),
			     req->route->name);
		return 0;
	}
	return 1;
}

int dispatch_frame(struct conn *c, const uint8_t *body, size_t len)
{
	struct server *srv = c->srv;
	Referral__Request *msg =
		(Referral__Request *)wire_unpack(&referral__request__descriptor, body, len);
	if (msg == NULL) {
		srv->stats.frames_malformed++;
		Referral__Error err = REFERRAL__ERROR__INIT;
		err.code = REFERRAL__ERROR_CODE__MALFORMED;
		err.message = "frame is not a valid Request message";
		Referral__Response resp = REFERRAL__RESPONSE__INIT;
		resp.error = &err;
		conn_send(c, &resp);
		return -1;
	}
	struct request *req = calloc(1, sizeof *req);
	if (req == NULL) {
		referral__request__free_unpacked(msg, NULL);
		return -1;
	}
	req->srv = srv;
	req->conn = c;
	req->msg = msg;
	req->id = msg->request_id;
	req->route = dispatch_find(msg->body_case);
	req->started_ns = monotonic_ns();
	c->inflight++;
	srv->inflight++;
	char path[128];
	if (wire_find_bad_string(&referral__request__descriptor, body, len, path, sizeof path)) {
		/* Checked before anything else reads a (possibly cut) string. */
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, path,
			     "%s is not valid UTF-8 or contains a NUL byte", path);
		return 0;
	}
	/* The terminal's rate limit applies to every request after Hello. */
	if (admissible(req) && (req->route->roles == ROLES_HANDSHAKE || terminals_admit(req)))
		req->route->handler(req);
	return 0;
}
