//! Claims and leases: taking runnable instances and visible tasks for a worker (`FOR UPDATE SKIP
//! LOCKED`, so concurrent claimers never wait for each other), renewing and releasing a worker's
//! leases, and storing a claimed task's outcome, each one statement retried on a conflict.

use sqlx::postgres::PgPool;
use workflow_core::store::{InstanceRecord, Millis, StoreError, TaskOutcome, TaskRecord, WakeSignal};

use super::checks::check_completion;
use super::retry::{failed, retrying, retrying_idempotent};
use super::signals::{encode_signal, notice};
use super::sql::{CLAIM, CLAIM_TASKS, COMPLETE_TASK, RELEASE_LEASES, RENEW_LEASES};
use crate::shared::order::{instance_order, task_order};
use crate::shared::plan::TaskKey;
use crate::shared::rows::{instance_from_row, task_from_row};
use crate::shared::to_i64;

/// Claims up to `limit` runnable instances of `workflows` for `worker` until `lease_until`,
/// oldest first.
pub(super) async fn claim(
    pool: &PgPool,
    worker: &str,
    workflows: &[String],
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Result<Vec<InstanceRecord>, StoreError> {
    if workflows.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let rows = retrying(|| async move {
        sqlx::query(&CLAIM)
            .bind(worker)
            .bind(lease_until)
            .bind(workflows)
            .bind(now)
            .bind(to_i64(limit))
            .fetch_all(pool)
            .await
            .map_err(failed("claiming instances"))
    })
    .await?;
    let mut claimed = rows.iter().map(instance_from_row).collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by(|a, b| instance_order(a).cmp(&instance_order(b)));
    Ok(claimed)
}

/// Extends every lease `worker` holds (of instances, and of unfinished tasks) to `lease_until`;
/// returns how many.
pub(super) async fn renew_leases(pool: &PgPool, worker: &str, lease_until: Millis) -> Result<u64, StoreError> {
    let renewed: i64 = retrying_idempotent(|| async move {
        sqlx::query_scalar(RENEW_LEASES)
            .bind(worker)
            .bind(lease_until)
            .fetch_one(pool)
            .await
            .map_err(failed("renewing leases"))
    })
    .await?;
    Ok(u64::try_from(renewed).unwrap_or_default())
}

/// Gives up every lease `worker` holds, signalling on `channel` what became claimable; returns
/// how many.
pub(super) async fn release_leases(pool: &PgPool, channel: &str, worker: &str) -> Result<u64, StoreError> {
    // The signals go in the same statement, so they are sent exactly when leases were released,
    // at their commit: Runnable for instances, TaskQueued for tasks.
    let released: i64 = retrying_idempotent(|| async move {
        sqlx::query_scalar(RELEASE_LEASES)
            .bind(worker)
            .bind(channel)
            .bind(encode_signal(&WakeSignal::Runnable))
            .bind(encode_signal(&WakeSignal::TaskQueued))
            .fetch_one(pool)
            .await
            .map_err(failed("releasing leases"))
    })
    .await?;
    Ok(u64::try_from(released).unwrap_or_default())
}

/// Claims up to `limit` tasks of `activities` visible at `now` for `worker` until `lease_until`,
/// oldest first.
pub(super) async fn claim_tasks(
    pool: &PgPool,
    worker: &str,
    activities: &[String],
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Result<Vec<TaskRecord>, StoreError> {
    if activities.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let rows = retrying(|| async move {
        sqlx::query(&CLAIM_TASKS)
            .bind(worker)
            .bind(lease_until)
            .bind(activities)
            .bind(now)
            .bind(to_i64(limit))
            .fetch_all(pool)
            .await
            .map_err(failed("claiming tasks"))
    })
    .await?;
    let mut claimed = rows.iter().map(task_from_row).collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by(|a, b| task_order(a).cmp(&task_order(b)));
    Ok(claimed)
}

/// Stores the outcome of the task `key`'s attempt `attempt`, if `worker` still holds it and it
/// has none yet, signalling `TaskDone` on `channel`; returns whether it did.
pub(super) async fn complete_task(
    pool: &PgPool,
    channel: &str,
    worker: &str,
    (instance_id, generation, seq): TaskKey<'_>,
    attempt: u32,
    outcome: &TaskOutcome,
) -> Result<bool, StoreError> {
    check_completion(worker, instance_id, seq, &outcome.payload)?;
    // The TaskDone signal goes in the same statement, so it is sent exactly when the outcome
    // was stored, at its commit.
    let signal = notice(&WakeSignal::TaskDone(instance_id.to_owned()));
    // Idempotent: a second try after a first that committed in doubt finds the outcome stored
    // and reports nothing, which the caller takes as "not mine any more"; the outcome is there.
    let completed: i64 = retrying_idempotent(|| {
        let signal = signal.as_deref();
        async move {
            sqlx::query_scalar(COMPLETE_TASK)
                .bind(instance_id)
                .bind(i64::from(generation))
                .bind(i64::from(seq))
                .bind(i64::from(attempt))
                .bind(worker)
                .bind(outcome.succeeded)
                .bind(outcome.payload.as_str())
                .bind(outcome.finished_at)
                .bind(channel)
                .bind(signal)
                .fetch_one(pool)
                .await
                .map_err(failed("completing a task"))
        }
    })
    .await?;
    Ok(completed > 0)
}
