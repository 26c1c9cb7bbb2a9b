//! Liveness marks: each registered worker holds an exclusive lock on a file of its own,
//! `<lock_key>.lock` in `<database file>-workers/`, which the operating system drops when the
//! process dies, however it dies; [`release_dead_workers`] drops the leases of workers whose file
//! is missing or unlocked. An in-memory database keeps no marks (it has one process).
//!
//! The locks are `flock`-style ([`File::try_lock`]): two handles on one file conflict even in one
//! process, so stores opened twice in one process see each other's workers as they would another
//! process's. They are as reliable as the file system's locks: a database on a network file
//! system whose locks are not enforced is not supported (SQLite's own locking needs them too).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use workflow_core::store::{StoreError, WorkerMark};

use super::{backend, SqliteStore};
use crate::shared::{now_ms, random_key};

/// The directory of the lock files of the database at `database`: `<database>-workers`.
pub(super) fn workers_dir(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-workers");
    PathBuf::from(name)
}

fn lock_file(dir: &Path, key: i64) -> PathBuf {
    dir.join(format!("{key}.lock"))
}

fn io(context: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |error| StoreError::Backend(format!("sqlite: {context}: {error}"))
}

/// A locked lock file, removed when dropped (while still locked, so no other process finds it
/// unlocked and takes its worker for dead before the worker is gone).
struct Held {
    path: PathBuf,
    _file: File,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the worker of the lock file at `path` is dead: the file is missing or nobody holds
/// its lock. A dead worker's file comes back locked (by this process), to be removed once its
/// leases are released; `None` if the worker is alive or the file cannot be read.
fn dead(path: &Path) -> Option<Option<Held>> {
    match OpenOptions::new().write(true).open(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some(None),
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "sqlite: cannot open a worker's lock file");
            None
        }
        Ok(file) => match file.try_lock() {
            Ok(()) => Some(Some(Held { path: path.to_owned(), _file: file })),
            Err(TryLockError::WouldBlock) => None,
            Err(TryLockError::Error(error)) => {
                tracing::debug!(path = %path.display(), %error, "sqlite: cannot test a worker's lock file");
                None
            }
        },
    }
}

/// Registers `worker`: creates and locks a file of its own, then writes the worker's row (so the
/// row never names a file nobody holds while the worker lives). `worker` is a runtime's lease
/// owner, new at each build, so it is normally registered once; should a previous registration
/// of it exist, its file is removed if its process is dead, and a warning says so if it is not
/// (two live holders of one owner cannot be told apart).
pub(super) async fn register(store: &SqliteStore, worker: &str) -> Result<Option<WorkerMark>, StoreError> {
    let Some(dir) = &store.workers_dir else { return Ok(None) };
    std::fs::create_dir_all(dir).map_err(io("creating the workers' lock directory"))?;
    let (key, held) = loop {
        let key = random_key();
        let path = lock_file(dir, key);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => {
                file.lock().map_err(io("locking a worker's lock file"))?;
                break (key, Held { path, _file: file });
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(io("creating a worker's lock file")(error)),
        }
    };
    let previous: Option<i64> = sqlx::query_scalar("SELECT lock_key FROM workers WHERE owner = ?")
        .bind(worker)
        .fetch_optional(&mut *store.reader().await?)
        .await
        .map_err(backend("reading a worker's registration"))?;
    sqlx::query(
        "INSERT INTO workers (owner, lock_key, registered_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (owner) DO UPDATE SET lock_key = excluded.lock_key, registered_at = excluded.registered_at",
    )
    .bind(worker)
    .bind(key)
    .bind(now_ms())
    .execute(&mut *store.writer().await?)
    .await
    .map_err(backend("registering a worker"))?;
    if let Some(previous) = previous {
        match dead(&lock_file(dir, previous)) {
            // Dropped at once: the file goes.
            Some(old) => drop(old),
            None => tracing::warn!(
                worker,
                "sqlite: another live process registered this worker (lease owner); the two cannot be told apart"
            ),
        }
    }
    Ok(Some(WorkerMark::new(held)))
}

/// Drops the leases of the registered workers whose process died, on instances and unfinished
/// tasks, and forgets them (their rows and files); returns how many leases.
pub(super) async fn release_dead_workers(store: &SqliteStore) -> Result<u64, StoreError> {
    let Some(dir) = &store.workers_dir else { return Ok(0) };
    let workers: Vec<(String, i64)> = sqlx::query_as("SELECT owner, lock_key FROM workers")
        .fetch_all(&mut *store.reader().await?)
        .await
        .map_err(backend("reading the registered workers"))?;
    // Each dead worker's file stays locked here until its leases are released.
    let dead: Vec<(String, i64, Option<Held>)> = workers
        .into_iter()
        .filter_map(|(owner, key)| dead(&lock_file(dir, key)).map(|held| (owner, key, held)))
        .collect();
    if dead.is_empty() {
        return Ok(0);
    }
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a release of dead workers").await?;
    let released = async {
        let mut released = 0;
        for (owner, key, _) in &dead {
            // Only if the row still names this file: a process restarted with the same worker id
            // may have registered again meanwhile, and its leases are its own.
            let registered = "EXISTS (SELECT 1 FROM workers WHERE owner = ?1 AND lock_key = ?2)";
            let instances = sqlx::query(&format!(
                "UPDATE instances SET owner = NULL, lease_until = NULL WHERE owner = ?1 AND {registered}"
            ))
            .bind(owner)
            .bind(key)
            .execute(&mut *conn)
            .await
            .map_err(backend("releasing a dead worker's leases"))?;
            let tasks = sqlx::query(&format!(
                "UPDATE activity_tasks SET owner = NULL, lease_until = NULL \
                 WHERE owner = ?1 AND outcome IS NULL AND {registered}"
            ))
            .bind(owner)
            .bind(key)
            .execute(&mut *conn)
            .await
            .map_err(backend("releasing a dead worker's task leases"))?;
            sqlx::query(&format!("DELETE FROM activity_slots WHERE owner = ?1 AND {registered}"))
                .bind(owner)
                .bind(key)
                .execute(&mut *conn)
                .await
                .map_err(backend("releasing a dead worker's slots"))?;
            sqlx::query("DELETE FROM workers WHERE owner = ?1 AND lock_key = ?2")
                .bind(owner)
                .bind(key)
                .execute(&mut *conn)
                .await
                .map_err(backend("forgetting a dead worker"))?;
            released += instances.rows_affected() + tasks.rows_affected();
        }
        Ok::<_, StoreError>(released)
    }
    .await;
    let released = store.end_immediate(&mut conn, released, "committing a release of dead workers").await?;
    // Their files go (each `Held` removes its own).
    drop(dead);
    Ok(released)
}
