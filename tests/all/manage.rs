//! The management API: start policies, terminate, suspend/resume, purge, list, history, rerun,
//! retention and diagrams, each with the typed error of a missing instance or a wrong state.

use std::sync::Arc;
use std::time::Duration;

use workflow::prelude::*;
use workflow::store::{InstanceRecord, Store, WriteOp};
use workflow::{Error, HistoryEvent, ListFilter, RetentionPolicy, ReusePolicy};

use crate::support::{bump, count, wait_for_a_claim_pass, wait_for_count, wait_until};

#[activity]
async fn m_step(ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    bump(ctx.instance_id(), &format!("m_step {}", ctx.seq()));
    Ok(n + 1)
}

#[activity]
async fn m_slow(ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    bump(ctx.instance_id(), "m_slow");
    // Simulated work (the subject, not a wait): a suspend lands mid-attempt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(n)
}

#[workflow]
async fn m_chain(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let a = m_step::call(&ctx, n).await?;
    let b = m_step::call(&ctx, a).await?;
    m_step::call(&ctx, b).await
}

/// Step, wait for "go", step.
#[workflow]
async fn m_gated(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let a = m_step::call(&ctx, n).await?;
    let go: u32 = ctx.wait_for_event("go").await?;
    m_step::call(&ctx, a + go).await
}

#[workflow]
async fn m_parent(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let child = m_gated::call(&ctx, n).await?;
    m_step::call(&ctx, child).await
}

#[workflow]
async fn m_slow_then_step(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let a = m_slow::call(&ctx, n).await?;
    m_step::call(&ctx, a).await
}

#[workflow]
async fn m_fails(_ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    Err(WorkflowError::msg("m_fails always fails"))
}

#[workflow]
async fn m_fan(ctx: WorkflowContext, n: u32) -> Result<Vec<u32>, WorkflowError> {
    let first = m_step::call(&ctx, n).await?;
    m_step::fan_out(&ctx, vec![first; 3]).await
}

fn builder(store: Arc<dyn Store>) -> workflow::RuntimeBuilder {
    Runtime::builder()
        .store(store)
        .workflow(m_chain::Workflow)
        .workflow(m_gated::Workflow)
        .workflow(m_parent::Workflow)
        .workflow(m_slow_then_step::Workflow)
        .workflow(m_fails::Workflow)
        .workflow(m_fan::Workflow)
        .activity(m_step::Activity)
        .activity(m_slow::Activity)
        .poll_interval(Duration::from_millis(20))
}

async fn runtime() -> Runtime {
    builder(Arc::new(MemoryStore::new())).build().await.unwrap()
}

async fn wait_status(client: &Client, id: &str, status: RuntimeStatus) {
    wait_until(&format!("{id} to be {status:?}"), || async {
        client.status(id).await.ok().map(|s| s.status) == Some(status)
    })
    .await;
}

/// Waits until `rt` holds no instance in memory: every run it stopped has left, and with it
/// the workflow body (so that run can start no further step).
async fn wait_for_runs_to_leave(rt: &Runtime, what: &str) {
    wait_until(&format!("{what} to leave memory"), || async { rt.instances_in_memory() == 0 }).await;
}

/// Waits until a retention pass that listed the instances after this call has purged `id`, an
/// instance written here as completed long ago: proof that the loop ran a pass after this call
/// (and that every pass before it ended, as passes run one at a time).
async fn wait_for_a_retention_pass(store: &Arc<dyn Store>, id: &str) {
    let long_ago = 1_000_000;
    let expired = InstanceRecord {
        status: RuntimeStatus::Completed,
        output: Some("0".into()),
        ..InstanceRecord::pending(id, "m_chain", "0", long_ago)
    };
    store.write(&[WriteOp::CreateInstance(expired)]).await.unwrap();
    wait_until(&format!("retention to purge the expired marker {id}"), || async {
        store.instance(id).await.unwrap().is_none()
    })
    .await;
}

/// Waits until the instance has `n` journal records.
async fn wait_records(client: &Client, id: &str, n: usize) {
    crate::support::wait_for_journal(client, id, |journal| journal.len() >= n).await;
}

