//! Reading rows back into records, for every backend (their tables have the same column names): a
//! column that does not decode, or holds a value the engine cannot have written, is a
//! [`StoreError::Corrupt`] naming the row.

use workflow_core::{EventRecord, InstanceRecord, JournalRecord, RecordStatus, RuntimeStatus, StoreError};

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

    /// An integer column holding a `u32`.
    fn uint(&self, row: &str, column: &str) -> Result<u32, StoreError> {
        let value = self.int(row, column)?;
        u32::try_from(value).map_err(|_| corrupt(row, column, format_args!("{value} is not a u32")))
    }
}

macro_rules! columns {
    ($row:ty) => {
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
        }
    };
}

#[cfg(feature = "sqlite")]
columns!(sqlx::sqlite::SqliteRow);
#[cfg(feature = "postgres")]
columns!(sqlx::postgres::PgRow);

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
        id,
    })
}

/// A `journal` row of instance `id`'s generation `generation`.
pub(crate) fn record_from_row(row: &impl Columns, id: &str, generation: u32) -> Result<JournalRecord, StoreError> {
    let seq = row.int(&format!("journal record of instance {id:?} generation {generation}"), "seq")?;
    let name = format!("journal record of instance {id:?} generation {generation} seq {seq}");
    let seq = u32::try_from(seq).map_err(|_| corrupt(&name, "seq", format_args!("{seq} is not a u32")))?;
    let status = row.text(&name, "status")?;
    let status = RecordStatus::parse(&status)
        .ok_or_else(|| corrupt(&name, "status", format_args!("unknown record status {status:?}")))?;
    Ok(JournalRecord {
        instance_id: row.text(&name, "instance_id")?,
        generation: row.uint(&name, "generation")?,
        seq,
        kind: row.text(&name, "kind")?,
        name: row.text(&name, "name")?,
        status,
        input: row.maybe_text(&name, "input")?,
        payload: row.maybe_text(&name, "payload")?,
        attempt: row.uint(&name, "attempt")?,
        due_at: row.maybe_int(&name, "due_at")?,
        recorded_at: row.int(&name, "recorded_at")?,
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
