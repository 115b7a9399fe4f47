-- 005: monitoring: the figures behind `referralctl stats` and `compliance`
-- and the community gauges of /metrics (docs/monitoring.md).
--
-- Everything here only reads. The daemon runs these functions on a
-- connection of its own, in read-only transactions, one statement (one
-- snapshot) per figure request, under a statement timeout: they cannot lock
-- a row a booking needs, and they cannot run for long.
--
-- Windows: session figures count the sessions that start in [since, until);
-- referral figures the referrals made in [since, until); the "now" figures
-- (waiting, escalated, overdue) the referrals as they are now, whatever
-- their age.

-- ---- indexes -----------------------------------------------------------------------

-- Sessions by start, within a community: the window of every slot figure.
-- (sessions_search leads with the institution and serves one hospital.)
CREATE INDEX sessions_starts ON sessions (community_id, starts_at);
-- Referrals by creation, within a community.
CREATE INDEX referrals_created ON referrals (community_id, created_at);
-- The acceptances in a window: the time from referral to acceptance.
CREATE INDEX referral_history_accepts ON referral_history (community_id, at, referral_id)
    WHERE action = 'accept';
-- The backlog now: referrals waiting for the other side, overdue follow-ups.
-- Small (only what is open), whatever the years of history.
CREATE INDEX referrals_backlog ON referrals (community_id)
    WHERE state IN ('pending', 'waiting_slot')
       OR (follow_up_overdue_at IS NOT NULL AND state IN ('pending', 'accepted'));

-- ---- the figures of one community ----------------------------------------------------

-- One row per institution with figures in the window, and one row with
-- institution_id NULL: the community's total (of the institution named,
-- when p_institution is not ''). Referrals count for their higher-level side:
-- the receiving institution of an up-referral, the sending one of a
-- down-referral. Sessions are counted when open; cancelled ones only in
-- sessions_cancelled.
--
-- The deductible figures (decisions, fen waived) join here once their
-- schema exists.
CREATE FUNCTION community_figures(p_community text, p_institution text,
                                  p_since timestamptz, p_until timestamptz)
RETURNS TABLE (
    institution_id text,
    sessions_open bigint, sessions_cancelled bigint,
    capacity_units bigint, published_units bigint, reserved_published bigint,
    sessions_below_floor bigint,
    reserved_pool bigint, reserved_booked bigint, public_pool bigint, public_booked bigint,
    released_units bigint, sessions_released bigint, emergency_bookings bigint,
    up_referrals bigint, down_referrals bigint,
    up_accepted bigint, up_rejected bigint, up_redirected bigint, up_no_show bigint,
    accept_median_s double precision, accept_p90_s double precision,
    waiting_now bigint, escalated_waiting_now bigint, follow_ups_overdue_now bigint,
    deductible_decisions bigint, deductible_fen_waived bigint)
