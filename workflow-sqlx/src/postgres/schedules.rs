//! Schedules: the rows, and firing due ones in one transaction whose conditional updates let
//! only one of several workers take a tick (see `Store::fire_schedules`).

use std::collections::HashSet;

use sqlx::postgres::PgPool;
use workflow_core::store::{
    InstanceRecord, ScheduleChange, ScheduleFire, ScheduleRecord, StoreError, WakeSignal, WriteOp,
};

use super::bind::{bind_instances, Args};
use super::checks::check_text;
use super::retry::{failed, retrying, retrying_idempotent};
use super::signals::notice;
use super::sql::{CREATE, PURGE};
use crate::shared::rows::{schedule_from_row, SCHEDULE_COLUMNS};
use crate::shared::to_i64;

const INSERT: &str = "INSERT INTO schedules (id, workflow, spec, paused, next_fire_at, runs, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// PostgreSQL text holds no NUL: refused here, with the same error a write gives.
fn check_schedule_text(schedule: &ScheduleRecord) -> Result<(), StoreError> {
    if [&schedule.id, &schedule.workflow, &schedule.spec, &schedule.runs].iter().any(|text| text.contains('\0')) {
        return Err(StoreError::Backend(format!("postgres: schedule {:?} holds a NUL character", schedule.id)));
    }
    Ok(())
}

pub(super) async fn put(pool: &PgPool, schedule: &ScheduleRecord) -> Result<bool, StoreError> {
    check_schedule_text(schedule)?;
    let sql = format!("{INSERT} ON CONFLICT (id) DO NOTHING");
    let written = retrying(|| async {
        sqlx::query(&sql)
            .bind(schedule.id.as_str())
            .bind(schedule.workflow.as_str())
            .bind(schedule.spec.as_str())
            .bind(i64::from(schedule.paused))
            .bind(schedule.next_fire_at)
            .bind(schedule.runs.as_str())
            .bind(schedule.created_at)
            .bind(schedule.updated_at)
            .execute(pool)
            .await
            .map_err(failed("writing a schedule"))
    })
    .await?;
    Ok(written.rows_affected() == 1)
}

/// Deletes the cancelled ticks' instances that are still Pending and unowned; returns their ids.
const CANCEL: &str = "DELETE FROM instances WHERE id = ANY($1) AND status = 'Pending' AND owner IS NULL RETURNING id";

pub(super) async fn change(pool: &PgPool, change: &ScheduleChange) -> Result<bool, StoreError> {
    if let Some(to) = &change.to {
        check_schedule_text(to)?;
    }
    if change.id.contains('\0') {
        return Ok(false);
    }
    retrying(|| async {
        let mut tx = pool.begin().await.map_err(failed("beginning a change of a schedule"))?;
        let written = match &change.to {
            Some(to) => sqlx::query(
                "UPDATE schedules SET workflow = $3, spec = $4, paused = $5, next_fire_at = $6, runs = $7, \
                 updated_at = $8 WHERE id = $1 AND updated_at = $2",
            )
            .bind(change.id.as_str())
            .bind(change.expected_updated_at)
            .bind(to.workflow.as_str())
            .bind(to.spec.as_str())
            .bind(i64::from(to.paused))
            .bind(to.next_fire_at)
            .bind(to.runs.as_str())
            .bind(to.updated_at),
            None => sqlx::query("DELETE FROM schedules WHERE id = $1 AND updated_at = $2")
                .bind(change.id.as_str())
                .bind(change.expected_updated_at),
        }
        .execute(&mut *tx)
        .await
        .map_err(failed("changing a schedule"))?;
        if written.rows_affected() != 1 {
            return Ok(false);
        }
        let cancel: Vec<&str> = change.cancel.iter().map(String::as_str).filter(|id| !id.contains('\0')).collect();
        if !cancel.is_empty() {
            let context = "cancelling ticks fired ahead";
            let cancelled: Vec<String> =
                sqlx::query_scalar(CANCEL).bind(&cancel).fetch_all(&mut *tx).await.map_err(failed(context))?;
            if !cancelled.is_empty() {
                // And every row of them, as a purge deletes.
                sqlx::query(PURGE).bind(&cancelled).execute(&mut *tx).await.map_err(failed(context))?;
            }
        }
        tx.commit().await.map_err(failed("committing a change of a schedule"))?;
        Ok(true)
    })
    .await
}

