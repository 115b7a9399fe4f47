/* config.c: the settings table and its parser (inih); see config.h. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ini.h>

enum setting_type { SET_STR, SET_INT, SET_LOGLEVEL };

struct setting {
	const char *name;
	enum setting_type type;
	size_t offset;
	const char *def;
	long min, max;   /* for SET_INT */
	int live;        /* 1: SIGHUP applies it; 0: needs a restart */
	const char *doc;
};

#define OFF(field) offsetof(struct config, field)

static const struct setting settings[] = {
	{ "listen_addr", SET_STR, OFF(listen_addr), "127.0.0.1", 0, 0, 0,
	  "Address the TLS client port binds to." },
	{ "listen_port", SET_INT, OFF(listen_port), "7420", -1, 65535, 0,
	  "TLS client port; 0 picks a free port (see port_file), -1 switches it off." },
	{ "port_file", SET_STR, OFF(port_file), "", 0, 0, 0,
	  "If set, the bound TLS port is written to this file once listening." },
	{ "tls_cert_file", SET_STR, OFF(tls_cert_file), "/etc/referrald/tls/server.crt", 0, 0, 1,
	  "The server's certificate chain (PEM) for the TLS client port; read again on SIGHUP." },
	{ "tls_key_file", SET_STR, OFF(tls_key_file), "/etc/referrald/tls/server.key", 0, 0, 1,
	  "The private key (PEM) of tls_cert_file; read again on SIGHUP." },
	{ "tls_ca_file", SET_STR, OFF(tls_ca_file), "", 0, 0, 1,
	  "The community CA (PEM). If set, terminals may authenticate with a client certificate it issued (subject CN = terminal, O = community); empty: tokens only." },
	{ "plain_addr", SET_STR, OFF(plain_addr), "127.0.0.1", 0, 0, 0,
	  "Address of the port without TLS; must be a loopback address." },
	{ "plain_port", SET_INT, OFF(plain_port), "-1", -1, 65535, 0,
	  "Port without TLS, for development and local tools on loopback only; -1 (default) switches it off, 0 picks a free port." },
	{ "plain_port_file", SET_STR, OFF(plain_port_file), "", 0, 0, 0,
	  "If set, the bound plain port is written to this file once listening." },
	{ "admin_addr", SET_STR, OFF(admin_addr), "127.0.0.1", 0, 0, 0,
	  "Address of the admin HTTP endpoint (/metrics, /healthz). Keep it on loopback or a management network." },
	{ "admin_port", SET_INT, OFF(admin_port), "7421", -1, 65535, 0,
	  "Admin HTTP port; 0 picks a free port (see admin_port_file), -1 switches the endpoint off." },
	{ "admin_port_file", SET_STR, OFF(admin_port_file), "", 0, 0, 0,
	  "If set, the admin endpoint's bound port is written to this file once listening." },
	{ "db_dsn", SET_STR, OFF(db_dsn), "dbname=referral", 0, 0, 0,
	  "libpq connection string. Multi-host strings with target_session_attrs=read-write are supported." },
	{ "db_replica_dsn", SET_STR, OFF(db_replica_dsn), "", 0, 0, 0,
	  "libpq connection string of a streaming replica for session search and monitoring figures; empty: none." },
	{ "db_replica_pool_size", SET_INT, OFF(db_replica_pool_size), "2", 1, 64, 0,
	  "Number of connections to the replica." },
	{ "db_replica_max_lag_ms", SET_INT, OFF(db_replica_max_lag_ms), "5000", 0, 3600000, 1,
	  "Reads go to the replica only while it is at most this far behind the primary; otherwise to the primary." },
	{ "db_pool_size", SET_INT, OFF(db_pool_size), "4", 1, 256, 0,
	  "Number of PostgreSQL connections." },
	{ "db_queue_max", SET_INT, OFF(db_queue_max), "4096", 1, 1000000, 1,
	  "Requests that may wait for a database connection; beyond it requests are answered OVERLOADED." },
	{ "db_queue_timeout_ms", SET_INT, OFF(db_queue_timeout_ms), "3000", 10, 600000, 1,
	  "A request waiting this long for a database connection is answered UNAVAILABLE." },
	{ "db_reconnect_max_ms", SET_INT, OFF(db_reconnect_max_ms), "5000", 50, 600000, 1,
	  "Upper bound of the exponential reconnect backoff." },
	{ "db_statement_timeout_ms", SET_INT, OFF(db_statement_timeout_ms), "10000", 0, 3600000, 0,
	  "PostgreSQL statement_timeout for the daemon's sessions (0: none)." },
	{ "max_frame_bytes", SET_INT, OFF(max_frame_bytes), "1048576", 64, 64 * 1024 * 1024, 1,
	  "Largest frame body accepted; a larger length prefix closes the connection with FRAME_TOO_LARGE." },
	{ "max_connections", SET_INT, OFF(max_connections), "20000", 1, 1000000, 1,
	  "Client connections beyond this are refused with OVERLOADED and closed." },
	{ "max_connections_per_terminal", SET_INT, OFF(max_connections_per_terminal), "64", 1, 100000, 1,
	  "Connections one terminal may have open on this daemon; a Hello beyond it is answered OVERLOADED and the connection closed." },
	{ "terminal_rate_per_s", SET_INT, OFF(terminal_rate_per_s), "200", 0, 1000000, 1,
	  "Requests per second one terminal may make on this daemon, on average (a token bucket); beyond it requests are answered OVERLOADED with retry_after_ms. 0: no limit." },
	{ "terminal_rate_burst", SET_INT, OFF(terminal_rate_burst), "400", 1, 1000000, 1,
	  "Requests one terminal may make at once above terminal_rate_per_s (the bucket's size)." },
	{ "max_inflight_per_conn", SET_INT, OFF(max_inflight_per_conn), "128", 1, 100000, 1,
	  "Requests of one connection being processed at once; further frames wait in the socket." },
	{ "max_output_bytes", SET_INT, OFF(max_output_bytes), "4194304", 4096, 1 << 30, 1,
	  "Unsent reply bytes per connection above which the daemon stops reading that client." },
	{ "handshake_timeout_ms", SET_INT, OFF(handshake_timeout_ms), "10000", 100, 3600000, 1,
	  "A connection that has not completed Hello in this time is closed." },
	{ "idle_timeout_ms", SET_INT, OFF(idle_timeout_ms), "600000", 100, 86400000, 1,
	  "A connection with no request in flight and no traffic for this long is closed." },
	{ "shutdown_timeout_ms", SET_INT, OFF(shutdown_timeout_ms), "10000", 0, 600000, 1,
	  "On SIGTERM, how long requests in flight may take before connections are closed anyway." },
	{ "pbkdf2_iterations", SET_INT, OFF(pbkdf2_iterations), "10000", 1000, 10000000, 1,
	  "PBKDF2-SHA256 iterations for newly hashed terminal tokens (existing hashes keep theirs)." },
	{ "patient_id_key_file", SET_STR, OFF(patient_id_key_file), "", 0, 0, 0,
	  "Secret (at least 32 bytes, mode 0600) keying the hash of resident ID numbers; empty: ResolvePatient is refused. Every daemon of a database needs the same one." },
	{ "auth_threads", SET_INT, OFF(auth_threads), "2", 1, 64, 0,
	  "Worker threads that check and hash terminal tokens, so that the slow hash never holds up the event loop." },
	{ "release_interval_ms", SET_INT, OFF(release_interval_ms), "10000", 100, 3600000, 1,
	  "How often the daemon releases due reserved capacity to the public pool." },
	{ "events_poll_ms", SET_INT, OFF(events_poll_ms), "2000", 100, 3600000, 1,
	  "How often event subscriptions are checked for events whose database signal was lost (e.g. during a reconnect)." },
	{ "booking_batch_max", SET_INT, OFF(booking_batch_max), "200", 0, 10000, 1,
	  "Most Book requests committed together in one transaction (group commit); 0 books each on its own." },
	{ "booking_batches_in_flight", SET_INT, OFF(booking_batches_in_flight), "2", 1, 256, 1,
	  "Booking batches running at once; requests arriving meanwhile form the next batch. Keep below db_pool_size." },
	{ "booking_batches_per_session", SET_INT, OFF(booking_batches_per_session), "2", 1, 16, 1,
	  "Running booking batches that may hold requests for one session: the next reads what it needs while the one before holds the session's lock." },
	{ "credentials_check_ms", SET_INT, OFF(credentials_check_ms), "10000", 100, 3600000, 1,
	  "How often the daemon looks for terminals revoked or rotated whose database signal was lost, to close their connections." },
	{ "figures_pool_size", SET_INT, OFF(figures_pool_size), "1", 1, 16, 0,
	  "Database connections of their own for the figures (stats, compliance, the community gauges of /metrics): at most this many figure queries run at once." },
	{ "figures_queue_max", SET_INT, OFF(figures_queue_max), "8", 1, 10000, 1,
	  "Figure requests that may wait for a figures connection; beyond it they are answered OVERLOADED." },
	{ "figures_statement_timeout_ms", SET_INT, OFF(figures_statement_timeout_ms), "5000", 100, 600000, 0,
	  "PostgreSQL statement_timeout of the figures connections; a figure query that runs longer is answered UNAVAILABLE." },
	{ "figures_metrics_interval_ms", SET_INT, OFF(figures_metrics_interval_ms), "60000", 0, 86400000, 1,
	  "How often the community gauges of /metrics are computed afresh (0: not at all)." },
	{ "log_level", SET_LOGLEVEL, OFF(log_level), "info", 0, 0, 1,
	  "One of error, warn, info, debug." },
};

