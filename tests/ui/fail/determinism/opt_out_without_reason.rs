use workflow::prelude::*;

#[workflow]
async fn opt_out_without_reason(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    #[nondeterministic]
    let now = std::time::SystemTime::now();
    let _ = now;
    let _ = ctx;
    Ok(())
}

fn main() {}
