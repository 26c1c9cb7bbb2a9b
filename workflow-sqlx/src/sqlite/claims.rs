//! Claims and leases: taking runnable instances and visible tasks for a worker (a look on a reader
//! first, so an idle poll costs no write, then the claim under the write lock, which sets aside
//! the rows that do not decode: see `shared::quarantine`), renewing and releasing a worker's
//! leases, and storing a claimed task's outcome.

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::Row;
use std::cmp::Reverse;
use std::collections::HashMap;

use workflow_core::store::{
    key_room, ActivityCap, InstanceRecord, Millis, RateLimit, RuntimeStatus, StoreError, TaskCompletion, TaskOutcome,
    TaskRecord, WakeSignal, WorkflowCap,
};

use super::{backend, SqliteStore};
use crate::shared::order::{instance_order, task_order};
use crate::shared::plan::TaskKey;
use crate::shared::quarantine::SetAside;
use crate::shared::rows::{instance_from_row, task_from_row, INSTANCE_COLUMNS, TASK_COLUMNS};
use crate::shared::{to_i64, Claimable, RENEWAL_CHUNK};

/// The claim's three candidate sets, as scans: unowned instances ready now (no wake-up), unowned
/// instances whose wake-up has come, and owned ones whose lease lapsed; together, every runnable
/// instance. `?1` is `now`, the workflow names are bound from `?3` on (`?2` is the limit in the
/// queries that use these).
///
/// Each set is read through its own index (`instances_ready`, already in claim order;
/// `instances_due`, by wake-up time; `instances_owned`, the lapsed range of each workflow's
/// leases), named (`INDEXED BY`), with the partial indexes' tests spelled exactly as they are so
/// SQLite can use them: left to itself, SQLite's planner prefers the `(status, created_at, id)`
/// index the status-filtered list reads, which walks every running instance (those waiting on
/// far-off timers and events too) and sorts them on each claim. An instance waiting for a later
/// wake-up is in no set, nor is one running in a worker under a live lease: a claim never reads
/// past the instances workers hold.
struct ClaimScans {
    ready: String,
    due: String,
    lapsed: String,
}

impl ClaimScans {
    fn new(workflows: usize, which: Claimable) -> Self {
        let names: Vec<String> = (0..workflows).map(|i| format!("?{}", i + 3)).collect();
        let (names, which) = (names.join(", "), which.condition());
        let claimable = "status IN ('Pending', 'Running')";
        Self {
            ready: format!(
                "FROM instances INDEXED BY instances_ready \
                 WHERE {claimable} AND wake_at IS NULL AND owner IS NULL AND workflow IN ({names}){which}"
            ),
            due: format!(
                "FROM instances INDEXED BY instances_due \
                 WHERE {claimable} AND wake_at <= ?1 AND owner IS NULL AND workflow IN ({names}){which}"
            ),
            // Two ranges, those with no lease and those whose lease lapsed: SQLite reads a
            // condition that ORs them as every owned instance of the workflow.
            lapsed: format!(
                "FROM (SELECT * FROM (SELECT * {owned} AND lease_until IS NULL ORDER BY created_at, id LIMIT ?2) \
                 UNION ALL SELECT * FROM (SELECT * {owned} AND lease_until < ?1 \
                 ORDER BY lease_until, created_at, id LIMIT ?2))",
                owned = format_args!(
                    "FROM instances INDEXED BY instances_owned WHERE owner IS NOT NULL AND workflow IN ({names}) \
                     AND {claimable} AND (wake_at IS NULL OR wake_at <= ?1){which}"
                ),
            ),
        }
    }
}

/// The claim's two statements for `workflows` names (and `which` of their instances): the probe
/// a reader runs first (is anything claimable?) and the claim itself (`?1` now, `?2` the limit,
/// the names from `?3`, then the worker and the lease's end).
///
/// The claim re-selects under the write lock, so it is exact however many workers raced to the
/// same candidates. The ready set is taken highest priority first, then oldest first (its index's
/// order); the due set in wake-up order, its index's (ordering it otherwise would sort every due
/// instance on each claim); the lapsed set by lease (none first); the picks of the sets are then
/// served in priority order, oldest first within a priority.
fn claim_statements(workflows: usize, which: Claimable) -> (String, String) {
    let ClaimScans { ready, due, lapsed } = ClaimScans::new(workflows, which);
    let probe = format!("SELECT 1 {ready} UNION ALL SELECT 1 {due} UNION ALL SELECT 1 {lapsed} LIMIT ?2");
    let columns = "id, created_at, priority";
    let claim = format!(
        "UPDATE instances SET owner = ?{worker}, lease_until = ?{until}, wake_at = NULL WHERE id IN \
         (SELECT id FROM \
         (SELECT {columns} FROM (SELECT {columns} {ready} ORDER BY priority DESC, created_at, id LIMIT ?2) \
         UNION ALL SELECT {columns} FROM (SELECT {columns} {due} ORDER BY wake_at, created_at, id LIMIT ?2) \
         UNION ALL SELECT {columns} FROM (SELECT {columns} {lapsed} ORDER BY lease_until, created_at, id LIMIT ?2)) \
         ORDER BY priority DESC, created_at, id LIMIT ?2) \
         RETURNING rowid AS claimed_rowid, {INSTANCE_COLUMNS}",
        worker = workflows + 3,
        until = workflows + 4,
    );
    (probe, claim)
}

