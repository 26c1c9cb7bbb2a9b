//! `wfctl` run as a process against real stores: a SQLite file that a runtime in this test
//! process works on, the same behind the HTTP router on a real socket, and PostgreSQL (skipped
//! without `DATABASE_URL`, unless `CI` is set).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use workflow::prelude::*;
use workflow::store::Store;
use workflow::{HistoryEvent, InstanceStatus, StepKind};

#[activity]
async fn greet(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
    Ok(format!("hello {name}"))
}

#[activity]
async fn shout(_ctx: ActivityContext, text: String) -> Result<String, ActivityError> {
    Ok(text.to_uppercase())
}

#[workflow]
async fn greeting(ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
    let hello = greet::call(&ctx, name).await?;
    shout::call(&ctx, hello).await
}

#[workflow]
async fn doomed(_ctx: WorkflowContext, reason: String) -> Result<String, WorkflowError> {
    Err(WorkflowError::msg(reason))
}

#[workflow]
async fn approval(ctx: WorkflowContext, order: String) -> Result<String, WorkflowError> {
    let approved: bool = ctx.wait_for_event("approve").await?;
    Ok(format!("{order}: {}", if approved { "approved" } else { "rejected" }))
}

/// How long a test waits for something that should happen.
const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// What one run of `wfctl` did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "wfctl failed: {self:?}");
        assert!(self.stderr.is_empty(), "wfctl wrote to stderr: {self:?}");
        &self.stdout
    }

    /// Asserts that it failed with `code` and one clear line on stderr; returns that line.
    fn failed(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "{self:?}");
        assert!(self.stdout.is_empty(), "a failure printed to stdout: {self:?}");
        let line = self.stderr.strip_suffix('\n').unwrap_or(&self.stderr);
        assert!(line.starts_with("wfctl: ") && !line.contains('\n'), "not one `wfctl:` line: {self:?}");
        assert!(!line.contains("panicked") && !line.contains("RUST_BACKTRACE"), "{self:?}");
        line
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|error| panic!("not JSON ({error}): {self:?}"))
    }
}

/// Runs `wfctl` with `args` (and `stdin`, if given), without the backend variables of the
/// environment the tests run in.
async fn wfctl_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wfctl"));
        command.args(&args).env_remove("WORKFLOW_DATABASE_URL").env_remove("WORKFLOW_HTTP");
        command.envs(env).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("wfctl starts");
        if let Some(text) = stdin {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("stdin written");
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().expect("wfctl ran");
        Run {
            code: output.status.code().expect("wfctl exited (not killed by a signal)"),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        }
    })
    .await
    .expect("the blocking task ran")
}

/// `wfctl --database-url URL args...` (or `--http`, as `backend` says).
async fn wfctl(backend: &[&str], args: &[&str]) -> Run {
    wfctl_with(&[backend, args].concat(), &[], None).await
}

/// Waits (with a deadline) until the instance has `status`.
async fn wait_for_status(client: &Client, id: &str, status: RuntimeStatus) -> InstanceStatus {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let now = client.status(id).await;
        if let Ok(current) = &now {
            if current.status == status {
                return current.clone();
            }
        }
        assert!(Instant::now() < deadline, "{id} did not reach {status:?} within {WAIT_LIMIT:?}: {now:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A runtime on `store` that runs the test workflows, with a schedule that will not fire.
async fn runtime_on(store: Arc<dyn Store>) -> Runtime {
    Runtime::builder()
        .store(store)
        .workflow(greeting::Workflow)
        .workflow(doomed::Workflow)
        .workflow(approval::Workflow)
        .activity(greet::Activity)
        .activity(shout::Activity)
        .schedule(Schedule::of::<greeting::Workflow>("yearly", "0 0 3 1 1 *", &"new year".to_owned()))
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .expect("the runtime starts")
}

/// The instances every SQLite test starts from, with the prefix `p`: `{p}done-1` and `{p}done-2`
/// (Completed), `{p}failed-1` (Failed), `{p}waiting-1` and `{p}waiting-2` (Running, each waiting
/// for an `approve` event).
async fn start_instances(client: &Client, p: &str) {
    for (id, name) in [(format!("{p}done-1"), "ada"), (format!("{p}done-2"), "bob")] {
        let done = greeting::start(client, name.to_owned()).id(&id).await.unwrap();
        assert_eq!(done.result_timeout(WAIT_LIMIT).await.unwrap(), format!("HELLO {}", name.to_uppercase()));
    }
    let failed = doomed::start(client, "out of stock".to_owned()).id(format!("{p}failed-1")).await.unwrap();
    assert!(failed.result_timeout(WAIT_LIMIT).await.is_err());
    for id in [format!("{p}waiting-1"), format!("{p}waiting-2")] {
        approval::start(client, "order".to_owned()).id(&id).await.unwrap();
        wait_for_status(client, &id, RuntimeStatus::Running).await;
    }
}

/// A SQLite file in a temporary directory, a runtime on it, and the instances above.
struct Fixture {
    _dir: tempfile::TempDir,
    url: String,
    runtime: Runtime,
    client: Client,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("app.db").display());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
        let runtime = runtime_on(store).await;
        let client = runtime.client();
        start_instances(&client, "").await;
        Self { _dir: dir, url, runtime, client }
    }

    fn backend(&self) -> [&str; 2] {
        ["--database-url", &self.url]
    }

    async fn wfctl(&self, args: &[&str]) -> Run {
        wfctl(&self.backend(), args).await
    }
}

