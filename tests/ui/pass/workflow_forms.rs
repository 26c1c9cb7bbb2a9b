//! Every supported `#[workflow]` signature and generated helper, under `#![deny(warnings)]`.
#![deny(warnings)]

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Serialize, Deserialize)]
pub struct Order {
    pub id: u32,
}

/// With an input, public.
#[workflow]
pub async fn with_input(ctx: WorkflowContext, order: Order) -> Result<u32, WorkflowError> {
    let doubled = child::call(&ctx, order.id).await?;
    let many = child::fan_out(&ctx, [1, 2, 3]).await?;
    Ok(doubled + many.iter().sum::<u32>())
}

/// Without an input, a `String` error, a registered name, a default priority (negative: below
/// the default 0).
#[workflow(name = "no-input", priority = -5)]
async fn no_input(_ctx: WorkflowContext) -> Result<String, String> {
    Ok("done".into())
}

/// `pub(crate)`, the full path of `Result`, a tuple input taken apart by a pattern, at most 3
/// running at once.
#[workflow(concurrency = 3)]
pub(crate) async fn child(_ctx: WorkflowContext, n: u32) -> std::result::Result<u32, WorkflowError> {
    Ok(n * 2)
}

/// At most 10 starts a minute, and 2 running at once.
#[workflow(rate = "10/1m", concurrency = 2)]
async fn nightly(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

fn tenant_of(tenant: &String) -> String {
    tenant.clone()
}

/// At most 2 running at once per tenant (a closure), and 5 starts a second per tenant.
#[workflow(concurrency(limit = 2, key = |tenant: &String| tenant.clone()), rate = "5/1s")]
async fn per_tenant(_ctx: WorkflowContext, tenant: String) -> Result<String, WorkflowError> {
    Ok(tenant)
}

/// A key given as the path of a function.
#[workflow(concurrency(limit = 1, key = tenant_of))]
async fn one_per_tenant(_ctx: WorkflowContext, tenant: String) -> Result<String, WorkflowError> {
    Ok(tenant)
}

/// Restarts itself with new input.
#[workflow]
async fn countdown(ctx: WorkflowContext, (left, total): (u32, u32)) -> Result<u32, WorkflowError> {
    if left == 0 {
        return Ok(total);
    }
    countdown::continue_as_new(&ctx, (left - 1, total + left)).await
}

async fn start_them(client: &Client) -> Result<(), workflow::Error> {
    let handle: Handle<u32> = with_input::start(client, Order { id: 1 }).await?;
    let named: Handle<String> = no_input::start(client).id("fixed-id").reuse(ReusePolicy::ReturnExisting).await?;
    let _: Handle<u32> = countdown::start(client, (3, 0)).priority(10).await?;
    let _ = (handle.instance_id(), named.instance_id());
    Ok(())
}

fn main() {
    let _ = Runtime::builder()
        .workflow(with_input::Workflow)
        .workflow(no_input::Workflow)
        .workflow(child::Workflow)
        .workflow(countdown::Workflow)
        .workflow(nightly::Workflow);
    let _ = start_them;
    const _: () = assert!(<no_input::Workflow as workflow::WorkflowDef>::PRIORITY == -5);
    const _: () = assert!(<child::Workflow as workflow::WorkflowDef>::PRIORITY == 0);
    const _: () = assert!(matches!(<child::Workflow as workflow::WorkflowDef>::CONCURRENCY, Some(3)));
    const _: () = assert!(matches!(
        <nightly::Workflow as workflow::WorkflowDef>::RATE,
        Some(workflow::RateLimit { limit: 10, period_ms: 60_000 })
    ));
    const _: () = assert!(<child::Workflow as workflow::WorkflowDef>::RATE.is_none());
    const _: () = assert!(<no_input::Workflow as workflow::WorkflowDef>::CONCURRENCY.is_none());
}
