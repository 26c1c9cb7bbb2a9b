-- A claim's ready and due sets hold only unowned instances (PostgreSQL's migration 0022). Before,
-- an instance running in a worker (owned, Running, no wake-up) stayed in the ready set's index,
-- and every claim read past all of them before the first claimable one. An owned instance is
-- claimable only once its lease lapses, which the claim now finds off `instances_owned`
-- (workflow, lease_until), a range of the lapsed leases.
DROP INDEX instances_ready;
CREATE INDEX instances_ready ON instances (priority DESC, created_at, id)
    WHERE status IN ('Pending', 'Running') AND wake_at IS NULL AND owner IS NULL;
DROP INDEX instances_due;
CREATE INDEX instances_due ON instances (wake_at)
    WHERE status IN ('Pending', 'Running') AND wake_at IS NOT NULL AND owner IS NULL;
