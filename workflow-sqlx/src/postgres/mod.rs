//! The PostgreSQL store.
//!
//! A pool of connections serves every call, and any number of processes may share one database
//! (and schema). A write batch is one transaction and one commit, applied in layers (see
//! [`Plan`]) of multi-row statements that take their rows as bound arrays (`UNNEST`), so a
//! statement's text never depends on the batch's size and each is prepared once per connection.
//! Claims (of instances and of activity tasks) lock their candidates `FOR UPDATE SKIP LOCKED`, so
//! claimers in this process or another never take the same instance or task and never wait for
//! each other. A batch's checks (`AssertOwner`, `AssertStatus`) lock the rows they read until its
//! commit, so what they checked still holds when it commits. Every statement that waits for
//! several instances' row locks takes them in id order (see `sql::WATCH`), so two of them never
//! deadlock; and the store keeps its tables' planner statistics fresh as they grow (see
//! `statistics.rs`), so its statements are planned for the tables as they are.
//!
//! Wake signals are `NOTIFY`s on a channel named after the schema, sent inside the transaction
//! that makes them true (PostgreSQL delivers them at commit, and drops them on rollback); one
//! connection per store `LISTEN`s and forwards them to [`Store::wake_signals`] subscribers.
//!
//! Each registered worker holds a session advisory lock on a connection of its own, so that
//! every process can tell a dead worker from a live one at once (see `liveness.rs`).

mod batch;
mod bind;
mod cache;
mod checks;
mod claims;
mod debounce;
mod liveness;
mod options;
mod retry;
mod schedules;
mod signals;
mod slots;
mod sql;
mod starts;
mod statement;
mod statistics;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use tokio::sync::broadcast;
use workflow_core::store::{
    ActivityCap, Debounce, EventRecord, InstanceKey, InstanceQuery, InstanceRecord, JournalRecord, Lease, Millis,
    QueueDepth, RuntimeStatus, ScheduleChange, ScheduleFire, ScheduleRecord, SlotRequest, StartScope, StartTaker,
    StatsCounter, Store, StoreError, StoreStats, TaskCompletion, TaskOutcome, TaskRecord, WakeSignal, WorkerMark,
    WorkflowCap, WriteOp, WriteOutcome,
};

use self::cache::StatementCache;
use self::retry::{failed, retrying, retrying_idempotent};
use self::sql::{
    FINISHED_TASKS, HELD_INSTANCES, PROBE, SELECT_EVENTS, SELECT_EVENTS_NAMED, SELECT_INBOXES, SELECT_INSTANCE,
    SELECT_INSTANCES, SELECT_JOURNAL, SELECT_JOURNALS, WATCH,
};
use crate::shared::counts;
use crate::shared::list::{list_statement, Dialect};
use crate::shared::plan::Plan;
use crate::shared::quarantine::Quarantine;
use crate::shared::rows::{
    event_from_row, instance_from_row, record_from_row, task_from_row, wanted_record_from_row, INSTANCE_COLUMNS,
    INSTANCE_COLUMNS_WITHOUT_PAYLOADS, TASK_COLUMNS,
};
use crate::shared::rows::{key_from_row, KEY_COLUMNS};
use crate::shared::to_i64;

pub use self::options::PostgresOptions;

