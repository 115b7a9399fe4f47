#define _GNU_SOURCE /* strptime */
/* ctl_slots.c: referralctl's slot-pool commands: sessions, publish, capacity,
 * cancel-session, book, cancel, overbook, bookings. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_commands.h"

static const char *const kinds[] = { "", "expert", "exam", "bed" };

static int parse_kind(const char *s, Referral__ResourceKind *out)
{
	for (int i = 1; i < 4; i++) {
		if (strcmp(s, kinds[i]) == 0) {
			*out = (Referral__ResourceKind)i;
			return 0;
		}
	}
	fprintf(stderr, "referralctl: kind must be expert, exam or bed\n");
	return -1;
}

/* "2026-12-07T08:00" or "2026-12-07 08:00" in local time, or Unix seconds. */
int ctl_parse_time(const char *s, int64_t *out)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	if (*end == '\0') {
		*out = v;
		return 0;
	}
	struct tm tm = { 0 };
	const char *rest = strptime(s, "%Y-%m-%dT%H:%M", &tm);
	if (!rest)
		rest = strptime(s, "%Y-%m-%d %H:%M", &tm);
	if (!rest) {
		memset(&tm, 0, sizeof tm);
		rest = strptime(s, "%Y-%m-%d", &tm);
	}
	if (!rest || *rest) {
		fprintf(stderr, "referralctl: bad time '%s' (YYYY-MM-DDTHH:MM or Unix seconds)\n", s);
		return -1;
	}
	tm.tm_isdst = -1;
	*out = (int64_t)mktime(&tm);
	return 0;
}

int ctl_usage_error(const char *cmd, const char *msg)
{
	fprintf(stderr, "referralctl %s: %s\n", cmd, msg);
	return CTL_ERR_USAGE;
}

int ctl_parse_pool(const char *cmd, const char *s, Referral__Pool *out)
{
	if (strcmp(s, "auto") == 0)
		*out = REFERRAL__POOL__POOL_AUTO;
	else if (strcmp(s, "reserved") == 0)
		*out = REFERRAL__POOL__POOL_RESERVED;
	else if (strcmp(s, "public") == 0)
		*out = REFERRAL__POOL__POOL_PUBLIC;
	else {
		ctl_usage_error(cmd, "--pool is auto, reserved or public");
		return -1;
	}
	return 0;
}

/* A one-off command: a fresh key. Scripts that retry pass --key. */
char *ctl_fresh_key(char *buf, size_t len)
{
	snprintf(buf, len, "ctl-%lld-%d-%ld", (long long)time(NULL), (int)getpid(), random());
	return buf;
}

int cmd_sessions(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "institution", required_argument, NULL, 'i' },
		{ "department", required_argument, NULL, 'd' },
		{ "kind", required_argument, NULL, 'k' },
		{ "resource", required_argument, NULL, 'r' },
		{ "from", required_argument, NULL, 'f' },
		{ "until", required_argument, NULL, 'u' },
		{ "page-size", required_argument, NULL, 'n' },
		{ "page-token", required_argument, NULL, 'P' },
		{ "available", no_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__SearchSessions s = REFERRAL__SEARCH_SESSIONS__INIT;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "i:d:k:r:f:u:n:P:a", opts, NULL)) != -1) {
		switch (ch) {
		case 'i': s.institution_id = optarg; break;
		case 'd': s.department_id = optarg; break;
		case 'k': if (parse_kind(optarg, &s.kind) < 0) return CTL_ERR_USAGE; break;
		case 'r': s.resource_id = optarg; break;
		case 'f': if (ctl_parse_time(optarg, &s.from) < 0) return CTL_ERR_USAGE; break;
		case 'u': if (ctl_parse_time(optarg, &s.until) < 0) return CTL_ERR_USAGE; break;
		case 'n': s.page_size = (uint32_t)atoi(optarg); break;
		case 'P': s.page_token = optarg; break;
		case 'a': s.only_available = 1; break;
		default: return CTL_ERR_USAGE;
		}
	}
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_SEARCH;
	req.search = &s;
	Referral__Response *resp;
	int rc = ctl_ask(ctl, &req, &resp);
	if (rc != CTL_OK || !resp)
		return rc;
	const Referral__SessionList *l = resp->sessions;
	printf("%-8s %-16s %-11s %-6s %-10s %-16s %5s %8s %6s\n", "SESSION", "INSTITUTION",
	       "DEPARTMENT", "KIND", "RESOURCE", "STARTS", "CAP", "RES.LEFT", "PUB.LEFT");
	for (size_t i = 0; i < l->n_sessions; i++) {
		const Referral__Session *x = l->sessions[i];
		char when[32];
		time_t t = (time_t)x->starts_at;
		strftime(when, sizeof when, "%Y-%m-%d %H:%M", localtime(&t));
		printf("%-8lld %-16s %-11s %-6s %-10s %-16s %5u %8u %6u%s\n", (long long)x->session_id,
		       x->institution_id, x->department_id, kinds[x->kind < 4 ? x->kind : 0],
		       x->resource_id, when, x->capacity, x->reserved_left, x->public_left,
		       x->released ? "  (released)" : "");
	}
	if (l->next_page_token[0])
		printf("more: --page-token %s\n", l->next_page_token);
	referral__response__free_unpacked(resp, NULL);
	return CTL_OK;
}

