-- 007: security. Terminal management (add, list, revoke, rotate) with the
-- moment a terminal's credentials last changed, so that every daemon can
-- close the connections that authenticated before; and the masked display
-- form of resident ID numbers, whose keyed hash (patients.id_hash) is made
-- by the daemon with a secret the database never sees.

ALTER TABLE terminals
    ADD COLUMN credentials_changed_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN revoked_by  text,
    ADD COLUMN rotated_at  timestamptz,
    ADD COLUMN created_by  text;
CREATE INDEX terminals_credentials_changed ON terminals (credentials_changed_at);

-- "4101**********1234": never more than the first four and last four digits.
ALTER TABLE patients ADD COLUMN id_masked text
    CHECK (id_masked ~ '^[0-9]{4}\*{10}[0-9]{3}[0-9X]$');

-- The terminal columns every terminal statement returns, in the order the
-- daemon reads them.
CREATE VIEW terminal_wire AS
SELECT t.community_id, t.terminal_id, t.institution_id, t.role::text AS role,
       coalesce(t.practitioner_id, '') AS practitioner_id,
       extract(epoch FROM t.created_at)::bigint AS created_epoch,
       coalesce(extract(epoch FROM t.revoked_at)::bigint, 0) AS revoked_epoch,
       coalesce(t.revoked_by, '') AS revoked_by,
       coalesce(extract(epoch FROM t.rotated_at)::bigint, 0) AS rotated_epoch,
       (extract(epoch FROM t.credentials_changed_at) * 1000000)::bigint AS changed_micros
  FROM terminals t;

-- Every change of a terminal's credentials (revoked, or a new token hash),
-- however it is made (the functions below, or an operator's UPDATE), is
-- stamped, logged in terminal_changes and announced to every daemon (they
-- LISTEN on referral_events): connections that authenticated before are
-- closed. The daemons' periodic check reads terminal_changes, not
-- terminals, so that it never waits behind a lock on terminals.
CREATE TABLE terminal_changes (
    community_id text NOT NULL,
    change_id    bigint GENERATED ALWAYS AS IDENTITY,
    terminal_id  text NOT NULL,
    changed_at   timestamptz NOT NULL,
    PRIMARY KEY (community_id, change_id)   -- community first, as everywhere
);
CREATE INDEX terminal_changes_at ON terminal_changes (changed_at);

CREATE FUNCTION terminal_credentials_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.revoked_at IS DISTINCT FROM OLD.revoked_at
       OR NEW.token_hash IS DISTINCT FROM OLD.token_hash THEN
        NEW.credentials_changed_at := clock_timestamp();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER terminals_credentials_stamp BEFORE UPDATE ON terminals
    FOR EACH ROW EXECUTE FUNCTION terminal_credentials_stamp();

-- Community and terminal ids hold no spaces.
CREATE FUNCTION terminal_credentials_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.credentials_changed_at IS DISTINCT FROM OLD.credentials_changed_at THEN
        INSERT INTO terminal_changes (community_id, terminal_id, changed_at)
        VALUES (NEW.community_id, NEW.terminal_id, NEW.credentials_changed_at);
        PERFORM pg_notify('referral_events', format('terminal %s %s %s', NEW.community_id,
                NEW.terminal_id, (extract(epoch FROM NEW.credentials_changed_at) * 1000000)::bigint));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER terminals_credentials_announce AFTER UPDATE ON terminals
    FOR EACH ROW EXECUTE FUNCTION terminal_credentials_announce();

CREATE FUNCTION terminal_add(p_community text, p_by text, p_terminal text, p_institution text,
                             p_role terminal_role, p_practitioner text, p_hash text)
RETURNS SETOF terminal_wire LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM institutions i WHERE i.community_id = p_community
                   AND i.institution_id = p_institution) THEN
        RAISE EXCEPTION 'no institution %', p_institution
            USING ERRCODE = 'RNFND', COLUMN = 'institution_id';
    END IF;
    IF p_practitioner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM practitioners p
            WHERE p.community_id = p_community AND p.practitioner_id = p_practitioner
              AND p.institution_id = p_institution) THEN
        RAISE EXCEPTION 'no practitioner % at %', p_practitioner, p_institution
            USING ERRCODE = 'RNFND', COLUMN = 'practitioner_id';
    END IF;
    IF p_terminal !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'terminal ids are lowercase [a-z0-9][a-z0-9_.-]{0,62}'
            USING ERRCODE = 'RINVA', COLUMN = 'terminal_id';
    END IF;
    INSERT INTO terminals (community_id, terminal_id, institution_id, role, practitioner_id,
                           token_hash, created_by)
    VALUES (p_community, p_terminal, p_institution, p_role, p_practitioner, p_hash, p_by)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'terminal % exists already', p_terminal
            USING ERRCODE = 'RCONF', COLUMN = 'terminal_id';
    END IF;
    RETURN QUERY SELECT * FROM terminal_wire w
                  WHERE w.community_id = p_community AND w.terminal_id = p_terminal;
