use std::borrow::Cow;

use workflow::prelude::*;

#[workflow]
async fn lifetime<'a>(_ctx: WorkflowContext, name: Cow<'a, str>) -> Result<usize, WorkflowError> {
    Ok(name.len())
}

fn main() {}
