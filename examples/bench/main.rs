//! The benchmark: the same workloads on every store, one table.
//!
//! `cargo run --release --example bench [-- --store memory|sqlite|sqlite-normal|postgres|all] [--scale]`
//! (PostgreSQL needs `--features postgres` and `DATABASE_URL`; it runs in a fresh schema.)
//!
//! - W1 chain: 200 workflows started at once, each 10 sequential no-op activities (input + 1);
//!   `W1 Client::new` is the same started and awaited through a client without a runtime (its
//!   share of the runtime client's figure in brackets). The two alternate for 7 rounds
//!   (`W1_ROUNDS`); each figure is the median.
//! - W2 fan-out: one workflow fans out 1,000 no-op activities and sums them.
//! - W3 latency: 100 one-step workflows one after another, start to result.
//! - commit: one durable one-row commit on the same store, 200 times (the disk's limit), two
//!   after each W3 workflow.
//!
//! `commits/step` is counted by the store on W1 (write transactions / completed steps), and
//! `W3 commits` the same way on W3 (write transactions per workflow, start to result).
//!
//! `--scale` adds a second table of the workloads that show whether costs stay flat as the work
//! grows (W4-W11, see `scale.rs`); they take minutes, so the default run leaves them out.

mod scale;

use std::sync::Arc;
use std::time::{Duration, Instant};

use workflow::prelude::*;
use workflow::store::Store;
use workflow::{SqliteOptions, Synchronous};

#[activity(retry(max_attempts = 1))]
async fn add_one(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

#[workflow]
async fn chain(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    let mut n = start;
    for _ in 0..10 {
        n = add_one::call(&ctx, n).await?;
    }
    Ok(n)
}

#[workflow]
async fn fan(ctx: WorkflowContext, count: u64) -> Result<u64, WorkflowError> {
    Ok(add_one::fan_out(&ctx, 0..count).await?.into_iter().sum())
}

#[workflow]
async fn one_step(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    add_one::call(&ctx, n).await
}

struct Row {
    store: String,
    w1_wall: Duration,
    w1_steps_per_s: f64,
    w1_detached_wall: Duration,
    commits_per_step: f64,
    w2_wall: Duration,
    w3_median: Duration,
    w3_p95: Duration,
    w3_commits: f64,
    commit_median: Duration,
    commit_rate: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// W1's rounds of each client (`W1_ROUNDS` overrides it).
fn w1_rounds() -> usize {
    std::env::var("W1_ROUNDS").ok().and_then(|n| n.parse().ok()).filter(|n| *n > 0).unwrap_or(7)
}

/// One W1 round through `client`: 200 chains started at once, every result awaited.
async fn w1_round(client: &Client) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let handles = futures::future::try_join_all((0..200u64).map(|i| chain::start(client, i * 100))).await?;
    let outputs = futures::future::try_join_all(handles.iter().map(|h| h.result())).await?;
    let wall = started.elapsed();
    assert!(outputs.iter().enumerate().all(|(i, out)| *out == i as u64 * 100 + 10));
    Ok(wall)
}

fn median(mut walls: Vec<Duration>) -> Duration {
    walls.sort();
    walls[walls.len() / 2]
}

async fn measure(name: &str, store: Arc<dyn Store>) -> Result<Row, Box<dyn std::error::Error>> {
    let runtime = Runtime::builder()
        .store(store.clone())
        .workflow(chain::Workflow)
        .workflow(fan::Workflow)
        .workflow(one_step::Workflow)
        .activity(add_one::Activity)
        .max_concurrent_activities(1024)
        .build()
        .await?;
    let client = runtime.client();

    // W1, and W1 again started and awaited through a client without a runtime (as a web process
    // that runs no workers would), the runtime above doing the work. One round lasts ~40 ms, so
    // the two alternate for several rounds and each column is the median.
    let detached = Client::new(store.clone());
    let (mut w1_walls, mut detached_walls) = (Vec::new(), Vec::new());
    let (mut w1_commits, mut w1_steps) = (0u64, 0.0);
    for _ in 0..w1_rounds() {
        let before = store.stats();
        w1_walls.push(w1_round(&client).await?);
        w1_commits += store.stats().commits - before.commits;
        w1_steps += 200.0 * 10.0;
        detached_walls.push(w1_round(&detached).await?);
    }
    let (w1_wall, w1_detached_wall) = (median(w1_walls), median(detached_walls));

    // W2
    let started = Instant::now();
    let sum = fan::start(&client, 1000).await?.result().await?;
    let w2_wall = started.elapsed();
    assert_eq!(sum, (1..=1000).sum::<u64>());

    // W3, and the reference: one durable one-row commit. Two commits follow each workflow, so
    // that both medians come from the same minutes of this noisy machine.
    let before_w3 = store.stats();
    let mut latencies = Vec::with_capacity(100);
    let mut commits = Vec::with_capacity(200);
    for i in 0..100u64 {
        let started = Instant::now();
        let out = one_step::start(&client, i).await?.result().await?;
        latencies.push(started.elapsed());
        assert_eq!(out, i + 1);
        for _ in 0..2 {
            let started = Instant::now();
            store.probe_commit().await?;
            commits.push(started.elapsed());
        }
    }
    latencies.sort();
    commits.sort();
    let w3_commits = (store.stats().commits - before_w3.commits - commits.len() as u64) as f64 / 100.0;
    let commit_median = percentile(&commits, 0.5);
    runtime.shutdown(Duration::from_secs(5)).await?;
    Ok(Row {
        store: name.to_owned(),
        w1_wall,
        w1_steps_per_s: 2000.0 / w1_wall.as_secs_f64(),
        w1_detached_wall,
        commits_per_step: w1_commits as f64 / w1_steps,
        w2_wall,
        w3_median: percentile(&latencies, 0.5),
        w3_p95: percentile(&latencies, 0.95),
        w3_commits,
        commit_median,
        commit_rate: 1.0 / commit_median.as_secs_f64().max(1e-9),
    })
}

/// Undoes what a store left behind once it has been measured.
type Cleanup = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// A store in a fresh schema, and the cleanup that drops the schema.
#[cfg(feature = "postgres")]
async fn postgres_store() -> Result<Option<(Arc<dyn Store>, Cleanup)>, Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("skipping postgres: DATABASE_URL is not set");
        return Ok(None);
    };
    let schema = format!("wf_bench_{}", std::process::id());
    let options = workflow::PostgresOptions::new().schema(&schema);
    let store = Arc::new(workflow::PostgresStore::open_with(&url, options).await?);
    let pool = store.pool().clone();
    let cleanup: Cleanup = Box::pin(async move {
        if let Err(error) = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await {
            eprintln!("could not drop the bench schema {schema}: {error}");
        }
    });
    Ok(Some((store, cleanup)))
}

