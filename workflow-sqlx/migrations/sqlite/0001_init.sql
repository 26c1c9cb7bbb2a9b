-- The initial schema. Times are milliseconds since the Unix epoch; payloads are JSON text,
-- stored exactly as the engine handed them over.
--
-- No foreign keys on purpose: a journal record (or later an event or a task) for an instance id
-- the store does not know is stored, as the in-memory store does, rather than failing the whole
-- group-committed batch it travels in. Purging deletes from every table in one transaction.

CREATE TABLE instances (
    id            TEXT    NOT NULL PRIMARY KEY,
    workflow      TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    input         TEXT    NOT NULL,
    output        TEXT,
    error         TEXT,
    custom_status TEXT,
    parent_id     TEXT,
    parent_seq    INTEGER,
    generation    INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    completed_at  INTEGER,
    owner         TEXT,
    lease_until   INTEGER,
    wake_at       INTEGER
);

-- What `claim` scans: runnable instances only, already in claim order (oldest first). The status
-- test must be spelled exactly like the claim query's for SQLite to use this partial index.
CREATE INDEX instances_runnable ON instances (created_at, id) WHERE status IN ('Pending', 'Running');
-- What `renew_leases` and `release_leases` look up.
CREATE INDEX instances_owner ON instances (owner);
-- Timers (wake-ups), for a later issue.
CREATE INDEX instances_wake ON instances (wake_at) WHERE wake_at IS NOT NULL;

CREATE TABLE journal (
    instance_id TEXT    NOT NULL,
    generation  INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    input       TEXT,
    payload     TEXT,
    attempt     INTEGER NOT NULL,
    due_at      INTEGER,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (instance_id, generation, seq)
) WITHOUT ROWID;

-- An inbox per instance, in arrival order (for a later issue).
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id     TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    consumed_by_seq INTEGER,
    created_at      INTEGER NOT NULL
);

CREATE INDEX events_inbox ON events (instance_id, seq);

-- Activities dispatched to other workers (for a later issue).
CREATE TABLE activity_tasks (
    instance_id TEXT    NOT NULL,
    generation  INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    input       TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    visible_at  INTEGER NOT NULL,
    owner       TEXT,
    lease_until INTEGER,
    PRIMARY KEY (instance_id, generation, seq)
) WITHOUT ROWID;

CREATE INDEX activity_tasks_queue ON activity_tasks (visible_at);
CREATE INDEX activity_tasks_owner ON activity_tasks (owner, lease_until);

-- One row `probe_commit` rewrites, to measure the disk's commit latency.
CREATE TABLE probe (
    id      INTEGER NOT NULL PRIMARY KEY,
    commits INTEGER NOT NULL
);
