-- Activity concurrency caps (flow control): a task carries its call's concurrency key ('' for
-- none), and a capped activity's claim counts, per key, the tasks holding a lease. Two partial
-- indexes serve it without reading the backlog: `activity_tasks_keyed` finds the keys with
-- unfinished tasks (one seek per key) and each key's oldest visible tasks in claim order;
-- `activity_tasks_holding` counts the tasks that are owned (at most the caps' sum, plus lapsed
-- leases not taken over yet). Their conditions are spelled exactly as in the claim's queries.
ALTER TABLE activity_tasks ADD COLUMN concurrency_key TEXT NOT NULL DEFAULT '';
CREATE INDEX activity_tasks_keyed ON activity_tasks (name, concurrency_key, visible_at, instance_id, generation, seq)
    WHERE outcome IS NULL;
CREATE INDEX activity_tasks_holding ON activity_tasks (name, concurrency_key, lease_until)
    WHERE outcome IS NULL AND owner IS NOT NULL;
