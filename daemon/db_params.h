/*
 * db_params.h: building the text parameters of a prepared statement on the
 * stack. db_exec() copies them, so they need to live only until it returns.
 */
#ifndef REFERRALD_DB_PARAMS_H
#define REFERRALD_DB_PARAMS_H

#include <inttypes.h>
#include <stdio.h>

#include "db_statements.h"

struct db_params {
	int n;
	const char *v[DB_MAX_PARAMS];
	char num[DB_MAX_PARAMS][24];
};

static inline void param_str(struct db_params *p, const char *s) { p->v[p->n++] = s ? s : ""; }
/* An empty string becomes SQL NULL: for optional uuids and the like. */
static inline void param_opt(struct db_params *p, const char *s)
{
	p->v[p->n++] = s && s[0] ? s : NULL;
}
static inline void param_i64(struct db_params *p, int64_t x)
{
	snprintf(p->num[p->n], sizeof p->num[0], "%" PRId64, x);
	p->v[p->n] = p->num[p->n];
	p->n++;
}
static inline void param_bool(struct db_params *p, int b) { p->v[p->n++] = b ? "t" : "f"; }

#endif
