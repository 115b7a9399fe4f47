-- A year of one county's data, for measuring the monitoring queries
-- (docs/monitoring.md, "How fast the figures are").
--
--   psql -X -v ON_ERROR_STOP=1 -v community=bench-county -f scripts/gen_year.sql
--
-- Load it into a migrated database (referrald --migrate), never into a
-- production one: it writes tables directly, bypassing the functions, and
-- as a restore does, without per-row foreign key checks
-- (session_replication_role = replica, which needs a superuser): the rows
-- refer to each other correctly by construction. Variables (psql -v): community (default
-- bench-county), days of history before today (default 365). Sessions go on
-- for 30 days after today, as published schedules do.
--
-- The shape is a county's: a lead hospital, a TCM and a
-- maternal and child health hospital, a supporting city hospital, 18 township
-- centres and 320 village clinics; about 290 sessions a day (300 experts'
-- half-day clinics, 12 exam devices, 24 wards), booked about 60% full;
-- about 120 up-referrals and 40 down-referrals a day, with their history.
-- Every session's counters agree with its live bookings, and the released
-- sessions are released as release_due() would have done it. Referrals are
-- not linked to bookings (the figures do not join them).

\if :{?community}
\else
\set community bench-county
\endif
\if :{?days}
\else
\set days 365
\endif

\timing on
BEGIN;
SET LOCAL session_replication_role = replica;
SELECT setseed(0.20261123);

INSERT INTO communities (community_id, name, province, reserve_floor_pct,
                         reserved_requires_referral, deductible_policy)
VALUES (:'community', 'Benchmark County Medical Community', 'henan', 40, false, 'waive');

INSERT INTO institutions (community_id, institution_id, name, level, in_network)
SELECT :'community', i, n, l::institution_level, true
  FROM (VALUES ('county-hospital', 'County People''s Hospital', 'county'),
               ('tcm-hospital', 'County TCM Hospital', 'county'),
               ('mch-hospital', 'County Maternal and Child Health Hospital', 'county'),
               ('city-hospital', 'City First Hospital', 'city')) AS v(i, n, l)
UNION ALL
SELECT :'community', format('township-%s', lpad(g::text, 2, '0')), format('Township %s', g), 'township', true
  FROM generate_series(1, 18) g
UNION ALL
SELECT :'community', format('village-%s', lpad(g::text, 3, '0')), format('Village %s', g), 'village', true
  FROM generate_series(1, 320) g;

-- Ten departments at each hospital.
CREATE TEMP TABLE hospitals (n integer PRIMARY KEY, institution_id text, share integer);
INSERT INTO hospitals VALUES (1, 'county-hospital', 55), (2, 'tcm-hospital', 15),
                             (3, 'mch-hospital', 12), (4, 'city-hospital', 18);
INSERT INTO departments (community_id, institution_id, department_id, name)
SELECT :'community', h.institution_id, format('dept-%s', d), format('Department %s', d)
  FROM hospitals h, generate_series(1, 10) d;

-- 300 experts, spread over the hospitals by their share.
CREATE TEMP TABLE experts AS
SELECT g AS n, h.institution_id, format('dept-%s', 1 + g % 10) AS department_id,
       format('dr-%s', lpad(g::text, 3, '0')) AS practitioner_id
  FROM generate_series(1, 300) g
  JOIN hospitals h ON h.n = CASE WHEN g % 100 < 55 THEN 1 WHEN g % 100 < 70 THEN 2
                                 WHEN g % 100 < 82 THEN 3 ELSE 4 END;
INSERT INTO practitioners (community_id, practitioner_id, institution_id, department_id, name, kind)
SELECT :'community', practitioner_id, institution_id, department_id, 'Expert ' || n, 'expert'
  FROM experts;
INSERT INTO practitioners (community_id, practitioner_id, institution_id, name, kind)
SELECT :'community', format('fd-%s', lpad(g::text, 3, '0')), format('village-%s', lpad(g::text, 3, '0')),
       'Family doctor ' || g, 'family_doctor'
  FROM generate_series(1, 320) g;

-- Patients: ids derived from their number, so that bookings and referrals
-- can name them without a join.
INSERT INTO patients (community_id, patient_id, id_hash, display_name, family_doctor_id)
SELECT :'community', md5(:'community' || ':' || g)::uuid,
       sha256(convert_to(:'community' || ':' || g, 'UTF8')), 'Patient ' || g,
       format('fd-%s', lpad((1 + g % 320)::text, 3, '0'))
  FROM generate_series(0, 149999) g;

