/*
 * request.h: one request in flight, from its decoded frame to its one reply.
 *
 * A handler receives a request and must end it exactly once, with
 * request_reply() or request_fail(); both free it. Handlers see the caller's
 * identity and the server, never the socket.
 */
#ifndef REFERRALD_REQUEST_H
#define REFERRALD_REQUEST_H

#include <stdint.h>

#include "conn.h"
#include "referral.pb-c.h"

struct server;
struct db_result;
struct route;

struct request {
	struct server *srv;
	struct conn *conn;
	uint64_t id;
	Referral__Request *msg;
	const struct route *route;
	long long started_ns;
};

/* The body of resp (its oneof) is set by the caller; the id and the sending
 * are done here. */
void request_reply(struct request *req, Referral__Response *resp);
void request_fail(struct request *req, Referral__ErrorCode code, const char *field,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* For the arrays of a list reply: 1 when both allocations succeeded; else
 * frees both, answers INTERNAL "out of memory" and returns 0. */
int request_alloc_ok(struct request *req, void *rows, void *ptrs);
/* Answers a failed database call with the matching typed error. */
void request_fail_db(struct request *req, const struct db_result *r);

/* Runs a statement for the request; `done` gets the request as its argument.
 * When the pool refuses at once, the request is answered here. */
struct db_params;
void request_db(struct request *req, int stmt, const struct db_params *p,
		void (*done)(void *req, const struct db_result *r));

/* The same for a read that tolerates the replica's bounded staleness
 * (replica.h): search and monitoring figures, never a booking's decision. */
void request_db_read(struct request *req, int stmt, const struct db_params *p,
		     void (*done)(void *req, const struct db_result *r));

static inline const struct identity *request_identity(const struct request *req)
{
	return &req->conn->ident;
}

/* The institution whose data the caller may see, or "" for the whole
 * community (administrators and monitoring). Every statement that reads or
 * changes institution data takes it as a parameter. */
static inline const char *request_scope(const struct request *req)
{
	const struct identity *id = request_identity(req);
	return id->role == REFERRAL__ROLE__ROLE_ADMIN || id->role == REFERRAL__ROLE__ROLE_MONITOR
		       ? "" : id->institution_id;
}

#endif
