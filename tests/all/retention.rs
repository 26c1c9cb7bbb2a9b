//! Retention and attempt counters (issue 13): retention purges finished roots a bounded page at a
//! time, never a child on its own while its parent runs, and goes past a damaged row; an
//! activity's stored attempt count at `u32::MAX` saturates instead of overflowing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use workflow::prelude::*;
use workflow::store::{
    InstanceKey, InstanceQuery, InstanceRecord, JournalRecord, Millis, RecordStatus, StepKind, Store, StoreError,
    WriteOp,
};
use workflow::{Error, RetentionPolicy};

use crate::support::{sqlite_store, wait_until, ObservedStore, Observer};

#[activity]
async fn r_step(_ctx: ActivityContext) -> Result<u32, ActivityError> {
    Ok(7)
}

#[workflow]
async fn r_one_step(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    r_step::call(&ctx).await
}

/// An activity whose journal says it is retrying after attempt `u32::MAX` (a damaged count, or a
/// policy that allows that many) runs once more and its outcome is recorded at `u32::MAX`: the
/// counter saturates where `attempt += 1` overflowed (a panic in a debug build, 0 in release).
#[tokio::test]
async fn a_stored_attempt_count_at_u32_max_saturates() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let client = Client::new(store.clone());
    let id = "attempts-max";
    client.start_untyped("r_one_step", "null").id(id).await.unwrap();
    let retrying = JournalRecord {
        instance_id: id.into(),
        generation: 0,
        seq: 0,
        kind: StepKind::Activity,
        name: "r_step".into(),
        status: RecordStatus::Retrying,
        input: Some("null".into()),
        payload: Some(r#"{"message":"earlier failure","attempts":4294967295}"#.into()),
        attempt: u32::MAX,
        due_at: Some(0),
        recorded_at: 0,
        parallel_group: None,
    };
    store.write(&[WriteOp::PutRecord(retrying)]).await.unwrap();
    let rt = Runtime::builder()
        .store(store.clone())
        .workflow(r_one_step::Workflow)
        .activity(r_step::Activity)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let output = rt.client().result::<u32>(id, Some(Duration::from_secs(20))).await.unwrap();
    assert_eq!(output, 7);
    let journal = client.journal(id).await.unwrap();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!((journal[0].status, journal[0].attempt), (RecordStatus::Completed, u32::MAX));
    rt.shutdown(Duration::from_secs(5)).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------------------

#[workflow]
async fn r_gate(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    ctx.wait_for_event("go").await
}

#[workflow]
async fn r_parent(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    let child = r_gate::call(&ctx).await?;
    Ok(child + 1)
}

const HOUR: Duration = Duration::from_secs(3600);

async fn wait_status(client: &Client, id: &str, status: RuntimeStatus) {
    wait_until(&format!("{id} to be {status:?}"), || async {
        client.status(id).await.ok().map(|s| s.status) == Some(status)
    })
    .await;
}

/// A Completed instance written straight to the store, created and finished at `at`.
fn finished(id: &str, at: Millis) -> InstanceRecord {
    InstanceRecord {
        status: RuntimeStatus::Completed,
        output: Some("1".into()),
        ..InstanceRecord::pending(id, "r_one_step", "null", at)
    }
}

/// A child that finished long ago while its parent still runs (suspended here, so it has not yet
/// read the child's end) is not purged on its own: the parent, resumed, reads it and completes.
/// Purged, the child would be missing on the parent's replay (`ChildMissing`).
#[tokio::test]
async fn a_running_parent_keeps_its_expired_child() {
    let clock = VirtualClock::new(5_000_000);
    let rt = Runtime::builder()
        .store(Arc::new(MemoryStore::new()) as Arc<dyn Store>)
        .clock(clock.clone())
        .workflow(r_gate::Workflow)
        .workflow(r_parent::Workflow)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let client = rt.client();
    let (parent, child) = ("keep-parent", "keep-parent-g0-c0");
    client.start_untyped("r_parent", "null").id(parent).await.unwrap();
    wait_status(&client, child, RuntimeStatus::Running).await;
    client.suspend(parent, None).await.unwrap();
    wait_until("the suspended parent to leave memory", || async { rt.instances_in_memory() <= 1 }).await;
    client.raise_event(child, "go", &5u32).await.unwrap();
    wait_status(&client, child, RuntimeStatus::Completed).await;

    clock.advance(2 * HOUR);
    let purged = client.purge_expired(&RetentionPolicy::all(HOUR)).await.unwrap();
    assert_eq!(purged, 0);
    assert_eq!(client.status(child).await.unwrap().status, RuntimeStatus::Completed, "the child is kept");

    client.resume(parent, None).await.unwrap();
    assert_eq!(client.result::<u32>(parent, Some(Duration::from_secs(20))).await.unwrap(), 6);
    // Finished, the parent is the root that goes, and its child with it.
    clock.advance(2 * HOUR);
    assert_eq!(client.purge_expired(&RetentionPolicy::all(HOUR)).await.unwrap(), 2);
    for id in [parent, child] {
        assert!(matches!(client.status(id).await, Err(Error::InstanceNotFound(_))), "{id} purged");
    }
    rt.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A child whose parent is gone (purged with `.recursive(false)`) is a root of its own: retention
/// purges it once it expires.
#[tokio::test]
async fn an_orphaned_child_is_purged_as_a_root() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let client = Client::new(store.clone());
    let orphan = InstanceRecord { parent_id: Some("gone".into()), ..finished("orphan", 1_000) };
    let kept = InstanceRecord { parent_id: Some("alive".into()), ..finished("kept-child", 1_000) };
    let alive = InstanceRecord { status: RuntimeStatus::Running, output: None, ..finished("alive", 1_000) };
    let ops = [orphan, kept, alive].map(WriteOp::CreateInstance);
    store.write(&ops).await.unwrap();
    assert_eq!(client.purge_expired(&RetentionPolicy::all(HOUR)).await.unwrap(), 1);
    assert!(store.instance("orphan").await.unwrap().is_none());
    assert!(store.instance("kept-child").await.unwrap().is_some(), "its parent runs");
}

/// One expired row that does not read back (a generation no engine writes, set by raw SQL) is
/// left in place, and every other expired instance is purged; a later pass is not failed by it
/// either. It failed every pass, purging nothing.
#[tokio::test]
async fn a_corrupt_expired_row_does_not_stop_retention() {
    let (_dir, url, store) = sqlite_store().await;
    let client = Client::new(store.clone());
    let ids = ["corrupt-a", "corrupt-bad", "corrupt-b"];
    let ops: Vec<WriteOp> = ids.iter().zip(1_000..).map(|(id, at)| WriteOp::CreateInstance(finished(id, at))).collect();
    store.write(&ops).await.unwrap();
    let raw = SqliteStore::open(&url).await.unwrap();
    sqlx::query("UPDATE instances SET generation = -1 WHERE id = 'corrupt-bad'").execute(raw.pool()).await.unwrap();
    assert!(matches!(store.instance("corrupt-bad").await, Err(StoreError::Corrupt(_))));

    assert_eq!(client.purge_expired(&RetentionPolicy::all(HOUR)).await.unwrap(), 2);
    for id in ["corrupt-a", "corrupt-b"] {
        assert!(store.instance(id).await.unwrap().is_none(), "{id} purged");
    }
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE id = 'corrupt-bad'")
        .fetch_one(raw.pool())
        .await
        .unwrap();
    assert_eq!(left, 1, "the corrupt row is left for a person to look at");
    assert_eq!(client.purge_expired(&RetentionPolicy::all(HOUR)).await.unwrap(), 0);
}

/// An expired row whose id does not read back at all (a blob, by raw SQL) does not fail the pass
/// either: the instances before it in list order are purged, the other statuses' too.
#[tokio::test]
async fn an_unreadable_key_ends_only_its_status_pass() {
    let (_dir, url, store) = sqlite_store().await;
    let client = Client::new(store.clone());
    let mut ops: Vec<WriteOp> =
        (0..5).map(|n| WriteOp::CreateInstance(finished(&format!("key-{n}"), 1_000 + n))).collect();
    let failed = InstanceRecord { status: RuntimeStatus::Failed, output: None, ..finished("key-failed", 5_000) };
    ops.push(WriteOp::CreateInstance(failed));
    store.write(&ops).await.unwrap();
    let raw = SqliteStore::open(&url).await.unwrap();
    sqlx::query("UPDATE instances SET id = X'FF00' WHERE id = 'key-3'").execute(raw.pool()).await.unwrap();

    assert_eq!(client.purge_expired(&RetentionPolicy::all(HOUR)).await.unwrap(), 4);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT hex(id) FROM instances ORDER BY created_at").fetch_all(raw.pool()).await.unwrap();
    assert_eq!(left, ["FF00".to_owned(), hex("key-4")], "the unreadable row and the one after it are left");
}

/// `text` in upper-case hex, as SQLite's `hex()` writes it.
fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02X}")).collect()
}

