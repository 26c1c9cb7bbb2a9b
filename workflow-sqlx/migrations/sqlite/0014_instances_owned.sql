-- Workflow concurrency caps (flow control): a capped claim counts the instances of a workflow
-- holding a lease. This index holds only the owned instances (a finish or an eviction clears the
-- owner), so the count reads the running ones, never the backlog queued behind the cap (without
-- it, 100,000 queued instances cut the admission rate to a tenth).
CREATE INDEX instances_owned ON instances (workflow, lease_until) WHERE owner IS NOT NULL;
