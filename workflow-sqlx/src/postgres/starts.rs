//! Taking start leases in a write (`Store::write_leasing`, `Lease::Start`): a flow-controlled
//! workflow's instance created by the write is leased to its creator at once when the workflow's
//! limits have room and nothing of it waits for a claim, behind the workflow's advisory lock that
//! every capped claim of it takes too.

use std::collections::HashSet;

use sqlx::postgres::PgConnection;
use workflow_core::store::{StartGroup, StartLease};

use super::retry::{failed, Failure};
use super::sql::{
    COUNT_RUNNING, COUNT_RUNNING_OF_KEY, COUNT_WORKFLOW_STARTS, COUNT_WORKFLOW_STARTS_OF_KEY, FORGET_WORKFLOW_STARTS,
    LOCK_CAP, OTHERS_WAIT, RECORD_WORKFLOW_STARTS, TAKE_STARTS,
};
use crate::shared::to_i64;

/// Takes the advisory locks of the workflows `leases` are of, in name order, in the open
/// transaction: before any row lock, as a capped claim takes its workflow's.
pub(super) async fn lock_workflows(tx: &mut PgConnection, leases: &[StartLease]) -> Result<(), Failure> {
    let mut workflows: Vec<&str> = leases.iter().map(|lease| lease.cap.workflow.as_str()).collect();
    workflows.sort_unstable();
    workflows.dedup();
    for workflow in workflows {
        sqlx::query(LOCK_CAP).bind(workflow).execute(&mut *tx).await.map_err(failed("locking a workflow's cap"))?;
    }
    Ok(())
}

/// Takes what it can of `leases` in the open transaction, which holds their workflows' locks
/// ([`lock_workflows`]), after the batch's ops (see `Store::write_leasing`): per workflow and
/// counted key, its live leases and its window's starts counted once, and nothing taken while an
/// instance it does not hold waits for a claim; then the first of the group that fit, each only
/// if its instance is one this write created (not in `existing`) and still unowned, Pending and
/// due.
pub(super) async fn take_starts(
    tx: &mut PgConnection,
    leases: &[StartLease],
    existing: &HashSet<&str>,
) -> Result<Vec<bool>, Failure> {
    let mut taken = vec![false; leases.len()];
    for group in StartGroup::of(leases, existing) {
        let workflow = group.cap.workflow.as_str();
        let key = group.cap.keyed.then_some(group.key);
        let running: i64 = match group.cap.concurrency {
            None => 0,
            Some(_) => match key {
                None => sqlx::query_scalar(COUNT_RUNNING).bind(workflow).bind(group.now),
                Some(key) => sqlx::query_scalar(COUNT_RUNNING_OF_KEY).bind(workflow).bind(group.now).bind(key),
            }
            .fetch_one(&mut *tx)
            .await
            .map_err(failed("counting running instances"))?,
        };
        let started: i64 = match group.cap.rate {
            Some(rate) => {
                sqlx::query(FORGET_WORKFLOW_STARTS)
                    .bind(workflow)
                    .bind(group.now.saturating_sub(rate.period_ms))
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("forgetting old starts"))?;
                let count = match key {
                    None => sqlx::query_scalar(COUNT_WORKFLOW_STARTS).bind(workflow),
                    Some(key) => sqlx::query_scalar(COUNT_WORKFLOW_STARTS_OF_KEY).bind(workflow).bind(key),
                };
                count.fetch_one(&mut *tx).await.map_err(failed("counting recent starts"))?
            }
            None => 0,
        };
        let others_wait: bool = sqlx::query_scalar(OTHERS_WAIT)
            .bind(workflow)
            .bind(group.now)
            .bind(group.ids(leases))
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(failed("looking for waiting instances"))?;
        let to_u64 = |n: i64| u64::try_from(n).unwrap_or(0);
        let mut begun = 0;
        for run in group.runs(leases, group.to_take(to_u64(running), to_u64(started), others_wait)) {
            let until = run.iter().map(|i| leases[*i].lease_until).max().unwrap_or_default();
            let returned: Vec<String> = sqlx::query_scalar(TAKE_STARTS)
                .bind(leases[run[0]].owner.as_str())
                .bind(until)
                .bind(group.now)
                .bind(run.iter().map(|i| leases[*i].instance_id.as_str()).collect::<Vec<_>>())
                .fetch_all(&mut *tx)
                .await
                .map_err(failed("taking start leases"))?;
            begun += StartGroup::mark_taken(leases, &run, &returned, &mut taken);
        }
        if group.cap.rate.is_some() && begun > 0 {
            sqlx::query(RECORD_WORKFLOW_STARTS)
                .bind(workflow)
                .bind(group.now)
                .bind(to_i64(begun))
                .bind(group.key)
                .execute(&mut *tx)
                .await
                .map_err(failed("recording rate-limited starts"))?;
        }
    }
    Ok(taken)
}
