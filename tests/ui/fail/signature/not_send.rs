use std::marker::PhantomData;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Serialize, Deserialize)]
pub struct NotSend {
    pub id: u32,
    #[serde(skip)]
    pub local: PhantomData<Rc<()>>,
}

#[activity]
async fn not_send(_ctx: ActivityContext, input: NotSend) -> Result<u32, ActivityError> {
    Ok(input.id)
}

fn main() {}
