//! The orders the stores return records in, for every backend.

use workflow_core::store::{InstanceRecord, Millis, TaskRecord};

/// The order `claim` returns instances in: highest priority first, then oldest first, ties by id.
pub(crate) fn instance_order(instance: &InstanceRecord) -> (std::cmp::Reverse<i32>, Millis, &str) {
    (std::cmp::Reverse(instance.priority), instance.created_at, instance.id.as_str())
}

/// A task's key, the order `finished_tasks` returns them in.
pub(crate) fn task_key(task: &TaskRecord) -> (&str, u32, u32) {
    (task.instance_id.as_str(), task.generation, task.seq)
}

/// The order `claim_tasks` returns tasks in: highest priority first, then oldest first, ties by
/// key.
pub(crate) fn task_order(task: &TaskRecord) -> (std::cmp::Reverse<i32>, Millis, (&str, u32, u32)) {
    (std::cmp::Reverse(task.priority), task.visible_at, task_key(task))
}
