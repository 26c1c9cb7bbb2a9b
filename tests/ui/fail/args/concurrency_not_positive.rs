use workflow::prelude::*;

#[workflow(concurrency = 0)]
async fn no_room(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

#[workflow(concurrency = "four")]
async fn in_words(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

#[activity(concurrency = 2)]
async fn capped_activity(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
