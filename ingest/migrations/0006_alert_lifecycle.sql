-- wardwatch TimescaleDB schema, version 6: the alert lifecycle (same shape as SQLite store
-- migration 0004_alert_lifecycle).

-- Every transition and notification step of an alert: what, who, when. The id orders the
-- change feed (list_alert_events(after_id=...), the API's Server-Sent Events).
CREATE TABLE alert_events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES alerts (id),
    at       timestamptz NOT NULL,
    action   text NOT NULL CHECK (action IN (
                 'opened', 'updated', 'acknowledged', 'resolved', 'auto-cleared', 'snoozed',
                 'unsnoozed', 'notified', 'renotified', 'escalated', 'inhibited', 'silenced',
                 'delivery-failed')),
    actor    text NOT NULL CHECK (actor <> ''),
    detail   text
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

-- Append-only, enforced by the database and not only by the code that writes it.
CREATE FUNCTION alert_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_events is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER alert_events_no_change BEFORE UPDATE OR DELETE ON alert_events
    FOR EACH ROW EXECUTE FUNCTION alert_events_append_only();
CREATE TRIGGER alert_events_no_truncate BEFORE TRUNCATE ON alert_events
    FOR EACH STATEMENT EXECUTE FUNCTION alert_events_append_only();

-- Silences (Alertmanager) and, with alert_id set, snoozes of one alert. Active while
-- starts_at <= now < ends_at; ending one early moves ends_at (never deleted).
CREATE TABLE silences (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_by text NOT NULL CHECK (created_by <> ''),
    created_at timestamptz NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    comment    text NOT NULL,
    patient    text,
    rule       text,
    care_team  text,
    alert_id   bigint REFERENCES alerts (id),
    CHECK (ends_at >= starts_at)
);
-- "Active at t": ends_at > t is the selective bound (most silences have ended).
CREATE INDEX silences_active ON silences (ends_at, starts_at);
CREATE INDEX silences_alert ON silences (alert_id) WHERE alert_id IS NOT NULL;

-- One row per try to deliver one notification (which may cover several alerts).
CREATE TABLE deliveries (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_ids bigint[] NOT NULL CHECK (cardinality(alert_ids) > 0),
    patient   text NOT NULL,
    care_team text,
    purpose   text NOT NULL CHECK (purpose IN ('notify', 'renotify', 'escalate')),
    step      integer NOT NULL CHECK (step >= 0),
    target    text NOT NULL,
    attempt   integer NOT NULL CHECK (attempt >= 1),
    at        timestamptz NOT NULL,
    delivered boolean NOT NULL,
    result    text NOT NULL,
    targets   integer NOT NULL DEFAULT 0 CHECK (targets >= 0)
);
CREATE INDEX deliveries_alert_ids ON deliveries USING gin (alert_ids);
