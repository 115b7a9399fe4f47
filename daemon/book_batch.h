/*
 * book_batch.h: group commit for Book requests.
 *
 * Book requests that arrive while earlier ones are being committed wait here
 * and go to the database together, as one call of book_batch() (sql/006):
 * one transaction, one WAL flush, one lock of each session for the whole
 * group. Each request is answered on its own, after the transaction has
 * committed, with the outcome book_slot() would have given it.
 *
 * A batch goes out as soon as fewer than booking_batches_in_flight batches
 * are running, so a lone request waits for nothing; under load the requests
 * that pile up behind the running batches form the next one (at most
 * booking_batch_max, all of one community). A batch the database refuses as
 * a whole (a deadlock, an unexpected error) is retried request by request
 * through book_slot, which gives each its own answer.
 */
#ifndef REFERRALD_BOOK_BATCH_H
#define REFERRALD_BOOK_BATCH_H

struct server;
struct request;
struct book_batcher;

struct book_batcher *book_batcher_new(struct server *srv);
/* Answers every waiting request UNAVAILABLE. Batches in the database are
 * answered by the pool when it is freed. */
void book_batcher_free(struct book_batcher *b);

/* Takes a checked Book request (no referral) and answers it, now or later. */
void book_batcher_submit(struct book_batcher *b, struct request *req);

/* Sends what waits, as far as booking_batches_in_flight allows. */
void book_batcher_flush(struct book_batcher *b);

/* Requests waiting for a batch. */
unsigned book_batcher_waiting(const struct book_batcher *b);

#endif
