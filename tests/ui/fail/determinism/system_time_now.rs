use workflow::prelude::*;

#[workflow]
async fn system_time_now(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let now = std::time::SystemTime::now();
    let _ = now;
    let _ = ctx;
    Ok(())
}

fn main() {}
