-- wardwatch TimescaleDB schema: 0007_care_plans.
-- (Reserved; filled in by the care-plan helper (issue 6): care plans, proposals.)
SELECT 1;
