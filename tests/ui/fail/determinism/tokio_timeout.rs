use workflow::prelude::*;

#[workflow]
async fn tokio_timeout(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let _ = tokio::time::timeout(Duration::from_secs(1), ctx.sleep(Duration::from_secs(2))).await;
    let _ = ctx;
    Ok(())
}

fn main() {}
