//! Schedules: the rows, and firing due ones in one transaction whose conditional updates let
//! only one of several workers take a tick (see `Store::fire_schedules`).

use sqlx::postgres::PgPool;
use workflow_core::store::{ScheduleFire, ScheduleRecord, StoreError, WakeSignal, WriteOp};

use super::checks::check_text;
use super::retry::{failed, retrying, retrying_idempotent};
use super::signals::notice;
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

pub(super) async fn put(pool: &PgPool, schedule: &ScheduleRecord, replace: bool) -> Result<bool, StoreError> {
    check_schedule_text(schedule)?;
    let tail = if replace {
        " ON CONFLICT (id) DO UPDATE SET workflow = EXCLUDED.workflow, spec = EXCLUDED.spec, \
         paused = EXCLUDED.paused, next_fire_at = EXCLUDED.next_fire_at, updated_at = EXCLUDED.updated_at"
    } else {
        " ON CONFLICT (id) DO NOTHING"
    };
    let sql = format!("{INSERT}{tail}");
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

pub(super) async fn delete(pool: &PgPool, id: &str) -> Result<bool, StoreError> {
    if id.contains('\0') {
        return Ok(false);
    }
    let deleted = retrying(|| async {
        sqlx::query("DELETE FROM schedules WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map_err(failed("deleting a schedule"))
    })
    .await?;
    Ok(deleted.rows_affected() == 1)
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

pub(super) async fn fire(pool: &PgPool, channel: &str, fires: &[ScheduleFire]) -> Result<Vec<bool>, StoreError> {
    if fires.is_empty() {
        return Ok(Vec::new());
    }
    let creates: Vec<WriteOp> =
        fires.iter().flat_map(|fire| fire.instances.iter().cloned().map(WriteOp::CreateInstance)).collect();
    check_text(&creates)?;
    let insert = "INSERT INTO instances (id, workflow, status, input, output, error, generation, created_at, \
         updated_at, owner, lease_until, parent_id, custom_status, wake_at, priority, concurrency_key) \
         VALUES ($1, $2, $3, $4, NULL, NULL, 0, $5, $5, NULL, NULL, NULL, NULL, $6, $7, $8) \
         ON CONFLICT (id) DO NOTHING";
    retrying(|| async {
        let mut tx = pool.begin().await.map_err(failed("beginning a fire of schedules"))?;
        let mut took = Vec::with_capacity(fires.len());
        let mut created = false;
        for fire in fires {
            let moved = sqlx::query(
                "UPDATE schedules SET next_fire_at = $1, runs = $2, updated_at = $3 \
                 WHERE id = $4 AND paused = 0 AND next_fire_at = $5",
            )
            .bind(fire.next_fire_at)
            .bind(fire.runs.as_str())
            .bind(fire.fired_at)
            .bind(fire.id.as_str())
            .bind(fire.expected_next)
            .execute(&mut *tx)
            .await
            .map_err(failed("moving a schedule to its next tick"))?;
            let took_it = moved.rows_affected() == 1;
            if took_it {
                for instance in &fire.instances {
                    sqlx::query(insert)
                        .bind(instance.id.as_str())
                        .bind(instance.workflow.as_str())
                        .bind(instance.status.as_str())
                        .bind(instance.input.as_str())
                        .bind(instance.created_at)
                        .bind(instance.wake_at)
                        .bind(i64::from(instance.priority))
                        .bind(instance.concurrency_key.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(failed("creating a tick's instance"))?;
                    created = true;
                }
            }
            took.push(took_it);
        }
        if created {
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
        Ok(took)
    })
    .await
}
