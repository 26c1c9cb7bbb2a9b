//! Activity rate limits and concurrency caps across real worker processes on PostgreSQL: three
//! processes run the calls, a ledger the activity bodies keep in the database (not the engine)
//! says when each started and how many ran at once, and one process is killed with SIGKILL while
//! it holds slots under a cap.
//!
//! The workers are this same test binary, running the ignored test `flow_processes::cap_worker`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::OnceCell;
use workflow::prelude::*;
use workflow::store::Store;

use crate::support::{drop_schema, fresh_schema, postgres_url, wait_until_within};

const URL_ENV: &str = "WORKFLOW_CAP_URL";
const SCHEMA_ENV: &str = "WORKFLOW_CAP_SCHEMA";
/// Every worker's lease: only liveness can explain a takeover within the test's time.
const LEASE: Duration = Duration::from_secs(60);
/// Generous bounds for a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(120);

/// One call: which run, which tenant, which item.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Call {
    run: String,
    tenant: String,
    n: u32,
}

/// The ledger's connection, in whichever process the activity runs.
async fn ledger() -> Result<&'static (PgPool, String), ActivityError> {
    static LEDGER: OnceCell<(PgPool, String)> = OnceCell::const_new();
    LEDGER
        .get_or_try_init(|| async {
            let url = std::env::var(URL_ENV).map_err(|_| ActivityError::non_retryable("no ledger URL"))?;
            let schema = std::env::var(SCHEMA_ENV).map_err(|_| ActivityError::non_retryable("no ledger schema"))?;
            let pool = PgPool::connect(&url).await.map_err(|e| ActivityError::new(e.to_string()))?;
            Ok((pool, schema))
        })
        .await
}

/// Whether process `pid` is alive (not gone, not a zombie waiting to be reaped).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// Counts the call in: under one lock, adds its row, counts the rows of live processes (all,
/// and of its tenant) and raises the peaks.
async fn count_in(call: &Call) -> Result<(), ActivityError> {
    let (pool, schema) = ledger().await?;
    let error = |e: sqlx::Error| ActivityError::new(e.to_string());
    let mut tx = pool.begin().await.map_err(error)?;
    sqlx::query("SELECT pg_advisory_xact_lock(7771)").execute(&mut *tx).await.map_err(error)?;
    sqlx::query(&format!("INSERT INTO \"{schema}\".flights VALUES ($1, $2, $3, $4)"))
        .bind(std::process::id() as i32)
        .bind(&call.run)
        .bind(&call.tenant)
        .bind(call.n as i32)
        .execute(&mut *tx)
        .await
        .map_err(error)?;
    let rows: Vec<(i32, String)> =
        sqlx::query_as(&format!("SELECT pid, tenant FROM \"{schema}\".flights WHERE run = $1"))
            .bind(&call.run)
            .fetch_all(&mut *tx)
            .await
            .map_err(error)?;
    let live: Vec<&String> = rows.iter().filter(|(pid, _)| alive(*pid)).map(|(_, tenant)| tenant).collect();
    let mine = live.iter().filter(|tenant| **tenant == &call.tenant).count();
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\".peaks VALUES ($1, '', $2, 1), ($1, $3, $4, 1) ON CONFLICT (run, tenant) \
         DO UPDATE SET most = GREATEST(peaks.most, EXCLUDED.most), started = peaks.started + 1"
    ))
    .bind(&call.run)
    .bind(live.len() as i32)
    .bind(&call.tenant)
    .bind(mine as i32)
    .execute(&mut *tx)
    .await
    .map_err(error)?;
    tx.commit().await.map_err(error)
}

async fn count_out(call: &Call) -> Result<(), ActivityError> {
    let (pool, schema) = ledger().await?;
    sqlx::query(&format!("DELETE FROM \"{schema}\".flights WHERE pid = $1 AND run = $2 AND tenant = $3 AND n = $4"))
        .bind(std::process::id() as i32)
        .bind(&call.run)
        .bind(&call.tenant)
        .bind(call.n as i32)
        .execute(pool)
        .await
        .map_err(|e| ActivityError::new(e.to_string()))?;
    Ok(())
}

async fn work(call: Call) -> Result<u32, ActivityError> {
    count_in(&call).await?;
    tokio::time::sleep(Duration::from_millis(40)).await;
    count_out(&call).await?;
    Ok(call.n)
}

