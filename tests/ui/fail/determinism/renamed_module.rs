use workflow::prelude::*;

#[workflow]
async fn renamed_module(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    use std::fs as disk;

    let _ = disk::remove_file("lock");
    let _ = ctx;
    Ok(())
}

fn main() {}
