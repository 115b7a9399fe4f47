/* ctl_deductibles.c: referralctl's deductible commands: deductibles (the
 * billing office's export), stay admit|discharge|reverse|show, and
 * deductible-policy show|set. Money is whole fen throughout. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_commands.h"
#include "ctl_output.h"

/* getopt_long hands back a positional argument as this "option". */
#define POSITIONAL 1
/* The export asks for the largest page the server gives. */
#define EXPORT_PAGE 500

enum format { FORMAT_TEXT, FORMAT_CSV, FORMAT_JSON };

static int usage(const char *cmd, const char *msg)
{
	return ctl_usage_error(cmd, msg);
}

/* ---- deductibles: the export ------------------------------------------------ */

/* RFC 3339 in the local time of the machine running referralctl, with its
 * offset; empty for 0 (none). */
static void iso_time(char *buf, size_t len, int64_t at)
{
	time_t t = (time_t)at;
	struct tm tm;
	buf[0] = '\0';
	if (at <= 0 || !localtime_r(&t, &tm))
		return;
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	long off = tm.tm_gmtoff / 60;
	snprintf(buf + n, len - n, "%c%02ld:%02ld", off < 0 ? '-' : '+', labs(off) / 60,
		 labs(off) % 60);
}

/* One CSV field (RFC 4180): quoted when it holds a comma, quote or line break. */
static void csv_field(const char *s, int last)
{
	if (strpbrk(s, ",\"\r\n")) {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	} else {
		fputs(s, stdout);
	}
	putchar(last ? '\n' : ',');
}

static const char *const csv_header[] = {
	"stay_id", "patient_id", "institution_id", "level", "scheme", "referral_id",
	"referral_direction", "referral_from", "referral_from_in_network", "admitted_at",
	"discharged_at", "decided_at", "policy_version", "policy", "window_days",
	"previous_stay_id", "gap_days", "chain_id", "chain_position", "chain", "chain_paid_fen",
	"own_deductible_fen", "due_fen", "waived_fen", "rule", "reversed", "reversed_at",
	"reversal_reason", "explanation",
};
#define CSV_COLUMNS (sizeof csv_header / sizeof csv_header[0])

/* The chain as "stay:institution:due_fen" entries, oldest first, ';' between. */
static void chain_text(char *buf, size_t len, const Referral__Deductible *d)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < d->n_chain && used < len; i++) {
		const Referral__ChainStay *l = d->chain[i];
		used += (size_t)snprintf(buf + used, len - used, "%s%s:%s:%lld", i ? ";" : "",
					 l->stay_id, l->institution_id, (long long)l->due_fen);
	}
}

/* An amount of the decision; empty, not 0, when nothing was decided (no
 * amount configured for the stay's level and scheme). */
static void fen_cell(char *buf, size_t len, const Referral__Deductible *d, int64_t fen)
{
	if (d->amount_configured)
		snprintf(buf, len, "%lld", (long long)fen);
	else
		buf[0] = '\0';
}

static void print_csv_row(const Referral__Deductible *d)
{
	char admitted[40], discharged[40], decided[40], reversed[40], chain[4096];
	char version[16], window[16], gap[16], position[16], paid[24], own[24], due[24], waived[24];
	iso_time(admitted, sizeof admitted, d->admitted_at);
	iso_time(discharged, sizeof discharged, d->discharged_at);
	iso_time(decided, sizeof decided, d->decided_at);
	iso_time(reversed, sizeof reversed, d->reversed_at);
	chain_text(chain, sizeof chain, d);
	snprintf(version, sizeof version, "%u", d->policy_version);
	snprintf(window, sizeof window, "%u", d->window_days);
	gap[0] = '\0';   /* -1: no previous stay */
	if (d->gap_days >= 0)
		snprintf(gap, sizeof gap, "%d", d->gap_days);
	snprintf(position, sizeof position, "%u", d->chain_position);
	snprintf(paid, sizeof paid, "%lld", (long long)d->chain_paid_fen);
	fen_cell(own, sizeof own, d, d->own_deductible_fen);
	fen_cell(due, sizeof due, d, d->due_fen);
	fen_cell(waived, sizeof waived, d, d->waived_fen);
	const char *in_network = "";
	if (d->referral_id[0])
		in_network = d->referral_from_in_network ? "true" : "false";
	const char *fields[CSV_COLUMNS] = {
		d->stay_id, d->patient_id, d->institution_id, d->level, d->scheme, d->referral_id,
		d->referral_direction, d->referral_from, in_network, admitted, discharged, decided,
		version, d->policy, window, d->previous_stay_id, gap, d->chain_id, position, chain,
		paid, own, due, waived, d->rule, d->reversed ? "true" : "false", reversed,
		d->reversal_reason, d->explanation,
	};
	for (size_t i = 0; i < CSV_COLUMNS; i++)
		csv_field(fields[i], i + 1 == CSV_COLUMNS);
}

