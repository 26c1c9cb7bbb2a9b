-- Priority of activity attempts (flow control): a queued task carries its instance's claim
-- priority, and of the tasks claimable at once a higher priority is claimed first, the oldest
-- first within one priority. Both claim indexes are rebuilt in that order, so a claim still
-- reads its picks off the front of an index (one priority level, the usual case, reads as before).
ALTER TABLE activity_tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
DROP INDEX activity_tasks_unfinished;
CREATE INDEX activity_tasks_unfinished ON activity_tasks (priority DESC, visible_at, instance_id, generation, seq)
    WHERE outcome IS NULL;
DROP INDEX activity_tasks_keyed;
CREATE INDEX activity_tasks_keyed
    ON activity_tasks (name, concurrency_key, priority DESC, visible_at, instance_id, generation, seq)
    WHERE outcome IS NULL;
