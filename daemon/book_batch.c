/* book_batch.c: see book_batch.h. */
#include "book_batch.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "clock.h"
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

struct batch;

/* A request waiting for a batch. */
struct waiting {
	struct request *req;
	int held;  /* passed over before, its session being busy (session_busy) */
};

struct book_batcher {
	struct server *srv;
	/* Waiting requests: a ring of `cap` slots, `n` used from `head`. */
	struct waiting *ring;
	unsigned cap, head, n;
	unsigned in_flight;               /* batches in the database */
	struct batch *running;            /* those batches, linked */
	struct evbuffer *arrays[N_COLUMNS]; /* reused for every batch */
};

struct batch {
	struct book_batcher *b;
	struct batch *prev, *next;        /* in b->running while in the database */
	/* The distinct sessions of the batch, sorted: a request for one of them
	 * may wait for the next batch (see session_busy). */
	int64_t *sessions;
	unsigned n_sessions;
	unsigned n;
	long long sent_ns;                /* when it went to the pool */
	struct request *reqs[];
};

static struct waiting *ring_at(const struct book_batcher *b, unsigned i)
{
	return &b->ring[(b->head + i) % b->cap];
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
		struct request *req = ring_at(b, 0)->req;
		b->head = (b->head + 1) % b->cap;
		b->n--;
		request_fail(req, REFERRAL__ERROR_CODE__UNAVAILABLE, NULL, "server shutting down");
	}
	/* The running batches are answered later, by the pool: they must not
	 * come back to this batcher then. */
	for (struct batch *r = b->running; r; r = r->next)
		r->b = NULL;
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
		struct waiting *bigger = calloc(b->cap * 2, sizeof *bigger);
		if (!bigger)
			return -1;
		for (unsigned i = 0; i < b->n; i++)
			bigger[i] = *ring_at(b, i);
		free(b->ring);
		b->ring = bigger;
		b->head = 0;
		b->cap *= 2;
	}
	b->ring[(b->head + b->n) % b->cap] = (struct waiting){ req, 0 };
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
	free(batch->sessions);
	free(batch);
}

/* ---- sessions of the running batches ------------------------------------------ */

/* At most booking_batches_per_session running batches share a session. They
 * take turns on its row lock, but a batch first reads, without a lock, what
 * it needs to know about its patients and keys (sql/008): the next batch of a
 * popular session does that while the one before holds the lock, and is
 * ready the moment it commits. More would only wait for the lock, each
 * holding a connection (and the sessions it had already locked); requests for
 * a session with as many running batches wait here instead, and go together
 * in the next batch. */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int64_t request_session(const struct request *req)
{
	return req->msg->book->session_id;
}

static int session_busy(const struct book_batcher *b, int64_t session)
{
	int limit = b->srv->cfg.booking_batches_per_session, n = 0;
	for (const struct batch *r = b->running; r && n < limit; r = r->next)
		n += bsearch(&session, r->sessions, r->n_sessions, sizeof session, cmp_i64) != NULL;
	return n >= limit;
}

/* Fills batch->sessions; -1 when out of memory. */
static int batch_note_sessions(struct batch *batch)
{
	batch->sessions = malloc(batch->n * sizeof *batch->sessions);
	if (!batch->sessions)
		return -1;
	for (unsigned i = 0; i < batch->n; i++)
		batch->sessions[i] = request_session(batch->reqs[i]);
	qsort(batch->sessions, batch->n, sizeof *batch->sessions, cmp_i64);
	unsigned distinct = 0;
	for (unsigned i = 0; i < batch->n; i++)
		if (distinct == 0 || batch->sessions[distinct - 1] != batch->sessions[i])
			batch->sessions[distinct++] = batch->sessions[i];
	batch->n_sessions = distinct;
	return 0;
}

static void running_add(struct book_batcher *b, struct batch *batch)
{
	batch->prev = NULL;
	batch->next = b->running;
	if (b->running)
		b->running->prev = batch;
	b->running = batch;
	b->in_flight++;
}

