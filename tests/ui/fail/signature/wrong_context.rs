use workflow::prelude::*;

#[workflow]
async fn wrong_context(_ctx: ActivityContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n)
}

fn main() {}
