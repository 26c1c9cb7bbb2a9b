//! A Dapr-compatible HTTP API for workflows (feature `http`): an axum [`Router`] to mount in
//! your own server, on Dapr's workflow routes and JSON shapes, so scripts written against Dapr's
//! documented `curl` calls work unchanged.
//!
//! | route | does | answers |
//! |---|---|---|
//! | `POST /v1.0/workflows/{component}/{workflowName}/start[?instanceID=&priority=&delayMs=&debounce=&maxWaitMs=]` (body: input JSON) | start | 202 `{"instanceID": ...}` |
//! | `GET /v1.0/workflows/{component}/{instanceId}` | status | 200 status JSON |
//! | `POST .../{instanceId}/terminate[?non_recursive=true]` (optional body: reason) | terminate | 202 |
//! | `POST .../{instanceId}/raiseEvent/{eventName}` (body: event JSON) | raise an event | 202 |
//! | `POST .../{instanceId}/pause`, `.../resume` | suspend, resume | 202 |
//! | `POST .../{instanceId}/purge[?non_recursive=true]` | purge | 202 |
//! | `GET .../{instanceId}/diagram` | the Mermaid diagram (`text/plain`) | 200 |
//! | `GET .../{instanceId}/diagram.svg` (ours) | the same diagram as a picture (`image/svg+xml`) | 200 |
//! | `GET .../{instanceId}/diagram.txt` (ours) | the same diagram as text for a terminal (`text/plain`) | 200 |
//! | `GET .../{instanceId}/history[?offset=&limit=]` (ours) | the instance's history, a page of it: its creation, each journaled step, the events waiting in its inbox, its status | 200 `{"history": [...], "total": N}` |
//! | `POST .../{instanceId}/rerun?fromStep=N[&newInstanceID=]` (ours; body: a new input, or empty for the source's) | fork a finished instance, replaying its steps before `N` | 202 `{"instanceID": ...}` |
//! | `GET .../{instanceId}/activities` (ours) | its activity calls in the task queue, waiting or running, with the limits they wait behind | 200 JSON list |
//! | `GET /v1.0/workflows/{component}?runtimeStatus=&workflowName=&parentInstanceID=&createdAfter=&createdBefore=&order=&pageSize=&continuationToken=&omitPayloads=` | list (`order=newest` for newest first; times in ms since the epoch) | 200 |
//! | `GET /v1.0/instanceCounts[?atMost=]` (ours) | how many instances have each status, each counted up to `atMost` (10,000 by default; a count equal to it reads "at least") | 200 `{"counts": {"RUNNING": n, ...}, "atMost": n}` |
//! | `GET /v1.0/queues` (ours) | every queue of work: per activity and concurrency key its attempts waiting and held, per workflow and key its Pending and Running instances, with the limits each waits behind | 200 JSON list |
//! | `GET`, `POST`, `PUT`, `DELETE /v1.0/schedules/{scheduleId}`, `POST .../pause`, `.../resume`, `.../trigger`, `GET /v1.0/schedules` (ours) | manage schedules (see the `schedules` routes below) | 200, 201, 202 |
//!
//! The same routes answer under `/v1.0-alpha1` and `/v1.0-beta1`, as Dapr's do. The component
//! name is accepted and ignored (Dapr's is `dapr`). Errors are JSON `{"errorCode", "message"}`:
//! 400 for a bad request (an instance id, workflow or event name that cannot exist, such as one
//! with a NUL), 404 for an unknown instance, 409 for an instance in the wrong state or an id that
//! is taken, 413 for a body over the limit ([`RouterOptions::body_limit`], 2 MiB by default; set
//! it with [`router_with`]), 413 too for a payload over the runtime's
//! [`Limits::max_payload_bytes`](workflow_core::Limits::max_payload_bytes), 429 for a raise into
//! a full inbox ([`Limits::max_inbox_events`](workflow_core::Limits::max_inbox_events)). An empty
//! start body is no input (`null`). A start's `traceparent` header (W3C trace context) is stored
//! with the instance, whose status JSON carries its `traceparent`. `priority` (an extension of ours: a 32-bit integer, higher is
//! claimed first when work is backlogged) defaults to the workflow's; the status JSON carries it
//! as `priority`. `debounce=KEY&delayMs=N[&maxWaitMs=M]` (ours too) debounces the start
//! (`Start::debounce`): the answer names the instance the starts of that key collapse into;
//! `delayMs=N` without `debounce` delays the start by N ms (`Start::delay`: Pending, with its due
//! time as `wakeAt`, until then). A list with `omitPayloads=true` leaves out each instance's
//! input, output and custom status (they are not even read).
//!
//! # Security: the router has no authentication
//!
//! Anyone who can reach these routes can start, terminate, purge and read every instance,
//! inputs and outputs included. The router checks nothing about who calls it: put it behind your
//! own authentication and authorization (an axum middleware or a tower layer, as below, or a
//! reverse proxy), serve it on a private interface only, or mount the read-only variant
//! ([`RouterOptions::read_only`]: its GET routes only) where callers should only look. Requests
//! are bounded ([`RouterOptions::body_limit`], the runtime's [`Limits`](workflow_core::Limits)),
//! but not rate limited.
//!
//! ```no_run
//! use axum::extract::Request;
//! use axum::http::{header, HeaderMap, StatusCode};
//! use axum::middleware::{self, Next};
//! use axum::response::Response;
//!
//! /// Lets through requests that carry the expected bearer token.
//! async fn require_token(request: Request, next: Next) -> Result<Response, StatusCode> {
//!     let expected = std::env::var("WORKFLOW_API_TOKEN").map_err(|_| StatusCode::UNAUTHORIZED)?;
//!     let given = request.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
//!     match given.and_then(|value| value.strip_prefix("Bearer ")) {
//!         Some(token) if !expected.is_empty() && token == expected => Ok(next.run(request).await),
//!         _ => Err(StatusCode::UNAUTHORIZED),
//!     }
//! }
//!
//! # async fn demo(client: workflow::Client) {
//! let app = workflow::http::router(client).layer(middleware::from_fn(require_token));
//! # let _ = app;
//! # }
//! ```

