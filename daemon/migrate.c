/* migrate.c: see migrate.h. */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Any constant works; it only has to be the same for every daemon. */
#define MIGRATE_LOCK_KEY "7420001"

int migrate_latest(void)
{
	return migrations_count ? migrations[migrations_count - 1].version : 0;
}

static int exec_ok(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		snprintf(err, errlen, "%s", PQresultErrorMessage(res));
	PQclear(res);
	return ok ? 0 : -1;
}

int migrate_current(PGconn *conn, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");
	int version = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		version = atoi(PQgetvalue(res, 0, 0));
	else if (strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE) ?: "", "42P01") == 0)
		version = 0;
	else
		snprintf(err, errlen, "%s", PQresultErrorMessage(res));
	PQclear(res);
	return version;
}

static int apply_one(PGconn *conn, const struct migration *m, char *err, size_t errlen)
{
	char sql[256];
	if (exec_ok(conn, "BEGIN", err, errlen) < 0)
		return -1;
	/* Serialise concurrent migrators, then re-check under the lock. */
	if (exec_ok(conn, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")", err, errlen) < 0 ||
	    exec_ok(conn, "CREATE TABLE IF NOT EXISTS schema_migrations ("
			  " version integer PRIMARY KEY, name text NOT NULL,"
			  " applied_at timestamptz NOT NULL DEFAULT now())", err, errlen) < 0)
		goto rollback;
	int current = migrate_current(conn, err, errlen);
	if (current < 0)
		goto rollback;
	if (current >= m->version) {
		exec_ok(conn, "ROLLBACK", err, errlen);
		return 0;
	}
	if (exec_ok(conn, m->sql, err, errlen) < 0) {
		size_t n = strlen(err);
		snprintf(err + n, errlen - n, " (in migration %03d_%s)", m->version, m->name);
		goto rollback;
	}
	snprintf(sql, sizeof sql, "INSERT INTO schema_migrations (version, name) VALUES (%d, '%s')",
		 m->version, m->name);
	if (exec_ok(conn, sql, err, errlen) < 0 || exec_ok(conn, "COMMIT", err, errlen) < 0)
		goto rollback;
	log_info("applied migration %03d_%s", m->version, m->name);
	return 1;
rollback:
	PQclear(PQexec(conn, "ROLLBACK"));
	return -1;
}

int migrate_apply(PGconn *conn, char *err, size_t errlen)
{
	int current = migrate_current(conn, err, errlen);
	if (current < 0)
		return -1;
	if (current > migrate_latest()) {
		snprintf(err, errlen, "database schema version %d is newer than this binary's %d",
			 current, migrate_latest());
		return -1;
	}
	int applied = 0;
	for (int i = 0; i < migrations_count; i++) {
		if (migrations[i].version <= current)
			continue;
		int rc = apply_one(conn, &migrations[i], err, errlen);
		if (rc < 0)
			return -1;
		applied += rc;
	}
	return applied;
}
