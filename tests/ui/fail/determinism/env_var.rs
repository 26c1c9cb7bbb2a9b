use workflow::prelude::*;

#[workflow]
async fn env_var(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let region = std::env::var("REGION");
    let _ = region;
    let _ = ctx;
    Ok(())
}

fn main() {}
