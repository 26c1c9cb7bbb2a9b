use workflow::prelude::*;

#[activity]
async fn opt_out_in_activity(_ctx: ActivityContext) -> Result<u64, ActivityError> {
    #[nondeterministic(reason = "activities need no opt-out")]
    let now = std::time::SystemTime::now();
    Ok(now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

fn main() {}
