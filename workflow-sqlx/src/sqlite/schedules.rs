//! Schedules: the rows, and firing due ones under the one write lock (see `Store::fire_schedules`).

use std::collections::HashSet;

use workflow_core::store::{InstanceRecord, ScheduleChange, ScheduleFire, ScheduleRecord, StoreError, WakeSignal};

use super::bind::bind_create;
use super::sql::{create_columns, CREATE_COLUMNS};
use super::{backend, SqliteStore};
use crate::shared::rows::{schedule_from_row, SCHEDULE_COLUMNS};
use crate::shared::to_i64;

const INSERT: &str = "INSERT INTO schedules (id, workflow, spec, paused, next_fire_at, runs, created_at, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

pub(super) async fn put(store: &SqliteStore, schedule: &ScheduleRecord) -> Result<bool, StoreError> {
    let written = sqlx::query(&format!("{INSERT} ON CONFLICT (id) DO NOTHING"))
        .bind(schedule.id.as_str())
        .bind(schedule.workflow.as_str())
        .bind(schedule.spec.as_str())
        .bind(i64::from(schedule.paused))
        .bind(schedule.next_fire_at)
        .bind(schedule.runs.as_str())
        .bind(schedule.created_at)
        .bind(schedule.updated_at)
        .execute(&mut *store.writer().await?)
        .await
        .map_err(backend("writing a schedule"))?;
    store.stats.record_commit(1);
    Ok(written.rows_affected() == 1)
}

pub(super) async fn change(store: &SqliteStore, change: &ScheduleChange) -> Result<bool, StoreError> {
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a change of a schedule").await?;
    let outcome = async {
        let written = match &change.to {
            Some(to) => sqlx::query(
                "UPDATE schedules SET workflow = ?, spec = ?, paused = ?, next_fire_at = ?, runs = ?, updated_at = ? \
                 WHERE id = ? AND updated_at = ?",
            )
            .bind(to.workflow.as_str())
            .bind(to.spec.as_str())
            .bind(i64::from(to.paused))
            .bind(to.next_fire_at)
            .bind(to.runs.as_str())
            .bind(to.updated_at),
            None => sqlx::query("DELETE FROM schedules WHERE id = ? AND updated_at = ?"),
        }
        .bind(change.id.as_str())
        .bind(change.expected_updated_at)
        .execute(&mut *conn)
        .await
        .map_err(backend("changing a schedule"))?;
        if written.rows_affected() != 1 {
            return Ok(false);
        }
        for id in &change.cancel {
            let cancelled = sqlx::query("DELETE FROM instances WHERE id = ? AND status = 'Pending' AND owner IS NULL")
                .bind(id.as_str())
                .execute(&mut *conn)
                .await
                .map_err(backend("cancelling a tick fired ahead"))?;
            if cancelled.rows_affected() == 1 {
                for table in ["journal", "events", "activity_tasks", "debounces"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE instance_id = ?"))
                        .bind(id.as_str())
                        .execute(&mut *conn)
                        .await
                        .map_err(backend("cancelling a tick fired ahead"))?;
                }
            }
        }
        Ok(true)
    }
    .await;
    let took = store.end_immediate(&mut conn, outcome, "committing a change of a schedule").await?;
    store.stats.record_commit(1);
    Ok(took)
}

pub(super) async fn get(store: &SqliteStore, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
    let row = sqlx::query(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?"))
        .bind(id)
        .fetch_optional(&mut *store.reader().await?)
        .await
        .map_err(backend("reading a schedule"))?;
    row.as_ref().map(schedule_from_row).transpose()
}

pub(super) async fn all(store: &SqliteStore) -> Result<Vec<ScheduleRecord>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id"))
        .fetch_all(&mut *store.reader().await?)
        .await
        .map_err(backend("reading the schedules"))?;
    rows.iter().map(schedule_from_row).collect()
}

pub(super) async fn due(store: &SqliteStore, now: i64, limit: usize) -> Result<Vec<ScheduleRecord>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules INDEXED BY schedules_due \
         WHERE paused = 0 AND next_fire_at IS NOT NULL AND next_fire_at <= ? ORDER BY next_fire_at, id LIMIT ?"
    ))
    .bind(now)
    .bind(to_i64(limit))
    .fetch_all(&mut *store.reader().await?)
    .await
    .map_err(backend("reading the due schedules"))?;
    rows.iter().map(schedule_from_row).collect()
}

/// Fires per statement: each fire binds 6 values, each instance 17, within SQLite's limit on a
/// statement's variables.
const FIRES_PER_STATEMENT: usize = 500;
const INSTANCES_PER_STATEMENT: usize = 500;

pub(super) async fn fire(store: &SqliteStore, fires: &[ScheduleFire]) -> Result<Vec<bool>, StoreError> {
    if fires.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a fire of schedules").await?;
    let outcome = async {
        // Each batch of fires moves its schedules in one statement (only those still at the tick
        // the fire read), then creates the instances of the fires that took in a few.
        let mut taken: HashSet<String> = HashSet::with_capacity(fires.len());
        for chunk in fires.chunks(FIRES_PER_STATEMENT) {
            let sql = format!(
                "UPDATE schedules SET next_fire_at = v.column2, runs = v.column3, updated_at = v.column4 \
                 FROM (VALUES {}) AS v WHERE schedules.id = v.column1 AND schedules.paused = 0 \
                 AND schedules.next_fire_at = v.column5 AND schedules.updated_at = v.column6 RETURNING schedules.id",
                vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let query = chunk.iter().fold(sqlx::query_scalar::<_, String>(&sql), |query, fire| {
                query
                    .bind(fire.id.as_str())
                    .bind(fire.next_fire_at)
                    .bind(fire.runs.as_str())
                    .bind(fire.fired_at)
                    .bind(fire.expected_next)
                    .bind(fire.expected_updated_at)
            });
            let moved = query.fetch_all(&mut *conn).await.map_err(backend("moving schedules to their next ticks"))?;
            taken.extend(moved);
        }
        let instances: Vec<&InstanceRecord> =
            fires.iter().filter(|fire| taken.contains(fire.id.as_str())).flat_map(|fire| &fire.instances).collect();
        for chunk in instances.chunks(INSTANCES_PER_STATEMENT) {
            let row = format!("({})", vec!["?"; CREATE_COLUMNS].join(", "));
            let sql = format!(
                concat!("INSERT INTO instances (", create_columns!(), ") VALUES {} ON CONFLICT (id) DO NOTHING"),
                vec![row.as_str(); chunk.len()].join(", ")
            );
            let rows: Vec<(usize, &InstanceRecord)> = chunk.iter().map(|instance| (0, *instance)).collect();
            let query = rows.iter().fold(sqlx::query(&sql), bind_create);
            query.execute(&mut *conn).await.map_err(backend("creating the ticks' instances"))?;
        }
        Ok(fires.iter().map(|fire| taken.contains(fire.id.as_str())).collect::<Vec<bool>>())
    }
    .await;
    let took = store.end_immediate(&mut conn, outcome, "committing a fire of schedules").await?;
    store.stats.record_commit(fires.len());
    if took.iter().zip(fires).any(|(took, fire)| *took && !fire.instances.is_empty()) {
        store.signal([WakeSignal::Runnable]);
    }
    Ok(took)
}
