//! Rows damaged behind the store's back (raw SQL here) cost the instance they belong to, not the
//! worker: the other instances run on, and the damaged one is neither claimed again in a hot loop
//! nor held for good; after a bounded number of tries it fails with an error naming the row.

use std::sync::Arc;
use std::time::Duration;

use workflow::prelude::*;
use workflow::store::Store;
use workflow::Clock;

use crate::support::{sqlite_store, wait_for_a_claim_pass, wait_for_value};

#[activity]
async fn plain_step(_ctx: ActivityContext) -> Result<u32, ActivityError> {
    Ok(1)
}

#[workflow]
async fn damaged_flow(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    plain_step::call(&ctx).await
}

/// A runtime on `clock` that runs `damaged_flow`.
async fn runtime(store: &Arc<dyn Store>, clock: &VirtualClock) -> Runtime {
    Runtime::builder()
        .store(store.clone())
        .clock(clock.clone())
        .poll_interval(Duration::from_millis(20))
        .workflow(damaged_flow::Workflow)
        .activity(plain_step::Activity)
        .build()
        .await
        .unwrap()
}

/// Waits until `id` is handed back (unowned, its wake-up after the clock's now) and returns how
/// far ahead its wake-up is.
async fn handed_back_for(store: &Arc<dyn Store>, clock: &VirtualClock, id: &str) -> i64 {
    wait_for_value(&format!("{id} to be handed back with a later wake-up"), || async {
        let record = store.instance(id).await.unwrap().unwrap();
        let now = clock.now_ms();
        match (record.owner, record.wake_at) {
            (None, Some(wake_at)) if wake_at > now => Some(wake_at - now),
            _ => None,
        }
    })
    .await
}

#[tokio::test]
async fn an_unreadable_journal_backs_off_then_fails_its_instance_only() {
    let (_dir, url, store) = sqlite_store().await;
    let raw = SqliteStore::open(&url).await.unwrap();
    let client = Client::new(store.clone());
    let (bad, good) = ("journal-bad", "journal-good");
    client.start_untyped("damaged_flow", "null").id(bad).await.unwrap();
    client.start_untyped("damaged_flow", "null").id(good).await.unwrap();
    // A step of a kind this engine does not know: the journal reads as `Corrupt`.
    sqlx::query(
        "INSERT INTO journal (instance_id, generation, seq, kind, name, status, input, payload, attempt, \
         recorded_at) VALUES (?, 0, 0, 'teleport', 'plain_step', 'Completed', 'null', '1', 1, 0)",
    )
    .bind(bad)
    .execute(raw.pool())
    .await
    .unwrap();
    let clock = VirtualClock::starting_now();
    let rt = runtime(&store, &clock).await;
    assert_eq!(rt.client().result::<u32>(good, Some(Duration::from_secs(20))).await.unwrap(), 1);

    // Handed back with a wake-up that backs off, and not claimed before it (a claim pass passes it
    // over), until the fifth unreadable read fails it.
    let first = handed_back_for(&store, &clock, bad).await;
    let before = store.instance(bad).await.unwrap().unwrap();
    wait_for_a_claim_pass(&store, "damaged_flow", "journal-probe", "null").await;
    let after = store.instance(bad).await.unwrap().unwrap();
    assert_eq!((after.owner, after.wake_at), (None, before.wake_at), "claimed again before its wake-up");
    let mut waits = vec![first];
    clock.advance(Duration::from_millis(first as u64));
    for _ in 0..3 {
        let wait = handed_back_for(&store, &clock, bad).await;
        waits.push(wait);
        clock.advance(Duration::from_millis(wait as u64));
    }
    assert_eq!(waits, [1_000, 4_000, 16_000, 64_000]);
    let status = wait_for_value("the instance to fail", || async {
        Some(client.status(bad).await.unwrap()).filter(|status| status.status.is_terminal())
    })
    .await;
    assert_eq!(status.status, RuntimeStatus::Failed);
    let failure = status.failure.unwrap();
    assert_eq!(failure.error_type, "CorruptJournal");
    assert!(failure.message.contains("teleport") && failure.message.contains(bad), "{}", failure.message);
    let record = store.instance(bad).await.unwrap().unwrap();
    assert_eq!((record.owner, record.lease_until), (None, None), "a failed instance holds no lease");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM journal WHERE instance_id = ?")
        .bind(bad)
        .fetch_one(raw.pool())
        .await
        .unwrap();
    assert_eq!(kept, 1, "the damaged row is kept for a person to look at");
    rt.shutdown(Duration::from_secs(5)).await.unwrap();
}
