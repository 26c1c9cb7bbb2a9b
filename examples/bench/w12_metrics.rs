//! W12 metrics: what recording the engine's metrics costs. W1's shape (workflows of ten local
//! steps, all started at once) on one SQLite store, in rounds that alternate between no recorder
//! and a Prometheus recorder (`metrics-exporter-prometheus`, as `workflow::http::install_prometheus`
//! installs). Each round runs on a thread of its own with a current-thread runtime, so the
//! recorder can be that thread's (a global one could not be taken away again); the figure is
//! the ratio of the medians.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusBuilder;
use workflow::prelude::*;
use workflow::store::Store;
use workflow::{SqliteOptions, Synchronous};

use super::{BenchResult, ScaleRow};

const WORKFLOWS: u64 = 500;
const ROUNDS: usize = 4;

#[activity(retry(max_attempts = 1))]
async fn w12_step(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

#[workflow]
async fn w12_steps(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    let mut n = start;
    for _ in 0..10 {
        n = w12_step::call(&ctx, n).await?;
    }
    Ok(n)
}

/// Workflows/s of one round on `url`, with a Prometheus recorder for the round's thread or none.
fn round(url: String, recorded: bool) -> BenchResult<f64> {
    let thread = std::thread::spawn(move || -> Result<f64, String> {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _local = recorded.then(|| metrics::set_default_local_recorder(&recorder));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let options = SqliteOptions::new().synchronous(Synchronous::Full);
            let store: Arc<dyn Store> =
                Arc::new(workflow::SqliteStore::open_with(&url, options).await.map_err(|e| e.to_string())?);
            let engine = Runtime::builder()
                .store(store)
                .workflow(w12_steps::Workflow)
                .activity(w12_step::Activity)
                .build()
                .await
                .map_err(|e| e.to_string())?;
            let client = engine.client();
            let started = Instant::now();
            let handles = futures::future::try_join_all((0..WORKFLOWS).map(|i| w12_steps::start(&client, i * 100)))
                .await
                .map_err(|e| e.to_string())?;
            futures::future::try_join_all(handles.iter().map(|h| h.result())).await.map_err(|e| e.to_string())?;
            let rate = WORKFLOWS as f64 / started.elapsed().as_secs_f64();
            engine.shutdown(std::time::Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
            if recorded && !handle.render().contains("workflow_commits_total") {
                return Err("the recorder saw no commits".into());
            }
            Ok(rate)
        })
    });
    Ok(thread.join().map_err(|_| "a W12 round panicked")??)
}

fn median(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(f64::total_cmp);
    figures[figures.len() / 2]
}

/// The W12 row (SQLite only).
pub(super) async fn measure(name: &str, dir: &Path) -> BenchResult<Vec<ScaleRow>> {
    if name != "sqlite" {
        return Ok(Vec::new());
    }
    let path = dir.join("w12.db");
    let url = format!("sqlite://{}", path.display());
    // `--w12-mode on|off`: every round in one mode, for an instruction count of each
    // (`valgrind --tool=callgrind`), which the machine's noise does not blur as it does rates.
    let args: Vec<String> = std::env::args().collect();
    if let Some(mode) = args.iter().position(|a| a == "--w12-mode").and_then(|i| args.get(i + 1)) {
        let recorded = mode == "on";
        let rates: Vec<f64> = (0..ROUNDS).map(|_| round(url.clone(), recorded)).collect::<BenchResult<_>>()?;
        return Ok(vec![ScaleRow {
            workload: "W12 one mode (for instruction counts)",
            store: name.to_owned(),
            measured: format!("recorder {}: {:.0} workflows/s", if recorded { "on" } else { "off" }, median(rates)),
            beside: String::new(),
        }]);
    }
    let (mut off, mut on) = (Vec::new(), Vec::new());
    round(url.clone(), false)?; // warm-up
    for _ in 0..ROUNDS {
        off.push(round(url.clone(), false)?);
        on.push(round(url.clone(), true)?);
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let (off, on) = (median(off), median(on));
    Ok(vec![ScaleRow {
        workload: "W12 W1 (500 workflows) with metrics recorded, workflows/s (median of rounds)",
        store: name.to_owned(),
        measured: format!("Prometheus recorder: {on:.0} ({:.0}% of without)", on / off * 100.0),
        beside: format!("no recorder: {off:.0}; target: cost < 3%"),
    }])
}
