use workflow::prelude::*;

#[workflow]
async fn not_result(_ctx: WorkflowContext, n: u32) -> u32 {
    n
}

fn main() {}
