-- Liveness marks (`Store::register_worker`): each worker process holds an exclusive lock on a
-- file of its own, `<lock_key>.lock` in the directory `<database file>-workers/`, for as long as
-- it lives; the operating system drops the lock when the process dies, however it dies. A
-- worker's row says which file is its; `release_dead_workers` (run by every live worker every few
-- hundred ms) drops the leases of the workers whose file is missing or unlocked, and deletes their
-- rows and files. A worker without a row keeps its leases until they lapse. An in-memory database
-- has no file and keeps no marks (one process only).
CREATE TABLE workers (
    owner         TEXT NOT NULL PRIMARY KEY,
    lock_key      INTEGER NOT NULL,
    registered_at INTEGER NOT NULL
);