/// The ids of the instances in a `list --json` document.
fn listed_ids(json: &Value) -> Vec<String> {
    let instances = json["instances"].as_array().unwrap_or_else(|| panic!("no instances in {json}"));
    instances.iter().map(|instance| instance["instanceID"].as_str().unwrap().to_owned()).collect()
}

/// The first column of a table's rows (after its header).
fn first_column(table: &str) -> Vec<&str> {
    table.lines().skip(1).filter_map(|line| line.split_whitespace().next()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_list_shows_filters_and_pages() {
    let fx = Fixture::new().await;

    let table = fx.wfctl(&["list"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert!(lines[0].starts_with("INSTANCE ID") && lines[0].contains("STATUS"), "{table:?}");
    assert_eq!(first_column(table.ok()), ["done-1", "done-2", "failed-1", "waiting-1", "waiting-2"]);
    let failed_row = lines.iter().find(|line| line.starts_with("failed-1")).unwrap();
    assert!(failed_row.contains("doomed") && failed_row.contains("FAILED"), "{failed_row}");
    // The columns are aligned: every row's status starts where the header's does.
    let status_at = lines[0].find("STATUS").unwrap();
    for line in &lines[1..] {
        assert!(["RUNNING", "COMPLETED", "FAILED"].iter().any(|s| line[status_at..].starts_with(s)), "{line}");
    }

    let completed = fx.wfctl(&["list", "--status", "completed"]).await;
    assert_eq!(first_column(completed.ok()), ["done-1", "done-2"]);
    // Dapr's and our names, any case, repeated or as a comma list.
    let mixed = fx.wfctl(&["list", "--status", "FAILED,Running", "--json"]).await.json();
    assert_eq!(listed_ids(&mixed), ["failed-1", "waiting-1", "waiting-2"]);
    let repeated = fx.wfctl(&["list", "--status", "failed", "--status", "RUNNING", "--json"]).await.json();
    assert_eq!(listed_ids(&repeated), listed_ids(&mixed));

    let all = fx.wfctl(&["list", "--json"]).await.json();
    let statuses: Vec<(&str, &str)> = all["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["instanceID"].as_str().unwrap(), i["runtimeStatus"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("done-1", "COMPLETED"),
            ("done-2", "COMPLETED"),
            ("failed-1", "FAILED"),
            ("waiting-1", "RUNNING"),
            ("waiting-2", "RUNNING")
        ]
    );
    assert_eq!(all["continuationToken"], Value::Null);
    // Payloads are left out unless asked for.
    assert!(all["instances"][0]["properties"].get("dapr.workflow.output").is_none(), "{all}");
    let with_payloads = fx.wfctl(&["list", "--status", "completed", "--payloads", "--json"]).await.json();
    assert_eq!(with_payloads["instances"][0]["properties"]["dapr.workflow.output"], r#""HELLO ADA""#);

    let by_workflow = fx.wfctl(&["list", "--workflow", "approval", "--json"]).await.json();
    assert_eq!(listed_ids(&by_workflow), ["waiting-1", "waiting-2"]);
    let future = fx.wfctl(&["list", "--created-after", "2999-01-01T00:00:00Z"]).await;
    assert_eq!(future.ok(), "no instances\n");
    let past = fx.wfctl(&["list", "--created-before", "0", "--json"]).await.json();
    assert_eq!(listed_ids(&past), Vec::<String>::new());
    let newest = fx.wfctl(&["list", "--newest", "--limit", "1", "--json"]).await.json();
    assert_eq!(listed_ids(&newest), ["waiting-2"]);

    // Pages: the first page says how to get the next; --all follows the tokens.
    let page = fx.wfctl(&["list", "--limit", "2"]).await;
    assert_eq!(first_column(page.ok()).len(), 3, "two rows and the `more:` line: {page:?}");
    let more = page.ok().lines().last().unwrap();
    let token = more.strip_prefix("more: --page-token ").unwrap_or_else(|| panic!("no token line: {page:?}"));
    let next = fx.wfctl(&["list", "--limit", "2", "--page-token", token, "--json"]).await.json();
    assert_eq!(listed_ids(&next), ["failed-1", "waiting-1"]);
    let every = fx.wfctl(&["list", "--limit", "2", "--all", "--json"]).await.json();
    assert_eq!(listed_ids(&every), listed_ids(&all));
    assert_eq!(every["continuationToken"], Value::Null);

    // Usage errors are clap's (exit 2).
    assert_eq!(fx.wfctl(&["list", "--status", "done"]).await.code, 2);
    assert_eq!(fx.wfctl(&["list", "--limit", "0"]).await.code, 2);
    assert_eq!(fx.wfctl(&["list", "--created-after", "yesterday"]).await.code, 2);
    let bad_token = fx.wfctl(&["list", "--page-token", "zz"]).await;
    assert!(bad_token.failed(1).contains("continuation token"), "{bad_token:?}");
    fx.runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_show_prints_status_history_and_diagram() {
    let fx = Fixture::new().await;

    let shown = fx.wfctl(&["show", "done-1"]).await;
    let text = shown.ok();
    for expected in [
        "Instance:",
        "done-1",
        "Workflow:",
        "greeting",
        "COMPLETED",
        r#""ada""#,
        r#""HELLO ADA""#,
        "Parent:",
        "SEQ",
        "RECORDED AT",
        "Diagram:",
        "✓ greet",
        "✓ shout",
        "✓ Completed",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    let history: Vec<&str> = text.lines().skip_while(|line| !line.starts_with("SEQ")).collect();
    assert!(history[1].contains("created") && history[1].contains("greeting"), "{text}");
    let step = |seq: &str, name: &str| {
        history.iter().any(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            cells.len() >= 6 && cells[0] == seq && cells[1] == "activity" && cells[2] == name && cells[3] == "Completed"
        })
    };
    assert!(step("0", "greet") && step("1", "shout"), "{text}");
    assert!(!text.contains("flowchart"), "the text diagram, not Mermaid: {text}");
    let mermaid = fx.wfctl(&["show", "done-1", "--mermaid"]).await;
    assert!(mermaid.ok().contains("Diagram (Mermaid):") && mermaid.ok().contains("flowchart"), "{mermaid:?}");
    let no_diagram = fx.wfctl(&["show", "done-1", "--no-diagram"]).await;
    assert!(!no_diagram.ok().contains("Diagram") && no_diagram.ok().contains("shout"), "{no_diagram:?}");

    let failed = fx.wfctl(&["show", "failed-1", "--no-diagram"]).await;
    let error_line = failed.ok().lines().find(|line| line.starts_with("Error:")).unwrap_or_default().to_owned();
    assert!(error_line.contains("out of stock"), "{failed:?}");

    let json = fx.wfctl(&["show", "done-1", "--json"]).await.json();
    assert_eq!(json["status"]["instanceID"], "done-1");
    assert_eq!(json["status"]["runtimeStatus"], "COMPLETED");
    assert_eq!(json["status"]["properties"]["dapr.workflow.output"], r#""HELLO ADA""#);
    let steps: Vec<&Value> = json["history"].as_array().unwrap().iter().filter(|item| item["type"] == "step").collect();
    assert_eq!(steps.len(), 2, "{json}");
    assert_eq!((steps[0]["seq"].as_u64(), steps[0]["kind"].as_str()), (Some(0), Some("activity")));
    assert_eq!(steps[1]["name"], "shout");
    assert!(json["diagram"].as_str().unwrap().contains("flowchart"), "{json}");
    // The diagram is the library's.
    assert_eq!(json["diagram"].as_str().unwrap(), fx.client.diagram("done-1").await.unwrap());

    let unknown = fx.wfctl(&["show", "no-such-instance"]).await;
    assert!(unknown.failed(3).contains("no instance with id `no-such-instance`"), "{unknown:?}");
    let invalid = fx.wfctl(&["show", "not/an/id"]).await;
    assert!(invalid.failed(1).contains("invalid instance id"), "{invalid:?}");
    fx.runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_raise_terminate_suspend_and_resume() {
    let fx = Fixture::new().await;

    // A payload that is not JSON is refused before anything is sent.
    let malformed = fx.wfctl(&["raise", "waiting-1", "approve", "{yes"]).await;
    assert!(malformed.failed(2).contains("not valid JSON"), "{malformed:?}");
    let from_stdin =
        wfctl_with(&[&fx.backend()[..], &["raise", "waiting-1", "approve", "-"]].concat(), &[], Some("")).await;
    assert!(from_stdin.failed(2).contains("not valid JSON"), "{from_stdin:?}");
    let history = fx.client.history("waiting-1").await.unwrap();
    assert!(!history.iter().any(|event| matches!(event, HistoryEvent::EventBuffered(_))), "{history:?}");
    // Nothing was opened either: a payload is checked even before the store.
    let nowhere = wfctl(&["--database-url", "sqlite:/nonexistent/x.db"], &["raise", "x", "e", "nope"]).await;
    assert!(nowhere.failed(2).contains("not valid JSON"), "{nowhere:?}");

    let raised =
        wfctl_with(&[&fx.backend()[..], &["raise", "waiting-1", "approve", "-"]].concat(), &[], Some("true\n")).await;
    assert_eq!(raised.ok(), "raised approve on waiting-1\n");
    let done = wait_for_status(&fx.client, "waiting-1", RuntimeStatus::Completed).await;
    assert_eq!(done.output.as_deref(), Some(r#""order: approved""#));

    let terminated = fx.wfctl(&["terminate", "waiting-2", "--reason", "customer cancelled"]).await;
    assert_eq!(terminated.ok(), "terminated waiting-2\n");
    let status = wait_for_status(&fx.client, "waiting-2", RuntimeStatus::Terminated).await;
    assert_eq!(status.failure.map(|failure| failure.message).as_deref(), Some("customer cancelled"));
    let shown = fx.wfctl(&["show", "waiting-2", "--json", "--no-diagram"]).await.json();
    assert_eq!(shown["status"]["runtimeStatus"], "TERMINATED");

    // Wrong states exit 4, unknown ids 3.
    let again = fx.wfctl(&["terminate", "done-1"]).await;
    assert!(again.failed(4).contains("already finished"), "{again:?}");
    assert!(fx.wfctl(&["raise", "done-1", "approve", "true"]).await.failed(4).contains("finished"));
    assert!(fx.wfctl(&["terminate", "ghost"]).await.failed(3).contains("ghost"));
    assert!(fx.wfctl(&["raise", "ghost", "approve"]).await.failed(3).contains("ghost"));

    approval::start(&fx.client, "later".to_owned()).id("waiting-3").await.unwrap();
    wait_for_status(&fx.client, "waiting-3", RuntimeStatus::Running).await;
    let not_suspended = fx.wfctl(&["resume", "waiting-3"]).await;
    assert!(not_suspended.failed(4).contains("not suspended"), "{not_suspended:?}");
    assert_eq!(fx.wfctl(&["suspend", "waiting-3", "--reason", "audit"]).await.ok(), "suspended waiting-3\n");
    wait_for_status(&fx.client, "waiting-3", RuntimeStatus::Suspended).await;
    let listed = fx.wfctl(&["list", "--status", "suspended", "--json"]).await.json();
    assert_eq!(listed_ids(&listed), ["waiting-3"]);
    let json = fx.wfctl(&["resume", "waiting-3", "--json"]).await.json();
    assert_eq!(json, serde_json::json!({ "instanceID": "waiting-3", "action": "resume" }));
    wait_for_status(&fx.client, "waiting-3", RuntimeStatus::Running).await;
    assert!(fx.wfctl(&["suspend", "done-1"]).await.failed(4).contains("finished"));
    fx.runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_purge_and_rerun() {
    let fx = Fixture::new().await;

    let running = fx.wfctl(&["purge", "waiting-1"]).await;
    assert!(running.failed(4).contains("has not finished"), "{running:?}");
    assert_eq!(fx.wfctl(&["purge", "done-2"]).await.ok(), "purged done-2\n");
    assert!(fx.wfctl(&["show", "done-2"]).await.failed(3).contains("done-2"));
    assert!(matches!(fx.client.status("done-2").await, Err(workflow::Error::InstanceNotFound(_))));
    assert!(fx.wfctl(&["purge", "done-2"]).await.failed(3).contains("done-2"));

    // A rerun from step 1 keeps step 0 as recorded and runs the rest again.
    let rerun = fx.wfctl(&["rerun", "done-1", "--from-step", "1", "--new-id", "done-1-again"]).await;
    assert_eq!(rerun.ok(), "done-1-again\n");
    let again = wait_for_status(&fx.client, "done-1-again", RuntimeStatus::Completed).await;
    assert_eq!(again.output.as_deref(), Some(r#""HELLO ADA""#));
    let (source, copy) = (fx.client.journal("done-1").await.unwrap(), fx.client.journal("done-1-again").await.unwrap());
    assert_eq!(copy.len(), 2);
    assert_eq!((copy[0].kind, copy[0].recorded_at), (StepKind::Activity, source[0].recorded_at), "step 0 copied");

    // With a new input (JSON, checked first) and a generated id.
    assert_eq!(fx.wfctl(&["rerun", "done-1", "--from-step", "0", "--input", "zoe"]).await.code, 2);
    let json = fx.wfctl(&["rerun", "done-1", "--from-step", "0", "--input", r#""zoe""#, "--json"]).await.json();
    assert_eq!(json["sourceInstanceID"], "done-1");
    let new_id = json["instanceID"].as_str().unwrap().to_owned();
    let zoe = wait_for_status(&fx.client, &new_id, RuntimeStatus::Completed).await;
    assert_eq!(zoe.output.as_deref(), Some(r#""HELLO ZOE""#));

    let taken = fx.wfctl(&["rerun", "done-1", "--from-step", "0", "--new-id", "done-1-again"]).await;
    assert!(taken.failed(4).contains("already exists"), "{taken:?}");
    let unfinished = fx.wfctl(&["rerun", "waiting-1", "--from-step", "0"]).await;
    assert!(unfinished.failed(4).contains("has not finished"), "{unfinished:?}");
    assert_eq!(fx.wfctl(&["rerun", "done-1"]).await.code, 2, "--from-step is required");
    fx.runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_schedules_and_queues() {
    let fx = Fixture::new().await;

    let listed = fx.wfctl(&["schedules"]).await;
    assert_eq!(first_column(listed.ok()), ["yearly"]);
    assert!(listed.ok().contains("0 0 3 1 1 *") && listed.ok().contains("active"), "{listed:?}");
    let shown = fx.wfctl(&["schedules", "show", "yearly"]).await;
    for expected in ["Schedule:", "greeting", "Next runs:", "-01-01T03:00:00.000Z", "Recent runs:", "Paused:"] {
        assert!(shown.ok().contains(expected), "no {expected:?} in {shown:?}");
    }
    let json = fx.wfctl(&["schedules", "show", "yearly", "--json"]).await.json();
    assert_eq!((json["scheduleID"].as_str(), json["input"].as_str()), (Some("yearly"), Some("new year")));
    assert_eq!(json["nextRuns"].as_array().map(Vec::len), Some(5));

    assert_eq!(fx.wfctl(&["schedules", "pause", "yearly"]).await.ok(), "paused schedule yearly\n");
    let paused = fx.wfctl(&["schedules", "--json"]).await.json();
    assert_eq!((paused[0]["paused"].as_bool(), paused[0]["nextRuns"].as_array().map(Vec::len)), (Some(true), Some(0)));
    assert_eq!(fx.wfctl(&["schedules", "resume", "yearly"]).await.ok(), "resumed schedule yearly\n");
    assert!(!fx.client.schedule("yearly").await.unwrap().paused);

    let triggered = fx.wfctl(&["schedules", "trigger", "yearly"]).await;
    let started = triggered.ok().trim().to_owned();
    assert!(started.starts_with("yearly-manual-"), "{triggered:?}");
    let run = wait_for_status(&fx.client, &started, RuntimeStatus::Completed).await;
    assert_eq!(run.output.as_deref(), Some(r#""HELLO NEW YEAR""#));

    assert_eq!(fx.wfctl(&["schedules", "delete", "yearly"]).await.ok(), "deleted schedule yearly\n");
    assert!(fx.wfctl(&["schedules", "show", "yearly"]).await.failed(3).contains("no schedule"));
    assert!(fx.wfctl(&["schedules", "trigger", "yearly"]).await.failed(3).contains("yearly"));
    assert_eq!(fx.wfctl(&["schedules"]).await.ok(), "no schedules\n");

    // The two waiting instances are the approval workflow's Running queue.
    let queues = fx.wfctl(&["queues", "--json"]).await.json();
    let approval = queues.as_array().unwrap().iter().find(|queue| queue["name"] == "approval").unwrap();
    assert_eq!((approval["kind"].as_str(), approval["running"].as_u64()), (Some("workflow"), Some(2)), "{queues}");
    let table = fx.wfctl(&["queues"]).await;
    assert!(table.ok().starts_with("KIND") && table.ok().contains("approval"), "{table:?}");
    fx.runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn unusable_backends_exit_5_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    for url in [format!("sqlite:{}", missing.display()), format!("sqlite://{}", missing.display())] {
        let run = wfctl(&["--database-url", &url], &["list"]).await;
        assert!(run.failed(5).contains(&format!("no database at {}", missing.display())), "{run:?}");
    }
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(entries.is_empty(), "wfctl created {entries:?}");
    assert!(!Path::new(&missing).exists());

    // From the environment too.
    let url = format!("sqlite:{}", missing.display());
    let from_env = wfctl_with(&["show", "x"], &[("WORKFLOW_DATABASE_URL", &url)], None).await;
    assert!(from_env.failed(5).contains("no database at"), "{from_env:?}");
    assert!(!Path::new(&missing).exists());

    assert!(wfctl(&["--database-url", "mysql://db/app"], &["list"]).await.failed(5).contains("unsupported"));
    assert!(wfctl(&["--database-url", "sqlite::memory:"], &["list"]).await.failed(5).contains("in-memory"));
    let refused = wfctl(&["--database-url", "postgres://nobody:secret@127.0.0.1:1/none"], &["list"]).await;
    let line = refused.failed(5);
    assert!(line.contains("cannot reach the PostgreSQL server") && !line.contains("secret"), "{refused:?}");
    assert!(wfctl(&["--http", "ftp://host"], &["list"]).await.failed(5).contains("http://"));
    assert!(wfctl(&["--http", "not a url"], &["list"]).await.failed(5).contains("invalid --http URL"));

    // No backend, or two: usage errors.
    assert!(wfctl(&[], &["list"]).await.failed(2).contains("no backend"));
    let both =
        wfctl_with(&["list"], &[("WORKFLOW_DATABASE_URL", &url), ("WORKFLOW_HTTP", "http://127.0.0.1:1")], None).await;
    assert!(both.failed(2).contains("both"), "{both:?}");
    assert_eq!(wfctl(&["--database-url", &url, "--http", "http://127.0.0.1:1"], &["list"]).await.code, 2);

    // --help documents the exit codes.
    let help = wfctl(&[], &["--help"]).await;
    for line in ["Exit codes:", "3  not found", "4  wrong state", "5  cannot reach"] {
        assert!(help.ok().contains(line), "no {line:?} in --help");
    }
}

/// The router on a real socket, served with a runtime's client.
struct Server {
    base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(client: Client) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = workflow::http::router(client);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { base, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_runs_the_same_commands() {
    let fx = Fixture::new().await;
    let server = serve(fx.client.clone()).await;
    let with_version = format!("{}/v1.0/", server.base);
    let http = ["--http", server.base.as_str()];

    // The same JSON as the database backend, whichever base URL form is given.
    let over_http = wfctl(&http, &["list", "--json"]).await.json();
    let over_db = fx.wfctl(&["list", "--json"]).await.json();
    assert_eq!(over_http, over_db);
    let versioned = wfctl(&["--http", &with_version], &["list", "--status", "running", "--json"]).await.json();
    assert_eq!(listed_ids(&versioned), ["waiting-1", "waiting-2"]);
    let from_env = wfctl_with(&["list", "--status", "failed"], &[("WORKFLOW_HTTP", &server.base)], None).await;
    assert_eq!(first_column(from_env.ok()), ["failed-1"]);
    let page = wfctl(&http, &["list", "--limit", "2", "--all", "--json"]).await.json();
    assert_eq!(listed_ids(&page).len(), 5);

    let shown = wfctl(&http, &["show", "done-1"]).await;
    for expected in ["COMPLETED", r#""HELLO ADA""#, "RECORDED AT", "✓ greet", "✓ shout"] {
        assert!(shown.ok().contains(expected), "no {expected:?} in {shown:?}");
    }
    let json_http = wfctl(&http, &["show", "done-1", "--json"]).await.json();
    let json_db = fx.wfctl(&["show", "done-1", "--json"]).await.json();
    assert_eq!(json_http["history"], json_db["history"]);
    assert_eq!(json_http["diagram"], json_db["diagram"]);
    assert_eq!(json_http["status"], json_db["status"]);

    let bad = wfctl(&http, &["raise", "waiting-1", "approve", "{"]).await;
    assert!(bad.failed(2).contains("not valid JSON"), "{bad:?}");
    assert_eq!(wfctl(&http, &["raise", "waiting-1", "approve", "false"]).await.ok(), "raised approve on waiting-1\n");
    let done = wait_for_status(&fx.client, "waiting-1", RuntimeStatus::Completed).await;
    assert_eq!(done.output.as_deref(), Some(r#""order: rejected""#));

    assert_eq!(wfctl(&http, &["suspend", "waiting-2"]).await.ok(), "suspended waiting-2\n");
    wait_for_status(&fx.client, "waiting-2", RuntimeStatus::Suspended).await;
    assert_eq!(wfctl(&http, &["resume", "waiting-2"]).await.ok(), "resumed waiting-2\n");
    assert!(wfctl(&http, &["resume", "waiting-2"]).await.failed(4).contains("not suspended"));
    assert_eq!(wfctl(&http, &["terminate", "waiting-2", "--reason", "by http"]).await.ok(), "terminated waiting-2\n");
    let terminated = wait_for_status(&fx.client, "waiting-2", RuntimeStatus::Terminated).await;
    assert_eq!(terminated.failure.map(|failure| failure.message).as_deref(), Some("by http"));
    assert!(wfctl(&http, &["terminate", "done-1"]).await.failed(4).contains("already finished"));
    assert!(wfctl(&http, &["show", "ghost"]).await.failed(3).contains("no instance with id `ghost`"));
    assert!(wfctl(&http, &["purge", "ghost"]).await.failed(3).contains("ghost"));

    let rerun = wfctl(&http, &["rerun", "done-1", "--from-step", "1", "--new-id", "via-http"]).await;
    assert_eq!(rerun.ok(), "via-http\n");
    let again = wait_for_status(&fx.client, "via-http", RuntimeStatus::Completed).await;
    assert_eq!(again.output.as_deref(), Some(r#""HELLO ADA""#));
    let with_input = wfctl(&http, &["rerun", "done-1", "--from-step", "0", "--input", r#""eve""#]).await;
    let eve = wait_for_status(&fx.client, with_input.ok().trim(), RuntimeStatus::Completed).await;
    assert_eq!(eve.output.as_deref(), Some(r#""HELLO EVE""#));
    assert!(wfctl(&http, &["rerun", "waiting-1", "--from-step", "0", "--new-id", "via-http"])
        .await
        .failed(4)
        .contains("exists"));

    assert_eq!(wfctl(&http, &["purge", "via-http"]).await.ok(), "purged via-http\n");
    assert!(matches!(fx.client.status("via-http").await, Err(workflow::Error::InstanceNotFound(_))));

    let schedules = wfctl(&http, &["schedules", "--json"]).await.json();
    assert_eq!(schedules, fx.wfctl(&["schedules", "--json"]).await.json());
    assert_eq!(wfctl(&http, &["schedules", "pause", "yearly"]).await.ok(), "paused schedule yearly\n");
    assert!(fx.client.schedule("yearly").await.unwrap().paused);
    assert!(wfctl(&http, &["schedules", "show", "nope"]).await.failed(3).contains("no schedule"));
    let queues = wfctl(&http, &["queues", "--json"]).await.json();
    assert!(queues.as_array().is_some(), "{queues}");

    // A port nobody listens on (one just let go): exit 5.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = wfctl(&["--http", &format!("http://127.0.0.1:{port}")], &["list"]).await;
    assert!(refused.failed(5).contains("cannot reach") && refused.stderr.contains("refused"), "{refused:?}");
    fx.runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_from_routes_that_are_not_there() {
    // A server that answers, but is no workflow router: its 404s are not "no such instance".
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let run = wfctl(&["--http", &base], &["show", "x"]).await;
    assert!(run.failed(1).contains("no route"), "{run:?}");
    task.abort();

    // A read-only router reads, and refuses changes with a message that says why.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let client = Client::new(Arc::new(MemoryStore::new()) as Arc<dyn Store>);
    let app = workflow::http::router_with(client, workflow::http::RouterOptions::default().read_only(true));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    assert_eq!(wfctl(&["--http", &base], &["list"]).await.ok(), "no instances\n");
    assert!(wfctl(&["--http", &base], &["show", "x"]).await.failed(3).contains("no instance with id `x`"));
    for args in [&["terminate", "x"][..], &["schedules", "delete", "nightly"]] {
        let run = wfctl(&["--http", &base], args).await;
        assert!(run.failed(1).contains("read-only"), "{run:?}");
    }
    task.abort();
}

/// `DATABASE_URL`, or `None` (the test says SKIPPED) when it is unset; under CI (`CI` set) a
/// missing `DATABASE_URL` fails the test instead.
fn postgres_url() -> Option<String> {
    if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()) {
        return Some(url);
    }
    let in_ci = std::env::var("CI").is_ok_and(|ci| !ci.is_empty() && ci != "0" && ci != "false");
    assert!(!in_ci, "DATABASE_URL is not set, and CI is: PostgreSQL tests must run in CI, not be skipped");
    eprintln!("SKIPPED: postgres_list_show_and_terminate: DATABASE_URL is not set");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_list_show_and_terminate() {
    let Some(url) = postgres_url() else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let schema = format!("wfctl_{nanos:x}_{}", std::process::id());
    let store =
        workflow::PostgresStore::open_with(&url, workflow::PostgresOptions::new().schema(&schema)).await.unwrap();
    let runtime = runtime_on(Arc::new(store)).await;
    let client = runtime.client();
    start_instances(&client, "pg-").await;
    // wfctl reaches the schema through the URL's search_path.
    let separator = if url.contains('?') { '&' } else { '?' };
    let cli_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    let backend = ["--database-url", cli_url.as_str()];

    let listed = wfctl(&backend, &["list", "--json"]).await.json();
    assert_eq!(listed_ids(&listed), ["pg-done-1", "pg-done-2", "pg-failed-1", "pg-waiting-1", "pg-waiting-2"]);
    let running = wfctl(&backend, &["list", "--status", "RUNNING"]).await;
    assert_eq!(first_column(running.ok()), ["pg-waiting-1", "pg-waiting-2"]);

    let shown = wfctl(&backend, &["show", "pg-done-1", "--mermaid"]).await;
    for expected in ["COMPLETED", r#""HELLO ADA""#, "greet", "shout", "flowchart"] {
        assert!(shown.ok().contains(expected), "no {expected:?} in {shown:?}");
    }
    assert_eq!(wfctl(&backend, &["terminate", "pg-waiting-1"]).await.ok(), "terminated pg-waiting-1\n");
    wait_for_status(&client, "pg-waiting-1", RuntimeStatus::Terminated).await;
    assert!(wfctl(&backend, &["terminate", "pg-waiting-1"]).await.failed(4).contains("already finished"));
    assert!(wfctl(&backend, &["show", "pg-ghost"]).await.failed(3).contains("pg-ghost"));

    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(client);
    drop(runtime);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await.unwrap();
    pool.close().await;
}
