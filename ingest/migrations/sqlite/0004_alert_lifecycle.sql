-- SQLite schema 0004_alert_lifecycle (reserved; same tables as the TimescaleDB migration of the same name).
SELECT 1;
