/*
 * referral-bench: a load generator for referrald over the real protocol.
 * See bench.h for the parts and docs/benchmarks.md for how to use it.
 */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_fail(struct bench *b, int code, const char *fmt, ...)
{
	if (!b->fatal_code) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(b->fatal, sizeof b->fatal, fmt, ap);
		va_end(ap);
		b->fatal_code = code;
	}
	b->phase = PH_DONE;
	event_base_loopbreak(b->base);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: referral-bench [options]\n\n"
		"server and credentials (as for referralctl):\n"
		"  -H, --host HOST          server address (REFERRAL_HOST, default 127.0.0.1)\n"
		"  -p, --port PORT          server port (REFERRAL_PORT, default 7420)\n"
		"  -C, --community ID       the terminal's community (REFERRAL_COMMUNITY)\n"
		"  -t, --terminal ID        terminal id, a clinic terminal (REFERRAL_TERMINAL)\n"
		"  -k, --token TOKEN        terminal token (REFERRAL_TOKEN; prefer the variable)\n\n"
		"load:\n"
		"  -c, --connections N      connections sending requests (default 16)\n"
		"  -d, --depth N            requests in flight per connection (default 1, at most %u)\n"
		"  -w, --workload W         spread, hot, search, refer or mix (default spread)\n"
		"  -D, --duration SECONDS   how long requests are sent (default 10)\n"
		"  -r, --rate R             fixed rate, R requests/s in all; latency counts from\n"
		"                           when each request was due (default: closed loop)\n"
		"      --mix B,S,R          mix: percent of book, search, refer (default 70,20,10)\n"
		"      --idle N             also hold N authenticated connections that stay idle\n\n"
		"what to book:\n"
		"      --sessions A-B       session ids for spread, refer and mix (drawn at random)\n"
		"      --hot-sessions A-B   hot: book A until it is full, then A+1, ...\n"
		"      --patients F:N       patients F .. F+N-1 of scripts/bench/setup.sql, each used once\n"
		"      --refer-to I         refer: the hospital (default county-hospital)\n"
		"      --refer-department D refer: its department (default cardiology)\n\n"
		"output:\n"
		"  -j, --json               results as JSON\n"
		"  -P, --progress           a line per second on standard error\n"
		"      --record FILE        write every acknowledged booking (kind, key, booking, session)\n"
		"      --key-prefix P       idempotency keys are P-CONN-SERIAL (default: unique per run)\n"
		"      --drain SECONDS      wait this long for answers after the end (default 30)\n"
		"      --connect-timeout S  connecting and Hello of every connection (default 120)\n"
		"      --seed N             random seed for the choice of sessions\n\n"
		"exit codes: 0 done, 1 the run went wrong (lost connections, unanswered requests,\n"
		"ran out of patients or sessions), 2 usage, 3 unreachable, 4 refused credentials\n",
		BENCH_MAX_DEPTH);
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v && v[0] ? v : def;
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_seconds(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || !(v > 0) || v > 86400)
		return -1;
	*out = v;
	return 0;
}

static int parse_range(const char *s, char sep, struct bench_range *r)
{
	long long a, bb;
	char tail;
	char fmt[16];
	snprintf(fmt, sizeof fmt, "%%lld%c%%lld%%c", sep);
	if (sscanf(s, fmt, &a, &bb, &tail) != 2 || a <= 0 || bb < (sep == ':' ? 1 : a))
		return -1;
	r->first = a;
	r->last = bb;
	return 0;
}

static int parse_workload(const char *s, enum bench_workload *w)
{
	for (int i = WL_SPREAD; i <= WL_MIX; i++)
		if (strcmp(s, work_workload_name((enum bench_workload)i)) == 0) {
			*w = (enum bench_workload)i;
			return 0;
		}
	return -1;
}

static int parse_mix(const char *s, unsigned mix[BK_COUNT])
{
	char tail;
	return sscanf(s, "%u,%u,%u%c", &mix[BK_BOOK], &mix[BK_SEARCH], &mix[BK_REFER], &tail) == 3
		       ? 0 : -1;
}

enum { OPT_MIX = 256, OPT_IDLE, OPT_SESSIONS, OPT_HOT, OPT_PATIENTS, OPT_REFER_TO,
       OPT_REFER_DEPT, OPT_RECORD, OPT_KEY_PREFIX, OPT_DRAIN, OPT_CONNECT_TIMEOUT, OPT_SEED };

static int bad(const char *opt, const char *val)
{
	fprintf(stderr, "referral-bench: bad value '%s' for %s\n", val, opt);
	return -1;
}

