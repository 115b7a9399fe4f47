-- 002: reserved slot pools: sessions, bookings, releases, idempotency.
--
-- The invariants live here, not in C:
--   * per session, reserved_booked <= reserved_capacity and
--     public_booked <= capacity - reserved_capacity (CHECKs), so reserved +
--     public = capacity by construction and no pool is ever overbooked;
--   * a patient holds at most one live booking per session and none in
--     overlapping sessions of the same kind (exclusion constraint);
--   * every change of a session's counters happens with the session row
--     locked, inside one function call = one transaction.
-- Business refusals (full, not permitted, ...) are returned as an outcome,
-- not raised, so that they can be stored with the idempotency key and
-- replayed exactly.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TYPE resource_kind AS ENUM ('expert', 'exam', 'bed');
CREATE TYPE booking_pool AS ENUM ('reserved', 'public', 'emergency');
CREATE TYPE booking_status AS ENUM ('booked', 'cancelled', 'session_cancelled');

ALTER TABLE communities ADD COLUMN timezone text NOT NULL DEFAULT 'Asia/Shanghai';

CREATE FUNCTION community_release_lead(c communities, k resource_kind) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$
    SELECT make_interval(mins => CASE k WHEN 'expert' THEN c.release_lead_expert_min
                                        WHEN 'exam' THEN c.release_lead_exam_min
                                        ELSE c.release_lead_bed_min END)
$$;

CREATE TABLE sessions (
    community_id      text NOT NULL,
    session_id        bigint GENERATED ALWAYS AS IDENTITY,
    institution_id    text NOT NULL,
    department_id     text NOT NULL,
    kind              resource_kind NOT NULL,
    -- expert: a practitioner_id; exam: the device (e.g. "ct-1"); bed: the ward.
    resource_id       text NOT NULL CHECK (resource_id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz NOT NULL,
    status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cancelled')),
    capacity          integer NOT NULL CHECK (capacity BETWEEN 1 AND 10000),
    -- The reserved share as published (compliance is measured on it), and
    -- the capacity it was published for: capacity changes keep that ratio.
    reserved_initial  integer NOT NULL,
    capacity_published integer NOT NULL,
    -- Units in the reserved pool now; shrinks when unbooked units are released.
    reserved_capacity integer NOT NULL,
    reserved_booked   integer NOT NULL DEFAULT 0,
    public_booked     integer NOT NULL DEFAULT 0,
    -- Audited emergency bookings beyond capacity (green channel).
    emergency_booked  integer NOT NULL DEFAULT 0 CHECK (emergency_booked >= 0),
    release_at        timestamptz NOT NULL,
    released_at       timestamptz,
    released_count    integer NOT NULL DEFAULT 0,
    published_by      text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    cancelled_at      timestamptz,
    cancel_reason     text,
    PRIMARY KEY (community_id, session_id),
    FOREIGN KEY (community_id, institution_id, department_id) REFERENCES departments,
    CHECK (ends_at > starts_at),
    CHECK (reserved_initial BETWEEN 0 AND capacity_published),
    CHECK (reserved_capacity BETWEEN 0 AND capacity),
    CHECK (reserved_booked BETWEEN 0 AND reserved_capacity),
    CHECK (public_booked BETWEEN 0 AND capacity - reserved_capacity)
);
CREATE INDEX sessions_search ON sessions (community_id, institution_id, starts_at);
CREATE INDEX sessions_release_due ON sessions (release_at) WHERE released_at IS NULL AND status = 'open';

CREATE TABLE bookings (
    community_id      text NOT NULL,
    booking_id        uuid NOT NULL DEFAULT gen_random_uuid(),
    session_id        bigint NOT NULL,
    patient_id        uuid NOT NULL,
    pool              booking_pool NOT NULL,
    status            booking_status NOT NULL DEFAULT 'booked',
    -- Copied from the session for the overlap constraint.
    kind              resource_kind NOT NULL,
    period            tstzrange NOT NULL,
    booked_by_terminal    text NOT NULL,
    booked_by_institution text NOT NULL,
    practitioner_id   text,
    referral_id       uuid,
    emergency_reason  text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    cancelled_at      timestamptz,
    cancelled_by_terminal text,
    cancel_reason     text,
    PRIMARY KEY (community_id, booking_id),
    FOREIGN KEY (community_id, session_id) REFERENCES sessions,
    FOREIGN KEY (community_id, patient_id) REFERENCES patients,
    CHECK (pool <> 'emergency' OR emergency_reason IS NOT NULL),
    -- One live booking per patient per session, none in overlapping sessions
    -- of the same kind.
    EXCLUDE USING gist (community_id WITH =, patient_id WITH =, kind WITH =, period WITH &&)
        WHERE (status = 'booked')
);
CREATE INDEX bookings_session ON bookings (community_id, session_id);
CREATE INDEX bookings_booker ON bookings (community_id, booked_by_institution, created_at);

-- Every release of reserved capacity to the public pool.
CREATE TABLE releases (
    community_id  text NOT NULL,
    release_id    bigint GENERATED ALWAYS AS IDENTITY,
    session_id    bigint NOT NULL,
    released_count integer NOT NULL CHECK (released_count >= 0),
    due_at        timestamptz NOT NULL,
    released_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, release_id),
    UNIQUE (community_id, session_id),
    FOREIGN KEY (community_id, session_id) REFERENCES sessions
);

