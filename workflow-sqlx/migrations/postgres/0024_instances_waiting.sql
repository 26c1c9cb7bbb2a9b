-- What a start lease asks before it takes a capped workflow's new instance: whether another
-- instance of that workflow (or of its concurrency key) waits unowned for a claim. The claim's
-- ready set (`instances_ready`) is ordered for claims across workflows, so it answers that only by
-- reading past every other workflow's backlog; this index holds the same rows by workflow and key,
-- so the answer is one probe (its first row in creation order: a lookup the planner keeps on the
-- index, where for a bare EXISTS it scanned the whole table).
CREATE INDEX instances_waiting ON instances (workflow, concurrency_key, created_at)
    WHERE status IN ('Pending', 'Running') AND wake_at IS NULL AND owner IS NULL;
