/*
 * referrals.h: what the referral handlers share: wire names of directions,
 * urgencies and actions, and reading a referral from a row.
 */
#ifndef REFERRALD_REFERRALS_H
#define REFERRALD_REFERRALS_H

#include <libpq-fe.h>

#include "referral.pb-c.h"

/* The SQL name of an action ("accept", "no_slot", ...); NULL if unknown. */
const char *referrals_action_name(Referral__Action action);
/* "routine", "urgent", "emergency"; NULL if unknown. */
const char *referrals_urgency_name(Referral__Urgency urgency);

/* Fills r from the REFERRAL_COLS of a row, starting at column `first`.
 * Strings point into res. */
void referral_from_row(Referral__Referral *r, const PGresult *res, int row, int first);

/* A uuid argument (or, when optional, an empty one); otherwise answers the
 * request with INVALID_ARGUMENT on `field` and returns 0. */
struct request;
int referrals_need_uuid(struct request *req, const char *value, const char *field, int optional);

/* A referral state name the worklist can filter on (or "" or "all"). */
int referrals_state_known(const char *state);

#endif