-- Idempotency: the key, a hash of the request, and the outcome, stored in
-- the same transaction as the booking itself.
CREATE TABLE idempotency_keys (
    community_id  text NOT NULL,
    terminal_id   text NOT NULL,
    idem_key      text NOT NULL CHECK (length(idem_key) BETWEEN 1 AND 128),
    request_hash  text NOT NULL,
    outcome       text,
    booking_id    uuid,
    detail        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, terminal_id, idem_key)
);

-- ---- publishing --------------------------------------------------------------

-- Minimum reserved units for a capacity under a floor: ceil(capacity * pct / 100),
-- in integers.
CREATE FUNCTION reserve_minimum(capacity integer, floor_pct integer) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT (capacity * floor_pct + 99) / 100 $$;

-- Publishes one session per start time. reserved_slots > 0 asks for that many
-- reserved units, reserved_pct > 0 for that share; neither: the floor.
CREATE FUNCTION publish_sessions(
    p_community text, p_terminal text, p_institution text, p_department text,
    p_kind resource_kind, p_resource text, p_capacity integer,
    p_reserved_slots integer, p_reserved_pct integer,
    p_starts timestamptz[], p_ends timestamptz[])
RETURNS SETOF sessions
LANGUAGE plpgsql AS $$
DECLARE
    c communities;
    v_min integer;
    v_reserved integer;
BEGIN
    SELECT * INTO c FROM communities WHERE community_id = p_community;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown community %', p_community USING ERRCODE = 'RNFND';
    END IF;
    IF p_capacity IS NULL OR p_capacity < 1 OR p_capacity > 10000 THEN
        RAISE EXCEPTION 'capacity must be between 1 and 10000' USING ERRCODE = 'RINVA', COLUMN = 'capacity';
    END IF;
    IF coalesce(array_length(p_starts, 1), 0) = 0 OR array_length(p_starts, 1) > 1000 THEN
        RAISE EXCEPTION 'between 1 and 1000 sessions per request' USING ERRCODE = 'RINVA', COLUMN = 'when';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM departments d WHERE d.community_id = p_community
                   AND d.institution_id = p_institution AND d.department_id = p_department) THEN
        RAISE EXCEPTION 'no department % at %', p_department, p_institution
            USING ERRCODE = 'RNFND', COLUMN = 'department_id';
    END IF;
    IF p_kind = 'expert' AND NOT EXISTS (SELECT 1 FROM practitioners p
            WHERE p.community_id = p_community AND p.practitioner_id = p_resource
              AND p.institution_id = p_institution AND p.kind = 'expert') THEN
        RAISE EXCEPTION 'no expert % at %', p_resource, p_institution
            USING ERRCODE = 'RNFND', COLUMN = 'resource_id';
    END IF;
    v_min := reserve_minimum(p_capacity, c.reserve_floor_pct);
    v_reserved := CASE WHEN p_reserved_slots > 0 THEN p_reserved_slots
                       WHEN p_reserved_pct > 0 THEN reserve_minimum(p_capacity, p_reserved_pct)
                       ELSE v_min END;
    IF v_reserved < v_min THEN
        RAISE EXCEPTION '%', format('reserved share below the policy floor: %s reserves at least %s%% of capacity, so at least %s of %s slots (asked for %s)',
            c.province, c.reserve_floor_pct, v_min, p_capacity, v_reserved)
            USING ERRCODE = 'RINVA', COLUMN = 'reserved_slots';
    END IF;
    IF v_reserved > p_capacity THEN
        RAISE EXCEPTION 'reserved (%) exceeds capacity (%)', v_reserved, p_capacity
            USING ERRCODE = 'RINVA', COLUMN = 'reserved_slots';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_starts, p_ends) AS t(s, e) WHERE e <= s OR s <= now()) THEN
        RAISE EXCEPTION 'every session must end after it starts and start in the future'
            USING ERRCODE = 'RINVA', COLUMN = 'when';
    END IF;
    RETURN QUERY
    INSERT INTO sessions AS s (community_id, institution_id, department_id, kind, resource_id,
                          starts_at, ends_at, capacity, reserved_initial, capacity_published,
                          reserved_capacity, release_at, published_by)
    SELECT p_community, p_institution, p_department, p_kind, p_resource, t.s, t.e,
           p_capacity, v_reserved, p_capacity, v_reserved,
           t.s - community_release_lead(c, p_kind), p_terminal
      FROM unnest(p_starts, p_ends) AS t(s, e)
    RETURNING *;
