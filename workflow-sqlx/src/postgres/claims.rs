//! Claims and leases: taking runnable instances and visible tasks for a worker (`FOR UPDATE SKIP
//! LOCKED`, so concurrent claimers never wait for each other), renewing and releasing a worker's
//! leases, and storing a claimed task's outcome, each one statement retried on a conflict.

use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;
use std::collections::{HashMap, HashSet};

use workflow_core::store::{
    key_room, ActivityCap, InstanceRecord, Millis, RateLimit, StoreError, TaskCompletion, TaskOutcome, TaskRecord,
    WakeSignal, WorkflowCap,
};

use super::checks::check_completion;
use super::retry::{failed, retrying, retrying_idempotent, Failure};
use super::signals::{encode_signal, notice};
use super::sql::{
    CLAIM, CLAIMABLE, CLAIM_KEY, CLAIM_KEY_RESUMPTIONS, CLAIM_KEY_STARTS, CLAIM_RESUMPTIONS, CLAIM_STARTS, CLAIM_TASKS,
    COMPLETE_TASK, COMPLETE_TASKS, COUNT_HOLDING, COUNT_RUNNING, COUNT_RUNNING_PER_KEY, COUNT_STARTS,
    COUNT_WORKFLOW_STARTS, COUNT_WORKFLOW_STARTS_PER_KEY, CUSTOM_PLANS, FAIL_DAMAGED, FORGET_STARTS,
    FORGET_WORKFLOW_STARTS, LOCK_CAP, LOCK_TASK_CAP, PICK_KEYED, RECORD_STARTS, RECORD_WORKFLOW_STARTS, RELEASE_LEASES,
    RENEW_INSTANCE_LEASES, RENEW_TASK_LEASES, SET_ASIDE, SET_ASIDE_TASK, STILL_OPEN, TAKE_TASKS, TASK_KEYS,
    WORKFLOW_KEYS,
};
use crate::shared::order::{instance_order, task_order};
use crate::shared::plan::TaskKey;
use crate::shared::quarantine::{Quarantine, SetAside};
use crate::shared::rows::{instance_from_row, task_from_row};
use crate::shared::{to_i64, RENEWAL_CHUNK};

/// Claims up to `limit` runnable instances of `workflows` for `worker` until `lease_until`,
/// oldest first. A claimed row that does not decode is set aside, not returned (see
/// `shared::quarantine`; `quarantine` counts its failed decodes).
pub(super) async fn claim(
    pool: &PgPool,
    quarantine: &Quarantine,
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
    let mut claimed = decoded(pool, quarantine, worker, &rows, now).await;
    claimed.sort_by(|a, b| instance_order(a).cmp(&instance_order(b)));
    Ok(claimed)
}

/// The claimed `rows` that decode. Each is decoded on its own: a damaged one must not strand the
/// healthy ones, which the committed claim made this worker's. (Setting it aside is a statement
/// of its own, after the claim's: a claim stays one round trip when every row decodes, as it
/// nearly always does.)
async fn decoded(
    pool: &PgPool,
    quarantine: &Quarantine,
    worker: &str,
    rows: &[PgRow],
    now: Millis,
) -> Vec<InstanceRecord> {
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        match instance_from_row(row) {
            Ok(record) => claimed.push(record),
            Err(error) => set_aside(pool, quarantine, worker, row, &error, now).await,
        }
    }
    quarantine.decoded(claimed.iter().map(|record| record.id.as_str()));
    claimed
}

