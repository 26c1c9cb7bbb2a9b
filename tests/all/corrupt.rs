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

/// Raw access to a store's database, to damage rows behind its back and read them back.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// The columns of an instance row a claim sets, read raw (the store cannot read a damaged row).
#[derive(Debug, PartialEq, Eq)]
struct Claimed {
    status: String,
    owner: Option<String>,
    lease_until: Option<i64>,
    wake_at: Option<i64>,
    error: Option<String>,
}

impl Raw {
    /// Sets the instance's generation to -1, which no record can hold.
    async fn damage(&self, id: &str) {
        let statement = "UPDATE instances SET generation = -1 WHERE id = ";
        let damaged = match self {
            Raw::Sqlite(pool) => {
                sqlx::query(&format!("{statement}?")).bind(id).execute(pool).await.unwrap().rows_affected()
            }
            #[cfg(feature = "postgres")]
            Raw::Postgres(pool) => {
                sqlx::query(&format!("{statement}$1")).bind(id).execute(pool).await.unwrap().rows_affected()
            }
        };
        assert_eq!(damaged, 1);
    }

    async fn claimed(&self, id: &str) -> Claimed {
        let select = "SELECT status, owner, lease_until, wake_at, error FROM instances WHERE id = ";
        let (status, owner, lease_until, wake_at, error) = match self {
            Raw::Sqlite(pool) => sqlx::query_as(&format!("{select}?")).bind(id).fetch_one(pool).await.unwrap(),
            #[cfg(feature = "postgres")]
            Raw::Postgres(pool) => sqlx::query_as(&format!("{select}$1")).bind(id).fetch_one(pool).await.unwrap(),
        };
        Claimed { status, owner, lease_until, wake_at, error }
    }
}

/// Waits until the damaged row `id` is set aside (unowned, its wake-up after the clock's now) and
/// returns how far ahead its wake-up is.
async fn set_aside_for(raw: &Raw, clock: &VirtualClock, id: &str) -> i64 {
    wait_for_value(&format!("{id} to be set aside with a later wake-up"), || async {
        let row = raw.claimed(id).await;
        let now = clock.now_ms();
        match (row.owner, row.lease_until, row.wake_at) {
            (None, None, Some(wake_at)) if wake_at > now => Some(wake_at - now),
            _ => None,
        }
    })
    .await
}

