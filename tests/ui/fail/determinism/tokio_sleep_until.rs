use workflow::prelude::*;

/// Outside the workflow body, so only the timer below is reported.
fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

#[workflow]
async fn tokio_sleep_until(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    tokio::time::sleep_until(deadline()).await;
    let _ = ctx;
    Ok(())
}

fn main() {}
