-- 004: the second insurance deductible (医保二次起付线): inpatient stays, one
-- deductible decision per stay with every input it was made from, and the
-- history of each community's deductible policy. docs/deductibles.md
-- describes the rule; this file enforces it.
--
-- The invariants live here:
--   * communities.deductible_policy, communities.chain_window_days and
--     community_deductibles (001) are the community's current setting. Every
--     committed change of them becomes a new numbered version in
--     deductible_policy_versions (deferred triggers: a change spread over
--     several statements of one transaction is one version). Versions are
--     never changed, so a decision names the version it was made under and
--     keeps it;
--   * a stay gets exactly one decision, in the transaction that records the
--     stay (an admission through a referral included: a trigger on the
--     referral's history), and decisions are never changed or deleted;
--   * a patient's live stays at one institution never overlap (exclusion
--     constraint), and a referral has at most one live stay;
--   * a stay is never deleted: a wrong one is reversed, with who and why;
--   * money is bigint fen, never negative, and what is due never exceeds the
--     stay's own deductible.

ALTER TYPE deductible_policy ADD VALUE IF NOT EXISTS 'none';

-- Decisions, policy versions and chains are kept as they were made.
CREATE FUNCTION append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'RPERM';
END $$;

-- ---- the policy and its history -------------------------------------------------

