//! How a write batch is regrouped into layers of multi-row statements with the same effect as
//! applying its ops one by one (see [`Plan`]); each backend turns a plan into its own statements.

use std::collections::{HashMap, HashSet};

use workflow_core::store::{InstanceRecord, JournalRecord, Millis, RuntimeStatus, StoreError, TaskRecord, WriteOp};

pub(crate) struct StatusChange<'a> {
    pub(crate) id: &'a str,
    pub(crate) status: RuntimeStatus,
    pub(crate) updated_at: Millis,
}

pub(crate) struct Finishing<'a> {
    pub(crate) id: &'a str,
    pub(crate) status: RuntimeStatus,
    pub(crate) output: Option<&'a str>,
    pub(crate) error: Option<&'a str>,
    pub(crate) updated_at: Millis,
}

pub(crate) struct NewEvent<'a> {
    /// The event's position among the batch's new events: its id is the store's last event id
    /// plus this.
    pub(crate) number: i64,
    pub(crate) instance_id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) created_at: Millis,
}

pub(crate) struct Consume<'a> {
    pub(crate) instance_id: &'a str,
    pub(crate) event_id: i64,
    pub(crate) generation: u32,
    pub(crate) seq: u32,
}

/// A new `wake_at` (from SetWake, Evict or AddEvent).
pub(crate) struct Wake<'a> {
    pub(crate) id: &'a str,
    pub(crate) wake_at: Option<Millis>,
}

pub(crate) struct CustomStatus<'a> {
    pub(crate) id: &'a str,
    pub(crate) custom_status: Option<&'a str>,
    pub(crate) updated_at: Millis,
}

pub(crate) struct Continue<'a> {
    pub(crate) id: &'a str,
    pub(crate) input: &'a str,
    pub(crate) generation: u32,
    pub(crate) updated_at: Millis,
}

/// An `AssertInboxRoom` check, with what the batch's assertions on the same inbox add up to so
/// far (this one's included), so each row is checked on its own against the inbox as it was
/// before the batch. Numbers are clamped into `i64`, which the databases store.
pub(crate) struct InboxRoom<'a> {
    pub(crate) id: &'a str,
    pub(crate) events: i64,
    pub(crate) bytes: i64,
    pub(crate) max_events: i64,
    pub(crate) max_bytes: i64,
}

/// What an inbox held before a batch: its unconsumed events and their payloads' bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Inbox {
    pub(crate) events: i64,
    pub(crate) bytes: i64,
}

impl InboxRoom<'_> {
    /// Whether the inbox, holding `held` before the batch, has the room this row asks for.
    pub(crate) fn holds(&self, held: Inbox) -> bool {
        held.events.saturating_add(self.events) <= self.max_events
            && held.bytes.saturating_add(self.bytes) <= self.max_bytes
    }
}

/// A `u64` as the `i64` a database stores, saturating.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A task's key: (instance, generation, seq).
pub(crate) type TaskKey<'a> = (&'a str, u32, u32);

/// What a layer's EnqueueTask and DeleteTask ops of one task key come to, applied one by one:
/// first delete the stored task (if `delete`), then upsert `enqueue` (if any).
///
/// A delete empties the key, so only the ops after the last delete matter. Of several enqueues,
/// each replaces the task only if its attempt is later than the stored one, so they come to the
/// first of those with the latest attempt, upserted once: it replaces a stored task with an
/// earlier attempt, as the op that would win one by one does, and leaves one with the same or a
/// later attempt, as every op would.
pub(crate) struct TaskChange<'a> {
    pub(crate) key: TaskKey<'a>,
    pub(crate) delete: bool,
    pub(crate) enqueue: Option<&'a TaskRecord>,
}

