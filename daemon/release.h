/*
 * release.h: the release timer. At each community's release lead time before
 * a session, unbooked reserved capacity returns to the public pool. The work
 * is done by release_due() in the database, which makes each release happen
 * exactly once however many daemons run it; the timer only asks regularly,
 * so a daemon that was down catches up on its first turn.
 *
 * The same timer runs the referral housekeeping of referral_housekeeping():
 * no-shows, escalation flags and overdue follow-ups, each also exactly once.
 */
#ifndef REFERRALD_RELEASE_H
#define REFERRALD_RELEASE_H

struct server;
struct release_timer;

struct release_timer *release_timer_start(struct server *srv, int interval_ms);
void release_timer_set_interval(struct release_timer *t, int interval_ms);
void release_timer_free(struct release_timer *t);

#endif
