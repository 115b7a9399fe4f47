/* ctl_stats.c: referralctl's figures: stats (per hospital and for the
 * community) and compliance (against the reserve rules). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_commands.h"
#include "ctl_output.h"

/* getopt_long hands back a positional argument as this "option". */
#define POSITIONAL 1
#define LABEL_WIDTH 30
#define COLUMN_WIDTH 16

/* The options stats and compliance share; -1 on a usage error. */
struct window_args {
	const char *community, *institution;
	int64_t since, until;
	uint32_t limit;
};

static int parse_window(struct ctl *ctl, const char *cmd, int argc, char **argv,
			struct window_args *w, int with_community)
{
	static const struct option opts[] = {
		{ "community", required_argument, NULL, 'C' },
		{ "institution", required_argument, NULL, 'i' },
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "limit", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "-C:i:s:u:n:j", opts, NULL)) != -1) {
		switch (ch) {
		case 'C':
			if (!with_community)
				return ctl_usage_error(cmd, "--community goes with stats");
			w->community = optarg;
			break;
		case 'i': w->institution = optarg; break;
		case 's': if (ctl_parse_time(optarg, &w->since) < 0) return CTL_ERR_USAGE; break;
		case 'u': if (ctl_parse_time(optarg, &w->until) < 0) return CTL_ERR_USAGE; break;
		case 'n':
			if (with_community)
				return ctl_usage_error(cmd, "--limit goes with compliance");
			w->limit = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'j': ctl->json = 1; break;
		case POSITIONAL: return ctl_usage_error(cmd, "takes no arguments, only options");
		default: return CTL_ERR_USAGE;
		}
	}
	return optind < argc ? ctl_usage_error(cmd, "takes no arguments, only options") : CTL_OK;
}

static void print_window(const char *what, const char *community, int64_t since, int64_t until)
{
	char from[32], to[32];
	ctl_local_time(from, sizeof from, since);
	ctl_local_time(to, sizeof to, until);
	printf("%s of %s, %s to %s\n", what, community, from, to);
}

/* ---- stats -------------------------------------------------------------------- */

enum fmt { F_COUNT, F_PERCENT, F_RATIO, F_DURATION, F_SECTION };

#define GET(field) \
	static double get_##field(const Referral__Figures *f) { return (double)f->field; }
GET(sessions_published)
GET(sessions_cancelled)
GET(capacity_units)
GET(reserved_share)
GET(sessions_below_floor)
GET(reserved_utilisation)
GET(public_utilisation)
GET(released_units)
GET(emergency_bookings)
GET(up_referrals)
GET(down_referrals)
GET(down_up_ratio)
GET(acceptance_rate)
GET(rejection_rate)
GET(redirect_rate)
GET(no_show_rate)
GET(accept_median_seconds)
GET(accept_p90_seconds)
GET(waiting_now)
GET(escalated_waiting_now)
GET(follow_ups_overdue_now)
GET(deductible_decisions)
GET(deductible_fen_waived)
#undef GET

