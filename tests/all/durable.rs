//! Timers, events, races, child workflows, continue-as-new, recorded values, patches, activity
//! timeouts and eviction, mostly under a virtual clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use workflow::prelude::*;
use workflow::store::Store;
use workflow::{Clock, Error, RecordStatus, StepKind};

use crate::support::{bump, count, sqlite_store, wait_for_journal, wait_until_within};

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3600);

/// Moves the virtual clock from timer to timer until the instance finishes.
async fn run_to_end(rt: &Runtime, clock: &VirtualClock, id: &str) -> workflow::InstanceStatus {
    let client = rt.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.status(id).await.unwrap();
        if status.status.is_terminal() {
            return status;
        }
        if Instant::now() > deadline {
            let record = rt.store().instance(id).await.unwrap();
            let journal = client.journal(id).await.unwrap();
            panic!(
                "instance {id} did not finish: {record:?}\njournal: {journal:?}\nin memory: {}, timers: {}, now: {}",
                rt.instances_in_memory(),
                clock.pending_timers(),
                clock.now_ms()
            );
        }
        if !clock.advance_to_next_timer() {
            // No timer yet: the poll of this deadline-bound loop, not a wait of a fixed time.
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

fn virtual_runtime(clock: &VirtualClock) -> workflow::RuntimeBuilder {
    Runtime::builder().clock(clock.clone()).poll_interval(Duration::from_millis(20))
}

// ---- timers and the virtual clock ----

#[workflow]
async fn thirty_days(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let start = ctx.now();
    for _ in 0..30 {
        ctx.sleep(DAY).await?;
    }
    let elapsed = ctx.now().duration_since(start).map_err(WorkflowError::msg)?;
    Ok(elapsed.as_secs() / 86_400)
}

#[tokio::test]
async fn the_virtual_clock_runs_a_thirty_day_workflow_in_under_a_second() {
    let clock = VirtualClock::starting_now();
    let rt = virtual_runtime(&clock).store(MemoryStore::new()).workflow(thirty_days::Workflow).build().await.unwrap();
    let real = Instant::now();
    let handle = thirty_days::start(&rt.client()).await.unwrap();
    run_to_end(&rt, &clock, handle.instance_id()).await;
    assert_eq!(handle.result().await.unwrap(), 30);
    assert!(real.elapsed() < Duration::from_secs(1), "took {:?}", real.elapsed());
    let journal = rt.client().journal(handle.instance_id()).await.unwrap();
    let timers = journal.iter().filter(|r| r.kind == StepKind::Timer && r.status == RecordStatus::Completed).count();
    assert_eq!(timers, 30);
}

// ---- events ----

#[workflow]
async fn collect_three(ctx: WorkflowContext) -> Result<Vec<u32>, WorkflowError> {
    ctx.sleep(HOUR).await?;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(ctx.wait_for_event::<u32>("item").await?);
    }
    Ok(got)
}

#[tokio::test]
async fn early_events_are_buffered_and_delivered_in_arrival_order() {
    let clock = VirtualClock::starting_now();
    let rt = virtual_runtime(&clock).store(MemoryStore::new()).workflow(collect_three::Workflow).build().await.unwrap();
    let client = rt.client();
    let handle = collect_three::start(&client).await.unwrap();
    // Raised while the workflow still sleeps, long before it waits.
    for n in [10, 20, 30] {
        client.raise_event(handle.instance_id(), "Item", &n).await.unwrap();
    }
    run_to_end(&rt, &clock, handle.instance_id()).await;
    assert_eq!(handle.result().await.unwrap(), vec![10, 20, 30]);
    assert!(rt.store().events(handle.instance_id()).await.unwrap().is_empty(), "every event was consumed");
    assert!(matches!(client.raise_event(handle.instance_id(), "item", &1).await, Err(Error::InstanceFinished(_))));
    assert!(matches!(client.raise_event("nobody", "item", &1).await, Err(Error::InstanceNotFound(_))));
}

#[workflow]
async fn approval(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let outcome = match ctx.wait_for_event::<bool>("approval").timeout(HOUR).await {
        Ok(true) => "approved".to_owned(),
        Ok(false) => "rejected".to_owned(),
        Err(WorkflowError::Timeout { operation }) => format!("timed out: {operation}"),
        Err(other) => return Err(other),
    };
    // Keeps the instance open after the wait, so a restart replays the wait's outcome.
    ctx.sleep(DAY).await?;
    Ok(outcome)
}

#[tokio::test]
async fn an_event_wait_times_out_as_an_ordinary_error() {
    let clock = VirtualClock::starting_now();
    let rt = virtual_runtime(&clock).store(MemoryStore::new()).workflow(approval::Workflow).build().await.unwrap();
    let handle = approval::start(&rt.client()).await.unwrap();
    run_to_end(&rt, &clock, handle.instance_id()).await;
    assert_eq!(handle.result().await.unwrap(), "timed out: event `approval`");
}

#[tokio::test]
async fn an_event_and_its_timeout_at_the_same_time_resolve_once_and_replay_the_same_way() {
    let (_dir, _url, store) = sqlite_store().await;
    let clock = VirtualClock::starting_now();
    let rt = virtual_runtime(&clock)
        .store(store.clone())
        .worker_id("tie")
        .workflow(approval::Workflow)
        .build()
        .await
        .unwrap();
    let client = rt.client();
    let handle = approval::start(&client).await.unwrap();
    let id = handle.instance_id().to_owned();
    wait_for_journal(&client, &id, |j| j.iter().any(|r| r.kind == StepKind::Event && r.due_at.is_some())).await;
    // The event arrives exactly when the timeout falls due.
    client.raise_event(&id, "approval", &true).await.unwrap();
    clock.advance(HOUR);
    let journal = wait_for_journal(&client, &id, |j| {
        j.iter().any(|r| r.kind == StepKind::Timer && r.status == RecordStatus::Scheduled)
    })
    .await;
    let first = journal[0].clone();
    rt.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(rt);

    let clock = VirtualClock::new(clock.now_ms());
    let rt = virtual_runtime(&clock)
        .store(store.clone())
        .worker_id("tie")
        .workflow(approval::Workflow)
        .build()
        .await
        .unwrap();
    let status = run_to_end(&rt, &clock, &id).await;
    let output: String = serde_json::from_str(status.output.as_deref().unwrap()).unwrap();
    let inbox = store.events(&id).await.unwrap();
    match first.status {
        RecordStatus::Completed => {
            assert_eq!(output, "approved");
            assert!(inbox.is_empty(), "the event was consumed once");
        }
        RecordStatus::Failed => {
            assert_eq!(output, "timed out: event `approval`");
            assert_eq!(inbox.len(), 1, "a timed-out wait leaves the event in the inbox, not lost");
        }
        other => panic!("the wait ended {other:?}"),
    }
    assert_eq!(rt.client().journal(&id).await.unwrap()[0], first, "the replay did not rewrite the outcome");
}

#[workflow]
async fn typed_event(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    ctx.wait_for_event::<u32>("n").await
}

#[tokio::test]
async fn an_event_payload_of_the_wrong_type_is_a_clear_error() {
    let rt = Runtime::builder().store(MemoryStore::new()).workflow(typed_event::Workflow).build().await.unwrap();
    let client = rt.client();
    let handle = typed_event::start(&client).await.unwrap();
    client.raise_event(handle.instance_id(), "n", &"not a number").await.unwrap();
    match handle.result_timeout(Duration::from_secs(10)).await {
        Err(Error::Failed { details, .. }) => {
            assert!(details.message.contains("event `n`"), "{}", details.message);
            assert!(details.message.contains("does not deserialize into `u32`"), "{}", details.message);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

// ---- races ----

#[activity]
async fn never_done(_ctx: ActivityContext) -> Result<(), ActivityError> {
    // The subject: an activity that loses the race to the timer.
    tokio::time::sleep(HOUR).await;
    Ok(())
}

#[workflow]
async fn activity_or_timer(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let winner = match ctx.race(never_done::call(&ctx), ctx.sleep(Duration::from_secs(60))).await {
        Either::First(_) => "activity",
        Either::Second(_) => "timer",
    };
    ctx.sleep(DAY).await?;
    Ok(winner.to_owned())
}

#[tokio::test]
async fn a_race_records_its_winner_and_replays_it() {
    let (_dir, _url, store) = sqlite_store().await;
    let clock = VirtualClock::starting_now();
    let build = |clock: &VirtualClock| {
        virtual_runtime(clock)
            .store(store.clone())
            .worker_id("racer")
            .workflow(activity_or_timer::Workflow)
            .activity(never_done::Activity)
            .build()
    };
    let rt = build(&clock).await.unwrap();
    let handle = activity_or_timer::start(&rt.client()).await.unwrap();
    let id = handle.instance_id().to_owned();
    let journal = wait_for_journal(&rt.client(), &id, |j| j.iter().any(|r| r.kind == StepKind::Timer)).await;
    assert_eq!(journal[0].seq, 1, "the timer is seq 1: the activity took seq 0 when it was created");
    clock.advance(Duration::from_secs(60));
    let journal = wait_for_journal(&rt.client(), &id, |j| j.iter().any(|r| r.kind == StepKind::Race)).await;
    let race = journal.iter().find(|r| r.kind == StepKind::Race).unwrap();
    assert_eq!((race.seq, race.payload.as_deref()), (2, Some("1")));
    rt.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(rt);

    let clock = VirtualClock::new(clock.now_ms());
    let rt = build(&clock).await.unwrap();
    let status = run_to_end(&rt, &clock, &id).await;
    assert_eq!(status.output.as_deref(), Some("\"timer\""));
}

// ---- child workflows ----

#[activity]
async fn check_stock(_ctx: ActivityContext, item: u32) -> Result<u32, ActivityError> {
    if item == 13 {
        return Err(ActivityError::non_retryable(format!("item {item} is out of stock")));
    }
    Ok(item * 10)
}

#[workflow]
async fn stock_child(ctx: WorkflowContext, item: u32) -> Result<u32, WorkflowError> {
    check_stock::call(&ctx, item).await
}

#[workflow]
async fn stock_parent(ctx: WorkflowContext, items: Vec<u32>) -> Result<u32, WorkflowError> {
    let all = stock_child::fan_out(&ctx, items).max_parallel(2).await?;
    Ok(all.into_iter().sum())
}

async fn stock_runtime() -> Runtime {
    Runtime::builder()
        .store(MemoryStore::new())
        .workflow(stock_child::Workflow)
        .workflow(stock_parent::Workflow)
        .activity(check_stock::Activity)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn child_workflows_return_typed_results_and_store_their_parent() {
    let rt = stock_runtime().await;
    let client = rt.client();
    let handle = stock_parent::start(&client, vec![1, 2, 3]).id("parent-ok").await.unwrap();
    assert_eq!(handle.result_timeout(Duration::from_secs(10)).await.unwrap(), 60);
    let journal = client.journal("parent-ok").await.unwrap();
    assert_eq!(journal.len(), 3);
    for record in &journal {
        assert_eq!((record.kind, record.status), (StepKind::Child, RecordStatus::Completed));
        let child_id = format!("parent-ok-g0-c{}", record.seq);
        let child = client.status(&child_id).await.unwrap();
        assert_eq!(child.parent_id.as_deref(), Some("parent-ok"));
        assert_eq!(child.workflow, "stock_child");
        assert_eq!(child.status, RuntimeStatus::Completed);
    }
}

#[tokio::test]
async fn a_child_failure_reaches_the_parent_as_an_error() {
    let rt = stock_runtime().await;
    let handle = stock_parent::start(&rt.client(), vec![1, 13]).id("parent-bad").await.unwrap();
    match handle.result_timeout(Duration::from_secs(10)).await {
        Err(Error::Failed { details, .. }) => {
            assert_eq!(details.error_type, "ChildWorkflowFailed");
            assert!(details.message.contains("item 13 is out of stock"), "{}", details.message);
            assert!(details.message.contains("parent-bad-g0-c1"), "{}", details.message);
        }
        other => panic!("expected the parent to fail, got {other:?}"),
    }
    assert_eq!(rt.client().status("parent-bad-g0-c0").await.unwrap().status, RuntimeStatus::Completed);
    assert_eq!(rt.client().status("parent-bad-g0-c1").await.unwrap().status, RuntimeStatus::Failed);
}

// ---- continue-as-new ----

#[activity]
async fn poll_health(_ctx: ActivityContext, round: u32) -> Result<bool, ActivityError> {
    Ok(!round.is_multiple_of(7))
}

#[workflow]
async fn monitor_loop(ctx: WorkflowContext, round: u32) -> Result<u32, WorkflowError> {
    let healthy = poll_health::call(&ctx, round).await?;
    ctx.sleep(if healthy { HOUR } else { Duration::from_secs(300) }).await?;
    if round < 1000 {
        return monitor_loop::continue_as_new(&ctx, round + 1).await;
    }
    Ok(round)
}

#[tokio::test]
async fn a_thousand_rounds_of_continue_as_new_keep_the_journal_at_one_round() {
    let clock = VirtualClock::starting_now();
    let store = Arc::new(MemoryStore::new());
    let rt = virtual_runtime(&clock)
        .store(store.clone() as Arc<dyn Store>)
        .workflow(monitor_loop::Workflow)
        .activity(poll_health::Activity)
        .build()
        .await
        .unwrap();
    let client = rt.client();
    let handle = monitor_loop::start(&client, 1).id("monitor-1").await.unwrap();
    let status = run_to_end(&rt, &clock, "monitor-1").await;
    assert_eq!(status.status, RuntimeStatus::Completed);
    assert_eq!(handle.result().await.unwrap(), 1000);
    let record = store.instance("monitor-1").await.unwrap().unwrap();
    assert_eq!(record.generation, 999);
    assert_eq!(record.input, "1000");
    assert_eq!(store.journal("monitor-1", 999).await.unwrap().len(), 2, "one round: the poll and the timer");
    for old in [0, 1, 500, 998] {
        assert!(store.journal("monitor-1", old).await.unwrap().is_empty(), "generation {old} was kept");
    }
}

#[workflow]
async fn relay(ctx: WorkflowContext, seen: Vec<u32>) -> Result<Vec<u32>, WorkflowError> {
    let mut seen = seen;
    seen.push(ctx.wait_for_event::<u32>("n").await?);
    if seen.len() < 3 {
        return relay::continue_as_new(&ctx, seen).await;
    }
    Ok(seen)
}

#[tokio::test]
async fn events_raised_across_continue_as_new_are_all_delivered() {
    let rt = Runtime::builder().store(MemoryStore::new()).workflow(relay::Workflow).build().await.unwrap();
    let client = rt.client();
    let handle = relay::start(&client, Vec::new()).await.unwrap();
    let raises = (1..=3).map(|n| {
        let client = client.clone();
        let id = handle.instance_id().to_owned();
        tokio::spawn(async move { client.raise_event(&id, "n", &n).await })
    });
    for raise in raises {
        raise.await.unwrap().unwrap();
    }
    let mut seen = handle.result_timeout(Duration::from_secs(10)).await.unwrap();
    seen.sort();
    assert_eq!(seen, vec![1, 2, 3]);
}

// ---- recorded values and patches ----

#[activity]
async fn echo_values(ctx: ActivityContext, values: (u64, u64, String)) -> Result<(u64, u64, String), ActivityError> {
    bump(ctx.instance_id(), "echo_values");
    Ok(values)
}

#[workflow]
async fn recorded_values(ctx: WorkflowContext) -> Result<(u64, u64, String), WorkflowError> {
    let now = ctx.now().duration_since(std::time::UNIX_EPOCH).map_err(WorkflowError::msg)?.as_millis() as u64;
    let values = (now, ctx.random(), ctx.uuid());
    echo_values::call(&ctx, values.clone()).await?;
    ctx.sleep(DAY).await?;
    Ok(values)
}

#[tokio::test]
async fn now_random_and_uuid_are_recorded_once_and_replayed() {
    let (_dir, _url, store) = sqlite_store().await;
    let clock = VirtualClock::starting_now();
    let build = |clock: &VirtualClock| {
        virtual_runtime(clock)
            .store(store.clone())
            .worker_id("values")
            .workflow(recorded_values::Workflow)
            .activity(echo_values::Activity)
            .build()
    };
    let rt = build(&clock).await.unwrap();
    let handle = recorded_values::start(&rt.client()).await.unwrap();
    let id = handle.instance_id().to_owned();
    let journal = wait_for_journal(&rt.client(), &id, |j| j.iter().any(|r| r.kind == StepKind::Timer)).await;
    let kinds: Vec<&str> = journal.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, vec!["now", "random", "uuid", "activity", "timer"]);
    rt.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(rt);

    clock.advance(HOUR);
    let clock = VirtualClock::new(clock.now_ms());
    let rt = build(&clock).await.unwrap();
    run_to_end(&rt, &clock, &id).await;
    let replayed = handle.result().await.unwrap();
    let echoed: (u64, u64, String) = serde_json::from_str(journal[3].payload.as_deref().unwrap()).unwrap();
    assert_eq!(replayed, echoed, "the replay returned the recorded values");
    assert_eq!(count(&id, "echo_values"), 1);
    assert_eq!(replayed.2.len(), 36);
}

#[activity]
async fn patch_step(ctx: ActivityContext, name: String) -> Result<(), ActivityError> {
    bump(ctx.instance_id(), &name);
    Ok(())
}

#[workflow(name = "patched_flow")]
async fn patched_v1(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    patch_step::call(&ctx, "a".into()).await?;
    ctx.sleep(DAY).await?;
    patch_step::call(&ctx, "c".into()).await
}

#[workflow(name = "patched_flow")]
async fn patched_v2(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    patch_step::call(&ctx, "a".into()).await?;
    if ctx.patched("add-step-b") {
        patch_step::call(&ctx, "b".into()).await?;
    }
    ctx.sleep(DAY).await?;
    patch_step::call(&ctx, "c".into()).await
}

#[tokio::test]
async fn an_instance_started_before_a_patch_keeps_the_old_path_and_a_new_one_takes_the_new() {
    let (_dir, _url, store) = sqlite_store().await;
    let clock = VirtualClock::starting_now();
    let v1 = virtual_runtime(&clock)
        .store(store.clone())
        .worker_id("patcher")
        .workflow(patched_v1::Workflow)
        .activity(patch_step::Activity)
        .build()
        .await
        .unwrap();
    patched_v1::start(&v1.client()).id("before-patch").await.unwrap();
    wait_for_journal(&v1.client(), "before-patch", |j| j.iter().any(|r| r.kind == StepKind::Timer)).await;
    v1.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(v1);

    let clock = VirtualClock::new(clock.now_ms());
    let v2 = virtual_runtime(&clock)
        .store(store.clone())
        .worker_id("patcher")
        .workflow(patched_v2::Workflow)
        .activity(patch_step::Activity)
        .build()
        .await
        .unwrap();
    patched_v2::start(&v2.client()).id("after-patch").await.unwrap();
    for id in ["before-patch", "after-patch"] {
        assert_eq!(run_to_end(&v2, &clock, id).await.status, RuntimeStatus::Completed);
    }
    assert_eq!((count("before-patch", "a"), count("before-patch", "b"), count("before-patch", "c")), (1, 0, 1));
    assert_eq!((count("after-patch", "a"), count("after-patch", "b"), count("after-patch", "c")), (1, 1, 1));
    let kinds =
        |journal: Vec<workflow::JournalRecord>| journal.into_iter().map(|r| r.kind.as_str()).collect::<Vec<_>>();
    assert_eq!(kinds(store.journal("before-patch", 0).await.unwrap()), ["activity", "timer", "activity"]);
    assert_eq!(
        kinds(store.journal("after-patch", 0).await.unwrap()),
        ["activity", "patch", "activity", "timer", "activity"]
    );
}

#[workflow(name = "patched_twice_flow")]
async fn patched_twice_v1(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    patch_step::call(&ctx, "a".into()).await?;
    ctx.sleep(DAY).await?;
    patch_step::call(&ctx, "c".into()).await
}

/// The same change asked about twice: before the sleep (where an old journal has the timer) and
/// after it (past the end of that journal).
#[workflow(name = "patched_twice_flow")]
async fn patched_twice_v2(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    patch_step::call(&ctx, "a".into()).await?;
    if ctx.patched("twice") {
        patch_step::call(&ctx, "b".into()).await?;
    }
    ctx.sleep(DAY).await?;
    if ctx.patched("twice") {
        patch_step::call(&ctx, "d".into()).await?;
    }
    patch_step::call(&ctx, "c".into()).await
}

/// Dapr's `PatchRemembersToStayFalse`: an instance that met its pre-patch journal at the first
/// `patched` stays on the old path at the second, past its journal's end, instead of taking the
/// new path half-way; a new instance takes the new path at both.
#[tokio::test]
async fn a_patch_answered_false_stays_false_for_the_rest_of_the_run() {
    let (_dir, _url, store) = sqlite_store().await;
    let clock = VirtualClock::starting_now();
    let v1 = virtual_runtime(&clock)
        .store(store.clone())
        .worker_id("patcher-twice")
        .workflow(patched_twice_v1::Workflow)
        .activity(patch_step::Activity)
        .build()
        .await
        .unwrap();
    patched_twice_v1::start(&v1.client()).id("twice-before").await.unwrap();
    wait_for_journal(&v1.client(), "twice-before", |j| j.iter().any(|r| r.kind == StepKind::Timer)).await;
    v1.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(v1);

    let clock = VirtualClock::new(clock.now_ms());
    let v2 = virtual_runtime(&clock)
        .store(store.clone())
        .worker_id("patcher-twice")
        .workflow(patched_twice_v2::Workflow)
        .activity(patch_step::Activity)
        .build()
        .await
        .unwrap();
    patched_twice_v2::start(&v2.client()).id("twice-after").await.unwrap();
    for id in ["twice-before", "twice-after"] {
        assert_eq!(run_to_end(&v2, &clock, id).await.status, RuntimeStatus::Completed);
    }
    let steps = |id: &str| ["a", "b", "d", "c"].map(|step| count(id, step));
    assert_eq!(steps("twice-before"), [1, 0, 0, 1], "the old path throughout");
    assert_eq!(steps("twice-after"), [1, 1, 1, 1], "the new path throughout");
    let kinds =
        |journal: Vec<workflow::JournalRecord>| journal.into_iter().map(|r| r.kind.as_str()).collect::<Vec<_>>();
    assert_eq!(kinds(store.journal("twice-before", 0).await.unwrap()), ["activity", "timer", "activity"]);
    assert_eq!(
        kinds(store.journal("twice-after", 0).await.unwrap()),
        ["activity", "patch", "activity", "timer", "patch", "activity", "activity"]
    );
}

// ---- activity timeouts and heartbeats ----

#[activity(start_to_close = "50ms", retry(max_attempts = 2, first_interval = "1ms"))]
async fn too_slow(ctx: ActivityContext) -> Result<(), ActivityError> {
    bump(ctx.instance_id(), "too_slow");
    // The subject: far longer than its start_to_close of 50ms.
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(())
}

#[activity(heartbeat_timeout = "60ms", retry(max_attempts = 1))]
async fn long_with_heartbeats(ctx: ActivityContext, beat: bool) -> Result<u32, ActivityError> {
    // The subject: 300ms of work, five times the heartbeat timeout.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if beat {
            ctx.heartbeat();
        }
    }
    Ok(ctx.attempt())
}

#[workflow]
async fn timeouts(ctx: WorkflowContext, beat: bool) -> Result<String, WorkflowError> {
    let slow = match too_slow::call(&ctx).await {
        Ok(()) => "finished".to_owned(),
        Err(error) => error.message(),
    };
    let long = long_with_heartbeats::call(&ctx, beat).await.map_err(|e| e.message());
    Ok(format!("{slow} | {long:?}"))
}

#[tokio::test]
async fn timed_out_attempts_count_as_failures_and_heartbeats_keep_long_activities_alive() {
    let rt = Runtime::builder()
        .store(MemoryStore::new())
        .workflow(timeouts::Workflow)
        .activity(too_slow::Activity)
        .activity(long_with_heartbeats::Activity)
        .build()
        .await
        .unwrap();
    let beating = timeouts::start(&rt.client(), true).await.unwrap();
    let output = beating.result_timeout(Duration::from_secs(20)).await.unwrap();
    assert!(output.starts_with("activity `too_slow` timed out after 50ms"), "{output}");
    assert!(output.ends_with("| Ok(1)"), "a heartbeating 300ms activity must finish on its first attempt: {output}");
    assert_eq!(count(beating.instance_id(), "too_slow"), 2, "the timed-out attempt was retried once");

    let silent = timeouts::start(&rt.client(), false).await.unwrap();
    let output = silent.result_timeout(Duration::from_secs(20)).await.unwrap();
    assert!(output.contains("sent no heartbeat"), "{output}");
}

// ---- eviction ----

#[workflow]
async fn nap(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    ctx.sleep(HOUR).await?;
    Ok(n)
}

#[tokio::test]
async fn ten_thousand_sleeping_instances_are_evicted_from_memory_and_wake_on_time() {
    let clock = VirtualClock::starting_now();
    let store = Arc::new(MemoryStore::new());
    let rt = virtual_runtime(&clock)
        .store(store.clone() as Arc<dyn Store>)
        .evict_idle_after(Duration::from_millis(50))
        .workflow(nap::Workflow)
        .build()
        .await
        .unwrap();
    let client = rt.client();
    let handles = futures::future::try_join_all((0..10_000).map(|n| nap::start(&client, n))).await.unwrap();
    let many = Duration::from_secs(60);
    wait_until_within("all 10 000 instances to be evicted from memory", many, || async {
        rt.instances_in_memory() == 0
    })
    .await;
    // An instance leaves the count only once its eviction has reached the store.
    for handle in &handles {
        let record = store.instance(handle.instance_id()).await.unwrap().unwrap();
        assert_eq!(record.owner, None, "{} left memory before its eviction was written", record.id);
    }
    let sample = store.instance(handles[1234].instance_id()).await.unwrap().unwrap();
    assert_eq!(sample.wake_at, Some(store.journal(&sample.id, 0).await.unwrap()[0].due_at.unwrap()));
    assert_eq!(count("evicted", "nap"), 0);

    clock.advance(HOUR);
    for (n, handle) in handles.iter().enumerate() {
        assert_eq!(handle.result_timeout(Duration::from_secs(60)).await.unwrap(), n as u32);
    }
}

#[workflow]
async fn pause(ctx: WorkflowContext, ms: u64) -> Result<u64, WorkflowError> {
    bump(ctx.instance_id(), "pause_runs");
    ctx.sleep(Duration::from_millis(ms)).await?;
    Ok(ms)
}

/// On the system clock, a wait longer than `evict_idle_after` leaves memory as soon as it begins
/// (not after that idle time, which here is far longer than the test may take) and is replayed
/// when it wakes; a shorter one stays in memory and resumes without a replay.
#[tokio::test]
async fn a_long_sleep_leaves_memory_at_once_and_a_short_one_stays_warm() {
    let store = Arc::new(MemoryStore::new());
    let rt = Runtime::builder()
        .store(store.clone() as Arc<dyn Store>)
        .evict_idle_after(Duration::from_secs(600))
        .workflow(pause::Workflow)
        .build()
        .await
        .unwrap();
    let client = rt.client();

    let long = pause::start(&client, 3_600_000).await.unwrap();
    let long_id = long.instance_id().to_owned();
    wait_until_within("the hour-long sleep to leave memory and reach the store", Duration::from_secs(20), || async {
        rt.instances_in_memory() == 0
    })
    .await;
    let record = store.instance(&long_id).await.unwrap().unwrap();
    assert_eq!(record.owner, None, "out of memory only once the eviction is written");
    let due = store.journal(&long_id, 0).await.unwrap()[0].due_at;
    assert_eq!(record.wake_at, due, "evicted with its timer's due time as its wake-up");
    assert_eq!(count(&long_id, "pause_runs"), 1);

    let short = pause::start(&client, 50).await.unwrap();
    assert_eq!(short.result().await.unwrap(), 50);
    assert_eq!(count(short.instance_id(), "pause_runs"), 1, "the short sleep resumed without a replay");
    rt.shutdown(Duration::from_secs(5)).await.unwrap();

    // An hour later (on a virtual clock, in a runtime on the same store), the long sleep is
    // claimed, replayed and ends.
    let clock = VirtualClock::starting_now();
    let later = virtual_runtime(&clock).store(store.clone() as Arc<dyn Store>).workflow(pause::Workflow).build().await;
    let later = later.unwrap();
    clock.advance(HOUR + Duration::from_secs(60));
    let status = run_to_end(&later, &clock, &long_id).await;
    assert_eq!((status.status, status.output.as_deref()), (RuntimeStatus::Completed, Some("3600000")));
    assert_eq!(count(&long_id, "pause_runs"), 2, "the hour-long sleep was replayed when it woke");
}
