-- wardwatch TimescaleDB schema, version 7: care plans, care-plan proposals (FHIR CarePlan /
-- Task shaped, alerting/careplans.py) and the last reading of each device, which the
-- missing-data detectors read (same tables as SQLite store migration 5).

-- One active plan per patient; `version` counts its changes (put_care_plan bumps it).
-- `thresholds`: rule parameter overrides; `schedule`: expected hours between readings by
-- measurement kind. No foreign key to patients: like alerts, a proposal (and the plan it
-- changes) may concern a patient ingest saw before enrolment.
CREATE TABLE care_plans (
    patient    text PRIMARY KEY,
    title      text NOT NULL,
    thresholds jsonb NOT NULL DEFAULT '{}',
    schedule   jsonb NOT NULL DEFAULT '{}',
    version    integer NOT NULL CHECK (version >= 1),
    updated_at timestamptz,
    updated_by text
);

CREATE TABLE care_plan_proposals (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient       text NOT NULL,
    code          text NOT NULL,
    description   text NOT NULL,
    created_at    timestamptz NOT NULL,
    reason_alerts bigint[] NOT NULL DEFAULT '{}',
    change        jsonb NOT NULL DEFAULT '{}',
    due           timestamptz,
    status        text NOT NULL DEFAULT 'proposed'
                  CHECK (status IN ('proposed', 'accepted', 'rejected')),
    decided_at    timestamptz,
    decided_by    text,
    decision_note text,
    CHECK ((status = 'proposed') = (decided_at IS NULL))
);
-- At most one open proposal per patient and code (the generator relies on it to dedupe).
CREATE UNIQUE INDEX care_plan_proposals_one_open
    ON care_plan_proposals (patient, code) WHERE status = 'proposed';
CREATE INDEX care_plan_proposals_patient ON care_plan_proposals (patient, created_at);

-- The latest reading per (patient, device, kind): TimescaleStore.write_observations upserts
-- it from the batch's staging rows in the same transaction (one statement per batch), so the
-- missing-data detectors read one small table instead of max(at) over the hypertable.
CREATE TABLE device_last_seen (
    patient text NOT NULL,
    device  text NOT NULL,
    kind    text NOT NULL,
    at      timestamptz NOT NULL,
    gateway text,
    PRIMARY KEY (patient, device, kind)
);
INSERT INTO device_last_seen (patient, device, kind, at, gateway)
SELECT DISTINCT ON (patient, device, kind) patient, device, kind, at, gateway
FROM observations
ORDER BY patient, device, kind, at DESC;