-- ---- sessions ------------------------------------------------------------------------
-- Expert clinics: mornings on five weekdays, afternoons on three; exam
-- devices and wards every day. Times are local (Asia/Shanghai).
CREATE TEMP TABLE plan AS
SELECT d::date AS day, 'expert'::resource_kind AS kind, e.institution_id, e.department_id,
       e.practitioner_id AS resource_id, t.s AS t_start, t.e AS t_end,
       20 + (e.n * 7) % 21 AS capacity
  FROM generate_series(current_date - :days, current_date + 29, interval '1 day') d,
       experts e,
       (VALUES (time '08:00', time '12:00', 0), (time '14:00', time '17:30', 1)) t(s, e, pm)
 WHERE extract(isodow FROM d) <= CASE t.pm WHEN 0 THEN 5 ELSE 3 END
   AND (e.n + extract(doy FROM d)::integer) % 7 < 5
UNION ALL
SELECT d::date, 'exam', h.institution_id, 'dept-10', format('device-%s', x), t.s, t.e, 12 + x * 2
  FROM generate_series(current_date - :days, current_date + 29, interval '1 day') d,
       hospitals h, generate_series(1, 3) x,
       (VALUES (time '08:00', time '12:00'), (time '14:00', time '17:30')) t(s, e)
UNION ALL
SELECT d::date, 'bed', h.institution_id, format('dept-%s', w), format('ward-%s', w),
       time '00:00', time '00:00', 10 + w * 3
  FROM generate_series(current_date - :days, current_date + 29, interval '1 day') d,
       hospitals h, generate_series(1, 6) w;

INSERT INTO sessions (community_id, institution_id, department_id, kind, resource_id,
                      starts_at, ends_at, status, capacity, reserved_initial,
                      capacity_published, reserved_capacity, release_at, published_by, created_at)
SELECT :'community', p.institution_id, p.department_id, p.kind, p.resource_id, x.starts, x.ends,
       CASE WHEN random() < 0.01 THEN 'cancelled' ELSE 'open' END,
       p.capacity, r.reserved, p.capacity, r.reserved,
       x.starts - CASE p.kind WHEN 'bed' THEN interval '12 hours' ELSE interval '1 day' END,
       'desk-bench', x.starts - interval '21 days'
  FROM plan p,
       LATERAL (SELECT (p.day + p.t_start) AT TIME ZONE 'Asia/Shanghai' AS starts,
                       (p.day + p.t_end + CASE p.kind WHEN 'bed' THEN interval '1 day' ELSE interval '0' END)
                           AT TIME ZONE 'Asia/Shanghai' AS ends) x,
       -- The floor (40%), or half for some resources; three experts' clinics
       -- were published at 30% until half a year ago (for the compliance report).
       LATERAL (SELECT CASE WHEN p.resource_id IN ('dr-025', 'dr-125', 'dr-225')
                                 AND p.day < current_date - 180 THEN reserve_minimum(p.capacity, 30)
                            WHEN p.resource_id LIKE '%0' THEN (p.capacity + 1) / 2
                            ELSE reserve_minimum(p.capacity, 40) END AS reserved) r;

-- How full each session gets: reserved units 30..100% used by family
-- doctors, public ones 60..100%; sessions not started yet are still filling.
CREATE TEMP TABLE fill AS
SELECT s.session_id, s.kind, s.starts_at, s.ends_at, s.institution_id, s.status,
       least(s.reserved_initial, floor(s.reserved_initial * (0.3 + 0.7 * random())
             * CASE WHEN s.starts_at > now() THEN 0.5 ELSE 1 END))::integer AS reserved_booked,
       floor((s.capacity - s.reserved_initial) * (0.6 + 0.4 * random())
             * CASE WHEN s.starts_at > now() THEN 0.5 ELSE 1 END)::integer AS public_booked,
       (random() < 0.005)::integer AS emergency_booked,
       s.release_at <= now() AND s.status = 'open' AS released
  FROM sessions s WHERE s.community_id = :'community';

