-- wardwatch TimescaleDB schema, version 3: quarantine release/retry times and the
-- append-only audit trail (same shape as SQLite store migration 2).

-- A re-ingested item that now passes is released, never deleted: the payload and its
-- original refusal stay as evidence. A retry that fails again updates reason and retried_at
-- (the earlier reason is kept in audit_events).
ALTER TABLE quarantine ADD COLUMN released_at timestamptz;
ALTER TABLE quarantine ADD COLUMN retried_at timestamptz;
CREATE INDEX quarantine_reason_code ON quarantine (reason_code);
CREATE INDEX quarantine_held ON quarantine (id) WHERE released_at IS NULL;

-- Who read or changed which patient's data, when, from where, with what outcome.
CREATE TABLE audit_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL,
    principal text NOT NULL,
    action    text NOT NULL,
    outcome   text NOT NULL,
    patient   text,
    resource  text,
    remote    text,
    detail    text
);
CREATE INDEX audit_events_patient_at ON audit_events (patient, at);
CREATE INDEX audit_events_at ON audit_events (at);

-- Append-only, enforced by the database and not only by the code that writes it.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
