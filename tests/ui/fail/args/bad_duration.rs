use workflow::prelude::*;

#[activity(retry(first_interval = "5 minutes"))]
async fn bad_duration(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
