use workflow::prelude::*;

#[workflow]
async fn tokio_sleep(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    let _ = ctx;
    Ok(())
}

fn main() {}