END $$;

-- Revoking twice is harmless: the first revocation's time and author stay.
CREATE FUNCTION terminal_revoke(p_community text, p_by text, p_terminal text)
RETURNS SETOF terminal_wire LANGUAGE plpgsql AS $$
DECLARE
    t terminals;
BEGIN
    UPDATE terminals x
       SET revoked_at = coalesce(x.revoked_at, clock_timestamp()),
           revoked_by = coalesce(x.revoked_by, p_by)
     WHERE x.community_id = p_community AND x.terminal_id = p_terminal
    RETURNING * INTO t;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no terminal %', p_terminal USING ERRCODE = 'RNFND', COLUMN = 'terminal_id';
    END IF;
    RETURN QUERY SELECT * FROM terminal_wire w
                  WHERE w.community_id = p_community AND w.terminal_id = p_terminal;
END $$;

CREATE FUNCTION terminal_rotate(p_community text, p_by text, p_terminal text, p_hash text)
RETURNS SETOF terminal_wire LANGUAGE plpgsql AS $$
DECLARE
    t terminals;
BEGIN
    SELECT * INTO t FROM terminals x WHERE x.community_id = p_community
       AND x.terminal_id = p_terminal FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no terminal %', p_terminal USING ERRCODE = 'RNFND', COLUMN = 'terminal_id';
    ELSIF t.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'terminal % is revoked; add a new one', p_terminal
            USING ERRCODE = 'RSTAT', COLUMN = 'terminal_id';
    END IF;
    UPDATE terminals x SET token_hash = p_hash, rotated_at = clock_timestamp()
     WHERE x.community_id = p_community AND x.terminal_id = p_terminal;
    RETURN QUERY SELECT * FROM terminal_wire w
                  WHERE w.community_id = p_community AND w.terminal_id = p_terminal;
END $$;

-- A terminal turns a resident ID number into the patient id every other
-- request uses. p_id_hash is the daemon's HMAC of the number; the number
-- itself never reaches the database. With p_register an unknown patient is
-- registered (display name required, already masked by the daemon).
CREATE FUNCTION patient_resolve(p_community text, p_id_hash bytea, p_masked text,
                                p_display text, p_register boolean, p_family_doctor text)
RETURNS TABLE (patient_id uuid, id_masked text, display_name text, created boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT pt.patient_id, coalesce(pt.id_masked, p_masked), pt.display_name, false
                   FROM patients pt
                  WHERE pt.community_id = p_community AND pt.id_hash = p_id_hash;
    IF FOUND THEN
        RETURN;
    END IF;
    IF NOT p_register THEN
        RAISE EXCEPTION 'no patient with this resident ID number'
            USING ERRCODE = 'RNFND', COLUMN = 'resident_id';
    END IF;
    IF coalesce(p_display, '') = '' THEN
        RAISE EXCEPTION 'registering a patient needs a name'
            USING ERRCODE = 'RINVA', COLUMN = 'name';
    END IF;
    IF p_family_doctor IS NOT NULL AND NOT EXISTS (SELECT 1 FROM practitioners p
            WHERE p.community_id = p_community AND p.practitioner_id = p_family_doctor) THEN
        p_family_doctor := NULL;
    END IF;
    -- Two terminals registering the same person at once: one inserts, the
    -- other finds the row.
    RETURN QUERY INSERT INTO patients AS pt (community_id, id_hash, id_masked, display_name,
                                             family_doctor_id)
                 VALUES (p_community, p_id_hash, p_masked, p_display, p_family_doctor)
                 ON CONFLICT (community_id, id_hash) DO NOTHING
                 RETURNING pt.patient_id, pt.id_masked, pt.display_name, true;
    IF NOT FOUND THEN
        RETURN QUERY SELECT pt.patient_id, coalesce(pt.id_masked, p_masked), pt.display_name, false
                       FROM patients pt
                      WHERE pt.community_id = p_community AND pt.id_hash = p_id_hash;
    END IF;
END $$;
