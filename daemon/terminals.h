/*
 * terminals.h: what the daemon keeps per terminal while it is connected:
 * the moment its credentials last changed (revocation, token rotation),
 * which closes its older connections on every daemon.
 *
 * A change reaches a daemon two ways. The database's terminal_revoke() and
 * terminal_rotate() NOTIFY referral_events with "terminal C T MICROS",
 * which every daemon hears at once. And a periodic sweep
 * (credentials_check_ms) reads the terminals changed since its last look
 * (with a minute of overlap, for transactions that committed late), which
 * covers notifications lost while a database connection was down. Either
 * path closes, with a flush, every connection of the terminal that
 * authenticated before the change; doing it twice is harmless.
 */
#ifndef REFERRALD_TERMINALS_H
#define REFERRALD_TERMINALS_H

struct server;
struct terminal_watch;

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