-- ---- bookings --------------------------------------------------------------------------
-- Patients are numbered within each (kind, start) band, so that no patient
-- holds two live bookings of one kind at overlapping times.
INSERT INTO bookings (community_id, session_id, patient_id, pool, status, kind, period,
                      booked_by_terminal, booked_by_institution, emergency_reason, created_at)
SELECT :'community', b.session_id,
       md5(:'community' || ':' || ((b.rn + extract(doy FROM b.starts_at)::integer * 7919) % 150000))::uuid,
       b.pool, CASE b.status WHEN 'open' THEN 'booked' ELSE 'session_cancelled' END::booking_status,
       b.kind, tstzrange(b.starts_at, b.ends_at),
       'bench', CASE b.pool WHEN 'reserved' THEN format('village-%s', lpad((1 + b.rn % 320)::text, 3, '0'))
                            ELSE b.institution_id END,
       CASE b.pool WHEN 'emergency' THEN 'green channel' END,
       b.starts_at - make_interval(hours => (b.rn % 300)::integer)
  FROM (SELECT f.*, u.pool,
               row_number() OVER (PARTITION BY f.kind, f.starts_at ORDER BY f.session_id, u.pool, u.k) AS rn
          FROM fill f,
               LATERAL (SELECT 'reserved'::booking_pool AS pool, k FROM generate_series(1, f.reserved_booked) k
                        UNION ALL
                        SELECT 'public', k FROM generate_series(1, f.public_booked) k
                        UNION ALL
                        SELECT 'emergency', k FROM generate_series(1, f.emergency_booked) k) u) b;

-- Some cancelled bookings too (they count nowhere).
INSERT INTO bookings (community_id, session_id, patient_id, pool, status, kind, period,
                      booked_by_terminal, booked_by_institution, created_at, cancelled_at, cancel_reason)
SELECT :'community', f.session_id, md5(:'community' || ':' || (f.session_id % 150000))::uuid,
       'public', 'cancelled', f.kind, tstzrange(f.starts_at, f.ends_at), 'bench', f.institution_id,
       f.starts_at - interval '3 days', f.starts_at - interval '2 days', 'patient cancelled'
  FROM fill f WHERE f.session_id % 4 = 0;

UPDATE sessions s
   SET reserved_booked = f.reserved_booked, public_booked = f.public_booked,
       emergency_booked = f.emergency_booked,
       reserved_capacity = CASE WHEN f.released THEN f.reserved_booked ELSE s.reserved_capacity END,
       released_count = CASE WHEN f.released THEN s.reserved_capacity - f.reserved_booked ELSE 0 END,
       released_at = CASE WHEN f.released THEN s.release_at END,
       cancelled_at = CASE WHEN s.status = 'cancelled' THEN s.starts_at - interval '2 days' END,
       cancel_reason = CASE WHEN s.status = 'cancelled' THEN 'expert away' END
  FROM fill f
 WHERE s.community_id = :'community' AND s.session_id = f.session_id;

INSERT INTO releases (community_id, session_id, released_count, due_at, released_at)
SELECT s.community_id, s.session_id, s.released_count, s.release_at, s.released_at
  FROM sessions s WHERE s.community_id = :'community' AND s.released_at IS NOT NULL;

COMMIT;

-- ---- referrals -------------------------------------------------------------------------
BEGIN;
SET LOCAL session_replication_role = replica;
-- Up: from a village (four in five) or a township, to a hospital; the
-- outcome depends on the age (recent ones are still open).
CREATE TEMP TABLE ups AS
SELECT g, gen_random_uuid() AS referral_id,
       now() - make_interval(secs => random() * :days * 86400) AS created_at,
       CASE WHEN g % 5 = 0 THEN format('township-%s', lpad((1 + g % 18)::text, 2, '0'))
            ELSE format('village-%s', lpad((1 + g % 320)::text, 3, '0')) END AS from_institution,
       (SELECT h.institution_id FROM hospitals h
         WHERE h.n = CASE WHEN g % 100 < 55 THEN 1 WHEN g % 100 < 70 THEN 2
                          WHEN g % 100 < 82 THEN 3 ELSE 4 END) AS to_institution,
       format('dept-%s', 1 + g % 10) AS to_department,
       (CASE WHEN g % 33 = 0 THEN 'emergency' WHEN g % 8 = 0 THEN 'urgent' ELSE 'routine' END)::referral_urgency AS urgency,
       random() AS fate,
       -- minutes until the desk accepted: minutes for emergencies, hours otherwise
       (-ln(1 - random()) * CASE WHEN g % 33 = 0 THEN 8 WHEN g % 8 = 0 THEN 45 ELSE 240 END) AS accept_min
  FROM generate_series(1, (:days * 120)) g;

