-- Distributed activities (SQLite's migration 0004): a task carries its attempt's timeouts, and the
-- outcome a worker reports for it. A task has finished once `outcome` is set; `outcome_succeeded`,
-- `outcome` and `finished_at` are set together, by `complete_task`, and stay NULL until then. The
-- outcome is JSON text, like every payload: the output when the attempt succeeded, the failure when
-- not.
ALTER TABLE activity_tasks
    ADD COLUMN start_to_close_ms    BIGINT,
    ADD COLUMN heartbeat_timeout_ms BIGINT,
    ADD COLUMN outcome_succeeded    BOOLEAN,
    ADD COLUMN outcome              TEXT,
    ADD COLUMN finished_at          BIGINT;

-- What `claim_tasks` scans: unfinished tasks only, already in claim order (oldest `visible_at`
-- first, ties by key), so finished tasks waiting for their instance to take the outcome cost a claim
-- nothing; 0001's `activity_tasks_queue` held every task. The outcome test is spelled as in the
-- claim query. `finished_tasks` (by instance id), `Finish` (every task of an instance) and
-- `ContinueAsNew` (an instance's older generations) look tasks up by a prefix of the primary key,
-- which needs no index of its own.
DROP INDEX activity_tasks_queue;
CREATE INDEX activity_tasks_unfinished ON activity_tasks (visible_at, instance_id, generation, seq)
    WHERE outcome IS NULL;
