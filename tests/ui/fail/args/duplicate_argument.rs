use workflow::prelude::*;

#[workflow(name = "checkout", name = "checkout-v2")]
async fn duplicate_argument(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

fn main() {}
