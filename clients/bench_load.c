/* bench_load.c: the schedule. Free pipeline places wait in a ring (one entry
 * per place, so load spreads over the connections); a request is put into a
 * place at once (closed loop) or when it is due (fixed rate). In fixed-rate
 * mode request k is due at t0 + k / rate whether or not a place is free:
 * when none is, it waits in the client and the wait counts in its latency. */
#include "bench.h"

#include <stdlib.h>

#include <event2/event.h>

static void ring_push(struct bench *b, unsigned conn)
{
	b->ring[(b->ring_head + b->ring_len) % b->ring_cap] = conn;
	b->ring_len++;
}

static int ring_pop(struct bench *b, unsigned *conn)
{
	while (b->ring_len > 0) {
		unsigned i = b->ring[b->ring_head];
		b->ring_head = (b->ring_head + 1) % b->ring_cap;
		b->ring_len--;
		if (b->conns[i].state == BC_READY) {
			*conn = i;
			return 1;
		}
		/* A place of a lost connection: drop it. */
	}
	return 0;
}

static uint64_t due_of(const struct bench *b, uint64_t k)
{
	return b->t0_ns + (uint64_t)((double)k * 1e9 / b->o.rate);
}

static void finish(struct bench *b)
{
	if (b->phase == PH_DONE)
		return;
	b->phase = PH_DONE;
	event_base_loopbreak(b->base);
}

static void begin_drain(struct bench *b)
{
	if (b->o.rate > 0) {
		/* Due before the end but never sent: the client had no free place. */
		uint64_t due = (uint64_t)(b->o.duration_s * b->o.rate);
		if (due > b->issued)
			b->due_unsent = due - b->issued;
	}
	b->phase = PH_DRAIN;
	b->drain_end_ns = bench_now_ns() + (uint64_t)(b->o.drain_s * 1e9);
	if (b->inflight == 0)
		finish(b);
}

static void arm_tick(struct bench *b, uint64_t now)
{
	uint64_t at = b->phase == PH_DRAIN ? b->drain_end_ns : b->end_ns;
	if (b->phase == PH_RUN && b->o.rate > 0 && b->ring_len > 0 && !b->exhausted) {
		uint64_t next = due_of(b, b->issued);
		if (next < at)
			at = next;
	}
	uint64_t wait = at > now ? at - now : 0;
	struct timeval tv = { (time_t)(wait / 1000000000u), (suseconds_t)(wait % 1000000000u / 1000u) };
	evtimer_add(b->tick, &tv);
}

static void send_one(struct bench *b, unsigned conn, uint64_t due)
{
	struct bconn *c = &b->conns[conn];
	unsigned place = 0;
	while (c->slots[place].busy)
		place++;
	struct bench_slot *s = &c->slots[place];
	s->due_ns = due;
	uint64_t id = (++c->serial << BENCH_SLOT_BITS) | place;
	if (work_send(b, c, s, id) < 0) {
		ring_push(b, conn);   /* unused after all */
		return;
	}
	s->busy = 1;
	c->inflight++;
	b->inflight++;
	b->issued++;
	b->c.sent[s->kind]++;
}

/* Sends whatever may be sent now. */
static void dispatch(struct bench *b)
{
	if (b->phase != PH_RUN)
		return;
	uint64_t now = bench_now_ns();
	if (now >= b->end_ns) {
		begin_drain(b);
		if (b->phase == PH_DRAIN)
			arm_tick(b, now);
		return;
	}
	unsigned conn;
	while (!b->exhausted && b->ring_len > 0) {
		uint64_t due = now;
		if (b->o.rate > 0) {
			due = due_of(b, b->issued);
			if (due > now)
				break;
		}
		if (!ring_pop(b, &conn))
			break;
		send_one(b, conn, due);
	}
	if (b->exhausted && b->inflight == 0) {
		begin_drain(b);
		if (b->phase != PH_DRAIN)
			return;
	}
	arm_tick(b, now);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct bench *b = arg;
	if (b->phase == PH_DRAIN) {
		if (bench_now_ns() >= b->drain_end_ns)
			finish(b);
		else
			arm_tick(b, bench_now_ns());
		return;
	}
	dispatch(b);
}

static void progress_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct bench *b = arg;
	uint64_t ok = 0;
	for (int k = 0; k < BK_COUNT; k++)
		ok += b->c.by_code[k][0];
	fprintf(stderr, "referral-bench: %5.1f s  %8llu ok/s  in flight %llu\n",
		(double)(bench_now_ns() - b->t0_ns) / 1e9,
		(unsigned long long)(ok - b->progress_prev_ok), (unsigned long long)b->inflight);
	b->progress_prev_ok = ok;
}

static int start_run(struct bench *b)
{
	b->ring_cap = b->o.connections * b->o.depth;
	b->ring = calloc(b->ring_cap, sizeof *b->ring);
	b->tick = evtimer_new(b->base, tick_cb, b);
	if (!b->ring || !b->tick) {
		bench_fail(b, BENCH_ERR_RUN, "out of memory");
		return -1;
	}
	/* Places in round-robin order: the first request of every connection
	 * before the second of any. */
	for (unsigned d = 0; d < b->o.depth; d++)
		for (unsigned i = 0; i < b->o.connections; i++)
			ring_push(b, i);
	b->phase = PH_RUN;
	b->t0_ns = bench_now_ns();
	b->end_ns = b->t0_ns + (uint64_t)(b->o.duration_s * 1e9);
	if (b->o.progress) {
		struct timeval sec = { 1, 0 };
		b->progress_ev = event_new(b->base, -1, EV_PERSIST, progress_cb, b);
		if (b->progress_ev)
			event_add(b->progress_ev, &sec);
	}
	dispatch(b);
	return 0;
}

void bench_on_ready(struct bench *b, struct bconn *c)
{
	(void)c;
	if (b->ready == b->nconns) {
		if (b->o.idle && !b->o.json)
			fprintf(stderr, "referral-bench: %u idle connections authenticated\n", b->o.idle);
		start_run(b);
	}
}

void bench_on_answer(struct bench *b, struct bconn *c, const Referral__Response *resp)
{
	unsigned place = (unsigned)(resp->request_id & (BENCH_MAX_DEPTH - 1));
	if (c->idle || place >= b->o.depth || !c->slots[place].busy) {
		fprintf(stderr, "referral-bench: connection %u: answer to unknown request %llu\n",
			c->idx, (unsigned long long)resp->request_id);
		b->conn_errors++;
		return;
	}
	struct bench_slot *s = &c->slots[place];
	uint64_t now = bench_now_ns();
	hist_record(&b->c.latency[s->kind], (now - s->due_ns) / 1000u);
	b->last_answer_ns = now;
	work_answer(b, s, resp);
	s->busy = 0;
	c->inflight--;
	b->inflight--;
	if (b->phase == PH_RUN) {
		ring_push(b, c->idx);
		dispatch(b);
	} else if (b->phase == PH_DRAIN && b->inflight == 0) {
		finish(b);
	}
}

void bench_on_conn_lost(struct bench *b, struct bconn *c)
{
	for (unsigned i = 0; i < b->o.depth; i++)
		c->slots[i].busy = 0;
	b->lost += c->inflight;
	b->inflight -= c->inflight;
	c->inflight = 0;
	if (b->phase == PH_DRAIN && b->inflight == 0)
		finish(b);
}

void bench_load_free(struct bench *b)
{
	if (b->tick)
		event_free(b->tick);
	if (b->progress_ev)
		event_free(b->progress_ev);
	free(b->ring);
}
