#![deny(warnings)]

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Serialize, Deserialize)]
pub struct Order {
    pub id: u32,
}

#[activity(retry(max_attempts = 10, first_interval = "1m", backoff = 2.0, max_interval = "1h", timeout = "1d"))]
pub async fn with_input(_ctx: ActivityContext, order: Order) -> Result<u32, ActivityError> {
    Ok(order.id)
}

#[activity(name = "renamed")]
async fn without_input(_ctx: ActivityContext) -> Result<(), std::io::Error> {
    Ok(())
}

#[workflow]
pub async fn chained(ctx: WorkflowContext, order: Order) -> Result<Vec<u32>, WorkflowError> {
    without_input::call(&ctx).await?;
    let one = with_input::call(&ctx, order).retry(RetryPolicy::no_retry()).await?;
    let many = with_input::fan_out(&ctx, (0..3).map(|id| Order { id })).max_parallel(2).await?;
    Ok(std::iter::once(one).chain(many).collect())
}

#[workflow]
async fn no_input(_ctx: WorkflowContext) -> Result<String, String> {
    Ok("done".into())
}

async fn start_them(client: &Client) -> Result<(), workflow::Error> {
    let handle: Handle<Vec<u32>> = chained::start(client, Order { id: 1 }).await?;
    let _ = no_input::start_with_id(client, "fixed-id").await?;
    let _ = handle.instance_id();
    Ok(())
}

async fn plain_call() -> Result<u32, ActivityError> {
    // The annotated function stays an ordinary function.
    with_input(ActivityContext::for_test("unit", 0, 1), Order { id: 4 }).await
}

fn main() {
    let _ = Runtime::builder()
        .workflow(chained::Workflow)
        .workflow(no_input::Workflow)
        .activity(with_input::Activity)
        .activity(without_input::Activity);
    let _ = start_them;
    let _ = plain_call;
}
