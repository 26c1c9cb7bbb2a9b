use workflow::prelude::*;

#[workflow]
async fn elapsed(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let started = ctx.now();
    let waited = started.elapsed();
    let _ = waited;
    let _ = ctx;
    Ok(())
}

fn main() {}
