/* book_batch.c: see book_batch.h. */
#include "book_batch.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "db.h"
#include "db_row.h"
#include "log.h"
#include "request.h"
#include "server.h"
#include "slots.h"
#include "wire.h"

/* The array parameters of book_batch(), in its argument order after the
 * community. */
enum batch_column {
	COL_TERMINAL, COL_INSTITUTION, COL_ROLE, COL_PRACTITIONER, COL_SESSION,
	COL_PATIENT, COL_POOL, COL_FALLBACK, COL_KEY, N_COLUMNS
};

struct book_batcher {
	struct server *srv;
	/* Waiting requests: a ring of `cap` slots, `n` used from `head`. */
	struct request **ring;
	unsigned cap, head, n;
	unsigned in_flight;               /* batches in the database */
	struct evbuffer *arrays[N_COLUMNS]; /* reused for every batch */
};

struct batch {
	struct book_batcher *b;
	unsigned n;
	struct request *reqs[];
};

static struct request *ring_at(const struct book_batcher *b, unsigned i)
{
	return b->ring[(b->head + i) % b->cap];
}

struct book_batcher *book_batcher_new(struct server *srv)
{
	struct book_batcher *b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	b->srv = srv;
	b->cap = 64;
	b->ring = calloc(b->cap, sizeof *b->ring);
	int ok = b->ring != NULL;
	for (int i = 0; i < N_COLUMNS; i++)
		ok = ok && (b->arrays[i] = evbuffer_new()) != NULL;
	if (!ok) {
		book_batcher_free(b);
		return NULL;
	}
	return b;
}

void book_batcher_free(struct book_batcher *b)
{
	if (!b)
		return;
	while (b->n) {
		struct request *req = ring_at(b, 0);
		b->head = (b->head + 1) % b->cap;
		b->n--;
		request_fail(req, REFERRAL__ERROR_CODE__UNAVAILABLE, NULL, "server shutting down");
	}
	for (int i = 0; i < N_COLUMNS; i++)
		if (b->arrays[i])
			evbuffer_free(b->arrays[i]);
	free(b->ring);
	free(b);
}

unsigned book_batcher_waiting(const struct book_batcher *b)
{
	return b->n;
}

static int ring_push(struct book_batcher *b, struct request *req)
{
	if (b->n == b->cap) {
		struct request **bigger = calloc(b->cap * 2, sizeof *bigger);
		if (!bigger)
			return -1;
		for (unsigned i = 0; i < b->n; i++)
			bigger[i] = ring_at(b, i);
		free(b->ring);
		b->ring = bigger;
		b->head = 0;
		b->cap *= 2;
	}
	b->ring[(b->head + b->n) % b->cap] = req;
	b->n++;
	return 0;
}

/* ---- PostgreSQL array literals ------------------------------------------------ */

/* Appends one element, quoted: "..." with " and \ escaped. NULL never occurs:
 * every column of a batched Book has a value. */
static void array_add(struct evbuffer *buf, const char *s)
{
	evbuffer_add(buf, evbuffer_get_length(buf) ? ",\"" : "{\"", 2);
	for (const char *p = s; *p; ) {
		size_t plain = strcspn(p, "\"\\");
		evbuffer_add(buf, p, plain);
		p += plain;
		if (*p) {
			char esc[2] = { '\\', *p++ };
			evbuffer_add(buf, esc, 2);
		}
	}
	evbuffer_add(buf, "\"", 1);
}

static const char *array_finish(struct evbuffer *buf)
{
	evbuffer_add(buf, "}", 2); /* with the terminating NUL */
	return (const char *)evbuffer_pullup(buf, -1);
}

/* ---- answers ---------------------------------------------------------------------- */

static void batch_free(struct batch *batch)
{
	free(batch);
}

/* The whole batch was refused by the database: each request goes on its own,
 * so that each gets the answer that is its own. */
static void batch_retry_singly(struct batch *batch, const struct db_result *r)
{
	log_info("booking batch of %u refused (%s: %s); booking one by one", batch->n,
		 r->sqlstate, r->message);
	batch->b->srv->stats.book_batch_fallbacks++;
	for (unsigned i = 0; i < batch->n; i++)
		slots_book_single(batch->reqs[i]);
}

