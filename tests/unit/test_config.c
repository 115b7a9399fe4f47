/*
 * test_config.c: unit tests of daemon/config.h: defaults, config files,
 * --set overrides, error messages, and what a reload may change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[1024];

static int setup_group(void **state)
{
	(void)state;
	const char *base = getenv("REFERRAL_TEST_TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = getenv("TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	snprintf(tmpdir, sizeof tmpdir, "%s/test_config.XXXXXX", base);
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown_group(void **state)
{
	(void)state;
	(void)rmdir(tmpdir);
	return 0;
}

/* Writes `text` to a fresh file in tmpdir; its name goes to path. */
static void write_file(char *path, size_t pathlen, const char *text)
{
	snprintf(path, pathlen, "%s/conf.XXXXXX", tmpdir);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* Loads `text` as a config file, with no overrides. */
static int load_text(struct config *cfg, const char *text, char *path, size_t pathlen,
		     char *err, size_t errlen)
{
	write_file(path, pathlen, text);
	err[0] = '\0';
	return config_load(cfg, path, NULL, 0, err, errlen);
}

static void assert_freed(const struct config *cfg)
{
	assert_null(cfg->listen_addr);
	assert_null(cfg->port_file);
	assert_null(cfg->db_dsn);
}

/* Loads `text`, expects failure with exactly "<msg> (<path> line <line>)". */
static void expect_file_error(const char *text, const char *msg, int line)
{
	struct config cfg;
	char path[1200], err[512], want[2048];
	assert_int_equal(load_text(&cfg, text, path, sizeof path, err, sizeof err), -1);
	snprintf(want, sizeof want, "%s (%s line %d)", msg, path, line);
	assert_string_equal(err, want);
	assert_freed(&cfg);
	assert_int_equal(unlink(path), 0);
}

static void expect_defaults(const struct config *cfg)
{
	assert_string_equal(cfg->listen_addr, "127.0.0.1");
	assert_int_equal(cfg->listen_port, 7420);
	assert_string_equal(cfg->port_file, "");
	assert_string_equal(cfg->db_dsn, "dbname=referral");
	assert_int_equal(cfg->db_pool_size, 4);
	assert_int_equal(cfg->db_queue_max, 4096);
	assert_int_equal(cfg->db_queue_timeout_ms, 3000);
	assert_int_equal(cfg->db_reconnect_max_ms, 5000);
	assert_int_equal(cfg->db_statement_timeout_ms, 10000);
	assert_int_equal(cfg->max_frame_bytes, 1048576);
	assert_int_equal(cfg->max_connections, 20000);
	assert_int_equal(cfg->max_inflight_per_conn, 128);
	assert_int_equal(cfg->max_output_bytes, 4194304);
	assert_int_equal(cfg->handshake_timeout_ms, 10000);
	assert_int_equal(cfg->idle_timeout_ms, 600000);
	assert_int_equal(cfg->shutdown_timeout_ms, 10000);
	assert_int_equal(cfg->pbkdf2_iterations, 10000);
	assert_int_equal(cfg->log_level, LOG_LVL_INFO);
}

/* Runs `fn` with stderr redirected; returns what it wrote (free it). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
	char path[1200];
	snprintf(path, sizeof path, "%s/stderr.XXXXXX", tmpdir);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	fn(arg);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	off_t size = lseek(fd, 0, SEEK_END);
	assert_true(size >= 0);
	char *text = calloc(1, (size_t)size + 1);
	assert_non_null(text);
	assert_int_equal(pread(fd, text, (size_t)size, 0), size);
	close(fd);
	unlink(path);
	return text;
}

/* ---- defaults and files ------------------------------------------------- */

static void test_defaults(void **state)
{
	(void)state;
	struct config cfg;
	char err[256] = "";
	assert_int_equal(config_load(&cfg, NULL, NULL, 0, err, sizeof err), 0);
	expect_defaults(&cfg);
	config_free(&cfg);
	assert_freed(&cfg);
	/* config_free twice is harmless: the pointers were cleared. */
	config_free(&cfg);

	/* An empty file, and one of comments only, are the defaults too. */
	char path[1200];
	assert_int_equal(load_text(&cfg, "", path, sizeof path, err, sizeof err), 0);
	expect_defaults(&cfg);
	config_free(&cfg);
	unlink(path);
	assert_int_equal(load_text(&cfg, "; comment\n# another\n\n[referrald]\n", path,
				   sizeof path, err, sizeof err), 0);
	expect_defaults(&cfg);
	config_free(&cfg);
	unlink(path);
}

static void test_valid_file(void **state)
{
	(void)state;
	static const char text[] =
		"# referrald test configuration\n"
		"listen_addr = 0.0.0.0\n"
		"listen_port = 0\n"
		"port_file = /run/referrald/port\n"
		"\n"
		"[referrald]\n"
		"db_dsn = host=db1,db2 dbname=referral target_session_attrs=read-write\n"
		"db_pool_size = 256\n"
		"db_queue_timeout_ms=10\n"
		"max_frame_bytes   =   64  \n"
		"max_output_bytes = 1073741824\n"
		"log_level = debug\n"
		"pbkdf2_iterations = 1000\n"
		"db_statement_timeout_ms = 0\n";
	struct config cfg;
	char path[1200], err[256];
	assert_int_equal(load_text(&cfg, text, path, sizeof path, err, sizeof err), 0);
	assert_string_equal(cfg.listen_addr, "0.0.0.0");
	assert_int_equal(cfg.listen_port, 0);
	assert_string_equal(cfg.port_file, "/run/referrald/port");
	assert_string_equal(cfg.db_dsn,
			    "host=db1,db2 dbname=referral target_session_attrs=read-write");
	assert_int_equal(cfg.db_pool_size, 256);
	assert_int_equal(cfg.db_queue_timeout_ms, 10);
	assert_int_equal(cfg.max_frame_bytes, 64);
	assert_int_equal(cfg.max_output_bytes, 1073741824);
	assert_int_equal(cfg.log_level, LOG_LVL_DEBUG);
	assert_int_equal(cfg.pbkdf2_iterations, 1000);
	assert_int_equal(cfg.db_statement_timeout_ms, 0);
	/* Untouched settings keep their defaults. */
	assert_int_equal(cfg.db_queue_max, 4096);
	assert_int_equal(cfg.max_connections, 20000);
	assert_int_equal(cfg.idle_timeout_ms, 600000);
	config_free(&cfg);
	unlink(path);

	/* Each log level name. */
	static const struct {
		const char *name;
		enum log_level level;
	} levels[] = { { "error", LOG_LVL_ERROR }, { "warn", LOG_LVL_WARN },
		       { "info", LOG_LVL_INFO }, { "debug", LOG_LVL_DEBUG } };
	for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
		char line[64];
		snprintf(line, sizeof line, "log_level = %s\n", levels[i].name);
		assert_int_equal(load_text(&cfg, line, path, sizeof path, err, sizeof err), 0);
		assert_int_equal(cfg.log_level, levels[i].level);
		config_free(&cfg);
		unlink(path);
	}
	/* A later line wins over an earlier one. */
	assert_int_equal(load_text(&cfg, "listen_port = 1\nlisten_port = 2\n", path, sizeof path,
				   err, sizeof err), 0);
	assert_int_equal(cfg.listen_port, 2);
	config_free(&cfg);
	unlink(path);
}

