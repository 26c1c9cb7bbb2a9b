//! Debounced starts: under the one write lock, a start of a workflow and key gives its input to
//! the instance the key last created while that one still waits to start, or creates a new one.

use workflow_core::store::{Debounce, InstanceRecord, StoreError};

use super::bind::bind_create;
use super::sql::{create_columns, CREATE_COLUMNS};
use super::{backend, SqliteStore};

/// See `Store::debounce`.
pub(super) async fn debounce(store: &SqliteStore, start: &Debounce) -> Result<String, StoreError> {
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a debounced start").await?;
    let outcome = async {
        let (workflow, key) = (start.record.workflow.as_str(), start.key.as_str());
        let waiting: Option<String> =
            sqlx::query_scalar("SELECT instance_id FROM debounces WHERE workflow = ? AND key = ?")
                .bind(workflow)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend("reading a debounce key"))?;
        if let Some(id) = waiting {
            let updated = sqlx::query(
                "UPDATE instances SET input = ?1, updated_at = ?4, concurrency_key = ?6, \
                 wake_at = CASE WHEN ?2 IS NULL THEN ?3 ELSE MIN(?3, created_at + ?2) END \
                 WHERE id = ?5 AND status = 'Pending' AND owner IS NULL",
            )
            .bind(start.record.input.as_str())
            .bind(start.max_wait_ms)
            .bind(start.due)
            .bind(start.record.updated_at)
            .bind(id.as_str())
            .bind(start.record.concurrency_key.as_str())
            .execute(&mut *conn)
            .await
            .map_err(backend("putting off a debounced start"))?;
            if updated.rows_affected() == 1 {
                return Ok(id);
            }
        }
        let record = InstanceRecord { wake_at: Some(start.due), ..start.record.clone() };
        let marks = vec!["?"; CREATE_COLUMNS].join(", ");
        let insert =
            format!(concat!("INSERT INTO instances (", create_columns!(), ") VALUES ({marks})"), marks = marks);
        bind_create(sqlx::query(&insert), &(0, &record))
            .execute(&mut *conn)
            .await
            .map_err(backend("creating a debounced instance"))?;
        sqlx::query(
            "INSERT INTO debounces (workflow, key, instance_id) VALUES (?, ?, ?) \
             ON CONFLICT (workflow, key) DO UPDATE SET instance_id = excluded.instance_id",
        )
        .bind(workflow)
        .bind(key)
        .bind(record.id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(backend("pointing a debounce key"))?;
        Ok(record.id)
    }
    .await;
    let id = store.end_immediate(&mut conn, outcome, "committing a debounced start").await?;
    store.stats.record_commit(1);
    Ok(id)
}