#[cfg(not(feature = "postgres"))]
async fn postgres_store() -> Result<Option<(Arc<dyn Store>, Cleanup)>, Box<dyn std::error::Error>> {
    eprintln!("skipping postgres: build with `--features postgres`");
    Ok(None)
}

/// `a` in units of `b`, or "-" when `b` is too small to divide by (the memory store's commit).
fn ratio(a: Duration, b: Duration) -> String {
    if b < Duration::from_micros(10) {
        "-".to_owned()
    } else {
        format!("{:.1}x", a.as_secs_f64() / b.as_secs_f64())
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(child) = scale::child_mode(&args) {
        return child.await;
    }
    let which = args.iter().position(|a| a == "--store").and_then(|i| args.get(i + 1)).map_or("all", String::as_str);
    let with_scale = args.iter().any(|a| a == "--scale" || a == "--scale-only");
    let mut scale_rows = Vec::new();
    let dir = std::env::temp_dir().join(format!("workflow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    let mut cleanups: Vec<Cleanup> = Vec::new();
    for store in ["memory", "sqlite", "sqlite-normal", "postgres"] {
        if which != "all" && which != store {
            continue;
        }
        let backend: Arc<dyn Store> = match store {
            "memory" => Arc::new(MemoryStore::new()),
            "sqlite" => {
                let url = format!("sqlite://{}", dir.join("full.db").display());
                Arc::new(SqliteStore::open(&url).await?)
            }
            "sqlite-normal" => {
                let url = format!("sqlite://{}", dir.join("normal.db").display());
                let options = SqliteOptions::new().synchronous(Synchronous::Normal);
                Arc::new(SqliteStore::open_with(&url, options).await?)
            }
            _ => match postgres_store().await? {
                Some((store, cleanup)) => {
                    cleanups.push(cleanup);
                    store
                }
                None => continue,
            },
        };
        eprintln!("measuring {store} ...");
        rows.push(measure(store, backend.clone()).await?);
        if with_scale {
            scale_rows.extend(scale::measure(store, backend, &dir).await?);
        }
    }
    println!(
        "| store | W1 wall | W1 workflows/s | W1 Client::new wf/s | W1 steps/s | commits/step (W1) | W2 fan-out 1000 | W3 median | W3 p95 | W3 commits | 1-row commit | W3 / commit | commits/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} ({:.0}%) | {:.0} | {:.3} | {} | {} | {} | {:.2} | {} | {} | {:.0} |",
            row.store,
            ms(row.w1_wall),
            200.0 / row.w1_wall.as_secs_f64(),
            200.0 / row.w1_detached_wall.as_secs_f64(),
            100.0 * row.w1_wall.as_secs_f64() / row.w1_detached_wall.as_secs_f64(),
            row.w1_steps_per_s,
            row.commits_per_step,
            ms(row.w2_wall),
            ms(row.w3_median),
            ms(row.w3_p95),
            row.w3_commits,
            ms(row.commit_median),
            ratio(row.w3_median, row.commit_median),
            row.commit_rate
        );
    }
    if with_scale {
        scale::print(&scale_rows);
    }
    for cleanup in cleanups {
        cleanup.await;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
