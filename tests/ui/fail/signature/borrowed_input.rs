use workflow::prelude::*;

#[activity]
async fn borrowed_input(_ctx: ActivityContext, name: &str) -> Result<usize, ActivityError> {
    Ok(name.len())
}

fn main() {}
