use workflow::prelude::*;

#[workflow]
async fn misplaced_context(n: u32, ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    let _ = ctx;
    Ok(n)
}

fn main() {}
