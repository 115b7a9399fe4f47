/*
 * slots.h: what the slot-pool handlers share: the wire names of resource
 * kinds and pools, reading sessions from rows, page tokens, argument checks.
 */
#ifndef REFERRALD_SLOTS_H
#define REFERRALD_SLOTS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "referral.pb-c.h"

/* "expert", "exam", "bed"; NULL for unspecified. */
const char *slots_kind_name(Referral__ResourceKind kind);
Referral__ResourceKind slots_kind_from_name(const char *name);
Referral__Pool slots_pool_from_name(const char *name);

/* Fills `s` from row `row` of a result whose columns are SESSION_COLS. */
void slots_session_from_row(Referral__Session *s, const PGresult *res, int row);

/* Page tokens are "<seconds>:<id>"; an empty token starts at the beginning. */
int slots_parse_page_token(const char *token, int64_t *seconds, char *id, size_t idlen);
void slots_format_page_token(char *out, size_t len, const char *seconds, const char *id);

/* Page size: 0 gives the default, anything above the cap is capped. */
unsigned slots_page_size(uint32_t asked);

int slots_is_uuid(const char *s);

/* "auto", "reserved", "public" as book_slot() takes them; NULL otherwise. */
const char *slots_pool_param(Referral__Pool pool);

/* A book_slot() refusal and the typed error it becomes. */
struct slots_refusal {
	const char *outcome;
	Referral__ErrorCode code;
	const char *field;
};
/* The error for a book_slot() outcome other than "booked"; NULL if unknown. */
const struct slots_refusal *slots_book_refusal(const char *outcome);

/* Answers a Book request from a book_slot() row: columns col.. of row are
 * outcome, booking_id, pool, detail, reserved_left, public_left, replayed. */
struct request;
void slots_book_answer(struct request *req, const PGresult *res, int row, int col);
/* Books a checked Book request on its own, through book_slot(). */
void slots_book_single(struct request *req);

#define SLOTS_PAGE_DEFAULT 50u
#define SLOTS_PAGE_MAX 500u

#endif
