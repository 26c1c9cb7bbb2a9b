use workflow::prelude::*;

#[workflow]
async fn tokio_interval(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let mut every_minute = tokio::time::interval(Duration::from_secs(60));
    every_minute.tick().await;
    let _ = ctx;
    Ok(())
}

fn main() {}