static void batch_done(void *arg, const struct db_result *r)
{
	struct batch *batch = arg;
	struct book_batcher *b = batch->b;
	b->in_flight--;
	if (r->outcome == DB_FAILED) {
		batch_retry_singly(batch, r);
	} else if (r->outcome != DB_OK) {
		for (unsigned i = 0; i < batch->n; i++)
			request_fail_db(batch->reqs[i], r);
	} else {
		int rows = PQntuples(r->res);
		for (int row = 0; row < rows; row++) {
			long long idx = db_i64(r->res, row, 0);
			if (idx < 1 || idx > batch->n || !batch->reqs[idx - 1])
				continue;
			slots_book_answer(batch->reqs[idx - 1], r->res, row, 1);
			batch->reqs[idx - 1] = NULL;
		}
		for (unsigned i = 0; i < batch->n; i++)
			if (batch->reqs[i])
				request_fail(batch->reqs[i], REFERRAL__ERROR_CODE__INTERNAL, NULL,
					     "booking batch gave no answer for this request");
	}
	batch_free(batch);
	/* The requests that waited behind this batch go now. */
	book_batcher_flush(b);
}

/* ---- forming and sending batches --------------------------------------------- */

/* Moves up to max waiting requests of the first one's community into a
 * batch, keeping the others in order. */
static struct batch *batch_take(struct book_batcher *b, unsigned max)
{
	struct batch *batch = malloc(sizeof *batch + (max < b->n ? max : b->n) * sizeof(struct request *));
	if (!batch)
		return NULL;
	batch->b = b;
	batch->n = 0;
	const char *community = request_identity(ring_at(b, 0))->community_id;
	unsigned kept = 0, n = b->n;
	for (unsigned i = 0; i < n; i++) {
		struct request *req = ring_at(b, i);
		if (batch->n < max && strcmp(request_identity(req)->community_id, community) == 0)
			batch->reqs[batch->n++] = req;
		else
			b->ring[(b->head + kept++) % b->cap] = req;
	}
	b->n = kept;
	return batch;
}

static void batch_fill_arrays(struct book_batcher *b, const struct batch *batch)
{
	for (int c = 0; c < N_COLUMNS; c++)
		evbuffer_drain(b->arrays[c], evbuffer_get_length(b->arrays[c]));
	for (unsigned i = 0; i < batch->n; i++) {
		struct request *req = batch->reqs[i];
		const struct identity *id = request_identity(req);
		const Referral__Book *bk = req->msg->book;
		char session[24];
		snprintf(session, sizeof session, "%lld", (long long)bk->session_id);
		array_add(b->arrays[COL_TERMINAL], id->terminal_id);
		array_add(b->arrays[COL_INSTITUTION], id->institution_id);
		array_add(b->arrays[COL_ROLE], wire_role_name(id->role));
		array_add(b->arrays[COL_PRACTITIONER], id->practitioner_id);
		array_add(b->arrays[COL_SESSION], session);
		array_add(b->arrays[COL_PATIENT], bk->patient_id);
		array_add(b->arrays[COL_POOL], slots_pool_param(bk->pool));
		array_add(b->arrays[COL_FALLBACK], bk->fallback_to_public ? "t" : "f");
		array_add(b->arrays[COL_KEY], bk->idempotency_key);
	}
}

static void batch_send(struct book_batcher *b, struct batch *batch)
{
	batch_fill_arrays(b, batch);
	const char *values[1 + N_COLUMNS];
	values[0] = request_identity(batch->reqs[0])->community_id;
	for (int c = 0; c < N_COLUMNS; c++)
		values[1 + c] = array_finish(b->arrays[c]);
	enum db_outcome refused;
	b->srv->stats.book_batches++;
	b->srv->stats.book_batch_items += batch->n;
	if (db_exec(b->srv->db, DB_STMT_BOOK_BATCH, 1 + N_COLUMNS, values, batch_done, batch,
		    &refused) < 0) {
		struct db_result r = { .outcome = refused, .column = "" };
		for (unsigned i = 0; i < batch->n; i++)
			request_fail_db(batch->reqs[i], &r);
		batch_free(batch);
		return;
	}
	b->in_flight++;
}

void book_batcher_flush(struct book_batcher *b)
{
	const struct config *cfg = &b->srv->cfg;
	/* Batching switched off by a reload: what waits still goes, one by one. */
	unsigned max = cfg->booking_batch_max > 0 ? (unsigned)cfg->booking_batch_max : 1;
	while (b->n && b->in_flight < (unsigned)cfg->booking_batches_in_flight) {
		struct batch *batch = batch_take(b, max);
		if (!batch) {
			/* Out of memory: answer rather than hold requests forever. */
			struct request *req = ring_at(b, 0);
			b->head = (b->head + 1) % b->cap;
			b->n--;
			request_fail(req, REFERRAL__ERROR_CODE__OVERLOADED, NULL, "out of memory");
			continue;
		}
		batch_send(b, batch);
	}
}

void book_batcher_submit(struct book_batcher *b, struct request *req)
{
	if (b->n >= (unsigned)b->srv->cfg.db_queue_max || ring_push(b, req) < 0) {
		request_fail(req, REFERRAL__ERROR_CODE__OVERLOADED, NULL,
			     "too many bookings waiting for the database");
		return;
	}
	book_batcher_flush(b);
}
