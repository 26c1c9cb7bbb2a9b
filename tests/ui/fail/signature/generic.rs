use workflow::prelude::*;

#[activity]
async fn generic<T: serde::Serialize>(_ctx: ActivityContext, input: T) -> Result<(), ActivityError> {
    let _ = input;
    Ok(())
}

fn main() {}
