use workflow::prelude::*;

#[activity(priority = 5)]
async fn priority_on_activity(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