static void print_text_row(const Referral__Deductible *d)
{
	char admitted[40];
	iso_time(admitted, sizeof admitted, d->admitted_at);
	admitted[16] = '\0';  /* to the minute */
	printf("%-16s %-18s %-8s %-8s %-18s %10lld %10lld %10lld %s%s\n", admitted,
	       d->institution_id, d->level, d->scheme, d->rule, (long long)d->own_deductible_fen,
	       (long long)d->due_fen, (long long)d->waived_fen, d->stay_id,
	       d->reversed ? "  reversed" : "");
}

struct export {
	enum format format;
	json_object *rows;              /* FORMAT_JSON */
	unsigned long long count;       /* decisions exported */
	long long due, waived;          /* over those not reversed */
};

static void export_begin(struct export *x)
{
	if (x->format == FORMAT_CSV)
		for (size_t i = 0; i < CSV_COLUMNS; i++)
			csv_field(csv_header[i], i + 1 == CSV_COLUMNS);
	else if (x->format == FORMAT_TEXT)
		printf("%-16s %-18s %-8s %-8s %-18s %10s %10s %10s %s\n", "ADMITTED", "INSTITUTION",
		       "LEVEL", "SCHEME", "RULE", "OWN FEN", "DUE FEN", "WAIVED FEN", "STAY");
	else
		x->rows = json_object_new_array();
}

static void export_row(struct export *x, const Referral__Deductible *d)
{
	x->count++;
	if (!d->reversed) {
		x->due += d->due_fen;
		x->waived += d->waived_fen;
	}
	if (x->format == FORMAT_CSV)
		print_csv_row(d);
	else if (x->format == FORMAT_TEXT)
		print_text_row(d);
	else
		json_object_array_add(x->rows, ctl_message_to_json(&d->base));
}

/* The totals: a last CSV row named "total", a line, or the JSON's members. */
static void export_end(struct export *x)
{
	if (x->format == FORMAT_CSV) {
		char due[24], waived[24];
		snprintf(due, sizeof due, "%lld", x->due);
		snprintf(waived, sizeof waived, "%lld", x->waived);
		for (size_t i = 0; i < CSV_COLUMNS; i++) {
			const char *h = csv_header[i];
			csv_field(i == 0 ? "total" : strcmp(h, "due_fen") == 0 ? due :
				  strcmp(h, "waived_fen") == 0 ? waived : "", i + 1 == CSV_COLUMNS);
		}
	} else if (x->format == FORMAT_TEXT) {
		printf("decisions: %llu; total due %lld fen, total waived %lld fen (reversed stays "
		       "not counted)\n", x->count, x->due, x->waived);
	} else {
		json_object *obj = json_object_new_object();
		json_object_object_add(obj, "deductibles", x->rows);
		json_object_object_add(obj, "total_count", json_object_new_uint64(x->count));
		json_object_object_add(obj, "total_due_fen", json_object_new_int64(x->due));
		json_object_object_add(obj, "total_waived_fen", json_object_new_int64(x->waived));
		ctl_print_json(stdout, obj);
		json_object_put(obj);
	}
}

static int parse_format(const char *s, enum format *out)
{
	if (strcmp(s, "csv") == 0)
		*out = FORMAT_CSV;
	else if (strcmp(s, "json") == 0)
		*out = FORMAT_JSON;
	else if (strcmp(s, "text") == 0)
		*out = FORMAT_TEXT;
	else
		return usage("deductibles", "--format is csv, json or text");
	return CTL_OK;
}

