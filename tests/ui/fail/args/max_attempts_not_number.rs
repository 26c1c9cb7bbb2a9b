use workflow::prelude::*;

#[activity(retry(max_attempts = "x"))]
async fn max_attempts_not_number(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
