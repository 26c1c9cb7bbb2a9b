use workflow::prelude::*;

#[workflow]
async fn thread_sleep(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    std::thread::sleep(Duration::from_secs(1));
    let _ = ctx;
    Ok(())
}

fn main() {}
