//! W14 claims beside held instances: rounds of 1,000 one-step workflows started and awaited
//! through a client without a runtime (each start waits for a worker's claim), with 10,000
//! instances held in the worker's memory (each waiting for an event under a live lease), beside
//! the same with none held, measured before the held ones start and again after they finish (a
//! control for the order). Claims must not read the held instances: the rates should match. The
//! figure is workflows/s, the median of rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use workflow::prelude::*;
use workflow::store::Store;

use super::{BenchResult, ScaleRow};

/// The instances held in memory (`W14_HELD` overrides it, to explore).
fn held() -> u64 {
    std::env::var("W14_HELD").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000)
}

/// Rounds at each stage.
const ROUNDS: usize = 5;

/// Workflows per round.
const PER_ROUND: u64 = 1_000;

/// The event wait's timeout: never reached.
const WAIT_TIMEOUT: Duration = Duration::from_secs(86_400);

#[workflow]
async fn w14_hold(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    // The timeout only makes the wait a journal row, which the bench reads to see it waiting.
    let bonus: u64 = ctx.wait_for_event("go").timeout(WAIT_TIMEOUT).await?;
    Ok(n + bonus)
}

#[activity(retry(max_attempts = 1))]
async fn w14_touch(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

#[workflow]
async fn w14_step(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    w14_touch::call(&ctx, n).await
}

/// The workflows/s of [`ROUNDS`] rounds of [`PER_ROUND`] starts through `client`.
async fn rates(client: &Client) -> BenchResult<Vec<f64>> {
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let handles = futures::future::try_join_all((0..PER_ROUND).map(|n| w14_step::start(client, n))).await?;
        let outputs = futures::future::try_join_all(handles.iter().map(|h| h.result())).await?;
        assert!(outputs.iter().enumerate().all(|(n, out)| *out == n as u64 + 1));
        rates.push(PER_ROUND as f64 / started.elapsed().as_secs_f64());
    }
    Ok(rates)
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// The W14 row for one store.
pub(crate) async fn measure(name: &str, store: Arc<dyn Store>) -> BenchResult<Vec<ScaleRow>> {
    let count = held();
    let runtime = Runtime::builder()
        .store(store.clone())
        .workflow(w14_hold::Workflow)
        .workflow(w14_step::Workflow)
        .activity(w14_touch::Activity)
        .max_concurrent_instances(2 * count as usize + 1_000)
        // Kept in memory: idle for longer than the wait's timeout.
        .evict_idle_after(2 * WAIT_TIMEOUT)
        .build()
        .await?;
    let detached = Client::new(store.clone());
    let mut none_held = rates(&detached).await?;

    let client = runtime.client();
    let ids: Vec<String> = (0..count).map(|n| format!("w14-{n}")).collect();
    let handles =
        futures::future::try_join_all(ids.iter().zip(0..).map(|(id, n)| w14_hold::start(&client, n).id(id.clone())))
            .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    // Every held instance waits (its wait is journaled) before the second stage.
    for id in ids.iter().rev() {
        while client.journal(id).await?.is_empty() {
            if Instant::now() > deadline {
                return Err("W14: the held instances never all reached their wait".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if runtime.instances_in_memory() != count as usize {
        return Err(format!("W14: only {} of {count} instances stayed in memory", runtime.instances_in_memory()).into());
    }
    let beside_held = median(rates(&detached).await?);
    // What holding them costs besides: the worker renews each held instance's lease every third
    // of the lease, one write of every held row. Renewed here as the runtime does (to a lease's
    // length from now; the runtime's own renewals go on as before).
    // The nine held instances first in id order (the first a renewal locks) are raised an event
    // 5 ms into the renewal: how long those raises take is how long a write to a held instance
    // may wait behind it.
    let lease_ms = 15_000;
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64 + lease_ms;
    let mut spread: Vec<&String> = ids.iter().collect();
    spread.sort();
    spread.truncate(9);
    let renewal = async {
        let began = Instant::now();
        let renewed = store.renew_leases(runtime.owner_id(), until).await?;
        Ok::<_, Box<dyn std::error::Error>>((renewed, began.elapsed()))
    };
    let raises = async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let began = Instant::now();
        futures::future::try_join_all(spread.iter().map(|id| client.raise_event(id, "go", &1u64))).await?;
        Ok::<_, Box<dyn std::error::Error>>(began.elapsed())
    };
    let ((renewed, renewal), raised) = tokio::try_join!(renewal, raises)?;

    // Finished, so the instances leave no claimable row behind for the workloads after this one.
    let rest = ids.iter().filter(|id| !spread.contains(id));
    futures::future::try_join_all(rest.map(|id| client.raise_event(id, "go", &1u64))).await?;
    let outputs = futures::future::try_join_all(handles.iter().map(|h| h.result())).await?;
    assert!(outputs.iter().enumerate().all(|(n, out)| *out == n as u64 + 1));
    none_held.extend(rates(&detached).await?);
    let none_held = median(none_held);
    runtime.shutdown(Duration::from_secs(5)).await?;
    Ok(vec![ScaleRow {
        workload: "W14 claims beside 10k held instances, Client::new wf/s (rounds of 1,000 one-step, median)",
        store: name.to_owned(),
        measured: format!("{beside_held:.0}"),
        beside: format!(
            "none held (before and after): {none_held:.0} ({:.0}%); one renewal of the {renewed} held leases: \
             {:.0} ms, raises to held instances meanwhile: {:.0} ms",
            100.0 * beside_held / none_held,
            renewal.as_secs_f64() * 1000.0,
            raised.as_secs_f64() * 1000.0
        ),
    }])
}
