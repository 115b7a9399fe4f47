/*
 * db_row.h: reading text-format result columns. Values point into the
 * PGresult and live as long as it does (the pool frees it after the
 * callback returns).
 */
#ifndef REFERRALD_DB_ROW_H
#define REFERRALD_DB_ROW_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

static inline char *db_str(const PGresult *res, int row, int col)
{
	return PQgetvalue(res, row, col);
}

static inline int64_t db_i64(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static inline int db_bool(const PGresult *res, int row, int col)
{
	return PQgetvalue(res, row, col)[0] == 't';
}

#endif