static int parse_export(struct ctl *ctl, int argc, char **argv, Referral__ListDeductibles *l,
			enum format *format)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "patient", required_argument, NULL, 'p' },
		{ "referral", required_argument, NULL, 'r' },
		{ "live", no_argument, NULL, 'l' },
		{ "format", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	*format = ctl->json ? FORMAT_JSON : FORMAT_TEXT;
	optind = 0;   /* read afresh (see ctl_referrals.c) */
	while ((ch = getopt_long(argc, argv, "-s:u:p:r:lf:", opts, NULL)) != -1) {
		switch (ch) {
		case 's': if (ctl_parse_time(optarg, &l->since) < 0) return CTL_ERR_USAGE; break;
		case 'u': if (ctl_parse_time(optarg, &l->until) < 0) return CTL_ERR_USAGE; break;
		case 'p': l->patient_id = optarg; break;
		case 'r': l->referral_id = optarg; break;
		case 'l': l->live_only = 1; break;
		case 'f': if (parse_format(optarg, format) != CTL_OK) return CTL_ERR_USAGE; break;
		case POSITIONAL: return usage("deductibles", "takes options only");
		default: return CTL_ERR_USAGE;
		}
	}
	return optind < argc ? usage("deductibles", "takes options only") : CTL_OK;
}

/* Every page of ListDeductibles, each row out as it comes. */
int cmd_deductibles(struct ctl *ctl, int argc, char **argv)
{
	Referral__ListDeductibles l = REFERRAL__LIST_DEDUCTIBLES__INIT;
	struct export x = { 0 };
	int rc = parse_export(ctl, argc, argv, &l, &x.format);
	if (rc != CTL_OK)
		return rc;
	char token[128] = "";
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_LIST_DEDUCTIBLES;
	req.list_deductibles = &l;
	l.page_size = EXPORT_PAGE;
	long long server_waived = 0;
	for (int first = 1; first || token[0]; first = 0) {
		Referral__Response *resp;
		l.page_token = token;
		if ((rc = ctl_call(ctl, &req, &resp)) != CTL_OK) {
			if (x.rows)
				json_object_put(x.rows);
			return rc;
		}
		if (first)
			export_begin(&x);
		const Referral__DeductibleList *page = resp->deductibles;
		for (size_t i = 0; i < page->n_deductibles; i++)
			export_row(&x, page->deductibles[i]);
		server_waived = page->total_waived_fen;
		snprintf(token, sizeof token, "%s", page->next_page_token);
		referral__response__free_unpacked(resp, NULL);
	}
	export_end(&x);
	/* The rows are what was exported; a difference means decisions were
	 * made or reversed while the pages were read. */
	if (server_waived != x.waived)
		fprintf(stderr, "referralctl deductibles: decisions changed during the export "
				"(server total waived %lld fen); run it again for a stable total\n",
			server_waived);
	return CTL_OK;
}

/* ---- stay admit | discharge | reverse | show ---------------------------------- */

static int stay_admit(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "patient", required_argument, NULL, 'p' },
		{ "institution", required_argument, NULL, 'i' },
		{ "scheme", required_argument, NULL, 's' },
		{ "admitted", required_argument, NULL, 'a' },
		{ "discharged", required_argument, NULL, 'd' },
		{ "referral", required_argument, NULL, 'r' },
		{ "key", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__RecordStay s = REFERRAL__RECORD_STAY__INIT;
	char key[64];
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "-p:i:s:a:d:r:k:", opts, NULL)) != -1) {
		switch (ch) {
		case 'p': s.patient_id = optarg; break;
		case 'i': s.institution_id = optarg; break;
		case 's': s.scheme = optarg; break;
		case 'a': if (ctl_parse_time(optarg, &s.admitted_at) < 0) return CTL_ERR_USAGE; break;
		case 'd': if (ctl_parse_time(optarg, &s.discharged_at) < 0) return CTL_ERR_USAGE; break;
		case 'r': s.referral_id = optarg; break;
		case 'k': s.idempotency_key = optarg; break;
		case POSITIONAL: return usage("stay admit", "takes options only");
		default: return CTL_ERR_USAGE;
		}
	}
	if (optind < argc)
		return usage("stay admit", "takes options only");
	if (!s.patient_id[0])
		return usage("stay admit", "--patient is required");
	ctl_default_key("stay admit", &s.idempotency_key, key, sizeof key);
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_RECORD_STAY;
	req.record_stay = &s;
	return ctl_call(ctl, &req, NULL);
}

