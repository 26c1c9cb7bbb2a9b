//! Distributed activities: attempts queued in the store as tasks, run by whichever worker claims
//! them, their outcomes journaled by the instance's owner. Several runtimes share one store here
//! (the in-memory store, or SQLite), as worker processes share one database.

use std::sync::Arc;
use std::time::Duration;

use workflow::prelude::*;
use workflow::store::Store;
use workflow::{ActivityDispatch, RecordStatus};

use crate::support::{bump, count, wait_for_count, wait_until};

/// Returns its input and the worker that ran it.
#[activity]
async fn tagged(ctx: ActivityContext, n: u32) -> Result<(u32, String), ActivityError> {
    bump(ctx.instance_id(), "tagged");
    bump(ctx.instance_id(), &format!("tagged@{}", ctx.worker_id()));
    // Simulated work (the subject, not a wait): a fan-out spreads over the workers.
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok((n, ctx.worker_id().to_owned()))
}

#[workflow]
async fn spread(ctx: WorkflowContext, n: u32) -> Result<Vec<(u32, String)>, WorkflowError> {
    tagged::fan_out(&ctx, 0..n).await
}

#[activity(retry(max_attempts = 4, first_interval = "10ms", backoff = 1.0))]
async fn flaky_remote(ctx: ActivityContext, fail_times: u32) -> Result<u32, ActivityError> {
    bump(ctx.instance_id(), "flaky_remote");
    if ctx.attempt() <= fail_times {
        return Err(ActivityError::new(format!("remote failure on attempt {}", ctx.attempt())));
    }
    Ok(ctx.attempt())
}

#[activity]
async fn refuses(ctx: ActivityContext) -> Result<(), ActivityError> {
    bump(ctx.instance_id(), "refuses");
    Err(ActivityError::non_retryable("card declined"))
}

#[workflow]
async fn remote_retries(ctx: WorkflowContext, fail_times: u32) -> Result<String, WorkflowError> {
    let attempts = flaky_remote::call(&ctx, fail_times).await?;
    match refuses::call(&ctx).await {
        Ok(()) => Ok(format!("{attempts} attempts, then paid")),
        Err(error) => Ok(format!("{attempts} attempts, then {}", error.message())),
    }
}

/// Blocks its first attempt for good (until the worker running it goes away).
#[activity]
async fn stuck_once(ctx: ActivityContext) -> Result<String, ActivityError> {
    let run = bump(ctx.instance_id(), "stuck_once");
    if run == 1 {
        std::future::pending::<()>().await;
    }
    Ok(format!("run {run} on {}", ctx.worker_id()))
}

#[workflow]
async fn one_stuck(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    stuck_once::call(&ctx).await
}

