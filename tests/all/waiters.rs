//! Result waiters: however many handles wait, the store is read once per waiter and then by one
//! shared, bounded poll (or its signals), never by each waiter on its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use workflow::prelude::*;
use workflow::store::{InstanceRecord, Store, WakeSignal};

use crate::support::{wait_until, ObservedStore, Observer};

/// Counts the reads of single instances and records the size of each batch read: watches (a new
/// waiter's first read) and plain ones (the shared poll).
#[derive(Default)]
struct Counts {
    single_reads: AtomicUsize,
    watches: Mutex<Vec<usize>>,
    batch_reads: Mutex<Vec<usize>>,
}

impl Observer for Counts {
    fn instance(&self, _id: &str, _found: &mut Option<InstanceRecord>) {
        self.single_reads.fetch_add(1, Ordering::SeqCst);
    }
    fn instances(&self, ids: &[String]) {
        self.batch_reads.lock().unwrap().push(ids.len());
    }
    fn watch(&self, ids: &[String]) {
        self.watches.lock().unwrap().push(ids.len());
    }
}

type CountingStore = ObservedStore<Counts>;

#[workflow]
async fn doubled(_ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    Ok(n * 2)
}

/// 600 handles wait on a client without a runtime, on a store without signals (so only the shared
/// poll can tell them): their first reads are batched (each instance read once), then only batch
/// reads of at most 256 ids happen, however long they wait; when a runtime elsewhere runs the
/// instances, every waiter gets its own result.
#[tokio::test]
async fn many_waiters_share_one_bounded_poll() {
    const WAITERS: usize = 600;
    let store = Arc::new(CountingStore::default());
    let client = Client::new(store.clone() as Arc<dyn Store>);
    let handles = futures::future::try_join_all((0..WAITERS as u64).map(|n| doubled::start(&client, n))).await.unwrap();
    let results = tokio::spawn(async move {
        futures::future::join_all(handles.iter().map(|handle| handle.result_timeout(Duration::from_secs(60)))).await
    });
    // Three polls cover every waiter (at most 256 ids each), and a few more wait on.
    wait_until("the shared poll to read the waited instances 6 times", || async {
        store.observer.batch_reads.lock().unwrap().len() >= 6
    })
    .await;
    let watches = store.observer.watches.lock().unwrap().clone();
    assert_eq!(watches.iter().sum::<usize>(), WAITERS, "each waiter's first read once, batched: {watches:?}");
    assert!(watches.len() < WAITERS / 10, "first reads share batches: {watches:?}");
    let polls = store.observer.batch_reads.lock().unwrap().clone();
    assert!(polls.iter().all(|&ids| ids > 0 && ids <= 256), "bounded polls: {polls:?}");
    assert!(polls.iter().take(3).sum::<usize>() >= WAITERS, "the first polls cover every waiter: {polls:?}");
    assert_eq!(store.observer.single_reads.load(Ordering::SeqCst), 0, "no waiter reads on its own");

    // The worker runs in what stands for another process: its own runtime and client.
    let runtime =
        Runtime::builder().store(store.clone() as Arc<dyn Store>).workflow(doubled::Workflow).build().await.unwrap();
    let outputs = results.await.unwrap();
    for (n, output) in outputs.into_iter().enumerate() {
        assert_eq!(output.unwrap(), n as u64 * 2);
    }
    assert_eq!(
        store.observer.watches.lock().unwrap().iter().sum::<usize>(),
        WAITERS,
        "no waiter was read again on its own"
    );
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A wait for an instance that does not exist ends with `InstanceNotFound` (the shared reads
/// report missing ids to their waiters); one terminated while waited for ends without a result.
#[tokio::test]
async fn waits_end_for_missing_and_terminated_instances() {
    let store = Arc::new(MemoryStore::new());
    let client = Client::new(store.clone() as Arc<dyn Store>);
    let missing = client.wait_for_completion("no-such-instance", Some(Duration::from_secs(20))).await;
    assert!(matches!(missing, Err(workflow::Error::InstanceNotFound(_))), "{missing:?}");

    let handle = doubled::start(&client, 1).id("terminated-while-waited").await.unwrap();
    let waiter = tokio::spawn(async move { handle.result_timeout(Duration::from_secs(20)).await });
    client.terminate("terminated-while-waited", None).await.unwrap();
    let waited = waiter.await.unwrap();
    assert!(matches!(waited, Err(workflow::Error::NoResult { .. })), "{waited:?}");
}

/// A SQLite store signals its changes to every user of the same store object in this process (a
/// runtime and a `Client::new` beside it): new and woken instances, events, finishes, task
/// outcomes; a batch that fails signals nothing.
#[tokio::test]
async fn sqlite_changes_reach_users_of_the_same_store() {
    use workflow::store::conformance::{add_event, create, fence, finish_of, instance, set_custom};
    let store = workflow::SqliteStore::open("sqlite::memory:").await.unwrap();
    let mut signals = store.wake_signals().expect("SQLite signals in this process");
    let next = |signals: &mut tokio::sync::broadcast::Receiver<WakeSignal>| {
        signals.try_recv().expect("a signal was sent before the write returned")
    };
    store.write(&[create(instance("s/a", "wf", 1))]).await.unwrap();
    assert_eq!(next(&mut signals), WakeSignal::Runnable);
    store.write(&[add_event("s/a", "go", "1", 2)]).await.unwrap();
    assert_eq!(next(&mut signals), WakeSignal::Event("s/a".into()));
    store.write(&[set_custom("s/a", Some("1"), 3)]).await.unwrap();
    // Refused by its fence: nothing of it happened, nothing is signalled.
    assert!(store.write(&[fence("s/a", "nobody"), create(instance("s/b", "wf", 1))]).await.is_err());
    store.write(&[finish_of("s/a")]).await.unwrap();
    assert_eq!(next(&mut signals), WakeSignal::Finished("s/a".into()), "nothing between: no hint for the others");
    assert!(signals.try_recv().is_err());
}

#[workflow]
async fn held_child(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let go: u64 = ctx.wait_for_event("go").await?;
    Ok(n + go)
}

#[workflow]
async fn parent_of_held(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    held_child::call(&ctx, n).await
}

/// Parents kept in memory while their children wait: no parent re-reads its child on its own;
/// the children's ends reach them through the shared waiters (the shared poll reads the waited
/// children in one batch per tick meanwhile).
#[tokio::test]
async fn child_waits_do_not_poll_on_their_own() {
    const PARENTS: usize = 40;
    let store = Arc::new(CountingStore::default());
    let runtime = Runtime::builder()
        .store(store.clone() as Arc<dyn Store>)
        .workflow(parent_of_held::Workflow)
        .workflow(held_child::Workflow)
        .evict_idle_after(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let ids: Vec<String> = (0..PARENTS).map(|n| format!("held-parent-{n}")).collect();
    let handles = futures::future::try_join_all(
        ids.iter().zip(0..).map(|(id, n)| parent_of_held::start(&client, n).id(id.clone())),
    )
    .await
    .unwrap();
    // Every parent waits for its child: a poll reads all the children at once; one tick later
    // every parent's own first read of its child is done.
    wait_until("a shared poll of every waited child", || async {
        store.observer.batch_reads.lock().unwrap().contains(&PARENTS)
    })
    .await;
    let polls = store.observer.batch_reads.lock().unwrap().len();
    wait_until("one more shared poll", || async { store.observer.batch_reads.lock().unwrap().len() > polls }).await;
    let (reads, polls) =
        (store.observer.single_reads.load(Ordering::SeqCst), store.observer.batch_reads.lock().unwrap().len());
    wait_until("five more shared polls", || async { store.observer.batch_reads.lock().unwrap().len() >= polls + 5 })
        .await;
    assert_eq!(store.observer.single_reads.load(Ordering::SeqCst), reads, "a parent read its child on its own");

    for (n, id) in ids.iter().enumerate() {
        client.raise_event(&format!("{id}-g0-c0"), "go", &(n as u64)).await.unwrap();
    }
    for (n, handle) in handles.iter().enumerate() {
        assert_eq!(handle.result_timeout(Duration::from_secs(20)).await.unwrap(), 2 * n as u64);
    }
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}