/// The tasks `claim_tasks` may take, as a condition: unfinished, visible at `?1`, of the activities
/// bound from `?3` on (`?2` is the limit), unowned or with a lapsed lease. The outcome test is
/// spelled as in the partial index `activity_tasks_unfinished`, so SQLite uses it.
fn claimable_tasks(activities: usize) -> String {
    let names: Vec<String> = (0..activities).map(|i| format!("?{}", i + 3)).collect();
    format!(
        "outcome IS NULL AND visible_at <= ?1 AND name IN ({}) \
         AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?1)",
        names.join(", ")
    )
}

/// The claim of the first `?2` claimable tasks (highest priority, then oldest) of `activities`
/// names bound from `?3` on, for the worker and lease bound after them; read off the front of
/// `activity_tasks_unfinished`, which is in that order (left to itself, SQLite seeks the name in
/// `activity_tasks_keyed` and sorts every unfinished task of it).
fn task_claim(activities: usize) -> String {
    format!(
        "UPDATE activity_tasks SET owner = ?{worker}, lease_until = ?{until} \
         WHERE (instance_id, generation, seq) IN \
         (SELECT instance_id, generation, seq FROM activity_tasks INDEXED BY activity_tasks_unfinished \
         WHERE {claimable} ORDER BY priority DESC, visible_at, instance_id, generation, seq LIMIT ?2) \
         RETURNING {TASK_COLUMNS}",
        claimable = claimable_tasks(activities),
        worker = activities + 3,
        until = activities + 4,
    )
}

/// Claims up to `limit` runnable instances of `workflows` for `worker` until `lease_until`,
/// oldest first.
pub(super) async fn claim(
    store: &SqliteStore,
    worker: &str,
    workflows: &[String],
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Result<Vec<InstanceRecord>, StoreError> {
    if workflows.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    if !anything_claimable(store, workflows, now).await? {
        return Ok(Vec::new());
    }
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a claim").await?;
    let mut taken = Taken::default();
    let claimed =
        claim_in_transaction(store, &mut conn, worker, workflows, Claimable::Any, now, lease_until, limit, &mut taken)
            .await
            .map(|_| ());
    let () = store.end_immediate(&mut conn, claimed, "committing a claim").await?;
    Ok(taken.finish(store))
}

/// Claims as [`claim`] does, taking no instance of a capped workflow past its cap (see
/// `Store::claim_capped`): under the one write lock, so the running instances it counts cannot
/// change before its claims commit. Each capped workflow with room is claimed on its own (up to
/// its room), then the uncapped ones with what is left of `limit`, so a capped backlog never
/// crowds the others out of a claim.
#[allow(clippy::too_many_arguments)]
pub(super) async fn claim_capped(
    store: &SqliteStore,
    worker: &str,
    workflows: &[String],
    caps: &[WorkflowCap],
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Result<Vec<InstanceRecord>, StoreError> {
    if caps.is_empty() || workflows.is_empty() || limit == 0 {
        return claim(store, worker, workflows, now, lease_until, limit).await;
    }
    if !anything_claimable(store, workflows, now).await? {
        return Ok(Vec::new());
    }
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a claim").await?;
    let mut taken = Taken::default();
    let claimed = async {
        let running = running_of(&mut conn, caps, now).await?;
        for cap in caps.iter().filter(|cap| workflows.contains(&cap.workflow)) {
            if cap.keyed {
                let want = limit - taken.claimed.len();
                claim_keyed(store, &mut conn, worker, cap, now, lease_until, want, &mut taken).await?;
                continue;
            }
            let started = match cap.rate {
                Some(rate) => started_of(&mut conn, &cap.workflow, rate, now).await?,
                None => 0,
            };
            let room = cap.room(running.get(&cap.workflow).copied().unwrap_or(0), started);
            let want = room.total.min(limit - taken.claimed.len());
            let only = [cap.workflow.clone()];
            let (conn, taken) = (&mut *conn, &mut taken);
            match room.starts {
                None => {
                    let which = Claimable::Any;
                    claim_in_transaction(store, conn, worker, &only, which, now, lease_until, want, taken).await?;
                }
                Some(starts) => {
                    let which = Claimable::Resumptions;
                    let resumed =
                        claim_in_transaction(store, conn, worker, &only, which, now, lease_until, want, taken).await?;
                    let (which, want) = (Claimable::Starts, starts.min(want - resumed));
                    let begun =
                        claim_in_transaction(store, conn, worker, &only, which, now, lease_until, want, taken).await?;
                    record_starts(conn, &cap.workflow, "", now, begun).await?;
                }
            }
        }
        let uncapped: Vec<String> =
            workflows.iter().filter(|w| !caps.iter().any(|cap| &cap.workflow == *w)).cloned().collect();
        let rest = limit - taken.claimed.len();
        claim_in_transaction(store, &mut conn, worker, &uncapped, Claimable::Any, now, lease_until, rest, &mut taken)
            .await
            .map(|_| ())
    }
    .await;
    let () = store.end_immediate(&mut conn, claimed, "committing a claim").await?;
    Ok(taken.finish(store))
}

/// Claims up to `limit` instances of the workflow of `cap`, whose limits apply per concurrency
/// key, in the open write transaction: the keys with instances that may run are found by
/// skipping along `instances_keyed` (one probe per key), then each key with room is claimed from
/// its front, as the unkeyed claim does for a whole workflow (resumptions first, then starts up
/// to the rate's room). Keys are served in key order; a claim that runs out of `limit` leaves
/// the later keys to the next one.
#[allow(clippy::too_many_arguments)]
async fn claim_keyed(
    store: &SqliteStore,
    conn: &mut SqliteConnection,
    worker: &str,
    cap: &WorkflowCap,
    now: Millis,
    lease_until: Millis,
    limit: usize,
    taken: &mut Taken,
) -> Result<(), StoreError> {
    let workflow = cap.workflow.as_str();
    let running = counts(
        sqlx::query(
            "SELECT concurrency_key, count(*) FROM instances INDEXED BY instances_owned WHERE workflow = ?1 \
             AND owner IS NOT NULL AND lease_until >= ?2 AND status IN ('Pending', 'Running') GROUP BY concurrency_key",
        )
        .bind(workflow)
        .bind(now)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend("counting running instances per key"))?,
    )?;
    let started = match cap.rate {
        Some(rate) => {
            forget_old_starts(conn, workflow, rate, now).await?;
            counts(
                sqlx::query(
                    "SELECT concurrency_key, sum(starts) FROM workflow_starts WHERE workflow = ? \
                     GROUP BY concurrency_key",
                )
                .bind(workflow)
                .fetch_all(&mut *conn)
                .await
                .map_err(backend("counting recent starts per key"))?,
            )?
        }
        None => HashMap::new(),
    };
    let keys: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE keys(k) AS ( \
         SELECT (SELECT concurrency_key FROM instances INDEXED BY instances_keyed \
         WHERE workflow = ?1 AND status IN ('Pending', 'Running') ORDER BY concurrency_key LIMIT 1) \
         UNION ALL SELECT (SELECT concurrency_key FROM instances INDEXED BY instances_keyed \
         WHERE workflow = ?1 AND status IN ('Pending', 'Running') AND concurrency_key > keys.k \
         ORDER BY concurrency_key LIMIT 1) FROM keys WHERE keys.k IS NOT NULL) \
         SELECT k FROM keys WHERE k IS NOT NULL",
    )
    .bind(workflow)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend("finding the concurrency keys with work"))?;
    for key in keys {
        let left = limit - taken.claimed.len();
        if left == 0 {
            break;
        }
        let count = |counts: &HashMap<String, u64>| counts.get(&key).copied().unwrap_or(0);
        let room = cap.room(count(&running), count(&started));
        let want = room.total.min(left);
        let scope = KeyScope { worker, workflow, key: &key, now, lease_until };
        match room.starts {
            None => {
                claim_key(store, conn, &scope, Claimable::Any, want, taken).await?;
            }
            Some(starts) => {
                let resumed = claim_key(store, conn, &scope, Claimable::Resumptions, want, taken).await?;
                let begun =
                    claim_key(store, conn, &scope, Claimable::Starts, starts.min(want - resumed), taken).await?;
                record_starts(conn, workflow, &key, now, begun).await?;
            }
        }
    }
    Ok(())
}

