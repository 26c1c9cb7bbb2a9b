use workflow::prelude::*;

#[workflow]
async fn glob_in_body(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    use tokio::time::*;

    sleep(Duration::from_secs(1)).await;
    let _ = ctx;
    Ok(())
}

fn main() {}
