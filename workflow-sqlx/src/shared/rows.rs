//! Reading rows back into records, for every backend (their tables have the same column names): a
//! column that does not decode, or holds a value the engine cannot have written, is a
//! [`StoreError::Corrupt`] naming the row.

use workflow_core::store::{
    EventRecord, InstanceKey, InstanceRecord, JournalRecord, RecordStatus, RuntimeStatus, ScheduleRecord, StepKind,
    StoreError, TaskOutcome, TaskRecord,
};

/// The `instances` columns [`instance_from_row`] reads, in table order.
pub(crate) const INSTANCE_COLUMNS: &str = "id, workflow, status, input, output, error, generation, created_at, \
     updated_at, owner, lease_until, parent_id, custom_status, wake_at, priority, concurrency_key, trace_context";

/// The `instances` columns [`key_from_row`] reads: the list order's, and the parent.
pub(crate) const KEY_COLUMNS: &str = "id, created_at, parent_id";

/// [`INSTANCE_COLUMNS`] for a list without payloads: the same names, the payloads (input, output,
/// custom status) never read.
pub(crate) const INSTANCE_COLUMNS_WITHOUT_PAYLOADS: &str = "id, workflow, status, '' AS input, \
     CAST(NULL AS TEXT) AS output, error, generation, created_at, updated_at, owner, lease_until, parent_id, \
     CAST(NULL AS TEXT) AS custom_status, wake_at, priority, concurrency_key, trace_context";

/// The `journal` columns [`record_from_row`] reads.
pub(crate) const JOURNAL_COLUMNS: &str =
    "instance_id, generation, seq, kind, name, status, input, payload, attempt, due_at, recorded_at, parallel_group";

/// The `events` columns [`event_from_row`] reads.
pub(crate) const EVENT_COLUMNS: &str = "seq, instance_id, name, payload, created_at";

/// The `activity_tasks` columns [`task_from_row`] reads.
pub(crate) const TASK_COLUMNS: &str = "instance_id, generation, seq, name, input, attempt, start_to_close_ms, \
     heartbeat_timeout_ms, visible_at, owner, lease_until, outcome_succeeded, outcome, finished_at, concurrency_key, \
     priority, trace_context";

