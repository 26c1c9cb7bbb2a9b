//! The Dapr-compatible HTTP API, over a real socket: every route, Dapr's shapes, and bad input.

use std::time::Duration;

use serde_json::{json, Value};
use workflow::http::RouterOptions;
use workflow::prelude::*;
use workflow::store::Store;

use crate::support::{wait_for_a_claim_pass, wait_for_value, wait_until};

#[workflow]
async fn http_approval(ctx: WorkflowContext, order: String) -> Result<String, WorkflowError> {
    ctx.set_custom_status(&"waiting for approval");
    let approved: bool = ctx.wait_for_event("approve").await?;
    Ok(format!("{order}: {}", if approved { "approved" } else { "rejected" }))
}

/// Released by `queues_counts_and_newest_first_over_http`: one permit per attempt to finish.
static HELD: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

/// One attempt at a time across workers; each waits for a permit.
#[activity(concurrency = 1)]
async fn http_held(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    HELD.acquire().await.map_err(|_| ActivityError::non_retryable("closed"))?.forget();
    Ok(n)
}

#[workflow]
async fn http_capped(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    http_held::call(&ctx, n).await
}

struct Server {
    base: String,
    http: reqwest::Client,
    runtime: Runtime,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve() -> Server {
    serve_on(std::sync::Arc::new(MemoryStore::new()), RouterOptions::default()).await
}

async fn serve_on(store: std::sync::Arc<dyn Store>, options: RouterOptions) -> Server {
    serve_limited(store, options, workflow::Limits::default()).await
}

async fn serve_limited(store: std::sync::Arc<dyn Store>, options: RouterOptions, limits: workflow::Limits) -> Server {
    let runtime = Runtime::builder()
        .store(store)
        .limits(limits)
        .workflow(http_approval::Workflow)
        .workflow(http_capped::Workflow)
        .activity(http_held::Activity)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let app = workflow::http::router_with(runtime.client(), options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { base, http: reqwest::Client::new(), runtime, task }
}

impl Server {
    async fn post(&self, path: &str, body: &str) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: &str) -> (u16, String) {
        let request = self.http.request(method, format!("{}{path}", self.base));
        let response = request.header("content-type", "application/json").body(body.to_owned()).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn status(&self, id: &str) -> Value {
        let (code, body) = self.get(&format!("/v1.0/workflows/dapr/{id}")).await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn wait_for(&self, id: &str, status: &str) -> Value {
        wait_for_value(&format!("{id} to reach {status}"), || async {
            Some(self.status(id).await).filter(|body| body["runtimeStatus"] == status)
        })
        .await
    }
}

fn error_code(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("error body is not JSON: {body}"));
    assert!(value["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    value["errorCode"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn dapr_routes_start_poll_raise_and_complete() {
    let server = serve().await;
    let (code, body) =
        server.post("/v1.0/workflows/dapr/http_approval/start?instanceID=order-7&priority=-4", r#""book""#).await;
    assert_eq!((code, body.as_str()), (202, r#"{"instanceID":"order-7"}"#));

    let status = server.wait_for("order-7", "RUNNING").await;
    assert_eq!(status["instanceID"], "order-7");
    assert_eq!(status["priority"], -4);
    assert_eq!(status["workflowName"], "http_approval");
    assert_eq!(status["properties"]["dapr.workflow.input"], r#""book""#);
    assert!(status["createdAt"].as_str().unwrap().ends_with('Z'), "{status}");
    assert!(status["lastUpdatedAt"].as_str().is_some());

    let (code, _) = server.post("/v1.0/workflows/dapr/order-7/raiseEvent/approve", "true").await;
    assert_eq!(code, 202);
    let done = server.wait_for("order-7", "COMPLETED").await;
    assert_eq!(done["properties"]["dapr.workflow.output"], r#""book: approved""#);
    assert_eq!(done["properties"]["dapr.workflow.custom_status"], r#""waiting for approval""#);

    let (code, diagram) = server.get("/v1.0/workflows/dapr/order-7/diagram").await;
    assert_eq!(code, 200);
    assert!(diagram.starts_with("flowchart"), "{diagram}");
    assert!(diagram.contains("approve"), "{diagram}");
    let response =
        server.http.get(format!("{}/v1.0/workflows/dapr/order-7/diagram.svg", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml; charset=utf-8");
    let svg = response.text().await.unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("approve") && svg.contains("order-7"), "{svg}");
    let (code, text) = server.get("/v1.0/workflows/dapr/order-7/diagram.txt").await;
    assert_eq!(code, 200);
    assert!(text.starts_with("http_approval · order-7\n") && text.ends_with("✓ Completed\n"), "{text}");

    let (code, _) = server.post("/v1.0/workflows/dapr/order-7/purge", "").await;
    assert_eq!(code, 202);
    let (code, body) = server.get("/v1.0/workflows/dapr/order-7").await;
    assert_eq!((code, error_code(&body).as_str()), (404, "ERR_INSTANCE_ID_NOT_FOUND"));
}

/// A start's `traceparent` header is stored with the instance and shown in its status; a
/// malformed one is a 400 and starts nothing.
#[tokio::test]
async fn a_start_continues_the_callers_trace() {
    let server = serve().await;
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let start = |id: &str, traceparent: &str| {
        let url = format!("{}/v1.0/workflows/dapr/http_approval/start?instanceID={id}", server.base);
        server.http.post(url).header("traceparent", traceparent).body(r#""pen""#).send()
    };
    let response = start("traced-1", given).await.unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(server.wait_for("traced-1", "RUNNING").await["traceparent"], given);
    let response = start("traced-2", "00-not-a-trace-01").await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("traceparent"));
    let (code, _) = server.get("/v1.0/workflows/dapr/traced-2").await;
    assert_eq!(code, 404, "nothing was started");
    // Without the header, the status still names the instance's (derived) trace.
    assert_eq!(server.post("/v1.0/workflows/dapr/http_approval/start?instanceID=traced-3", r#""ink""#).await.0, 202);
    let derived = server.status("traced-3").await["traceparent"].as_str().unwrap().to_owned();
    assert!(derived.starts_with("00-") && derived.len() == 55, "{derived}");
}

/// The history route pages an instance's history; rerun forks a finished instance with a new
/// input and refuses one that still runs.
#[tokio::test]
async fn history_and_rerun_over_http() {
    let server = serve().await;
    assert_eq!(server.post("/v1.0/workflows/dapr/http_approval/start?instanceID=desk-1", r#""desk""#).await.0, 202);
    server.wait_for("desk-1", "RUNNING").await;
    let (code, body) = server.post("/v1.0/workflows/dapr/desk-1/rerun?fromStep=0", "").await;
    assert_eq!((code, error_code(&body).as_str()), (409, "ERR_INSTANCE_STATE"), "a running instance is not rerun");
    assert_eq!(server.post("/v1.0/workflows/dapr/desk-1/raiseEvent/approve", "true").await.0, 202);
    server.wait_for("desk-1", "COMPLETED").await;

    let (code, body) = server.get("/v1.0/workflows/dapr/desk-1/history").await;
    assert_eq!(code, 200, "{body}");
    let whole: Value = serde_json::from_str(&body).unwrap();
    let items = whole["history"].as_array().unwrap();
    assert_eq!(whole["total"], items.len());
    assert_eq!((items[0]["type"].as_str(), items[0]["input"].as_str()), (Some("created"), Some(r#""desk""#)));
    let wait = items.iter().find(|item| item["type"] == "step" && item["name"] == "approve").expect("the wait");
    assert_eq!((wait["kind"].as_str(), wait["status"].as_str()), (Some("event"), Some("Completed")), "{wait}");
    let last = items.last().unwrap();
    assert_eq!((last["type"].as_str(), last["status"]["runtimeStatus"].as_str()), (Some("status"), Some("COMPLETED")));
    let (code, body) = server.get("/v1.0/workflows/dapr/desk-1/history?offset=1&limit=1").await;
    assert_eq!(code, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((page["history"].as_array().unwrap().len(), &page["total"]), (1, &whole["total"]));
    assert_eq!(page["history"][0], items[1]);
    for bad in ["limit=0", "limit=1001", "offset=-1"] {
        let (code, body) = server.get(&format!("/v1.0/workflows/dapr/desk-1/history?{bad}")).await;
        assert_eq!((code, error_code(&body).as_str()), (400, "ERR_MALFORMED_REQUEST"), "{bad}: {body}");
    }

    let (code, body) = server.post("/v1.0/workflows/dapr/desk-1/rerun", "").await;
    assert_eq!((code, error_code(&body).as_str()), (400, "ERR_MALFORMED_REQUEST"), "fromStep is required");
    let (code, body) = server.post("/v1.0/workflows/dapr/desk-1/rerun?fromStep=0&newInstanceID=desk-2", "{").await;
    assert_eq!((code, error_code(&body).as_str()), (400, "ERR_MALFORMED_REQUEST"), "a bad input: {body}");
    let (code, body) =
        server.post("/v1.0/workflows/dapr/desk-1/rerun?fromStep=0&newInstanceID=desk-2", r#""chair""#).await;
    assert_eq!((code, body.as_str()), (202, r#"{"instanceID":"desk-2"}"#));
    let rerun = server.wait_for("desk-2", "RUNNING").await;
    assert_eq!(rerun["properties"]["dapr.workflow.input"], r#""chair""#);
    assert_eq!(server.post("/v1.0/workflows/dapr/desk-2/raiseEvent/approve", "false").await.0, 202);
    let done = server.wait_for("desk-2", "COMPLETED").await;
    assert_eq!(done["properties"]["dapr.workflow.output"], r#""chair: rejected""#);
    // Kept up to the end: the rerun replays the recorded event and gets the same output at once.
    let (code, body) = server.post("/v1.0/workflows/dapr/desk-1/rerun?fromStep=99&newInstanceID=desk-3", "").await;
    assert_eq!((code, body.as_str()), (202, r#"{"instanceID":"desk-3"}"#));
    let replayed = server.wait_for("desk-3", "COMPLETED").await;
    assert_eq!(replayed["properties"]["dapr.workflow.output"], r#""desk: approved""#);
    let (code, body) = server.get("/v1.0/workflows/dapr/nobody/history").await;
    assert_eq!((code, error_code(&body).as_str()), (404, "ERR_INSTANCE_ID_NOT_FOUND"));
}

/// The queues route shows the capped activity's attempts (one held, the rest waiting behind its
/// limit) and the workflow's Running instances; the counts route counts per status up to its
/// bound; a list can come newest first and filter by parent.
#[tokio::test]
async fn queues_counts_and_newest_first_over_http() {
    let server = serve().await;
    for n in 1..=3 {
        let (code, body) =
            server.post(&format!("/v1.0/workflows/dapr/http_capped/start?instanceID=q-{n}"), &n.to_string()).await;
        assert_eq!(code, 202, "{body}");
    }
    let queues = wait_for_value("one attempt held and two waiting", || async {
        let (code, body) = server.get("/v1.0/queues").await;
        assert_eq!(code, 200, "{body}");
        let queues: Value = serde_json::from_str(&body).unwrap();
        let activity = queues.as_array()?.iter().find(|q| q["kind"] == "activity" && q["name"] == "http_held")?.clone();
        (activity["running"] == 1 && activity["waiting"] == 2).then_some(queues)
    })
    .await;
    let activity = &queues[0];
    assert_eq!(activity["limits"], "at most 1 at once in all", "{queues}");
    assert_eq!(activity["concurrencyKey"], "");
    assert!(activity["oldestWaitingSince"].as_str().is_some_and(|at| at.ends_with('Z')), "{queues}");
    let workflow = queues.as_array().unwrap().iter().find(|q| q["kind"] == "workflow").expect("the workflow's queue");
    assert_eq!(
        (workflow["name"].as_str(), &workflow["running"], &workflow["waiting"]),
        (Some("http_capped"), &json!(3), &json!(0))
    );
    assert!(workflow["limits"].is_null() && workflow["oldestWaitingSince"].is_null(), "{workflow}");

    let (code, body) = server.get("/v1.0/instanceCounts").await;
    assert_eq!(code, 200, "{body}");
    let counts: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&counts["counts"]["RUNNING"], &counts["counts"]["COMPLETED"], &counts["atMost"]),
        (&json!(3), &json!(0), &json!(10_000))
    );
    let (_, body) = server.get("/v1.0/instanceCounts?atMost=2").await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["counts"]["RUNNING"], 2, "{body}");
    for bad in ["atMost=0", "atMost=x"] {
        let (code, body) = server.get(&format!("/v1.0/instanceCounts?{bad}")).await;
        assert_eq!((code, error_code(&body).as_str()), (400, "ERR_MALFORMED_REQUEST"), "{bad}");
    }

    let ids = |body: &str| -> Vec<String> {
        let page: Value = serde_json::from_str(body).unwrap();
        page["instances"].as_array().unwrap().iter().map(|i| i["instanceID"].as_str().unwrap().to_owned()).collect()
    };
    let (_, oldest) = server.get("/v1.0/workflows/dapr?workflowName=http_capped").await;
    let (_, newest) = server.get("/v1.0/workflows/dapr?workflowName=http_capped&order=newest").await;
    assert_eq!(ids(&oldest), ["q-1", "q-2", "q-3"]);
    assert_eq!(ids(&newest), ["q-3", "q-2", "q-1"]);
    let (_, page) = server.get("/v1.0/workflows/dapr?workflowName=http_capped&order=newest&pageSize=2").await;
    let token = serde_json::from_str::<Value>(&page).unwrap()["continuationToken"].as_str().unwrap().to_owned();
    let (_, rest) = server
        .get(&format!("/v1.0/workflows/dapr?workflowName=http_capped&order=newest&continuationToken={token}"))
        .await;
    assert_eq!(ids(&rest), ["q-1"]);
    let (_, children) = server.get("/v1.0/workflows/dapr?parentInstanceID=q-1").await;
    assert!(ids(&children).is_empty());
    let (code, body) = server.get("/v1.0/workflows/dapr?order=sideways").await;
    assert_eq!((code, error_code(&body).as_str()), (400, "ERR_MALFORMED_REQUEST"));
    assert!(server.status("q-1").await["parentInstanceID"].is_null());

    HELD.add_permits(3);
    for n in 1..=3 {
        server.wait_for(&format!("q-{n}"), "COMPLETED").await;
    }
    let (_, body) = server.get("/v1.0/queues").await;
    assert_eq!(body, "[]", "nothing queued once all ran");
}

#[tokio::test]
async fn pause_resume_terminate_and_list() {
    let server = serve().await;
    // Dapr's older route prefixes answer too, and a start without an id gets one.
    let (code, body) = server.post("/v1.0-beta1/workflows/dapr/http_approval/start", r#""lamp""#).await;
    assert_eq!(code, 202);
    let id = serde_json::from_str::<Value>(&body).unwrap()["instanceID"].as_str().unwrap().to_owned();
    server.wait_for(&id, "RUNNING").await;

    assert_eq!(server.post(&format!("/v1.0/workflows/dapr/{id}/pause"), "").await.0, 202);
    server.wait_for(&id, "SUSPENDED").await;
    // Raised while suspended: buffered, delivered after the resume.
    assert_eq!(server.post(&format!("/v1.0/workflows/dapr/{id}/raiseEvent/approve"), "false").await.0, 202);
    // What proves it stays suspended: its run left memory after the event was raised, and a claim
    // made after the event passed it over.
    wait_until("the suspended run to leave memory", || async { server.runtime.instances_in_memory() == 0 }).await;
    wait_for_a_claim_pass(server.runtime.store(), "http_approval", &format!("{id}-probe"), r#""probe""#).await;
    assert_eq!(server.status(&id).await["runtimeStatus"], "SUSPENDED");
    let (code, body) = server.post(&format!("/v1.0/workflows/dapr/{id}/purge"), "").await;
    assert_eq!((code, error_code(&body).as_str()), (409, "ERR_INSTANCE_STATE"), "a suspended instance is not purged");
    assert_eq!(server.post(&format!("/v1.0/workflows/dapr/{id}/resume"), "").await.0, 202);
    let done = server.wait_for(&id, "COMPLETED").await;
    assert_eq!(done["properties"]["dapr.workflow.output"], r#""lamp: rejected""#);
    let (code, body) = server.post(&format!("/v1.0/workflows/dapr/{id}/resume"), "").await;
    assert_eq!((code, error_code(&body).as_str()), (409, "ERR_INSTANCE_STATE"));

    let (code, _) = server.post("/v1.0/workflows/dapr/http_approval/start?instanceID=doomed", r#""desk""#).await;
    assert_eq!(code, 202);
    server.wait_for("doomed", "RUNNING").await;
    assert_eq!(server.post("/v1.0/workflows/dapr/doomed/terminate", r#""changed my mind""#).await.0, 202);
    let ended = server.wait_for("doomed", "TERMINATED").await;
    assert_eq!(ended["properties"]["dapr.workflow.failure.error_message"], "changed my mind");
    let (code, body) = server.post("/v1.0/workflows/dapr/doomed/terminate", "").await;
    assert_eq!((code, error_code(&body).as_str()), (409, "ERR_INSTANCE_STATE"), "terminating twice is refused");

    let (code, body) = server.get("/v1.0/workflows/dapr?runtimeStatus=COMPLETED,TERMINATED&pageSize=1").await;
    assert_eq!(code, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["instances"].as_array().unwrap().len(), 1);
    let token = page["continuationToken"].as_str().expect("a second page").to_owned();
    let (code, body) = server
        .get(&format!("/v1.0/workflows/dapr?runtimeStatus=COMPLETED,TERMINATED&pageSize=1&continuationToken={token}"))
        .await;
    assert_eq!(code, 200, "{body}");
    let page2: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page2["instances"].as_array().unwrap().len(), 1);
    assert_ne!(page["instances"][0]["instanceID"], page2["instances"][0]["instanceID"]);
    assert!(page2["continuationToken"].is_null());
}

/// Debounced starts over HTTP: two starts of one key name the same instance, which waits
/// (Pending) for its delay with the later input.
#[tokio::test]
async fn debounced_starts_collapse_over_http() {
    let server = serve().await;
    let start = "/v1.0/workflows/dapr/http_approval/start?debounce=cart-9&delayMs=600000&maxWaitMs=900000";
    let (code, first) = server.post(start, r#""first""#).await;
    assert_eq!(code, 202, "{first}");
    let (code, second) = server.post(start, r#""second""#).await;
    assert_eq!((code, &second), (202, &first), "the same instance");
    let id = serde_json::from_str::<Value>(&first).unwrap()["instanceID"].as_str().unwrap().to_owned();
    let status = server.wait_for(&id, "PENDING").await;
    assert_eq!(status["properties"]["dapr.workflow.input"], r#""second""#);
    assert!(status["wakeAt"].as_str().is_some_and(|at| at.ends_with('Z')), "its due time: {status}");
    assert!(status["limits"].is_null(), "no cap or rate holds it back: {status}");
    let (code, queued) = server.get(&format!("/v1.0/workflows/dapr/{id}/activities")).await;
    assert_eq!((code, queued.as_str()), (200, "[]"), "nothing queued before it runs");
    // `delayMs` alone delays a start: Pending until its due time.
    let (code, delayed) =
        server.post("/v1.0/workflows/dapr/http_approval/start?delayMs=600000&instanceID=later-1", r#""x""#).await;
    assert_eq!(code, 202, "{delayed}");
    let status = server.wait_for("later-1", "PENDING").await;
    assert!(status["wakeAt"].as_str().is_some_and(|at| at.ends_with('Z')), "its due time: {status}");
}

#[tokio::test]
async fn bad_requests_get_json_errors_and_never_a_panic() {
    let server = serve().await;
    let start = "/v1.0/workflows/dapr/http_approval/start";
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        ("POST", format!("{start}?instanceID=bad%20id"), r#""x""#, 400, "ERR_INSTANCE_ID_INVALID"),
        ("POST", format!("{start}?instanceID={}", "a".repeat(65)), r#""x""#, 400, "ERR_INSTANCE_ID_INVALID"),
        ("POST", format!("{start}?instanceID=ok-1"), "{not json", 400, "ERR_MALFORMED_REQUEST"),
        ("POST", format!("{start}?instanceID=ok-2"), "42", 400, "ERR_MALFORMED_REQUEST"),
        ("POST", format!("{start}?instanceID=ok-3&priority=high"), r#""x""#, 400, "ERR_MALFORMED_REQUEST"),
        ("POST", format!("{start}?instanceID=ok-4&priority=3000000000"), r#""x""#, 400, "ERR_MALFORMED_REQUEST"),
        ("POST", format!("{start}?debounce=k"), r#""x""#, 400, "ERR_MALFORMED_REQUEST"),
        ("POST", format!("{start}?maxWaitMs=5"), r#""x""#, 400, "ERR_MALFORMED_REQUEST"),
        ("POST", format!("{start}?delayMs=soon"), r#""x""#, 400, "ERR_MALFORMED_REQUEST"),
        ("POST", format!("{start}?debounce=k&delayMs=soon"), r#""x""#, 400, "ERR_MALFORMED_REQUEST"),
        ("POST", format!("{start}?debounce=k&delayMs=0"), r#""x""#, 400, "ERR_MALFORMED_REQUEST"),
        ("POST", format!("{start}?debounce=k&delayMs=10&maxWaitMs=5"), r#""x""#, 400, "ERR_MALFORMED_REQUEST"),
        ("POST", format!("{start}?debounce=k&delayMs=10&instanceID=ok-5"), r#""x""#, 400, "ERR_MALFORMED_REQUEST"),
        ("POST", format!("{start}?debounce=%01&delayMs=10"), r#""x""#, 400, "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/workflows/dapr/no_such_workflow/start".to_owned(), "null", 400, "ERR_WORKFLOW_NAME_INVALID"),
        ("GET", "/v1.0/workflows/dapr/missing".to_owned(), "", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("GET", "/v1.0/workflows/dapr/%FF%FE".to_owned(), "", 400, "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/workflows/dapr/missing/terminate".to_owned(), "", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("POST", "/v1.0/workflows/dapr/missing/raiseEvent/x".to_owned(), "1", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("POST", "/v1.0/workflows/dapr/missing/pause".to_owned(), "", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("POST", "/v1.0/workflows/dapr/missing/resume".to_owned(), "", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("POST", "/v1.0/workflows/dapr/missing/purge".to_owned(), "", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("GET", "/v1.0/workflows/dapr/missing/diagram".to_owned(), "", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("GET", "/v1.0/workflows/dapr/missing/activities".to_owned(), "", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("POST", "/v1.0/workflows/dapr/missing/purge?non_recursive=maybe".to_owned(), "", 400, "ERR_MALFORMED_REQUEST"),
        ("GET", "/v1.0/workflows/dapr?pageSize=0".to_owned(), "", 400, "ERR_MALFORMED_REQUEST"),
        ("GET", "/v1.0/workflows/dapr?runtimeStatus=SLEEPY".to_owned(), "", 400, "ERR_MALFORMED_REQUEST"),
        ("GET", "/v1.0/workflows/dapr?continuationToken=zz".to_owned(), "", 400, "ERR_MALFORMED_REQUEST"),
        ("GET", "/v2/nothing/here".to_owned(), "", 404, "ERR_NOT_FOUND"),
    ];
    for (method, path, body, code, expected) in cases {
        let (got, text) = match method {
            "GET" => server.get(&path).await,
            _ => server.post(&path, body).await,
        };
        assert_eq!((got, error_code(&text).as_str()), (code, expected), "{method} {path}: {text}");
    }
    // A taken id is a conflict; the first instance is untouched.
    assert_eq!(server.post(&format!("{start}?instanceID=taken"), r#""a""#).await.0, 202);
    let (code, text) = server.post(&format!("{start}?instanceID=taken"), r#""b""#).await;
    assert_eq!((code, error_code(&text).as_str()), (409, "ERR_INSTANCE_ID_EXISTS"));
    assert_eq!(server.status("taken").await["properties"]["dapr.workflow.input"], r#""a""#);
    // An instance that runs cannot be purged.
    server.wait_for("taken", "RUNNING").await;
    let (code, text) = server.post("/v1.0/workflows/dapr/taken/purge", "").await;
    assert_eq!((code, error_code(&text).as_str()), (409, "ERR_INSTANCE_STATE"));
}

/// Text no store can hold (NUL, which PostgreSQL refuses) is refused at the edge with a 400 on
/// every route, whatever the store; an over-limit body is a JSON 413, and the limit is a router
/// option.
async fn nul_and_oversized_input_get_json_errors_on(store: std::sync::Arc<dyn Store>) {
    let server = serve_on(store, RouterOptions::default().body_limit(64 * 1024)).await;
    let start = "/v1.0/workflows/dapr/http_approval/start";
    assert_eq!(server.post(&format!("{start}?instanceID=nul-ok"), r#""a""#).await.0, 202);
    // "1:a\0b" as a continuation token (hex).
    let nul_token = "313a610062";
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("POST", format!("{start}?instanceID=a%00b"), r#""x""#, "ERR_INSTANCE_ID_INVALID"),
        ("POST", "/v1.0/workflows/dapr/a%00b/start".to_owned(), "null", "ERR_MALFORMED_REQUEST"),
        ("GET", "/v1.0/workflows/dapr/a%00b".to_owned(), "", "ERR_INSTANCE_ID_INVALID"),
        ("POST", "/v1.0/workflows/dapr/a%00b/terminate".to_owned(), "", "ERR_INSTANCE_ID_INVALID"),
        ("POST", "/v1.0/workflows/dapr/a%00b/raiseEvent/x".to_owned(), "1", "ERR_INSTANCE_ID_INVALID"),
        ("POST", "/v1.0/workflows/dapr/nul-ok/raiseEvent/a%00b".to_owned(), "1", "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/workflows/dapr/a%00b/pause".to_owned(), "", "ERR_INSTANCE_ID_INVALID"),
        ("POST", "/v1.0/workflows/dapr/a%00b/resume".to_owned(), "", "ERR_INSTANCE_ID_INVALID"),
        ("POST", "/v1.0/workflows/dapr/a%00b/purge".to_owned(), "", "ERR_INSTANCE_ID_INVALID"),
        ("GET", "/v1.0/workflows/dapr/a%00b/diagram".to_owned(), "", "ERR_INSTANCE_ID_INVALID"),
        ("GET", "/v1.0/workflows/dapr?workflowName=a%00b".to_owned(), "", "ERR_MALFORMED_REQUEST"),
        ("GET", format!("/v1.0/workflows/dapr?continuationToken={nul_token}"), "", "ERR_MALFORMED_REQUEST"),
    ];
    for (method, path, body, expected) in cases {
        let (got, text) = match method {
            "GET" => server.get(&path).await,
            _ => server.post(&path, body).await,
        };
        assert_eq!((got, error_code(&text).as_str()), (400, expected), "{method} {path}: {text}");
    }
    // Over the limit: 413 with the JSON body, on start and raiseEvent; nothing is created.
    let big = format!("\"{}\"", "x".repeat(100 * 1024));
    let (code, text) = server.post(&format!("{start}?instanceID=too-big"), &big).await;
    assert_eq!((code, error_code(&text).as_str()), (413, "ERR_BODY_TOO_LARGE"), "{text}");
    let (code, _) = server.get("/v1.0/workflows/dapr/too-big").await;
    assert_eq!(code, 404, "an over-limit start creates nothing");
    let (code, text) = server.post("/v1.0/workflows/dapr/nul-ok/raiseEvent/approve", &big).await;
    assert_eq!((code, error_code(&text).as_str()), (413, "ERR_BODY_TOO_LARGE"), "{text}");
    // Under the limit it is taken; an empty start body is no input (`null`).
    let (code, text) = server.post(&format!("{start}?instanceID=no-input"), "").await;
    assert_eq!(code, 400, "http_approval needs a String, and an empty body is null: {text}");
    assert!(text.contains("null"), "{text}");
    assert_eq!(server.post("/v1.0/workflows/dapr/nul-ok/raiseEvent/approve", "true").await.0, 202);
    assert_eq!(server.wait_for("nul-ok", "COMPLETED").await["properties"]["dapr.workflow.output"], r#""a: approved""#);
}

#[tokio::test]
async fn nul_and_oversized_input_get_json_errors() {
    nul_and_oversized_input_get_json_errors_on(std::sync::Arc::new(MemoryStore::new())).await;
    let (_dir, _url, store) = crate::support::sqlite_store().await;
    nul_and_oversized_input_get_json_errors_on(store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn nul_and_oversized_input_get_json_errors_on_postgres() {
    let Some(url) = crate::support::postgres_url() else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let schema = format!("http_nul_{nanos:x}{:x}", std::process::id());
    let options = workflow::PostgresOptions::new().schema(&schema);
    let store = std::sync::Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap());
    nul_and_oversized_input_get_json_errors_on(store.clone()).await;
    let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::query(&drop).execute(store.pool()).await.unwrap();
}

/// A raise into a full inbox answers 429 and a payload over the runtime's limit 413, each with a
/// JSON error, and neither stores anything.
#[tokio::test]
async fn a_full_inbox_and_oversized_payloads_answer_json_errors() {
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemoryStore::new());
    let limits = workflow::Limits::default().max_inbox_events(2).max_payload_bytes(100);
    let server = serve_limited(store.clone(), RouterOptions::default(), limits).await;
    let (code, body) = server.post("/v1.0/workflows/dapr/http_approval/start?instanceID=full-1", r#""o""#).await;
    assert_eq!(code, 202, "{body}");
    for n in 0..2 {
        let (code, body) = server.post("/v1.0/workflows/dapr/full-1/raiseEvent/noise", &n.to_string()).await;
        assert_eq!(code, 202, "{body}");
    }
    let (code, body) = server.post("/v1.0/workflows/dapr/full-1/raiseEvent/approve", "true").await;
    assert_eq!(code, 429, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["errorCode"], "ERR_INBOX_FULL", "{body}");
    assert_eq!(store.events("full-1").await.unwrap().len(), 2, "the inbox is unchanged");

    let big = format!("\"{}\"", "x".repeat(200));
    let (code, body) = server.post("/v1.0/workflows/dapr/full-1/raiseEvent/noise", &big).await;
    assert_eq!(
        (code, serde_json::from_str::<Value>(&body).unwrap()["errorCode"].clone()),
        (413, "ERR_PAYLOAD_TOO_LARGE".into())
    );
    let (code, body) = server.post("/v1.0/workflows/dapr/http_approval/start?instanceID=big-1", &big).await;
    assert_eq!(code, 413, "{body}");
    assert_eq!(store.instance("big-1").await.unwrap(), None);
}

/// `omitPayloads=true` lists instances without their input, output and custom status.
#[tokio::test]
async fn a_list_can_leave_payloads_out() {
    let server = serve().await;
    let (code, body) =
        server.post("/v1.0/workflows/dapr/http_approval/start?instanceID=bare-1", r#""secret order""#).await;
    assert_eq!(code, 202, "{body}");
    server.wait_for("bare-1", "RUNNING").await;
    let listed = |query: &'static str| {
        let server = &server;
        async move {
            let (code, body) = server.get(&format!("/v1.0/workflows/dapr?{query}")).await;
            assert_eq!(code, 200, "{body}");
            let page: Value = serde_json::from_str(&body).unwrap();
            page["instances"][0]["properties"].clone()
        }
    };
    let full = listed("").await;
    assert_eq!(full["dapr.workflow.input"], r#""secret order""#);
    wait_until("the custom status to be written", || async {
        listed("").await.get("dapr.workflow.custom_status").is_some()
    })
    .await;
    let bare = listed("omitPayloads=true").await;
    assert_eq!(bare, serde_json::json!({}), "no payload properties: {bare}");
    assert_eq!(server.get("/v1.0/workflows/dapr?omitPayloads=maybe").await.0, 400);
}

/// The read-only router serves status, list and diagram, and no route that changes anything.
#[tokio::test]
async fn the_read_only_router_serves_gets_only() {
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemoryStore::new());
    let server = serve_on(store.clone(), RouterOptions::default().read_only(true)).await;
    http_approval::start(&server.runtime.client(), "o".into()).id("ro-1").await.unwrap();
    assert_eq!(server.get("/v1.0/workflows/dapr/ro-1").await.0, 200);
    assert_eq!(server.get("/v1.0/workflows/dapr").await.0, 200);
    assert_eq!(server.get("/v1.0/workflows/dapr/ro-1/diagram").await.0, 200);
    for path in [
        "/v1.0/workflows/dapr/http_approval/start?instanceID=ro-2",
        "/v1.0/workflows/dapr/ro-1/terminate",
        "/v1.0/workflows/dapr/ro-1/raiseEvent/approve",
        "/v1.0/workflows/dapr/ro-1/pause",
        "/v1.0/workflows/dapr/ro-1/resume",
        "/v1.0/workflows/dapr/ro-1/purge",
        "/v1.0-beta1/workflows/dapr/ro-1/purge",
    ] {
        let (code, body) = server.post(path, "true").await;
        assert!(code == 404 || code == 405, "POST {path} answered {code} {body}");
    }
    assert_eq!(store.instance("ro-2").await.unwrap(), None, "nothing was started");
    assert!(store.events("ro-1").await.unwrap().is_empty(), "nothing was raised");
    let status = store.instance("ro-1").await.unwrap().unwrap().status;
    assert!(matches!(status, RuntimeStatus::Pending | RuntimeStatus::Running), "{status:?}");
}

/// The schedule routes: create (201, then 409), describe with its next runs, list, pause,
/// trigger (the instance runs), update, delete; bad bodies are JSON 400s, a missing schedule a
/// 404, and a read-only router serves only the GETs.
#[tokio::test]
async fn schedules_over_http() {
    use reqwest::Method;
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemoryStore::new());
    let server = serve_on(store.clone(), RouterOptions::default()).await;
    let body = r#"{"workflowName": "http_approval", "cron": "0 0 9 * * MON-FRI", "timeZone": "Europe/Paris",
        "input": "weekly", "catchUp": "all", "catchUpMax": 3, "overlap": "allowAll"}"#;
    let (code, text) = server.post("/v1.0/schedules/standup", body).await;
    assert_eq!(code, 201, "{text}");
    let (code, text) = server.post("/v1.0/schedules/standup", body).await;
    assert_eq!((code, error_code(&text).as_str()), (409, "ERR_SCHEDULE_EXISTS"));
    let (code, text) = server.get("/v1.0/schedules/standup").await;
    assert_eq!(code, 200, "{text}");
    let described: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(described["workflowName"], "http_approval");
    assert_eq!(described["timeZone"], "Europe/Paris");
    assert_eq!((described["catchUp"].as_str(), described["catchUpMax"].as_u64()), (Some("all"), Some(3)));
    assert_eq!(described["overlap"], "allowAll");
    assert_eq!(described["input"], "weekly");
    assert_eq!(described["nextRuns"].as_array().map(Vec::len), Some(5), "{described}");
    assert!(described["nextRuns"][0].as_str().is_some_and(|at| at.ends_with(":00:00.000Z")), "{described}");

    assert_eq!(server.post("/v1.0/schedules/standup/pause", "").await.0, 202);
    let (_, text) = server.get("/v1.0/schedules").await;
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed[0]["paused"], true, "{listed}");
    assert_eq!(listed[0]["nextRuns"].as_array().map(Vec::len), Some(0));
    let (code, text) = server.post("/v1.0/schedules/standup/trigger", "").await;
    assert_eq!(code, 202, "{text}");
    let instance = serde_json::from_str::<Value>(&text).unwrap()["instanceID"].as_str().unwrap().to_owned();
    assert!(instance.starts_with("standup-manual-"), "{instance}");
    server.wait_for(&instance, "RUNNING").await;

    let update =
        r#"{"workflowName": "http_approval", "cron": "*/5 * * * * *", "input": "daily", "overlap": "bufferOne"}"#;
    assert_eq!(server.send(Method::PUT, "/v1.0/schedules/standup", update).await.0, 202);
    let (_, text) = server.get("/v1.0/schedules/standup").await;
    let updated: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((updated["cron"].as_str(), updated["overlap"].as_str()), (Some("*/5 * * * * *"), Some("bufferOne")));
    for (method, path, body, code, error) in [
        (Method::POST, "/v1.0/schedules/bad", r#"{"cron": "* * * * *"}"#, 400, "ERR_MALFORMED_REQUEST"),
        (
            Method::POST,
            "/v1.0/schedules/bad",
            r#"{"workflowName": "http_approval", "cron": "often"}"#,
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            Method::POST,
            "/v1.0/schedules/bad",
            r#"{"workflowName": "nope", "cron": "* * * * *"}"#,
            400,
            "ERR_WORKFLOW_NAME_INVALID",
        ),
        (
            Method::POST,
            "/v1.0/schedules/bad",
            r#"{"workflowName": "http_approval", "cron": "* * * * *", "catchUp": "some"}"#,
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        (Method::POST, "/v1.0/schedules/bad", "[1]", 400, "ERR_MALFORMED_REQUEST"),
        (
            Method::POST,
            "/v1.0/schedules/bad%20id",
            r#"{"workflowName": "http_approval", "cron": "* * * * *"}"#,
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        (Method::PUT, "/v1.0/schedules/missing", update, 404, "ERR_SCHEDULE_NOT_FOUND"),
        (Method::GET, "/v1.0/schedules/missing", "", 404, "ERR_SCHEDULE_NOT_FOUND"),
        (Method::POST, "/v1.0/schedules/missing/pause", "", 404, "ERR_SCHEDULE_NOT_FOUND"),
    ] {
        let (got, text) = server.send(method.clone(), path, body).await;
        assert_eq!((got, error_code(&text)), (code, error.to_owned()), "{method} {path} {body}: {text}");
    }
    assert_eq!(server.send(Method::DELETE, "/v1.0/schedules/standup", "").await.0, 202);
    assert_eq!(server.get("/v1.0/schedules").await.1, "[]");

    let read_only = serve_on(store, RouterOptions::default().read_only(true)).await;
    assert_eq!(read_only.get("/v1.0/schedules").await.0, 200);
    assert_ne!(read_only.post("/v1.0/schedules/other", body).await.0, 201, "no writes through a read-only router");
}

/// The Prometheus route: once the recorder is installed, `GET /metrics` answers the engine's
/// metrics in the text format, a finished instance counted under its workflow and status.
#[cfg(feature = "prometheus")]
#[tokio::test]
async fn prometheus_metrics_over_http() {
    let handle = workflow::http::install_prometheus().expect("the only recorder this process installs");
    let runtime = Runtime::builder()
        .store(MemoryStore::new())
        .workflow(http_approval::Workflow)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let app = workflow::http::router(client.clone()).merge(workflow::http::prometheus(handle));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let order = http_approval::start(&client, "metered order".to_owned()).await.unwrap();
    client.raise_event(order.instance_id(), "approve", &true).await.unwrap();
    order.result_timeout(Duration::from_secs(20)).await.unwrap();
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    let text = response.text().await.unwrap();
    let finished = text
        .lines()
        .find(|line| {
            line.starts_with("workflow_instances_finished_total{")
                && line.contains("workflow=\"http_approval\"")
                && line.contains("status=\"Completed\"")
        })
        .unwrap_or_else(|| panic!("no finished count in:\n{text}"));
    let count: f64 = finished.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
    assert!(count >= 1.0, "{finished}");
    assert!(text.contains("workflow_commits_total"), "{text}");
    task.abort();
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}
