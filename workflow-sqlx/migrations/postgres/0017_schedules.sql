-- Schedules (issue 15; SQLite's migration 0018): what each schedule starts and when it next
-- fires. `spec` and `runs` are JSON the engine writes and reads; `schedules_due` holds the
-- schedules that may fire, by time, so a look for due ones reads only those due. `paused` is 0
-- or 1, as on SQLite.
CREATE TABLE schedules (
    id           TEXT   NOT NULL PRIMARY KEY,
    workflow     TEXT   NOT NULL,
    spec         TEXT   NOT NULL,
    paused       BIGINT NOT NULL DEFAULT 0,
    next_fire_at BIGINT,
    runs         TEXT   NOT NULL DEFAULT '[]',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at, id) WHERE paused = 0 AND next_fire_at IS NOT NULL;
