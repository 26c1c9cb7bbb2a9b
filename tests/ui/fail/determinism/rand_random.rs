use workflow::prelude::*;

/// A stand-in for the `rand` crate, which this test does not depend on.
mod rand {
    pub fn random<T: Default>() -> T {
        T::default()
    }
}

#[workflow]
async fn rand_random(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let roll: u8 = rand::random();
    let _ = roll;
    let _ = ctx;
    Ok(())
}

fn main() {}
