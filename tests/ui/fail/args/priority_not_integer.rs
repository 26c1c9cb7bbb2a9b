use workflow::prelude::*;

#[workflow(priority = "high")]
async fn priority_text(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

#[workflow(priority = 3000000000)]
async fn priority_too_big(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

fn main() {}
