/* bench_work.c: the workloads. Every Book and ReferUp carries a fresh
 * patient and an idempotency key of its own, so that the database can be
 * checked afterwards against the answers (scripts/bench/check.sql): every
 * acknowledged booking is written to the record file.
 *
 *   spread  Book on a session drawn at random from --sessions
 *   hot     Book on the current hot session until it is full, then on the
 *           next one of --hot-sessions (every client follows the same one)
 *   search  SearchSessions, the first page of what is still available
 *   refer   ReferUp with a booking on a session drawn from --sessions
 *   mix     each of the three kinds with the --mix percentages
 */
#include "bench.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const kind_names[BK_COUNT] = { "book", "search", "refer" };
static const char *const workload_names[] = { "spread", "hot", "search", "refer", "mix" };

const char *work_kind_name(enum bench_kind k) { return kind_names[k]; }
const char *work_workload_name(enum bench_workload w) { return workload_names[w]; }

/* xorshift64*: fast, and good enough to pick sessions. */
static uint64_t rnd(struct bench *b)
{
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	return b->rng * 2685821657736338717ull;
}

/* The patient with index i: the same formula as bench_patient() in
 * scripts/bench/setup.sql, which creates them. The first eight digits are
 * a multiplicative hash of i, so that the ids differ in their leading bytes
 * as the random ids PostgreSQL gives real patients do: the exclusion
 * constraint's GiST index (btree_gist) places a uuid by its first eight
 * bytes, and ids sharing those make every lookup search the whole tree. */
static void patient_uuid(uint64_t i, char out[37])
{
	uint32_t spread = (uint32_t)(i * 2654435761u);
	snprintf(out, 37, "%08" PRIx32 "-b000-4000-8000-%012" PRIx64, spread,
		 (uint64_t)(i & 0xffffffffffffu));
}

static int next_patient(struct bench *b, char out[37])
{
	if (b->next_patient >= b->o.patient_first + b->o.patient_count) {
		b->exhausted = "patients";
		return -1;
	}
	patient_uuid(b->next_patient++, out);
	return 0;
}

static int64_t spread_session(struct bench *b)
{
	const struct bench_range *r = &b->o.sessions;
	return r->first + (int64_t)(rnd(b) % (uint64_t)(r->last - r->first + 1));
}

static enum bench_kind pick_kind(struct bench *b)
{
	switch (b->o.workload) {
	case WL_SEARCH: return BK_SEARCH;
	case WL_REFER: return BK_REFER;
	case WL_MIX: {
		unsigned roll = (unsigned)(rnd(b) % 100);
		if (roll < b->o.mix[BK_BOOK])
			return BK_BOOK;
		return roll < b->o.mix[BK_BOOK] + b->o.mix[BK_SEARCH] ? BK_SEARCH : BK_REFER;
	}
	default: return BK_BOOK;
	}
}

static int send_book(struct bench *b, struct bconn *c, struct bench_slot *s,
		     Referral__Request *req)
{
	char patient[37];
	if (b->o.workload == WL_HOT) {
		if (b->hot_current > b->o.hot.last) {
			b->exhausted = "hot sessions";
			return -1;
		}
		s->session_id = b->hot_current;
	} else {
		s->session_id = spread_session(b);
	}
	if (next_patient(b, patient) < 0)
		return -1;
	Referral__Book book = REFERRAL__BOOK__INIT;
	book.session_id = s->session_id;
	book.patient_id = patient;
	book.pool = REFERRAL__POOL__POOL_AUTO;
	book.fallback_to_public = 1;
	book.idempotency_key = s->key;
	req->body_case = REFERRAL__REQUEST__BODY_BOOK;
	req->book = &book;
	return bench_conn_write(c, req);
}

static int send_refer(struct bench *b, struct bconn *c, struct bench_slot *s,
		      Referral__Request *req)
{
	char patient[37];
	if (next_patient(b, patient) < 0)
		return -1;
	s->session_id = spread_session(b);
	Referral__ReferUp up = REFERRAL__REFER_UP__INIT;
	up.patient_id = patient;
	up.to_institution = (char *)b->o.refer_to;
	up.to_department = (char *)b->o.refer_department;
	up.diagnosis = "I10";
	up.reason = "blood pressure uncontrolled on two drugs";
	up.urgency = REFERRAL__URGENCY__URGENCY_ROUTINE;
	up.session_id = s->session_id;
	up.pool = REFERRAL__POOL__POOL_AUTO;
	up.fallback_to_public = 1;
	up.idempotency_key = s->key;
	req->body_case = REFERRAL__REQUEST__BODY_REFER_UP;
	req->refer_up = &up;
	return bench_conn_write(c, req);
}

