-- SQLite schema 0005_care_plans (reserved; same tables as the TimescaleDB migration of the same name).
SELECT 1;