/// Claims as [`claim`] does, taking no instance of a capped workflow past its cap (see
/// `Store::claim_capped`). Each capped workflow is claimed in a transaction of its own that first
/// takes the workflow's advisory lock ([`LOCK_CAP`]), so capped claims of one workflow, in any
/// process, count and claim one after the other; claims of other workflows do not wait. A
/// workflow with nothing claimable costs one read and no lock ([`CLAIMABLE`], skipped while its
/// last claim here left a backlog: [`CapBacklogs`]). Then the uncapped workflows are claimed with
/// what is left of `limit`, so a capped backlog never crowds them out.
#[allow(clippy::too_many_arguments)]
pub(super) async fn claim_capped(
    pool: &PgPool,
    quarantine: &Quarantine,
    backlogs: &CapBacklogs,
    worker: &str,
    workflows: &[String],
    caps: &[WorkflowCap],
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Result<Vec<InstanceRecord>, StoreError> {
    let mut capped: Vec<&WorkflowCap> = caps.iter().filter(|cap| workflows.contains(&cap.workflow)).collect();
    // One lock at a time, always in name order.
    capped.sort_by(|a, b| a.workflow.cmp(&b.workflow));
    let mut claimed = Vec::new();
    for cap in capped {
        let left = limit - claimed.len();
        if left == 0 {
            break;
        }
        // A look without the lock first, unless the last claim here left a backlog: a worker
        // looks whenever one of its instances ends (a place under the cap may have opened), and
        // with nothing waiting that look costs a read, not a transaction holding the lock the
        // workflow's claims and start leases wait for.
        if !backlogs.likely(&cap.workflow) {
            let claimable = retrying_idempotent(|| async move {
                let probe = sqlx::query_scalar(&CLAIMABLE).persistent(false).bind(cap.workflow.as_str()).bind(now);
                probe.fetch_one(pool).await.map_err(failed("looking for claimable instances"))
            });
            if !claimable.await? {
                continue;
            }
        }
        let (rows, more) = retrying(|| async move {
            let mut tx = pool.begin().await.map_err(failed("beginning a capped claim"))?;
            sqlx::query(LOCK_CAP)
                .bind(cap.workflow.as_str())
                .execute(&mut *tx)
                .await
                .map_err(failed("locking a workflow's cap"))?;
            if cap.keyed {
                let rows = claim_keyed(&mut tx, cap, worker, lease_until, now, left).await?;
                tx.commit().await.map_err(failed("committing a capped claim"))?;
                let more = !rows.is_empty();
                return Ok((rows, more));
            }
            let running: i64 = match cap.concurrency {
                Some(_) => sqlx::query_scalar(COUNT_RUNNING)
                    .bind(cap.workflow.as_str())
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(failed("counting running instances"))?,
                None => 0,
            };
            let started: i64 = match cap.rate {
                Some(rate) => {
                    forget_workflow_starts(&mut tx, &cap.workflow, rate, now).await?;
                    sqlx::query_scalar(COUNT_WORKFLOW_STARTS)
                        .bind(cap.workflow.as_str())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(failed("counting recent starts"))?
                }
                None => 0,
            };
            let to_u64 = |n: i64| u64::try_from(n).unwrap_or(0);
            let room = cap.room(to_u64(running), to_u64(started));
            let want = left.min(room.total);
            let workflow = cap.workflow.as_str();
            let rows = match room.starts {
                None => claim_one(&mut tx, &CLAIM, worker, lease_until, (workflow, None), now, want).await?,
                Some(starts) => {
                    let mut rows =
                        claim_one(&mut tx, &CLAIM_RESUMPTIONS, worker, lease_until, (workflow, None), now, want)
                            .await?;
                    let want = starts.min(want - rows.len());
                    let begun =
                        claim_one(&mut tx, &CLAIM_STARTS, worker, lease_until, (workflow, None), now, want).await?;
                    record_starts(&mut tx, workflow, "", now, begun.len()).await?;
                    rows.extend(begun);
                    rows
                }
            };
            tx.commit().await.map_err(failed("committing a capped claim"))?;
            // All it was let take (none, at the cap): more may wait.
            let more = rows.len() >= want;
            Ok((rows, more))
        })
        .await?;
        backlogs.note(&cap.workflow, more);
        claimed.extend(decoded(pool, quarantine, worker, &rows, now).await);
    }
    let uncapped: Vec<String> =
        workflows.iter().filter(|w| !caps.iter().any(|cap| &cap.workflow == *w)).cloned().collect();
    let rest = limit - claimed.len();
    if !uncapped.is_empty() && rest > 0 {
        claimed.extend(claim(pool, quarantine, worker, &uncapped, now, lease_until, rest).await?);
    }
    claimed.sort_by(|a, b| instance_order(a).cmp(&instance_order(b)));
    Ok(claimed)
}

/// The capped workflows whose last claim here took all it was let take (none, when at the cap):
/// more may wait, so the next claim goes straight to the lock. The others' claims look first.
#[derive(Debug, Default)]
pub(super) struct CapBacklogs(std::sync::Mutex<HashSet<String>>);

impl CapBacklogs {
    fn likely(&self, workflow: &str) -> bool {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(workflow)
    }

    fn note(&self, workflow: &str, more: bool) {
        let mut likely = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if more {
            likely.insert(workflow.to_owned());
        } else {
            likely.remove(workflow);
        }
    }
}

/// Claims up to `limit` instances of the workflow of `cap`, whose limits apply per concurrency
/// key, in the open transaction (which holds the workflow's advisory lock): the keys with
/// instances that may run ([`WORKFLOW_KEYS`]), then each key with room from its front, as the
/// unkeyed claim does for a whole workflow (resumptions first, then starts up to the rate's
/// room). Keys are served in key order; a claim that runs out of `limit` leaves the later keys to
/// the next one.
async fn claim_keyed(
    tx: &mut sqlx::PgConnection,
    cap: &WorkflowCap,
    worker: &str,
    lease_until: Millis,
    now: Millis,
    limit: usize,
) -> Result<Vec<PgRow>, Failure> {
    let workflow = cap.workflow.as_str();
    let running = per_key(
        sqlx::query_as(COUNT_RUNNING_PER_KEY)
            .bind(workflow)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("counting running instances per key"))?,
    );
    let started = match cap.rate {
        Some(rate) => {
            forget_workflow_starts(tx, workflow, rate, now).await?;
            per_key(
                sqlx::query_as(COUNT_WORKFLOW_STARTS_PER_KEY)
                    .bind(workflow)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(failed("counting recent starts per key"))?,
            )
        }
        None => HashMap::new(),
    };
    let keys: Vec<String> = sqlx::query_scalar(WORKFLOW_KEYS)
        .bind(workflow)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed("finding the concurrency keys with work"))?;
    let mut rows = Vec::new();
    for key in keys {
        let left = limit - rows.len();
        if left == 0 {
            break;
        }
        let count = |counts: &HashMap<String, u64>| counts.get(&key).copied().unwrap_or(0);
        let room = cap.room(count(&running), count(&started));
        let want = room.total.min(left);
        match room.starts {
            None => {
                rows.extend(claim_one(tx, &CLAIM_KEY, worker, lease_until, (workflow, Some(&key)), now, want).await?)
            }
            Some(starts) => {
                let resumed =
                    claim_one(tx, &CLAIM_KEY_RESUMPTIONS, worker, lease_until, (workflow, Some(&key)), now, want)
                        .await?;
                let want = starts.min(want - resumed.len());
                let begun =
                    claim_one(tx, &CLAIM_KEY_STARTS, worker, lease_until, (workflow, Some(&key)), now, want).await?;
                record_starts(tx, workflow, &key, now, begun.len()).await?;
                rows.extend(resumed);
                rows.extend(begun);
            }
        }
    }
    Ok(rows)
}

