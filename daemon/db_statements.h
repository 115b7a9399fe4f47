/*
 * db_statements.h: every SQL statement the daemon runs, in one table.
 *
 * Each pool connection prepares all of them when it connects (and again after
 * a reconnect or failover). Domain code names a statement by its enum; it
 * never builds SQL. Statements that change data call a function in sql/ so
 * that each request is one round trip and one transaction, and the invariants
 * live in the database.
 */
#ifndef REFERRALD_DB_STATEMENTS_H
#define REFERRALD_DB_STATEMENTS_H

#define DB_MAX_PARAMS 16

/* X(ENUM_SUFFIX, number of parameters, SQL) */
#define DB_STATEMENTS(X)                                                        \
	X(TERMINAL_LOOKUP, 2,                                                   \
	  "SELECT t.institution_id, t.role::text, coalesce(t.practitioner_id, ''), " \
	  "       t.token_hash, t.revoked_at IS NOT NULL "                     \
	  "  FROM terminals t WHERE t.community_id = $1 AND t.terminal_id = $2")

enum db_stmt {
#define X(name, nparams, sql) DB_STMT_##name,
	DB_STATEMENTS(X)
#undef X
	DB_STMT_COUNT
};

struct db_statement {
	const char *name;
	int nparams;
	const char *sql;
};

extern const struct db_statement db_statements[DB_STMT_COUNT];

#endif
