//! Activity slots (see `Store::reserve_slots`), taken under the one write lock, so they are
//! counted and taken atomically with every capped claim and leasing write; a call's requests are
//! decided an activity at a time, as on PostgreSQL.

use std::collections::HashSet;

use workflow_core::store::{SlotRequest, StoreError};

use super::claims::running_and_started;
use super::{backend, SqliteStore};

/// Whether a task of the activity and key is claimable at `?3`.
const WAITING: &str = "SELECT EXISTS (SELECT 1 FROM activity_tasks WHERE name = ?1 AND concurrency_key = ?2 \
     AND outcome IS NULL AND visible_at <= ?3 AND (owner IS NULL OR lease_until < ?3))";

/// Adds `?4` slots to the owner's, which last until `?5` (a lapsed count starts again from none).
const ADD: &str = "INSERT INTO activity_slots (name, concurrency_key, owner, slots, lease_until) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name, concurrency_key, owner) DO UPDATE SET \
     slots = (CASE WHEN activity_slots.lease_until >= ?6 THEN activity_slots.slots ELSE 0 END) + excluded.slots, \
     lease_until = excluded.lease_until";

pub(super) async fn reserve(store: &SqliteStore, requests: &[SlotRequest]) -> Result<Vec<u32>, StoreError> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a reservation of slots").await?;
    let taken = async {
        let mut taken = vec![0; requests.len()];
        for group in SlotRequest::by_activity(requests) {
            let first = &requests[group[0]];
            let (name, now) = (first.cap.activity.as_str(), first.now);
            let mut waiting = HashSet::new();
            for &index in &group {
                let key = requests[index].concurrency_key.as_str();
                let queued: bool = sqlx::query_scalar(WAITING)
                    .bind(name)
                    .bind(key)
                    .bind(now)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(backend("looking for queued tasks"))?;
                if queued {
                    waiting.insert(key);
                }
            }
            // Nothing to count when a task waits under every key asked for: no slot is taken.
            let (mut running, started) =
                if group.iter().all(|index| waiting.contains(requests[*index].concurrency_key.as_str())) {
                    Default::default()
                } else {
                    running_and_started(&mut conn, &first.cap, now).await?
                };
            // Lapsed slots (of a worker gone without a word) count no more; their rows go.
            sqlx::query("DELETE FROM activity_slots WHERE name = ? AND lease_until < ?")
                .bind(name)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(backend("forgetting lapsed slots"))?;
            let requested = group.iter().map(|index| &requests[*index]);
            let takes = SlotRequest::take_in_turn(requested, |key| waiting.contains(key), &mut running, &started);
            for (&index, take) in group.iter().zip(takes) {
                let request = &requests[index];
                if take > 0 {
                    sqlx::query(ADD)
                        .bind(name)
                        .bind(request.concurrency_key.as_str())
                        .bind(request.owner.as_str())
                        .bind(i64::from(take))
                        .bind(request.lease_until)
                        .bind(request.now)
                        .execute(&mut *conn)
                        .await
                        .map_err(backend("taking slots"))?;
                }
                taken[index] = take;
            }
        }
        Ok::<_, StoreError>(taken)
    }
    .await;
    let taken = store.end_immediate(&mut conn, taken, "committing a reservation of slots").await?;
    store.stats.record_commit(1);
    Ok(taken)
}

pub(super) async fn release(
    store: &SqliteStore,
    owner: &str,
    releases: &[(String, String, u32)],
) -> Result<(), StoreError> {
    if releases.is_empty() {
        return Ok(());
    }
    let mut conn = store.writer().await?;
    store.begin_immediate(&mut conn, "beginning a release of slots").await?;
    let released = async {
        for (name, key, count) in releases {
            sqlx::query(
                "UPDATE activity_slots SET slots = max(slots - ?4, 0) WHERE name = ?1 AND concurrency_key = ?2 \
                 AND owner = ?3",
            )
            .bind(name.as_str())
            .bind(key.as_str())
            .bind(owner)
            .bind(i64::from(*count))
            .execute(&mut *conn)
            .await
            .map_err(backend("giving slots back"))?;
        }
        sqlx::query("DELETE FROM activity_slots WHERE owner = ? AND slots = 0")
            .bind(owner)
            .execute(&mut *conn)
            .await
            .map_err(backend("giving slots back"))?;
        Ok::<_, StoreError>(())
    }
    .await;
    store.end_immediate(&mut conn, released, "committing a release of slots").await?;
    store.stats.record_commit(1);
    Ok(())
}