END $$;

-- Weekly pattern: days is a set of ISO weekdays (1 = Monday), times are local
-- to the community.
CREATE FUNCTION weekly_starts(p_community text, p_from date, p_weeks integer, p_days integer[],
                              p_start time, p_end time, OUT starts timestamptz[], OUT ends timestamptz[])
LANGUAGE sql STABLE AS $$
    SELECT array_agg(((d + p_start) AT TIME ZONE c.timezone) ORDER BY d),
           array_agg(((d + p_end) AT TIME ZONE c.timezone) ORDER BY d)
      FROM communities c,
           generate_series(p_from, p_from + 7 * p_weeks - 1, interval '1 day') AS g(ts),
           LATERAL (SELECT g.ts::date AS d) x
     WHERE c.community_id = p_community
       AND extract(isodow FROM d)::integer = ANY (p_days)
$$;

-- Changes the capacity of a future session, keeping its reserved share.
CREATE FUNCTION change_session_capacity(p_community text, p_institution text, p_session bigint,
                                        p_capacity integer)
RETURNS SETOF sessions LANGUAGE plpgsql AS $$
DECLARE
    s sessions;
    v_floor integer;
    v_reserved integer;
BEGIN
    SELECT * INTO s FROM sessions WHERE community_id = p_community AND session_id = p_session
        FOR UPDATE;
    IF NOT FOUND OR (p_institution <> '' AND s.institution_id <> p_institution) THEN
        RAISE EXCEPTION 'no session %', p_session USING ERRCODE = 'RNFND', COLUMN = 'session_id';
    END IF;
    IF s.status <> 'open' OR s.starts_at <= now() THEN
        RAISE EXCEPTION 'session % is cancelled or has started', p_session USING ERRCODE = 'RSTAT';
    END IF;
    IF p_capacity < 1 OR p_capacity > 10000 THEN
        RAISE EXCEPTION 'capacity must be between 1 and 10000' USING ERRCODE = 'RINVA', COLUMN = 'capacity';
    END IF;
    SELECT reserve_floor_pct INTO v_floor FROM communities WHERE community_id = p_community;
    IF s.released_at IS NULL THEN
        -- Keep the share as first published (never below the floor),
        -- rounded up once: repeated changes cannot drift it upwards.
        v_reserved := least(p_capacity, greatest(reserve_minimum(p_capacity, v_floor),
            (p_capacity * s.reserved_initial + s.capacity_published - 1) / s.capacity_published));
    ELSE
        v_reserved := s.reserved_capacity;  -- released: the pool stays as it is
    END IF;
    IF s.reserved_booked > v_reserved OR s.public_booked > p_capacity - v_reserved THEN
        RAISE EXCEPTION 'capacity % is below what is booked (reserved % of %, public % of %)',
            p_capacity, s.reserved_booked, v_reserved, s.public_booked, p_capacity - v_reserved
            USING ERRCODE = 'RSTAT', COLUMN = 'capacity';
    END IF;
    RETURN QUERY UPDATE sessions SET capacity = p_capacity, reserved_capacity = v_reserved
     WHERE community_id = p_community AND session_id = p_session RETURNING *;