/* stay discharge|reverse|show STAY [--at T] [--reason TEXT] */
static int stay_change(struct ctl *ctl, const char *verb, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "at", required_argument, NULL, 'a' },
		{ "reason", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *stay = NULL, *reason = NULL;
	int64_t at = 0;
	int ch, given_at = 0;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "-a:r:", opts, NULL)) != -1) {
		switch (ch) {
		case 'a': if (ctl_parse_time(optarg, &at) < 0) return CTL_ERR_USAGE; given_at = 1; break;
		case 'r': reason = optarg; break;
		case POSITIONAL:
			if (stay)
				return usage("stay", "one stay id");
			stay = optarg;
			break;
		default: return CTL_ERR_USAGE;
		}
	}
	if (!stay && optind < argc)
		stay = argv[optind++];
	if (!stay || optind < argc)
		return usage("stay", "usage: stay discharge|reverse|show STAY_ID [options]");
	int discharge = strcmp(verb, "discharge") == 0, reverse = strcmp(verb, "reverse") == 0;
	if ((given_at && !discharge) || (reason && !reverse))
		return usage("stay", "--at goes with discharge, --reason with reverse");
	Referral__DischargeStay d = REFERRAL__DISCHARGE_STAY__INIT;
	Referral__ReverseStay r = REFERRAL__REVERSE_STAY__INIT;
	Referral__GetDeductible g = REFERRAL__GET_DEDUCTIBLE__INIT;
	Referral__Request req = REFERRAL__REQUEST__INIT;
	if (discharge) {
		d.stay_id = (char *)stay;
		d.discharged_at = at;
		req.body_case = REFERRAL__REQUEST__BODY_DISCHARGE_STAY;
		req.discharge_stay = &d;
	} else if (reverse) {
		if (!reason)
			return usage("stay reverse", "--reason is required");
		r.stay_id = (char *)stay;
		r.reason = (char *)reason;
		req.body_case = REFERRAL__REQUEST__BODY_REVERSE_STAY;
		req.reverse_stay = &r;
	} else {
		g.stay_id = (char *)stay;
		req.body_case = REFERRAL__REQUEST__BODY_GET_DEDUCTIBLE;
		req.get_deductible = &g;
	}
	return ctl_call(ctl, &req, NULL);
}

int cmd_stay(struct ctl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "admit") == 0)
		return stay_admit(ctl, argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "discharge") == 0 || strcmp(argv[1], "reverse") == 0 ||
			  strcmp(argv[1], "show") == 0))
		return stay_change(ctl, argv[1], argc - 1, argv + 1);
	return usage("stay", "usage: stay admit|discharge|reverse|show ... "
		     "(referralctl --help lists the options)");
}

/* ---- deductible-policy show | set ------------------------------------------- */

/* A version as a short table: the amounts by level, one column per scheme. */
static void print_policy(const Referral__DeductiblePolicy *p)
{
	static const char *const levels[] = { "village", "township", "county", "city" };
	char from[40];
	iso_time(from, sizeof from, p->effective_from);
	printf("version %u of %u, in force from %s, set by %s\n", p->version, p->latest_version,
	       from, p->set_by[0] ? p->set_by : "(the database)");
	printf("policy %s, window %u days\n%-10s %14s %14s\n", p->policy, p->window_days, "LEVEL",
	       "RESIDENT FEN", "EMPLOYEE FEN");
	for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
		char cell[2][24] = { "-", "-" };
		for (size_t k = 0; k < p->n_amounts; k++) {
			const Referral__DeductibleAmount *a = p->amounts[k];
			if (strcmp(a->level, levels[i]) == 0)
				snprintf(cell[strcmp(a->scheme, "employee") == 0], sizeof cell[0], "%lld",
					 (long long)a->amount_fen);
		}
		printf("%-10s %14s %14s\n", levels[i], cell[0], cell[1]);
	}
}