#[cfg(feature = "console")]
mod console;
#[cfg(feature = "prometheus")]
mod prometheus;
mod schedules;

#[cfg(feature = "console")]
pub use console::{console, console_with};
#[cfg(feature = "prometheus")]
pub use prometheus::{install_prometheus, prometheus};
pub use schedules::schedule_json;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use workflow_core::{
    rfc3339, Client, Error, HistoryEvent, InstanceStatus, ListFilter, QueueKind, QueueStatus, QueuedState,
    RuntimeStatus,
};

/// How the router is set up ([`router_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterOptions {
    /// The largest request body accepted, in bytes (2 MiB by default); a larger one answers 413
    /// with the JSON error body.
    pub body_limit: usize,
    /// Serve the GET routes only (status, diagram, list): every route that changes something
    /// (start, terminate, raise, pause, resume, purge) answers 404. False by default.
    pub read_only: bool,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self { body_limit: 2 * 1024 * 1024, read_only: false }
    }
}

impl RouterOptions {
    /// Sets the largest request body accepted, in bytes.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Serves the GET routes only (see [`RouterOptions::read_only`](#structfield.read_only)),
    /// for callers who should look but not change anything.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
}

/// The routes, served with `client` (use [`Runtime::client`](workflow_core::Runtime::client)
/// to start instances on a local runtime), with the default [`RouterOptions`]. Mount it with
/// `Router::merge` or serve it alone.
pub fn router(client: Client) -> Router {
    router_with(client, RouterOptions::default())
}

