use workflow::prelude::*;

#[workflow]
fn not_async_workflow(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

fn main() {}
