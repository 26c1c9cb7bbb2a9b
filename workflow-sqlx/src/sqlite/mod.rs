//! The SQLite store.
//!
//! One writer connection applies every write (a group-committed batch is one `BEGIN IMMEDIATE`
//! transaction and one commit), so writers never contend with each other; a small pool of
//! connections serves reads, which WAL lets run beside the writer. Claims (of instances and of
//! activity tasks) look on a reader first, so an idle poll costs no write.
//!
//! Each registered worker of a database file holds a lock on a file of its own beside it, so that
//! every process can tell a dead worker from a live one at once (see `liveness.rs`).
//!
//! Change hints ([`Store::wake_signals`]) reach every user of the same store object in this
//! process (a runtime and a `Client::new` beside it); other processes on the file poll.

mod batch;
mod bind;
mod claims;
mod debounce;
mod liveness;
mod options;
mod schedules;
mod slots;
mod sql;
mod starts;
mod writer;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use tokio::sync::broadcast;
use workflow_core::store::{
    ActivityCap, Debounce, EventRecord, InstanceKey, InstanceQuery, InstanceRecord, JournalRecord, Lease, Millis,
    QueueDepth, RuntimeStatus, ScheduleChange, ScheduleFire, ScheduleRecord, SlotRequest, StartScope, StatsCounter,
    Store, StoreError, StoreStats, TaskCompletion, TaskOutcome, TaskRecord, WakeSignal, WorkerMark, WorkflowCap,
    WriteOp, WriteOutcome,
};

use crate::shared::counts;
use crate::shared::list::{list_statement, Dialect};
use crate::shared::order::task_key;
use crate::shared::plan::Plan;
use crate::shared::quarantine::Quarantine;
use crate::shared::rows::{
    event_from_row, instance_from_row, record_from_row, task_from_row, wanted_record_from_row, EVENT_COLUMNS,
    INSTANCE_COLUMNS, INSTANCE_COLUMNS_WITHOUT_PAYLOADS, JOURNAL_COLUMNS, TASK_COLUMNS,
};
use crate::shared::rows::{key_from_row, KEY_COLUMNS};
use crate::shared::to_i64;

pub use self::options::{SqliteOptions, Synchronous};

/// A [`Store`] on one SQLite database: a file, or memory for tests.
///
/// ```no_run
/// # async fn demo() -> Result<(), workflow_core::store::StoreError> {
/// use workflow_sqlx::{SqliteOptions, SqliteStore, Synchronous};
///
/// let durable = SqliteStore::open("sqlite://workflows.db").await?;
/// let faster = SqliteStore::open_with(
///     "sqlite://scratch.db",
///     SqliteOptions::new().synchronous(Synchronous::Normal),
/// )
/// .await?;
/// let in_memory = SqliteStore::open("sqlite::memory:").await?;
/// # let _ = (durable, faster, in_memory);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    /// One connection: every write goes through it, so writes never wait on each other's locks.
    writer: SqlitePool,
    /// Reads (the writer itself for an in-memory database).
    reader: SqlitePool,
    in_memory: bool,
    /// Whether the writer may be in a transaction nobody will finish: a write sends its statements
    /// and `COMMIT` as one script, and a write dropped before the script is through (cancelled)
    /// leaves the transaction open, which the writer's next user rolls back.
    dangling: AtomicBool,
    stats: StatsCounter,
    /// Where the workers' lock files are (`<database>-workers/`); `None` in memory.
    workers_dir: Option<PathBuf>,
    /// Change hints for this store object's users in this process.
    signals: broadcast::Sender<WakeSignal>,
    /// The claimed rows that did not decode, with their failed decodes in a row.
    quarantine: Quarantine,
}

