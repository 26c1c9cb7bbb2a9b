//! Counting what a store holds, for every backend: how much work each queue holds
//! ([`Store::queue_depths`](workflow_core::store::Store::queue_depths)) and how many instances
//! have each status ([`Store::status_counts`](workflow_core::store::Store::status_counts)).

use workflow_core::store::{QueueDepth, QueueKind, RuntimeStatus, StoreError};

use super::list::Dialect;
use super::rows::{corrupt, Columns};

/// Every queue's depth in one statement (its one placeholder is the time a lease is live at):
/// the unfinished tasks per (activity, key), read off the `WHERE outcome IS NULL` indexes, with
/// the workers' live activity slots counted as running (each runs an attempt, or is about to),
/// and the Pending and Running instances per (workflow, key), off the partial index of those
/// statuses.
pub(crate) fn queue_depths_sql(dialect: Dialect) -> String {
    let now = dialect.placeholder(1);
    let live = format!("owner IS NOT NULL AND lease_until >= {now}");
    format!(
        "SELECT 'activity' AS kind, name, concurrency_key, CAST(SUM(waiting) AS BIGINT) AS waiting, \
             CAST(SUM(running) AS BIGINT) AS running, MIN(oldest_waiting) AS oldest_waiting FROM ( \
             SELECT name, concurrency_key, \
                 CASE WHEN {live} THEN 0 ELSE 1 END AS waiting, \
                 CASE WHEN {live} THEN 1 ELSE 0 END AS running, \
                 CASE WHEN {live} THEN NULL ELSE visible_at END AS oldest_waiting \
             FROM activity_tasks WHERE outcome IS NULL \
             UNION ALL \
             SELECT name, concurrency_key, 0, slots, NULL FROM activity_slots WHERE lease_until >= {now} AND slots > 0 \
         ) AS activity GROUP BY name, concurrency_key \
         UNION ALL \
         SELECT 'workflow' AS kind, workflow AS name, concurrency_key, \
             SUM(CASE WHEN status = 'Pending' THEN 1 ELSE 0 END) AS waiting, \
             SUM(CASE WHEN status = 'Running' THEN 1 ELSE 0 END) AS running, \
             MIN(CASE WHEN status = 'Pending' THEN created_at END) AS oldest_waiting \
         FROM instances WHERE status IN ('Pending', 'Running') GROUP BY workflow, concurrency_key"
    )
}

/// A row of [`queue_depths_sql`].
pub(crate) fn depth_from_row(row: &impl Columns) -> Result<QueueDepth, StoreError> {
    let name = row.text("queue (unreadable name)", "name")?;
    let what = format!("queue {name:?}");
    let kind = match row.text(&what, "kind")?.as_str() {
        "activity" => QueueKind::Activity,
        "workflow" => QueueKind::Workflow,
        other => return Err(corrupt(&what, "kind", format_args!("{other:?} is not a queue kind"))),
    };
    let count = |column: &str| -> Result<u64, StoreError> {
        let value = row.int(&what, column)?;
        u64::try_from(value).map_err(|_| corrupt(&what, column, format_args!("{value} is not a count")))
    };
    Ok(QueueDepth {
        kind,
        concurrency_key: row.text(&what, "concurrency_key")?,
        waiting: count("waiting")?,
        running: count("running")?,
        oldest_waiting: row.maybe_int(&what, "oldest_waiting")?,
        name,
    })
}

/// The queues in the order [`Store::queue_depths`](workflow_core::store::Store::queue_depths)
/// returns them (sorted here, byte for byte, whatever the database's collation).
pub(crate) fn in_queue_order(mut depths: Vec<QueueDepth>) -> Vec<QueueDepth> {
    depths.sort_by(|a, b| (a.kind, &a.name, &a.concurrency_key).cmp(&(b.kind, &b.name, &b.concurrency_key)));
    depths
}

/// One row with a column per status (named as the status), each the count of its instances up to
/// the placeholder's bound: a range read of at most that many entries of the (status, created_at,
/// id) index per status, so the cost is bounded however many instances the store holds.
pub(crate) fn status_counts_sql(dialect: Dialect) -> String {
    let at_most = dialect.placeholder(1);
    let counts: Vec<String> = RuntimeStatus::ALL
        .iter()
        .map(|status| {
            let status = status.as_str();
            format!(
                "(SELECT COUNT(*) FROM (SELECT 1 FROM instances WHERE status = '{status}' LIMIT {at_most}) AS c) \
                 AS \"{status}\""
            )
        })
        .collect();
    format!("SELECT {}", counts.join(", "))
}

/// The row of [`status_counts_sql`].
pub(crate) fn counts_from_row(row: &impl Columns) -> Result<Vec<(RuntimeStatus, u64)>, StoreError> {
    RuntimeStatus::ALL
        .into_iter()
        .map(|status| {
            let count = row.int("status counts", status.as_str())?;
            let count = u64::try_from(count)
                .map_err(|_| corrupt("status counts", status.as_str(), format_args!("{count} is not a count")))?;
            Ok((status, count))
        })
        .collect()
}
