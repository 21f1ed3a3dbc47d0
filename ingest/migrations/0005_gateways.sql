-- wardwatch TimescaleDB schema, version 5: gateways (home hubs) as the backend knows them,
-- from their retained status messages (ingest/gateway_status.py) and the bundles ingest
-- commits (same shape as SQLite store migration 3).

-- `status_at` is the time in the status message; a status older than the stored one is
-- not written (see TimescaleStore.record_gateway_status). A gateway seen only through its
-- bundles has no status yet: status and status_at are NULL together.
CREATE TABLE gateways (
    id             text PRIMARY KEY,
    status         text CHECK (status IN ('online', 'offline')),
    status_at      timestamptz,
    updated_at     timestamptz,
    queued         integer CHECK (queued >= 0),
    dropped        jsonb NOT NULL DEFAULT '{}',
    last_bundle_at timestamptz,
    CHECK ((status IS NULL) = (status_at IS NULL))
);
