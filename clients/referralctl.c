/*
 * referralctl: the command line for operators, monitoring and scripts.
 * Commands are rows of one table; each builds a request and prints the reply.
 */
#include "referralctl.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_commands.h"
#include "ctl_output.h"
#include "wire.h"

#define CTL_VERSION "0.1.0"

static void print_response(const struct ctl *ctl, const Referral__Response *resp)
{
	json_object *obj = ctl_message_to_json(&resp->base);
	/* Show the body alone: the id and the empty error are noise here. */
	json_object *body = NULL;
	json_object_object_foreach(obj, key, val) {
		if (strcmp(key, "request_id") != 0 && strcmp(key, "error") != 0)
			body = val;
	}
	if (body) {
		if (ctl->json)
			ctl_print_json(stdout, body);
		else
			ctl_print_human(stdout, body, 0);
	}
	json_object_put(obj);
}

void ctl_print_error(const struct ctl *ctl, const Referral__Error *err)
{
	if (ctl->json) {
		json_object *obj = ctl_message_to_json(&err->base);
		json_object *wrap = json_object_new_object();
		json_object_object_add(wrap, "error", obj);
		ctl_print_json(stdout, wrap);
		json_object_put(wrap);
	}
	fprintf(stderr, "referralctl: %s: %s%s%s%s\n", wire_error_code_name(err->code),
		err->message, err->field && err->field[0] ? " (field " : "",
		err->field && err->field[0] ? err->field : "", err->field && err->field[0] ? ")" : "");
}

static int transport_error(const char *what, const char *err)
{
	fprintf(stderr, "referralctl: %s: %s\n", what, err);
	return CTL_ERR_TRANSPORT;
}

/* 1 when every address of host is a loopback one: only there may a token
 * cross the wire without TLS. */
static int host_is_loopback(const char *host)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return 0;
	int all = 1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET)
			all &= (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
		else if (ai->ai_family == AF_INET6)
			all &= IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
		else
			all = 0;
	}
	freeaddrinfo(res);
	return all;
}

static int open_connection(struct ctl *ctl, char *err, size_t errlen)
{
	if (ctl->tls.ca_file) {
		ctl->client = rc_connect_tls(ctl->host, ctl->port, &ctl->tls, ctl->timeout_ms, err,
					     errlen);
		return ctl->client ? CTL_OK : transport_error("connect", err);
	}
	if (!host_is_loopback(ctl->host)) {
		fprintf(stderr, "referralctl: %s is not a loopback address: give the CA certificate "
				"(--ca or REFERRAL_CA) to connect with TLS\n", ctl->host);
		return CTL_ERR_USAGE;
	}
	ctl->client = rc_connect(ctl->host, ctl->port, ctl->timeout_ms, err, errlen);
	return ctl->client ? CTL_OK : transport_error("connect", err);
}

int ctl_connect(struct ctl *ctl)
{
	char err[256];
	/* A client certificate names the terminal; a token needs the names. */
	if (!ctl->tls.cert_file && (!ctl->community || !ctl->terminal || !ctl->token)) {
		fprintf(stderr, "referralctl: credentials missing: set --community, --terminal and "
				"--token (or REFERRAL_COMMUNITY, REFERRAL_TERMINAL, REFERRAL_TOKEN), "
				"or a client certificate (--cert)\n");
		return CTL_ERR_USAGE;
	}
	if (ctl->tls.cert_file && !ctl->tls.ca_file) {
		fprintf(stderr, "referralctl: --cert needs --ca (the connection must use TLS)\n");
		return CTL_ERR_USAGE;
	}
	int rc = open_connection(ctl, err, sizeof err);
	if (rc != CTL_OK)
		return rc;
	Referral__Response *resp = rc_hello(ctl->client, ctl->community ? ctl->community : "",
					    ctl->terminal ? ctl->terminal : "",
					    ctl->token ? ctl->token : "",
					    "referralctl " CTL_VERSION, ctl->timeout_ms, err,
					    sizeof err);
	if (!resp)
		return transport_error("handshake", err);
	if (resp->error) {
		ctl_print_error(ctl, resp->error);
		int auth = resp->error->code == REFERRAL__ERROR_CODE__UNAUTHENTICATED ||
			   resp->error->code == REFERRAL__ERROR_CODE__VERSION_MISMATCH;
		referral__response__free_unpacked(resp, NULL);
		return auth ? CTL_ERR_AUTH : CTL_ERR_SERVER;
	}
	ctl->hello_resp = resp;
	ctl->identity = resp->hello;
	return CTL_OK;
}

