//! Metrics, through the `metrics` crate's facade: the engine records them whatever the process
//! collects; install a recorder (`metrics-exporter-prometheus`, or any other) to collect them.
//! Without one, recording is a no-op.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `workflow_instances_started_total` | counter | `workflow` | instances that began to run here (a start run at once, or the first claim of a Pending instance) |
//! | `workflow_instances_finished_total` | counter | `workflow`, `status` (`Completed`, `Failed`) | instances whose end this worker recorded |
//! | `workflow_activity_attempts_total` | counter | `activity`, `outcome` (`completed`, `failed`) | activity attempts run here |
//! | `workflow_activity_attempt_seconds` | histogram | `activity` | how long each attempt ran |
//! | `workflow_activity_retries_total` | counter | `activity` | failed attempts that will be retried |
//! | `workflow_commits_total` | counter | | group commits (store write transactions) of this process |
//! | `workflow_commit_ops` | histogram | | ops per group commit |
//! | `workflow_commit_seconds` | histogram | | how long each group commit took |
//! | `workflow_queue_wait_seconds` | histogram | `kind` (`activity`, `workflow`), `name`, `key` | how long an item waited before a worker here took it: a queued activity attempt from when it became due to its claim, an instance from its creation to its first run (a delayed or debounced start's delay included) |
//! | `workflow_queue_waiting` | gauge | `kind`, `name`, `key` | items waiting in each queue (activity attempts no worker holds, Pending instances), sampled every `RuntimeBuilder::queue_metrics` interval (off by default) |
//! | `workflow_queue_running` | gauge | `kind`, `name`, `key` | items held in each queue (attempts under a live lease, Running instances), sampled likewise |
//! | `workflow_dead_worker_leases_released_total` | counter | | leases of workers whose process died that this worker released for takeover |
//!
//! Install the recorder before the runtime records anything: the engine registers each metric of
//! a workflow, an activity and the group committer the first time it records it, and keeps the
//! handle (recording is then an atomic add, not a lookup by name and labels).
//!
//! The queue gauges count the whole store, so every worker that samples them reports the same
//! figures: aggregate them with `max`, not `sum`. A queue that empties is reported as 0 at the next
//! sample after it was last seen.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram};

use crate::store::{Millis, QueueDepth, QueueKind};

/// Instances that began to run here.
pub const INSTANCES_STARTED: &str = "workflow_instances_started_total";
/// Instances whose end this worker recorded, by status.
pub const INSTANCES_FINISHED: &str = "workflow_instances_finished_total";
/// Activity attempts run here, by outcome.
pub const ACTIVITY_ATTEMPTS: &str = "workflow_activity_attempts_total";
/// How long each activity attempt ran, in seconds.
pub const ACTIVITY_ATTEMPT_SECONDS: &str = "workflow_activity_attempt_seconds";
/// Failed activity attempts that will be retried.
pub const ACTIVITY_RETRIES: &str = "workflow_activity_retries_total";
/// Group commits of this process.
pub const COMMITS: &str = "workflow_commits_total";
/// Ops per group commit.
pub const COMMIT_OPS: &str = "workflow_commit_ops";
/// How long each group commit took, in seconds.
pub const COMMIT_SECONDS: &str = "workflow_commit_seconds";
/// How long a queued item waited before a worker here took it, in seconds.
pub const QUEUE_WAIT_SECONDS: &str = "workflow_queue_wait_seconds";
/// Items waiting in a queue (sampled).
pub const QUEUE_WAITING: &str = "workflow_queue_waiting";
/// Items held in a queue (sampled).
pub const QUEUE_RUNNING: &str = "workflow_queue_running";
/// Leases of dead workers released here for takeover.
pub const DEAD_WORKER_LEASES_RELEASED: &str = "workflow_dead_worker_leases_released_total";

fn kind_label(kind: QueueKind) -> &'static str {
    match kind {
        QueueKind::Activity => "activity",
        QueueKind::Workflow => "workflow",
    }
}

/// One workflow's metrics. The engine keeps one per registered workflow and registers its
/// handles the first time it records, so recording is an atomic add, not a lookup by name.
#[derive(Default)]
pub(crate) struct WorkflowMetrics(OnceLock<WorkflowHandles>);

struct WorkflowHandles {
    started: Counter,
    completed: Counter,
    failed: Counter,
}

