use workflow::prelude::*;

#[activity]
async fn no_params() -> Result<u32, ActivityError> {
    Ok(1)
}

fn main() {}
