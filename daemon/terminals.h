/*
 * terminals.h: what the daemon keeps per terminal while it is connected:
 * its connections (max_connections_per_terminal), its token bucket
 * (terminal_rate_per_s, terminal_rate_burst: requests beyond it are
 * answered OVERLOADED with the wait in retry_after_ms), and the moment its
 * credentials last changed (revocation, token rotation), which closes its
 * older connections on every daemon. The limits are per daemon.
 *
 * A change reaches a daemon two ways. A trigger on terminals (however the
 * change is made) NOTIFYs referral_events with "terminal C T MICROS", which
 * every daemon hears at once, and logs it in terminal_changes. A periodic
 * sweep (credentials_check_ms) reads terminal_changes since its last look
 * (with a minute of overlap, for transactions that committed late), which
 * covers notifications lost while a database connection was down. Either
 * path closes, with a flush, every connection of the terminal that
 * authenticated before the change; doing it twice is harmless.
 */
#ifndef REFERRALD_TERMINALS_H
#define REFERRALD_TERMINALS_H

struct server;
struct terminal_watch;
struct terminal_state;
struct conn;
struct request;
struct identity;

/* Counts a connection for its terminal at Hello. Returns NULL when the
 * terminal already has max_connections_per_terminal connections here. */
struct terminal_state *terminals_attach(struct server *srv, const struct identity *id);
/* The connection is gone. */
void terminals_detach(struct server *srv, struct terminal_state *t);
/* Takes a token from the caller's bucket. Returns 1 to go on, or 0 after
 * answering the request OVERLOADED with the time to wait. */
int terminals_admit(struct request *req);

/* The credentials of community/terminal changed at changed_us (Unix
 * microseconds, the database's clock): close its older connections. */
void terminals_changed(struct server *srv, const char *community, const char *terminal,
		       long long changed_us);
/* A notification payload; returns 1 when it was a terminal change. */
int terminals_notified(struct server *srv, const char *payload);

struct terminal_watch *terminal_watch_start(struct server *srv, int interval_ms);
void terminal_watch_set_interval(struct terminal_watch *w, int interval_ms);
void terminal_watch_free(struct terminal_watch *w);

#endif
