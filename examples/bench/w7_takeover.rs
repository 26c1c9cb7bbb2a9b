//! W7 takeover: a worker process (this bench binary again, `--child w7 <url> <schema>`) starts
//! instances that block mid-activity and holds them, is killed with SIGKILL, and a live worker in
//! this process (running since before the kill) finishes them. Measured: from the kill to the
//! first and to the last result. Every lease is 60 s, so only the store's liveness marks explain a
//! takeover before that; without them a killed worker's instances waited for their leases to
//! lapse (15 s with the default lease).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use workflow::prelude::*;
use workflow::store::Store;

use super::{BenchResult, ScaleRow};

const INSTANCES: u32 = 100;
const LEASE: Duration = Duration::from_secs(60);
const READY: &str = "W7-READY";

/// Set in the child: its activity attempts start and never end.
static IN_CHILD: AtomicBool = AtomicBool::new(false);
static STARTED: AtomicU32 = AtomicU32::new(0);

#[activity(retry(max_attempts = 1))]
async fn w7_step(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    if IN_CHILD.load(Ordering::SeqCst) {
        STARTED.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    Ok(n + 1)
}

#[workflow]
async fn w7_held(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    w7_step::call(&ctx, n).await
}

async fn open(url: &str, schema: &str) -> BenchResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStore::open(url).await?));
    }
    #[cfg(feature = "postgres")]
    {
        let options = workflow::PostgresOptions::new().schema(schema);
        Ok(Arc::new(workflow::PostgresStore::open_with(url, options).await?))
    }
    #[cfg(not(feature = "postgres"))]
    Err(format!("a PostgreSQL URL without the postgres feature (schema {schema})").into())
}

async fn worker(store: Arc<dyn Store>) -> BenchResult<Runtime> {
    Ok(Runtime::builder()
        .store(store)
        .lease(LEASE)
        .max_concurrent_activities(INSTANCES as usize)
        .workflow(w7_held::Workflow)
        .activity(w7_step::Activity)
        .build()
        .await?)
}

/// The W7 row for store `name` (SQLite on a file of its own in `dir`, or PostgreSQL in a schema
/// of its own); none for the other stores (in memory, no other process can share them).
pub(crate) async fn measure(name: &str, dir: &std::path::Path) -> BenchResult<Vec<ScaleRow>> {
    let (url, schema) = match name {
        "sqlite" => (format!("sqlite://{}", dir.join("w7.db").display()), String::new()),
        "postgres" => match std::env::var("DATABASE_URL") {
            Ok(url) => (url, format!("wf_w7_{}", std::process::id())),
            Err(_) => return Ok(Vec::new()),
        },
        _ => return Ok(Vec::new()),
    };
    let store = open(&url, &schema).await?;
    let survivor = worker(store.clone()).await?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", "w7", &url, &schema])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("the W7 child has no stdout")?;
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line.trim() == READY)
    });
    let ready = tokio::time::timeout(Duration::from_secs(120), ready).await;
    if !matches!(ready, Ok(Ok(true))) {
        let _ = child.kill();
        return Err("the W7 child did not get its instances under way".into());
    }
    child.kill()?; // SIGKILL
    let killed = Instant::now();
    child.wait()?;

    let client = survivor.client();
    let mut results: FuturesUnordered<_> = (0..INSTANCES)
        .map(|n| {
            let client = client.clone();
            async move {
                let output: u32 = client.result(&format!("w7-{n}"), Some(LEASE)).await?;
                Ok::<_, workflow::Error>((n, output, killed.elapsed()))
            }
        })
        .collect();
    let mut first = None;
    let mut last = Duration::ZERO;
    while let Some(result) = results.next().await {
        let (n, output, at) = result?;
        if output != n + 1 {
            return Err(format!("W7: w7-{n} returned {output}").into());
        }
        first.get_or_insert(at);
        last = last.max(at);
    }
    drop(results);
    survivor.shutdown(Duration::from_secs(5)).await?;
    #[cfg(feature = "postgres")]
    if !schema.is_empty() {
        // A plain connection: a store opened on the default schema would migrate it (and an
        // older binary would then refuse that schema as newer than it knows).
        let admin = sqlx::PgPool::connect(&url).await?;
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&admin).await?;
        admin.close().await;
    }
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    Ok(vec![ScaleRow {
        workload: "W7 takeover after SIGKILL",
        store: name.to_owned(),
        measured: format!(
            "{INSTANCES} instances mid-activity: first done {} after the kill, all {}",
            ms(first.unwrap_or_default()),
            ms(last)
        ),
        beside: format!("lease {} s; without liveness marks: when the lease lapses (15 s by default)", LEASE.as_secs()),
    }])
}

/// The child: starts the instances, waits until every one is inside its activity, says so on
/// stdout, and holds them until it is killed.
pub(crate) async fn child(args: Vec<String>) -> BenchResult<()> {
    IN_CHILD.store(true, Ordering::SeqCst);
    let (Some(url), Some(schema)) = (args.first(), args.get(1)) else {
        return Err("usage: --child w7 <url> <schema>".into());
    };
    let runtime = worker(open(url, schema).await?).await?;
    for n in 0..INSTANCES {
        w7_held::start(&runtime.client(), n).id(format!("w7-{n}")).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while STARTED.load(Ordering::SeqCst) < INSTANCES {
        if Instant::now() > deadline {
            return Err("W7 child: the activities did not all start".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("{READY}");
    // Held until the parent kills it; the bound only keeps an orphan from living on.
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}
