//! W13 console at scale: what the console's pages cost the server on a large store (1M finished
//! instances on SQLite, 100k on PostgreSQL), one of which has a history of 10,000 steps. The
//! console is served on a local port and read over HTTP as the page reads it:
//!
//! - the list page: its first page (newest first, 25 rows, no payloads) and the counts per status
//!   (bounded at 10,000 each), which the page asks for together;
//! - the instance page of the 10,000-step instance: its status, then together its diagram
//!   (`diagram.svg`), the first 200 items of its history, its children and its queued calls.
//!
//! The figure is the median over [`RUNS`] of each page's requests, timed as the page makes them
//! (the together ones concurrently). Target: under 300 ms each.

use std::path::Path;
use std::time::{Duration, Instant};

use workflow::prelude::*;

use super::{BenchResult, ScaleRow};

/// Timed reads of each page; the median is quoted.
const RUNS: usize = 11;
/// Steps in the big instance's history.
const STEPS: usize = 10_000;
/// The big instance's id.
const BIG: &str = "w13-big";

/// Runs W13 on the store named `name` (SQLite and PostgreSQL only; other stores give no row).
pub(super) async fn measure(name: &str, dir: &Path) -> BenchResult<Vec<ScaleRow>> {
    match name {
        "sqlite" => sqlite(dir).await,
        "postgres" => postgres().await,
        _ => Ok(Vec::new()),
    }
}

/// The bulk statements, each with the value of its `$1`: `finished` Completed instances (ids from
/// `id`, a spelling of `n`), the big one last, then its journal. `series(count)` is the backend's
/// "n from 0 to count - 1".
fn fill(series: &dyn Fn(&str) -> String, id: &str, finished: usize) -> [(String, i64); 2] {
    [
        (format!(
            "INSERT INTO instances (id, workflow, status, input, output, generation, created_at, updated_at, completed_at) \
             SELECT CASE WHEN n = $1 THEN '{BIG}' ELSE {id} END, 'w13', 'Completed', '0', '1', 0, \
             1000000 + n, 1000000 + n, 1000000 + n FROM {}",
            series("$1 + 1")
        ), (finished - 1) as i64),
        (format!(
            "INSERT INTO journal (instance_id, generation, seq, kind, name, status, input, payload, attempt, recorded_at) \
             SELECT '{BIG}', 0, n, 'activity', 'step', 'Completed', '0', '1', 1, 3000000 + n FROM {}",
            series("$1")
        ), STEPS as i64),
    ]
}

async fn get(http: &reqwest::Client, url: String) -> BenchResult<usize> {
    let response = http.get(&url).send().await?;
    if !response.status().is_success() {
        return Err(format!("W13: {url} answered {}", response.status()).into());
    }
    Ok(response.bytes().await?.len())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

async fn rows(store_name: &str, client: Client, finished: usize) -> BenchResult<Vec<ScaleRow>> {
    let app = workflow::http::console(client);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}/api/v1.0", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let instances = format!("{api}/workflows/dapr");
    let list_page = || async {
        let started = Instant::now();
        let (page, counts) = tokio::try_join!(
            get(&http, format!("{instances}?order=newest&pageSize=25&omitPayloads=true")),
            get(&http, format!("{api}/instanceCounts")),
        )?;
        BenchResult::Ok((started.elapsed(), page + counts))
    };
    let instance_page = || async {
        let started = Instant::now();
        get(&http, format!("{instances}/{BIG}")).await?;
        let (diagram, history, _, _) = tokio::try_join!(
            get(&http, format!("{instances}/{BIG}/diagram.svg")),
            get(&http, format!("{instances}/{BIG}/history?offset=0&limit=200")),
            get(&http, format!("{instances}?parentInstanceID={BIG}&pageSize=100&omitPayloads=true")),
            get(&http, format!("{instances}/{BIG}/activities")),
        )?;
        BenchResult::Ok((started.elapsed(), diagram + history))
    };
    // One untimed read of each, so both find the same (warm) cache.
    list_page().await?;
    instance_page().await?;
    let (mut lists, mut pages) = (Vec::new(), Vec::new());
    let mut sizes = (0, 0);
    for _ in 0..RUNS {
        let (took, size) = list_page().await?;
        lists.push(took);
        sizes.0 = size;
        let (took, size) = instance_page().await?;
        pages.push(took);
        sizes.1 = size;
    }
    server.abort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    Ok(vec![ScaleRow {
        workload: "W13 console pages",
        store: store_name.to_owned(),
        measured: format!(
            "list page {}, instance page {} ({finished} instances, one of {STEPS} steps)",
            ms(median(lists)),
            ms(median(pages))
        ),
        beside: format!("{} KB and {} KB sent; target < 300 ms each", sizes.0 / 1024, sizes.1 / 1024),
    }])
}

async fn sqlite(dir: &Path) -> BenchResult<Vec<ScaleRow>> {
    const FINISHED: usize = 1_000_000;
    let path = dir.join("w13.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&url).await?;
    let started = Instant::now();
    let mut writer = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await?;
    let series = |count: &str| {
        format!(
            "(WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < {count}) SELECT n FROM s)"
        )
    };
    for (statement, value) in fill(&series, "printf('w13/%08d', n)", FINISHED) {
        sqlx::query(&statement).bind(value).execute(&mut writer).await?;
    }
    sqlx::Connection::close(writer).await?;
    eprintln!("W13 sqlite: {FINISHED} instances written in {:.1} s", started.elapsed().as_secs_f64());
    let rows = rows("sqlite", Client::new(store), FINISHED).await;
    let _ = std::fs::remove_file(&path);
    rows
}

#[cfg(feature = "postgres")]
async fn postgres() -> BenchResult<Vec<ScaleRow>> {
    const FINISHED: usize = 100_000;
    let Ok(url) = std::env::var("DATABASE_URL") else {
        return Ok(Vec::new());
    };
    let schema = format!("wf_bench_w13_{}", std::process::id());
    let store = workflow::PostgresStore::open_with(&url, workflow::PostgresOptions::new().schema(&schema)).await?;
    let pool = store.pool().clone();
    let started = Instant::now();
    let result = async {
        let series = |count: &str| format!("generate_series(0, {count} - 1) AS s(n)");
        for (statement, value) in fill(&series, "'w13/' || lpad(n::text, 8, '0')", FINISHED) {
            sqlx::query(&statement).bind(value).execute(&pool).await?;
        }
        sqlx::query("ANALYZE instances").execute(&pool).await?;
        sqlx::query("ANALYZE journal").execute(&pool).await?;
        eprintln!("W13 postgres: {FINISHED} instances written in {:.1} s", started.elapsed().as_secs_f64());
        rows("postgres", Client::new(store), FINISHED).await
    }
    .await;
    if let Err(error) = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await {
        eprintln!("could not drop the W13 schema {schema}: {error}");
    }
    result
}

#[cfg(not(feature = "postgres"))]
async fn postgres() -> BenchResult<Vec<ScaleRow>> {
    Ok(Vec::new())
}