/// Per concurrency key, the tasks of `cap`'s activity holding a lease at `now` (if it is capped)
/// and its starts in the rate's window (if it has a rate; those a period old are forgotten
/// first, so the table holds one period): what a capped claim and a leasing write count, in a
/// transaction holding the activity's advisory lock.
pub(super) async fn running_and_started(
    tx: &mut sqlx::PgConnection,
    cap: &ActivityCap,
    now: Millis,
) -> Result<(HashMap<String, u64>, HashMap<String, u64>), Failure> {
    let name = cap.activity.as_str();
    let running = if cap.concurrency.is_some() {
        let holding = sqlx::query_as(COUNT_HOLDING).bind(name).bind(now).fetch_all(&mut *tx).await;
        per_key(holding.map_err(failed("counting running tasks"))?)
    } else {
        HashMap::new()
    };
    let started = match cap.rate {
        Some(rate) => {
            sqlx::query(FORGET_STARTS)
                .bind(name)
                .bind(now.saturating_sub(rate.period_ms))
                .execute(&mut *tx)
                .await
                .map_err(failed("forgetting old starts"))?;
            let recent = sqlx::query_as(COUNT_STARTS).bind(name).fetch_all(&mut *tx).await;
            per_key(recent.map_err(failed("counting recent starts"))?)
        }
        None => HashMap::new(),
    };
    Ok((running, started))
}