/// [`router`] with options.
pub fn router_with(client: Client, options: RouterOptions) -> Router {
    let mut api = Router::new()
        .route("/workflows/{component}", get(list))
        .route("/workflows/{component}/{id}", get(status))
        .route("/workflows/{component}/{id}/diagram", get(diagram))
        .route("/workflows/{component}/{id}/diagram.svg", get(diagram_svg))
        .route("/workflows/{component}/{id}/diagram.txt", get(diagram_text))
        .route("/workflows/{component}/{id}/activities", get(queued_activities))
        .route("/workflows/{component}/{id}/history", get(history))
        .route("/queues", get(queues))
        .route("/instanceCounts", get(instance_counts))
        .route("/schedules", get(schedules::list))
        .route("/schedules/{id}", get(schedules::describe));
    if !options.read_only {
        api = api
            .route("/workflows/{component}/{id}/start", post(start))
            .route("/workflows/{component}/{id}/terminate", post(terminate))
            .route("/workflows/{component}/{id}/raiseEvent/{event}", post(raise_event))
            .route("/workflows/{component}/{id}/pause", post(pause))
            .route("/workflows/{component}/{id}/resume", post(resume))
            .route("/workflows/{component}/{id}/purge", post(purge))
            .route("/workflows/{component}/{id}/rerun", post(rerun))
            .route("/schedules/{id}", post(schedules::create).put(schedules::update).delete(schedules::delete))
            .route("/schedules/{id}/pause", post(schedules::pause))
            .route("/schedules/{id}/resume", post(schedules::resume))
            .route("/schedules/{id}/trigger", post(schedules::trigger));
    }
    let api = api.layer(DefaultBodyLimit::max(options.body_limit)).with_state(client);
    Router::new().nest("/v1.0", api.clone()).nest("/v1.0-beta1", api.clone()).nest("/v1.0-alpha1", api).fallback(
        || async { problem(StatusCode::NOT_FOUND, "ERR_NOT_FOUND", "no such route".to_owned()).into_response() },
    )
}

/// Dapr's name of a runtime status.
pub fn dapr_status_name(status: RuntimeStatus) -> &'static str {
    match status {
        RuntimeStatus::Pending => "PENDING",
        RuntimeStatus::Running => "RUNNING",
        RuntimeStatus::Suspended => "SUSPENDED",
        RuntimeStatus::Completed => "COMPLETED",
        RuntimeStatus::Failed => "FAILED",
        RuntimeStatus::Terminated => "TERMINATED",
        RuntimeStatus::ContinuedAsNew => "CONTINUED_AS_NEW",
    }
}

/// Parses Dapr's (or our) name of a runtime status, ignoring case.
fn parse_status(name: &str) -> Option<RuntimeStatus> {
    RuntimeStatus::ALL.into_iter().find(|status| {
        dapr_status_name(*status).eq_ignore_ascii_case(name) || status.as_str().eq_ignore_ascii_case(name)
    })
}

/// The status JSON Dapr returns for an instance.
pub fn status_json(status: &InstanceStatus) -> Value {
    let mut properties = Map::new();
    properties.insert("dapr.workflow.input".into(), Value::String(status.input.clone()));
    if let Some(output) = &status.output {
        properties.insert("dapr.workflow.output".into(), Value::String(output.clone()));
    }
    if let Some(custom) = &status.custom_status {
        properties.insert("dapr.workflow.custom_status".into(), Value::String(custom.clone()));
    }
    if let Some(failure) = &status.failure {
        properties.insert("dapr.workflow.failure.error_type".into(), Value::String(failure.error_type.clone()));
        properties.insert("dapr.workflow.failure.error_message".into(), Value::String(failure.message.clone()));
    }
    json!({
        "instanceID": status.instance_id,
        "workflowName": status.workflow,
        "createdAt": rfc3339(status.created_at),
        "lastUpdatedAt": rfc3339(status.updated_at),
        "runtimeStatus": dapr_status_name(status.status),
        "parentInstanceID": status.parent_id,
        "priority": status.priority,
        "concurrencyKey": status.concurrency_key,
        "wakeAt": status.wake_at.map(rfc3339),
        "limits": status.limits,
        "nextStartAt": status.next_start_at.map(rfc3339),
        "traceparent": status.trace_context,
        "properties": properties,
    })
}

/// An instance as a list shows it: [`status_json`], without the payload properties when the
/// list left them out.
pub fn listed_json(status: &InstanceStatus, filter: &ListFilter) -> Value {
    let mut json = status_json(status);
    if filter.without_payloads {
        if let Some(properties) = json.get_mut("properties").and_then(Value::as_object_mut) {
            for payload in ["dapr.workflow.input", "dapr.workflow.output", "dapr.workflow.custom_status"] {
                properties.remove(payload);
            }
        }
    }
    json
}

/// An error answer: the HTTP status and Dapr-style `{"errorCode", "message"}` body.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "errorCode": self.code, "message": self.message }))).into_response()
    }
}

fn problem(status: StatusCode, code: &'static str, message: String) -> ApiError {
    ApiError { status, code, message }
}

