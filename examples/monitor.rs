//! The monitor pattern (Dapr's fourth): poll a status, sleep for a while that depends on what the
//! poll saw (long when healthy, short when not), then continue-as-new so the journal holds one
//! round, never the whole history.
//!
//! Run: `cargo run --example monitor` (SQLite file in a temporary directory, no set-up). Dapr's
//! example sleeps 60 or 5 minutes; the intervals here are short to keep the demo quick.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Round {
    number: u32,
    last_healthy: Option<bool>,
}

const ROUNDS: u32 = 6;
static POLLS: AtomicU32 = AtomicU32::new(0);

#[activity]
async fn get_status(_ctx: ActivityContext, round: u32) -> Result<bool, ActivityError> {
    POLLS.fetch_add(1, Ordering::SeqCst);
    // The watched service is unhealthy in rounds 3 and 4.
    Ok(!(3..=4).contains(&round))
}

#[activity]
async fn send_alert(_ctx: ActivityContext, message: String) -> Result<(), ActivityError> {
    println!("    ALERT: {message}");
    Ok(())
}

#[workflow]
async fn monitor(ctx: WorkflowContext, round: Round) -> Result<u32, WorkflowError> {
    let healthy = get_status::call(&ctx, round.number).await?;
    if round.last_healthy.is_some_and(|was| was != healthy) {
        let change = if healthy { "recovered" } else { "became unhealthy" };
        send_alert::call(&ctx, format!("the service {change} in round {}", round.number)).await?;
    }
    let pause = if healthy { Duration::from_millis(400) } else { Duration::from_millis(100) };
    if !ctx.is_replaying() {
        println!("  round {}: healthy = {healthy}, next check in {pause:?}", round.number);
    }
    ctx.set_custom_status(&format!("round {}: healthy = {healthy}", round.number));
    ctx.sleep(pause).await?;
    if round.number == ROUNDS {
        return Ok(round.number);
    }
    monitor::continue_as_new(&ctx, Round { number: round.number + 1, last_healthy: Some(healthy) }).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("workflow-monitor-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let runtime = Runtime::builder()
        .store(SqliteStore::open(&url).await?)
        .workflow(monitor::Workflow)
        .activity(get_status::Activity)
        .activity(send_alert::Activity)
        .build()
        .await?;
    let client = runtime.client();
    println!("monitoring for {ROUNDS} rounds, continuing as new after each one");
    let handle = monitor::start(&client, Round { number: 1, last_healthy: None }).id("service-monitor").await?;
    let rounds = handle.result().await?;
    let journal = client.journal(handle.instance_id()).await?;
    let status = handle.status().await?;
    println!(
        "done after {rounds} rounds and {} polls; the journal holds {} records (one round), custom status {}",
        POLLS.load(Ordering::SeqCst),
        journal.len(),
        status.custom_status.unwrap_or_default()
    );
    runtime.shutdown(Duration::from_secs(5)).await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
