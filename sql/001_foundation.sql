-- 001: reference data of a county medical community.
--
-- Every table holding community data has community_id leading its primary
-- key and its foreign keys, so that the schema can later be distributed by
-- community. Money is integer fen. Levels compare by enum order.

CREATE TYPE institution_level AS ENUM ('village', 'township', 'county', 'city');
CREATE TYPE terminal_role AS ENUM ('clinic', 'desk', 'billing', 'monitor', 'admin');
CREATE TYPE practitioner_kind AS ENUM ('family_doctor', 'expert', 'desk_clerk', 'other');
CREATE TYPE insurance_scheme AS ENUM ('resident', 'employee');
CREATE TYPE deductible_policy AS ENUM ('waive', 'continuous');

CREATE TABLE communities (
    community_id        text PRIMARY KEY CHECK (community_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name                text NOT NULL,
    province            text NOT NULL CHECK (province IN ('henan', 'yunnan', 'fujian', 'custom')),
    -- Reserved share of higher-level resources for family doctors, percent.
    reserve_floor_pct   integer NOT NULL CHECK (reserve_floor_pct BETWEEN 0 AND 100),
    -- Minutes before a session starts at which unbooked reserved capacity
    -- returns to the public pool, per resource kind.
    release_lead_expert_min integer NOT NULL DEFAULT 1440 CHECK (release_lead_expert_min >= 0),
    release_lead_exam_min   integer NOT NULL DEFAULT 1440 CHECK (release_lead_exam_min >= 0),
    release_lead_bed_min    integer NOT NULL DEFAULT 720  CHECK (release_lead_bed_min >= 0),
    -- Yunnan and Fujian: reserved capacity is for referred patients only.
    reserved_requires_referral boolean NOT NULL,
    deductible_policy   deductible_policy NOT NULL,
    -- A stay admitted within this many days of the previous discharge in a
    -- referral chain continues that chain.
    chain_window_days   integer NOT NULL DEFAULT 15 CHECK (chain_window_days >= 0),
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- Province presets; 'custom' takes whatever the operator sets.
CREATE FUNCTION community_preset_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.province = 'henan' AND NEW.reserve_floor_pct < 40 THEN
        RAISE EXCEPTION 'henan requires a reserve floor of at least 40%%' USING ERRCODE = '23514';
    ELSIF NEW.province IN ('yunnan', 'fujian') AND NEW.reserve_floor_pct < 20 THEN
        RAISE EXCEPTION '% requires a reserve floor of at least 20%%', NEW.province USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER communities_preset BEFORE INSERT OR UPDATE ON communities
    FOR EACH ROW EXECUTE FUNCTION community_preset_check();

-- Deductible (起付线) per institution level and insurance scheme, in fen.
CREATE TABLE community_deductibles (
    community_id    text NOT NULL REFERENCES communities,
    level           institution_level NOT NULL,
    scheme          insurance_scheme NOT NULL,
    amount_fen      bigint NOT NULL CHECK (amount_fen >= 0),
    PRIMARY KEY (community_id, level, scheme)
);

CREATE TABLE institutions (
    community_id    text NOT NULL REFERENCES communities,
    institution_id  text NOT NULL CHECK (institution_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name            text NOT NULL,
    level           institution_level NOT NULL,
    -- A city hospital supporting the county sits outside the 1+N community
    -- but inside its referral network.
    in_network      boolean NOT NULL DEFAULT true,
    PRIMARY KEY (community_id, institution_id)
);

CREATE TABLE departments (
    community_id    text NOT NULL,
    institution_id  text NOT NULL,
    department_id   text NOT NULL CHECK (department_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name            text NOT NULL,
    PRIMARY KEY (community_id, institution_id, department_id),
    FOREIGN KEY (community_id, institution_id) REFERENCES institutions
);

CREATE TABLE practitioners (
    community_id    text NOT NULL,
    practitioner_id text NOT NULL CHECK (practitioner_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    institution_id  text NOT NULL,
    department_id   text,
    name            text NOT NULL,
    kind            practitioner_kind NOT NULL,
    PRIMARY KEY (community_id, practitioner_id),
    FOREIGN KEY (community_id, institution_id) REFERENCES institutions,
    FOREIGN KEY (community_id, institution_id, department_id) REFERENCES departments
);

-- A terminal is one credential: a clinic PC, a desk workstation, a billing
-- system, a monitoring script. Tokens are stored only as salted slow hashes.
CREATE TABLE terminals (
    community_id    text NOT NULL,
    terminal_id     text NOT NULL CHECK (terminal_id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    institution_id  text NOT NULL,
    role            terminal_role NOT NULL,
    practitioner_id text,
    token_hash      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    PRIMARY KEY (community_id, terminal_id),
    FOREIGN KEY (community_id, institution_id) REFERENCES institutions,
    FOREIGN KEY (community_id, practitioner_id) REFERENCES practitioners
);

-- Patients are pseudonymous: a random id, a keyed hash of the resident ID
-- number for lookups (never the number itself), and a masked display name.
CREATE TABLE patients (
    community_id    text NOT NULL REFERENCES communities,
    patient_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    id_hash         bytea NOT NULL,
    display_name    text NOT NULL,
    scheme          insurance_scheme NOT NULL DEFAULT 'resident',
    family_doctor_id text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, patient_id),
    UNIQUE (community_id, id_hash),
    FOREIGN KEY (community_id, family_doctor_id) REFERENCES practitioners
);