/* One option into o; -1 on a bad value. */
static int set_option(struct bench_opts *o, int ch, const char *arg)
{
	unsigned long long v;
	struct bench_range r;
	switch (ch) {
	case 'H': o->host = arg; return 0;
	case 'p': o->port = arg; return 0;
	case 'C': o->community = arg; return 0;
	case 't': o->terminal = arg; return 0;
	case 'k': o->token = arg; return 0;
	case 'j': o->json = 1; return 0;
	case 'P': o->progress = 1; return 0;
	case 'c':
		if (parse_uint(arg, 100000, &v) < 0 || v == 0)
			return bad("--connections", arg);
		o->connections = (unsigned)v;
		return 0;
	case 'd':
		if (parse_uint(arg, BENCH_MAX_DEPTH, &v) < 0 || v == 0)
			return bad("--depth", arg);
		o->depth = (unsigned)v;
		return 0;
	case 'w': return parse_workload(arg, &o->workload) < 0 ? bad("--workload", arg) : 0;
	case 'D': return parse_seconds(arg, &o->duration_s) < 0 ? bad("--duration", arg) : 0;
	case 'r': return parse_seconds(arg, &o->rate) < 0 || o->rate > 1e7 ? bad("--rate", arg) : 0;
	case OPT_MIX: return parse_mix(arg, o->mix) < 0 ? bad("--mix", arg) : 0;
	case OPT_IDLE:
		if (parse_uint(arg, 1000000, &v) < 0)
			return bad("--idle", arg);
		o->idle = (unsigned)v;
		return 0;
	case OPT_SESSIONS: return parse_range(arg, '-', &o->sessions) < 0 ? bad("--sessions", arg) : 0;
	case OPT_HOT: return parse_range(arg, '-', &o->hot) < 0 ? bad("--hot-sessions", arg) : 0;
	case OPT_PATIENTS:
		if (parse_range(arg, ':', &r) < 0)
			return bad("--patients", arg);
		o->patient_first = (uint64_t)r.first;
		o->patient_count = (uint64_t)r.last;
		return 0;
	case OPT_REFER_TO: o->refer_to = arg; return 0;
	case OPT_REFER_DEPT: o->refer_department = arg; return 0;
	case OPT_RECORD: o->record_path = arg; return 0;
	case OPT_KEY_PREFIX:
		if (!arg[0] || strlen(arg) > 40)
			return bad("--key-prefix", arg);
		o->key_prefix = arg;
		return 0;
	case OPT_DRAIN: return parse_seconds(arg, &o->drain_s) < 0 ? bad("--drain", arg) : 0;
	case OPT_CONNECT_TIMEOUT:
		return parse_seconds(arg, &o->connect_timeout_s) < 0 ? bad("--connect-timeout", arg) : 0;
	case OPT_SEED:
		if (parse_uint(arg, UINT64_MAX, &v) < 0)
			return bad("--seed", arg);
		o->seed = v;
		return 0;
	}
	return -1;
}

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "community", required_argument, NULL, 'C' },
		{ "terminal", required_argument, NULL, 't' },
		{ "token", required_argument, NULL, 'k' },
		{ "connections", required_argument, NULL, 'c' },
		{ "depth", required_argument, NULL, 'd' },
		{ "workload", required_argument, NULL, 'w' },
		{ "duration", required_argument, NULL, 'D' },
		{ "rate", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "progress", no_argument, NULL, 'P' },
		{ "mix", required_argument, NULL, OPT_MIX },
		{ "idle", required_argument, NULL, OPT_IDLE },
		{ "sessions", required_argument, NULL, OPT_SESSIONS },
		{ "hot-sessions", required_argument, NULL, OPT_HOT },
		{ "patients", required_argument, NULL, OPT_PATIENTS },
		{ "refer-to", required_argument, NULL, OPT_REFER_TO },
		{ "refer-department", required_argument, NULL, OPT_REFER_DEPT },
		{ "record", required_argument, NULL, OPT_RECORD },
		{ "key-prefix", required_argument, NULL, OPT_KEY_PREFIX },
		{ "drain", required_argument, NULL, OPT_DRAIN },
		{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "H:p:C:t:k:c:d:w:D:r:jPh", opts, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			exit(BENCH_OK);
		}
		if (ch == '?' || set_option(o, ch, optarg) < 0) {
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "referral-bench: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (!o->community || !o->terminal || !o->token) {
		fprintf(stderr, "referral-bench: credentials missing: set --community, --terminal and "
				"--token (or REFERRAL_COMMUNITY, REFERRAL_TERMINAL, REFERRAL_TOKEN)\n");
		return -1;
	}
	char err[160];
	if (work_check_opts(o, err, sizeof err) < 0) {
		fprintf(stderr, "referral-bench: %s\n", err);
		return -1;
	}
	return 0;
}