END $$;

-- Cancels a session; its live bookings are flagged, never dropped.
CREATE FUNCTION cancel_session(p_community text, p_institution text, p_terminal text,
                               p_session bigint, p_reason text)
RETURNS TABLE (session_id bigint, bookings_flagged integer) LANGUAGE plpgsql AS $$
DECLARE
    s sessions;
    n integer;
BEGIN
    -- The referrals of its live bookings first (lock order: referral, session).
    PERFORM booking_lock_referral(p_community, b.referral_id) FROM bookings b
      WHERE b.community_id = p_community AND b.session_id = p_session AND b.status = 'booked'
        AND b.referral_id IS NOT NULL ORDER BY b.referral_id;
    SELECT * INTO s FROM sessions x WHERE x.community_id = p_community AND x.session_id = p_session
        FOR UPDATE;
    IF NOT FOUND OR (p_institution <> '' AND s.institution_id <> p_institution) THEN
        RAISE EXCEPTION 'no session %', p_session USING ERRCODE = 'RNFND', COLUMN = 'session_id';
    END IF;
    IF coalesce(p_reason, '') = '' THEN
        RAISE EXCEPTION 'a reason is required' USING ERRCODE = 'RINVA', COLUMN = 'reason';
    END IF;
    IF s.status = 'cancelled' THEN
        RETURN QUERY SELECT p_session, 0;
        RETURN;
    END IF;
    UPDATE bookings b SET status = 'session_cancelled', cancelled_at = now(),
           cancelled_by_terminal = p_terminal, cancel_reason = p_reason
     WHERE b.community_id = p_community AND b.session_id = p_session AND b.status = 'booked';
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE sessions x SET status = 'cancelled', cancelled_at = now(), cancel_reason = p_reason
     WHERE x.community_id = p_community AND x.session_id = p_session;
    RETURN QUERY SELECT p_session, n;
END $$;

-- ---- booking -------------------------------------------------------------------

-- Locks the patient's row so that the bookings of one patient are taken one
-- at a time: the overlap check that follows then sees every committed booking
-- of the patient and can name the one in the way. Without it two overlapping
-- bookings racing on different sessions would both pass the check and one
-- would meet the exclusion constraint, which cannot say which booking it met.
-- FOR NO KEY UPDATE does not conflict with the FOR KEY SHARE locks of foreign
-- key checks, so nothing else waits on it. Sessions are always locked first.
CREATE FUNCTION lock_patient(p_community text, p_patient uuid) RETURNS boolean
LANGUAGE sql AS $$
    SELECT EXISTS (SELECT 1 FROM patients pt WHERE pt.community_id = p_community
                     AND pt.patient_id = p_patient FOR NO KEY UPDATE)
$$;

-- The patient's live booking of the same kind overlapping session s, if any.
CREATE FUNCTION overlapping_booking(p_community text, p_patient uuid, s sessions) RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT b.booking_id FROM bookings b
     WHERE b.community_id = p_community AND b.patient_id = p_patient AND b.kind = s.kind
       AND b.status = 'booked' AND b.period && tstzrange(s.starts_at, s.ends_at)
     LIMIT 1
$$;

-- Locks the referral a booking serves, before the session (lock order:
-- referral, session, booking). Referrals arrive in 003, which replaces this.
CREATE FUNCTION booking_lock_referral(p_community text, p_referral uuid) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN END $$;

-- Why p_referral may not back a booking of p_patient in session s, or NULL
-- when it may. Referrals arrive in 003, which replaces this placeholder.
CREATE FUNCTION booking_referral_problem(p_community text, p_referral uuid, p_patient uuid,
                                         s sessions, p_emergency boolean) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT NULL::text $$;

-- Outcomes: booked, full, not_permitted, closed, patient_conflict, not_found,
-- bad_referral, key_conflict. p_pool: 'auto' (family doctors: reserved; others: public),
-- 'reserved', 'public'. p_fallback: a reserved request may take a public unit.
CREATE FUNCTION book_slot(
    p_community text, p_terminal text, p_institution text, p_role terminal_role,
    p_practitioner text, p_session bigint, p_patient uuid, p_pool text, p_fallback boolean,
    p_referral uuid, p_key text)
