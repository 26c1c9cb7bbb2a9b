//! Writing a batch in a transaction: its checks read and locked, its layers applied statement by
//! statement, its signals sent, and its commit.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::{PgConnection, PgPool};
use workflow_core::store::{ActivityCap, Lease, Millis, StoreError, TaskLease, WakeSignal, WriteOp};

use super::bind::{
    bind_consumes, bind_continues, bind_creates, bind_customs, bind_enqueues, bind_events, bind_finishes, bind_puts,
    bind_statuses, bind_task_keys, bind_wakes, last_puts, Args,
};
use super::cache::StatementCache;
use super::claims::running_and_started;
use super::retry::{failed, Failure};
use super::signals::{assigned_notices, batch_notices, notice};
use super::sql::{
    ADD_EVENT, CHECK, CONSUME, CONTINUE_AS_NEW, COUNT_INBOXES, CREATE, DELETE_TASK, ENQUEUE_TASK, EVENT_IDS, EVICT,
    FINISH, LOCK_INBOXES, LOCK_TASK_CAP, NOTIFY, PURGE, PUT, RECORD_STARTS, SET_CUSTOM_STATUS, SET_STATUS, SET_WAKE,
    TAKE_LEASES,
};
use super::starts::{decide, decide_assigns, lock_workflows, BatchCreates, LeasedCreate};
use super::statement::Single;
use crate::shared::leases::{candidates, leased_activities, mark_taken, room_of, LeaseKey};
use crate::shared::plan::{skipped_ids, Checked, Inbox, Layer, Plan};
use crate::shared::to_i64;

/// Writes `plan` once: as one statement where it allows ([`Single`]), else in a transaction that
/// checks its fences and status assertions, applies its layers, sends its signals (`notices`, and
/// the `Finished` of watched instances it finishes) and commits. Returns the indexes (in the batch)
/// of the creates that were skipped.
///
/// `leases` (see `Store::write_leasing`) on `ops`' tasks and instances are taken in the same
/// transaction, behind each capped workflow's and activity's advisory lock (the one its claims
/// take; the workflows' in name order, then the activities'): the starts decided before the
/// layers (their creates insert them owned), the tasks' taken after them; returns which it took.
/// The signals sent are `ops`' (see [`batch_notices`]), less the `Runnable` of the starts it
/// leased. The starts it assigns (`Lease::Assign`) are decided first of all the row locks (see
/// [`decide_assigns`]), inserted owned by their workers, and signalled to them
/// ([`assigned_notices`]) instead of made claimable.
pub(super) async fn try_write(
    pool: &PgPool,
    channel: &str,
    statements: &StatementCache,
    plan: &Plan<'_>,
    ops: &[WriteOp],
    leases: &[Lease],
) -> Result<(Vec<usize>, Vec<bool>), Failure> {
    if leases.is_empty() {
        let notices = batch_notices(ops, &[]);
        if let Some(single) = Single::new(plan, channel, &notices, statements) {
            return Ok((single.run(plan, pool).await?, Vec::new()));
        }
    }
    let (tasks, starts) = Lease::split(leases);
    let assigns = Lease::assigns(leases);
    let batch = match starts.is_empty() && assigns.is_empty() {
        true => None,
        false => Some(BatchCreates::of(ops, leases)),
    };
    let mut tx = pool.begin().await.map_err(failed("beginning a write"))?;
    // The caps' locks before any row lock, as a claim takes them: a claim holding one never
    // waits for a row this write holds while this write waits for its lock.
    lock_workflows(&mut tx, &starts).await?;
    let activities = leased_activities(&tasks);
    for (cap, _) in &activities {
        sqlx::query(LOCK_TASK_CAP)
            .bind(cap.activity.as_str())
            .execute(&mut *tx)
            .await
            .map_err(failed("locking an activity's cap"))?;
    }
    // The assigned workers' rows before any instance's row, in the order a dead worker's release
    // locks them.
    let assigned = match &batch {
        Some(batch) if !assigns.is_empty() => decide_assigns(&mut tx, &assigns, batch).await?,
        _ => HashMap::new(),
    };
    let (fenced, asserted) = plan.checked_ids();
    let mut found = std::collections::HashMap::new();
    if !fenced.is_empty() || !asserted.is_empty() {
        let rows = sqlx::query(CHECK)
            .bind(&fenced)
            .bind(&asserted)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("checking leases and statuses"))?;
        for row in rows {
            let id: String = sqlx::Row::try_get(&row, 0).map_err(failed("reading leases"))?;
            let owner: Option<String> = sqlx::Row::try_get(&row, 1).map_err(failed("reading leases"))?;
            let status: String = sqlx::Row::try_get(&row, 2).map_err(failed("reading statuses"))?;
            found.insert(id, Checked { owner, status });
        }
    }
    let inboxes = inboxes(plan, &mut tx).await?;
    if !fenced.is_empty() || !asserted.is_empty() || !plan.inboxes.is_empty() {
        plan.check(&found, &inboxes).map_err(Failure::Store)?;
    }
    let decision = match &batch {
        Some(batch) if !starts.is_empty() => Some(decide(&mut tx, &starts, batch).await?),
        _ => None,
    };
    let mut leased = decision.as_ref().map(|decision| decision.leased_creates(&starts)).unwrap_or_default();
    // No id is in both: a create with two leases is a candidate for neither.
    leased.extend(assigned.iter().map(|(id, create)| (*id, *create)));
    let (skipped, watched) = apply(plan, &leased, &mut tx).await?;
    let existing = skipped_ids(ops, &skipped);
    let started = match decision {
        None => Vec::new(),
        Some(decision) => decision.taken(&mut tx, &starts, &existing).await?,
    };
    let mut taken = Lease::merge(leases, take_leases(&mut tx, &tasks, activities).await?, started);
    let mut handed = Vec::new();
    for (index, assign) in &assigns {
        let id = assign.instance_id.as_str();
        taken[*index] = assigned.contains_key(id) && !existing.contains(id);
        if taken[*index] {
            handed.push((assign.owner.as_str(), id));
        }
    }
    let mut notices = batch_notices(ops, &Lease::started(leases, &taken));
    notices.extend(assigned_notices(&handed));
    notices.extend(watched.into_iter().filter_map(|id| notice(&WakeSignal::Finished(id))));
    if !notices.is_empty() {
        sqlx::query(NOTIFY)
            .bind(channel)
            .bind(&notices)
            .execute(&mut *tx)
            .await
            .map_err(failed("sending wake signals"))?;
    }
    tx.commit().await.map_err(failed("committing a write"))?;
    Ok((skipped, taken))
}

