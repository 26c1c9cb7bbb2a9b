use workflow::prelude::*;

#[workflow]
async fn select(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    tokio::select! {
        _ = ctx.sleep(Duration::from_secs(1)) => {}
        _ = ctx.sleep(Duration::from_secs(2)) => {}
    }
    let _ = ctx;
    Ok(())
}

fn main() {}
