use workflow::prelude::*;

#[workflow]
async fn context_by_reference(_ctx: &WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n)
}

fn main() {}