CREATE TABLE deductible_policy_versions (
    community_id    text NOT NULL REFERENCES communities,
    version         integer NOT NULL CHECK (version >= 1),
    -- Admissions from this instant on are decided under this version (and
    -- admissions before a community's first version under its first).
    effective_from  timestamptz NOT NULL,
    policy          text NOT NULL CHECK (policy IN ('waive', 'continuous', 'none')),
    window_days     integer NOT NULL CHECK (window_days >= 0),
    -- The terminal that set it; NULL: changed in the database directly.
    set_by          text,
    PRIMARY KEY (community_id, version)
);

CREATE TABLE deductible_policy_amounts (
    community_id    text NOT NULL,
    version         integer NOT NULL,
    level           institution_level NOT NULL,
    scheme          insurance_scheme NOT NULL,
    amount_fen      bigint NOT NULL CHECK (amount_fen >= 0),
    PRIMARY KEY (community_id, version, level, scheme),
    FOREIGN KEY (community_id, version) REFERENCES deductible_policy_versions
);

CREATE TRIGGER deductible_policy_versions_fixed BEFORE UPDATE OR DELETE ON deductible_policy_versions
    FOR EACH ROW EXECUTE FUNCTION append_only();
CREATE TRIGGER deductible_policy_amounts_fixed BEFORE UPDATE OR DELETE ON deductible_policy_amounts
    FOR EACH ROW EXECUTE FUNCTION append_only();

-- Makes the community's current setting a version, unless the newest
-- version already is it; returns the version in force now. The community's
-- row lock orders this against decisions (which hold it shared), so that a
-- new version's effective_from comes after every decision made before it.
CREATE FUNCTION deductible_policy_snapshot(p_community text, p_by text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    c communities;
    v deductible_policy_versions;
    v_next integer;
BEGIN
    SELECT * INTO c FROM communities x WHERE x.community_id = p_community FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v FROM deductible_policy_versions x WHERE x.community_id = p_community
     ORDER BY x.version DESC LIMIT 1;
    IF FOUND AND v.policy = c.deductible_policy::text AND v.window_days = c.chain_window_days
       AND NOT EXISTS (
           (SELECT d.level, d.scheme, d.amount_fen FROM community_deductibles d
             WHERE d.community_id = p_community
            EXCEPT
            SELECT a.level, a.scheme, a.amount_fen FROM deductible_policy_amounts a
             WHERE a.community_id = p_community AND a.version = v.version)
           UNION ALL
           (SELECT a.level, a.scheme, a.amount_fen FROM deductible_policy_amounts a
             WHERE a.community_id = p_community AND a.version = v.version
            EXCEPT
            SELECT d.level, d.scheme, d.amount_fen FROM community_deductibles d
             WHERE d.community_id = p_community)) THEN
        RETURN v.version;
    END IF;
    v_next := coalesce(v.version, 0) + 1;
    INSERT INTO deductible_policy_versions (community_id, version, effective_from, policy,
                                            window_days, set_by)
    VALUES (p_community, v_next, clock_timestamp(), c.deductible_policy::text,
            c.chain_window_days, p_by);
    INSERT INTO deductible_policy_amounts (community_id, version, level, scheme, amount_fen)
    SELECT p_community, v_next, d.level, d.scheme, d.amount_fen
      FROM community_deductibles d WHERE d.community_id = p_community;
    RETURN v_next;
END $$;

CREATE FUNCTION deductible_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM deductible_policy_snapshot(OLD.community_id, NULL);
    ELSE
        PERFORM deductible_policy_snapshot(NEW.community_id, NULL);
    END IF;
    RETURN NULL;
END $$;

-- At commit: however the setting was changed (the request, or SQL by hand),
-- the change is kept as a version.
CREATE CONSTRAINT TRIGGER communities_deductible_policy
    AFTER INSERT OR UPDATE OF deductible_policy, chain_window_days ON communities
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION deductible_policy_changed();
CREATE CONSTRAINT TRIGGER community_deductibles_policy
    AFTER INSERT OR UPDATE OR DELETE ON community_deductibles
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION deductible_policy_changed();

-- The communities that exist already start their history now.
SELECT deductible_policy_snapshot(community_id, NULL) FROM communities;

-- The version in force at an instant: the newest that took effect by then;
-- before the first, the first.
CREATE FUNCTION deductible_policy_at(p_community text, p_at timestamptz)
RETURNS deductible_policy_versions LANGUAGE plpgsql AS $$
DECLARE
    v deductible_policy_versions;
BEGIN
    SELECT * INTO v FROM deductible_policy_versions x
     WHERE x.community_id = p_community AND x.effective_from <= p_at
     ORDER BY x.version DESC LIMIT 1;
    IF NOT FOUND THEN
        -- A community made in this very transaction has no version before commit.
        PERFORM deductible_policy_snapshot(p_community, NULL);
        SELECT * INTO v FROM deductible_policy_versions x WHERE x.community_id = p_community
         ORDER BY x.version LIMIT 1;
    END IF;
    RETURN v;
END $$;

-- SetDeductiblePolicy: the policy and window always, the amounts listed
-- (the others stay as they are). Returns the version now in force: a new
-- one, or the newest when nothing changed.
CREATE FUNCTION deductible_set_policy(p_community text, p_terminal text, p_policy text,
                                      p_window integer, p_levels text[], p_schemes text[],
                                      p_amounts bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    IF p_policy IS NULL OR p_policy NOT IN ('waive', 'continuous', 'none') THEN
        RAISE EXCEPTION 'policy is waive, continuous or none (got "%")', coalesce(p_policy, '')
            USING ERRCODE = 'RINVA', COLUMN = 'policy';
    ELSIF p_window IS NULL OR p_window NOT BETWEEN 0 AND 366 THEN
        RAISE EXCEPTION 'window_days is 0 (transfers only) to 366' USING ERRCODE = 'RINVA',
            COLUMN = 'window_days';
    ELSIF EXISTS (SELECT 1 FROM unnest(p_amounts) a WHERE a < 0) THEN
        RAISE EXCEPTION 'an amount is whole fen, 0 or more' USING ERRCODE = 'RINVA',
            COLUMN = 'amounts';
    ELSIF (SELECT count(*) <> count(DISTINCT (l, s)) FROM unnest(p_levels, p_schemes) AS x(l, s)) THEN
        RAISE EXCEPTION 'a level and scheme appear twice in amounts' USING ERRCODE = 'RINVA',
            COLUMN = 'amounts';
    END IF;
    UPDATE communities c SET deductible_policy = p_policy::deductible_policy,
                             chain_window_days = p_window
     WHERE c.community_id = p_community;
    INSERT INTO community_deductibles AS d (community_id, level, scheme, amount_fen)
    SELECT p_community, x.l::institution_level, x.s::insurance_scheme, x.a
      FROM unnest(p_levels, p_schemes, p_amounts) AS x(l, s, a)
    ON CONFLICT (community_id, level, scheme) DO UPDATE SET amount_fen = EXCLUDED.amount_fen;
    RETURN deductible_policy_snapshot(p_community, p_terminal);
END $$;

-- A version as the protocol shows it; amounts as "level,scheme,fen;...".
CREATE VIEW deductible_policy_wire AS
SELECT v.community_id, v.version, extract(epoch FROM v.effective_from)::bigint AS effective_epoch,
       v.policy, v.window_days, coalesce(v.set_by, '') AS set_by,
       coalesce((SELECT string_agg(format('%s,%s,%s', a.level, a.scheme, a.amount_fen), ';'
                                   ORDER BY a.level, a.scheme)
                   FROM deductible_policy_amounts a
                  WHERE a.community_id = v.community_id AND a.version = v.version), '') AS amounts,
       (SELECT max(x.version) FROM deductible_policy_versions x
         WHERE x.community_id = v.community_id) AS latest_version
  FROM deductible_policy_versions v;

-- ---- stays ----------------------------------------------------------------------

CREATE TABLE stays (
    community_id    text NOT NULL,
    stay_id         uuid NOT NULL DEFAULT gen_random_uuid(),
    patient_id      uuid NOT NULL,
    institution_id  text NOT NULL,
    -- As they were at admission: the institution's level, and the insurance
    -- scheme the patient was admitted under.
    level           institution_level NOT NULL,
    scheme          insurance_scheme NOT NULL,
    -- The referral the patient came through; NULL: admitted without one.
    referral_id     uuid,
    admitted_at     timestamptz NOT NULL,
    discharged_at   timestamptz,
    recorded_by     text,            -- terminal
    recorded_role   text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    discharged_by   text,
    reversed_at     timestamptz,
    reversed_by     text,
    reversal_reason text CHECK (length(reversal_reason) BETWEEN 1 AND 2000),
    PRIMARY KEY (community_id, stay_id),
    FOREIGN KEY (community_id, patient_id) REFERENCES patients,
    FOREIGN KEY (community_id, institution_id) REFERENCES institutions,
    FOREIGN KEY (community_id, referral_id) REFERENCES referrals,
    CHECK (discharged_at IS NULL OR discharged_at >= admitted_at),
    CHECK ((reversed_at IS NULL) = (reversal_reason IS NULL)),
    -- One bed at a time in one institution; an open stay runs to infinity.
    EXCLUDE USING gist (community_id WITH =, patient_id WITH =, institution_id WITH =,
                        tstzrange(admitted_at, discharged_at) WITH &&) WHERE (reversed_at IS NULL)
);
CREATE UNIQUE INDEX stays_one_per_referral ON stays (community_id, referral_id)
    WHERE referral_id IS NOT NULL AND reversed_at IS NULL;
-- The previous stay of a chain, and the billing office's periods.
CREATE INDEX stays_patient ON stays (community_id, patient_id, institution_id, admitted_at DESC);
CREATE INDEX stays_admitted ON stays (community_id, admitted_at, stay_id);

-- A stay changes only by being discharged (once) and by being reversed (once).
CREATE FUNCTION stays_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'a stay is never deleted: reverse it' USING ERRCODE = 'RPERM';
    END IF;
    IF (NEW.community_id, NEW.stay_id, NEW.patient_id, NEW.institution_id, NEW.level, NEW.scheme,
        NEW.referral_id, NEW.admitted_at, NEW.recorded_by, NEW.recorded_role, NEW.recorded_at)
       IS DISTINCT FROM
       (OLD.community_id, OLD.stay_id, OLD.patient_id, OLD.institution_id, OLD.level, OLD.scheme,
        OLD.referral_id, OLD.admitted_at, OLD.recorded_by, OLD.recorded_role, OLD.recorded_at)
       OR (OLD.discharged_at IS NOT NULL
           AND (NEW.discharged_at, NEW.discharged_by) IS DISTINCT FROM (OLD.discharged_at, OLD.discharged_by))
       OR (OLD.reversed_at IS NOT NULL
           AND (NEW.reversed_at, NEW.reversed_by, NEW.reversal_reason)
               IS DISTINCT FROM (OLD.reversed_at, OLD.reversed_by, OLD.reversal_reason)) THEN
        RAISE EXCEPTION 'a stay changes only by its discharge and its reversal, each once'
            USING ERRCODE = 'RPERM';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER stays_guarded BEFORE UPDATE OR DELETE ON stays
    FOR EACH ROW EXECUTE FUNCTION stays_guard();
CREATE TRIGGER stays_no_truncate BEFORE TRUNCATE ON stays
    FOR EACH STATEMENT EXECUTE FUNCTION append_only();

-- ---- decisions ------------------------------------------------------------------

-- One per stay, with everything it was computed from: an auditor recomputes
-- due_fen from this row and its chain rows alone (docs/deductibles.md).
CREATE TABLE deductible_decisions (
    community_id        text NOT NULL,
    stay_id             uuid NOT NULL,
    decided_at          timestamptz NOT NULL DEFAULT now(),
    policy_version      integer NOT NULL,
    policy              text NOT NULL,
    window_days         integer NOT NULL,
    -- The referral and where it came from.
    referral_id         uuid,
    referral_direction  referral_direction,
    referral_from       text,
    referral_from_in_network boolean,
    -- The patient's previous stay at the referring institution, and the days
    -- from its discharge to this admission (0: a transfer, or still open).
    previous_stay_id    uuid,
    previous_discharged_at timestamptz,
    gap_days            integer CHECK (gap_days >= 0),
    -- The chain: its first stay, and this stay's place in it (1: first).
    chain_id            uuid NOT NULL,
    chain_position      integer NOT NULL CHECK (chain_position >= 1),
    chain_paid_fen      bigint NOT NULL CHECK (chain_paid_fen >= 0),
    -- The stay's own deductible (level and scheme, from the version), and
    -- what is due. NULL both: the version has no amount for them.
    own_deductible_fen  bigint CHECK (own_deductible_fen >= 0),
    due_fen             bigint CHECK (due_fen >= 0 AND due_fen <= own_deductible_fen),
    rule                text NOT NULL CHECK (rule IN ('no_referral', 'outside_network',
                            'no_previous_stay', 'gap_exceeds_window', 'waive', 'continuous',
                            'policy_none', 'not_configured')),
    explanation         text NOT NULL,
    PRIMARY KEY (community_id, stay_id),
    FOREIGN KEY (community_id, stay_id) REFERENCES stays,
    FOREIGN KEY (community_id, policy_version) REFERENCES deductible_policy_versions,
    FOREIGN KEY (community_id, previous_stay_id) REFERENCES stays,
    FOREIGN KEY (community_id, chain_id) REFERENCES stays,
    CHECK ((own_deductible_fen IS NULL) = (due_fen IS NULL)),
    CHECK ((own_deductible_fen IS NULL) = (rule = 'not_configured'))
);

-- The earlier stays of a decision's chain, oldest first, as they were when
-- it was made.
CREATE TABLE deductible_decision_chain (
    community_id    text NOT NULL,
    stay_id         uuid NOT NULL,
    position        integer NOT NULL CHECK (position >= 1),
    chain_stay_id   uuid NOT NULL,
    institution_id  text NOT NULL,
    level           institution_level NOT NULL,
    admitted_at     timestamptz NOT NULL,
    discharged_at   timestamptz,
    due_fen         bigint CHECK (due_fen >= 0),
    PRIMARY KEY (community_id, stay_id, position),
    FOREIGN KEY (community_id, stay_id) REFERENCES deductible_decisions,
    FOREIGN KEY (community_id, chain_stay_id) REFERENCES stays
);

CREATE TRIGGER deductible_decisions_fixed BEFORE UPDATE OR DELETE ON deductible_decisions
    FOR EACH ROW EXECUTE FUNCTION append_only();
CREATE TRIGGER deductible_decision_chain_fixed BEFORE UPDATE OR DELETE ON deductible_decision_chain
    FOR EACH ROW EXECUTE FUNCTION append_only();
CREATE TRIGGER deductible_decisions_no_truncate BEFORE TRUNCATE ON deductible_decisions
    FOR EACH STATEMENT EXECUTE FUNCTION append_only();

-- The live stays of p_prev's chain, p_prev included, oldest first: p_prev's
-- own chain as its decision recorded it, less what was reversed since.
CREATE FUNCTION deductible_chain_through(p_community text, p_prev uuid)
RETURNS TABLE (pos integer, stay_id uuid, institution_id text, level institution_level,
               admitted_at timestamptz, discharged_at timestamptz, due_fen bigint)
LANGUAGE sql STABLE AS $$
    SELECT row_number() OVER (ORDER BY x.admitted_at, x.stay_id)::integer, x.stay_id,
           x.institution_id, x.level, x.admitted_at, x.discharged_at, d.due_fen
      FROM stays x
      JOIN deductible_decisions d ON d.community_id = x.community_id AND d.stay_id = x.stay_id
     WHERE x.community_id = p_community AND x.reversed_at IS NULL
       AND (x.stay_id = p_prev
            OR x.stay_id IN (SELECT l.chain_stay_id FROM deductible_decision_chain l
                              WHERE l.community_id = p_community AND l.stay_id = p_prev))
$$;

-- Decides the deductible of a stay just recorded, and records the decision
-- with its inputs. The rule (docs/deductibles.md):
--   * a stay reached by a referral from an in-network institution where the
--     patient's latest stay ended at most window_days before this admission
--     (still open, or ended the same day: 0) continues that stay's chain;
--   * outside a chain: the full deductible of the stay's level and scheme;
--   * in a chain: waive: 0; continuous: max(0, own - already due in the
--     chain); none: the full deductible.
CREATE FUNCTION deductible_decide(p_community text, p_stay uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s stays;
    c communities;
    v deductible_policy_versions;
    r referrals;
    prev stays;
    v_in_network boolean;
    v_own bigint;
    v_due bigint;
    v_gap integer;
    v_in_chain boolean;
    v_links integer := 0;
    v_paid bigint := 0;
    v_chain uuid;
    v_rule text;
    v_why text;
    v_what text;
BEGIN
    SELECT * INTO s FROM stays x WHERE x.community_id = p_community AND x.stay_id = p_stay;
    -- Shared: a policy change waits for this decision, so its version takes
    -- effect after this admission (deductible_policy_snapshot).
    SELECT * INTO c FROM communities x WHERE x.community_id = p_community FOR SHARE;
    v := deductible_policy_at(p_community, s.admitted_at);
    SELECT a.amount_fen INTO v_own FROM deductible_policy_amounts a
     WHERE a.community_id = p_community AND a.version = v.version AND a.level = s.level
       AND a.scheme = s.scheme;
    v_what := format('a %s-level stay under the %s scheme', s.level, s.scheme);

    IF s.referral_id IS NOT NULL THEN
        SELECT * INTO r FROM referrals x WHERE x.community_id = p_community
           AND x.referral_id = s.referral_id;
        SELECT i.in_network INTO v_in_network FROM institutions i
         WHERE i.community_id = p_community AND i.institution_id = r.from_institution;
        IF v_in_network THEN
            SELECT * INTO prev FROM stays x
             WHERE x.community_id = p_community AND x.patient_id = s.patient_id
               AND x.institution_id = r.from_institution AND x.reversed_at IS NULL
               AND x.admitted_at < s.admitted_at
             ORDER BY x.admitted_at DESC LIMIT 1;
            IF prev.stay_id IS NOT NULL THEN
                v_gap := CASE WHEN prev.discharged_at IS NULL OR prev.discharged_at >= s.admitted_at
                              THEN 0
                              ELSE (s.admitted_at AT TIME ZONE c.timezone)::date
                                   - (prev.discharged_at AT TIME ZONE c.timezone)::date END;
            END IF;
        END IF;
    END IF;
    v_in_chain := coalesce(v_gap <= v.window_days, false);
    v_chain := s.stay_id;
    IF v_in_chain THEN
        SELECT count(*), coalesce(sum(coalesce(l.due_fen, 0)), 0),
               (array_agg(l.stay_id ORDER BY l.pos))[1]
          INTO v_links, v_paid, v_chain
          FROM deductible_chain_through(p_community, prev.stay_id) l;
    END IF;

    IF v_own IS NULL THEN
        v_rule := 'not_configured';
        v_why := format('policy version %s has no deductible for %s: nothing decided',
                        v.version, v_what);
    ELSIF NOT v_in_chain THEN
        v_due := v_own;
        IF s.referral_id IS NULL THEN
            v_rule := 'no_referral';
            v_why := 'admitted without a referral';
        ELSIF NOT v_in_network THEN
            v_rule := 'outside_network';
            v_why := format('referred by %s, outside the community''s referral network',
                            r.from_institution);
        ELSIF v_gap IS NULL THEN
            v_rule := 'no_previous_stay';
            v_why := format('referred by %s, where the patient had no inpatient stay before: '
                            'the first stay of a chain', r.from_institution);
        ELSE
            v_rule := 'gap_exceeds_window';
            v_why := format('the previous stay at %s ended %s days before this admission, '
                            'more than the window of %s days: a new chain',
                            r.from_institution, v_gap, v.window_days);
        END IF;
        v_why := format('%s; the full deductible of %s is due: %s fen', v_why, v_what, v_own);
    ELSE
        v_why := format('stay %s of a referral chain (the previous stay, at %s, ended %s days '
                        'before; window %s days)', v_links + 1, r.from_institution, v_gap,
                        v.window_days);
        IF v.policy = 'waive' THEN
            v_rule := 'waive';
            v_due := 0;
            v_why := format('%s under policy waive: no second deductible; %s fen waived',
                            v_why, v_own);
        ELSIF v.policy = 'continuous' THEN
            v_rule := 'continuous';
            v_due := greatest(0, v_own - v_paid);
            v_why := format('%s under policy continuous: max(0, %s fen for %s - %s fen already '
                            'due in the chain) = %s fen', v_why, v_own, v_what, v_paid, v_due);
        ELSE
            v_rule := 'policy_none';
            v_due := v_own;
            v_why := format('%s, but under policy none every stay pays in full: %s fen',
                            v_why, v_own);
        END IF;
    END IF;

    INSERT INTO deductible_decisions (community_id, stay_id, policy_version, policy, window_days,
        referral_id, referral_direction, referral_from, referral_from_in_network,
        previous_stay_id, previous_discharged_at, gap_days, chain_id, chain_position,
        chain_paid_fen, own_deductible_fen, due_fen, rule, explanation)
    VALUES (p_community, s.stay_id, v.version, v.policy, v.window_days, s.referral_id,
            r.direction, r.from_institution, v_in_network, prev.stay_id, prev.discharged_at,
            v_gap, v_chain, v_links + 1, v_paid, v_own, v_due, v_rule, v_why);
    IF v_in_chain THEN
        INSERT INTO deductible_decision_chain (community_id, stay_id, position, chain_stay_id,
            institution_id, level, admitted_at, discharged_at, due_fen)
        SELECT p_community, s.stay_id, l.pos, l.stay_id, l.institution_id, l.level,
               l.admitted_at, l.discharged_at, l.due_fen
          FROM deductible_chain_through(p_community, prev.stay_id) l;
    END IF;
END $$;

-- ---- recording stays ------------------------------------------------------------

-- Records a stay and decides its deductible. p_scheme NULL or '': the
-- patient's registered scheme. The patient's row lock orders the stays and
-- decisions of one patient.
CREATE FUNCTION stay_insert(p_community text, p_patient uuid, p_institution text, p_scheme text,
                            p_admitted timestamptz, p_discharged timestamptz, p_referral uuid,
                            p_terminal text, p_role text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_scheme insurance_scheme;
    v_level institution_level;
    v_tz text;
    other stays;
    v_stay uuid;
BEGIN
    SELECT pt.scheme INTO v_scheme FROM patients pt
     WHERE pt.community_id = p_community AND pt.patient_id = p_patient FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such patient' USING ERRCODE = 'RNFND', COLUMN = 'patient_id';
    END IF;
    IF coalesce(p_scheme, '') <> '' THEN
        v_scheme := p_scheme::insurance_scheme;
    END IF;
    SELECT i.level INTO v_level FROM institutions i
     WHERE i.community_id = p_community AND i.institution_id = p_institution;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no institution % in this community', p_institution
            USING ERRCODE = 'RNFND', COLUMN = 'institution_id';
    END IF;
    SELECT * INTO other FROM stays x
     WHERE x.community_id = p_community AND x.patient_id = p_patient
       AND x.institution_id = p_institution AND x.reversed_at IS NULL
       AND tstzrange(x.admitted_at, x.discharged_at) && tstzrange(p_admitted, p_discharged)
     LIMIT 1;
    IF FOUND THEN
        SELECT c.timezone INTO v_tz FROM communities c WHERE c.community_id = p_community;
        RAISE EXCEPTION 'the patient already has stay % at % from % (%): reverse it if it is wrong',
            other.stay_id, p_institution,
            to_char(other.admitted_at AT TIME ZONE v_tz, 'YYYY-MM-DD HH24:MI'),
            CASE WHEN other.discharged_at IS NULL THEN 'still admitted'
                 ELSE 'to ' || to_char(other.discharged_at AT TIME ZONE v_tz, 'YYYY-MM-DD HH24:MI') END
            USING ERRCODE = 'RCONF', COLUMN = 'patient_id';
    END IF;
    INSERT INTO stays (community_id, patient_id, institution_id, level, scheme, referral_id,
                       admitted_at, discharged_at, recorded_by, recorded_role, discharged_by)
    VALUES (p_community, p_patient, p_institution, v_level, v_scheme, p_referral, p_admitted,
            p_discharged, p_terminal, p_role,
            CASE WHEN p_discharged IS NOT NULL THEN p_terminal END)
    RETURNING stay_id INTO v_stay;
    PERFORM deductible_decide(p_community, v_stay);
    RETURN v_stay;
END $$;

-- Admitting and discharging a referral records its stay, in the same
-- transaction as the move: whatever makes the move (a desk, a clinic taking
-- a patient into rehabilitation beds, an admin) makes the stay.
CREATE FUNCTION stay_follow_referral() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r referrals;
BEGIN
    SELECT * INTO r FROM referrals x WHERE x.community_id = NEW.community_id
       AND x.referral_id = NEW.referral_id;
    IF NEW.action = 'admit' THEN
        PERFORM stay_insert(r.community_id, r.patient_id, r.to_institution, NULL, NEW.at, NULL,
                            r.referral_id, NEW.terminal_id, NEW.role);
    ELSE
        UPDATE stays x SET discharged_at = greatest(NEW.at, x.admitted_at),
                           discharged_by = NEW.terminal_id
         WHERE x.community_id = r.community_id AND x.referral_id = r.referral_id
           AND x.reversed_at IS NULL AND x.discharged_at IS NULL;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER referral_history_stays AFTER INSERT ON referral_history
    FOR EACH ROW WHEN (NEW.action IN ('admit', 'discharge'))
    EXECUTE FUNCTION stay_follow_referral();

-- A patient sent down to a township centre's rehabilitation beds is a
-- referred inpatient too: down-referrals are admitted and discharged by the
-- receiving side, then followed up or completed.
INSERT INTO referral_transitions VALUES
    ('down', 'admit',     'accepted',   'admitted',    'target', false),
    ('down', 'discharge', 'admitted',   'discharged',  'target', false),
    ('down', 'follow_up', 'discharged', 'followed_up', 'target', true),
    ('down', 'complete',  'discharged', 'completed',   'target', false);

ALTER TABLE idempotency_keys ADD COLUMN stay_id uuid;

-- Claims an idempotency key; returns the key's row when it was claimed
-- before with the same request (a replay), a row of NULLs when it is new.
-- A key reused for a different request raises.
CREATE FUNCTION claim_idempotency_key(p_community text, p_terminal text, p_key text, p_hash text)
RETURNS idempotency_keys LANGUAGE plpgsql AS $$
DECLARE
    k idempotency_keys;
BEGIN
    IF length(coalesce(p_key, '')) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'an idempotency key of 1..128 bytes is required'
            USING ERRCODE = 'RINVA', COLUMN = 'idempotency_key';
    END IF;
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
    RETURN k;
END $$;

CREATE TYPE stay_made AS (stay_id uuid, replayed boolean);

-- Accepts an instant given on the wire (Unix seconds; 0: p_default) for a
-- stay: not in the future (five minutes of clock skew allowed), not more
-- than a year back.
CREATE FUNCTION stay_instant(p_seconds bigint, p_default timestamptz, p_field text)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v timestamptz := CASE WHEN p_seconds = 0 THEN p_default ELSE to_timestamp(p_seconds) END;
BEGIN
    IF v > now() + interval '5 minutes' THEN
        RAISE EXCEPTION '% is in the future', p_field USING ERRCODE = 'RINVA', COLUMN = p_field;
    ELSIF v < now() - interval '366 days' THEN
        RAISE EXCEPTION '% is more than a year ago', p_field USING ERRCODE = 'RINVA',
            COLUMN = p_field;
    END IF;
    RETURN v;
END $$;

-- RecordStay: a billing office records a stay of its own institution (an
-- admin names the institution), admitted without a referral, possibly after
-- the fact. p_referral names the referral of a stay recorded again after its
-- reversal (the referral was admitted; its stay was reversed).
CREATE FUNCTION record_stay(p_community text, p_terminal text, p_role text,
                            p_caller_institution text, p_institution text, p_patient uuid,
                            p_scheme text, p_admitted bigint, p_discharged bigint,
                            p_referral uuid, p_key text) RETURNS stay_made
LANGUAGE plpgsql AS $$
DECLARE
    k idempotency_keys;
    r referrals;
    v_institution text := nullif(p_institution, '');
    v_admitted timestamptz;
    v_discharged timestamptz;
    v_stay uuid;
BEGIN
    k := claim_idempotency_key(p_community, p_terminal, p_key,
        md5(concat_ws('|', 'stay', p_institution, p_patient, p_scheme, p_admitted, p_discharged,
                      p_referral)));
    IF k.idem_key IS NOT NULL THEN
        RETURN (k.stay_id, true);
    END IF;
    IF p_role = 'admin' AND v_institution IS NULL THEN
        RAISE EXCEPTION 'an admin names the institution' USING ERRCODE = 'RINVA',
            COLUMN = 'institution_id';
    ELSIF p_role <> 'admin' AND coalesce(v_institution, p_caller_institution) <> p_caller_institution THEN
        RAISE EXCEPTION 'a billing office records the stays of its own institution (%)',
            p_caller_institution USING ERRCODE = 'RPERM', COLUMN = 'institution_id';
    END IF;
    v_institution := coalesce(v_institution, p_caller_institution);
    v_admitted := stay_instant(p_admitted, now(), 'admitted_at');
    IF p_discharged <> 0 THEN
        v_discharged := stay_instant(p_discharged, NULL, 'discharged_at');
        IF v_discharged < v_admitted THEN
            RAISE EXCEPTION 'discharged_at is before admitted_at' USING ERRCODE = 'RINVA',
                COLUMN = 'discharged_at';
        END IF;
    END IF;
    IF p_referral IS NOT NULL THEN
        -- Referral before patient: the order referral_act locks them in.
        SELECT * INTO r FROM referrals x WHERE x.community_id = p_community
           AND x.referral_id = p_referral FOR UPDATE;
        IF NOT FOUND OR r.patient_id <> p_patient OR r.to_institution <> v_institution THEN
            RAISE EXCEPTION 'no referral % of this patient to %', p_referral, v_institution
                USING ERRCODE = 'RNFND', COLUMN = 'referral_id';
        ELSIF NOT EXISTS (SELECT 1 FROM referral_history h WHERE h.community_id = p_community
                             AND h.referral_id = p_referral AND h.action = 'admit') THEN
            RAISE EXCEPTION 'referral % was never admitted: admit it (ReferralAction admit), which records its stay',
                p_referral USING ERRCODE = 'RSTAT', COLUMN = 'referral_id';
        END IF;
        SELECT x.stay_id INTO v_stay FROM stays x WHERE x.community_id = p_community
           AND x.referral_id = p_referral AND x.reversed_at IS NULL;
        IF FOUND THEN
            RAISE EXCEPTION 'referral % already has stay %: reverse that first', p_referral, v_stay
                USING ERRCODE = 'RCONF', COLUMN = 'referral_id';
        END IF;
    END IF;
    v_stay := stay_insert(p_community, p_patient, v_institution, p_scheme, v_admitted,
                          v_discharged, p_referral, p_terminal, p_role);
    UPDATE idempotency_keys i SET outcome = 'recorded', stay_id = v_stay
     WHERE i.community_id = p_community AND i.terminal_id = p_terminal AND i.idem_key = p_key;
    RETURN (v_stay, false);
END $$;

-- The stay a caller may change: its institution's (p_scope), or any (admin: '').
CREATE FUNCTION stay_for_change(p_community text, p_scope text, p_stay uuid) RETURNS stays
LANGUAGE plpgsql AS $$
DECLARE
    s stays;
BEGIN
    SELECT * INTO s FROM stays x WHERE x.community_id = p_community AND x.stay_id = p_stay
        FOR UPDATE;
    IF NOT FOUND OR (p_scope <> '' AND s.institution_id <> p_scope) THEN
        RAISE EXCEPTION 'no stay %', p_stay USING ERRCODE = 'RNFND', COLUMN = 'stay_id';
    END IF;
    RETURN s;
END $$;

-- DischargeStay: a stay recorded directly (or whose referral has moved on).
-- A discharged stay is answered as it is, replayed.
CREATE FUNCTION discharge_stay(p_community text, p_terminal text, p_scope text, p_stay uuid,
                               p_at bigint) RETURNS stay_made
LANGUAGE plpgsql AS $$
DECLARE
    s stays := stay_for_change(p_community, p_scope, p_stay);
    v_at timestamptz;
BEGIN
    IF s.reversed_at IS NOT NULL THEN
        RAISE EXCEPTION 'stay % was reversed', p_stay USING ERRCODE = 'RSTAT', COLUMN = 'stay_id';
    ELSIF s.discharged_at IS NOT NULL THEN
        RETURN (s.stay_id, true);
    ELSIF EXISTS (SELECT 1 FROM referrals x WHERE x.community_id = p_community
                     AND x.referral_id = s.referral_id AND x.state = 'admitted') THEN
        RAISE EXCEPTION 'stay % came through referral %, which is admitted: discharge the referral',
            p_stay, s.referral_id USING ERRCODE = 'RSTAT', COLUMN = 'stay_id';
    END IF;
    v_at := stay_instant(p_at, now(), 'discharged_at');
    IF v_at < s.admitted_at THEN
        RAISE EXCEPTION 'discharged_at is before the admission' USING ERRCODE = 'RINVA',
            COLUMN = 'discharged_at';
    END IF;
    UPDATE stays x SET discharged_at = v_at, discharged_by = p_terminal
     WHERE x.community_id = p_community AND x.stay_id = p_stay;
    RETURN (s.stay_id, false);
END $$;

-- ReverseStay: a wrong stay is taken back, with who and why. Its decision
-- stays as it was, marked reversed; the stay no longer counts in the chains
-- of later admissions. A reversed stay is answered as it is, replayed.
CREATE FUNCTION reverse_stay(p_community text, p_terminal text, p_scope text, p_stay uuid,
                             p_reason text) RETURNS stay_made
LANGUAGE plpgsql AS $$
DECLARE
    s stays;
BEGIN
    IF length(coalesce(p_reason, '')) NOT BETWEEN 1 AND 2000 THEN
        RAISE EXCEPTION 'a reversal needs a reason (at most 2000 characters)'
            USING ERRCODE = 'RINVA', COLUMN = 'reason';
    END IF;
    -- The patient first, as recording does.
    PERFORM 1 FROM patients pt JOIN stays x USING (community_id, patient_id)
      WHERE x.community_id = p_community AND x.stay_id = p_stay FOR NO KEY UPDATE OF pt;
    s := stay_for_change(p_community, p_scope, p_stay);
    IF s.reversed_at IS NOT NULL THEN
        RETURN (s.stay_id, true);
    END IF;
    UPDATE stays x SET reversed_at = now(), reversed_by = p_terminal, reversal_reason = p_reason
     WHERE x.community_id = p_community AND x.stay_id = p_stay;
    RETURN (s.stay_id, false);
END $$;

-- ---- reading ----------------------------------------------------------------------

-- A stay and its decision as the protocol shows them. db_statements.h reads
-- the columns through DEDUCTIBLE_COLS; chain is "stay,institution,level,
-- admitted,discharged,due;..." (epoch seconds, 0 for none).
CREATE VIEW deductible_wire AS
SELECT s.community_id, s.stay_id, s.patient_id, s.institution_id, s.level::text AS level,
       s.scheme::text AS scheme, coalesce(s.referral_id::text, '') AS referral_id,
       coalesce(d.referral_direction::text, '') AS referral_direction,
       coalesce(d.referral_from, '') AS referral_from,
       coalesce(d.referral_from_in_network, false) AS referral_from_in_network,
       extract(epoch FROM s.admitted_at)::bigint AS admitted_epoch,
       coalesce(extract(epoch FROM s.discharged_at)::bigint, 0) AS discharged_epoch,
       extract(epoch FROM d.decided_at)::bigint AS decided_epoch,
       d.policy_version, d.policy, d.window_days,
       coalesce(d.previous_stay_id::text, '') AS previous_stay_id,
       coalesce(extract(epoch FROM d.previous_discharged_at)::bigint, 0) AS previous_discharged_epoch,
       coalesce(d.gap_days, -1) AS gap_days, d.chain_id, d.chain_position,
       coalesce((SELECT string_agg(format('%s,%s,%s,%s,%s,%s', l.chain_stay_id, l.institution_id,
                                          l.level, extract(epoch FROM l.admitted_at)::bigint,
                                          coalesce(extract(epoch FROM l.discharged_at)::bigint, 0),
                                          coalesce(l.due_fen, 0)), ';' ORDER BY l.position)
                   FROM deductible_decision_chain l
                  WHERE l.community_id = d.community_id AND l.stay_id = d.stay_id), '') AS chain,
       d.chain_paid_fen, d.own_deductible_fen IS NOT NULL AS amount_configured,
       coalesce(d.own_deductible_fen, 0) AS own_deductible_fen, coalesce(d.due_fen, 0) AS due_fen,
       coalesce(d.own_deductible_fen - d.due_fen, 0) AS waived_fen, d.rule, d.explanation,
       s.reversed_at IS NOT NULL AS reversed,
       coalesce(extract(epoch FROM s.reversed_at)::bigint, 0) AS reversed_epoch,
       coalesce(s.reversal_reason, '') AS reversal_reason, coalesce(s.reversed_by, '') AS reversed_by,
       coalesce(s.recorded_by, '') AS recorded_by,
       (extract(epoch FROM s.admitted_at) * 1000000)::bigint AS admitted_micros,
       s.admitted_at
  FROM stays s
  JOIN deductible_decisions d ON d.community_id = s.community_id AND d.stay_id = s.stay_id;

-- The same for one stay, read with a fresh snapshot: statements that call a
-- changing function join this to return the stay as it now is.
CREATE FUNCTION deductible_wire_of(p_community text, p_stay uuid) RETURNS SETOF deductible_wire
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY SELECT * FROM deductible_wire w
                  WHERE w.community_id = p_community AND w.stay_id = p_stay;
END $$;

-- The same for one version, read with a fresh snapshot (after a change).
CREATE FUNCTION deductible_policy_wire_of(p_community text, p_version integer)
RETURNS SETOF deductible_policy_wire LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY SELECT * FROM deductible_policy_wire p
                  WHERE p.community_id = p_community AND p.version = p_version;
END $$;
