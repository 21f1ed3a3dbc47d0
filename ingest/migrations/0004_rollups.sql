-- wardwatch TimescaleDB schema, version 4: what the storage policy
-- (ingest/stores/timescale_policy.py) needs to keep hourly/daily rollups up to date on
-- the Apache edition, where continuous aggregates do not exist.
--
-- `ingested_at` is the database's own time of the transaction that stored the row
-- (now() = transaction start). `received_at` cannot serve: it is the ingest clock, which
-- a replayed feed sets in the past. The rollup refresh re-aggregates the buckets of rows
-- ingested since its last watermark, so late readings into old buckets are picked up.
-- Rows stored before this migration get the migration's time (a fast default, no rewrite).
ALTER TABLE observations ADD COLUMN ingested_at timestamptz NOT NULL DEFAULT now();
-- BRIN: rows arrive in ingestion order within each chunk, so a block-range index finds the
-- recent ones for a fraction of a btree's write cost on the ingest path.
CREATE INDEX observations_ingested_at ON observations USING brin (ingested_at);

-- Watermarks of the periodic maintenance steps (one row per step).
CREATE TABLE storage_state (
    name      text PRIMARY KEY,
    watermark timestamptz NOT NULL
);
INSERT INTO storage_state (name, watermark) VALUES ('rollups', '-infinity');
