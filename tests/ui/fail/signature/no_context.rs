use workflow::prelude::*;

#[workflow]
async fn no_context(n: u32) -> Result<u32, WorkflowError> {
    Ok(n)
}

fn main() {}
