//! Starts a client without a runtime assigns to a live worker at their creation (PostgreSQL):
//! created owned by the worker and run on its signal with no claim; one whose signal is lost run
//! by the worker's reconciliation; none left with a worker that died; a worker's flow-controlled
//! workflows never assigned. Skipped, loudly, without DATABASE_URL; failed without it under CI.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use workflow::prelude::*;
use workflow::store::{AssignLease, InstanceRecord, Lease, Store, WriteOp};
use workflow::{PostgresOptions, PostgresStore};

use crate::support::{postgres_url, wait_until_within};

const ROLE_ENV: &str = "WORKFLOW_ASSIGNED_ROLE";
const SCHEMA_ENV: &str = "WORKFLOW_ASSIGNED_SCHEMA";

#[workflow]
async fn doubled(_ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    Ok(n * 2)
}

/// Released one by one by the test that holds its workers' slots with it.
static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

#[activity(retry(max_attempts = 1))]
async fn pass_gate(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    GATE.acquire().await.map_err(|_| ActivityError::non_retryable("gate closed"))?.forget();
    Ok(n)
}

#[workflow]
async fn gated(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    pass_gate::call(&ctx, n).await
}

#[workflow(concurrency = 2)]
async fn capped_doubled(_ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    Ok(n * 2)
}

async fn open(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::open_with(url, PostgresOptions::new().schema(schema)).await.unwrap()
}

fn fresh_schema(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}_{nanos:x}{:x}", std::process::id())
}

/// Logs into `seen` every instance inserted (with its owner) and every claim (an update that gives
/// an unowned instance an owner), by trigger, so a test sees how each start reached its worker.
async fn log_claims(pool: &sqlx::PgPool) {
    for statement in [
        "CREATE TABLE seen (kind TEXT NOT NULL, id TEXT NOT NULL, owner TEXT)",
        "CREATE FUNCTION log_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO seen VALUES ('insert', NEW.id, NEW.owner); RETURN NEW; END $$",
        "CREATE FUNCTION log_claim() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO seen VALUES ('claim', NEW.id, NEW.owner); RETURN NEW; END $$",
        "CREATE TRIGGER inserted AFTER INSERT ON instances FOR EACH ROW EXECUTE FUNCTION log_insert()",
        "CREATE TRIGGER claimed AFTER UPDATE ON instances FOR EACH ROW \
         WHEN (OLD.owner IS NULL AND NEW.owner IS NOT NULL) EXECUTE FUNCTION log_claim()",
    ] {
        sqlx::query(statement).execute(pool).await.unwrap();
    }
}

async fn seen(pool: &sqlx::PgPool, kind: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT id, owner FROM seen WHERE kind = $1 ORDER BY id").bind(kind).fetch_all(pool).await.unwrap()
}

async fn owners(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT owner FROM workers ORDER BY owner").fetch_all(pool).await.unwrap()
}

/// The workflows the (one) registered worker takes assigned starts for.
async fn takes(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT unnest(takes) FROM workers").fetch_all(pool).await.unwrap()
}

/// `count` starts of `doubled` through `client`, of inputs 0 to `count` - 1.
async fn start_doubled(client: &Client, count: u64) -> Vec<Handle<u64>> {
    futures::future::try_join_all((0..count).map(|n| doubled::start(client, n))).await.unwrap()
}

/// Each of `handles` (started by [`start_doubled`]) ends with its input doubled, within `limit`.
async fn expect_doubled(handles: &[Handle<u64>], limit: Duration) {
    for (n, handle) in handles.iter().enumerate() {
        assert_eq!(handle.result_timeout(limit).await.unwrap(), n as u64 * 2);
    }
}

async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(pool).await.unwrap();
}