int cmd_publish(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "institution", required_argument, NULL, 'i' },
		{ "department", required_argument, NULL, 'd' },
		{ "kind", required_argument, NULL, 'k' },
		{ "resource", required_argument, NULL, 'r' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "reserved", required_argument, NULL, 'R' },
		{ "reserved-pct", required_argument, NULL, 'p' },
		{ "start", required_argument, NULL, 's' },
		{ "end", required_argument, NULL, 'e' },
		{ "weekly", required_argument, NULL, 'w' },
		{ "from-date", required_argument, NULL, 'F' },
		{ "weeks", required_argument, NULL, 'W' },
		{ "time", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__PublishSessions p = REFERRAL__PUBLISH_SESSIONS__INIT;
	Referral__WeeklyPattern w = REFERRAL__WEEKLY_PATTERN__INIT;
	Referral__SessionTime t = REFERRAL__SESSION_TIME__INIT;
	Referral__SessionTime *tp = &t;
	uint32_t days[7];
	char start_time[8] = "", end_time[8] = "";
	int have_start = 0, have_end = 0, weekly = 0, ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "i:d:k:r:c:R:p:s:e:w:F:W:t:", opts, NULL)) != -1) {
		switch (ch) {
		case 'i': p.institution_id = optarg; break;
		case 'd': p.department_id = optarg; break;
		case 'k': if (parse_kind(optarg, &p.kind) < 0) return CTL_ERR_USAGE; break;
		case 'r': p.resource_id = optarg; break;
		case 'c': p.capacity = (uint32_t)atoi(optarg); break;
		case 'R': p.reserved_slots = (uint32_t)atoi(optarg); break;
		case 'p': p.reserved_pct = (uint32_t)atoi(optarg); break;
		case 's': if (ctl_parse_time(optarg, &t.starts_at) < 0) return CTL_ERR_USAGE; have_start = 1; break;
		case 'e': if (ctl_parse_time(optarg, &t.ends_at) < 0) return CTL_ERR_USAGE; have_end = 1; break;
		case 'w': {
			/* "1,4": ISO weekdays */
			weekly = 1;
			char *save, *tok, *list = optarg;
			w.n_weekdays = 0;
			while ((tok = strtok_r(list, ",", &save)) && w.n_weekdays < 7) {
				days[w.n_weekdays++] = (uint32_t)atoi(tok);
				list = NULL;
			}
			w.weekdays = days;
			break;
		}
		case 'F': w.first_date = optarg; break;
		case 'W': w.weeks = (uint32_t)atoi(optarg); break;
		case 't':
			/* "08:00-12:00" */
			if (sscanf(optarg, "%5[0-9:]-%5[0-9:]", start_time, end_time) != 2)
				return ctl_usage_error("publish", "--time wants HH:MM-HH:MM");
			w.start_time = start_time;
			w.end_time = end_time;
			break;
		default: return CTL_ERR_USAGE;
		}
	}
	if (weekly) {
		if (!w.first_date[0] || !w.start_time[0] || w.weeks == 0)
			return ctl_usage_error("publish", "--weekly needs --from-date, --weeks and --time");
		p.weekly = &w;
	} else {
		if (!have_start || !have_end)
			return ctl_usage_error("publish", "give --start and --end, or --weekly");
		p.n_times = 1;
		p.times = &tp;
	}
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_PUBLISH;
	req.publish = &p;
	return ctl_call(ctl, &req, NULL);
}

int cmd_capacity(struct ctl *ctl, int argc, char **argv)
{
	if (argc != 3)
		return ctl_usage_error("capacity", "usage: capacity SESSION_ID NEW_CAPACITY");
	Referral__ChangeCapacity c = REFERRAL__CHANGE_CAPACITY__INIT;
	c.session_id = atoll(argv[1]);
	c.capacity = (uint32_t)atoi(argv[2]);
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_CHANGE_CAPACITY;
	req.change_capacity = &c;
	return ctl_call(ctl, &req, NULL);
}