#[tokio::test]
async fn start_reuse_policies() {
    let rt = runtime().await;
    let client = rt.client();
    client.start_untyped("m_gated", "1").id("reuse-1").await.unwrap();
    wait_records(&client, "reuse-1", 1).await;
    let taken = client.start_untyped("m_gated", "2").id("reuse-1").reuse(ReusePolicy::Error).await;
    assert!(matches!(taken, Err(Error::InstanceExists(ref id)) if id == "reuse-1"), "{taken:?}");
    let existing = client.start_untyped("m_gated", "2").id("reuse-1").reuse(ReusePolicy::ReturnExisting).await;
    assert_eq!(existing.unwrap().instance_id(), "reuse-1");
    assert_eq!(client.status("reuse-1").await.unwrap().input, "1", "the existing instance is untouched");
    let other = client.start_untyped("m_chain", "2").id("reuse-1").reuse(ReusePolicy::ReturnExisting).await;
    assert!(matches!(other, Err(Error::InstanceExists(_))), "another workflow's instance is not returned: {other:?}");

    // Restart: the running instance is terminated and purged, then started afresh.
    let restarted = client.start_untyped("m_chain", "10").id("reuse-1").reuse(ReusePolicy::TerminateAndRestart).await;
    assert_eq!(restarted.unwrap().instance_id(), "reuse-1");
    assert_eq!(client.result::<u32>("reuse-1", Some(Duration::from_secs(10))).await.unwrap(), 13);
    let journal = client.journal("reuse-1").await.unwrap();
    assert_eq!(journal.len(), 3, "only the new run's records: {journal:?}");
    // And a finished one is replaced too.
    client.start_untyped("m_chain", "20").id("reuse-1").reuse(ReusePolicy::TerminateAndRestart).await.unwrap();
    assert_eq!(client.result::<u32>("reuse-1", Some(Duration::from_secs(10))).await.unwrap(), 23);
}

/// A program that restarts re-attaches to its instances through the same typed start: no JSON,
/// no output type restated, and the handle carries the instance's actions.
#[tokio::test]
async fn typed_starts_re_attach_and_handles_act_on_their_instance() {
    let rt = runtime().await;
    let client = rt.client();
    let first: Handle<u32> = m_gated::start(&client, 1).id("typed-1").await.unwrap();
    wait_records(&client, "typed-1", 1).await;
    // Another process (or this one after a restart) asks for the same id with other input.
    let again = m_gated::start(&client, 99).id("typed-1").reuse(ReusePolicy::ReturnExisting).await.unwrap();
    assert_eq!(again.instance_id(), "typed-1");
    assert_eq!(again.status().await.unwrap().input, "1", "the existing instance is untouched");
    let taken = m_gated::start(&client, 99).id("typed-1").await;
    assert!(matches!(taken, Err(Error::InstanceExists(ref id)) if id == "typed-1"), "{taken:?}");
    let bad_id = m_gated::start(&client, 1).id("not ok!").await;
    assert!(matches!(bad_id, Err(Error::InvalidInstanceId { .. })), "{bad_id:?}");

    again.suspend(Some("typed")).await.unwrap();
    wait_status(&client, "typed-1", RuntimeStatus::Suspended).await;
    again.resume(None).await.unwrap();
    again.raise_event("go", &2).await.unwrap();
    // m_step adds one at each step: (1 + 1) + 2 + 1.
    assert_eq!(first.result_timeout(Duration::from_secs(10)).await.unwrap(), 5);
    assert_eq!(again.result().await.unwrap(), 5);
    let history = again.history().await.unwrap();
    assert!(matches!(history.last(), Some(HistoryEvent::Status(status)) if status.status == RuntimeStatus::Completed));
    assert_eq!(again.journal().await.unwrap().len(), 3);
    assert!(again.diagram().await.unwrap().starts_with("flowchart TD"));
    assert_eq!(again.purge().await.unwrap(), 1);
    assert!(matches!(again.status().await, Err(Error::InstanceNotFound(_))));

    // Many typed starts awaited together: a start is a future.
    let handles = futures::future::try_join_all((0..5).map(|n| m_chain::start(&client, n))).await.unwrap();
    for (n, handle) in (0..5).zip(handles) {
        assert_eq!(handle.result().await.unwrap(), n + 3);
    }
    let running = m_gated::start(&client, 1).id("typed-2").await.unwrap();
    running.terminate(Some("done with it")).await.unwrap();
    assert!(matches!(running.result().await, Err(Error::NoResult { status: RuntimeStatus::Terminated, .. })));
}