static const struct {
	const char *label;
	enum fmt fmt;
	double (*get)(const Referral__Figures *f);
} stat_rows[] = {
	{ "sessions starting in the window", F_SECTION, NULL },
	{ "sessions published", F_COUNT, get_sessions_published },
	{ "sessions cancelled", F_COUNT, get_sessions_cancelled },
	{ "capacity (units)", F_COUNT, get_capacity_units },
	{ "reserved share", F_PERCENT, get_reserved_share },
	{ "sessions below the floor", F_COUNT, get_sessions_below_floor },
	{ "reserved utilisation", F_PERCENT, get_reserved_utilisation },
	{ "public utilisation", F_PERCENT, get_public_utilisation },
	{ "released reserved -> public", F_COUNT, get_released_units },
	{ "emergency overbookings", F_COUNT, get_emergency_bookings },
	{ "referrals made in the window", F_SECTION, NULL },
	{ "up-referrals", F_COUNT, get_up_referrals },
	{ "down-referrals", F_COUNT, get_down_referrals },
	{ "down/up ratio", F_RATIO, get_down_up_ratio },
	{ "acceptance rate", F_PERCENT, get_acceptance_rate },
	{ "rejection rate", F_PERCENT, get_rejection_rate },
	{ "redirect rate", F_PERCENT, get_redirect_rate },
	{ "no-show rate (of accepted)", F_PERCENT, get_no_show_rate },
	{ "to acceptance, median", F_DURATION, get_accept_median_seconds },
	{ "to acceptance, 90th pct", F_DURATION, get_accept_p90_seconds },
	{ "now", F_SECTION, NULL },
	{ "waiting (pending or no slot)", F_COUNT, get_waiting_now },
	{ "  of which escalated", F_COUNT, get_escalated_waiting_now },
	{ "follow-ups overdue", F_COUNT, get_follow_ups_overdue_now },
	{ "inpatient stays admitted in the window", F_SECTION, NULL },
	{ "deductible decisions", F_COUNT, get_deductible_decisions },
	{ "deductible waived (fen)", F_COUNT, get_deductible_fen_waived },
};

static void format_value(char *buf, size_t len, enum fmt fmt, double v, const Referral__Figures *f)
{
	switch (fmt) {
	case F_COUNT: snprintf(buf, len, "%.0f", v); break;
	case F_PERCENT: snprintf(buf, len, "%.1f%%", v * 100); break;
	case F_RATIO: snprintf(buf, len, "%.2f", v); break;
	case F_DURATION:
		if (f->up_accepted == 0)
			snprintf(buf, len, "-");
		else
			ctl_format_age(buf, len, (long long)v);
		break;
	case F_SECTION: buf[0] = '\0'; break;
	}
}

/* One column per group: the community's total first, then each institution. */
static void print_stats(const Referral__StatsReply *s)
{
	const Referral__Figures *cols[64];
	size_t n = 0;
	if (s->community)
		cols[n++] = s->community;
	for (size_t i = 0; i < s->n_institutions && n < sizeof cols / sizeof cols[0]; i++)
		cols[n++] = s->institutions[i];
	print_window("figures", s->community_id, s->since, s->until);
	if (n == 0) {
		printf("no figures in this window\n");
		return;
	}
	printf("reserve floor %u%%\n\n%-*s", cols[0]->floor_pct, LABEL_WIDTH, "");
	for (size_t c = 0; c < n; c++)
		printf(" %*.*s", COLUMN_WIDTH - 1, COLUMN_WIDTH - 1,
		       cols[c] == s->community ? "community" : cols[c]->institution_id);
	putchar('\n');
	for (size_t r = 0; r < sizeof stat_rows / sizeof stat_rows[0]; r++) {
		if (stat_rows[r].fmt == F_SECTION) {
			printf("%s\n", stat_rows[r].label);
			continue;
		}
		printf("  %-*s", LABEL_WIDTH - 2, stat_rows[r].label);
		for (size_t c = 0; c < n; c++) {
			char v[32];
			format_value(v, sizeof v, stat_rows[r].fmt, stat_rows[r].get(cols[c]), cols[c]);
			printf(" %*s", COLUMN_WIDTH - 1, v);
		}
		putchar('\n');
	}
}

int cmd_stats(struct ctl *ctl, int argc, char **argv)
{
	struct window_args w = { .community = "", .institution = "" };
	int rc = parse_window(ctl, "stats", argc, argv, &w, 1);
	if (rc != CTL_OK)
		return rc;
	Referral__StatsRequest s = REFERRAL__STATS_REQUEST__INIT;
	s.community_id = (char *)w.community;
	s.institution_id = (char *)w.institution;
	s.since = w.since;
	s.until = w.until;
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_STATS;
	req.stats = &s;
	Referral__Response *resp;
	if ((rc = ctl_ask(ctl, &req, &resp)) != CTL_OK || !resp)
		return rc;
	print_stats(resp->stats);
	referral__response__free_unpacked(resp, NULL);
	return CTL_OK;
}

