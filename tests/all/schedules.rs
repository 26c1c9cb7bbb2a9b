//! Starts in the future: delayed starts (`Start::delay`, `Start::at`) wait in the store, Pending
//! with their due time, and run once it has come on the runtime's clock, surviving restarts; and
//! cron schedules, fired once per tick, with their catch-up and overlap policies, managed through
//! the client, on a virtual clock.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use workflow::prelude::*;
use workflow::store::{MemoryStore, Store};
use workflow::{Schedule, VirtualClock};

use crate::support::{sqlite_store, wait_for_a_claim_pass};

#[workflow]
async fn delayed_job(_ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n + 1)
}

async fn runtime(store: &Arc<dyn Store>, clock: &VirtualClock) -> Runtime {
    Runtime::builder()
        .store(store.clone())
        .clock(clock.clone())
        .poll_interval(Duration::from_millis(10))
        .workflow(delayed_job::Workflow)
        .build()
        .await
        .unwrap()
}

/// `.delay(10 s)` and `.at(t)` on a virtual clock: Pending with their due times, passed over by
/// a claim a millisecond before, run once the clock reaches them; a debounced start refuses a
/// delay. With `restart`, the runtime that started them is gone before they are due and a new
/// one (on a store reopened by `reopen`) runs them.
async fn delayed_starts_wait_for_their_time<F, Fut>(run: &str, store: Arc<dyn Store>, reopen: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    let clock = VirtualClock::new(5_000_000);
    let first = runtime(&store, &clock).await;
    let client = first.client();
    let later = delayed_job::start(&client, 1).id(format!("{run}-later")).delay(Duration::from_secs(10)).await.unwrap();
    let at = UNIX_EPOCH + Duration::from_millis(5_020_000);
    delayed_job::start(&client, 2).id(format!("{run}-at")).at(at).await.unwrap();
    let past = delayed_job::start(&client, 3).id(format!("{run}-past")).at(UNIX_EPOCH).await.unwrap();
    assert_eq!(past.result_timeout(Duration::from_secs(20)).await.unwrap(), 4, "{run}: a past time starts now");
    let status = later.status().await.unwrap();
    assert_eq!((status.status, status.wake_at), (RuntimeStatus::Pending, Some(5_010_000)), "{run}");
    let debounced = delayed_job::start(&client, 4).debounce("k", Duration::from_secs(1)).delay(Duration::from_secs(1));
    assert!(matches!(debounced.await, Err(workflow::Error::InvalidArgument(_))), "{run}");
    first.shutdown(Duration::from_secs(5)).await.unwrap();

    // Restarted (as after a crash or a deploy): the delayed starts are rows, not timers.
    let store = reopen().await;
    let second = runtime(&store, &clock).await;
    let client = second.client();
    clock.advance(Duration::from_millis(9_999));
    wait_for_a_claim_pass(&store, "delayed_job", &format!("{run}-probe-1"), "0").await;
    let status = client.status(&format!("{run}-later")).await.unwrap();
    assert_eq!(status.status, RuntimeStatus::Pending, "{run}: not due a millisecond before");
    clock.advance(Duration::from_millis(1));
    let later = Handle::<u32>::new(client.clone(), format!("{run}-later"));
    assert_eq!(later.result_timeout(Duration::from_secs(20)).await.unwrap(), 2, "{run}: due at 10 s");
    assert_eq!(client.status(&format!("{run}-at")).await.unwrap().status, RuntimeStatus::Pending, "{run}");
    clock.advance(Duration::from_secs(10));
    let at = Handle::<u32>::new(client.clone(), format!("{run}-at"));
    assert_eq!(at.result_timeout(Duration::from_secs(20)).await.unwrap(), 3, "{run}: due at its time");
    second.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn delayed_starts_wait_for_their_time_in_memory() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let same = store.clone();
    delayed_starts_wait_for_their_time("delay-memory", store, || async move { same }).await;
}

#[tokio::test]
async fn delayed_starts_wait_for_their_time_on_sqlite() {
    let (_dir, url, store) = sqlite_store().await;
    let reopen = || async move { Arc::new(workflow::SqliteStore::open(&url).await.unwrap()) as Arc<dyn Store> };
    delayed_starts_wait_for_their_time("delay-sqlite", store, reopen).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn delayed_starts_wait_for_their_time_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_delay");
    let open = |url: String, schema: String| async move {
        let options = workflow::PostgresOptions::new().schema(&schema);
        Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap()) as Arc<dyn Store>
    };
    let store = open(url.clone(), schema.clone()).await;
    delayed_starts_wait_for_their_time("delay-postgres", store, || open(url.clone(), schema.clone())).await;
    drop_schema(&url, &schema).await;
}