pub(super) async fn get(pool: &PgPool, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
    if id.contains('\0') {
        return Ok(None);
    }
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1");
    let row = retrying_idempotent(|| async {
        sqlx::query(&sql).bind(id).fetch_optional(pool).await.map_err(failed("reading a schedule"))
    })
    .await?;
    row.as_ref().map(schedule_from_row).transpose()
}

pub(super) async fn all(pool: &PgPool) -> Result<Vec<ScheduleRecord>, StoreError> {
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id");
    let rows = retrying_idempotent(|| async {
        sqlx::query(&sql).fetch_all(pool).await.map_err(failed("reading the schedules"))
    })
    .await?;
    rows.iter().map(schedule_from_row).collect()
}

pub(super) async fn due(pool: &PgPool, now: i64, limit: usize) -> Result<Vec<ScheduleRecord>, StoreError> {
    let sql = format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE paused = 0 AND next_fire_at IS NOT NULL \
         AND next_fire_at <= $1 ORDER BY next_fire_at, id LIMIT $2"
    );
    let rows = retrying_idempotent(|| async {
        sqlx::query(&sql).bind(now).bind(to_i64(limit)).fetch_all(pool).await.map_err(failed("reading due schedules"))
    })
    .await?;
    rows.iter().map(schedule_from_row).collect()
}

/// Moves the schedules of a batch of fires, each only if it is still at the tick and the version
/// its fire read;
/// returns the ids moved.
const MOVE: &str = "UPDATE schedules AS s SET next_fire_at = v.next, runs = v.runs, updated_at = v.at \
     FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int8[], $5::int8[], $6::int8[]) \
     AS v(id, next, runs, at, expected, version) \
     WHERE s.id = v.id AND s.paused = 0 AND s.next_fire_at = v.expected AND s.updated_at = v.version RETURNING s.id";

pub(super) async fn fire(pool: &PgPool, channel: &str, fires: &[ScheduleFire]) -> Result<Vec<bool>, StoreError> {
    if fires.is_empty() {
        return Ok(Vec::new());
    }
    let creates: Vec<WriteOp> =
        fires.iter().flat_map(|fire| fire.instances.iter().cloned().map(WriteOp::CreateInstance)).collect();
    check_text(&creates)?;
    retrying(|| async {
        let mut tx = pool.begin().await.map_err(failed("beginning a fire of schedules"))?;
        let moved: Vec<String> = sqlx::query_scalar(MOVE)
            .bind(fires.iter().map(|f| f.id.as_str()).collect::<Vec<_>>())
            .bind(fires.iter().map(|f| f.next_fire_at).collect::<Vec<_>>())
            .bind(fires.iter().map(|f| f.runs.as_str()).collect::<Vec<_>>())
            .bind(fires.iter().map(|f| f.fired_at).collect::<Vec<_>>())
            .bind(fires.iter().map(|f| f.expected_next).collect::<Vec<_>>())
            .bind(fires.iter().map(|f| f.expected_updated_at).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("moving schedules to their next ticks"))?;
        let taken: HashSet<&str> = moved.iter().map(String::as_str).collect();
        let instances: Vec<&InstanceRecord> =
            fires.iter().filter(|f| taken.contains(f.id.as_str())).flat_map(|f| &f.instances).collect();
        if !instances.is_empty() {
            let mut args = Args::default();
            // Left for the claims, so watched (see `CREATE`).
            bind_instances(&mut args, &instances, &vec![true; instances.len()]);
            let context = "creating the ticks' instances";
            sqlx::query_with(CREATE, args.finish(context)?).fetch_all(&mut *tx).await.map_err(failed(context))?;
            if let Some(runnable) = notice(&WakeSignal::Runnable) {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel)
                    .bind(runnable)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("signalling a fire's instances"))?;
            }
        }
        tx.commit().await.map_err(failed("committing a fire of schedules"))?;
        Ok(fires.iter().map(|fire| taken.contains(fire.id.as_str())).collect())
    })
    .await
}
