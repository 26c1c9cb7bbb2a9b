//! Engine behaviour: retries, compensation, fan-out limits and order, crash-resume in process,
//! non-determinism detection, bad input.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use workflow::prelude::*;
use workflow::store::{InstanceRecord, Store, WriteOp};
use workflow::{Error, JournalRecord, RecordStatus, StepKind};

use crate::support::{bump, completed, count, sqlite_store, wait_for_count, wait_for_journal, wait_until};

// ---- retries and compensation ----

#[activity(retry(max_attempts = 5, first_interval = "10ms", backoff = 1.0))]
async fn flaky(ctx: ActivityContext, fail_times: u32) -> Result<u32, ActivityError> {
    bump(ctx.instance_id(), "flaky");
    if ctx.attempt() <= fail_times {
        return Err(ActivityError::new(format!("flaky failure on attempt {}", ctx.attempt())));
    }
    Ok(ctx.attempt())
}

#[activity(retry(max_attempts = 3, first_interval = "10ms", backoff = 2.0))]
async fn always_fails(ctx: ActivityContext) -> Result<(), ActivityError> {
    bump(ctx.instance_id(), "always_fails");
    Err(ActivityError::new("the payment service is down"))
}

#[activity]
async fn refund(ctx: ActivityContext) -> Result<(), ActivityError> {
    bump(ctx.instance_id(), "refund");
    Ok(())
}

#[workflow]
async fn retrying(ctx: WorkflowContext, fail_times: u32) -> Result<u32, WorkflowError> {
    flaky::call(&ctx, fail_times).await
}

/// Input `true`: the workflow fails after compensating; `false`: it completes after compensating.
#[workflow]
async fn compensating(ctx: WorkflowContext, fail_after_compensation: bool) -> Result<String, WorkflowError> {
    match always_fails::call(&ctx).await {
        Ok(()) => Ok("paid".into()),
        Err(error) => {
            refund::call(&ctx).await?;
            if fail_after_compensation {
                Err(error)
            } else {
                Ok(format!("compensated: {}", error.message()))
            }
        }
    }
}