/* The reply of show and set: JSON as every command, or the short table. */
static int call_policy(struct ctl *ctl, Referral__Request *req)
{
	Referral__Response *resp;
	int rc = ctl_ask(ctl, req, &resp);
	if (rc != CTL_OK || !resp)
		return rc;
	print_policy(resp->deductible_policy);
	referral__response__free_unpacked(resp, NULL);
	return CTL_OK;
}

/* "county:resident=50000" */
static int parse_amount(const char *s, Referral__DeductibleAmount *a, char *buf, size_t len)
{
	unsigned long long fen;
	snprintf(buf, len, "%s", s);
	char *colon = strchr(buf, ':'), *eq = strchr(buf, '=');
	if (!colon || !eq || eq < colon)
		return usage("deductible-policy set", "--amount wants LEVEL:SCHEME=FEN, "
			     "e.g. county:resident=50000");
	*colon = *eq = '\0';
	if (ctl_parse_range("deductible-policy set", eq + 1, 0, INT64_MAX, &fen) < 0)
		return CTL_ERR_USAGE;
	a->level = buf;
	a->scheme = colon + 1;
	a->amount_fen = (int64_t)fen;
	return CTL_OK;
}

#define MAX_AMOUNTS 8

static int policy_set(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "policy", required_argument, NULL, 'P' },
		{ "window", required_argument, NULL, 'w' },
		{ "amount", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__SetDeductiblePolicy s = REFERRAL__SET_DEDUCTIBLE_POLICY__INIT;
	Referral__DeductibleAmount amounts[MAX_AMOUNTS], *ptrs[MAX_AMOUNTS];
	char bufs[MAX_AMOUNTS][64];
	unsigned long long window = 0;
	int ch, have_window = 0;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "-P:w:a:", opts, NULL)) != -1) {
		switch (ch) {
		case 'P': s.policy = optarg; break;
		case 'w':
			if (ctl_parse_range("deductible-policy set", optarg, 0, 366, &window) < 0)
				return CTL_ERR_USAGE;
			have_window = 1;
			break;
		case 'a':
			if (s.n_amounts == MAX_AMOUNTS)
				return usage("deductible-policy set", "at most 8 --amount");
			referral__deductible_amount__init(&amounts[s.n_amounts]);
			if (parse_amount(optarg, &amounts[s.n_amounts], bufs[s.n_amounts],
					 sizeof bufs[0]) != CTL_OK)
				return CTL_ERR_USAGE;
			ptrs[s.n_amounts] = &amounts[s.n_amounts];
			s.n_amounts++;
			break;
		case POSITIONAL: return usage("deductible-policy set", "takes options only");
		default: return CTL_ERR_USAGE;
		}
	}
	if (optind < argc)
		return usage("deductible-policy set", "takes options only");
	/* Policy and window are always set together: say both. */
	if (!s.policy[0] || !have_window)
		return usage("deductible-policy set", "--policy waive|continuous|none and --window DAYS "
			     "are required");
	s.window_days = (uint32_t)window;
	s.amounts = ptrs;
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_SET_DEDUCTIBLE_POLICY;
	req.set_deductible_policy = &s;
	return call_policy(ctl, &req);
}

static int policy_show(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "version", required_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__GetDeductiblePolicy g = REFERRAL__GET_DEDUCTIBLE_POLICY__INIT;
	unsigned long long version;
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "-v:", opts, NULL)) != -1) {
		switch (ch) {
		case 'v':
			if (ctl_parse_range("deductible-policy", optarg, 1, UINT32_MAX, &version) < 0)
				return CTL_ERR_USAGE;
			g.version = (uint32_t)version;
			break;
		case POSITIONAL: return usage("deductible-policy", "show takes --version N only");
		default: return CTL_ERR_USAGE;
		}
	}
	if (optind < argc)
		return usage("deductible-policy", "show takes --version N only");
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_GET_DEDUCTIBLE_POLICY;
	req.get_deductible_policy = &g;
	return call_policy(ctl, &req);
}

int cmd_deductible_policy(struct ctl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "set") == 0)
		return policy_set(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "show") == 0)
		return policy_show(ctl, argc - 1, argv + 1);
	return policy_show(ctl, argc, argv);
}