/// At most four at once across every process.
#[activity(concurrency = 4)]
async fn limited(_ctx: ActivityContext, call: Call) -> Result<u32, ActivityError> {
    work(call).await
}

/// At most two of one tenant at once across every process.
#[activity(concurrency(limit = 2, key = |call: &Call| call.tenant.clone()))]
async fn limited_per_tenant(_ctx: ActivityContext, call: Call) -> Result<u32, ActivityError> {
    work(call).await
}

/// At most 50 starts in any second across every process: records when it started (first thing,
/// before any other work) in the ledger.
#[activity(rate = "50/1s")]
async fn paced(_ctx: ActivityContext, call: Call) -> Result<u32, ActivityError> {
    let at = workflow::Clock::now_ms(&workflow::SystemClock);
    let (pool, schema) = ledger().await?;
    sqlx::query(&format!("INSERT INTO \"{schema}\".paced VALUES ($1, $2)"))
        .bind(&call.run)
        .bind(at)
        .execute(pool)
        .await
        .map_err(|e| ActivityError::new(e.to_string()))?;
    Ok(call.n)
}

/// Runs every call at once through the activity `which` names; returns the sum of the outputs.
#[workflow]
async fn spread(ctx: WorkflowContext, (which, calls): (String, Vec<Call>)) -> Result<u32, WorkflowError> {
    let outputs = match which.as_str() {
        "global" => limited::fan_out(&ctx, calls).await?,
        "tenant" => limited_per_tenant::fan_out(&ctx, calls).await?,
        _ => paced::fan_out(&ctx, calls).await?,
    };
    Ok(outputs.into_iter().sum())
}

async fn open(url: &str, schema: &str) -> Arc<dyn Store> {
    let options = workflow::PostgresOptions::new().schema(schema);
    Arc::new(workflow::PostgresStore::open_with(url, options).await.unwrap())
}