static void test_file_errors(void **state)
{
	(void)state;
	expect_file_error("listen_port = 1\n\nno_such_key = 1\n",
			  "unknown setting 'no_such_key'", 3);
	expect_file_error("[referrald]\nListen_Port = 1\n", "unknown setting 'Listen_Port'", 2);
	expect_file_error("listen_port = abc\n",
			  "listen_port: 'abc' is not an integer in [-1, 65535]", 1);
	expect_file_error("listen_port = 12x\n",
			  "listen_port: '12x' is not an integer in [-1, 65535]", 1);
	expect_file_error("listen_port = 1.5\n",
			  "listen_port: '1.5' is not an integer in [-1, 65535]", 1);
	expect_file_error("listen_port =\n",
			  "listen_port: '' is not an integer in [-1, 65535]", 1);
	expect_file_error("db_pool_size = 99999999999999999999999\n",
			  "db_pool_size: '99999999999999999999999' is not an integer in [1, 256]", 1);
	expect_file_error("listen_port = 65536\n",
			  "listen_port: '65536' is not an integer in [-1, 65535]", 1);
	expect_file_error("listen_port = -2\n",
			  "listen_port: '-2' is not an integer in [-1, 65535]", 1);
	expect_file_error("db_pool_size = 0\n",
			  "db_pool_size: '0' is not an integer in [1, 256]", 1);
	expect_file_error("db_pool_size = 257\n",
			  "db_pool_size: '257' is not an integer in [1, 256]", 1);
	expect_file_error("max_frame_bytes = 63\n",
			  "max_frame_bytes: '63' is not an integer in [64, 67108864]", 1);
	expect_file_error("pbkdf2_iterations = 999\n",
			  "pbkdf2_iterations: '999' is not an integer in [1000, 10000000]", 1);
	expect_file_error("listen_port = 1\n[database]\nlisten_port = 2\n",
			  "unknown section [database]", 3);
	expect_file_error("log_level = verbose\n",
			  "log_level: 'verbose' is not one of error, warn, info, debug", 1);
	expect_file_error("log_level = INFO\n",
			  "log_level: 'INFO' is not one of error, warn, info, debug", 1);
	expect_file_error("listen_port 7420\n", "syntax error", 1);
	/* The first error is reported, not a later one. */
	expect_file_error("a = 1\nb = 2\n", "unknown setting 'a'", 1);

	/* A file that cannot be read. */
	struct config cfg;
	char err[512], path[1200], want[1300];
	snprintf(path, sizeof path, "%s/does-not-exist.conf", tmpdir);
	assert_int_equal(config_load(&cfg, path, NULL, 0, err, sizeof err), -1);
	snprintf(want, sizeof want, "cannot read %s", path);
	assert_string_equal(err, want);
	assert_freed(&cfg);
}

