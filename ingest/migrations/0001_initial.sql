-- wardwatch TimescaleDB schema, version 1: the same tables as the SQLite store
-- (ingest/stores/sqlite.py), with native types and `observations` as a hypertable.
--
-- Applied by TimescaleStore.migrate() inside one transaction, under an advisory lock,
-- and recorded in schema_migrations. Never edit a released migration: add 0002_*.sql.

-- Usually created beforehand by a superuser (deploy/ database init); a no-op then.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE care_teams (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    notify_urls jsonb NOT NULL DEFAULT '[]'
);

CREATE TABLE patients (
    id           text PRIMARY KEY,
    display_name text NOT NULL,
    care_team    text REFERENCES care_teams (id),
    thresholds   jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE device_pairings (
    device    text PRIMARY KEY,
    patient   text NOT NULL REFERENCES patients (id),
    paired_at timestamptz NOT NULL DEFAULT now()
);

-- One row per reading. `resource` keeps the Observation JSON byte for byte as received
-- (jsonb would re-serialise it); `components` holds panel values ({"systolic": 120, ...}).
CREATE TABLE observations (
    identifier  text NOT NULL,
    patient     text NOT NULL,
    device      text NOT NULL,
    gateway     text,
    kind        text NOT NULL,
    at          timestamptz NOT NULL,
    value       double precision,
    unit        text,
    components  jsonb NOT NULL DEFAULT '{}',
    resource    bytea NOT NULL,
    received_at timestamptz NOT NULL,
    -- Unique indexes on a hypertable must include the time column. The identifier is
    -- derived from (device, time, kind), so one identifier always comes with one `at`.
    CONSTRAINT observations_identifier_at UNIQUE (identifier, at)
);

SELECT create_hypertable('observations', by_range('at', INTERVAL '7 days'));

CREATE INDEX observations_patient_kind_at ON observations (patient, kind, at DESC);
CREATE INDEX observations_patient_at ON observations (patient, at DESC);

CREATE TABLE quarantine (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    source      text NOT NULL,
    reason_code text NOT NULL,
    reason      text NOT NULL,
    payload     bytea NOT NULL
);

CREATE TABLE alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient         text NOT NULL,
    rule            text NOT NULL,
    kind            text NOT NULL,
    severity        text NOT NULL,
    status          text NOT NULL,
    opened_at       timestamptz NOT NULL,
    message         text NOT NULL,
    observations    text[] NOT NULL DEFAULT '{}',
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    resolved_by     text,
    updated_at      timestamptz
);

-- At most one alert per patient and rule that is not resolved (the detectors rely on it).
CREATE UNIQUE INDEX alerts_one_open ON alerts (patient, rule) WHERE status <> 'resolved';
CREATE INDEX alerts_patient_opened ON alerts (patient, opened_at);
