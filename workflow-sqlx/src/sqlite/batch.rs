//! Writing a batch: its plan turned into statements of a few shapes ([`Step`]s, padded to a power
//! of two rows), sent as one script when small, in one `BEGIN IMMEDIATE` transaction; what came
//! back read for the creates that were skipped; and why the checks refused it, when they did.

use std::collections::HashMap;

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Column, Row};
use workflow_core::store::{Lease, StoreError, TaskLease, WriteOp};

use super::backend;
use super::bind::{
    bind_assert, bind_consume, bind_continue, bind_continue_id, bind_create, bind_custom, bind_enqueue, bind_event,
    bind_fence, bind_finish, bind_finish_id, bind_id, bind_inbox_room, bind_put, bind_status, bind_task_key, bind_wake,
    Query,
};
use super::claims::running_and_started;
use super::sql::{Shape, BEGIN_READING_LAST_EVENT, FENCED, MAX_ROWS};
use super::starts::take_starts;
use crate::shared::leases::{candidates, leased_activities, mark_taken, room_of};
use crate::shared::plan::{skipped_ids, Checked, Inbox, Plan};

/// One statement of a write: a shape, its number of rows (a power of two) and what binds them.
struct Step<'q> {
    shape: Shape,
    rows: usize,
    bind: Box<dyn FnOnce(Query<'q>) -> Query<'q> + Send + 'q>,
}

impl<'q> Step<'q> {
    fn sql(&self) -> Result<&'static str, StoreError> {
        self.shape
            .sql(self.rows)
            .ok_or_else(|| StoreError::Backend(format!("sqlite: no {:?} statement for {} rows", self.shape, self.rows)))
    }
}

/// Adds the statements writing `items` with `shape`, `bind` binding one row.
///
/// Items go [`MAX_ROWS`] to a statement. A shorter last chunk is padded to the next power of two
/// by repeating its last row, which changes nothing (the same upsert, update or delete again, an
/// event insert that conflicts and is skipped, a create that is skipped and not reported since it
/// is no op of the batch, a fence row refused again), so a handful of statement shapes, each
/// prepared once per connection, cover every batch with one statement per chunk.
fn add_steps<'q, T: Sync>(
    steps: &mut Vec<Step<'q>>,
    shape: Shape,
    items: &'q [T],
    bind: impl Fn(Query<'q>, &'q T) -> Query<'q> + Copy + Send + 'q,
) {
    for chunk in items.chunks(MAX_ROWS) {
        let Some(last) = chunk.last() else { continue };
        let rows = chunk.len().next_power_of_two();
        let padding = std::iter::repeat_n(last, rows - chunk.len());
        let bind = move |query| chunk.iter().chain(padding).fold(query, bind);
        steps.push(Step { shape, rows, bind: Box::new(bind) });
    }
}

/// Batches this small (in statements, and in rows per statement) are sent to SQLite as one script
/// (see [`apply`]); bigger ones statement by statement, as they amortise the trips and would make
/// too many different scripts to keep prepared.
const SCRIPT_STEPS: usize = 16;
const SCRIPT_ROWS: usize = 8;