/// A client without a runtime creates each start owned by the live worker that takes its
/// workflow, which runs it with no claim; a flow-controlled workflow's starts wait for claims.
#[tokio::test]
async fn a_client_hands_its_starts_to_a_live_worker() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_assign");
    let worker_store = open(&url, &schema).await;
    let pool = worker_store.pool().clone();
    log_claims(&pool).await;
    let runtime = Runtime::builder()
        .store(worker_store)
        .workflow(doubled::Workflow)
        .workflow(capped_doubled::Workflow)
        .build()
        .await
        .unwrap();
    let [worker] = owners(&pool).await.try_into().unwrap();
    assert_eq!(takes(&pool).await, ["doubled"], "a capped workflow's starts are never assigned");

    let client = Client::new(open(&url, &schema).await);
    let handles = start_doubled(&client, 20).await;
    let capped = futures::future::try_join_all((0..4u64).map(|n| capped_doubled::start(&client, n))).await.unwrap();
    expect_doubled(&handles, Duration::from_secs(30)).await;
    expect_doubled(&capped, Duration::from_secs(30)).await;

    let inserted = seen(&pool, "insert").await;
    let claimed = seen(&pool, "claim").await;
    let ids = |handles: &[Handle<u64>]| handles.iter().map(|h| h.instance_id().to_owned()).collect::<Vec<_>>();
    for id in ids(&handles) {
        assert!(inserted.contains(&(id.clone(), Some(worker.clone()))), "{id} created owned by the worker");
        assert!(!claimed.iter().any(|(claimed, _)| *claimed == id), "{id} was claimed: {claimed:?}");
    }
    for id in ids(&capped) {
        assert!(inserted.contains(&(id.clone(), None)), "{id} created for a claim");
        assert!(claimed.iter().any(|(claimed, _)| *claimed == id), "{id} was claimed");
    }
    let watched: i64 =
        sqlx::query_scalar("SELECT count(*) FROM instances WHERE watched").fetch_one(&pool).await.unwrap();
    assert_eq!(watched, 24, "a start its creator does not run is watched from its creation");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(takes(&pool).await, Vec::<String>::new(), "a worker shut down takes no more starts");
    drop_schema(&pool, &schema).await;
}

/// The store assigns a start only to a registered worker: one assigned to a worker it does not
/// know is created as the write says (unowned, for a claim), and one it does know is created
/// owned, Running and watched.
#[tokio::test]
async fn a_start_is_assigned_only_to_a_registered_worker() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_assign_reg");
    let store = open(&url, &schema).await;
    let pool = store.pool().clone();
    let mark = store.register_worker("known#1", &["doubled".to_owned()]).await.unwrap().unwrap();
    let takers = store.start_takers().await.unwrap().unwrap();
    assert_eq!(takers.len(), 1);
    assert_eq!(
        (takers[0].owner.as_str(), takers[0].workflows.as_slice()),
        ("known#1", ["doubled".to_owned()].as_slice())
    );
    let mut signals = store.wake_signals().unwrap();

    let create = |id: &str| WriteOp::CreateInstance(InstanceRecord::pending(id, "doubled", "1", 1_000));
    let assign = |id: &str, owner: &str| {
        Lease::Assign(AssignLease { instance_id: id.into(), owner: owner.into(), lease_until: 99_000, now: 1_000 })
    };
    let ops = [create("to-known"), create("to-unknown")];
    let (_, taken) =
        store.write_leasing(&ops, &[assign("to-known", "known#1"), assign("to-unknown", "gone#2")]).await.unwrap();
    assert_eq!(taken, [true, false]);
    let known = store.instance("to-known").await.unwrap().unwrap();
    assert_eq!(
        (known.owner.as_deref(), known.lease_until, known.status, known.updated_at),
        (Some("known#1"), Some(99_000), RuntimeStatus::Running, 1_000)
    );
    let unknown = store.instance("to-unknown").await.unwrap().unwrap();
    assert_eq!((unknown.owner, unknown.status), (None, RuntimeStatus::Pending));
    let watched: Vec<String> =
        sqlx::query_scalar("SELECT id FROM instances WHERE watched ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(watched, ["to-known", "to-unknown"]);
    assert_eq!(store.held_instances("known#1").await.unwrap(), ["to-known"]);

    // The worker hears of its start; the claims hear of the other.
    let mut heard = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while heard.len() < 2 && Instant::now() < deadline {
        if let Ok(Ok(signal)) = tokio::time::timeout(Duration::from_millis(100), signals.recv()).await {
            heard.push(signal);
        }
    }
    assert!(heard.contains(&workflow::store::WakeSignal::Runnable), "{heard:?}");
    let assigned = workflow::store::WakeSignal::Assigned { owner: "known#1".into(), ids: vec!["to-known".into()] };
    assert!(heard.contains(&assigned), "{heard:?}");

    // An existing id is not assigned; nor is a start the batch also names, a delayed one, or one
    // of a workflow its worker does not take.
    let delayed = InstanceRecord { wake_at: Some(50_000), ..InstanceRecord::pending("delayed", "doubled", "1", 1_000) };
    let ops = [
        create("to-known"),
        create("named"),
        WriteOp::SetStatus { id: "named".into(), status: RuntimeStatus::Terminated, updated_at: 1_000 },
        WriteOp::CreateInstance(delayed),
        WriteOp::CreateInstance(InstanceRecord::pending("other", "capped_doubled", "1", 1_000)),
    ];
    let leases = [
        assign("to-known", "known#1"),
        assign("named", "known#1"),
        assign("delayed", "known#1"),
        assign("other", "known#1"),
    ];
    let (outcome, taken) = store.write_leasing(&ops, &leases).await.unwrap();
    assert_eq!(taken, [false, false, false, false]);
    let other = store.instance("other").await.unwrap().unwrap();
    assert_eq!((other.owner, other.status), (None, RuntimeStatus::Pending));
    assert_eq!(outcome.existing, ["to-known"]);
    drop(mark);
    drop_schema(&pool, &schema).await;
}