LANGUAGE sql STABLE AS $$
WITH s AS (
    SELECT x.institution_id,
           count(*) FILTER (WHERE x.status = 'open') AS sessions_open,
           count(*) FILTER (WHERE x.status = 'cancelled') AS sessions_cancelled,
           coalesce(sum(x.capacity) FILTER (WHERE x.status = 'open'), 0)::bigint AS capacity_units,
           coalesce(sum(x.capacity_published) FILTER (WHERE x.status = 'open'), 0)::bigint AS published_units,
           coalesce(sum(x.reserved_initial) FILTER (WHERE x.status = 'open'), 0)::bigint AS reserved_published,
           count(*) FILTER (WHERE x.status = 'open'
                   AND x.reserved_initial < reserve_minimum(x.capacity_published, c.floor))
               AS sessions_below_floor,
           -- The reserved pool as offered: what is in it, and what it released.
           coalesce(sum(x.reserved_capacity + x.released_count) FILTER (WHERE x.status = 'open'), 0)::bigint
               AS reserved_pool,
           coalesce(sum(x.reserved_booked) FILTER (WHERE x.status = 'open'), 0)::bigint AS reserved_booked,
           coalesce(sum(x.capacity - x.reserved_capacity) FILTER (WHERE x.status = 'open'), 0)::bigint
               AS public_pool,
           coalesce(sum(x.public_booked) FILTER (WHERE x.status = 'open'), 0)::bigint AS public_booked,
           coalesce(sum(x.released_count) FILTER (WHERE x.status = 'open'), 0)::bigint AS released_units,
           count(*) FILTER (WHERE x.status = 'open' AND x.released_at IS NOT NULL) AS sessions_released,
           coalesce(sum(x.emergency_booked) FILTER (WHERE x.status = 'open'), 0)::bigint AS emergency_bookings
      FROM sessions x,
           (SELECT y.reserve_floor_pct AS floor FROM communities y
             WHERE y.community_id = p_community) c
     WHERE x.community_id = p_community AND x.starts_at >= p_since AND x.starts_at < p_until
       AND (p_institution = '' OR x.institution_id = p_institution)
     GROUP BY GROUPING SETS ((x.institution_id), ())
), accepted AS (
    -- First acceptances since the window began (none comes before its
    -- referral): one pass over the window's accepts, joined by hash, rather
    -- than a look-up per referral.
    SELECT h.referral_id, min(h.at) AS at
      FROM referral_history h
     WHERE h.community_id = p_community AND h.action = 'accept' AND h.at >= p_since
     GROUP BY h.referral_id
), made AS (
    SELECT CASE x.direction WHEN 'up' THEN x.to_institution ELSE x.from_institution END AS institution_id,
           x.direction, x.state, x.created_at, a.at AS accepted_at
      FROM referrals x
      LEFT JOIN accepted a ON x.direction = 'up' AND a.referral_id = x.referral_id
     WHERE x.community_id = p_community AND x.created_at >= p_since AND x.created_at < p_until
), r AS (
    SELECT m.institution_id,
           count(*) FILTER (WHERE m.direction = 'up') AS up_referrals,
           count(*) FILTER (WHERE m.direction = 'down') AS down_referrals,
           count(m.accepted_at) AS up_accepted,
           count(*) FILTER (WHERE m.direction = 'up' AND m.state = 'rejected') AS up_rejected,
           count(*) FILTER (WHERE m.direction = 'up' AND m.state = 'redirected') AS up_redirected,
           count(*) FILTER (WHERE m.direction = 'up' AND m.state = 'no_show') AS up_no_show,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM m.accepted_at - m.created_at))
               AS accept_median_s,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM m.accepted_at - m.created_at))
               AS accept_p90_s
      FROM made m
     WHERE p_institution = '' OR m.institution_id = p_institution
     GROUP BY GROUPING SETS ((m.institution_id), ())
), open_now AS (
    SELECT CASE x.direction WHEN 'up' THEN x.to_institution ELSE x.from_institution END AS institution_id,
           x.state, x.escalated_at, x.follow_up_overdue_at
      FROM referrals x
     WHERE x.community_id = p_community
       AND (x.state IN ('pending', 'waiting_slot')
            OR (x.follow_up_overdue_at IS NOT NULL AND x.state IN ('pending', 'accepted')))
), n AS (
    SELECT o.institution_id,
           count(*) FILTER (WHERE o.state IN ('pending', 'waiting_slot')) AS waiting_now,
           count(*) FILTER (WHERE o.state IN ('pending', 'waiting_slot') AND o.escalated_at IS NOT NULL)
               AS escalated_waiting_now,
           count(o.follow_up_overdue_at) FILTER (WHERE o.state IN ('pending', 'accepted'))
               AS follow_ups_overdue_now
      FROM open_now o
     WHERE p_institution = '' OR o.institution_id = p_institution
     GROUP BY GROUPING SETS ((o.institution_id), ())
), d AS (
    -- Deductible decisions of the stays admitted in the window (reversed
    -- stays do not count), and the fen they waived (sql/004).
    SELECT st.institution_id,
           count(*) AS deductible_decisions,
           coalesce(sum(dd.own_deductible_fen - dd.due_fen), 0)::bigint AS deductible_fen_waived
      FROM stays st
      JOIN deductible_decisions dd ON dd.community_id = st.community_id AND dd.stay_id = st.stay_id
     WHERE st.community_id = p_community AND st.admitted_at >= p_since AND st.admitted_at < p_until
       AND st.reversed_at IS NULL
       AND (p_institution = '' OR st.institution_id = p_institution)
     GROUP BY GROUPING SETS ((st.institution_id), ())
)
SELECT coalesce(s.institution_id, r.institution_id, n.institution_id, d.institution_id),
       coalesce(s.sessions_open, 0), coalesce(s.sessions_cancelled, 0),
       coalesce(s.capacity_units, 0), coalesce(s.published_units, 0),
       coalesce(s.reserved_published, 0), coalesce(s.sessions_below_floor, 0),
       coalesce(s.reserved_pool, 0), coalesce(s.reserved_booked, 0),
       coalesce(s.public_pool, 0), coalesce(s.public_booked, 0),
       coalesce(s.released_units, 0), coalesce(s.sessions_released, 0),
       coalesce(s.emergency_bookings, 0),
       coalesce(r.up_referrals, 0), coalesce(r.down_referrals, 0),
       coalesce(r.up_accepted, 0), coalesce(r.up_rejected, 0), coalesce(r.up_redirected, 0),
       coalesce(r.up_no_show, 0), coalesce(r.accept_median_s, 0), coalesce(r.accept_p90_s, 0),
       coalesce(n.waiting_now, 0), coalesce(n.escalated_waiting_now, 0),
       coalesce(n.follow_ups_overdue_now, 0),
       coalesce(d.deductible_decisions, 0), coalesce(d.deductible_fen_waived, 0)
  FROM s
  FULL JOIN r ON coalesce(r.institution_id, '') = coalesce(s.institution_id, '')
  FULL JOIN n ON coalesce(n.institution_id, '') = coalesce(s.institution_id, r.institution_id, '')
  FULL JOIN d ON coalesce(d.institution_id, '') = coalesce(s.institution_id, r.institution_id,
                                                          n.institution_id, '')
 ORDER BY 1 NULLS FIRST