impl<'a> Plan<'a> {
    /// The plan's statements, in the order they run: the checks (fences, then status assertions),
    /// then layer by layer the journal records, task changes and event consumptions, then the
    /// instance ops (a restart, and a purge, followed by the deletes it implies). `last_event` is
    /// the store's last event id.
    fn steps<'q>(&'q self, last_event: i64) -> Vec<Step<'q>>
    where
        'a: 'q,
    {
        let mut steps = Vec::new();
        add_steps(&mut steps, Shape::Fence, &self.fences, bind_fence);
        add_steps(&mut steps, Shape::Assert, &self.asserts, bind_assert);
        add_steps(&mut steps, Shape::InboxRoom, &self.inboxes, bind_inbox_room);
        for layer in &self.layers {
            add_steps(&mut steps, Shape::Put, &layer.puts, bind_put);
            add_steps(&mut steps, Shape::DeleteTask, &layer.task_deletes, bind_task_key);
            add_steps(&mut steps, Shape::EnqueueTask, &layer.task_enqueues, bind_enqueue);
            add_steps(&mut steps, Shape::Consume, &layer.consumes, bind_consume);
            add_steps(&mut steps, Shape::Create, &layer.creates, bind_create);
            add_steps(&mut steps, Shape::SetStatus, &layer.statuses, bind_status);
            add_steps(&mut steps, Shape::Finish, &layer.finishes, bind_finish);
            add_steps(&mut steps, Shape::FinishTasks, &layer.finishes, bind_finish_id);
            let bind = move |query, event| bind_event(query, event, last_event);
            add_steps(&mut steps, Shape::AddEvent, &layer.events, bind);
            add_steps(&mut steps, Shape::SetWake, &layer.wakes, bind_wake);
            add_steps(&mut steps, Shape::Evict, &layer.evicts, bind_wake);
            add_steps(&mut steps, Shape::SetCustomStatus, &layer.customs, bind_custom);
            add_steps(&mut steps, Shape::ContinueAsNew, &layer.continues, bind_continue);
            for shape in [Shape::ContinuedJournal, Shape::ContinuedEvents, Shape::ContinuedTasks] {
                add_steps(&mut steps, shape, &layer.continues, bind_continue_id);
            }
            // An event id of a purged instance is not handed out again: the next ones follow
            // `sqlite_sequence`, which remembers the largest id ever used.
            let purges = [
                Shape::PurgeJournal,
                Shape::PurgeEvents,
                Shape::FinishTasks,
                Shape::PurgeDebounces,
                Shape::PurgeInstance,
            ];
            for shape in purges {
                add_steps(&mut steps, shape, &layer.purges, bind_id);
            }
        }
        steps
    }

    /// Checks what the statements returned (in any order); returns the indexes (in the batch) of
    /// the creates that were skipped.
    ///
    /// Which of several creates of one id inserted it follows from how many times the id came
    /// back. Between two purges of the id (or the batch's start and end) only the first create can
    /// insert it, as the others find it there. After a purge the id is free, so the first create
    /// after one always inserts it; the first create before any purge did if the id came back
    /// once more than those. (An id's creates and purges are in different layers, in op order.)
    fn skipped(&self, returned: &[SqliteRow]) -> Result<Vec<usize>, StoreError> {
        let mut created: HashMap<String, usize> = HashMap::new();
        let mut added = 0_i64;
        for row in returned {
            match row.columns().first().map(|column| column.name()) {
                Some("created") => {
                    *created
                        .entry(row.try_get::<String, _>(0).map_err(backend("reading created ids"))?)
                        .or_default() += 1;
                }
                Some("added") => added += 1,
                _ => {}
            }
        }
        if added != self.events {
            return Err(StoreError::Backend(format!(
                "sqlite: adding events: {} of {} new event ids were taken",
                self.events - added.min(self.events),
                self.events
            )));
        }
        // Per id: whether it was purged yet, and whether the first create since (or since the
        // start) was seen.
        let mut seen: HashMap<&str, (bool, bool)> = HashMap::new();
        let mut after_purges: HashMap<&str, usize> = HashMap::new();
        let mut first_creates = Vec::new();
        let mut skipped = Vec::new();
        for layer in &self.layers {
            for (index, record) in &layer.creates {
                let id = record.id.as_str();
                let (purged, taken) = seen.entry(id).or_default();
                if *taken {
                    skipped.push(*index);
                } else if *purged {
                    *taken = true;
                    *after_purges.entry(id).or_default() += 1;
                } else {
                    *taken = true;
                    first_creates.push((*index, id));
                }
            }
            for id in &layer.purges {
                seen.insert(id, (true, false));
            }
        }
        for (index, id) in first_creates {
            let came_back = created.get(id).copied().unwrap_or_default();
            if came_back <= after_purges.get(id).copied().unwrap_or_default() {
                skipped.push(index);
            }
        }
        skipped.sort_unstable();
        Ok(skipped)
    }
}

