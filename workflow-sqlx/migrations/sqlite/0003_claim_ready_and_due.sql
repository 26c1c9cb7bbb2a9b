-- A claim takes its candidates from two sets: instances ready now (no wake-up), already in claim
-- order, and instances whose wake-up has come, found by time. An instance evicted while it waits
-- (its wake-up in the future, or NEVER) is in neither scan, so any number of them cost a claim or
-- an idle poll nothing; 0001's `instances_runnable` had the claim scan past every one of them.
-- The status and wake-up tests must be spelled exactly like the claim query's for SQLite to use
-- these partial indexes.
DROP INDEX instances_runnable;
DROP INDEX instances_wake;
CREATE INDEX instances_ready ON instances (created_at, id) WHERE status IN ('Pending', 'Running') AND wake_at IS NULL;
CREATE INDEX instances_due ON instances (wake_at) WHERE status IN ('Pending', 'Running') AND wake_at IS NOT NULL;
