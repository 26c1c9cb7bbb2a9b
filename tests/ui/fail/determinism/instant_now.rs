use std::time::Instant;

use workflow::prelude::*;

#[workflow]
async fn instant_now(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let started = Instant::now();
    let _ = started;
    let _ = ctx;
    Ok(())
}

fn main() {}
