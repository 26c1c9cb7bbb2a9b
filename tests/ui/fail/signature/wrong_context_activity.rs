use workflow::prelude::*;

#[activity]
async fn wrong_context_activity(_ctx: WorkflowContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n)
}

fn main() {}
