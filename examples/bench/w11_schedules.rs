//! W11 schedules at scale: 10,000 schedules on one fresh store, each firing every second, for 30 s
//! of real time, fired by one runtime (which registers no workflow, so the instances wait
//! unclaimed: the figure is the scheduler's; the schedules allow overlapping runs). Ticks started
//! per second, and the lag from each tick's due time to its instance's creation (p50, p99;
//! negative when the tick was fired ahead, its instance due at the tick). Then the same run
//! end to end at a rate this machine can run: 1,000 schedules every second for 10 s on a runtime
//! that runs their workflow, and the lag from each tick to its run's first step (p50, p99). Then
//! the idle cost: the CPU the process spends over 10 s while 10,000 schedules are not due
//! (yearly), beside a runtime with none.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use workflow::prelude::*;
use workflow::store::Store;
use workflow::{ListFilter, Overlap, Schedule};

use super::w10_growth::fresh_store;
use super::{BenchResult, ScaleRow};

const SCHEDULES: usize = 10_000;
const SECONDS: u64 = 30;
/// The end-to-end run: schedules, and seconds.
const RUN_SCHEDULES: usize = 1_000;
const RUN_SECONDS: u64 = 10;

/// When each run's first step began (ms), by instance id.
static FIRST_STEPS: Mutex<Option<HashMap<String, i64>>> = Mutex::new(None);

#[activity]
async fn w11_mark(ctx: ActivityContext, _: ()) -> Result<(), ActivityError> {
    let now = workflow::Clock::now_ms(&workflow::SystemClock);
    let mut marks = FIRST_STEPS.lock().map_err(|_| ActivityError::non_retryable("poisoned"))?;
    marks.get_or_insert_with(HashMap::new).entry(ctx.instance_id().to_owned()).or_insert(now);
    Ok(())
}

#[workflow]
async fn w11_run(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    w11_mark::call(&ctx, ()).await?;
    Ok(())
}

/// CPU time (user + system) this process has used, in ms.
fn cpu_ms() -> BenchResult<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat.rsplit_once(')').ok_or("no ) in /proc/self/stat")?.1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks * 1000.0 / 100.0)
}