/// A claim that takes a damaged row (generation -1) with healthy ones returns the healthy ones,
/// which complete; the damaged one is set aside with a growing wait, not claimed before it, and
/// failed at the fifth failed decode, holding no lease.
async fn a_damaged_row_in_a_claim_is_set_aside(store: Arc<dyn Store>, raw: Raw, prefix: &str) {
    let client = Client::new(store.clone());
    let bad = format!("{prefix}-bad");
    client.start_untyped("damaged_flow", "null").id(&bad).await.unwrap();
    let good: Vec<String> = (0..3).map(|n| format!("{prefix}-good-{n}")).collect();
    for id in &good {
        client.start_untyped("damaged_flow", "null").id(id).await.unwrap();
    }
    raw.damage(&bad).await;
    let clock = VirtualClock::starting_now();
    let rt = runtime(&store, &clock).await;
    for id in &good {
        assert_eq!(rt.client().result::<u32>(id, Some(Duration::from_secs(20))).await.unwrap(), 1, "{id}");
    }

    let first = set_aside_for(&raw, &clock, &bad).await;
    let before = raw.claimed(&bad).await;
    wait_for_a_claim_pass(&store, "damaged_flow", &format!("{prefix}-probe"), "null").await;
    assert_eq!(raw.claimed(&bad).await, before, "claimed again before its wake-up");
    let mut waits = vec![first];
    clock.advance(Duration::from_millis(first as u64));
    for _ in 0..3 {
        let wait = set_aside_for(&raw, &clock, &bad).await;
        waits.push(wait);
        clock.advance(Duration::from_millis(wait as u64));
    }
    assert_eq!(waits, [1_000, 4_000, 16_000, 64_000]);
    // Between a claim and its setting aside the row reads Running (the claim makes a start
    // Running; setting it aside makes it Pending again): only a status past both is its end.
    let failed = wait_for_value("the damaged instance to fail", || async {
        Some(raw.claimed(&bad).await).filter(|row| !matches!(row.status.as_str(), "Pending" | "Running"))
    })
    .await;
    assert_eq!(
        (failed.status.as_str(), failed.owner, failed.lease_until, failed.wake_at),
        ("Failed", None, None, None)
    );
    let failure = workflow::FailureDetails::parse(failed.error.as_deref().unwrap_or_default());
    assert_eq!(failure.error_type, "CorruptRow");
    assert!(failure.message.contains(&bad) && failure.message.contains("generation"), "{}", failure.message);
    rt.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn sqlite_a_damaged_row_in_a_claim_is_set_aside_and_the_others_run() {
    let (_dir, url, store) = sqlite_store().await;
    let raw = SqliteStore::open(&url).await.unwrap();
    a_damaged_row_in_a_claim_is_set_aside(store, Raw::Sqlite(raw.pool().clone()), "claim-sqlite").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_a_damaged_row_in_a_claim_is_set_aside_and_the_others_run() {
    let Some(url) = crate::support::postgres_url() else { return };
    let schema = crate::support::fresh_schema("wf_damaged");
    let store =
        workflow::PostgresStore::open_with(&url, workflow::PostgresOptions::new().schema(&schema)).await.unwrap();
    let raw = Raw::Postgres(store.pool().clone());
    a_damaged_row_in_a_claim_is_set_aside(Arc::new(store), raw, "claim-pg").await;
    crate::support::drop_schema(&url, &schema).await;
}

impl Raw {
    /// Sets the attempt of the task (`id`, 0, `seq`) to -1, which no task can hold.
    async fn damage_task(&self, id: &str, seq: i64) {
        let statement = "UPDATE activity_tasks SET attempt = -1 WHERE generation = 0 AND ";
        let damaged = match self {
            Raw::Sqlite(pool) => sqlx::query(&format!("{statement}instance_id = ? AND seq = ?"))
                .bind(id)
                .bind(seq)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected(),
            #[cfg(feature = "postgres")]
            Raw::Postgres(pool) => sqlx::query(&format!("{statement}instance_id = $1 AND seq = $2"))
                .bind(id)
                .bind(seq)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected(),
        };
        assert_eq!(damaged, 1);
    }

    /// The owner and visibility of the task (`id`, 0, `seq`).
    async fn task(&self, id: &str, seq: i64) -> (Option<String>, i64) {
        let select = "SELECT owner, visible_at FROM activity_tasks WHERE generation = 0 AND ";
        match self {
            Raw::Sqlite(pool) => sqlx::query_as(&format!("{select}instance_id = ? AND seq = ?"))
                .bind(id)
                .bind(seq)
                .fetch_one(pool)
                .await
                .unwrap(),
            #[cfg(feature = "postgres")]
            Raw::Postgres(pool) => sqlx::query_as(&format!("{select}instance_id = $1 AND seq = $2"))
                .bind(id)
                .bind(seq)
                .fetch_one(pool)
                .await
                .unwrap(),
        }
    }
}

/// A task claim that takes a damaged task row with healthy ones returns the healthy ones; the
/// damaged one is left unowned and visible again only later, with a growing wait, so it neither
/// strands the others nor is claimed in a hot loop.
async fn a_damaged_task_in_a_claim_is_set_aside(store: Arc<dyn Store>, raw: Raw) {
    use workflow::store::conformance::{enqueue, task};
    let names = vec!["act".to_owned()];
    for seq in 0..3 {
        store.write(&[enqueue(task("tasks-of", 0, seq, "act", 1, 10))]).await.unwrap();
    }
    raw.damage_task("tasks-of", 1).await;
    let now = 100;
    let claimed = store.claim_tasks("w#1", &names, now, now + 60_000, 10).await.unwrap();
    let seqs: Vec<u32> = claimed.iter().map(|task| task.seq).collect();
    assert_eq!(seqs, [0, 2], "the healthy tasks are claimed");
    assert_eq!(raw.task("tasks-of", 1).await, (None, now + 1_000), "set aside for 1 s, unowned");
    assert!(store.claim_tasks("w#1", &names, now, now + 60_000, 10).await.unwrap().is_empty());
    let later = now + 1_000;
    assert!(store.claim_tasks("w#1", &names, later, later + 60_000, 10).await.unwrap().is_empty());
    assert_eq!(raw.task("tasks-of", 1).await, (None, later + 4_000), "then for 4 s");
}

#[tokio::test]
async fn sqlite_a_damaged_task_in_a_claim_is_set_aside() {
    let (_dir, url, store) = sqlite_store().await;
    let raw = SqliteStore::open(&url).await.unwrap();
    a_damaged_task_in_a_claim_is_set_aside(store, Raw::Sqlite(raw.pool().clone())).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_a_damaged_task_in_a_claim_is_set_aside() {
    let Some(url) = crate::support::postgres_url() else { return };
    let schema = crate::support::fresh_schema("wf_damaged_task");
    let store =
        workflow::PostgresStore::open_with(&url, workflow::PostgresOptions::new().schema(&schema)).await.unwrap();
    let raw = Raw::Postgres(store.pool().clone());
    a_damaged_task_in_a_claim_is_set_aside(Arc::new(store), raw).await;
    crate::support::drop_schema(&url, &schema).await;
}