$$;

-- Referral counts by direction and state, per community, for /metrics.
CREATE FUNCTION figures_referral_states(p_since timestamptz, p_until timestamptz)
RETURNS TABLE (community_id text, direction text, state text, referrals bigint)
LANGUAGE sql STABLE AS $$
    SELECT c.community_id, x.direction::text, x.state::text, count(*)
      FROM communities c
      JOIN referrals x ON x.community_id = c.community_id
                      AND x.created_at >= p_since AND x.created_at < p_until
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3
$$;

-- ---- compliance ----------------------------------------------------------------------

-- A session still holding unbooked reserved units this long after its
-- release time has been missed by the release timer (which runs every few
-- seconds): nobody can book those units.
CREATE FUNCTION release_overdue_after() RETURNS interval
LANGUAGE sql IMMUTABLE AS $$ SELECT interval '15 minutes' $$;

-- The rules the compliance report measures against, worded for the
-- community's province and settings. source points into the policy text.
CREATE FUNCTION compliance_rules(p_community text)
RETURNS TABLE (rule text, description text, source text)
LANGUAGE sql STABLE AS $$
    SELECT 'reserve_floor',
           format('at least %s%% of each session''s capacity, rounded up, is reserved for family doctors',
                  c.reserve_floor_pct)
           || CASE c.province
                  WHEN 'henan' THEN ' (Henan: no less than 40% of expert and exam slots handed to family doctors to manage)'
                  WHEN 'yunnan' THEN ' (Yunnan: 20% or more of expert slots, inpatient beds and bookable exams kept for patients referred by family doctors)'
                  WHEN 'fujian' THEN ' (Fujian: 20% or more of expert slots, inpatient beds and bookable exams kept to give referred patients priority)'
                  ELSE ' (the community''s own floor)' END,
           CASE c.province
               WHEN 'henan' THEN '豫政办〔2025〕23号 (九): 不低于40%的专家号源、预约设备检查等资源交由家庭医生管理支配'
               WHEN 'yunnan' THEN '云南省深化紧密型县域医共体建设若干措施 (十一): 预留20%以上的资源优先保障家庭医生转诊的患者'
               WHEN 'fujian' THEN '闽卫基层〔2024〕35号 12: 预留20%以上的资源优先保障患者转诊'
               ELSE 'communities.reserve_floor_pct' END
      FROM communities c WHERE c.community_id = p_community
    UNION ALL
    SELECT 'reserved_unused',
           'reserved units are for family doctors'' patients; a unit still unbooked at the release time goes to the public pool and counts as unused',
           'release rule: docs/slots.md, Release of unused reserved capacity'
    UNION ALL
    SELECT 'release_overdue',
           format('unbooked reserved units go to the public pool %s minutes (expert), %s (exam), %s (bed) before the session; a session still holding them %s minutes after that has units nobody can book',
                  c.release_lead_expert_min, c.release_lead_exam_min, c.release_lead_bed_min,
                  extract(epoch FROM release_overdue_after())::integer / 60),
           'communities.release_lead_*_min; docs/slots.md, Release of unused reserved capacity'
      FROM communities c WHERE c.community_id = p_community
$$;