/// Which instances [`claim_key`] claims, and for whom.
struct KeyScope<'a> {
    worker: &'a str,
    workflow: &'a str,
    key: &'a str,
    now: Millis,
    lease_until: Millis,
}

/// Claims up to `limit` instances (`which` of them) of one workflow and concurrency key, highest
/// priority first, then oldest first, into `taken`; returns how many rows it claimed.
async fn claim_key(
    store: &SqliteStore,
    conn: &mut SqliteConnection,
    scope: &KeyScope<'_>,
    which: Claimable,
    limit: usize,
    taken: &mut Taken,
) -> Result<usize, StoreError> {
    if limit == 0 {
        return Ok(0);
    }
    let claim = format!(
        "UPDATE instances SET owner = ?5, lease_until = ?6, wake_at = NULL WHERE id IN \
         (SELECT id FROM instances INDEXED BY instances_keyed WHERE workflow = ?1 AND concurrency_key = ?2 \
         AND status IN ('Pending', 'Running'){} AND (wake_at IS NULL OR wake_at <= ?3) \
         AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?3) \
         ORDER BY priority DESC, created_at, id LIMIT ?4) \
         RETURNING rowid AS claimed_rowid, {INSTANCE_COLUMNS}",
        which.condition()
    );
    let rows = sqlx::query(&claim)
        .bind(scope.workflow)
        .bind(scope.key)
        .bind(scope.now)
        .bind(to_i64(limit))
        .bind(scope.worker)
        .bind(scope.lease_until)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend("claiming instances of a concurrency key"))?;
    take_rows(store, conn, &rows, scope.now, taken).await?;
    Ok(rows.len())
}

/// Records `begun` starts of `workflow` with concurrency `key` at `now`, against its rate.
pub(super) async fn record_starts(
    conn: &mut SqliteConnection,
    workflow: &str,
    key: &str,
    now: Millis,
    begun: usize,
) -> Result<(), StoreError> {
    if begun > 0 {
        sqlx::query("INSERT INTO workflow_starts (workflow, concurrency_key, started_at, starts) VALUES (?, ?, ?, ?)")
            .bind(workflow)
            .bind(key)
            .bind(now)
            .bind(to_i64(begun))
            .execute(&mut *conn)
            .await
            .map_err(backend("recording rate-limited starts"))?;
    }
    Ok(())
}

/// Forgets the starts of rate-limited `workflow` a period old (so the table holds one period).
pub(super) async fn forget_old_starts(
    conn: &mut SqliteConnection,
    workflow: &str,
    rate: RateLimit,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM workflow_starts WHERE workflow = ? AND started_at <= ?")
        .bind(workflow)
        .bind(now.saturating_sub(rate.period_ms))
        .execute(&mut *conn)
        .await
        .map_err(backend("forgetting old starts"))?;
    Ok(())
}

/// The starts of rate-limited `workflow` within `rate`'s period before `now`, after forgetting
/// those a period old (so the table holds one period).
async fn started_of(
    conn: &mut SqliteConnection,
    workflow: &str,
    rate: RateLimit,
    now: Millis,
) -> Result<u64, StoreError> {
    forget_old_starts(conn, workflow, rate, now).await?;
    let started: i64 = sqlx::query_scalar("SELECT coalesce(sum(starts), 0) FROM workflow_starts WHERE workflow = ?")
        .bind(workflow)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend("counting recent starts"))?;
    Ok(u64::try_from(started).unwrap_or(0))
}

