//! What a `#[workflow]` body may do: the `ctx` operations, concurrency by awaiting durable
//! operations together, formatting and printing, and names that only look like the banned ones.
#![deny(warnings)]

use std::future::IntoFuture;
use std::time::{SystemTime, UNIX_EPOCH};

use workflow::prelude::*;

#[activity]
async fn sleep(_ctx: ActivityContext, ms: u64) -> Result<u64, ActivityError> {
    // An activity named `sleep`, and the real timer inside it: both fine.
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

#[activity]
async fn random(_ctx: ActivityContext) -> Result<u64, ActivityError> {
    Ok(4)
}

/// A helper of the module; a bare call is not one of the banned paths.
fn spawn(n: u64) -> u64 {
    n + 1
}

#[workflow]
async fn uses_ctx(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let started: SystemTime = ctx.now();
    ctx.sleep(Duration::from_millis(10)).await?;
    ctx.sleep_until(started + Duration::from_millis(20)).await?;
    let roll = ctx.random();
    let id = ctx.uuid();
    let (a, b) = futures::join!(sleep::call(&ctx, 1).into_future(), random::call(&ctx).into_future());
    let all = sleep::fan_out(&ctx, [1, 2, 3]).await?;
    let _ = ctx.race(sleep::call(&ctx, 5), ctx.sleep(Duration::from_secs(1))).await;
    let since = ctx.now().duration_since(started).unwrap_or_default();
    let epoch = started.duration_since(UNIX_EPOCH).unwrap_or_default();
    if !ctx.is_replaying() {
        println!("{roll} {id} {since:?} {epoch:?}");
    }
    let total = a? + b? + all.iter().sum::<u64>() + spawn(1);
    Ok(format!("{total} at {:?}", SystemTime::UNIX_EPOCH))
}

fn main() {
    let _ = Runtime::builder().workflow(uses_ctx::Workflow).activity(sleep::Activity).activity(random::Activity);
}