/* ---- compliance ------------------------------------------------------------------ */

static void print_rules(const Referral__ComplianceReply *c)
{
	printf("\nrules:\n");
	for (size_t i = 0; i < c->n_rules; i++)
		printf("  %-16s %s\n  %-16s (%s)\n", c->rules[i]->rule, c->rules[i]->description, "",
		       c->rules[i]->source);
}

static void print_hospitals(const Referral__ComplianceReply *c)
{
	printf("\n%-20s %8s %8s %5s %6s %15s %8s  %s\n", "HOSPITAL", "SESSIONS", "RESERVED",
	       "FLOOR", "BELOW", "UNUSED", "OVERDUE", "FALLS SHORT OF");
	for (size_t i = 0; i < c->n_hospitals; i++) {
		const Referral__ComplianceHospital *h = c->hospitals[i];
		char unused[40], rules[120] = "-";
		snprintf(unused, sizeof unused, "%llu (%.1f%%)", (unsigned long long)h->unused_units,
			 h->unused_share * 100);
		for (size_t r = 0; r < h->n_rules; r++) {
			if (r == 0)
				rules[0] = '\0';
			snprintf(rules + strlen(rules), sizeof rules - strlen(rules), "%s%s",
				 r ? ", " : "", h->rules[r]);
		}
		printf("%-20s %8u %7.1f%% %4u%% %6u %15s %8u  %s\n", h->institution_id, h->sessions,
		       h->reserved_share * 100, h->floor_pct, h->sessions_below_floor, unused,
		       h->sessions_release_overdue, rules);
	}
}

static void print_findings(const Referral__ComplianceReply *c)
{
	static const char *const kinds[] = { "", "expert", "exam", "bed" };
	printf("\nsessions, the most serious first (%zu of %u):\n", c->n_sessions, c->sessions_found);
	if (c->n_sessions == 0)
		return;
	printf("%-15s %8s %-16s %-16s %-6s %-10s %4s %4s %4s %6s %6s\n", "RULE", "SESSION", "STARTS",
	       "INSTITUTION", "KIND", "RESOURCE", "CAP", "RES", "NEED", "BOOKED", "UNUSED");
	for (size_t i = 0; i < c->n_sessions; i++) {
		const Referral__ComplianceSession *x = c->sessions[i];
		char when[32];
		ctl_local_time(when, sizeof when, x->starts_at);
		when[16] = '\0';   /* to the minute */
		printf("%-15s %8lld %-16s %-16s %-6s %-10s %4u %4u %4u %6u %6u\n", x->rule,
		       (long long)x->session_id, when, x->institution_id,
		       kinds[(unsigned)x->kind < 4 ? x->kind : 0], x->resource_id, x->capacity_published,
		       x->reserved_published, x->reserved_required, x->reserved_booked, x->unused_units);
	}
}

int cmd_compliance(struct ctl *ctl, int argc, char **argv)
{
	struct window_args w = { .community = "", .institution = "" };
	int rc = parse_window(ctl, "compliance", argc, argv, &w, 0);
	if (rc != CTL_OK)
		return rc;
	Referral__ComplianceRequest q = REFERRAL__COMPLIANCE_REQUEST__INIT;
	q.institution_id = (char *)w.institution;
	q.since = w.since;
	q.until = w.until;
	q.limit = w.limit;
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_COMPLIANCE;
	req.compliance = &q;
	Referral__Response *resp;
	if ((rc = ctl_ask(ctl, &req, &resp)) != CTL_OK || !resp)
		return rc;
	const Referral__ComplianceReply *c = resp->compliance;
	print_window("compliance", c->community_id, c->since, c->until);
	print_rules(c);
	print_hospitals(c);
	print_findings(c);
	referral__response__free_unpacked(resp, NULL);
	return CTL_OK;
}
