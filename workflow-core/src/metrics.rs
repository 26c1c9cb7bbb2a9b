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

use std::time::Duration;

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

pub(crate) fn instance_started(workflow: &str) {
    metrics::counter!(INSTANCES_STARTED, "workflow" => workflow.to_owned()).increment(1);
}

pub(crate) fn instance_finished(workflow: &str, completed: bool) {
    let status = if completed { "Completed" } else { "Failed" };
    metrics::counter!(INSTANCES_FINISHED, "workflow" => workflow.to_owned(), "status" => status).increment(1);
}

pub(crate) fn activity_attempt(activity: &str, completed: bool, took: Duration) {
    let outcome = if completed { "completed" } else { "failed" };
    metrics::counter!(ACTIVITY_ATTEMPTS, "activity" => activity.to_owned(), "outcome" => outcome).increment(1);
    metrics::histogram!(ACTIVITY_ATTEMPT_SECONDS, "activity" => activity.to_owned()).record(took.as_secs_f64());
}

pub(crate) fn activity_retry(activity: &str) {
    metrics::counter!(ACTIVITY_RETRIES, "activity" => activity.to_owned()).increment(1);
}

pub(crate) fn commit(ops: usize, took: Duration) {
    metrics::counter!(COMMITS).increment(1);
    metrics::histogram!(COMMIT_OPS).record(ops as f64);
    metrics::histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
}
