//! An in-memory store for tests: the same semantics as the database stores, nothing durable.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::store::{
    key_room, ActivityCap, Debounce, Lease, ScheduleChange, ScheduleFire, ScheduleRecord, SlotRequest, StartGroup,
    StartLease, StartScope, TaskLease,
};
use crate::store::{
    EventRecord, InstanceKey, InstanceQuery, InstanceRecord, JournalRecord, Millis, QueueDepth, QueueKind,
    RuntimeStatus, StatsCounter, Store, StoreError, StoreStats, TaskCompletion, TaskOutcome, TaskRecord, WakeSignal,
    WorkerMark, WorkflowCap, WriteOp, WriteOutcome,
};

/// How many change hints a subscriber may fall behind by before it misses some (and polls).
const SIGNAL_CAPACITY: usize = 4096;

/// Change hints for the runtimes and clients on this store: all in this process, so every change
/// is heard (a client without a runtime learns of ends without polling for them).
struct Signals(broadcast::Sender<WakeSignal>);

impl Default for Signals {
    fn default() -> Self {
        Self(broadcast::channel(SIGNAL_CAPACITY).0)
    }
}

impl Signals {
    fn send(&self, hints: impl IntoIterator<Item = WakeSignal>) {
        if self.0.receiver_count() > 0 {
            for hint in hints {
                let _ = self.0.send(hint);
            }
        }
    }
}

/// A task's key: (instance, generation, seq).
type TaskKey = (String, u32, u32);

/// One rate-limited activity's starts within its period: (concurrency key, when), oldest first
/// (each is recorded at its taker's clock, which only moves on), with a count per key, so a
/// claim counts a window's starts without reading them all.
#[derive(Default)]
struct ActivityStarts {
    starts: std::collections::VecDeque<(String, Millis)>,
    per_key: HashMap<String, u64>,
}

impl ActivityStarts {
    fn record(&mut self, key: String, at: Millis) {
        *self.per_key.entry(key.clone()).or_default() += 1;
        self.starts.push_back((key, at));
    }

    /// Forgets the starts at or before `since`.
    fn forget_until(&mut self, since: Millis) {
        while let Some((key, _)) = self.starts.front().filter(|(_, at)| *at <= since) {
            if let Some(count) = self.per_key.get_mut(key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_key.remove(key);
                }
            }
            self.starts.pop_front();
        }
    }
}

#[derive(Default)]
struct Tables {
    instances: HashMap<String, InstanceRecord>,
    journal: HashMap<(String, u32), BTreeMap<u32, JournalRecord>>,
    /// Every event, consumed or not, by event id.
    events: BTreeMap<i64, (EventRecord, bool)>,
    next_event_id: i64,
    tasks: BTreeMap<TaskKey, TaskRecord>,
    /// The claims of rate-limited activities' tasks within their periods, by activity.
    starts: HashMap<String, ActivityStarts>,
    /// The starts of rate-limited workflows within their periods: (workflow, concurrency key,
    /// when).
    workflow_starts: Vec<(String, String, Millis)>,
    /// The instance each (workflow, debounce key) last created.
    debounces: HashMap<(String, String), String>,
    /// Schedules by id.
    schedules: BTreeMap<String, ScheduleRecord>,
    /// Activity slots ([`Store::reserve_slots`]): (activity, concurrency key, owner) to (slots,
    /// until when).
    slots: HashMap<(String, String, String), (u32, Millis)>,
    probes: u64,
}

