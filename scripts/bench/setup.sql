-- scripts/bench/setup.sql: a community to benchmark bookings in.
--
-- Run with psql on a migrated database (referrald --migrate), with these
-- variables (psql -v NAME=VALUE):
--   community        the new community's id
--   token_hash       the stored hash of the bench terminals' token
--                    (referrald --hash-token)
--   spread_sessions  sessions the spread workload books at random (100 experts)
--   spread_capacity  capacity of each of them
--   hot_sessions     sessions of one popular expert, booked one after another
--   hot_capacity     capacity of each of them
--   patients         patients 1 .. N (bench_patient(i)), each booked once
--
-- It makes the institutions county-hospital (department cardiology, the
-- experts) and village-a (family doctor fd-a), two clinic terminals of
-- village-a, "bench-01" for referral-bench and "pgbench-01" for the pgbench
-- baseline, the sessions (published with publish_sessions(), so with the
-- community's reserved floor) and the patients. Prints the session ranges.
\set ON_ERROR_STOP 1

-- Patient i of the benchmark: the same formula as patient_uuid() in
-- clients/bench_work.c. The first eight digits are a multiplicative hash of
-- i (mod 2^32; i below 3e9), so that ids differ in their leading bytes as
-- the random ids of real patients do: btree_gist places a uuid in the
-- exclusion constraint's index by its first eight bytes, and ids that share
-- them make every overlap check search the whole index.
CREATE OR REPLACE FUNCTION bench_patient(i bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
    SELECT (lpad(to_hex((i * 2654435761) % 4294967296), 8, '0') || '-b000-4000-8000-'
            || lpad(to_hex(i), 12, '0'))::uuid
$$;

-- The hot workload of the pgbench baseline: the first session of the range
-- that is not full (past the range when all are).
CREATE OR REPLACE FUNCTION bench_hot_session(p_community text, p_first bigint, p_last bigint)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT s.session_id FROM sessions s
                      WHERE s.community_id = p_community AND s.session_id BETWEEN p_first AND p_last
                        AND s.reserved_booked + s.public_booked < s.capacity
                      ORDER BY s.session_id LIMIT 1), p_last + 1)
$$;

BEGIN;
INSERT INTO communities (community_id, name, province, reserve_floor_pct,
                         reserved_requires_referral, deductible_policy)
VALUES (:'community', 'Benchmark community', 'henan', 40, false, 'waive');
INSERT INTO institutions (community_id, institution_id, name, level) VALUES
    (:'community', 'county-hospital', 'County Hospital', 'county'),
    (:'community', 'village-a', 'Village A Clinic', 'village');
INSERT INTO departments (community_id, institution_id, department_id, name) VALUES
    (:'community', 'county-hospital', 'cardiology', 'Cardiology');
INSERT INTO practitioners (community_id, practitioner_id, institution_id, department_id, name, kind)
VALUES (:'community', 'fd-a', 'village-a', NULL, 'Family Doctor A', 'family_doctor'),
       (:'community', 'bench-hot', 'county-hospital', 'cardiology', 'Popular expert', 'expert');
INSERT INTO practitioners (community_id, practitioner_id, institution_id, department_id, name, kind)
SELECT :'community', 'bench-dr-' || e, 'county-hospital', 'cardiology', 'Expert ' || e, 'expert'
  FROM generate_series(0, 99) AS e;
INSERT INTO terminals (community_id, terminal_id, institution_id, role, practitioner_id, token_hash)
VALUES (:'community', 'bench-01', 'village-a', 'clinic', 'fd-a', :'token_hash'),
       (:'community', 'pgbench-01', 'village-a', 'clinic', 'fd-a', :'token_hash');

-- Spread: session n belongs to expert n % 100; each expert's sessions are
-- half-days from three days on (past the release lead, so no release runs).
WITH slot AS (
    SELECT n % 100 AS e, n / 100 AS j,
           date_trunc('day', now()) + interval '3 days' + (n / 100) * interval '12 hours' AS t
      FROM generate_series(0, :spread_sessions - 1) AS n
), per AS (
    SELECT e, array_agg(t ORDER BY j) AS starts,
           array_agg(t + interval '4 hours' ORDER BY j) AS ends
      FROM slot GROUP BY e
)
SELECT count(*) AS spread_published
  FROM per, LATERAL publish_sessions(:'community', 'bench-setup', 'county-hospital', 'cardiology',
                                     'expert', 'bench-dr-' || per.e, :spread_capacity, 0, 0,
                                     per.starts, per.ends);

-- Hot: one popular expert, one session an hour, 1,000 per publish call.
WITH slot AS (
    SELECT n / 1000 AS g, n,
           date_trunc('day', now()) + interval '3 days' + n * interval '1 hour' AS t
      FROM generate_series(0, :hot_sessions - 1) AS n
), per AS (
    SELECT g, array_agg(t ORDER BY n) AS starts,
           array_agg(t + interval '30 minutes' ORDER BY n) AS ends
      FROM slot GROUP BY g
)
SELECT count(*) AS hot_published
  FROM (SELECT * FROM per ORDER BY g) AS per,
       LATERAL publish_sessions(:'community', 'bench-setup', 'county-hospital', 'cardiology',
                                'expert', 'bench-hot', :hot_capacity, 0, 0, per.starts, per.ends);

INSERT INTO patients (community_id, patient_id, id_hash, display_name)
SELECT :'community', bench_patient(i), int8send(i), 'Bench patient ' || i
  FROM generate_series(1, :patients) AS i;
COMMIT;

-- The ranges the workloads take (ids are consecutive within each kind).
SELECT 'spread=' || min(session_id) || '-' || max(session_id), count(*) = max(session_id) - min(session_id) + 1 AS spread_contiguous
  FROM sessions WHERE community_id = :'community' AND resource_id LIKE 'bench-dr-%';
SELECT 'hot=' || min(session_id) || '-' || max(session_id), count(*) = max(session_id) - min(session_id) + 1 AS hot_contiguous
  FROM sessions WHERE community_id = :'community' AND resource_id = 'bench-hot';