/// Why the plan's checks refused it, read in the open transaction (where nothing of the batch ran
/// yet): [`StoreError::Fenced`] or [`StoreError::Conflict`] as [`Plan::check`] decides, or `None`
/// if every check holds after all.
pub(super) async fn refusal(conn: &mut SqliteConnection, plan: &Plan<'_>) -> Result<Option<StoreError>, StoreError> {
    let (fenced, asserted) = plan.checked_ids();
    let mut found = std::collections::HashMap::new();
    for chunk in fenced.chunks(500).chain(asserted.chunks(500)) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT id, owner, status FROM instances WHERE id IN ({marks})");
        let query = chunk.iter().fold(sqlx::query(&sql), |query, id| query.bind(*id));
        for row in query.fetch_all(&mut *conn).await.map_err(backend("checking leases and statuses"))? {
            let id: String = row.try_get(0).map_err(backend("reading leases"))?;
            let owner: Option<String> = row.try_get(1).map_err(backend("reading leases"))?;
            let status: String = row.try_get(2).map_err(backend("reading statuses"))?;
            found.insert(id, Checked { owner, status });
        }
    }
    let mut inboxes = HashMap::new();
    for chunk in plan.inbox_ids().chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT instance_id, count(*), COALESCE(sum(payload_bytes), 0) FROM events \
             WHERE instance_id IN ({marks}) AND consumed_by_seq IS NULL GROUP BY instance_id"
        );
        let query = chunk.iter().fold(sqlx::query(&sql), |query, id| query.bind(*id));
        for row in query.fetch_all(&mut *conn).await.map_err(backend("checking inboxes"))? {
            let id: String = row.try_get(0).map_err(backend("reading inboxes"))?;
            let events: i64 = row.try_get(1).map_err(backend("reading inboxes"))?;
            let bytes: i64 = row.try_get(2).map_err(backend("reading inboxes"))?;
            inboxes.insert(id, Inbox { events, bytes });
        }
    }
    Ok(plan.check(&found, &inboxes).err())
}

/// Whether `error` is the fence trigger refusing a statement (a fence or a status assertion).
pub(super) fn is_fenced(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(error) if error.message().contains(FENCED))
}

