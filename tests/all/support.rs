//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use workflow::store::Store;
use workflow::{Client, RecordStatus, SqliteStore};

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

/// Waits until the counter reaches `at_least`, up to 20 s.
pub(crate) async fn wait_for_count(instance_id: &str, label: &str, at_least: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count(instance_id, label) < at_least {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {label} of {instance_id}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A SQLite store on a new temporary file; keep the directory alive as long as the store.
pub(crate) async fn sqlite_store() -> (tempfile::TempDir, String, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
    (dir, url, store)
}

/// Waits (polling the store) until `ready` holds for the instance's journal, up to 20 s.
pub(crate) async fn wait_for_journal(
    client: &Client,
    instance_id: &str,
    ready: impl Fn(&[workflow::JournalRecord]) -> bool,
) -> Vec<workflow::JournalRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(journal) = client.journal(instance_id).await {
            if ready(&journal) {
                return journal;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for the journal of {instance_id}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many records of the journal are completed.
pub(crate) fn completed(journal: &[workflow::JournalRecord]) -> usize {
    journal.iter().filter(|r| r.status == RecordStatus::Completed).count()
}