/// Whether any instance of `workflows` is claimable at `now`, looked up on a reader before a
/// claim takes the write lock: an idle poll costs a read, not a commit.
async fn anything_claimable(store: &SqliteStore, workflows: &[String], now: Millis) -> Result<bool, StoreError> {
    let (probe, _) = claim_statements(workflows.len(), Claimable::Any);
    let mut query = sqlx::query(&probe).bind(now).bind(1_i64);
    for workflow in workflows {
        query = query.bind(workflow.as_str());
    }
    let any =
        query.fetch_optional(&mut *store.reader().await?).await.map_err(backend("looking for claimable instances"))?;
    Ok(any.is_some())
}

/// The instances of the workflows capped as a whole (not per key: `claim_keyed` counts those)
/// that hold a lease at `now`, by workflow.
async fn running_of(
    conn: &mut SqliteConnection,
    caps: &[WorkflowCap],
    now: Millis,
) -> Result<HashMap<String, u64>, StoreError> {
    let whole: Vec<&str> = caps.iter().filter(|cap| !cap.keyed).map(|cap| cap.workflow.as_str()).collect();
    if whole.is_empty() {
        return Ok(HashMap::new());
    }
    let marks = vec!["?"; whole.len()].join(", ");
    let sql = format!(
        "SELECT workflow, count(*) FROM instances INDEXED BY instances_owned WHERE owner IS NOT NULL \
         AND lease_until >= ? AND status IN ('Pending', 'Running') AND workflow IN ({marks}) GROUP BY workflow"
    );
    let query = whole.iter().fold(sqlx::query(&sql).bind(now), |query, workflow| query.bind(*workflow));
    counts(query.fetch_all(&mut *conn).await.map_err(backend("counting running instances"))?)
}

/// What the claims of one transaction took: the rows that decoded, and the ids of the instances
/// failed because theirs did not.
#[derive(Default)]
struct Taken {
    claimed: Vec<InstanceRecord>,
    failed: Vec<String>,
}

impl Taken {
    /// After the commit: counts the decoded rows as healthy, signals the failed instances' ends,
    /// and returns the claimed instances in claim order.
    fn finish(self, store: &SqliteStore) -> Vec<InstanceRecord> {
        let Taken { mut claimed, failed } = self;
        store.quarantine.decoded(claimed.iter().map(|record| record.id.as_str()));
        store.signal(failed.into_iter().map(WakeSignal::Finished));
        claimed.sort_by(|a, b| instance_order(a).cmp(&instance_order(b)));
        claimed
    }
}

/// Claims up to `limit` instances (`which` of them) of `workflows` in the open write transaction,
/// into `taken`, and returns how many rows it claimed. Each row is decoded on its own: a damaged
/// one is set aside (see `shared::quarantine`) before the commit, so the claim never leaves a row
/// owned that it does not return.
#[allow(clippy::too_many_arguments)]
async fn claim_in_transaction(
    store: &SqliteStore,
    conn: &mut SqliteConnection,
    worker: &str,
    workflows: &[String],
    which: Claimable,
    now: Millis,
    lease_until: Millis,
    limit: usize,
    taken: &mut Taken,
) -> Result<usize, StoreError> {
    if workflows.is_empty() || limit == 0 {
        return Ok(0);
    }
    let (_, claim) = claim_statements(workflows.len(), which);
    let mut query = sqlx::query(&claim).bind(now).bind(to_i64(limit));
    for workflow in workflows {
        query = query.bind(workflow.as_str());
    }
    let query = query.bind(worker).bind(lease_until);
    let rows = query.fetch_all(&mut *conn).await.map_err(backend("claiming instances"))?;
    take_rows(store, conn, &rows, now, taken).await?;
    Ok(rows.len())
}