/// The column types the stores' tables use, read from a backend's row.
pub(crate) trait Columns {
    /// A text column.
    fn text(&self, row: &str, column: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn maybe_text(&self, row: &str, column: &str) -> Result<Option<String>, StoreError>;
    /// An integer column.
    fn int(&self, row: &str, column: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn maybe_int(&self, row: &str, column: &str) -> Result<Option<i64>, StoreError>;
    /// A nullable boolean column (PostgreSQL's BOOLEAN; SQLite's INTEGER 0 or 1).
    fn maybe_bool(&self, row: &str, column: &str) -> Result<Option<bool>, StoreError>;

    /// An integer column holding a `u32`.
    fn uint(&self, row: &str, column: &str) -> Result<u32, StoreError> {
        let value = self.int(row, column)?;
        u32::try_from(value).map_err(|_| corrupt(row, column, format_args!("{value} is not a u32")))
    }

    /// A nullable integer column holding a `u32`.
    fn maybe_uint(&self, row: &str, column: &str) -> Result<Option<u32>, StoreError> {
        self.maybe_int(row, column)?
            .map(|value| u32::try_from(value).map_err(|_| corrupt(row, column, format_args!("{value} is not a u32"))))
            .transpose()
    }
}

macro_rules! columns {
    ($row:ty, $maybe_bool:expr) => {
        impl Columns for $row {
            fn text(&self, row: &str, column: &str) -> Result<String, StoreError> {
                sqlx::Row::try_get(self, column).map_err(|error| corrupt(row, column, error))
            }

            fn maybe_text(&self, row: &str, column: &str) -> Result<Option<String>, StoreError> {
                sqlx::Row::try_get(self, column).map_err(|error| corrupt(row, column, error))
            }

            fn int(&self, row: &str, column: &str) -> Result<i64, StoreError> {
                sqlx::Row::try_get(self, column).map_err(|error| corrupt(row, column, error))
            }

            fn maybe_int(&self, row: &str, column: &str) -> Result<Option<i64>, StoreError> {
                sqlx::Row::try_get(self, column).map_err(|error| corrupt(row, column, error))
            }

            fn maybe_bool(&self, row: &str, column: &str) -> Result<Option<bool>, StoreError> {
                $maybe_bool(self, row, column)
            }
        }
    };
}

// SQLite has no boolean type: sqlx would read any integer as one (non-zero is true), so the store
// reads the integer and takes only the 0 and 1 it writes.
#[cfg(feature = "sqlite")]
columns!(sqlx::sqlite::SqliteRow, |this: &sqlx::sqlite::SqliteRow, row: &str, column: &str| {
    match this.maybe_int(row, column)? {
        None => Ok(None),
        Some(0) => Ok(Some(false)),
        Some(1) => Ok(Some(true)),
        Some(other) => Err(corrupt(row, column, format_args!("{other} is not a boolean (0 or 1)"))),
    }
});
#[cfg(feature = "postgres")]
columns!(sqlx::postgres::PgRow, |this: &sqlx::postgres::PgRow, row: &str, column: &str| {
    sqlx::Row::try_get(this, column).map_err(|error| corrupt(row, column, error))
});

/// A column that did not decode, as a [`StoreError::Corrupt`] naming the row.
pub(crate) fn corrupt(row: &str, column: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{row}: column `{column}`: {error}"))
}

/// An `instances` row.
pub(crate) fn instance_from_row(row: &impl Columns) -> Result<InstanceRecord, StoreError> {
    let id = row.text("instance (unreadable id)", "id")?;
    let name = format!("instance {id:?}");
    let status = row.text(&name, "status")?;
    let status = RuntimeStatus::parse(&status)
        .ok_or_else(|| corrupt(&name, "status", format_args!("unknown runtime status {status:?}")))?;
    Ok(InstanceRecord {
        workflow: row.text(&name, "workflow")?,
        status,
        input: row.text(&name, "input")?,
        output: row.maybe_text(&name, "output")?,
        error: row.maybe_text(&name, "error")?,
        generation: row.uint(&name, "generation")?,
        created_at: row.int(&name, "created_at")?,
        updated_at: row.int(&name, "updated_at")?,
        owner: row.maybe_text(&name, "owner")?,
        lease_until: row.maybe_int(&name, "lease_until")?,
        parent_id: row.maybe_text(&name, "parent_id")?,
        custom_status: row.maybe_text(&name, "custom_status")?,
        wake_at: row.maybe_int(&name, "wake_at")?,
        priority: i32::try_from(row.int(&name, "priority")?)
            .map_err(|error| corrupt(&name, "priority", format_args!("out of range: {error}")))?,
        concurrency_key: row.text(&name, "concurrency_key")?,
        trace_context: row.maybe_text(&name, "trace_context")?,
        id,
    })
}

/// The `schedules` columns [`schedule_from_row`] reads.
pub(crate) const SCHEDULE_COLUMNS: &str = "id, workflow, spec, paused, next_fire_at, runs, created_at, updated_at";

/// A `schedules` row (`paused` is an integer, 0 or 1, on both backends).
pub(crate) fn schedule_from_row(row: &impl Columns) -> Result<ScheduleRecord, StoreError> {
    let id = row.text("schedule (unreadable id)", "id")?;
    let name = format!("schedule {id:?}");
    let paused = match row.int(&name, "paused")? {
        0 => false,
        1 => true,
        other => return Err(corrupt(&name, "paused", format_args!("{other} is not 0 or 1"))),
    };
    Ok(ScheduleRecord {
        workflow: row.text(&name, "workflow")?,
        spec: row.text(&name, "spec")?,
        paused,
        next_fire_at: row.maybe_int(&name, "next_fire_at")?,
        runs: row.text(&name, "runs")?,
        created_at: row.int(&name, "created_at")?,
        updated_at: row.int(&name, "updated_at")?,
        id,
    })
}

/// The key of an `instances` row read with [`KEY_COLUMNS`].
pub(crate) fn key_from_row(row: &impl Columns) -> Result<InstanceKey, StoreError> {
    let id = row.text("instance (unreadable id)", "id")?;
    let name = format!("instance {id:?}");
    Ok(InstanceKey { created_at: row.int(&name, "created_at")?, parent_id: row.maybe_text(&name, "parent_id")?, id })
}

/// A `journal` row of instance `id`'s generation `generation`.
/// A journal record read in a batch over several instances ([`Store::journals`]): kept when its
/// generation is the one asked for its instance (`wanted`), else `None`.
///
/// [`Store::journals`]: workflow_core::store::Store::journals
pub(crate) fn wanted_record_from_row(
    row: &impl Columns,
    wanted: &std::collections::HashMap<&str, u32>,
) -> Result<Option<JournalRecord>, StoreError> {
    let id = row.text("journal record", "instance_id")?;
    let generation = row.int(&format!("journal record of instance {id:?}"), "generation")?;
    match wanted.get(id.as_str()) {
        Some(&asked) if i64::from(asked) == generation => record_from_row(row, &id, asked).map(Some),
        _ => Ok(None),
    }
}

pub(crate) fn record_from_row(row: &impl Columns, id: &str, generation: u32) -> Result<JournalRecord, StoreError> {
    let seq = row.int(&format!("journal record of instance {id:?} generation {generation}"), "seq")?;
    let name = format!("journal record of instance {id:?} generation {generation} seq {seq}");
    let seq = u32::try_from(seq).map_err(|_| corrupt(&name, "seq", format_args!("{seq} is not a u32")))?;
    let status = row.text(&name, "status")?;
    let status = RecordStatus::parse(&status)
        .ok_or_else(|| corrupt(&name, "status", format_args!("unknown record status {status:?}")))?;
    let kind = row.text(&name, "kind")?;
    let kind =
        StepKind::parse(&kind).ok_or_else(|| corrupt(&name, "kind", format_args!("unknown step kind {kind:?}")))?;
    Ok(JournalRecord {
        instance_id: row.text(&name, "instance_id")?,
        generation: row.uint(&name, "generation")?,
        seq,
        kind,
        name: row.text(&name, "name")?,
        status,
        input: row.maybe_text(&name, "input")?,
        payload: row.maybe_text(&name, "payload")?,
        attempt: row.uint(&name, "attempt")?,
        due_at: row.maybe_int(&name, "due_at")?,
        recorded_at: row.int(&name, "recorded_at")?,
        parallel_group: row.maybe_uint(&name, "parallel_group")?,
    })
}

/// An `events` row of instance `id`.
pub(crate) fn event_from_row(row: &impl Columns, id: &str) -> Result<EventRecord, StoreError> {
    let event_id = row.int(&format!("event of instance {id:?}"), "seq")?;
    let name = format!("event {event_id} of instance {id:?}");
    Ok(EventRecord {
        instance_id: row.text(&name, "instance_id")?,
        event_id,
        name: row.text(&name, "name")?,
        payload: row.text(&name, "payload")?,
        created_at: row.int(&name, "created_at")?,
    })
}

/// An `activity_tasks` row. Its outcome columns (`outcome_succeeded`, `outcome`, `finished_at`)
/// are all set, once the task finished, or all NULL; anything else is corrupt.
pub(crate) fn task_from_row(row: &impl Columns) -> Result<TaskRecord, StoreError> {
    let instance_id = row.text("task (unreadable instance id)", "instance_id")?;
    let unnamed = format!("task of instance {instance_id:?}");
    let (generation, seq) = (row.int(&unnamed, "generation")?, row.int(&unnamed, "seq")?);
    let name = format!("task of instance {instance_id:?} generation {generation} seq {seq}");
    let generation = u32::try_from(generation)
        .map_err(|_| corrupt(&name, "generation", format_args!("{generation} is not a u32")))?;
    let seq = u32::try_from(seq).map_err(|_| corrupt(&name, "seq", format_args!("{seq} is not a u32")))?;
    let outcome = match (
        row.maybe_bool(&name, "outcome_succeeded")?,
        row.maybe_text(&name, "outcome")?,
        row.maybe_int(&name, "finished_at")?,
    ) {
        (None, None, None) => None,
        (Some(succeeded), Some(payload), Some(finished_at)) => Some(TaskOutcome { succeeded, payload, finished_at }),
        (succeeded, payload, finished_at) => {
            let column = match (succeeded, payload, finished_at) {
                (None, _, _) => "outcome_succeeded",
                (_, None, _) => "outcome",
                _ => "finished_at",
            };
            return Err(corrupt(&name, column, "NULL, but the other outcome columns are set"));
        }
    };
    Ok(TaskRecord {
        generation,
        seq,
        name: row.text(&name, "name")?,
        input: row.text(&name, "input")?,
        concurrency_key: row.text(&name, "concurrency_key")?,
        priority: i32::try_from(row.int(&name, "priority")?)
            .map_err(|error| corrupt(&name, "priority", format_args!("out of range: {error}")))?,
        attempt: row.uint(&name, "attempt")?,
        start_to_close_ms: row.maybe_int(&name, "start_to_close_ms")?,
        heartbeat_timeout_ms: row.maybe_int(&name, "heartbeat_timeout_ms")?,
        visible_at: row.int(&name, "visible_at")?,
        owner: row.maybe_text(&name, "owner")?,
        lease_until: row.maybe_int(&name, "lease_until")?,
        outcome,
        trace_context: row.maybe_text(&name, "trace_context")?,
        instance_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_lists_are_plain_names() {
        for (columns, count) in
            [(INSTANCE_COLUMNS, 17), (KEY_COLUMNS, 3), (JOURNAL_COLUMNS, 12), (EVENT_COLUMNS, 5), (TASK_COLUMNS, 17)]
        {
            let names: Vec<&str> = columns.split(", ").collect();
            assert_eq!(names.len(), count, "{columns}");
            assert!(names.iter().all(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_')), "{columns}");
        }
    }
}
