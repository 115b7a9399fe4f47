/* handle_health.c: ping and status, answered from memory. */
#include <time.h>

#include "db.h"
#include "dispatch.h"
#include "migrate.h"
#include "server.h"
#include "wire.h"

void handle_ping(struct request *req)
{
	Referral__Pong pong = REFERRAL__PONG__INIT;
	pong.payload = req->msg->ping->payload;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_PING;
	resp.ping = &pong;
	request_reply(req, &resp);
}

void handle_status(struct request *req)
{
	struct server *srv = req->srv;
	struct db_pool_stats db;
	db_pool_get_stats(srv->db, &db);
	Referral__StatusReply st = REFERRAL__STATUS_REPLY__INIT;
	st.server_version = REFERRALD_VERSION;
	st.protocol_version = REFERRAL_PROTOCOL_VERSION;
	st.uptime_seconds = (uint64_t)(time(NULL) - srv->started_at);
	st.connections = srv->n_conns;
	st.requests_total = srv->stats.requests_total;
	st.requests_in_flight = srv->inflight;
	st.database_state = (char *)db_pool_state_name(srv->db);
	st.db_connections_up = db.connections_up;
	st.db_connections_total = db.connections_total;
	st.db_queue_length = db.queue_length;
	st.schema_version = (uint32_t)srv->schema_version;
	st.database_error = db.connections_up == db.connections_total ? "" : db.last_error;
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_STATUS;
	resp.status = &st;
	request_reply(req, &resp);
}
