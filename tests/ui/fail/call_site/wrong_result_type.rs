use workflow::prelude::*;

#[workflow]
async fn greet(_ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
    Ok(format!("hello {name}"))
}

async fn start(client: &Client) -> Result<u64, workflow::Error> {
    let handle: Handle<u64> = greet::start(client, "ada".to_owned()).await?;
    handle.result().await
}

fn main() {}
