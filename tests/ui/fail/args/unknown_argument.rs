use workflow::prelude::*;

#[activity(colour = "red")]
async fn unknown_argument(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