async fn owner(store: &Arc<dyn Store>, id: &str, dispatch: ActivityDispatch) -> Runtime {
    Runtime::builder()
        .store(store.clone())
        .worker_id(id)
        .workflow(spread::Workflow)
        .workflow(remote_retries::Workflow)
        .workflow(one_stuck::Workflow)
        .activity_dispatch(dispatch)
        .lease(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap()
}

async fn executor(store: &Arc<dyn Store>, id: &str, slots: usize) -> Runtime {
    Runtime::builder()
        .store(store.clone())
        .worker_id(id)
        .activity(tagged::Activity)
        .activity(flaky_remote::Activity)
        .activity(refuses::Activity)
        .activity(stuck_once::Activity)
        .max_concurrent_activities(slots)
        .lease(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap()
}

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

/// How many tasks of `activity` for instance `id` are queued and not yet run. Read by claiming
/// them with a lease that has already lapsed, as a worker that vanished at once would: any
/// worker may claim them again straight away.
async fn queued_tasks(store: &Arc<dyn Store>, activity: &str, id: &str) -> usize {
    let (any_time, lapsed) = (i64::MAX, 0);
    let tasks = store.claim_tasks("test-peek", &[activity.to_owned()], any_time, lapsed, usize::MAX).await.unwrap();
    tasks.iter().filter(|task| task.instance_id == id).count()
}

#[tokio::test]
async fn shared_dispatch_runs_a_fan_out_on_a_worker_without_the_workflow() {
    let store = memory();
    let owner = owner(&store, "owner", ActivityDispatch::Shared).await;
    let _exec = executor(&store, "exec", 8).await;
    let handle = spread::start(&owner.client(), 20).await.unwrap();
    let output = handle.result_timeout(Duration::from_secs(20)).await.unwrap();
    let expected: Vec<(u32, String)> = (0..20).map(|n| (n, "exec".to_owned())).collect();
    assert_eq!(output, expected);
    let id = handle.instance_id();
    assert_eq!(count(id, "tagged"), 20, "every call ran exactly once");
    let journal = owner.client().journal(id).await.unwrap();
    assert_eq!(journal.len(), 20);
    assert!(journal.iter().all(|r| r.status == RecordStatus::Completed && r.attempt == 1));
    assert!(store.finished_tasks(&[id.to_owned()]).await.unwrap().is_empty(), "the instance's tasks are gone");
}

#[tokio::test]
async fn shared_dispatch_spreads_a_fan_out_over_every_worker() {
    let (_dir, _url, store) = crate::support::sqlite_store().await;
    let first = owner(&store, "spread-a", ActivityDispatch::Shared).await;
    let _a = executor(&store, "exec-a", 2).await;
    let _b = executor(&store, "exec-b", 2).await;
    let handle = spread::start(&first.client(), 40).await.unwrap();
    let output = handle.result_timeout(Duration::from_secs(30)).await.unwrap();
    assert_eq!(output.iter().map(|(n, _)| *n).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
    let id = handle.instance_id();
    let (a, b) = (count(id, "tagged@exec-a"), count(id, "tagged@exec-b"));
    assert_eq!(a + b, 40, "every call ran exactly once: {a} + {b}");
    assert!(a >= 5 && b >= 5, "both workers ran calls: {a} and {b}");
}

#[tokio::test]
async fn overflow_dispatch_queues_only_what_the_local_slots_cannot_take() {
    let store = memory();
    let local = Runtime::builder()
        .store(store.clone())
        .worker_id("busy")
        .workflow(spread::Workflow)
        .activity(tagged::Activity)
        .activity_dispatch(ActivityDispatch::Overflow)
        .max_concurrent_activities(1)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let _helper = executor(&store, "helper", 8).await;
    let handle = spread::start(&local.client(), 30).await.unwrap();
    handle.result_timeout(Duration::from_secs(20)).await.unwrap();
    let id = handle.instance_id();
    let (here, there) = (count(id, "tagged@busy"), count(id, "tagged@helper"));
    assert_eq!(here + there, 30);
    assert!(here >= 1 && there >= 1, "local slots used and overflow queued: {here} here, {there} there");
}

#[tokio::test]
async fn a_queued_attempt_is_retried_under_the_callers_policy() {
    let store = memory();
    let owner = owner(&store, "retry-owner", ActivityDispatch::Shared).await;
    let _exec = executor(&store, "retry-exec", 4).await;
    let handle = remote_retries::start(&owner.client(), 2).await.unwrap();
    let output = handle.result_timeout(Duration::from_secs(20)).await.unwrap();
    assert_eq!(output, "3 attempts, then card declined");
    let id = handle.instance_id();
    assert_eq!(count(id, "flaky_remote"), 3);
    assert_eq!(count(id, "refuses"), 1, "a non-retryable failure is not retried");
    let journal = owner.client().journal(id).await.unwrap();
    assert_eq!((journal[0].status, journal[0].attempt), (RecordStatus::Completed, 3));
    assert_eq!((journal[1].status, journal[1].attempt), (RecordStatus::Failed, 1));
    assert!(journal[1].payload.as_deref().unwrap_or("").contains("card declined"));
}

#[tokio::test]
async fn a_task_whose_worker_vanished_is_run_by_another_after_its_lease() {
    let store = memory();
    let owner = owner(&store, "vanish-owner", ActivityDispatch::Shared).await;
    let first = executor(&store, "vanish-exec-1", 4).await;
    let handle = one_stuck::start(&owner.client()).await.unwrap();
    let id = handle.instance_id().to_owned();
    wait_for_count(&id, "stuck_once", 1).await;
    // Gone without a word: its attempt is aborted and its claim lapses on its own.
    drop(first);
    let _second = executor(&store, "vanish-exec-2", 4).await;
    let output = handle.result_timeout(Duration::from_secs(20)).await.unwrap();
    assert_eq!(output, "run 2 on vanish-exec-2");
    let journal = owner.client().journal(&id).await.unwrap();
    assert_eq!(
        (journal[0].status, journal[0].attempt),
        (RecordStatus::Completed, 1),
        "a lost claim is no failed attempt"
    );
}

#[tokio::test]
async fn an_outcome_reported_while_the_owner_was_down_is_picked_up_by_the_next_owner() {
    let store = memory();
    let first_owner = owner(&store, "gone-owner", ActivityDispatch::Shared).await;
    let handle = spread::start(&first_owner.client(), 3).await.unwrap();
    let id = handle.instance_id().to_owned();
    // The tasks are queued (nobody runs them yet); then the owner dies without releasing.
    wait_until(&format!("the three tasks of {id} to be queued"), || async {
        queued_tasks(&store, "tagged", &id).await == 3
    })
    .await;
    drop(first_owner);
    let _exec = executor(&store, "gone-exec", 4).await;
    wait_until(&format!("the executor to report the three outcomes of {id}"), || async {
        store.finished_tasks(std::slice::from_ref(&id)).await.unwrap().len() >= 3
    })
    .await;
    let second_owner = owner(&store, "next-owner", ActivityDispatch::Shared).await;
    let output: Vec<(u32, String)> = second_owner.client().result(&id, Some(Duration::from_secs(20))).await.unwrap();
    assert_eq!(output, (0..3).map(|n| (n, "gone-exec".to_owned())).collect::<Vec<_>>());
    assert_eq!(count(&id, "tagged"), 3, "the next owner took the reported outcomes instead of running again");
}