int ctl_call(struct ctl *ctl, Referral__Request *req, Referral__Response **out)
{
	char err[256];
	Referral__Response *resp = rc_call(ctl->client, req, ctl->timeout_ms, err, sizeof err);
	if (!resp)
		return transport_error("request", err);
	if (resp->error) {
		ctl_print_error(ctl, resp->error);
		referral__response__free_unpacked(resp, NULL);
		return CTL_ERR_SERVER;
	}
	if (out) {
		*out = resp;
		return CTL_OK;
	}
	print_response(ctl, resp);
	referral__response__free_unpacked(resp, NULL);
	return CTL_OK;
}

int ctl_ask(struct ctl *ctl, Referral__Request *req, Referral__Response **out)
{
	*out = NULL;
	return ctl_call(ctl, req, ctl->json ? NULL : out);
}

/* ---- commands ------------------------------------------------------------ */

static int cmd_ping(struct ctl *ctl, int argc, char **argv)
{
	(void)argc, (void)argv;
	Referral__Ping ping = REFERRAL__PING__INIT;
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_PING;
	req.ping = &ping;
	Referral__Response *resp;
	int rc = ctl_call(ctl, &req, &resp);
	if (rc != CTL_OK)
		return rc;
	if (ctl->json)
		printf("{\"ok\": true, \"server\": \"%s:%s\", \"terminal\": \"%s\", \"role\": \"%s\"}\n",
		       ctl->host, ctl->port, ctl->identity->terminal_id,
		       wire_role_name(ctl->identity->role));
	else
		printf("pong from %s:%s (referrald %s) as %s/%s, role %s\n", ctl->host, ctl->port,
		       ctl->identity->server_version, ctl->identity->community_id,
		       ctl->identity->terminal_id, wire_role_name(ctl->identity->role));
	referral__response__free_unpacked(resp, NULL);
	return CTL_OK;
}

static int cmd_status(struct ctl *ctl, int argc, char **argv)
{
	(void)argc, (void)argv;
	Referral__StatusRequest st = REFERRAL__STATUS_REQUEST__INIT;
	Referral__Request req = REFERRAL__REQUEST__INIT;
	req.body_case = REFERRAL__REQUEST__BODY_STATUS;
	req.status = &st;
	return ctl_call(ctl, &req, NULL);
}

/* Continues a command's argument line in the usage, under the first. */
#define ARGS_NL "\n                   "

struct command {
	const char *name;
	int (*fn)(struct ctl *ctl, int argc, char **argv);
	const char *args;
	const char *help;
};