/// A write that failed: a statement (which may be a check refusing the batch), or a check.
pub(super) enum Failure {
    Statement(&'static str, sqlx::Error),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

fn statement(context: &'static str) -> impl Fn(sqlx::Error) -> Failure {
    move |error| Failure::Statement(context, error)
}

/// Applies `plan` in one transaction and commits it; returns the indexes (in the batch) of the
/// creates that were skipped. On failure the transaction may still be open.
///
/// A small plan goes to SQLite as one script, `BEGIN IMMEDIATE; <statements>; COMMIT` (or its one
/// statement alone), in one trip to the connection's thread, as a one-statement commit does: its
/// checks are the first statements, which fail when an assertion does not hold (see
/// [`Shape::Fence`] and [`Shape::Assert`]), so nothing after them runs. A plan that adds events
/// first reads the last event id under the write lock (the new ids follow it), and commits once it
/// has counted them. A big plan runs statement by statement.
///
/// `leases` (see `Store::write_leasing`) on `ops`' tasks and instances are taken after the plan's
/// statements, before the commit; the plan then runs statement by statement.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    plan: &Plan<'_>,
    ops: &[WriteOp],
    leases: &[Lease],
) -> Result<(Vec<usize>, Vec<bool>), Failure> {
    let adds_events = plan.events > 0;
    let last_event = if adds_events {
        let last: i64 = sqlx::query_scalar(BEGIN_READING_LAST_EVENT)
            .fetch_one(&mut *conn)
            .await
            .map_err(statement("reading the last event id"))?;
        if last.checked_add(plan.events).is_none() {
            return Err(StoreError::Backend("sqlite: adding events: event ids are exhausted".into()).into());
        }
        last
    } else {
        0
    };
    let steps = plan.steps(last_event);
    let small = steps.len() <= SCRIPT_STEPS && steps.iter().all(|step| step.rows <= SCRIPT_ROWS);
    let returned = if small && leases.is_empty() {
        // One statement is a transaction of its own.
        let alone = !adds_events && steps.len() == 1;
        let mut script = String::from(if adds_events || alone { "" } else { "BEGIN IMMEDIATE; " });
        for step in &steps {
            script.push_str(step.sql()?);
            script.push_str("; ");
        }
        if !adds_events && !alone {
            script.push_str("COMMIT");
        }
        let query = steps.into_iter().fold(sqlx::query(&script), |query, step| (step.bind)(query));
        let returned = query.fetch_all(&mut *conn).await.map_err(statement("writing a batch"))?;
        if !adds_events {
            // Committed: what came back only says which creates were skipped.
            return Ok((plan.skipped(&returned)?, Vec::new()));
        }
        returned
    } else {
        if !adds_events {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(statement("beginning a write"))?;
        }
        let mut returned = Vec::new();
        for step in steps {
            let sql = step.sql()?;
            let query = (step.bind)(sqlx::query(sql));
            returned.extend(query.fetch_all(&mut *conn).await.map_err(statement("writing a batch"))?);
        }
        returned
    };
    let skipped = plan.skipped(&returned)?;
    let (tasks, starts) = Lease::split(leases);
    let started = match starts.is_empty() {
        true => Vec::new(),
        false => take_starts(conn, &starts, &skipped_ids(ops, &skipped)).await?,
    };
    let taken = Lease::merge(leases, take_leases(conn, &tasks).await?, started);
    sqlx::query("COMMIT").execute(&mut *conn).await.map_err(statement("committing a write"))?;
    Ok((skipped, taken))
}

/// Takes what it can of `leases`, in order, in the open write transaction (see
/// `Store::write_leasing`). Each key's live leases and starts in the rate's window are counted
/// once (off `activity_tasks_holding` and `activity_starts_by_time`, as the capped claim counts
/// them, after forgetting starts a period old); the leases that fit in what is left are taken in
/// one statement per chunk, each only if its task is still queued unowned and unfinished at its
/// attempt under its key, and the rate-limited ones taken are recorded as starts.
async fn take_leases(conn: &mut SqliteConnection, leases: &[TaskLease]) -> Result<Vec<bool>, Failure> {
    let mut room = HashMap::new();
    for (cap, now) in leased_activities(leases) {
        let (running, started) = running_and_started(conn, cap, now).await?;
        room.extend(room_of(leases, cap, &running, &started));
    }
    let mut taken = vec![false; leases.len()];
    let runs = candidates(leases, room);
    for chunk in runs.iter().flat_map(|run| run.chunks(LEASES_PER_STATEMENT)) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let at = 3 + 6 * i;
                format!("(?{}, ?{}, ?{}, ?{}, ?{}, ?{})", at, at + 1, at + 2, at + 3, at + 4, at + 5)
            })
            .collect();
        let sql = format!(
            "UPDATE activity_tasks SET owner = ?1, lease_until = ?2 \
             WHERE (instance_id, generation, seq, attempt, name, concurrency_key) IN (VALUES {}) \
             AND outcome IS NULL AND owner IS NULL RETURNING instance_id, generation, seq, attempt",
            rows.join(", ")
        );
        // One owner per chunk, until the latest of its leases.
        let owner = leases[chunk[0]].owner.as_str();
        let until = chunk.iter().map(|index| leases[*index].lease_until).max().unwrap_or_default();
        let query = sqlx::query(&sql).bind(owner).bind(until);
        let query = chunk.iter().map(|index| &leases[*index]).fold(query, |query, lease| {
            query
                .bind(lease.instance_id.as_str())
                .bind(i64::from(lease.generation))
                .bind(i64::from(lease.seq))
                .bind(i64::from(lease.attempt))
                .bind(lease.cap.activity.as_str())
                .bind(lease.concurrency_key.as_str())
        });
        let returned = query.fetch_all(&mut *conn).await.map_err(statement("taking tasks' leases"))?;
        for row in returned {
            let read = |i: usize| row.try_get::<i64, _>(i).map_err(backend("reading a taken lease"));
            let id: String = row.try_get(0).map_err(backend("reading a taken lease"))?;
            mark_taken(leases, chunk, &mut taken, (&id, read(1)?, read(2)?, read(3)?));
        }
    }
    let starts: Vec<&TaskLease> = leases
        .iter()
        .zip(&taken)
        .filter(|(lease, taken)| **taken && lease.cap.rate.is_some())
        .map(|(l, _)| l)
        .collect();
    for chunk in starts.chunks(LEASES_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO activity_starts (name, concurrency_key, started_at) VALUES {}",
            vec!["(?, ?, ?)"; chunk.len()].join(", ")
        );
        let query = chunk.iter().fold(sqlx::query(&sql), |query, lease| {
            query.bind(lease.cap.activity.as_str()).bind(lease.concurrency_key.as_str()).bind(lease.now)
        });
        query.execute(&mut *conn).await.map_err(statement("recording starts"))?;
    }
    Ok(taken)
}

/// Leases taken per statement: six variables each.
const LEASES_PER_STATEMENT: usize = 100;
