use workflow::prelude::*;

pub struct Receipt;

#[workflow]
async fn output_not_serializable(_ctx: WorkflowContext) -> Result<Receipt, WorkflowError> {
    Ok(Receipt)
}

fn main() {}