/// A [`Store`] on a PostgreSQL database, which several processes may share.
///
/// ```no_run
/// # async fn demo() -> Result<(), workflow_core::store::StoreError> {
/// use workflow_sqlx::{PostgresOptions, PostgresStore};
///
/// let store = PostgresStore::open("postgres://app@db.internal/app").await?;
/// let isolated = PostgresStore::open_with(
///     "postgres://app@db.internal/app",
///     PostgresOptions::new().schema("workflows").max_connections(20),
/// )
/// .await?;
/// # let _ = (store, isolated);
/// # Ok(())
/// # }
/// ```
///
/// Commits are as durable as the server makes them: the store never relaxes
/// `synchronous_commit` (it warns when the server or the URL turned it off).
///
/// Text PostgreSQL cannot store, a NUL character in an id, a name or a payload, fails the batch
/// that carries it up front. JSON text never holds a raw NUL (it is written `\u0000`).
///
/// Dropping the store stops its listener; [`PostgresStore::close`] also waits for its
/// connections to close.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// The listener's own pool of one connection, so it never takes one the store needs.
    listener_pool: PgPool,
    /// The schema the tables are in.
    schema: String,
    /// The `NOTIFY` channel of that schema.
    channel: String,
    signals: broadcast::Sender<WakeSignal>,
    listener: tokio::task::JoinHandle<()>,
    stats: StatsCounter,
    /// The one-statement writes spelled so far, by shape.
    statements: StatementCache,
    /// How to open a connection of its own (a worker's liveness mark holds one).
    connect: liveness::Connect,
    /// The workers registered through this store (alive, whatever their connection says).
    own_workers: Arc<Mutex<HashSet<String>>>,
    /// The claimed rows that did not decode, with their failed decodes in a row.
    quarantine: Quarantine,
    /// The capped workflows whose claims here last left a backlog.
    cap_backlogs: claims::CapBacklogs,
    /// Runs `ANALYZE` as the tables grow.
    statistics: statistics::Statistics,
}

