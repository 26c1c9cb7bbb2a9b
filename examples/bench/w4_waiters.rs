//! W4 evicted waiters: 10,000 instances each wait for an event; every `Handle::result()` is
//! awaited from before the events are raised; all events are raised at once. Measured twice on the
//! same store: once with the instances evicted from memory while they wait, once kept in memory.
//! The figure is events/s from the first raise to the last result, the median of alternated
//! rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use workflow::prelude::*;
use workflow::store::Store;

use super::{BenchResult, ScaleRow};

/// The instances per run (`W4_INSTANCES` overrides it, to explore).
fn instances() -> u64 {
    std::env::var("W4_INSTANCES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000)
}

/// The event wait's timeout: never reached.
const WAIT_TIMEOUT: Duration = Duration::from_secs(86_400);

#[workflow]
async fn await_go(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    // The timeout only makes the wait a journal row, which the bench reads to see it waiting.
    let bonus: u64 = ctx.wait_for_event("go").timeout(WAIT_TIMEOUT).await?;
    Ok(n + bonus)
}

/// Events per second with the instances evicted (`evict = true`) or kept in memory.
async fn events_per_second(store: Arc<dyn Store>, evict: bool, round: &str) -> BenchResult<f64> {
    let count = instances();
    // Kept in memory: idle for longer than the wait's timeout (a wait whose deadline is further
    // away than `evict_idle_after` leaves memory as soon as it begins).
    let idle = if evict { Duration::from_millis(20) } else { 2 * WAIT_TIMEOUT };
    let runtime = Runtime::builder()
        .store(store)
        .workflow(await_go::Workflow)
        .max_concurrent_instances(2 * count as usize)
        .evict_idle_after(idle)
        .build()
        .await?;
    let client = runtime.client();
    let ids: Vec<String> = (0..count).map(|n| format!("w4-{round}-{n}")).collect();
    let handles =
        futures::future::try_join_all(ids.iter().zip(0..).map(|(id, n)| await_go::start(&client, n).id(id.clone())))
            .await?;
    // Every instance waits (its wait is journaled) before anything is raised.
    let deadline = Instant::now() + Duration::from_secs(600);
    let setup = Instant::now();
    loop {
        let waiting = if evict { runtime.instances_in_memory() == 0 } else { all_waiting(&client, &ids).await? };
        if waiting {
            break;
        }
        if Instant::now() > deadline {
            return Err("W4: the instances never all reached their wait".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("  W4 {round}: {count} waiting after {:.1} s", setup.elapsed().as_secs_f64());
    if !evict && runtime.instances_in_memory() != count as usize {
        return Err(format!("W4: only {} of {count} instances stayed in memory", runtime.instances_in_memory()).into());
    }
    let results = tokio::spawn(async move {
        let results = futures::future::join_all(handles.iter().map(|h| h.result())).await;
        results.into_iter().collect::<Result<Vec<u64>, _>>()
    });
    let started = Instant::now();
    futures::future::try_join_all(ids.iter().map(|id| client.raise_event(id, "go", &1u64))).await?;
    eprintln!("  W4 {round}: raised in {:.1} s", started.elapsed().as_secs_f64());
    let outputs = tokio::time::timeout(Duration::from_secs(900), results).await.map_err(|_| "W4 timed out")???;
    let elapsed = started.elapsed();
    eprintln!("  W4 {round}: raised and awaited in {:.1} s", elapsed.as_secs_f64());
    assert!(outputs.iter().enumerate().all(|(n, out)| *out == n as u64 + 1));
    runtime.shutdown(Duration::from_secs(5)).await?;
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Whether every instance has journaled its event wait (last started first: it is likely last).
async fn all_waiting(client: &Client, ids: &[String]) -> BenchResult<bool> {
    for id in ids.iter().rev() {
        if client.journal(id).await?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Rounds of each kind, alternated (memory, evicted, memory, ...): one round lasts about a second,
/// so a single pair swings by a factor of two on a busy machine; the row gives the medians.
/// `W4_ROUNDS` overrides it.
fn rounds() -> usize {
    std::env::var("W4_ROUNDS").ok().and_then(|n| n.parse().ok()).filter(|n| *n > 0).unwrap_or(3)
}

fn median(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(f64::total_cmp);
    figures[figures.len() / 2]
}

/// The W4 row for one store.
pub(crate) async fn measure(name: &str, store: Arc<dyn Store>) -> BenchResult<Vec<ScaleRow>> {
    let only_evicted = std::env::var_os("W4_ONLY_EVICTED").is_some();
    let (mut in_memory, mut evicted) = (Vec::new(), Vec::new());
    for round in 0..rounds() {
        if !only_evicted {
            in_memory.push(events_per_second(store.clone(), false, &format!("mem{round}")).await?);
        }
        evicted.push(events_per_second(store.clone(), true, &format!("evicted{round}")).await?);
    }
    let in_memory = if only_evicted { 1.0 } else { median(in_memory) };
    let evicted = median(evicted);
    Ok(vec![ScaleRow {
        workload: "W4 10k evicted waiters, events/s (median of rounds)",
        store: name.to_owned(),
        measured: format!("{evicted:.0}"),
        beside: format!("kept in memory: {in_memory:.0} ({:.0}%)", 100.0 * evicted / in_memory),
    }])
}
