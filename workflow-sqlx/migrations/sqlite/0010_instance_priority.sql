-- Claim priority (flow control): of the instances claimable at once, a higher priority is claimed
-- first, the oldest first within one priority. The ready set's index is rebuilt in that order, so
-- a claim still reads its picks off the front of the index; existing instances get priority 0.
ALTER TABLE instances ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
DROP INDEX instances_ready;
CREATE INDEX instances_ready ON instances (priority DESC, created_at, id) WHERE status IN ('Pending', 'Running') AND wake_at IS NULL;
