//! Taking start leases in a write (`Store::write_leasing`, `Lease::Start`): a flow-controlled
//! workflow's instance created by the write is leased to its creator at once when the workflow's
//! limits have room and nothing of it waits for a claim, behind the workflow's advisory lock that
//! every capped claim of it takes too.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::PgConnection;
use workflow_core::store::{Millis, StartGroup, StartLease};

use super::claims::{forget_workflow_starts, per_key};
use super::retry::{failed, Failure};
use super::sql::{
    COUNT_RUNNING, COUNT_RUNNING_OF_KEYS, COUNT_WORKFLOW_STARTS, COUNT_WORKFLOW_STARTS_OF_KEYS, KEYS_OTHERS_WAIT_UNDER,
    LOCK_CAP, OTHERS_WAIT, RECORD_WORKFLOW_STARTS_OF_KEYS, TAKE_STARTS,
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
/// ([`lock_workflows`]), after the batch's ops (see `Store::write_leasing`). Per workflow, a few
/// statements whatever the number of its keys: its live leases and its window's starts counted
/// per counted key, the keys an instance this write does not hold waits under (none is taken
/// there), then the first of each key's group that fit, taken in one statement per owner (each
/// only if its instance is one this write created, not in `existing`, and still unowned,
/// Pending and due), and the rated ones recorded as starts in one.
pub(super) async fn take_starts(
    tx: &mut PgConnection,
    leases: &[StartLease],
    existing: &HashSet<&str>,
) -> Result<Vec<bool>, Failure> {
    let mut taken = vec![false; leases.len()];
    let groups = StartGroup::of(leases, existing);
    for groups in groups.chunk_by(|a, b| a.cap.workflow == b.cap.workflow) {
        let (cap, now) = (groups[0].cap, groups[0].now);
        let workflow = cap.workflow.as_str();
        let keys: Vec<&str> = groups.iter().map(|group| group.key).collect();
        let running = match cap.concurrency {
            None => HashMap::new(),
            Some(_) => {
                counted(tx, cap.keyed, (COUNT_RUNNING, COUNT_RUNNING_OF_KEYS), (workflow, Some(now), &keys)).await?
            }
        };
        let started = match cap.rate {
            None => HashMap::new(),
            Some(rate) => {
                forget_workflow_starts(tx, workflow, rate, now).await?;
                let statements = (COUNT_WORKFLOW_STARTS, COUNT_WORKFLOW_STARTS_OF_KEYS);
                counted(tx, cap.keyed, statements, (workflow, None, &keys)).await?
            }
        };
        let ours: Vec<&str> = groups.iter().flat_map(|group| group.ids(leases)).collect();
        let waiting: Vec<String> = if cap.keyed {
            let query = sqlx::query_scalar(KEYS_OTHERS_WAIT_UNDER).bind(workflow).bind(now).bind(&ours).bind(&keys);
            query.fetch_all(&mut *tx).await.map_err(failed("looking for waiting instances"))?
        } else {
            let query = sqlx::query_scalar(OTHERS_WAIT).bind(workflow).bind(now).bind(&ours);
            let any: bool = query.fetch_one(&mut *tx).await.map_err(failed("looking for waiting instances"))?;
            if any {
                vec![String::new()]
            } else {
                Vec::new()
            }
        };
        let count = |counts: &HashMap<String, u64>, key: &str| counts.get(key).copied().unwrap_or(0);
        let chosen: Vec<Vec<usize>> = groups
            .iter()
            .map(|group| {
                let others_wait = waiting.iter().any(|key| key == group.key);
                let take = group.to_take(count(&running, group.key), count(&started, group.key), others_wait);
                group.leases[..take].to_vec()
            })
            .collect();
        let all: Vec<usize> = chosen.concat();
        let mut returned: Vec<String> = Vec::new();
        for run in all.chunk_by(|a, b| leases[*a].owner == leases[*b].owner) {
            let until = run.iter().map(|i| leases[*i].lease_until).max().unwrap_or_default();
            let ids: Vec<&str> = run.iter().map(|i| leases[*i].instance_id.as_str()).collect();
            let query = sqlx::query_scalar(TAKE_STARTS).bind(leases[run[0]].owner.as_str()).bind(until).bind(now);
            returned.extend(query.bind(ids).fetch_all(&mut *tx).await.map_err(failed("taking start leases"))?);
        }
        let begun: Vec<i64> =
            chosen.iter().map(|run| to_i64(StartGroup::mark_taken(leases, run, &returned, &mut taken))).collect();
        if cap.rate.is_some() && begun.iter().any(|n| *n > 0) {
            sqlx::query(RECORD_WORKFLOW_STARTS_OF_KEYS)
                .bind(workflow)
                .bind(now)
                .bind(&begun)
                .bind(&keys)
                .execute(&mut *tx)
                .await
                .map_err(failed("recording rate-limited starts"))?;
        }
    }
    Ok(taken)
}

/// Per counted key, what `statements` count for `workflow` (`now` bound second when given): the
/// whole workflow's under `""` with the first (unkeyed), each of `keys`' with the second (keyed,
/// `keys` bound last).
async fn counted(
    tx: &mut PgConnection,
    keyed: bool,
    (whole, each_key): (&str, &str),
    (workflow, now, keys): (&str, Option<Millis>, &[&str]),
) -> Result<HashMap<String, u64>, Failure> {
    if !keyed {
        let query = sqlx::query_scalar(whole).bind(workflow);
        let query = match now {
            Some(now) => query.bind(now),
            None => query,
        };
        let n: i64 = query.fetch_one(&mut *tx).await.map_err(failed("counting a workflow's limits"))?;
        return Ok(per_key(vec![(String::new(), n)]));
    }
    let query = sqlx::query_as(each_key).bind(workflow);
    let query = match now {
        Some(now) => query.bind(now),
        None => query,
    };
    let rows = query.bind(keys).fetch_all(&mut *tx).await.map_err(failed("counting a workflow's limits per key"))?;
    Ok(per_key(rows))
}
