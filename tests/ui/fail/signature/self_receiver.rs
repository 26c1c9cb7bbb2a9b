use workflow::prelude::*;

pub struct Billing;

impl Billing {
    #[activity]
    async fn charge(&self, _ctx: ActivityContext, cents: u64) -> Result<u64, ActivityError> {
        Ok(cents)
    }
}

fn main() {}
