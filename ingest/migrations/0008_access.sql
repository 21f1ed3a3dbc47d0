-- wardwatch TimescaleDB schema: 0008_access.
-- (Reserved; filled in by the access helper (issue 7): users, teams, tokens.)
SELECT 1;