static int send_search(struct bconn *c, struct bench_slot *s, Referral__Request *req)
{
	s->session_id = 0;
	Referral__SearchSessions q = REFERRAL__SEARCH_SESSIONS__INIT;
	q.page_size = 20;
	q.only_available = 1;
	req->body_case = REFERRAL__REQUEST__BODY_SEARCH;
	req->search = &q;
	return bench_conn_write(c, req);
}

int work_send(struct bench *b, struct bconn *c, struct bench_slot *s, uint64_t request_id)
{
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.request_id = request_id;
	s->kind = pick_kind(b);
	snprintf(s->key, sizeof s->key, "%s-%u-%" PRIu64, b->key_prefix, c->idx, c->serial);
	int rc;
	switch (s->kind) {
	case BK_BOOK: rc = send_book(b, c, s, &req); break;
	case BK_REFER: rc = send_refer(b, c, s, &req); break;
	default: rc = send_search(c, s, &req); break;
	}
	if (rc < 0 && !b->exhausted)
		bench_fail(b, BENCH_ERR_RUN, "cannot encode a request");
	return rc < 0 ? -1 : 0;
}

/* Hot: a session that is full (or just gave its last unit) sends every
 * client on to the next one. */
static void hot_advance(struct bench *b, int64_t session_id)
{
	if (session_id >= b->hot_current)
		b->hot_current = session_id + 1;
}

static void record(struct bench *b, const struct bench_slot *s, const char *booking_id)
{
	if (b->record && booking_id && booking_id[0])
		fprintf(b->record, "%s\t%s\t%s\t%" PRId64 "\n", kind_names[s->kind], s->key,
			booking_id, s->session_id);
}

void work_answer(struct bench *b, struct bench_slot *s, const Referral__Response *resp)
{
	unsigned code = resp->error ? (unsigned)resp->error->code : 0;
	unsigned slot = code < BENCH_CODES ? code : BENCH_CODES - 1;
	b->c.answered[s->kind]++;
	b->c.by_code[s->kind][slot]++;
	if (code && !b->c.first_error[slot][0])
		snprintf(b->c.first_error[slot], sizeof b->c.first_error[slot], "%s",
			 resp->error->message);
	int hot = b->o.workload == WL_HOT;
	if (code == REFERRAL__ERROR_CODE__FULL && hot)
		hot_advance(b, s->session_id);
	if (code != 0)
		return;
	if (s->kind == BK_BOOK && resp->body_case == REFERRAL__RESPONSE__BODY_BOOKING) {
		b->bookings_ok++;
		record(b, s, resp->booking->booking_id);
		if (hot && resp->booking->reserved_left == 0 && resp->booking->public_left == 0)
			hot_advance(b, s->session_id);
	} else if (s->kind == BK_REFER && resp->body_case == REFERRAL__RESPONSE__BODY_REFERRAL &&
		   resp->referral->booking_id[0]) {
		b->bookings_ok++;
		record(b, s, resp->referral->booking_id);
	}
}

int work_check_opts(const struct bench_opts *o, char *err, size_t errlen)
{
	int books = o->workload == WL_SPREAD || o->workload == WL_REFER ||
		    (o->workload == WL_MIX && (o->mix[BK_BOOK] || o->mix[BK_REFER]));
	if (books && o->sessions.first <= 0) {
		snprintf(err, errlen, "the %s workload needs --sessions FIRST-LAST",
			 workload_names[o->workload]);
		return -1;
	}
	if (o->workload == WL_HOT && o->hot.first <= 0) {
		snprintf(err, errlen, "the hot workload needs --hot-sessions FIRST-LAST");
		return -1;
	}
	if ((books || o->workload == WL_HOT) && o->patient_count == 0) {
		snprintf(err, errlen, "bookings need fresh patients: --patients FIRST:COUNT "
			 "(made by scripts/bench/setup.sql)");
		return -1;
	}
	if (o->workload == WL_MIX && o->mix[BK_BOOK] + o->mix[BK_SEARCH] + o->mix[BK_REFER] != 100) {
		snprintf(err, errlen, "--mix percentages must add up to 100");
		return -1;
	}
	return 0;
}
