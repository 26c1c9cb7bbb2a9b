//! W6 RSS per sleeping instance: in a process of its own (the bench re-run as
//! `--child w6 --store <name> --count <n> --dir <dir>`), so nothing else the bench did is in its
//! RSS: the RSS with the runtime built, then `n` instances started that each run one activity and
//! sleep an hour, the RSS once every one sleeps (its timer journaled), and the RSS once the runtime
//! holds none of them in memory any more. The process prints one line, `w6 <fields>`, which the
//! bench reads.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use workflow::prelude::*;
use workflow::store::Store;

use super::{BenchResult, ScaleRow};

/// Undoes what the child's store left behind.
type Cleanup = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
/// Counts the journaled timers: how many instances have reached their sleep.
type Count = Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = BenchResult<i64>>>>>;

#[activity(retry(max_attempts = 1))]
async fn w6_touch(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

#[workflow]
async fn w6_sleeper(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let n = w6_touch::call(&ctx, n).await?;
    ctx.sleep(Duration::from_secs(3600)).await?;
    Ok(n)
}

/// How long the child waits for all instances to sleep, or to leave memory.
const PATIENCE: Duration = Duration::from_secs(600);

/// Runs W6 for `name` (SQLite and PostgreSQL) at 10k and 100k instances, each in a child process.
pub(super) async fn measure(name: &str, dir: &Path) -> BenchResult<Vec<ScaleRow>> {
    if name != "sqlite" && name != "postgres" {
        return Ok(Vec::new());
    }
    let mut runs = Vec::new();
    for count in [10_000_u64, 100_000] {
        eprintln!("W6 {name}: {count} sleeping instances in a child process ...");
        // Blocking: the bench has nothing else to do meanwhile.
        let output = std::process::Command::new(std::env::current_exe()?)
            .args(["--child", "w6", "--store", name, "--count", &count.to_string(), "--dir"])
            .arg(dir)
            .stderr(std::process::Stdio::inherit())
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some(line) = stdout.lines().find(|line| line.starts_with("w6 ")) else {
            return Err(format!("W6 {name} child ({}) printed no result: {stdout}", output.status).into());
        };
        let field = |key: &str| -> BenchResult<i64> {
            let prefix = format!("{key}=");
            let value = line.split_whitespace().find_map(|word| word.strip_prefix(prefix.as_str()));
            Ok(value.ok_or_else(|| format!("W6: no {key} in {line:?}"))?.parse()?)
        };
        let (before, sleeping, evicted) = (field("before")?, field("sleeping")?, field("evicted")?);
        let (held, peak) = (field("held")?, field("peak")?);
        let per = |rss: i64| (rss - before) as f64 / count as f64;
        runs.push(format!(
            "{}k: {:.0} B/instance sleeping ({held} held in memory, at most {peak} sampled), {:.0} B/instance once none is held",
            count / 1000,
            per(sleeping),
            per(evicted)
        ));
    }
    Ok(vec![ScaleRow {
        workload: "W6 RSS per sleeping instance",
        store: name.to_owned(),
        measured: runs.pop().unwrap_or_default(),
        beside: format!("{}; target <= 1024 B at 100k", runs.join("; ")),
    }])
}

/// This process's resident set, in bytes.
pub(super) fn rss() -> BenchResult<i64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(kb.parse::<i64>()? * 1024)
}

/// The child's work; `args` are the process's arguments.
pub(super) async fn child(args: Vec<String>) -> BenchResult<()> {
    let arg = |key: &str| args.iter().position(|a| a == key).and_then(|i| args.get(i + 1)).cloned();
    let name = arg("--store").ok_or("W6 child: no --store")?;
    let count: u64 = arg("--count").ok_or("W6 child: no --count")?.parse()?;
    let dir = arg("--dir").ok_or("W6 child: no --dir")?;
    let (store, cleanup, timers_sql): (Arc<dyn Store>, Option<Cleanup>, _) = match name.as_str() {
        "sqlite" => {
            let path = Path::new(&dir).join(format!("w6-{count}.db"));
            let _ = std::fs::remove_file(&path);
            let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await?;
            let pool = store.pool().clone();
            let count_timers: Count = Box::new(move || {
                let pool = pool.clone();
                Box::pin(async move {
                    Ok(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM journal WHERE kind = 'timer'")
                        .fetch_one(&pool)
                        .await?)
                })
            });
            let cleanup: Cleanup = Box::pin(async move {
                let _ = std::fs::remove_file(&path);
            });
            (Arc::new(store), Some(cleanup), count_timers)
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let url = std::env::var("DATABASE_URL")?;
            let schema = format!("wf_bench_w6_{}", std::process::id());
            let store =
                workflow::PostgresStore::open_with(&url, workflow::PostgresOptions::new().schema(&schema)).await?;
            let pool = store.pool().clone();
            let counting = pool.clone();
            let count_timers: Count = Box::new(move || {
                let pool = counting.clone();
                Box::pin(async move {
                    Ok(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM journal WHERE kind = 'timer'")
                        .fetch_one(&pool)
                        .await?)
                })
            });
            let cleanup: Cleanup = Box::pin(async move {
                let _ = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await;
            });
            (Arc::new(store), Some(cleanup), count_timers)
        }
        other => return Err(format!("W6 child: no store {other}").into()),
    };
    let runtime = Runtime::builder()
        .store(store)
        .workflow(w6_sleeper::Workflow)
        .activity(w6_touch::Activity)
        // Room for every instance at once: what is measured is what a sleeping one costs, not
        // the claim queue.
        .max_concurrent_instances(count as usize + 1)
        .max_concurrent_activities(1024)
        .build()
        .await?;
    let client = runtime.client();
    let before = rss()?;
    let started = Instant::now();
    for chunk in 0..count.div_ceil(1000) {
        let first = chunk * 1000;
        let starts = (first..(first + 1000).min(count)).map(|i| w6_sleeper::start(&client, i));
        futures::future::try_join_all(starts).await?;
    }
    // The most instances held in memory at once, sampled while they go to sleep.
    let mut peak = runtime.instances_in_memory();
    while (timers_sql)().await? < count as i64 {
        peak = peak.max(runtime.instances_in_memory());
        if started.elapsed() > PATIENCE {
            return Err("W6: the instances did not all reach their sleep".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sleeping = rss()?;
    let held = runtime.instances_in_memory();
    eprintln!("W6 child: {count} sleeping after {:.1} s, {held} held in memory", started.elapsed().as_secs_f64());
    let waited = Instant::now();
    while runtime.instances_in_memory() > 0 {
        if waited.elapsed() > PATIENCE {
            return Err("W6: the instances were not all evicted".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let evicted = rss()?;
    println!("w6 count={count} before={before} sleeping={sleeping} held={held} peak={peak} evicted={evicted}");
    runtime.shutdown(Duration::from_secs(5)).await?;
    if let Some(cleanup) = cleanup {
        cleanup.await;
    }
    Ok(())
}