/* Every connection is a file descriptor: raise the soft limit as far as the
 * hard one allows, and say so when that is not enough. */
static void raise_fd_limit(unsigned want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rlim_t to = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
	rl.rlim_cur = to;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (to < want)
		fprintf(stderr, "referral-bench: warning: open-file limit %llu is below the %u "
				"needed (ulimit -n)\n", (unsigned long long)to, want);
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct bench *b = arg;
	if (b->phase == PH_CONNECT)
		bench_fail(b, BENCH_ERR_TRANSPORT, "only %u of %u connections were ready after %.0f s",
			   b->ready, b->nconns, b->o.connect_timeout_s);
}

static int setup(struct bench *b)
{
	b->nconns = b->o.connections + b->o.idle;
	raise_fd_limit(b->nconns + 64);
	b->conns = calloc(b->nconns, sizeof *b->conns);
	if (!b->conns)
		return -1;
	for (unsigned i = 0; i < b->nconns; i++) {
		struct bconn *c = &b->conns[i];
		c->b = b;
		c->idx = i;
		c->idle = i >= b->o.connections;
		if (!c->idle && !(c->slots = calloc(b->o.depth, sizeof *c->slots)))
			return -1;
	}
	if (b->o.key_prefix)
		snprintf(b->key_prefix, sizeof b->key_prefix, "%s", b->o.key_prefix);
	else
		snprintf(b->key_prefix, sizeof b->key_prefix, "rb%lx%x", (long)time(NULL),
			 (unsigned)getpid());
	b->rng = b->o.seed ? b->o.seed : (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
	b->next_patient = b->o.patient_first;
	b->hot_current = b->o.hot.first;
	if (b->o.record_path && !(b->record = fopen(b->o.record_path, "w"))) {
		fprintf(stderr, "referral-bench: cannot write %s: %s\n", b->o.record_path,
			strerror(errno));
		return -1;
	}
	return 0;
}

static int run(struct bench *b)
{
	struct event_config *cfg = event_config_new();
	if (cfg)
		event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	b->base = cfg ? event_base_new_with_config(cfg) : NULL;
	if (cfg)
		event_config_free(cfg);
	if (!b->base || bench_resolve(b) < 0)
		return b->fatal_code ? b->fatal_code : BENCH_ERR_RUN;
	struct timeval tv = { (time_t)b->o.connect_timeout_s, 0 };
	struct event *timeout = evtimer_new(b->base, connect_timeout_cb, b);
	if (timeout)
		evtimer_add(timeout, &tv);
	bench_connect_more(b);
	if (b->phase != PH_DONE)
		event_base_dispatch(b->base);
	if (timeout)
		event_free(timeout);
	if (b->fatal_code)
		return b->fatal_code;
	if (b->exhausted || b->conn_errors || b->lost || b->inflight || b->idle_lost)
		return BENCH_ERR_RUN;
	return BENCH_OK;
}

int main(int argc, char **argv)
{
	static struct bench bench;   /* large (histograms): not on the stack */
	struct bench *b = &bench;
	b->o = (struct bench_opts){
		.host = env_or("REFERRAL_HOST", "127.0.0.1"),
		.port = env_or("REFERRAL_PORT", "7420"),
		.community = env_or("REFERRAL_COMMUNITY", NULL),
		.terminal = env_or("REFERRAL_TERMINAL", NULL),
		.token = env_or("REFERRAL_TOKEN", NULL),
		.connections = 16,
		.depth = 1,
		.workload = WL_SPREAD,
		.mix = { 70, 20, 10 },
		.duration_s = 10,
		.drain_s = 30,
		.connect_timeout_s = 120,
		.refer_to = "county-hospital",
		.refer_department = "cardiology",
	};
	if (parse_args(argc, argv, &b->o) < 0)
		return BENCH_ERR_USAGE;
	signal(SIGPIPE, SIG_IGN);
	if (setup(b) < 0)
		return BENCH_ERR_RUN;
	int rc = run(b);
	if (b->record)
		fclose(b->record);
	if (b->fatal_code)
		fprintf(stderr, "referral-bench: %s\n", b->fatal);
	if (b->phase == PH_DONE && b->t0_ns) {
		if (b->o.json)
			report_json(b, stdout);
		else
			report_table(b, stdout);
	}
	bench_load_free(b);
	bench_conns_free(b);
	if (b->base)
		event_base_free(b->base);
	libevent_global_shutdown();
	return rc;
}
