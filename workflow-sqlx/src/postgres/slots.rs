//! Activity slots (see `Store::reserve_slots`): each request behind its activity's advisory lock,
//! the one capped claims and leasing writes take, so slots are counted and taken atomically with
//! them.

use sqlx::postgres::PgPool;
use workflow_core::store::{SlotRequest, StoreError, WakeSignal};

use super::claims::running_and_started;
use super::retry::{failed, retrying};
use super::signals::notice;
use super::sql::{ADD_SLOTS, FORGET_EMPTY_SLOTS, FORGET_LAPSED_SLOTS, GIVE_BACK_SLOTS, LOCK_TASK_CAP, TASK_WAITING};

pub(super) async fn reserve(pool: &PgPool, requests: &[SlotRequest]) -> Result<Vec<u32>, StoreError> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let mut order: Vec<usize> = (0..requests.len()).collect();
    // The locks in name order, as claims take them.
    order.sort_by(|a, b| requests[*a].cap.activity.cmp(&requests[*b].cap.activity));
    retrying(|| async {
        let mut tx = pool.begin().await.map_err(failed("beginning a reservation of slots"))?;
        let mut taken = vec![0; requests.len()];
        let mut locked: Option<&str> = None;
        for &index in &order {
            let request = &requests[index];
            let (name, key) = (request.cap.activity.as_str(), request.concurrency_key.as_str());
            if locked != Some(name) {
                sqlx::query(LOCK_TASK_CAP)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("locking an activity's cap"))?;
                locked = Some(name);
            }
            let waiting: bool = sqlx::query_scalar(TASK_WAITING)
                .bind(name)
                .bind(key)
                .bind(request.now)
                .fetch_one(&mut *tx)
                .await
                .map_err(failed("looking for queued tasks"))?;
            // Nothing to count while a task waits: no slot is taken then.
            let (running, started) = if waiting {
                Default::default()
            } else {
                running_and_started(&mut tx, &request.cap, request.now).await?
            };
            let take = request.to_take(waiting, &running, &started);
            // Lapsed slots (of a worker gone without a word) count no more; their rows go.
            sqlx::query(FORGET_LAPSED_SLOTS)
                .bind(name)
                .bind(key)
                .bind(request.now)
                .execute(&mut *tx)
                .await
                .map_err(failed("forgetting lapsed slots"))?;
            if take > 0 {
                sqlx::query(ADD_SLOTS)
                    .bind(name)
                    .bind(key)
                    .bind(request.owner.as_str())
                    .bind(i64::from(take))
                    .bind(request.lease_until)
                    .bind(request.now)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("taking slots"))?;
            }
            taken[index] = take;
        }
        tx.commit().await.map_err(failed("committing a reservation of slots"))?;
        Ok(taken)
    })
    .await
}

/// Gives slots back, and signals (on `channel`) that queued tasks of their keys may have room.
pub(super) async fn release(
    pool: &PgPool,
    channel: &str,
    owner: &str,
    releases: &[(String, String, u32)],
) -> Result<(), StoreError> {
    if releases.is_empty() {
        return Ok(());
    }
    retrying(|| async {
        let mut tx = pool.begin().await.map_err(failed("beginning a release of slots"))?;
        for (name, key, count) in releases {
            sqlx::query(GIVE_BACK_SLOTS)
                .bind(name.as_str())
                .bind(key.as_str())
                .bind(owner)
                .bind(i64::from(*count))
                .execute(&mut *tx)
                .await
                .map_err(failed("giving slots back"))?;
        }
        sqlx::query(FORGET_EMPTY_SLOTS).bind(owner).execute(&mut *tx).await.map_err(failed("giving slots back"))?;
        if let Some(queued) = notice(&WakeSignal::TaskQueued) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(queued)
                .execute(&mut *tx)
                .await
                .map_err(failed("signalling slots given back"))?;
        }
        tx.commit().await.map_err(failed("committing a release of slots"))?;
        Ok(())
    })
    .await
}
