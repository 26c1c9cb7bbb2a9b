use workflow::prelude::*;

#[activity]
async fn two_inputs(_ctx: ActivityContext, a: u32, b: u32) -> Result<u32, ActivityError> {
    Ok(a + b)
}

fn main() {}