/// Takes what it can of `leases`, in order, in the open transaction, which holds the locks of
/// `activities` (theirs): per activity its live leases and its window's starts per key counted
/// once (after forgetting starts a period old), the leases that fit in what is left taken in one
/// statement per owner (each only if its task is still queued unowned and unfinished at its
/// attempt under its key), and the rate-limited ones taken recorded as starts.
async fn take_leases(
    tx: &mut PgConnection,
    leases: &[TaskLease],
    activities: Vec<(&ActivityCap, Millis)>,
) -> Result<Vec<bool>, Failure> {
    let mut taken = vec![false; leases.len()];
    if leases.is_empty() {
        return Ok(taken);
    }
    let mut room: HashMap<LeaseKey<'_>, u64> = HashMap::new();
    for (cap, now) in activities {
        let (running, started) = running_and_started(tx, cap, now).await?;
        room.extend(room_of(leases, cap, &running, &started));
    }
    for run in &candidates(leases, room) {
        let pick = |f: fn(&TaskLease) -> i64| run.iter().map(|index| f(&leases[*index])).collect::<Vec<_>>();
        let owner = leases[run[0]].owner.as_str();
        let until = run.iter().map(|index| leases[*index].lease_until).max().unwrap_or_default();
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(TAKE_LEASES)
            .bind(owner)
            .bind(until)
            .bind(run.iter().map(|index| leases[*index].instance_id.as_str()).collect::<Vec<_>>())
            .bind(pick(|lease| i64::from(lease.generation)))
            .bind(pick(|lease| i64::from(lease.seq)))
            .bind(pick(|lease| i64::from(lease.attempt)))
            .bind(run.iter().map(|index| leases[*index].cap.activity.as_str()).collect::<Vec<_>>())
            .bind(run.iter().map(|index| leases[*index].concurrency_key.as_str()).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("taking tasks' leases"))?;
        for (id, generation, seq, attempt) in rows {
            mark_taken(leases, run, &mut taken, (&id, generation, seq, attempt));
        }
    }
    let mut starts: HashMap<(&str, Millis), Vec<&str>> = HashMap::new();
    for (lease, _) in leases.iter().zip(&taken).filter(|(lease, taken)| **taken && lease.cap.rate.is_some()) {
        starts.entry((lease.cap.activity.as_str(), lease.now)).or_default().push(lease.concurrency_key.as_str());
    }
    for ((activity, now), keys) in starts {
        sqlx::query(RECORD_STARTS)
            .bind(activity)
            .bind(keys)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(failed("recording starts"))?;
    }
    Ok(taken)
}

/// What the inboxes the plan checks the room of held before it, read under their locks (see
/// [`LOCK_INBOXES`]); empty when it checks none.
async fn inboxes(plan: &Plan<'_>, conn: &mut PgConnection) -> Result<HashMap<String, Inbox>, Failure> {
    let ids = plan.inbox_ids();
    let mut inboxes = HashMap::new();
    if ids.is_empty() {
        return Ok(inboxes);
    }
    sqlx::query(&LOCK_INBOXES).bind(&ids).execute(&mut *conn).await.map_err(failed("locking inboxes"))?;
    let rows = sqlx::query(COUNT_INBOXES).bind(&ids).fetch_all(&mut *conn).await.map_err(failed("checking inboxes"))?;
    for row in rows {
        let read = failed("reading inboxes");
        let id: String = sqlx::Row::try_get(&row, 0).map_err(&read)?;
        let events: i64 = sqlx::Row::try_get(&row, 1).map_err(&read)?;
        let bytes: i64 = sqlx::Row::try_get(&row, 2).map_err(&read)?;
        inboxes.insert(id, Inbox { events, bytes });
    }
    Ok(inboxes)
}

