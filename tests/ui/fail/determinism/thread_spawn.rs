use workflow::prelude::*;

#[workflow]
async fn thread_spawn(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let thread = std::thread::spawn(|| 1);
    let _ = thread.join();
    let _ = ctx;
    Ok(())
}

fn main() {}