/* ---- --set overrides ------------------------------------------------------ */

static void test_overrides_win(void **state)
{
	(void)state;
	struct config cfg;
	char path[1200], err[256] = "";
	write_file(path, sizeof path,
		   "listen_port = 8000\nlog_level = warn\ndb_pool_size = 8\nport_file = /x\n");
	char *const overrides[] = {
		(char *)"listen_port=9000",
		(char *)"log_level=debug",
		(char *)"db_dsn=host=db dbname=referral",  /* '=' in the value */
		(char *)"db_queue_max=5",
		(char *)"db_queue_max=6",                  /* later wins */
		(char *)"port_file=",                      /* empty string */
	};
	assert_int_equal(config_load(&cfg, path, overrides, 6, err, sizeof err), 0);
	assert_int_equal(cfg.listen_port, 9000);
	assert_int_equal(cfg.log_level, LOG_LVL_DEBUG);
	assert_string_equal(cfg.db_dsn, "host=db dbname=referral");
	assert_int_equal(cfg.db_queue_max, 6);
	assert_string_equal(cfg.port_file, "");
	/* From the file, not overridden. */
	assert_int_equal(cfg.db_pool_size, 8);
	config_free(&cfg);

	/* Overrides without a file. */
	char *const only[] = { (char *)"listen_addr=::1" };
	assert_int_equal(config_load(&cfg, NULL, only, 1, err, sizeof err), 0);
	assert_string_equal(cfg.listen_addr, "::1");
	assert_int_equal(cfg.listen_port, 7420);
	config_free(&cfg);
	unlink(path);
}

static void expect_override_error(const char *override, const char *msg)
{
	struct config cfg;
	char err[512] = "";
	char *const ov[] = { (char *)"listen_port=1", (char *)override };
	assert_int_equal(config_load(&cfg, NULL, ov, 2, err, sizeof err), -1);
	assert_string_equal(err, msg);
	assert_freed(&cfg);
}

/* Rules between settings: the TLS port needs its certificate, the plain
 * port stays on loopback, and some port is on. */
static void expect_rule_error(char *const *ov, int n, const char *msg)
{
	struct config cfg;
	char err[512] = "";
	assert_int_equal(config_load(&cfg, NULL, ov, n, err, sizeof err), -1);
	assert_string_equal(err, msg);
	assert_freed(&cfg);
}