CREATE TEMP TABLE up_course AS
SELECT u.*, CASE
         WHEN u.created_at > now() - interval '2 days' AND u.fate < 0.35 THEN 'pending'
         WHEN u.created_at > now() - interval '2 days' AND u.fate < 0.45 THEN 'waiting_slot'
         WHEN u.created_at > now() - interval '2 days' AND u.fate < 0.80 THEN 'accepted'
         WHEN u.fate < 0.005 THEN 'pending'
         WHEN u.fate < 0.015 THEN 'waiting_slot'
         WHEN u.fate < 0.095 THEN 'rejected'
         WHEN u.fate < 0.135 THEN 'redirected'
         WHEN u.fate < 0.155 THEN 'returned'
         WHEN u.fate < 0.195 THEN 'cancelled'
         WHEN u.fate < 0.245 THEN 'no_show'
         WHEN u.fate < 0.265 THEN 'admitted'
         WHEN u.fate < 0.285 THEN 'discharged'
         ELSE 'completed' END::referral_state AS state
  FROM ups u;

INSERT INTO referrals (community_id, referral_id, direction, state, urgency, patient_id,
                       from_institution, from_practitioner, from_terminal, to_institution,
                       to_department, diagnosis, reason, version, created_at, state_changed_at,
                       escalated_at)
SELECT :'community', c.referral_id, 'up', c.state, c.urgency,
       md5(:'community' || ':' || (c.g * 13 % 150000))::uuid, c.from_institution,
       CASE WHEN c.from_institution LIKE 'village-%' THEN 'fd-' || right(c.from_institution, 3) END,
       'bench', c.to_institution, c.to_department,
       (ARRAY['I10', 'I20.0', 'I21.0', 'E11.9', 'J18.9', 'K35.8', 'N18.3', 'C34.9'])[1 + c.g % 8],
       'referred for specialist assessment', 1, c.created_at,
       c.created_at + c.accept_min * interval '1 minute',
       CASE WHEN c.state IN ('pending', 'waiting_slot') AND c.created_at < now() - interval '2 days'
            THEN c.created_at + interval '2 days' END
  FROM up_course c;

-- Down: from the hospitals to the village clinics, with a follow-up due
-- two weeks later.
CREATE TEMP TABLE downs AS
SELECT g, gen_random_uuid() AS referral_id,
       now() - make_interval(secs => random() * :days * 86400) AS created_at,
       (SELECT h.institution_id FROM hospitals h WHERE h.n = 1 + g % 4) AS from_institution,
       format('village-%s', lpad((1 + g % 320)::text, 3, '0')) AS to_institution,
       random() AS fate
  FROM generate_series(1, (:days * 40)) g;

CREATE TEMP TABLE down_course AS
SELECT d.*, CASE
         WHEN d.created_at > now() - interval '3 days' AND d.fate < 0.5 THEN 'pending'
         WHEN d.created_at > now() - interval '3 days' THEN 'accepted'
         WHEN d.fate < 0.04 THEN 'declined'
         WHEN d.fate < 0.07 THEN 'cancelled'
         WHEN d.fate < 0.09 THEN 'accepted'
         WHEN d.fate < 0.19 THEN 'followed_up'
         ELSE 'completed' END::referral_state AS state,
       (d.created_at AT TIME ZONE 'Asia/Shanghai')::date + 14 AS due
  FROM downs d;

INSERT INTO referrals (community_id, referral_id, direction, state, patient_id, from_institution,
                       from_department, from_terminal, to_institution, diagnosis, reason, care_plan,
                       follow_up_due, version, created_at, state_changed_at, follow_up_overdue_at)
SELECT :'community', c.referral_id, 'down', c.state,
       md5(:'community' || ':' || (c.g * 17 % 150000))::uuid, c.from_institution,
       format('dept-%s', 1 + c.g % 10), 'bench', c.to_institution, 'I21.0',
       'stable after treatment', 'continue medication; review monthly', c.due, 1, c.created_at,
       c.created_at + interval '1 day',
       CASE WHEN c.state IN ('pending', 'accepted') AND c.due < current_date
            THEN c.due + interval '1 day' END
  FROM down_course c;

