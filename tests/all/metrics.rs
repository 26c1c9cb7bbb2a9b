//! Metrics through the `metrics` facade: what a run of a few workflows records, read back from a
//! recorder installed for this test's thread (the runtime's tasks run on it: a current-thread
//! runtime).

use std::sync::atomic::{AtomicU32, Ordering};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
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

/// A histogram's samples taken by one snapshot: its name, its labels and how many.
type Sampled = (String, Vec<(String, String)>, usize);

/// What the recorder holds now (its histograms' samples are taken out).
fn recorded(snapshotter: &Snapshotter) -> Vec<Recorded> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            (key.name().to_owned(), labels, value)
        })
        .collect()
}

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

    let snapshot = recorded(&snapshotter);
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

/// Lets `held_metered` attempts finish, one permit each.
static METER_GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

/// One attempt at a time per key across workers; each waits for a permit.
#[activity(concurrency(limit = 1, key = |n: &u32| format!("k{}", n % 2)))]
async fn held_metered(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    METER_GATE.acquire().await.map_err(|_| ActivityError::non_retryable("closed"))?.forget();
    Ok(n)
}

#[workflow]
async fn queued_metered(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    held_metered::call(&ctx, n).await
}

/// The queue metrics: with sampling on, the gauges show each key's queue (one attempt held, the
/// others waiting) and fall to 0 once it empties; every attempt and instance taken records how
/// long it waited, under its queue's labels.
#[tokio::test]
async fn queues_are_metered() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let runtime = Runtime::builder()
        .store(MemoryStore::new())
        .workflow(queued_metered::Workflow)
        .activity(held_metered::Activity)
        .queue_metrics(Duration::from_millis(100))
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let client = runtime.client();
    let mut handles = Vec::new();
    for n in 0..5 {
        handles.push(queued_metered::start(&client, n).await.unwrap());
    }
    // A snapshot takes the histograms' samples out of the recorder: their counts are kept here.
    let samples: std::sync::Mutex<Vec<Sampled>> = std::sync::Mutex::default();
    let snapshot = || -> Vec<Recorded> {
        let now = recorded(&snapshotter);
        let histograms = now.iter().filter_map(|(name, labels, value)| match value {
            DebugValue::Histogram(taken) => Some((name.clone(), labels.clone(), taken.len())),
            _ => None,
        });
        samples.lock().unwrap().extend(histograms);
        now
    };
    use workflow::metrics::*;
    let gauge = |snapshot: &[Recorded], name: &str, key: &str| {
        value(snapshot, name, &[("kind", "activity"), ("name", "held_metered"), ("key", key)])
    };
    // Keys k0 (0, 2, 4) and k1 (1, 3): one attempt of each held, the rest waiting.
    crate::support::wait_until("the gauges to show both keys' queues", || {
        let now = snapshot();
        let seen =
            [gauge(&now, QUEUE_WAITING, "k0"), gauge(&now, QUEUE_RUNNING, "k0"), gauge(&now, QUEUE_WAITING, "k1")];
        async move { seen == [2.0, 1.0, 1.0] }
    })
    .await;
    METER_GATE.add_permits(5);
    for handle in handles {
        handle.result_timeout(Duration::from_secs(20)).await.unwrap();
    }
    crate::support::wait_until("the gauges to fall to 0", || {
        let now = snapshot();
        let seen =
            [gauge(&now, QUEUE_WAITING, "k0"), gauge(&now, QUEUE_RUNNING, "k0"), gauge(&now, QUEUE_RUNNING, "k1")];
        async move { seen == [0.0, 0.0, 0.0] }
    })
    .await;
    snapshot();
    let all = samples.lock().unwrap();
    let waits = |kind: &str, name: &str, key: &str| -> usize {
        let wanted = [("kind", kind), ("name", name), ("key", key)].map(|(k, v)| (k.to_owned(), v.to_owned()));
        all.iter().filter(|(n, labels, _)| n == QUEUE_WAIT_SECONDS && labels[..] == wanted[..]).map(|(_, _, n)| n).sum()
    };
    // Every attempt and every instance taken once.
    let attempts = waits("activity", "held_metered", "k0") + waits("activity", "held_metered", "k1");
    assert_eq!(attempts, 5, "{all:?}");
    assert_eq!(waits("workflow", "queued_metered", ""), 5, "{all:?}");
}
