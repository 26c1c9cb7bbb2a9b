use workflow::prelude::*;

#[workflow]
async fn child(_ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n)
}

#[workflow]
async fn parent(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    Ok(child::call(&ctx, String::from("7")).await?)
}

fn main() {}
