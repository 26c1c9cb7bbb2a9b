use workflow::prelude::*;

#[workflow(concurrency = 0)]
async fn no_room(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

#[workflow(concurrency = "four")]
async fn in_words(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

#[workflow(concurrency(limit = 0, key = |n: &u32| n.to_string()))]
async fn keyed_workflow(_ctx: WorkflowContext, _n: u32) -> Result<(), WorkflowError> {
    Ok(())
}

#[activity(concurrency(limit = 0))]
async fn no_room_activity(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(concurrency(key = |n: &u32| n.to_string()))]
async fn key_without_limit(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n)
}

#[activity(concurrency(limit = 2, colour = "red"))]
async fn unknown_setting(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