static void test_port_rules(void **state)
{
	(void)state;
	char *const no_cert[] = { (char *)"tls_cert_file=" };
	expect_rule_error(no_cert, 1, "listen_port is the TLS port and needs tls_cert_file and "
			  "tls_key_file (or set listen_port = -1 and use plain_port on loopback)");
	char *const no_port[] = { (char *)"listen_port=-1" };
	expect_rule_error(no_port, 1, "no client port: listen_port and plain_port are both -1");
	char *const exposed[] = { (char *)"plain_port=0", (char *)"plain_addr=0.0.0.0" };
	expect_rule_error(exposed, 2, "plain_addr '0.0.0.0' is not a loopback address: the port "
			  "without TLS may listen only on 127.0.0.0/8 or ::1");
	char *const exposed6[] = { (char *)"plain_port=0", (char *)"plain_addr=::" };
	expect_rule_error(exposed6, 2, "plain_addr '::' is not a loopback address: the port "
			  "without TLS may listen only on 127.0.0.0/8 or ::1");

	const char *loopback[] = { "127.0.0.1", "127.1.2.3", "::1" };
	for (size_t i = 0; i < 3; i++) {
		char addr[64];
		snprintf(addr, sizeof addr, "plain_addr=%s", loopback[i]);
		char *const ok[] = { (char *)"listen_port=-1", (char *)"plain_port=0", addr };
		struct config cfg;
		char err[512] = "";
		assert_int_equal(config_load(&cfg, NULL, ok, 3, err, sizeof err), 0);
		config_free(&cfg);
	}
	assert_false(config_is_loopback("localhost"));
	assert_false(config_is_loopback("128.0.0.1"));
	assert_false(config_is_loopback("::ffff:127.0.0.1"));
}

static void test_override_errors(void **state)
{
	(void)state;
	expect_override_error("listen_port", "--set expects key=value, got 'listen_port'");
	expect_override_error("=5", "--set expects key=value, got '=5'");
	expect_override_error("", "--set expects key=value, got ''");
	expect_override_error("bogus=1", "unknown setting 'bogus'");
	expect_override_error("listen_port=70000",
			      "listen_port: '70000' is not an integer in [-1, 65535]");
	expect_override_error("idle_timeout_ms=fast",
			      "idle_timeout_ms: 'fast' is not an integer in [100, 86400000]");
	expect_override_error("log_level=trace",
			      "log_level: 'trace' is not one of error, warn, info, debug");
	/* A key too long for the parser's buffer is refused, not truncated. */
	char long_key[300];
	memset(long_key, 'k', 200);
	strcpy(long_key + 200, "=1");
	char want[400];
	snprintf(want, sizeof want, "--set expects key=value, got '%s'", long_key);
	expect_override_error(long_key, want);

	/* The longest key that fits (127 bytes) is looked up; 128 are refused. */
	memset(long_key, 'k', 127);
	strcpy(long_key + 127, "=1");
	snprintf(want, sizeof want, "unknown setting '%.127s'", long_key);
	expect_override_error(long_key, want);
	memset(long_key, 'k', 128);
	strcpy(long_key + 128, "=1");
	snprintf(want, sizeof want, "--set expects key=value, got '%s'", long_key);
	expect_override_error(long_key, want);

	/* A bad override fails the load even when the file is fine. */
	struct config cfg;
	char path[1200], err[256];
	write_file(path, sizeof path, "listen_port = 8000\n");
	char *const ov[] = { (char *)"db_pool_size=0" };
	assert_int_equal(config_load(&cfg, path, ov, 1, err, sizeof err), -1);
	assert_string_equal(err, "db_pool_size: '0' is not an integer in [1, 256]");
	assert_freed(&cfg);
	unlink(path);
}

/* ---- reload: restart-only settings are carried over ------------------------- */

struct carry_args {
	struct config *next;
	const struct config *cur;
};

static void run_carry(void *arg)
{
	struct carry_args *a = arg;
	config_carry_restart_only(a->next, a->cur);
}

