use workflow::prelude::*;

#[workflow(name = checkout)]
async fn name_not_string(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

fn main() {}
