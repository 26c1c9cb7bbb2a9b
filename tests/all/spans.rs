//! Tracing: one `workflow` span per instance run and one `activity` span per attempt, with the
//! ids that tell them apart; a step replayed from the journal emits none; an expected stop (a
//! client suspends the instance) logs no error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use workflow::prelude::*;
use workflow::store::Store;
use workflow::SqliteStore;

/// A span as opened: its name and fields.
#[derive(Debug, Clone)]
struct Opened {
    name: &'static str,
    fields: HashMap<String, String>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}").trim_matches('"').to_owned());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// An event as logged: its level, its fields, and the instance of the span it was logged in.
#[derive(Debug, Clone)]
struct Logged {
    level: Level,
    instance_id: Option<String>,
    fields: HashMap<String, String>,
}

/// A span's `instance_id`, kept in its extensions for the events logged inside it.
struct InstanceOf(String);

struct Capture;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        if let (Some(instance), Some(span)) = (fields.get("instance_id"), ctx.span(id)) {
            span.extensions_mut().insert(InstanceOf(instance.clone()));
        }
        opened().lock().unwrap().push(Opened { name: attrs.metadata().name(), fields });
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let instance_id = ctx.event_scope(event).and_then(|scope| {
            scope.into_iter().find_map(|span| span.extensions().get::<InstanceOf>().map(|i| i.0.clone()))
        });
        logged().lock().unwrap().push(Logged { level: *event.metadata().level(), instance_id, fields });
    }
}

fn logged() -> &'static Mutex<Vec<Logged>> {
    static LOGGED: OnceLock<Mutex<Vec<Logged>>> = OnceLock::new();
    LOGGED.get_or_init(Mutex::default)
}

fn logged_in(instance_id: &str) -> Vec<Logged> {
    logged().lock().unwrap().iter().filter(|event| event.instance_id.as_deref() == Some(instance_id)).cloned().collect()
}

fn opened() -> &'static Mutex<Vec<Opened>> {
    static OPENED: OnceLock<Mutex<Vec<Opened>>> = OnceLock::new();
    OPENED.get_or_init(Mutex::default)
}

fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in this binary");
    });
}

fn spans_of(instance_id: &str, name: &str) -> Vec<HashMap<String, String>> {
    opened()
        .lock()
        .unwrap()
        .iter()
        .filter(|span| span.name == name && span.fields.get("instance_id").map(String::as_str) == Some(instance_id))
        .map(|span| span.fields.clone())
        .collect()
}

#[activity(retry(max_attempts = 3, first_interval = "5ms"))]
async fn traced_step(ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    if n == 2 && ctx.attempt() == 1 {
        return Err(ActivityError::new("first attempt of step 2 fails"));
    }
    Ok(n * 10)
}

#[workflow]
async fn traced(ctx: WorkflowContext, _input: ()) -> Result<u32, WorkflowError> {
    let first = traced_step::call(&ctx, 1).await?;
    let go: u32 = ctx.wait_for_event("go").await?;
    let second = traced_step::call(&ctx, 2).await?;
    Ok(first + second + go)
}

