use workflow::prelude::*;

#[activity(start_to_close = 30)]
async fn duration_not_string(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