fn error_response(error: Error) -> ApiError {
    let (code, error_code) = match &error {
        Error::InstanceNotFound(_) => (StatusCode::NOT_FOUND, "ERR_INSTANCE_ID_NOT_FOUND"),
        Error::ScheduleNotFound(_) => (StatusCode::NOT_FOUND, "ERR_SCHEDULE_NOT_FOUND"),
        Error::ScheduleExists(_) => (StatusCode::CONFLICT, "ERR_SCHEDULE_EXISTS"),
        Error::InvalidInstanceId { .. } => (StatusCode::BAD_REQUEST, "ERR_INSTANCE_ID_INVALID"),
        Error::UnknownWorkflow(_) => (StatusCode::BAD_REQUEST, "ERR_WORKFLOW_NAME_INVALID"),
        Error::InvalidInput { .. } | Error::InvalidArgument(_) | Error::Serialization(_) => {
            (StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST")
        }
        Error::InstanceExists(_) => (StatusCode::CONFLICT, "ERR_INSTANCE_ID_EXISTS"),
        Error::InstanceFinished(_) | Error::NotSuspended { .. } | Error::NotFinished { .. } => {
            (StatusCode::CONFLICT, "ERR_INSTANCE_STATE")
        }
        Error::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "ERR_PAYLOAD_TOO_LARGE"),
        Error::InboxFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "ERR_INBOX_FULL"),
        Error::ShutDown => (StatusCode::SERVICE_UNAVAILABLE, "ERR_SHUT_DOWN"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "ERR_WORKFLOW_INTERNAL"),
    };
    problem(code, error_code, error.to_string())
}

fn bad_request(message: impl std::fmt::Display) -> ApiError {
    problem(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", message.to_string())
}

type Body = Result<Bytes, BytesRejection>;

/// A JSON body as text; an empty body is `null`. A body over the router's limit is a JSON 413.
fn json_body(body: &Body, what: &str) -> Result<String, ApiError> {
    let body = body.as_ref().map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ERR_BODY_TOO_LARGE",
            format!("the {what} is larger than the router's body limit"),
        ),
        status => {
            problem(status, "ERR_MALFORMED_REQUEST", format!("the {what} could not be read: {}", rejection.body_text()))
        }
    })?;
    let text = std::str::from_utf8(body).map_err(|_| bad_request(format!("the {what} is not UTF-8")))?;
    if text.trim().is_empty() {
        return Ok("null".to_owned());
    }
    serde_json::from_str::<Value>(text).map_err(|e| bad_request(format!("the {what} is not valid JSON: {e}")))?;
    Ok(text.to_owned())
}

type PathOf<T> = Result<Path<T>, PathRejection>;
type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

fn path<T>(path: PathOf<T>) -> Result<T, ApiError> {
    path.map(|Path(value)| value).map_err(bad_request)
}

fn query(query: QueryMap) -> Result<HashMap<String, String>, ApiError> {
    query.map(|Query(map)| map).map_err(bad_request)
}

fn flag(query: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match query.get(name).map(String::as_str) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
        Some(v) => Err(bad_request(format!("`{name}` must be true or false, got {v:?}"))),
    }
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// Runs a handler body whose early exits are responses.
async fn respond(body: impl std::future::Future<Output = Result<Response, ApiError>>) -> Response {
    body.await.unwrap_or_else(IntoResponse::into_response)
}

async fn start(
    State(client): State<Client>,
    params: PathOf<(String, String)>,
    params_query: QueryMap,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(async {
        let (_component, workflow) = path(params)?;
        let query = query(params_query)?;
        let input = json_body(&body, "input")?;
        let mut start = client.start_untyped(&workflow, input);
        if let Some(id) = query.get("instanceID").or_else(|| query.get("instanceId")) {
            start = start.id(id);
        }
        // The caller's trace continues in the instance (W3C trace context).
        if let Some(traceparent) = headers.get("traceparent") {
            let traceparent =
                traceparent.to_str().map_err(|_| bad_request("the traceparent header is not visible ASCII"))?;
            start = start.trace_parent(traceparent);
        }
        if let Some(priority) = query.get("priority") {
            let priority = priority
                .parse::<i32>()
                .map_err(|_| bad_request(format!("`priority` must be a 32-bit integer, got {priority:?}")))?;
            start = start.priority(priority);
        }
        let millis = |name: &str| -> Result<Option<std::time::Duration>, ApiError> {
            query
                .get(name)
                .map(|ms| {
                    ms.parse::<u64>().map(std::time::Duration::from_millis).map_err(|_| {
                        bad_request(format!("`{name}` must be a whole number of milliseconds, got {ms:?}"))
                    })
                })
                .transpose()
        };
        let (delay, max_wait) = (millis("delayMs")?, millis("maxWaitMs")?);
        match (query.get("debounce"), delay) {
            (Some(key), Some(delay)) => {
                start = start.debounce(key, delay);
                if let Some(max_wait) = max_wait {
                    start = start.max_wait(max_wait);
                }
            }
            (Some(_), None) => return Err(bad_request("`debounce` needs `delayMs`")),
            (None, _) if max_wait.is_some() => return Err(bad_request("`maxWaitMs` goes with `debounce`")),
            (None, Some(delay)) => start = start.delay(delay),
            (None, None) => {}
        }
        let handle = start.await.map_err(error_response)?;
        Ok((StatusCode::ACCEPTED, Json(json!({ "instanceID": handle.instance_id() }))).into_response())
    })
    .await
}