/// A start owned by a worker that never heard of it (its signal lost) is not renewed for good:
/// the worker's reconciliation finds it and runs it, long before its lease could lapse.
#[tokio::test]
async fn a_worker_runs_a_start_whose_signal_it_missed() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_assign_lost");
    let worker_store = open(&url, &schema).await;
    let pool = worker_store.pool().clone();
    let runtime = Runtime::builder()
        .store(worker_store)
        .lease(Duration::from_millis(600))
        .workflow(doubled::Workflow)
        .build()
        .await
        .unwrap();
    let [worker] = owners(&pool).await.try_into().unwrap();
    // Created owned by the worker with no assignment (so no signal), its lease an hour away.
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let record = InstanceRecord {
        owner: Some(worker),
        lease_until: Some(now + 3_600_000),
        status: RuntimeStatus::Running,
        ..InstanceRecord::pending("stranded", "doubled", "21", now)
    };
    open(&url, &schema).await.write(&[WriteOp::CreateInstance(record)]).await.unwrap();
    let client = Client::new(open(&url, &schema).await);
    let output: u64 = client.result("stranded", Some(Duration::from_secs(20))).await.unwrap();
    assert_eq!(output, 42);
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
    drop_schema(&pool, &schema).await;
}

/// A child process's body: a worker that takes `doubled`'s starts and runs until killed.
#[tokio::test]
#[ignore = "run by `starts_assigned_to_a_killed_worker_run_elsewhere_at_once` as a child process"]
async fn assigned_child() {
    // Not a skip: without these the test runs as itself, not as a child process, and does nothing.
    let (Ok(_), Ok(schema), Ok(url)) =
        (std::env::var(ROLE_ENV), std::env::var(SCHEMA_ENV), std::env::var("DATABASE_URL"))
    else {
        return;
    };
    let _runtime =
        Runtime::builder().store(open(&url, &schema).await).workflow(doubled::Workflow).build().await.unwrap();
    println!("\nCHILD-READY");
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// Starts assigned to a worker whose process was SIGKILLed (the client's list of takers still
/// names it) run on a live worker within about a second, not after the 15 s lease.
#[tokio::test]
async fn starts_assigned_to_a_killed_worker_run_elsewhere_at_once() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_assign_kill");
    let store = open(&url, &schema).await;
    let pool = store.pool().clone();
    log_claims(&pool).await;
    drop(store);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["assigned::assigned_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, "worker")
        .env(SCHEMA_ENV, &schema)
        .env("DATABASE_URL", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_until_within("the child worker to register", Duration::from_secs(60), || async {
        owners(&pool).await.len() == 1
    })
    .await;
    let [dead] = owners(&pool).await.try_into().unwrap();
    let live = Runtime::builder().store(open(&url, &schema).await).workflow(doubled::Workflow).build().await.unwrap();
    let client = Client::new(open(&url, &schema).await);
    // The client reads both workers as takers.
    wait_until_within("the client to offer starts to both workers", Duration::from_secs(30), || async {
        let handle = doubled::start(&client, 1).await.unwrap();
        assert_eq!(handle.result().await.unwrap(), 2);
        let inserted = seen(&pool, "insert").await;
        inserted.iter().any(|(_, owner)| owner.as_deref() == Some(dead.as_str()))
    })
    .await;

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = Instant::now();
    let handles = start_doubled(&client, 20).await;
    expect_doubled(&handles, Duration::from_secs(10)).await;
    let elapsed = killed.elapsed();
    let to_dead = (seen(&pool, "insert").await.iter())
        .filter(|(id, owner)| {
            owner.as_deref() == Some(dead.as_str()) && handles.iter().any(|h| h.instance_id() == id.as_str())
        })
        .count();
    println!("20 starts after the kill ({to_dead} assigned to the dead worker) finished in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "well before the 15 s lease: {elapsed:?}");
    live.shutdown(Duration::from_secs(5)).await.unwrap();
    drop_schema(&pool, &schema).await;
}

/// A worker whose instance slots are all taken withdraws its offer, so clients stop assigning it
/// starts it would only hand back, and offers again once it has room.
#[tokio::test]
async fn a_full_worker_stops_taking_starts_until_it_has_room() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_assign_offer");
    let worker_store = open(&url, &schema).await;
    let pool = worker_store.pool().clone();
    let runtime = Runtime::builder()
        .store(worker_store)
        .max_concurrent_instances(2)
        .workflow(gated::Workflow)
        .activity(pass_gate::Activity)
        .build()
        .await
        .unwrap();
    assert_eq!(takes(&pool).await, ["gated"]);
    let client = Client::new(open(&url, &schema).await);
    let held = futures::future::try_join_all((0..2u64).map(|n| gated::start(&client, n))).await.unwrap();
    wait_until_within("the full worker to withdraw its offer", Duration::from_secs(20), || async {
        takes(&pool).await.is_empty()
    })
    .await;
    GATE.add_permits(2);
    for (n, handle) in held.iter().enumerate() {
        assert_eq!(handle.result_timeout(Duration::from_secs(20)).await.unwrap(), n as u64);
    }
    wait_until_within("the worker to offer its starts again", Duration::from_secs(20), || async {
        takes(&pool).await == ["gated"]
    })
    .await;
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
    drop_schema(&pool, &schema).await;
}

/// A worker with no free slot for a start assigned to it hands it back to the claims: every start
/// runs once, and all finish.
#[tokio::test]
async fn a_full_worker_hands_assigned_starts_back() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_assign_full");
    let worker_store = open(&url, &schema).await;
    let pool = worker_store.pool().clone();
    let runtime = Runtime::builder()
        .store(worker_store)
        .max_concurrent_instances(2)
        .workflow(doubled::Workflow)
        .build()
        .await
        .unwrap();
    let client = Client::new(Arc::new(open(&url, &schema).await) as Arc<dyn Store>);
    let handles = start_doubled(&client, 40).await;
    expect_doubled(&handles, Duration::from_secs(30)).await;
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
    drop_schema(&pool, &schema).await;
}
