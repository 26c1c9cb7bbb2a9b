//! Binding a layer's rows: each column as one array parameter (or, in a one-row statement, as its
//! one value), through [`Args`], which keeps the first value that fails to encode.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use sqlx::postgres::{PgArguments, Postgres};
use workflow_core::store::{InstanceRecord, JournalRecord, StoreError, TaskRecord};

use super::retry::Failure;
use super::starts::LeasedCreate;
use crate::shared::plan::{Layer, TaskKey, Wake};

/// The journal records of `layer` to write: the last put of each key only (the one that would win
/// op by op), since one statement cannot upsert a key twice.
pub(super) fn last_puts<'a>(layer: &Layer<'a>) -> Vec<&'a JournalRecord> {
    let mut keys = HashSet::with_capacity(layer.puts.len());
    let mut puts: Vec<&JournalRecord> = layer
        .puts
        .iter()
        .rev()
        .filter(|record| keys.insert((record.instance_id.as_str(), record.generation, record.seq)))
        .copied()
        .collect();
    puts.reverse();
    puts
}

pub(super) fn bind_puts(args: &mut Args, puts: &[&'_ JournalRecord]) {
    args.column(puts.iter().map(|r| r.instance_id.as_str()).collect::<Vec<_>>())
        .column(puts.iter().map(|r| i64::from(r.generation)).collect::<Vec<_>>())
        .column(puts.iter().map(|r| i64::from(r.seq)).collect::<Vec<_>>())
        .column(puts.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .column(puts.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
        .column(puts.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .column(puts.iter().map(|r| r.input.as_deref()).collect::<Vec<_>>())
        .column(puts.iter().map(|r| r.payload.as_deref()).collect::<Vec<_>>())
        .column(puts.iter().map(|r| i64::from(r.attempt)).collect::<Vec<_>>())
        .column(puts.iter().map(|r| r.due_at).collect::<Vec<_>>())
        .column(puts.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
        .column(puts.iter().map(|r| r.parallel_group.map(i64::from)).collect::<Vec<_>>());
}

pub(super) fn bind_task_keys(args: &mut Args, keys: &[TaskKey<'_>]) {
    args.column(keys.iter().map(|(id, _, _)| *id).collect::<Vec<_>>())
        .column(keys.iter().map(|(_, generation, _)| i64::from(*generation)).collect::<Vec<_>>())
        .column(keys.iter().map(|(_, _, seq)| i64::from(*seq)).collect::<Vec<_>>());
}

pub(super) fn bind_enqueues(args: &mut Args, tasks: &[&'_ TaskRecord]) {
    args.column(tasks.iter().map(|t| t.instance_id.as_str()).collect::<Vec<_>>())
        .column(tasks.iter().map(|t| i64::from(t.generation)).collect::<Vec<_>>())
        .column(tasks.iter().map(|t| i64::from(t.seq)).collect::<Vec<_>>())
        .column(tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>())
        .column(tasks.iter().map(|t| t.input.as_str()).collect::<Vec<_>>())
        .column(tasks.iter().map(|t| i64::from(t.attempt)).collect::<Vec<_>>())
        .column(tasks.iter().map(|t| t.start_to_close_ms).collect::<Vec<_>>())
        .column(tasks.iter().map(|t| t.heartbeat_timeout_ms).collect::<Vec<_>>())
        .column(tasks.iter().map(|t| t.visible_at).collect::<Vec<_>>())
        .column(tasks.iter().map(|t| t.concurrency_key.as_str()).collect::<Vec<_>>())
        .column(tasks.iter().map(|t| i64::from(t.priority)).collect::<Vec<_>>())
        .column(tasks.iter().map(|t| t.trace_context.as_deref()).collect::<Vec<_>>());
}

pub(super) fn bind_consumes(args: &mut Args, layer: &Layer<'_>) {
    let consumes = &layer.consumes;
    args.column(consumes.iter().map(|c| c.instance_id).collect::<Vec<_>>())
        .column(consumes.iter().map(|c| c.event_id).collect::<Vec<_>>())
        .column(consumes.iter().map(|c| i64::from(c.generation)).collect::<Vec<_>>())
        .column(consumes.iter().map(|c| i64::from(c.seq)).collect::<Vec<_>>());
}

/// `layer`'s creates, those of `leased` (start leases and assigned starts taken) as their leases
/// insert them.
pub(super) fn bind_creates(args: &mut Args, layer: &Layer<'_>, leased: &HashMap<&str, LeasedCreate<'_>>) {
    let records: Vec<(Cow<'_, InstanceRecord>, bool)> = (layer.creates.iter())
        .map(|(_, record)| match leased.get(record.id.as_str()) {
            Some(lease) => (Cow::Owned(lease.apply(record)), lease.watched),
            None => (Cow::Borrowed(*record), record.owner.is_none()),
        })
        .collect();
    let watched: Vec<bool> = records.iter().map(|(_, watched)| *watched).collect();
    bind_instances(args, &records.iter().map(|(record, _)| record.as_ref()).collect::<Vec<_>>(), &watched);
}

/// The columns of [`CREATE`](super::sql::CREATE) for `records`, in its order, each watched or
/// not: every statement that creates instances (a batch's, a schedule fire's) binds them here.
pub(super) fn bind_instances(args: &mut Args, records: &[&InstanceRecord], watched: &[bool]) {
    args.column(records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.workflow.as_str()).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.input.as_str()).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.output.as_deref()).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>())
        .column(records.iter().map(|r| i64::from(r.generation)).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.owner.as_deref()).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.lease_until).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.parent_id.as_deref()).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.custom_status.as_deref()).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.wake_at).collect::<Vec<_>>())
        .column(records.iter().map(|r| i64::from(r.priority)).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.concurrency_key.as_str()).collect::<Vec<_>>())
        .column(records.iter().map(|r| r.trace_context.as_deref()).collect::<Vec<_>>())
        .column(watched.to_vec());
}