/// Counts per concurrency key, as the per-key counting statements return them.
pub(super) fn per_key(rows: Vec<(String, i64)>) -> HashMap<String, u64> {
    rows.into_iter().map(|(key, n)| (key, u64::try_from(n).unwrap_or(0))).collect()
}

/// Forgets `workflow`'s starts a period of `rate` old: they no longer count, and the table holds
/// one period.
pub(super) async fn forget_workflow_starts(
    tx: &mut sqlx::PgConnection,
    workflow: &str,
    rate: RateLimit,
    now: Millis,
) -> Result<(), Failure> {
    sqlx::query(FORGET_WORKFLOW_STARTS)
        .bind(workflow)
        .bind(now.saturating_sub(rate.period_ms))
        .execute(&mut *tx)
        .await
        .map_err(failed("forgetting old starts"))?;
    Ok(())
}

/// Records `begun` starts of `workflow` with concurrency `key` at `now`, against its rate.
async fn record_starts(
    tx: &mut sqlx::PgConnection,
    workflow: &str,
    key: &str,
    now: Millis,
    begun: usize,
) -> Result<(), Failure> {
    if begun > 0 {
        sqlx::query(RECORD_WORKFLOW_STARTS)
            .bind(workflow)
            .bind(now)
            .bind(to_i64(begun))
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(failed("recording rate-limited starts"))?;
    }
    Ok(())
}

/// Claims up to `want` instances of `workflow` with `statement` (one of the claims, [`CLAIM`] and
/// its kinds, or, with a concurrency `key`, [`CLAIM_KEY`] and its kinds) in the open transaction.
#[allow(clippy::too_many_arguments)]
async fn claim_one(
    tx: &mut sqlx::PgConnection,
    statement: &str,
    worker: &str,
    lease_until: Millis,
    (workflow, key): (&str, Option<&str>),
    now: Millis,
    want: usize,
) -> Result<Vec<PgRow>, Failure> {
    if want == 0 {
        return Ok(Vec::new());
    }
    let query = sqlx::query(statement).bind(worker).bind(lease_until).bind([workflow]).bind(now).bind(to_i64(want));
    let query = match key {
        Some(key) => query.bind(key),
        None => query,
    };
    query.fetch_all(&mut *tx).await.map_err(failed("claiming instances"))
}

/// Sets aside a claimed row that did not decode (`error`): undoes `worker`'s claim with a later
/// wake-up, or fails its instance (see `shared::quarantine`). A failure to write that is logged,
/// not returned: the healthy rows of the claim are returned all the same, and the row stays this
/// worker's until its process ends (it is not run: nothing can read it).
async fn set_aside(pool: &PgPool, quarantine: &Quarantine, worker: &str, row: &PgRow, error: &StoreError, now: Millis) {
    let Ok(id) = row.try_get::<String, _>("id") else {
        tracing::error!(%error, "postgres: a claimed instance row does not decode, nor does its id; it stays claimed");
        return;
    };
    let written = match quarantine.set_aside(&id, now, error) {
        SetAside::Later { wake_at } => {
            // As the claim found it: a start it made Running is Pending again.
            let status = row.try_get::<String, _>("status").ok();
            let updated_at = row.try_get::<i64, _>("updated_at").ok();
            retrying_idempotent(|| {
                let (id, status) = (id.as_str(), status.as_deref());
                async move {
                    sqlx::query(SET_ASIDE)
                        .bind(id)
                        .bind(worker)
                        .bind(wake_at)
                        .bind(status)
                        .bind(updated_at)
                        .execute(pool)
                        .await
                        .map_err(failed("setting a damaged row aside"))
                }
            })
            .await
        }
        SetAside::Fail { error } => {
            retrying_idempotent(|| {
                let (id, error) = (id.as_str(), error.as_str());
                async move {
                    sqlx::query(FAIL_DAMAGED)
                        .bind(id)
                        .bind(worker)
                        .bind(error)
                        .bind(now)
                        .execute(pool)
                        .await
                        .map_err(failed("failing a damaged instance"))
                }
            })
            .await
        }
    };
    if let Err(error) = written {
        tracing::error!(instance_id = %id, %error, "postgres: could not set a damaged row aside; it stays claimed");
    }
}

