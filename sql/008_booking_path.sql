-- 008: the booking path, cheaper per booking (docs/benchmarks.md, section 7).
--
-- 1. The overlap constraint's GiST index leads with patient_id instead of
--    community_id. A GiST scan tests every entry of every page it visits,
--    column by column in index order, and stops at the first that fails:
--    with community_id first, every entry paid a text comparison (all the
--    entries of one community are equal there) before the patient was
--    looked at, and every insert computed a text penalty for nothing. Led by
--    the patient, an overlap check costs half as much. community_id stays in
--    the constraint (with =), so it still holds per community and still
--    suits a distributed table (docs/scaling.md).
--
-- 2. bookings_booker goes: no statement uses it (listing a clinic's
--    bookings filters on the booker or the session's institution, which
--    one index on bookings cannot serve), and every booking paid for it.
--
-- 3. book_batch() writes each idempotency key once, with its outcome,
--    instead of claiming it first and storing the outcome afterwards, and
--    reads what needs no lock before it locks the sessions.
--
-- 4. It takes the FOR KEY SHARE lock of each patient, which the foreign key
--    of bookings takes on insert, while it reads the patients, before it
--    locks the sessions: the insert of the bookings, done while a popular
--    session is held (docs/benchmarks.md, "A popular session, held for
--    less"), no longer writes the patients' rows.

ALTER TABLE bookings
    DROP CONSTRAINT bookings_community_id_patient_id_kind_period_excl,
    ADD CONSTRAINT bookings_no_overlap
        EXCLUDE USING gist (patient_id WITH =, kind WITH =, period WITH &&, community_id WITH =)
        WHERE (status = 'booked');

DROP INDEX bookings_booker;

-- The arguments and the answers are 006's; how the keys are written is new.
--
-- The keys of the requests it decides are read first (without a lock) and
-- inserted at the end with their outcomes. A key that already exists is a
-- replay and goes to book_slot(), as before. A key inserted by a concurrent
-- transaction after the read makes the final insert wait for that
-- transaction and, if it commits, fail: the batch is then refused whole and
-- the daemon books its requests one by one, through book_slot(), which
-- replays that key. Only a retry racing its own original can do this.
--
-- Lock order: sessions in session_id order, then the keys in (terminal, key)
-- order. Two batches never deadlock. A batch and a book_slot() call
-- (keys, then sessions) can, if they carry the same key and the same session
-- (again only a retry racing its original); PostgreSQL then cancels one of
-- them after deadlock_timeout: a refused batch is booked one by one, a
-- refused single request is answered CONFLICT and may be retried.
CREATE OR REPLACE FUNCTION book_batch(
    p_community text, p_terminals text[], p_institutions text[], p_roles terminal_role[],
    p_practitioners text[], p_sessions bigint[], p_patients uuid[], p_pools text[],
    p_fallbacks boolean[], p_keys text[])
RETURNS TABLE (idx integer, outcome text, booking_id uuid, pool text, detail text,
               reserved_left integer, public_left integer, replayed boolean)
LANGUAGE plpgsql
-- plpgsql plans a statement anew at every call for as long as its plans for
-- the actual arguments look cheaper than the generic one: a batch of one
-- session made the lock of the sessions and their update look cheap, and
-- both were planned at every call. The generic plans are index lookups.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    n integer := cardinality(p_sessions);
    c communities;
    -- The items decided here (the "simple" ones), in batch order.
    si integer[];          -- their positions in the arguments
    s_hash text[];         -- their request hashes, for their keys
    s_pos integer[];       -- the position of their session in the s_* arrays, or NULL
    known boolean[];       -- the patient exists
    other uuid[];          -- a live booking of the patient in the way, or NULL
    -- The sessions of the batch, locked.
    s_id bigint[]; s_kind resource_kind[]; s_starts timestamptz[]; s_ends timestamptz[];
    s_open boolean[]; s_cap integer[]; s_rcap integer[]; s_rb integer[]; s_pb integer[];
    -- The decisions.
    o_outcome text[]; o_booking uuid[]; o_pool text[]; o_detail text[];
    o_rleft integer[]; o_pleft integer[];
    tail integer[];        -- positions handed to book_slot afterwards
    j integer; i integer; sp integer; v_pool text; v_clinic boolean; v_public_free boolean;
BEGIN
    IF cardinality(p_terminals) <> n OR cardinality(p_institutions) <> n
       OR cardinality(p_roles) <> n OR cardinality(p_practitioners) <> n
       OR cardinality(p_patients) <> n OR cardinality(p_pools) <> n
       OR cardinality(p_fallbacks) <> n OR cardinality(p_keys) <> n THEN
        RAISE EXCEPTION 'book_batch: argument arrays differ in length' USING ERRCODE = 'RINVA';
    END IF;
    IF n = 0 THEN
        RETURN;
    END IF;

    -- Which requests are decided here: a key's first and a patient's first
    -- in the batch, whose key has not been stored before. The others (a key
    -- seen before: a replay; a key or a patient seen earlier in the batch)
    -- go to book_slot, which claims or replays their keys itself.
    SELECT array_agg(it.i ORDER BY it.i) FILTER (WHERE it.simple),
           array_agg(it.hash ORDER BY it.i) FILTER (WHERE it.simple),
           array_agg(it.i ORDER BY it.i) FILTER (WHERE NOT it.simple)
      INTO si, s_hash, tail
      FROM (SELECT u.ord::integer AS i,
                   md5(concat_ws('|', u.sess, u.patient, u.pool, u.fallback, NULL::uuid)) AS hash,
                   row_number() OVER (PARTITION BY u.term, u.key ORDER BY u.ord) = 1
                   AND row_number() OVER (PARTITION BY u.patient ORDER BY u.ord) = 1
                   AND (SELECT true FROM idempotency_keys k
                         WHERE k.community_id = p_community AND k.terminal_id = u.term
                           AND k.idem_key = u.key) IS NULL AS simple
              FROM unnest(p_terminals, p_keys, p_patients, p_sessions, p_pools, p_fallbacks)
                   WITH ORDINALITY AS u(term, key, patient, sess, pool, fallback, ord)) it;
    si := coalesce(si, '{}'); s_hash := coalesce(s_hash, '{}'); tail := coalesce(tail, '{}');

    SELECT * INTO c FROM communities WHERE community_id = p_community;

    -- First what can be read without a lock, so that the sessions are held
    -- for as short a time as possible: a popular session's batches follow
    -- one another, each waiting for the one before to commit, and what a
    -- batch does while it holds the session is what limits how fast that
    -- session fills. A session's kind and times never change, and neither
    -- sessions nor patients are ever deleted.
    SELECT array_agg(x.session_id ORDER BY x.session_id), array_agg(x.kind ORDER BY x.session_id),
           array_agg(x.starts_at ORDER BY x.session_id), array_agg(x.ends_at ORDER BY x.session_id)
      INTO s_id, s_kind, s_starts, s_ends
      FROM sessions x
     WHERE x.community_id = p_community AND x.session_id = ANY (p_sessions);
    s_id := coalesce(s_id, '{}');
    SELECT array_agg(array_position(s_id, p_sessions[q.i]) ORDER BY q.ord)
      INTO s_pos FROM unnest(si) WITH ORDINALITY AS q(i, ord);

    -- What each simple request needs to know about its patient, in one
    -- statement: whether it exists, and a live booking of it that overlaps
    -- the session. The patient row is locked FOR KEY SHARE as it is read:
    -- that is the lock the foreign key of bookings takes anyway, on insert,
    -- and taking it here, before the sessions are locked, moves the write it
    -- costs (the lock is stored in the row, and so in its page and the WAL)
    -- out of the time the sessions are held; the foreign key's own check
    -- then finds the lock already taken. FOR KEY SHARE conflicts only with
    -- deleting the patient or changing its key, which nothing here does, and
    -- not with the FOR NO KEY UPDATE of lock_patient() in book_slot(), so it
    -- adds no wait and no lock-order cycle.
    --
    -- Patients are not locked for update, unlike in book_slot: two
    -- transactions booking one patient into overlapping sessions at the same
    -- moment meet the exclusion constraint on bookings, which refuses the
    -- later one; this batch then fails as a whole and the daemon books its
    -- requests one by one through book_slot, which locks the patient and
    -- names the booking in the way. That race is rare; a row lock per
    -- patient for update would make every booking of a patient wait for the
    -- others.
    --
    -- The overlapping booking is asked with a scalar subquery, never with
    -- EXISTS: PostgreSQL may turn an EXISTS into a hashed subplan that reads
    -- every row of the community once per call, and plpgsql keeps the plan
    -- it chose while the table was small for as long as the connection
    -- lives. A scalar subquery is always one index lookup per request.
    SELECT array_agg(pt.found IS NOT NULL ORDER BY q.ord),
           array_agg(CASE WHEN q.sp IS NOT NULL THEN
                         (SELECT b.booking_id FROM bookings b
                           WHERE b.community_id = p_community AND b.patient_id = p_patients[q.i]
                             AND b.kind = s_kind[q.sp] AND b.status = 'booked'
                             AND b.period && tstzrange(s_starts[q.sp], s_ends[q.sp])
                           LIMIT 1)
                     END ORDER BY q.ord)
      INTO known, other
      FROM unnest(si, s_pos) WITH ORDINALITY AS q(i, sp, ord)
      LEFT JOIN LATERAL (SELECT true AS found FROM patients x
                          WHERE x.community_id = p_community AND x.patient_id = p_patients[q.i]
                            FOR KEY SHARE) pt ON true;

    -- Now lock the sessions, in session_id order, and read what may change:
    -- the status and the counters (the latest committed, after any wait).
    SELECT array_agg(x.status = 'open' ORDER BY x.session_id),
           array_agg(x.capacity ORDER BY x.session_id),
           array_agg(x.reserved_capacity ORDER BY x.session_id),
           array_agg(x.reserved_booked ORDER BY x.session_id),
           array_agg(x.public_booked ORDER BY x.session_id)
      INTO s_open, s_cap, s_rcap, s_rb, s_pb
      FROM (SELECT * FROM sessions y
             WHERE y.community_id = p_community AND y.session_id = ANY (s_id)
             ORDER BY y.session_id FOR UPDATE) x;
    IF coalesce(cardinality(s_open), 0) <> cardinality(s_id) THEN
        RAISE EXCEPTION 'book_batch: sessions changed under the batch' USING ERRCODE = 'XX000';
    END IF;

    -- Decide, in batch order, with book_slot's rules and words.
    FOR j IN 1 .. cardinality(si) LOOP
        i := si[j];
        sp := s_pos[j];
        v_pool := NULL;
        IF sp IS NULL THEN
            o_outcome[j] := 'not_found'; o_detail[j] := format('no session %s', p_sessions[i]);
        ELSIF NOT s_open[sp] THEN
            o_outcome[j] := 'closed'; o_detail[j] := format('session %s is cancelled', p_sessions[i]);
        ELSIF s_starts[sp] <= now() THEN
            o_outcome[j] := 'closed'; o_detail[j] := format('session %s has started', p_sessions[i]);
        ELSIF NOT known[j] THEN
            o_outcome[j] := 'not_found'; o_detail[j] := 'no such patient';
        ELSIF other[j] IS NOT NULL THEN
            o_outcome[j] := 'patient_conflict'; o_booking[j] := other[j];
            o_detail[j] := format('patient already holds booking %s in this or an overlapping session', other[j]);
        ELSE
            v_clinic := p_roles[i] = 'clinic';
            v_public_free := s_pb[sp] < s_cap[sp] - s_rcap[sp];
            IF p_pools[i] = 'reserved' OR (p_pools[i] = 'auto' AND v_clinic) THEN
                IF NOT v_clinic THEN
                    o_outcome[j] := 'not_permitted';
                    o_detail[j] := 'the reserved pool is for family doctors (clinic terminals) only';
                ELSIF c.reserved_requires_referral THEN
                    IF p_fallbacks[i] AND v_public_free THEN
                        v_pool := 'public';
                    ELSE
                        o_outcome[j] := 'not_permitted';
                        o_detail[j] := format('%s reserves these slots for referred patients: name the up-referral', c.province);
                    END IF;
                ELSIF s_rb[sp] < s_rcap[sp] THEN
                    v_pool := 'reserved';
                ELSIF p_fallbacks[i] AND v_public_free THEN
                    v_pool := 'public';
                END IF;
            ELSIF p_pools[i] IN ('public', 'auto') THEN
                IF v_public_free THEN
                    v_pool := 'public';
                END IF;
            ELSE
                RAISE EXCEPTION 'pool must be auto, reserved or public' USING ERRCODE = 'RINVA', COLUMN = 'pool';
            END IF;
            IF o_outcome[j] IS NULL AND v_pool IS NULL THEN
                o_outcome[j] := 'full';
                o_detail[j] := format('no %s capacity left in session %s',
                    CASE WHEN p_pools[i] = 'public' OR NOT v_clinic THEN 'public' ELSE 'reserved' END,
                    p_sessions[i]);
            END IF;
        END IF;
        IF v_pool IS NOT NULL THEN
            o_outcome[j] := 'booked'; o_pool[j] := v_pool; o_booking[j] := gen_random_uuid();
            IF v_pool = 'reserved' THEN
                s_rb[sp] := s_rb[sp] + 1;
            ELSE
                s_pb[sp] := s_pb[sp] + 1;
            END IF;
        END IF;
        IF sp IS NOT NULL THEN
            o_rleft[j] := s_rcap[sp] - s_rb[sp];
            o_pleft[j] := s_cap[sp] - s_rcap[sp] - s_pb[sp];
        ELSE
            o_rleft[j] := 0; o_pleft[j] := 0;
        END IF;
    END LOOP;

    -- Write the decisions back in bulk: the bookings, the session counters
    -- (the CHECKs on sessions still guard them), the keys with their outcomes.
    INSERT INTO bookings (community_id, booking_id, session_id, patient_id, pool, kind, period,
                          booked_by_terminal, booked_by_institution, practitioner_id)
    SELECT p_community, o_booking[q.ord], p_sessions[q.i], p_patients[q.i],
           o_pool[q.ord]::booking_pool, s_kind[s_pos[q.ord]],
           tstzrange(s_starts[s_pos[q.ord]], s_ends[s_pos[q.ord]]),
           p_terminals[q.i], p_institutions[q.i], nullif(p_practitioners[q.i], '')
      FROM unnest(si) WITH ORDINALITY AS q(i, ord)
     WHERE o_outcome[q.ord] = 'booked';

    UPDATE sessions x SET reserved_booked = u.rb, public_booked = u.pb
      FROM unnest(s_id, s_rb, s_pb) AS u(sid, rb, pb)
     WHERE x.community_id = p_community AND x.session_id = u.sid
       AND (x.reserved_booked, x.public_booked) IS DISTINCT FROM (u.rb, u.pb);

    INSERT INTO idempotency_keys (community_id, terminal_id, idem_key, request_hash,
                                  outcome, booking_id, detail)
    SELECT p_community, p_terminals[q.i], p_keys[q.i], s_hash[q.ord],
           o_outcome[q.ord], o_booking[q.ord], o_detail[q.ord]
      FROM unnest(si) WITH ORDINALITY AS q(i, ord)
     ORDER BY p_terminals[q.i], p_keys[q.i];

    RETURN QUERY
    SELECT q.i, o_outcome[q.ord], o_booking[q.ord], o_pool[q.ord], o_detail[q.ord],
           o_rleft[q.ord], o_pleft[q.ord], false
      FROM unnest(si) WITH ORDINALITY AS q(i, ord);

    -- The rest, one at a time, after the bulk writes they may depend on.
    FOREACH i IN ARRAY tail LOOP
        RETURN QUERY
        SELECT i, b.outcome, b.booking_id, b.pool, b.detail, b.reserved_left, b.public_left, b.replayed
          FROM book_slot(p_community, p_terminals[i], p_institutions[i], p_roles[i],
                         p_practitioners[i], p_sessions[i], p_patients[i], p_pools[i],
                         p_fallbacks[i], NULL, p_keys[i]) b;
    END LOOP;
END $$;
