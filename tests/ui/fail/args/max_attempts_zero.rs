use workflow::prelude::*;

#[activity(retry(max_attempts = 0))]
async fn max_attempts_zero(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
