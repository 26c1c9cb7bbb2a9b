use workflow::prelude::*;

#[activity]
async fn result_alias(_ctx: ActivityContext) -> std::io::Result<u32> {
    Ok(1)
}

fn main() {}
