//! Liveness marks: each registered worker holds a session advisory lock on a connection of its
//! own, PostgreSQL drops it when the session ends (the process died, or the server restarted), and
//! [`release_dead_workers`] drops the leases of workers whose lock no session holds.
//!
//! A server restart drops every lock at once, so a dead worker is recognized only once the
//! server has been up for [`RESTART_GRACE`]: long enough for every live worker's holder, which
//! checks its connection every [`CHECK_EVERY`], to reconnect and lock again. A worker taken for
//! dead by mistake all the same (its connection alone broke for longer) loses its leases, which
//! is safe (its writes are fenced) but wasteful; its holder registers it again on reconnection.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::Connection;
use tokio::task::JoinHandle;
use workflow_core::store::{StartTaker, StoreError, WakeSignal, WorkerMark};

use super::retry::{failed, retrying_idempotent};
use super::signals::encode_signal;
use crate::shared::{now_ms, random_key};

/// The options a worker's own connection is opened with; its `Debug` leaves out the password.
#[derive(Clone)]
pub(super) struct Connect(pub(super) PgConnectOptions);

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("host", &self.0.get_host())
            .field("port", &self.0.get_port())
            .field("database", &self.0.get_database())
            .finish_non_exhaustive()
    }
}

/// How often a holder checks its connection (and reconnects and locks again once it broke).
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// How long after the server started no worker is taken for dead: every lock was dropped by the
/// restart, and live workers need a moment to take theirs again.
const RESTART_GRACE: Duration = Duration::from_secs(5);

/// Registers `worker` (or registers it again), taking the starts of `takes` (see
/// [`start_takers`]): takes a lock on `key` (a new key if `key` is taken by another session) on
/// `conn`, then writes the worker's row, so the row never names a key nobody holds while the
/// worker lives. Returns the key it holds.
async fn lock_and_register(
    conn: &mut PgConnection,
    worker: &str,
    takes: &[String],
    mut key: i64,
) -> Result<i64, sqlx::Error> {
    for _ in 0..8 {
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut *conn).await?;
        if locked {
            sqlx::query(
                "INSERT INTO workers (owner, lock_key, registered_at, takes) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (owner) DO UPDATE SET lock_key = EXCLUDED.lock_key, \
                 registered_at = EXCLUDED.registered_at, takes = EXCLUDED.takes",
            )
            .bind(worker)
            .bind(key)
            .bind(now_ms())
            .bind(takes)
            .execute(&mut *conn)
            .await?;
            return Ok(key);
        }
        key = random_key();
    }
    Err(sqlx::Error::Protocol("no free advisory lock key for a worker's liveness mark".into()))
}

