/* services.c: see services.h. */
#include "services.h"

#include <stdlib.h>

#include <openssl/crypto.h>

#include "book_batch.h"
#include "db.h"
#include "events.h"
#include "figures.h"
#include "log.h"
#include "patient_id.h"
#include "release.h"
#include "replica.h"
#include "server.h"
#include "terminals.h"
#include "workers.h"

/* LISTEN on the main pool: "terminal ..." when a terminal's credentials
 * changed, anything else is the event hub's. */
static void notified(void *arg, const char *payload)
{
	struct server *srv = arg;
	if (!terminals_notified(srv, payload))
		event_hub_notify(srv->events, payload);
}

static int load_patient_key(struct server *srv)
{
	if (!srv->cfg.patient_id_key_file[0])
		return 0;
	char err[512];
	srv->patient_key = calloc(1, sizeof *srv->patient_key);
	if (!srv->patient_key ||
	    patient_key_load(srv->patient_key, srv->cfg.patient_id_key_file, err, sizeof err) < 0) {
		log_error("%s", srv->patient_key ? err : "out of memory");
		return -1;
	}
	return 0;
}

static int start_main_pool(struct server *srv)
{
	struct db_pool_settings ps = {
		.dsn = srv->cfg.db_dsn,
		.size = srv->cfg.db_pool_size,
		.queue_max = srv->cfg.db_queue_max,
		.queue_timeout_ms = srv->cfg.db_queue_timeout_ms,
		.reconnect_max_ms = srv->cfg.db_reconnect_max_ms,
		.statement_timeout_ms = srv->cfg.db_statement_timeout_ms,
		.schema_version = srv->schema_version,
		.listen_channel = EVENTS_CHANNEL,
		.notify = notified,
		.notify_arg = srv,
	};
	srv->db = db_pool_new(srv->base, &ps);
	return srv->db ? 0 : -1;
}

int services_start(struct server *srv)
{
	if (load_patient_key(srv) < 0)
		return -1;
	/* Token checks wait here; a full queue answers OVERLOADED. */
	srv->workers = workers_new(srv->base, srv->cfg.auth_threads, 1024);
	if (!srv->workers)
		return -1;
	srv->events = event_hub_new(srv, srv->cfg.events_poll_ms);
	if (!srv->events || start_main_pool(srv) < 0)
		return -1;
	srv->book_batcher = book_batcher_new(srv);
	if (!srv->book_batcher)
		return -1;
	int replica_failed;
	srv->replica = replica_start(srv, &replica_failed);
	if (replica_failed)
		return -1;
	srv->release = release_timer_start(srv, srv->cfg.release_interval_ms);
	srv->terminal_watch = terminal_watch_start(srv, srv->cfg.credentials_check_ms);
	if (!srv->release || !srv->terminal_watch)
		return -1;
	return figures_start(srv);
}

void services_apply_settings(struct server *srv)
{
	book_batcher_flush(srv->book_batcher);
	db_pool_set_limits(srv->db, srv->cfg.db_queue_max, srv->cfg.db_queue_timeout_ms,
			   srv->cfg.db_reconnect_max_ms);
	release_timer_set_interval(srv->release, srv->cfg.release_interval_ms);
	event_hub_set_poll(srv->events, srv->cfg.events_poll_ms);
	terminal_watch_set_interval(srv->terminal_watch, srv->cfg.credentials_check_ms);
	figures_apply_settings(srv);
}

void services_stop(struct server *srv)
{
	release_timer_free(srv->release);
	srv->release = NULL;
	figures_stop(srv);
	book_batcher_free(srv->book_batcher);
	srv->book_batcher = NULL;
	replica_free(srv->replica);
	srv->replica = NULL;
	db_pool_free(srv->db);
	srv->db = NULL;
	terminal_watch_free(srv->terminal_watch);
	srv->terminal_watch = NULL;
	workers_free(srv->workers);
	srv->workers = NULL;
	event_hub_free(srv->events);
	srv->events = NULL;
	if (srv->patient_key) {
		OPENSSL_cleanse(srv->patient_key, sizeof *srv->patient_key);
		free(srv->patient_key);
		srv->patient_key = NULL;
	}
}
