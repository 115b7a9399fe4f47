-- 003: two-way referral: up- and down-referrals, their one state machine,
-- their append-only history, and the events that announce them.
--
-- The invariants live here:
--   * a referral's state moves only along a row of referral_transitions, with
--     the referral row locked, so two clerks acting at once serialize and the
--     second sees the first's result;
--   * referral_history is append-only (a trigger refuses UPDATE and DELETE);
--   * events are numbered per community in commit order (a counter row held
--     until commit), so a subscriber resuming after number N misses nothing.

CREATE TYPE referral_direction AS ENUM ('up', 'down');
CREATE TYPE referral_urgency AS ENUM ('routine', 'urgent', 'emergency');
CREATE TYPE referral_state AS ENUM (
    'pending',       -- sent, the receiving side has not acted
    'waiting_slot',  -- up: accepted in principle, no slot yet (the "no slot yet" list)
    'accepted',      -- up: a slot is confirmed; down: the clinic took the patient
    'rejected', 'redirected', 'returned', 'declined', 'cancelled',
    'arrived', 'admitted', 'discharged', 'no_show',
    'followed_up',   -- down: the family doctor has seen the patient at least once
    'completed');

ALTER TABLE communities
    -- Referrals between institutions of the same level (township to township).
    ADD COLUMN allow_same_level_referral boolean NOT NULL DEFAULT false,
    -- Pending referrals older than this are flagged for escalation.
    ADD COLUMN escalate_emergency_min integer NOT NULL DEFAULT 15 CHECK (escalate_emergency_min > 0),
    ADD COLUMN escalate_urgent_min integer NOT NULL DEFAULT 120 CHECK (escalate_urgent_min > 0),
    ADD COLUMN escalate_routine_min integer NOT NULL DEFAULT 2880 CHECK (escalate_routine_min > 0),
    -- An accepted referral whose booked session ended this long ago without
    -- an arrival becomes a no-show.
    ADD COLUMN no_show_grace_min integer NOT NULL DEFAULT 120 CHECK (no_show_grace_min >= 0);

