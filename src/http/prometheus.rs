//! The engine's metrics ([`crate::metrics`]) in the Prometheus text format, for a scraper: install
//! the recorder once per process, then mount the route beside the HTTP API (behind the same auth
//! layer as the rest, if any).
//!
//! ```no_run
//! # async fn serve(client: workflow::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = workflow::http::install_prometheus()?;
//! let app = workflow::http::router(client).merge(workflow::http::prometheus(metrics));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs a Prometheus recorder as the process's metrics recorder and returns its handle
/// (what [`prometheus`] renders). Fails if the process has a recorder already.
pub fn install_prometheus() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new().install_recorder()
}

/// A router serving `GET /metrics`: what `handle` has recorded, in the Prometheus text format.
pub fn prometheus(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response() }
        }),
    )
}
