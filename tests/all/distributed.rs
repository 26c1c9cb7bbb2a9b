//! Several workers on one PostgreSQL database: processes killed mid-run, leases taken over,
//! claims that never let two workers run the same step. Skipped, loudly, without DATABASE_URL;
//! failed without it under CI (see `support::postgres_url`).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use workflow::prelude::*;
use workflow::store::Store;
use workflow::{ActivityDispatch, PostgresOptions, PostgresStore, RecordStatus};

use crate::support::{bump, postgres_url, wait_until_within};

const ROLE_ENV: &str = "WORKFLOW_PG_ROLE";
const SCHEMA_ENV: &str = "WORKFLOW_PG_SCHEMA";
const LOG_ENV: &str = "WORKFLOW_PG_LOG";
const INSTANCES: u32 = 50;
const ITEMS: u32 = 10;

async fn open(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::open_with(url, PostgresOptions::new().schema(schema)).await.unwrap()
}

/// Drops a test's schema (through a plain connection: a store opened on the default schema would
/// migrate it).
async fn drop_schema(url: &str, schema: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await.unwrap();
    pool.close().await;
}

fn fresh_schema(prefix: &str) -> String {
    format!("{prefix}_{}", uuid_like())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Item {
    instance: u32,
    n: u32,
}

#[activity(retry(max_attempts = 5, first_interval = "50ms"))]
async fn work_item(ctx: ActivityContext, item: Item) -> Result<u64, ActivityError> {
    // Simulated work (the subject, not a wait): the kill lands mid-run, the workers overlap.
    tokio::time::sleep(Duration::from_millis(40)).await;
    if let Ok(log) = std::env::var(LOG_ENV) {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        // One write per line: two processes append to the same file.
        let line = format!("{} {} {}\n", ctx.instance_id(), ctx.seq(), std::process::id());
        file.write_all(line.as_bytes())?;
    } else {
        bump(ctx.instance_id(), &format!("seq {} by {}", ctx.seq(), ctx.worker_id()));
    }
    Ok(u64::from(item.instance) * 100 + u64::from(item.n))
}

#[workflow]
async fn spread(ctx: WorkflowContext, instance: u32) -> Result<u64, WorkflowError> {
    let items = (0..ITEMS).map(|n| Item { instance, n });
    Ok(work_item::fan_out(&ctx, items).max_parallel(3).await?.into_iter().sum())
}

fn expected(instance: u32) -> u64 {
    (0..ITEMS).map(|n| u64::from(instance) * 100 + u64::from(n)).sum()
}

fn worker_runtime(store: PostgresStore, worker: &str) -> workflow::RuntimeBuilder {
    Runtime::builder()
        .store(store)
        .worker_id(worker)
        .lease(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(200))
        .claim_batch(4)
        .workflow(spread::Workflow)
        .activity(work_item::Activity)
}

/// A child process's body: a worker that runs until killed, or a client that starts the
/// instances and prints their results.
#[tokio::test]
#[ignore = "run by `two_worker_processes_and_a_client_survive_a_kill` as a child process"]
async fn pg_child() {
    // Not a skip: without these the test runs as itself, not as a child process, and does nothing.
    let (Ok(role), Ok(schema), Ok(url)) =
        (std::env::var(ROLE_ENV), std::env::var(SCHEMA_ENV), std::env::var("DATABASE_URL"))
    else {
        return;
    };
    let store = open(&url, &schema).await;
    if role == "client" {
        let client = Client::new(store);
        for i in 0..INSTANCES {
            client.start_untyped("spread", i.to_string()).id(format!("dist-{i}")).await.unwrap();
        }
        for i in 0..INSTANCES {
            let output: u64 = client.result(&format!("dist-{i}"), Some(Duration::from_secs(120))).await.unwrap();
            println!("\nDIST-RESULT {i} {output}");
        }
        return;
    }
    // Shared dispatch: a fan-out's activities go through the task queue, so both processes run
    // steps of the same instance.
    let _runtime = worker_runtime(store, &format!("worker-{}", std::process::id()))
        .activity_dispatch(ActivityDispatch::Shared)
        .build()
        .await
        .unwrap();
    // Works until the parent kills it; the bound only keeps an orphaned child from living on.
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// A waiter in a process that does not run the instance (here: a client without a runtime, on
/// a store of its own) asks the store to signal the end, and gets the result; a waiter in the
/// process that runs it does not ask, so that finish sends no NOTIFY.
#[tokio::test]
async fn only_waiters_elsewhere_watch_an_instance() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("pgwatch");
    let worker_store = open(&url, &schema).await;
    let pool = worker_store.pool().clone();
    let runtime = worker_runtime(worker_store, "watch-worker").build().await.unwrap();
    let local = runtime.client();
    local.start_untyped("spread", "1").id("watch-local").await.unwrap();
    assert_eq!(local.result::<u64>("watch-local", Some(Duration::from_secs(60))).await.unwrap(), expected(1));

    let elsewhere = Client::new(open(&url, &schema).await);
    elsewhere.start_untyped("spread", "2").id("watch-remote").await.unwrap();
    let output: u64 = elsewhere.result("watch-remote", Some(Duration::from_secs(60))).await.unwrap();
    assert_eq!(output, expected(2));
    // Asked again once finished: read, not marked again (nothing to write).
    assert_eq!(elsewhere.result::<u64>("watch-local", Some(Duration::from_secs(5))).await.unwrap(), expected(1));

    let watched: Vec<(String, bool)> =
        sqlx::query_as("SELECT id, watched FROM instances ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(watched, [("watch-local".to_owned(), false), ("watch-remote".to_owned(), true)]);
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await.unwrap();
}

fn child(role: &str, url: &str, schema: &str, log: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["distributed::pg_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(SCHEMA_ENV, schema)
        .env(LOG_ENV, log)
        .env("DATABASE_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// (instance id, seq) -> the pids that ran it.
fn executions(log: &std::path::Path) -> HashMap<(String, u32), Vec<u32>> {
    let mut runs: HashMap<(String, u32), Vec<u32>> = HashMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let mut parts = line.split(' ');
        let (Some(id), Some(seq), Some(pid)) = (parts.next(), parts.next(), parts.next()) else { continue };
        // A line cut short by the SIGKILL is an attempt that was in flight: it did not finish.
        let (Ok(seq), Ok(pid)) = (seq.parse(), pid.parse()) else { continue };
        runs.entry((id.to_owned(), seq)).or_default().push(pid);
    }
    runs
}

#[tokio::test]
async fn two_worker_processes_and_a_client_survive_a_kill() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_dist");
    let store = open(&url, &schema).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("executions.log");
    let log_text = log.display().to_string();

    let mut a = child("worker", &url, &schema, &log_text);
    let mut b = child("worker", &url, &schema, &log_text);
    let client = child("client", &url, &schema, &log_text);
    let (a_pid, b_pid) = (a.id(), b.id());

    let total = (INSTANCES * ITEMS) as usize;
    wait_until_within("the workers to run a third of the steps", Duration::from_secs(120), || async {
        executions(&log).values().map(Vec::len).sum::<usize>() >= total / 3
    })
    .await;
    a.kill().unwrap(); // SIGKILL, midway
    a.wait().unwrap();
    // Every step whose record is committed now must never run again. Its runs so far are read
    // after its record: an attempt run twice before its record (a task lease that lapsed under
    // load, which at-least-once allows) is not a run after the commit.
    let mut committed = HashSet::new();
    for i in 0..INSTANCES {
        let id = format!("dist-{i}");
        for record in store.journal(&id, 0).await.unwrap() {
            if record.status == RecordStatus::Completed {
                committed.insert((id.clone(), record.seq));
            }
        }
    }
    let runs_at_commit = executions(&log);

    let output = client.wait_with_output().unwrap();
    b.kill().unwrap();
    b.wait().unwrap();
    assert!(output.status.success(), "the client failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let results: HashMap<u32, u64> = stdout
        .lines()
        .filter_map(|line| line.split_once("DIST-RESULT ").map(|(_, rest)| rest.trim().to_owned()))
        .map(|rest| {
            let (i, value) = rest.split_once(' ').unwrap();
            (i.parse().unwrap(), value.parse().unwrap())
        })
        .collect();
    assert_eq!(results.len(), INSTANCES as usize);
    for (i, value) in &results {
        assert_eq!(*value, expected(*i), "instance {i} has the wrong output");
    }

    let runs = executions(&log);
    assert!(!committed.is_empty() && committed.len() < total, "{} steps were committed at the kill", committed.len());
    for key in &committed {
        let before = runs_at_commit.get(key).map_or(0, Vec::len);
        assert!(before >= 1, "step {key:?} was committed before it ran");
        assert_eq!(
            runs[key].len(),
            before,
            "step {key:?} was committed before the kill and ran again: {:?}",
            runs[key]
        );
    }
    for i in 0..INSTANCES {
        for seq in 0..ITEMS {
            assert!(runs.contains_key(&(format!("dist-{i}"), seq)), "dist-{i} seq {seq} never ran");
        }
    }
    let by_pid = |pid: u32| runs.values().flatten().filter(|p| **p == pid).count();
    assert!(
        by_pid(a_pid) > 0 && by_pid(b_pid) > 0,
        "both workers must do work: a {} b {}",
        by_pid(a_pid),
        by_pid(b_pid)
    );
    assert!(by_pid(b_pid) > by_pid(a_pid) / 2, "b took over a's instances");
    // Activities, not only instances, spread: some instance had its steps run by both processes.
    let mixed = (0..INSTANCES)
        .filter(|i| {
            let pids: HashSet<u32> =
                (0..ITEMS).filter_map(|seq| runs.get(&(format!("dist-{i}"), seq))).flatten().copied().collect();
            pids.contains(&a_pid) && pids.contains(&b_pid)
        })
        .count();
    assert!(mixed > 0, "no instance had its fan-out run on both workers");
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn two_workers_racing_for_the_same_instances_never_run_a_step_twice() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_race");
    let first = worker_runtime(open(&url, &schema).await, "racer-a").build().await.unwrap();
    let second = worker_runtime(open(&url, &schema).await, "racer-b").build().await.unwrap();
    let client = Client::new(Arc::new(open(&url, &schema).await) as Arc<dyn Store>);
    let ids: Vec<String> = (0..20).map(|i| format!("race-{}-{i}", &schema["wf_race_".len()..])).collect();
    for (i, id) in ids.iter().enumerate() {
        client.start_untyped("spread", i.to_string()).id(id).await.unwrap();
    }
    let mut by_worker: HashMap<String, u32> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        let output: u64 = client.result(id, Some(Duration::from_secs(60))).await.unwrap();
        assert_eq!(output, expected(i as u32));
        let journal = client.journal(id).await.unwrap();
        assert_eq!(journal.len(), ITEMS as usize);
        for record in &journal {
            assert_eq!((record.status, record.attempt), (RecordStatus::Completed, 1));
            let ran: Vec<(String, u32)> = ["racer-a", "racer-b"]
                .iter()
                .map(|w| (w.to_string(), crate::support::count(id, &format!("seq {} by {w}", record.seq))))
                .filter(|(_, n)| *n > 0)
                .collect();
            assert_eq!(ran.len(), 1, "{id} seq {} ran on {ran:?}", record.seq);
            assert_eq!(ran[0].1, 1, "{id} seq {} ran {} times", record.seq, ran[0].1);
            *by_worker.entry(ran[0].0.clone()).or_default() += 1;
        }
    }
    assert_eq!(by_worker.values().sum::<u32>(), 20 * ITEMS);
    first.shutdown(Duration::from_secs(5)).await.unwrap();
    second.shutdown(Duration::from_secs(5)).await.unwrap();
    drop_schema(&url, &schema).await;
}