/// Extends every lease `worker` holds (of instances, and of unfinished tasks) to `lease_until`;
/// returns how many.
pub(super) async fn renew_leases(pool: &PgPool, worker: &str, lease_until: Millis) -> Result<u64, StoreError> {
    let mut renewed: i64 = retrying_idempotent(|| async move {
        sqlx::query_scalar(RENEW_TASK_LEASES)
            .bind(worker)
            .bind(lease_until)
            .fetch_one(pool)
            .await
            .map_err(failed("renewing task leases"))
    })
    .await?;
    // The instances a chunk at a time, each chunk its own statement (see `RENEW_INSTANCE_LEASES`).
    let mut after = String::new();
    loop {
        let (count, last): (i64, Option<String>) = retrying_idempotent(|| {
            let after = after.as_str();
            async move {
                sqlx::query_as(RENEW_INSTANCE_LEASES)
                    .bind(worker)
                    .bind(lease_until)
                    .bind(after)
                    .bind(to_i64(RENEWAL_CHUNK))
                    .fetch_one(pool)
                    .await
                    .map_err(failed("renewing leases"))
            }
        })
        .await?;
        renewed += count;
        match last {
            Some(last) if count >= to_i64(RENEWAL_CHUNK) => after = last,
            _ => break,
        }
    }
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
/// oldest first. A claimed row that does not decode is set aside, not returned (see
/// `Quarantine::set_aside_task`).
pub(super) async fn claim_tasks(
    pool: &PgPool,
    quarantine: &Quarantine,
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
    let mut claimed = decoded_tasks(pool, quarantine, worker, &rows, now).await;
    claimed.sort_by(|a, b| task_order(a).cmp(&task_order(b)));
    Ok(claimed)
}

/// Claims as [`claim_tasks`] does, taking no task of a capped activity past its cap (see
/// `Store::claim_tasks_capped`): a transaction per capped activity, behind an advisory lock of
/// that activity, counts its tasks holding a lease per key and takes, key by key, the oldest up
/// to each key's room (`activity_tasks_keyed` serves each key's front; the backlog is not read);
/// then the uncapped activities with what is left of `limit`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn claim_tasks_capped(
    pool: &PgPool,
    quarantine: &Quarantine,
    worker: &str,
    activities: &[String],
    caps: &[ActivityCap],
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Result<Vec<TaskRecord>, StoreError> {
    let mut capped: Vec<&ActivityCap> = caps.iter().filter(|cap| activities.contains(&cap.activity)).collect();
    // One lock at a time, always in name order.
    capped.sort_by(|a, b| a.activity.cmp(&b.activity));
    let mut claimed = Vec::new();
    for cap in capped {
        let left = limit - claimed.len();
        if left == 0 {
            break;
        }
        let rows = retrying(|| async move {
            let mut tx = pool.begin().await.map_err(failed("beginning a capped task claim"))?;
            sqlx::query(CUSTOM_PLANS).execute(&mut *tx).await.map_err(failed("planning a capped task claim"))?;
            let name = cap.activity.as_str();
            sqlx::query(LOCK_TASK_CAP)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(failed("locking an activity's cap"))?;
            let (running, started) = running_and_started(&mut tx, cap, now).await?;
            let keys: Vec<String> = sqlx::query_scalar(TASK_KEYS)
                .bind(name)
                .fetch_all(&mut *tx)
                .await
                .map_err(failed("reading concurrency keys"))?;
            let mut picks: Vec<(i64, i64, String, i64, i64)> = Vec::new();
            for (key, room) in key_room(cap, &running, &started, &keys) {
                let rows: Vec<(i64, i64, String, i64, i64)> = sqlx::query_as(PICK_KEYED)
                    .bind(name)
                    .bind(key)
                    .bind(now)
                    .bind(to_i64(room.min(left)))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(failed("picking capped tasks"))?;
                picks.extend(rows);
            }
            picks.sort();
            picks.truncate(left);
            let rows = if picks.is_empty() {
                Vec::new()
            } else {
                sqlx::query(&TAKE_TASKS)
                    .bind(worker)
                    .bind(lease_until)
                    .bind(picks.iter().map(|p| p.2.as_str()).collect::<Vec<_>>())
                    .bind(picks.iter().map(|p| p.3).collect::<Vec<_>>())
                    .bind(picks.iter().map(|p| p.4).collect::<Vec<_>>())
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(failed("claiming capped tasks"))?
            };
            if cap.rate.is_some() && !rows.is_empty() {
                let keys: Vec<String> =
                    rows.iter().map(|row| row.try_get("concurrency_key").unwrap_or_default()).collect();
                sqlx::query(RECORD_STARTS)
                    .bind(name)
                    .bind(keys)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("recording rate-limited starts"))?;
            }
            tx.commit().await.map_err(failed("committing a capped task claim"))?;
            Ok(rows)
        })
        .await?;
        claimed.extend(decoded_tasks(pool, quarantine, worker, &rows, now).await);
    }
    let uncapped: Vec<String> =
        activities.iter().filter(|a| !caps.iter().any(|cap| &cap.activity == *a)).cloned().collect();
    let rest = limit - claimed.len();
    if !uncapped.is_empty() && rest > 0 {
        claimed.extend(claim_tasks(pool, quarantine, worker, &uncapped, now, lease_until, rest).await?);
    }
    claimed.sort_by(|a, b| task_order(a).cmp(&task_order(b)));
    Ok(claimed)
}