/// A store that keeps everything in memory. Cloning is not supported; share it in an `Arc`.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    stats: StatsCounter,
    /// The liveness marks of the workers registered here ([`Store::register_worker`]): everything
    /// that uses this store lives in this process, so a worker is alive while its mark, which
    /// holds what each `Weak` points to, is held (its runtime is not dropped).
    workers: Mutex<HashMap<String, Weak<()>>>,
    signals: Signals,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Tables>, StoreError> {
        self.tables.lock().map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

fn apply(tables: &mut Tables, op: &WriteOp, outcome: &mut WriteOutcome) {
    match op {
        WriteOp::CreateInstance(record) => {
            if tables.instances.contains_key(&record.id) {
                outcome.existing.push(record.id.clone());
            } else {
                tables.instances.insert(record.id.clone(), record.clone());
            }
        }
        WriteOp::PutRecord(record) => {
            tables
                .journal
                .entry((record.instance_id.clone(), record.generation))
                .or_default()
                .insert(record.seq, record.clone());
        }
        WriteOp::SetStatus { id, status, updated_at } => {
            if let Some(instance) = tables.instances.get_mut(id) {
                instance.status = *status;
                instance.updated_at = *updated_at;
            }
        }
        WriteOp::Finish { id, status, output, error, updated_at } => {
            if let Some(instance) = tables.instances.get_mut(id) {
                instance.status = *status;
                instance.output = output.clone();
                instance.error = error.clone();
                instance.updated_at = *updated_at;
                instance.owner = None;
                instance.lease_until = None;
            }
            tables.tasks.retain(|(instance, _, _), _| instance != id);
        }
        WriteOp::AddEvent { instance_id, name, payload, created_at } => {
            tables.next_event_id += 1;
            let event_id = tables.next_event_id;
            let event = EventRecord {
                instance_id: instance_id.clone(),
                event_id,
                name: name.clone(),
                payload: payload.clone(),
                created_at: *created_at,
            };
            tables.events.insert(event_id, (event, false));
            if let Some(instance) = tables.instances.get_mut(instance_id) {
                instance.wake_at = Some(*created_at);
            }
        }
        WriteOp::ConsumeEvent { instance_id, event_id, .. } => {
            if let Some((event, consumed)) = tables.events.get_mut(event_id) {
                if &event.instance_id == instance_id {
                    *consumed = true;
                }
            }
        }
        WriteOp::SetWake { id, wake_at } => {
            if let Some(instance) = tables.instances.get_mut(id) {
                instance.wake_at = *wake_at;
            }
        }
        WriteOp::Evict { id, wake_at } => {
            if let Some(instance) = tables.instances.get_mut(id) {
                instance.owner = None;
                instance.lease_until = None;
                instance.wake_at = Some(*wake_at);
            }
        }
        WriteOp::ContinueAsNew { id, input, generation, updated_at } => {
            if let Some(instance) = tables.instances.get_mut(id) {
                instance.input = input.clone();
                instance.generation = *generation;
                instance.status = RuntimeStatus::Running;
                instance.output = None;
                instance.error = None;
                instance.updated_at = *updated_at;
                tables.journal.retain(|(owner, g), _| owner != id || g >= generation);
                tables.events.retain(|_, (event, consumed)| &event.instance_id != id || !*consumed);
                tables.tasks.retain(|(instance, g, _), _| instance != id || g >= generation);
            }
        }
        WriteOp::EnqueueTask(task) => {
            let key = (task.instance_id.clone(), task.generation, task.seq);
            if tables.tasks.get(&key).is_none_or(|stored| stored.attempt < task.attempt) {
                let fresh = TaskRecord { owner: None, lease_until: None, outcome: None, ..task.clone() };
                tables.tasks.insert(key, fresh);
            }
        }
        WriteOp::DeleteTask { instance_id, generation, seq } => {
            tables.tasks.remove(&(instance_id.clone(), *generation, *seq));
        }
        WriteOp::AssertOwner { .. } | WriteOp::AssertStatus { .. } | WriteOp::AssertInboxRoom { .. } => {}
        WriteOp::Purge { id } => {
            tables.instances.remove(id);
            tables.journal.retain(|(owner, _), _| owner != id);
            tables.events.retain(|_, (event, _)| &event.instance_id != id);
            tables.tasks.retain(|(instance, _, _), _| instance != id);
            tables.debounces.retain(|_, instance| instance != id);
        }
        WriteOp::SetCustomStatus { id, custom_status, updated_at } => {
            if let Some(instance) = tables.instances.get_mut(id) {
                instance.custom_status = custom_status.clone();
                instance.updated_at = *updated_at;
            }
        }
    }
}

/// Claims under the lock (see [`Store::claim`]).
fn claim_locked(
    tables: &mut Tables,
    worker: &str,
    workflows: &[String],
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Vec<InstanceRecord> {
    let statuses = [RuntimeStatus::Pending, RuntimeStatus::Running];
    claim_some(tables, worker, (workflows, None), &statuses, now, lease_until, limit)
}

/// Claims as [`claim_locked`] does, of the instances in one of `statuses` only (starts are the
/// Pending ones, resumptions the Running ones), and with concurrency key `key` only if given.
fn claim_some(
    tables: &mut Tables,
    worker: &str,
    (workflows, key): (&[String], Option<&str>),
    statuses: &[RuntimeStatus],
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Vec<InstanceRecord> {
    let mut candidates: Vec<&mut InstanceRecord> = tables
        .instances
        .values_mut()
        .filter(|i| statuses.contains(&i.status))
        .filter(|i| workflows.contains(&i.workflow))
        .filter(|i| key.is_none_or(|key| i.concurrency_key == key))
        .filter(|i| i.wake_at.is_none_or(|wake| wake <= now))
        .filter(|i| match (&i.owner, i.lease_until) {
            (None, _) => true,
            (Some(_), until) => until.is_none_or(|until| until < now),
        })
        .collect();
    // The claim rule of every store (see `Store::claim`): of the unowned, the first `limit` ready
    // ones in priority order (highest first, then oldest first) and the earliest-due `limit`
    // woken ones; of the owned (their lease lapsed), the `limit` that lapsed first; then the
    // first `limit` of those together in priority order.
    let (mut lapsed, unowned): (Vec<_>, Vec<_>) = candidates.drain(..).partition(|i| i.owner.is_some());
    let (mut ready, mut due): (Vec<_>, Vec<_>) = unowned.into_iter().partition(|i| i.wake_at.is_none());
    let order = |i: &InstanceRecord| (std::cmp::Reverse(i.priority), i.created_at, i.id.clone());
    ready.sort_by_key(|i| order(i));
    due.sort_by(|a, b| (a.wake_at, a.created_at, &a.id).cmp(&(b.wake_at, b.created_at, &b.id)));
    lapsed.sort_by(|a, b| (a.lease_until, a.created_at, &a.id).cmp(&(b.lease_until, b.created_at, &b.id)));
    let picks = ready.into_iter().take(limit).chain(due.into_iter().take(limit));
    candidates.extend(picks.chain(lapsed.into_iter().take(limit)));
    candidates.sort_by_key(|i| order(i));
    candidates
        .into_iter()
        .take(limit)
        .map(|instance| {
            instance.owner = Some(worker.to_owned());
            instance.lease_until = Some(lease_until);
            instance.wake_at = None;
            let claimed = instance.clone();
            if instance.status == RuntimeStatus::Pending {
                instance.status = RuntimeStatus::Running;
                instance.updated_at = now;
            }
            claimed
        })
        .collect()
}

/// Whether a task may be claimed at `now`: unfinished, visible, unowned or with a lapsed lease.
fn claimable_task(task: &TaskRecord, now: Millis) -> bool {
    task.outcome.is_none()
        && task.visible_at <= now
        && (task.owner.is_none() || task.lease_until.is_none_or(|until| until < now))
}

/// A claimable task in claim order: highest priority first, then oldest `visible_at`, ties by key.
type TaskPick = (Reverse<i32>, Millis, TaskKey);

fn task_pick(key: &TaskKey, task: &TaskRecord) -> TaskPick {
    (Reverse(task.priority), task.visible_at, key.clone())
}

/// Claims the first `limit` of `picks` in claim order for `worker` until `lease_until`, and
/// returns them in that order.
fn take_tasks(
    tables: &mut Tables,
    mut picks: Vec<TaskPick>,
    worker: &str,
    lease_until: Millis,
    limit: usize,
) -> Vec<TaskRecord> {
    picks.sort();
    picks
        .into_iter()
        .take(limit)
        .filter_map(|(_, _, key)| {
            let task = tables.tasks.get_mut(&key)?;
            task.owner = Some(worker.to_owned());
            task.lease_until = Some(lease_until);
            Some(task.clone())
        })
        .collect()
}

/// Takes `lease` if its task is queued unowned and unfinished at its attempt and its key has room
/// under its cap (live leases and the window's starts, as a capped claim counts them); a rate-limited
/// lease taken counts as a start.
fn take_lease(tables: &mut Tables, lease: &TaskLease) -> bool {
    let key = (lease.instance_id.clone(), lease.generation, lease.seq);
    let cap = &lease.cap;
    let Some(task) = tables.tasks.get(&key) else { return false };
    if task.name != cap.activity || task.attempt != lease.attempt || task.outcome.is_some() || task.owner.is_some() {
        return false;
    }
    let keys = [task.concurrency_key.clone()];
    let (running, started) = running_and_started(tables, cap, lease.now);
    if key_room(cap, &running, &started, &keys).is_empty() {
        return false;
    }
    let [concurrency_key] = keys;
    if cap.rate.is_some() {
        tables.starts.entry(cap.activity.clone()).or_default().record(concurrency_key, lease.now);
    }
    let Some(task) = tables.tasks.get_mut(&key) else { return false };
    task.owner = Some(lease.owner.clone());
    task.lease_until = Some(lease.lease_until);
    true
}

/// Takes what it can of `leases` (see [`Lease::Start`]): of each workflow and key, while nothing
/// else of it waits for a claim, as many as its limits have room for, each only if this write
/// created its instance (not in `existing`) and it is still unowned, Pending and due.
fn take_starts(tables: &mut Tables, leases: &[StartLease], existing: &[String]) -> Vec<bool> {
    let mut taken = vec![false; leases.len()];
    let existing: HashSet<&str> = existing.iter().map(String::as_str).collect();
    for group in StartGroup::of(leases, &existing) {
        let (cap, key, now) = (group.cap, group.key, group.now);
        let ours = group.ids(leases);
        let in_scope = |i: &InstanceRecord| {
            i.workflow == cap.workflow
                && (!cap.keyed || i.concurrency_key == key)
                && matches!(i.status, RuntimeStatus::Pending | RuntimeStatus::Running)
        };
        let scoped = || tables.instances.values().filter(|i| in_scope(i));
        let running = scoped().filter(|i| i.owner.is_some() && i.lease_until.is_some_and(|u| u >= now)).count();
        let others_wait = scoped()
            .any(|i| i.owner.is_none() && i.wake_at.is_none_or(|wake| wake <= now) && !ours.contains(&i.id.as_str()));
        let mut started = 0;
        if let Some(rate) = cap.rate {
            let since = now.saturating_sub(rate.period_ms);
            tables.workflow_starts.retain(|(workflow, _, at)| workflow != &cap.workflow || *at > since);
            let in_key =
                |(workflow, k, _): &&(String, String, Millis)| workflow == &cap.workflow && (!cap.keyed || k == key);
            started = tables.workflow_starts.iter().filter(in_key).count();
        }
        let mut left = group.to_take(running as u64, started as u64, others_wait);
        for index in group.leases.iter().copied() {
            let lease = &leases[index];
            if left == 0 {
                break;
            }
            let Some(instance) = tables.instances.get_mut(&lease.instance_id) else { continue };
            let startable = instance.owner.is_none()
                && instance.status == RuntimeStatus::Pending
                && instance.wake_at.is_none_or(|wake| wake <= now);
            if !startable {
                continue;
            }
            instance.owner = Some(lease.owner.clone());
            instance.lease_until = Some(lease.lease_until);
            instance.wake_at = None;
            instance.status = RuntimeStatus::Running;
            instance.updated_at = lease.now;
            if cap.rate.is_some() {
                tables.workflow_starts.push((cap.workflow.clone(), instance.concurrency_key.clone(), lease.now));
            }
            taken[index] = true;
            left -= 1;
        }
    }
    taken
}

/// Per concurrency key, the tasks of `cap`'s activity holding a lease at `now`, and its starts in
/// the rate's window (those a period old forgotten first): what a capped claim and a leasing
/// write count.
fn running_and_started(
    tables: &mut Tables,
    cap: &ActivityCap,
    now: Millis,
) -> (HashMap<String, u64>, HashMap<String, u64>) {
    let mut running: HashMap<String, u64> = HashMap::new();
    let live = |t: &&TaskRecord| {
        t.name == cap.activity && t.outcome.is_none() && t.owner.is_some() && t.lease_until.is_some_and(|u| u >= now)
    };
    for task in tables.tasks.values().filter(live) {
        *running.entry(task.concurrency_key.clone()).or_default() += 1;
    }
    for ((activity, key, _), (slots, until)) in &tables.slots {
        if activity == &cap.activity && *until >= now {
            *running.entry(key.clone()).or_default() += u64::from(*slots);
        }
    }
    let mut started: HashMap<String, u64> = HashMap::new();
    if let Some(rate) = cap.rate {
        let since = now.saturating_sub(rate.period_ms);
        if let Some(starts) = tables.starts.get_mut(&cap.activity) {
            starts.forget_until(since);
            started.clone_from(&starts.per_key);
        }
    }
    (running, started)
}

/// Drops every lease `worker` holds, on instances and unfinished tasks, and its activity slots;
/// returns how many leases.
fn release(tables: &mut Tables, worker: &str) -> u64 {
    tables.slots.retain(|(_, _, owner), _| owner != worker);
    let mut released = 0;
    for instance in tables.instances.values_mut() {
        if instance.owner.as_deref() == Some(worker) {
            instance.owner = None;
            instance.lease_until = None;
            released += 1;
        }
    }
    for task in tables.tasks.values_mut() {
        if task.owner.as_deref() == Some(worker) && task.outcome.is_none() {
            task.owner = None;
            task.lease_until = None;
            released += 1;
        }
    }
    released
}

/// The ids of `AssertOwner` ops whose instance is missing or owned by someone else.
fn fenced(instances: &HashMap<String, InstanceRecord>, ops: &[WriteOp]) -> Vec<String> {
    let mut fenced: Vec<String> = ops
        .iter()
        .filter_map(|op| match op {
            WriteOp::AssertOwner { id, owner } => {
                let held = instances.get(id).and_then(|i| i.owner.as_deref()) == Some(owner.as_str());
                (!held).then(|| id.clone())
            }
            _ => None,
        })
        .collect();
    fenced.sort();
    fenced.dedup();
    fenced
}

/// The first `AssertStatus` op (in op order) that does not hold.
fn conflict(instances: &HashMap<String, InstanceRecord>, ops: &[WriteOp]) -> Option<StoreError> {
    ops.iter().find_map(|op| match op {
        WriteOp::AssertStatus { id, allowed } => {
            let status = instances.get(id).map(|i| i.status);
            (!status.is_some_and(|s| allowed.contains(&s))).then(|| StoreError::Conflict { id: id.clone(), status })
        }
        _ => None,
    })
}

/// The first `AssertInboxRoom` op (in op order) that does not hold: the instance's unconsumed
/// events, plus what this and the batch's earlier assertions on the same inbox add, over a limit.
fn inbox_full(events: &BTreeMap<i64, (EventRecord, bool)>, ops: &[WriteOp]) -> Option<StoreError> {
    let mut held_by: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut claimed: HashMap<&str, (u64, u64)> = HashMap::new();
    ops.iter().find_map(|op| {
        let WriteOp::AssertInboxRoom { id, events: adding, bytes: adding_bytes, max_events, max_bytes } = op else {
            return None;
        };
        let (held, held_bytes) = *held_by.entry(id).or_insert_with(|| {
            events
                .values()
                .filter(|(event, consumed)| event.instance_id == *id && !consumed)
                .fold((0_u64, 0_u64), |(n, b), (event, _)| (n + 1, b + event.payload.len() as u64))
        });
        let before = claimed.entry(id).or_default();
        *before = (before.0.saturating_add(*adding), before.1.saturating_add(*adding_bytes));
        let over = held.saturating_add(before.0) > *max_events || held_bytes.saturating_add(before.1) > *max_bytes;
        over.then(|| StoreError::InboxFull { id: id.clone(), events: held, bytes: held_bytes })
    })
}

/// `record` as a list without payloads returns it.
fn without_payloads(record: InstanceRecord) -> InstanceRecord {
    InstanceRecord { input: String::new(), output: None, custom_status: None, ..record }
}

/// Whether an instance matches a list query's filters (not its paging).
fn matches(query: &InstanceQuery, instance: &InstanceRecord) -> bool {
    (query.statuses.is_empty() || query.statuses.contains(&instance.status))
        && query.workflow.as_ref().is_none_or(|w| *w == instance.workflow)
        && query.created_after.is_none_or(|t| instance.created_at >= t)
        && query.created_before.is_none_or(|t| instance.created_at < t)
        && query.updated_before.is_none_or(|t| instance.updated_at < t)
        && query.parent_id.as_ref().is_none_or(|p| instance.parent_id.as_ref() == Some(p))
        && query.after.as_ref().is_none_or(|(t, id)| {
            let place = (instance.created_at, &instance.id);
            if query.newest_first {
                place < (*t, id)
            } else {
                place > (*t, id)
            }
        })
}

/// The instances `query` matches, in its list order.
fn listed<'a>(instances: &'a HashMap<String, InstanceRecord>, query: &InstanceQuery) -> Vec<&'a InstanceRecord> {
    let mut found: Vec<&InstanceRecord> = instances.values().filter(|i| matches(query, i)).collect();
    found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    if query.newest_first {
        found.reverse();
    }
    found
}

#[async_trait]
impl Store for MemoryStore {
    async fn write(&self, ops: &[WriteOp]) -> Result<WriteOutcome, StoreError> {
        Ok(self.write_leasing(ops, &[]).await?.0)
    }

    async fn write_leasing(&self, ops: &[WriteOp], leases: &[Lease]) -> Result<(WriteOutcome, Vec<bool>), StoreError> {
        let mut tables = self.lock()?;
        let fenced = fenced(&tables.instances, ops);
        if !fenced.is_empty() {
            return Err(StoreError::Fenced(fenced));
        }
        if let Some(conflict) = conflict(&tables.instances, ops) {
            return Err(conflict);
        }
        if let Some(full) = inbox_full(&tables.events, ops) {
            return Err(full);
        }
        let mut outcome = WriteOutcome::default();
        for op in ops {
            apply(&mut tables, op, &mut outcome);
        }
        let (tasks, starts) = Lease::split(leases);
        let started = take_starts(&mut tables, &starts, &outcome.existing);
        let tasks = tasks.iter().map(|lease| take_lease(&mut tables, lease)).collect();
        let taken = Lease::merge(leases, tasks, started);
        self.stats.record_commit(ops.len());
        drop(tables);
        let finished = ops.iter().filter_map(|op| match op {
            WriteOp::Finish { id, .. } => Some(WakeSignal::Finished(id.clone())),
            _ => None,
        });
        let started = Lease::started(leases, &taken);
        self.signals.send(WakeSignal::from_leased_batch(ops, &started).into_iter().chain(finished));
        Ok((outcome, taken))
    }

    async fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Ok(self.lock()?.instances.get(id).cloned())
    }

    async fn journal(&self, id: &str, generation: u32) -> Result<Vec<JournalRecord>, StoreError> {
        let tables = self.lock()?;
        Ok(tables
            .journal
            .get(&(id.to_owned(), generation))
            .map(|records| records.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn claim(
        &self,
        worker: &str,
        workflows: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        let mut tables = self.lock()?;
        Ok(claim_locked(&mut tables, worker, workflows, now, lease_until, limit))
    }

    async fn claim_capped(
        &self,
        worker: &str,
        workflows: &[String],
        caps: &[WorkflowCap],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        let mut tables = self.lock()?;
        let mut claimed = Vec::new();
        for cap in caps.iter().filter(|cap| workflows.contains(&cap.workflow)) {
            // Unkeyed, every instance counts under the one key "".
            let key_of = |i: &InstanceRecord| if cap.keyed { i.concurrency_key.clone() } else { String::new() };
            let mut running: HashMap<String, u64> = HashMap::new();
            let mut waiting: BTreeSet<String> = BTreeSet::new();
            for instance in tables.instances.values().filter(|i| i.workflow == cap.workflow) {
                if !matches!(instance.status, RuntimeStatus::Pending | RuntimeStatus::Running) {
                    continue;
                }
                if instance.owner.is_some() && instance.lease_until.is_some_and(|until| until >= now) {
                    *running.entry(key_of(instance)).or_default() += 1;
                } else {
                    waiting.insert(key_of(instance));
                }
            }
            let mut started: HashMap<String, u64> = HashMap::new();
            if let Some(rate) = cap.rate {
                let since = now.saturating_sub(rate.period_ms);
                tables.workflow_starts.retain(|(workflow, _, at)| workflow != &cap.workflow || *at > since);
                for (_, key, _) in tables.workflow_starts.iter().filter(|(workflow, ..)| workflow == &cap.workflow) {
                    *started.entry(key.clone()).or_default() += 1;
                }
            }
            let only = [cap.workflow.clone()];
            for key in waiting {
                let room = cap.room(running.get(&key).copied().unwrap_or(0), started.get(&key).copied().unwrap_or(0));
                let want = room.total.min(limit - claimed.len());
                let scope = (&only[..], cap.keyed.then_some(key.as_str()));
                match room.starts {
                    None => {
                        let statuses = [RuntimeStatus::Pending, RuntimeStatus::Running];
                        claimed.extend(claim_some(&mut tables, worker, scope, &statuses, now, lease_until, want));
                    }
                    Some(starts) => {
                        let running = [RuntimeStatus::Running];
                        let resumed = claim_some(&mut tables, worker, scope, &running, now, lease_until, want);
                        let want = starts.min(want - resumed.len());
                        let pending = [RuntimeStatus::Pending];
                        let begun = claim_some(&mut tables, worker, scope, &pending, now, lease_until, want);
                        tables.workflow_starts.extend(begun.iter().map(|_| (cap.workflow.clone(), key.clone(), now)));
                        claimed.extend(resumed.into_iter().chain(begun));
                    }
                }
            }
        }
        let uncapped: Vec<String> =
            workflows.iter().filter(|w| !caps.iter().any(|cap| &cap.workflow == *w)).cloned().collect();
        let rest = limit - claimed.len();
        claimed.extend(claim_locked(&mut tables, worker, &uncapped, now, lease_until, rest));
        claimed.sort_by_key(|i| (std::cmp::Reverse(i.priority), i.created_at, i.id.clone()));
        Ok(claimed)
    }

    async fn list(&self, query: &InstanceQuery) -> Result<Vec<InstanceRecord>, StoreError> {
        let tables = self.lock()?;
        let page = listed(&tables.instances, query).into_iter().take(query.limit).cloned();
        Ok(page.map(|record| if query.without_payloads { without_payloads(record) } else { record }).collect())
    }

    async fn list_keys(&self, query: &InstanceQuery) -> Result<Vec<InstanceKey>, StoreError> {
        let tables = self.lock()?;
        Ok(listed(&tables.instances, query).into_iter().take(query.limit).map(InstanceKey::from).collect())
    }

    async fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let tables = self.lock()?;
        Ok(tables
            .events
            .values()
            .filter(|(event, consumed)| event.instance_id == id && !consumed)
            .map(|(event, _)| event.clone())
            .collect())
    }

    async fn recent_starts(&self, scope: StartScope<'_>, since: Millis) -> Result<Vec<(Millis, u64)>, StoreError> {
        let tables = self.lock()?;
        let mut starts: Vec<(Millis, u64)> = match scope {
            StartScope::Workflow { workflow, key } => tables
                .workflow_starts
                .iter()
                .filter(|(name, k, at)| name == workflow && k == key && *at > since)
                .map(|(_, _, at)| (*at, 1))
                .collect(),
            StartScope::Activity { activity, key } => tables
                .starts
                .get(activity)
                .into_iter()
                .flat_map(|starts| starts.starts.iter())
                .filter(|(k, at)| k == key && *at > since)
                .map(|(_, at)| (*at, 1))
                .collect(),
        };
        starts.sort_unstable();
        // One entry per time, as the SQL stores group them.
        let mut grouped: Vec<(Millis, u64)> = Vec::with_capacity(starts.len());
        for (at, n) in starts {
            match grouped.last_mut() {
                Some((time, count)) if *time == at => *count += n,
                _ => grouped.push((at, n)),
            }
        }
        Ok(grouped)
    }

    async fn inboxes(&self, ids: &[String], per_instance: usize) -> Result<Vec<EventRecord>, StoreError> {
        let tables = self.lock()?;
        let mut taken: HashMap<&str, usize> = ids.iter().map(|id| (id.as_str(), 0)).collect();
        let mut events = Vec::new();
        // In event id order: arrival order within each instance.
        for (event, consumed) in tables.events.values() {
            if *consumed {
                continue;
            }
            if let Some(count) = taken.get_mut(event.instance_id.as_str()) {
                if *count < per_instance {
                    *count += 1;
                    events.push(event.clone());
                }
            }
        }
        Ok(events)
    }

    async fn events_named(
        &self,
        id: &str,
        name: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let tables = self.lock()?;
        Ok(tables
            .events
            .range(after.saturating_add(1)..)
            .map(|(_, entry)| entry)
            .filter(|(event, consumed)| event.instance_id == id && !consumed && event.name.eq_ignore_ascii_case(name))
            .take(limit)
            .map(|(event, _)| event.clone())
            .collect())
    }

    async fn renew_leases(&self, worker: &str, lease_until: Millis) -> Result<u64, StoreError> {
        let mut tables = self.lock()?;
        let mut renewed = 0;
        for instance in tables.instances.values_mut() {
            if instance.owner.as_deref() == Some(worker) {
                instance.lease_until = Some(lease_until);
                renewed += 1;
            }
        }
        for task in tables.tasks.values_mut() {
            if task.owner.as_deref() == Some(worker) && task.outcome.is_none() {
                task.lease_until = Some(lease_until);
                renewed += 1;
            }
        }
        for ((_, _, owner), (_, until)) in tables.slots.iter_mut() {
            if owner == worker {
                *until = lease_until;
                renewed += 1;
            }
        }
        Ok(renewed)
    }

    async fn reserve_slots(&self, requests: &[SlotRequest]) -> Result<Vec<u32>, StoreError> {
        let mut tables = self.lock()?;
        let mut taken = Vec::with_capacity(requests.len());
        for request in requests {
            let key = request.concurrency_key.as_str();
            let waiting = tables.tasks.values().any(|task| {
                task.name == request.cap.activity && task.concurrency_key == key && claimable_task(task, request.now)
            });
            let (running, started) = running_and_started(&mut tables, &request.cap, request.now);
            let take = request.to_take(waiting, &running, &started);
            let pool = (request.cap.activity.clone(), key.to_owned(), request.owner.clone());
            let held = tables.slots.get(&pool).filter(|(_, until)| *until >= request.now).map_or(0, |(n, _)| *n);
            if held + take > 0 {
                tables.slots.insert(pool, (held + take, request.lease_until));
            }
            taken.push(take);
        }
        Ok(taken)
    }

    async fn release_slots(&self, owner: &str, releases: &[(String, String, u32)]) -> Result<(), StoreError> {
        let mut tables = self.lock()?;
        for (activity, key, count) in releases {
            let pool = (activity.clone(), key.clone(), owner.to_owned());
            if let Some((held, _)) = tables.slots.get_mut(&pool) {
                *held = held.saturating_sub(*count);
                if *held == 0 {
                    tables.slots.remove(&pool);
                }
            }
        }
        // Queued tasks of those keys may have room now.
        self.signals.send([WakeSignal::TaskQueued]);
        Ok(())
    }

    async fn release_leases(&self, worker: &str) -> Result<u64, StoreError> {
        let released = release(&mut *self.lock()?, worker);
        if released > 0 {
            self.signals.send([WakeSignal::Runnable, WakeSignal::TaskQueued]);
        }
        Ok(released)
    }

    fn wake_signals(&self) -> Option<broadcast::Receiver<WakeSignal>> {
        Some(self.signals.0.subscribe())
    }

    async fn register_worker(&self, worker: &str, _takes_starts: &[String]) -> Result<Option<WorkerMark>, StoreError> {
        let alive = Arc::new(());
        let mut workers = self.workers.lock().map_err(|_| StoreError::Backend("memory store lock poisoned".into()))?;
        workers.insert(worker.to_owned(), Arc::downgrade(&alive));
        Ok(Some(WorkerMark::new(alive)))
    }

    async fn release_dead_workers(&self) -> Result<u64, StoreError> {
        let dead: Vec<String> = {
            let mut workers =
                self.workers.lock().map_err(|_| StoreError::Backend("memory store lock poisoned".into()))?;
            let dead = workers.iter().filter(|(_, mark)| mark.strong_count() == 0).map(|(worker, _)| worker.clone());
            let dead: Vec<String> = dead.collect();
            for worker in &dead {
                workers.remove(worker);
            }
            dead
        };
        let released: u64 = {
            let mut tables = self.lock()?;
            dead.iter().map(|worker| release(&mut tables, worker)).sum()
        };
        if released > 0 {
            self.signals.send([WakeSignal::Runnable, WakeSignal::TaskQueued]);
        }
        Ok(released)
    }

    async fn claim_tasks(
        &self,
        worker: &str,
        activities: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let mut tables = self.lock()?;
        let picks: Vec<TaskPick> = tables
            .tasks
            .iter()
            .filter(|(_, t)| claimable_task(t, now) && activities.contains(&t.name))
            .map(|(key, t)| task_pick(key, t))
            .collect();
        Ok(take_tasks(&mut tables, picks, worker, lease_until, limit))
    }

    async fn claim_tasks_capped(
        &self,
        worker: &str,
        activities: &[String],
        caps: &[ActivityCap],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let mut tables = self.lock()?;
        let mut capped: Vec<&ActivityCap> = caps.iter().filter(|cap| activities.contains(&cap.activity)).collect();
        capped.sort_by(|a, b| a.activity.cmp(&b.activity));
        let mut claimed = Vec::new();
        for cap in capped {
            let mut picks: Vec<TaskPick> = Vec::new();
            let (running, started) = running_and_started(&mut tables, cap, now);
            let mut queued: BTreeMap<String, Vec<TaskPick>> = BTreeMap::new();
            for (key, task) in tables.tasks.iter().filter(|(_, t)| t.name == cap.activity && claimable_task(t, now)) {
                queued.entry(task.concurrency_key.clone()).or_default().push(task_pick(key, task));
            }
            let keys: Vec<String> = queued.keys().cloned().collect();
            for (key, room) in key_room(cap, &running, &started, &keys) {
                let mut oldest = queued.remove(key).unwrap_or_default();
                oldest.sort();
                picks.extend(oldest.into_iter().take(room));
            }
            let left = limit - claimed.len();
            let taken = take_tasks(&mut tables, picks, worker, lease_until, left);
            if cap.rate.is_some() {
                let starts = tables.starts.entry(cap.activity.clone()).or_default();
                for task in &taken {
                    starts.record(task.concurrency_key.clone(), now);
                }
            }
            claimed.extend(taken);
        }
        let capped = |name: &String| caps.iter().any(|cap| &cap.activity == name);
        let picks = tables
            .tasks
            .iter()
            .filter(|(_, t)| claimable_task(t, now) && activities.contains(&t.name) && !capped(&t.name))
            .map(|(key, t)| task_pick(key, t))
            .collect();
        let left = limit - claimed.len();
        claimed.extend(take_tasks(&mut tables, picks, worker, lease_until, left));
        claimed.sort_by_key(|t| (Reverse(t.priority), t.visible_at, t.instance_id.clone(), t.generation, t.seq));
        Ok(claimed)
    }

    async fn complete_task(
        &self,
        worker: &str,
        instance_id: &str,
        generation: u32,
        seq: u32,
        attempt: u32,
        outcome: &TaskOutcome,
    ) -> Result<bool, StoreError> {
        let completion =
            TaskCompletion { instance_id: instance_id.to_owned(), generation, seq, attempt, outcome: outcome.clone() };
        Ok(self.complete_tasks(worker, &[completion]).await?.first().copied().unwrap_or(false))
    }

    async fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<bool, StoreError> {
        let mut tables = self.lock()?;
        if tables.schedules.contains_key(&schedule.id) {
            return Ok(false);
        }
        tables.schedules.insert(schedule.id.clone(), schedule.clone());
        self.stats.record_commit(1);
        Ok(true)
    }

    async fn change_schedule(&self, change: &ScheduleChange) -> Result<bool, StoreError> {
        let mut tables = self.lock()?;
        let Some(existing) = tables.schedules.get_mut(&change.id) else { return Ok(false) };
        if existing.updated_at != change.expected_updated_at {
            return Ok(false);
        }
        match &change.to {
            Some(to) => *existing = ScheduleRecord { created_at: existing.created_at, ..to.clone() },
            None => {
                tables.schedules.remove(&change.id);
            }
        }
        for id in &change.cancel {
            let waiting =
                tables.instances.get(id).is_some_and(|i| i.status == RuntimeStatus::Pending && i.owner.is_none());
            if waiting {
                apply(&mut tables, &WriteOp::Purge { id: id.clone() }, &mut WriteOutcome::default());
            }
        }
        self.stats.record_commit(1);
        Ok(true)
    }

    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        Ok(self.lock()?.schedules.get(id).cloned())
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        Ok(self.lock()?.schedules.values().cloned().collect())
    }

    async fn due_schedules(&self, now: Millis, limit: usize) -> Result<Vec<ScheduleRecord>, StoreError> {
        let tables = self.lock()?;
        let mut due: Vec<&ScheduleRecord> =
            tables.schedules.values().filter(|s| !s.paused && s.next_fire_at.is_some_and(|next| next <= now)).collect();
        due.sort_by(|a, b| (a.next_fire_at, &a.id).cmp(&(b.next_fire_at, &b.id)));
        Ok(due.into_iter().take(limit).cloned().collect())
    }

    async fn fire_schedules(&self, fires: &[ScheduleFire]) -> Result<Vec<bool>, StoreError> {
        let mut tables = self.lock()?;
        let mut took = Vec::with_capacity(fires.len());
        let mut created = false;
        for fire in fires {
            let Some(schedule) = tables.schedules.get_mut(&fire.id) else {
                took.push(false);
                continue;
            };
            let moved =
                schedule.next_fire_at != Some(fire.expected_next) || schedule.updated_at != fire.expected_updated_at;
            if schedule.paused || moved {
                took.push(false);
                continue;
            }
            schedule.next_fire_at = fire.next_fire_at;
            schedule.runs = fire.runs.clone();
            schedule.updated_at = fire.fired_at;
            for instance in &fire.instances {
                if !tables.instances.contains_key(&instance.id) {
                    tables.instances.insert(instance.id.clone(), instance.clone());
                    created = true;
                }
            }
            took.push(true);
        }
        self.stats.record_commit(fires.len());
        if created {
            self.signals.send([WakeSignal::Runnable]);
        }
        Ok(took)
    }

    async fn debounce(&self, start: &Debounce) -> Result<String, StoreError> {
        let mut tables = self.lock()?;
        let pointer = (start.record.workflow.clone(), start.key.clone());
        if let Some(id) = tables.debounces.get(&pointer).cloned() {
            if let Some(waiting) = tables.instances.get_mut(&id) {
                if waiting.status == RuntimeStatus::Pending && waiting.owner.is_none() {
                    let latest = start.max_wait_ms.map_or(Millis::MAX, |max| waiting.created_at.saturating_add(max));
                    waiting.input = start.record.input.clone();
                    waiting.concurrency_key = start.record.concurrency_key.clone();
                    waiting.wake_at = Some(start.due.min(latest));
                    waiting.updated_at = start.record.updated_at;
                    self.stats.record_commit(1);
                    return Ok(id);
                }
            }
        }
        if tables.instances.contains_key(&start.record.id) {
            return Err(StoreError::Backend(format!("debounce: the new instance id {:?} is taken", start.record.id)));
        }
        let record = InstanceRecord { wake_at: Some(start.due), ..start.record.clone() };
        tables.instances.insert(record.id.clone(), record);
        tables.debounces.insert(pointer, start.record.id.clone());
        self.stats.record_commit(1);
        Ok(start.record.id.clone())
    }

    async fn complete_tasks(&self, worker: &str, completions: &[TaskCompletion]) -> Result<Vec<bool>, StoreError> {
        let mut tables = self.lock()?;
        // Stored only into the open attempt `worker` holds: a task taken over, withdrawn or
        // already reported keeps what it has.
        let stored: Vec<bool> = completions
            .iter()
            .map(|c| match tables.tasks.get_mut(&(c.instance_id.clone(), c.generation, c.seq)) {
                Some(task)
                    if task.attempt == c.attempt && task.owner.as_deref() == Some(worker) && task.outcome.is_none() =>
                {
                    task.outcome = Some(c.outcome.clone());
                    true
                }
                _ => false,
            })
            .collect();
        let done = stored.iter().filter(|stored| **stored).count();
        if done > 0 {
            self.stats.record_commit(done);
        }
        drop(tables);
        let finished = completions.iter().zip(&stored).filter(|(_, stored)| **stored);
        self.signals.send(finished.map(|(c, _)| WakeSignal::TaskDone(c.instance_id.clone())));
        Ok(stored)
    }

    async fn tasks_of(&self, instance_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let tables = self.lock()?;
        Ok(tables.tasks.iter().filter(|((id, _, _), _)| id == instance_id).map(|(_, task)| task.clone()).collect())
    }

    async fn queue_depths(&self, now: Millis) -> Result<Vec<QueueDepth>, StoreError> {
        let tables = self.lock()?;
        let mut queues: BTreeMap<(QueueKind, String, String), QueueDepth> = BTreeMap::new();
        let mut count = |kind: QueueKind, name: &str, key: &str, waiting_since: Option<Millis>| {
            let depth = queues.entry((kind, name.to_owned(), key.to_owned())).or_insert_with(|| QueueDepth {
                kind,
                name: name.to_owned(),
                concurrency_key: key.to_owned(),
                waiting: 0,
                running: 0,
                oldest_waiting: None,
            });
            match waiting_since {
                Some(since) => {
                    depth.waiting += 1;
                    depth.oldest_waiting = Some(depth.oldest_waiting.map_or(since, |oldest| oldest.min(since)));
                }
                None => depth.running += 1,
            }
        };
        for task in tables.tasks.values().filter(|task| task.outcome.is_none()) {
            let leased = task.owner.is_some() && task.lease_until.is_some_and(|until| until >= now);
            count(QueueKind::Activity, &task.name, &task.concurrency_key, (!leased).then_some(task.visible_at));
        }
        // Workers' live slots count as running (each runs an attempt, or is about to).
        for ((activity, key, _), (slots, until)) in &tables.slots {
            if *until >= now {
                for _ in 0..*slots {
                    count(QueueKind::Activity, activity, key, None);
                }
            }
        }
        for instance in tables.instances.values() {
            let waiting_since = match instance.status {
                RuntimeStatus::Pending => Some(instance.created_at),
                RuntimeStatus::Running => None,
                _ => continue,
            };
            count(QueueKind::Workflow, &instance.workflow, &instance.concurrency_key, waiting_since);
        }
        Ok(queues.into_values().collect())
    }

    async fn status_counts(&self, at_most: u64) -> Result<Vec<(RuntimeStatus, u64)>, StoreError> {
        let tables = self.lock()?;
        Ok(RuntimeStatus::ALL
            .into_iter()
            .map(|status| {
                let count = tables.instances.values().filter(|instance| instance.status == status).count();
                (status, u64::try_from(count).unwrap_or(u64::MAX).min(at_most))
            })
            .collect())
    }

    async fn finished_tasks(&self, instance_ids: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        let tables = self.lock()?;
        Ok(tables
            .tasks
            .values()
            .filter(|t| t.outcome.is_some() && instance_ids.contains(&t.instance_id))
            .cloned()
            .collect())
    }

    async fn probe_commit(&self) -> Result<(), StoreError> {
        self.lock()?.probes += 1;
        self.stats.record_commit(1);
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }
}
