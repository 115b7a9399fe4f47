/* bench_report.c: referral-bench's results, as a table or as JSON. Both are
 * made from the same sums below, so they always agree. */
#include "bench.h"

#include <json-c/json.h>

#include "wire.h"

struct sums {
	uint64_t sent, answered, ok;
	uint64_t by_code[BENCH_CODES];
	struct hist latency;
};

static void sum_kinds(const struct bench *b, int kind, struct sums *s)
{
	*s = (struct sums){ 0 };
	for (int k = 0; k < BK_COUNT; k++) {
		if (kind >= 0 && k != kind)
			continue;
		s->sent += b->c.sent[k];
		s->answered += b->c.answered[k];
		for (int i = 0; i < BENCH_CODES; i++)
			s->by_code[i] += b->c.by_code[k][i];
		hist_merge(&s->latency, &b->c.latency[k]);
	}
	s->ok = s->by_code[0];
}

/* Seconds from the start to the last answer, or to the end of the schedule
 * when that is later (a run that stops early stops at its last answer). */
static double elapsed_s(const struct bench *b)
{
	uint64_t stop = b->last_answer_ns;
	if (!b->exhausted && b->end_ns > stop)
		stop = b->end_ns;
	return stop > b->t0_ns ? (double)(stop - b->t0_ns) / 1e9 : 0.0;
}

static const char *code_label(int code)
{
	if (code == 0)
		return "ok";
	if (code == BENCH_CODES - 1)
		return "other";
	return wire_error_code_name((Referral__ErrorCode)code);
}

static const double pcts[] = { 50, 90, 99, 99.9 };
static const char *const pct_names[] = { "p50", "p90", "p99", "p99.9" };
#define NPCTS (sizeof pcts / sizeof pcts[0])

static double ms(uint64_t us) { return (double)us / 1000.0; }

static void table_row(FILE *out, const char *name, const struct sums *s)
{
	fprintf(out, "  %-8s %9llu", name, (unsigned long long)s->latency.count);
	for (unsigned i = 0; i < NPCTS; i++)
		fprintf(out, " %8.2f", ms(hist_percentile(&s->latency, pcts[i])));
	fprintf(out, " %8.2f %8.2f\n", ms(s->latency.max), hist_mean(&s->latency) / 1000.0);
}

void report_table(const struct bench *b, FILE *out)
{
	struct sums all;
	sum_kinds(b, -1, &all);
	double secs = elapsed_s(b);
	if (b->o.rate > 0)
		fprintf(out, "referral-bench: %s, fixed rate %.0f/s", work_workload_name(b->o.workload),
			b->o.rate);
	else
		fprintf(out, "referral-bench: %s, closed loop", work_workload_name(b->o.workload));
	fprintf(out, ", %u connections x depth %u", b->o.connections, b->o.depth);
	if (b->o.idle)
		fprintf(out, ", %u idle connections", b->o.idle);
	fprintf(out, ", %.1f s\n", secs);
	fprintf(out, "  sent %llu, answered %llu, unanswered %llu, lost with a connection %llu",
		(unsigned long long)all.sent, (unsigned long long)all.answered,
		(unsigned long long)b->inflight, (unsigned long long)b->lost);
	if (b->o.rate > 0)
		fprintf(out, ", due but not sent %llu", (unsigned long long)b->due_unsent);
	fprintf(out, "\n  outcomes:");
	for (int i = 0; i < BENCH_CODES; i++)
		if (all.by_code[i])
			fprintf(out, " %s %llu", code_label(i), (unsigned long long)all.by_code[i]);
	fprintf(out, "\n  throughput: %.1f answers/s, %.1f ok/s, %.1f bookings/s\n",
		secs > 0 ? (double)all.answered / secs : 0.0, secs > 0 ? (double)all.ok / secs : 0.0,
		secs > 0 ? (double)b->bookings_ok / secs : 0.0);
	for (int i = 1; i < BENCH_CODES; i++)
		if (b->c.first_error[i][0])
			fprintf(out, "  first %s: %s\n", code_label(i), b->c.first_error[i]);
	if (b->exhausted)
		fprintf(out, "  stopped early: ran out of %s\n", b->exhausted);
	if (b->conn_errors || b->idle_lost)
		fprintf(out, "  connection errors %llu, idle connections lost %llu\n",
			(unsigned long long)b->conn_errors, (unsigned long long)b->idle_lost);
	fprintf(out, "  latency ms %9s %8s %8s %8s %8s %8s %8s\n", "count", "p50", "p90", "p99",
		"p99.9", "max", "mean");
	for (int k = 0; k < BK_COUNT; k++) {
		struct sums s;
		sum_kinds(b, k, &s);
		if (s.sent)
			table_row(out, work_kind_name((enum bench_kind)k), &s);
	}
	table_row(out, "all", &all);
}

