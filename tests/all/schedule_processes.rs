//! A schedule across real worker processes on PostgreSQL: three processes declare the same
//! schedule, every second, and for more than ten seconds each tick starts exactly one instance,
//! run once, with none missing. The workers are this same test binary, running the ignored test
//! `schedule_processes::schedule_worker`; the instances record their runs in a ledger table.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::OnceCell;
use workflow::prelude::*;
use workflow::store::Store;
use workflow::{CatchUp, Schedule};

use crate::support::{drop_schema, fresh_schema, postgres_url, wait_until_within};

const URL_ENV: &str = "WORKFLOW_SCHEDULE_URL";
const SCHEMA_ENV: &str = "WORKFLOW_SCHEDULE_SCHEMA";

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

/// Records that the instance ran, and in which process.
#[activity]
async fn record_run(ctx: ActivityContext) -> Result<(), ActivityError> {
    let (pool, schema) = ledger().await?;
    sqlx::query(&format!("INSERT INTO \"{schema}\".runs VALUES ($1, $2)"))
        .bind(ctx.instance_id())
        .bind(std::process::id() as i32)
        .execute(pool)
        .await
        .map_err(|e| ActivityError::new(e.to_string()))?;
    Ok(())
}

#[workflow]
async fn every_second(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    record_run::call(&ctx).await
}

/// The schedule every process declares.
fn schedule() -> Schedule {
    Schedule::of::<every_second::Workflow>("each-second", "* * * * * *", &()).catch_up(CatchUp::All { max: 100 })
}

/// A worker process's body: declares the schedule and runs until it is killed.
#[tokio::test]
#[ignore = "run by `three_processes_fire_each_tick_once_on_postgres` as a child process"]
async fn schedule_worker() {
    // Not a skip: without these the test runs as itself, not as a child process, and does nothing.
    let (Ok(url), Ok(schema)) = (std::env::var(URL_ENV), std::env::var(SCHEMA_ENV)) else { return };
    let options = workflow::PostgresOptions::new().schema(&schema);
    let store: Arc<dyn Store> = Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap());
    let runtime = Runtime::builder()
        .store(store)
        .workflow(every_second::Workflow)
        .activity(record_run::Activity)
        .poll_interval(Duration::from_millis(100))
        .schedule(schedule())
        .build()
        .await
        .unwrap();
    // Works until the parent kills it; the bound only keeps an orphaned child from living on.
    tokio::time::sleep(Duration::from_secs(600)).await;
    drop(runtime);
}

/// The worker processes, killed when dropped.
struct Workers(Vec<std::process::Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in &mut self.0 {
            let _ = worker.kill();
            let _ = worker.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_fire_each_tick_once_on_postgres() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_sched_processes");
    let options = workflow::PostgresOptions::new().schema(&schema);
    let store: Arc<dyn Store> = Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap());
    let pool = PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE TABLE \"{schema}\".runs (instance_id TEXT NOT NULL, pid INT NOT NULL)"))
        .execute(&pool)
        .await
        .unwrap();
    let workers = Workers(
        (0..3)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["schedule_processes::schedule_worker", "--exact", "--ignored", "--test-threads=1"])
                    .env(URL_ENV, &url)
                    .env(SCHEMA_ENV, &schema)
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let runs_sql = format!("SELECT instance_id FROM \"{schema}\".runs");
    let (pool_ref, sql) = (&pool, runs_sql.as_str());
    wait_until_within("twelve ticks to run", Duration::from_secs(120), || async move {
        sqlx::query_scalar::<_, String>(sql).fetch_all(pool_ref).await.unwrap().len() >= 12
    })
    .await;
    drop(workers);

    // Every tick between the first and the last one that started an instance has exactly one,
    // named after its tick; every instance that ran, ran once.
    let filter = workflow::ListFilter { workflow: Some("every_second".into()), ..Default::default() };
    let instances = Client::new(store.clone()).list(&filter, 1_000, None).await.unwrap().instances;
    let mut ticks: Vec<i64> = instances
        .iter()
        .map(|status| {
            let tick = status.instance_id.strip_prefix("each-second-").expect("an id derived from the tick");
            tick.parse().expect("the tick's milliseconds")
        })
        .collect();
    ticks.sort_unstable();
    assert!(ticks.len() >= 12, "{ticks:?}");
    assert!(
        ticks.windows(2).all(|pair| pair[1] - pair[0] == 1_000),
        "one instance per second, none missing: {ticks:?}"
    );
    assert!(ticks.iter().all(|tick| tick % 1_000 == 0), "ticks on whole seconds: {ticks:?}");
    let mut ran: Vec<String> = sqlx::query_scalar(&runs_sql).fetch_all(&pool).await.unwrap();
    ran.sort();
    let before = ran.len();
    ran.dedup();
    assert_eq!(ran.len(), before, "no instance ran twice");
    let pids: std::collections::HashSet<i32> = sqlx::query_scalar(&format!("SELECT pid FROM \"{schema}\".runs"))
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(!pids.is_empty());
    pool.close().await;
    drop(store);
    drop_schema(&url, &schema).await;
}
