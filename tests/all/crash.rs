//! Crash and resume with a real process: a child runs a 5-step workflow on a SQLite file, is
//! killed with SIGKILL once step 3's record is committed, and a second child finishes the work.
//!
//! The child is this same test binary, running the ignored test `crash::crash_child`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use workflow::prelude::*;
use workflow::store::Store;
use workflow::{RecordStatus, StepKind};

use crate::support::{wait_for_value_within, wait_until_within};

/// How long a child process may take to get somewhere (it starts a whole test binary).
const CHILD_LIMIT: Duration = Duration::from_secs(60);

const DB_ENV: &str = "WORKFLOW_CRASH_DB";
const LOG_ENV: &str = "WORKFLOW_CRASH_LOG";
const MODE_ENV: &str = "WORKFLOW_CRASH_MODE";
const INSTANCE: &str = "crash-1";
const TIMER_INSTANCE: &str = "crash-timer-1";
const TIMER_MS: u64 = 1500;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    n: u32,
    acc: u64,
}

#[activity]
async fn crash_step(_ctx: ActivityContext, step: Step) -> Result<u64, ActivityError> {
    // Simulated work (the subject, not a wait): leaves the parent time to kill between steps.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let log = std::env::var(LOG_ENV).map_err(ActivityError::new)?;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    file.write_all(format!("{} {}\n", step.n, std::process::id()).as_bytes())?;
    Ok(step.acc * 10 + u64::from(step.n))
}

#[workflow]
async fn five_steps(ctx: WorkflowContext, start: u64) -> Result<u64, WorkflowError> {
    let mut acc = start;
    for n in 1..=5 {
        acc = crash_step::call(&ctx, Step { n, acc }).await?;
    }
    Ok(acc)
}

#[workflow]
async fn timer_then_step(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_millis(TIMER_MS)).await?;
    crash_step::call(&ctx, Step { n: 9, acc: 4 }).await
}

/// The child process's body; does nothing unless started by the parent test.
#[tokio::test]
#[ignore = "run by `crash_and_resume_in_a_real_process` as a child process"]
async fn crash_child() {
    let Ok(db) = std::env::var(DB_ENV) else { return };
    let runtime = Runtime::builder()
        .store(SqliteStore::open(&format!("sqlite://{db}")).await.unwrap())
        .worker_id("crash-worker")
        .workflow(five_steps::Workflow)
        .workflow(timer_then_step::Workflow)
        .activity(crash_step::Activity)
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let timer_mode = std::env::var(MODE_ENV).is_ok_and(|mode| mode == "timer");
    let (id, started) = if timer_mode {
        (TIMER_INSTANCE, timer_then_step::start(&client).id(TIMER_INSTANCE).await.map(drop))
    } else {
        (INSTANCE, five_steps::start(&client, 7).id(INSTANCE).await.map(drop))
    };
    match started {
        Ok(()) | Err(workflow::Error::InstanceExists(_)) => {}
        Err(error) => panic!("start failed: {error}"),
    }
    let output: u64 = client.result(id, Some(Duration::from_secs(60))).await.unwrap();
    println!("\nCRASH-CHILD-RESULT {output}");
}

fn child(db: &str, log: &str) -> Command {
    child_in_mode(db, log, "steps")
}

fn child_in_mode(db: &str, log: &str, mode: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["crash::crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(DB_ENV, db)
        .env(LOG_ENV, log)
        .env(MODE_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

fn child_result(child: std::process::Child) -> String {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the child failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.split_once("CRASH-CHILD-RESULT ").map(|(_, result)| result.trim().to_owned()))
        .unwrap_or_else(|| panic!("no result in the child's output: {stdout}"))
}

fn log_lines(log: &std::path::Path) -> Vec<(u32, u32)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let (n, pid) = line.split_once(' ').unwrap();
            (n.parse().unwrap(), pid.parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn crash_and_resume_in_a_real_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db").display().to_string();
    let log = dir.path().join("steps.log");
    let log_text = log.display().to_string();
    // Create the schema first so the parent can watch the file while the child runs.
    let store = SqliteStore::open(&format!("sqlite://{db}")).await.unwrap();

    let mut first = child(&db, &log_text).spawn().unwrap();
    let store_ref = &store;
    wait_until_within("the child to record step 3", CHILD_LIMIT, || {
        assert!(first.try_wait().unwrap().is_none(), "the child exited before step 3");
        async move {
            let journal = store_ref.journal(INSTANCE, 0).await.unwrap();
            journal.iter().any(|r| r.seq == 2 && r.status == RecordStatus::Completed)
        }
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let first_pid = first.id();
    let before = log_lines(&log);
    assert_eq!(before.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 2, 3], "steps 1-3 ran before the kill");

    let second = child(&db, &log_text).spawn().unwrap();
    assert_eq!(child_result(second), "712345", "7, then each step appends its number");

    let after = log_lines(&log);
    for n in 1..=3 {
        assert_eq!(after.iter().filter(|(step, _)| *step == n).count(), 1, "step {n} ran again after the restart");
    }
    for n in 4..=5 {
        let runs: Vec<u32> = after.iter().filter(|(step, _)| *step == n).map(|(_, pid)| *pid).collect();
        assert_eq!(runs.len(), 1, "step {n} should run once, after the restart: {runs:?}");
        assert_ne!(runs[0], first_pid, "step {n} ran in the killed process");
    }
    let journal = store.journal(INSTANCE, 0).await.unwrap();
    assert_eq!(journal.len(), 5);
    assert!(journal.iter().all(|r| r.status == RecordStatus::Completed && r.attempt == 1));
}

#[tokio::test]
async fn a_durable_timer_survives_a_process_kill_and_fires_once_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("timer.db").display().to_string();
    let log = dir.path().join("steps.log");
    let log_text = log.display().to_string();
    let store = SqliteStore::open(&format!("sqlite://{db}")).await.unwrap();

    let mut first = child_in_mode(&db, &log_text, "timer").spawn().unwrap();
    let store_ref = &store;
    let due = wait_for_value_within("the child to schedule the timer", CHILD_LIMIT, || {
        assert!(first.try_wait().unwrap().is_none(), "the child exited before it scheduled the timer");
        async move {
            let journal = store_ref.journal(TIMER_INSTANCE, 0).await.unwrap();
            let timer =
                journal.into_iter().find(|r| r.kind == StepKind::Timer && r.status == RecordStatus::Scheduled)?;
            Some(timer.due_at.expect("a scheduled timer has its due time"))
        }
    })
    .await;
    first.kill().unwrap(); // SIGKILL, before the timer is due
    first.wait().unwrap();
    assert!(log_lines(&log).is_empty(), "nothing ran past the timer before the kill");

    let second = child_in_mode(&db, &log_text, "timer").spawn().unwrap();
    assert_eq!(child_result(second), "49");
    let journal = store.journal(TIMER_INSTANCE, 0).await.unwrap();
    let timer = &journal[0];
    assert_eq!((timer.kind, timer.status, timer.due_at), (StepKind::Timer, RecordStatus::Completed, Some(due)));
    assert!(timer.recorded_at >= due, "the timer fired {} ms early", due - timer.recorded_at);
    assert_eq!(log_lines(&log).iter().filter(|(n, _)| *n == 9).count(), 1, "the step after the timer ran once");
}