/// A worker process's body: runs the workflow and both activities until it is killed.
#[tokio::test]
#[ignore = "run by the flow-control process tests as a child process"]
async fn cap_worker() {
    // Not a skip: without these the test runs as itself, not as a child process, and does nothing.
    let (Ok(url), Ok(schema)) = (std::env::var(URL_ENV), std::env::var(SCHEMA_ENV)) else { return };
    let runtime = Runtime::builder()
        .store(open(&url, &schema).await)
        .workflow(spread::Workflow)
        .activity(limited::Activity)
        .activity(limited_per_tenant::Activity)
        .activity(paced::Activity)
        .lease(LEASE)
        .poll_interval(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    // Works until the parent kills it; the bound only keeps an orphaned child from living on.
    tokio::time::sleep(Duration::from_secs(600)).await;
    drop(runtime);
}

fn worker_process(url: &str, schema: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["flow_processes::cap_worker", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(URL_ENV, url)
        .env(SCHEMA_ENV, schema)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The worker processes, killed when dropped: a failing test must not leave them running (they
/// hold the test's output open).
struct Workers(Vec<std::process::Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in &mut self.0 {
            let _ = worker.kill();
            let _ = worker.wait();
        }
    }
}

/// The ledger's peak for (run, tenant) and how many calls of it started ('' for all tenants).
async fn peak(pool: &PgPool, schema: &str, run: &str, tenant: &str) -> (i32, i32) {
    sqlx::query_as(&format!("SELECT most, started FROM \"{schema}\".peaks WHERE run = $1 AND tenant = $2"))
        .bind(run)
        .bind(tenant)
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or((0, 0))
}

/// Starts `instances` instances of 20 calls each for `run` and returns their ids and sums.
async fn start_run(client: &Client, run: &str, which: &str, tenants: u32, instances: u32) -> Vec<(String, u32)> {
    let mut started = Vec::new();
    for i in 0..instances {
        let calls: Vec<Call> = (0..20)
            .map(|n| Call { run: run.to_owned(), tenant: format!("t{}", (i * 20 + n) % tenants), n: i * 20 + n })
            .collect();
        let sum = calls.iter().map(|call| call.n).sum();
        let id = format!("{run}-{i}");
        spread::start(client, (which.to_owned(), calls)).id(&id).await.unwrap();
        started.push((id, sum));
    }
    started
}

async fn results(client: &Client, started: &[(String, u32)]) {
    for (id, sum) in started {
        let output: u32 = client.result(id, Some(LIMIT)).await.unwrap();
        assert_eq!(output, *sum, "{id}");
    }
}

/// Three worker processes on PostgreSQL share 260 calls of an activity limited to 50 starts a
/// second: no 800 ms window (the period less a margin for the time from claim to body) sees more
/// than 50 start, and they start at 50/s within 10%. Then 200 calls of an activity capped at 4: the ledger
/// never sees more than 4 running and sees 4; after 40 have started, one process is killed with
/// SIGKILL while it holds slots, and the two left take its instances and tasks over (through
/// liveness; the lease is a minute) and finish every call, the cap still held. Then 200 calls
/// capped at 2 per tenant (5 tenants): never more than 2 of a tenant, 2 of each at some point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_hold_activity_caps_on_postgres() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_cap_processes");
    let store = open(&url, &schema).await;
    let pool = PgPool::connect(&url).await.unwrap();
    for table in [
        "flights (pid INT NOT NULL, run TEXT NOT NULL, tenant TEXT NOT NULL, n INT NOT NULL)",
        "peaks (run TEXT NOT NULL, tenant TEXT NOT NULL, most INT NOT NULL, started INT NOT NULL, \
         PRIMARY KEY (run, tenant))",
        "paced (run TEXT NOT NULL, at BIGINT NOT NULL)",
    ] {
        sqlx::query(&format!("CREATE TABLE \"{schema}\".{table}")).execute(&pool).await.unwrap();
    }
    let mut workers = Workers((0..3).map(|_| worker_process(&url, &schema)).collect());
    let client = Client::new(store.clone());

    // 250 calls at 50 a second: about 5 s of backlog.
    let paced_run = start_run(&client, "paced", "paced", 1, 13).await;
    results(&client, &paced_run).await;
    let mut starts: Vec<i64> = sqlx::query_scalar(&format!("SELECT at FROM \"{schema}\".paced WHERE run = 'paced'"))
        .fetch_all(&pool)
        .await
        .unwrap();
    starts.sort_unstable();
    assert_eq!(starts.len(), 260, "every call started once");
    // The engine admits by the time of each claim; a body records its start a little after its
    // claim (by tens of milliseconds when the machine is loaded), so windows here are 200 ms
    // short of the period.
    for (i, first) in starts.iter().enumerate() {
        let within = starts[i..].iter().take_while(|at| **at < first + 800).count();
        assert!(within <= 50, "{within} calls started within 800 ms of {first}: {starts:?}");
    }
    // Throughput: the starts before the last burst over the time from the first start to it
    // (at 50/s, 260 calls start in bursts of 50 a second apart, the last burst of 10 at 5 s).
    let last = starts[starts.len() - 1];
    let before_last = starts.iter().filter(|at| **at < last - 100).count();
    let rate = before_last as f64 * 1_000.0 / (last - starts[0]) as f64;
    assert!((45.0..=55.0).contains(&rate), "{rate:.1} calls/s: not within 10% of the limit of 50/s");

    let global = start_run(&client, "global", "global", 1, 10).await;
    let (pool_ref, schema_ref) = (&pool, schema.as_str());
    wait_until_within(
        "40 calls to start",
        LIMIT,
        || async move { peak(pool_ref, schema_ref, "global", "").await.1 >= 40 },
    )
    .await;
    let mut doomed = workers.0.remove(0);
    doomed.kill().unwrap(); // SIGKILL
    doomed.wait().unwrap();
    results(&client, &global).await;
    let (most, started) = peak(&pool, &schema, "global", "").await;
    assert_eq!(most, 4, "at most four at once across the processes, and four at some point");
    assert!(started >= 200, "every call started ({started}, more when the killed process's were run again)");

    let tenants = start_run(&client, "tenants", "tenant", 5, 10).await;
    results(&client, &tenants).await;
    for tenant in 0..5 {
        let (most, started) = peak(&pool, &schema, "tenants", &format!("t{tenant}")).await;
        assert_eq!((most, started), (2, 40), "tenant t{tenant}: at most two at once, two at some point, 40 calls");
    }

    drop(workers);
    pool.close().await;
    drop(store);
    drop_schema(&url, &schema).await;
}