static json_object *latency_json(const struct hist *h)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "count", json_object_new_uint64(h->count));
	json_object_object_add(o, "mean", json_object_new_double(hist_mean(h) / 1000.0));
	for (unsigned i = 0; i < NPCTS; i++)
		json_object_object_add(o, pct_names[i],
				       json_object_new_double(ms(hist_percentile(h, pcts[i]))));
	json_object_object_add(o, "max", json_object_new_double(ms(h->max)));
	return o;
}

static json_object *outcomes_json(const struct sums *s)
{
	json_object *o = json_object_new_object();
	for (int i = 0; i < BENCH_CODES; i++)
		if (s->by_code[i] || i == 0)
			json_object_object_add(o, code_label(i), json_object_new_uint64(s->by_code[i]));
	return o;
}

static json_object *sums_json(const struct sums *s)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "sent", json_object_new_uint64(s->sent));
	json_object_object_add(o, "answered", json_object_new_uint64(s->answered));
	json_object_object_add(o, "outcomes", outcomes_json(s));
	json_object_object_add(o, "latency_ms", latency_json(&s->latency));
	return o;
}

static void add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static json_object *config_json(const struct bench *b)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "workload", json_object_new_string(work_workload_name(b->o.workload)));
	json_object_object_add(o, "mode", json_object_new_string(b->o.rate > 0 ? "fixed-rate" : "closed-loop"));
	json_object_object_add(o, "rate", json_object_new_double(b->o.rate));
	add_u64(o, "connections", b->o.connections);
	add_u64(o, "depth", b->o.depth);
	add_u64(o, "idle", b->o.idle);
	json_object_object_add(o, "duration_s", json_object_new_double(b->o.duration_s));
	json_object_object_add(o, "key_prefix", json_object_new_string(b->key_prefix));
	add_u64(o, "patient_first", b->o.patient_first);
	add_u64(o, "patients_used", b->next_patient - b->o.patient_first);
	return o;
}

void report_json(const struct bench *b, FILE *out)
{
	struct sums all;
	sum_kinds(b, -1, &all);
	double secs = elapsed_s(b);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "config", config_json(b));
	json_object_object_add(o, "elapsed_s", json_object_new_double(secs));
	add_u64(o, "sent", all.sent);
	add_u64(o, "answered", all.answered);
	add_u64(o, "ok", all.ok);
	add_u64(o, "unanswered", b->inflight);
	add_u64(o, "lost", b->lost);
	add_u64(o, "due_unsent", b->due_unsent);
	add_u64(o, "bookings_ok", b->bookings_ok);
	add_u64(o, "connection_errors", b->conn_errors);
	add_u64(o, "idle_lost", b->idle_lost);
	json_object_object_add(o, "exhausted", b->exhausted ? json_object_new_string(b->exhausted) : NULL);
	json_object_object_add(o, "outcomes", outcomes_json(&all));
	json_object *samples = json_object_new_object();
	for (int i = 1; i < BENCH_CODES; i++)
		if (b->c.first_error[i][0])
			json_object_object_add(samples, code_label(i),
					       json_object_new_string(b->c.first_error[i]));
	json_object_object_add(o, "first_errors", samples);
	json_object *tp = json_object_new_object();
	json_object_object_add(tp, "answers_per_s", json_object_new_double(secs > 0 ? (double)all.answered / secs : 0));
	json_object_object_add(tp, "ok_per_s", json_object_new_double(secs > 0 ? (double)all.ok / secs : 0));
	json_object_object_add(tp, "bookings_per_s", json_object_new_double(secs > 0 ? (double)b->bookings_ok / secs : 0));
	json_object_object_add(o, "throughput", tp);
	json_object_object_add(o, "latency_ms", latency_json(&all.latency));
	json_object *kinds = json_object_new_object();
	for (int k = 0; k < BK_COUNT; k++) {
		struct sums s;
		sum_kinds(b, k, &s);
		if (s.sent)
			json_object_object_add(kinds, work_kind_name((enum bench_kind)k), sums_json(&s));
	}
	json_object_object_add(o, "by_kind", kinds);
	fprintf(out, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								  JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}
