//! Failover with real processes: a worker process killed with SIGKILL while it holds instances
//! (mid-activity) or queued activity tasks, and a live worker that takes them over through the
//! store's liveness marks, long before the dead worker's leases (60 s here) could lapse. On SQLite
//! (a file) and PostgreSQL.
//!
//! The child is this same test binary, running the ignored test `takeover::takeover_child`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use workflow::prelude::*;
use workflow::store::Store;
use workflow::ActivityDispatch;

use crate::support::wait_until_within;

const ROLE_ENV: &str = "WORKFLOW_TAKEOVER_ROLE";
const URL_ENV: &str = "WORKFLOW_TAKEOVER_URL";
const SCHEMA_ENV: &str = "WORKFLOW_TAKEOVER_SCHEMA";
const LOG_ENV: &str = "WORKFLOW_TAKEOVER_LOG";
const PREFIX_ENV: &str = "WORKFLOW_TAKEOVER_PREFIX";

/// Every worker's lease: only liveness can explain a takeover well before it.
const LEASE: Duration = Duration::from_secs(60);
/// How long the takeover may take at most in these tests (a fraction of a second in the bench;
/// generous here for a loaded machine, and still half the lease).
const TAKEOVER_LIMIT: Duration = Duration::from_secs(30);
/// How long a child process may take to get going (it starts a whole test binary).
const CHILD_LIMIT: Duration = Duration::from_secs(60);
const COUNT: u32 = 6;

/// Doubles `n`; in the child process, starts and then never ends (it is killed meanwhile).
#[activity]
async fn held_step(ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    if let Ok(log) = std::env::var(LOG_ENV) {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        file.write_all(format!("{} {}\n", ctx.instance_id(), std::process::id()).as_bytes())?;
        std::future::pending::<()>().await;
    }
    Ok(n * 2)
}

#[workflow]
async fn held(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(held_step::call(&ctx, n).await? + 1)
}

async fn open(url: &str, schema: &str) -> Arc<dyn Store> {
    if url.starts_with("sqlite:") {
        return Arc::new(SqliteStore::open(url).await.unwrap());
    }
    #[cfg(feature = "postgres")]
    {
        let options = workflow::PostgresOptions::new().schema(schema);
        Arc::new(workflow::PostgresStore::open_with(url, options).await.unwrap())
    }
    #[cfg(not(feature = "postgres"))]
    panic!("a PostgreSQL URL without the postgres feature ({schema})")
}

/// A worker with a 60 s lease; `workflows` and `activities` say what it registers.
async fn worker(store: Arc<dyn Store>, workflows: bool, activities: bool, dispatch: ActivityDispatch) -> Runtime {
    let mut builder = Runtime::builder()
        .store(store)
        .lease(LEASE)
        .poll_interval(Duration::from_millis(100))
        .activity_dispatch(dispatch);
    if workflows {
        builder = builder.workflow(held::Workflow);
    }
    if activities {
        builder = builder.activity(held_step::Activity);
    }
    builder.build().await.unwrap()
}

/// The child process's body: `instances` runs the workflow and its activities and starts the
/// instances itself; `tasks` runs queued activity attempts only.
#[tokio::test]
#[ignore = "run by the takeover tests as a child process"]
async fn takeover_child() {
    // Not a skip: without these the test runs as itself, not as a child process, and does nothing.
    let (Ok(role), Ok(url), Ok(schema), Ok(prefix)) =
        (std::env::var(ROLE_ENV), std::env::var(URL_ENV), std::env::var(SCHEMA_ENV), std::env::var(PREFIX_ENV))
    else {
        return;
    };
    let store = open(&url, &schema).await;
    let runtime = if role == "instances" {
        let runtime = worker(store, true, true, ActivityDispatch::Local).await;
        for n in 0..COUNT {
            held::start(&runtime.client(), n).id(format!("{prefix}-{n}")).await.unwrap();
        }
        runtime
    } else {
        worker(store, false, true, ActivityDispatch::Local).await
    };
    // Works until the parent kills it; the bound only keeps an orphaned child from living on.
    tokio::time::sleep(Duration::from_secs(600)).await;
    drop(runtime);
}