int cmd_cancel_session(struct ctl *ctl, int argc, char **argv)
{
	if (argc != 3)
		return ctl_usage_error("cancel-session", "usage: cancel-session SESSION_ID REASON");
	Referral__CancelSession c = REFERRAL__CANCEL_SESSION__INIT;
	c.session_id = atoll(argv[1]);
	c.reason = argv[2];
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_CANCEL_SESSION;
	req.cancel_session = &c;
	return ctl_call(ctl, &req, NULL);
}

int cmd_book(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "session", required_argument, NULL, 's' },
		{ "patient", required_argument, NULL, 'p' },
		{ "pool", required_argument, NULL, 'o' },
		{ "fallback", no_argument, NULL, 'f' },
		{ "referral", required_argument, NULL, 'r' },
		{ "key", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__Book b = REFERRAL__BOOK__INIT;
	char key[64];
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "s:p:o:fr:k:", opts, NULL)) != -1) {
		switch (ch) {
		case 's': b.session_id = atoll(optarg); break;
		case 'p': b.patient_id = optarg; break;
		case 'o': if (ctl_parse_pool("book", optarg, &b.pool) < 0) return CTL_ERR_USAGE; break;
		case 'f': b.fallback_to_public = 1; break;
		case 'r': b.referral_id = optarg; break;
		case 'k': b.idempotency_key = optarg; break;
		default: return CTL_ERR_USAGE;
		}
	}
	if (!b.session_id || !b.patient_id[0])
		return ctl_usage_error("book", "--session and --patient are required");
	if (!b.idempotency_key[0])
		b.idempotency_key = ctl_fresh_key(key, sizeof key);
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_BOOK;
	req.book = &b;
	return ctl_call(ctl, &req, NULL);
}

int cmd_cancel(struct ctl *ctl, int argc, char **argv)
{
	if (argc < 2 || argc > 3)
		return ctl_usage_error("cancel", "usage: cancel BOOKING_ID [REASON]");
	Referral__CancelBooking c = REFERRAL__CANCEL_BOOKING__INIT;
	c.booking_id = argv[1];
	c.reason = argc == 3 ? argv[2] : "";
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_CANCEL_BOOKING;
	req.cancel_booking = &c;
	return ctl_call(ctl, &req, NULL);
}

int cmd_overbook(struct ctl *ctl, int argc, char **argv)
{
	if (argc < 4 || argc > 5)
		return ctl_usage_error("overbook", "usage: overbook SESSION_ID PATIENT_ID REASON [REFERRAL_ID]");
	Referral__EmergencyBook e = REFERRAL__EMERGENCY_BOOK__INIT;
	e.session_id = atoll(argv[1]);
	e.patient_id = argv[2];
	e.reason = argv[3];
	e.referral_id = argc == 5 ? argv[4] : "";
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_EMERGENCY_BOOK;
	req.emergency_book = &e;
	return ctl_call(ctl, &req, NULL);
}

int cmd_bookings(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "session", required_argument, NULL, 's' },
		{ "patient", required_argument, NULL, 'p' },
		{ "all", no_argument, NULL, 'a' },
		{ "page-size", required_argument, NULL, 'n' },
		{ "page-token", required_argument, NULL, 'P' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__ListBookings l = REFERRAL__LIST_BOOKINGS__INIT;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "s:p:an:P:", opts, NULL)) != -1) {
		switch (ch) {
		case 's': l.session_id = atoll(optarg); break;
		case 'p': l.patient_id = optarg; break;
		case 'a': l.include_cancelled = 1; break;
		case 'n': l.page_size = (uint32_t)atoi(optarg); break;
		case 'P': l.page_token = optarg; break;
		default: return CTL_ERR_USAGE;
		}
	}
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_LIST_BOOKINGS;
	req.list_bookings = &l;
	Referral__Response *resp;
	int rc = ctl_ask(ctl, &req, &resp);
	if (rc != CTL_OK || !resp)
		return rc;
	const Referral__BookingList *bl = resp->bookings;
	static const char *const pools[] = { "auto", "reserved", "public", "emergency" };
	printf("%-36s %-8s %-36s %-9s %-17s %s\n", "BOOKING", "SESSION", "PATIENT", "POOL",
	       "STATUS", "BOOKED BY");
	for (size_t i = 0; i < bl->n_bookings; i++) {
		const Referral__Booking *b = bl->bookings[i];
		printf("%-36s %-8lld %-36s %-9s %-17s %s\n", b->booking_id, (long long)b->session_id,
		       b->patient_id, pools[b->pool < 4 ? b->pool : 0], b->status,
		       b->booked_by_institution);
	}
	if (bl->next_page_token[0])
		printf("more: --page-token %s\n", bl->next_page_token);
	referral__response__free_unpacked(resp, NULL);
	return CTL_OK;
}
