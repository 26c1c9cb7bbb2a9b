//! W9 backlog behind a limit: whether a long queue costs rows, not RAM, and whether it slows the
//! admission of what waits. 7,000 and then 100,000 instances of a workflow capped at 16 are
//! queued in the store (written directly, no runtime), then a runtime admits them: the rate of
//! 1,000 completions after the first 5,000 (a warm-up that lets the store settle after the bulk
//! write; 2,000 and 95,000 still wait then) and the runtime process's RSS growth meanwhile.
//! A second row does the same with activity tasks queued behind a cap of 2 per key over 10 keys
//! (written straight into the task queue, as workflows' calls would be).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use workflow::prelude::*;
use workflow::store::{InstanceRecord, Store, TaskRecord, WriteOp};

use super::w6_memory::rss;
use super::{BenchResult, ScaleRow};

/// Instances admitted (their bodies ran) in this process.
static ADMITTED: AtomicU64 = AtomicU64::new(0);
const WARM_UP: u64 = 5_000;
const MEASURED: u64 = 1_000;

#[workflow(concurrency = 16)]
async fn w9_capped(_ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    ADMITTED.fetch_add(1, Ordering::SeqCst);
    Ok(n)
}

/// Task attempts admitted (their bodies ran) in this process.
static TASKS_ADMITTED: AtomicU64 = AtomicU64::new(0);

#[activity(concurrency(limit = 2, key = |n: &u64| (n % 10).to_string()))]
async fn w9_keyed_step(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    TASKS_ADMITTED.fetch_add(1, Ordering::SeqCst);
    Ok(n)
}

/// Queues `count` instances, admits 6,000: (admitted/s of the last 1,000, RSS growth in bytes).
async fn admit(store: &Arc<dyn Store>, count: u64) -> BenchResult<(f64, i64)> {
    let now = workflow::Clock::now_ms(&workflow::SystemClock);
    for chunk in (0..count).collect::<Vec<_>>().chunks(2_000) {
        let ops: Vec<WriteOp> = chunk
            .iter()
            .map(|i| {
                let id = format!("w9-{count}-{i}");
                WriteOp::CreateInstance(InstanceRecord::pending(id, "w9_capped", i.to_string(), now + *i as i64))
            })
            .collect();
        store.write(&ops).await?;
    }
    let before = rss()?;
    ADMITTED.store(0, Ordering::SeqCst);
    let runtime = Runtime::builder()
        .store(store.clone())
        .workflow(w9_capped::Workflow)
        .poll_interval(Duration::from_millis(50))
        .build()
        .await?;
    admission(&ADMITTED, before, runtime).await
}

/// Queues `count` tasks of `w9_keyed_step` (keys `i % 10`), admits 6,000 with a runtime that
/// runs only the activity: (admitted/s of the last 1,000, RSS growth in bytes).
async fn admit_tasks(store: &Arc<dyn Store>, count: u64) -> BenchResult<(f64, i64)> {
    let now = workflow::Clock::now_ms(&workflow::SystemClock);
    for chunk in (0..count).collect::<Vec<_>>().chunks(2_000) {
        let ops: Vec<WriteOp> = chunk
            .iter()
            .map(|i| {
                WriteOp::EnqueueTask(TaskRecord {
                    instance_id: format!("w9t-{count}-{i}"),
                    generation: 0,
                    seq: 0,
                    name: "w9_keyed_step".to_owned(),
                    input: i.to_string(),
                    concurrency_key: (i % 10).to_string(),
                    priority: 0,
                    attempt: 1,
                    start_to_close_ms: None,
                    heartbeat_timeout_ms: None,
                    visible_at: now + *i as i64 / 100,
                    owner: None,
                    lease_until: None,
                    outcome: None,
                    trace_context: None,
                })
            })
            .collect();
        store.write(&ops).await?;
    }
    let before = rss()?;
    TASKS_ADMITTED.store(0, Ordering::SeqCst);
    let runtime = Runtime::builder()
        .store(store.clone())
        .activity(w9_keyed_step::Activity)
        .poll_interval(Duration::from_millis(50))
        .build()
        .await?;
    admission(&TASKS_ADMITTED, before, runtime).await
}

/// Waits while `runtime` admits `WARM_UP` and then `MEASURED` more (counted by `admitted`), and
/// shuts it down: (admitted/s of the measured ones, RSS growth over `before` in bytes).
async fn admission(admitted: &AtomicU64, before: i64, runtime: Runtime) -> BenchResult<(f64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut grown = 0;
    let mut started = None;
    while admitted.load(Ordering::SeqCst) < WARM_UP + MEASURED {
        if Instant::now() > deadline {
            return Err("W9: the backlog was not admitted within 5 minutes".into());
        }
        if started.is_none() && admitted.load(Ordering::SeqCst) >= WARM_UP {
            started = Some(Instant::now());
        }
        grown = grown.max(rss()? - before);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = MEASURED as f64 / started.map_or(Duration::ZERO, |at| at.elapsed()).as_secs_f64().max(1e-6);
    grown = grown.max(rss()? - before);
    runtime.shutdown(Duration::from_secs(5)).await?;
    Ok((rate, grown))
}

/// The W9 row for one store.
pub(crate) async fn measure(name: &str, store: Arc<dyn Store>) -> BenchResult<Vec<ScaleRow>> {
    let (small_rate, small_rss) = admit(&store, 7_000).await?;
    let (large_rate, large_rss) = admit(&store, 100_000).await?;
    let (small_tasks, small_tasks_rss) = admit_tasks(&store, 7_000).await?;
    let (large_tasks, large_tasks_rss) = admit_tasks(&store, 100_000).await?;
    let mb = |bytes: i64| bytes as f64 / 1e6;
    let tasks = ScaleRow {
        workload: "W9 tasks behind an activity cap of 2 per key x 10 keys, admitted/s (after 5,000)",
        store: name.to_owned(),
        measured: format!(
            "100k queued: {large_tasks:.0}/s, RSS +{:.1} MB ({:.0}% of the rate with 7k)",
            mb(large_tasks_rss),
            100.0 * large_tasks / small_tasks
        ),
        beside: format!("7k queued: {small_tasks:.0}/s, RSS +{:.1} MB", mb(small_tasks_rss)),
    };
    Ok(vec![
        ScaleRow {
            workload: "W9 backlog behind a workflow cap of 16, admitted/s (after 5,000)",
            store: name.to_owned(),
            measured: format!(
                "100k queued: {large_rate:.0}/s, RSS +{:.1} MB ({:.0}% of the rate with 7k)",
                mb(large_rss),
                100.0 * large_rate / small_rate
            ),
            beside: format!(
                "7k queued: {small_rate:.0}/s, RSS +{:.1} MB; targets: the same rate, < 100 MB",
                mb(small_rss)
            ),
        },
        tasks,
    ])
}
