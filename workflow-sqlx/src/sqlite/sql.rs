//! The SQL text of a write batch: the shapes of its multi-row statements ([`Shape`]), each spelled
//! once for every power-of-two number of rows, the fence trigger its checks fail through, and the
//! start of a transaction that adds events.

use std::sync::OnceLock;

use workflow_core::store::RuntimeStatus;

/// The `instances` columns an insert writes, in the order `bind_create` binds them; every
/// statement that creates instances (a batch's, a debounce's, a schedule's) names them from here.
macro_rules! create_columns {
    () => {
        "id, workflow, status, input, output, error, generation, created_at, updated_at, owner, lease_until, \
         parent_id, custom_status, wake_at, priority, concurrency_key, trace_context"
    };
}
pub(super) use create_columns;

/// How many columns [`create_columns`] names (and `bind_create` binds).
pub(super) const CREATE_COLUMNS: usize = 17;

/// Rows per statement at most; a power of two (see `add_steps` in [`batch`]).
///
/// [`batch`]: super::batch
pub(super) const MAX_ROWS: usize = 256;

/// The multi-row statements a batch is written with.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    Create,
    Put,
    SetStatus,
    Finish,
    AddEvent,
    Consume,
    SetWake,
    Evict,
    SetCustomStatus,
    ContinueAsNew,
    EnqueueTask,
    DeleteTask,
    /// Every task of the named instances (for Finish and Purge).
    FinishTasks,
    ContinuedJournal,
    ContinuedEvents,
    ContinuedTasks,
    Fence,
    Assert,
    InboxRoom,
    PurgeInstance,
    PurgeJournal,
    PurgeEvents,
    /// The debounce keys pointing at the named instances.
    PurgeDebounces,
}

impl Shape {
    const ALL: [Shape; 23] = [
        Shape::Create,
        Shape::Put,
        Shape::SetStatus,
        Shape::Finish,
        Shape::AddEvent,
        Shape::Consume,
        Shape::SetWake,
        Shape::Evict,
        Shape::SetCustomStatus,
        Shape::ContinueAsNew,
        Shape::EnqueueTask,
        Shape::DeleteTask,
        Shape::FinishTasks,
        Shape::ContinuedJournal,
        Shape::ContinuedEvents,
        Shape::ContinuedTasks,
        Shape::Fence,
        Shape::Assert,
        Shape::InboxRoom,
        Shape::PurgeInstance,
        Shape::PurgeJournal,
        Shape::PurgeEvents,
        Shape::PurgeDebounces,
    ];

    fn columns(self) -> usize {
        match self {
            Shape::Create => CREATE_COLUMNS,
            Shape::Put => 12,
            Shape::SetStatus | Shape::SetCustomStatus => 3,
            Shape::Finish => 6,
            Shape::AddEvent => 6,
            Shape::InboxRoom => 5,
            Shape::Consume | Shape::ContinueAsNew => 4,
            Shape::SetWake | Shape::Evict => 2,
            Shape::EnqueueTask => 12,
            Shape::DeleteTask => 3,
            Shape::FinishTasks
            | Shape::ContinuedJournal
            | Shape::ContinuedEvents
            | Shape::ContinuedTasks
            | Shape::PurgeInstance
            | Shape::PurgeJournal
            | Shape::PurgeEvents
            | Shape::PurgeDebounces => 1,
            Shape::Fence => 2,
            // The id, and a slot per status (see `bind_assert`).
            Shape::Assert => 1 + RuntimeStatus::ALL.len(),
        }
    }

