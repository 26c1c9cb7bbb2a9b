//! Binding one row of a batch statement, for each [`Shape`]: the values of a
//! create, a journal record, a status change, ..., in the order of the shape's columns.
//!
//! [`Shape`]: super::sql::Shape

use sqlx::sqlite::{Sqlite, SqliteArguments};
use workflow_core::store::{InstanceRecord, JournalRecord, RuntimeStatus, TaskRecord};

use crate::shared::plan::{
    Consume, Continue, CustomStatus, Finishing, InboxRoom, NewEvent, StatusChange, TaskKey, Wake,
};

pub(super) type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

pub(super) fn bind_create<'q>(query: Query<'q>, (_, record): &'q (usize, &'q InstanceRecord)) -> Query<'q> {
    query
        .bind(record.id.as_str())
        .bind(record.workflow.as_str())
        .bind(record.status.as_str())
        .bind(record.input.as_str())
        .bind(record.output.as_deref())
        .bind(record.error.as_deref())
        .bind(i64::from(record.generation))
        .bind(record.created_at)
        .bind(record.updated_at)
        .bind(record.owner.as_deref())
        .bind(record.lease_until)
        .bind(record.parent_id.as_deref())
        .bind(record.custom_status.as_deref())
        .bind(record.wake_at)
        .bind(record.priority)
        .bind(record.concurrency_key.as_str())
        .bind(record.trace_context.as_deref())
}

pub(super) fn bind_put<'q>(query: Query<'q>, record: &'q &'q JournalRecord) -> Query<'q> {
    query
        .bind(record.instance_id.as_str())
        .bind(i64::from(record.generation))
        .bind(i64::from(record.seq))
        .bind(record.kind.as_str())
        .bind(record.name.as_str())
        .bind(record.status.as_str())
        .bind(record.input.as_deref())
        .bind(record.payload.as_deref())
        .bind(i64::from(record.attempt))
        .bind(record.due_at)
        .bind(record.recorded_at)
        .bind(record.parallel_group.map(i64::from))
}

pub(super) fn bind_status<'q>(query: Query<'q>, change: &'q StatusChange<'q>) -> Query<'q> {
    query.bind(change.id).bind(change.status.as_str()).bind(change.updated_at)
}

pub(super) fn bind_finish<'q>(query: Query<'q>, finish: &'q Finishing<'q>) -> Query<'q> {
    query
        .bind(finish.id)
        .bind(finish.status.as_str())
        .bind(finish.output)
        .bind(finish.error)
        .bind(finish.updated_at)
        .bind(finish.status.is_terminal().then_some(finish.updated_at))
}

pub(super) fn bind_finish_id<'q>(query: Query<'q>, finish: &'q Finishing<'q>) -> Query<'q> {
    query.bind(finish.id)
}

pub(super) fn bind_id<'q>(query: Query<'q>, id: &'q &'q str) -> Query<'q> {
    query.bind(*id)
}

pub(super) fn bind_event<'q>(query: Query<'q>, event: &'q NewEvent<'q>, last_event: i64) -> Query<'q> {
    query
        .bind(last_event + event.number)
        .bind(event.instance_id)
        .bind(event.name)
        .bind(event.payload)
        .bind(event.created_at)
        .bind(i64::try_from(event.payload.len()).unwrap_or(i64::MAX))
}

pub(super) fn bind_inbox_room<'q>(query: Query<'q>, room: &'q InboxRoom<'q>) -> Query<'q> {
    query.bind(room.id).bind(room.events).bind(room.bytes).bind(room.max_events).bind(room.max_bytes)
}

pub(super) fn bind_consume<'q>(query: Query<'q>, consume: &'q Consume<'q>) -> Query<'q> {
    query
        .bind(consume.instance_id)
        .bind(consume.event_id)
        .bind(i64::from(consume.generation))
        .bind(i64::from(consume.seq))
}

pub(super) fn bind_wake<'q>(query: Query<'q>, wake: &'q Wake<'q>) -> Query<'q> {
    query.bind(wake.id).bind(wake.wake_at)
}

pub(super) fn bind_custom<'q>(query: Query<'q>, custom: &'q CustomStatus<'q>) -> Query<'q> {
    query.bind(custom.id).bind(custom.custom_status).bind(custom.updated_at)
}

pub(super) fn bind_task_key<'q>(query: Query<'q>, key: &'q TaskKey<'q>) -> Query<'q> {
    let (instance_id, generation, seq) = *key;
    query.bind(instance_id).bind(i64::from(generation)).bind(i64::from(seq))
}

pub(super) fn bind_enqueue<'q>(query: Query<'q>, task: &'q &'q TaskRecord) -> Query<'q> {
    query
        .bind(task.instance_id.as_str())
        .bind(i64::from(task.generation))
        .bind(i64::from(task.seq))
        .bind(task.name.as_str())
        .bind(task.input.as_str())
        .bind(i64::from(task.attempt))
        .bind(task.start_to_close_ms)
        .bind(task.heartbeat_timeout_ms)
        .bind(task.visible_at)
        .bind(task.concurrency_key.as_str())
        .bind(task.priority)
        .bind(task.trace_context.as_deref())
}

pub(super) fn bind_fence<'q>(query: Query<'q>, (id, owner): &'q (&'q str, &'q str)) -> Query<'q> {
    query.bind(*id).bind(*owner)
}

// `Shape::Assert` spells out a slot per status.
const _: () = assert!(RuntimeStatus::ALL.len() == 7, "Shape::Assert has 7 status slots");

/// An assertion's id, then a slot per status in [`RuntimeStatus::ALL`] order: its name if it is
/// allowed, NULL if not.
pub(super) fn bind_assert<'q>(query: Query<'q>, (id, allowed): &'q (&'q str, &'q [RuntimeStatus])) -> Query<'q> {
    RuntimeStatus::ALL
        .into_iter()
        .fold(query.bind(*id), |query, status| query.bind(allowed.contains(&status).then_some(status.as_str())))
}

pub(super) fn bind_continue_id<'q>(query: Query<'q>, continued: &'q Continue<'q>) -> Query<'q> {
    query.bind(continued.id)
}

pub(super) fn bind_continue<'q>(query: Query<'q>, continued: &'q Continue<'q>) -> Query<'q> {
    query.bind(continued.id).bind(continued.input).bind(i64::from(continued.generation)).bind(continued.updated_at)
}
