/* handle_patients.c: ResolvePatient turns a resident ID number into the
 * patient id the other requests use, registering the patient on request.
 * The number itself goes no further than this file: the database gets its
 * keyed hash and masked form, the log gets neither, and error messages never
 * repeat it. */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "db_params.h"
#include "db_row.h"
#include "dispatch.h"
#include "patient_id.h"
#include "server.h"

static void resolved(void *arg, const struct db_result *r)
{
	struct request *req = arg;
	if (r->outcome != DB_OK) {
		request_fail_db(req, r);
		return;
	}
	if (PQntuples(r->res) != 1) {
		request_fail(req, REFERRAL__ERROR_CODE__INTERNAL, NULL, "no patient returned");
		return;
	}
	Referral__PatientRef p = REFERRAL__PATIENT_REF__INIT;
	p.patient_id = db_str(r->res, 0, 0);
	p.id_masked = db_str(r->res, 0, 1);
	p.display_name = db_str(r->res, 0, 2);
	p.created = db_bool(r->res, 0, 3);
	Referral__Response resp = REFERRAL__RESPONSE__INIT;
	resp.body_case = REFERRAL__RESPONSE__BODY_PATIENT;
	resp.patient = &p;
	request_reply(req, &resp);
}

void handle_resolve_patient(struct request *req)
{
	Referral__ResolvePatient *rp = req->msg->resolve_patient;
	const struct identity *id = request_identity(req);
	const struct patient_key *key = req->srv->patient_key;
	if (!key) {
		request_fail(req, REFERRAL__ERROR_CODE__FAILED_PRECONDITION, NULL,
			     "this server has no patient_id_key_file: it cannot look up resident ID numbers");
		return;
	}
	/* Billing reads patients it settles for; it does not register them. */
	if (rp->register_ && id->role == REFERRAL__ROLE__ROLE_BILLING) {
		request_fail(req, REFERRAL__ERROR_CODE__PERMISSION_DENIED, "register",
			     "role billing may not register patients");
		return;
	}
	char number[19], hash[65], masked[19], name[256] = "";
	const char *why;
	if (patient_id_normalise(rp->resident_id, number, &why) < 0) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "resident_id", "%s", why);
		return;
	}
	if (rp->register_ && patient_name_mask(rp->name, name, sizeof name) < 0) {
		request_fail(req, REFERRAL__ERROR_CODE__INVALID_ARGUMENT, "name",
			     "registering a patient needs a name (at most 60 characters)");
		return;
	}
	patient_id_hash_hex(key, number, hash);
	patient_id_mask(number, masked);
	explicit_bzero(number, sizeof number);
	struct db_params p = { 0 };
	param_str(&p, id->community_id);
	param_str(&p, hash);
	param_str(&p, masked);
	param_str(&p, name);
	param_bool(&p, rp->register_);
	/* A clinic registering its patient becomes the family doctor's. */
	param_opt(&p, id->role == REFERRAL__ROLE__ROLE_CLINIC ? id->practitioner_id : "");
	request_db(req, DB_STMT_PATIENT_RESOLVE, &p, resolved);
}
