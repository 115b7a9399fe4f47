/*
 * services.h: what a running daemon needs behind its connections — the
 * database pools, the booking batcher, the token workers, the event hub,
 * the timers — started and stopped in one place, so that every program
 * that serves requests (referrald, the fuzz target) has the same set.
 */
#ifndef REFERRALD_SERVICES_H
#define REFERRALD_SERVICES_H

struct server;

/* Starts them from srv->cfg on srv->base (srv->schema_version set).
 * -1 after logging why; services_stop() then frees what did start. */
int services_start(struct server *srv);

/* After a reload (SIGHUP): the new srv->cfg's limits and intervals. */
void services_apply_settings(struct server *srv);

/* Frees them, answering what still waits on the database; NULL-safe for
 * what never started. Connections are closed first (conn_free_all). */
void services_stop(struct server *srv);

#endif
