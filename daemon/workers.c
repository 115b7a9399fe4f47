/* workers.c: see workers.h. */
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"

struct job {
	struct job *next;
	work_fn work;
	work_done_fn done;
	void *arg;
};

struct job_list {
	struct job *head, *tail;
};

struct worker_pool {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct job_list todo;      /* waiting for a thread */
	struct job_list finished;  /* done on a thread, done() not yet called */
	unsigned pending;          /* submitted, done() not yet called */
	unsigned queued;           /* in todo */
	unsigned queue_max;
	int stopping;
	int efd;
	struct event *ready;
	pthread_t *threads;
	int n_threads;
};

static void list_push(struct job_list *l, struct job *j)
{
	j->next = NULL;
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
}

static struct job *list_take_all(struct job_list *l)
{
	struct job *all = l->head;
	l->head = l->tail = NULL;
	return all;
}

static void *worker_main(void *arg)
{
	struct worker_pool *pool = arg;
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (!pool->todo.head && !pool->stopping)
			pthread_cond_wait(&pool->wake, &pool->lock);
		if (pool->stopping)
			break;
		struct job *j = pool->todo.head;
		pool->todo.head = j->next;
		if (!pool->todo.head)
			pool->todo.tail = NULL;
		pool->queued--;
		pthread_mutex_unlock(&pool->lock);
		j->work(j->arg);
		pthread_mutex_lock(&pool->lock);
		list_push(&pool->finished, j);
		uint64_t one = 1;
		/* The loop reads the counter back to zero; a full counter
		 * (never in practice) still leaves it readable. */
		if (write(pool->efd, &one, sizeof one) < 0 && errno != EAGAIN)
			log_error("workers: cannot wake the loop");
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* Calls done() for every finished job, on the loop thread. */
static void run_finished(struct worker_pool *pool, int cancelled_list)
{
	pthread_mutex_lock(&pool->lock);
	struct job *j = list_take_all(cancelled_list ? &pool->todo : &pool->finished);
	pthread_mutex_unlock(&pool->lock);
	while (j) {
		struct job *next = j->next;
		pool->pending--;
		j->done(j->arg, cancelled_list);
		free(j);
		j = next;
	}
}

static void ready_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	uint64_t n;
	if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN)
		log_error("workers: eventfd read failed");
	run_finished(arg, 0);
}

struct worker_pool *workers_new(struct event_base *base, int threads, int queue_max)
{
	struct worker_pool *pool = calloc(1, sizeof *pool);
	if (!pool)
		return NULL;
	pool->queue_max = (unsigned)queue_max;
	pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pool->threads = calloc((size_t)threads, sizeof *pool->threads);
	if (pool->efd < 0 || !pool->threads)
		goto fail;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->wake, NULL);
	pool->ready = event_new(base, pool->efd, EV_READ | EV_PERSIST, ready_cb, pool);
	if (!pool->ready || event_add(pool->ready, NULL) < 0)
		goto fail_sync;
	for (; pool->n_threads < threads; pool->n_threads++)
		if (pthread_create(&pool->threads[pool->n_threads], NULL, worker_main, pool) != 0)
			goto fail_threads;
	return pool;
fail_threads:
	workers_free(pool);
	return NULL;
fail_sync:
	if (pool->ready)
		event_free(pool->ready);
	pthread_cond_destroy(&pool->wake);
	pthread_mutex_destroy(&pool->lock);
fail:
	if (pool->efd >= 0)
		close(pool->efd);
	free(pool->threads);
	free(pool);
	return NULL;
}

void workers_free(struct worker_pool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = 1;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	for (int i = 0; i < pool->n_threads; i++)
		pthread_join(pool->threads[i], NULL);
	run_finished(pool, 0);
	run_finished(pool, 1);
	event_free(pool->ready);
	close(pool->efd);
	pthread_cond_destroy(&pool->wake);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool);
}

int workers_submit(struct worker_pool *pool, work_fn work, work_done_fn done, void *arg)
{
	struct job *j = malloc(sizeof *j);
	if (!j)
		return -1;
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&pool->lock);
	if (pool->queued >= pool->queue_max || pool->stopping) {
		pthread_mutex_unlock(&pool->lock);
		free(j);
		return -1;
	}
	list_push(&pool->todo, j);
	pool->queued++;
	pool->pending++;
	pthread_cond_signal(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

unsigned workers_pending(const struct worker_pool *pool)
{
	return pool->pending;
}
