//! Flow control: which backlogged work runs first, on every store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use workflow::prelude::*;
use workflow::store::{MemoryStore, Store};
use workflow::{ActivityDispatch, Clock, Error, QueuedState};

use crate::support::{sqlite_store, wait_for_value};

/// The order the `ranked` activity ran in, per test run (the key is the ids' prefix): recorded by
/// the activity, which runs once per instance, not by the workflow body, which replays.
fn started() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static STARTED: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    STARTED.get_or_init(Mutex::default)
}

#[activity]
async fn note_start(_ctx: ActivityContext, id: String) -> Result<(), ActivityError> {
    let (run, _) = id.split_once('/').unwrap_or((&id, ""));
    started().lock().unwrap().entry(run.to_owned()).or_default().push(id.clone());
    Ok(())
}

/// Starts at priority 5 unless a start says otherwise.
#[workflow(priority = 5)]
async fn ranked(ctx: WorkflowContext, id: String) -> Result<(), WorkflowError> {
    note_start::call(&ctx, id).await
}

/// A backlog on `store`, queued before any worker runs: ten instances at priority 1, then five at
/// the workflow's default (5), then ten at priority 10. One worker with one slot then runs them
/// one by one: every priority-10 instance first, then the default ones, then the priority-1 ones
/// queued first of all, each priority in the order it was queued.
async fn backlog_runs_by_priority(run: &str, store: Arc<dyn Store>) {
    let queue = Client::new(store.clone());
    let mut expected: Vec<String> = Vec::new();
    let mut low = Vec::new();
    for n in 0..10 {
        let id = format!("{run}/low-{n:02}");
        ranked::start(&queue, id.clone()).id(id.replace('/', "-")).priority(1).await.unwrap();
        low.push(id);
    }
    let mut default = Vec::new();
    for n in 0..5 {
        let id = format!("{run}/mid-{n:02}");
        let handle = ranked::start(&queue, id.clone()).id(id.replace('/', "-")).await.unwrap();
        assert_eq!(handle.status().await.unwrap().priority, 5, "the attribute's default");
        default.push(id);
    }
    for n in 0..10 {
        let id = format!("{run}/high-{n:02}");
        ranked::start(&queue, id.clone()).id(id.replace('/', "-")).priority(10).await.unwrap();
        expected.push(id);
    }
    expected.extend(default);
    expected.extend(low);

    let runtime = Runtime::builder()
        .store(store)
        .workflow(ranked::Workflow)
        .activity(note_start::Activity)
        .max_concurrent_instances(1)
        .build()
        .await
        .unwrap();
    let order = wait_for_value(&format!("{run}: all 25 instances to start"), || async {
        let order = started().lock().unwrap().get(run).cloned().unwrap_or_default();
        (order.len() >= expected.len()).then_some(order)
    })
    .await;
    assert_eq!(order, expected, "{run}: highest priority first, the order of queueing within one");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_backlog_runs_highest_priority_first_in_memory() {
    backlog_runs_by_priority("prio-memory", Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_backlog_runs_highest_priority_first_on_sqlite() {
    let (_dir, _url, store) = sqlite_store().await;
    backlog_runs_by_priority("prio-sqlite", store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_backlog_runs_highest_priority_first_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_priority");
    let options = workflow::PostgresOptions::new().schema(&schema);
    let store: Arc<dyn Store> = Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap());
    backlog_runs_by_priority("prio-postgres", store).await;
    drop_schema(&url, &schema).await;
}

/// Per run: released when the test says, for the first `one_at_a_time` attempt to wait on.
fn priority_gates() -> &'static Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>> {
    static GATES: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>> = OnceLock::new();
    GATES.get_or_init(Mutex::default)
}

/// One attempt at a time across every worker (so calls queue); records the order attempts
/// start in, and the first of each run waits for its gate.
#[activity(concurrency = 1)]
async fn one_at_a_time(_ctx: ActivityContext, id: String) -> Result<(), ActivityError> {
    let (run, rest) = id.split_once('/').unwrap_or((&id, ""));
    started().lock().unwrap().entry(run.to_owned()).or_default().push(id.clone());
    if rest == "low-00" {
        let gate = priority_gates().lock().unwrap().get(run).cloned();
        if let Some(gate) = gate {
            gate.acquire().await.map_err(|_| ActivityError::non_retryable("gate closed"))?.forget();
        }
    }
    Ok(())
}

#[workflow]
async fn calls_one_at_a_time(ctx: WorkflowContext, id: String) -> Result<(), WorkflowError> {
    one_at_a_time::call(&ctx, id).await
}

/// Priority of activity attempts: a queued attempt takes its instance's priority. Ten priority-1
/// instances call an activity capped at one at a time (the first holds the slot until the test
/// lets it go), then ten priority-10 instances call it; once all twenty calls are queued and the
/// slot is free, every priority-10 call starts before the nine priority-1 calls queued earlier.
async fn queued_calls_run_by_priority(run: &str, store: Arc<dyn Store>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    priority_gates().lock().unwrap().insert(run.to_owned(), gate.clone());
    let runtime = Runtime::builder()
        .store(store.clone())
        .workflow(calls_one_at_a_time::Workflow)
        .activity(one_at_a_time::Activity)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let mut ids = Vec::new();
    for (rank, priority) in [("low", 1), ("high", 10)] {
        for n in 0..10 {
            let id = format!("{run}/{rank}-{n:02}");
            let handle = calls_one_at_a_time::start(&client, id.clone()).priority(priority).await.unwrap();
            ids.push((id, handle));
        }
        if rank == "low" {
            wait_for_value(&format!("{run}: the first call holds the slot"), || async {
                started().lock().unwrap().get(run).is_some_and(|order| !order.is_empty()).then_some(())
            })
            .await;
        }
    }
    // The first runs in a slot of this worker's (no task row); the other nineteen are queued.
    wait_for_value(&format!("{run}: the other nineteen calls queued"), || async {
        for (_, handle) in ids.iter().skip(1) {
            if store.tasks_of(handle.instance_id()).await.unwrap().is_empty() {
                return None;
            }
        }
        Some(())
    })
    .await;
    gate.add_permits(1);
    for (id, handle) in &ids {
        handle.result_timeout(Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    let order = started().lock().unwrap().get(run).cloned().unwrap_or_default();
    let rank = |id: &String| id.split_once('/').map(|(_, rest)| rest[..rest.len() - 3].to_owned()).unwrap_or_default();
    let ranks: Vec<String> = order.iter().map(rank).collect();
    let mut expected = vec!["low".to_owned()];
    expected.extend(std::iter::repeat_n("high".to_owned(), 10));
    expected.extend(std::iter::repeat_n("low".to_owned(), 9));
    assert_eq!(ranks, expected, "{run}: {order:?}");
    let lows: Vec<&String> = order.iter().filter(|id| rank(id) == "low").collect();
    let mut queued_order = lows.clone();
    queued_order.sort();
    assert_eq!(lows, queued_order, "{run}: within one priority, the order of queueing");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn queued_calls_run_by_priority_in_memory() {
    queued_calls_run_by_priority("aprio-memory", Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn queued_calls_run_by_priority_on_sqlite() {
    let (_dir, _url, store) = sqlite_store().await;
    queued_calls_run_by_priority("aprio-sqlite", store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn queued_calls_run_by_priority_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_aprio");
    let options = workflow::PostgresOptions::new().schema(&schema);
    let store: Arc<dyn Store> = Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap());
    queued_calls_run_by_priority("aprio-postgres", store).await;
    drop_schema(&url, &schema).await;
}

/// Per run: the `occupy` attempts in flight now, and the most ever in flight at once.
fn in_flight() -> &'static Mutex<HashMap<String, (u32, u32)>> {
    static IN_FLIGHT: OnceLock<Mutex<HashMap<String, (u32, u32)>>> = OnceLock::new();
    IN_FLIGHT.get_or_init(Mutex::default)
}

/// Counts itself in, works a little (the work, not a wait for anything), counts itself out.
#[activity]
async fn occupy(_ctx: ActivityContext, run: String) -> Result<(), ActivityError> {
    {
        let mut flights = in_flight().lock().unwrap();
        let (now, most) = flights.entry(run.clone()).or_default();
        *now += 1;
        *most = (*most).max(*now);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    in_flight().lock().unwrap().entry(run).or_default().0 -= 1;
    Ok(())
}

/// At most two run at once, across every worker.
#[workflow(concurrency = 2)]
async fn capped(ctx: WorkflowContext, run: String) -> Result<(), WorkflowError> {
    occupy::call(&ctx, run).await
}

/// Three workers on `stores` (one store object each, as three processes would have), 20 capped
/// instances queued: all complete, and never more than two ran at once (counted by the activity
/// bodies, not by the engine), while two did at some point. Without the cap all 20 would. The
/// same for 30 started by the workers themselves (leased at their creation when there is room).
async fn cap_holds_across_workers(run: &str, stores: [Arc<dyn Store>; 3]) {
    let queue = Client::new(stores[0].clone());
    let handles = futures::future::try_join_all(
        (0..20).map(|n| capped::start(&queue, run.to_owned()).id(format!("{run}-{n:02}"))),
    )
    .await
    .unwrap();
    let mut runtimes = Vec::new();
    for store in stores {
        let runtime = Runtime::builder()
            .store(store)
            .workflow(capped::Workflow)
            .activity(occupy::Activity)
            .poll_interval(Duration::from_millis(50))
            .build()
            .await
            .unwrap();
        runtimes.push(runtime);
    }
    for handle in &handles {
        handle.result_timeout(Duration::from_secs(60)).await.unwrap();
    }
    let (now, most) = in_flight().lock().unwrap().get(run).copied().unwrap_or_default();
    assert_eq!((now, most), (0, 2), "{run}: at most two at once, and two at some point");
    // Then each worker starts ten itself, all at once: a start is leased in the write that
    // creates it while the cap has room, racing the other workers' leases and claims.
    let leased = format!("{run}-leased");
    let clients: Vec<Client> = runtimes.iter().map(Runtime::client).collect();
    let starts = clients.iter().enumerate().flat_map(|(worker, client)| {
        let leased = leased.clone();
        (0..10).map(move |n| capped::start(client, leased.clone()).id(format!("{leased}-{worker}-{n:02}")))
    });
    let handles = futures::future::try_join_all(starts).await.unwrap();
    for handle in &handles {
        handle.result_timeout(Duration::from_secs(60)).await.unwrap();
    }
    let (now, most) = in_flight().lock().unwrap().get(&leased).copied().unwrap_or_default();
    assert_eq!((now, most), (0, 2), "{leased}: at most two at once, and two at some point");
    for runtime in runtimes {
        runtime.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test]
async fn a_workflow_cap_holds_across_workers_in_memory() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    cap_holds_across_workers("cap-memory", [store.clone(), store.clone(), store]).await;
}

#[tokio::test]
async fn a_workflow_cap_holds_across_workers_on_sqlite() {
    let (_dir, url, first) = sqlite_store().await;
    let second: Arc<dyn Store> = Arc::new(workflow::SqliteStore::open(&url).await.unwrap());
    let third: Arc<dyn Store> = Arc::new(workflow::SqliteStore::open(&url).await.unwrap());
    cap_holds_across_workers("cap-sqlite", [first, second, third]).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_workflow_cap_holds_across_workers_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_cap");
    let mut stores = Vec::new();
    for _ in 0..3 {
        let options = workflow::PostgresOptions::new().schema(&schema);
        stores.push(Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap()) as Arc<dyn Store>);
    }
    let stores: [Arc<dyn Store>; 3] = stores.try_into().unwrap_or_else(|_| unreachable!());
    cap_holds_across_workers("cap-postgres", stores).await;
    drop_schema(&url, &schema).await;
}

/// One unit of work for the capped activities: which test run, which tenant, which item.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Job {
    run: String,
    tenant: String,
    n: u32,
}

/// Per run: what each capped activity body saw, counted by the bodies themselves (not the
/// engine). `now`/`most` by tenant ("" for all), and the tenants in the order their items started.
#[derive(Default, Clone)]
struct Flights {
    now: HashMap<String, u32>,
    most: HashMap<String, u32>,
    order: Vec<String>,
}

fn flights() -> &'static Mutex<HashMap<String, Flights>> {
    static FLIGHTS: OnceLock<Mutex<HashMap<String, Flights>>> = OnceLock::new();
    FLIGHTS.get_or_init(Mutex::default)
}

/// Counts a job in (overall and for its tenant), works a little, counts it out.
async fn fly(job: &Job) {
    {
        let mut all = flights().lock().unwrap();
        let run = all.entry(job.run.clone()).or_default();
        run.order.push(job.tenant.clone());
        for key in [String::new(), job.tenant.clone()] {
            let now = run.now.entry(key.clone()).or_default();
            *now += 1;
            let now = *now;
            let most = run.most.entry(key).or_default();
            *most = (*most).max(now);
        }
    }
    tokio::time::sleep(Duration::from_millis(15)).await;
    let mut all = flights().lock().unwrap();
    let run = all.entry(job.run.clone()).or_default();
    for key in [String::new(), job.tenant.clone()] {
        *run.now.entry(key).or_default() -= 1;
    }
}

/// At most three attempts at once, across every worker.
#[activity(concurrency = 3)]
async fn metered(_ctx: ActivityContext, job: Job) -> Result<u32, ActivityError> {
    fly(&job).await;
    Ok(job.n)
}

/// The key of a job: its tenant.
fn tenant_of(job: &Job) -> String {
    job.tenant.clone()
}

/// At most two attempts of one tenant at once, across every worker (a path as the key).
#[activity(concurrency(limit = 2, key = tenant_of))]
async fn per_tenant(_ctx: ActivityContext, job: Job) -> Result<u32, ActivityError> {
    fly(&job).await;
    Ok(job.n)
}

/// The same with the key written as a closure.
#[activity(concurrency(key = |job: &Job| job.tenant.clone(), limit = 2))]
async fn per_tenant_closure(_ctx: ActivityContext, job: Job) -> Result<u32, ActivityError> {
    fly(&job).await;
    Ok(job.n)
}

/// Runs `jobs` through the activity `which` names, all at once; returns the sum of their outputs.
#[workflow]
async fn metered_batch(ctx: WorkflowContext, (which, jobs): (String, Vec<Job>)) -> Result<u32, WorkflowError> {
    let outputs = match which.as_str() {
        "global" => metered::fan_out(&ctx, jobs).await?,
        "tenant" => per_tenant::fan_out(&ctx, jobs).await?,
        _ => per_tenant_closure::fan_out(&ctx, jobs).await?,
    };
    Ok(outputs.into_iter().sum())
}

fn jobs(run: &str, tenant: &str, count: u32) -> Vec<Job> {
    (0..count).map(|n| Job { run: run.to_owned(), tenant: tenant.to_owned(), n }).collect()
}

/// Three workers on `stores` (one store object each, as three processes would have) run one
/// instance whose fan-out calls a capped activity: with the global cap (`which` = "global"), 30
/// calls never run more than three at once and do at some point; with a cap of two per tenant, a
/// tenant with 30 calls queued first and one with 5 queued after never run more than two each,
/// and the small tenant is done long before the big one (it is not queued behind its backlog).
async fn activity_cap_holds_across_workers(run: &str, which: &str, stores: [Arc<dyn Store>; 3]) {
    let mut runtimes = Vec::new();
    for store in stores {
        let runtime = Runtime::builder()
            .store(store)
            .workflow(metered_batch::Workflow)
            .activity(metered::Activity)
            .activity(per_tenant::Activity)
            .activity(per_tenant_closure::Activity)
            .poll_interval(Duration::from_millis(50))
            .build()
            .await
            .unwrap();
        runtimes.push(runtime);
    }
    let mut all = jobs(run, "big", 30);
    if which != "global" {
        all.extend(jobs(run, "small", 5));
    }
    let expected: u32 = all.iter().map(|job| job.n).sum();
    let handle = metered_batch::start(&runtimes[0].client(), (which.to_owned(), all)).id(run).await.unwrap();
    assert_eq!(handle.result_timeout(Duration::from_secs(60)).await.unwrap(), expected);
    let seen = flights().lock().unwrap().get(run).cloned().unwrap_or_default();
    assert!(seen.now.values().all(|now| *now == 0), "{run}: all ended");
    if which == "global" {
        assert_eq!(seen.most.get(""), Some(&3), "{run}: at most three at once, and three at some point");
    } else {
        for tenant in ["big", "small"] {
            assert_eq!(
                seen.most.get(tenant),
                Some(&2),
                "{run}: at most two of {tenant} at once, and two at some point"
            );
        }
        // FIFO under one global cap would start all 30 of "big" first (index 34 for the last
        // "small"); per key, "small" runs beside it from the start.
        let last_small = seen.order.iter().rposition(|tenant| tenant == "small").unwrap();
        assert!(last_small < 20, "{run}: the small tenant waited behind the big one: {:?}", seen.order);
    }
    for runtime in runtimes {
        runtime.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test]
async fn activity_caps_hold_across_workers_in_memory() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    for which in ["global", "tenant", "closure"] {
        let stores = [store.clone(), store.clone(), store.clone()];
        activity_cap_holds_across_workers(&format!("acap-memory-{which}"), which, stores).await;
    }
}

#[tokio::test]
async fn activity_caps_hold_across_workers_on_sqlite() {
    let (_dir, url, first) = sqlite_store().await;
    let second: Arc<dyn Store> = Arc::new(workflow::SqliteStore::open(&url).await.unwrap());
    let third: Arc<dyn Store> = Arc::new(workflow::SqliteStore::open(&url).await.unwrap());
    for which in ["global", "tenant"] {
        let stores = [first.clone(), second.clone(), third.clone()];
        activity_cap_holds_across_workers(&format!("acap-sqlite-{which}"), which, stores).await;
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn activity_caps_hold_across_workers_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_acap");
    let mut stores = Vec::new();
    for _ in 0..3 {
        let options = workflow::PostgresOptions::new().schema(&schema);
        stores.push(Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap()) as Arc<dyn Store>);
    }
    for which in ["global", "tenant"] {
        let stores: [Arc<dyn Store>; 3] = [stores[0].clone(), stores[1].clone(), stores[2].clone()];
        activity_cap_holds_across_workers(&format!("acap-postgres-{which}"), which, stores).await;
    }
    drop_schema(&url, &schema).await;
}

/// Counts its job in and out (see [`fly`]): the work of one `tenant_job` instance.
#[activity]
async fn tenant_work(_ctx: ActivityContext, job: Job) -> Result<u32, ActivityError> {
    fly(&job).await;
    Ok(job.n)
}

/// At most two instances of one tenant run at once, across every worker.
#[workflow(concurrency(limit = 2, key = tenant_of))]
async fn tenant_job(ctx: WorkflowContext, job: Job) -> Result<u32, WorkflowError> {
    tenant_work::call(&ctx, job).await
}

/// Three workers on `stores` (one store object each, as three processes would have). 30
/// instances of tenant "big" are started first, then 5 of tenant "small", through a client
/// without a runtime (typed starts compute the key) and one untyped start through a runtime's
/// client (its registry computes it): no tenant ever has more than two running, each has two at
/// some point, and "small" is not queued behind "big"'s backlog. A Pending instance says what it
/// waits behind.
async fn workflow_key_cap_holds_across_workers(run: &str, stores: [Arc<dyn Store>; 3]) {
    let queue = Client::new(stores[0].clone());
    let mut all = jobs(run, "big", 30);
    all.extend(jobs(run, "small", 4));
    let mut handles = Vec::new();
    for job in all {
        handles.push(tenant_job::start(&queue, job).await.unwrap().instance_id().to_owned());
    }
    let mut runtimes = Vec::new();
    for store in stores {
        let runtime = Runtime::builder()
            .store(store)
            .workflow(tenant_job::Workflow)
            .activity(tenant_work::Activity)
            .poll_interval(Duration::from_millis(50))
            .build()
            .await
            .unwrap();
        runtimes.push(runtime);
    }
    let client = runtimes[0].client();
    let untyped = serde_json::json!({ "run": run, "tenant": "small", "n": 4 }).to_string();
    let last = client.start_untyped("tenant_job", untyped).await.unwrap();
    let status = client.status(last.instance_id()).await.unwrap();
    assert_eq!(status.concurrency_key, "small", "{run}: the registry computed the key of an untyped start");
    if status.status == RuntimeStatus::Pending {
        assert_eq!(status.limits.as_deref(), Some("at most 2 running at once per key"));
    }
    handles.push(last.instance_id().to_owned());
    for id in &handles {
        let handle = Handle::<u32>::new(client.clone(), id.as_str());
        handle.result_timeout(Duration::from_secs(60)).await.unwrap();
    }
    let seen = flights().lock().unwrap().get(run).cloned().unwrap_or_default();
    assert!(seen.now.values().all(|now| *now == 0), "{run}: all ended");
    for tenant in ["big", "small"] {
        assert_eq!(seen.most.get(tenant), Some(&2), "{run}: at most two of {tenant} at once, and two at some point");
    }
    // One cap over the workflow would run all 30 of "big" first (index 34 for the last
    // "small"); per key, "small" runs beside it from the start.
    let last_small = seen.order.iter().rposition(|tenant| tenant == "small").unwrap();
    assert!(last_small < 20, "{run}: the small tenant waited behind the big one: {:?}", seen.order);
    // Then each worker starts four of each tenant itself, all at once: leased at their creation
    // while their key has room, racing the other workers' leases and claims.
    let leased = format!("{run}-leased");
    let clients: Vec<Client> = runtimes.iter().map(Runtime::client).collect();
    let mine = |worker: usize| {
        let mut batch = jobs(&leased, "big", 4);
        batch.extend(jobs(&leased, "small", 4));
        batch.into_iter().map(move |job| Job { n: job.n + 10 * worker as u32, ..job })
    };
    let starts = clients
        .iter()
        .enumerate()
        .flat_map(|(worker, client)| mine(worker).map(move |job| tenant_job::start(client, job)));
    let handles = futures::future::try_join_all(starts).await.unwrap();
    for handle in &handles {
        handle.result_timeout(Duration::from_secs(60)).await.unwrap();
    }
    let seen = flights().lock().unwrap().get(&leased).cloned().unwrap_or_default();
    assert!(seen.now.values().all(|now| *now == 0), "{leased}: all ended");
    for tenant in ["big", "small"] {
        assert_eq!(seen.most.get(tenant), Some(&2), "{leased}: at most two of {tenant} at once, and two at some point");
    }
    for runtime in runtimes {
        runtime.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test]
async fn a_workflow_key_cap_holds_across_workers_in_memory() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    workflow_key_cap_holds_across_workers("wkey-memory", [store.clone(), store.clone(), store]).await;
}

#[tokio::test]
async fn a_workflow_key_cap_holds_across_workers_on_sqlite() {
    let (_dir, url, first) = sqlite_store().await;
    let second: Arc<dyn Store> = Arc::new(workflow::SqliteStore::open(&url).await.unwrap());
    let third: Arc<dyn Store> = Arc::new(workflow::SqliteStore::open(&url).await.unwrap());
    workflow_key_cap_holds_across_workers("wkey-sqlite", [first, second, third]).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_workflow_key_cap_holds_across_workers_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_wkey");
    let mut stores = Vec::new();
    for _ in 0..3 {
        let options = workflow::PostgresOptions::new().schema(&schema);
        stores.push(Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap()) as Arc<dyn Store>);
    }
    let stores: [Arc<dyn Store>; 3] = stores.try_into().unwrap_or_else(|_| unreachable!());
    workflow_key_cap_holds_across_workers("wkey-postgres", stores).await;
    drop_schema(&url, &schema).await;
}

/// Per run: the virtual clock the run's runtime uses, and the virtual times `paced` started at.
type PacedRuns = Mutex<HashMap<String, (VirtualClock, Vec<i64>)>>;

fn paced_runs() -> &'static PacedRuns {
    static PACED: OnceLock<PacedRuns> = OnceLock::new();
    PACED.get_or_init(Mutex::default)
}

/// At most five starts in any second, across every worker: records its start on its run's clock.
#[activity(rate = "5/1s")]
async fn paced(_ctx: ActivityContext, (run, n): (String, u32)) -> Result<u32, ActivityError> {
    let mut runs = paced_runs().lock().unwrap();
    let (clock, starts) = runs.get_mut(&run).ok_or_else(|| ActivityError::non_retryable("unknown run"))?;
    starts.push(clock.now_ms());
    Ok(n)
}

#[workflow]
async fn paced_batch(ctx: WorkflowContext, (run, count): (String, u32)) -> Result<u32, WorkflowError> {
    let outputs = paced::fan_out(&ctx, (0..count).map(|n| (run.clone(), n))).await?;
    Ok(outputs.into_iter().sum())
}

/// A rate limit follows the runtime's clock: 12 calls at 5 a second on a virtual clock start 5 at
/// once, then 5 more only once the clock has moved a whole second, then the last 2; the test takes
/// milliseconds of real time, not seconds.
#[tokio::test]
async fn a_rate_limit_follows_the_virtual_clock() {
    let run = "rate-virtual".to_owned();
    let clock = VirtualClock::new(1_000_000);
    paced_runs().lock().unwrap().insert(run.clone(), (clock.clone(), Vec::new()));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let runtime = Runtime::builder()
        .store(store)
        .clock(clock.clone())
        .poll_interval(Duration::from_millis(10))
        .workflow(paced_batch::Workflow)
        .activity(paced::Activity)
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let handle = paced_batch::start(&client, (run.clone(), 12)).id(&run).await.unwrap();
    let started = |run: &str| paced_runs().lock().unwrap().get(run).map(|(_, s)| s.len()).unwrap_or(0);
    for (second, expected) in [(0, 5), (1, 10), (2, 12)] {
        let run = run.as_str();
        wait_for_value(&format!("{expected} starts by virtual second {second}"), || async move {
            (started(run) >= expected).then_some(())
        })
        .await;
        if second == 0 {
            // The other 7 wait, and say until when: a period after the first 5 started.
            let queued = client.queued_activities(run).await.unwrap();
            let waiting: Vec<_> = queued.iter().filter(|call| call.state == QueuedState::Waiting).collect();
            assert_eq!(waiting.len(), 7, "{queued:?}");
            assert!(waiting.iter().all(|call| call.next_start_at == Some(1_001_000)), "{waiting:?}");
        }
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(handle.result_timeout(Duration::from_secs(30)).await.unwrap(), (0..12).sum::<u32>());
    let starts = paced_runs().lock().unwrap().get(&run).map(|(_, s)| s.clone()).unwrap();
    let mut per_second: Vec<(i64, usize)> = Vec::new();
    for at in starts {
        match per_second.last_mut() {
            Some((second, n)) if *second == at => *n += 1,
            _ => per_second.push((at, 1)),
        }
    }
    assert_eq!(per_second, [(1_000_000, 5), (1_001_000, 5), (1_002_000, 2)], "5 a second, each a period apart");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Records the virtual time its workflow began at (the clock stands still between the test's
/// moves, so this is the time of the workflow's start).
#[activity]
async fn note_paced_start(_ctx: ActivityContext, (run, n): (String, u32)) -> Result<u32, ActivityError> {
    let mut runs = paced_runs().lock().unwrap();
    let (clock, starts) = runs.get_mut(&run).ok_or_else(|| ActivityError::non_retryable("unknown run"))?;
    starts.push(clock.now_ms());
    Ok(n)
}

/// At most five instances start in any second, across every worker.
#[workflow(rate = "5/1s")]
async fn paced_start(ctx: WorkflowContext, (run, n): (String, u32)) -> Result<u32, WorkflowError> {
    note_paced_start::call(&ctx, (run, n)).await
}

/// The starts of `run` per virtual time, in order.
fn starts_per_time(run: &str) -> Vec<(i64, usize)> {
    let starts = paced_runs().lock().unwrap().get(run).map(|(_, s)| s.clone()).unwrap_or_default();
    let mut per_time: Vec<(i64, usize)> = Vec::new();
    for at in starts {
        match per_time.last_mut() {
            Some((time, n)) if *time == at => *n += 1,
            _ => per_time.push((at, 1)),
        }
    }
    per_time
}

/// A workflow's rate limit, on the runtime's clock: 12 instances started at once on a virtual
/// clock start 5, then 5 more only once the clock has moved a whole second, then the last 2.
async fn workflow_rate_follows_the_virtual_clock(run: &str, store: Arc<dyn Store>) {
    let clock = VirtualClock::new(2_000_000);
    paced_runs().lock().unwrap().insert(run.to_owned(), (clock.clone(), Vec::new()));
    let runtime = Runtime::builder()
        .store(store)
        .clock(clock.clone())
        .poll_interval(Duration::from_millis(10))
        .workflow(paced_start::Workflow)
        .activity(note_paced_start::Activity)
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let mut handles = Vec::new();
    for n in 0..12 {
        handles.push(paced_start::start(&client, (run.to_owned(), n)).id(format!("{run}-{n:02}")).await.unwrap());
    }
    let started = |run: &str| paced_runs().lock().unwrap().get(run).map(|(_, s)| s.len()).unwrap_or(0);
    for (second, expected) in [(0, 5), (1, 10), (2, 12)] {
        wait_for_value(&format!("{run}: {expected} starts by virtual second {second}"), || async move {
            (started(run) >= expected).then_some(())
        })
        .await;
        assert_eq!(started(run), expected, "{run}: no more than the rate by virtual second {second}");
        if second == 0 {
            // The last one waits to start, and its status says behind what.
            let waiting = client.status(&format!("{run}-11")).await.unwrap();
            assert_eq!(waiting.status, RuntimeStatus::Pending, "{run}");
            assert_eq!(waiting.limits.as_deref(), Some("at most 5 starts per 1000 ms in all"), "{run}");
            assert_eq!(waiting.next_start_at, Some(2_001_000), "{run}: the window has room again a period on");
        }
        clock.advance(Duration::from_secs(1));
    }
    for handle in handles {
        handle.result_timeout(Duration::from_secs(30)).await.unwrap();
    }
    assert_eq!(starts_per_time(run), [(2_000_000, 5), (2_001_000, 5), (2_002_000, 2)], "{run}: 5 a second");
    assert_eq!(client.status(&format!("{run}-11")).await.unwrap().limits, None, "{run}: no longer waits");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_workflow_rate_follows_the_virtual_clock_in_memory() {
    workflow_rate_follows_the_virtual_clock("wrate-memory", Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_workflow_rate_follows_the_virtual_clock_on_sqlite() {
    let (_dir, _url, store) = sqlite_store().await;
    workflow_rate_follows_the_virtual_clock("wrate-sqlite", store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_workflow_rate_follows_the_virtual_clock_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_wrate");
    let options = workflow::PostgresOptions::new().schema(&schema);
    let store: Arc<dyn Store> = Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap());
    workflow_rate_follows_the_virtual_clock("wrate-postgres", store).await;
    drop_schema(&url, &schema).await;
}

/// No cap across workers: only the runtime's own limit bounds it.
#[activity]
async fn held_back(_ctx: ActivityContext, job: Job) -> Result<u32, ActivityError> {
    fly(&job).await;
    Ok(job.n)
}

#[workflow]
async fn held_back_batch(ctx: WorkflowContext, jobs: Vec<Job>) -> Result<u32, WorkflowError> {
    Ok(held_back::fan_out(&ctx, jobs).await?.into_iter().sum())
}

/// A worker's own limit of one activity (`max_concurrent_activity`): 12 calls fanned out at once
/// run at most two at a time, and two at some point, whether the worker runs its attempts itself
/// (local dispatch) or claims them from the task queue (shared); a limit of 0 does not build.
#[tokio::test]
async fn a_workers_own_activity_limit_holds() {
    for (run, dispatch) in [("own-local", ActivityDispatch::Local), ("own-shared", ActivityDispatch::Shared)] {
        let runtime = Runtime::builder()
            .store(MemoryStore::new())
            .workflow(held_back_batch::Workflow)
            .activity(held_back::Activity)
            .activity_dispatch(dispatch)
            .max_concurrent_activity::<held_back::Activity>(2)
            .poll_interval(Duration::from_millis(20))
            .build()
            .await
            .unwrap();
        let handle = held_back_batch::start(&runtime.client(), jobs(run, "any", 12)).await.unwrap();
        assert_eq!(handle.result_timeout(Duration::from_secs(30)).await.unwrap(), (0..12).sum::<u32>());
        let seen = flights().lock().unwrap().get(run).cloned().unwrap_or_default();
        assert_eq!(seen.most.get(""), Some(&2), "{run}: at most two at once, and two at some point");
        runtime.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    let refused = Runtime::builder()
        .store(MemoryStore::new())
        .activity(held_back::Activity)
        .max_concurrent_activity::<held_back::Activity>(0)
        .build()
        .await;
    assert!(matches!(refused, Err(Error::Config(_))), "a limit of 0");
}

/// Per run: the debounced runs, as (input, virtual time the run's body began).
type DebouncedRuns = Mutex<HashMap<String, (VirtualClock, Vec<(u32, i64)>)>>;

fn debounced_runs() -> &'static DebouncedRuns {
    static RUNS: OnceLock<DebouncedRuns> = OnceLock::new();
    RUNS.get_or_init(Mutex::default)
}

#[activity]
async fn note_debounced(_ctx: ActivityContext, (run, input): (String, u32)) -> Result<u32, ActivityError> {
    let mut runs = debounced_runs().lock().unwrap();
    let (clock, seen) = runs.get_mut(&run).ok_or_else(|| ActivityError::non_retryable("unknown run"))?;
    seen.push((input, clock.now_ms()));
    Ok(input)
}

#[workflow]
async fn debounced(ctx: WorkflowContext, (run, input): (String, u32)) -> Result<u32, WorkflowError> {
    note_debounced::call(&ctx, (run, input)).await
}

async fn debounce_runtime(store: Arc<dyn Store>, clock: &VirtualClock) -> Runtime {
    Runtime::builder()
        .store(store)
        .clock(clock.clone())
        .poll_interval(Duration::from_millis(10))
        .workflow(debounced::Workflow)
        .activity(note_debounced::Activity)
        .build()
        .await
        .unwrap()
}

/// 100 starts of one key, 10 virtual ms apart (well within the 5 s delay): one instance, which
/// runs once, 5 s after the last start, with the last input; then a steady stream (a start every
/// 500 ms, delay 1 s) is cut off by a maximum wait of 3 s: each run begins within 3 s (and a
/// step) of its first start, and 10 s of stream make several runs, not one at the end. On a
/// virtual clock: milliseconds of real time.
async fn debounce_collapses_and_is_cut_off(run: &str, store: Arc<dyn Store>) {
    let clock = VirtualClock::new(5_000_000);
    debounced_runs().lock().unwrap().insert(run.to_owned(), (clock.clone(), Vec::new()));
    let runtime = debounce_runtime(store.clone(), &clock).await;
    let client = runtime.client();
    let seen = || debounced_runs().lock().unwrap().get(run).map(|(_, seen)| seen.clone()).unwrap_or_default();

    let mut ids = std::collections::HashSet::new();
    for input in 0..100 {
        let start = debounced::start(&client, (run.to_owned(), input)).debounce("burst", Duration::from_secs(5));
        ids.insert(start.await.unwrap().instance_id().to_owned());
        clock.advance(Duration::from_millis(10));
    }
    assert_eq!(ids.len(), 1, "{run}: 100 starts within the delay are one instance");
    let id = ids.into_iter().next().unwrap();
    let waiting = store.instance(&id).await.unwrap().unwrap();
    let last_start = 5_000_000 + 99 * 10;
    assert_eq!(waiting.wake_at, Some(last_start + 5_000), "{run}: due 5 s after the last start");
    assert_eq!(waiting.status, RuntimeStatus::Pending);
    clock.advance(Duration::from_secs(5));
    let output: u32 = client.result(&id, Some(Duration::from_secs(30))).await.unwrap();
    assert_eq!(output, 99, "{run}: the last input");
    assert_eq!(seen(), [(99, 5_000_000 + 100 * 10 + 5_000)], "{run}: one run, once the clock passed its due time");

    // The stream: created_at of each instance, to check the maximum wait against.
    let mut first_start: HashMap<String, i64> = HashMap::new();
    let stream_from = clock.now_ms();
    let mut latest = String::new();
    // 20 starts 500 ms apart, then 3 s more for the last instance to fall due.
    for step in 0..26_u32 {
        if step < 20 {
            let start = debounced::start(&client, (run.to_owned(), 100 + step))
                .debounce("stream", Duration::from_secs(1))
                .max_wait(Duration::from_secs(3));
            latest = start.await.unwrap().instance_id().to_owned();
            first_start.entry(latest.clone()).or_insert(clock.now_ms());
        }
        clock.advance(Duration::from_millis(500));
        // In real time a due instance is claimed and runs within a poll; the virtual clock
        // jumps, so wait for that run to end before the clock moves on or the next start comes
        // (which would otherwise still find the instance waiting and give it its input).
        let (store, now, id) = (&store, clock.now_ms(), latest.as_str());
        wait_for_value(&format!("{run}: {id} run once due"), || async move {
            let record = store.instance(id).await.unwrap().unwrap();
            let not_due = record.status == RuntimeStatus::Pending && record.wake_at.is_some_and(|due| due > now);
            (not_due || record.status == RuntimeStatus::Completed).then_some(())
        })
        .await;
    }
    for id in first_start.keys() {
        let _: u32 = client.result(id, Some(Duration::from_secs(30))).await.unwrap();
    }
    let runs: Vec<(u32, i64)> = seen().into_iter().filter(|(input, _)| *input >= 100).collect();
    assert!(first_start.len() >= 3, "{run}: 10 s of stream ran {} times", first_start.len());
    assert_eq!(runs.len(), first_start.len(), "{run}: each instance ran once");
    for (input, began) in &runs {
        assert!(*began >= stream_from, "{run}");
        let waited = began - first_start.values().filter(|at| **at <= *began).max().unwrap();
        assert!(waited <= 3_500, "{run}: input {input} began {waited} ms after its first start");
    }
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn debounce_collapses_starts_and_max_wait_cuts_a_stream_in_memory() {
    debounce_collapses_and_is_cut_off("debounce-memory", Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn debounce_collapses_starts_and_max_wait_cuts_a_stream_on_sqlite() {
    let (_dir, _url, store) = sqlite_store().await;
    debounce_collapses_and_is_cut_off("debounce-sqlite", store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn debounce_collapses_starts_and_max_wait_cuts_a_stream_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_debounce");
    let options = workflow::PostgresOptions::new().schema(&schema);
    let store: Arc<dyn Store> = Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap());
    debounce_collapses_and_is_cut_off("debounce-postgres", store).await;
    drop_schema(&url, &schema).await;
}

/// Opens when the test says: the `gated` attempts wait on it.
fn gate() -> &'static tokio::sync::Semaphore {
    static GATE: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    GATE.get_or_init(|| tokio::sync::Semaphore::new(0))
}

/// One at a time across every worker; each waits for the test to open the gate.
#[activity(concurrency = 1)]
async fn gated(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    gate().acquire().await.map_err(|_| ActivityError::non_retryable("gate closed"))?.forget();
    Ok(n)
}

#[workflow]
async fn gated_batch(ctx: WorkflowContext, count: u32) -> Result<u32, WorkflowError> {
    Ok(gated::fan_out(&ctx, 0..count).await?.into_iter().sum())
}

/// Status says why calls wait: of three calls of an activity capped at 1, one runs in this
/// worker's slot (not in the queue, as an uncapped call runs) and two wait behind "at most 1 at
/// once in all"; the next runs from the queue (shown running on this worker, until its lease);
/// once they are through, nothing is queued. A debounced start shows as Pending with its due time.
#[tokio::test]
async fn status_shows_what_waits_and_why() {
    let runtime = Runtime::builder()
        .store(MemoryStore::new())
        .workflow(gated_batch::Workflow)
        .activity(gated::Activity)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let handle = gated_batch::start(&client, 3).await.unwrap();
    let id = handle.instance_id().to_owned();
    let queued_now = |running: usize, waiting: usize| {
        let (client, id) = (client.clone(), id.clone());
        async move {
            let queued = client.queued_activities(&id).await.unwrap();
            let running_now = queued.iter().filter(|q| matches!(q.state, QueuedState::Running { .. })).count();
            (running_now == running && queued.len() == running + waiting).then_some(queued)
        }
    };
    let queued = wait_for_value("two calls queued, one running in a slot", || queued_now(0, 2)).await;
    gate().add_permits(1);
    let next = wait_for_value("one call running from the queue, one queued", || queued_now(1, 1)).await;
    for call in queued.iter().chain(&next) {
        assert_eq!(call.activity, "gated");
        assert_eq!(call.limits.as_deref(), Some("at most 1 at once in all"));
        match &call.state {
            QueuedState::Running { worker, .. } => assert!(worker.starts_with(runtime.worker_id()), "{worker}"),
            state => assert_eq!(*state, QueuedState::Waiting),
        }
    }
    gate().add_permits(2);
    assert_eq!(handle.result_timeout(Duration::from_secs(30)).await.unwrap(), 3);
    assert!(client.queued_activities(&id).await.unwrap().is_empty(), "all journaled");
    assert!(matches!(client.queued_activities("nobody").await, Err(Error::InstanceNotFound(_))));

    let before = workflow::Clock::now_ms(&workflow::SystemClock);
    let later = gated_batch::start(&client, 0).debounce("status", Duration::from_secs(60)).await.unwrap();
    let status = later.status().await.unwrap();
    assert_eq!(status.status, RuntimeStatus::Pending);
    let due = status.wake_at.expect("a due time");
    assert!((before + 60_000..=before + 70_000).contains(&due), "due in a minute: {due} vs {before}");
    let unknown =
        debounced::start(&client, ("unregistered".to_owned(), 1)).debounce("status", Duration::from_secs(1)).await;
    assert!(matches!(unknown, Err(Error::UnknownWorkflow(_))), "checked against the registry");
    let second = Duration::from_secs(1);
    let bad = [
        gated_batch::start(&client, 0).max_wait(second).await.err(),
        gated_batch::start(&client, 0).debounce("", second).await.err(),
        gated_batch::start(&client, 0).debounce("k", Duration::ZERO).await.err(),
        gated_batch::start(&client, 0).debounce("k", second * 2).max_wait(second).await.err(),
        gated_batch::start(&client, 0).debounce("k", second).id("x").await.err(),
    ];
    for error in bad {
        assert!(matches!(error, Some(Error::InvalidArgument(_))), "{error:?}");
    }
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A run's `slotted` attempts: how many run now, the most that ever ran at once, and the gate
/// they wait on.
type SlottedRun = (u32, u32, Arc<tokio::sync::Semaphore>);

/// Per run, its `slotted` attempts.
fn slotted_runs() -> &'static Mutex<HashMap<String, SlottedRun>> {
    static RUNS: OnceLock<Mutex<HashMap<String, SlottedRun>>> = OnceLock::new();
    RUNS.get_or_init(Mutex::default)
}

/// At most three at once across every worker; counts itself in and out, and waits for the gate.
#[activity(concurrency = 3)]
async fn slotted(_ctx: ActivityContext, id: String) -> Result<(), ActivityError> {
    let run = id.split_once('/').map_or(id.as_str(), |(run, _)| run).to_owned();
    let gate = {
        let mut runs = slotted_runs().lock().unwrap();
        let (now, most, gate) = runs.get_mut(&run).expect("the run's gate");
        *now += 1;
        *most = (*most).max(*now);
        gate.clone()
    };
    gate.acquire().await.map_err(|_| ActivityError::non_retryable("gate closed"))?.forget();
    slotted_runs().lock().unwrap().get_mut(&run).expect("the run").0 -= 1;
    Ok(())
}

#[workflow]
async fn calls_slotted(ctx: WorkflowContext, id: String) -> Result<(), WorkflowError> {
    slotted::call(&ctx, id).await
}

/// Capped calls run in the worker's slots while the cap has room: five calls of an activity
/// capped at three run three at once with no task row (the store counts the three slots as
/// running) and queue the other two as tasks; all five finish, never more than three at once;
/// then the slots go back to the store (nothing counted as running).
async fn capped_calls_run_in_slots(run: &str, store: Arc<dyn Store>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    slotted_runs().lock().unwrap().insert(run.to_owned(), (0, 0, gate.clone()));
    let runtime = Runtime::builder()
        .store(store.clone())
        .workflow(calls_slotted::Workflow)
        .activity(slotted::Activity)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let mut handles = Vec::new();
    for n in 0..5 {
        handles.push(calls_slotted::start(&client, format!("{run}/{n}")).await.unwrap());
    }
    let depth = || async {
        let queues = store.queue_depths(Clock::now_ms(&workflow::SystemClock)).await.unwrap();
        queues.into_iter().find(|q| q.name == "slotted").map(|q| (q.running, q.waiting))
    };
    wait_for_value(&format!("{run}: three running, two queued"), || async {
        let running = slotted_runs().lock().unwrap()[run].0;
        (running == 3 && depth().await == Some((3, 2))).then_some(())
    })
    .await;
    let mut queued = 0;
    for handle in &handles {
        queued += store.tasks_of(handle.instance_id()).await.unwrap().len();
    }
    assert_eq!(queued, 2, "{run}: the three in slots have no task row");
    gate.add_permits(5);
    for handle in &handles {
        handle.result_timeout(Duration::from_secs(30)).await.unwrap();
    }
    assert_eq!(slotted_runs().lock().unwrap()[run].1, 3, "{run}: never more than three at once");
    wait_for_value(&format!("{run}: the slots given back"), || async { depth().await.is_none().then_some(()) }).await;
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn capped_calls_run_in_slots_in_memory() {
    capped_calls_run_in_slots("slots-memory", Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn capped_calls_run_in_slots_on_sqlite() {
    let (_dir, _url, store) = sqlite_store().await;
    capped_calls_run_in_slots("slots-sqlite", store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn capped_calls_run_in_slots_on_postgres() {
    use crate::support::{drop_schema, fresh_schema, postgres_url};
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("wf_slots");
    let options = workflow::PostgresOptions::new().schema(&schema);
    let store = Arc::new(workflow::PostgresStore::open_with(&url, options).await.unwrap()) as Arc<dyn Store>;
    capped_calls_run_in_slots("slots-postgres", store).await;
    drop_schema(&url, &schema).await;
}
