//! Fan-out/fan-in (Dapr's second pattern): fetch a batch of work items whose size is only known
//! at run time, process them in parallel with at most 5 at once, then aggregate the results.
//!
//! Run: `cargo run --example fan_out_fan_in` (SQLite file in a temporary directory, no set-up).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use workflow::prelude::*;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

#[activity]
async fn get_work_batch(_ctx: ActivityContext, size: u32) -> Result<Vec<u32>, ActivityError> {
    println!("get_work_batch: {size} items");
    Ok((1..=size).collect())
}

#[activity(retry(max_attempts = 3, first_interval = "50ms"))]
async fn process_item(ctx: ActivityContext, item: u32) -> Result<u64, ActivityError> {
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    println!("  process_item({item:>2}) seq {:>2}, {now} running at once", ctx.seq());
    tokio::time::sleep(Duration::from_millis(20)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    Ok(u64::from(item) * u64::from(item))
}

#[activity]
async fn post_results(_ctx: ActivityContext, total: u64) -> Result<(), ActivityError> {
    println!("post_results: sum of squares = {total}");
    Ok(())
}

#[workflow]
async fn sum_of_squares(ctx: WorkflowContext, batch_size: u32) -> Result<u64, WorkflowError> {
    let items = get_work_batch::call(&ctx, batch_size).await?;
    let squares = process_item::fan_out(&ctx, items).max_parallel(5).await?;
    let total = squares.iter().sum();
    post_results::call(&ctx, total).await?;
    Ok(total)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("workflow-fan-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let runtime = Runtime::builder()
        .store(SqliteStore::open(&url).await?)
        .workflow(sum_of_squares::Workflow)
        .activity(get_work_batch::Activity)
        .activity(process_item::Activity)
        .activity(post_results::Activity)
        .build()
        .await?;
    let client = runtime.client();
    let batch = 20;
    let handle = sum_of_squares::start(&client, batch).await?;
    let total = handle.result().await?;
    let expected: u64 = (1..=u64::from(batch)).map(|i| i * i).sum();
    println!("result: {total} (expected {expected})");
    runtime.shutdown(Duration::from_secs(5)).await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
