//! W10 store growth: whether a store full of finished instances slows new work. On a fresh store,
//! ten rounds of W1 at 1,000 workflows (each 10 one-step activities, all started at once), so the
//! store grows to 10,000 instances and 100,000 steps; the row gives the first and the last round's
//! workflows/s. Twice: with the ids the client generates (UUIDv7, time-ordered), and with ids the
//! caller supplies at random (UUIDv4), which scatter every commit's inserts over the indexes.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use workflow::prelude::*;
use workflow::store::Store;
use workflow::{SqliteOptions, Synchronous};

use super::{BenchResult, ScaleRow};

const WORKFLOWS: u64 = 1_000;
const ROUNDS: usize = 10;

#[activity(retry(max_attempts = 1))]
async fn w10_step(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

#[workflow]
async fn w10_chain(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    let mut n = start;
    for _ in 0..10 {
        n = w10_step::call(&ctx, n).await?;
    }
    Ok(n)
}

/// Runs W10 on a fresh store of the kind named `name` (SQLite and PostgreSQL; other stores give
/// no row).
pub(super) async fn measure(name: &str, dir: &Path) -> BenchResult<Vec<ScaleRow>> {
    let mut rows = Vec::new();
    for random_ids in [false, true] {
        let tag = if random_ids { "v4" } else { "v7" };
        let Some((store, cleanup)) = fresh_store(name, dir, &format!("w10_{tag}")).await? else {
            return Ok(rows);
        };
        let rounds = rounds(store, random_ids).await;
        cleanup.await;
        let rounds = rounds?;
        let (first, last) = (rounds[0], rounds[ROUNDS - 1]);
        rows.push(ScaleRow {
            workload: "W10 store growth",
            store: name.to_owned(),
            measured: format!(
                "{}: {first:.0} wf/s in round 1, {last:.0} wf/s in round {ROUNDS} ({:.0}%)",
                if random_ids { "caller's random ids (UUIDv4)" } else { "generated ids (UUIDv7)" },
                last / first * 100.0
            ),
            beside: format!(
                "rounds of {WORKFLOWS} W1 workflows; all rounds: {}",
                rounds.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" ")
            ),
        });
    }
    Ok(rows)
}

/// Workflows/s of each round.
async fn rounds(store: Arc<dyn Store>, random_ids: bool) -> BenchResult<Vec<f64>> {
    let runtime = Runtime::builder()
        .store(store)
        .workflow(w10_chain::Workflow)
        .activity(w10_step::Activity)
        .max_concurrent_activities(1024)
        .build()
        .await?;
    let client = runtime.client();
    let mut rates = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let handles = futures::future::try_join_all((0..WORKFLOWS).map(|i| {
            let start = w10_chain::start(&client, i * 100);
            if random_ids {
                start.id(uuid::Uuid::new_v4().simple().to_string())
            } else {
                start
            }
        }))
        .await?;
        let outputs = futures::future::try_join_all(handles.iter().map(|h| h.result())).await?;
        rates.push(WORKFLOWS as f64 / started.elapsed().as_secs_f64());
        if !outputs.iter().enumerate().all(|(i, out)| *out == i as u64 * 100 + 10) {
            return Err("W10: a workflow returned the wrong output".into());
        }
    }
    runtime.shutdown(std::time::Duration::from_secs(5)).await?;
    Ok(rates)
}

pub(super) type Cleanup = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

pub(super) async fn fresh_store(name: &str, dir: &Path, tag: &str) -> BenchResult<Option<(Arc<dyn Store>, Cleanup)>> {
    match name {
        "sqlite" | "sqlite-normal" => {
            let path = dir.join(format!("w10-{name}-{tag}.db"));
            let url = format!("sqlite://{}", path.display());
            let synchronous = if name == "sqlite" { Synchronous::Full } else { Synchronous::Normal };
            let store = SqliteStore::open_with(&url, SqliteOptions::new().synchronous(synchronous)).await?;
            let cleanup: Cleanup = Box::pin(async move {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            });
            Ok(Some((Arc::new(store), cleanup)))
        }
        "postgres" => postgres(tag).await,
        _ => Ok(None),
    }
}

#[cfg(feature = "postgres")]
async fn postgres(tag: &str) -> BenchResult<Option<(Arc<dyn Store>, Cleanup)>> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        return Ok(None);
    };
    let schema = format!("wf_bench_{tag}_{}", std::process::id());
    let store = workflow::PostgresStore::open_with(&url, workflow::PostgresOptions::new().schema(&schema)).await?;
    let pool = store.pool().clone();
    let cleanup: Cleanup = Box::pin(async move {
        if let Err(error) = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await {
            eprintln!("could not drop the W10 schema {schema}: {error}");
        }
    });
    Ok(Some((Arc::new(store), cleanup)))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_tag: &str) -> BenchResult<Option<(Arc<dyn Store>, Cleanup)>> {
    Ok(None)
}
