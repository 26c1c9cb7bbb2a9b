//! Flow control: a per-tenant concurrency limit and a rate limit at work, printing what runs
//! when. A newsletter for a big tenant (12 mails) and one for a small tenant (3 mails) are sent
//! at once under "at most 2 mails at once per tenant": the small tenant does not wait behind the
//! big one. Then 12 charges go to a payment provider that allows 5 calls a second: they start 5,
//! 5 and 2, a second apart. Last, 6 report workflows for one region and 2 for another are started
//! at once, and at most 2 of one region may start a second: the second region's start at once,
//! beside the first's. The limits hold across every worker process on the database.
//!
//! Run: `cargo run --example flow_control` (SQLite file in a temporary directory, no set-up).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mail {
    tenant: String,
    n: u32,
}

/// Milliseconds since the example started.
fn at() -> u128 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis()
}

/// Sends one mail: at most 2 at once per tenant, across every worker.
#[activity(concurrency(limit = 2, key = |mail: &Mail| mail.tenant.clone()))]
async fn send_mail(_ctx: ActivityContext, mail: Mail) -> Result<(), ActivityError> {
    println!("  {:>5} ms  send  {:<5} #{}", at(), mail.tenant, mail.n);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// Charges one order: the provider allows 5 calls a second in all.
#[activity(rate = "5/1s")]
async fn charge(_ctx: ActivityContext, order: u32) -> Result<(), ActivityError> {
    println!("  {:>5} ms  charge order {order}", at());
    Ok(())
}

/// Writes one report: its workflow starts at most 2 a second per region.
#[activity]
async fn write_report(_ctx: ActivityContext, (region, n): (String, u32)) -> Result<(), ActivityError> {
    println!("  {:>5} ms  report {region} #{n} starts", at());
    Ok(())
}

#[workflow(rate(limit = "2/1s", key = |(region, _): &(String, u32)| region.clone()))]
async fn report(ctx: WorkflowContext, (region, n): (String, u32)) -> Result<(), WorkflowError> {
    write_report::call(&ctx, (region, n)).await
}

#[workflow]
async fn newsletter(ctx: WorkflowContext, (tenant, count): (String, u32)) -> Result<(), WorkflowError> {
    send_mail::fan_out(&ctx, (0..count).map(|n| Mail { tenant: tenant.clone(), n })).await?;
    Ok(())
}

#[workflow]
async fn billing(ctx: WorkflowContext, orders: u32) -> Result<(), WorkflowError> {
    charge::fan_out(&ctx, 0..orders).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("workflow-flow-control-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let runtime = Runtime::builder()
        .store(SqliteStore::open(&url).await?)
        .workflow(newsletter::Workflow)
        .workflow(billing::Workflow)
        .workflow(report::Workflow)
        .activity(write_report::Activity)
        .activity(send_mail::Activity)
        .activity(charge::Activity)
        .poll_interval(Duration::from_millis(50))
        .build()
        .await?;
    let client = runtime.client();

    at();
    println!("two newsletters at once, at most 2 mails per tenant at a time:");
    let big = newsletter::start(&client, ("big".to_owned(), 12)).await?;
    let small = newsletter::start(&client, ("small".to_owned(), 3)).await?;
    small.result().await?;
    println!("  {:>5} ms  the small tenant is done", at());
    big.result().await?;
    println!("  {:>5} ms  the big tenant is done", at());

    println!("12 charges, at most 5 a second:");
    billing::start(&client, 12).await?.result().await?;
    println!("  {:>5} ms  all charged", at());

    println!("6 reports for eu and 2 for us started at once, at most 2 of a region starting a second:");
    let mut reports = Vec::new();
    for n in 0..6 {
        reports.push(report::start(&client, ("eu".to_owned(), n)).await?);
    }
    for n in 0..2 {
        reports.push(report::start(&client, ("us".to_owned(), n)).await?);
    }
    let waiting = reports[5].status().await?;
    println!(
        "  {:>5} ms  report eu #5 is {:?}, key {:?}, behind: {}",
        at(),
        waiting.status,
        waiting.concurrency_key,
        waiting.limits.unwrap_or_default()
    );
    for handle in reports {
        handle.result().await?;
    }
    println!("  {:>5} ms  all reports written", at());

    runtime.shutdown(Duration::from_secs(5)).await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