/// Decodes claimed `rows` into `taken`, each on its own, setting aside those that do not decode,
/// and makes the Pending ones Running as of `now` (the claim is their start; they are returned
/// Pending, as found: see `Store::claim`). SQLite's `RETURNING` gives only the new values, so the
/// claim itself leaves the status alone and this second statement, in the same transaction, takes
/// the starts by rowid.
async fn take_rows(
    store: &SqliteStore,
    conn: &mut SqliteConnection,
    rows: &[SqliteRow],
    now: Millis,
    taken: &mut Taken,
) -> Result<(), StoreError> {
    let mut starts: Vec<i64> = Vec::new();
    for row in rows {
        match instance_from_row(row) {
            Ok(record) => {
                if record.status == RuntimeStatus::Pending {
                    starts.push(row.try_get("claimed_rowid").map_err(backend("reading a claimed row's rowid"))?);
                }
                taken.claimed.push(record);
            }
            Err(error) => taken.failed.extend(set_aside(store, conn, row, &error, now).await?),
        }
    }
    if !starts.is_empty() {
        // A JSON array of integers, which `json_each` reads as one parameter.
        let rowids = format!("[{}]", starts.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
        sqlx::query(
            "UPDATE instances SET status = 'Running', updated_at = ?1 WHERE rowid IN (SELECT value FROM json_each(?2))",
        )
        .bind(now)
        .bind(rowids)
        .execute(&mut *conn)
        .await
        .map_err(backend("starting the claimed instances"))?;
    }
    Ok(())
}

/// Sets aside a claimed row that did not decode (`error`), in the claim's transaction: undoes its
/// claim with a later wake-up, or fails its instance (see `shared::quarantine`). Returns the id of
/// an instance it failed, if its id reads.
async fn set_aside(
    store: &SqliteStore,
    conn: &mut SqliteConnection,
    row: &SqliteRow,
    error: &StoreError,
    now: Millis,
) -> Result<Option<String>, StoreError> {
    // The rowid names the row whatever its columns hold.
    let rowid: i64 = row.try_get("claimed_rowid").map_err(backend("reading a claimed row's rowid"))?;
    let id: Option<String> = row.try_get("id").ok();
    let key = id.clone().unwrap_or_else(|| format!("instances rowid {rowid}"));
    match store.quarantine.set_aside(&key, now, error) {
        SetAside::Later { wake_at } => {
            sqlx::query("UPDATE instances SET owner = NULL, lease_until = NULL, wake_at = ? WHERE rowid = ?")
                .bind(wake_at)
                .bind(rowid)
                .execute(&mut *conn)
                .await
                .map_err(backend("setting a damaged row aside"))?;
            Ok(None)
        }
        SetAside::Fail { error } => {
            // As a finish: its tasks go and its parent wakes to see it.
            sqlx::query("DELETE FROM activity_tasks WHERE instance_id = (SELECT id FROM instances WHERE rowid = ?)")
                .bind(rowid)
                .execute(&mut *conn)
                .await
                .map_err(backend("deleting a damaged instance's tasks"))?;
            sqlx::query(
                "UPDATE instances SET wake_at = ?1 WHERE id = (SELECT parent_id FROM instances WHERE rowid = ?2)",
            )
            .bind(now)
            .bind(rowid)
            .execute(&mut *conn)
            .await
            .map_err(backend("waking a damaged instance's parent"))?;
            sqlx::query(
                "UPDATE instances SET status = 'Failed', error = ?1, owner = NULL, lease_until = NULL, \
                 wake_at = NULL, updated_at = ?2, completed_at = ?2 WHERE rowid = ?3",
            )
            .bind(error)
            .bind(now)
            .bind(rowid)
            .execute(&mut *conn)
            .await
            .map_err(backend("failing a damaged instance"))?;
            Ok(id)
        }
    }
}

/// Extends every lease `worker` holds (of instances, and of unfinished tasks) to `lease_until`;
/// returns how many.
pub(super) async fn renew_leases(store: &SqliteStore, worker: &str, lease_until: Millis) -> Result<u64, StoreError> {
    let mut renewed = renew_task_leases(store, worker, lease_until).await?;
    // The instances a chunk at a time (by rowid, the order `instances_owner` keeps a worker's
    // rows in), each chunk a transaction of its own: the write lock is held for a chunk's time,
    // so the commits of other instances go on between chunks.
    let mut after = 0_i64;
    loop {
        let mut conn = store.writer().await?;
        store.begin_immediate(&mut conn, "beginning a renewal").await?;
        let chunk = sqlx::query_scalar::<_, i64>(
            "UPDATE instances SET lease_until = ?1 WHERE rowid IN \
             (SELECT rowid FROM instances WHERE owner = ?2 AND rowid > ?3 ORDER BY rowid LIMIT ?4) RETURNING rowid",
        )
        .bind(lease_until)
        .bind(worker)
        .bind(after)
        .bind(to_i64(RENEWAL_CHUNK))
        .fetch_all(&mut *conn)
        .await
        .map_err(backend("renewing leases"));
        let rowids = store.end_immediate(&mut conn, chunk, "committing a renewal").await?;
        renewed += rowids.len() as u64;
        match rowids.iter().max() {
            Some(last) if rowids.len() >= RENEWAL_CHUNK => after = *last,
            _ => return Ok(renewed),
        }
    }
}

/// Extends `worker`'s leases on unfinished tasks and on activity slots to `lease_until`; returns
/// how many.
async fn renew_task_leases(store: &SqliteStore, worker: &str, lease_until: Millis) -> Result<u64, StoreError> {
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a renewal").await?;
    let renewed = async {
        let tasks = sqlx::query("UPDATE activity_tasks SET lease_until = ? WHERE owner = ? AND outcome IS NULL")
            .bind(lease_until)
            .bind(worker)
            .execute(&mut *conn)
            .await
            .map_err(backend("renewing task leases"))?;
        let slots = sqlx::query("UPDATE activity_slots SET lease_until = ? WHERE owner = ?")
            .bind(lease_until)
            .bind(worker)
            .execute(&mut *conn)
            .await
            .map_err(backend("renewing slots"))?;
        Ok::<_, StoreError>(tasks.rows_affected() + slots.rows_affected())
    }
    .await;
    store.end_immediate(&mut conn, renewed, "committing a renewal").await
}

/// Gives up every lease `worker` holds; returns how many.
pub(super) async fn release_leases(store: &SqliteStore, worker: &str) -> Result<u64, StoreError> {
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a release").await?;
    let released = async {
        let instances = sqlx::query("UPDATE instances SET owner = NULL, lease_until = NULL WHERE owner = ?")
            .bind(worker)
            .execute(&mut *conn)
            .await
            .map_err(backend("releasing leases"))?;
        let tasks = sqlx::query(
            "UPDATE activity_tasks SET owner = NULL, lease_until = NULL WHERE owner = ? AND outcome IS NULL",
        )
        .bind(worker)
        .execute(&mut *conn)
        .await
        .map_err(backend("releasing task leases"))?;
        sqlx::query("DELETE FROM activity_slots WHERE owner = ?")
            .bind(worker)
            .execute(&mut *conn)
            .await
            .map_err(backend("releasing slots"))?;
        Ok::<_, StoreError>(instances.rows_affected() + tasks.rows_affected())
    }
    .await;
    store.end_immediate(&mut conn, released, "committing a release").await
}

/// Capped tasks taken (or their starts recorded) per statement: three variables each.
const TAKES_PER_STATEMENT: usize = 500;

/// Takes `picks` tasks, bound as (instance, generation, seq) from `?4` on, for worker `?1` until
/// `?2`: those still claimable at `?3` (re-checked under the write lock), each by its key, in one
/// statement.
fn take_picks(picks: usize) -> String {
    format!(
        "UPDATE activity_tasks SET owner = ?1, lease_until = ?2 WHERE (instance_id, generation, seq) IN \
         (VALUES {}) AND outcome IS NULL AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?3) \
         RETURNING {TASK_COLUMNS}",
        (0..picks).map(|i| format!("(?{}, ?{}, ?{})", 4 + 3 * i, 5 + 3 * i, 6 + 3 * i)).collect::<Vec<_>>().join(", ")
    )
}

/// Claims up to `limit` tasks of `activities` visible at `now` for `worker` until `lease_until`,
/// oldest first, taking no task of a capped activity past its cap (see
/// `Store::claim_tasks_capped`): under the one write lock, so the tasks it counts cannot change
/// before its claims commit. Each capped activity with room is claimed on its own, key by key
/// (`capped_picks`), then the uncapped ones with what is left of `limit`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn claim_tasks(
    store: &SqliteStore,
    worker: &str,
    activities: &[String],
    caps: &[ActivityCap],
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Result<Vec<TaskRecord>, StoreError> {
    if activities.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let claimable = claimable_tasks(activities.len());

    // Look before taking the write lock: an idle poll costs a read, not a commit.
    let probe = format!("SELECT 1 FROM activity_tasks WHERE {claimable} LIMIT ?2");
    let mut query = sqlx::query(&probe).bind(now).bind(1_i64);
    for activity in activities {
        query = query.bind(activity.as_str());
    }
    let any =
        query.fetch_optional(&mut *store.reader().await?).await.map_err(backend("looking for claimable tasks"))?;
    if any.is_none() {
        return Ok(Vec::new());
    }

    let mut capped: Vec<&ActivityCap> = caps.iter().filter(|cap| activities.contains(&cap.activity)).collect();
    capped.sort_by(|a, b| a.activity.cmp(&b.activity));
    let uncapped: Vec<&String> = activities.iter().filter(|a| !caps.iter().any(|cap| &cap.activity == *a)).collect();
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a task claim").await?;
    // Each row decoded on its own, in the claim's transaction: a damaged one is set aside before
    // the commit (see `Quarantine::set_aside_task`), so the claim never leaves a task owned that
    // it does not return.
    let claimed = async {
        let mut claimed = Vec::new();
        for cap in capped {
            let left = limit - claimed.len();
            if left == 0 {
                break;
            }
            let already = claimed.len();
            let picks = capped_picks(&mut conn, cap, now, left).await?;
            for chunk in picks.chunks(TAKES_PER_STATEMENT) {
                let take = take_picks(chunk.len());
                let query = sqlx::query(&take).bind(worker).bind(lease_until).bind(now);
                let query = chunk.iter().fold(query, |query, (instance_id, generation, seq)| {
                    query.bind(instance_id.as_str()).bind(*generation).bind(*seq)
                });
                let rows = query.fetch_all(&mut *conn).await.map_err(backend("claiming capped tasks"))?;
                decode_tasks(store, &mut conn, &rows, now, &mut claimed).await?;
            }
            if cap.rate.is_some() {
                for chunk in claimed[already..].chunks(TAKES_PER_STATEMENT) {
                    let record = format!(
                        "INSERT INTO activity_starts (name, concurrency_key, started_at) VALUES {}",
                        vec!["(?, ?, ?)"; chunk.len()].join(", ")
                    );
                    let query = chunk.iter().fold(sqlx::query(&record), |query, task| {
                        query.bind(cap.activity.as_str()).bind(task.concurrency_key.as_str()).bind(now)
                    });
                    query.execute(&mut *conn).await.map_err(backend("recording rate-limited starts"))?;
                }
            }
        }
        let rest = limit - claimed.len();
        if rest > 0 && !uncapped.is_empty() {
            // Re-selected under the write lock, so exact however many workers raced.
            let claim = task_claim(uncapped.len());
            let query = uncapped.iter().fold(sqlx::query(&claim).bind(now).bind(to_i64(rest)), |query, activity| {
                query.bind(activity.as_str())
            });
            let query = query.bind(worker).bind(lease_until);
            let rows = query.fetch_all(&mut *conn).await.map_err(backend("claiming tasks"))?;
            decode_tasks(store, &mut conn, &rows, now, &mut claimed).await?;
        }
        Ok::<_, StoreError>(claimed)
    }
    .await;
    let mut claimed = store.end_immediate(&mut conn, claimed, "committing a task claim").await?;
    claimed.sort_by(|a, b| task_order(a).cmp(&task_order(b)));
    Ok(claimed)
}

/// The keys of the tasks a capped activity's claim may take at `now`, at most `left`: per
/// concurrency key, the first claimable tasks (highest priority, then oldest) up to the cap less
/// the tasks of that key holding a lease; of these, the first `left`. Reads indexes only: the owned tasks
/// (`activity_tasks_holding`), one seek per key with unfinished tasks and each key's front
/// (`activity_tasks_keyed`), never the whole backlog.
async fn capped_picks(
    conn: &mut SqliteConnection,
    cap: &ActivityCap,
    now: Millis,
    left: usize,
) -> Result<Vec<(String, i64, i64)>, StoreError> {
    let name = cap.activity.as_str();
    let (running, started) = running_and_started(conn, cap, now).await?;
    let keys: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE keys(k) AS (\
         SELECT (SELECT concurrency_key FROM activity_tasks INDEXED BY activity_tasks_keyed \
         WHERE name = ?1 AND outcome IS NULL ORDER BY concurrency_key LIMIT 1) \
         UNION ALL SELECT (SELECT concurrency_key FROM activity_tasks INDEXED BY activity_tasks_keyed \
         WHERE name = ?1 AND outcome IS NULL AND concurrency_key > keys.k ORDER BY concurrency_key LIMIT 1) \
         FROM keys WHERE keys.k IS NOT NULL) \
         SELECT k FROM keys WHERE k IS NOT NULL",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend("reading concurrency keys"))?;
    let mut picks: Vec<(Reverse<i64>, i64, String, i64, i64)> = Vec::new();
    for (key, room) in key_room(cap, &running, &started, &keys) {
        let rows = sqlx::query(
            "SELECT priority, visible_at, instance_id, generation, seq FROM activity_tasks \
             INDEXED BY activity_tasks_keyed \
             WHERE name = ?1 AND concurrency_key = ?2 AND outcome IS NULL AND visible_at <= ?3 \
             AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?3) \
             ORDER BY priority DESC, visible_at, instance_id, generation, seq LIMIT ?4",
        )
        .bind(name)
        .bind(key)
        .bind(now)
        .bind(to_i64(room.min(left)))
        .fetch_all(&mut *conn)
        .await
        .map_err(backend("picking capped tasks"))?;
        for row in rows {
            let pick = (row.try_get(0), row.try_get(1), row.try_get(2), row.try_get(3), row.try_get(4));
            let (Ok(priority), Ok(visible_at), Ok(instance_id), Ok(generation), Ok(seq)) = pick else {
                return Err(StoreError::backend("reading a capped task's key"));
            };
            picks.push((Reverse(priority), visible_at, instance_id, generation, seq));
        }
    }
    // In claim order across the keys: highest priority, then oldest, first.
    picks.sort();
    Ok(picks
        .into_iter()
        .take(left)
        .map(|(_, _, instance_id, generation, seq)| (instance_id, generation, seq))
        .collect())
}

/// Per concurrency key, the tasks of `cap`'s activity holding a lease at `now` (if it is capped,
/// off `activity_tasks_holding`) and its starts in the rate's window (if it has a rate; those a
/// period old are forgotten first, so the table holds one period): what a capped claim and a
/// leasing write count, under the write lock.
pub(super) async fn running_and_started(
    conn: &mut SqliteConnection,
    cap: &ActivityCap,
    now: Millis,
) -> Result<(HashMap<String, u64>, HashMap<String, u64>), StoreError> {
    let name = cap.activity.as_str();
    let running = if cap.concurrency.is_some() {
        let holding = sqlx::query(
            "SELECT concurrency_key, count(*) FROM activity_tasks INDEXED BY activity_tasks_holding \
             WHERE name = ?1 AND outcome IS NULL AND owner IS NOT NULL AND lease_until >= ?2 GROUP BY concurrency_key",
        )
        .bind(name)
        .bind(now);
        let mut running = counts(holding.fetch_all(&mut *conn).await.map_err(backend("counting running tasks"))?)?;
        // Workers' slots count as running tasks.
        let slots = sqlx::query(
            "SELECT concurrency_key, sum(slots) FROM activity_slots WHERE name = ?1 AND lease_until >= ?2 \
             GROUP BY concurrency_key",
        )
        .bind(name)
        .bind(now);
        for (key, held) in counts(slots.fetch_all(&mut *conn).await.map_err(backend("counting slots"))?)? {
            *running.entry(key).or_default() += held;
        }
        running
    } else {
        HashMap::new()
    };
    let started = match cap.rate {
        Some(rate) => {
            sqlx::query("DELETE FROM activity_starts WHERE name = ? AND started_at <= ?")
                .bind(name)
                .bind(now.saturating_sub(rate.period_ms))
                .execute(&mut *conn)
                .await
                .map_err(backend("forgetting old starts"))?;
            let recent = sqlx::query(
                "SELECT concurrency_key, count(*) FROM activity_starts WHERE name = ? GROUP BY concurrency_key",
            )
            .bind(name);
            counts(recent.fetch_all(&mut *conn).await.map_err(backend("counting recent starts"))?)?
        }
        None => HashMap::new(),
    };
    Ok((running, started))
}

/// (key, count) rows as a map.
fn counts(rows: Vec<SqliteRow>) -> Result<HashMap<String, u64>, StoreError> {
    let mut counts = HashMap::new();
    for row in rows {
        let key: String = row.try_get(0).map_err(backend("reading counts"))?;
        let count: i64 = row.try_get(1).map_err(backend("reading counts"))?;
        counts.insert(key, u64::try_from(count).unwrap_or(0));
    }
    Ok(counts)
}

/// Decodes claimed task rows into `claimed`, setting aside (in the claim's transaction) those
/// that do not decode.
async fn decode_tasks(
    store: &SqliteStore,
    conn: &mut SqliteConnection,
    rows: &[SqliteRow],
    now: Millis,
    claimed: &mut Vec<TaskRecord>,
) -> Result<(), StoreError> {
    for row in rows {
        match task_from_row(row) {
            Ok(task) => claimed.push(task),
            Err(error) => set_aside_task(store, conn, row, &error, now).await?,
        }
    }
    Ok(())
}

/// Sets aside a claimed task row that did not decode (`error`), in the claim's transaction:
/// undoes its claim and makes it visible again later. A row whose key does not read cannot be
/// named in a statement: it stays claimed (and is reported) until this process ends.
async fn set_aside_task(
    store: &SqliteStore,
    conn: &mut SqliteConnection,
    row: &SqliteRow,
    error: &StoreError,
    now: Millis,
) -> Result<(), StoreError> {
    let key =
        (row.try_get::<String, _>("instance_id"), row.try_get::<i64, _>("generation"), row.try_get::<i64, _>("seq"));
    let (Ok(instance_id), Ok(generation), Ok(seq)) = key else {
        tracing::error!(%error, "sqlite: a claimed task row does not decode, nor does its key; it stays claimed");
        return Ok(());
    };
    let visible_at = store.quarantine.set_aside_task(&format!("{instance_id}/{generation}/{seq}"), now, error);
    sqlx::query(
        "UPDATE activity_tasks SET owner = NULL, lease_until = NULL, visible_at = ? \
         WHERE instance_id = ? AND generation = ? AND seq = ?",
    )
    .bind(visible_at)
    .bind(instance_id)
    .bind(generation)
    .bind(seq)
    .execute(&mut *conn)
    .await
    .map_err(backend("setting a damaged task aside"))?;
    Ok(())
}

/// Stores the outcome of the task `key`'s attempt `attempt`, if `worker` still holds it and it
/// has none yet; returns whether it did.
pub(super) async fn complete_task(
    store: &SqliteStore,
    worker: &str,
    (instance_id, generation, seq): TaskKey<'_>,
    attempt: u32,
    outcome: &TaskOutcome,
) -> Result<bool, StoreError> {
    let mut conn = store.writer().await?;
    store_outcome(&mut conn, worker, (instance_id, generation, seq), attempt, outcome).await
}

/// Stores many outcomes as [`complete_task`] stores one, in one transaction; returns whether
/// each was stored.
pub(super) async fn complete_tasks(
    store: &SqliteStore,
    worker: &str,
    completions: &[TaskCompletion],
) -> Result<Vec<bool>, StoreError> {
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a task report").await?;
    let stored = async {
        let mut stored = Vec::with_capacity(completions.len());
        for c in completions {
            let key = (c.instance_id.as_str(), c.generation, c.seq);
            stored.push(store_outcome(&mut conn, worker, key, c.attempt, &c.outcome).await?);
        }
        Ok::<_, StoreError>(stored)
    }
    .await;
    store.end_immediate(&mut conn, stored, "committing a task report").await
}

async fn store_outcome(
    conn: &mut SqliteConnection,
    worker: &str,
    (instance_id, generation, seq): TaskKey<'_>,
    attempt: u32,
    outcome: &TaskOutcome,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE activity_tasks SET outcome_succeeded = ?, outcome = ?, finished_at = ? \
         WHERE instance_id = ? AND generation = ? AND seq = ? AND attempt = ? AND owner = ? AND outcome IS NULL",
    )
    .bind(outcome.succeeded)
    .bind(outcome.payload.as_str())
    .bind(outcome.finished_at)
    .bind(instance_id)
    .bind(i64::from(generation))
    .bind(i64::from(seq))
    .bind(i64::from(attempt))
    .bind(worker)
    .execute(&mut *conn)
    .await
    .map_err(backend("completing a task"))?;
    Ok(result.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for `statement` with one workflow name bound (`?1`..`?5`).
    async fn plan(store: &SqliteStore, statement: &str) -> String {
        let explain = format!("EXPLAIN QUERY PLAN {statement}");
        let mut query = sqlx::query(&explain).bind(1_i64).bind(64_i64).bind("w");
        if statement.contains("?5") {
            query = query.bind("worker").bind(2_i64);
        }
        let rows = query.fetch_all(store.pool()).await.expect("explain the claim");
        rows.iter().map(|row| sqlx::Row::get::<String, _>(row, "detail")).collect::<Vec<_>>().join("; ")
    }

    /// The probe and the claim read the ready and due sets through their partial indexes, and
    /// the lapsed leases as ranges of `instances_owned`; never the status index (whose
    /// `status = 'Running'` range holds every waiting instance).
    #[tokio::test]
    async fn a_claim_reads_only_the_ready_due_and_lapsed_ranges() {
        let store = SqliteStore::open("sqlite::memory:").await.expect("open");
        let (probe, claim) = claim_statements(1, Claimable::Any);
        let (_, starts) = claim_statements(1, Claimable::Starts);
        let (_, resumptions) = claim_statements(1, Claimable::Resumptions);
        for statement in [probe, claim, starts, resumptions] {
            let plan = plan(&store, &statement).await;
            assert!(plan.contains("INDEX instances_ready"), "{plan}");
            assert!(plan.contains("INDEX instances_due (wake_at<?)"), "{plan}");
            assert!(plan.contains("INDEX instances_owned (workflow=? AND lease_until<?)"), "{plan}");
            assert!(!plan.contains("instances_status"), "{plan}");
        }
    }

    /// The task claim reads its picks off the front of `activity_tasks_unfinished`, in claim
    /// order (priority, then age): no sort of the claimable backlog.
    #[tokio::test]
    async fn a_task_claim_reads_the_unfinished_index_in_order() {
        let store = SqliteStore::open("sqlite::memory:").await.expect("open");
        let plan = plan(&store, &task_claim(1)).await;
        assert!(plan.contains("INDEX activity_tasks_unfinished"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    /// A capped claim takes its picks by their keys, not by reading the unfinished tasks.
    #[tokio::test]
    async fn a_capped_claim_takes_its_picks_by_key() {
        let store = SqliteStore::open("sqlite::memory:").await.expect("open");
        let plan = plan(&store, &take_picks(3)).await;
        assert!(plan.contains("PRIMARY KEY"), "{plan}");
        assert!(!plan.contains("activity_tasks_unfinished") && !plan.contains("SCAN activity_tasks"), "{plan}");
    }
}