pub(super) fn bind_statuses(args: &mut Args, layer: &Layer<'_>) {
    let statuses = &layer.statuses;
    args.column(statuses.iter().map(|s| s.id).collect::<Vec<_>>())
        .column(statuses.iter().map(|s| s.status.as_str()).collect::<Vec<_>>())
        .column(statuses.iter().map(|s| s.updated_at).collect::<Vec<_>>());
}

pub(super) fn bind_finishes(args: &mut Args, layer: &Layer<'_>) {
    let finishes = &layer.finishes;
    args.column(finishes.iter().map(|f| f.id).collect::<Vec<_>>())
        .column(finishes.iter().map(|f| f.status.as_str()).collect::<Vec<_>>())
        .column(finishes.iter().map(|f| f.output).collect::<Vec<_>>())
        .column(finishes.iter().map(|f| f.error).collect::<Vec<_>>())
        .column(finishes.iter().map(|f| f.updated_at).collect::<Vec<_>>())
        .column(finishes.iter().map(|f| f.status.is_terminal().then_some(f.updated_at)).collect::<Vec<_>>());
}

pub(super) fn bind_events(args: &mut Args, layer: &Layer<'_>, event_ids: &[i64]) -> Result<(), Failure> {
    let events = &layer.events;
    let ids = events
        .iter()
        .map(|event| {
            usize::try_from(event.number - 1).ok().and_then(|index| event_ids.get(index)).copied().ok_or_else(|| {
                Failure::Store(StoreError::Backend(format!(
                    "postgres: adding events: no id for event {}",
                    event.number
                )))
            })
        })
        .collect::<Result<Vec<i64>, Failure>>()?;
    args.column(ids)
        .column(events.iter().map(|e| e.instance_id).collect::<Vec<_>>())
        .column(events.iter().map(|e| e.name).collect::<Vec<_>>())
        .column(events.iter().map(|e| e.payload).collect::<Vec<_>>())
        .column(events.iter().map(|e| e.created_at).collect::<Vec<_>>())
        .column(events.iter().map(|e| i64::try_from(e.payload.len()).unwrap_or(i64::MAX)).collect::<Vec<_>>());
    Ok(())
}

pub(super) fn bind_wakes(args: &mut Args, wakes: &[Wake<'_>]) {
    args.column(wakes.iter().map(|w| w.id).collect::<Vec<_>>())
        .column(wakes.iter().map(|w| w.wake_at).collect::<Vec<_>>());
}

pub(super) fn bind_customs(args: &mut Args, layer: &Layer<'_>) {
    let customs = &layer.customs;
    args.column(customs.iter().map(|c| c.id).collect::<Vec<_>>())
        .column(customs.iter().map(|c| c.custom_status).collect::<Vec<_>>())
        .column(customs.iter().map(|c| c.updated_at).collect::<Vec<_>>());
}

pub(super) fn bind_continues(args: &mut Args, layer: &Layer<'_>) {
    let continues = &layer.continues;
    args.column(continues.iter().map(|c| c.id).collect::<Vec<_>>())
        .column(continues.iter().map(|c| c.input).collect::<Vec<_>>())
        .column(continues.iter().map(|c| i64::from(c.generation)).collect::<Vec<_>>())
        .column(continues.iter().map(|c| c.updated_at).collect::<Vec<_>>());
}

/// A statement's parameters, bound in order. A value that does not encode fails the write.
#[derive(Default)]
pub(super) struct Args {
    args: PgArguments,
    error: Option<sqlx::error::BoxDynError>,
    /// Whether [`Args::column`] binds scalars.
    pub(super) one_row: bool,
}

impl Args {
    /// Binds one column of a multi-row statement: the array, or in a one-row statement (see
    /// [`one_row`]) its only element.
    ///
    /// [`one_row`]: super::statement::one_row
    pub(super) fn column<'q, T>(&mut self, mut values: Vec<T>) -> &mut Self
    where
        T: sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + 'q,
        Vec<T>: sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + 'q,
    {
        match values.pop() {
            Some(value) if self.one_row && values.is_empty() => self.add(value),
            Some(value) => {
                values.push(value);
                self.add(values)
            }
            None => self.add(values),
        }
    }

    pub(super) fn add<'q, T: sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + 'q>(&mut self, value: T) -> &mut Self {
        if self.error.is_none() {
            self.error = sqlx::Arguments::add(&mut self.args, value).err();
        }
        self
    }

    /// How many are bound so far.
    pub(super) fn len(&self) -> usize {
        sqlx::Arguments::len(&self.args)
    }

    pub(super) fn finish(self, context: &'static str) -> Result<PgArguments, Failure> {
        match self.error {
            None => Ok(self.args),
            Some(error) => Err(Failure::Database { context, error: sqlx::Error::Encode(error) }),
        }
    }
}
