/* db_statements.c: the statement table; see db_statements.h. */
#include "db_statements.h"

const struct db_statement db_statements[DB_STMT_COUNT] = {
#define X(name, nparams, sql) [DB_STMT_##name] = { #name, nparams, sql },
	DB_STATEMENTS(X)
#undef X
};