#define N_SETTINGS (sizeof settings / sizeof settings[0])

static const struct setting *find_setting(const char *name)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (strcmp(settings[i].name, name) == 0)
			return &settings[i];
	return NULL;
}

static int set_value(struct config *cfg, const struct setting *s, const char *value,
		     char *err, size_t errlen)
{
	char *field = (char *)cfg + s->offset;
	switch (s->type) {
	case SET_STR: {
		char *copy = strdup(value);
		if (copy == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	}
	case SET_INT: {
		char *end;
		errno = 0;
		long v = strtol(value, &end, 10);
		if (errno || end == value || *end != '\0' || v < s->min || v > s->max) {
			snprintf(err, errlen, "%s: '%s' is not an integer in [%ld, %ld]",
				 s->name, value, s->min, s->max);
			return -1;
		}
		*(int *)field = (int)v;
		return 0;
	}
	case SET_LOGLEVEL:
		if (log_level_parse(value, (enum log_level *)field) < 0) {
			snprintf(err, errlen, "%s: '%s' is not one of error, warn, info, debug",
				 s->name, value);
			return -1;
		}
		return 0;
	}
	return -1;
}

struct parse_ctx {
	struct config *cfg;
	char *err;
	size_t errlen;
	int failed;
	int lines_read;      /* by read_line */
	int reader_failed_at; /* line the reader refused, 0 if none */
};

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *ctx = user;
	if (ctx->failed)
		return 0;
	/* Settings live at the top level or in [referrald]. */
	if (section[0] != '\0' && strcmp(section, "referrald") != 0) {
		snprintf(ctx->err, ctx->errlen, "unknown section [%s]", section);
		ctx->failed = 1;
		return 0;
	}
	const struct setting *s = find_setting(name);
	if (s == NULL) {
		snprintf(ctx->err, ctx->errlen, "unknown setting '%s'", name);
		ctx->failed = 1;
		return 0;
	}
	if (set_value(ctx->cfg, s, value, ctx->err, ctx->errlen) < 0) {
		ctx->failed = 1;
		return 0;
	}
	return 1;
}

