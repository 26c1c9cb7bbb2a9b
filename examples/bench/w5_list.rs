//! W5 list Running: `Client::list` filtered by status on a store of finished instances (1M on
//! SQLite, 100k on PostgreSQL), plus ten Running ones created last (as live instances are, among
//! old finished ones): the median time of the Running page, beside the unfiltered first page and a
//! page of two statuses (Pending or Running).
//!
//! The finished instances are written straight into the store's tables with one bulk statement
//! (what a store that ran them for months would hold); the store is fresh, in the bench's scratch
//! directory (SQLite) or in a schema of its own (PostgreSQL).

use std::path::Path;
use std::time::{Duration, Instant};

use workflow::prelude::*;
use workflow::ListFilter;

use super::{BenchResult, ScaleRow};

/// Running instances among the finished ones.
const RUNNING: usize = 10;
/// Timed runs of each listing; the median is quoted.
const RUNS: usize = 21;
/// The page size of each listing.
const PAGE: usize = 100;

/// Runs W5 on the store named `name` (SQLite and PostgreSQL only; other stores give no row).
pub(super) async fn measure(name: &str, dir: &Path) -> BenchResult<Vec<ScaleRow>> {
    match name {
        "sqlite" => sqlite(dir).await,
        "postgres" => postgres().await,
        _ => Ok(Vec::new()),
    }
}

/// The bulk statement's rows: `finished` Completed instances, then [`RUNNING`] Running ones, with
/// increasing `created_at`. `series` is the backend's "n from 0 to count - 1" row source (a column
/// `n`); `id` spells the id from `n`.
fn fill_sql(series: &str, id: &str) -> String {
    format!(
        "INSERT INTO instances (id, workflow, status, input, output, generation, created_at, updated_at, completed_at) \
         SELECT {id}, 'w5', CASE WHEN n >= $1 THEN 'Running' ELSE 'Completed' END, '0', \
         CASE WHEN n >= $1 THEN NULL ELSE '1' END, 0, 1000000 + n, 1000000 + n, \
         CASE WHEN n >= $1 THEN NULL ELSE 1000000 + n END FROM {series}"
    )
}

async fn timed(client: &Client, filter: &ListFilter, expect: usize) -> BenchResult<Duration> {
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let page = client.list(filter, PAGE, None).await?;
        times.push(started.elapsed());
        if page.instances.len() != expect {
            return Err(format!("W5: expected {expect} instances, listed {}", page.instances.len()).into());
        }
    }
    times.sort();
    Ok(times[RUNS / 2])
}

async fn rows(store_name: &str, client: &Client, finished: usize) -> BenchResult<Vec<ScaleRow>> {
    let running = ListFilter { statuses: vec![RuntimeStatus::Running], ..ListFilter::default() };
    let active = ListFilter { statuses: vec![RuntimeStatus::Pending, RuntimeStatus::Running], ..ListFilter::default() };
    let all = ListFilter::default();
    // One untimed pass each, so every listing finds the same (warm) cache.
    for filter in [&running, &active, &all] {
        client.list(filter, PAGE, None).await?;
    }
    let running_ms = timed(client, &running, RUNNING).await?;
    let active_ms = timed(client, &active, RUNNING).await?;
    let all_ms = timed(client, &all, PAGE).await?;
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
    Ok(vec![ScaleRow {
        workload: "W5 list Running",
        store: store_name.to_owned(),
        measured: format!("{} (page of {PAGE}, {} finished, {RUNNING} Running)", ms(running_ms), finished),
        beside: format!("Pending+Running {}; unfiltered first page {}; target < 2 ms", ms(active_ms), ms(all_ms)),
    }])
}

async fn sqlite(dir: &Path) -> BenchResult<Vec<ScaleRow>> {
    const FINISHED: usize = 1_000_000;
    let path = dir.join("w5.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&url).await?;
    let started = Instant::now();
    // The store's pool reads; the bulk write takes a connection of its own.
    let mut writer = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await?;
    let series = "(WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < $2) SELECT n FROM s)";
    sqlx::query(&fill_sql(series, "printf('w5/%08d', n)"))
        .bind(FINISHED as i64)
        .bind((FINISHED + RUNNING) as i64)
        .execute(&mut writer)
        .await?;
    sqlx::Connection::close(writer).await?;
    eprintln!("W5 sqlite: {FINISHED} finished instances written in {:.1} s", started.elapsed().as_secs_f64());
    let client = Client::new(store);
    let rows = rows("sqlite", &client, FINISHED).await;
    drop(client);
    let _ = std::fs::remove_file(&path);
    rows
}

#[cfg(feature = "postgres")]
async fn postgres() -> BenchResult<Vec<ScaleRow>> {
    const FINISHED: usize = 100_000;
    let Ok(url) = std::env::var("DATABASE_URL") else {
        return Ok(Vec::new());
    };
    let schema = format!("wf_bench_w5_{}", std::process::id());
    let store = workflow::PostgresStore::open_with(&url, workflow::PostgresOptions::new().schema(&schema)).await?;
    let pool = store.pool().clone();
    let started = Instant::now();
    let result = async {
        sqlx::query(&fill_sql("generate_series(0, $2 - 1) AS s(n)", "'w5/' || lpad(n::text, 8, '0')"))
            .bind(FINISHED as i64)
            .bind((FINISHED + RUNNING) as i64)
            .execute(&pool)
            .await?;
        // What autovacuum would soon do after such a load.
        sqlx::query("ANALYZE instances").execute(&pool).await?;
        eprintln!("W5 postgres: {FINISHED} finished instances written in {:.1} s", started.elapsed().as_secs_f64());
        let client = Client::new(store);
        rows("postgres", &client, FINISHED).await
    }
    .await;
    if let Err(error) = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await {
        eprintln!("could not drop the W5 schema {schema}: {error}");
    }
    result
}

#[cfg(not(feature = "postgres"))]
async fn postgres() -> BenchResult<Vec<ScaleRow>> {
    Ok(Vec::new())
}
