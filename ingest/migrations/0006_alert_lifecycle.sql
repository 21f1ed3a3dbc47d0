-- wardwatch TimescaleDB schema: 0006_alert_lifecycle.
-- (Reserved; filled in by the lifecycle helper (issue 6): alert events, silences, deliveries.)
SELECT 1;
