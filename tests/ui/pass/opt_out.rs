//! `#[nondeterministic(reason = "...")]` lets one statement or match arm of a `#[workflow]` do
//! something the check would reject; the attribute is removed from the emitted function.
#![deny(warnings)]

use std::time::Instant;

use workflow::prelude::*;

#[activity]
async fn step(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n)
}

#[workflow]
async fn measured(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    #[nondeterministic(reason = "only printed, never decides anything")]
    let started = Instant::now();
    let out = step::call(&ctx, n).await?;
    #[nondeterministic(reason = "only printed, never decides anything")]
    println!("step took {:?}", started.elapsed());
    #[nondeterministic(reason = "a log line for the operator")]
    {
        if let Ok(host) = std::env::var("HOSTNAME") {
            println!("on {host}");
        }
    }
    let label = match out {
        0 => "zero",
        #[nondeterministic(reason = "only printed")]
        _ => {
            println!("at {:?}", std::time::SystemTime::now());
            "more"
        }
    };
    Ok(out + label.len() as u32)
}

fn main() {
    let _ = Runtime::builder().workflow(measured::Workflow).activity(step::Activity);
}
