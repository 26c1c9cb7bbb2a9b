use workflow::prelude::*;

#[workflow]
async fn alias_in_body(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    use std::time::SystemTime as Clock;

    let now = Clock::now();
    let _ = now;
    let _ = ctx;
    Ok(())
}

fn main() {}