async fn runtime(store: &Arc<dyn Store>) -> Runtime {
    Runtime::builder()
        .store(store.clone())
        .workflow(traced::Workflow)
        .activity(traced_step::Activity)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn spans_per_run_and_per_attempt_and_none_for_replayed_steps() {
    install();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let first = runtime(&store).await;
    let handle = traced::start(&first.client(), ()).await.unwrap();
    let id = handle.instance_id().to_owned();
    // Step 1's record is committed by the flush the wait for "go" makes before it waits: once the
    // journal shows it, the first run is at the wait.
    crate::support::wait_for_journal(&first.client(), &id, |journal| !journal.is_empty()).await;
    first.shutdown(Duration::from_secs(5)).await.unwrap();

    // A second worker replays step 1 and the wait, then runs step 2 (twice: it fails once).
    let second = runtime(&store).await;
    second.client().raise_event(&id, "go", &1_u32).await.unwrap();
    assert_eq!(handle.result_timeout(Duration::from_secs(10)).await.unwrap(), 31);

    let runs = spans_of(&id, "workflow");
    assert_eq!(runs.len(), 2, "one span per run: {runs:?}");
    assert!(runs.iter().all(|run| run.get("workflow").map(String::as_str) == Some("traced")));
    let mut attempts: Vec<(String, String, String)> = spans_of(&id, "activity")
        .into_iter()
        .map(|span| (span["activity"].clone(), span["seq"].clone(), span["attempt"].clone()))
        .collect();
    attempts.sort();
    let expected: Vec<(String, String, String)> = [("0", "1"), ("2", "1"), ("2", "2")]
        .iter()
        .map(|(seq, attempt)| ("traced_step".to_owned(), (*seq).to_owned(), (*attempt).to_owned()))
        .collect();
    assert_eq!(attempts, expected, "step 1 is not re-emitted when it is replayed");
}

/// Suspending a running instance stops its run here (the client's change supersedes it): an
/// expected stop, logged at info, never as an error; the stop is logged inside the instance's span.
#[tokio::test]
async fn a_suspended_run_stops_without_an_error() {
    install();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let runtime = runtime(&store).await;
    let client = runtime.client();
    let handle = traced::start(&client, ()).await.unwrap();
    let id = handle.instance_id().to_owned();
    crate::support::wait_for_journal(&client, &id, |journal| !journal.is_empty()).await;
    client.suspend(&id, Some("paused by the test")).await.unwrap();
    let stop = crate::support::wait_for_value("the suspended run to log its stop", || async {
        logged_in(&id)
            .into_iter()
            .find(|event| event.fields.get("message").is_some_and(|m| m.starts_with("stopped running the instance")))
    })
    .await;
    assert_eq!(stop.level, Level::INFO, "{stop:?}");
    client.resume(&id, None).await.unwrap();
    client.raise_event(&id, "go", &1_u32).await.unwrap();
    assert_eq!(handle.result_timeout(Duration::from_secs(10)).await.unwrap(), 31);
    let errors: Vec<Logged> = logged_in(&id).into_iter().filter(|event| event.level == Level::ERROR).collect();
    assert!(errors.is_empty(), "no error for an expected stop: {errors:?}");
}

#[workflow]
async fn traced_parent(ctx: WorkflowContext, _input: ()) -> Result<u32, WorkflowError> {
    traced::call(&ctx, ()).await
}

/// The trace of an instance is stored with it: its `workflow` spans carry the trace id its
/// starter gave before and after a restart on a reopened store, and a child's spans carry its
/// parent's trace id (with a span of its own). A malformed `traceparent` fails the start.
#[tokio::test]
async fn a_trace_continues_across_a_restart() {
    install();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("trace.db").display());
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let build = |store: Arc<dyn Store>| async move {
        Runtime::builder()
            .store(store)
            .workflow(traced::Workflow)
            .workflow(traced_parent::Workflow)
            .activity(traced_step::Activity)
            .poll_interval(Duration::from_millis(20))
            .build()
            .await
            .unwrap()
    };
    let first = build(Arc::new(SqliteStore::open(&url).await.unwrap())).await;
    let client = first.client();
    let bad = traced::start(&client, ()).trace_parent("00-zz-00f067aa0ba902b7-01").await;
    assert!(matches!(bad, Err(workflow::Error::InvalidArgument(_))), "{bad:?}");
    let traced_id = traced::start(&client, ()).trace_parent(given).await.unwrap().instance_id().to_owned();
    let parent_id = traced_parent::start(&client, ()).await.unwrap().instance_id().to_owned();
    crate::support::wait_for_journal(&client, &traced_id, |journal| !journal.is_empty()).await;
    let children = workflow::ListFilter { parent_id: Some(parent_id.clone()), ..Default::default() };
    let child_id = crate::support::wait_for_value("the child to run", || async {
        let page = client.list(&children, 10, None).await.unwrap();
        page.instances.first().map(|child| child.instance_id.clone())
    })
    .await;
    crate::support::wait_for_journal(&client, &child_id, |journal| !journal.is_empty()).await;
    first.shutdown(Duration::from_secs(5)).await.unwrap();

    // A new runtime on the reopened file reads each instance's trace from the store.
    let second = build(Arc::new(SqliteStore::open(&url).await.unwrap())).await;
    let client = second.client();
    for id in [&traced_id, &child_id] {
        client.raise_event(id, "go", &1_u32).await.unwrap();
    }
    assert_eq!(client.result::<u32>(&traced_id, Some(Duration::from_secs(10))).await.unwrap(), 31);
    assert_eq!(client.result::<u32>(&parent_id, Some(Duration::from_secs(10))).await.unwrap(), 31);

    let field = |spans: &[HashMap<String, String>], name: &str| -> Vec<String> {
        spans.iter().map(|span| span.get(name).cloned().unwrap_or_default()).collect()
    };
    let runs = spans_of(&traced_id, "workflow");
    assert!(runs.len() >= 2, "a run before and one after the restart: {runs:?}");
    assert!(field(&runs, "trace_id").iter().all(|id| id == "4bf92f3577b34da6a3ce929d0e0e4736"), "{runs:?}");
    assert!(field(&runs, "parent_span_id").iter().all(|id| id == "00f067aa0ba902b7"), "{runs:?}");
    assert_eq!(client.status(&traced_id).await.unwrap().trace_context, given);
    let attempts = spans_of(&traced_id, "activity");
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert!(field(&attempts, "trace_id").iter().all(|id| id == "4bf92f3577b34da6a3ce929d0e0e4736"), "{attempts:?}");

    let parent_trace = client.status(&parent_id).await.unwrap().trace_context;
    let parent_trace_id = parent_trace.split('-').nth(1).unwrap().to_owned();
    let (parent_runs, child_runs) = (spans_of(&parent_id, "workflow"), spans_of(&child_id, "workflow"));
    assert!(parent_runs.len() >= 2 && child_runs.len() >= 2, "{parent_runs:?} {child_runs:?}");
    for runs in [&parent_runs, &child_runs] {
        assert!(field(runs, "trace_id").iter().all(|id| *id == parent_trace_id), "{runs:?}");
    }
    let child_trace = client.status(&child_id).await.unwrap().trace_context;
    assert_eq!(child_trace.split('-').nth(1), Some(parent_trace_id.as_str()), "the child continues the trace");
    assert_ne!(child_trace, parent_trace, "with a span of its own");
}

/// An attempt queued in the store's task queue carries its instance's trace to the worker that
/// runs it: its `activity` span has the instance's trace id.
#[tokio::test]
async fn queued_attempts_continue_the_instances_trace() {
    install();
    let runtime = Runtime::builder()
        .store(MemoryStore::new())
        .workflow(traced::Workflow)
        .activity(traced_step::Activity)
        .activity_dispatch(workflow::ActivityDispatch::Shared)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let handle = traced::start(&client, ()).trace_parent(given).await.unwrap();
    crate::support::wait_for_journal(&client, handle.instance_id(), |journal| !journal.is_empty()).await;
    client.raise_event(handle.instance_id(), "go", &1_u32).await.unwrap();
    assert_eq!(handle.result_timeout(Duration::from_secs(10)).await.unwrap(), 31);
    let attempts = spans_of(handle.instance_id(), "activity");
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|span| span.get("trace_id").map(String::as_str) == Some("0af7651916cd43dd8448eb211c80319c")),
        "{attempts:?}"
    );
}
