//! Starts in the future: delayed starts (`Start::delay`, `Start::at`) wait in the store, Pending
//! with their due time, and run once it has come on the runtime's clock, surviving restarts.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use workflow::prelude::*;
use workflow::store::{MemoryStore, Store};
use workflow::VirtualClock;

use crate::support::{sqlite_store, wait_for_a_claim_pass};

#[workflow]
async fn delayed_job(_ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n + 1)
}

async fn runtime(store: &Arc<dyn Store>, clock: &VirtualClock) -> Runtime {
    Runtime::builder()
        .store(store.clone())
        .clock(clock.clone())
        .poll_interval(Duration::from_millis(10))
        .workflow(delayed_job::Workflow)
        .build()
        .await
        .unwrap()
}

/// `.delay(10 s)` and `.at(t)` on a virtual clock: Pending with their due times, passed over by
/// a claim a millisecond before, run once the clock reaches them; a debounced start refuses a
/// delay. With `restart`, the runtime that started them is gone before they are due and a new
/// one (on a store reopened by `reopen`) runs them.
async fn delayed_starts_wait_for_their_time<F, Fut>(run: &str, store: Arc<dyn Store>, reopen: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    let clock = VirtualClock::new(5_000_000);
    let first = runtime(&store, &clock).await;
    let client = first.client();
    let later = delayed_job::start(&client, 1).id(format!("{run}-later")).delay(Duration::from_secs(10)).await.unwrap();
    let at = UNIX_EPOCH + Duration::from_millis(5_020_000);
    delayed_job::start(&client, 2).id(format!("{run}-at")).at(at).await.unwrap();
    let past = delayed_job::start(&client, 3).id(format!("{run}-past")).at(UNIX_EPOCH).await.unwrap();
    assert_eq!(past.result_timeout(Duration::from_secs(20)).await.unwrap(), 4, "{run}: a past time starts now");
    let status = later.status().await.unwrap();
    assert_eq!((status.status, status.wake_at), (RuntimeStatus::Pending, Some(5_010_000)), "{run}");
    let debounced = delayed_job::start(&client, 4).debounce("k", Duration::from_secs(1)).delay(Duration::from_secs(1));
    assert!(matches!(debounced.await, Err(workflow::Error::InvalidArgument(_))), "{run}");
    first.shutdown(Duration::from_secs(5)).await.unwrap();

    // Restarted (as after a crash or a deploy): the delayed starts are rows, not timers.
    let store = reopen().await;
    let second = runtime(&store, &clock).await;
    let client = second.client();
    clock.advance(Duration::from_millis(9_999));
    wait_for_a_claim_pass(&store, "delayed_job", &format!("{run}-probe-1"), "0").await;
    let status = client.status(&format!("{run}-later")).await.unwrap();
    assert_eq!(status.status, RuntimeStatus::Pending, "{run}: not due a millisecond before");
    clock.advance(Duration::from_millis(1));
    let later = Handle::<u32>::new(client.clone(), format!("{run}-later"));
    assert_eq!(later.result_timeout(Duration::from_secs(20)).await.unwrap(), 2, "{run}: due at 10 s");
    assert_eq!(client.status(&format!("{run}-at")).await.unwrap().status, RuntimeStatus::Pending, "{run}");
    clock.advance(Duration::from_secs(10));
    let at = Handle::<u32>::new(client.clone(), format!("{run}-at"));
    assert_eq!(at.result_timeout(Duration::from_secs(20)).await.unwrap(), 3, "{run}: due at its time");
    second.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn delayed_starts_wait_for_their_time_in_memory() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let same = store.clone();
    delayed_starts_wait_for_their_time("delay-memory", store, || async move { same }).await;
}

#[tokio::test]
async fn delayed_starts_wait_for_their_time_on_sqlite() {
    let (_dir, url, store) = sqlite_store().await;
    let reopen = || async move { Arc::new(workflow::SqliteStore::open(&url).await.unwrap()) as Arc<dyn Store> };
    delayed_starts_wait_for_their_time("delay-sqlite", store, reopen).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn delayed_starts_wait_for_their_time_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_delay");
    let open = |url: String, schema: String| async move {
        let options = workflow::PostgresOptions::new().schema(&schema);
        Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap()) as Arc<dyn Store>
    };
    let store = open(url.clone(), schema.clone()).await;
    delayed_starts_wait_for_their_time("delay-postgres", store, || open(url.clone(), schema.clone())).await;
    drop_schema(&url, &schema).await;
}
