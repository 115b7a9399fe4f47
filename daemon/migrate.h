/*
 * migrate.h: the schema migrations in sql/, embedded in the binary.
 *
 * Each migration runs in its own transaction under an advisory lock and is
 * recorded in schema_migrations; applying them again is a no-op. These calls
 * block: they are for start-up and `referrald --migrate`, never the loop.
 */
#ifndef REFERRALD_MIGRATE_H
#define REFERRALD_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

struct migration {
	int version;
	const char *name;
	const char *sql;
};

extern const struct migration migrations[];
extern const int migrations_count;

/* The newest version this binary knows. */
int migrate_latest(void);
/* The version recorded in the database (0 when none); -1 on error. */
int migrate_current(PGconn *conn, char *err, size_t errlen);
/* Applies every pending migration; returns how many, or -1 on error. */
int migrate_apply(PGconn *conn, char *err, size_t errlen);

#endif
