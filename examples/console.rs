//! The operator's console: a runtime on SQLite starts a few workflows (some complete, one
//! fails after its retries, some wait for an approval event, a parent runs children, a capped
//! activity keeps a queue, a schedule fires every ten seconds) and serves the console in the
//! browser. Open the printed URL; approve an order from its page with "Raise event…" (name
//! `approval`, payload `true`), terminate one, rerun a failed one.
//!
//! Run: `cargo run --features console --example console` (SQLite file in a temporary directory;
//! `WORKFLOW_CONSOLE_ADDR` picks the address, 127.0.0.1:8080 by default, a free port if taken).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    items: Vec<String>,
    total_cents: u64,
}

#[activity]
async fn reserve(_ctx: ActivityContext, item: String) -> Result<String, ActivityError> {
    tokio::time::sleep(Duration::from_millis(150)).await;
    Ok(format!("reserved {item}"))
}

#[activity(retry(max_attempts = 3, first_interval = "200ms"))]
async fn charge(_ctx: ActivityContext, order: Order) -> Result<String, ActivityError> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    if order.total_cents > 100_000 {
        return Err(ActivityError::new(format!("card declined for {} cents", order.total_cents)));
    }
    Ok(format!("charged {} cents", order.total_cents))
}

/// At most one at a time across workers: calls queue behind it.
#[activity(concurrency = 1)]
async fn print_label(_ctx: ActivityContext, order_id: String) -> Result<String, ActivityError> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(format!("label for {order_id}"))
}

#[workflow]
async fn fulfil_order(ctx: WorkflowContext, order: Order) -> Result<String, WorkflowError> {
    ctx.set_custom_status(&"reserving");
    reserve::fan_out(&ctx, order.items.clone()).await?;
    ctx.set_custom_status(&"charging");
    let charged = charge::call(&ctx, order.clone()).await?;
    if order.total_cents > 50_000 {
        ctx.set_custom_status(&"waiting for a manager's approval");
        let approved: bool = ctx.wait_for_event("approval").await?;
        if !approved {
            return Err(WorkflowError::msg("rejected by a manager"));
        }
    }
    ctx.set_custom_status(&"printing the label");
    print_label::call(&ctx, order.id.clone()).await?;
    ctx.set_custom_status(&"shipped");
    Ok(charged)
}

#[workflow]
async fn nightly_batch(ctx: WorkflowContext, orders: Vec<Order>) -> Result<usize, WorkflowError> {
    let done = fulfil_order::fan_out(&ctx, orders).max_parallel(2).await?;
    Ok(done.len())
}

#[workflow]
async fn heartbeat(ctx: WorkflowContext, note: String) -> Result<String, WorkflowError> {
    ctx.sleep(Duration::from_millis(500)).await?;
    Ok(note)
}

fn order(id: &str, items: &[&str], total_cents: u64) -> Order {
    Order { id: id.to_owned(), items: items.iter().map(|item| (*item).to_owned()).collect(), total_cents }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("workflow-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let runtime = Runtime::builder()
        .store(SqliteStore::open(&url).await?)
        .workflow(fulfil_order::Workflow)
        .workflow(nightly_batch::Workflow)
        .workflow(heartbeat::Workflow)
        .activity(reserve::Activity)
        .activity(charge::Activity)
        .activity(print_label::Activity)
        .schedule(Schedule::of::<heartbeat::Workflow>("heartbeat", "*/10 * * * * *", &"still here".to_owned()))
        .build()
        .await?;
    let client = runtime.client();

    let orders = [
        order("order-1001", &["lamp", "desk"], 12_900),
        order("order-1002", &["chair"], 7_450),
        order("order-1003", &["piano"], 250_000),
        order("order-1004", &["sofa", "rug", "cushion"], 64_000),
        order("order-1005", &["bookcase"], 88_000),
        order("order-1006", &["mug"], 1_200),
    ];
    for order in &orders {
        fulfil_order::start(&client, order.clone()).id(order.id.as_str()).await?;
    }
    let batch = vec![order("order-2001", &["pen"], 300), order("order-2002", &["ink", "paper"], 900)];
    nightly_batch::start(&client, batch).id("batch-2026-12-04").await?;
    // One whose input shows how the console writes what it reads: as text, never as markup.
    fulfil_order::start(&client, order("<script>alert('xss')</script>", &["<b>bold</b>"], 500)).await?;

    let wanted = std::env::var("WORKFLOW_CONSOLE_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let listener = match tokio::net::TcpListener::bind(&wanted).await {
        Ok(listener) => listener,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    };
    let app = axum::Router::new().nest("/console", workflow::http::console(client));
    println!("console: http://{}/console/", listener.local_addr()?);
    println!("(order-1004 and order-1005 wait for an `approval` event; order-1003 fails; Ctrl-C stops)");
    // Serves until the process is stopped; what runs is in the store, so stopping loses nothing.
    axum::serve(listener, app).await?;
    drop(runtime);
    Ok(())
}
