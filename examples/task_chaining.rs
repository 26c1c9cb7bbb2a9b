//! Task chaining (Dapr's first pattern): four steps run in order, each feeding the next, each
//! retried with an exponential back-off; when a step runs out of retries, a compensation step
//! undoes the work and the error is raised again.
//!
//! Run: `cargo run --example task_chaining` (SQLite file in a temporary directory, no set-up).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    item: String,
    /// Makes step 3 fail on every attempt, to show retries and compensation.
    fail_step3: bool,
}

// Dapr's example uses 10 attempts, 1 minute, x2, capped at 1 hour. The same shape with short
// intervals keeps the demo quick.
#[activity(retry(max_attempts = 4, first_interval = "100ms", backoff = 2.0, max_interval = "1s"))]
async fn step1(ctx: ActivityContext, order: Order) -> Result<Order, ActivityError> {
    println!("  step1: reserve '{}' (attempt {})", order.item, ctx.attempt());
    Ok(order)
}

#[activity(retry(max_attempts = 4, first_interval = "100ms", backoff = 2.0, max_interval = "1s"))]
async fn step2(ctx: ActivityContext, order: Order) -> Result<Order, ActivityError> {
    println!("  step2: charge for '{}' (attempt {})", order.item, ctx.attempt());
    Ok(order)
}

#[activity(retry(max_attempts = 4, first_interval = "100ms", backoff = 2.0, max_interval = "1s"))]
async fn step3(ctx: ActivityContext, order: Order) -> Result<Order, ActivityError> {
    println!("  step3: ship '{}' (attempt {})", order.item, ctx.attempt());
    if order.fail_step3 {
        return Err(ActivityError::new("the shipping service is down"));
    }
    Ok(order)
}

#[activity(retry(max_attempts = 4, first_interval = "100ms", backoff = 2.0, max_interval = "1s"))]
async fn step4(ctx: ActivityContext, order: Order) -> Result<String, ActivityError> {
    println!("  step4: notify about '{}' (attempt {})", order.item, ctx.attempt());
    Ok(format!("order for '{}' complete", order.item))
}

#[activity]
async fn compensate(_ctx: ActivityContext, order: Order) -> Result<(), ActivityError> {
    println!("  compensate: refund and release '{}'", order.item);
    Ok(())
}

#[workflow]
async fn process_order(ctx: WorkflowContext, order: Order) -> Result<String, WorkflowError> {
    let chained = async {
        let order = step1::call(&ctx, order.clone()).await?;
        let order = step2::call(&ctx, order).await?;
        let order = step3::call(&ctx, order).await?;
        step4::call(&ctx, order).await
    };
    match chained.await {
        Ok(done) => Ok(done),
        Err(error) => {
            // Retries ran out: undo, then fail the workflow with the original error.
            compensate::call(&ctx, order).await?;
            Err(error)
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("workflow-task-chaining-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let runtime = Runtime::builder()
        .store(SqliteStore::open(&url).await?)
        .workflow(process_order::Workflow)
        .activity(step1::Activity)
        .activity(step2::Activity)
        .activity(step3::Activity)
        .activity(step4::Activity)
        .activity(compensate::Activity)
        .build()
        .await?;
    let client = runtime.client();

    println!("run 1: every step succeeds");
    let handle = process_order::start(&client, Order { item: "book".into(), fail_step3: false }).await?;
    println!("  -> {:?}", handle.result().await?);

    println!("run 2: step 3 fails on every attempt");
    let handle = process_order::start(&client, Order { item: "lamp".into(), fail_step3: true }).await?;
    match handle.result().await {
        Ok(done) => println!("  -> unexpected success: {done}"),
        Err(error) => println!("  -> the workflow failed as it should: {error}"),
    }
    let status = handle.status().await?;
    println!("  status: {:?}", status.status);
    for record in client.journal(handle.instance_id()).await? {
        println!(
            "  journal seq {}: {} `{}` {:?} after {} attempt(s)",
            record.seq, record.kind, record.name, record.status, record.attempt
        );
    }

    runtime.shutdown(Duration::from_secs(5)).await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
