use workflow::prelude::*;

/// A stand-in for the `rand` crate, which this test does not depend on.
mod rand {
    pub fn thread_rng() -> u64 {
        4
    }
}

#[workflow]
async fn rand_thread_rng(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let rng = rand::thread_rng();
    let _ = rng;
    let _ = ctx;
    Ok(())
}

fn main() {}
