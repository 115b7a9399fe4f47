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

/* The columns every statement returning sessions yields, in the order
 * slots_session_from_row() reads them. */
#define SESSION_COLS                                                            \
	"s.session_id, s.institution_id, s.department_id, s.kind::text, s.resource_id, " \
	"extract(epoch FROM s.starts_at)::bigint, extract(epoch FROM s.ends_at)::bigint, " \
	"s.capacity, s.reserved_capacity, s.reserved_capacity - s.reserved_booked, "    \
	"s.capacity - s.reserved_capacity - s.public_booked, s.emergency_booked, "      \
	"s.released_at IS NOT NULL, s.status = 'cancelled', s.reserved_initial"

/* The columns every statement returning referrals yields, in the order
 * referral_from_row() reads them (from the view referral_wire w). */
#define REFERRAL_COLS                                                           \
	"w.referral_id, w.direction, w.state, w.urgency, w.patient_id, "          \
	"w.from_institution, w.from_department, w.from_practitioner, w.to_institution, " \
	"w.to_department, w.diagnosis, w.reason, w.care_plan, w.follow_up_due, "  \
	"w.booking_id, w.session_id, w.redirected_from, w.redirected_to, "        \
	"w.closes_referral, w.created_epoch, w.state_changed_epoch, w.version, "  \
	"w.escalated, w.follow_up_overdue, w.patient_display, w.booking_status, " \
	"w.slot_starts_epoch, w.urgency_rank, w.created_micros"

/* The columns every statement returning deductible decisions yields, in the
 * order deductible_fill() reads them (from the view deductible_wire w); the
 * last one is the page key. */
#define DEDUCTIBLE_COLS                                                         \
	"w.stay_id, w.patient_id, w.institution_id, w.level, w.scheme, "          \
	"w.referral_id, w.referral_direction, w.referral_from, "                   \
	"w.referral_from_in_network, w.admitted_epoch, "                          \
	"w.discharged_epoch, w.decided_epoch, w.policy_version, w.policy, "       \
	"w.window_days, w.previous_stay_id, w.previous_discharged_epoch, "        \
	"w.gap_days, w.chain_id, w.chain_position, w.chain, w.chain_paid_fen, "   \
	"w.amount_configured, w.own_deductible_fen, w.due_fen, w.waived_fen, "    \
	"w.rule, w.explanation, w.reversed, w.reversed_epoch, w.reversal_reason, " \
	"w.reversed_by, w.recorded_by, w.admitted_micros"

/* The columns of a deductible policy version (view deductible_policy_wire p). */
#define POLICY_COLS                                                             \
	"p.version, p.effective_epoch, p.policy, p.window_days, p.amounts, "      \
	"p.set_by, p.latest_version"
/* The columns every terminal statement returns, in the order
 * terminal_from_row() reads them (from the view terminal_wire w). */
#define TERMINAL_COLS                                                           \
	"w.terminal_id, w.institution_id, w.role, w.practitioner_id, w.created_epoch, " \
	"w.revoked_epoch, w.revoked_by, w.rotated_epoch, w.changed_micros, w.community_id"
/* The columns of a figures row (community_figures() f joined with its
 * community c), in the order figures_from_row() reads them. */
#define FIGURES_COLS                                                            \
	"coalesce(f.institution_id, ''), c.reserve_floor_pct, f.sessions_open, "  \
	"f.sessions_cancelled, f.capacity_units, f.published_units, f.reserved_published, " \
	"f.sessions_below_floor, f.reserved_pool, f.reserved_booked, f.public_pool, " \
	"f.public_booked, f.released_units, f.sessions_released, f.emergency_bookings, " \
	"f.up_referrals, f.down_referrals, f.up_accepted, f.up_rejected, f.up_redirected, " \
	"f.up_no_show, f.accept_median_s, f.accept_p90_s, f.waiting_now, "        \
	"f.escalated_waiting_now, f.follow_ups_overdue_now, f.deductible_decisions, " \
	"f.deductible_fen_waived"