/* Feeds inih one line at a time, so that two of its habits cannot bite: an
 * indented line would continue the previous value, and a line longer than
 * its buffer would be parsed as two lines. Indentation is stripped; a line
 * that does not fit is an error. */
struct line_reader {
	FILE *f;
	struct parse_ctx *ctx;
	char *line;
	size_t cap;
};

static char *read_line(char *str, int num, void *stream)
{
	struct line_reader *lr = stream;
	ssize_t n = getline(&lr->line, &lr->cap, lr->f);
	if (n < 0)
		return NULL;
	lr->ctx->lines_read++;
	const char *p = lr->line;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strlen(p) >= (size_t)num - 1 && !lr->ctx->failed) {
		snprintf(lr->ctx->err, lr->ctx->errlen, "line longer than %d bytes", num - 2);
		lr->ctx->failed = 1;
		lr->ctx->reader_failed_at = lr->ctx->lines_read;
		p = ";\n"; /* a comment: inih goes on, and we report the error */
	}
	snprintf(str, (size_t)num, "%s", p);
	return str;
}

int config_is_loopback(const char *addr)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, addr, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, addr, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return 0;
}

/* Rules between settings, checked after everything is read. */
static int validate(const struct config *cfg, char *err, size_t errlen)
{
	if (cfg->listen_port < 0 && cfg->plain_port < 0) {
		snprintf(err, errlen, "no client port: listen_port and plain_port are both -1");
		return -1;
	}
	if (cfg->listen_port >= 0 && (!cfg->tls_cert_file[0] || !cfg->tls_key_file[0])) {
		snprintf(err, errlen, "listen_port is the TLS port and needs tls_cert_file and "
			 "tls_key_file (or set listen_port = -1 and use plain_port on loopback)");
		return -1;
	}
	/* Tokens and patient data cross the plain port in clear: only this
	 * host may reach it. */
	if (cfg->plain_port >= 0 && !config_is_loopback(cfg->plain_addr)) {
		snprintf(err, errlen, "plain_addr '%s' is not a loopback address: the port without "
			 "TLS may listen only on 127.0.0.0/8 or ::1", cfg->plain_addr);
		return -1;
	}
	return 0;
}

