-- Schedules (issue 15): what each schedule starts and when it next fires. `spec` and `runs` are
-- JSON the engine writes and reads; `schedules_due` holds the schedules that may fire, by time,
-- so a look for due ones reads only those due.
CREATE TABLE schedules (
    id           TEXT    NOT NULL PRIMARY KEY,
    workflow     TEXT    NOT NULL,
    spec         TEXT    NOT NULL,
    paused       INTEGER NOT NULL DEFAULT 0,
    next_fire_at INTEGER,
    runs         TEXT    NOT NULL DEFAULT '[]',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at, id) WHERE paused = 0 AND next_fire_at IS NOT NULL;