-- The state machine: the only legal moves. side says whose terminal may make
-- the move: 'target' (the receiving institution), 'origin' (the referring
-- one) or 'system' (the daemon's timer). Admins may make any move but the
-- system's. docs/referrals.md draws this table; a test keeps them equal.
CREATE TABLE referral_transitions (
    direction   referral_direction NOT NULL,
    action      text NOT NULL,
    from_state  referral_state NOT NULL,
    to_state    referral_state NOT NULL,
    side        text NOT NULL CHECK (side IN ('target', 'origin', 'system')),
    reason_required boolean NOT NULL,
    PRIMARY KEY (direction, action, from_state)
);

INSERT INTO referral_transitions VALUES
    ('up', 'accept',          'pending',      'accepted',     'target', false),
    ('up', 'accept',          'waiting_slot', 'accepted',     'target', false),
    ('up', 'no_slot',         'pending',      'waiting_slot', 'target', false),
    ('up', 'reject',          'pending',      'rejected',     'target', true),
    ('up', 'reject',          'waiting_slot', 'rejected',     'target', true),
    ('up', 'redirect',        'pending',      'redirected',   'target', true),
    ('up', 'redirect',        'waiting_slot', 'redirected',   'target', true),
    ('up', 'return',          'waiting_slot', 'returned',     'target', true),
    ('up', 'arrive',          'accepted',     'arrived',      'target', false),
    ('up', 'admit',           'accepted',     'admitted',     'target', false),
    ('up', 'admit',           'arrived',      'admitted',     'target', false),
    ('up', 'discharge',       'admitted',     'discharged',   'target', false),
    ('up', 'complete',        'arrived',      'completed',    'target', false),
    ('up', 'complete',        'discharged',   'completed',    'target', false),
    ('up', 'no_show',         'accepted',     'no_show',      'system', false),
    -- The booking of a live referral was cancelled (session cancelled, ...).
    ('up', 'slot_lost',       'pending',      'waiting_slot', 'system', false),
    ('up', 'slot_lost',       'accepted',     'waiting_slot', 'system', false),
    ('up', 'reverse_no_show', 'no_show',      'arrived',      'target', true),
    ('up', 'cancel',          'pending',      'cancelled',    'origin', false),
    ('up', 'cancel',          'waiting_slot', 'cancelled',    'origin', false),
    ('up', 'cancel',          'accepted',     'cancelled',    'origin', false),
    ('down', 'accept',        'pending',      'accepted',     'target', false),
    ('down', 'decline',       'pending',      'declined',     'target', true),
    ('down', 'follow_up',     'accepted',     'followed_up',  'target', true),
    ('down', 'follow_up',     'followed_up',  'followed_up',  'target', true),
    ('down', 'complete',      'followed_up',  'completed',    'target', false),
    ('down', 'cancel',        'pending',      'cancelled',    'origin', false),
    ('down', 'cancel',        'accepted',     'cancelled',    'origin', false);

-- States from which a referral's booked slot is still wanted.
CREATE FUNCTION referral_state_live(s referral_state) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT s IN ('pending', 'waiting_slot', 'accepted') $$;

CREATE TABLE referrals (
    community_id      text NOT NULL,
    -- Random, so that ids on the wire give nothing away.
    referral_id       uuid NOT NULL DEFAULT gen_random_uuid(),
    direction         referral_direction NOT NULL,
    state             referral_state NOT NULL DEFAULT 'pending',
    urgency           referral_urgency NOT NULL DEFAULT 'routine',
    patient_id        uuid NOT NULL,
    from_institution  text NOT NULL,
    from_department   text,
    from_practitioner text,
    from_terminal     text NOT NULL,
    to_institution    text NOT NULL,
    to_department     text,
    -- ICD-10: a letter, two digits, optionally a dot and up to four more.
    diagnosis         text NOT NULL CHECK (diagnosis ~ '^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$'),
    reason            text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    care_plan         text CHECK (length(care_plan) <= 4000),
    follow_up_due     date,
    booking_id        uuid,
    redirected_from   uuid,
    redirected_to     uuid,
    closes_referral   uuid,
    version           integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    state_changed_at  timestamptz NOT NULL DEFAULT now(),
    escalated_at      timestamptz,
    follow_up_overdue_at timestamptz,
    last_follow_up_at timestamptz,
    PRIMARY KEY (community_id, referral_id),
    FOREIGN KEY (community_id, patient_id) REFERENCES patients,
    FOREIGN KEY (community_id, from_institution) REFERENCES institutions,
    FOREIGN KEY (community_id, to_institution) REFERENCES institutions,
    FOREIGN KEY (community_id, from_practitioner) REFERENCES practitioners,
    FOREIGN KEY (community_id, to_institution, to_department) REFERENCES departments,
    FOREIGN KEY (community_id, booking_id) REFERENCES bookings,
    FOREIGN KEY (community_id, redirected_from) REFERENCES referrals,
    FOREIGN KEY (community_id, redirected_to) REFERENCES referrals,
    FOREIGN KEY (community_id, closes_referral) REFERENCES referrals,
    CHECK (direction = 'down' OR follow_up_due IS NULL),
    CHECK (from_institution <> to_institution)
);
-- The worklists: by receiving and by referring institution, most urgent and
-- newest first.
CREATE INDEX referrals_to ON referrals (community_id, to_institution, urgency DESC, created_at DESC);
CREATE INDEX referrals_from ON referrals (community_id, from_institution, urgency DESC, created_at DESC);
-- The timer's scans touch only the few referrals still waiting.
CREATE INDEX referrals_waiting ON referrals (created_at)
    WHERE state IN ('pending', 'waiting_slot') AND escalated_at IS NULL;
CREATE INDEX referrals_accepted ON referrals (community_id, booking_id) WHERE state = 'accepted';

-- A booking made for a referral names it.
ALTER TABLE bookings ADD FOREIGN KEY (community_id, referral_id) REFERENCES referrals;

-- Every move of every referral, never updated or deleted.
CREATE TABLE referral_history (
    community_id    text NOT NULL,
    referral_id     uuid NOT NULL,
    seq             integer NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    action          text NOT NULL,
    from_state      referral_state,
    to_state        referral_state NOT NULL,
    terminal_id     text,            -- NULL: the daemon's timer
    role            text NOT NULL,   -- a terminal role, or 'system'
    institution_id  text,
    practitioner_id text,
    reason          text,
    booking_id      uuid,
    PRIMARY KEY (community_id, referral_id, seq),
    FOREIGN KEY (community_id, referral_id) REFERENCES referrals
);

CREATE FUNCTION referral_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'referral history is append-only' USING ERRCODE = 'RPERM';
END $$;
CREATE TRIGGER referral_history_no_change BEFORE UPDATE OR DELETE ON referral_history
    FOR EACH ROW EXECUTE FUNCTION referral_history_append_only();
CREATE TRIGGER referral_history_no_truncate BEFORE TRUNCATE ON referral_history
    FOR EACH STATEMENT EXECUTE FUNCTION referral_history_append_only();

-- ---- events ------------------------------------------------------------------------

-- One counter per community: taking the next number locks the row until
-- commit, so numbers become visible in order and a reader that has seen N
-- has seen everything below N.
CREATE TABLE event_counters (
    community_id text PRIMARY KEY REFERENCES communities,
    last_seq     bigint NOT NULL DEFAULT 0
);

CREATE TABLE events (
    community_id     text NOT NULL,
    seq              bigint NOT NULL,
    at               timestamptz NOT NULL DEFAULT now(),
    kind             text NOT NULL,
    -- Who is told: the subscribers of these institutions.
    from_institution text,
    to_institution   text,
    referral_id      uuid,
    booking_id       uuid,
    state            text,
    detail           text,
    PRIMARY KEY (community_id, seq)
);

-- Appends an event and wakes every daemon's listener (delivered at commit).
CREATE FUNCTION emit_event(p_community text, p_kind text, p_from text, p_to text,
                           p_referral uuid, p_booking uuid, p_state text, p_detail text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
BEGIN
    INSERT INTO event_counters AS e (community_id, last_seq) VALUES (p_community, 1)
    ON CONFLICT (community_id) DO UPDATE SET last_seq = e.last_seq + 1
    RETURNING e.last_seq INTO v_seq;
    INSERT INTO events (community_id, seq, kind, from_institution, to_institution,
                        referral_id, booking_id, state, detail)
    VALUES (p_community, v_seq, p_kind, p_from, p_to, p_referral, p_booking, p_state, p_detail);
    PERFORM pg_notify('referral_events', p_community);
    RETURN v_seq;
END $$;

-- ---- helpers -----------------------------------------------------------------------

CREATE FUNCTION referral_row_event(r referrals, p_kind text, p_detail text) RETURNS void
LANGUAGE sql AS $$
    SELECT emit_event(r.community_id, p_kind, r.from_institution, r.to_institution,
                      r.referral_id, r.booking_id, r.state::text, p_detail)
$$;

CREATE FUNCTION referral_record(r referrals, p_action text, p_from referral_state,
                                p_terminal text, p_role text, p_institution text,
                                p_practitioner text, p_reason text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO referral_history (community_id, referral_id, seq, action, from_state, to_state,
                                  terminal_id, role, institution_id, practitioner_id, reason,
                                  booking_id)
    SELECT r.community_id, r.referral_id,
           coalesce(max(h.seq), 0) + 1, p_action, p_from, r.state, p_terminal, p_role,
           p_institution, nullif(p_practitioner, ''), nullif(p_reason, ''), r.booking_id
      FROM referral_history h
     WHERE h.community_id = r.community_id AND h.referral_id = r.referral_id;
    SELECT referral_row_event(r, 'referral.' || p_action, nullif(p_reason, ''));
$$;

-- Why a referral from institution p_from to p_to is not allowed, or NULL.
CREATE FUNCTION referral_route_problem(p_community text, p_direction referral_direction,
                                       p_from text, p_to text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f institutions;
    t institutions;
    c communities;
BEGIN
    SELECT * INTO f FROM institutions i WHERE i.community_id = p_community AND i.institution_id = p_from;
    SELECT * INTO t FROM institutions i WHERE i.community_id = p_community AND i.institution_id = p_to;
    SELECT * INTO c FROM communities x WHERE x.community_id = p_community;
    IF t.institution_id IS NULL THEN
        RETURN format('no institution %s in this community', p_to);
    ELSIF NOT t.in_network THEN
        RETURN format('%s is outside the community''s referral network', p_to);
    ELSIF p_from = p_to THEN
        RETURN 'a referral goes to another institution';
    ELSIF t.level = f.level THEN
        IF NOT c.allow_same_level_referral THEN
            RETURN format('%s and %s are both %s level and this community does not allow same-level referrals',
                          p_from, p_to, f.level);
        END IF;
    ELSIF p_direction = 'up' AND t.level < f.level THEN
        RETURN format('an up-referral goes to a higher level: %s is %s, %s is %s',
                      p_to, t.level, p_from, f.level);
    ELSIF p_direction = 'down' AND t.level > f.level THEN
        RETURN format('a down-referral goes to a lower level: %s is %s, %s is %s',
                      p_to, t.level, p_from, f.level);
    END IF;
    RETURN NULL;
END $$;

-- The checks every new or redirected referral passes, each raising the
-- typed error of its field.
CREATE FUNCTION referral_check_route(p_community text, p_direction referral_direction,
                                     p_from text, p_to text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_problem text := referral_route_problem(p_community, p_direction, p_from, p_to);
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = 'RPERM', COLUMN = 'to_institution';
    END IF;
END $$;

-- p_department NULL: none named, nothing to check.
CREATE FUNCTION referral_check_department(p_community text, p_institution text,
                                          p_department text, p_field text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_department IS NOT NULL AND NOT EXISTS (SELECT 1 FROM departments d
            WHERE d.community_id = p_community AND d.institution_id = p_institution
              AND d.department_id = p_department) THEN
        RAISE EXCEPTION 'no department % at %', p_department, p_institution
            USING ERRCODE = 'RNFND', COLUMN = p_field;
    END IF;
END $$;

CREATE FUNCTION referral_check_patient(p_community text, p_patient uuid) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM patients pt WHERE pt.community_id = p_community
                   AND pt.patient_id = p_patient) THEN
        RAISE EXCEPTION 'no such patient' USING ERRCODE = 'RNFND', COLUMN = 'patient_id';
    END IF;
END $$;

CREATE FUNCTION referral_check_diagnosis(p_diagnosis text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_diagnosis IS NULL OR p_diagnosis !~ '^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$' THEN
        RAISE EXCEPTION 'diagnosis must be an ICD-10 code such as I21.0 or J18.9 (got "%")',
            coalesce(p_diagnosis, '') USING ERRCODE = 'RINVA', COLUMN = 'diagnosis';
    END IF;
END $$;

-- Claims an idempotency key for a referral request; returns the referral
-- already made with it (replay), or NULL when the key is new. A key reused
-- for a different request raises.
CREATE FUNCTION referral_claim_key(p_community text, p_terminal text, p_key text, p_hash text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    k idempotency_keys;
BEGIN
    INSERT INTO idempotency_keys (community_id, terminal_id, idem_key, request_hash)
    VALUES (p_community, p_terminal, p_key, p_hash) ON CONFLICT DO NOTHING;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO k FROM idempotency_keys i WHERE i.community_id = p_community
       AND i.terminal_id = p_terminal AND i.idem_key = p_key;
    IF k.request_hash <> p_hash THEN
        RAISE EXCEPTION 'idempotency key already used for a different request'
            USING ERRCODE = 'RCONF', COLUMN = 'idempotency_key';
    END IF;
    RETURN k.referral_id;
END $$;

ALTER TABLE idempotency_keys ADD COLUMN referral_id uuid;

-- The slot booking rule of 002, now that referrals exist: a booking that
-- names a referral must name a live up-referral of the same patient to the
-- session's institution; an emergency booking must name a green-channel
-- (urgent or emergency) one.
CREATE OR REPLACE FUNCTION booking_referral_problem(p_community text, p_referral uuid,
                                                    p_patient uuid, s sessions,
                                                    p_emergency boolean) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r referrals;
BEGIN
    IF p_referral IS NULL THEN
        RETURN CASE WHEN p_emergency
            THEN 'an emergency booking needs the green-channel referral it serves' END;
    END IF;
    SELECT * INTO r FROM referrals x WHERE x.community_id = p_community AND x.referral_id = p_referral;
    IF NOT FOUND THEN
        RETURN format('no referral %s', p_referral);
    ELSIF r.direction <> 'up' OR r.patient_id <> p_patient OR r.to_institution <> s.institution_id THEN
        RETURN format('referral %s is not an up-referral of this patient to %s', p_referral, s.institution_id);
    ELSIF NOT (referral_state_live(r.state) OR (p_emergency AND r.state IN ('arrived', 'admitted'))) THEN
        RETURN format('referral %s is %s', p_referral, r.state);
    ELSIF p_emergency AND r.urgency = 'routine' THEN
        RETURN format('referral %s is routine: emergency bookings are for the green channel (urgent or emergency)',
                      p_referral);
    END IF;
    RETURN NULL;
END $$;

-- Locks the referral a booking serves, before the booking's session: every
-- path that touches both takes referral, then session, then booking (as
-- referral_act does), so that cancelling a booking while its referral is
-- being closed cannot deadlock.
CREATE OR REPLACE FUNCTION booking_lock_referral(p_community text, p_referral uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM referrals r WHERE r.community_id = p_community AND r.referral_id = p_referral
        FOR UPDATE;
END $$;

-- ---- creating referrals ------------------------------------------------------------

CREATE TYPE referral_made AS (
    referral_id uuid, outcome text, detail text, replayed boolean);

-- An up-referral from a family doctor, with an optional booking in the same
-- transaction: both or neither. When the session is full and p_wait_if_full
-- is set, the referral is made without a slot and waits on the desk's "no
-- slot yet" list. Other refusals (and full without p_wait_if_full) make
-- nothing and are returned as outcomes of book_slot (full, not_permitted,
-- closed, patient_conflict, not_found, bad_referral).
CREATE FUNCTION refer_up(
    p_community text, p_terminal text, p_institution text, p_practitioner text,
    p_patient uuid, p_to text, p_to_department text, p_diagnosis text, p_reason text,
    p_urgency referral_urgency, p_session bigint, p_pool text, p_fallback boolean,
    p_wait_if_full boolean, p_key text)
RETURNS SETOF referral_made LANGUAGE plpgsql AS $$
DECLARE
    r referrals;
    v_id uuid;
    b record;
    v_hash text := md5(concat_ws('|', 'up', p_patient, p_to, p_to_department, p_diagnosis, p_reason,
                                 p_urgency, p_session, p_pool, p_fallback, p_wait_if_full));
BEGIN
    v_id := referral_claim_key(p_community, p_terminal, p_key, v_hash);
    IF v_id IS NOT NULL THEN
        RETURN QUERY SELECT v_id, 'made'::text, NULL::text, true;
        RETURN;
    END IF;
    PERFORM referral_check_diagnosis(p_diagnosis);
    IF coalesce(p_reason, '') = '' THEN
        RAISE EXCEPTION 'a reason is required' USING ERRCODE = 'RINVA', COLUMN = 'reason';
    END IF;
    PERFORM referral_check_route(p_community, 'up', p_institution, p_to);
    PERFORM referral_check_department(p_community, p_to, p_to_department, 'to_department');
    PERFORM referral_check_patient(p_community, p_patient);

    INSERT INTO referrals (community_id, direction, urgency, patient_id, from_institution,
                           from_practitioner, from_terminal, to_institution, to_department,
                           diagnosis, reason)
    VALUES (p_community, 'up', p_urgency, p_patient, p_institution, nullif(p_practitioner, ''),
            p_terminal, p_to, p_to_department, p_diagnosis, p_reason)
    RETURNING * INTO r;

    IF p_session IS NOT NULL THEN
        SELECT * INTO b FROM book_slot(p_community, p_terminal, p_institution, 'clinic',
                                       p_practitioner, p_session, p_patient, p_pool, p_fallback,
                                       r.referral_id, NULL);
        IF b.outcome = 'booked' THEN
            UPDATE referrals x SET booking_id = b.booking_id
             WHERE x.community_id = p_community AND x.referral_id = r.referral_id
             RETURNING * INTO r;
        ELSIF b.outcome = 'full' AND p_wait_if_full THEN
            UPDATE referrals x SET state = 'waiting_slot'
             WHERE x.community_id = p_community AND x.referral_id = r.referral_id
             RETURNING * INTO r;
        ELSE
            -- Neither: the referral goes with the refused booking. Nothing
            -- refers to it yet (no history, no event, no key).
            DELETE FROM referrals x WHERE x.community_id = p_community AND x.referral_id = r.referral_id;
            DELETE FROM idempotency_keys i WHERE i.community_id = p_community
               AND i.terminal_id = p_terminal AND i.idem_key = p_key;
            RETURN QUERY SELECT NULL::uuid, b.outcome,
                CASE b.outcome
                     WHEN 'full' THEN format('%s (reserved left %s, public left %s)',
                                             b.detail, b.reserved_left, b.public_left)
                     WHEN 'bad_referral' THEN format('session %s is not at %s, where the referral goes',
                                                     p_session, p_to)
                     ELSE b.detail END, false;
            RETURN;
        END IF;
    END IF;
    UPDATE idempotency_keys i SET outcome = 'made', referral_id = r.referral_id
     WHERE i.community_id = p_community AND i.terminal_id = p_terminal AND i.idem_key = p_key;
    PERFORM referral_record(r, 'create', NULL, p_terminal, 'clinic', p_institution,
                            p_practitioner, NULL);
    RETURN QUERY SELECT r.referral_id, 'made'::text, NULL::text, false;
END $$;

-- A down-referral from a hospital desk to a primary institution, with a care
-- plan and a follow-up due date; it may close an up-referral.
CREATE FUNCTION refer_down(
    p_community text, p_terminal text, p_institution text, p_practitioner text,
    p_patient uuid, p_to text, p_from_department text, p_diagnosis text, p_reason text,
    p_care_plan text, p_follow_up_due date, p_closes uuid, p_key text)
RETURNS SETOF referral_made LANGUAGE plpgsql AS $$
DECLARE
    r referrals;
    up referrals;
    v_id uuid;
    v_today date;
    v_hash text := md5(concat_ws('|', 'down', p_patient, p_to, p_from_department, p_diagnosis,
                                 p_reason, p_care_plan, p_follow_up_due, p_closes));
BEGIN
    v_id := referral_claim_key(p_community, p_terminal, p_key, v_hash);
    IF v_id IS NOT NULL THEN
        RETURN QUERY SELECT v_id, 'made'::text, NULL::text, true;
        RETURN;
    END IF;
    PERFORM referral_check_diagnosis(p_diagnosis);
    IF coalesce(p_reason, '') = '' THEN
        RAISE EXCEPTION 'a reason is required' USING ERRCODE = 'RINVA', COLUMN = 'reason';
    END IF;
    IF coalesce(p_care_plan, '') = '' THEN
        RAISE EXCEPTION 'a down-referral needs a care plan' USING ERRCODE = 'RINVA', COLUMN = 'care_plan';
    END IF;
    SELECT (now() AT TIME ZONE c.timezone)::date INTO v_today
      FROM communities c WHERE c.community_id = p_community;
    IF p_follow_up_due IS NULL OR p_follow_up_due < v_today OR p_follow_up_due > v_today + 366 THEN
        RAISE EXCEPTION 'follow_up_due must be a date from today to a year ahead'
            USING ERRCODE = 'RINVA', COLUMN = 'follow_up_due';
    END IF;
    PERFORM referral_check_route(p_community, 'down', p_institution, p_to);
    PERFORM referral_check_department(p_community, p_institution, p_from_department,
                                      'from_department');
    PERFORM referral_check_patient(p_community, p_patient);
    IF p_closes IS NOT NULL THEN
        SELECT * INTO up FROM referrals x WHERE x.community_id = p_community AND x.referral_id = p_closes;
        IF NOT FOUND OR up.direction <> 'up' OR up.patient_id <> p_patient
           OR up.to_institution <> p_institution THEN
            RAISE EXCEPTION 'referral % is not an up-referral of this patient to %', p_closes, p_institution
                USING ERRCODE = 'RNFND', COLUMN = 'closes_referral_id';
        END IF;
    END IF;

    INSERT INTO referrals (community_id, direction, patient_id, from_institution, from_department,
                           from_practitioner, from_terminal, to_institution, diagnosis, reason,
                           care_plan, follow_up_due, closes_referral)
    VALUES (p_community, 'down', p_patient, p_institution, p_from_department,
            nullif(p_practitioner, ''), p_terminal, p_to, p_diagnosis, p_reason, p_care_plan,
            p_follow_up_due, p_closes)
    RETURNING * INTO r;
    UPDATE idempotency_keys i SET outcome = 'made', referral_id = r.referral_id
     WHERE i.community_id = p_community AND i.terminal_id = p_terminal AND i.idem_key = p_key;
    PERFORM referral_record(r, 'create', NULL, p_terminal, 'desk', p_institution, p_practitioner, NULL);
    RETURN QUERY SELECT r.referral_id, 'made'::text, NULL::text, false;
END $$;

-- ---- moving a referral -------------------------------------------------------------

-- Cancels the referral's live booking, if any (the unit returns to its pool).
CREATE FUNCTION referral_release_booking(r referrals, p_terminal text, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF r.booking_id IS NOT NULL AND EXISTS (SELECT 1 FROM bookings b
            WHERE b.community_id = r.community_id AND b.booking_id = r.booking_id
              AND b.status = 'booked') THEN
        PERFORM cancel_booking(r.community_id, p_terminal, NULL, r.booking_id,
                               coalesce(nullif(p_reason, ''), 'referral closed'));
    END IF;
END $$;

-- One move of one referral. p_role is the caller's terminal role; p_if_version
-- (0: none) is the version the caller saw: if the referral has moved since,
-- the answer is a conflict naming where it is now. p_session (accept) books
-- a slot now; p_to/p_to_department (redirect) name the new target.
CREATE FUNCTION referral_act(
    p_community text, p_terminal text, p_institution text, p_role text, p_practitioner text,
    p_referral uuid, p_action text, p_reason text, p_if_version integer,
    p_session bigint, p_to text, p_to_department text)
RETURNS TABLE (referral_id uuid, new_referral_id uuid) LANGUAGE plpgsql AS $$
DECLARE
    r referrals;
    t referral_transitions;
    v_from referral_state;
    v_new referrals;
    v_allowed text;
    b record;
BEGIN
    SELECT * INTO r FROM referrals x WHERE x.community_id = p_community AND x.referral_id = p_referral
        FOR UPDATE;
    -- Not visible to the caller is the same as not there.
    IF NOT FOUND OR (p_role NOT IN ('admin', 'system')
                     AND p_institution NOT IN (r.from_institution, r.to_institution)) THEN
        RAISE EXCEPTION 'no referral %', p_referral USING ERRCODE = 'RNFND', COLUMN = 'referral_id';
    END IF;
    IF p_if_version > 0 AND r.version <> p_if_version THEN
        RAISE EXCEPTION 'referral changed since you saw it: it is now % (version %, you saw %)',
            r.state, r.version, p_if_version USING ERRCODE = 'RCONF', COLUMN = 'if_version';
    END IF;
    SELECT * INTO t FROM referral_transitions x
     WHERE x.direction = r.direction AND x.action = p_action AND x.from_state = r.state;
    IF NOT FOUND THEN
        SELECT string_agg(DISTINCT x.from_state::text, ', ') INTO v_allowed FROM referral_transitions x
         WHERE x.direction = r.direction AND x.action = p_action;
        IF v_allowed IS NULL THEN
            RAISE EXCEPTION 'no action % for a % referral', p_action, r.direction
                USING ERRCODE = 'RINVA', COLUMN = 'action';
        END IF;
        RAISE EXCEPTION 'cannot % a referral that is % (only from %)', p_action, r.state, v_allowed
            USING ERRCODE = 'RSTAT', COLUMN = 'action';
    END IF;
    IF (t.side = 'system') <> (p_role = 'system') OR (p_role NOT IN ('admin', 'system') AND
        p_institution <> CASE t.side WHEN 'target' THEN r.to_institution ELSE r.from_institution END) THEN
        RAISE EXCEPTION '% is for the % institution of the referral (%)', p_action,
            CASE t.side WHEN 'target' THEN 'receiving' WHEN 'origin' THEN 'referring' ELSE 'daemon''s' END,
            CASE t.side WHEN 'target' THEN r.to_institution ELSE r.from_institution END
            USING ERRCODE = 'RPERM', COLUMN = 'action';
    END IF;
    IF t.reason_required AND coalesce(p_reason, '') = '' THEN
        RAISE EXCEPTION '% needs a reason', p_action USING ERRCODE = 'RINVA', COLUMN = 'reason';
    ELSIF length(p_reason) > 2000 THEN
        RAISE EXCEPTION 'a reason is at most 2000 characters' USING ERRCODE = 'RINVA', COLUMN = 'reason';
    END IF;

    v_from := r.state;
    IF p_action = 'accept' AND r.direction = 'up' THEN
        IF p_session IS NOT NULL THEN
            IF r.booking_id IS NOT NULL AND EXISTS (SELECT 1 FROM bookings x
                    WHERE x.community_id = p_community AND x.booking_id = r.booking_id
                      AND x.status = 'booked') THEN
                RAISE EXCEPTION 'referral already holds booking %', r.booking_id
                    USING ERRCODE = 'RCONF', COLUMN = 'session_id';
            END IF;
            -- Booked for the family doctor's referral, so from the reserved
            -- pool as the family doctor would, falling back to public.
            SELECT * INTO b FROM book_slot(p_community, p_terminal, p_institution, 'clinic',
                                           p_practitioner, p_session, r.patient_id, 'auto', true,
                                           r.referral_id, NULL);
            IF b.outcome <> 'booked' THEN
                RAISE EXCEPTION '%', b.detail USING COLUMN = 'session_id', ERRCODE =
                    CASE b.outcome WHEN 'full' THEN 'RFULL' WHEN 'patient_conflict' THEN 'RCONF'
                                   WHEN 'not_found' THEN 'RNFND' ELSE 'RSTAT' END;
            END IF;
            r.booking_id := b.booking_id;
        ELSIF r.urgency <> 'emergency' AND (r.booking_id IS NULL OR NOT EXISTS (
                SELECT 1 FROM bookings x WHERE x.community_id = p_community
                   AND x.booking_id = r.booking_id AND x.status = 'booked')) THEN
            RAISE EXCEPTION 'the referral has no booked slot: name a session to book, or mark it no_slot'
                USING ERRCODE = 'RSTAT', COLUMN = 'session_id';
        END IF;
    ELSIF p_action = 'redirect' THEN
        IF coalesce(p_to, '') = '' THEN
            p_to := r.to_institution;
        END IF;
        -- No department named means "the same one" within the same institution.
        IF p_to = r.to_institution AND (p_to_department IS NULL
                                         OR p_to_department IS NOT DISTINCT FROM r.to_department) THEN
            RAISE EXCEPTION 'a redirect names another department or institution'
                USING ERRCODE = 'RINVA', COLUMN = 'to_institution';
        END IF;
        IF p_to <> r.to_institution THEN
            PERFORM referral_check_route(p_community, r.direction, r.from_institution, p_to);
        END IF;
        PERFORM referral_check_department(p_community, p_to, p_to_department, 'to_department');
    END IF;

    IF p_action = 'redirect' THEN
        -- The new referral keeps the referring side; the original stays,
        -- linked both ways.
        INSERT INTO referrals (community_id, direction, urgency, patient_id, from_institution,
                               from_department, from_practitioner, from_terminal, to_institution,
                               to_department, diagnosis, reason, care_plan, follow_up_due,
                               redirected_from, closes_referral)
        VALUES (p_community, r.direction, r.urgency, r.patient_id, r.from_institution,
                r.from_department, r.from_practitioner, r.from_terminal, p_to, p_to_department,
                r.diagnosis, r.reason, r.care_plan, r.follow_up_due, r.referral_id,
                r.closes_referral)
        RETURNING * INTO v_new;
        PERFORM referral_record(v_new, 'create', NULL, p_terminal, p_role, p_institution,
                                p_practitioner, format('redirected from %s: %s', r.referral_id, p_reason));
    END IF;

    UPDATE referrals x SET state = t.to_state, version = x.version + 1, state_changed_at = now(),
           booking_id = r.booking_id, redirected_to = v_new.referral_id,
           last_follow_up_at = CASE WHEN p_action = 'follow_up' THEN now() ELSE x.last_follow_up_at END,
           follow_up_overdue_at = CASE WHEN p_action = 'follow_up' THEN NULL ELSE x.follow_up_overdue_at END
     WHERE x.community_id = p_community AND x.referral_id = p_referral
     RETURNING * INTO r;
    -- A closed referral gives its slot back (after the move, so that the
    -- booking trigger sees the referral closed and leaves it alone). A
    -- no-show keeps its past booking: the slot was used up.
    IF t.to_state IN ('rejected', 'redirected', 'returned', 'cancelled') THEN
        PERFORM referral_release_booking(r, p_terminal, format('referral %s', t.to_state));
    END IF;
    PERFORM referral_record(r, p_action, v_from, p_terminal, p_role, p_institution,
                            p_practitioner, p_reason);
    RETURN QUERY SELECT r.referral_id, v_new.referral_id;
END $$;

-- A live referral's booking was cancelled under it (its session cancelled,
-- the desk or the clinic cancelled the booking): the referral goes back to
-- waiting for a slot, and both sides are told by the history's event. A
-- trigger, so that every path that cancels a booking does it.
CREATE FUNCTION referral_booking_lost() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r referrals;
    v_from referral_state;
    v_role text;
BEGIN
    SELECT * INTO r FROM referrals x WHERE x.community_id = NEW.community_id
       AND x.referral_id = NEW.referral_id AND x.booking_id = NEW.booking_id
       AND x.state IN ('pending', 'accepted') FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT t.role::text INTO v_role FROM terminals t
     WHERE t.community_id = NEW.community_id AND t.terminal_id = NEW.cancelled_by_terminal;
    v_from := r.state;
    UPDATE referrals x SET state = 'waiting_slot', version = x.version + 1, state_changed_at = now()
     WHERE x.community_id = r.community_id AND x.referral_id = r.referral_id
     RETURNING * INTO r;
    PERFORM referral_record(r, 'slot_lost', v_from, NEW.cancelled_by_terminal,
                            coalesce(v_role, 'system'), NULL, NULL,
                            coalesce(NEW.cancel_reason, 'booking cancelled'));
    RETURN NULL;
END $$;
CREATE TRIGGER bookings_referral_slot_lost AFTER UPDATE OF status ON bookings
    FOR EACH ROW WHEN (OLD.status = 'booked' AND NEW.status <> 'booked' AND NEW.referral_id IS NOT NULL)
    EXECUTE FUNCTION referral_booking_lost();

-- ---- the timer's work --------------------------------------------------------------

-- Marks no-shows, flags escalations and overdue follow-ups, each at most once
-- however many daemons run it (conditional updates on locked rows, SKIP
-- LOCKED to share the work). Returns what it did.
CREATE FUNCTION referral_housekeeping(p_limit integer)
RETURNS TABLE (community_id text, referral_id uuid, what text) LANGUAGE plpgsql AS $$
DECLARE
    r referrals;
BEGIN
    FOR r IN
        SELECT x.* FROM referrals x
          JOIN communities c ON c.community_id = x.community_id
          JOIN bookings b ON b.community_id = x.community_id AND b.booking_id = x.booking_id
         WHERE x.state = 'accepted'
           AND upper(b.period) + make_interval(mins => c.no_show_grace_min) <= now()
         LIMIT p_limit FOR UPDATE OF x SKIP LOCKED
    LOOP
        PERFORM referral_act(r.community_id, NULL, NULL, 'system', NULL, r.referral_id, 'no_show',
                             'no arrival recorded by the end of the session and its grace period',
                             r.version, NULL, NULL, NULL);
        RETURN QUERY SELECT r.community_id, r.referral_id, 'no_show'::text;
    END LOOP;

    FOR r IN
        SELECT x.* FROM referrals x
          JOIN communities c ON c.community_id = x.community_id
         WHERE x.state IN ('pending', 'waiting_slot') AND x.escalated_at IS NULL
           AND x.created_at + make_interval(mins => CASE x.urgency
                   WHEN 'emergency' THEN c.escalate_emergency_min
                   WHEN 'urgent' THEN c.escalate_urgent_min
                   ELSE c.escalate_routine_min END) <= now()
         LIMIT p_limit FOR UPDATE OF x SKIP LOCKED
    LOOP
        UPDATE referrals x SET escalated_at = now()
         WHERE x.community_id = r.community_id AND x.referral_id = r.referral_id
         RETURNING * INTO r;
        PERFORM referral_row_event(r, 'referral.escalated',
                                   format('%s referral %s for %s', r.urgency, r.state,
                                          date_trunc('minute', now() - r.created_at)));
        RETURN QUERY SELECT r.community_id, r.referral_id, 'escalated'::text;
    END LOOP;

    FOR r IN
        SELECT x.* FROM referrals x
          JOIN communities c ON c.community_id = x.community_id
         WHERE x.direction = 'down' AND x.state IN ('pending', 'accepted')
           AND x.follow_up_overdue_at IS NULL
           AND x.follow_up_due < (now() AT TIME ZONE c.timezone)::date
         LIMIT p_limit FOR UPDATE OF x SKIP LOCKED
    LOOP
        UPDATE referrals x SET follow_up_overdue_at = now()
         WHERE x.community_id = r.community_id AND x.referral_id = r.referral_id
         RETURNING * INTO r;
        PERFORM referral_row_event(r, 'referral.follow_up_overdue',
                                   format('follow-up was due %s', r.follow_up_due));
        RETURN QUERY SELECT r.community_id, r.referral_id, 'follow_up_overdue'::text;
    END LOOP;
END $$;
CREATE INDEX referrals_follow_up ON referrals (follow_up_due)
    WHERE direction = 'down' AND state IN ('pending', 'accepted') AND follow_up_overdue_at IS NULL;

-- ---- reading ----------------------------------------------------------------------

-- A referral as the protocol shows it, with what the worklist sorts and
-- filters on. db_statements.h reads its columns through REFERRAL_COLS.
CREATE VIEW referral_wire AS
SELECT r.community_id, r.referral_id, r.direction::text AS direction, r.state::text AS state,
       r.urgency::text AS urgency, r.patient_id, r.from_institution,
       coalesce(r.from_department, '') AS from_department,
       coalesce(r.from_practitioner, '') AS from_practitioner,
       r.to_institution, coalesce(r.to_department, '') AS to_department,
       r.diagnosis, r.reason, coalesce(r.care_plan, '') AS care_plan,
       coalesce(to_char(r.follow_up_due, 'YYYY-MM-DD'), '') AS follow_up_due,
       coalesce(r.booking_id::text, '') AS booking_id, coalesce(b.session_id, 0) AS session_id,
       coalesce(r.redirected_from::text, '') AS redirected_from,
       coalesce(r.redirected_to::text, '') AS redirected_to,
       coalesce(r.closes_referral::text, '') AS closes_referral,
       extract(epoch FROM r.created_at)::bigint AS created_epoch,
       extract(epoch FROM r.state_changed_at)::bigint AS state_changed_epoch,
       r.version, r.escalated_at IS NOT NULL AS escalated,
       r.follow_up_overdue_at IS NOT NULL AS follow_up_overdue,
       p.display_name AS patient_display, coalesce(b.status::text, '') AS booking_status,
       coalesce(extract(epoch FROM lower(b.period))::bigint, 0) AS slot_starts_epoch,
       CASE r.urgency WHEN 'emergency' THEN 2 WHEN 'urgent' THEN 1 ELSE 0 END AS urgency_rank,
       (extract(epoch FROM r.created_at) * 1000000)::bigint AS created_micros,
       r.created_at
  FROM referrals r
  JOIN patients p ON p.community_id = r.community_id AND p.patient_id = r.patient_id
  LEFT JOIN bookings b ON b.community_id = r.community_id AND b.booking_id = r.booking_id;

-- The same for one referral, read with a fresh snapshot: statements that call
-- a changing function join this to return the referral as it now is.
CREATE FUNCTION referral_wire_of(p_community text, p_referral uuid) RETURNS SETOF referral_wire
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY SELECT * FROM referral_wire w
                  WHERE w.community_id = p_community AND w.referral_id = p_referral;
END $$;
