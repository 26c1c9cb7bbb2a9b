//! The HTTP backend: a server that mounts `workflow::http::router`, reached on its Dapr routes
//! (component `dapr`) and its own (history, rerun, queues, schedules). Its error answers
//! (`{"errorCode", "message"}`) become the exit codes the database backend gives for the same
//! library errors.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use workflow::http::dapr_status_name;

use super::{DiagramFormat, ListQuery, Rerun};
use crate::error::{CliError, Exit};
use crate::model::{HistoryItem, Instance, Page, Queue, Schedule};

/// The component name in the workflow routes (the router ignores it; Dapr's is `dapr`).
const COMPONENT: &str = "dapr";
/// History items asked for per request (the router's largest page).
const HISTORY_PAGE: usize = 1000;

/// A server's API, `{base}/v1.0`.
pub(crate) struct Http {
    api: Url,
    client: reqwest::Client,
}

/// An error answer of the router.
struct Refusal {
    status: StatusCode,
    code: String,
    message: String,
}

/// The API root of a server's base URL, which may end with `/v1.0` or not.
fn api_root(base: &str) -> Result<Url, CliError> {
    let bad = |why: String| CliError::unreachable(format!("invalid --http URL {base:?}: {why}"));
    let mut url = Url::parse(base.trim()).map_err(|error| bad(error.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(bad(
                "https is not supported by this build of wfctl (no TLS); use http:// on a private interface or \
                 through a local proxy"
                    .to_owned(),
            ));
        }
        other => return Err(bad(format!("expected an http:// URL, got the scheme {other:?}"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".to_owned()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a base URL has no query or fragment".to_owned()));
    }
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/v1.0").unwrap_or(path).trim_end_matches('/').to_owned();
    url.set_path(&format!("{path}/v1.0"));
    Ok(url)
}

/// The text of an error and of its sources, for transport errors whose own text is terse.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Refusal {
    fn read(status: StatusCode, body: &[u8]) -> Self {
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let field = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_owned);
        let message = field("message").unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                status.to_string()
            } else {
                text.chars().take(200).collect()
            }
        });
        Self { status, code: field("errorCode").unwrap_or_default(), message }
    }

    /// Whether the router has no such route (its fallback), rather than no such instance.
    fn no_route(&self) -> bool {
        self.status == StatusCode::NOT_FOUND && (self.code == "ERR_NOT_FOUND" || self.code.is_empty())
    }
}