fn child(role: &str, url: &str, schema: &str, log: &str, prefix: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["takeover::takeover_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(URL_ENV, url)
        .env(SCHEMA_ENV, schema)
        .env(LOG_ENV, log)
        .env(PREFIX_ENV, prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn started(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().lines().count()
}

/// Waits until the child has started all `COUNT` activity attempts (and so holds them), then
/// kills it with SIGKILL; returns when it was killed.
async fn kill_once_all_started(mut child: std::process::Child, log: &std::path::Path) -> Instant {
    wait_until_within("the child to start every activity attempt", CHILD_LIMIT, || {
        assert!(child.try_wait().unwrap().is_none(), "the child exited early");
        async move { started(log) >= COUNT as usize }
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    child.wait().unwrap();
    killed
}

/// Waits for every instance's result through `client`, and checks it.
async fn results(client: &Client, prefix: &str) {
    for n in 0..COUNT {
        let output: u32 = client.result(&format!("{prefix}-{n}"), Some(TAKEOVER_LIMIT)).await.unwrap();
        assert_eq!(output, n * 2 + 1);
    }
}

/// A worker process holding instances mid-activity is killed; a live worker (here, already
/// running before the kill) finishes them long before their leases could lapse.
async fn instances_are_taken_over(url: &str, schema: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("started.log");
    let store = open(url, schema).await;
    let prefix = "takeover-inst";
    let doomed = child("instances", url, schema, &log.display().to_string(), prefix);
    let survivor = worker(store.clone(), true, true, ActivityDispatch::Local).await;
    let killed = kill_once_all_started(doomed, &log).await;
    results(&survivor.client(), prefix).await;
    let took = killed.elapsed();
    assert!(took < LEASE / 2, "taken over after {took:?}: only a lapsed lease explains that");
    for n in 0..COUNT {
        let record = store.instance(&format!("{prefix}-{n}")).await.unwrap().unwrap();
        assert_eq!(record.status, RuntimeStatus::Completed);
    }
    survivor.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A worker process holding queued activity tasks (claimed from a live owner's instances) is
/// killed; another worker runs them long before their leases could lapse, and the live owner
/// finishes its instances.
async fn tasks_are_taken_over(url: &str, schema: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("started.log");
    let store = open(url, schema).await;
    let prefix = "takeover-task";
    let owner = worker(store.clone(), true, false, ActivityDispatch::Shared).await;
    let doomed = child("tasks", url, schema, &log.display().to_string(), prefix);
    for n in 0..COUNT {
        held::start(&owner.client(), n).id(format!("{prefix}-{n}")).await.unwrap();
    }
    let killed = kill_once_all_started(doomed, &log).await;
    let executor = worker(store.clone(), false, true, ActivityDispatch::Local).await;
    results(&owner.client(), prefix).await;
    let took = killed.elapsed();
    assert!(took < LEASE / 2, "taken over after {took:?}: only a lapsed lease explains that");
    executor.shutdown(Duration::from_secs(5)).await.unwrap();
    owner.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_workers_instances_are_taken_over_before_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("takeover.db").display());
    instances_are_taken_over(&url, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_workers_tasks_are_taken_over_before_their_lease() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
    tasks_are_taken_over(&url, "").await;
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use crate::support::postgres_url;

    fn fresh_schema(prefix: &str) -> String {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        format!("{prefix}_{nanos:x}_{}", std::process::id())
    }

    async fn drop_schema(url: &str, schema: &str) {
        // A plain connection: a store opened here would migrate the default schema.
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await.unwrap();
        pool.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_killed_workers_instances_are_taken_over_before_its_lease() {
        let Some(url) = postgres_url() else { return };
        let schema = fresh_schema("wf_takeover");
        instances_are_taken_over(&url, &schema).await;
        drop_schema(&url, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_killed_workers_tasks_are_taken_over_before_their_lease() {
        let Some(url) = postgres_url() else { return };
        let schema = fresh_schema("wf_takeover_tasks");
        tasks_are_taken_over(&url, &schema).await;
        drop_schema(&url, &schema).await;
    }
}