/// `ReturnExisting` is atomic: 64 concurrent starts of one id all get the same instance, whether
/// they race in one runtime or across two sharing the store; one instance is created.
#[tokio::test]
async fn return_existing_is_atomic_under_concurrent_starts() {
    let (_dir, _url, store) = crate::support::sqlite_store().await;
    let one = builder(store.clone()).build().await.unwrap();
    let two = builder(store.clone()).build().await.unwrap();
    for (round, clients) in [("race-one", vec![one.client()]), ("race-two", vec![one.client(), two.client()])] {
        let starts = (0..64u32).map(|n| {
            let client = clients[n as usize % clients.len()].clone();
            async move { m_gated::start(&client, n).id(round).reuse(ReusePolicy::ReturnExisting).await }
        });
        let handles = futures::future::join_all(starts).await;
        for handle in &handles {
            let handle = handle.as_ref().unwrap_or_else(|error| panic!("{round}: a start failed: {error}"));
            assert_eq!(handle.instance_id(), round);
        }
        let filter = ListFilter { workflow: Some("m_gated".into()), ..ListFilter::default() };
        let page = one.client().list(&filter, 100, None).await.unwrap();
        let created: Vec<String> = page.instances.into_iter().map(|s| s.instance_id).filter(|id| id == round).collect();
        assert_eq!(created, [round], "one instance");
        // Its input is one of the 64, written once.
        let input: u32 = serde_json::from_str(&one.client().status(round).await.unwrap().input).unwrap();
        assert!(input < 64);
        one.client().raise_event(round, "go", &0).await.unwrap();
        assert_eq!(handles[0].as_ref().unwrap().result().await.unwrap(), input + 2);
    }
}

#[tokio::test]
async fn terminate_is_recursive_and_stops_every_step() {
    terminate_is_recursive_and_stops_every_step_on(Arc::new(MemoryStore::new()), "").await;
}

#[tokio::test]
async fn terminate_is_recursive_and_stops_every_step_on_sqlite() {
    let (_dir, _url, store) = crate::support::sqlite_store().await;
    terminate_is_recursive_and_stops_every_step_on(store, "sq-").await;
}

async fn terminate_is_recursive_and_stops_every_step_on(store: Arc<dyn Store>, prefix: &str) {
    let rt = builder(store).build().await.unwrap();
    let p = |s: &str| format!("{prefix}{s}");
    let client = rt.client();
    let parent = m_parent::start(&client, 1).id(p("term-parent").as_str()).await.unwrap();
    let child_id = p("term-parent-g0-c0");
    let child_id = child_id.as_str();
    wait_status(&client, child_id, RuntimeStatus::Running).await;
    wait_records(&client, child_id, 1).await;

    client.terminate(p("term-parent").as_str(), Some("order cancelled")).await.unwrap();
    for id in [p("term-parent").as_str(), child_id] {
        let status = client.status(id).await.unwrap();
        assert_eq!(status.status, RuntimeStatus::Terminated, "{id}");
        assert_eq!(status.failure.unwrap().message, "order cancelled");
    }
    assert!(matches!(parent.result().await, Err(Error::NoResult { status: RuntimeStatus::Terminated, .. })));
    // An event for the terminated child is refused, and nothing runs any more.
    assert!(matches!(client.raise_event(child_id, "go", &1_u32).await, Err(Error::InstanceFinished(_))));
    // What proves it: both runs left memory (their bodies are gone), and a claim made after the
    // terminate passed both instances over.
    wait_for_runs_to_leave(&rt, "the terminated runs").await;
    wait_for_a_claim_pass(rt.store(), "m_chain", p("term-probe").as_str(), "1").await;
    assert_eq!(count(child_id, "m_step 2"), 0);
    assert_eq!(count(p("term-parent").as_str(), "m_step 1"), 0);

    let again = client.terminate(p("term-parent").as_str(), None).await;
    assert!(matches!(again, Err(Error::InstanceFinished(_))), "{again:?}");
    assert!(matches!(client.terminate(p("term-nobody").as_str(), None).await, Err(Error::InstanceNotFound(_))));

    // Not recursive: the child keeps running.
    m_parent::start(&client, 1).id(p("term-solo").as_str()).await.unwrap();
    wait_records(&client, p("term-solo-g0-c0").as_str(), 1).await;
    client.terminate(p("term-solo").as_str(), None).recursive(false).await.unwrap();
    assert_eq!(client.status(p("term-solo-g0-c0").as_str()).await.unwrap().status, RuntimeStatus::Running);
}