static void test_carry_restart_only(void **state)
{
	(void)state;
	struct config cur, next;
	char err[256];
	char *const cur_ov[] = { (char *)"listen_port=7000", (char *)"log_level=info" };
	char *const next_ov[] = {
		(char *)"listen_port=7001",          /* restart-only */
		(char *)"listen_addr=0.0.0.0",       /* restart-only */
		(char *)"db_dsn=dbname=secret",      /* restart-only, never logged */
		(char *)"db_pool_size=9",            /* restart-only */
		(char *)"log_level=debug",           /* live */
		(char *)"db_queue_max=100",          /* live */
		(char *)"max_frame_bytes=2048",      /* live */
		(char *)"pbkdf2_iterations=20000",   /* live */
	};
	assert_int_equal(config_load(&cur, NULL, cur_ov, 2, err, sizeof err), 0);
	assert_int_equal(config_load(&next, NULL, next_ov, 8, err, sizeof err), 0);

	log_set_level(LOG_LVL_INFO);
	struct carry_args args = { &next, &cur };
	char *logged = capture_stderr(run_carry, &args);

	/* Restart-only: the running values are kept. */
	assert_int_equal(next.listen_port, 7000);
	assert_string_equal(next.listen_addr, "127.0.0.1");
	assert_string_equal(next.db_dsn, "dbname=referral");
	assert_int_equal(next.db_pool_size, 4);
	/* Live: the new values are taken. */
	assert_int_equal(next.log_level, LOG_LVL_DEBUG);
	assert_int_equal(next.db_queue_max, 100);
	assert_int_equal(next.max_frame_bytes, 2048);
	assert_int_equal(next.pbkdf2_iterations, 20000);
	/* Unchanged settings stay as they were. */
	assert_int_equal(next.idle_timeout_ms, 600000);
	assert_string_equal(next.port_file, "");
	/* The current configuration is not touched. */
	assert_int_equal(cur.listen_port, 7000);
	assert_string_equal(cur.listen_addr, "127.0.0.1");
	assert_int_equal(cur.log_level, LOG_LVL_INFO);
	assert_int_equal(cur.db_queue_max, 4096);

	/* Each change is logged, the DSN (it may hold a password) never. */
	assert_non_null(strstr(logged,
		"reload: listen_port changed but needs a restart; keeping '7000'"));
	assert_non_null(strstr(logged,
		"reload: listen_addr changed but needs a restart; keeping '127.0.0.1'"));
	assert_non_null(strstr(logged,
		"reload: db_dsn changed but needs a restart; keeping '(hidden)'"));
	assert_non_null(strstr(logged, "reload: log_level changed from 'info' to 'debug'"));
	assert_non_null(strstr(logged, "reload: db_queue_max changed from '4096' to '100'"));
	assert_null(strstr(logged, "dbname="));
	assert_null(strstr(logged, "idle_timeout_ms"));
	free(logged);

	/* Carrying again finds nothing left to change or log. */
	int before_port = next.listen_port;
	logged = capture_stderr(run_carry, &args);
	assert_int_equal(next.listen_port, before_port);
	assert_non_null(strstr(logged, "log_level changed"));
	assert_null(strstr(logged, "needs a restart"));
	free(logged);

	config_free(&cur);
	config_free(&next);
}

/* Tests that may fail halfway keep their configurations in the test state,
 * so that the teardown frees them and a failure is not followed by leaks. */
enum { N_STATE_CONFIGS = 2 };

static int setup_configs(void **state)
{
	struct config *c = calloc(N_STATE_CONFIGS, sizeof *c);
	*state = c;
	return c == NULL ? -1 : 0;
}

static int teardown_configs(void **state)
{
	struct config *c = *state;
	for (int i = 0; i < N_STATE_CONFIGS; i++)
		config_free(&c[i]);
	free(c);
	log_set_level(LOG_LVL_INFO);
	return 0;
}

/* A restart-only string longer than the formatting buffer used to compare
 * settings must still be carried over whole. */
static void test_carry_long_restart_only_string(void **state)
{
	struct config *cur = &((struct config *)*state)[0];
	struct config *next = &((struct config *)*state)[1];
	enum { LEN = 700 };
	char cur_ov[LEN + 16], next_ov[LEN + 16];
	strcpy(cur_ov, "port_file=");
	memset(cur_ov + 10, 'a', LEN);
	cur_ov[10 + LEN] = '\0';
	strcpy(next_ov, cur_ov);
	next_ov[10 + LEN - 1] = 'b';   /* differs only past the 511th byte */
	char err[256];
	char *const c[] = { cur_ov }, *const n[] = { next_ov };
	assert_int_equal(config_load(cur, NULL, c, 1, err, sizeof err), 0);
	assert_int_equal(config_load(next, NULL, n, 1, err, sizeof err), 0);
	log_set_level(LOG_LVL_ERROR);
	config_carry_restart_only(next, cur);
	assert_string_equal(next->port_file, cur->port_file);

	/* Differing early: the kept value must not be cut to 511 bytes. */
	config_free(next);
	next_ov[10] = 'b';
	next_ov[10 + LEN - 1] = 'a';
	assert_int_equal(config_load(next, NULL, n, 1, err, sizeof err), 0);
	config_carry_restart_only(next, cur);
	assert_int_equal(strlen(next->port_file), LEN);
	assert_string_equal(next->port_file, cur->port_file);
}