async fn status(State(client): State<Client>, params: PathOf<(String, String)>) -> Response {
    respond(async {
        let (_component, id) = path(params)?;
        let status = client.status(&id).await.map_err(error_response)?;
        Ok(Json(status_json(&status)).into_response())
    })
    .await
}

async fn terminate(
    State(client): State<Client>,
    params: PathOf<(String, String)>,
    params_query: QueryMap,
    body: Body,
) -> Response {
    respond(async {
        let (_component, id) = path(params)?;
        let non_recursive = flag(&query(params_query)?, "non_recursive")?;
        let reason = match serde_json::from_str::<Value>(&json_body(&body, "reason")?) {
            Ok(Value::Null) | Err(_) => None,
            Ok(Value::String(text)) => Some(text),
            Ok(other) => Some(other.to_string()),
        };
        client.terminate(&id, reason.as_deref()).recursive(!non_recursive).await.map_err(error_response)?;
        Ok(accepted())
    })
    .await
}

async fn raise_event(State(client): State<Client>, params: PathOf<(String, String, String)>, body: Body) -> Response {
    respond(async {
        let (_component, id, event) = path(params)?;
        let payload = json_body(&body, "event payload")?;
        client.raise_event_untyped(&id, &event, &payload).await.map_err(error_response)?;
        Ok(accepted())
    })
    .await
}

async fn pause(State(client): State<Client>, params: PathOf<(String, String)>) -> Response {
    respond(async {
        let (_component, id) = path(params)?;
        client.suspend(&id, Some("paused over HTTP")).await.map_err(error_response)?;
        Ok(accepted())
    })
    .await
}

async fn resume(State(client): State<Client>, params: PathOf<(String, String)>) -> Response {
    respond(async {
        let (_component, id) = path(params)?;
        client.resume(&id, Some("resumed over HTTP")).await.map_err(error_response)?;
        Ok(accepted())
    })
    .await
}

async fn purge(State(client): State<Client>, params: PathOf<(String, String)>, params_query: QueryMap) -> Response {
    respond(async {
        let (_component, id) = path(params)?;
        let non_recursive = flag(&query(params_query)?, "non_recursive")?;
        client.purge(&id).recursive(!non_recursive).await.map_err(error_response)?;
        Ok(accepted())
    })
    .await
}

async fn queued_activities(State(client): State<Client>, params: PathOf<(String, String)>) -> Response {
    respond(async {
        let (_component, id) = path(params)?;
        let queued = client.queued_activities(&id).await.map_err(error_response)?;
        let list: Vec<Value> = queued
            .iter()
            .map(|call| {
                let (state, worker, lease_until) = match &call.state {
                    QueuedState::Waiting => ("WAITING", None, None),
                    QueuedState::Running { worker, lease_until } => {
                        ("RUNNING", Some(worker.clone()), Some(rfc3339(*lease_until)))
                    }
                    QueuedState::Finished => ("FINISHED", None, None),
                };
                json!({
                    "activity": call.activity,
                    "seq": call.seq,
                    "attempt": call.attempt,
                    "concurrencyKey": call.concurrency_key,
                    "queuedAt": rfc3339(call.queued_at),
                    "state": state,
                    "worker": worker,
                    "leaseUntil": lease_until,
                    "limits": call.limits,
                    "nextStartAt": call.next_start_at.map(rfc3339),
                })
            })
            .collect();
        Ok(Json(Value::Array(list)).into_response())
    })
    .await
}

