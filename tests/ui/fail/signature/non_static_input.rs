use std::borrow::Cow;

use workflow::prelude::*;

#[activity]
async fn non_static_input(_ctx: ActivityContext, name: Cow<'_, str>) -> Result<usize, ActivityError> {
    Ok(name.len())
}

fn main() {}
