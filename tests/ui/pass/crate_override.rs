//! `crate = "..."` names where the `workflow` crate is, for code that re-exports it.
#![deny(warnings)]

mod facade {
    pub use ::workflow::*;
}

use facade::prelude::{ActivityContext, ActivityError, WorkflowContext, WorkflowError};

#[facade::activity(crate = "crate::facade")]
async fn step(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n + 1)
}

#[facade::workflow(crate = "crate::facade")]
async fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(step::call(&ctx, n).await?)
}

fn main() {
    let _ = facade::Runtime::builder().workflow(flow::Workflow).activity(step::Activity);
}
