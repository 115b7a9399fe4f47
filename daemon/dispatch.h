/*
 * dispatch.h: the one table from request type to handler and authorisation
 * rule. A request type not in the table is answered UNIMPLEMENTED.
 */
#ifndef REFERRALD_DISPATCH_H
#define REFERRALD_DISPATCH_H

#include "request.h"

typedef void (*handler_fn)(struct request *req);

#define ROLE_BIT(r) (1u << (r))
#define ROLES_ANY (ROLE_BIT(REFERRAL__ROLE__ROLE_CLINIC) | ROLE_BIT(REFERRAL__ROLE__ROLE_DESK) | \
		   ROLE_BIT(REFERRAL__ROLE__ROLE_BILLING) | ROLE_BIT(REFERRAL__ROLE__ROLE_MONITOR) | \
		   ROLE_BIT(REFERRAL__ROLE__ROLE_ADMIN))
#define ROLES_HANDSHAKE 0u  /* allowed only before authentication: Hello */

struct route {
	Referral__Request__BodyCase body;
	const char *name;
	handler_fn handler;
	unsigned roles;        /* ROLE_BIT mask, or ROLES_HANDSHAKE */
};

extern const struct route routes[];
extern const unsigned routes_count;

const struct route *dispatch_find(Referral__Request__BodyCase body);

/* Decodes one frame body and runs (or refuses) the request it holds.
 * Returns -1 when the frame is not a Request: the connection must close. */
int dispatch_frame(struct conn *c, const uint8_t *body, size_t len);

/* Handlers, one file per concern. */
void handle_hello(struct request *req);
void handle_ping(struct request *req);
void handle_status(struct request *req);
void handle_publish(struct request *req);
void handle_change_capacity(struct request *req);
void handle_cancel_session(struct request *req);
void handle_search(struct request *req);
void handle_book(struct request *req);
void handle_cancel_booking(struct request *req);
void handle_emergency_book(struct request *req);
void handle_list_bookings(struct request *req);
void handle_refer_up(struct request *req);
void handle_refer_down(struct request *req);
void handle_referral_action(struct request *req);
void handle_get_referral(struct request *req);
void handle_worklist(struct request *req);
void handle_history(struct request *req);
void handle_subscribe(struct request *req); /* events.c */
void handle_record_stay(struct request *req);     /* handle_deductibles.c */
void handle_discharge_stay(struct request *req);
void handle_reverse_stay(struct request *req);
void handle_get_deductible(struct request *req);
void handle_list_deductibles(struct request *req);
void handle_set_deductible_policy(struct request *req);
void handle_get_deductible_policy(struct request *req);
void handle_add_terminal(struct request *req);      /* handle_terminals.c */
void handle_list_terminals(struct request *req);
void handle_revoke_terminal(struct request *req);
void handle_rotate_terminal(struct request *req);
void handle_resolve_patient(struct request *req);   /* handle_patients.c */
void handle_stats(struct request *req);
void handle_compliance(struct request *req);
void handle_live(struct request *req);

#endif
