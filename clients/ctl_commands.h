/* ctl_commands.h: every referralctl command, one function each; the table
 * that names them is in referralctl.c. */
#ifndef REFERRALCTL_COMMANDS_H
#define REFERRALCTL_COMMANDS_H

#include <unistd.h>

#include "referralctl.h"

int cmd_sessions(struct ctl *ctl, int argc, char **argv);
int cmd_publish(struct ctl *ctl, int argc, char **argv);
int cmd_capacity(struct ctl *ctl, int argc, char **argv);
int cmd_cancel_session(struct ctl *ctl, int argc, char **argv);
int cmd_book(struct ctl *ctl, int argc, char **argv);
int cmd_cancel(struct ctl *ctl, int argc, char **argv);
int cmd_overbook(struct ctl *ctl, int argc, char **argv);
int cmd_bookings(struct ctl *ctl, int argc, char **argv);

int cmd_refer(struct ctl *ctl, int argc, char **argv);
int cmd_worklist(struct ctl *ctl, int argc, char **argv);
int cmd_referral(struct ctl *ctl, int argc, char **argv);
int cmd_history(struct ctl *ctl, int argc, char **argv);
int cmd_watch(struct ctl *ctl, int argc, char **argv);

int cmd_deductibles(struct ctl *ctl, int argc, char **argv);
int cmd_stay(struct ctl *ctl, int argc, char **argv);
int cmd_deductible_policy(struct ctl *ctl, int argc, char **argv);
int cmd_admin(struct ctl *ctl, int argc, char **argv);
int cmd_stats(struct ctl *ctl, int argc, char **argv);
int cmd_compliance(struct ctl *ctl, int argc, char **argv);
int cmd_top(struct ctl *ctl, int argc, char **argv);

/* Shared by the command files (defined in ctl_slots.c). */
/* Prints "referralctl CMD: MSG" on stderr; returns CTL_ERR_USAGE. */
int ctl_usage_error(const char *cmd, const char *msg);
/* "auto", "reserved" or "public"; -1 after a usage message otherwise. */
int ctl_parse_pool(const char *cmd, const char *s, Referral__Pool *out);
/* "2026-12-07T08:00", "2026-12-07 08:00" or "2026-12-07" in local time, or
 * Unix seconds; -1 after a message otherwise. */
int ctl_parse_time(const char *s, int64_t *out);
/* Writes a fresh idempotency key into buf and returns buf. */
char *ctl_fresh_key(char *buf, size_t len);
/* "2026-12-07T08:00", "2026-12-07 08:00", "2026-12-07" (local time) or Unix
 * seconds; -1 after a message otherwise. */
int ctl_parse_time(const char *s, int64_t *out);

/* Shared by the command files (defined in ctl_referrals.c). */
/* A whole number in [min, max], digits only; -1 after a usage message. */
int ctl_parse_range(const char *cmd, const char *s, unsigned long long min,
		    unsigned long long max, unsigned long long *out);
/* An empty *key gets a fresh one, announced on stderr before the request
 * goes out, so that a retry after an unknown outcome can pass it. */
void ctl_default_key(const char *cmd, char **key, char *buf, size_t len);

#endif
