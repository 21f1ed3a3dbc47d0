-- SQLite schema 0004_alert_lifecycle: the alert lifecycle (same tables as the TimescaleDB
-- migration of the same name). Times are fixed-width UTC ISO 8601 text (sorts in time order).

-- Every transition and notification step of an alert: what, who, when; id orders the feed.
CREATE TABLE alert_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    at TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN (
        'opened', 'updated', 'acknowledged', 'resolved', 'auto-cleared', 'snoozed',
        'unsnoozed', 'notified', 'renotified', 'escalated', 'inhibited', 'silenced',
        'delivery-failed')),
    actor TEXT NOT NULL CHECK (actor <> ''),
    detail TEXT
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
CREATE TRIGGER alert_events_no_update BEFORE UPDATE ON alert_events
BEGIN SELECT RAISE(ABORT, 'alert_events is append-only'); END;
CREATE TRIGGER alert_events_no_delete BEFORE DELETE ON alert_events
BEGIN SELECT RAISE(ABORT, 'alert_events is append-only'); END;

-- Silences and, with alert_id set, snoozes; ending one early moves ends_at (never deleted).
CREATE TABLE silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_by TEXT NOT NULL CHECK (created_by <> ''),
    created_at TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    comment TEXT NOT NULL,
    patient TEXT,
    rule TEXT,
    care_team TEXT,
    alert_id INTEGER REFERENCES alerts (id),
    CHECK (ends_at >= starts_at)
);
CREATE INDEX silences_active ON silences (ends_at, starts_at);
CREATE INDEX silences_alert ON silences (alert_id) WHERE alert_id IS NOT NULL;

-- One row per delivery try; delivery_alerts lists the alerts it covered (indexed by alert).
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_ids TEXT NOT NULL,
    patient TEXT NOT NULL,
    care_team TEXT,
    purpose TEXT NOT NULL CHECK (purpose IN ('notify', 'renotify', 'escalate')),
    step INTEGER NOT NULL CHECK (step >= 0),
    target TEXT NOT NULL,
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    at TEXT NOT NULL,
    delivered INTEGER NOT NULL CHECK (delivered IN (0, 1)),
    result TEXT NOT NULL,
    targets INTEGER NOT NULL DEFAULT 0 CHECK (targets >= 0)
);
CREATE TABLE delivery_alerts (
    alert_id INTEGER NOT NULL,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    PRIMARY KEY (alert_id, delivery_id)
) WITHOUT ROWID;