-- Per hospital: the sessions starting in the window (open ones) measured
-- against the rules; rules lists those it falls short of.
CREATE FUNCTION compliance_hospitals(p_community text, p_institution text,
                                     p_since timestamptz, p_until timestamptz)
RETURNS TABLE (ord bigint, institution_id text, sessions bigint, published_units bigint,
               reserved_published bigint, floor_pct integer, sessions_below_floor bigint,
               released_pool bigint, unused_units bigint, sessions_release_overdue bigint,
               stranded_units bigint, rules text[])
LANGUAGE sql STABLE AS $$
    WITH h AS (
        SELECT x.institution_id, count(*) AS sessions,
               sum(x.capacity_published)::bigint AS published_units,
               sum(x.reserved_initial)::bigint AS reserved_published,
               min(c.reserve_floor_pct) AS floor_pct,
               count(*) FILTER (WHERE x.reserved_initial < reserve_minimum(x.capacity_published,
                                                                            c.reserve_floor_pct))
                   AS sessions_below_floor,
               coalesce(sum(x.reserved_capacity + x.released_count)
                        FILTER (WHERE x.released_at IS NOT NULL), 0)::bigint AS released_pool,
               sum(x.released_count)::bigint AS unused_units,
               count(*) FILTER (WHERE x.released_at IS NULL AND x.reserved_capacity > x.reserved_booked
                                  AND x.release_at < now() - release_overdue_after())
                   AS sessions_release_overdue,
               coalesce(sum(x.reserved_capacity - x.reserved_booked)
                        FILTER (WHERE x.released_at IS NULL AND x.reserved_capacity > x.reserved_booked
                                  AND x.release_at < now() - release_overdue_after()), 0)::bigint
                   AS stranded_units
          FROM sessions x JOIN communities c ON c.community_id = x.community_id
         WHERE x.community_id = p_community AND x.starts_at >= p_since AND x.starts_at < p_until
           AND x.status = 'open' AND (p_institution = '' OR x.institution_id = p_institution)
         GROUP BY x.institution_id
    )
    SELECT row_number() OVER (ORDER BY h.sessions_below_floor > 0 DESC,
                                       h.sessions_release_overdue > 0 DESC,
                                       h.unused_units::float8 / greatest(h.released_pool, 1) DESC,
                                       h.institution_id),
           h.*, array_remove(ARRAY[
               CASE WHEN h.sessions_below_floor > 0 THEN 'reserve_floor' END,
               CASE WHEN h.unused_units > 0 THEN 'reserved_unused' END,
               CASE WHEN h.sessions_release_overdue > 0 THEN 'release_overdue' END], NULL)
      FROM h
$$;

-- The sessions behind the findings, one row per session and rule, the most
-- serious first (below the floor, then units stranded, then the most units
-- unused), at most p_limit; found is how many there are in all.
CREATE FUNCTION compliance_sessions(p_community text, p_institution text,
                                    p_since timestamptz, p_until timestamptz, p_limit integer)
RETURNS TABLE (ord bigint, rule text, session_id bigint, institution_id text,
               department_id text, kind text, resource_id text, starts_at timestamptz,
               capacity_published integer, reserved_published integer, reserved_required integer,
               reserved_booked integer, unused_units integer, found bigint)
LANGUAGE sql STABLE AS $$
    WITH w AS (
        SELECT x.*, reserve_minimum(x.capacity_published, c.reserve_floor_pct) AS required,
               x.released_at IS NULL AND x.reserved_capacity > x.reserved_booked
                   AND x.release_at < now() - release_overdue_after() AS overdue
          FROM sessions x JOIN communities c ON c.community_id = x.community_id
         WHERE x.community_id = p_community AND x.starts_at >= p_since AND x.starts_at < p_until
           AND x.status = 'open' AND (p_institution = '' OR x.institution_id = p_institution)
    ), f AS (
        SELECT 'reserve_floor' AS rule, 0 AS rank, w.*, 0 AS unused FROM w
         WHERE w.reserved_initial < w.required
        UNION ALL
        SELECT 'release_overdue', 1, w.*, w.reserved_capacity - w.reserved_booked FROM w WHERE w.overdue
        UNION ALL
        SELECT 'reserved_unused', 2, w.*, w.released_count FROM w WHERE w.released_count > 0
    )
    SELECT row_number() OVER (ORDER BY f.rank, f.unused DESC, f.starts_at, f.session_id) AS ord,
           f.rule, f.session_id, f.institution_id, f.department_id, f.kind::text, f.resource_id,
           f.starts_at, f.capacity_published, f.reserved_initial, f.required, f.reserved_booked,
           f.unused, count(*) OVER ()
      FROM f
     ORDER BY ord
     LIMIT p_limit