    fn head(self) -> &'static str {
        match self {
            Shape::Create => concat!("INSERT INTO instances (", create_columns!(), ") VALUES "),
            Shape::Put => {
                "INSERT INTO journal \
                 (instance_id, generation, seq, kind, name, status, input, payload, attempt, due_at, recorded_at, \
                 parallel_group) VALUES "
            }
            Shape::SetStatus => "UPDATE instances SET status = v.column2, updated_at = v.column3 FROM (VALUES ",
            Shape::Finish => {
                "UPDATE instances SET status = v.column2, output = v.column3, error = v.column4, \
                 updated_at = v.column5, completed_at = v.column6, owner = NULL, lease_until = NULL FROM (VALUES "
            }
            Shape::AddEvent => {
                "INSERT INTO events (seq, instance_id, name, payload, created_at, payload_bytes) VALUES "
            }
            Shape::Consume => {
                "UPDATE events SET consumed_generation = v.column3, consumed_by_seq = v.column4 FROM (VALUES "
            }
            Shape::SetWake => "UPDATE instances SET wake_at = v.column2 FROM (VALUES ",
            Shape::Evict => "UPDATE instances SET owner = NULL, lease_until = NULL, wake_at = v.column2 FROM (VALUES ",
            Shape::SetCustomStatus => {
                "UPDATE instances SET custom_status = v.column2, updated_at = v.column3 FROM (VALUES "
            }
            Shape::ContinueAsNew => {
                "UPDATE instances SET input = v.column2, generation = v.column3, status = 'Running', \
                 output = NULL, error = NULL, updated_at = v.column4, completed_at = NULL FROM (VALUES "
            }
            Shape::EnqueueTask => {
                "INSERT INTO activity_tasks \
                 (instance_id, generation, seq, name, input, attempt, start_to_close_ms, heartbeat_timeout_ms, \
                 visible_at, concurrency_key, priority, trace_context) VALUES "
            }
            Shape::DeleteTask => "DELETE FROM activity_tasks WHERE (instance_id, generation, seq) IN (VALUES ",
            Shape::FinishTasks => "DELETE FROM activity_tasks WHERE instance_id IN (VALUES ",
            Shape::ContinuedJournal => "DELETE FROM journal WHERE instance_id IN (VALUES ",
            Shape::ContinuedEvents => {
                "DELETE FROM events WHERE consumed_by_seq IS NOT NULL AND instance_id IN \
                 (SELECT id FROM instances WHERE id IN (VALUES "
            }
            Shape::ContinuedTasks => "DELETE FROM activity_tasks WHERE instance_id IN (VALUES ",
            Shape::Fence | Shape::Assert | Shape::InboxRoom => {
                "INSERT INTO temp.fenced (id) SELECT v.column1 FROM (VALUES "
            }
            Shape::PurgeInstance => "DELETE FROM instances WHERE id IN (VALUES ",
            Shape::PurgeJournal => "DELETE FROM journal WHERE instance_id IN (VALUES ",
            Shape::PurgeEvents => "DELETE FROM events WHERE instance_id IN (VALUES ",
            Shape::PurgeDebounces => "DELETE FROM debounces WHERE instance_id IN (VALUES ",
        }
    }

    fn tail(self) -> &'static str {
        match self {
            // The ids that come back are the ones inserted; the others existed.
            // A script returns the rows of all its statements together: the column name tells them
            // apart.
            Shape::Create => " ON CONFLICT (id) DO NOTHING RETURNING id AS created",
            // Rows of one statement are inserted in order, so a later duplicate key replaces an
            // earlier one, as separate statements would.
            Shape::Put => {
                " ON CONFLICT (instance_id, generation, seq) DO UPDATE SET \
                 kind = excluded.kind, name = excluded.name, status = excluded.status, input = excluded.input, \
                 payload = excluded.payload, attempt = excluded.attempt, due_at = excluded.due_at, \
                 recorded_at = excluded.recorded_at, parallel_group = excluded.parallel_group"
            }
            // Event ids are assigned by the plan, so the only conflict is the padding repeating
            // the last row; the ids coming back are counted to catch any other.
            Shape::AddEvent => " ON CONFLICT DO NOTHING RETURNING seq AS added",
            // Only an event of that instance, and only its first consumer is kept. An event
            // appears once per statement (the plan drops repeats; padding repeats identical rows).
            Shape::Consume => {
                ") AS v WHERE events.seq = v.column2 AND events.instance_id = v.column1 \
                 AND events.consumed_by_seq IS NULL"
            }
            // An id appears in one statement with one set of values only (at most one op per id
            // per layer, plus identical padding): the join would pick any of its rows.
            Shape::SetStatus | Shape::Finish | Shape::SetWake | Shape::Evict | Shape::SetCustomStatus => {
                ") AS v WHERE instances.id = v.column1"
            }
            Shape::ContinueAsNew => ") AS v WHERE instances.id = v.column1",
            // After the restart, of the instances that exist (a missing one has no generation, and
            // `generation < NULL` holds for no row): what is older than their new generation.
            Shape::ContinuedJournal => {
                ") AND generation < (SELECT i.generation FROM instances AS i WHERE i.id = journal.instance_id)"
            }
            Shape::ContinuedEvents => "))",
            Shape::ContinuedTasks => {
                ") AND generation < (SELECT i.generation FROM instances AS i WHERE i.id = activity_tasks.instance_id)"
            }
            // A row for every asserted (instance, owner) that does not hold, which the temporary
            // table's trigger refuses: the statement fails, with [`FENCED`] in its message.
            Shape::Fence => {
                ") AS v WHERE NOT EXISTS \
                 (SELECT 1 FROM instances AS i WHERE i.id = v.column1 AND i.owner = v.column2)"
            }
            // Likewise a row for every asserted (instance, allowed statuses) that does not hold:
            // the instance is missing or its status is none of the slots (NULL for a status not
            // allowed, which matches nothing).
            Shape::Assert => {
                ") AS v WHERE NOT EXISTS (SELECT 1 FROM instances AS i WHERE i.id = v.column1 AND i.status IN \
                 (v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8))"
            }
            // Likewise a row for every inbox without the room asked for (id, events and bytes the
            // batch adds, the most events and bytes): counted and summed from `events_unconsumed`.
            Shape::InboxRoom => {
                ") AS v WHERE EXISTS (SELECT 1 FROM (SELECT count(*) AS n, COALESCE(sum(e.payload_bytes), 0) AS b \
                 FROM events AS e WHERE e.instance_id = v.column1 AND e.consumed_by_seq IS NULL) AS held \
                 WHERE held.n + v.column2 > v.column4 OR held.b + v.column3 > v.column5)"
            }
            // Queued afresh, or replacing a task of an earlier attempt only (a repeated row, of the
            // same attempt, changes nothing). The plan gives each key one row per layer.
            Shape::EnqueueTask => {
                " ON CONFLICT (instance_id, generation, seq) DO UPDATE SET \
                 name = excluded.name, input = excluded.input, attempt = excluded.attempt, \
                 start_to_close_ms = excluded.start_to_close_ms, heartbeat_timeout_ms = excluded.heartbeat_timeout_ms, \
                 visible_at = excluded.visible_at, concurrency_key = excluded.concurrency_key, \
                 priority = excluded.priority, trace_context = excluded.trace_context, owner = NULL, lease_until = NULL, outcome_succeeded = NULL, outcome = NULL, finished_at = NULL \
                 WHERE activity_tasks.attempt < excluded.attempt"
            }
            Shape::DeleteTask
            | Shape::FinishTasks
            | Shape::PurgeInstance
            | Shape::PurgeJournal
            | Shape::PurgeEvents
            | Shape::PurgeDebounces => ")",
        }
    }

    /// The statement for `rows` rows (a power of two up to [`MAX_ROWS`]), built once.
    pub(super) fn sql(self, rows: usize) -> Option<&'static str> {
        static SQL: OnceLock<Vec<Vec<String>>> = OnceLock::new();
        let table = SQL.get_or_init(|| {
            Shape::ALL
                .iter()
                .map(|shape| {
                    let row = format!("({})", vec!["?"; shape.columns()].join(", "));
                    (0..=MAX_ROWS.trailing_zeros())
                        .map(|log| {
                            format!("{}{}{}", shape.head(), vec![row.as_str(); 1 << log].join(", "), shape.tail())
                        })
                        .collect()
                })
                .collect()
        });
        if !rows.is_power_of_two() {
            return None;
        }
        let log = rows.trailing_zeros() as usize;
        table.get(self as usize).and_then(|sizes| sizes.get(log)).map(String::as_str)
    }
}

/// The message the fence trigger fails a statement with (for a fence or a status assertion).
pub(super) const FENCED: &str = "workflow-sqlx: fenced";

/// Set up on every writer connection: the temporary table a [`Shape::Fence`] or [`Shape::Assert`]
/// statement inserts the assertions that do not hold into, whose trigger fails the statement (and
/// with it the script) when any arrives. It never holds a row.
pub(super) const FENCE_SETUP: &str = "CREATE TEMP TABLE IF NOT EXISTS fenced (id TEXT); \
     CREATE TEMP TRIGGER IF NOT EXISTS fenced_refused BEFORE INSERT ON fenced \
     BEGIN SELECT RAISE(ABORT, 'workflow-sqlx: fenced'); END";

/// Starts a write transaction and reads the last event id under its lock, in one trip.
pub(super) const BEGIN_READING_LAST_EVENT: &str = "BEGIN IMMEDIATE; \
     SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), \
     COALESCE((SELECT MAX(seq) FROM events), 0))";
