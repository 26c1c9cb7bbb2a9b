//! W8 flow control: what a workflow concurrency cap costs. W1 (200 workflows of 10 one-step
//! activities, all started at once) five ways on one runtime: without a cap, with a cap equal to
//! the uncapped run's parallelism (200: it never binds, so the figure is the cost of counting and
//! of claiming instead of running at start), with a rate of starts that never binds, and with a
//! cap of 20 that binds, and with a cap of 20 per key over 10 keys (never binds). Rounds alternate
//! (seven); the row gives the medians. A second row: W1 whose steps are a capped activity (a global
//! cap of 200, and 20 per key over 10 keys: neither binds; and a rate limit of a million a second,
//! which does not bind either): the capped attempts run in the worker's slots of the activity
//! (taken from the store while the cap has room), the rate-limited ones through the store's task
//! queue where each start is counted; beside the same uncapped run, first in each round and again
//! last (a control for the round's order).

use std::sync::Arc;
use std::time::{Duration, Instant};

use workflow::prelude::*;
use workflow::store::Store;

use super::{BenchResult, ScaleRow};

/// W1's workflows per round.
const WORKFLOWS: u64 = 200;
const ROUNDS: usize = 7;

#[activity(retry(max_attempts = 1))]
async fn w8_step(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

/// `w8_step` under a global cap that never binds (200 workflows run one step at a time each).
#[activity(retry(max_attempts = 1), concurrency = 200)]
async fn w8_capped_step(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

/// `w8_step` under a cap of 20 per key, keyed by workflow (`n / 100`) over 10 keys: 200 in all.
#[activity(retry(max_attempts = 1), concurrency(limit = 20, key = |n: &u64| (n / 100 % 10).to_string()))]
async fn w8_keyed_step(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

/// `w8_step` under a rate limit that never binds (a million a second).
#[activity(retry(max_attempts = 1), rate = "1000000/1s")]
async fn w8_rated_step(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

#[workflow]
async fn w8_rated_steps(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    let mut n = start;
    for _ in 0..10 {
        n = w8_rated_step::call(&ctx, n).await?;
    }
    Ok(n)
}

#[workflow]
async fn w8_capped_steps(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    let mut n = start;
    for _ in 0..10 {
        n = w8_capped_step::call(&ctx, n).await?;
    }
    Ok(n)
}

#[workflow]
async fn w8_keyed_steps(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    let mut n = start;
    for _ in 0..10 {
        n = w8_keyed_step::call(&ctx, n).await?;
    }
    Ok(n)
}

async fn ten_steps(ctx: &WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    let mut n = start;
    for _ in 0..10 {
        n = w8_step::call(ctx, n).await?;
    }
    Ok(n)
}

#[workflow]
async fn w8_free(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    ten_steps(&ctx, start).await
}

#[workflow(concurrency = 200)]
async fn w8_cap_200(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    ten_steps(&ctx, start).await
}

/// Under a rate limit of starts that never binds (a million a second).
#[workflow(rate = "1000000/1s")]
async fn w8_rate(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    ten_steps(&ctx, start).await
}

/// Under a cap of 20 per key over 10 keys (`start / 100 % 10`): 200 in all, so it never binds.
#[workflow(concurrency(limit = 20, key = |start: &u64| (start / 100 % 10).to_string()))]
async fn w8_key_cap(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    ten_steps(&ctx, start).await
}

#[workflow(concurrency = 20)]
async fn w8_cap_20(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    ten_steps(&ctx, start).await
}

/// Workflows/s of one round of `W`.
async fn round<W>(client: &Client) -> BenchResult<f64>
where
    W: workflow::WorkflowDef<Input = u64, Output = u64>,
{
    let started = Instant::now();
    let handles = futures::future::try_join_all((0..WORKFLOWS).map(|i| client.start::<W>(&(i * 100)))).await?;
    let outputs = futures::future::try_join_all(handles.iter().map(|h| h.result())).await?;
    let elapsed = started.elapsed();
    assert!(outputs.iter().enumerate().all(|(i, out)| *out == i as u64 * 100 + 10));
    Ok(WORKFLOWS as f64 / elapsed.as_secs_f64())
}

fn median(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(f64::total_cmp);
    figures[figures.len() / 2]
}

/// The W8 row for one store.
pub(crate) async fn measure(name: &str, store: Arc<dyn Store>) -> BenchResult<Vec<ScaleRow>> {
    let runtime = Runtime::builder()
        .store(store)
        .workflow(w8_free::Workflow)
        .workflow(w8_cap_200::Workflow)
        .workflow(w8_cap_20::Workflow)
        .workflow(w8_rate::Workflow)
        .workflow(w8_key_cap::Workflow)
        .workflow(w8_capped_steps::Workflow)
        .workflow(w8_keyed_steps::Workflow)
        .workflow(w8_rated_steps::Workflow)
        .activity(w8_rated_step::Activity)
        .activity(w8_step::Activity)
        .activity(w8_capped_step::Activity)
        .activity(w8_keyed_step::Activity)
        .max_concurrent_activities(1024)
        .build()
        .await?;
    let client = runtime.client();
    let (mut free, mut same, mut binding, mut starts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut per_key = Vec::new();
    let (mut global, mut keyed, mut rated) = (Vec::new(), Vec::new(), Vec::new());
    let mut control = Vec::new();
    for _ in 0..ROUNDS {
        free.push(round::<w8_free::Workflow>(&client).await?);
        same.push(round::<w8_cap_200::Workflow>(&client).await?);
        binding.push(round::<w8_cap_20::Workflow>(&client).await?);
        starts.push(round::<w8_rate::Workflow>(&client).await?);
        per_key.push(round::<w8_key_cap::Workflow>(&client).await?);
        global.push(round::<w8_capped_steps::Workflow>(&client).await?);
        keyed.push(round::<w8_keyed_steps::Workflow>(&client).await?);
        rated.push(round::<w8_rated_steps::Workflow>(&client).await?);
        control.push(round::<w8_free::Workflow>(&client).await?);
    }

    runtime.shutdown(Duration::from_secs(5)).await?;
    let (free, same, binding, starts) = (median(free), median(same), median(binding), median(starts));
    let per_key = median(per_key);
    let (global, keyed, rated) = (median(global), median(keyed), median(rated));
    let control = median(control);
    let share = |figure: f64| 100.0 * figure / free;
    Ok(vec![
        ScaleRow {
            workload: "W8 W1 under a workflow concurrency cap, workflows/s (median of rounds)",
            store: name.to_owned(),
            measured: format!(
                "cap 200 (never binds): {same:.0} ({:.0}% of uncapped); rate 1M/s: {starts:.0} ({:.0}%); \
                 20 per key x 10 keys: {per_key:.0} ({:.0}%)",
                share(same),
                share(starts),
                share(per_key)
            ),
            beside: format!("uncapped: {free:.0}; cap 20 (binds): {binding:.0}"),
        },
        ScaleRow {
            workload: "W8 W1 with capped activity steps, workflows/s (median of rounds)",
            store: name.to_owned(),
            measured: format!(
                "global cap 200: {global:.0} ({:.0}%); 20 per key x 10 keys: {keyed:.0} ({:.0}%); \
                 rate 1M/s: {rated:.0} ({:.0}%)",
                share(global),
                share(keyed),
                share(rated)
            ),
            beside: format!("uncapped local steps: {free:.0} (first in each round), {control:.0} (last)"),
        },
    ])
}
