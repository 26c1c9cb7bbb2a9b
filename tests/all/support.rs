//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use workflow::store::{
    EventRecord, InstanceKey, InstanceQuery, InstanceRecord, JournalRecord, Millis, StartTaker, Store, StoreError,
    StoreStats, TaskOutcome, TaskRecord, WakeSignal, WorkerMark, WriteOp, WriteOutcome,
};
use workflow::{Client, MemoryStore, RecordStatus, RuntimeStatus, SqliteStore};

/// How long a test waits for something that should happen before it fails.
pub(crate) const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// How often a wait checks its condition.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// Waits until `condition` holds, checking every few ms; panics naming `what` after
/// [`WAIT_LIMIT`].
pub(crate) async fn wait_until<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until_within(what, WAIT_LIMIT, condition).await;
}

/// [`wait_until`] with a limit of its own, for waits known to take long.
pub(crate) async fn wait_until_within<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_value_within(what, limit, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await;
}

/// Waits until `probe` returns a value and returns it, checking every few ms; panics naming
/// `what` after [`WAIT_LIMIT`].
pub(crate) async fn wait_for_value<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_value_within(what, WAIT_LIMIT, probe).await
}

/// [`wait_for_value`] with a limit of its own.
pub(crate) async fn wait_for_value_within<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Proves that a worker on `store` made a claim pass after this call: starts `workflow` (JSON
/// `input`) as `id` through a client without a runtime, which only a worker's claim can pick
/// up, and waits until a worker has claimed it. An instance that a claim must not pick up (a
/// suspended or terminated one) was passed over by that same claim.
pub(crate) async fn wait_for_a_claim_pass(store: &Arc<dyn Store>, workflow: &str, id: &str, input: &str) {
    Client::new(store.clone()).start_untyped(workflow, input).id(id).await.unwrap();
    wait_until(&format!("a worker to claim the probe instance {id}"), || async {
        let record = store.instance(id).await.unwrap();
        record.is_some_and(|record| record.owner.is_some() || record.status != RuntimeStatus::Pending)
    })
    .await;
}

/// A PostgreSQL schema name no other test or run uses: `<prefix>_<time>_<pid>`.
#[cfg(feature = "postgres")]
pub(crate) fn fresh_schema(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}_{nanos:x}_{}", std::process::id())
}

/// Drops a test's PostgreSQL schema.
#[cfg(feature = "postgres")]
pub(crate) async fn drop_schema(url: &str, schema: &str) {
    // A plain connection: a store opened here would migrate the default schema.
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await.unwrap();
    pool.close().await;
}

/// The PostgreSQL URL (`DATABASE_URL`) for a PostgreSQL test. Without it the test is skipped
/// (`None`, said loudly) on a developer's machine, but fails under CI (`CI` set), where a skip
/// would pass unseen.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn postgres_url() -> Option<String> {
    // libtest names each test's thread after the test.
    let test = std::thread::current().name().unwrap_or("a PostgreSQL test").to_owned();
    if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()) {
        return Some(url);
    }
    let in_ci = std::env::var("CI").is_ok_and(|ci| !ci.is_empty() && ci != "0" && ci != "false");
    assert!(
        !in_ci,
        "{test}: DATABASE_URL is not set, and CI is: PostgreSQL tests must run in CI, not be skipped \
         (.ci/run starts PostgreSQL and sets DATABASE_URL)"
    );
    eprintln!("SKIPPED: {test}: DATABASE_URL is not set (CI sets it; see .ci/run)");
    None
}

/// Counts keyed by (instance id, label), so tests running in parallel do not see each other.
pub(crate) fn counters() -> &'static Mutex<HashMap<(String, String), u32>> {
    static COUNTERS: OnceLock<Mutex<HashMap<(String, String), u32>>> = OnceLock::new();
    COUNTERS.get_or_init(Mutex::default)
}

/// Adds one to a counter and returns the new value.
pub(crate) fn bump(instance_id: &str, label: &str) -> u32 {
    let mut counters = counters().lock().unwrap();
    let count = counters.entry((instance_id.to_owned(), label.to_owned())).or_default();
    *count += 1;
    *count
}

/// Reads a counter.
pub(crate) fn count(instance_id: &str, label: &str) -> u32 {
    counters().lock().unwrap().get(&(instance_id.to_owned(), label.to_owned())).copied().unwrap_or(0)
}

/// Waits until the counter reaches `at_least`, up to [`WAIT_LIMIT`].
pub(crate) async fn wait_for_count(instance_id: &str, label: &str, at_least: u32) {
    let what = format!("{label} of {instance_id} to count {at_least}");
    wait_until(&what, || async { count(instance_id, label) >= at_least }).await;
}

/// A SQLite store on a new temporary file; keep the directory alive as long as the store.
pub(crate) async fn sqlite_store() -> (tempfile::TempDir, String, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
    (dir, url, store)
}

/// Waits (polling the store) until `ready` holds for the instance's journal, up to
/// [`WAIT_LIMIT`].
pub(crate) async fn wait_for_journal(
    client: &Client,
    instance_id: &str,
    ready: impl Fn(&[workflow::JournalRecord]) -> bool,
) -> Vec<workflow::JournalRecord> {
    let ready = &ready;
    wait_for_value(&format!("the journal of {instance_id} to be as awaited"), || async move {
        client.journal(instance_id).await.ok().filter(|journal| ready(journal))
    })
    .await
}

/// How many records of the journal are completed.
pub(crate) fn completed(journal: &[workflow::JournalRecord]) -> usize {
    journal.iter().filter(|r| r.status == RecordStatus::Completed).count()
}

