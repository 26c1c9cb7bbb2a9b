use workflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    tenant: String,
}

fn by_number(n: &u32) -> String {
    n.to_string()
}

// A key of another input type.
#[activity(concurrency(limit = 2, key = by_number))]
async fn wrong_input(_ctx: ActivityContext, order: Order) -> Result<(), ActivityError> {
    let _ = order.tenant;
    Ok(())
}

// A key that is not text.
#[activity(concurrency(limit = 2, key = |order: &Order| order.tenant.len()))]
async fn not_text(_ctx: ActivityContext, order: Order) -> Result<(), ActivityError> {
    let _ = order.tenant;
    Ok(())
}

// A workflow's key of another input type.
#[workflow(rate(limit = "5/1s", key = by_number))]
async fn wrong_workflow_input(_ctx: WorkflowContext, order: Order) -> Result<(), WorkflowError> {
    let _ = order.tenant;
    Ok(())
}

fn main() {}
