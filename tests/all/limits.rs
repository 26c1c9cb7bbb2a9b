//! Limits: the inbox of an instance is bounded (count and bytes) and checked in the store, an
//! event wait reads only the events of its name, and no payload over the size limit is stored.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use workflow::prelude::*;
use workflow::store::{EventRecord, Store};
use workflow::{Error, Limits};

use crate::support::{wait_until, ObservedStore, Observer};

/// Counts the event records reads of inboxes return, and the reads of whole inboxes (`events`).
#[derive(Default)]
struct InboxCounts {
    events_read: AtomicUsize,
    whole_inbox_reads: AtomicUsize,
    named_reads: AtomicUsize,
    head_reads: std::sync::Mutex<Vec<usize>>,
}

impl Observer for InboxCounts {
    fn inbox_heads(&self, ids: &[String]) {
        self.head_reads.lock().unwrap().push(ids.len());
    }
    fn events(&self, events: &[EventRecord]) {
        self.whole_inbox_reads.fetch_add(1, Ordering::SeqCst);
        self.events_read.fetch_add(events.len(), Ordering::SeqCst);
    }
    fn events_named(&self, events: &[EventRecord]) {
        self.named_reads.fetch_add(1, Ordering::SeqCst);
        self.events_read.fetch_add(events.len(), Ordering::SeqCst);
    }
}

type InboxCounter = ObservedStore<InboxCounts>;

#[workflow]
async fn awaits_go(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    ctx.wait_for_event::<u32>("go").await
}

/// A raise past the inbox's count or byte limit fails with `InboxFull` (over HTTP, a 4xx) and
/// stores nothing; the inbox takes more once its workflow has taken some.
#[tokio::test]
async fn a_raise_over_the_inbox_limit_is_refused_and_stores_nothing() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let client = Client::new(store.clone()).with_limits(Limits::default().max_inbox_events(3).max_inbox_bytes(100));
    let id = awaits_go::start(&client).await.unwrap().instance_id().to_owned();
    for n in 0..3 {
        client.raise_event(&id, "noise", &n).await.unwrap();
    }
    let before = store.events(&id).await.unwrap();
    match client.raise_event(&id, "go", &7).await {
        Err(Error::InboxFull { instance_id, events: 3, bytes: 3, max_events: 3, max_bytes: 100 }) => {
            assert_eq!(instance_id, id)
        }
        other => panic!("expected InboxFull, got {other:?}"),
    }
    assert_eq!(store.events(&id).await.unwrap(), before, "the stored inbox is unchanged");

    // The byte limit, on an inbox with room for more events.
    let roomy = Client::new(store.clone()).with_limits(Limits::default().max_inbox_events(10).max_inbox_bytes(100));
    let big = "x".repeat(96);
    assert!(matches!(roomy.raise_event(&id, "go", &big).await, Err(Error::InboxFull { .. })));
    assert_eq!(store.events(&id).await.unwrap(), before);

    // Under a runtime with a higher limit it fits, and the workflow takes it.
    let runtime = Runtime::builder()
        .store(store.clone())
        .workflow(awaits_go::Workflow)
        .limits(Limits::default().max_inbox_events(4))
        .build()
        .await
        .unwrap();
    let local = runtime.client();
    local.raise_event(&id, "go", &7).await.unwrap();
    assert_eq!(local.result::<u32>(&id, Some(Duration::from_secs(20))).await.unwrap(), 7);
    wait_until("the taken event to leave the inbox", || async { store.events(&id).await.unwrap().len() == 3 }).await;
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The default inbox limit holds without any configuration: the 10,001st buffered event is
/// refused.
#[tokio::test]
async fn the_default_inbox_limit_holds() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let client = Client::new(store.clone());
    let id = awaits_go::start(&client).await.unwrap().instance_id().to_owned();
    let (client, id) = (&client, &id);
    let raises = (0..10_000).map(|n| async move { client.raise_event(id, "noise", &n).await });
    for result in futures::future::join_all(raises).await {
        result.unwrap();
    }
    let refused = client.raise_event(id, "go", &1).await;
    assert!(matches!(refused, Err(Error::InboxFull { events: 10_000, .. })), "{refused:?}");
    assert_eq!(store.events(id).await.unwrap().len(), 10_000);
}