async fn create(store: &Arc<dyn Store>, cron: &str, workflow: &str, count: usize) -> BenchResult<()> {
    let client = Client::new(store.clone());
    for chunk in (0..count).collect::<Vec<_>>().chunks(200) {
        let creates = chunk.iter().map(|n| {
            let schedule = Schedule::untyped(format!("w11-{n:05}"), workflow, cron, "null");
            // Nothing runs the instances: under the default overlap policy every tick after the
            // first would be skipped as overlapping.
            client.create_schedule(schedule.overlap(Overlap::AllowAll))
        });
        futures::future::try_join_all(creates).await?;
    }
    Ok(())
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs W11 on a fresh store of the kind named `name` (SQLite and PostgreSQL).
pub(super) async fn measure(name: &str, dir: &Path) -> BenchResult<Vec<ScaleRow>> {
    if !matches!(name, "sqlite" | "postgres") {
        return Ok(Vec::new());
    }
    let Some((store, cleanup)) = fresh_store(name, dir, "w11").await? else { return Ok(Vec::new()) };
    let result = firing(name, store.clone()).await;
    cleanup.await;
    let mut rows = result?;
    let Some((store, cleanup)) = fresh_store(name, dir, "w11_run").await? else { return Ok(rows) };
    let run = running(name, store).await;
    cleanup.await;
    rows.push(run?);
    let Some((store, cleanup)) = fresh_store(name, dir, "w11_idle").await? else { return Ok(rows) };
    let idle = idle_cost(store).await;
    cleanup.await;
    rows.push(idle.map(|(with, without)| ScaleRow {
        workload: "W11 10,000 schedules not due, CPU over 10 s",
        store: name.to_owned(),
        measured: format!("{with:.0} ms of CPU"),
        beside: format!("a runtime with no schedule: {without:.0} ms"),
    })?);
    Ok(rows)
}

async fn firing(name: &str, store: Arc<dyn Store>) -> BenchResult<Vec<ScaleRow>> {
    create(&store, "* * * * * *", "w11_job", SCHEDULES).await?;
    let runtime = Runtime::builder().store(store.clone()).build().await?;
    let start_ms = workflow::Clock::now_ms(&workflow::SystemClock);
    // The window's last ticks get two seconds more to be fired before the runtime stops.
    tokio::time::sleep(Duration::from_secs(SECONDS + 2)).await;
    runtime.shutdown(Duration::from_secs(5)).await?;
    let elapsed = Duration::from_secs(SECONDS);
    // The ticks due within the window, and when each instance was created.
    let client = Client::new(store);
    let filter = ListFilter { workflow: Some("w11_job".into()), without_payloads: true, ..ListFilter::default() };
    let (mut lags, mut token, mut due_ticks) = (Vec::new(), None, 0usize);
    loop {
        let page = client.list(&filter, 1_000, token.as_deref()).await?;
        for status in &page.instances {
            let tick: i64 = status.instance_id.rsplit_once('-').ok_or("an id without a tick")?.1.parse()?;
            if tick > start_ms && tick <= start_ms + (SECONDS as i64) * 1_000 {
                due_ticks += 1;
                lags.push(status.created_at - tick);
            }
        }
        token = page.continuation;
        if token.is_none() {
            break;
        }
    }
    lags.sort_unstable();
    let expected = SCHEDULES * SECONDS as usize;
    let (p50, p99) = if lags.is_empty() { (0, 0) } else { (percentile(&lags, 0.5), percentile(&lags, 0.99)) };
    Ok(vec![ScaleRow {
        workload: "W11 10,000 schedules every second for 30 s",
        store: name.to_owned(),
        measured: format!(
            "{:.0} ticks started/s; lag from due to created p50 {p50} ms, p99 {p99} ms (negative: fired ahead)",
            due_ticks as f64 / elapsed.as_secs_f64()
        ),
        beside: format!("{due_ticks} of the {expected} ticks due started; target: all, p99 < 100 ms on SQLite"),
    }])
}

/// 1,000 schedules every second for 10 s on a runtime that runs their workflow: the lag from
/// each tick to its run's first step.
async fn running(name: &str, store: Arc<dyn Store>) -> BenchResult<ScaleRow> {
    create(&store, "* * * * * *", "w11_run", RUN_SCHEDULES).await?;
    if let Ok(mut marks) = FIRST_STEPS.lock() {
        *marks = Some(HashMap::new());
    }
    let runtime = Runtime::builder()
        .store(store.clone())
        .workflow(w11_run::Workflow)
        .activity(w11_mark::Activity)
        .max_concurrent_instances(4_096)
        .build()
        .await?;
    let start_ms = workflow::Clock::now_ms(&workflow::SystemClock);
    tokio::time::sleep(Duration::from_secs(RUN_SECONDS + 2)).await;
    runtime.shutdown(Duration::from_secs(5)).await?;
    let marks = FIRST_STEPS.lock().map_err(|_| "poisoned")?.take().unwrap_or_default();
    let mut lags = Vec::new();
    for (id, at) in &marks {
        let tick: i64 = id.rsplit_once('-').ok_or("an id without a tick")?.1.parse()?;
        if tick > start_ms && tick <= start_ms + (RUN_SECONDS as i64) * 1_000 {
            lags.push(at - tick);
        }
    }
    lags.sort_unstable();
    let expected = RUN_SCHEDULES * RUN_SECONDS as usize;
    let (p50, p99) = if lags.is_empty() { (0, 0) } else { (percentile(&lags, 0.5), percentile(&lags, 0.99)) };
    Ok(ScaleRow {
        workload: "W11 1,000 schedules every second for 10 s, run here",
        store: name.to_owned(),
        measured: format!("lag from due to the run's first step p50 {p50} ms, p99 {p99} ms"),
        beside: format!("{} of the {expected} ticks due ran", lags.len()),
    })
}

/// CPU over 10 s with 10,000 schedules not due, and with none (each on a fresh runtime).
async fn idle_cost(store: Arc<dyn Store>) -> BenchResult<(f64, f64)> {
    let mut figures = Vec::new();
    for with_schedules in [false, true] {
        if with_schedules {
            create(&store, "0 0 0 1 1 *", "w11_job", SCHEDULES).await?;
        }
        let runtime = Runtime::builder().store(store.clone()).build().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = cpu_ms()?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        figures.push(cpu_ms()? - before);
        runtime.shutdown(Duration::from_secs(5)).await?;
    }
    Ok((figures[1], figures[0]))
}
