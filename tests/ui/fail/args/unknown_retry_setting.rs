use workflow::prelude::*;

#[activity(retry(attempts = 3))]
async fn unknown_retry_setting(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
