use workflow::prelude::*;

/// A stand-in for the `uuid` crate, which this test does not depend on.
struct Uuid;

impl Uuid {
    fn new_v4() -> u128 {
        0
    }
}

#[workflow]
async fn uuid_new_v4(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let id = Uuid::new_v4();
    let _ = id;
    let _ = ctx;
    Ok(())
}

fn main() {}
