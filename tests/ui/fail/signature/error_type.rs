use workflow::prelude::*;

#[activity]
async fn error_type(_ctx: ActivityContext, n: u32) -> Result<u32, String> {
    Ok(n)
}

fn main() {}