/* Indented lines are common in INI files. inih (built with
 * INI_ALLOW_MULTILINE) reads an indented line as a continuation of the
 * previous value, so here db_dsn would silently become "port_file = /run/p".
 * Either parse the line as a setting or refuse the file; never merge. */
static void test_indented_lines_are_not_merged(void **state)
{
	struct config *cfg = &((struct config *)*state)[0];
	char path[1200], err[512] = "";
	int rc = load_text(cfg, "[referrald]\n  db_dsn = dbname=x\n  port_file = /run/p\n",
			   path, sizeof path, err, sizeof err);
	unlink(path);
	if (rc == 0) {
		assert_string_equal(cfg->db_dsn, "dbname=x");
		assert_string_equal(cfg->port_file, "/run/p");
	} else {
		assert_int_equal(rc, -1);
		assert_non_null(strstr(err, " line 3)"));
		assert_freed(cfg);
	}
}

/* libinih reads lines through a fixed buffer (INI_MAX_LINE, 200 bytes in
 * Debian's build) and parses the rest of a longer line as a line of its own.
 * A long multi-host db_dsn must load whole, or be refused as too long on the
 * line it is on; it must not turn into a setting named after its tail. */
static void test_long_line_is_one_setting(void **state)
{
	struct config *cfg = &((struct config *)*state)[0];
	char dsn[400], text[500], path[1200], err[1024] = "";
	int n = snprintf(dsn, sizeof dsn, "host=");
	memset(dsn + n, 'h', 300);
	strcpy(dsn + n + 300, " dbname=referral");
	snprintf(text, sizeof text, "db_dsn = %s\nlisten_port = 7421\n", dsn);
	int rc = load_text(cfg, text, path, sizeof path, err, sizeof err);
	unlink(path);
	if (rc == 0) {
		assert_string_equal(cfg->db_dsn, dsn);
		assert_int_equal(cfg->listen_port, 7421);
	} else {
		assert_int_equal(rc, -1);
		if (strstr(err, " line 1)") == NULL)
			fail_msg("error does not name line 1: %s", err);
		assert_null(strstr(err, "unknown setting"));
	}
}

/* ---- printing ------------------------------------------------------------------ */

/* What config_print and config_print_help write loads back as the same settings. */
static void reload_printed(void (*print)(FILE *, const struct config *),
			   const struct config *in, struct config *out)
{
	char path[1200], err[512];
	snprintf(path, sizeof path, "%s/printed.XXXXXX", tmpdir);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	print(f, in);
	assert_int_equal(fclose(f), 0);
	int rc = config_load(out, path, NULL, 0, err, sizeof err);
	if (rc != 0)
		fail_msg("printed configuration does not load: %s", err);
	unlink(path);
}

static void print_help(FILE *f, const struct config *cfg)
{
	(void)cfg;
	config_print_help(f);
}

static void test_print_round_trip(void **state)
{
	(void)state;
	struct config cfg, back;
	char err[256];
	char *const ov[] = { (char *)"listen_port=1234", (char *)"log_level=warn",
			     (char *)"db_dsn=host=a dbname=b", (char *)"port_file=/tmp/p" };
	assert_int_equal(config_load(&cfg, NULL, ov, 4, err, sizeof err), 0);
	reload_printed(config_print, &cfg, &back);
	assert_int_equal(back.listen_port, 1234);
	assert_int_equal(back.log_level, LOG_LVL_WARN);
	assert_string_equal(back.db_dsn, "host=a dbname=b");
	assert_string_equal(back.port_file, "/tmp/p");
	assert_int_equal(back.max_output_bytes, 4194304);
	config_free(&back);
	config_free(&cfg);

	/* --help-config output is itself a valid file holding the defaults. */
	reload_printed(print_help, NULL, &back);
	expect_defaults(&back);
	config_free(&back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_valid_file),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_overrides_win),
		cmocka_unit_test(test_override_errors),
		cmocka_unit_test(test_carry_restart_only),
		cmocka_unit_test_setup_teardown(test_carry_long_restart_only_string,
						setup_configs, teardown_configs),
		cmocka_unit_test_setup_teardown(test_indented_lines_are_not_merged,
						setup_configs, teardown_configs),
		cmocka_unit_test_setup_teardown(test_long_line_is_one_setting,
						setup_configs, teardown_configs),
		cmocka_unit_test(test_print_round_trip),
		cmocka_unit_test(test_port_rules),
	};
	return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