impl PostgresStore {
    /// Connects to the database at `url` with the default options and brings its schema up to
    /// date.
    ///
    /// `url` is `postgres://` or `postgresql://` `user:password@host:port/database`, with libpq's
    /// parameters (`?sslmode=require`, `?options=-c%20search_path%3Dapp`, ...). Needs a Tokio
    /// runtime: the store spawns the task that forwards wake signals.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, PostgresOptions::default()).await
    }

    /// Connects to the database at `url` (see [`PostgresStore::open`]) with `options`.
    pub async fn open_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let (pool, connect, schema) = options::connect(url, &options).await?;
        let statistics = statistics::Statistics::new(options.analyzes());
        let channel = signals::channel_name(&schema);
        let (listener_pool, signals, listener) = signals::listen(connect.clone(), &channel).await?;
        Ok(Self {
            pool,
            listener_pool,
            schema,
            channel,
            signals,
            listener,
            stats: StatsCounter::default(),
            statements: StatementCache::default(),
            connect: liveness::Connect(connect),
            own_workers: Arc::default(),
            quarantine: Quarantine::default(),
            cap_backlogs: claims::CapBacklogs::default(),
            statistics,
        })
    }

    /// The pool of connections the store uses, for inspecting the database (and, in tests, for
    /// damaging rows on purpose). Writes made through it bypass the store's counters.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema the store's tables are in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Stops the listener and closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.listener.abort();
        self.listener_pool.close().await;
        self.pool.close().await;
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl From<PostgresStore> for std::sync::Arc<dyn Store> {
    fn from(store: PostgresStore) -> Self {
        std::sync::Arc::new(store)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn write(&self, ops: &[WriteOp]) -> Result<WriteOutcome, StoreError> {
        Ok(self.write_leasing(ops, &[]).await?.0)
    }

    async fn write_leasing(&self, ops: &[WriteOp], leases: &[Lease]) -> Result<(WriteOutcome, Vec<bool>), StoreError> {
        if ops.is_empty() && leases.is_empty() {
            self.stats.record_commit(0);
            return Ok((WriteOutcome::default(), Vec::new()));
        }
        checks::check_text(ops)?;
        let plan = Plan::new(ops);
        let (skipped, taken) =
            retrying(|| batch::try_write(&self.pool, &self.channel, &self.statements, &plan, ops, leases)).await?;
        self.stats.record_commit(ops.len());
        self.statistics.committed(ops, &self.pool);
        Ok((crate::shared::plan::outcome(ops, skipped), taken))
    }

    async fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let row = retrying_idempotent(|| async move {
            sqlx::query(&SELECT_INSTANCE)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(failed("reading an instance"))
        })
        .await?;
        row.as_ref().map(instance_from_row).transpose()
    }

    async fn instances(&self, ids: &[String]) -> Result<Vec<InstanceRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = retrying_idempotent(|| async move {
            let (least, greatest) = id_range(ids);
            let query = sqlx::query(&SELECT_INSTANCES).bind(ids).bind(least).bind(greatest);
            query.fetch_all(&self.pool).await.map_err(failed("reading instances"))
        })
        .await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn watch(&self, ids: &[String]) -> Result<Vec<InstanceRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        retrying_idempotent(|| async move {
            let mark = sqlx::query(WATCH).bind(ids).bind(&self.channel);
            mark.execute(&self.pool).await.map_err(failed("watching instances"))
        })
        .await?;
        self.instances(ids).await
    }

    async fn journal(&self, id: &str, generation: u32) -> Result<Vec<JournalRecord>, StoreError> {
        let rows = retrying_idempotent(|| async move {
            sqlx::query(&SELECT_JOURNAL)
                .bind(id)
                .bind(i64::from(generation))
                .fetch_all(&self.pool)
                .await
                .map_err(failed("reading a journal"))
        })
        .await?;
        rows.iter().map(|row| record_from_row(row, id, generation)).collect()
    }

    async fn journals(&self, instances: &[(String, u32)]) -> Result<Vec<JournalRecord>, StoreError> {
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: HashMap<&str, u32> = instances.iter().map(|(id, generation)| (id.as_str(), *generation)).collect();
        let ids: Vec<&str> = wanted.keys().copied().collect();
        let ids = &ids;
        let rows = retrying_idempotent(|| async move {
            let (least, greatest) = id_range(ids);
            let query = sqlx::query(&SELECT_JOURNALS).bind(ids).bind(least).bind(greatest);
            query.fetch_all(&self.pool).await.map_err(failed("reading journals"))
        })
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.extend(wanted_record_from_row(row, &wanted)?);
        }
        // In byte order of the ids, whatever the database's collation.
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
        claims::claim(&self.pool, &self.quarantine, worker, workflows, now, lease_until, limit).await
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
        if caps.is_empty() {
            return self.claim(worker, workflows, now, lease_until, limit).await;
        }
        let (pool, quarantine, backlogs) = (&self.pool, &self.quarantine, &self.cap_backlogs);
        claims::claim_capped(pool, quarantine, backlogs, worker, workflows, caps, now, lease_until, limit).await
    }

    async fn list(&self, query: &InstanceQuery) -> Result<Vec<InstanceRecord>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let columns = if query.without_payloads { INSTANCE_COLUMNS_WITHOUT_PAYLOADS } else { INSTANCE_COLUMNS };
        let statement = list_statement(query, columns, Dialect::Postgres);
        let statement = &statement;
        let rows = retrying_idempotent(|| async move {
            statement.query().fetch_all(&self.pool).await.map_err(failed("listing instances"))
        })
        .await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn list_keys(&self, query: &InstanceQuery) -> Result<Vec<InstanceKey>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let statement = list_statement(query, KEY_COLUMNS, Dialect::Postgres);
        let statement = &statement;
        let rows = retrying_idempotent(|| async move {
            statement.query().fetch_all(&self.pool).await.map_err(failed("listing instances"))
        })
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let rows = retrying_idempotent(|| async move {
            sqlx::query(&SELECT_EVENTS).bind(id).fetch_all(&self.pool).await.map_err(failed("reading events"))
        })
        .await?;
        rows.iter().map(|row| event_from_row(row, id)).collect()
    }

    async fn events_named(
        &self,
        id: &str,
        name: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        // `name` is COLLATE "C", whose lower() folds ASCII letters only, as the waits match.
        let lowered = name.to_ascii_lowercase();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lowered = lowered.as_str();
        let rows = retrying_idempotent(|| async move {
            sqlx::query(&SELECT_EVENTS_NAMED)
                .bind(id)
                .bind(lowered)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(failed("reading events"))
        })
        .await?;
        rows.iter().map(|row| event_from_row(row, id)).collect()
    }

    async fn inbox_heads(&self, ids: &[String]) -> Result<Vec<(String, i64)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        retrying_idempotent(|| async move {
            sqlx::query_as(
                "SELECT instance_id, MAX(seq) FROM events WHERE consumed_by_seq IS NULL AND instance_id = ANY($1) \
                 GROUP BY instance_id",
            )
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(failed("reading inbox heads"))
        })
        .await
    }

    async fn recent_starts(&self, scope: StartScope<'_>, since: Millis) -> Result<Vec<(Millis, u64)>, StoreError> {
        let rows: Vec<(i64, i64)> = retrying_idempotent(|| async move {
            let query = match scope {
                StartScope::Workflow { workflow, key } => sqlx::query_as(
                    "SELECT started_at, sum(starts)::int8 FROM workflow_starts WHERE workflow = $1 \
                     AND concurrency_key = $2 AND started_at > $3 GROUP BY started_at ORDER BY started_at",
                )
                .bind(workflow)
                .bind(key)
                .bind(since),
                StartScope::Activity { activity, key } => sqlx::query_as(
                    "SELECT started_at, count(*) FROM activity_starts WHERE name = $1 AND concurrency_key = $2 \
                     AND started_at > $3 GROUP BY started_at ORDER BY started_at",
                )
                .bind(activity)
                .bind(key)
                .bind(since),
            };
            query.fetch_all(&self.pool).await.map_err(failed("reading recent starts"))
        })
        .await?;
        Ok(rows.into_iter().map(|(at, n)| (at, u64::try_from(n).unwrap_or(0))).collect())
    }

    async fn inboxes(&self, ids: &[String], per_instance: usize) -> Result<Vec<EventRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let per_instance = to_i64(per_instance);
        let rows = retrying_idempotent(|| async move {
            sqlx::query(&SELECT_INBOXES)
                .bind(ids)
                .bind(per_instance)
                .fetch_all(&self.pool)
                .await
                .map_err(failed("reading inboxes"))
        })
        .await?;
        rows.iter().map(|row| event_from_row(row, "of a claimed instance")).collect()
    }

    async fn renew_leases(&self, worker: &str, lease_until: Millis) -> Result<u64, StoreError> {
        claims::renew_leases(&self.pool, worker, lease_until).await
    }

    async fn release_leases(&self, worker: &str) -> Result<u64, StoreError> {
        claims::release_leases(&self.pool, &self.channel, worker).await
    }

    async fn reserve_slots(&self, requests: &[SlotRequest]) -> Result<Vec<u32>, StoreError> {
        let taken = slots::reserve(&self.pool, requests).await?;
        self.stats.record_commit(1);
        Ok(taken)
    }

    async fn release_slots(&self, owner: &str, releases: &[(String, String, u32)]) -> Result<(), StoreError> {
        slots::release(&self.pool, &self.channel, owner, releases).await?;
        self.stats.record_commit(1);
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
        claims::claim_tasks(&self.pool, &self.quarantine, worker, activities, now, lease_until, limit).await
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
        if caps.is_empty() {
            return self.claim_tasks(worker, activities, now, lease_until, limit).await;
        }
        let (pool, quarantine) = (&self.pool, &self.quarantine);
        claims::claim_tasks_capped(pool, quarantine, worker, activities, caps, now, lease_until, limit).await
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
        let completed =
            claims::complete_task(&self.pool, &self.channel, worker, (instance_id, generation, seq), attempt, outcome)
                .await?;
        if completed {
            self.stats.record_commit(1);
        }
        Ok(completed)
    }

    async fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<bool, StoreError> {
        let written = schedules::put(&self.pool, schedule).await?;
        self.stats.record_commit(1);
        Ok(written)
    }

    async fn change_schedule(&self, change: &ScheduleChange) -> Result<bool, StoreError> {
        let took = schedules::change(&self.pool, change).await?;
        self.stats.record_commit(1);
        Ok(took)
    }

    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        schedules::get(&self.pool, id).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        schedules::all(&self.pool).await
    }

    async fn due_schedules(&self, now: Millis, limit: usize) -> Result<Vec<ScheduleRecord>, StoreError> {
        schedules::due(&self.pool, now, limit).await
    }

    async fn fire_schedules(&self, fires: &[ScheduleFire]) -> Result<Vec<bool>, StoreError> {
        let took = schedules::fire(&self.pool, &self.channel, fires).await?;
        self.stats.record_commit(fires.len());
        Ok(took)
    }

    async fn debounce(&self, start: &Debounce) -> Result<String, StoreError> {
        let id = debounce::debounce(&self.pool, start).await?;
        self.stats.record_commit(1);
        Ok(id)
    }

    async fn complete_tasks(&self, worker: &str, completions: &[TaskCompletion]) -> Result<Vec<bool>, StoreError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let stored = claims::complete_tasks(&self.pool, &self.channel, worker, completions).await?;
        let done = stored.iter().filter(|stored| **stored).count();
        if done > 0 {
            self.stats.record_commit(done);
        }
        Ok(stored)
    }

    async fn tasks_of(&self, instance_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        if instance_id.contains('\0') {
            return Ok(Vec::new());
        }
        let select =
            format!("SELECT {TASK_COLUMNS} FROM activity_tasks WHERE instance_id = $1 ORDER BY generation, seq");
        let select = &select;
        let rows = retrying_idempotent(|| async move {
            sqlx::query(select)
                .bind(instance_id)
                .fetch_all(&self.pool)
                .await
                .map_err(failed("reading an instance's tasks"))
        })
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn queue_depths(&self, now: Millis) -> Result<Vec<QueueDepth>, StoreError> {
        let select = &counts::queue_depths_sql(Dialect::Postgres);
        let rows = retrying_idempotent(|| async move {
            sqlx::query(select).bind(now).fetch_all(&self.pool).await.map_err(failed("counting the queues"))
        })
        .await?;
        Ok(counts::in_queue_order(rows.iter().map(counts::depth_from_row).collect::<Result<_, _>>()?))
    }

    async fn status_counts(&self, at_most: u64) -> Result<Vec<(RuntimeStatus, u64)>, StoreError> {
        let select = &counts::status_counts_sql(Dialect::Postgres);
        let at_most = i64::try_from(at_most).unwrap_or(i64::MAX);
        let row = retrying_idempotent(|| async move {
            sqlx::query(select)
                .bind(at_most)
                .fetch_one(&self.pool)
                .await
                .map_err(failed("counting instances per status"))
        })
        .await?;
        counts::counts_from_row(&row)
    }

    async fn finished_tasks(&self, instance_ids: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        if instance_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = retrying_idempotent(|| async move {
            sqlx::query(&FINISHED_TASKS)
                .bind(instance_ids)
                .fetch_all(&self.pool)
                .await
                .map_err(failed("reading finished tasks"))
        })
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn register_worker(&self, worker: &str, takes_starts: &[String]) -> Result<Option<WorkerMark>, StoreError> {
        liveness::register(&self.connect.0, &self.own_workers, worker, takes_starts).await.map(Some)
    }

    async fn offer_starts(&self, worker: &str, takes_starts: &[String]) -> Result<(), StoreError> {
        liveness::offer_starts(&self.pool, worker, takes_starts).await
    }

    async fn start_takers(&self) -> Result<Option<Vec<StartTaker>>, StoreError> {
        liveness::start_takers(&self.pool).await.map(Some)
    }

    async fn held_instances(&self, worker: &str) -> Result<Vec<String>, StoreError> {
        retrying_idempotent(|| async move {
            sqlx::query_scalar(HELD_INSTANCES)
                .bind(worker)
                .fetch_all(&self.pool)
                .await
                .map_err(failed("reading the instances a worker holds"))
        })
        .await
    }

    async fn release_dead_workers(&self) -> Result<u64, StoreError> {
        liveness::release_dead_workers(&self.pool, &self.channel, &self.own_workers).await
    }

    fn wake_signals(&self) -> Option<broadcast::Receiver<WakeSignal>> {
        Some(self.signals.subscribe())
    }

    async fn probe_commit(&self) -> Result<(), StoreError> {
        retrying_idempotent(|| async move {
            sqlx::query(PROBE).execute(&self.pool).await.map_err(failed("probing a commit"))
        })
        .await?;
        self.stats.record_commit(1);
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }
}

/// The least and greatest of `ids` (none empty): the range a read by ids also names, so that the
/// planner sees how much of the table they span (see [`SELECT_INSTANCES`]).
fn id_range<S: AsRef<str>>(ids: &[S]) -> (&str, &str) {
    let mut ids = ids.iter().map(AsRef::as_ref);
    let first = ids.next().unwrap_or_default();
    ids.fold((first, first), |(least, greatest), id| (least.min(id), greatest.max(id)))
}
