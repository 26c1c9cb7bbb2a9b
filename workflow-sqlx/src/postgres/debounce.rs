//! Debounced starts: in one transaction behind an advisory lock of the workflow and key, a start
//! gives its input to the instance the key last created while that one still waits to start, or
//! creates a new one. A claim of that instance locks its row, so the two never both win.

use sqlx::postgres::PgPool;
use workflow_core::store::{Debounce, StoreError, WriteOp};

use super::checks::check_text;
use super::retry::{failed, retrying};

const LOCK_KEY: &str = "SELECT pg_advisory_xact_lock(hashtextextended('debounce:' || $1::text || ':' || $2::text, 0))";

const WAITING: &str = "SELECT instance_id FROM debounces WHERE workflow = $1 AND key = $2";

/// Puts off the waiting instance `$5` with input `$1` (and its concurrency key `$6`), due `$3` or
/// its creation plus `$2`.
const PUT_OFF: &str = "UPDATE instances SET input = $1, updated_at = $4, concurrency_key = $6, \
     wake_at = CASE WHEN $2::int8 IS NULL THEN $3 ELSE LEAST($3, created_at + $2::int8) END \
     WHERE id = $5 AND status = 'Pending' AND owner IS NULL RETURNING id";

const CREATE_ONE: &str = "INSERT INTO instances (id, workflow, status, input, output, error, generation, created_at, \
     updated_at, owner, lease_until, parent_id, custom_status, wake_at, priority, concurrency_key, trace_context) \
     VALUES ($1, $2, $3, $4, NULL, NULL, 0, $5, $5, NULL, NULL, NULL, NULL, $6, $7, $8, $9)";

const POINT: &str = "INSERT INTO debounces (workflow, key, instance_id) VALUES ($1, $2, $3) \
     ON CONFLICT (workflow, key) DO UPDATE SET instance_id = EXCLUDED.instance_id";

/// See `Store::debounce`.
pub(super) async fn debounce(pool: &PgPool, start: &Debounce) -> Result<String, StoreError> {
    check_text(&[WriteOp::CreateInstance(start.record.clone())])?;
    if start.key.contains('\0') {
        return Err(StoreError::Backend("postgres: a debounce key holds a NUL character".into()));
    }
    let record = &start.record;
    let (workflow, key) = (record.workflow.as_str(), start.key.as_str());
    retrying(|| async move {
        let mut tx = pool.begin().await.map_err(failed("beginning a debounced start"))?;
        sqlx::query(LOCK_KEY)
            .bind(workflow)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(failed("locking a debounce key"))?;
        let waiting: Option<String> = sqlx::query_scalar(WAITING)
            .bind(workflow)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(failed("reading a debounce key"))?;
        if let Some(id) = waiting {
            let put_off: Option<String> = sqlx::query_scalar(PUT_OFF)
                .bind(record.input.as_str())
                .bind(start.max_wait_ms)
                .bind(start.due)
                .bind(record.updated_at)
                .bind(id.as_str())
                .bind(record.concurrency_key.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(failed("putting off a debounced start"))?;
            if let Some(id) = put_off {
                tx.commit().await.map_err(failed("committing a debounced start"))?;
                return Ok(id);
            }
        }
        sqlx::query(CREATE_ONE)
            .bind(record.id.as_str())
            .bind(workflow)
            .bind(record.status.as_str())
            .bind(record.input.as_str())
            .bind(record.created_at)
            .bind(start.due)
            .bind(i64::from(record.priority))
            .bind(record.concurrency_key.as_str())
            .bind(record.trace_context.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(failed("creating a debounced instance"))?;
        sqlx::query(POINT)
            .bind(workflow)
            .bind(key)
            .bind(record.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(failed("pointing a debounce key"))?;
        tx.commit().await.map_err(failed("committing a debounced start"))?;
        Ok(record.id.clone())
    })
    .await
}
