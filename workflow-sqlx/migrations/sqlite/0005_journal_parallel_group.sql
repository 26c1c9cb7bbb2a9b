-- A journal record of a call issued in a fan-out (parallel calls) keeps the seq of the fan-out's
-- first call, the same for every call of it, so a diagram can draw them side by side; NULL for a
-- call issued alone, and for every record written before this migration.
ALTER TABLE journal ADD COLUMN parallel_group INTEGER;

-- What `list` looks up for the children of an instance (`parent_id`, as a purge or a terminate
-- walks an instance's descendants), already in list order. Most instances have no parent, so they
-- stay out of it. SQLite uses this partial index for `parent_id = ?`, which implies the index's
-- `parent_id IS NOT NULL`.
CREATE INDEX instances_parent ON instances (parent_id, created_at, id) WHERE parent_id IS NOT NULL;
