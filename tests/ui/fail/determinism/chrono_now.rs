use workflow::prelude::*;

/// A stand-in for the `chrono` crate, which this test does not depend on.
mod chrono {
    pub struct Utc;
    impl Utc {
        pub fn now() -> u64 {
            0
        }
    }
}

#[workflow]
async fn chrono_now(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let today = chrono::Utc::now();
    let _ = today;
    let _ = ctx;
    Ok(())
}

fn main() {}
