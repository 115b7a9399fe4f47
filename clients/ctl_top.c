/*
 * ctl_top.c: referralctl top, a live view of one daemon, like top(1).
 *
 * It polls the daemon's live counters (LiveRequest: cumulative since the
 * daemon started) and shows what changed between two polls: requests per
 * second by type, their latency percentiles (from the histogram buckets),
 * errors per second by code, bookings and referrals per minute, beside the
 * connections by role and the state of the database pools.
 *
 * On a terminal it draws in place with ANSI escapes on the alternate screen,
 * in raw mode (termios) so that a key press is seen at once; it fits the
 * terminal (80x24 is enough), redraws when the terminal is resized, and on
 * q, Ctrl-C, SIGTERM or SIGHUP restores the terminal and exits 0. With -b, or
 * when standard output is not a terminal, it prints plain frames one after
 * the other instead (batch mode, as top -b).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ctl_commands.h"
#include "ctl_output.h"

#define MAX_LINES 200
#define LINE_BYTES 256

/* ---- options ------------------------------------------------------------------ */

struct top_opts {
	double delay_s;
	long iterations;     /* 0: until q */
	int batch;
};

static int parse_top(int argc, char **argv, struct top_opts *o)
{
	static const struct option opts[] = {
		{ "delay", required_argument, NULL, 'd' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "batch", no_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	char *end;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "-d:n:b", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			o->delay_s = strtod(optarg, &end);
			if (*end || !(o->delay_s >= 0.1 && o->delay_s <= 3600))
				return ctl_usage_error("top", "-d takes seconds from 0.1 to 3600");
			break;
		case 'n':
			o->iterations = strtol(optarg, &end, 10);
			if (*end || o->iterations < 1)
				return ctl_usage_error("top", "-n takes a number of refreshes, 1 or more");
			break;
		case 'b': o->batch = 1; break;
		case 1: return ctl_usage_error("top", "takes no arguments, only options");
		default: return CTL_ERR_USAGE;
		}
	}
	return optind < argc ? ctl_usage_error("top", "takes no arguments, only options") : CTL_OK;
}

/* ---- the terminal ---------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested, resized;

static void on_stop(int sig) { (void)sig; stop_requested = 1; }
static void on_resize(int sig) { (void)sig; resized = 1; }

struct term {
	int raw;                 /* termios changed: restore on exit */
	int screen;              /* alternate screen entered */
	struct termios saved;
};

/* Without SA_RESTART: a signal interrupts the wait between refreshes. */
static void catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_stop };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = on_resize;
	sigaction(SIGWINCH, &sa, NULL);
}

static void write_all(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDOUT_FILENO, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* Keys one at a time, no echo; Ctrl-C still signals, Ctrl-Z is off (a
 * stopped top would leave the terminal raw). */
static void term_enter(struct term *t)
{
	if (tcgetattr(STDIN_FILENO, &t->saved) == 0) {
		struct termios raw = t->saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		raw.c_cc[VSUSP] = _POSIX_VDISABLE;
		t->raw = tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0;
	}
	/* The alternate screen keeps the shell's screen; the cursor hides. */
	write_all("\033[?1049h\033[?25l\033[2J", strlen("\033[?1049h\033[?25l\033[2J"));
	t->screen = 1;
}

static void term_leave(struct term *t)
{
	if (t->screen)
		write_all("\033[?25h\033[?1049l", strlen("\033[?25h\033[?1049l"));
	if (t->raw)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &t->saved);
	t->screen = t->raw = 0;
}

static void term_size(int *cols, int *rows)
{
	struct winsize ws;
	*cols = 80;
	*rows = 24;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
		*cols = ws.ws_col;
		*rows = ws.ws_row;
	}
}

/* Waits up to ms for a key; returns 1 when it was q. */
static int wait_key(int ms, int keys)
{
	struct pollfd p = { STDIN_FILENO, POLLIN, 0 };
	if (poll(&p, keys ? 1 : 0, ms) <= 0)
		return 0;
	char buf[32];
	ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == 'q' || buf[i] == 'Q')
			return 1;
	return 0;
}

/* ---- the figures ------------------------------------------------------------------- */

struct sample {
	Referral__Response *resp;
	double at;               /* monotonic seconds when it came */
};

static double monotonic_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const Referral__RequestCounters *find_type(const Referral__LiveCounters *l, const char *type)
{
	for (size_t i = 0; l && i < l->n_requests; i++)
		if (strcmp(l->requests[i]->type, type) == 0)
			return l->requests[i];
	return NULL;
}

