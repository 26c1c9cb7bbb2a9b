use workflow::prelude::*;

#[workflow]
async fn tokio_spawn(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let task = tokio::spawn(async { 1 });
    let _ = task.await;
    let _ = ctx;
    Ok(())
}

fn main() {}