#[tokio::test]
async fn suspend_buffers_events_and_resume_continues() {
    suspend_buffers_events_and_resume_continues_on(Arc::new(MemoryStore::new()), "").await;
}

#[tokio::test]
async fn suspend_buffers_events_and_resume_continues_on_sqlite() {
    let (_dir, _url, store) = crate::support::sqlite_store().await;
    suspend_buffers_events_and_resume_continues_on(store, "sq-").await;
}

async fn suspend_buffers_events_and_resume_continues_on(store: Arc<dyn Store>, prefix: &str) {
    let rt = builder(store).build().await.unwrap();
    let p = |s: &str| format!("{prefix}{s}");
    let client = rt.client();
    let handle = m_gated::start(&client, 1).id(p("susp-1").as_str()).await.unwrap();
    wait_records(&client, p("susp-1").as_str(), 1).await;
    client.suspend(p("susp-1").as_str(), Some("maintenance")).await.unwrap();
    client.suspend(p("susp-1").as_str(), None).await.unwrap(); // suspending twice changes nothing
    assert_eq!(client.status(p("susp-1").as_str()).await.unwrap().status, RuntimeStatus::Suspended);
    client.raise_event(p("susp-1").as_str(), "go", &5_u32).await.unwrap();
    // What proves it: the suspended run left memory after the event was raised, and a claim made
    // after the event passed the instance over.
    wait_for_runs_to_leave(&rt, "the suspended run").await;
    wait_for_a_claim_pass(rt.store(), "m_chain", p("susp-probe").as_str(), "1").await;
    assert_eq!(count(p("susp-1").as_str(), "m_step 2"), 0, "a suspended instance runs no new step");
    assert_eq!(client.status(p("susp-1").as_str()).await.unwrap().status, RuntimeStatus::Suspended);

    client.resume(p("susp-1").as_str(), Some("done")).await.unwrap();
    assert_eq!(handle.result_timeout(Duration::from_secs(10)).await.unwrap(), 8);
    assert_eq!(count(p("susp-1").as_str(), "m_step 0"), 1, "the step before the suspension is not run again");
    assert_eq!(count(p("susp-1").as_str(), "m_step 2"), 1);

    let not_suspended = client.resume(p("susp-1").as_str(), None).await;
    assert!(matches!(not_suspended, Err(Error::NotSuspended { status: RuntimeStatus::Completed, .. })));
    assert!(matches!(client.suspend(p("susp-1").as_str(), None).await, Err(Error::InstanceFinished(_))));
    assert!(matches!(client.resume(p("susp-nobody").as_str(), None).await, Err(Error::InstanceNotFound(_))));
}

#[tokio::test]
async fn suspending_during_an_activity_keeps_the_next_step_from_starting() {
    let rt = runtime().await;
    let client = rt.client();
    let handle = m_slow_then_step::start(&client, 1).id("susp-busy").await.unwrap();
    wait_for_count("susp-busy", "m_slow", 1).await;
    client.suspend("susp-busy", None).await.unwrap();
    // What proves the next step did not start: the run left memory (its body, the one place the
    // next step is called from, is gone), and a claim made after the suspend passed it over.
    wait_for_runs_to_leave(&rt, "the suspended run").await;
    wait_for_a_claim_pass(rt.store(), "m_chain", "susp-busy-probe", "1").await;
    assert_eq!(count("susp-busy", "m_step 1"), 0);
    assert!(client.journal("susp-busy").await.unwrap().is_empty(), "the suspended attempt's outcome is not recorded");
    client.resume("susp-busy", None).await.unwrap();
    assert_eq!(handle.result_timeout(Duration::from_secs(10)).await.unwrap(), 2);
    assert_eq!(count("susp-busy", "m_step 1"), 1);
}

