use workflow::prelude::*;

#[workflow(retry(max_attempts = 3))]
async fn retry_on_workflow(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

fn main() {}