-- History: the moves that led each referral to its state.
CREATE TEMP TABLE moves (state referral_state, direction referral_direction, step integer,
                         action text, from_state referral_state, to_state referral_state);
INSERT INTO moves VALUES
    ('waiting_slot', 'up', 2, 'no_slot', 'pending', 'waiting_slot'),
    ('accepted', 'up', 2, 'accept', 'pending', 'accepted'),
    ('rejected', 'up', 2, 'reject', 'pending', 'rejected'),
    ('redirected', 'up', 2, 'redirect', 'pending', 'redirected'),
    ('returned', 'up', 2, 'no_slot', 'pending', 'waiting_slot'),
    ('returned', 'up', 3, 'return', 'waiting_slot', 'returned'),
    ('cancelled', 'up', 2, 'cancel', 'pending', 'cancelled'),
    ('no_show', 'up', 2, 'accept', 'pending', 'accepted'),
    ('no_show', 'up', 3, 'no_show', 'accepted', 'no_show'),
    ('admitted', 'up', 2, 'accept', 'pending', 'accepted'),
    ('admitted', 'up', 3, 'admit', 'accepted', 'admitted'),
    ('discharged', 'up', 2, 'accept', 'pending', 'accepted'),
    ('discharged', 'up', 3, 'admit', 'accepted', 'admitted'),
    ('discharged', 'up', 4, 'discharge', 'admitted', 'discharged'),
    ('completed', 'up', 2, 'accept', 'pending', 'accepted'),
    ('completed', 'up', 3, 'arrive', 'accepted', 'arrived'),
    ('completed', 'up', 4, 'complete', 'arrived', 'completed'),
    ('declined', 'down', 2, 'decline', 'pending', 'declined'),
    ('cancelled', 'down', 2, 'cancel', 'pending', 'cancelled'),
    ('accepted', 'down', 2, 'accept', 'pending', 'accepted'),
    ('followed_up', 'down', 2, 'accept', 'pending', 'accepted'),
    ('followed_up', 'down', 3, 'follow_up', 'accepted', 'followed_up'),
    ('completed', 'down', 2, 'accept', 'pending', 'accepted'),
    ('completed', 'down', 3, 'follow_up', 'accepted', 'followed_up'),
    ('completed', 'down', 4, 'complete', 'followed_up', 'completed');

INSERT INTO referral_history (community_id, referral_id, seq, at, action, from_state, to_state,
                              terminal_id, role, institution_id)
SELECT r.community_id, r.referral_id, 1, r.created_at, 'create', NULL, 'pending', 'bench',
       CASE r.direction WHEN 'up' THEN 'clinic' ELSE 'desk' END, r.from_institution
  FROM referrals r WHERE r.community_id = :'community'
UNION ALL
-- The first move after the creation is the desk's decision (state_changed_at
-- holds its time); later ones follow a day apart each.
SELECT r.community_id, r.referral_id, m.step,
       r.state_changed_at + make_interval(days => m.step - 2), m.action, m.from_state, m.to_state,
       CASE WHEN m.action = 'no_show' THEN NULL ELSE 'bench' END,
       CASE WHEN m.action = 'no_show' THEN 'system' ELSE 'desk' END,
       CASE WHEN m.action = 'no_show' THEN NULL ELSE r.to_institution END
  FROM referrals r JOIN moves m ON m.state = r.state AND m.direction = r.direction
 WHERE r.community_id = :'community';

UPDATE referrals r SET version = h.n
  FROM (SELECT referral_id, count(*)::integer AS n FROM referral_history
         WHERE community_id = :'community' GROUP BY referral_id) h
 WHERE r.community_id = :'community' AND r.referral_id = h.referral_id;

COMMIT;
ANALYZE;

SELECT (SELECT count(*) FROM sessions WHERE community_id = :'community') AS sessions,
       (SELECT count(*) FROM bookings WHERE community_id = :'community') AS bookings,
       (SELECT count(*) FROM referrals WHERE community_id = :'community') AS referrals,
       (SELECT count(*) FROM referral_history WHERE community_id = :'community') AS history;