static void running_remove(struct book_batcher *b, struct batch *batch)
{
	if (batch->prev)
		batch->prev->next = batch->next;
	else
		b->running = batch->next;
	if (batch->next)
		batch->next->prev = batch->prev;
	b->in_flight--;
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

/* At debug level, a line per answered batch: with the lines of a run,
 * scripts/bench/batch_timeline.py shows how a popular session's batches
 * follow one another (docs/benchmarks.md, "A popular session's timeline"). */
static void batch_log(const struct batch *batch, const PGresult *res, long long answered_ns)
{
	int rows = PQntuples(res), booked = 0;
	for (int row = 0; row < rows; row++)
		booked += strcmp(db_str(res, row, 1), "booked") == 0;
	log_debug("booking batch: sent_us=%lld db_us=%lld requests=%u booked=%d sessions=%u first_session=%lld",
		  batch->sent_ns / 1000, (answered_ns - batch->sent_ns) / 1000, batch->n, booked,
		  batch->n_sessions, (long long)batch->sessions[0]);
}

static void batch_done(void *arg, const struct db_result *r)
{
	struct batch *batch = arg;
	struct book_batcher *b = batch->b;
	/* Before the next batch is sent, for the debug line's timeline. */
	long long answered_ns = monotonic_ns();
	if (b) {
		running_remove(b, batch);
		/* The requests that waited behind this batch go first, so that
		 * the database works on them while these answers are written. */
		book_batcher_flush(b);
	}
	if (r->outcome == DB_FAILED && b) {
		batch_retry_singly(batch, r);
	} else if (r->outcome != DB_OK) {
		for (unsigned i = 0; i < batch->n; i++)
			request_fail_db(batch->reqs[i], r);
	} else {
		if (log_get_level() >= LOG_LVL_DEBUG)
			batch_log(batch, r->res, answered_ns);
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
}

/* ---- forming and sending batches --------------------------------------------- */

/* Moves up to max waiting requests into a batch: those of the community of
 * the first that may go (its session is not busy), keeping the
 * others in order. The batch may be empty: everything that waits is for
 * busy sessions. NULL when out of memory. */
static struct batch *batch_take(struct book_batcher *b, unsigned max)
{
	struct batch *batch = calloc(1, sizeof *batch + (max < b->n ? max : b->n) * sizeof(struct request *));
	if (!batch)
		return NULL;
	batch->b = b;
	const char *community = NULL;
	unsigned kept = 0, n = b->n;
	for (unsigned i = 0; i < n; i++) {
		struct waiting w = *ring_at(b, i);
		const char *c = request_identity(w.req)->community_id;
		int may = batch->n < max && (!community || strcmp(c, community) == 0);
		int running = may && session_busy(b, request_session(w.req));
		if (may && !running) {
			community = c;
			batch->reqs[batch->n++] = w.req;
			continue;
		}
		if (running && !w.held) {
			w.held = 1;
			b->srv->stats.book_batch_held++;
		}
		b->ring[(b->head + kept++) % b->cap] = w;
	}
	b->n = kept;
	if (batch->n && batch_note_sessions(batch) < 0) {
		/* Put them back at the end; the caller answers the first waiting. */
		for (unsigned i = 0; i < batch->n; i++)
			b->ring[(b->head + b->n++) % b->cap] = (struct waiting){ batch->reqs[i], 0 };
		batch_free(batch);
		return NULL;
	}
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
	batch->sent_ns = monotonic_ns();
	running_add(b, batch);
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
			struct request *req = ring_at(b, 0)->req;
			b->head = (b->head + 1) % b->cap;
			b->n--;
			request_fail(req, REFERRAL__ERROR_CODE__OVERLOADED, NULL, "out of memory");
			continue;
		}
		if (batch->n == 0) {
			/* All that waits is for sessions being booked: the next
			 * batch_done() sends it. */
			batch_free(batch);
			break;
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
	/* What waited already could not go at the last flush, and nothing has
	 * finished since (batch_done flushes): a request for a session in a
	 * running batch cannot change that, so it waits without a scan of the
	 * whole ring, which every arrival for a popular session would pay. */
	if (session_busy(b, request_session(req))) {
		ring_at(b, b->n - 1)->held = 1;
		b->srv->stats.book_batch_held++;
		return;
	}
	book_batcher_flush(b);
}
