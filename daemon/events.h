/*
 * events.h: live events pushed to subscribed connections.
 *
 * Events are rows of the events table, numbered per community in commit
 * order (sql/003_referrals.sql). A subscriber names the last number it saw;
 * the daemon first reads its backlog, then hands it to the community's live
 * feed, which reads new events once for all subscribers of the community
 * whenever PostgreSQL signals (NOTIFY referral_events, heard on the pool's
 * connections) and on a slow poll that covers signals lost while a
 * connection was down. A per-connection cursor makes delivery gap-free and
 * duplicate-free whichever of the two paths brings an event first.
 */
#ifndef REFERRALD_EVENTS_H
#define REFERRALD_EVENTS_H

struct server;
struct conn;
struct request;
struct event_hub;

#define EVENTS_CHANNEL "referral_events"

struct event_hub *event_hub_new(struct server *srv, int poll_ms);
void event_hub_free(struct event_hub *hub);
void event_hub_set_poll(struct event_hub *hub, int poll_ms);
/* PostgreSQL said: something happened in this community. */
void event_hub_notify(struct event_hub *hub, const char *community);

void handle_subscribe(struct request *req);
/* The connection is closing: forget its subscription. */
void events_unsubscribe(struct conn *c);
/* A paused backlog's output has drained: read on. */
void events_resume(struct conn *c);

#endif
