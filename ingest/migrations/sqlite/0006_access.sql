-- SQLite schema 0006_access (reserved; same tables as the TimescaleDB migration of the same name).
SELECT 1;