/// The most history items one page of the history route returns (and its default page).
const MAX_HISTORY_PAGE: usize = 1000;

/// One item of an instance's history as the history route shows it, tagged by `type`
/// (`created`, `step`, `eventBuffered`, `status`).
pub fn history_json(event: &HistoryEvent) -> Value {
    match event {
        HistoryEvent::Created { at, workflow, input } => {
            json!({ "type": "created", "at": rfc3339(*at), "workflowName": workflow, "input": input })
        }
        HistoryEvent::Step(step) => json!({
            "type": "step",
            "seq": step.seq,
            "kind": step.kind.as_str(),
            "name": step.name,
            "status": step.status.as_str(),
            "attempt": step.attempt,
            "input": step.input,
            "payload": step.payload,
            "dueAt": step.due_at.map(rfc3339),
            "recordedAt": rfc3339(step.recorded_at),
            "parallelGroup": step.parallel_group,
        }),
        HistoryEvent::EventBuffered(event) => json!({
            "type": "eventBuffered",
            "eventId": event.event_id,
            "name": event.name,
            "payload": event.payload,
            "at": rfc3339(event.created_at),
        }),
        HistoryEvent::Status(status) => json!({ "type": "status", "status": status_json(status) }),
    }
}

async fn history(State(client): State<Client>, params: PathOf<(String, String)>, params_query: QueryMap) -> Response {
    respond(async {
        let (_component, id) = path(params)?;
        let query = query(params_query)?;
        let number = |name: &str, default: usize| -> Result<usize, ApiError> {
            query.get(name).map_or(Ok(default), |v| {
                v.parse::<usize>().map_err(|_| bad_request(format!("`{name}` must be a whole number, got {v:?}")))
            })
        };
        let (offset, limit) = (number("offset", 0)?, number("limit", MAX_HISTORY_PAGE)?);
        if limit == 0 || limit > MAX_HISTORY_PAGE {
            return Err(bad_request(format!("`limit` must be 1 to {MAX_HISTORY_PAGE}, got {limit}")));
        }
        let history = client.history(&id).await.map_err(error_response)?;
        let page: Vec<Value> = history.iter().skip(offset).take(limit).map(history_json).collect();
        Ok(Json(json!({ "history": page, "total": history.len() })).into_response())
    })
    .await
}

async fn rerun(
    State(client): State<Client>,
    params: PathOf<(String, String)>,
    params_query: QueryMap,
    body: Body,
) -> Response {
    respond(async {
        let (_component, id) = path(params)?;
        let query = query(params_query)?;
        let from_step = query.get("fromStep").ok_or_else(|| bad_request("`fromStep` is required"))?;
        let from_step = from_step
            .parse::<u32>()
            .map_err(|_| bad_request(format!("`fromStep` must be a step's seq (a whole number), got {from_step:?}")))?;
        let empty = body.as_ref().is_ok_and(|bytes| bytes.iter().all(u8::is_ascii_whitespace));
        let input = if empty { None } else { Some(json_body(&body, "input")?) };
        let new_id = query.get("newInstanceID").or_else(|| query.get("newInstanceId"));
        let instance_id =
            client.rerun(&id, from_step, new_id.map(String::as_str), input.as_deref()).await.map_err(error_response)?;
        Ok((StatusCode::ACCEPTED, Json(json!({ "instanceID": instance_id }))).into_response())
    })
    .await
}

/// What [`instance_counts`] counts up to when the request does not say.
const DEFAULT_COUNT_BOUND: u64 = 10_000;

async fn instance_counts(State(client): State<Client>, params_query: QueryMap) -> Response {
    respond(async {
        let query = query(params_query)?;
        let at_most = match query.get("atMost") {
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad_request(format!("`atMost` must be a positive whole number, got {v:?}")))?,
            None => DEFAULT_COUNT_BOUND,
        };
        let counts = client.status_counts(at_most).await.map_err(error_response)?;
        let counts: Map<String, Value> =
            counts.into_iter().map(|(status, n)| (dapr_status_name(status).to_owned(), json!(n))).collect();
        Ok(Json(json!({ "counts": counts, "atMost": at_most })).into_response())
    })
    .await
}

