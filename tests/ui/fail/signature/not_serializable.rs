use workflow::prelude::*;

pub struct NotSerde;

#[activity]
async fn not_serializable(_ctx: ActivityContext, _input: NotSerde) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