/// The claimed task rows that decode; the others are set aside.
async fn decoded_tasks(
    pool: &PgPool,
    quarantine: &Quarantine,
    worker: &str,
    rows: &[PgRow],
    now: Millis,
) -> Vec<TaskRecord> {
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        match task_from_row(row) {
            Ok(task) => claimed.push(task),
            Err(error) => set_aside_task(pool, quarantine, worker, row, &error, now).await,
        }
    }
    claimed
}

/// Sets aside a claimed task row that did not decode (`error`): undoes `worker`'s claim and makes
/// it visible again later. A failure to write that, or a row whose key does not read, is logged:
/// the row stays this worker's until its process ends, the healthy tasks are returned all the
/// same.
async fn set_aside_task(
    pool: &PgPool,
    quarantine: &Quarantine,
    worker: &str,
    row: &PgRow,
    error: &StoreError,
    now: Millis,
) {
    let key =
        (row.try_get::<String, _>("instance_id"), row.try_get::<i64, _>("generation"), row.try_get::<i64, _>("seq"));
    let (Ok(instance_id), Ok(generation), Ok(seq)) = key else {
        tracing::error!(%error, "postgres: a claimed task row does not decode, nor does its key; it stays claimed");
        return;
    };
    let visible_at = quarantine.set_aside_task(&format!("{instance_id}/{generation}/{seq}"), now, error);
    let written = retrying_idempotent(|| {
        let instance_id = instance_id.as_str();
        async move {
            sqlx::query(SET_ASIDE_TASK)
                .bind(instance_id)
                .bind(generation)
                .bind(seq)
                .bind(worker)
                .bind(visible_at)
                .execute(pool)
                .await
                .map_err(failed("setting a damaged task aside"))
        }
    })
    .await;
    if let Err(error) = written {
        tracing::error!(%instance_id, seq, %error, "postgres: could not set a damaged task aside; it stays claimed");
    }
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

/// Stores many outcomes as [`complete_task`] stores one, in one statement; returns whether each
/// was stored. Rows locked elsewhere are skipped and tried again (see `COMPLETE_TASKS`) while
/// they stay open; if some still are after a few tries, an error, so the caller reports those one
/// by one (a single row cannot deadlock). Idempotent as `complete_task` is.
pub(super) async fn complete_tasks(
    pool: &PgPool,
    channel: &str,
    worker: &str,
    completions: &[TaskCompletion],
) -> Result<Vec<bool>, StoreError> {
    for c in completions {
        check_completion(worker, &c.instance_id, c.seq, &c.outcome.payload)?;
    }
    let key =
        |c: &TaskCompletion| (c.instance_id.clone(), i64::from(c.generation), i64::from(c.seq), i64::from(c.attempt));
    let mut stored = vec![false; completions.len()];
    let mut open: Vec<usize> = (0..completions.len()).collect();
    let mut pause = std::time::Duration::from_millis(2);
    for _ in 0..6 {
        let batch: Vec<&TaskCompletion> = open.iter().map(|&i| &completions[i]).collect();
        let notices: Vec<Option<String>> =
            batch.iter().map(|c| notice(&WakeSignal::TaskDone(c.instance_id.clone()))).collect();
        let rows: Vec<(String, i64, i64, i64, bool)> = retrying_idempotent(|| {
            let (batch, notices) = (&batch, &notices);
            async move {
                sqlx::query_as(COMPLETE_TASKS)
                    .bind(batch.iter().map(|c| c.instance_id.as_str()).collect::<Vec<_>>())
                    .bind(batch.iter().map(|c| i64::from(c.generation)).collect::<Vec<_>>())
                    .bind(batch.iter().map(|c| i64::from(c.seq)).collect::<Vec<_>>())
                    .bind(batch.iter().map(|c| i64::from(c.attempt)).collect::<Vec<_>>())
                    .bind(batch.iter().map(|c| c.outcome.succeeded).collect::<Vec<_>>())
                    .bind(batch.iter().map(|c| c.outcome.payload.as_str()).collect::<Vec<_>>())
                    .bind(batch.iter().map(|c| c.outcome.finished_at).collect::<Vec<_>>())
                    .bind(worker)
                    .bind(channel)
                    .bind(notices)
                    .fetch_all(pool)
                    .await
                    .map_err(failed("completing tasks"))
            }
        })
        .await?;
        let done: HashSet<(String, i64, i64, i64)> = rows.into_iter().map(|(i, g, s, a, _)| (i, g, s, a)).collect();
        open.retain(|&i| {
            let taken = done.contains(&key(&completions[i]));
            stored[i] |= taken;
            !taken
        });
        if open.is_empty() {
            return Ok(stored);
        }
        let left: Vec<&TaskCompletion> = open.iter().map(|&i| &completions[i]).collect();
        let still: Vec<(String, i64, i64, i64)> = retrying_idempotent(|| {
            let left = &left;
            async move {
                sqlx::query_as(STILL_OPEN)
                    .bind(left.iter().map(|c| c.instance_id.as_str()).collect::<Vec<_>>())
                    .bind(left.iter().map(|c| i64::from(c.generation)).collect::<Vec<_>>())
                    .bind(left.iter().map(|c| i64::from(c.seq)).collect::<Vec<_>>())
                    .bind(left.iter().map(|c| i64::from(c.attempt)).collect::<Vec<_>>())
                    .bind(worker)
                    .fetch_all(pool)
                    .await
                    .map_err(failed("reading open tasks"))
            }
        })
        .await?;
        let still: HashSet<(String, i64, i64, i64)> = still.into_iter().collect();
        open.retain(|&i| still.contains(&key(&completions[i])));
        if open.is_empty() {
            return Ok(stored);
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    Err(StoreError::Backend(format!("postgres: {} task outcomes stayed locked by other transactions", open.len())))
}