/// Keeps `worker`'s lock: checks the connection every [`CHECK_EVERY`], and once it broke
/// reconnects, locks and registers again, until aborted (the mark dropped).
async fn hold(connect: PgConnectOptions, mut conn: PgConnection, (worker, takes): (String, Vec<String>), mut key: i64) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if conn.ping().await.is_ok() {
            continue;
        }
        tracing::warn!(worker, "postgres: a worker's liveness connection broke; reconnecting");
        let mut pause = CHECK_EVERY;
        loop {
            let again = async {
                let mut fresh = PgConnection::connect_with(&connect).await?;
                let held = lock_and_register(&mut fresh, &worker, &takes, key).await?;
                Ok::<_, sqlx::Error>((fresh, held))
            };
            match again.await {
                Ok((fresh, held)) => {
                    tracing::info!(worker, "postgres: a worker's liveness mark is held again");
                    (conn, key) = (fresh, held);
                    break;
                }
                Err(error) => {
                    tracing::debug!(worker, %error, "postgres: could not take a worker's liveness mark again yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// What a mark holds: the holder task (its connection holds the lock) and the store's record of
/// the workers registered here.
struct Held {
    holder: JoinHandle<()>,
    own: Arc<Mutex<HashSet<String>>>,
    worker: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Dropping the task drops its connection: the session ends and its lock goes with it.
        self.holder.abort();
        if let Ok(mut own) = self.own.lock() {
            own.remove(&self.worker);
        }
    }
}

/// Registers `worker`, taking the starts of `takes`, on a connection of its own (made with
/// `connect`) and spawns its holder.
pub(super) async fn register(
    connect: &PgConnectOptions,
    own: &Arc<Mutex<HashSet<String>>>,
    worker: &str,
    takes: &[String],
) -> Result<WorkerMark, StoreError> {
    let registering =
        |error: sqlx::Error| StoreError::Backend(format!("postgres: registering worker {worker:?}: {error}"));
    let mut conn = PgConnection::connect_with(connect).await.map_err(registering)?;
    let key = lock_and_register(&mut conn, worker, takes, random_key()).await.map_err(registering)?;
    if let Ok(mut own) = own.lock() {
        own.insert(worker.to_owned());
    }
    let holder = tokio::spawn(hold(connect.clone(), conn, (worker.to_owned(), takes.to_vec()), key));
    Ok(WorkerMark::new(Held { holder, own: own.clone(), worker: worker.to_owned() }))
}

/// Sets the workflows whose starts `worker` takes assigned (its row's `takes`; see
/// [`start_takers`]).
pub(super) async fn offer_starts(pool: &PgPool, worker: &str, takes: &[String]) -> Result<(), StoreError> {
    retrying_idempotent(|| async move {
        sqlx::query("UPDATE workers SET takes = $2 WHERE owner = $1")
            .bind(worker)
            .bind(takes)
            .execute(pool)
            .await
            .map_err(failed("changing the starts a worker takes"))
    })
    .await?;
    Ok(())
}

/// Whether some session holds the liveness lock of worker row `w` (a session advisory lock on its
/// `lock_key`, in this database).
const LOCK_HELD: &str = "EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.locktype = 'advisory' AND l.granted \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND l.classid::int8 = (w.lock_key >> 32) AND l.objid::int8 = (w.lock_key & 4294967295) \
     AND l.objsubid = 1)";

/// The live workers that take assigned starts, and the workflows of each, by owner.
static START_TAKERS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT w.owner, w.takes FROM workers AS w WHERE cardinality(w.takes) > 0 AND {LOCK_HELD} ORDER BY w.owner")
});

/// The live workers that take assigned starts ([`START_TAKERS`]): a row whose lock nobody holds is
/// left out, though a write would still assign to it until its release (which then releases
/// what was assigned).
pub(super) async fn start_takers(pool: &PgPool) -> Result<Vec<StartTaker>, StoreError> {
    let rows: Vec<(String, Vec<String>)> = retrying_idempotent(|| async move {
        sqlx::query_as(&START_TAKERS).fetch_all(pool).await.map_err(failed("reading the workers that take starts"))
    })
    .await?;
    Ok(rows.into_iter().map(|(owner, workflows)| StartTaker { owner, workflows }).collect())
}

/// The dead workers (a row whose lock no session holds, the server up for longer than the grace,
/// none of the workers registered in this process, `$1`), their leases dropped and their rows
/// deleted in one statement; returns how many leases, and sends `$4` (Runnable) on channel `$3`
/// if it released an instance and `$5` (TaskQueued) if it released a task. A worker row being
/// released by another process, or locked by a write assigning it a start
/// (`starts::decide_assigns`), is skipped (SKIP LOCKED): the next look releases it.
static RELEASE_DEAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH dead AS (SELECT w.owner, w.lock_key FROM workers AS w \
     WHERE w.owner <> ALL($1::text[]) \
     AND extract(epoch FROM now() - pg_postmaster_start_time()) * 1000 > $2 \
     AND NOT {LOCK_HELD} \
     FOR UPDATE OF w SKIP LOCKED), \
     owned AS (SELECT id FROM instances WHERE owner IN (SELECT owner FROM dead) ORDER BY id FOR NO KEY UPDATE), \
     instances AS (UPDATE instances SET owner = NULL, lease_until = NULL \
     WHERE id = ANY(ARRAY(SELECT id FROM owned)) RETURNING 1), \
     tasks AS (UPDATE activity_tasks SET owner = NULL, lease_until = NULL \
     WHERE owner IN (SELECT owner FROM dead) AND outcome IS NULL RETURNING 1), \
     slots AS (DELETE FROM activity_slots WHERE owner IN (SELECT owner FROM dead)), \
     forgotten AS (DELETE FROM workers AS w USING dead \
     WHERE w.owner = dead.owner AND w.lock_key = dead.lock_key RETURNING 1), \
     counted AS (SELECT (SELECT count(*) FROM instances) AS instances, (SELECT count(*) FROM tasks) AS tasks, \
     (SELECT count(*) FROM forgotten) AS forgotten) \
     SELECT instances + tasks, CASE WHEN instances > 0 THEN pg_notify($3, $4) END, \
     CASE WHEN tasks > 0 THEN pg_notify($3, $5) END FROM counted"
    )
});

/// Drops the leases of the workers whose process died (see [`RELEASE_DEAD`]); returns how many.
pub(super) async fn release_dead_workers(
    pool: &PgPool,
    channel: &str,
    own: &Mutex<HashSet<String>>,
) -> Result<u64, StoreError> {
    let own: Vec<String> = own.lock().map(|own| own.iter().cloned().collect()).unwrap_or_default();
    let grace = i64::try_from(RESTART_GRACE.as_millis()).unwrap_or(i64::MAX);
    let own = &own;
    let released: i64 = retrying_idempotent(|| async move {
        sqlx::query_scalar(&RELEASE_DEAD)
            .bind(own)
            .bind(grace)
            .bind(channel)
            .bind(encode_signal(&WakeSignal::Runnable))
            .bind(encode_signal(&WakeSignal::TaskQueued))
            .fetch_one(pool)
            .await
            .map_err(failed("releasing dead workers' leases"))
    })
    .await?;
    Ok(u64::try_from(released).unwrap_or_default())
}