/* X(ENUM_SUFFIX, number of parameters, SQL) */
#define DB_STATEMENTS(X)                                                        \
	X(TERMINAL_LOOKUP, 2,                                                   \
	  "SELECT t.institution_id, t.role::text, coalesce(t.practitioner_id, ''), " \
	  "       t.token_hash, t.revoked_at IS NOT NULL, "                    \
	  "       (extract(epoch FROM t.credentials_changed_at) * 1000000)::bigint " \
	  "  FROM terminals t WHERE t.community_id = $1 AND t.terminal_id = $2")     \
	X(TERMINAL_ADD, 7,                                                      \
	  "SELECT " TERMINAL_COLS " FROM terminal_add($1, $2, $3, $4, $5::terminal_role, $6, $7) w") \
	X(TERMINAL_LIST, 3,                                                     \
	  "SELECT " TERMINAL_COLS " FROM terminal_wire w WHERE w.community_id = $1" \
	  " AND ($2 = '' OR w.institution_id = $2) AND ($3::boolean OR w.revoked_epoch = 0)" \
	  " ORDER BY w.institution_id, w.terminal_id LIMIT 10000")               \
	X(TERMINAL_REVOKE, 3,                                                   \
	  "SELECT " TERMINAL_COLS " FROM terminal_revoke($1, $2, $3) w")          \
	X(TERMINAL_ROTATE, 4,                                                   \
	  "SELECT " TERMINAL_COLS " FROM terminal_rotate($1, $2, $3, $4) w")      \
	X(TERMINAL_CHANGES, 1,                                                  \
	  "SELECT (extract(epoch FROM n.now) * 1000000)::bigint, t.community_id, t.terminal_id, " \
	  "(extract(epoch FROM t.changed_at) * 1000000)::bigint "              \
	  "FROM (SELECT now() AS now) n LEFT JOIN terminal_changes t ON t.changed_at > " \
	  "coalesce(to_timestamp($1::double precision / 1e6), n.now) - interval '1 minute'") \
	X(PATIENT_RESOLVE, 6,                                                   \
	  "SELECT r.patient_id, coalesce(r.id_masked, ''), r.display_name, r.created " \
	  "FROM patient_resolve($1, decode($2, 'hex'), $3, $4, $5::boolean, $6) r") \
	X(PUBLISH_SESSIONS, 11,                                                 \
	  "SELECT " SESSION_COLS " FROM publish_sessions($1, $2, $3, $4, $5::resource_kind, $6, " \
	  "$7::integer, $8::integer, $9::integer, $10::timestamptz[], $11::timestamptz[]) s") \
	X(PUBLISH_WEEKLY, 14,                                                   \
	  "SELECT " SESSION_COLS " FROM weekly_starts($1, $10::date, $11::integer, $12::integer[], " \
	  "$13::time, $14::time) w, publish_sessions($1, $2, $3, $4, $5::resource_kind, $6, " \
	  "$7::integer, $8::integer, $9::integer, w.starts, w.ends) s")       \
	X(CHANGE_CAPACITY, 4,                                                   \
	  "SELECT " SESSION_COLS " FROM change_session_capacity($1, $2, $3::bigint, $4::integer) s") \
	X(CANCEL_SESSION, 5,                                                    \
	  "SELECT session_id, bookings_flagged FROM cancel_session($1, $2, $3, $4::bigint, $5)") \
	X(SEARCH_SESSIONS, 11,                                                  \
	  "SELECT " SESSION_COLS " FROM sessions s WHERE s.community_id = $1"    \
	  " AND ($2 = '' OR s.institution_id = $2) AND ($3 = '' OR s.department_id = $3)" \
	  " AND ($4 = '' OR s.kind::text = $4) AND ($5 = '' OR s.resource_id = $5)" \
	  " AND s.starts_at >= to_timestamp($6::bigint) AND s.starts_at < to_timestamp($7::bigint)" \
	  " AND s.status = 'open'"                                              \
	  " AND (NOT $8::boolean OR s.reserved_capacity > s.reserved_booked"    \
	  "      OR s.capacity - s.reserved_capacity > s.public_booked)"        \
	  " AND (s.starts_at, s.session_id) > (to_timestamp($9::bigint), $10::bigint)" \
	  " ORDER BY s.starts_at, s.session_id LIMIT $11::integer")             \
	X(BOOK, 11,                                                             \
	  "SELECT outcome, coalesce(booking_id::text, ''), coalesce(pool, ''), coalesce(detail, ''), " \
	  "reserved_left, public_left, replayed FROM book_slot($1, $2, $3, $4::terminal_role, $5, " \
	  "$6::bigint, $7::uuid, $8, $9::boolean, $10::uuid, $11)")            \
	X(BOOK_BATCH, 10,                                                       \
	  "SELECT idx, outcome, coalesce(booking_id::text, ''), coalesce(pool, ''), " \
	  "coalesce(detail, ''), reserved_left, public_left, replayed FROM book_batch($1, " \
	  "$2::text[], $3::text[], $4::terminal_role[], $5::text[], $6::bigint[], $7::uuid[], " \
	  "$8::text[], $9::boolean[], $10::text[])")                             \
	X(CANCEL_BOOKING, 5,                                                    \
	  "SELECT booking_id, session_id, pool, status, already "               \
	  "FROM cancel_booking($1, $2, $3, $4::uuid, $5)")                      \
	X(BOOK_EMERGENCY, 7,                                                    \
	  "SELECT booking_id FROM book_emergency($1, $2, $3, $4::bigint, $5::uuid, $6::uuid, $7)") \
	/* sql/009: planned for the filters each call has. */                 \
	X(LIST_BOOKINGS, 8,                                                     \
	  "SELECT * FROM list_bookings($1, $2, $3::bigint, $4, $5::boolean, $6::bigint, " \
	  "$7::uuid, $8::integer)")                                             \
	/* The primary's WAL position, or a standby's replayed one (replica.c). */ \
	X(WAL_POSITION, 0,                                                      \
	  "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() " \
	  "ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint")              \
	X(RELEASE_DUE, 1,                                                       \
	  "SELECT community_id, session_id, released_count FROM release_due($1::integer)") \
	X(REFER_UP, 15,                                                         \
	  "SELECT m.outcome, coalesce(m.detail, ''), m.replayed, " REFERRAL_COLS  \
	  " FROM refer_up($1, $2, $3, $4, $5::uuid, $6, $7, $8, $9, $10::referral_urgency, " \
	  "$11::bigint, $12, $13::boolean, $14::boolean, $15) m"                   \
	  " LEFT JOIN LATERAL referral_wire_of($1, m.referral_id) w ON true")      \
	X(REFER_DOWN, 13,                                                       \
	  "SELECT m.outcome, coalesce(m.detail, ''), m.replayed, " REFERRAL_COLS  \
	  " FROM refer_down($1, $2, $3, $4, $5::uuid, $6, $7, $8, $9, $10, $11::date, " \
	  "$12::uuid, $13) m LEFT JOIN LATERAL referral_wire_of($1, m.referral_id) w ON true") \
	X(REFERRAL_ACT, 12,                                                     \
	  "SELECT " REFERRAL_COLS " FROM referral_act($1, $2, $3, $4, $5, $6::uuid, $7, $8, " \
	  "$9::integer, $10::bigint, $11, $12) a, LATERAL referral_wire_of($1, a.referral_id) w") \
	X(GET_REFERRAL, 3,                                                      \
	  "SELECT " REFERRAL_COLS " FROM referral_wire w WHERE w.community_id = $1" \
	  " AND w.referral_id = $2::uuid AND ($3 = '' OR w.from_institution = $3 OR w.to_institution = $3)") \
	/* worklist() in sql/005_monitoring.sql: each side from its own index. */ \
	X(WORKLIST, 12,                                                         \
	  "SELECT " REFERRAL_COLS " FROM worklist($1, $2, $3, $4, $5, $6::integer, $7::boolean, " \
	  "$8, $9::integer, $10::bigint, $11::uuid, $12::integer) w")           \
	X(REFERRAL_HISTORY, 3,                                                  \
	  "SELECT h.seq, extract(epoch FROM h.at)::bigint, h.action, coalesce(h.from_state::text, ''), " \
	  "h.to_state, coalesce(h.terminal_id, ''), h.role, coalesce(h.institution_id, ''), " \
	  "coalesce(h.practitioner_id, ''), coalesce(h.reason, ''), coalesce(h.booking_id::text, ''), " \
	  "(extract(epoch FROM h.at) * 1000000)::bigint "                       \
	  "FROM referrals r JOIN referral_history h USING (community_id, referral_id) " \
	  "WHERE r.community_id = $1 AND r.referral_id = $2::uuid"              \
	  " AND ($3 = '' OR r.from_institution = $3 OR r.to_institution = $3) ORDER BY h.seq") \
	X(EVENTS_SINCE, 4,                                                      \
	  "SELECT c.last_seq, e.seq, extract(epoch FROM e.at)::bigint, e.kind, "  \
	  "coalesce(e.referral_id::text, ''), coalesce(e.booking_id::text, ''), " \
	  "coalesce(e.from_institution, ''), coalesce(e.to_institution, ''), "   \
	  "coalesce(e.state, ''), coalesce(e.detail, '') "                       \
	  "FROM (SELECT coalesce((SELECT x.last_seq FROM event_counters x WHERE x.community_id = $1), 0)" \
	  " AS last_seq) c LEFT JOIN LATERAL (SELECT * FROM events e WHERE e.community_id = $1" \
	  " AND e.seq > $3::bigint AND ($2 = '' OR e.from_institution = $2 OR e.to_institution = $2)" \
	  " ORDER BY e.seq LIMIT $4::integer) e ON true")                        \
	X(REFERRAL_HOUSEKEEPING, 1,                                             \
	  "SELECT community_id, referral_id, what FROM referral_housekeeping($1::integer)") \
	X(RECORD_STAY, 11,                                                      \
	  "SELECT m.replayed, " DEDUCTIBLE_COLS " FROM record_stay($1, $2, $3, $4, $5, " \
	  "$6::uuid, $7, $8::bigint, $9::bigint, $10::uuid, $11) m,"            \
	  " LATERAL deductible_wire_of($1, m.stay_id) w")                        \
	X(DISCHARGE_STAY, 5,                                                    \
	  "SELECT m.replayed, " DEDUCTIBLE_COLS " FROM discharge_stay($1, $2, $3, $4::uuid, " \
	  "$5::bigint) m, LATERAL deductible_wire_of($1, m.stay_id) w")           \
	X(REVERSE_STAY, 5,                                                      \
	  "SELECT m.replayed, " DEDUCTIBLE_COLS " FROM reverse_stay($1, $2, $3, $4::uuid, $5) m," \
	  " LATERAL deductible_wire_of($1, m.stay_id) w")                        \
	X(GET_DEDUCTIBLE, 3,                                                    \
	  "SELECT false, " DEDUCTIBLE_COLS " FROM deductible_wire w WHERE w.community_id = $1" \
	  " AND w.stay_id = $2::uuid AND ($3 = '' OR w.institution_id = $3)")   \
	X(LIST_DEDUCTIBLES, 10,                                                 \
	  "WITH m AS (SELECT * FROM deductible_wire w WHERE w.community_id = $1" \
	  " AND ($2 = '' OR w.institution_id = $2)"                             \
	  " AND ($3 = '' OR w.patient_id = nullif($3, '')::uuid)"               \
	  " AND ($4 = '' OR w.referral_id = $4)"                                \
	  " AND ($5::bigint = 0 OR w.admitted_at >= to_timestamp($5::bigint))"  \
	  " AND ($6::bigint = 0 OR w.admitted_at < to_timestamp($6::bigint))"   \
	  " AND (NOT $7::boolean OR NOT w.reversed)),"                          \
	  " t AS (SELECT count(*) AS n, coalesce(sum(m.due_fen) FILTER (WHERE NOT m.reversed), 0) AS due," \
	  " coalesce(sum(m.waived_fen) FILTER (WHERE NOT m.reversed), 0) AS waived FROM m)" \
	  " SELECT t.n, t.due, t.waived, " DEDUCTIBLE_COLS " FROM t LEFT JOIN LATERAL" \
	  " (SELECT * FROM m WHERE (m.admitted_micros, m.stay_id) > ($8::bigint, $9::uuid)" \
	  " ORDER BY m.admitted_micros, m.stay_id LIMIT $10::integer) w ON true" \
	  " ORDER BY w.admitted_micros, w.stay_id")                              \
	X(SET_DEDUCTIBLE_POLICY, 7,                                             \
	  "SELECT " POLICY_COLS " FROM deductible_set_policy($1, $2, $3, $4::integer, " \
	  "$5::text[], $6::text[], $7::bigint[]) v, LATERAL deductible_policy_wire_of($1, v) p") \
	X(GET_DEDUCTIBLE_POLICY, 2,                                             \
	  "SELECT " POLICY_COLS " FROM (SELECT CASE WHEN $2::integer = 0"       \
	  " THEN (deductible_policy_at($1, now())).version ELSE $2::integer END AS version) x" \
	  " JOIN deductible_policy_wire p ON p.community_id = $1 AND p.version = x.version") \
	/* Monitoring (sql/005_monitoring.sql), on the figures pool only. */    \
	X(FIGURES, 4,                                                           \
	  "SELECT " FIGURES_COLS " FROM communities c, LATERAL community_figures(c.community_id, $2, " \
	  "to_timestamp($3::bigint), to_timestamp($4::bigint)) f WHERE c.community_id = $1") \
	X(FIGURES_TOTALS, 2,                                                    \
	  "SELECT c.community_id, " FIGURES_COLS " FROM communities c, LATERAL community_figures(" \
	  "c.community_id, '', to_timestamp($1::bigint), to_timestamp($2::bigint)) f " \
	  "WHERE f.institution_id IS NULL ORDER BY c.community_id")              \
	X(FIGURES_REFERRAL_STATES, 2,                                           \
	  "SELECT community_id, direction, state, referrals "                    \
	  "FROM figures_referral_states(to_timestamp($1::bigint), to_timestamp($2::bigint))") \
	X(COMPLIANCE, 5,                                                        \
	  "SELECT row_kind, coalesce(rule, ''), coalesce(description, ''), coalesce(source, ''), " \
	  "coalesce(institution_id, ''), coalesce(rules, ''), coalesce(published_units, 0), " \
	  "coalesce(reserved_published, 0), coalesce(floor_pct, 0), coalesce(sessions, 0), " \
	  "coalesce(sessions_below_floor, 0), coalesce(released_pool, 0), coalesce(unused_units, 0), " \
	  "coalesce(sessions_release_overdue, 0), coalesce(stranded_units, 0), coalesce(session_id, 0), " \
	  "coalesce(department_id, ''), coalesce(kind, ''), coalesce(resource_id, ''), " \
	  "coalesce(extract(epoch FROM starts_at)::bigint, 0), coalesce(reserved_required, 0), " \
	  "coalesce(reserved_booked, 0), coalesce(found, 0) FROM compliance_report($1, $2, " \
	  "to_timestamp($3::bigint), to_timestamp($4::bigint), $5::integer)")

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