/// A queue as the queues route shows it.
pub fn queue_json(queue: &QueueStatus) -> Value {
    json!({
        "kind": match queue.kind {
            QueueKind::Activity => "activity",
            QueueKind::Workflow => "workflow",
        },
        "name": queue.name,
        "concurrencyKey": queue.concurrency_key,
        "waiting": queue.waiting,
        "running": queue.running,
        "oldestWaitingSince": queue.oldest_waiting.map(rfc3339),
        "limits": queue.limits,
        "nextStartAt": queue.next_start_at.map(rfc3339),
    })
}

async fn queues(State(client): State<Client>) -> Response {
    respond(async {
        let queues = client.queues().await.map_err(error_response)?;
        Ok(Json(Value::Array(queues.iter().map(queue_json).collect())).into_response())
    })
    .await
}

/// How a diagram route draws an instance's journal.
#[derive(Debug, Clone, Copy)]
enum Drawing {
    Mermaid,
    Text,
    Svg,
}

/// An instance's diagram, drawn as `drawing` asks, with its content type; a picture opened on
/// its own may not load or run anything.
async fn drawn(client: &Client, params: PathOf<(String, String)>, drawing: Drawing) -> Response {
    respond(async {
        let (_component, id) = path(params)?;
        let (drawn, content_type) = match drawing {
            Drawing::Mermaid => (client.diagram(&id).await, "text/plain; charset=utf-8"),
            Drawing::Text => (client.diagram_text(&id).await, "text/plain; charset=utf-8"),
            Drawing::Svg => (client.diagram_svg(&id).await, "image/svg+xml; charset=utf-8"),
        };
        let drawn = drawn.map_err(error_response)?;
        let policy = "default-src 'none'; style-src 'unsafe-inline'";
        Ok(([(header::CONTENT_TYPE, content_type), (header::CONTENT_SECURITY_POLICY, policy)], drawn).into_response())
    })
    .await
}

async fn diagram(State(client): State<Client>, params: PathOf<(String, String)>) -> Response {
    drawn(&client, params, Drawing::Mermaid).await
}

async fn diagram_text(State(client): State<Client>, params: PathOf<(String, String)>) -> Response {
    drawn(&client, params, Drawing::Text).await
}

async fn diagram_svg(State(client): State<Client>, params: PathOf<(String, String)>) -> Response {
    drawn(&client, params, Drawing::Svg).await
}

async fn list(State(client): State<Client>, params: PathOf<String>, params_query: QueryMap) -> Response {
    respond(async {
        let _component = path(params)?;
        let query = query(params_query)?;
        let mut filter = ListFilter::default();
        if let Some(names) = query.get("runtimeStatus") {
            for name in names.split(',').filter(|n| !n.is_empty()) {
                let status =
                    parse_status(name).ok_or_else(|| bad_request(format!("unknown runtimeStatus {name:?}")))?;
                filter.statuses.push(status);
            }
        }
        filter.workflow = query.get("workflowName").cloned();
        filter.parent_id = query.get("parentInstanceID").or_else(|| query.get("parentInstanceId")).cloned();
        filter.newest_first = match query.get("order").map(String::as_str) {
            None | Some("oldest") => false,
            Some("newest") => true,
            Some(other) => return Err(bad_request(format!("`order` must be newest or oldest, got {other:?}"))),
        };
        let time = |key: &str| -> Result<Option<i64>, ApiError> {
            query
                .get(key)
                .map(|v| v.parse::<i64>().map_err(|_| bad_request(format!("`{key}` must be ms since the epoch"))))
                .transpose()
        };
        filter.without_payloads = flag(&query, "omitPayloads")?;
        filter.created_after = time("createdAfter")?;
        filter.created_before = time("createdBefore")?;
        let page_size = match query.get("pageSize") {
            Some(v) => v.parse::<usize>().map_err(|_| bad_request("`pageSize` must be a positive number"))?,
            None => 100,
        };
        let page = client
            .list(&filter, page_size, query.get("continuationToken").map(String::as_str))
            .await
            .map_err(error_response)?;
        let instances: Vec<Value> = page.instances.iter().map(|status| listed_json(status, &filter)).collect();
        Ok(Json(json!({ "instances": instances, "continuationToken": page.continuation })).into_response())
    })
    .await
}
