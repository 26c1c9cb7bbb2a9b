//! Leases belong to a runtime, not to its worker id: two runtimes built with the same
//! `worker_id` (two processes started with one configuration, or a restart whose predecessor
//! still runs) neither take each other's live leases nor pass each other's fences; a dropped
//! runtime's instances are resumed at once all the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use workflow::prelude::*;
use workflow::store::{Store, WriteOp};
use workflow::JournalRecord;

use crate::support::{bump, count, sqlite_store, wait_for_a_claim_pass, wait_for_count, wait_until};

/// Long enough that only a takeover explains another owner.
const LEASE: Duration = Duration::from_secs(60);

/// A gate per instance id, so tests running at once do not open each other's.
fn gate(id: &str) -> Arc<Notify> {
    static GATES: OnceLock<Mutex<HashMap<String, Arc<Notify>>>> = OnceLock::new();
    let mut gates = GATES.get_or_init(Mutex::default).lock().unwrap();
    gates.entry(id.to_owned()).or_default().clone()
}

/// Its first run waits for the instance's gate, and returns 1; any later run never ends.
#[activity(retry(max_attempts = 1))]
async fn twin_step(ctx: ActivityContext) -> Result<u32, ActivityError> {
    let run = bump(ctx.instance_id(), "twin_step");
    if run == 1 {
        gate(ctx.instance_id()).notified().await;
        return Ok(run);
    }
    std::future::pending().await
}

#[workflow]
async fn twin_flow(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    twin_step::call(&ctx).await
}

/// Ends at once: a claim of it proves a claim pass.
#[workflow]
async fn twin_probe(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

/// A runtime with worker id `twin`, a long lease, on `store`.
fn twin(store: Arc<dyn Store>) -> workflow::RuntimeBuilder {
    Runtime::builder()
        .store(store)
        .worker_id("twin")
        .lease(LEASE)
        .poll_interval(Duration::from_millis(20))
        .workflow(twin_flow::Workflow)
        .activity(twin_step::Activity)
}

#[tokio::test]
async fn a_runtimes_owner_is_its_worker_id_and_a_nonce_of_its_own() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (a, b) = (twin(store.clone()).build().await.unwrap(), twin(store).build().await.unwrap());
    assert_eq!((a.worker_id(), b.worker_id()), ("twin", "twin"));
    assert!(a.owner_id().starts_with("twin#") && b.owner_id().starts_with("twin#"), "{}", a.owner_id());
    assert_ne!(a.owner_id(), b.owner_id());
}

