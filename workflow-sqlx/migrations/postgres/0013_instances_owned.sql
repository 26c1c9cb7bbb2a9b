-- Workflow concurrency caps (flow control; SQLite's migration 0014): a capped claim counts the
-- instances of a workflow holding a lease. This index holds only the owned instances (a finish or
-- an eviction clears the owner), so the count reads the running ones, never the backlog queued
-- behind the cap.
CREATE INDEX instances_owned ON instances (workflow, lease_until) WHERE owner IS NOT NULL;
