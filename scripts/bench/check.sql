-- scripts/bench/check.sql: after a benchmark, does the database agree with
-- what the server acknowledged?
--
-- Variables (psql -v NAME=VALUE):
--   community  the bench community
--   terminal   the terminal referral-bench booked as
-- and, on standard input, the acknowledged bookings: the lines referral-bench
-- --record writes (kind, idempotency key, booking id, session id,
-- tab-separated); several runs' files may be concatenated:
--   cat acks-*.tsv | psql -v community=C -v terminal=T -f check.sql
--
-- Prints one line of JSON: {"ok": true|false, "checks": [{"name", "ok",
-- "value", "detail"}, ...]}. The checks:
--   no_overbooking        no session over capacity in either pool, and every
--                         session's counters equal its live bookings
--   acks_present_once     every acknowledged booking is in the database, live,
--                         in the session it was acknowledged for, exactly once
--   acks_distinct         no booking was acknowledged twice, no key used twice
--   keys_match            each key's stored outcome names the acknowledged
--                         booking (Book) or a referral holding it (ReferUp)
--   bookings_equal_acks   the terminal's bookings = its distinct acknowledged keys:
--                         nothing was booked that was not acknowledged
\set ON_ERROR_STOP 1
CREATE TEMP TABLE bench_acks (kind text, idem_key text, booking_id uuid, session_id bigint);
\copy bench_acks FROM pstdin
WITH
counters AS (
    SELECT count(*) AS bad FROM sessions s
      LEFT JOIN (SELECT session_id,
                        count(*) FILTER (WHERE pool = 'reserved') AS r,
                        count(*) FILTER (WHERE pool = 'public') AS p
                   FROM bookings WHERE community_id = :'community' AND status = 'booked'
                  GROUP BY session_id) l USING (session_id)
     WHERE s.community_id = :'community'
       AND (s.reserved_booked > s.reserved_capacity
            OR s.public_booked > s.capacity - s.reserved_capacity
            OR s.reserved_booked <> coalesce(l.r, 0) OR s.public_booked <> coalesce(l.p, 0))
),
present AS (
    SELECT count(*) FILTER (WHERE n <> 1) AS bad, count(*) AS total FROM (
        SELECT a.booking_id,
               (SELECT count(*) FROM bookings b
                 WHERE b.community_id = :'community' AND b.booking_id = a.booking_id
                   AND b.session_id = a.session_id AND b.status = 'booked') AS n
          FROM bench_acks a) x
),
dist AS (
    SELECT count(*) - count(DISTINCT booking_id) AS dup_bookings,
           count(*) - count(DISTINCT idem_key) AS dup_keys FROM bench_acks
),
keys AS (
    SELECT count(*) FILTER (WHERE NOT coalesce(
               CASE a.kind WHEN 'book' THEN k.outcome = 'booked' AND k.booking_id = a.booking_id
                           ELSE r.booking_id = a.booking_id END, false)) AS bad
      FROM bench_acks a
      LEFT JOIN idempotency_keys k ON k.community_id = :'community' AND k.terminal_id = :'terminal'
                                  AND k.idem_key = a.idem_key
      LEFT JOIN referrals r ON r.community_id = :'community' AND r.referral_id = k.referral_id
),
made AS (
    SELECT (SELECT count(*) FROM bookings WHERE community_id = :'community'
               AND booked_by_terminal = :'terminal') AS bookings,
           (SELECT count(DISTINCT idem_key) FROM bench_acks) AS acked
),
checks(name, ok, value, detail) AS (
    SELECT 'no_overbooking', bad = 0, bad, bad || ' session(s) over capacity or out of step with their bookings' FROM counters
    UNION ALL
    SELECT 'acks_present_once', bad = 0, bad, bad || ' of ' || total || ' acknowledged bookings missing, moved or duplicated' FROM present
    UNION ALL
    SELECT 'acks_distinct', dup_bookings = 0 AND dup_keys = 0, dup_bookings + dup_keys,
           dup_bookings || ' booking(s) and ' || dup_keys || ' key(s) acknowledged twice' FROM dist
    UNION ALL
    SELECT 'keys_match', bad = 0, bad, bad || ' key(s) whose stored outcome is not the acknowledged booking' FROM keys
    UNION ALL
    SELECT 'bookings_equal_acks', bookings = acked, bookings - acked,
           bookings || ' booking(s) by the terminal, ' || acked || ' acknowledged' FROM made
)
SELECT json_build_object('ok', bool_and(ok), 'checks', json_agg(json_build_object(
           'name', name, 'ok', ok, 'value', value, 'detail', detail)))
  FROM checks;