/// One layer of a [`Plan`]: first the journal records, task changes and event consumptions due at
/// this layer, then the instance ops of the layer, at most one per instance id.
#[derive(Default)]
pub(crate) struct Layer<'a> {
    pub(crate) puts: Vec<&'a JournalRecord>,
    pub(crate) consumes: Vec<Consume<'a>>,
    /// (instance, event) pairs in `consumes`: a repeat within a layer changes nothing.
    pub(crate) consumed: HashSet<(&'a str, i64)>,
    /// The task ops due at this layer, one change per key, in the order their keys first appear.
    tasks: Vec<TaskChange<'a>>,
    /// Where each key's change is in `tasks`.
    task_index: HashMap<TaskKey<'a>, usize>,
    /// What `tasks` comes to, applied in this order: the keys to delete, then the tasks to upsert
    /// (each key at most once in each list).
    pub(crate) task_deletes: Vec<TaskKey<'a>>,
    pub(crate) task_enqueues: Vec<&'a TaskRecord>,
    /// With the op's index in the batch.
    pub(crate) creates: Vec<(usize, &'a InstanceRecord)>,
    pub(crate) statuses: Vec<StatusChange<'a>>,
    pub(crate) finishes: Vec<Finishing<'a>>,
    pub(crate) events: Vec<NewEvent<'a>>,
    /// SetWake ops and the wake-ups of AddEvent ops.
    pub(crate) wakes: Vec<Wake<'a>>,
    pub(crate) evicts: Vec<Wake<'a>>,
    pub(crate) customs: Vec<CustomStatus<'a>>,
    pub(crate) continues: Vec<Continue<'a>>,
    /// Ids of Purge ops: the instance, its journal, events and tasks go.
    pub(crate) purges: Vec<&'a str>,
}

/// Where an instance's next ops go while a batch is planned.
#[derive(Default, Clone, Copy)]
struct Cursor {
    /// The layer of its next instance op.
    next: usize,
    /// The layer its next journal record goes to: the one after its last ContinueAsNew or Purge.
    puts: usize,
    /// The layer its next ConsumeEvent goes to: the one after its last AddEvent, ContinueAsNew or
    /// Purge.
    consumes: usize,
    /// The layer its next EnqueueTask or DeleteTask goes to: the one after its last ContinueAsNew,
    /// Finish or Purge (all delete tasks).
    tasks: usize,
}

fn layer_at<'p, 'a>(layers: &'p mut Vec<Layer<'a>>, at: usize) -> &'p mut Layer<'a> {
    if layers.len() <= at {
        layers.resize_with(at + 1, Layer::default);
    }
    &mut layers[at]
}

impl<'a> Layer<'a> {
    fn task_change(&mut self, key: TaskKey<'a>) -> &mut TaskChange<'a> {
        let next = self.tasks.len();
        let index = *self.task_index.entry(key).or_insert(next);
        if index == next {
            self.tasks.push(TaskChange { key, delete: false, enqueue: None });
        }
        &mut self.tasks[index]
    }
}

/// A batch regrouped into few multi-row statements, with the same effect as applying its ops one
/// by one in order.
///
/// Every op concerns one instance id, and ops on different ids commute: instance ops touch only
/// their instance's rows (its instance row; ContinueAsNew, Finish and Purge also its journal,
/// events or tasks); journal records only that instance's journal; events only that instance's
/// inbox (a ConsumeEvent names its instance and does nothing to another's event); and new event
/// ids, the one thing shared, are assigned up front in op order. So layer `k` holds each
/// instance's `k`-th instance op, and layers run in order. An instance's journal records depend
/// only on its ContinueAsNew and Purge ops (which delete older generations, or all of them), so
/// they all go together into the layer after its last preceding ContinueAsNew or Purge (in op
/// order, so the last write of a key wins) and run before that layer's instance ops; its
/// ConsumeEvent ops likewise go after its last preceding AddEvent, ContinueAsNew or Purge, and its
/// task ops after its last preceding ContinueAsNew, Finish or Purge.
///
/// `AssertOwner` and `AssertStatus` ops are no layer's: they are checked (see [`Plan::check`])
/// before any layer runs.
pub(crate) struct Plan<'a> {
    pub(crate) layers: Vec<Layer<'a>>,
    /// `AssertOwner` checks (instance id, owner), made before anything is applied.
    pub(crate) fences: Vec<(&'a str, &'a str)>,
    /// `AssertStatus` checks (instance id, allowed statuses) in op order, made with the fences.
    pub(crate) asserts: Vec<(&'a str, &'a [RuntimeStatus])>,
    /// `AssertInboxRoom` checks in op order, made after the others.
    pub(crate) inboxes: Vec<InboxRoom<'a>>,
    /// How many events the batch adds.
    pub(crate) events: i64,
}

impl<'a> Plan<'a> {
    pub(crate) fn new(ops: &'a [WriteOp]) -> Self {
        let mut layers: Vec<Layer<'a>> = Vec::new();
        let mut cursors: HashMap<&'a str, Cursor> = HashMap::new();
        let mut events = 0_i64;
        let mut fences = Vec::new();
        let mut asserts = Vec::new();
        let mut inboxes = Vec::new();
        let mut claimed: HashMap<&'a str, (i64, i64)> = HashMap::new();
        for (index, op) in ops.iter().enumerate() {
            let id = match op {
                WriteOp::AssertOwner { id, owner } => {
                    fences.push((id.as_str(), owner.as_str()));
                    continue;
                }
                WriteOp::AssertStatus { id, allowed } => {
                    asserts.push((id.as_str(), allowed.as_slice()));
                    continue;
                }
                WriteOp::AssertInboxRoom { id, events, bytes, max_events, max_bytes } => {
                    let so_far = claimed.entry(id.as_str()).or_default();
                    *so_far = (so_far.0.saturating_add(clamp(*events)), so_far.1.saturating_add(clamp(*bytes)));
                    inboxes.push(InboxRoom {
                        id,
                        events: so_far.0,
                        bytes: so_far.1,
                        max_events: clamp(*max_events),
                        max_bytes: clamp(*max_bytes),
                    });
                    continue;
                }
                WriteOp::PutRecord(record) => {
                    let at = cursors.get(record.instance_id.as_str()).map_or(0, |cursor| cursor.puts);
                    layer_at(&mut layers, at).puts.push(record);
                    continue;
                }
                WriteOp::ConsumeEvent { instance_id, event_id, generation, seq } => {
                    let at = cursors.get(instance_id.as_str()).map_or(0, |cursor| cursor.consumes);
                    let layer = layer_at(&mut layers, at);
                    if layer.consumed.insert((instance_id, *event_id)) {
                        layer.consumes.push(Consume {
                            instance_id,
                            event_id: *event_id,
                            generation: *generation,
                            seq: *seq,
                        });
                    }
                    continue;
                }
                WriteOp::EnqueueTask(task) => {
                    let at = cursors.get(task.instance_id.as_str()).map_or(0, |cursor| cursor.tasks);
                    let change = layer_at(&mut layers, at).task_change((&task.instance_id, task.generation, task.seq));
                    if change.enqueue.is_none_or(|queued| queued.attempt < task.attempt) {
                        change.enqueue = Some(task);
                    }
                    continue;
                }
                WriteOp::DeleteTask { instance_id, generation, seq } => {
                    let at = cursors.get(instance_id.as_str()).map_or(0, |cursor| cursor.tasks);
                    let change = layer_at(&mut layers, at).task_change((instance_id, *generation, *seq));
                    change.delete = true;
                    change.enqueue = None;
                    continue;
                }
                WriteOp::CreateInstance(record) => record.id.as_str(),
                WriteOp::AddEvent { instance_id: id, .. }
                | WriteOp::SetStatus { id, .. }
                | WriteOp::Finish { id, .. }
                | WriteOp::SetWake { id, .. }
                | WriteOp::Evict { id, .. }
                | WriteOp::ContinueAsNew { id, .. }
                | WriteOp::Purge { id }
                | WriteOp::SetCustomStatus { id, .. } => id.as_str(),
            };
            let cursor = cursors.entry(id).or_default();
            let level = cursor.next;
            cursor.next += 1;
            match op {
                WriteOp::ContinueAsNew { .. } | WriteOp::Purge { .. } => {
                    cursor.puts = level + 1;
                    cursor.consumes = level + 1;
                    cursor.tasks = level + 1;
                }
                WriteOp::Finish { .. } => cursor.tasks = level + 1,
                WriteOp::AddEvent { .. } => cursor.consumes = level + 1,
                _ => {}
            }
            let layer = layer_at(&mut layers, level);
            match op {
                WriteOp::PutRecord(_)
                | WriteOp::ConsumeEvent { .. }
                | WriteOp::AssertOwner { .. }
                | WriteOp::AssertStatus { .. }
                | WriteOp::AssertInboxRoom { .. }
                | WriteOp::EnqueueTask(_)
                | WriteOp::DeleteTask { .. } => {}
                WriteOp::CreateInstance(record) => layer.creates.push((index, record)),
                WriteOp::SetStatus { id, status, updated_at } => {
                    layer.statuses.push(StatusChange { id, status: *status, updated_at: *updated_at })
                }
                WriteOp::Finish { id, status, output, error, updated_at } => layer.finishes.push(Finishing {
                    id,
                    status: *status,
                    output: output.as_deref(),
                    error: error.as_deref(),
                    updated_at: *updated_at,
                }),
                WriteOp::AddEvent { instance_id, name, payload, created_at } => {
                    events += 1;
                    layer.events.push(NewEvent { number: events, instance_id, name, payload, created_at: *created_at });
                    layer.wakes.push(Wake { id: instance_id, wake_at: Some(*created_at) });
                }
                WriteOp::SetWake { id, wake_at } => layer.wakes.push(Wake { id, wake_at: *wake_at }),
                WriteOp::Evict { id, wake_at } => layer.evicts.push(Wake { id, wake_at: Some(*wake_at) }),
                WriteOp::SetCustomStatus { id, custom_status, updated_at } => layer.customs.push(CustomStatus {
                    id,
                    custom_status: custom_status.as_deref(),
                    updated_at: *updated_at,
                }),
                WriteOp::ContinueAsNew { id, input, generation, updated_at } => {
                    layer.continues.push(Continue { id, input, generation: *generation, updated_at: *updated_at })
                }
                WriteOp::Purge { id } => layer.purges.push(id),
            }
        }
        for layer in &mut layers {
            layer.task_deletes = layer.tasks.iter().filter(|change| change.delete).map(|change| change.key).collect();
            layer.task_enqueues = layer.tasks.iter().filter_map(|change| change.enqueue).collect();
        }
        Self { layers, fences, asserts, inboxes, events }
    }

    /// The ids the checks read, each once: those only fenced (`AssertOwner`), and those whose
    /// status is asserted (`AssertStatus`, fenced or not), each in op order. A backend that locks
    /// the rows it checks may lock the first shared (the batch's owner only writes them) and the
    /// second exclusively (a client asserts a status to change it).
    pub(crate) fn checked_ids(&self) -> (Vec<&'a str>, Vec<&'a str>) {
        let mut seen = HashSet::new();
        let asserted: Vec<&str> = self.asserts.iter().map(|(id, _)| *id).filter(|id| seen.insert(*id)).collect();
        let fenced = self.fences.iter().map(|(id, _)| *id).filter(|id| seen.insert(*id)).collect();
        (fenced, asserted)
    }

    /// The ids whose inboxes the `AssertInboxRoom` checks read, each once, sorted (the order a
    /// backend that locks them takes its locks in).
    pub(crate) fn inbox_ids(&self) -> Vec<&'a str> {
        let mut ids: Vec<&str> = self.inboxes.iter().map(|room| room.id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Checks the batch's fences and status assertions against the rows they name as they were
    /// before the batch (`found`: id to its row; a missing id has none): [`StoreError::Fenced`]
    /// with every fenced id if any fence fails, else [`StoreError::Conflict`] for the first
    /// `AssertStatus` in op order that does not hold, as the in-memory store does, else
    /// [`StoreError::InboxFull`] for the first `AssertInboxRoom` that does not hold against
    /// `inboxes` (an id missing there holds nothing). A stored status the engine cannot have
    /// written fails an assertion on it as corrupt.
    pub(crate) fn check(
        &self,
        found: &HashMap<String, Checked>,
        inboxes: &HashMap<String, Inbox>,
    ) -> Result<(), StoreError> {
        let mut fenced: Vec<String> = self
            .fences
            .iter()
            .filter(|(id, owner)| found.get(*id).and_then(|row| row.owner.as_deref()) != Some(*owner))
            .map(|(id, _)| (*id).to_owned())
            .collect();
        if !fenced.is_empty() {
            fenced.sort();
            fenced.dedup();
            return Err(StoreError::Fenced(fenced));
        }
        for (id, allowed) in &self.asserts {
            let status = match found.get(*id) {
                None => None,
                Some(row) => Some(RuntimeStatus::parse(&row.status).ok_or_else(|| {
                    crate::shared::rows::corrupt(
                        &format!("instance {id:?}"),
                        "status",
                        format_args!("unknown runtime status {:?}", row.status),
                    )
                })?),
            };
            if !status.is_some_and(|status| allowed.contains(&status)) {
                return Err(StoreError::Conflict { id: (*id).to_owned(), status });
            }
        }
        for room in &self.inboxes {
            let held = inboxes.get(room.id).copied().unwrap_or_default();
            if !room.holds(held) {
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                return Err(StoreError::InboxFull {
                    id: room.id.to_owned(),
                    events: count(held.events),
                    bytes: count(held.bytes),
                });
            }
        }
        Ok(())
    }
}

/// What the checks of a batch read of one instance row.
pub(crate) struct Checked {
    /// The worker holding its lease.
    pub(crate) owner: Option<String>,
    /// Its runtime status, as stored.
    pub(crate) status: String,
}

/// The ids of the creates at the `skipped` indexes of `ops` (the instances a write found existing).
pub(crate) fn skipped_ids<'a>(ops: &'a [WriteOp], skipped: &[usize]) -> std::collections::HashSet<&'a str> {
    skipped
        .iter()
        .filter_map(|index| match ops.get(*index) {
            Some(WriteOp::CreateInstance(record)) => Some(record.id.as_str()),
            _ => None,
        })
        .collect()
}

/// The outcome of a batch whose `CreateInstance` ops at these indices were skipped.
pub(crate) fn outcome(ops: &[WriteOp], skipped: Vec<usize>) -> workflow_core::store::WriteOutcome {
    let existing = skipped
        .into_iter()
        .filter_map(|index| match ops.get(index) {
            Some(WriteOp::CreateInstance(record)) => Some(record.id.clone()),
            _ => None,
        })
        .collect();
    workflow_core::store::WriteOutcome { existing }
}