/// An event wait finds its event among many others buffered for its instance without reading
/// them: it reads the events of its own name only, never the whole inbox.
#[tokio::test]
async fn a_wait_reads_only_the_events_of_its_name() {
    let store = Arc::new(InboxCounter::default());
    let client = Client::new(store.clone() as Arc<dyn Store>);
    let id = awaits_go::start(&client).await.unwrap().instance_id().to_owned();
    let noise = "n".repeat(1_000);
    for _ in 0..300 {
        client.raise_event(&id, "noise", &noise).await.unwrap();
    }
    let runtime =
        Runtime::builder().store(store.clone() as Arc<dyn Store>).workflow(awaits_go::Workflow).build().await.unwrap();
    let local = runtime.client();
    wait_until("the instance to wait", || async { runtime.instances_in_memory() == 1 }).await;
    local.raise_event(&id, "GO", &5).await.unwrap();
    assert_eq!(local.result::<u32>(&id, Some(Duration::from_secs(20))).await.unwrap(), 5);
    let read = store.observer.events_read.load(Ordering::SeqCst);
    assert!(read <= 5, "the wait read {read} event records; the inbox held 300 others");
    assert_eq!(store.observer.whole_inbox_reads.load(Ordering::SeqCst), 0, "no read of the whole inbox");
    assert_eq!(store.events(&id).await.unwrap().len(), 300, "the others stay buffered");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// An instance evicted while it waits, with events of other names in its inbox, is woken by an
/// event of its name (raised by another process, so only the store can tell), and stays asleep
/// otherwise: the check after the eviction reads only the names waited for.
#[tokio::test]
async fn an_evicted_wait_wakes_for_its_name_only() {
    let store = Arc::new(InboxCounter::default());
    let runtime = Runtime::builder()
        .store(store.clone() as Arc<dyn Store>)
        .workflow(awaits_go::Workflow)
        .evict_idle_after(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let elsewhere = Client::new(store.clone() as Arc<dyn Store>);
    let id = awaits_go::start(&runtime.client()).await.unwrap().instance_id().to_owned();
    for n in 0..50 {
        elsewhere.raise_event(&id, "noise", &n).await.unwrap();
    }
    wait_until("the waiting instance to be evicted", || async { runtime.instances_in_memory() == 0 }).await;
    elsewhere.raise_event(&id, "go", &9).await.unwrap();
    assert_eq!(elsewhere.result::<u32>(&id, Some(Duration::from_secs(20))).await.unwrap(), 9);
    assert_eq!(store.observer.whole_inbox_reads.load(Ordering::SeqCst), 0, "no read of the whole inbox");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

static BIG_RESULT_ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

#[activity(retry(max_attempts = 3, first_interval = "10ms"))]
async fn big_result(_ctx: ActivityContext, size: usize) -> Result<String, ActivityError> {
    BIG_RESULT_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    Ok("r".repeat(size))
}

#[activity]
async fn echo(_ctx: ActivityContext, text: String) -> Result<usize, ActivityError> {
    Ok(text.len())
}

#[workflow]
async fn payload_sizes(ctx: WorkflowContext, case: (String, usize)) -> Result<String, WorkflowError> {
    let (case, size) = case;
    match case.as_str() {
        "output" => Ok("o".repeat(size)),
        "activity_result" => big_result::call(&ctx, size).await,
        "activity_input" => match echo::call(&ctx, "i".repeat(size)).await {
            Err(error @ WorkflowError::PayloadTooLarge { .. }) => Ok(format!("refused: {error}")),
            other => Ok(format!("unexpected: {other:?}")),
        },
        "custom_status" => {
            ctx.set_custom_status(&"s".repeat(size));
            Ok("done".into())
        }
        _ => Ok("small".into()),
    }
}

/// No payload over the limit is stored: a start or a raise with one fails with
/// `PayloadTooLarge` and writes nothing; a workflow output or custom status over it fails the
/// instance with error type `PayloadTooLarge`; an activity result over it fails the call at once
/// (not retried); an activity input over it is refused to the workflow.
#[tokio::test]
async fn payloads_over_the_limit_are_never_stored() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let runtime = Runtime::builder()
        .store(store.clone())
        .workflow(payload_sizes::Workflow)
        .activity(big_result::Activity)
        .activity(echo::Activity)
        .limits(Limits::default().max_payload_bytes(1_000))
        .build()
        .await
        .unwrap();
    let client = runtime.client();

    let start = payload_sizes::start(&client, ("i".repeat(2_000), 0)).id("too-big-input").await;
    assert!(matches!(start, Err(Error::PayloadTooLarge { size, limit: 1_000, .. }) if size > 2_000), "{start:?}");
    assert_eq!(store.instance("too-big-input").await.unwrap(), None, "nothing was created");
    let untyped = client.start_untyped("payload_sizes", format!("[\"{}\",1]", "x".repeat(1_000))).await;
    assert!(matches!(untyped, Err(Error::PayloadTooLarge { .. })), "{untyped:?}");

    let small = payload_sizes::start(&client, ("small".into(), 0)).await.unwrap();
    assert_eq!(small.result().await.unwrap(), "small");
    let waiting = Client::new(store.clone()).with_limits(Limits::default().max_payload_bytes(10));
    let parked = waiting.start_untyped("not_registered_here", "null").id("parked").await.unwrap();
    match waiting.raise_event(parked.instance_id(), "go", &"x".repeat(20)).await {
        Err(Error::PayloadTooLarge { what, size: 22, limit: 10 }) => assert!(what.contains("`go`"), "{what}"),
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert!(store.events("parked").await.unwrap().is_empty(), "the inbox is unchanged");

    let failed_with = |handle: workflow::Handle<String>| async move {
        let error = handle.result().await.unwrap_err();
        let status = handle.status().await.unwrap();
        assert_eq!(status.status, RuntimeStatus::Failed, "{error}");
        (status.failure.unwrap(), status.output, status.custom_status)
    };
    let output = payload_sizes::start(&client, ("output".into(), 5_000)).await.unwrap();
    let (failure, output, _) = failed_with(output).await;
    assert_eq!(failure.error_type, "PayloadTooLarge");
    assert!(failure.message.contains("5002 bytes"), "{}", failure.message);
    assert_eq!(output, None, "the output was not written");

    let status = payload_sizes::start(&client, ("custom_status".into(), 5_000)).await.unwrap();
    let (failure, _, custom) = failed_with(status).await;
    assert_eq!(failure.error_type, "PayloadTooLarge");
    assert!(failure.message.contains("custom status"), "{}", failure.message);
    assert_eq!(custom, None, "the custom status was not written");

    let result = payload_sizes::start(&client, ("activity_result".into(), 5_000)).await.unwrap();
    let (failure, _, _) = failed_with(result).await;
    assert_eq!(failure.error_type, "ActivityFailed");
    assert!(
        failure.message.contains("PayloadTooLarge") && failure.message.contains("5002 bytes"),
        "{}",
        failure.message
    );
    assert_eq!(BIG_RESULT_ATTEMPTS.load(Ordering::SeqCst), 1, "not retried");

    let input = payload_sizes::start(&client, ("activity_input".into(), 5_000)).await.unwrap();
    let refused = input.result().await.unwrap();
    assert!(refused.starts_with("refused: the input of activity `echo` is 5002 bytes"), "{refused}");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// On SQLite, a wait's read of one name and the inbox room check are answered from the
/// `events_unconsumed` index alone (no scan of the events table, no sort), whatever else the
/// inbox holds. The statements are spelled as the store spells them.
#[tokio::test]
async fn sqlite_reads_inboxes_from_an_index() {
    let store = workflow::SqliteStore::open("sqlite::memory:").await.unwrap();
    let plan_of = |sql: &'static str| {
        let store = &store;
        async move {
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .bind("id")
                .bind("name")
                .bind(0_i64)
                .bind(10_i64)
                .bind(100_i64)
                .fetch_all(store.pool())
                .await
                .unwrap();
            rows.iter().map(|row| sqlx::Row::get::<String, _>(row, "detail")).collect::<Vec<_>>().join("; ")
        }
    };
    let named = plan_of(
        "SELECT seq, instance_id, name, payload, created_at FROM events WHERE instance_id = ? \
         AND name = ? COLLATE NOCASE AND seq > ? AND consumed_by_seq IS NULL ORDER BY seq LIMIT ?",
    )
    .await;
    assert!(named.contains("USING INDEX events_unconsumed (instance_id=? AND name=? AND seq>?)"), "{named}");
    assert!(!named.contains("TEMP B-TREE"), "{named}");
    let room = plan_of(
        "SELECT v.column1 FROM (VALUES (?, ?, ?, ?, ?)) AS v WHERE EXISTS (SELECT 1 FROM (SELECT count(*) AS n, \
         COALESCE(sum(e.payload_bytes), 0) AS b FROM events AS e WHERE e.instance_id = v.column1 \
         AND e.consumed_by_seq IS NULL) AS held WHERE held.n + v.column2 > v.column4 OR held.b + v.column3 > v.column5)",
    )
    .await;
    assert!(room.contains("USING COVERING INDEX events_unconsumed (instance_id=?)"), "{room}");
}

/// Instances kept in memory while they wait for events: no wait re-reads its inbox on its own;
/// the runtime reads which inboxes changed, for all of them in one call per tick, and wakes a
/// wait only when its inbox changed.
#[tokio::test]
async fn event_waits_do_not_poll_on_their_own() {
    const WAITING: usize = 30;
    let (store, runtime, client, ids) = awaiting_go("quiet", WAITING, Duration::from_secs(3600)).await;
    wait_until("one inbox check of every waiting instance", || async {
        store.observer.head_reads.lock().unwrap().contains(&WAITING)
    })
    .await;
    let checks = store.observer.head_reads.lock().unwrap().len();
    wait_until("one more check", || async { store.observer.head_reads.lock().unwrap().len() > checks }).await;
    let (reads, checks) =
        (store.observer.named_reads.load(Ordering::SeqCst), store.observer.head_reads.lock().unwrap().len());
    wait_until("three more checks", || async { store.observer.head_reads.lock().unwrap().len() >= checks + 3 }).await;
    assert_eq!(store.observer.named_reads.load(Ordering::SeqCst), reads, "a wait read its inbox on its own");
    assert!(store.observer.head_reads.lock().unwrap().iter().all(|&ids| ids <= WAITING));
    raise_go_and_await(&client, &ids).await;
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// `count` instances of `awaits_go` started as `{prefix}-{n}` on a store that counts inbox reads,
/// under a runtime that evicts a wait idle for `evict_idle_after`.
async fn awaiting_go(
    prefix: &str,
    count: usize,
    evict_idle_after: Duration,
) -> (Arc<InboxCounter>, Runtime, Client, Vec<String>) {
    let store = Arc::new(InboxCounter::default());
    let runtime = Runtime::builder()
        .store(store.clone() as Arc<dyn Store>)
        .workflow(awaits_go::Workflow)
        .evict_idle_after(evict_idle_after)
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let ids: Vec<String> = (0..count).map(|n| format!("{prefix}-{n}")).collect();
    for id in &ids {
        awaits_go::start(&client).id(id.clone()).await.unwrap();
    }
    (store, runtime, client, ids)
}

/// Raises "go" with payload `n` into the `n`th of `ids`, and checks each instance returns it.
async fn raise_go_and_await(client: &Client, ids: &[String]) {
    for (n, id) in ids.iter().enumerate() {
        client.raise_event(id, "go", &(n as u32)).await.unwrap();
    }
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(client.result::<u32>(id, Some(Duration::from_secs(20))).await.unwrap(), n as u32);
    }
}

/// Instances evicted while they wait for an event, then woken by it: each resumed wait finds its
/// event in the front of the inbox read beside the journals at the claim, for all of them at
/// once, and reads no inbox of its own.
#[tokio::test]
async fn a_resumed_wait_takes_its_event_from_the_claim() {
    let (store, runtime, client, ids) = awaiting_go("resumed", 5, Duration::from_millis(20)).await;
    wait_until("every instance evicted while it waits", || async { runtime.instances_in_memory() == 0 }).await;
    let reads = store.observer.named_reads.load(Ordering::SeqCst);
    raise_go_and_await(&client, &ids).await;
    assert_eq!(store.observer.named_reads.load(Ordering::SeqCst), reads, "a resumed wait read its inbox itself");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[workflow]
async fn awaits_go_a_while(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    // A timeout shorter than `evict_idle_after` keeps the wait in memory and journals it.
    ctx.wait_for_event::<u32>("go").timeout(Duration::from_secs(1800)).await
}

/// An event raised by another process on a SQLite file (here a store object of its own, whose
/// writes signal nothing to the runtime) reaches a wait kept in memory through the runtime's
/// inbox check.
#[tokio::test]
async fn an_event_raised_elsewhere_reaches_a_wait_in_memory() {
    let (_dir, url, store) = crate::support::sqlite_store().await;
    let runtime = Runtime::builder()
        .store(store.clone())
        .workflow(awaits_go_a_while::Workflow)
        .evict_idle_after(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let handle = awaits_go_a_while::start(&client).id("elsewhere").await.unwrap();
    let elsewhere = Client::new(Arc::new(workflow::SqliteStore::open(&url).await.unwrap()) as Arc<dyn Store>);
    // The wait is journaled once it has read the inbox and found nothing.
    wait_until("the wait to begin", || async { !client.journal("elsewhere").await.unwrap().is_empty() }).await;
    assert_eq!(runtime.instances_in_memory(), 1);
    elsewhere.raise_event("elsewhere", "go", &7_u32).await.unwrap();
    assert_eq!(handle.result_timeout(Duration::from_secs(20)).await.unwrap(), 7);
    assert_eq!(runtime.instances_in_memory(), 0);
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}
