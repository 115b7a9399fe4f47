/*
 * bench.h: referral-bench, the load generator (docs/benchmarks.md).
 *
 * One process, one libevent loop, many connections. Each connection keeps
 * up to `depth` requests in flight (pipelining). Free pipeline places wait
 * in one ring; the scheduler (bench_load.c) hands them requests either at
 * once (closed loop) or when the fixed-rate schedule says a request is due.
 * Latency runs from the moment a request was due, not from when it could be
 * sent, so that a saturated server cannot hide its queue by slowing the
 * client down (coordinated omission).
 *
 *   bench_main.c    options, the run, exit codes
 *   bench_conn.c    connections: connect, Hello, frames in and out
 *   bench_load.c    the schedule: closed loop or fixed rate, end and drain
 *   bench_work.c    the workloads: what each request is, what each answer means
 *   bench_report.c  the table and the JSON
 */
#ifndef REFERRAL_BENCH_H
#define REFERRAL_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "bench_hist.h"
#include "referral.pb-c.h"

#define BENCH_VERSION "0.1.0"
/* Request ids carry the pipeline place in their low bits. */
#define BENCH_SLOT_BITS 12
#define BENCH_MAX_DEPTH (1u << BENCH_SLOT_BITS)
/* Error codes are counted by number; larger ones land in the last entry. */
#define BENCH_CODES 16

enum bench_exit { BENCH_OK = 0, BENCH_ERR_RUN = 1, BENCH_ERR_USAGE = 2,
		  BENCH_ERR_TRANSPORT = 3, BENCH_ERR_AUTH = 4 };

enum bench_workload { WL_SPREAD, WL_HOT, WL_SEARCH, WL_REFER, WL_MIX };

/* What a request is, for counting and latency. */
enum bench_kind { BK_BOOK, BK_SEARCH, BK_REFER, BK_COUNT };

struct bench_range {
	int64_t first, last;   /* inclusive; first 0: not given */
};

struct bench_opts {
	const char *host, *port, *community, *terminal, *token;
	unsigned connections, depth, idle;
	enum bench_workload workload;
	unsigned mix[BK_COUNT];           /* percent of each kind, for mix */
	double duration_s, rate;          /* rate 0: closed loop */
	double drain_s, connect_timeout_s;
	struct bench_range sessions, hot; /* session ids: spread range, hot range */
	uint64_t patient_first, patient_count;
	const char *refer_to, *refer_department;
	const char *record_path, *key_prefix;
	uint64_t seed;
	int json, progress;
};

/* One place in a connection's pipeline. */
struct bench_slot {
	int busy;
	enum bench_kind kind;
	uint64_t due_ns;      /* when the schedule wanted the request sent */
	int64_t session_id;
	char key[96];         /* the idempotency key, for the record */
};

enum bconn_state { BC_NEW, BC_CONNECTING, BC_HELLO, BC_READY, BC_DEAD };

struct bconn {
	struct bench *b;
	struct bufferevent *bev;
	unsigned idx;
	enum bconn_state state;
	int idle;             /* holds an authenticated connection, sends nothing more */
	unsigned inflight;
	uint64_t serial;
	struct bench_slot *slots;   /* opts.depth of them; NULL for idle ones */
};

struct bench_counts {
	uint64_t sent[BK_COUNT];
	uint64_t answered[BK_COUNT];
	uint64_t by_code[BK_COUNT][BENCH_CODES];   /* [0]: success */
	char first_error[BENCH_CODES][160];        /* the first message of each code */
	struct hist latency[BK_COUNT];             /* microseconds */
};

enum bench_phase { PH_CONNECT, PH_RUN, PH_DRAIN, PH_DONE };

struct bench {
	struct bench_opts o;
	struct event_base *base;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct bconn *conns;         /* the loaded ones first, then the idle ones */
	unsigned nconns;

	/* connecting */
	unsigned next_connect, handshaking, ready;

	/* free pipeline places: connection indices, one entry per free place */
	unsigned *ring;
	unsigned ring_cap, ring_head, ring_len;

	enum bench_phase phase;
	uint64_t t0_ns, end_ns, drain_end_ns, last_answer_ns;
	uint64_t issued;             /* requests given a due time and sent */
	uint64_t due_unsent;         /* fixed rate: due by the end, never sent */
	uint64_t inflight;
	struct event *tick, *progress_ev;
	uint64_t progress_prev_ok;

	uint64_t rng;
	uint64_t next_patient;
	int64_t hot_current;
	const char *exhausted;       /* what ran out (patients, hot sessions), or NULL */

	uint64_t conn_errors, lost, idle_lost, bookings_ok;
	char fatal[256];
	int fatal_code;
	FILE *record;
	char key_prefix[48];
	struct bench_counts c;
};

uint64_t bench_now_ns(void);
/* Stops the run with an error (first one wins); the loop ends. */
void bench_fail(struct bench *b, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* bench_conn.c */
int bench_resolve(struct bench *b);
void bench_connect_more(struct bench *b);
int bench_conn_write(struct bconn *c, const Referral__Request *req);
void bench_conns_free(struct bench *b);

/* bench_load.c */
void bench_on_ready(struct bench *b, struct bconn *c);
void bench_on_answer(struct bench *b, struct bconn *c, const Referral__Response *resp);
void bench_on_conn_lost(struct bench *b, struct bconn *c);
void bench_load_free(struct bench *b);

/* bench_work.c */
int work_check_opts(const struct bench_opts *o, char *err, size_t errlen);
/* Builds the next request of the workload into the slot and sends it on c.
 * Returns -1 when the workload has run out (patients, hot sessions). */
int work_send(struct bench *b, struct bconn *c, struct bench_slot *s, uint64_t request_id);
void work_answer(struct bench *b, struct bench_slot *s, const Referral__Response *resp);
const char *work_kind_name(enum bench_kind k);
const char *work_workload_name(enum bench_workload w);

/* bench_report.c */
void report_table(const struct bench *b, FILE *out);
void report_json(const struct bench *b, FILE *out);

#endif
