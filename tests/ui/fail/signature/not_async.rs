use workflow::prelude::*;

#[activity]
fn not_async(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n)
}

fn main() {}