$$;

-- The whole report in one statement (one snapshot): the rules, then the
-- hospitals, then the sessions, as rows of one shape told apart by
-- row_kind. A session row fills the columns it shares with a hospital row
-- with its own values (published_units is its capacity as published).
CREATE FUNCTION compliance_report(p_community text, p_institution text,
                                  p_since timestamptz, p_until timestamptz, p_limit integer)
RETURNS TABLE (row_kind text, rule text, description text, source text, institution_id text,
               rules text, published_units bigint, reserved_published bigint, floor_pct integer,
               sessions bigint, sessions_below_floor bigint, released_pool bigint,
               unused_units bigint, sessions_release_overdue bigint, stranded_units bigint,
               session_id bigint, department_id text, kind text, resource_id text,
               starts_at timestamptz, reserved_required integer, reserved_booked integer,
               found bigint)
LANGUAGE sql STABLE AS $$
    SELECT x.row_kind, x.rule, x.description, x.source, x.institution_id, x.rules,
           x.published_units, x.reserved_published, x.floor_pct, x.sessions,
           x.sessions_below_floor, x.released_pool, x.unused_units, x.sessions_release_overdue,
           x.stranded_units, x.session_id, x.department_id, x.kind, x.resource_id, x.starts_at,
           x.reserved_required, x.reserved_booked, x.found
      FROM (SELECT 0 AS part, 0::bigint AS ord, 'rule' AS row_kind, r.rule, r.description, r.source,
                   NULL::text AS institution_id, NULL::text AS rules, NULL::bigint AS published_units,
                   NULL::bigint AS reserved_published, NULL::integer AS floor_pct,
                   NULL::bigint AS sessions, NULL::bigint AS sessions_below_floor,
                   NULL::bigint AS released_pool, NULL::bigint AS unused_units,
                   NULL::bigint AS sessions_release_overdue, NULL::bigint AS stranded_units,
                   NULL::bigint AS session_id, NULL::text AS department_id, NULL::text AS kind,
                   NULL::text AS resource_id, NULL::timestamptz AS starts_at,
                   NULL::integer AS reserved_required, NULL::integer AS reserved_booked,
                   NULL::bigint AS found
              FROM compliance_rules(p_community) r
            UNION ALL
            SELECT 1, h.ord, 'hospital', NULL, NULL, NULL, h.institution_id,
                   array_to_string(h.rules, ','), h.published_units, h.reserved_published,
                   h.floor_pct, h.sessions, h.sessions_below_floor, h.released_pool, h.unused_units,
                   h.sessions_release_overdue, h.stranded_units, NULL, NULL, NULL, NULL, NULL, NULL,
                   NULL, NULL
              FROM compliance_hospitals(p_community, p_institution, p_since, p_until) h
            UNION ALL
            SELECT 2, s.ord, 'session', s.rule, NULL, NULL, s.institution_id, NULL,
                   s.capacity_published, s.reserved_published, NULL, 1, NULL, NULL, s.unused_units,
                   NULL, NULL, s.session_id, s.department_id, s.kind, s.resource_id, s.starts_at,
                   s.reserved_required, s.reserved_booked, s.found
              FROM compliance_sessions(p_community, p_institution, p_since, p_until, p_limit) s) x
     ORDER BY x.part, x.ord
$$;

-- ---- the worklist ---------------------------------------------------------------------