impl WorkflowMetrics {
    fn handles(&self, workflow: &str) -> &WorkflowHandles {
        self.0.get_or_init(|| WorkflowHandles {
            started: metrics::counter!(INSTANCES_STARTED, "workflow" => workflow.to_owned()),
            completed: metrics::counter!(INSTANCES_FINISHED, "workflow" => workflow.to_owned(), "status" => "Completed"),
            failed: metrics::counter!(INSTANCES_FINISHED, "workflow" => workflow.to_owned(), "status" => "Failed"),
        })
    }

    pub(crate) fn started(&self, workflow: &str) {
        self.handles(workflow).started.increment(1);
    }

    pub(crate) fn finished(&self, workflow: &str, completed: bool) {
        let handles = self.handles(workflow);
        if completed { &handles.completed } else { &handles.failed }.increment(1);
    }
}

/// One activity's metrics, kept like [`WorkflowMetrics`].
#[derive(Default)]
pub(crate) struct ActivityMetrics(OnceLock<ActivityHandles>);

struct ActivityHandles {
    completed: Counter,
    failed: Counter,
    seconds: Histogram,
    retries: Counter,
}

impl ActivityMetrics {
    fn handles(&self, activity: &str) -> &ActivityHandles {
        self.0.get_or_init(|| ActivityHandles {
            completed: metrics::counter!(ACTIVITY_ATTEMPTS, "activity" => activity.to_owned(), "outcome" => "completed"),
            failed: metrics::counter!(ACTIVITY_ATTEMPTS, "activity" => activity.to_owned(), "outcome" => "failed"),
            seconds: metrics::histogram!(ACTIVITY_ATTEMPT_SECONDS, "activity" => activity.to_owned()),
            retries: metrics::counter!(ACTIVITY_RETRIES, "activity" => activity.to_owned()),
        })
    }

    pub(crate) fn attempt(&self, activity: &str, completed: bool, took: Duration) {
        let handles = self.handles(activity);
        if completed { &handles.completed } else { &handles.failed }.increment(1);
        handles.seconds.record(took.as_secs_f64());
    }

    pub(crate) fn retry(&self, activity: &str) {
        self.handles(activity).retries.increment(1);
    }
}

/// A retry of an activity this process has not registered (its attempts run elsewhere).
pub(crate) fn activity_retry(activity: &str) {
    metrics::counter!(ACTIVITY_RETRIES, "activity" => activity.to_owned()).increment(1);
}

/// The group committer's metrics, kept like [`WorkflowMetrics`].
#[derive(Default)]
pub(crate) struct CommitMetrics(OnceLock<(Counter, Histogram, Histogram)>);

impl CommitMetrics {
    pub(crate) fn commit(&self, ops: usize, took: Duration) {
        let (commits, sizes, times) = self.0.get_or_init(|| {
            (metrics::counter!(COMMITS), metrics::histogram!(COMMIT_OPS), metrics::histogram!(COMMIT_SECONDS))
        });
        commits.increment(1);
        sizes.record(ops as f64);
        times.record(took.as_secs_f64());
    }
}

/// An item of queue `kind`/`name`/`key` taken at `now`, having been due since `since`.
pub(crate) fn queue_wait(kind: QueueKind, name: &str, key: &str, since: Millis, now: Millis) {
    let waited = Duration::from_millis(u64::try_from(now.saturating_sub(since)).unwrap_or(0));
    let labels = [("kind", kind_label(kind).to_owned()), ("name", name.to_owned()), ("key", key.to_owned())];
    metrics::histogram!(QUEUE_WAIT_SECONDS, &labels).record(waited.as_secs_f64());
}

/// Sets the queue gauges from one sample; `gone` are queues an earlier sample saw and this one
/// does not (set to 0).
pub(crate) fn queue_depths(depths: &[QueueDepth], gone: &[(QueueKind, String, String)]) {
    let labels = |kind: QueueKind, name: &str, key: &str| {
        [("kind", kind_label(kind).to_owned()), ("name", name.to_owned()), ("key", key.to_owned())]
    };
    for depth in depths {
        let labels = labels(depth.kind, &depth.name, &depth.concurrency_key);
        metrics::gauge!(QUEUE_WAITING, &labels).set(depth.waiting as f64);
        metrics::gauge!(QUEUE_RUNNING, &labels).set(depth.running as f64);
    }
    for (kind, name, key) in gone {
        let labels = labels(*kind, name, key);
        metrics::gauge!(QUEUE_WAITING, &labels).set(0.0);
        metrics::gauge!(QUEUE_RUNNING, &labels).set(0.0);
    }
}

pub(crate) fn dead_worker_leases_released(released: u64) {
    metrics::counter!(DEAD_WORKER_LEASES_RELEASED).increment(released);
}
