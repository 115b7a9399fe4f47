-- 006: group commit: many bookings of one community in one transaction.
--
-- The daemon coalesces the Book requests that arrive while earlier ones are
-- being committed and hands them to book_batch() together: one transaction,
-- one WAL flush, one lock of each session however many bookings it takes.
-- Each request still gets its own answer, exactly as if book_slot() had been
-- called for the requests one after the other in some order (they were all in
-- flight at once, so any order is a correct one); the suite checks this
-- equivalence against book_slot() itself.
--
-- The common case (a new idempotency key, a patient's only request in the
-- batch, no referral) is decided in memory from rows read once and written
-- back in bulk. Everything else (a retried key, a second request of the same
-- patient in the batch) goes through book_slot() after the bulk writes, so
-- that it sees them. Requests naming a referral are never batched by the
-- daemon: they lock the referral first (see booking_lock_referral).
--
-- Lock order, the same as book_slot's: idempotency keys, then sessions in
-- session_id order (then, in book_slot, the patient). Two batches therefore
-- never deadlock on sessions.

-- book_slot's two SQL helpers again, in plpgsql: a LANGUAGE sql function
-- called from plpgsql is parsed and planned anew on every call, while
-- plpgsql keeps its plans for the session. The profile of the benchmark
-- (docs/benchmarks.md) put the re-planning at a fifth of the database's
-- CPU per booking. Same arguments, same results.
CREATE OR REPLACE FUNCTION lock_patient(p_community text, p_patient uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM patients pt WHERE pt.community_id = p_community
       AND pt.patient_id = p_patient FOR NO KEY UPDATE;
    RETURN FOUND;
END $$;

CREATE OR REPLACE FUNCTION overlapping_booking(p_community text, p_patient uuid, s sessions)
RETURNS uuid LANGUAGE plpgsql STABLE AS $$
DECLARE
    v uuid;
BEGIN
    SELECT b.booking_id INTO v FROM bookings b
     WHERE b.community_id = p_community AND b.patient_id = p_patient AND b.kind = s.kind
       AND b.status = 'booked' AND b.period && tstzrange(s.starts_at, s.ends_at)
     LIMIT 1;
    RETURN v;
END $$;

CREATE FUNCTION book_batch(
    p_community text, p_terminals text[], p_institutions text[], p_roles terminal_role[],
    p_practitioners text[], p_sessions bigint[], p_patients uuid[], p_pools text[],
    p_fallbacks boolean[], p_keys text[])
RETURNS TABLE (idx integer, outcome text, booking_id uuid, pool text, detail text,
               reserved_left integer, public_left integer, replayed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    n integer := cardinality(p_sessions);
    c communities;
    -- The items decided here (the "simple" ones), in batch order.
    si integer[];          -- their positions in the arguments
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

    -- Claim the keys of the requests that may be simple (a patient's first in
    -- the batch, a key's first). A key claimed by a transaction still running
    -- makes this wait for it, as in book_slot. Those whose key was new are
    -- decided here; the others (a key seen before: a replay; a key or a
    -- patient seen earlier in the batch) go to book_slot, which claims or
    -- replays their keys itself.
    WITH items AS (
        SELECT u.ord::integer AS i, u.term, u.key, u.patient,
               md5(concat_ws('|', u.sess, u.patient, u.pool, u.fallback, NULL::uuid)) AS hash,
               row_number() OVER (PARTITION BY u.term, u.key ORDER BY u.ord) AS key_nth,
               row_number() OVER (PARTITION BY u.patient ORDER BY u.ord) AS patient_nth
          FROM unnest(p_terminals, p_keys, p_patients, p_sessions, p_pools, p_fallbacks)
               WITH ORDINALITY AS u(term, key, patient, sess, pool, fallback, ord)
    ), claimed AS (
        INSERT INTO idempotency_keys (community_id, terminal_id, idem_key, request_hash)
        SELECT p_community, it.term, it.key, it.hash FROM items it
         WHERE it.key_nth = 1 AND it.patient_nth = 1
         ORDER BY it.term, it.key
        ON CONFLICT DO NOTHING
        RETURNING terminal_id, idem_key
    )
    SELECT array_agg(it.i ORDER BY it.i) FILTER (WHERE cl.idem_key IS NOT NULL AND it.key_nth = 1
                                                  AND it.patient_nth = 1),
           array_agg(it.i ORDER BY it.i) FILTER (WHERE NOT (cl.idem_key IS NOT NULL
                                                  AND it.key_nth = 1 AND it.patient_nth = 1))
      INTO si, tail
      FROM items it LEFT JOIN claimed cl ON cl.terminal_id = it.term AND cl.idem_key = it.key;
    si := coalesce(si, '{}'); tail := coalesce(tail, '{}');

    SELECT * INTO c FROM communities WHERE community_id = p_community;

    -- Lock the batch's sessions, in session_id order, and read them.
    --
    -- Patients are not locked, unlike in book_slot: two transactions booking
    -- one patient into overlapping sessions at the same moment meet the
    -- exclusion constraint on bookings, which refuses the later one; this
    -- batch then fails as a whole and the daemon books its requests one by
    -- one through book_slot, which locks the patient and names the booking
    -- in the way. That race is rare; a row lock per patient, written to the
    -- WAL, would be paid by every booking.
    SELECT array_agg(x.session_id ORDER BY x.session_id), array_agg(x.kind ORDER BY x.session_id),
           array_agg(x.starts_at ORDER BY x.session_id), array_agg(x.ends_at ORDER BY x.session_id),
           array_agg(x.status = 'open' ORDER BY x.session_id),
           array_agg(x.capacity ORDER BY x.session_id),
           array_agg(x.reserved_capacity ORDER BY x.session_id),
           array_agg(x.reserved_booked ORDER BY x.session_id),
           array_agg(x.public_booked ORDER BY x.session_id)
      INTO s_id, s_kind, s_starts, s_ends, s_open, s_cap, s_rcap, s_rb, s_pb
      FROM (SELECT * FROM sessions y
             WHERE y.community_id = p_community AND y.session_id = ANY (p_sessions)
             ORDER BY y.session_id FOR UPDATE) x;
    s_id := coalesce(s_id, '{}');

    -- What each simple request needs to know, read in one statement.
    SELECT array_agg(array_position(s_id, p_sessions[q.i]) ORDER BY q.ord),
           array_agg(EXISTS (SELECT 1 FROM patients pt WHERE pt.community_id = p_community
                               AND pt.patient_id = p_patients[q.i]) ORDER BY q.ord),
           array_agg((SELECT b.booking_id FROM sessions x JOIN bookings b
                        ON b.community_id = x.community_id AND b.patient_id = p_patients[q.i]
                       AND b.kind = x.kind AND b.status = 'booked'
                       AND b.period && tstzrange(x.starts_at, x.ends_at)
                      WHERE x.community_id = p_community AND x.session_id = p_sessions[q.i]
                      LIMIT 1) ORDER BY q.ord)
      INTO s_pos, known, other
      FROM unnest(si) WITH ORDINALITY AS q(i, ord);

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
    -- (the CHECKs on sessions still guard them), the keys' outcomes.
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

    UPDATE idempotency_keys k
       SET outcome = o_outcome[q.ord], booking_id = o_booking[q.ord], detail = o_detail[q.ord]
      FROM unnest(si) WITH ORDINALITY AS q(i, ord)
     WHERE k.community_id = p_community AND k.terminal_id = p_terminals[q.i]
       AND k.idem_key = p_keys[q.i];

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
