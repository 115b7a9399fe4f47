/* ctl_admin.c: referralctl's administration commands: admin terminal
 * add|list|revoke|rotate. A token made by add or rotate is printed once and
 * is not stored anywhere else. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_commands.h"
#include "wire.h"

static const char admin_usage[] =
	"usage: admin terminal add TERMINAL --institution I --role ROLE [--practitioner P]\n"
	"       admin terminal list [--institution I] [--all]\n"
	"       admin terminal revoke TERMINAL\n"
	"       admin terminal rotate TERMINAL";

static void print_time(const char *label, int64_t t)
{
	if (!t)
		return;
	char buf[32];
	time_t tt = (time_t)t;
	strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", localtime(&tt));
	printf("  %s %s\n", label, buf);
}

/* Sends req; prints the terminal in the answer, and the token if one came. */
static int call_terminal(struct ctl *ctl, Referral__Request *req, const char *verb)
{
	Referral__Response *resp;
	int rc = ctl_ask(ctl, req, &resp);
	if (rc != CTL_OK || !resp)
		return rc;
	const Referral__TerminalInfo *t = resp->terminal;
	printf("terminal %s %s: %s at %s%s%s\n", t->terminal_id, verb, wire_role_name(t->role),
	       t->institution_id, t->practitioner_id[0] ? ", practitioner " : "",
	       t->practitioner_id);
	print_time("revoked", t->revoked_at);
	if (t->token[0])
		printf("token (shown this once; give it to the terminal, it is not stored): %s\n",
		       t->token);
	referral__response__free_unpacked(resp, NULL);
	return CTL_OK;
}

static int parse_role(const char *s, Referral__Role *out)
{
	for (int r = REFERRAL__ROLE__ROLE_CLINIC; r <= REFERRAL__ROLE__ROLE_ADMIN; r++) {
		if (strcmp(s, wire_role_name((Referral__Role)r)) == 0) {
			*out = (Referral__Role)r;
			return 0;
		}
	}
	return -1;
}

static int terminal_add(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "institution", required_argument, NULL, 'i' },
		{ "role", required_argument, NULL, 'r' },
		{ "practitioner", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__AddTerminal a = REFERRAL__ADD_TERMINAL__INIT;
	int ch;
	optind = 0; /* 0: start afresh, letting options follow the terminal id */
	while ((ch = getopt_long(argc, argv, "i:r:p:", opts, NULL)) != -1) {
		switch (ch) {
		case 'i': a.institution_id = optarg; break;
		case 'r':
			if (parse_role(optarg, &a.role) < 0)
				return ctl_usage_error("admin terminal add",
						       "--role is clinic, desk, billing, monitor or admin");
			break;
		case 'p': a.practitioner_id = optarg; break;
		default: return CTL_ERR_USAGE;
		}
	}
	if (optind != argc - 1 || !a.institution_id[0] || !a.role)
		return ctl_usage_error("admin", admin_usage);
	a.terminal_id = argv[optind];
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_ADD_TERMINAL;
	req.add_terminal = &a;
	return call_terminal(ctl, &req, "added");
}

static int terminal_list(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "institution", required_argument, NULL, 'i' },
		{ "all", no_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	Referral__ListTerminals l = REFERRAL__LIST_TERMINALS__INIT;
	int ch;
	optind = 0; /* 0: start afresh, letting options follow the terminal id */
	while ((ch = getopt_long(argc, argv, "i:a", opts, NULL)) != -1) {
		switch (ch) {
		case 'i': l.institution_id = optarg; break;
		case 'a': l.include_revoked = 1; break;
		default: return CTL_ERR_USAGE;
		}
	}
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_LIST_TERMINALS;
	req.list_terminals = &l;
	Referral__Response *resp;
	int rc = ctl_ask(ctl, &req, &resp);
	if (rc != CTL_OK || !resp)
		return rc;
	printf("%-24s %-24s %-8s %-16s %s\n", "TERMINAL", "INSTITUTION", "ROLE", "PRACTITIONER",
	       "STATE");
	for (size_t i = 0; i < resp->terminals->n_terminals; i++) {
		const Referral__TerminalInfo *t = resp->terminals->terminals[i];
		printf("%-24s %-24s %-8s %-16s %s\n", t->terminal_id, t->institution_id,
		       wire_role_name(t->role), t->practitioner_id[0] ? t->practitioner_id : "-",
		       t->revoked_at ? "revoked" : "active");
	}
	referral__response__free_unpacked(resp, NULL);
	return CTL_OK;
}

static int terminal_revoke(struct ctl *ctl, int argc, char **argv)
{
	if (argc != 2)
		return ctl_usage_error("admin", admin_usage);
	Referral__RevokeTerminal r = REFERRAL__REVOKE_TERMINAL__INIT;
	r.terminal_id = argv[1];
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_REVOKE_TERMINAL;
	req.revoke_terminal = &r;
	return call_terminal(ctl, &req, "revoked");
}

static int terminal_rotate(struct ctl *ctl, int argc, char **argv)
{
	if (argc != 2)
		return ctl_usage_error("admin", admin_usage);
	Referral__RotateTerminal r = REFERRAL__ROTATE_TERMINAL__INIT;
	r.terminal_id = argv[1];
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_ROTATE_TERMINAL;
	req.rotate_terminal = &r;
	return call_terminal(ctl, &req, "has a new token");
}

int cmd_admin(struct ctl *ctl, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(struct ctl *, int, char **);
	} actions[] = {
		{ "add", terminal_add },
		{ "list", terminal_list },
		{ "revoke", terminal_revoke },
		{ "rotate", terminal_rotate },
	};
	if (argc < 3 || strcmp(argv[1], "terminal") != 0)
		return ctl_usage_error("admin", admin_usage);
	for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
		if (strcmp(argv[2], actions[i].name) == 0)
			return actions[i].fn(ctl, argc - 2, argv + 2);
	return ctl_usage_error("admin", admin_usage);
}
