-- SQLite schema 0005_care_plans: care plans, care-plan proposals and the last reading of each
-- device (same tables as the TimescaleDB migration of the same name; times are ISO text).
CREATE TABLE care_plans (
    patient TEXT PRIMARY KEY, title TEXT NOT NULL, thresholds TEXT NOT NULL DEFAULT '{}',
    schedule TEXT NOT NULL DEFAULT '{}', version INTEGER NOT NULL CHECK (version >= 1),
    updated_at TEXT, updated_by TEXT
);
CREATE TABLE care_plan_proposals (
    id INTEGER PRIMARY KEY AUTOINCREMENT, patient TEXT NOT NULL, code TEXT NOT NULL,
    description TEXT NOT NULL, created_at TEXT NOT NULL, reason_alerts TEXT NOT NULL DEFAULT '[]',
    change TEXT NOT NULL DEFAULT '{}', due TEXT,
    status TEXT NOT NULL DEFAULT 'proposed' CHECK (status IN ('proposed', 'accepted', 'rejected')),
    decided_at TEXT, decided_by TEXT, decision_note TEXT,
    CHECK ((status = 'proposed') = (decided_at IS NULL))
);
CREATE UNIQUE INDEX care_plan_proposals_one_open
    ON care_plan_proposals (patient, code) WHERE status = 'proposed';
CREATE INDEX care_plan_proposals_patient ON care_plan_proposals (patient, created_at);
-- The latest reading per (patient, device, kind), upserted by SqliteStore.write_observations
-- in the batch's transaction (a trigger would count in total_changes, i.e. as stored rows).
CREATE TABLE device_last_seen (
    patient TEXT NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL,
    gateway TEXT, PRIMARY KEY (patient, device, kind)
);
INSERT INTO device_last_seen (patient, device, kind, at, gateway)
SELECT patient, device, kind, max(at), gateway FROM observations WHERE true
GROUP BY patient, device, kind;
