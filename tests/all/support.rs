//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use workflow::store::Store;
use workflow::{Client, RecordStatus, RuntimeStatus, SqliteStore};

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