// ---------------------------------------------------------------------------------------------
// Cron schedules
// ---------------------------------------------------------------------------------------------

/// 2026-01-01T00:00:00Z.
const NEW_YEAR: i64 = 1_767_225_600_000;

#[workflow]
async fn tick_job(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

/// Runs until it gets the event "done" (a run that outlasts its schedule's interval).
#[workflow]
async fn long_job(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.wait_for_event::<()>("done").await?;
    Ok(())
}

async fn schedule_runtime(store: &Arc<dyn Store>, clock: &VirtualClock, schedules: Vec<Schedule>) -> Runtime {
    let mut builder = Runtime::builder()
        .store(store.clone())
        .clock(clock.clone())
        .poll_interval(Duration::from_millis(10))
        .workflow(tick_job::Workflow)
        .workflow(long_job::Workflow);
    for schedule in schedules {
        builder = builder.schedule(schedule);
    }
    builder.build().await.unwrap()
}

/// The ids of the instances of `workflow` whose id starts with `prefix`, sorted.
async fn instances_of(client: &Client, workflow: &str, prefix: &str) -> Vec<String> {
    let filter = workflow::ListFilter { workflow: Some(workflow.to_owned()), ..Default::default() };
    let page = client.list(&filter, 1_000, None).await.unwrap();
    let mut ids: Vec<String> =
        page.instances.into_iter().map(|s| s.instance_id).filter(|id| id.starts_with(prefix)).collect();
    ids.sort();
    ids
}

async fn wait_for_instance(store: &Arc<dyn Store>, id: &str) {
    crate::support::wait_until(&format!("the tick's instance {id}"), || async {
        store.instance(id).await.unwrap().is_some_and(|r| r.status == RuntimeStatus::Completed)
    })
    .await;
}

/// A schedule every second, declared on the builder, over ten virtual seconds: exactly one
/// instance per tick, each with the id derived from its tick, none missing.
async fn a_schedule_fires_each_tick_once(run: &str, store: Arc<dyn Store>) {
    let clock = VirtualClock::new(NEW_YEAR);
    let id = format!("{run}-every");
    let every_second = Schedule::of::<tick_job::Workflow>(id.as_str(), "* * * * * *", &());
    let runtime = schedule_runtime(&store, &clock, vec![every_second]).await;
    let mut expected = Vec::new();
    for second in 1..=10 {
        clock.advance(Duration::from_secs(1));
        let tick_id = format!("{id}-{}", NEW_YEAR + second * 1_000);
        wait_for_instance(&store, &tick_id).await;
        expected.push(tick_id);
    }
    let client = runtime.client();
    // The tick at 11 s may be fired ahead already (the 10th run has ended): it is no tick passed.
    let next = format!("{id}-{}", NEW_YEAR + 11_000);
    let (ticked, ahead): (Vec<String>, Vec<String>) =
        instances_of(&client, "tick_job", &id).await.into_iter().partition(|tick| *tick < next);
    assert_eq!(ticked, expected, "{run}: one per tick, none missing");
    assert!(ahead.is_empty() || ahead == [next], "{run}: nothing fired past the next tick: {ahead:?}");
    let status = client.schedule(&id).await.unwrap();
    assert_eq!(status.next_runs.first(), Some(&(NEW_YEAR + 11_000)), "{run}");
    let last_passed = status.recent_runs.iter().rfind(|r| r.tick <= NEW_YEAR + 10_000);
    assert_eq!(last_passed.and_then(|r| r.instance_id.clone()), expected.last().cloned(), "{run}");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_schedule_fires_each_tick_once_in_memory() {
    a_schedule_fires_each_tick_once("sched-mem", Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_schedule_fires_each_tick_once_on_sqlite() {
    let (_dir, _url, store) = sqlite_store().await;
    a_schedule_fires_each_tick_once("sched-lite", store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_schedule_fires_each_tick_once_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_sched");
    let options = workflow::PostgresOptions::new().schema(&schema);
    let store = Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap()) as Arc<dyn Store>;
    a_schedule_fires_each_tick_once("sched-pg", store).await;
    drop_schema(&url, &schema).await;
}

/// Every process stopped for five ticks, then one started: each catch-up policy starts what it
/// says (all five, the latest, or none of them), and the schedule goes on from the next tick. The
/// tick after the stop had been fired ahead before it: it is an instance already, and runs
/// late, whatever the policy. (Runs may overlap: under the default overlap policy, that tick,
/// not run yet, would be the previous run still going, and every caught-up tick skipped.)
#[tokio::test]
async fn catch_up_policies_after_a_stop() {
    let cases: [(&str, workflow::CatchUp, &[i64]); 3] = [
        ("cu-all", workflow::CatchUp::All { max: 10 }, &[3, 4, 5, 6]),
        ("cu-latest", workflow::CatchUp::Latest, &[6]),
        ("cu-skip", workflow::CatchUp::Skip { grace_ms: 500 }, &[]),
    ];
    for (id, policy, caught_up) in cases {
        let (_dir, url, store) = sqlite_store().await;
        let clock = VirtualClock::new(NEW_YEAR);
        let schedule = Schedule::of::<tick_job::Workflow>(id, "* * * * * *", &())
            .catch_up(policy)
            .overlap(workflow::Overlap::AllowAll);
        let first = schedule_runtime(&store, &clock, vec![schedule.clone()]).await;
        clock.advance(Duration::from_secs(1));
        wait_for_instance(&store, &format!("{id}-{}", NEW_YEAR + 1_000)).await;
        crate::support::wait_until(&format!("{id}: the tick at 2 s fired ahead"), || async {
            store.schedule(id).await.unwrap().and_then(|s| s.next_fire_at) == Some(NEW_YEAR + 3_000)
        })
        .await;
        first.shutdown(Duration::from_secs(5)).await.unwrap();
        // Five ticks pass with no process running (and half a second more).
        clock.advance(Duration::from_millis(5_600));
        let store: Arc<dyn Store> = Arc::new(workflow::SqliteStore::open(&url).await.unwrap());
        let second = schedule_runtime(&store, &clock, vec![schedule]).await;
        // The catch-up fire, at 6.6 s: the schedule then waits for the tick at 7 s (or has fired
        // it ahead already).
        crate::support::wait_until(&format!("{id}: the catch-up fire"), || async {
            store.schedule(id).await.unwrap().and_then(|s| s.next_fire_at) >= Some(NEW_YEAR + 7_000)
        })
        .await;
        let mut expected: Vec<String> =
            [1, 2].iter().chain(caught_up).map(|s| format!("{id}-{}", NEW_YEAR + s * 1_000)).collect();
        // Each runs (the tick at 2 s late).
        for tick in &expected {
            wait_for_instance(&store, tick).await;
        }
        clock.advance(Duration::from_millis(400));
        let next = format!("{id}-{}", NEW_YEAR + 7_000);
        wait_for_instance(&store, &next).await;
        expected.push(next);
        expected.sort();
        // And the tick at 8 s, fired ahead.
        let fired = instances_of(&second.client(), "tick_job", id).await;
        let eight = format!("{id}-{}", NEW_YEAR + 8_000);
        assert_eq!(fired.iter().filter(|tick| **tick != eight).cloned().collect::<Vec<_>>(), expected, "{id}");
        second.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

/// A run that outlasts the interval: under `Overlap::Skip` the ticks meanwhile start nothing
/// (and say why), the tick after it ended starts again; under `Overlap::AllowAll` they start;
/// under `Overlap::TerminatePrevious` the next tick terminates the run and starts.
#[tokio::test]
async fn overlap_policies_with_a_long_run() {
    use workflow::Overlap;
    let policies = [("ov-skip", Overlap::Skip), ("ov-all", Overlap::AllowAll), ("ov-term", Overlap::TerminatePrevious)];
    for (id, policy) in policies {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let clock = VirtualClock::new(NEW_YEAR);
        let schedule = Schedule::of::<long_job::Workflow>(id, "* * * * * *", &()).overlap(policy);
        let runtime = schedule_runtime(&store, &clock, vec![schedule]).await;
        let client = runtime.client();
        let tick = |s: i64| format!("{id}-{}", NEW_YEAR + s * 1_000);
        clock.advance(Duration::from_secs(1));
        crate::support::wait_until("the first run", || async { store.instance(&tick(1)).await.unwrap().is_some() })
            .await;
        clock.advance(Duration::from_secs(1));
        crate::support::wait_until("the second tick", || async {
            client.schedule(id).await.unwrap().recent_runs.iter().any(|run| run.tick == NEW_YEAR + 2_000)
        })
        .await;
        let second = client.schedule(id).await.unwrap().recent_runs.into_iter().find(|r| r.tick == NEW_YEAR + 2_000);
        match policy {
            Overlap::Skip => {
                let second = second.unwrap();
                assert_eq!(second.instance_id, None, "{id}");
                assert!(second.skipped.unwrap().contains(&tick(1)), "{id}: says which run still went");
                assert!(store.instance(&tick(2)).await.unwrap().is_none(), "{id}");
            }
            Overlap::AllowAll => assert_eq!(second.unwrap().instance_id, Some(tick(2)), "{id}"),
            Overlap::TerminatePrevious => {
                assert_eq!(second.unwrap().instance_id, Some(tick(2)), "{id}");
                let first = client.status(&tick(1)).await.unwrap();
                assert_eq!(first.status, RuntimeStatus::Terminated, "{id}: the previous run was terminated");
                // The third tick terminates the second in turn.
                client.raise_event(&tick(2), "done", &()).await.unwrap();
            }
            Overlap::BufferOne => unreachable!("buffer_one_starts_the_waiting_tick_when_the_run_ends"),
        }
        if policy != Overlap::TerminatePrevious {
            client.raise_event(&tick(1), "done", &()).await.unwrap();
            wait_for_instance(&store, &tick(1)).await;
        }
        clock.advance(Duration::from_secs(1));
        crate::support::wait_until("the third run", || async { store.instance(&tick(3)).await.unwrap().is_some() })
            .await;
        runtime.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

/// `Overlap::BufferOne` with a run that outlasts two ticks of a schedule every 10 s: the first
/// tick it overlaps waits (a buffered run, no instance), the next is skipped, and the waiting
/// tick starts within a second of the run's end (not at the next tick), under its own tick's id;
/// with nothing running or waiting, the tick after starts at once.
async fn buffer_one_starts_the_waiting_tick_when_the_run_ends(id: &str, store: Arc<dyn Store>) {
    let clock = VirtualClock::new(NEW_YEAR);
    let schedule = Schedule::of::<long_job::Workflow>(id, "*/10 * * * * *", &()).overlap(workflow::Overlap::BufferOne);
    let runtime = schedule_runtime(&store, &clock, vec![schedule]).await;
    let client = runtime.client();
    let tick = |s: i64| format!("{id}-{}", NEW_YEAR + s * 1_000);
    let run_at = |s: i64| {
        let client = client.clone();
        async move { client.schedule(id).await.unwrap().recent_runs.into_iter().find(|r| r.tick == NEW_YEAR + s * 1_000) }
    };
    let exists = |s: i64| {
        let store = store.clone();
        async move { store.instance(&tick(s)).await.unwrap().is_some() }
    };
    clock.advance(Duration::from_secs(10));
    crate::support::wait_until("the first run", || exists(10)).await;
    clock.advance(Duration::from_secs(10));
    crate::support::wait_until("the second tick", || async { run_at(20).await.is_some() }).await;
    let waiting = run_at(20).await.unwrap();
    assert!(waiting.buffered && waiting.instance_id.is_none() && waiting.skipped.is_none(), "{id}: {waiting:?}");
    assert!(!exists(20).await, "{id}: a buffered tick has no instance yet");
    clock.advance(Duration::from_secs(10));
    crate::support::wait_until("the third tick", || async { run_at(30).await.is_some() }).await;
    let skipped = run_at(30).await.unwrap();
    assert!(!skipped.buffered && skipped.instance_id.is_none(), "{id}: one waits at most: {skipped:?}");
    assert!(skipped.skipped.unwrap().contains(&tick(10)), "{id}: says which run still went");
    assert!(run_at(20).await.unwrap().buffered, "{id}: the first waiting tick keeps its place");

    // The run ends at 30 s: the buffered tick starts by 31 s, long before the tick at 40 s.
    client.raise_event(&tick(10), "done", &()).await.unwrap();
    wait_for_instance(&store, &tick(10)).await;
    clock.advance(Duration::from_millis(1_000));
    crate::support::wait_until("the buffered run", || exists(20)).await;
    let started = run_at(20).await.unwrap();
    assert_eq!((started.buffered, started.instance_id), (false, Some(tick(20))), "{id}");
    assert_eq!(client.schedule(id).await.unwrap().next_runs.first(), Some(&(NEW_YEAR + 40_000)), "{id}");
    client.raise_event(&tick(20), "done", &()).await.unwrap();
    wait_for_instance(&store, &tick(20)).await;
    clock.advance(Duration::from_secs(9));
    crate::support::wait_until("the run at 40 s", || exists(40)).await;
    assert_eq!(
        instances_of(&client, "long_job", id).await,
        vec![tick(10), tick(20), tick(40)],
        "{id}: the skipped tick never ran"
    );
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn buffer_one_starts_the_waiting_tick_when_the_run_ends_in_memory() {
    buffer_one_starts_the_waiting_tick_when_the_run_ends("buf-mem", Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn buffer_one_starts_the_waiting_tick_when_the_run_ends_on_sqlite() {
    let (_dir, _url, store) = sqlite_store().await;
    buffer_one_starts_the_waiting_tick_when_the_run_ends("buf-lite", store).await;
}

/// Managed through the client: create, describe, pause (no tick while paused), resume (from the
/// next tick), update (the new expression from its next tick), trigger now, delete (no further
/// ticks); bad input gets a clear error. A witness schedule every second shows each scheduler
/// pass has happened.
#[tokio::test]
async fn schedules_are_managed_through_the_client() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = VirtualClock::new(NEW_YEAR);
    let witness = Schedule::of::<tick_job::Workflow>("witness", "* * * * * *", &());
    let runtime = schedule_runtime(&store, &clock, vec![witness]).await;
    let client = runtime.client();
    let pass = |s: i64| {
        let store = store.clone();
        async move { wait_for_instance(&store, &format!("witness-{}", NEW_YEAR + s * 1_000)).await }
    };
    let managed = Schedule::of::<tick_job::Workflow>("managed", "* * * * * *", &());
    client.create_schedule(managed.clone()).await.unwrap();
    assert!(matches!(client.create_schedule(managed).await, Err(workflow::Error::ScheduleExists(_))));
    let described = client.schedule("managed").await.unwrap();
    assert_eq!((described.cron.as_str(), described.time_zone.as_str()), ("* * * * * *", "UTC"));
    assert_eq!(described.next_runs[..2], [NEW_YEAR + 1_000, NEW_YEAR + 2_000]);

    clock.advance(Duration::from_secs(1));
    wait_for_instance(&store, &format!("managed-{}", NEW_YEAR + 1_000)).await;
    client.pause_schedule("managed").await.unwrap();
    assert!(client.schedule("managed").await.unwrap().next_runs.is_empty(), "paused: nothing next");
    for s in 2..=3 {
        clock.advance(Duration::from_secs(1));
        pass(s).await;
    }
    client.resume_schedule("managed").await.unwrap();
    clock.advance(Duration::from_secs(1));
    pass(4).await;
    wait_for_instance(&store, &format!("managed-{}", NEW_YEAR + 4_000)).await;
    // Every two seconds from now on.
    client.update_schedule(Schedule::of::<tick_job::Workflow>("managed", "*/2 * * * * *", &())).await.unwrap();
    for s in 5..=8 {
        clock.advance(Duration::from_secs(1));
        pass(s).await;
    }
    wait_for_instance(&store, &format!("managed-{}", NEW_YEAR + 8_000)).await;
    let ticks: Vec<i64> = [1, 4, 6, 8].to_vec();
    let expected: Vec<String> = ticks.iter().map(|s| format!("managed-{}", NEW_YEAR + s * 1_000)).collect();
    assert_eq!(instances_of(&client, "tick_job", "managed-1").await, expected, "none while paused, every 2 s after");

    let triggered = client.trigger_schedule("managed").await.unwrap();
    assert_eq!(triggered, format!("managed-manual-{}", NEW_YEAR + 8_000));
    wait_for_instance(&store, &triggered).await;
    client.delete_schedule("managed").await.unwrap();
    for s in 9..=10 {
        clock.advance(Duration::from_secs(1));
        pass(s).await;
    }
    assert!(store.instance(&format!("managed-{}", NEW_YEAR + 10_000)).await.unwrap().is_none(), "deleted");
    assert_eq!(client.schedules().await.unwrap().iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["witness"]);

    use workflow::Error;
    let bad = |cron: &str| Schedule::of::<tick_job::Workflow>("bad", cron, &());
    assert!(matches!(client.create_schedule(bad("every minute")).await, Err(Error::InvalidArgument(_))));
    assert!(matches!(
        client.create_schedule(bad("* * * * *").time_zone("Mars/Olympus")).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        client.create_schedule(Schedule::untyped("bad", "no_such_workflow", "* * * * *", "null")).await,
        Err(Error::UnknownWorkflow(_))
    ));
    assert!(matches!(
        client.create_schedule(Schedule::untyped("bad id", "tick_job", "* * * * *", "null")).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(client.pause_schedule("missing").await, Err(Error::ScheduleNotFound(_))));
    assert!(matches!(client.delete_schedule("missing").await, Err(Error::ScheduleNotFound(_))));
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A daily schedule at 09:00 in Paris over 30 virtual days (stepping the clock six hours at a
/// time): exactly 30 runs, at 08:00 UTC in winter, in milliseconds of real time.
#[tokio::test]
async fn thirty_virtual_days_fire_exactly_the_expected_ticks() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = VirtualClock::new(NEW_YEAR);
    let daily = Schedule::of::<tick_job::Workflow>("daily", "0 0 9 * * *", &()).time_zone("Europe/Paris");
    let runtime = schedule_runtime(&store, &clock, vec![daily]).await;
    let expected: Vec<String> =
        (0..30).map(|day| format!("daily-{}", NEW_YEAR + day * 86_400_000 + 8 * 3_600_000)).collect();
    for step in 1..=(30 * 4) {
        clock.advance(Duration::from_secs(6 * 3_600));
        // Each day's tick is at 08:00 UTC: stepped past on the day's second step.
        if step % 4 == 2 {
            wait_for_instance(&store, &expected[(step / 4) as usize]).await;
        }
    }
    assert_eq!(instances_of(&runtime.client(), "tick_job", "daily-").await, expected);
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Ticks fired ahead of their time: a tick's instance is created up to a second before it,
/// Pending and due at the tick (shown as the next run), and runs at its time, not before; an
/// update cancels a tick fired ahead under the old settings and fires it again under the new
/// (once), a pause and a delete cancel it, and nothing is fired while paused or once deleted.
async fn ticks_fire_ahead_and_changes_cancel_them(run: &str, store: Arc<dyn Store>) {
    let clock = VirtualClock::new(NEW_YEAR);
    // A witness every second: the instance of its tick at `s` exists once a pass ran at s - 1.
    let witness_id = format!("{run}-w");
    let witness = Schedule::of::<tick_job::Workflow>(witness_id.as_str(), "* * * * * *", &())
        .overlap(workflow::Overlap::AllowAll);
    let runtime = Runtime::builder()
        .store(store.clone())
        .clock(clock.clone())
        .poll_interval(Duration::from_millis(10))
        .workflow(delayed_job::Workflow)
        .workflow(tick_job::Workflow)
        .schedule(witness)
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let at =
        |ms: i64| clock.advance(Duration::from_millis(u64::try_from(ms - workflow::Clock::now_ms(&clock)).unwrap()));
    let passed = |s: i64| {
        let (store, id) = (store.clone(), format!("{witness_id}-{}", NEW_YEAR + (s + 1) * 1_000));
        async move {
            crate::support::wait_until(&format!("a scheduler pass at {s} s"), || async {
                store.instance(&id).await.unwrap().is_some()
            })
            .await
        }
    };
    let id = format!("{run}-ahead");
    let tick = |s: i64| format!("{id}-{}", NEW_YEAR + s * 1_000);
    let every_ten = |input: u32| Schedule::of::<delayed_job::Workflow>(id.as_str(), "*/10 * * * * *", &input);
    client.create_schedule(every_ten(1)).await.unwrap();

    // 9.2 s: the tick at 10 s is fired ahead, due at its time.
    at(NEW_YEAR + 9_200);
    passed(9).await;
    let ahead = store.instance(&tick(10)).await.unwrap().expect("the tick at 10 s, fired ahead");
    assert_eq!(
        (ahead.status, ahead.wake_at, ahead.input.as_str()),
        (RuntimeStatus::Pending, Some(NEW_YEAR + 10_000), "1")
    );
    assert!(ahead.created_at < NEW_YEAR + 10_000, "{run}: created before its tick");
    let described = client.schedule(&id).await.unwrap();
    assert_eq!(described.next_runs[..2], [NEW_YEAR + 10_000, NEW_YEAR + 20_000], "{run}: the tick to come is next");
    wait_for_a_claim_pass(&store, "delayed_job", &format!("{run}-probe-1"), "0").await;
    assert_eq!(client.status(&tick(10)).await.unwrap().status, RuntimeStatus::Pending, "{run}: not before its tick");
    at(NEW_YEAR + 10_000);
    let first = Handle::<u32>::new(client.clone(), tick(10));
    assert_eq!(first.result_timeout(Duration::from_secs(20)).await.unwrap(), 2, "{run}: runs at its tick");

    // 19.5 s: the tick at 20 s is fired ahead with input 1; an update to input 5 cancels it and
    // fires it again with 5.
    at(NEW_YEAR + 19_500);
    passed(19).await;
    assert_eq!(store.instance(&tick(20)).await.unwrap().map(|i| i.input), Some("1".to_owned()), "{run}");
    client.update_schedule(every_ten(5)).await.unwrap();
    crate::support::wait_until("the tick at 20 s fired again under the update", || async {
        store.instance(&tick(20)).await.unwrap().is_some_and(|i| i.input == "5")
    })
    .await;
    at(NEW_YEAR + 20_000);
    let updated = Handle::<u32>::new(client.clone(), tick(20));
    assert_eq!(updated.result_timeout(Duration::from_secs(20)).await.unwrap(), 6, "{run}: the new input");
    let runs = client.schedule(&id).await.unwrap().recent_runs;
    assert_eq!(runs.iter().filter(|r| r.tick == NEW_YEAR + 20_000).count(), 1, "{run}: one run of the tick: {runs:?}");

    // 29.2 s: the tick at 30 s is fired ahead; a pause cancels it, and nothing fires until the
    // resume, from the next tick on.
    at(NEW_YEAR + 29_200);
    passed(29).await;
    assert!(store.instance(&tick(30)).await.unwrap().is_some(), "{run}: fired ahead");
    client.pause_schedule(&id).await.unwrap();
    assert_eq!(store.instance(&tick(30)).await.unwrap(), None, "{run}: the pause cancelled it");
    let described = client.schedule(&id).await.unwrap();
    assert!(described.next_runs.is_empty(), "{run}: paused");
    assert!(described.recent_runs.iter().all(|r| r.tick != NEW_YEAR + 30_000), "{run}: {:?}", described.recent_runs);
    at(NEW_YEAR + 31_000);
    passed(31).await;
    assert_eq!(store.instance(&tick(30)).await.unwrap(), None, "{run}: nothing fires while paused");
    client.resume_schedule(&id).await.unwrap();

    // 39.1 s: the tick at 40 s is fired ahead; a delete cancels it.
    at(NEW_YEAR + 39_100);
    passed(39).await;
    assert!(store.instance(&tick(40)).await.unwrap().is_some(), "{run}: fired ahead after the resume");
    client.delete_schedule(&id).await.unwrap();
    assert_eq!(store.instance(&tick(40)).await.unwrap(), None, "{run}: the delete cancelled it");
    at(NEW_YEAR + 41_000);
    passed(41).await;
    assert_eq!(store.instance(&tick(40)).await.unwrap(), None, "{run}: deleted");
    let ran: Vec<String> = [10, 20].iter().map(|s| tick(*s)).collect();
    assert_eq!(instances_of(&client, "delayed_job", &id).await, ran, "{run}");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn ticks_fire_ahead_and_changes_cancel_them_in_memory() {
    ticks_fire_ahead_and_changes_cancel_them("ahead-mem", Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn ticks_fire_ahead_and_changes_cancel_them_on_sqlite() {
    let (_dir, _url, store) = sqlite_store().await;
    ticks_fire_ahead_and_changes_cancel_them("ahead-lite", store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn ticks_fire_ahead_and_changes_cancel_them_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_ahead");
    let options = workflow::PostgresOptions::new().schema(&schema);
    let store = Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap()) as Arc<dyn Store>;
    ticks_fire_ahead_and_changes_cancel_them("ahead-pg", store).await;
    drop_schema(&url, &schema).await;
}
