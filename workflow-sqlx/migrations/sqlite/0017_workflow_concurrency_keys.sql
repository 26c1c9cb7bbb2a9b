-- Per-key workflow limits (flow control): an instance carries the concurrency key its workflow
-- computed from its input at the start ('' when its limits are global, or when a start could not
-- compute it), and a rate-limited start is recorded under its key. A keyed claim finds the keys
-- with work waiting by skipping along `instances_keyed`, then claims each key's front from it.
ALTER TABLE instances ADD COLUMN concurrency_key TEXT NOT NULL DEFAULT '';
ALTER TABLE workflow_starts ADD COLUMN concurrency_key TEXT NOT NULL DEFAULT '';
CREATE INDEX instances_keyed ON instances (workflow, concurrency_key, priority DESC, created_at, id)
    WHERE status IN ('Pending', 'Running');
