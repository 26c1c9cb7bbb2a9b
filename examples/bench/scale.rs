//! The scale workloads (`--scale`): whether costs stay flat as the work grows.
//!
//! - W4 evicted waiters: 10,000 instances each waiting for an event, evicted from memory, all
//!   events raised, every result awaited through its `Handle`: events/s, beside the same workload
//!   kept in memory.
//! - W5 list Running: `Client::list` filtered by status on a store of finished instances (1M on
//!   SQLite, 100k on PostgreSQL).
//! - W6 RSS per sleeping instance at 100k.
//! - W7 takeover: a worker process killed with SIGKILL; time until a live worker resumes its
//!   instances.
//! - W8 flow control: W1 under a workflow concurrency cap that never binds, beside uncapped and a
//!   cap that binds, and W1 with capped activity steps.
//! - W9 backlog: 1,000 and 100,000 instances queued behind a workflow cap; the rate of the first
//!   1,000 admissions and the RSS growth.
//! - W10 store growth: ten rounds of W1 at 1,000 workflows on one fresh store; the last round's
//!   rate beside the first's, with generated ids and with random ones.
//! - W11 schedules: 10,000 schedules every second for 30 s (ticks started per second, lag from
//!   due to created), and the CPU of 10,000 schedules not due.
//! - W12 metrics (feature `prometheus`): W1 with a Prometheus recorder beside without.
//! - W13 console pages (feature `console`): the list page and a 10,000-step instance's page on a
//!   store of 1M instances (100k on PostgreSQL), read over HTTP as the page reads them.
//! - W14 claims beside held instances: rounds of 1,000 one-step workflows through `Client::new` (each waits
//!   for a claim), with 10,000 instances held in the worker's memory beside none.
//!
//! Each workload is a function returning rows of one table: `| workload | store | measured | beside |`.
//! `--scale-only w4,w7` runs only the workloads named.

#[path = "w10_growth.rs"]
mod w10_growth;
#[path = "w11_schedules.rs"]
mod w11_schedules;
#[cfg(feature = "prometheus")]
#[path = "w12_metrics.rs"]
mod w12_metrics;
#[cfg(feature = "console")]
#[path = "w13_console.rs"]
mod w13_console;
#[path = "w14_held.rs"]
mod w14_held;
#[path = "w4_waiters.rs"]
mod w4_waiters;
#[path = "w7_takeover.rs"]
mod w7_takeover;
#[path = "w8_flow.rs"]
mod w8_flow;
#[path = "w9_backlog.rs"]
mod w9_backlog;

use std::path::Path;
use std::sync::Arc;

use workflow::store::Store;

/// One line of the scale table.
pub(crate) struct ScaleRow {
    pub(crate) workload: &'static str,
    pub(crate) store: String,
    /// The figure the workload is about.
    pub(crate) measured: String,
    /// What to read it against (the in-memory run, the target), or empty.
    pub(crate) beside: String,
}

pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

#[path = "w5_list.rs"]
mod w5_list;
#[path = "w6_memory.rs"]
mod w6_memory;

/// Runs every scale workload on `store` (named `name`); `dir` is the bench's scratch directory.
pub(crate) async fn measure(name: &str, store: Arc<dyn Store>, dir: &Path) -> BenchResult<Vec<ScaleRow>> {
    let mut rows = Vec::new();
    // The memory store reads an inbox by scanning every event: it is the reference, not a store
    // to measure at scale.
    if name != "memory" && wanted("w4") {
        rows.extend(w4_waiters::measure(name, store.clone()).await?);
    }
    if wanted("w5") {
        rows.extend(w5_list::measure(name, dir).await?);
    }
    if wanted("w6") {
        rows.extend(w6_memory::measure(name, dir).await?);
    }
    if wanted("w7") {
        rows.extend(w7_takeover::measure(name, dir).await?);
    }
    if wanted("w8") {
        rows.extend(w8_flow::measure(name, store.clone()).await?);
    }
    if wanted("w10") {
        rows.extend(w10_growth::measure(name, dir).await?);
    }
    if wanted("w11") {
        rows.extend(w11_schedules::measure(name, dir).await?);
    }
    #[cfg(feature = "prometheus")]
    if wanted("w12") {
        rows.extend(w12_metrics::measure(name, dir).await?);
    }
    #[cfg(feature = "console")]
    if wanted("w13") {
        rows.extend(w13_console::measure(name, dir).await?);
    }
    if wanted("w14") {
        rows.extend(w14_held::measure(name, store.clone()).await?);
    }
    // Last: it leaves 99,000 instances queued. The memory store scans every instance per claim:
    // it is the reference, not a store to measure at scale.
    if name != "memory" && wanted("w9") {
        rows.extend(w9_backlog::measure(name, store.clone()).await?);
    }
    Ok(rows)
}

/// When the bench was started as a helper process of a scale workload (`--child ...`), the work
/// that process does instead of the bench.
pub(crate) fn child_mode(
    args: &[String],
) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = BenchResult<()>>>>> {
    let at = args.iter().position(|a| a == "--child")?;
    match args.get(at + 1).map(String::as_str) {
        Some("w6") => Some(Box::pin(w6_memory::child(args.to_vec()))),
        Some("w7") => Some(Box::pin(w7_takeover::child(args[at + 2..].to_vec()))),
        _ => None,
    }
}

/// Whether `--scale-only` (if given) names `workload`.
fn wanted(workload: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--scale-only").and_then(|i| args.get(i + 1)) {
        Some(only) => only.split(',').any(|name| name.trim().eq_ignore_ascii_case(workload)),
        None => true,
    }
}

/// Prints the scale table.
pub(crate) fn print(rows: &[ScaleRow]) {
    println!();
    println!("| workload | store | measured | beside |");
    println!("|---|---|---|---|");
    for row in rows {
        println!("| {} | {} | {} | {} |", row.workload, row.store, row.measured, row.beside);
    }
}