/// What a test watches (or changes) in the reads of an [`ObservedStore`]; each method is called
/// with what the read found, and does nothing unless overridden.
pub(crate) trait Observer: Default + Send + Sync + 'static {
    /// A batch about to be written.
    fn write(&self, _ops: &[WriteOp]) {}
    /// A read of one instance (it may change what the caller gets).
    fn instance(&self, _id: &str, _found: &mut Option<InstanceRecord>) {}
    /// A batch read of instances (the result waiters' shared poll).
    fn instances(&self, _ids: &[String]) {}
    /// A watch (the result waiters' first read of new waiters).
    fn watch(&self, _ids: &[String]) {}
    /// A read of a whole inbox.
    fn events(&self, _events: &[EventRecord]) {}
    /// A read of the events of one name.
    fn events_named(&self, _events: &[EventRecord]) {}
    /// A read of which inboxes have unconsumed events (the runtime's inbox poll).
    fn inbox_heads(&self, _ids: &[String]) {}
    /// A list page.
    fn list(&self, _query: &InstanceQuery, _found: &[InstanceRecord]) {}
    /// A page of keys.
    fn list_keys(&self, _query: &InstanceQuery, _found: &[InstanceKey]) {}
}

/// A memory store whose reads `observer` sees; everything else is the memory store's.
#[derive(Default)]
pub(crate) struct ObservedStore<O> {
    inner: MemoryStore,
    pub(crate) observer: O,
}

#[async_trait]
impl<O: Observer> Store for ObservedStore<O> {
    async fn write(&self, ops: &[WriteOp]) -> Result<WriteOutcome, StoreError> {
        self.observer.write(ops);
        self.inner.write(ops).await
    }
    async fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let mut found = self.inner.instance(id).await?;
        self.observer.instance(id, &mut found);
        Ok(found)
    }
    async fn instances(&self, ids: &[String]) -> Result<Vec<InstanceRecord>, StoreError> {
        self.observer.instances(ids);
        self.inner.instances(ids).await
    }
    async fn watch(&self, ids: &[String]) -> Result<Vec<InstanceRecord>, StoreError> {
        self.observer.watch(ids);
        self.inner.watch(ids).await
    }
    async fn journal(&self, id: &str, generation: u32) -> Result<Vec<JournalRecord>, StoreError> {
        self.inner.journal(id, generation).await
    }
    async fn journals(&self, instances: &[(String, u32)]) -> Result<Vec<JournalRecord>, StoreError> {
        self.inner.journals(instances).await
    }
    async fn inboxes(&self, ids: &[String], per_instance: usize) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.inboxes(ids, per_instance).await
    }
    async fn recent_starts(
        &self,
        scope: workflow::store::StartScope<'_>,
        since: Millis,
    ) -> Result<Vec<(Millis, u64)>, StoreError> {
        self.inner.recent_starts(scope, since).await
    }
    async fn claim(
        &self,
        worker: &str,
        workflows: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        self.inner.claim(worker, workflows, now, lease_until, limit).await
    }
    async fn claim_capped(
        &self,
        worker: &str,
        workflows: &[String],
        caps: &[workflow::store::WorkflowCap],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        self.inner.claim_capped(worker, workflows, caps, now, lease_until, limit).await
    }
    async fn list(&self, query: &InstanceQuery) -> Result<Vec<InstanceRecord>, StoreError> {
        let found = self.inner.list(query).await?;
        self.observer.list(query, &found);
        Ok(found)
    }
    async fn list_keys(&self, query: &InstanceQuery) -> Result<Vec<InstanceKey>, StoreError> {
        let found = self.inner.list_keys(query).await?;
        self.observer.list_keys(query, &found);
        Ok(found)
    }
    async fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let events = self.inner.events(id).await?;
        self.observer.events(&events);
        Ok(events)
    }
    async fn events_named(
        &self,
        id: &str,
        name: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let events = self.inner.events_named(id, name, after, limit).await?;
        self.observer.events_named(&events);
        Ok(events)
    }
    async fn inbox_heads(&self, ids: &[String]) -> Result<Vec<(String, i64)>, StoreError> {
        self.observer.inbox_heads(ids);
        self.inner.inbox_heads(ids).await
    }
    async fn renew_leases(&self, worker: &str, lease_until: Millis) -> Result<u64, StoreError> {
        self.inner.renew_leases(worker, lease_until).await
    }
    async fn release_leases(&self, worker: &str) -> Result<u64, StoreError> {
        self.inner.release_leases(worker).await
    }
    async fn register_worker(&self, worker: &str, takes_starts: &[String]) -> Result<Option<WorkerMark>, StoreError> {
        self.inner.register_worker(worker, takes_starts).await
    }
    async fn offer_starts(&self, worker: &str, takes_starts: &[String]) -> Result<(), StoreError> {
        self.inner.offer_starts(worker, takes_starts).await
    }
    async fn start_takers(&self) -> Result<Option<Vec<StartTaker>>, StoreError> {
        self.inner.start_takers().await
    }
    async fn held_instances(&self, worker: &str) -> Result<Vec<String>, StoreError> {
        self.inner.held_instances(worker).await
    }
    async fn release_dead_workers(&self) -> Result<u64, StoreError> {
        self.inner.release_dead_workers().await
    }
    async fn claim_tasks(
        &self,
        worker: &str,
        activities: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.claim_tasks(worker, activities, now, lease_until, limit).await
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
        self.inner.complete_task(worker, instance_id, generation, seq, attempt, outcome).await
    }
    async fn finished_tasks(&self, instance_ids: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.finished_tasks(instance_ids).await
    }
    fn wake_signals(&self) -> Option<tokio::sync::broadcast::Receiver<WakeSignal>> {
        self.inner.wake_signals()
    }
    async fn probe_commit(&self) -> Result<(), StoreError> {
        self.inner.probe_commit().await
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}