#[tokio::test]
async fn purge_removes_finished_instances_with_their_children() {
    purge_removes_finished_instances_with_their_children_on(Arc::new(MemoryStore::new()), "").await;
}

#[tokio::test]
async fn purge_removes_finished_instances_with_their_children_on_sqlite() {
    let (_dir, _url, store) = crate::support::sqlite_store().await;
    purge_removes_finished_instances_with_their_children_on(store, "sq-").await;
}

async fn purge_removes_finished_instances_with_their_children_on(store: Arc<dyn Store>, prefix: &str) {
    let rt = builder(store).build().await.unwrap();
    let p = |s: &str| format!("{prefix}{s}");
    let client = rt.client();
    let store = rt.store().clone();
    m_parent::start(&client, 1).id(p("purge-p").as_str()).await.unwrap();
    let child = p("purge-p-g0-c0");
    let child = child.as_str();
    wait_records(&client, child, 1).await;
    let running = client.purge(p("purge-p").as_str()).await;
    assert!(matches!(running, Err(Error::NotFinished { status: RuntimeStatus::Running, .. })), "{running:?}");
    client.raise_event(child, "go", &1_u32).await.unwrap();
    assert_eq!(client.result::<u32>(p("purge-p").as_str(), Some(Duration::from_secs(10))).await.unwrap(), 5);

    assert_eq!(client.purge(p("purge-p").as_str()).await.unwrap(), 2);
    for id in [p("purge-p").as_str(), child] {
        assert!(store.instance(id).await.unwrap().is_none(), "{id} is gone");
        assert!(store.journal(id, 0).await.unwrap().is_empty(), "{id}'s journal is gone");
        assert!(store.events(id).await.unwrap().is_empty());
        assert!(matches!(client.status(id).await, Err(Error::InstanceNotFound(_))));
    }
    assert!(matches!(client.purge(p("purge-p").as_str()).await, Err(Error::InstanceNotFound(_))));
}