static const struct command commands[] = {
	{ "ping", cmd_ping, "", "check that the server answers and the credentials work" },
	{ "status", cmd_status, "", "server version, uptime, connections, database state" },
	{ "sessions", cmd_sessions, "[--institution I] [--department D] [--kind K] [--from T] [--until T] [--available]",
	  "search bookable sessions (reserved and public capacity left)" },
	{ "publish", cmd_publish, "--department D --kind K --resource R --capacity N [--reserved N|--reserved-pct P] (--start T --end T | --weekly 1,4 --from-date D --weeks N --time HH:MM-HH:MM)",
	  "publish a session or a weekly pattern (desk, admin)" },
	{ "capacity", cmd_capacity, "SESSION CAPACITY", "change a future session's capacity" },
	{ "cancel-session", cmd_cancel_session, "SESSION REASON", "cancel a session; its bookings are flagged" },
	{ "book", cmd_book, "--session S --patient P [--pool auto|reserved|public] [--fallback] [--referral R] [--key K]",
	  "book a unit" },
	{ "cancel", cmd_cancel, "BOOKING [REASON]", "cancel a booking (harmless twice)" },
	{ "overbook", cmd_overbook, "SESSION PATIENT REASON [REFERRAL]", "audited emergency booking beyond capacity (desk)" },
	{ "bookings", cmd_bookings, "[--session S] [--patient P] [--all]", "list bookings you may see" },
	{ "refer", cmd_refer,
	  "up --patient P --to I [--department D] --diagnosis ICD10 --reason TEXT" ARGS_NL
	  "   [--urgency routine|urgent|emergency] [--session S [--pool auto|reserved|public]" ARGS_NL
	  "   [--fallback] [--wait-if-full]] [--key K]" ARGS_NL
	  "down --patient P --to I [--department D] --diagnosis ICD10 --reason TEXT" ARGS_NL
	  "   --care-plan TEXT --follow-up-due YYYY-MM-DD [--closes REFERRAL] [--key K]",
	  "refer a patient up (clinic; with a slot if --session) or down (desk)" },
	{ "worklist", cmd_worklist,
	  "[--state S|all] [--direction up|down] [--department D] [--min-age MINUTES]" ARGS_NL
	  "[--escalated] [--patient P] [--page-size N] [--page-token T]",
	  "referrals to and from your institution, most urgent first (default: open ones)" },
	{ "referral", cmd_referral,
	  "ACTION REFERRAL [--reason TEXT] [--if-version N] [--session S]" ARGS_NL
	  "   [--to I] [--department D]" ARGS_NL
	  "ACTION: accept reject redirect no-slot return arrive admit discharge complete" ARGS_NL
	  "        cancel reverse-no-show decline follow-up;  or: show REFERRAL",
	  "move a referral along its course, or show it" },
	{ "history", cmd_history, "REFERRAL", "the course of a referral, one line per move" },
	{ "watch", cmd_watch, "[--after SEQ]",
	  "print live events until Ctrl-C (default: replay from the first)" },
	{ "deductibles", cmd_deductibles,
	  "[--since T] [--until T] [--patient P] [--referral R] [--live]" ARGS_NL
	  "[--format text|csv|json]",
	  "deductible decisions of stays admitted in a period, with the total waived (billing)" },
	{ "stay", cmd_stay,
	  "admit --patient P [--scheme resident|employee] [--admitted T] [--discharged T]" ARGS_NL
	  "   [--institution I] [--referral R] [--key K]" ARGS_NL
	  "discharge STAY [--at T];  reverse STAY --reason TEXT;  show STAY",
	  "record an inpatient stay without a referral, discharge or reverse one (billing)" },
	{ "deductible-policy", cmd_deductible_policy,
	  "[show [--version N]]" ARGS_NL
	  "set --policy waive|continuous|none --window DAYS [--amount LEVEL:SCHEME=FEN ...]",
	  "the community's deductible policy, or set it (admin)" },
	{ "admin", cmd_admin,
	  "terminal add TERMINAL --institution I --role ROLE [--practitioner P]" ARGS_NL
	  "terminal list [--institution I] [--all] | terminal revoke|rotate TERMINAL",
	  "manage terminals (admin): a new token is shown once" },
	{ "stats", cmd_stats, "[--community C] [--institution I] [--since T] [--until T] [--json]",
	  "figures per hospital and for the community: slots, referrals (desk, monitor, admin)" },
	{ "compliance", cmd_compliance, "[--institution I] [--since T] [--until T] [--limit N] [--json]",
	  "sessions and hospitals short of the reserve floor or leaving reserved units unused" },
	{ "top", cmd_top, "[-d SECONDS] [-n COUNT] [-b]",
	  "live view of the daemon: requests, latencies, errors, pools; q quits (monitor, admin)" },
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: referralctl [options] COMMAND [args]\n\n"
		"options:\n"
		"  -H, --host HOST        server address (REFERRAL_HOST, default 127.0.0.1)\n"
		"  -p, --port PORT        server port (REFERRAL_PORT, default 7420)\n"
		"  -C, --community ID     the terminal's community (REFERRAL_COMMUNITY)\n"
		"  -t, --terminal ID      terminal id (REFERRAL_TERMINAL)\n"
		"  -k, --token TOKEN      terminal token (REFERRAL_TOKEN; prefer the variable)\n"
		"  -a, --ca FILE          CA certificate: connect with TLS and check the server (REFERRAL_CA)\n"
		"  -e, --cert FILE        client certificate, instead of a token (REFERRAL_CERT)\n"
		"  -K, --key FILE         the client certificate's key (REFERRAL_KEY)\n"
		"  -j, --json             machine-readable output\n"
		"  -T, --timeout MS       per-request timeout (default 10000)\n\n"
		"commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(out, "  %-14s %s\n  %-14s   %s\n", commands[i].name, commands[i].help, "",
			commands[i].args[0] ? commands[i].args : "(no arguments)");
	fprintf(out, "\nexit codes: 0 ok, 1 server error, 2 usage, 3 unreachable, 4 refused credentials\n");
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v && v[0] ? v : def;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "community", required_argument, NULL, 'C' },
		{ "terminal", required_argument, NULL, 't' },
		{ "token", required_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'a' },
		{ "cert", required_argument, NULL, 'e' },
		{ "key", required_argument, NULL, 'K' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl ctl = {
		.host = env_or("REFERRAL_HOST", "127.0.0.1"),
		.port = env_or("REFERRAL_PORT", "7420"),
		.community = env_or("REFERRAL_COMMUNITY", NULL),
		.terminal = env_or("REFERRAL_TERMINAL", NULL),
		.token = env_or("REFERRAL_TOKEN", NULL),
		.tls = { env_or("REFERRAL_CA", NULL), env_or("REFERRAL_CERT", NULL),
			 env_or("REFERRAL_KEY", NULL) },
		.timeout_ms = 10000,
	};
	int ch;
	/* '+': options end at the command name; the command parses the rest. */
	while ((ch = getopt_long(argc, argv, "+H:p:C:t:k:a:e:K:jT:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'H': ctl.host = optarg; break;
		case 'p': ctl.port = optarg; break;
		case 'C': ctl.community = optarg; break;
		case 't': ctl.terminal = optarg; break;
		case 'k': ctl.token = optarg; break;
		case 'a': ctl.tls.ca_file = optarg; break;
		case 'e': ctl.tls.cert_file = optarg; break;
		case 'K': ctl.tls.key_file = optarg; break;
		case 'j': ctl.json = 1; break;
		case 'T': ctl.timeout_ms = atoi(optarg); break;
		case 'h': usage(stdout); return CTL_OK;
		default: usage(stderr); return CTL_ERR_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CTL_ERR_USAGE;
	}
	const struct command *cmd = NULL;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, argv[optind]) == 0)
			cmd = &commands[i];
	if (!cmd) {
		fprintf(stderr, "referralctl: unknown command '%s'\n", argv[optind]);
		usage(stderr);
		return CTL_ERR_USAGE;
	}
	if (ctl.timeout_ms <= 0)
		ctl.timeout_ms = 10000;
	int rc = ctl_connect(&ctl);
	if (rc == CTL_OK)
		rc = cmd->fn(&ctl, argc - optind, argv + optind);
	if (ctl.hello_resp)
		referral__response__free_unpacked(ctl.hello_resp, NULL);
	rc_close(ctl.client);
	return rc;
}
