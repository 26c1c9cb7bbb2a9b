//! Child workflows: a parent fans out one child workflow per region, each child runs its own
//! steps, and the parent aggregates their typed results. Each child is an instance of its own
//! (with its own journal and status) linked to its parent.
//!
//! Run: `cargo run --example child_workflows` (SQLite file in a temporary directory, no set-up).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RegionReport {
    region: String,
    stores: u32,
    revenue: u64,
}

#[activity]
async fn count_stores(_ctx: ActivityContext, region: String) -> Result<u32, ActivityError> {
    Ok(region.len() as u32)
}

#[activity]
async fn store_revenue(_ctx: ActivityContext, store: u32) -> Result<u64, ActivityError> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(u64::from(store) * 1_000)
}

#[workflow]
async fn region_report(ctx: WorkflowContext, region: String) -> Result<RegionReport, WorkflowError> {
    let stores = count_stores::call(&ctx, region.clone()).await?;
    let revenue = store_revenue::fan_out(&ctx, 1..=stores).max_parallel(4).await?.into_iter().sum();
    println!("  child {}: {region} has {stores} stores, revenue {revenue}", ctx.instance_id());
    Ok(RegionReport { region, stores, revenue })
}

#[workflow]
async fn company_report(ctx: WorkflowContext, regions: Vec<String>) -> Result<u64, WorkflowError> {
    let reports = region_report::fan_out(&ctx, regions).max_parallel(3).await?;
    let total = reports.iter().map(|r| r.revenue).sum();
    println!("  parent: {} regions, total revenue {total}", reports.len());
    Ok(total)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("workflow-children-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let runtime = Runtime::builder()
        .store(SqliteStore::open(&url).await?)
        .workflow(company_report::Workflow)
        .workflow(region_report::Workflow)
        .activity(count_stores::Activity)
        .activity(store_revenue::Activity)
        .build()
        .await?;
    let client = runtime.client();
    let regions = ["north", "south", "east", "west", "central"].map(String::from).to_vec();
    let handle = company_report::start(&client, regions).id("report-2026").await?;
    let total = handle.result().await?;
    println!("result: {total}");
    for record in client.journal(handle.instance_id()).await? {
        println!("  journal seq {}: {} `{}` {:?}", record.seq, record.kind, record.name, record.status);
    }
    let child = client.status("report-2026-g0-c0").await?;
    println!("child report-2026-g0-c0: {:?}, parent {:?}", child.status, child.parent_id);
    runtime.shutdown(Duration::from_secs(5)).await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