/// How many hints a slow subscriber may fall behind before it is told it lagged (and polls).
const SIGNAL_CAPACITY: usize = 4096;

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url` with the default options, and brings
    /// its schema up to date.
    ///
    /// `url` is `sqlite://path`, `sqlite:path` or `sqlite::memory:`; SQLite's URI parameters
    /// (`?mode=ro`, ...) are accepted after the path. The database runs in WAL mode with
    /// `synchronous=FULL`, a 5 s busy timeout and foreign keys on.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, SqliteOptions::default()).await
    }

    /// Opens the database at `url` (see [`SqliteStore::open`]) with `options`.
    pub async fn open_with(url: &str, options: SqliteOptions) -> Result<Self, StoreError> {
        let (writer, reader, database) = options::connect(url, &options).await?;
        let workers_dir = database.as_deref().map(liveness::workers_dir);
        Ok(Self {
            writer,
            reader,
            in_memory: database.is_none(),
            dangling: AtomicBool::new(false),
            stats: StatsCounter::default(),
            workers_dir,
            signals: broadcast::channel(SIGNAL_CAPACITY).0,
            quarantine: Quarantine::default(),
        })
    }

    /// The rows of `{select} ({ids as placeholders}) {rest}` on a reader, in chunks of 500 ids
    /// (SQLite bounds the placeholders of one statement).
    async fn rows_where_in(
        &self,
        select: &str,
        rest: &str,
        ids: &[&str],
        context: &'static str,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        let mut rows = Vec::new();
        for chunk in ids.chunks(500) {
            let sql = format!("{select} ({}) {rest}", vec!["?"; chunk.len()].join(", "));
            let query = chunk.iter().fold(sqlx::query(&sql), |query, id| query.bind(*id));
            rows.extend(query.fetch_all(&mut *self.reader().await?).await.map_err(backend(context))?);
        }
        Ok(rows)
    }

    /// Sends change hints to this process's subscribers, if any.
    fn signal(&self, hints: impl IntoIterator<Item = WakeSignal>) {
        if self.signals.receiver_count() > 0 {
            for hint in hints {
                let _ = self.signals.send(hint);
            }
        }
    }

    /// A pool of connections on the same database, for inspecting it (and, in tests, for damaging
    /// rows on purpose). Writes made through it bypass the store's counters and contend with its
    /// writer for SQLite's lock.
    pub fn pool(&self) -> &SqlitePool {
        &self.reader
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

impl From<SqliteStore> for std::sync::Arc<dyn Store> {
    fn from(store: SqliteStore) -> Self {
        std::sync::Arc::new(store)
    }
}

fn backend(context: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| StoreError::Backend(format!("sqlite: {context}: {error}"))
}

#[async_trait]
impl Store for SqliteStore {
    async fn write(&self, ops: &[WriteOp]) -> Result<WriteOutcome, StoreError> {
        Ok(self.write_leasing(ops, &[]).await?.0)
    }

    async fn write_leasing(&self, ops: &[WriteOp], leases: &[Lease]) -> Result<(WriteOutcome, Vec<bool>), StoreError> {
        let plan = Plan::new(ops);
        let mut conn = self.writer().await?;
        // From here until the commit or the rollback is through, the writer may be in a
        // transaction: should this future be dropped meanwhile, the writer's next user rolls it back.
        self.dangling.store(true, Ordering::Release);
        match batch::apply(&mut conn, &plan, ops, leases).await {
            Ok((skipped, taken)) => {
                self.dangling.store(false, Ordering::Release);
                self.stats.record_commit(ops.len());
                let finished = ops.iter().filter_map(|op| match op {
                    WriteOp::Finish { id, .. } => Some(WakeSignal::Finished(id.clone())),
                    _ => None,
                });
                let started = Lease::started(leases, &taken);
                self.signal(WakeSignal::from_leased_batch(ops, &started).into_iter().chain(finished));
                Ok((crate::shared::plan::outcome(ops, skipped), taken))
            }
            Err(failure) => Err(self.abandon(&mut conn, &plan, failure).await),
        }
    }

    async fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(backend("reading an instance"))?;
        row.as_ref().map(instance_from_row).transpose()
    }

    async fn instances(&self, ids: &[String]) -> Result<Vec<InstanceRecord>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let select = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id IN");
        let rows = self.rows_where_in(&select, "", &ids, "reading instances").await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn journal(&self, id: &str, generation: u32) -> Result<Vec<JournalRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal WHERE instance_id = ? AND generation = ? ORDER BY seq"
        ))
        .bind(id)
        .bind(i64::from(generation))
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(backend("reading a journal"))?;
        rows.iter().map(|row| record_from_row(row, id, generation)).collect()
    }

    async fn journals(&self, instances: &[(String, u32)]) -> Result<Vec<JournalRecord>, StoreError> {
        let wanted: HashMap<&str, u32> = instances.iter().map(|(id, generation)| (id.as_str(), *generation)).collect();
        let ids: Vec<&str> = wanted.keys().copied().collect();
        let select = format!("SELECT {JOURNAL_COLUMNS} FROM journal WHERE instance_id IN");
        let mut records = Vec::new();
        for row in self.rows_where_in(&select, "", &ids, "reading journals").await? {
            records.extend(wanted_record_from_row(&row, &wanted)?);
        }
        records.sort_by(|a, b| (&a.instance_id, a.seq).cmp(&(&b.instance_id, b.seq)));
        Ok(records)
    }

    async fn claim(
        &self,
        worker: &str,
        workflows: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        claims::claim(self, worker, workflows, now, lease_until, limit).await
    }

    async fn claim_capped(
        &self,
        worker: &str,
        workflows: &[String],
        caps: &[WorkflowCap],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        claims::claim_capped(self, worker, workflows, caps, now, lease_until, limit).await
    }

    async fn list(&self, query: &InstanceQuery) -> Result<Vec<InstanceRecord>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let columns = if query.without_payloads { INSTANCE_COLUMNS_WITHOUT_PAYLOADS } else { INSTANCE_COLUMNS };
        let statement = list_statement(query, columns, Dialect::Sqlite);
        let rows =
            statement.query().fetch_all(&mut *self.reader().await?).await.map_err(backend("listing instances"))?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn list_keys(&self, query: &InstanceQuery) -> Result<Vec<InstanceKey>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let statement = list_statement(query, KEY_COLUMNS, Dialect::Sqlite);
        let rows =
            statement.query().fetch_all(&mut *self.reader().await?).await.map_err(backend("listing instances"))?;
        rows.iter().map(key_from_row).collect()
    }

    async fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE instance_id = ? AND consumed_by_seq IS NULL ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(backend("reading events"))?;
        rows.iter().map(|row| event_from_row(row, id)).collect()
    }

    async fn events_named(
        &self,
        id: &str,
        name: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        // Spelled as `events_unconsumed` is, so its range is read and nothing else.
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE instance_id = ? AND name = ? COLLATE NOCASE AND seq > ? \
             AND consumed_by_seq IS NULL ORDER BY seq LIMIT ?"
        ))
        .bind(id)
        .bind(name)
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(backend("reading events"))?;
        rows.iter().map(|row| event_from_row(row, id)).collect()
    }

    async fn inbox_heads(&self, ids: &[String]) -> Result<Vec<(String, i64)>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        // Read from `events_unconsumed` alone.
        let select =
            "SELECT instance_id, MAX(seq) AS head FROM events WHERE consumed_by_seq IS NULL AND instance_id IN";
        let rows = self.rows_where_in(select, "GROUP BY instance_id", &ids, "reading inbox heads").await?;
        rows.iter()
            .map(|row| {
                let id: String = sqlx::Row::try_get(row, "instance_id").map_err(backend("reading inbox heads"))?;
                let head: i64 = sqlx::Row::try_get(row, "head").map_err(backend("reading inbox heads"))?;
                Ok((id, head))
            })
            .collect()
    }

    async fn recent_starts(&self, scope: StartScope<'_>, since: Millis) -> Result<Vec<(Millis, u64)>, StoreError> {
        let query = match scope {
            StartScope::Workflow { workflow, key } => sqlx::query_as(
                "SELECT started_at, sum(starts) FROM workflow_starts WHERE workflow = ? AND concurrency_key = ? \
                 AND started_at > ? GROUP BY started_at ORDER BY started_at",
            )
            .bind(workflow)
            .bind(key)
            .bind(since),
            StartScope::Activity { activity, key } => sqlx::query_as(
                "SELECT started_at, count(*) FROM activity_starts WHERE name = ? AND concurrency_key = ? \
                 AND started_at > ? GROUP BY started_at ORDER BY started_at",
            )
            .bind(activity)
            .bind(key)
            .bind(since),
        };
        let rows: Vec<(i64, i64)> =
            query.fetch_all(&mut *self.reader().await?).await.map_err(backend("reading recent starts"))?;
        Ok(rows.into_iter().map(|(at, n)| (at, u64::try_from(n).unwrap_or(0))).collect())
    }

    async fn inboxes(&self, ids: &[String], per_instance: usize) -> Result<Vec<EventRecord>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let select = format!(
            "SELECT {EVENT_COLUMNS} FROM (SELECT {EVENT_COLUMNS}, \
             row_number() OVER (PARTITION BY instance_id ORDER BY seq) AS n \
             FROM events WHERE consumed_by_seq IS NULL AND instance_id IN"
        );
        let rest = format!(") WHERE n <= {} ORDER BY instance_id, seq", to_i64(per_instance));
        let rows = self.rows_where_in(&select, &rest, &ids, "reading inboxes").await?;
        rows.iter().map(|row| event_from_row(row, "of a claimed instance")).collect()
    }

    async fn renew_leases(&self, worker: &str, lease_until: Millis) -> Result<u64, StoreError> {
        claims::renew_leases(self, worker, lease_until).await
    }

    async fn release_leases(&self, worker: &str) -> Result<u64, StoreError> {
        let released = claims::release_leases(self, worker).await?;
        if released > 0 {
            self.signal([WakeSignal::Runnable, WakeSignal::TaskQueued]);
        }
        Ok(released)
    }

    async fn reserve_slots(&self, requests: &[SlotRequest]) -> Result<Vec<u32>, StoreError> {
        slots::reserve(self, requests).await
    }

    async fn release_slots(&self, owner: &str, releases: &[(String, String, u32)]) -> Result<(), StoreError> {
        slots::release(self, owner, releases).await?;
        // Queued tasks of those keys may have room now.
        self.signal([WakeSignal::TaskQueued]);
        Ok(())
    }

    async fn claim_tasks(
        &self,
        worker: &str,
        activities: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        claims::claim_tasks(self, worker, activities, &[], now, lease_until, limit).await
    }

    async fn claim_tasks_capped(
        &self,
        worker: &str,
        activities: &[String],
        caps: &[ActivityCap],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        claims::claim_tasks(self, worker, activities, caps, now, lease_until, limit).await
    }

    async fn complete_task(
        &self,
        worker: &str,
        instance_id: &str,
        generation: u32,
        seq: u32,
        attempt: u32,
        outcome: &TaskOutcome,
    ) -> Result<bool, StoreError> {
        let completed = claims::complete_task(self, worker, (instance_id, generation, seq), attempt, outcome).await?;
        if completed {
            self.stats.record_commit(1);
            self.signal([WakeSignal::TaskDone(instance_id.to_owned())]);
        }
        Ok(completed)
    }

    async fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<bool, StoreError> {
        schedules::put(self, schedule).await
    }

    async fn change_schedule(&self, change: &ScheduleChange) -> Result<bool, StoreError> {
        schedules::change(self, change).await
    }

    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        schedules::get(self, id).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        schedules::all(self).await
    }

    async fn due_schedules(&self, now: Millis, limit: usize) -> Result<Vec<ScheduleRecord>, StoreError> {
        schedules::due(self, now, limit).await
    }

    async fn fire_schedules(&self, fires: &[ScheduleFire]) -> Result<Vec<bool>, StoreError> {
        schedules::fire(self, fires).await
    }

    async fn debounce(&self, start: &Debounce) -> Result<String, StoreError> {
        debounce::debounce(self, start).await
    }

    async fn complete_tasks(&self, worker: &str, completions: &[TaskCompletion]) -> Result<Vec<bool>, StoreError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let stored = claims::complete_tasks(self, worker, completions).await?;
        let done: Vec<WakeSignal> = completions
            .iter()
            .zip(&stored)
            .filter(|(_, stored)| **stored)
            .map(|(c, _)| WakeSignal::TaskDone(c.instance_id.clone()))
            .collect();
        if !done.is_empty() {
            self.stats.record_commit(done.len());
            self.signal(done);
        }
        Ok(stored)
    }

    async fn tasks_of(&self, instance_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let select =
            format!("SELECT {TASK_COLUMNS} FROM activity_tasks WHERE instance_id = ? ORDER BY generation, seq");
        let rows = sqlx::query(&select)
            .bind(instance_id)
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(backend("reading an instance's tasks"))?;
        rows.iter().map(task_from_row).collect()
    }

    async fn queue_depths(&self, now: Millis) -> Result<Vec<QueueDepth>, StoreError> {
        let rows = sqlx::query(&counts::queue_depths_sql(Dialect::Sqlite))
            .bind(now)
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(backend("counting the queues"))?;
        Ok(counts::in_queue_order(rows.iter().map(counts::depth_from_row).collect::<Result<_, _>>()?))
    }

    async fn status_counts(&self, at_most: u64) -> Result<Vec<(RuntimeStatus, u64)>, StoreError> {
        let row = sqlx::query(&counts::status_counts_sql(Dialect::Sqlite))
            .bind(i64::try_from(at_most).unwrap_or(i64::MAX))
            .fetch_one(&mut *self.reader().await?)
            .await
            .map_err(backend("counting instances per status"))?;
        counts::counts_from_row(&row)
    }

    async fn finished_tasks(&self, instance_ids: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        let unique: Vec<&str> = instance_ids.iter().map(String::as_str).collect::<HashSet<_>>().into_iter().collect();
        let select = format!("SELECT {TASK_COLUMNS} FROM activity_tasks WHERE instance_id IN");
        let rows = self.rows_where_in(&select, "AND outcome IS NOT NULL", &unique, "reading finished tasks").await?;
        let mut finished = rows.iter().map(task_from_row).collect::<Result<Vec<_>, _>>()?;
        finished.sort_by(|a, b| task_key(a).cmp(&task_key(b)));
        Ok(finished)
    }

    async fn register_worker(&self, worker: &str, _takes_starts: &[String]) -> Result<Option<WorkerMark>, StoreError> {
        liveness::register(self, worker).await
    }

    async fn release_dead_workers(&self) -> Result<u64, StoreError> {
        let released = liveness::release_dead_workers(self).await?;
        if released > 0 {
            self.signal([WakeSignal::Runnable, WakeSignal::TaskQueued]);
        }
        Ok(released)
    }

    fn wake_signals(&self) -> Option<broadcast::Receiver<WakeSignal>> {
        Some(self.signals.subscribe())
    }

    async fn probe_commit(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO probe (id, commits) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET commits = commits + 1",
        )
        .execute(&mut *self.writer().await?)
        .await
        .map_err(backend("probing a commit"))?;
        self.stats.record_commit(1);
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }
}