-- The worklist of a desk or clinic lists the referrals from OR to its
-- institution. As one query with that OR (003's statement), no index gives
-- both sides in worklist order, and a year of a county's referrals is read
-- and sorted for every page (seconds). Here each side is read from its own
-- index, in worklist order (most urgent, newest, id), from the page token
-- on, and the two short lists are merged: a page reads about a page of rows
-- whatever the years of history. The open referrals (the default view, and
-- the no-slot list) have indexes of their own, which stay small.
DROP INDEX referrals_to;
DROP INDEX referrals_from;
CREATE INDEX referrals_to ON referrals
    (community_id, to_institution, urgency DESC, created_at DESC, referral_id DESC);
CREATE INDEX referrals_from ON referrals
    (community_id, from_institution, urgency DESC, created_at DESC, referral_id DESC);
CREATE INDEX referrals_to_open ON referrals
    (community_id, to_institution, urgency DESC, created_at DESC, referral_id DESC)
    WHERE state IN ('pending', 'waiting_slot', 'accepted', 'arrived', 'admitted', 'discharged', 'followed_up');
CREATE INDEX referrals_from_open ON referrals
    (community_id, from_institution, urgency DESC, created_at DESC, referral_id DESC)
    WHERE state IN ('pending', 'waiting_slot', 'accepted', 'arrived', 'admitted', 'discharged', 'followed_up');
CREATE INDEX referrals_open ON referrals (community_id, urgency DESC, created_at DESC, referral_id DESC)
    WHERE state IN ('pending', 'waiting_slot', 'accepted', 'arrived', 'admitted', 'discharged', 'followed_up');

-- One page of a worklist, as the protocol's Worklist asks for it (the
-- daemon's WORKLIST statement): p_scope is the caller's institution, or ''
-- for the whole community; p_state '' (the open referrals), 'all', or a
-- state; the page starts after (p_rank, p_micros, p_id), the urgency rank,
-- creation time in microseconds and id of the last row shown (rank 3: the
-- first page).
--
-- The query is assembled from the fixed fragments below (never from the
-- arguments, which go in as parameters) and planned for the arguments at
-- hand: each side then uses the index that serves it, the partial one for
-- open referrals, which a plan made for unknown arguments could not.
CREATE FUNCTION worklist(p_community text, p_scope text, p_state text, p_direction text,
                         p_department text, p_min_age integer, p_escalated boolean,
                         p_patient text, p_rank integer, p_micros bigint, p_id uuid,
                         p_limit integer)
RETURNS SETOF referral_wire LANGUAGE plpgsql STABLE AS $$
DECLARE
    c_open constant text := 'r.state IN (''pending'', ''waiting_slot'', ''accepted'', ''arrived'','
                            ' ''admitted'', ''discharged'', ''followed_up'')';
    -- One side's referrals in worklist order, after the page token.
    c_side constant text :=
        'SELECT r.referral_id FROM referrals r WHERE r.community_id = $1 AND %s AND %s'
        ' AND ($4 = '''' OR r.direction::text = $4) AND ($5 = '''' OR r.to_department = $5)'
        ' AND r.created_at <= now() - make_interval(mins => $6)'
        ' AND (NOT $7 OR r.escalated_at IS NOT NULL) AND ($8 = '''' OR r.patient_id::text = $8)'
        ' AND (r.urgency, r.created_at, r.referral_id) < ($9, $10, $11)'
        ' ORDER BY r.urgency DESC, r.created_at DESC, r.referral_id DESC LIMIT $12';
    -- The token as a position in that order; the first page starts after
    -- everything (no referral is made at 'infinity').
    v_urgency referral_urgency := CASE WHEN p_rank >= 3 THEN 'emergency'
                                       ELSE (enum_range(NULL::referral_urgency))[p_rank + 1] END;
    v_created timestamptz := CASE WHEN p_rank >= 3 THEN 'infinity'
                                  ELSE timestamptz 'epoch' + p_micros * interval '1 microsecond' END;
    v_states text;
    v_keys text;
BEGIN
    IF p_state = '' THEN
        v_states := c_open;
    ELSIF p_state = 'all' THEN
        v_states := 'true';
    ELSIF p_state IN ('pending', 'waiting_slot', 'accepted', 'arrived', 'admitted', 'discharged',
                      'followed_up') THEN
        v_states := c_open || ' AND r.state::text = $3';
    ELSE
        v_states := 'r.state::text = $3';
    END IF;
    IF p_scope = '' THEN
        v_keys := format(c_side, 'true', v_states);
    ELSE
        -- No referral is from and to the same institution: the sides do
        -- not overlap.
        v_keys := format('(%s) UNION ALL (%s)', format(c_side, 'r.to_institution = $2', v_states),
                         format(c_side, 'r.from_institution = $2', v_states));
    END IF;
    RETURN QUERY EXECUTE format('SELECT w.* FROM (%s) k JOIN referral_wire w'
                                ' ON w.community_id = $1 AND w.referral_id = k.referral_id'
                                ' ORDER BY w.urgency_rank DESC, w.created_micros DESC,'
                                ' w.referral_id DESC LIMIT $12', v_keys)
        USING p_community, p_scope, p_state, p_direction, p_department, p_min_age, p_escalated,
              p_patient, v_urgency, v_created, p_id, p_limit;
END $$;