#[tokio::test]
async fn list_filters_and_pages() {
    let clock = VirtualClock::new(1_000_000);
    let rt = builder(Arc::new(MemoryStore::new())).clock(clock.clone()).build().await.unwrap();
    let client = rt.client();
    for i in 0..5 {
        client.start_untyped("m_chain", "1").id(format!("list-c{i}")).await.unwrap();
        clock.advance(Duration::from_secs(1));
    }
    client.start_untyped("m_fails", "1").id("list-f").await.unwrap();
    for i in 0..5 {
        client.result::<u32>(&format!("list-c{i}"), Some(Duration::from_secs(10))).await.unwrap();
    }
    wait_status(&client, "list-f", RuntimeStatus::Failed).await;

    let ids = |page: &workflow::InstancePage| page.instances.iter().map(|i| i.instance_id.clone()).collect::<Vec<_>>();
    let all = client.list(&ListFilter::default(), 100, None).await.unwrap();
    assert_eq!(ids(&all), ["list-c0", "list-c1", "list-c2", "list-c3", "list-c4", "list-f"]);
    assert!(all.continuation.is_none());
    let failed = ListFilter { statuses: vec![RuntimeStatus::Failed], ..ListFilter::default() };
    assert_eq!(ids(&client.list(&failed, 10, None).await.unwrap()), ["list-f"]);
    let chains = ListFilter {
        workflow: Some("m_chain".into()),
        created_after: Some(1_001_000),
        created_before: Some(1_004_000),
        ..ListFilter::default()
    };
    assert_eq!(ids(&client.list(&chains, 10, None).await.unwrap()), ["list-c1", "list-c2", "list-c3"]);

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client.list(&ListFilter::default(), 4, token.as_deref()).await.unwrap();
        assert!(page.instances.len() <= 4);
        seen.extend(ids(&page));
        match page.continuation {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids(&all), "paging returns every instance once, in order");
    assert!(matches!(client.list(&ListFilter::default(), 0, None).await, Err(Error::InvalidArgument(_))));
    assert!(matches!(
        client.list(&ListFilter::default(), 5, Some("not-a-token")).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn history_and_rerun_from_a_step() {
    let rt = runtime().await;
    let client = rt.client();
    m_chain::start(&client, 1).id("rerun-src").await.unwrap();
    assert_eq!(client.result::<u32>("rerun-src", Some(Duration::from_secs(10))).await.unwrap(), 4);

    let history = client.history("rerun-src").await.unwrap();
    assert!(matches!(&history[0], HistoryEvent::Created { input, .. } if input == "1"));
    assert_eq!(history.iter().filter(|e| matches!(e, HistoryEvent::Step(_))).count(), 3);
    assert!(matches!(history.last(), Some(HistoryEvent::Status(s)) if s.status == RuntimeStatus::Completed));

    // From seq 2: steps 0 and 1 are copied, step 2 runs live.
    let id = client.rerun("rerun-src", 2, Some("rerun-copy"), None).await.unwrap();
    assert_eq!(client.result::<u32>(&id, Some(Duration::from_secs(10))).await.unwrap(), 4);
    assert_eq!((count(&id, "m_step 0"), count(&id, "m_step 1"), count(&id, "m_step 2")), (0, 0, 1));
    // From seq 0 with new input: everything runs live.
    let id = client.rerun("rerun-src", 0, None, Some("10")).await.unwrap();
    assert_eq!(client.result::<u32>(&id, Some(Duration::from_secs(10))).await.unwrap(), 13);

    let taken = client.rerun("rerun-src", 0, Some("rerun-copy"), None).await;
    assert!(matches!(taken, Err(Error::InstanceExists(_))), "{taken:?}");
    let bad = client.rerun("rerun-src", 0, None, Some(r#""text""#)).await;
    assert!(matches!(bad, Err(Error::InvalidInput { .. })), "{bad:?}");
    m_gated::start(&client, 1).id("rerun-live").await.unwrap();
    assert!(matches!(client.rerun("rerun-live", 0, None, None).await, Err(Error::NotFinished { .. })));
}

#[tokio::test]
async fn retention_purges_by_age_and_status() {
    let clock = VirtualClock::new(5_000_000);
    let policy = RetentionPolicy { completed: Some(Duration::from_secs(3600)), ..RetentionPolicy::default() };
    let rt = builder(Arc::new(MemoryStore::new()))
        .clock(clock.clone())
        .retention(policy, Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let client = rt.client();
    client.start_untyped("m_chain", "1").id("ret-done").await.unwrap();
    client.start_untyped("m_fails", "1").id("ret-failed").await.unwrap();
    client.result::<u32>("ret-done", Some(Duration::from_secs(10))).await.unwrap();
    wait_status(&client, "ret-failed", RuntimeStatus::Failed).await;
    // What proves it: a retention pass that began after ret-done completed purged an expired one.
    wait_for_a_retention_pass(rt.store(), "ret-expired-1").await;
    assert!(client.status("ret-done").await.is_ok(), "younger than the policy: kept");

    clock.advance(Duration::from_secs(7200));
    wait_until("retention to purge the completed instance ret-done", || async {
        client.status("ret-done").await.is_err()
    })
    .await;
    // What proves it: a whole retention pass began after the one that purged ret-done.
    wait_for_a_retention_pass(rt.store(), "ret-expired-2").await;
    assert!(client.status("ret-failed").await.is_ok(), "failed instances are kept by this policy");
}

#[tokio::test]
async fn a_fan_out_is_drawn_side_by_side() {
    let rt = runtime().await;
    let client = rt.client();
    m_fan::start(&client, 1).id("diagram-1").await.unwrap();
    client.result::<Vec<u32>>("diagram-1", Some(Duration::from_secs(10))).await.unwrap();
    let journal = client.journal("diagram-1").await.unwrap();
    assert_eq!(journal[0].parallel_group, None);
    assert!(journal[1..].iter().all(|r| r.parallel_group == Some(1)), "{journal:?}");
    let diagram = client.diagram("diagram-1").await.unwrap();
    assert!(diagram.starts_with("flowchart TD"), "{diagram}");
    assert!(diagram.contains("fan-out: 3 branches"), "{diagram}");
    assert!(
        diagram.contains("f1 --> s1") && diagram.contains("f1 --> s3") && diagram.contains("s3 --> j1"),
        "{diagram}"
    );
    assert!(matches!(client.diagram("nobody").await, Err(Error::InstanceNotFound(_))));
}

// ---- child ids cannot be taken ----

#[workflow]
async fn hijack_child(_ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n * 2)
}

#[workflow]
async fn hijack_parent(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    hijack_child::call(&ctx, n).await
}

/// A start cannot choose an id of a child's shape (`<parent>-g<gen>-c<seq>`), and a row that got
/// such an id some other way (an older build, a direct write) is not adopted by a parent's child
/// call: the parent fails with `ChildIdTaken` instead of returning the stranger's output.
#[tokio::test]
async fn a_child_id_cannot_be_taken_by_a_start_or_a_foreign_row() {
    let store = Arc::new(MemoryStore::new());
    let runtime = Runtime::builder()
        .store(store.clone() as Arc<dyn Store>)
        .workflow(hijack_child::Workflow)
        .workflow(hijack_parent::Workflow)
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let taken = hijack_child::start(&client, 1000).id("victim-g0-c0").await;
    assert!(matches!(taken, Err(Error::InvalidInstanceId { .. })), "{taken:?}");
    let taken =
        client.start_untyped("hijack_child", "1000").id("victim-g0-c0").reuse(ReusePolicy::ReturnExisting).await;
    assert!(matches!(taken, Err(Error::InvalidInstanceId { .. })), "{taken:?}");
    assert_eq!(hijack_parent::start(&client, 1).id("victim").await.unwrap().result().await.unwrap(), 2);

    let foreign = InstanceRecord::pending("other-g0-c0", "hijack_child", "1000", 1);
    store.write(&[WriteOp::CreateInstance(foreign)]).await.unwrap();
    let parent = hijack_parent::start(&client, 1).id("other").await.unwrap();
    match parent.result_timeout(Duration::from_secs(20)).await {
        Err(Error::Failed { details, .. }) => {
            assert_eq!(details.error_type, "ChildIdTaken", "{details:?}");
            assert!(details.message.contains("other-g0-c0"), "{details:?}");
        }
        other => panic!("the parent adopted a stranger's instance: {other:?}"),
    }
    assert_eq!(store.instance("other-g0-c0").await.unwrap().unwrap().parent_id, None, "the foreign row is left alone");
}

/// Every read of an instance answers as it was a moment earlier: still running.
#[derive(Default)]
struct StaleReads;

impl crate::support::Observer for StaleReads {
    fn instance(&self, _id: &str, found: &mut Option<InstanceRecord>) {
        if let Some(record) = found {
            record.status = RuntimeStatus::Running;
        }
    }
}

/// A raise is refused by the store's write itself once the instance has finished (or is gone),
/// not by a read before it that a finish can overtake: an event never lands in an inbox nobody
/// will ever take it from.
#[tokio::test]
async fn an_event_never_lands_on_a_finished_or_missing_instance() {
    use workflow::store::conformance::{create, finish_of, instance};
    let store = Arc::new(crate::support::ObservedStore::<StaleReads>::default());
    let client = Client::new(store.clone() as Arc<dyn Store>);
    store.write(&[create(instance("raise-done", "wf", 1)), finish_of("raise-done")]).await.unwrap();
    let raised = client.raise_event("raise-done", "go", &1).await;
    assert!(matches!(raised, Err(Error::InstanceFinished(ref id)) if id == "raise-done"), "{raised:?}");
    assert!(store.events("raise-done").await.unwrap().is_empty(), "the event landed on a finished instance");
    let raised = client.raise_event("raise-gone", "go", &1).await;
    assert!(matches!(raised, Err(Error::InstanceNotFound(ref id)) if id == "raise-gone"), "{raised:?}");
    assert!(store.events("raise-gone").await.unwrap().is_empty());
}