/// Applies `plan` in the open transaction `conn`, its creates of `leased` inserted owned (start
/// leases taken); returns the indexes (in the batch) of the creates that were skipped, and the
/// ids of the finished instances someone watches.
async fn apply(
    plan: &Plan<'_>,
    leased: &HashMap<&str, LeasedCreate<'_>>,
    conn: &mut PgConnection,
) -> Result<(Vec<usize>, Vec<String>), Failure> {
    let event_ids = if plan.events > 0 { take_event_ids(&mut *conn, plan.events).await? } else { Vec::new() };
    let mut skipped = Vec::new();
    let mut watched = Vec::new();
    for layer in &plan.layers {
        if !layer.puts.is_empty() {
            let puts = last_puts(layer);
            run(&mut *conn, PUT, |query| bind_puts(query, &puts), "writing journal records").await?;
        }
        if !layer.task_deletes.is_empty() {
            run(&mut *conn, DELETE_TASK, |query| bind_task_keys(query, &layer.task_deletes), "deleting tasks").await?;
        }
        if !layer.task_enqueues.is_empty() {
            run(&mut *conn, ENQUEUE_TASK, |query| bind_enqueues(query, &layer.task_enqueues), "queueing tasks").await?;
        }
        if !layer.consumes.is_empty() {
            run(&mut *conn, CONSUME, |query| bind_consumes(query, layer), "consuming events").await?;
        }
        if !layer.creates.is_empty() {
            let rows =
                run(&mut *conn, CREATE, |query| bind_creates(query, layer, leased), "creating instances").await?;
            let created = rows
                .iter()
                .map(|row| sqlx::Row::try_get::<String, _>(row, 0))
                .collect::<Result<HashSet<_>, _>>()
                .map_err(failed("reading created ids"))?;
            skipped.extend(skipped_creates(layer, &created));
        }
        if !layer.statuses.is_empty() {
            run(&mut *conn, SET_STATUS, |query| bind_statuses(query, layer), "setting statuses").await?;
        }
        if !layer.finishes.is_empty() {
            let rows = run(&mut *conn, &FINISH, |query| bind_finishes(query, layer), "finishing instances").await?;
            for row in rows {
                watched.push(sqlx::Row::try_get::<String, _>(&row, 0).map_err(failed("reading finished ids"))?);
            }
        }
        if !layer.events.is_empty() {
            let mut args = Args::default();
            bind_events(&mut args, layer, &event_ids)?;
            let query = sqlx::query_with(ADD_EVENT, args.finish("adding events")?);
            query.execute(&mut *conn).await.map_err(failed("adding events"))?;
        }
        if !layer.wakes.is_empty() {
            run(&mut *conn, SET_WAKE, |query| bind_wakes(query, &layer.wakes), "setting wake-ups").await?;
        }
        if !layer.evicts.is_empty() {
            run(&mut *conn, EVICT, |query| bind_wakes(query, &layer.evicts), "evicting instances").await?;
        }
        if !layer.customs.is_empty() {
            run(&mut *conn, SET_CUSTOM_STATUS, |query| bind_customs(query, layer), "setting custom statuses").await?;
        }
        if !layer.continues.is_empty() {
            run(&mut *conn, CONTINUE_AS_NEW, |query| bind_continues(query, layer), "continuing as new").await?;
        }
        if !layer.purges.is_empty() {
            run(
                &mut *conn,
                PURGE,
                |args| {
                    args.add(&layer.purges);
                },
                "purging instances",
            )
            .await?;
        }
    }
    skipped.sort_unstable();
    Ok((skipped, watched))
}

/// `count` new event ids, in increasing order: the `k`-th event of the batch (in op order) gets
/// the `k`-th. Taken from the sequence, so concurrent batches never share one.
async fn take_event_ids(conn: &mut PgConnection, count: i64) -> Result<Vec<i64>, Failure> {
    let mut ids: Vec<i64> =
        sqlx::query_scalar(EVENT_IDS).bind(count).fetch_all(conn).await.map_err(failed("taking event ids"))?;
    if to_i64(ids.len()) != count {
        return Err(Failure::Store(StoreError::Backend(format!(
            "postgres: taking event ids: got {} of {count}",
            ids.len()
        ))));
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The indexes (in the batch) of `layer`'s creates whose id is not among the `created` ones.
pub(super) fn skipped_creates(layer: &Layer<'_>, created: &HashSet<String>) -> Vec<usize> {
    layer.creates.iter().filter(|(_, r)| !created.contains(&r.id)).map(|(index, _)| *index).collect()
}

/// Runs one of a layer's statements in the open transaction `conn`; returns the rows it returned.
async fn run(
    conn: &mut PgConnection,
    sql: &str,
    bind: impl FnOnce(&mut Args),
    context: &'static str,
) -> Result<Vec<sqlx::postgres::PgRow>, Failure> {
    let mut args = Args::default();
    bind(&mut args);
    sqlx::query_with(sql, args.finish(context)?).fetch_all(conn).await.map_err(failed(context))
}
