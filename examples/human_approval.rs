//! External system interaction (Dapr's fifth pattern): an order waits for a manager's approval
//! event, with a timeout. The example runs twice: once the client raises the approval, once
//! nobody answers and the order is cancelled when the wait times out.
//!
//! Run: `cargo run --example human_approval` (SQLite file in a temporary directory, no set-up).
//! Dapr's example waits three days; this one waits two seconds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    cost: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Approval {
    approver: String,
    approved: bool,
}

#[activity]
async fn request_approval(_ctx: ActivityContext, order: Order) -> Result<(), ActivityError> {
    println!("  [{}] approval requested for a {} order", order.id, order.cost);
    Ok(())
}

#[activity]
async fn place_order(_ctx: ActivityContext, order: Order) -> Result<String, ActivityError> {
    println!("  [{}] order placed", order.id);
    Ok(format!("order {} placed", order.id))
}

#[activity]
async fn cancel_order(_ctx: ActivityContext, order: Order) -> Result<String, ActivityError> {
    println!("  [{}] order cancelled", order.id);
    Ok(format!("order {} cancelled", order.id))
}

#[workflow]
async fn purchase(ctx: WorkflowContext, order: Order) -> Result<String, WorkflowError> {
    request_approval::call(&ctx, order.clone()).await?;
    let answer = ctx.wait_for_event::<Approval>("ManagerApproval").timeout(Duration::from_secs(2)).await;
    match answer {
        Ok(Approval { approved: true, approver }) => {
            println!("  [{}] approved by {approver}", order.id);
            place_order::call(&ctx, order).await
        }
        Ok(Approval { approved: false, approver }) => {
            println!("  [{}] rejected by {approver}", order.id);
            cancel_order::call(&ctx, order).await
        }
        Err(WorkflowError::Timeout { .. }) => {
            println!("  [{}] no answer in time", order.id);
            cancel_order::call(&ctx, order).await
        }
        Err(other) => Err(other),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("workflow-approval-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let runtime = Runtime::builder()
        .store(SqliteStore::open(&url).await?)
        .workflow(purchase::Workflow)
        .activity(request_approval::Activity)
        .activity(place_order::Activity)
        .activity(cancel_order::Activity)
        .build()
        .await?;
    let client = runtime.client();

    println!("run 1: the manager approves after half a second");
    let approved = purchase::start(&client, Order { id: "order-1".into(), cost: 2500 }).id("order-1").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let approval = Approval { approver: "Ada".into(), approved: true };
    client.raise_event(approved.instance_id(), "ManagerApproval", &approval).await?;
    println!("  -> {}", approved.result().await?);

    println!("run 2: nobody answers");
    let ignored = purchase::start(&client, Order { id: "order-2".into(), cost: 9000 }).id("order-2").await?;
    println!("  -> {}", ignored.result().await?);

    runtime.shutdown(Duration::from_secs(5)).await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