static uint64_t code_count(const Referral__RequestCounters *t, const char *code)
{
	for (size_t i = 0; t && i < t->n_codes; i++)
		if (strcmp(t->codes[i]->name, code) == 0)
			return t->codes[i]->value;
	return 0;
}

static uint64_t errors_of(const Referral__RequestCounters *t)
{
	return t ? t->count - code_count(t, "ok") : 0;
}

/* What one request type did between two polls. */
struct type_delta {
	const char *type;
	double count, errors;
	uint64_t total;
	double p50, p90, p99;    /* milliseconds; NAN: no request; INFINITY: above the last bucket */
};

/* The p-quantile of a histogram (per-bucket counts, not cumulative), in
 * milliseconds, interpolating within the bucket as histogram_quantile()
 * does. Requests above the last bound are the count not in any bucket. */
static double quantile_ms(double p, const double *counts, const double *bounds, size_t n,
			  double total)
{
	if (total <= 0)
		return NAN;
	double rank = p * total, seen = 0;
	for (size_t b = 0; b < n; b++) {
		if (counts[b] > 0 && seen + counts[b] >= rank) {
			double lo = b == 0 ? 0 : bounds[b - 1];
			return (lo + (bounds[b] - lo) * (rank - seen) / counts[b]) * 1000;
		}
		seen += counts[b];
	}
	return INFINITY;
}

static void type_delta(struct type_delta *d, const Referral__LiveCounters *cur,
		       const Referral__RequestCounters *now, const Referral__RequestCounters *before)
{
	double counts[64] = { 0 };
	size_t n = now->n_buckets < 64 ? now->n_buckets : 64;
	if (n > cur->n_bucket_bounds)
		n = cur->n_bucket_bounds;
	d->type = now->type;
	d->total = now->count;
	d->count = (double)(now->count - (before ? before->count : 0));
	d->errors = (double)(errors_of(now) - errors_of(before));
	for (size_t b = 0; b < n; b++)
		counts[b] = (double)(now->buckets[b] -
				     (before && b < before->n_buckets ? before->buckets[b] : 0));
	d->p50 = quantile_ms(0.50, counts, cur->bucket_bounds, n, d->count);
	d->p90 = quantile_ms(0.90, counts, cur->bucket_bounds, n, d->count);
	d->p99 = quantile_ms(0.99, counts, cur->bucket_bounds, n, d->count);
}

static int by_rate(const void *a, const void *b)
{
	const struct type_delta *x = a, *y = b;
	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	if (x->total != y->total)
		return x->total < y->total ? 1 : -1;
	return strcmp(x->type, y->type);
}

/* ---- the frame ----------------------------------------------------------------------- */

struct frame {
	char lines[MAX_LINES][LINE_BYTES];
	int n;
};

static void add(struct frame *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct frame *f, const char *fmt, ...)
{
	if (f->n >= MAX_LINES)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->lines[f->n++], LINE_BYTES, fmt, ap);
	va_end(ap);
}

static void format_ms(char *buf, size_t len, double ms)
{
	if (isnan(ms))
		snprintf(buf, len, "-");
	else if (isinf(ms))
		snprintf(buf, len, ">10000");
	else
		snprintf(buf, len, ms < 10 ? "%.2f" : ms < 1000 ? "%.1f" : "%.0f", ms);
}

static void add_pool(struct frame *f, const char *name, const Referral__PoolCounters *now,
		     const Referral__PoolCounters *before, double dt)
{
	if (!now || !now->state[0]) {
		add(f, "%-9sunknown", name);
		return;
	}
	double q = (double)(now->queries_total - (before ? before->queries_total : 0)) / dt;
	double u = (double)(now->unavailable_total - (before ? before->unavailable_total : 0)) / dt;
	add(f, "%-9s%-8s %u/%u  busy %u  queue %u  queries %.1f/s  unavailable %.1f/s", name,
	    now->state, now->connections_up, now->connections, now->busy, now->queue_length, q, u);
}

static double ok_delta(const Referral__LiveCounters *now, const Referral__LiveCounters *before,
		       const char *type)
{
	return (double)(code_count(find_type(now, type), "ok") -
			code_count(find_type(before, type), "ok"));
}

