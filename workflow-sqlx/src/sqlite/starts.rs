//! Taking start leases in a write (`Store::write_leasing`, `Lease::Start`): a flow-controlled
//! workflow's instance created by the write is leased to its creator at once when the workflow's
//! limits have room and nothing of it waits for a claim, under the write lock that every capped
//! claim takes too.

use std::collections::HashSet;

use sqlx::sqlite::SqliteConnection;
use workflow_core::store::{StartGroup, StartLease, StoreError};

use super::backend;
use super::claims::{forget_old_starts, record_starts};

/// Takes what it can of `leases` in the open write transaction, after the batch's ops (see
/// `Store::write_leasing`): per workflow and counted key, its live leases and its window's starts
/// counted once, and nothing taken while an instance it does not hold waits for a claim (read off
/// the claim's own ready and due indexes); then the first of the group that fit, each only if its
/// instance is one this write created (not in `existing`) and still unowned, Pending and due.
pub(super) async fn take_starts(
    conn: &mut SqliteConnection,
    leases: &[StartLease],
    existing: &HashSet<&str>,
) -> Result<Vec<bool>, StoreError> {
    let mut taken = vec![false; leases.len()];
    for group in StartGroup::of(leases, existing) {
        let running = match group.cap.concurrency {
            Some(_) => running(conn, &group).await?,
            None => 0,
        };
        let started = match group.cap.rate {
            Some(rate) => {
                forget_old_starts(conn, &group.cap.workflow, rate, group.now).await?;
                started(conn, &group).await?
            }
            None => 0,
        };
        let others_wait = others_wait(conn, &group, &group.ids(leases)).await?;
        let mut begun = 0;
        for run in group.runs(leases, group.to_take(running, started, others_wait)) {
            let until = run.iter().map(|i| leases[*i].lease_until).max().unwrap_or_default();
            let ids: Vec<&str> = run.iter().map(|i| leases[*i].instance_id.as_str()).collect();
            let returned: Vec<String> = sqlx::query_scalar(
                "UPDATE instances SET owner = ?1, lease_until = ?2, status = 'Running', updated_at = ?3, \
                 wake_at = NULL WHERE id IN (SELECT value FROM json_each(?4)) AND owner IS NULL \
                 AND status = 'Pending' AND (wake_at IS NULL OR wake_at <= ?3) RETURNING id",
            )
            .bind(leases[run[0]].owner.as_str())
            .bind(until)
            .bind(group.now)
            .bind(json_ids(&ids))
            .fetch_all(&mut *conn)
            .await
            .map_err(backend("taking start leases"))?;
            begun += StartGroup::mark_taken(leases, &run, &returned, &mut taken);
        }
        if group.cap.rate.is_some() {
            record_starts(conn, &group.cap.workflow, group.key, group.now, begun).await?;
        }
    }
    Ok(taken)
}

/// The group's workflow's instances holding a lease at its `now` (under its key, when keyed), as
/// a capped claim counts them.
async fn running(conn: &mut SqliteConnection, group: &StartGroup<'_>) -> Result<u64, StoreError> {
    let keyed = if group.cap.keyed { " AND concurrency_key = ?3" } else { "" };
    let sql = format!(
        "SELECT count(*) FROM instances INDEXED BY instances_owned WHERE workflow = ?1 AND owner IS NOT NULL \
         AND lease_until >= ?2 AND status IN ('Pending', 'Running'){keyed}"
    );
    let query = sqlx::query_scalar(&sql).bind(group.cap.workflow.as_str()).bind(group.now);
    let query = if group.cap.keyed { query.bind(group.key) } else { query };
    let count: i64 = query.fetch_one(&mut *conn).await.map_err(backend("counting running instances"))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// The group's workflow's starts in its rate's window (under its key, when keyed), once those a
/// period old are forgotten.
async fn started(conn: &mut SqliteConnection, group: &StartGroup<'_>) -> Result<u64, StoreError> {
    let keyed = if group.cap.keyed { " AND concurrency_key = ?2" } else { "" };
    let sql = format!("SELECT coalesce(sum(starts), 0) FROM workflow_starts WHERE workflow = ?1{keyed}");
    let query = sqlx::query_scalar(&sql).bind(group.cap.workflow.as_str());
    let query = if group.cap.keyed { query.bind(group.key) } else { query };
    let count: i64 = query.fetch_one(&mut *conn).await.map_err(backend("counting recent starts"))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Whether an instance of the group's workflow (and key, when keyed) other than `ours` waits
/// unowned for a claim, ready or due at the group's `now`: the ready ones by workflow and key
/// (`instances_waiting`), the due ones off the claim's range (`instances_due`), each index named.
async fn others_wait(conn: &mut SqliteConnection, group: &StartGroup<'_>, ours: &[&str]) -> Result<bool, StoreError> {
    let sql = others_wait_sql(group.cap.keyed);
    let query = sqlx::query_scalar(&sql).bind(group.cap.workflow.as_str()).bind(group.now).bind(json_ids(ours));
    let query = if group.cap.keyed { query.bind(group.key) } else { query };
    let waiting: bool = query.fetch_one(&mut *conn).await.map_err(backend("looking for waiting instances"))?;
    Ok(waiting)
}

/// [`others_wait`]'s statement: workflow `?1`, `now` `?2`, the ids to leave out `?3` (JSON) and,
/// when `keyed`, the key `?4`.
fn others_wait_sql(keyed: bool) -> String {
    let keyed = if keyed { " AND concurrency_key = ?4" } else { "" };
    format!(
        "SELECT EXISTS (SELECT 1 FROM instances INDEXED BY instances_waiting WHERE status IN ('Pending', 'Running') \
         AND wake_at IS NULL AND owner IS NULL AND workflow = ?1 AND id NOT IN (SELECT value FROM json_each(?3)){keyed}) \
         OR EXISTS (SELECT 1 FROM instances INDEXED BY instances_due WHERE status IN ('Pending', 'Running') \
         AND wake_at IS NOT NULL AND owner IS NULL AND wake_at <= ?2 AND workflow = ?1 \
         AND id NOT IN (SELECT value FROM json_each(?3)){keyed})"
    )
}

/// `ids` as a JSON array, for `json_each`.
fn json_ids(ids: &[&str]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::others_wait_sql;
    use crate::sqlite::SqliteStore;

    /// What SQLite's planner does with `sql`, one line per step.
    async fn plan(store: &SqliteStore, sql: &str) -> String {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&explain).fetch_all(&mut *store.reader().await.unwrap()).await.unwrap();
        rows.into_iter().map(|(_, _, _, detail)| detail).collect::<Vec<_>>().join("\n")
    }

    /// A start lease asks whether anything of its workflow waits with one probe of each index,
    /// by workflow (and key), never a scan of the workflow's instances.
    #[tokio::test]
    async fn a_start_lease_probes_the_waiting_and_due_indexes() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        for keyed in [false, true] {
            let plan = plan(&store, &others_wait_sql(keyed)).await;
            let key = if keyed { " AND concurrency_key=?" } else { "" };
            assert!(
                plan.contains(&format!("SEARCH instances USING INDEX instances_waiting (workflow=?{key})")),
                "{plan}"
            );
            assert!(plan.contains("SEARCH instances USING INDEX instances_due (wake_at>? AND wake_at<?)"), "{plan}");
            assert!(!plan.contains("SCAN instances"), "{plan}");
        }
    }
}
