-- Liveness marks (`Store::register_worker`): each worker process holds a session advisory lock
-- on a connection of its own, under a key of its own, for as long as it lives; PostgreSQL drops
-- the lock when that session ends, so a process killed outright loses it at once. A worker's row
-- says which key is its; `release_dead_workers` (run by every live worker every few hundred ms)
-- drops the leases of the workers whose lock no session holds (`pg_locks`), and deletes their
-- rows. A worker without a row (an older version, or one whose row was deleted and that has not
-- reconnected yet) keeps its leases until they lapse.
--
-- Keys are random 63-bit numbers, since advisory locks are per database and several schemas (or
-- applications) may share one; a key already locked is never registered.
CREATE TABLE workers (
    owner         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    lock_key      BIGINT NOT NULL,
    registered_at BIGINT NOT NULL
);