int config_load(struct config *cfg, const char *path, char *const *overrides,
		int n_overrides, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof *cfg);
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (set_value(cfg, &settings[i], settings[i].def, err, errlen) < 0)
			goto fail;
	if (path != NULL) {
		struct parse_ctx ctx = { cfg, err, errlen, 0, 0, 0 };
		FILE *f = fopen(path, "r");
		if (f == NULL) {
			snprintf(err, errlen, "cannot read %s", path);
			goto fail;
		}
		struct line_reader lr = { f, &ctx, NULL, 0 };
		int rc = ini_parse_stream(read_line, &lr, on_ini_entry, &ctx);
		free(lr.line);
		fclose(f);
		if (rc > 0 || ctx.failed) {
			if (!ctx.failed)
				snprintf(err, errlen, "syntax error");
			size_t n = strlen(err);
			snprintf(err + n, errlen - n, " (%s line %d)", path,
				 ctx.reader_failed_at ? ctx.reader_failed_at : rc);
			goto fail;
		}
	}
	for (int i = 0; i < n_overrides; i++) {
		char key[128];
		const char *eq = strchr(overrides[i], '=');
		size_t klen = eq ? (size_t)(eq - overrides[i]) : 0;
		if (eq == NULL || klen == 0 || klen >= sizeof key) {
			snprintf(err, errlen, "--set expects key=value, got '%s'", overrides[i]);
			goto fail;
		}
		memcpy(key, overrides[i], klen);
		key[klen] = '\0';
		const struct setting *s = find_setting(key);
		if (s == NULL) {
			snprintf(err, errlen, "unknown setting '%s'", key);
			goto fail;
		}
		if (set_value(cfg, s, eq + 1, err, errlen) < 0)
			goto fail;
	}
	if (validate(cfg, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	config_free(cfg);
	return -1;
}

void config_free(struct config *cfg)
{
	for (size_t i = 0; i < N_SETTINGS; i++) {
		if (settings[i].type == SET_STR) {
			char **p = (char **)((char *)cfg + settings[i].offset);
			free(*p);
			*p = NULL;
		}
	}
}

static void format_value(const struct config *cfg, const struct setting *s, char *buf, size_t len)
{
	const char *field = (const char *)cfg + s->offset;
	switch (s->type) {
	case SET_STR: snprintf(buf, len, "%s", *(char *const *)field); break;
	case SET_INT: snprintf(buf, len, "%d", *(const int *)field); break;
	case SET_LOGLEVEL: snprintf(buf, len, "%s", log_level_name(*(const enum log_level *)field)); break;
	}
}

static int same_value(const struct config *x, const struct config *y, const struct setting *s)
{
	const char *a = (const char *)x + s->offset, *b = (const char *)y + s->offset;
	switch (s->type) {
	case SET_STR: return strcmp(*(char *const *)a, *(char *const *)b) == 0;
	case SET_INT: return *(const int *)a == *(const int *)b;
	case SET_LOGLEVEL: return *(const enum log_level *)a == *(const enum log_level *)b;
	}
	return 0;
}

/* Copies setting s from `from` into `to` (strings duplicated, whole). */
static void copy_value(struct config *to, const struct config *from, const struct setting *s)
{
	char *dst = (char *)to + s->offset;
	const char *src = (const char *)from + s->offset;
	if (s->type == SET_STR) {
		char *copy = strdup(*(char *const *)src);
		if (copy) {
			free(*(char **)dst);
			*(char **)dst = copy;
		}
		return;
	}
	memcpy(dst, src, s->type == SET_INT ? sizeof(int) : sizeof(enum log_level));
}

/* Connection strings may hold a password: never logged, masked when printed. */
static int holds_secret(const struct setting *s)
{
	return s->offset == OFF(db_dsn) || s->offset == OFF(db_replica_dsn);
}

void config_carry_restart_only(struct config *next, const struct config *cur)
{
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting *s = &settings[i];
		if (same_value(cur, next, s))
			continue;
		/* Formatted only for the log: long values may be cut there. */
		char a[512], b[512];
		format_value(cur, s, a, sizeof a);
		format_value(next, s, b, sizeof b);
		if (s->live) {
			log_info("reload: %s changed from '%s' to '%s'", s->name,
				 holds_secret(s) ? "(hidden)" : a, holds_secret(s) ? "(hidden)" : b);
			continue;
		}
		log_warn("reload: %s changed but needs a restart; keeping '%s'", s->name,
			 holds_secret(s) ? "(hidden)" : a);
		copy_value(next, cur, s);
	}
}

/* Hides the value of a password=... in a connection string of a buffer of
 * size cap, in place. */
static void mask_password(char *dsn, size_t cap)
{
	char *p = strstr(dsn, "password=");
	if (!p)
		return;
	p += strlen("password=");
	size_t len = strcspn(p, " \t");
	size_t tail = strlen(p + len) + 1;
	if ((size_t)(p - dsn) + 3 + tail > cap) {
		*p = '\0'; /* no room to shift: drop the rest */
		return;
	}
	memmove(p + 3, p + len, tail);
	memcpy(p, "***", 3);
}

void config_print(FILE *out, const struct config *cfg)
{
	for (size_t i = 0; i < N_SETTINGS; i++) {
		char v[512];
		format_value(cfg, &settings[i], v, sizeof v);
		if (holds_secret(&settings[i]))
			mask_password(v, sizeof v);
		fprintf(out, "%s = %s\n", settings[i].name, v);
	}
}

void config_print_help(FILE *out)
{
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting *s = &settings[i];
		fprintf(out, "# %s\n# default: %s; %s\n%s = %s\n\n", s->doc,
			s->def[0] ? s->def : "(empty)",
			s->live ? "changes on SIGHUP" : "needs a restart", s->name, s->def);
	}
}