static void add_header(struct frame *f, const struct ctl *ctl, const Referral__LiveCounters *l,
		       const Referral__LiveCounters *before, double dt)
{
	char up[32], clock[16], roles[200] = "";
	time_t t = time(NULL);
	unsigned total = 0;
	ctl_format_age(up, sizeof up, (long long)l->uptime_seconds);
	strftime(clock, sizeof clock, "%H:%M:%S", localtime(&t));
	add(f, "referrald %s at %s:%s  up %s  %s  %s", l->server_version, ctl->host, ctl->port, up,
	    before ? "" : "(since start)", clock);
	for (size_t i = 0; i < l->n_connections; i++) {
		total += (unsigned)l->connections[i]->value;
		snprintf(roles + strlen(roles), sizeof roles - strlen(roles), "  %s %llu",
			 l->connections[i]->name, (unsigned long long)l->connections[i]->value);
	}
	add(f, "conns %u:%s", total, roles);
	double answered = 0, errors = 0;
	for (size_t i = 0; i < l->n_requests; i++) {
		const Referral__RequestCounters *b = find_type(before, l->requests[i]->type);
		answered += (double)(l->requests[i]->count - (b ? b->count : 0));
		errors += (double)(errors_of(l->requests[i]) - errors_of(b));
	}
	double bookings = ok_delta(l, before, "book") + ok_delta(l, before, "emergency_book");
	double referrals = ok_delta(l, before, "refer_up") + ok_delta(l, before, "refer_down");
	add(f, "reqs %.1f/s  errors %.1f/s  in flight %u  bookings %.1f/min  referrals %.1f/min",
	    answered / dt, errors / dt, l->requests_in_flight, bookings * 60 / dt,
	    referrals * 60 / dt);
	add_pool(f, "database", l->database, before ? before->database : NULL, dt);
	add_pool(f, "figures", l->figures, before ? before->figures : NULL, dt);
}

/* The error codes that moved (or, at the first frame, that ever occurred). */
static void add_errors(struct frame *f, const Referral__LiveCounters *l,
		       const Referral__LiveCounters *before, double dt, int width)
{
	char line[LINE_BYTES] = "errors/s";
	size_t start = strlen(line);
	int lines = 0;
	for (size_t i = 0; i < l->n_requests; i++) {
		for (size_t c = 0; c < l->requests[i]->n_codes; c++) {
			const char *code = l->requests[i]->codes[c]->name;
			if (strcmp(code, "ok") == 0 || strstr(line, code))
				continue;   /* once per code, summed over the types */
			double n = 0;
			for (size_t k = 0; k < l->n_requests; k++)
				n += (double)(code_count(l->requests[k], code) -
					      code_count(find_type(before, l->requests[k]->type), code));
			char item[64];
			snprintf(item, sizeof item, "  %s %.2f", code, n / dt);
			if (strlen(line) + strlen(item) > (size_t)width && lines < 1) {
				add(f, "%s", line);
				lines++;
				snprintf(line, sizeof line, "%*s", (int)start, "");
			}
			snprintf(line + strlen(line), sizeof line - strlen(line), "%s", item);
		}
	}
	if (strlen(line) == start)
		snprintf(line + start, sizeof line - start, "  none");
	add(f, "%s", line);
}

static void add_types(struct frame *f, const Referral__LiveCounters *l,
		      const Referral__LiveCounters *before, double dt, int room)
{
	struct type_delta d[64];
	size_t n = 0;
	for (size_t i = 0; i < l->n_requests && n < 64; i++)
		type_delta(&d[n++], l, l->requests[i], find_type(before, l->requests[i]->type));
	qsort(d, n, sizeof d[0], by_rate);
	add(f, "%-16s %9s %8s %8s %8s %8s %12s", "TYPE", "REQ/S", "ERR/S", "P50 ms", "P90 ms",
	    "P99 ms", "TOTAL");
	for (size_t i = 0; i < n && (int)i < room; i++) {
		char p50[16], p90[16], p99[16];
		format_ms(p50, sizeof p50, d[i].p50);
		format_ms(p90, sizeof p90, d[i].p90);
		format_ms(p99, sizeof p99, d[i].p99);
		add(f, "%-16s %9.2f %8.2f %8s %8s %8s %12llu", d[i].type, d[i].count / dt,
		    d[i].errors / dt, p50, p90, p99, (unsigned long long)d[i].total);
	}
	if ((int)n > room && room > 0)
		snprintf(f->lines[f->n - 1], LINE_BYTES, "... %zu more types (a taller terminal shows them)",
			 n - (size_t)room + 1);
}