/// A second runtime with the same worker id, its clock far ahead (as if the first one's lease had
/// lapsed: a stalled process whose successor took over), claims the instance the first one runs;
/// the first one's step then ends, and its commit must be refused: its run is abandoned, and the
/// journal and the instance stay the second one's.
async fn a_twin_cannot_write_to_what_the_other_took_over(store_a: Arc<dyn Store>, store_b: Arc<dyn Store>, id: &str) {
    let a = twin(store_a.clone()).build().await.unwrap();
    twin_flow::start(&a.client()).id(id).await.unwrap();
    wait_for_count(id, "twin_step", 1).await;
    let ahead = VirtualClock::new(a.client().status(id).await.unwrap().created_at + 86_400_000);
    let b = twin(store_b.clone()).clock(ahead).build().await.unwrap();
    // The second one runs the step too (a run that never ends): it holds the instance.
    wait_for_count(id, "twin_step", 2).await;
    gate(id).notify_one();
    let journal = |store: Arc<dyn Store>| async move { store.journal(id, 0).await.unwrap() };
    wait_until("the first runtime's run to leave memory, or its step to be journaled", || {
        let (a, journal) = (&a, journal(store_a.clone()));
        async move { a.instances_in_memory() == 0 || !journal.await.is_empty() }
    })
    .await;
    let written: Vec<JournalRecord> = journal(store_a.clone()).await;
    assert!(written.is_empty(), "the first runtime wrote to an instance the second one holds: {written:?}");
    let record = store_a.instance(id).await.unwrap().unwrap();
    assert_eq!(record.status, RuntimeStatus::Running);
    assert_eq!(record.owner.as_deref(), Some(b.owner_id()));
    let fenced = store_a
        .write(&[
            WriteOp::AssertOwner { id: id.to_owned(), owner: a.owner_id().to_owned() },
            WriteOp::SetCustomStatus { id: id.to_owned(), custom_status: Some("\"a\"".into()), updated_at: 1 },
        ])
        .await;
    assert!(matches!(fenced, Err(workflow::store::StoreError::Fenced(_))), "{fenced:?}");
    b.shutdown(Duration::from_secs(5)).await.unwrap();
    a.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A second runtime with the same worker id, started while the first one lives (a restart whose
/// predecessor did not die), does not take the instance the first one runs: after a claim pass of
/// the second one, the instance keeps its owner and the lease the first one's claim gave it.
async fn a_twin_does_not_take_the_others_live_leases(store: Arc<dyn Store>, id: &str, probe: &str) {
    let a = twin(store.clone()).build().await.unwrap();
    twin_flow::start(&a.client()).id(id).await.unwrap();
    wait_for_count(id, "twin_step", 1).await;
    let before = store.instance(id).await.unwrap().unwrap();
    // Only the second one runs probes: their claim proves it looked.
    let b = twin(store.clone()).workflow(twin_probe::Workflow).build().await.unwrap();
    wait_for_a_claim_pass(&store, "twin_probe", probe, "null").await;
    let after = store.instance(id).await.unwrap().unwrap();
    assert_eq!(
        (after.owner.as_deref(), after.lease_until),
        (before.owner.as_deref(), before.lease_until),
        "the second runtime took the first one's live lease"
    );
    assert_eq!(after.owner.as_deref(), Some(a.owner_id()));
    assert_eq!(count(id, "twin_step"), 1, "the step ran again");
    gate(id).notify_one();
    assert_eq!(a.client().result::<u32>(id, Some(Duration::from_secs(20))).await.unwrap(), 1);
    b.shutdown(Duration::from_secs(5)).await.unwrap();
    a.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn sqlite_a_twin_cannot_write_to_what_the_other_took_over() {
    let (_dir, url, store) = sqlite_store().await;
    let other: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
    a_twin_cannot_write_to_what_the_other_took_over(store, other, "twin-sqlite-fenced").await;
}

#[tokio::test]
async fn memory_a_twin_cannot_write_to_what_the_other_took_over() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    a_twin_cannot_write_to_what_the_other_took_over(store.clone(), store, "twin-memory-fenced").await;
}

#[tokio::test]
async fn sqlite_a_twin_does_not_take_the_others_live_leases() {
    let (_dir, _url, store) = sqlite_store().await;
    a_twin_does_not_take_the_others_live_leases(store, "twin-sqlite-live", "twin-sqlite-probe").await;
}

#[tokio::test]
async fn memory_a_twin_does_not_take_the_others_live_leases() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    a_twin_does_not_take_the_others_live_leases(store, "twin-memory-live", "twin-memory-probe").await;
}

/// Its first run never ends; later runs return 7.
#[activity]
async fn stalls_once(ctx: ActivityContext) -> Result<u32, ActivityError> {
    if bump(ctx.instance_id(), "stalls_once") == 1 {
        std::future::pending::<()>().await;
    }
    Ok(7)
}

#[workflow]
async fn stalled_flow(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    stalls_once::call(&ctx).await
}

/// On the memory store too (no process to die), a runtime dropped without a shutdown leaves its
/// instances to its successor at once, not when their leases lapse: its mark went with it.
#[tokio::test]
async fn memory_a_dropped_runtimes_instances_resume_at_once_under_the_same_worker_id() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let build = || {
        Runtime::builder()
            .store(store.clone())
            .worker_id("restarted")
            .lease(LEASE)
            .poll_interval(Duration::from_millis(20))
            .workflow(stalled_flow::Workflow)
            .activity(stalls_once::Activity)
            .build()
    };
    let first = build().await.unwrap();
    stalled_flow::start(&first.client()).id("memory-dropped").await.unwrap();
    wait_for_count("memory-dropped", "stalls_once", 1).await;
    drop(first);
    let second = build().await.unwrap();
    let started = std::time::Instant::now();
    let output: u32 = second.client().result("memory-dropped", Some(LEASE / 2)).await.unwrap();
    assert_eq!(output, 7);
    assert!(started.elapsed() < LEASE / 2, "resumed after {:?}", started.elapsed());
    second.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use crate::support::{drop_schema, fresh_schema, postgres_url};

    async fn open(url: &str, schema: &str) -> Arc<dyn Store> {
        let options = workflow::PostgresOptions::new().schema(schema);
        Arc::new(workflow::PostgresStore::open_with(url, options).await.unwrap())
    }

    #[tokio::test]
    async fn postgres_a_twin_cannot_write_to_what_the_other_took_over() {
        let Some(url) = postgres_url() else { return };
        let schema = fresh_schema("wf_twin_fenced");
        let (a, b) = (open(&url, &schema).await, open(&url, &schema).await);
        a_twin_cannot_write_to_what_the_other_took_over(a, b, "twin-pg-fenced").await;
        drop_schema(&url, &schema).await;
    }

    #[tokio::test]
    async fn postgres_a_twin_does_not_take_the_others_live_leases() {
        let Some(url) = postgres_url() else { return };
        let schema = fresh_schema("wf_twin_live");
        a_twin_does_not_take_the_others_live_leases(open(&url, &schema).await, "twin-pg-live", "twin-pg-probe").await;
        drop_schema(&url, &schema).await;
    }
}
