//! Metrics through the `metrics` facade: what a run of a few workflows records, read back from a
//! recorder installed for this test's thread (the runtime's tasks run on it: a current-thread
//! runtime).

use std::sync::atomic::{AtomicU32, Ordering};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use workflow::prelude::*;
use workflow::store::MemoryStore;

/// Fails its first attempt of each run of the test, then succeeds.
#[activity(retry(max_attempts = 3, first_interval = "1ms"))]
async fn flaky_metered(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(ActivityError::new("first attempt fails"));
    }
    Ok(n + 1)
}

#[workflow]
async fn metered(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    if n == 0 {
        return Err(WorkflowError::msg("zero is refused"));
    }
    flaky_metered::call(&ctx, n).await
}

/// A recorded metric: its name, its labels and its value.
type Recorded = (String, Vec<(String, String)>, DebugValue);

/// The value of the metric `name` with exactly these labels, summed over what was recorded.
fn value(snapshot: &[Recorded], name: &str, labels: &[(&str, &str)]) -> f64 {
    snapshot
        .iter()
        .filter(|(n, l, _)| {
            n == name && l.len() == labels.len() && labels.iter().all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|(_, _, value)| match value {
            DebugValue::Counter(n) => *n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(samples) => samples.len() as f64,
        })
        .sum()
}

/// One workflow that completes after one retried activity attempt and one that fails: started 2,
/// finished 1 Completed and 1 Failed, two attempts (one failed, one completed) with their
/// durations, one retry, and every group commit with its ops and time.
#[tokio::test]
async fn a_run_records_its_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let runtime = Runtime::builder()
        .store(MemoryStore::new())
        .workflow(metered::Workflow)
        .activity(flaky_metered::Activity)
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    assert_eq!(metered::start(&client, 1).await.unwrap().result_timeout(Duration::from_secs(20)).await.unwrap(), 2);
    let failed = metered::start(&client, 0).await.unwrap().result_timeout(Duration::from_secs(20)).await;
    assert!(failed.is_err());
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();

    let snapshot: Vec<Recorded> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    use workflow::metrics::*;
    assert_eq!(value(&snapshot, INSTANCES_STARTED, &[("workflow", "metered")]), 2.0, "{snapshot:?}");
    let finished = |status| value(&snapshot, INSTANCES_FINISHED, &[("workflow", "metered"), ("status", status)]);
    assert_eq!((finished("Completed"), finished("Failed")), (1.0, 1.0), "{snapshot:?}");
    let attempts =
        |outcome| value(&snapshot, ACTIVITY_ATTEMPTS, &[("activity", "flaky_metered"), ("outcome", outcome)]);
    assert_eq!((attempts("failed"), attempts("completed")), (1.0, 1.0), "{snapshot:?}");
    assert_eq!(value(&snapshot, ACTIVITY_ATTEMPT_SECONDS, &[("activity", "flaky_metered")]), 2.0, "two samples");
    assert_eq!(value(&snapshot, ACTIVITY_RETRIES, &[("activity", "flaky_metered")]), 1.0, "{snapshot:?}");
    let commits = value(&snapshot, COMMITS, &[]);
    assert!(commits >= 4.0, "two starts and two ends at least: {commits}");
    assert_eq!(value(&snapshot, COMMIT_OPS, &[]), commits, "one ops sample per commit");
    assert_eq!(value(&snapshot, COMMIT_SECONDS, &[]), commits, "one time sample per commit");
}
