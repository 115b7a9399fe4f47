#define _GNU_SOURCE /* strptime */
/* ctl_referrals.c: referralctl's referral commands: refer up|down, worklist,
 * referral ACTION|show, history, watch. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_commands.h"
#include "ctl_output.h"

/* Events can be hours apart: wait this long, then simply wait again. */
#define WATCH_WAIT_MS (60 * 60 * 1000)

/* getopt_long hands back a positional argument as this "option". */
#define POSITIONAL 1

static const char *const urgencies[] = { "routine", "urgent", "emergency" };

/* Command-line names; "no_slot" (the history's spelling) is taken too. */
static const struct {
	const char *name;
	Referral__Action action;
} actions[] = {
	{ "accept", REFERRAL__ACTION__ACTION_ACCEPT },
	{ "reject", REFERRAL__ACTION__ACTION_REJECT },
	{ "redirect", REFERRAL__ACTION__ACTION_REDIRECT },
	{ "no-slot", REFERRAL__ACTION__ACTION_NO_SLOT },
	{ "return", REFERRAL__ACTION__ACTION_RETURN },
	{ "arrive", REFERRAL__ACTION__ACTION_ARRIVE },
	{ "admit", REFERRAL__ACTION__ACTION_ADMIT },
	{ "discharge", REFERRAL__ACTION__ACTION_DISCHARGE },
	{ "complete", REFERRAL__ACTION__ACTION_COMPLETE },
	{ "cancel", REFERRAL__ACTION__ACTION_CANCEL },
	{ "reverse-no-show", REFERRAL__ACTION__ACTION_REVERSE_NO_SHOW },
	{ "decline", REFERRAL__ACTION__ACTION_DECLINE },
	{ "follow-up", REFERRAL__ACTION__ACTION_FOLLOW_UP },
};

/* ---- parsing ------------------------------------------------------------- */

/*
 * The commands here take positional arguments anywhere among their options
 * ("referral accept ID --reason x" as well as "referral accept --reason x
 * ID"). A leading '-' in the option string returns them in place, even under
 * POSIXLY_CORRECT. main() scanned with '+', and glibc keeps that ordering
 * until optind is set to 0, which makes it read the new string afresh.
 */
static void options_begin(void)
{
	optind = 0;
}

static int unexpected(const char *cmd, const char *arg)
{
	fprintf(stderr, "referralctl %s: unexpected argument '%s'\n", cmd, arg);
	return CTL_ERR_USAGE;
}