/* One screen: 6 lines of header, the types, 2 lines of errors. */
static void render(struct frame *f, const struct ctl *ctl, const struct sample *prev,
		   const struct sample *cur, int cols, int rows)
{
	const Referral__LiveCounters *l = cur->resp->live;
	const Referral__LiveCounters *before = prev->resp ? prev->resp->live : NULL;
	/* The first frame has nothing to compare with: averages since start. */
	double dt = before ? cur->at - prev->at : l->uptime_seconds;
	if (dt <= 0)
		dt = 1e-3;
	f->n = 0;
	add_header(f, ctl, l, before, dt);
	add(f, "%s", "");
	int room = rows - f->n - 1 /* header */ - 3 /* blank, errors */;
	add_types(f, l, before, dt, room < 1 ? 1 : room);
	add(f, "%s", "");
	add_errors(f, l, before, dt, cols);
}

/* ---- drawing ------------------------------------------------------------------------- */

static void draw_screen(const struct frame *f, int cols, int rows)
{
	static char out[MAX_LINES * (LINE_BYTES + 8) + 16];
	size_t n = 0;
	n += (size_t)snprintf(out + n, sizeof out - n, "\033[H");
	for (int i = 0; i < f->n && i < rows; i++) {
		int len = (int)strlen(f->lines[i]);
		/* No newline after the last row: the screen must not scroll. */
		n += (size_t)snprintf(out + n, sizeof out - n, "%.*s\033[K%s", len < cols ? len : cols,
				      f->lines[i], i + 1 < rows && i + 1 < f->n ? "\r\n" : "");
	}
	n += (size_t)snprintf(out + n, sizeof out - n, "\033[J");
	write_all(out, n);
}

static void print_batch(const struct frame *f)
{
	for (int i = 0; i < f->n; i++)
		printf("%s\n", f->lines[i]);
	printf("\n");
	fflush(stdout);
}

static int poll_live(struct ctl *ctl, struct sample *s, char *err, size_t errlen)
{
	Referral__LiveRequest lr = REFERRAL__LIVE_REQUEST__INIT;
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_LIVE;
	req.live = &lr;
	s->resp = rc_call(ctl->client, &req, ctl->timeout_ms, err, errlen);
	s->at = monotonic_s();
	return s->resp ? 0 : -1;
}

static void sample_free(struct sample *s)
{
	if (s->resp)
		referral__response__free_unpacked(s->resp, NULL);
	s->resp = NULL;
}

/* Why the loop ended, reported once the terminal is back. */
struct top_end {
	int rc;
	char err[256];
	Referral__Response *refused;   /* the server's error answer */
};

static void top_loop(struct ctl *ctl, const struct top_opts *o, int interactive,
		     struct top_end *end)
{
	static struct frame frame;
	struct sample prev = { 0 }, cur = { 0 };
	int keys = interactive && isatty(STDIN_FILENO);
	end->rc = CTL_OK;
	for (long done = 0; !stop_requested && (o->iterations == 0 || done < o->iterations); done++) {
		/* A resize redraws at once. */
		if (done > 0 && !(interactive && resized)) {
			if (wait_key((int)(o->delay_s * 1000), keys) || stop_requested)
				break;
		}
		resized = 0;
		if (poll_live(ctl, &cur, end->err, sizeof end->err) < 0) {
			end->rc = CTL_ERR_TRANSPORT;
			break;
		}
		if (cur.resp->error) {
			end->rc = CTL_ERR_SERVER;
			end->refused = cur.resp;
			cur.resp = NULL;
			break;
		}
		int cols = 80, rows = MAX_LINES;
		if (interactive)
			term_size(&cols, &rows);
		render(&frame, ctl, &prev, &cur, cols, rows);
		if (interactive)
			draw_screen(&frame, cols, rows);
		else
			print_batch(&frame);
		sample_free(&prev);
		prev = cur;
		cur.resp = NULL;
	}
	sample_free(&prev);
	sample_free(&cur);
}

int cmd_top(struct ctl *ctl, int argc, char **argv)
{
	struct top_opts o = { .delay_s = 2.0 };
	int rc = parse_top(argc, argv, &o);
	if (rc != CTL_OK)
		return rc;
	int interactive = !o.batch && isatty(STDOUT_FILENO);
	struct term t = { 0 };
	struct top_end end = { 0 };
	catch_signals();
	if (interactive)
		term_enter(&t);
	top_loop(ctl, &o, interactive, &end);
	term_leave(&t);
	if (end.rc == CTL_ERR_TRANSPORT)
		fprintf(stderr, "referralctl top: %s\n", end.err);
	if (end.refused) {
		ctl_print_error(ctl, end.refused->error);
		referral__response__free_unpacked(end.refused, NULL);
	}
	return end.rc;
}
