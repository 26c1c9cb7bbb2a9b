use workflow::prelude::*;

#[activity(retry(backoff = 0.5))]
async fn backoff_below_one(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