/* A whole number in [min, max], digits only; -1 after a usage message. */
int ctl_parse_range(const char *cmd, const char *s, unsigned long long min,
		    unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end || errno || v < min || v > max) {
		fprintf(stderr, "referralctl %s: '%s' is not a whole number from %llu to %llu\n", cmd,
			s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_u32(const char *cmd, const char *s, uint32_t min, uint32_t *out)
{
	unsigned long long v;
	if (ctl_parse_range(cmd, s, min, UINT32_MAX, &v) < 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* Session ids are positive 64-bit integers. */
static int parse_id(const char *cmd, const char *s, int64_t *out)
{
	unsigned long long v;
	if (ctl_parse_range(cmd, s, 1, INT64_MAX, &v) < 0)
		return -1;
	*out = (int64_t)v;
	return 0;
}

static int parse_urgency(const char *cmd, const char *s, Referral__Urgency *out)
{
	for (size_t i = 0; i < sizeof urgencies / sizeof urgencies[0]; i++) {
		if (strcmp(s, urgencies[i]) == 0) {
			*out = (Referral__Urgency)i;
			return 0;
		}
	}
	ctl_usage_error(cmd, "--urgency is routine, urgent or emergency");
	return -1;
}

static int parse_direction(const char *s, Referral__Direction *out)
{
	if (strcmp(s, "up") == 0)
		*out = REFERRAL__DIRECTION__DIRECTION_UP;
	else if (strcmp(s, "down") == 0)
		*out = REFERRAL__DIRECTION__DIRECTION_DOWN;
	else {
		ctl_usage_error("worklist", "--direction is up or down");
		return -1;
	}
	return 0;
}

/* Names compare with '-' and '_' taken as the same. */
static int same_name(const char *a, const char *b)
{
	for (; *a && *b; a++, b++) {
		char x = *a == '_' ? '-' : *a, y = *b == '_' ? '-' : *b;
		if (x != y)
			return 0;
	}
	return *a == *b;
}

static int parse_action(const char *s, Referral__Action *out)
{
	for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++) {
		if (same_name(s, actions[i].name)) {
			*out = actions[i].action;
			return 0;
		}
	}
	fprintf(stderr, "referralctl referral: unknown action '%s'; one of show accept reject "
			"redirect no-slot return arrive admit discharge complete cancel "
			"reverse-no-show decline follow-up\n", s);
	return -1;
}

/* The daemon checks the calendar; this catches a swapped or local format. */
static int parse_date(const char *s)
{
	struct tm tm = { 0 };
	const char *rest = strptime(s, "%Y-%m-%d", &tm);
	if (strlen(s) == 10 && rest && !*rest)
		return 0;
	ctl_usage_error("refer down", "--follow-up-due wants a date, YYYY-MM-DD");
	return -1;
}

/*
 * Without --key, a fresh key for this one attempt, shown on stderr before
 * the request goes out: when the outcome is unknown (timeout, UNAVAILABLE),
 * the retry passes it and cannot refer the patient twice.
 */
void ctl_default_key(const char *cmd, char **key, char *buf, size_t len)
{
	if ((*key)[0])
		return;
	*key = ctl_fresh_key(buf, len);
	fprintf(stderr, "referralctl %s: idempotency key %s (to retry, pass --key %s)\n", cmd,
		*key, *key);
}

/* ---- output helpers ------------------------------------------------------- */

static const char *urgency_name(Referral__Urgency u)
{
	return (unsigned)u < sizeof urgencies / sizeof urgencies[0] ? urgencies[u] : "?";
}

static const char *or_dash(const char *s)
{
	return s && s[0] ? s : "-";
}

/* Reasons and details are free text: keep each entry on its one line. */
static void print_oneline(const char *s)
{
	for (; *s; s++)
		putchar((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s);
}

static void place(char *buf, size_t len, const char *institution, const char *department)
{
	if (department[0])
		snprintf(buf, len, "%s/%s", institution, department);
	else
		snprintf(buf, len, "%s", institution);
}

/* ---- refer up | down ------------------------------------------------------ */

static int send_refer_up(struct ctl *ctl, Referral__ReferUp *u, int slot_options)
{
	char key[64];
	if (!u->patient_id[0] || !u->to_institution[0] || !u->diagnosis[0] || !u->reason[0])
		return ctl_usage_error("refer up", "--patient, --to, --diagnosis and --reason are required");
	if (slot_options && !u->session_id)
		return ctl_usage_error("refer up", "--pool, --fallback and --wait-if-full go with --session");
	ctl_default_key("refer up", &u->idempotency_key, key, sizeof key);
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_REFER_UP;
	req.refer_up = u;
	return ctl_call(ctl, &req, NULL);
}

static int refer_up(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "patient", required_argument, NULL, 'p' },
		{ "to", required_argument, NULL, 't' },
		{ "department", required_argument, NULL, 'd' },
		{ "diagnosis", required_argument, NULL, 'g' },
		{ "reason", required_argument, NULL, 'r' },
		{ "urgency", required_argument, NULL, 'u' },
		{ "session", required_argument, NULL, 's' },
		{ "pool", required_argument, NULL, 'o' },
		{ "fallback", no_argument, NULL, 'f' },
		{ "wait-if-full", no_argument, NULL, 'w' },
		{ "key", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__ReferUp u = REFERRAL__REFER_UP__INIT;
	int ch, slot_options = 0;
	options_begin();
	while ((ch = getopt_long(argc, argv, "-p:t:d:g:r:u:s:o:fwk:", opts, NULL)) != -1) {
		switch (ch) {
		case 'p': u.patient_id = optarg; break;
		case 't': u.to_institution = optarg; break;
		case 'd': u.to_department = optarg; break;
		case 'g': u.diagnosis = optarg; break;
		case 'r': u.reason = optarg; break;
		case 'u': if (parse_urgency("refer up", optarg, &u.urgency) < 0) return CTL_ERR_USAGE; break;
		case 's': if (parse_id("refer up", optarg, &u.session_id) < 0) return CTL_ERR_USAGE; break;
		case 'o':
			if (ctl_parse_pool("refer up", optarg, &u.pool) < 0)
				return CTL_ERR_USAGE;
			slot_options = 1;
			break;
		case 'f': u.fallback_to_public = 1; slot_options = 1; break;
		case 'w': u.wait_if_full = 1; slot_options = 1; break;
		case 'k': u.idempotency_key = optarg; break;
		case POSITIONAL: return unexpected("refer up", optarg);
		default: return CTL_ERR_USAGE;
		}
	}
	if (optind < argc)
		return unexpected("refer up", argv[optind]);
	return send_refer_up(ctl, &u, slot_options);
}

static int send_refer_down(struct ctl *ctl, Referral__ReferDown *d)
{
	char key[64];
	if (!d->patient_id[0] || !d->to_institution[0] || !d->diagnosis[0] || !d->reason[0] ||
	    !d->care_plan[0] || !d->follow_up_due[0])
		return ctl_usage_error("refer down", "--patient, --to, --diagnosis, --reason, "
				       "--care-plan and --follow-up-due are required");
	if (parse_date(d->follow_up_due) < 0)
		return CTL_ERR_USAGE;
	ctl_default_key("refer down", &d->idempotency_key, key, sizeof key);
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_REFER_DOWN;
	req.refer_down = d;
	return ctl_call(ctl, &req, NULL);
}

static int refer_down(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "patient", required_argument, NULL, 'p' },
		{ "to", required_argument, NULL, 't' },
		{ "department", required_argument, NULL, 'd' },
		{ "diagnosis", required_argument, NULL, 'g' },
		{ "reason", required_argument, NULL, 'r' },
		{ "care-plan", required_argument, NULL, 'c' },
		{ "follow-up-due", required_argument, NULL, 'F' },
		{ "closes", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__ReferDown d = REFERRAL__REFER_DOWN__INIT;
	int ch;
	options_begin();
	while ((ch = getopt_long(argc, argv, "-p:t:d:g:r:c:F:C:k:", opts, NULL)) != -1) {
		switch (ch) {
		case 'p': d.patient_id = optarg; break;
		case 't': d.to_institution = optarg; break;
		case 'd': d.from_department = optarg; break;
		case 'g': d.diagnosis = optarg; break;
		case 'r': d.reason = optarg; break;
		case 'c': d.care_plan = optarg; break;
		case 'F': d.follow_up_due = optarg; break;
		case 'C': d.closes_referral_id = optarg; break;
		case 'k': d.idempotency_key = optarg; break;
		case POSITIONAL: return unexpected("refer down", optarg);
		default: return CTL_ERR_USAGE;
		}
	}
	if (optind < argc)
		return unexpected("refer down", argv[optind]);
	return send_refer_down(ctl, &d);
}

int cmd_refer(struct ctl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "up") == 0)
		return refer_up(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "down") == 0)
		return refer_down(ctl, argc - 1, argv + 1);
	return ctl_usage_error("refer", "usage: refer up OPTIONS, or refer down OPTIONS "
			       "(referralctl --help lists them)");
}

/* ---- worklist ------------------------------------------------------------- */

static void print_worklist_line(const Referral__Referral *r, time_t now)
{
	char age[24], from[136], to[136], route[280];
	ctl_format_age(age, sizeof age, (long long)now - (long long)r->created_at);
	place(from, sizeof from, r->from_institution, r->from_department);
	place(to, sizeof to, r->to_institution, r->to_department);
	snprintf(route, sizeof route, "%s -> %s", from, to);
	printf("%-9s %-12s %7s  %-46s %-9s %s%s%s\n", urgency_name(r->urgency), r->state, age,
	       route, r->diagnosis, r->referral_id, r->escalated ? "  escalated" : "",
	       r->follow_up_overdue ? "  follow-up overdue" : "");
}

static void print_worklist(const Referral__ReferralList *l)
{
	time_t now = time(NULL);
	printf("%-9s %-12s %7s  %-46s %-9s %s\n", "URGENCY", "STATE", "AGE", "FROM -> TO",
	       "DIAGNOSIS", "REFERRAL");
	for (size_t i = 0; i < l->n_referrals; i++)
		print_worklist_line(l->referrals[i], now);
	if (l->next_page_token[0])
		printf("more: --page-token %s\n", l->next_page_token);
}

static int parse_worklist(int argc, char **argv, Referral__Worklist *w)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "direction", required_argument, NULL, 'D' },
		{ "department", required_argument, NULL, 'd' },
		{ "min-age", required_argument, NULL, 'a' },
		{ "escalated", no_argument, NULL, 'e' },
		{ "patient", required_argument, NULL, 'p' },
		{ "page-size", required_argument, NULL, 'n' },
		{ "page-token", required_argument, NULL, 'P' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	options_begin();
	while ((ch = getopt_long(argc, argv, "-s:D:d:a:ep:n:P:", opts, NULL)) != -1) {
		switch (ch) {
		case 's': w->state = optarg; break;
		case 'D': if (parse_direction(optarg, &w->direction) < 0) return CTL_ERR_USAGE; break;
		case 'd': w->department_id = optarg; break;
		case 'a':
			if (parse_u32("worklist", optarg, 0, &w->min_age_minutes) < 0)
				return CTL_ERR_USAGE;
			break;
		case 'e': w->escalated_only = 1; break;
		case 'p': w->patient_id = optarg; break;
		case 'n': if (parse_u32("worklist", optarg, 1, &w->page_size) < 0) return CTL_ERR_USAGE; break;
		case 'P': w->page_token = optarg; break;
		case POSITIONAL: return unexpected("worklist", optarg);
		default: return CTL_ERR_USAGE;
		}
	}
	return optind < argc ? unexpected("worklist", argv[optind]) : CTL_OK;
}

