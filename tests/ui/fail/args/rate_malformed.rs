use workflow::prelude::*;

#[activity(rate = "0/1s")]
async fn no_starts(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(rate = "fifty/1s")]
async fn in_words(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(rate = 50)]
async fn not_text(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(rate = "50/0s")]
async fn empty_period(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(rate(key = |n: &u32| n.to_string()))]
async fn key_without_limit(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n)
}

#[activity(concurrency(limit = 2, key = |n: &u32| n.to_string()), rate(limit = "5/1s", key = |n: &u32| n.to_string()))]
async fn two_keys(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n)
}

#[workflow(rate(limit = "5/0s", key = |n: &u32| n.to_string()))]
async fn keyed_rated_workflow(_ctx: WorkflowContext, _n: u32) -> Result<(), WorkflowError> {
    Ok(())
}

#[workflow(rate = "0/1s")]
async fn zero_rated_workflow(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

fn main() {}
