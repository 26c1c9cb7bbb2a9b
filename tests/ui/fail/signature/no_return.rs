use workflow::prelude::*;

#[activity]
async fn no_return(_ctx: ActivityContext, _n: u32) {}

fn main() {}
