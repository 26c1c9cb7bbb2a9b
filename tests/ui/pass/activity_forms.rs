//! Every supported `#[activity]` signature, under `#![deny(warnings)]`.
#![deny(warnings)]

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Serialize, Deserialize)]
pub struct Order {
    pub id: u32,
}

/// With an input, public, every retry setting.
#[activity(retry(max_attempts = 10, first_interval = "1m", backoff = 2.0, max_interval = "1h", timeout = "1d"))]
pub async fn with_input(_ctx: ActivityContext, order: Order) -> Result<u32, ActivityError> {
    Ok(order.id)
}

/// Without an input, a registered name, any error type that converts into `ActivityError`.
#[activity(name = "renamed")]
async fn without_input(_ctx: ActivityContext) -> Result<(), std::io::Error> {
    Ok(())
}

/// `pub(crate)`, the full path of `Result`, per-attempt limits, a whole-number backoff.
#[activity(start_to_close = "30s", heartbeat_timeout = "10s", retry(backoff = 1))]
pub(crate) async fn full_result_path(ctx: ActivityContext, text: String) -> std::result::Result<usize, ActivityError> {
    ctx.heartbeat();
    Ok(text.len())
}

/// A pattern for the input, a `mut` context, `core::result::Result`.
#[activity]
async fn tuple_input(mut ctx: ActivityContext, (a, b): (u32, u32)) -> core::result::Result<u32, ActivityError> {
    ctx = ctx.clone();
    let _ = ctx.attempt();
    Ok(a + b)
}

/// Activities may do anything non-deterministic: they run once per attempt and are recorded.
#[activity]
async fn impure(_ctx: ActivityContext) -> Result<u64, ActivityError> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    let _ = std::env::var("HOME");
    let _ = tokio::spawn(async {}).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Ok(now.as_secs())
}

#[workflow]
async fn calls_them(ctx: WorkflowContext, order: Order) -> Result<Vec<u32>, WorkflowError> {
    without_input::call(&ctx).await?;
    let one = with_input::call(&ctx, order).retry(RetryPolicy::no_retry()).await?;
    let many = with_input::fan_out(&ctx, (0..3).map(|id| Order { id })).max_parallel(2).await?;
    let len = full_result_path::call(&ctx, "abc".to_owned()).await?;
    let sum = tuple_input::call(&ctx, (1, 2)).await?;
    let _ = impure::call(&ctx).await?;
    Ok(std::iter::once(one).chain(many).chain([len as u32, sum]).collect())
}

async fn plain_call() -> Result<u32, ActivityError> {
    // The annotated function stays an ordinary function.
    with_input(ActivityContext::for_test("unit", 0, 1), Order { id: 4 }).await
}

fn main() {
    let _ = Runtime::builder()
        .workflow(calls_them::Workflow)
        .activity(with_input::Activity)
        .activity(without_input::Activity)
        .activity(full_result_path::Activity)
        .activity(tuple_input::Activity)
        .activity(impure::Activity);
    let _ = plain_call;
}
