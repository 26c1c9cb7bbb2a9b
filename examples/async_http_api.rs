//! Async HTTP APIs (Dapr's third pattern): a long-running workflow is started over HTTP, which
//! answers 202 at once; the caller then polls the status route until the workflow has finished.
//! The routes and JSON are Dapr's, so the same `curl` calls work against this server:
//!
//! ```text
//! curl -i -X POST 'http://HOST/v1.0/workflows/dapr/process_order/start?instanceID=order-1' -d '{"item":"book","quantity":3}'
//! curl -s 'http://HOST/v1.0/workflows/dapr/order-1'
//! ```
//!
//! Run: `cargo run --features http --example async_http_api` (SQLite file in a temporary
//! directory, a server on a free local port, and an HTTP client that drives it and prints each
//! response).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    item: String,
    quantity: u32,
}

/// Slow on purpose: the point of the pattern is that the caller does not wait on the request.
#[activity]
async fn check_stock(_ctx: ActivityContext, order: Order) -> Result<bool, ActivityError> {
    tokio::time::sleep(Duration::from_millis(400)).await;
    Ok(order.quantity <= 10)
}

#[activity]
async fn ship(_ctx: ActivityContext, order: Order) -> Result<String, ActivityError> {
    tokio::time::sleep(Duration::from_millis(400)).await;
    Ok(format!("shipped {} x {}", order.quantity, order.item))
}

#[workflow]
async fn process_order(ctx: WorkflowContext, order: Order) -> Result<String, WorkflowError> {
    ctx.set_custom_status(&"checking stock");
    if !check_stock::call(&ctx, order.clone()).await? {
        return Err(WorkflowError::msg(format!("not enough {} in stock", order.item)));
    }
    ctx.set_custom_status(&"shipping");
    let shipped = ship::call(&ctx, order).await?;
    ctx.set_custom_status(&"done");
    Ok(shipped)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("workflow-async-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let runtime = Runtime::builder()
        .store(SqliteStore::open(&url).await?)
        .workflow(process_order::Workflow)
        .activity(check_stock::Activity)
        .activity(ship::Activity)
        .build()
        .await?;

    // The router is an ordinary axum Router: mount it beside your own routes.
    let app = workflow::http::router(runtime.client());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/v1.0/workflows/dapr", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving Dapr's workflow routes at {base}");

    let http = reqwest::Client::new();
    let start = format!("{base}/process_order/start?instanceID=order-1");
    println!("POST {start}");
    let response = http.post(&start).body(r#"{"item":"book","quantity":3}"#).send().await?;
    println!("  {} {}", response.status(), response.text().await?);

    let status_url = format!("{base}/order-1");
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let response = http.get(&status_url).send().await?;
        let code = response.status();
        let body: serde_json::Value = response.json().await?;
        let status = body["runtimeStatus"].as_str().unwrap_or("?").to_owned();
        println!("GET {status_url}\n  {code} {body}");
        if matches!(status.as_str(), "COMPLETED" | "FAILED" | "TERMINATED") {
            break;
        }
    }

    let missing = http.get(format!("{base}/no-such-order")).send().await?;
    println!("GET {base}/no-such-order\n  {} {}", missing.status(), missing.text().await?);

    server.abort();
    runtime.shutdown(Duration::from_secs(5)).await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
