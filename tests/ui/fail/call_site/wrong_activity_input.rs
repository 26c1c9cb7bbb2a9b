use workflow::prelude::*;

#[activity]
async fn double(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n * 2)
}

#[workflow]
async fn caller(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    Ok(double::call(&ctx, "two").await?)
}

fn main() {}
