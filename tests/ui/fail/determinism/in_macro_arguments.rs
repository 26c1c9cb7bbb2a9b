use workflow::prelude::*;

#[workflow]
async fn in_macro_arguments(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    println!("now: {:?}", std::time::SystemTime::now());
    let _ = ctx;
    Ok(())
}

fn main() {}