impl Http {
    /// A client of the server at `base` (nothing is sent yet).
    pub(crate) fn new(base: &str) -> Result<Self, CliError> {
        let api = api_root(base)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| CliError::failure(format!("cannot set up the HTTP client: {}", chain(&error))))?;
        Ok(Self { api, client })
    }

    /// `{api}/{segments...}`, each segment escaped.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.api.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn instance_url(&self, id: &str, action: &[&str], query: &[(&str, String)]) -> Url {
        let mut segments = vec!["workflows", COMPONENT, id];
        segments.extend_from_slice(action);
        self.url(&segments, query)
    }

    /// Sends a request; the body of a 2xx answer, or the router's refusal.
    async fn send(&self, method: Method, url: Url, body: Option<String>) -> Result<Result<Vec<u8>, Refusal>, CliError> {
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        let unreachable = |error: reqwest::Error| {
            let root = self.api.as_str().trim_end_matches('/').trim_end_matches("/v1.0");
            CliError::unreachable(format!("cannot reach {root}: {}", chain(&error.without_url())))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        Ok(if status.is_success() { Ok(body.to_vec()) } else { Err(Refusal::read(status, &body)) })
    }

    /// [`Http::send`], with a refusal turned into the command's error.
    async fn call(&self, method: Method, url: Url, body: Option<String>) -> Result<Vec<u8>, CliError> {
        let path = url.path().to_owned();
        self.send(method, url, body).await?.map_err(|refusal| self.refused(refusal, &path))
    }

    /// A JSON answer.
    async fn call_json(&self, method: Method, url: Url, body: Option<String>) -> Result<Value, CliError> {
        let bytes = self.call(method, url.clone(), body).await?;
        serde_json::from_slice(&bytes).map_err(|error| {
            CliError::failure(format!("the answer of {} is not JSON ({error}): is it a workflow router?", url.path()))
        })
    }

    fn refused(&self, refusal: Refusal, path: &str) -> CliError {
        let exit = match refusal.status {
            _ if refusal.no_route() => {
                return CliError::failure(format!(
                    "the server has no route {path} (404): is it a workflow router, and not a read-only one?"
                ));
            }
            StatusCode::METHOD_NOT_ALLOWED => {
                return CliError::failure(format!(
                    "the server does not allow this request on {path} (405): is it a read-only router?"
                ));
            }
            StatusCode::NOT_FOUND => Exit::NotFound,
            StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS => Exit::Conflict,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => {
                Exit::Unreachable
            }
            _ => Exit::Failure,
        };
        CliError::new(exit, format!("{} (HTTP {})", refusal.message, refusal.status.as_u16()))
    }

    pub(crate) async fn list(&self, query: &ListQuery) -> Result<Page, CliError> {
        let mut params = vec![("pageSize", query.page_size.to_string())];
        if !query.statuses.is_empty() {
            let names: Vec<&str> = query.statuses.iter().map(|status| dapr_status_name(*status)).collect();
            params.push(("runtimeStatus", names.join(",")));
        }
        if let Some(workflow) = &query.workflow {
            params.push(("workflowName", workflow.clone()));
        }
        if let Some(parent) = &query.parent {
            params.push(("parentInstanceID", parent.clone()));
        }
        if query.newest_first {
            params.push(("order", "newest".to_owned()));
        }
        if let Some(after) = query.created_after {
            params.push(("createdAfter", after.to_string()));
        }
        if let Some(before) = query.created_before {
            params.push(("createdBefore", before.to_string()));
        }
        if let Some(token) = &query.page_token {
            params.push(("continuationToken", token.clone()));
        }
        if !query.payloads {
            params.push(("omitPayloads", "true".to_owned()));
        }
        Page::from_json(self.call_json(Method::GET, self.url(&["workflows", COMPONENT], &params), None).await?)
    }

    pub(crate) async fn status(&self, id: &str) -> Result<Instance, CliError> {
        Instance::from_json(self.call_json(Method::GET, self.instance_url(id, &[], &[]), None).await?)
    }

    pub(crate) async fn history(&self, id: &str) -> Result<Option<Vec<HistoryItem>>, CliError> {
        let mut items = Vec::new();
        loop {
            let query = [("offset", items.len().to_string()), ("limit", HISTORY_PAGE.to_string())];
            let url = self.instance_url(id, &["history"], &query);
            let path = url.path().to_owned();
            let page = match self.send(Method::GET, url, None).await? {
                Ok(bytes) => serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
                Err(refusal) if refusal.no_route() => return Ok(None),
                Err(refusal) => return Err(self.refused(refusal, &path)),
            };
            let (Some(found), Some(total)) =
                (page.get("history").and_then(Value::as_array), page.get("total").and_then(Value::as_u64))
            else {
                return Err(CliError::failure(format!("the answer of {path} is not a history page")));
            };
            let before = items.len();
            for item in found {
                items.push(HistoryItem::from_json(item.clone())?);
            }
            if items.len() as u64 >= total || items.len() == before {
                return Ok(Some(items));
            }
        }
    }

    pub(crate) async fn diagram(&self, id: &str, format: DiagramFormat) -> Result<String, CliError> {
        let route = match format {
            DiagramFormat::Mermaid => "diagram",
            DiagramFormat::Text => "diagram.txt",
        };
        let bytes = self.call(Method::GET, self.instance_url(id, &[route], &[]), None).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub(crate) async fn terminate(&self, id: &str, reason: Option<&str>, recursive: bool) -> Result<(), CliError> {
        let query = if recursive { Vec::new() } else { vec![("non_recursive", "true".to_owned())] };
        let body = reason.map(|reason| Value::String(reason.to_owned()).to_string());
        self.call(Method::POST, self.instance_url(id, &["terminate"], &query), body).await.map(drop)
    }

    /// The router records its own reason ("paused over HTTP").
    pub(crate) async fn suspend(&self, id: &str, _reason: Option<&str>) -> Result<(), CliError> {
        self.call(Method::POST, self.instance_url(id, &["pause"], &[]), None).await.map(drop)
    }

    /// The router records its own reason ("resumed over HTTP").
    pub(crate) async fn resume(&self, id: &str, _reason: Option<&str>) -> Result<(), CliError> {
        self.call(Method::POST, self.instance_url(id, &["resume"], &[]), None).await.map(drop)
    }

    pub(crate) async fn raise(&self, id: &str, event: &str, payload: &str) -> Result<(), CliError> {
        let url = self.instance_url(id, &["raiseEvent", event], &[]);
        self.call(Method::POST, url, Some(payload.to_owned())).await.map(drop)
    }

    pub(crate) async fn purge(&self, id: &str, recursive: bool) -> Result<(), CliError> {
        let query = if recursive { Vec::new() } else { vec![("non_recursive", "true".to_owned())] };
        self.call(Method::POST, self.instance_url(id, &["purge"], &query), None).await.map(drop)
    }

    pub(crate) async fn rerun(&self, rerun: &Rerun<'_>) -> Result<String, CliError> {
        let mut query = vec![("fromStep", rerun.from_step.to_string())];
        if let Some(new_id) = rerun.new_id {
            query.push(("newInstanceID", new_id.to_owned()));
        }
        let url = self.instance_url(rerun.source, &["rerun"], &query);
        let path = url.path().to_owned();
        let bytes = match self.send(Method::POST, url, Some(rerun.input.unwrap_or_default().to_owned())).await? {
            Ok(bytes) => bytes,
            Err(refusal) if refusal.no_route() => {
                return Err(CliError::failure(
                    "rerun is not supported by this router (it has no .../rerun route); use --database-url",
                ));
            }
            Err(refusal) => return Err(self.refused(refusal, &path)),
        };
        started_id(&bytes, &path)
    }

    pub(crate) async fn queues(&self) -> Result<Vec<Queue>, CliError> {
        match self.call_json(Method::GET, self.url(&["queues"], &[]), None).await? {
            Value::Array(items) => items.into_iter().map(Queue::from_json).collect(),
            _ => Err(CliError::failure("the answer of /v1.0/queues is not a list of queues")),
        }
    }

    pub(crate) async fn schedules(&self) -> Result<Vec<Schedule>, CliError> {
        match self.call_json(Method::GET, self.url(&["schedules"], &[]), None).await? {
            Value::Array(items) => items.into_iter().map(Schedule::from_json).collect(),
            _ => Err(CliError::failure("the answer of /v1.0/schedules is not a list of schedules")),
        }
    }

    pub(crate) async fn schedule(&self, id: &str) -> Result<Schedule, CliError> {
        Schedule::from_json(self.call_json(Method::GET, self.url(&["schedules", id], &[]), None).await?)
    }

    pub(crate) async fn pause_schedule(&self, id: &str) -> Result<(), CliError> {
        self.call(Method::POST, self.url(&["schedules", id, "pause"], &[]), None).await.map(drop)
    }

    pub(crate) async fn resume_schedule(&self, id: &str) -> Result<(), CliError> {
        self.call(Method::POST, self.url(&["schedules", id, "resume"], &[]), None).await.map(drop)
    }

    pub(crate) async fn trigger_schedule(&self, id: &str) -> Result<String, CliError> {
        let url = self.url(&["schedules", id, "trigger"], &[]);
        let path = url.path().to_owned();
        started_id(&self.call(Method::POST, url, None).await?, &path)
    }

    pub(crate) async fn delete_schedule(&self, id: &str) -> Result<(), CliError> {
        self.call(Method::DELETE, self.url(&["schedules", id], &[]), None).await.map(drop)
    }
}

/// The `instanceID` of a 202 answer that started an instance.
fn started_id(body: &[u8], path: &str) -> Result<String, CliError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|json| json.get("instanceID").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| CliError::failure(format!("the answer of {path} names no started instance (`instanceID`)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_with_or_without_the_version() {
        for base in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/v1.0",
            "http://127.0.0.1:8080/v1.0/",
        ] {
            assert_eq!(
                api_root(base).map(|url| url.to_string()),
                Ok("http://127.0.0.1:8080/v1.0".to_owned()),
                "{base}"
            );
        }
        assert_eq!(api_root("http://host/api/").map(|url| url.to_string()), Ok("http://host/api/v1.0".to_owned()));
        for bad in ["127.0.0.1:8080", "ftp://host", "https://host", "http://", "not a url"] {
            assert_eq!(api_root(bad).map_err(|error| error.exit), Err(Exit::Unreachable), "{bad}");
        }
    }

    #[test]
    fn ids_are_escaped_in_paths() {
        let http = Http::new("http://host:1").unwrap();
        let url = http.instance_url("a b/c", &["raiseEvent", "go?"], &[("x", "1&2".to_owned())]);
        assert_eq!(url.as_str(), "http://host:1/v1.0/workflows/dapr/a%20b%2Fc/raiseEvent/go%3F?x=1%262");
    }
}
