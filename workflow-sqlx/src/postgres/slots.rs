//! Activity slots (see `Store::reserve_slots`): the requests of each activity behind its advisory
//! lock, the one capped claims and leasing writes take, so slots are counted and taken atomically
//! with them.

use std::collections::HashSet;

use sqlx::postgres::PgPool;
use workflow_core::store::{SlotRequest, StoreError, WakeSignal};

use super::claims::running_and_started;
use super::retry::{failed, retrying, Failure};
use super::signals::notice;
use super::sql::{ADD_SLOTS, FORGET_EMPTY_SLOTS, FORGET_LAPSED_SLOTS, GIVE_BACK_SLOTS, KEYS_WAITING, LOCK_TASK_CAP};

pub(super) async fn reserve(pool: &PgPool, requests: &[SlotRequest]) -> Result<Vec<u32>, StoreError> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    // The locks in name order, as claims take them; each activity's requests together.
    let groups = SlotRequest::by_activity(requests);
    retrying(|| async {
        let mut tx = pool.begin().await.map_err(failed("beginning a reservation of slots"))?;
        let mut taken = vec![0; requests.len()];
        for group in &groups {
            for (index, take) in reserve_one_activity(&mut tx, requests, group).await? {
                taken[index] = take;
            }
        }
        tx.commit().await.map_err(failed("committing a reservation of slots"))?;
        Ok(taken)
    })
    .await
}

/// The requests `group` (indexes into `requests`), all of one activity, behind its lock: the
/// running count and the waiting keys are read once for all of them, at the first one's `now` (a
/// worker asks at one moment for all), and each request's slots count as running for the next.
/// Returns `(index, slots taken)`.
async fn reserve_one_activity(
    tx: &mut sqlx::PgConnection,
    requests: &[SlotRequest],
    group: &[usize],
) -> Result<Vec<(usize, u32)>, Failure> {
    let first = &requests[group[0]];
    let (name, now) = (first.cap.activity.as_str(), first.now);
    sqlx::query(LOCK_TASK_CAP).bind(name).execute(&mut *tx).await.map_err(failed("locking an activity's cap"))?;
    let keys: Vec<&str> = group.iter().map(|index| requests[*index].concurrency_key.as_str()).collect();
    let waiting: HashSet<String> = sqlx::query_scalar(KEYS_WAITING)
        .bind(name)
        .bind(&keys)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed("looking for queued tasks"))?
        .into_iter()
        .collect();
    // Nothing to count when a task waits under every key asked for: no slot is taken then.
    let (mut running, started) = if keys.iter().all(|key| waiting.contains(*key)) {
        Default::default()
    } else {
        running_and_started(&mut *tx, &first.cap, now).await?
    };
    // Lapsed slots (of a worker gone without a word) count no more; their rows go.
    sqlx::query(FORGET_LAPSED_SLOTS)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(failed("forgetting lapsed slots"))?;
    let takes = SlotRequest::take_in_turn(
        group.iter().map(|index| &requests[*index]),
        |key| waiting.contains(key),
        &mut running,
        &started,
    );
    let mut taken = Vec::with_capacity(group.len());
    for (&index, take) in group.iter().zip(takes) {
        let request = &requests[index];
        if take > 0 {
            sqlx::query(ADD_SLOTS)
                .bind(name)
                .bind(request.concurrency_key.as_str())
                .bind(request.owner.as_str())
                .bind(i64::from(take))
                .bind(request.lease_until)
                .bind(request.now)
                .execute(&mut *tx)
                .await
                .map_err(failed("taking slots"))?;
        }
        taken.push((index, take));
    }
    Ok(taken)
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