/// What a retention pass asked of the store, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// A read of expired instances (`updated_before` set): how many rows, and whether with payloads.
    ReadExpired { rows: usize, payloads: bool },
    /// A batch that purges instances.
    Purge,
}

/// Records the reads of expired instances and the purges.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
}

impl Recorder {
    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }
}

impl Observer for Recorder {
    fn write(&self, ops: &[WriteOp]) {
        if ops.iter().any(|op| matches!(op, WriteOp::Purge { .. })) {
            self.record(Call::Purge);
        }
    }
    fn list(&self, query: &InstanceQuery, found: &[InstanceRecord]) {
        if query.updated_before.is_some() {
            self.record(Call::ReadExpired { rows: found.len(), payloads: true });
        }
    }
    fn list_keys(&self, query: &InstanceQuery, found: &[InstanceKey]) {
        if query.updated_before.is_some() {
            self.record(Call::ReadExpired { rows: found.len(), payloads: false });
        }
    }
}

/// A memory store that records the reads of expired instances and the purges.
type RecordingStore = ObservedStore<Recorder>;

/// Many expired instances (more than a page, with children) are all purged, a page at a time:
/// the expired set is read as keys, without payloads, and the pass purges what it read before
/// it reads more, so it never holds the whole set. It read every expired instance, payloads
/// included, before purging any.
#[tokio::test]
async fn many_expired_instances_are_purged_a_page_at_a_time() {
    const ROOTS: usize = 1_234;
    let store = Arc::new(RecordingStore::default());
    let client = Client::new(store.clone() as Arc<dyn Store>);
    let at = |n: usize| 1_000 + n as Millis;
    let mut ops: Vec<WriteOp> =
        (0..ROOTS).map(|n| WriteOp::CreateInstance(finished(&format!("many-{n}"), at(n)))).collect();
    // Every tenth root has a child, created after it (so on a later page, or the same one).
    ops.extend((0..ROOTS).step_by(10).map(|n| {
        let child =
            InstanceRecord { parent_id: Some(format!("many-{n}")), ..finished(&format!("many-{n}-c"), at(n + 5)) };
        WriteOp::CreateInstance(child)
    }));
    let total = ops.len();
    store.write(&ops).await.unwrap();
    store.observer.calls.lock().unwrap().clear();

    assert_eq!(client.purge_expired(&RetentionPolicy::all(HOUR)).await.unwrap(), total);
    let left = store.list(&InstanceQuery { limit: usize::MAX, ..InstanceQuery::default() }).await.unwrap();
    assert!(left.is_empty(), "{} instances left", left.len());

    let calls = store.observer.calls.lock().unwrap().clone();
    let reads: Vec<(usize, bool)> = calls
        .iter()
        .filter_map(|call| match *call {
            Call::ReadExpired { rows, payloads } => Some((rows, payloads)),
            Call::Purge => None,
        })
        .collect();
    let first_purge = calls.iter().position(|call| *call == Call::Purge).unwrap();
    let read_before: usize = calls[..first_purge]
        .iter()
        .map(|call| match *call {
            Call::ReadExpired { rows, .. } => rows,
            Call::Purge => 0,
        })
        .sum();
    assert!(read_before < ROOTS, "{read_before} expired instances read before the first purge");
    assert!(reads.iter().all(|&(_, payloads)| !payloads), "expired instances read with their payloads: {reads:?}");
    assert!(reads.len() >= 3, "several pages: {reads:?}");
}
