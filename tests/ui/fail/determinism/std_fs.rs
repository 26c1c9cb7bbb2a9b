use workflow::prelude::*;

#[workflow]
async fn std_fs(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let config = std::fs::read_to_string("config.toml");
    let _ = config;
    let _ = ctx;
    Ok(())
}

fn main() {}