RETURNS TABLE (outcome text, booking_id uuid, pool text, detail text, reserved_left integer,
               public_left integer, replayed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    s sessions;
    c communities;
    k idempotency_keys;
    v_pool booking_pool;
    v_outcome text;
    v_booking uuid;
    v_detail text;
    v_other uuid;
    -- What makes two requests "the same" for an idempotency key.
    p_hash text := md5(concat_ws('|', p_session, p_patient, p_pool, p_fallback, p_referral));
BEGIN
    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (community_id, terminal_id, idem_key, request_hash)
        VALUES (p_community, p_terminal, p_key, p_hash) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            -- The key exists (a concurrent holder has committed by now).
            SELECT * INTO k FROM idempotency_keys i WHERE i.community_id = p_community
               AND i.terminal_id = p_terminal AND i.idem_key = p_key;
            IF k.request_hash <> p_hash THEN
                RETURN QUERY SELECT 'key_conflict', NULL::uuid, NULL::text,
                    'idempotency key already used for a different request', 0, 0, false;
                RETURN;
            END IF;
            -- The same request names the same session: answer with its
            -- counts now, and the booking's pool and current status.
            SELECT * INTO s FROM sessions x WHERE x.community_id = p_community
               AND x.session_id = p_session;
            RETURN QUERY SELECT k.outcome, k.booking_id,
                (SELECT b.pool::text FROM bookings b WHERE b.community_id = p_community
                    AND b.booking_id = k.booking_id),
                CASE WHEN k.outcome = 'booked' THEN
                    (SELECT b.status::text FROM bookings b WHERE b.community_id = p_community
                        AND b.booking_id = k.booking_id)
                ELSE k.detail END,
                coalesce(s.reserved_capacity - s.reserved_booked, 0),
                coalesce(s.capacity - s.reserved_capacity - s.public_booked, 0), true;
            RETURN;
        END IF;
    END IF;

    SELECT * INTO c FROM communities WHERE community_id = p_community;
    -- The row lock orders every booking of this session.
    SELECT * INTO s FROM sessions x WHERE x.community_id = p_community AND x.session_id = p_session
        FOR UPDATE;
    IF NOT FOUND THEN
        v_outcome := 'not_found'; v_detail := format('no session %s', p_session);
    ELSIF s.status <> 'open' THEN
        v_outcome := 'closed'; v_detail := format('session %s is cancelled', p_session);
    ELSIF s.starts_at <= now() THEN
        v_outcome := 'closed'; v_detail := format('session %s has started', p_session);
    ELSIF NOT lock_patient(p_community, p_patient) THEN
        v_outcome := 'not_found'; v_detail := 'no such patient';
    ELSE
        v_other := overlapping_booking(p_community, p_patient, s);
        IF v_other IS NOT NULL THEN
            v_outcome := 'patient_conflict';
            v_detail := format('patient already holds booking %s in this or an overlapping session', v_other);
            v_booking := v_other;
        ELSIF p_referral IS NOT NULL THEN
            v_detail := booking_referral_problem(p_community, p_referral, p_patient, s, false);
            IF v_detail IS NOT NULL THEN
                v_outcome := 'bad_referral';
            END IF;
        END IF;
    END IF;

    IF v_outcome IS NULL THEN
        -- Choose the pool.
        IF p_pool = 'reserved' OR (p_pool = 'auto' AND p_role = 'clinic') THEN
            IF p_role <> 'clinic' THEN
                v_outcome := 'not_permitted';
                v_detail := 'the reserved pool is for family doctors (clinic terminals) only';
            ELSIF c.reserved_requires_referral AND p_referral IS NULL THEN
                -- The public remainder stays open to family doctors.
                IF p_fallback AND s.public_booked < s.capacity - s.reserved_capacity THEN
                    v_pool := 'public';
                ELSE
                    v_outcome := 'not_permitted';
                    v_detail := format('%s reserves these slots for referred patients: name the up-referral', c.province);
                END IF;
            ELSIF s.reserved_booked < s.reserved_capacity THEN
                v_pool := 'reserved';
            ELSIF p_fallback AND s.public_booked < s.capacity - s.reserved_capacity THEN
                v_pool := 'public';
            END IF;
        ELSIF p_pool IN ('public', 'auto') THEN
            IF s.public_booked < s.capacity - s.reserved_capacity THEN
                v_pool := 'public';
            END IF;
        ELSE
            RAISE EXCEPTION 'pool must be auto, reserved or public' USING ERRCODE = 'RINVA', COLUMN = 'pool';
        END IF;
        IF v_outcome IS NULL AND v_pool IS NULL THEN
            v_outcome := 'full';
            v_detail := format('no %s capacity left in session %s',
                               CASE WHEN p_pool = 'public' OR p_role <> 'clinic' THEN 'public' ELSE 'reserved' END,
                               p_session);
        END IF;
    END IF;

    IF v_outcome IS NULL THEN
        INSERT INTO bookings (community_id, session_id, patient_id, pool, kind, period,
                              booked_by_terminal, booked_by_institution, practitioner_id, referral_id)
        VALUES (p_community, p_session, p_patient, v_pool, s.kind, tstzrange(s.starts_at, s.ends_at),
                p_terminal, p_institution, nullif(p_practitioner, ''), p_referral)
        RETURNING bookings.booking_id INTO v_booking;
        IF v_pool = 'reserved' THEN
            UPDATE sessions x SET reserved_booked = x.reserved_booked + 1
             WHERE x.community_id = p_community AND x.session_id = p_session
             RETURNING * INTO s;
        ELSE
            UPDATE sessions x SET public_booked = x.public_booked + 1
             WHERE x.community_id = p_community AND x.session_id = p_session
             RETURNING * INTO s;
        END IF;
        v_outcome := 'booked';
    END IF;

    IF p_key IS NOT NULL THEN
        UPDATE idempotency_keys i SET outcome = v_outcome, booking_id = v_booking, detail = v_detail
         WHERE i.community_id = p_community AND i.terminal_id = p_terminal AND i.idem_key = p_key;
    END IF;
    RETURN QUERY SELECT v_outcome, v_booking, v_pool::text, v_detail,
        coalesce(s.reserved_capacity - s.reserved_booked, 0),
        coalesce(s.capacity - s.reserved_capacity - s.public_booked, 0), false;
END $$;

-- Cancels a booking, returning the unit to the pool it came from (to public
-- when the reserved share has been released). Cancelling twice is harmless.
-- p_institution '' means any (admin); otherwise the booking must have been
-- made by that institution or be for a session of it.
CREATE FUNCTION cancel_booking(p_community text, p_terminal text, p_institution text,
                               p_booking uuid, p_reason text)
RETURNS TABLE (booking_id uuid, session_id bigint, pool text, status text, already boolean)
LANGUAGE plpgsql AS $$
DECLARE
    b bookings;
    s sessions;
BEGIN
    SELECT * INTO b FROM bookings x WHERE x.community_id = p_community AND x.booking_id = p_booking;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no booking %', p_booking USING ERRCODE = 'RNFND', COLUMN = 'booking_id';
    END IF;
    IF b.referral_id IS NOT NULL THEN
        PERFORM booking_lock_referral(p_community, b.referral_id);
    END IF;
    -- Lock the session first, as booking does, then re-read the booking.
    SELECT * INTO s FROM sessions x WHERE x.community_id = p_community AND x.session_id = b.session_id
        FOR UPDATE;
    SELECT * INTO b FROM bookings x WHERE x.community_id = p_community AND x.booking_id = p_booking
        FOR UPDATE;
    IF p_institution <> '' AND b.booked_by_institution <> p_institution
       AND s.institution_id <> p_institution THEN
        RAISE EXCEPTION 'no booking %', p_booking USING ERRCODE = 'RNFND', COLUMN = 'booking_id';
    END IF;
    IF b.status <> 'booked' THEN
        RETURN QUERY SELECT b.booking_id, b.session_id, b.pool::text, b.status::text, true;
        RETURN;
    END IF;
    UPDATE bookings x SET status = 'cancelled', cancelled_at = now(), cancelled_by_terminal = p_terminal,
           cancel_reason = nullif(p_reason, '')
     WHERE x.community_id = p_community AND x.booking_id = p_booking;
    UPDATE sessions x SET
        reserved_booked = x.reserved_booked - (b.pool = 'reserved')::integer,
        -- After the release the reserved pool holds only booked units: a
        -- cancelled one goes to the public pool.
        reserved_capacity = x.reserved_capacity
            - (b.pool = 'reserved' AND x.released_at IS NOT NULL)::integer,
        public_booked = x.public_booked - (b.pool = 'public')::integer,
        emergency_booked = x.emergency_booked - (b.pool = 'emergency')::integer
     WHERE x.community_id = p_community AND x.session_id = b.session_id;
    RETURN QUERY SELECT b.booking_id, b.session_id, b.pool::text, 'cancelled'::text, false;
END $$;

-- The only way past capacity: an audited emergency booking by a referral desk.
CREATE FUNCTION book_emergency(p_community text, p_terminal text, p_institution text,
                               p_session bigint, p_patient uuid, p_referral uuid, p_reason text)
RETURNS TABLE (booking_id uuid) LANGUAGE plpgsql AS $$
DECLARE
    s sessions;
    v_booking uuid;
    v_other uuid;
    v_detail text;
BEGIN
    IF coalesce(p_reason, '') = '' THEN
        RAISE EXCEPTION 'an emergency booking needs a reason' USING ERRCODE = 'RINVA', COLUMN = 'reason';
    END IF;
    SELECT * INTO s FROM sessions x WHERE x.community_id = p_community AND x.session_id = p_session
        FOR UPDATE;
    IF NOT FOUND OR s.institution_id <> p_institution THEN
        RAISE EXCEPTION 'no session % at your institution', p_session USING ERRCODE = 'RNFND', COLUMN = 'session_id';
    END IF;
    IF s.status <> 'open' OR s.ends_at <= now() THEN
        RAISE EXCEPTION 'session % is cancelled or over', p_session USING ERRCODE = 'RSTAT';
    END IF;
    IF NOT lock_patient(p_community, p_patient) THEN
        RAISE EXCEPTION 'no such patient' USING ERRCODE = 'RNFND', COLUMN = 'patient_id';
    END IF;
    v_other := overlapping_booking(p_community, p_patient, s);
    IF v_other IS NOT NULL THEN
        RAISE EXCEPTION 'patient already holds booking % in this or an overlapping session', v_other
            USING ERRCODE = 'RCONF', COLUMN = 'patient_id';
    END IF;
    v_detail := booking_referral_problem(p_community, p_referral, p_patient, s, true);
    IF v_detail IS NOT NULL THEN
        RAISE EXCEPTION '%', v_detail USING ERRCODE = 'RSTAT', COLUMN = 'referral_id';
    END IF;
    INSERT INTO bookings (community_id, session_id, patient_id, pool, kind, period,
                          booked_by_terminal, booked_by_institution, referral_id, emergency_reason)
    VALUES (p_community, p_session, p_patient, 'emergency', s.kind, tstzrange(s.starts_at, s.ends_at),
            p_terminal, p_institution, p_referral, p_reason)
    RETURNING bookings.booking_id INTO v_booking;
    UPDATE sessions x SET emergency_booked = x.emergency_booked + 1
     WHERE x.community_id = p_community AND x.session_id = p_session;
    RETURN QUERY SELECT v_booking;
END $$;

-- ---- release -------------------------------------------------------------------

-- Moves unbooked reserved capacity of every due session to the public pool,
-- once: the released_at IS NULL test is re-checked under the row lock, and
-- SKIP LOCKED lets several daemons share the work without waiting.
CREATE FUNCTION release_due(p_limit integer)
RETURNS TABLE (community_id text, session_id bigint, released_count integer)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT x.community_id, x.session_id FROM sessions x
         WHERE x.released_at IS NULL AND x.status = 'open' AND x.release_at <= now()
         ORDER BY x.release_at
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE sessions x
           SET released_count = x.reserved_capacity - x.reserved_booked,
               reserved_capacity = x.reserved_booked,
               released_at = now()
          FROM due
         WHERE x.community_id = due.community_id AND x.session_id = due.session_id
           AND x.released_at IS NULL
        RETURNING x.community_id, x.session_id, x.released_count, x.release_at
    ), recorded AS (
        INSERT INTO releases (community_id, session_id, released_count, due_at)
        SELECT m.community_id, m.session_id, m.released_count, m.release_at FROM moved m
        RETURNING releases.community_id, releases.session_id, releases.released_count
    )
    SELECT * FROM recorded
$$;