int cmd_worklist(struct ctl *ctl, int argc, char **argv)
{
	Referral__Worklist w = REFERRAL__WORKLIST__INIT;
	int rc = parse_worklist(argc, argv, &w);
	if (rc != CTL_OK)
		return rc;
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_WORKLIST;
	req.worklist = &w;
	Referral__Response *resp;
	rc = ctl_ask(ctl, &req, &resp);
	if (rc != CTL_OK || !resp)
		return rc;
	print_worklist(resp->referrals);
	referral__response__free_unpacked(resp, NULL);
	return CTL_OK;
}

/* ---- referral ACTION | show ------------------------------------------------ */

struct referral_args {
	const char *verb, *id;
	int options;                 /* how many options were given */
	Referral__ReferralAction a;
};

static int referral_positional(struct referral_args *r, const char *arg)
{
	if (!r->verb)
		r->verb = arg;
	else if (!r->id)
		r->id = arg;
	else
		return unexpected("referral", arg);
	return CTL_OK;
}

static int parse_referral(int argc, char **argv, struct referral_args *r)
{
	static const struct option opts[] = {
		{ "reason", required_argument, NULL, 'r' },
		{ "if-version", required_argument, NULL, 'v' },
		{ "session", required_argument, NULL, 's' },
		{ "to", required_argument, NULL, 't' },
		{ "department", required_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	int ch, rc = CTL_OK;
	options_begin();
	while (rc == CTL_OK && (ch = getopt_long(argc, argv, "-r:v:s:t:d:", opts, NULL)) != -1) {
		r->options += ch != POSITIONAL;
		switch (ch) {
		case 'r': r->a.reason = optarg; break;
		case 'v': if (parse_u32("referral", optarg, 0, &r->a.if_version) < 0) return CTL_ERR_USAGE; break;
		case 's': if (parse_id("referral", optarg, &r->a.session_id) < 0) return CTL_ERR_USAGE; break;
		case 't': r->a.to_institution = optarg; break;
		case 'd': r->a.to_department = optarg; break;
		case POSITIONAL: rc = referral_positional(r, optarg); break;
		default: return CTL_ERR_USAGE;
		}
	}
	while (rc == CTL_OK && optind < argc)
		rc = referral_positional(r, argv[optind++]);
	if (rc == CTL_OK && (!r->verb || !r->id))
		rc = ctl_usage_error("referral", "usage: referral ACTION REFERRAL_ID [options], or "
				     "referral show REFERRAL_ID");
	return rc;
}

/* Options that only one action uses are refused elsewhere rather than
 * dropped, so that a typo in the action cannot lose them silently. */
static int check_action_options(const Referral__ReferralAction *a)
{
	if (a->session_id && a->action != REFERRAL__ACTION__ACTION_ACCEPT)
		return ctl_usage_error("referral", "--session goes with accept");
	if ((a->to_institution[0] || a->to_department[0]) &&
	    a->action != REFERRAL__ACTION__ACTION_REDIRECT)
		return ctl_usage_error("referral", "--to and --department go with redirect");
	return CTL_OK;
}

static int show_referral(struct ctl *ctl, const struct referral_args *r)
{
	if (r->options)
		return ctl_usage_error("referral", "show takes no options");
	Referral__GetReferral g = REFERRAL__GET_REFERRAL__INIT;
	g.referral_id = (char *)r->id;
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_GET_REFERRAL;
	req.get_referral = &g;
	return ctl_call(ctl, &req, NULL);
}

int cmd_referral(struct ctl *ctl, int argc, char **argv)
{
	struct referral_args r = { .a = REFERRAL__REFERRAL_ACTION__INIT };
	int rc = parse_referral(argc, argv, &r);
	if (rc != CTL_OK)
		return rc;
	if (strcmp(r.verb, "show") == 0)
		return show_referral(ctl, &r);
	if (parse_action(r.verb, &r.a.action) < 0)
		return CTL_ERR_USAGE;
	if ((rc = check_action_options(&r.a)) != CTL_OK)
		return rc;
	r.a.referral_id = (char *)r.id;
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_REFERRAL_ACTION;
	req.referral_action = &r.a;
	return ctl_call(ctl, &req, NULL);
}

/* ---- history -------------------------------------------------------------- */

static void print_history_entry(const Referral__HistoryEntry *e)
{
	char when[32], states[64], who[200];
	ctl_local_time(when, sizeof when, e->at);
	snprintf(states, sizeof states, "%s -> %s", e->from_state[0] ? e->from_state : "(new)",
		 e->to_state);
	/* No terminal: the daemon's timer (role "system"). */
	snprintf(who, sizeof who, "%s/%s/%s", or_dash(e->terminal_id), or_dash(e->role),
		 or_dash(e->institution_id));
	printf("%-19s %-15s %-28s %-*s", when, e->action, states, e->reason[0] ? 41 : 0, who);
	print_oneline(e->reason);
	putchar('\n');
}

int cmd_history(struct ctl *ctl, int argc, char **argv)
{
	if (argc != 2)
		return ctl_usage_error("history", "usage: history REFERRAL_ID");
	Referral__GetHistory g = REFERRAL__GET_HISTORY__INIT;
	g.referral_id = argv[1];
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_HISTORY;
	req.history = &g;
	Referral__Response *resp;
	int rc = ctl_ask(ctl, &req, &resp);
	if (rc != CTL_OK || !resp)
		return rc;
	printf("%-19s %-15s %-28s %-40s %s\n", "TIME", "ACTION", "FROM -> TO",
	       "WHO (TERMINAL/ROLE/INSTITUTION)", "REASON");
	for (size_t i = 0; i < resp->history->n_entries; i++)
		print_history_entry(resp->history->entries[i]);
	referral__response__free_unpacked(resp, NULL);
	return CTL_OK;
}

/* ---- watch ---------------------------------------------------------------- */

static sigset_t stop_signals;

/* Every line is flushed before these signals are let in (watch_line), so
 * nothing is left to write: leave at once, successfully. */
static void watch_stop(int sig)
{
	(void)sig;
	_exit(CTL_OK);
}

static void watch_signals(void)
{
	struct sigaction sa = { .sa_handler = watch_stop };
	sigemptyset(&sa.sa_mask);
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static void print_event(const Referral__Event *e)
{
	char when[32];
	ctl_local_time(when, sizeof when, e->at);
	printf("#%-6llu %s %-26s %-12s %-36s %s -> %s", (unsigned long long)e->seq, when, e->kind,
	       or_dash(e->state), or_dash(e->referral_id), or_dash(e->from_institution),
	       or_dash(e->to_institution));
	if (e->detail[0]) {
		fputs("  ", stdout);
		print_oneline(e->detail);
	}
	putchar('\n');
}

/* One JSON object per line, named by its body: {"event": {...}}. */
static void print_json_line(const Referral__Response *resp)
{
	json_object *obj = ctl_message_to_json(&resp->base);
	json_object_object_del(obj, "request_id");
	printf("%s\n", json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(obj);
}

/* Prints one pushed response as one line. Returns -1 to go on listening,
 * or the exit code. */
static int watch_line(const struct ctl *ctl, const Referral__Response *resp, uint64_t *seen)
{
	if (resp->error) {
		/* With --json, the error keeps to one line like the events. */
		struct ctl plain = *ctl;
		if (ctl->json)
			print_json_line(resp);
		plain.json = 0;
		ctl_print_error(&plain, resp->error);
		return CTL_ERR_SERVER;
	}
	sigprocmask(SIG_BLOCK, &stop_signals, NULL);
	if (ctl->json)
		print_json_line(resp);
	else if (resp->body_case == REFERRAL__RESPONSE__BODY_SUBSCRIBED)
		printf("subscribed; the newest event is #%llu\n",
		       (unsigned long long)resp->subscribed->last_seq);
	else if (resp->body_case == REFERRAL__RESPONSE__BODY_EVENT)
		print_event(resp->event);
	if (resp->body_case == REFERRAL__RESPONSE__BODY_EVENT)
		*seen = resp->event->seq;
	fflush(stdout);
	sigprocmask(SIG_UNBLOCK, &stop_signals, NULL);
	return -1;
}

static int watch_loop(struct ctl *ctl, uint64_t request_id, uint64_t seen)
{
	char err[256];
	for (;;) {
		Referral__Response *resp = rc_recv(ctl->client, WATCH_WAIT_MS, err, sizeof err);
		if (!resp && rc_timed_out(ctl->client))
			continue;
		if (!resp) {
			fprintf(stderr, "referralctl watch: %s (to resume: watch --after %llu)\n", err,
				(unsigned long long)seen);
			return CTL_ERR_TRANSPORT;
		}
		int rc = -1;
		/* Other ids answer nothing of ours; id 0 is an error for the whole
		 * connection. */
		if (resp->request_id == request_id || (resp->request_id == 0 && resp->error))
			rc = watch_line(ctl, resp, &seen);
		referral__response__free_unpacked(resp, NULL);
		if (rc >= 0)
			return rc;
	}
}

int cmd_watch(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "after", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__Subscribe s = REFERRAL__SUBSCRIBE__INIT;
	unsigned long long after;
	int ch;
	/* Without --after, what happens from now on; --after 0 replays all. */
	s.from_now = 1;
	options_begin();
	while ((ch = getopt_long(argc, argv, "-a:", opts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			if (ctl_parse_range("watch", optarg, 0, INT64_MAX, &after) < 0)
				return CTL_ERR_USAGE;
			s.after_seq = after;
			s.from_now = 0;
			break;
		case POSITIONAL: return unexpected("watch", optarg);
		default: return CTL_ERR_USAGE;
		}
	}
	if (optind < argc)
		return unexpected("watch", argv[optind]);
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_SUBSCRIBE;
	req.subscribe = &s;
	char err[256];
	watch_signals();
	if (rc_send(ctl->client, &req, err, sizeof err) < 0) {
		fprintf(stderr, "referralctl watch: %s\n", err);
		return CTL_ERR_TRANSPORT;
	}
	return watch_loop(ctl, req.request_id, s.after_seq);
}
