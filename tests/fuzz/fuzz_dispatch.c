/*
 * fuzz_dispatch.c: a libFuzzer target over the daemon's input path: frame
 * decoding (length prefix, limits), message decoding (protobuf-c, unknown
 * fields, UTF-8), and request dispatch (the role table, every handler's
 * argument checks, the error paths).
 *
 * Input: one mode byte, then bytes as a client would send them on one
 * connection. The mode's low three bits choose the connection's identity:
 * 0 not yet authenticated, 1..5 authenticated as clinic, desk, billing,
 * monitor or admin; bit 3 gives the connection a client certificate.
 *
 * Without a database: the pool points at a socket that does not exist, so
 * every statement is refused at once (UNAVAILABLE) and each input runs to
 * its end synchronously and deterministically. What lies behind the
 * database (SQL, the state machine) is covered by the integration tests;
 * this target is about what a hostile client can do before that.
 *
 * Built with -DREFERRAL_FUZZ=ON by clang (tests/fuzz/run.sh).
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "conn.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "patient_id.h"
#include "server.h"
#include "services.h"
#include "terminals.h"
#include "workers.h"

static struct server srv;

/* main.c's lifecycle hooks, which the target has no use for. */
void server_request_finished(struct server *s)
{
	s->inflight--;
}

void server_begin_drain(struct server *s)
{
	s->draining = 1;
}

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	conn_reap(arg);
}

static void run_loop(int turns)
{
	for (int i = 0; i < turns; i++)
		event_base_loop(srv.base, EVLOOP_NONBLOCK);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	signal(SIGPIPE, SIG_IGN);
	/* Small queues and one worker: every input runs to its end quickly. */
	char *overrides[] = { "listen_port=-1", "plain_port=0", "max_frame_bytes=65536",
			      "db_dsn=host=/nonexistent/referral-fuzz dbname=none connect_timeout=1",
			      "db_pool_size=1", "db_queue_max=16", "db_queue_timeout_ms=100",
			      "db_reconnect_max_ms=600000", "figures_pool_size=1",
			      "auth_threads=1", "credentials_check_ms=3600000",
			      "terminal_rate_per_s=0", "pbkdf2_iterations=1000" };
	char err[256];
	if (config_load(&srv.cfg, NULL, overrides, sizeof overrides / sizeof *overrides, err,
			sizeof err) < 0)
		abort();
	log_set_level(LOG_LVL_ERROR);
	srv.base = event_base_new();
	srv.reaper = event_new(srv.base, -1, 0, reaper_cb, &srv);
	srv.schema_version = migrate_latest();
	/* Everything main.c starts behind the connections, started the same way
	 * (a target that set up its own lot missed the batcher, then the
	 * figures' pool: tests/fuzz/regressions/README). */
	if (!srv.base || services_start(&srv) < 0)
		abort();
	/* Without patient_id_key_file the daemon refuses patient lookups; with a
	 * key the target reaches their argument checks too. */
	srv.patient_key = calloc(1, sizeof *srv.patient_key);
	if (!srv.patient_key)
		abort();
	memset(srv.patient_key->bytes, 'k', PATIENT_KEY_MIN);
	srv.patient_key->len = PATIENT_KEY_MIN;
	/* Until a pool has failed once it queues statements; after that it
	 * refuses them at once, which is what the target relies on. */
	struct db_pool_stats st, fst;
	for (int i = 0; i < 200; i++) {
		run_loop(1);
		db_pool_get_stats(srv.db, &st);
		db_pool_get_stats(srv.figures_db, &fst);
		if (st.last_error[0] && fst.last_error[0])
			break;
		usleep(1000);
	}
	return 0;
}

static const struct identity identities[] = {
	{ "fuzz-county", "clinic-01", "village-a", "fd-a", REFERRAL__ROLE__ROLE_CLINIC, 0 },
	{ "fuzz-county", "desk-01", "county-hospital", "desk-clerk", REFERRAL__ROLE__ROLE_DESK, 0 },
	{ "fuzz-county", "billing-01", "county-hospital", "", REFERRAL__ROLE__ROLE_BILLING, 0 },
	{ "fuzz-county", "monitor-01", "county-hospital", "", REFERRAL__ROLE__ROLE_MONITOR, 0 },
	{ "fuzz-county", "admin-01", "county-hospital", "", REFERRAL__ROLE__ROLE_ADMIN, 0 },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 0;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	unsigned before = srv.n_conns;
	conn_accept(&srv, sv[0], (struct sockaddr *)&addr, sizeof addr, NULL);
	struct conn *c = srv.conns;
	if (srv.n_conns != before + 1 || !c) {
		close(sv[1]);
		return 0;
	}
	if (mode & 8) {
		c->has_cert = 1;
		strcpy(c->cert_community, "fuzz-county");
		strcpy(c->cert_terminal, "desk-01");
	}
	unsigned role = mode & 7;
	if (role >= 1 && role <= 5) {
		c->term = terminals_attach(&srv, &identities[role - 1]);
		conn_authenticated(c, &identities[role - 1]);
	}
	/* The client's bytes, as much as the socket takes; the daemon's
	 * answers are read and dropped so that it never blocks on output. */
	size_t off = 1;
	char sink[65536];
	for (int turn = 0; turn < 64 && (off < size || turn < 4); turn++) {
		if (off < size) {
			ssize_t n = send(sv[1], data + off, size - off, MSG_DONTWAIT);
			if (n > 0)
				off += (size_t)n;
		}
		run_loop(2);
		while (recv(sv[1], sink, sizeof sink, MSG_DONTWAIT) > 0)
			;
	}
	/* The client goes away; the connection closes and is freed once its
	 * requests are answered (token hashes finish on a worker thread). */
	close(sv[1]);
	for (int turn = 0; turn < 5000 && (srv.n_conns || srv.n_closing); turn++) {
		run_loop(2);
		if (workers_pending(srv.workers))
			usleep(200);
	}
	if (srv.n_conns || srv.n_closing)
		abort(); /* a connection that never goes away is a bug too */
	return 0;
}