async fn memory_runtime() -> Runtime {
    Runtime::builder()
        .store(MemoryStore::new())
        .workflow(retrying::Workflow)
        .workflow(compensating::Workflow)
        .workflow(fan::Workflow)
        .activity(flaky::Activity)
        .activity(always_fails::Activity)
        .activity(refund::Activity)
        .activity(double::Activity)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn failing_twice_then_succeeding_runs_three_attempts() {
    let rt = memory_runtime().await;
    let handle = retrying::start(&rt.client(), 2).await.unwrap();
    assert_eq!(handle.result().await.unwrap(), 3);
    assert_eq!(count(handle.instance_id(), "flaky"), 3);
    let journal = rt.client().journal(handle.instance_id()).await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!((journal[0].status, journal[0].attempt), (RecordStatus::Completed, 3));
}

#[tokio::test]
async fn exhausted_retries_run_compensation_and_the_workflow_decides_the_end() {
    let rt = memory_runtime().await;
    let client = rt.client();

    let failed = compensating::start(&client, true).await.unwrap();
    match failed.result().await {
        Err(Error::Failed { details, .. }) => {
            assert_eq!(details.error_type, "ActivityFailed");
            assert!(details.message.contains("the payment service is down"), "{}", details.message);
            assert!(details.message.contains("3 attempt"), "{}", details.message);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(client.status(failed.instance_id()).await.unwrap().status, RuntimeStatus::Failed);
    assert_eq!(count(failed.instance_id(), "always_fails"), 3);
    assert_eq!(count(failed.instance_id(), "refund"), 1);

    let recovered = compensating::start(&client, false).await.unwrap();
    assert_eq!(recovered.result().await.unwrap(), "compensated: the payment service is down");
    assert_eq!(client.status(recovered.instance_id()).await.unwrap().status, RuntimeStatus::Completed);
    assert_eq!(count(recovered.instance_id(), "always_fails"), 3);
    assert_eq!(count(recovered.instance_id(), "refund"), 1);
    let journal = client.journal(recovered.instance_id()).await.unwrap();
    let kinds: Vec<(&str, RecordStatus, u32)> =
        journal.iter().map(|r| (r.name.as_str(), r.status, r.attempt)).collect();
    assert_eq!(kinds, vec![("always_fails", RecordStatus::Failed, 3), ("refund", RecordStatus::Completed, 1)]);
}

// ---- a crash during a back-off keeps the attempt count ----

#[activity(retry(max_attempts = 4, first_interval = "400ms", backoff = 1.0))]
async fn slow_retry(ctx: ActivityContext) -> Result<u32, ActivityError> {
    bump(ctx.instance_id(), &format!("slow_retry attempt {}", ctx.attempt()));
    if ctx.attempt() == 1 {
        return Err(ActivityError::new("first attempt fails"));
    }
    Ok(ctx.attempt())
}

#[workflow]
async fn backoff_flow(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    slow_retry::call(&ctx).await
}

async fn backoff_runtime(store: Arc<dyn Store>) -> Runtime {
    Runtime::builder()
        .store(store)
        .worker_id("backoff-worker")
        .workflow(backoff_flow::Workflow)
        .activity(slow_retry::Activity)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_crash_during_backoff_keeps_the_attempt_count_and_schedule() {
    let (_dir, _url, store) = sqlite_store().await;
    let rt = backoff_runtime(store.clone()).await;
    let handle = backoff_flow::start(&rt.client()).await.unwrap();
    let id = handle.instance_id().to_owned();
    let journal = wait_for_journal(&rt.client(), &id, |j| j.iter().any(|r| r.status == RecordStatus::Retrying)).await;
    let due = journal[0].due_at.expect("a retrying record has a due time");
    rt.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(rt);

    let rt = backoff_runtime(store).await;
    let output: u32 = rt.client().result(&id, Some(Duration::from_secs(20))).await.unwrap();
    assert_eq!(output, 2, "the attempt after the crash is attempt 2, not a fresh attempt 1");
    assert_eq!(count(&id, "slow_retry attempt 1"), 1);
    assert_eq!(count(&id, "slow_retry attempt 2"), 1);
    let journal = rt.client().journal(&id).await.unwrap();
    assert_eq!((journal[0].status, journal[0].attempt), (RecordStatus::Completed, 2));
    assert!(journal[0].recorded_at >= due, "attempt 2 ran before its due time");
}

// ---- fan-out ----

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MAX_RUNNING: AtomicUsize = AtomicUsize::new(0);

#[activity]
async fn double(ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_RUNNING.fetch_max(now, Ordering::SeqCst);
    bump(ctx.instance_id(), &format!("double {n}"));
    // Simulated work (the subject, not a wait): the fan-out's activities overlap.
    tokio::time::sleep(Duration::from_millis(1)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    Ok(n * 2)
}

#[workflow]
async fn fan(ctx: WorkflowContext, inputs: Vec<u64>) -> Result<Vec<u64>, WorkflowError> {
    double::fan_out(&ctx, inputs).max_parallel(8).await
}

#[tokio::test]
async fn fan_out_bounds_parallelism_and_keeps_input_order() {
    let rt = memory_runtime().await;
    // Reversed inputs: completion order and input order differ.
    let inputs: Vec<u64> = (0..1000).rev().collect();
    let handle = fan::start(&rt.client(), inputs.clone()).await.unwrap();
    let output = handle.result().await.unwrap();
    assert_eq!(output, inputs.iter().map(|n| n * 2).collect::<Vec<_>>());
    let max = MAX_RUNNING.load(Ordering::SeqCst);
    assert!(max <= 8, "{max} activities ran at once, the bound is 8");
    assert!(max >= 2, "the fan-out never ran in parallel");
    let journal = rt.client().journal(handle.instance_id()).await.unwrap();
    assert_eq!(completed(&journal), 1000);
    assert!(journal
        .iter()
        .enumerate()
        .all(|(i, r)| r.seq as usize == i && r.input.as_deref() == Some(&*inputs[i].to_string())));
}

#[activity]
async fn slow_square(ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    bump(ctx.instance_id(), &format!("square {n}"));
    // Simulated work (the subject, not a wait): the shutdown lands mid-fan-out.
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(n * n)
}

#[workflow]
async fn square_all(ctx: WorkflowContext, count: u64) -> Result<u64, WorkflowError> {
    let squares = slow_square::fan_out(&ctx, 0..count).max_parallel(4).await?;
    Ok(squares.into_iter().sum())
}

async fn square_runtime(store: Arc<dyn Store>) -> Runtime {
    Runtime::builder()
        .store(store)
        .worker_id("square-worker")
        .workflow(square_all::Workflow)
        .activity(slow_square::Activity)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_crash_mid_fan_out_reruns_only_unfinished_items() {
    let (_dir, _url, store) = sqlite_store().await;
    let rt = square_runtime(store.clone()).await;
    let handle = square_all::start(&rt.client(), 100).await.unwrap();
    let id = handle.instance_id().to_owned();
    wait_for_journal(&rt.client(), &id, |j| completed(j) >= 40).await;
    rt.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(rt);
    let done_before: Vec<u32> =
        rt_journal(&store, &id).await.iter().filter(|r| r.status == RecordStatus::Completed).map(|r| r.seq).collect();
    assert!(done_before.len() >= 40 && done_before.len() < 100, "{} done before the crash", done_before.len());

    let rt = square_runtime(store.clone()).await;
    let total: u64 = rt.client().result(&id, Some(Duration::from_secs(20))).await.unwrap();
    assert_eq!(total, (0..100u64).map(|n| n * n).sum::<u64>());
    for seq in &done_before {
        assert_eq!(count(&id, &format!("square {seq}")), 1, "item {seq} was done before the crash and ran again");
    }
    for n in 0..100u64 {
        assert!(count(&id, &format!("square {n}")) >= 1, "item {n} never ran");
    }
    assert_eq!(completed(&rt_journal(&store, &id).await), 100);
}

async fn rt_journal(store: &Arc<dyn Store>, id: &str) -> Vec<JournalRecord> {
    store.journal(id, 0).await.unwrap()
}

// ---- non-determinism ----

#[activity]
async fn step_a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity]
async fn step_b(ctx: ActivityContext) -> Result<(), ActivityError> {
    bump(ctx.instance_id(), "step_b");
    // Blocks the first version so the instance is mid-run when its worker stops.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

#[workflow(name = "reordered")]
async fn reordered_v1(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    step_a::call(&ctx).await?;
    step_b::call(&ctx).await?;
    Ok(())
}

#[workflow(name = "reordered")]
async fn reordered_v2(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    step_b::call(&ctx).await?;
    step_a::call(&ctx).await?;
    Ok(())
}

#[tokio::test]
async fn changed_call_order_fails_the_instance_naming_seq_expected_and_found() {
    let (_dir, _url, store) = sqlite_store().await;
    let v1 = Runtime::builder()
        .store(store.clone())
        .worker_id("nondeterminism")
        .workflow(reordered_v1::Workflow)
        .activity(step_a::Activity)
        .activity(step_b::Activity)
        .build()
        .await
        .unwrap();
    let handle = reordered_v1::start(&v1.client()).id("reordered-1").await.unwrap();
    wait_for_journal(&v1.client(), "reordered-1", |j| completed(j) == 1).await;
    // step_a's record commits before step_b starts: wait for step_b to be under way, so the
    // instance is mid-run when this worker stops.
    wait_for_count("reordered-1", "step_b", 1).await;
    v1.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(v1);

    let v2 = Runtime::builder()
        .store(store.clone())
        .worker_id("nondeterminism")
        .workflow(reordered_v2::Workflow)
        .activity(step_a::Activity)
        .activity(step_b::Activity)
        .build()
        .await
        .unwrap();
    let status = v2.client().wait_for_completion(handle.instance_id(), Some(Duration::from_secs(20))).await.unwrap();
    assert_eq!(status.status, RuntimeStatus::Failed);
    let failure = status.failure.unwrap();
    assert_eq!(failure.error_type, "NonDeterminism");
    assert!(failure.message.contains("seq 0"), "{}", failure.message);
    assert!(failure.message.contains("`step_a`") && failure.message.contains("`step_b`"), "{}", failure.message);
    assert!(
        failure.message.find("`step_a`") < failure.message.find("`step_b`"),
        "the message names the recorded operation first: {}",
        failure.message
    );
    assert_eq!(count("reordered-1", "step_b"), 1, "step_b must not run live in the changed workflow");
    let journal = store.journal("reordered-1", 0).await.unwrap();
    assert_eq!(journal.len(), 1, "the journal is left as it was");
}

// ---- bad input ----

#[tokio::test]
async fn unknown_workflows_and_bad_inputs_are_clear_errors_that_store_nothing() {
    let rt = memory_runtime().await;
    let client = rt.client();
    let good = retrying::start(&client, 0).id("good-one").await.unwrap();
    assert_eq!(good.result().await.unwrap(), 1);

    match client.start_untyped("no_such_workflow", "1").id("bad-1").await {
        Err(Error::UnknownWorkflow(name)) => assert_eq!(name, "no_such_workflow"),
        other => panic!("expected UnknownWorkflow, got {other:?}"),
    }
    match client.start_untyped("retrying", "\"not a number\"").id("bad-2").await {
        Err(Error::InvalidInput { workflow, message }) => {
            assert_eq!(workflow, "retrying");
            assert!(message.contains("invalid type"), "{message}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    match client.start_untyped("retrying", "1").id("bad id!").await {
        Err(Error::InvalidInstanceId { .. }) => {}
        other => panic!("expected InvalidInstanceId, got {other:?}"),
    }
    match retrying::start(&client, 5).id("good-one").await {
        Err(Error::InstanceExists(id)) => assert_eq!(id, "good-one"),
        other => panic!("expected InstanceExists, got {other:?}"),
    }
    for id in ["bad-1", "bad-2"] {
        assert!(matches!(client.status(id).await, Err(Error::InstanceNotFound(_))));
    }
    let good = client.status("good-one").await.unwrap();
    assert_eq!((good.status, good.input.as_str(), good.output.as_deref()), (RuntimeStatus::Completed, "0", Some("1")));
}

#[tokio::test]
async fn a_corrupt_journal_payload_fails_only_its_instance_and_keeps_its_rows() {
    let (_dir, _url, store) = sqlite_store().await;
    let now = 1_700_000_000_000;
    let instance = |id: &str| InstanceRecord {
        id: id.into(),
        workflow: "retrying".into(),
        status: RuntimeStatus::Running,
        input: "0".into(),
        output: None,
        error: None,
        generation: 0,
        created_at: now,
        updated_at: now,
        owner: None,
        lease_until: None,
        parent_id: None,
        custom_status: None,
        wake_at: None,
        priority: 0,
        concurrency_key: String::new(),
        trace_context: None,
    };
    let record = |id: &str, payload: &str| JournalRecord {
        instance_id: id.into(),
        generation: 0,
        seq: 0,
        kind: StepKind::Activity,
        name: "flaky".into(),
        status: RecordStatus::Completed,
        input: Some("0".into()),
        payload: Some(payload.into()),
        attempt: 1,
        due_at: None,
        recorded_at: now,
        parallel_group: None,
    };
    store
        .write(&[
            WriteOp::CreateInstance(instance("corrupt")),
            WriteOp::PutRecord(record("corrupt", "{this is not json")),
            WriteOp::CreateInstance(instance("healthy")),
            WriteOp::PutRecord(record("healthy", "7")),
        ])
        .await
        .unwrap();
    let rt = Runtime::builder()
        .store(store.clone())
        .workflow(retrying::Workflow)
        .activity(flaky::Activity)
        .build()
        .await
        .unwrap();
    let client = rt.client();
    let corrupt = client.wait_for_completion("corrupt", Some(Duration::from_secs(20))).await.unwrap();
    assert_eq!(corrupt.status, RuntimeStatus::Failed);
    let failure = corrupt.failure.unwrap();
    assert_eq!(failure.error_type, "CorruptJournal");
    assert!(failure.message.contains("seq 0") && failure.message.contains("`flaky`"), "{}", failure.message);
    let healthy: u32 = client.result("healthy", Some(Duration::from_secs(20))).await.unwrap();
    assert_eq!(healthy, 7, "the healthy instance replays its recorded output");
    assert_eq!(count("healthy", "flaky"), 0, "a recorded step does not run again");
    assert_eq!(store.journal("corrupt", 0).await.unwrap(), vec![record("corrupt", "{this is not json")]);
}

// ---- fencing ----

static GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[activity(retry(max_attempts = 1))]
async fn gated(ctx: ActivityContext) -> Result<u32, ActivityError> {
    bump(ctx.instance_id(), "gated");
    GATE.notified().await;
    Ok(1)
}

#[workflow]
async fn fenced_flow(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    let one = gated::call(&ctx).await?;
    step_a::call(&ctx).await?;
    Ok(one)
}

#[tokio::test]
async fn a_worker_whose_lease_was_taken_over_cannot_write_to_the_instance() {
    let (_dir, _url, store) = sqlite_store().await;
    let rt = Runtime::builder()
        .store(store.clone())
        .worker_id("slow-worker")
        .workflow(fenced_flow::Workflow)
        .activity(gated::Activity)
        .activity(step_a::Activity)
        .build()
        .await
        .unwrap();
    fenced_flow::start(&rt.client()).id("fenced-1").await.unwrap();
    wait_for_count("fenced-1", "gated", 1).await;
    // Another worker takes the instance over (as after a lapsed lease) while the step runs.
    let far = 4_000_000_000_000;
    store.release_leases(rt.owner_id()).await.unwrap();
    let taken = store.claim("other-worker", &["fenced_flow".to_owned()], far, far + 60_000, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    GATE.notify_waiters();
    // The slow worker's outcome must not land: its next commit is refused. What proves it tried:
    // its run leaves memory only once that commit was refused.
    wait_until("the fenced run to leave memory", || async { rt.instances_in_memory() == 0 }).await;
    assert!(store.journal("fenced-1", 0).await.unwrap().is_empty(), "a fenced worker wrote the journal");
    let record = store.instance("fenced-1").await.unwrap().unwrap();
    assert_eq!((record.owner.as_deref(), record.status), (Some("other-worker"), RuntimeStatus::Running));
    assert_eq!(rt.instances_in_memory(), 0, "the fenced run was abandoned");
}

// ---- a panic in a workflow body ----

#[activity]
async fn before_panic(ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    bump(ctx.instance_id(), "before_panic");
    Ok(n + 1)
}

#[workflow]
async fn panics_midway(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let n = before_panic::call(&ctx, n).await?;
    if n > 0 {
        panic!("the body gave up at {n}");
    }
    Ok(n)
}

/// A workflow body that panics fails its instance with error type `Panic` and the panic's text;
/// the instance leaves memory and the store holds it Failed with no owner (before, the panic ended
/// the driver's task with the instance still marked running and its lease renewed for good).
#[tokio::test]
async fn a_panicking_workflow_body_fails_its_instance() {
    let store = Arc::new(MemoryStore::new());
    let runtime = Runtime::builder()
        .store(store.clone() as Arc<dyn Store>)
        .workflow(panics_midway::Workflow)
        .activity(before_panic::Activity)
        .build()
        .await
        .unwrap();
    let handle = panics_midway::start(&runtime.client(), 1).id("panicky").await.unwrap();
    match handle.result_timeout(Duration::from_secs(20)).await {
        Err(Error::Failed { details, .. }) => {
            assert_eq!(details.error_type, "Panic", "{details:?}");
            assert!(details.message.contains("the body gave up at 2"), "{details:?}");
        }
        other => panic!("expected a Panic failure, got {other:?}"),
    }
    wait_until("the instance to leave memory", || async { runtime.instances_in_memory() == 0 }).await;
    let stored = store.instance("panicky").await.unwrap().unwrap();
    assert_eq!((stored.status, stored.owner), (workflow::RuntimeStatus::Failed, None));
    assert_eq!(count("panicky", "before_panic"), 1, "the step before the panic ran once");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}
