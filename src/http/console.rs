//! An operator's console in the browser (feature `console`): pages for instances, one instance
//! (its history as a timeline, its diagram as a picture, its children), queues and schedules,
//! refreshed live, with confirmed actions (suspend, resume, terminate, raise an event, rerun,
//! purge, and pause, resume or trigger a schedule).
//!
//! [`console`] returns a router that serves the page and its script and style (compiled into the
//! crate: no Node, no build step, nothing fetched from elsewhere at run time) and, under `api/`,
//! the HTTP API of [`router_with`](super::router_with) that the page calls, so every action goes
//! through the same validated client calls. Mount it under any prefix:
//!
//! ```no_run
//! # async fn demo(client: workflow::Client) {
//! let app = axum::Router::new().nest("/console", workflow::http::console(client));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! Open it at the prefix itself (`http://127.0.0.1:8080/console`): axum's `nest` does not route
//! `/console/`, with a trailing slash, to it. Behind a reverse proxy that serves it under a prefix
//! of its own and strips that prefix, have the proxy send `X-Forwarded-Prefix` (the prefix it
//! strips): the page then asks for its script, style and API under it.
//!
//! # Security
//!
//! Like the HTTP API, the console has no authentication of its own: anyone who can reach it can
//! read every instance's input and output and, unless it is read-only, act on them. Put it behind
//! your own authentication layer (the [`http`](super) module shows a bearer-token middleware; for
//! a browser, a session cookie or a reverse proxy doing single sign-on fits better), or serve it
//! read-only ([`RouterOptions::read_only`]: the page offers no actions and the API it mounts
//! answers 404 to every change). The page writes every value it shows as text, never as markup,
//! and is served with a Content-Security-Policy that lets it load only its own script, style and
//! pictures.

use axum::extract::OriginalUri;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use workflow_core::Client;

use super::{router_with, RouterOptions};

/// The page, with `{{BASE}}` where its base path goes and `{{READ_ONLY}}` where it learns whether
/// it may act.
const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// What the page may load: its own script, style and pictures (the diagrams), and calls to its
/// own API; it may not be framed.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console with the default [`RouterOptions`] (actions allowed).
pub fn console(client: Client) -> Router {
    console_with(client, RouterOptions::default())
}

/// The console with `options` for the API it mounts; with [`RouterOptions::read_only`] the page
/// shows no actions and the API takes none.
pub fn console_with(client: Client, options: RouterOptions) -> Router {
    let read_only = options.read_only;
    Router::new()
        .route("/", get(move |uri: OriginalUri, headers: HeaderMap| async move { page(&uri, &headers, read_only) }))
        .route("/console.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/console.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .nest("/api", router_with(client, options))
}

/// The page, with the path it was read at (ending in `/`) written in as the base of its script,
/// style and API calls, so they resolve under the prefix the console is mounted at, whatever
/// that is (its own links are fragments: `#/instance/ID`). Behind a reverse proxy that strips a
/// prefix of its own, the proxy's `X-Forwarded-Prefix` header (a path) goes in front.
fn page(uri: &OriginalUri, headers: &HeaderMap, read_only: bool) -> Response {
    let path = uri.path();
    let forwarded = headers
        .get("x-forwarded-prefix")
        .and_then(|value| value.to_str().ok())
        .map(|prefix| prefix.trim().trim_end_matches('/'))
        .filter(|prefix| prefix.starts_with('/') && !prefix.contains(['"', '<', '>', '?', '#', ' ']))
        .unwrap_or("");
    let base = if path.ends_with('/') { format!("{forwarded}{path}") } else { format!("{forwarded}{path}/") };
    let html =
        PAGE.replace("{{BASE}}", &attribute(&base)).replace("{{READ_ONLY}}", if read_only { "true" } else { "false" });
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (headers, html).into_response()
}

/// `text` as an HTML attribute value.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, body).into_response()
}
