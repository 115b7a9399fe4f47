/*
 * workers.h: a few threads for CPU-heavy work that must not stall the event
 * loop (PBKDF2 token hashes take milliseconds each, and a Hello flood would
 * otherwise hold up every connection).
 *
 * A job's work() runs on a worker thread and must touch nothing but its own
 * argument; its done() runs afterwards on the loop thread, which is woken
 * through an eventfd. Jobs never outlive the pool: workers_free() lets
 * running jobs finish and calls done() for every job, with cancelled = 1 for
 * those that never ran.
 */
#ifndef REFERRALD_WORKERS_H
#define REFERRALD_WORKERS_H

struct event_base;
struct worker_pool;

typedef void (*work_fn)(void *arg);
typedef void (*work_done_fn)(void *arg, int cancelled);

struct worker_pool *workers_new(struct event_base *base, int threads, int queue_max);
void workers_free(struct worker_pool *pool);

/* Queues a job. Returns 0, or -1 when the queue is full (done() is not
 * called then). */
int workers_submit(struct worker_pool *pool, work_fn work, work_done_fn done, void *arg);

/* Jobs waiting or running, for the status reply and tests. */
unsigned workers_pending(const struct worker_pool *pool);

#endif
