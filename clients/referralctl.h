/*
 * referralctl.h: what every referralctl command shares.
 *
 * Exit codes: 0 success; 1 the server answered with an error; 2 usage error;
 * 3 server unreachable or the connection failed; 4 authentication refused.
 */
#ifndef REFERRALCTL_H
#define REFERRALCTL_H

#include "client.h"

enum ctl_exit { CTL_OK = 0, CTL_ERR_SERVER = 1, CTL_ERR_USAGE = 2, CTL_ERR_TRANSPORT = 3,
		CTL_ERR_AUTH = 4 };

struct ctl {
	const char *host, *port;
	const char *community, *terminal, *token;
	struct rc_tls tls;                /* ca_file set: connect with TLS */
	int json;
	int timeout_ms;
	struct rc_client *client;
	Referral__HelloReply *identity;   /* after ctl_connect */
	Referral__Response *hello_resp;
};

/* Connects and authenticates; prints the reason and returns an exit code on
 * failure, 0 on success. */
int ctl_connect(struct ctl *ctl);
/* Sends a request and prints the response (human or JSON). Returns the exit
 * code. When `out` is not NULL the response is handed over instead of being
 * printed on success. */
int ctl_call(struct ctl *ctl, Referral__Request *req, Referral__Response **out);
/* For commands that print the answer themselves unless --json: with --json
 * the answer is printed here as JSON and *out is NULL; otherwise as
 * ctl_call. The caller prints and frees a non-NULL *out. */
int ctl_ask(struct ctl *ctl, Referral__Request *req, Referral__Response **out);
/* Prints a typed error the way every command does. */
void ctl_print_error(const struct ctl *ctl, const Referral__Error *err);

#endif
