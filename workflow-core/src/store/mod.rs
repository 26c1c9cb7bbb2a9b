//! The `Store` seam: what the engine needs from a database, in the engine's terms. Everything a
//! store implementer needs is here: the [`Store`] trait, the write ops ([`WriteOp`]), the records
//! they carry, the change hints ([`WakeSignal`]), the in-memory reference store
//! ([`MemoryStore`]), and, behind the `conformance` feature, the test suite every store must pass
//! (`conformance`).
//!
//! Payloads (inputs, outputs, errors) cross this seam as JSON text, so a person can read them in
//! the database and the engine, not the store, decides what a corrupt one means.

#[cfg(feature = "conformance")]
pub mod conformance;
mod memory;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

pub use crate::model::{
    EventRecord, InstanceRecord, JournalRecord, Millis, RecordStatus, RuntimeStatus, ScheduleChange, ScheduleFire,
    ScheduleRecord, StepKind, TaskOutcome, TaskRecord, NEVER,
};
pub use memory::MemoryStore;

/// One change in a write batch. A batch is applied in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Insert an instance unless one with its id exists (reported in [`WriteOutcome::existing`]).
    CreateInstance(InstanceRecord),
    /// Insert or replace a journal record.
    PutRecord(JournalRecord),
    /// Set an instance's status (for example Pending to Running).
    SetStatus {
        /// The instance id.
        id: String,
        /// The new status.
        status: RuntimeStatus,
        /// The time of the change.
        updated_at: Millis,
    },
    /// Finish an instance: set its terminal status, output or error, drop its lease, and delete
    /// its tasks.
    Finish {
        /// The instance id.
        id: String,
        /// The terminal status.
        status: RuntimeStatus,
        /// The output (JSON), when completed.
        output: Option<String>,
        /// The failure, when failed.
        error: Option<String>,
        /// The time of the change.
        updated_at: Millis,
    },
    /// Append an event to an instance's inbox (the store assigns its `event_id`) and set the
    /// instance's `wake_at` to `created_at`, so an evicted instance is claimed to take it.
    AddEvent {
        /// The instance id.
        instance_id: String,
        /// The event's name.
        name: String,
        /// Its payload (JSON).
        payload: String,
        /// Its arrival time.
        created_at: Millis,
    },
    /// Mark an event as consumed by the operation at (generation, seq); it is no longer listed.
    ConsumeEvent {
        /// The instance id.
        instance_id: String,
        /// The event.
        event_id: i64,
        /// The consuming operation's generation.
        generation: u32,
        /// The consuming operation's seq.
        seq: u32,
    },
    /// Set an instance's wake-up time.
    SetWake {
        /// The instance id.
        id: String,
        /// The new wake-up time (`None`: claimable at once).
        wake_at: Option<Millis>,
    },
    /// Drop an instance from memory while it waits: clear its owner and lease, set its wake-up.
    Evict {
        /// The instance id.
        id: String,
        /// When to run it again; [`NEVER`] to wait until an event or a child wakes it.
        wake_at: Millis,
    },
    /// Restart an instance with new input and an empty journal: set `input` and `generation`,
    /// status Running, clear output and error, delete the journal and the tasks of every older
    /// generation and every consumed event. Unconsumed events stay in the inbox.
    ContinueAsNew {
        /// The instance id.
        id: String,
        /// The new input (JSON).
        input: String,
        /// The new generation.
        generation: u32,
        /// The time of the change.
        updated_at: Millis,
    },
    /// Fail the whole batch with [`StoreError::Fenced`] unless the instance exists and is owned
    /// by `owner`, checked before any op of the batch is applied. A worker whose lease was taken
    /// over (or whose instance was purged) must not write to it.
    AssertOwner {
        /// The instance id.
        id: String,
        /// The worker that must own it.
        owner: String,
    },
    /// Queue an activity attempt for any worker: insert the task unowned and without an outcome
    /// (the record's `owner`, `lease_until` and `outcome` are ignored). A task already stored
    /// under the same key with the same or a later attempt is left as it is (a replaying owner
    /// re-queues what its predecessor queued, and must find the outcome, not erase it); one with
    /// an earlier attempt is replaced.
    EnqueueTask(TaskRecord),
    /// Delete the task of one activity call, if there is one.
    DeleteTask {
        /// The instance id.
        instance_id: String,
        /// The call's generation.
        generation: u32,
        /// The call's seq.
        seq: u32,
    },
    /// Fail the whole batch with [`StoreError::Conflict`] unless the instance exists with one of
    /// the `allowed` statuses, checked before any op of the batch is applied (with the
    /// `AssertOwner` checks). A client's change of state (terminate, suspend, resume, purge) must
    /// not overwrite a change that raced it.
    AssertStatus {
        /// The instance id.
        id: String,
        /// The statuses it may have.
        allowed: Vec<RuntimeStatus>,
    },
    /// Fail the whole batch with [`StoreError::InboxFull`] unless the instance's inbox has room
    /// for `events` more events of `bytes` payload bytes (the JSON text's length) on top of what
    /// the batch's earlier `AssertInboxRoom` ops of the same instance claimed: its unconsumed
    /// events before the batch, plus all of these, may be at most `max_events` events and
    /// `max_bytes` bytes. Checked before any op of the batch is applied (after the `AssertOwner`
    /// and `AssertStatus` checks), in a way that orders it with every other batch checking the
    /// same inbox (a lock, a single writer), so concurrent raises cannot together overfill it.
    /// An inbox of an instance the store does not know is checked all the same.
    AssertInboxRoom {
        /// The instance id.
        id: String,
        /// How many events the batch adds.
        events: u64,
        /// Their payloads' bytes.
        bytes: u64,
        /// The most events the inbox may hold.
        max_events: u64,
        /// The most payload bytes it may hold.
        max_bytes: u64,
    },
    /// Delete an instance and every row of it: the instance, its journal (every generation), its
    /// events, its tasks, and the debounce keys pointing at it.
    Purge {
        /// The instance id.
        id: String,
    },
    /// Set the custom status text (JSON).
    SetCustomStatus {
        /// The instance id.
        id: String,
        /// The text; `None` clears it.
        custom_status: Option<String>,
        /// The time of the change.
        updated_at: Millis,
    },
}

impl WriteOp {
    /// The instance this op writes to or checks (each op concerns exactly one).
    pub fn instance_id(&self) -> &str {
        match self {
            WriteOp::CreateInstance(record) => &record.id,
            WriteOp::PutRecord(record) => &record.instance_id,
            WriteOp::EnqueueTask(task) => &task.instance_id,
            WriteOp::AddEvent { instance_id, .. }
            | WriteOp::ConsumeEvent { instance_id, .. }
            | WriteOp::DeleteTask { instance_id, .. } => instance_id,
            WriteOp::SetStatus { id, .. }
            | WriteOp::Finish { id, .. }
            | WriteOp::SetWake { id, .. }
            | WriteOp::Evict { id, .. }
            | WriteOp::ContinueAsNew { id, .. }
            | WriteOp::AssertOwner { id, .. }
            | WriteOp::AssertStatus { id, .. }
            | WriteOp::AssertInboxRoom { id, .. }
            | WriteOp::Purge { id }
            | WriteOp::SetCustomStatus { id, .. } => id,
        }
    }
}

/// The flow control of one workflow's instances, across every worker (see
/// [`Store::claim_capped`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowCap {
    /// The workflow's name.
    pub workflow: String,
    /// The most instances of it that hold a lease at once (at least 1), if capped.
    pub concurrency: Option<u32>,
    /// The most instances of it that start (are claimed while Pending: never run before) in any
    /// window of the period, if limited. Resuming a started instance is not a start.
    pub rate: Option<RateLimit>,
    /// Whether the cap and the rate apply to each concurrency key apart
    /// ([`InstanceRecord::concurrency_key`]) rather than to the workflow as a whole.
    pub keyed: bool,
}

/// What a claim may take of one flow-controlled workflow (see [`WorkflowCap::room`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowRoom {
    /// How many of its instances the claim may take in all.
    pub total: usize,
    /// How many of those may be starts (Pending instances), when its starts are rate-limited;
    /// `None`: starts and resumptions are taken alike, in claim order.
    pub starts: Option<usize>,
}

impl WorkflowCap {
    /// What a claim may take of this workflow, given `running` (its instances holding a lease
    /// now) and `started` (its starts within the rate's period): the cap less what runs, and the
    /// rate less what started, never negative. The one place every store computes a capped
    /// claim's room.
    pub fn room(&self, running: u64, started: u64) -> WorkflowRoom {
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let total = self.concurrency.map_or(usize::MAX, |limit| to_usize(u64::from(limit).saturating_sub(running)));
        let starts = self.rate.map(|rate| to_usize(u64::from(rate.limit).saturating_sub(started)).min(total));
        WorkflowRoom { total, starts }
    }
}

/// A rate limit: at most `limit` starts in any window of `period_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// The most starts in one period (at least 1).
    pub limit: u32,
    /// The period, in milliseconds (at least 1).
    pub period_ms: i64,
}

/// The flow control of one activity's attempts, across every worker (see
/// [`Store::claim_tasks_capped`]), applied per concurrency key ([`TaskRecord::concurrency_key`]):
/// tasks without a key share the key `""`, so limits on an activity whose calls carry no key are
/// global.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityCap {
    /// The activity's name.
    pub activity: String,
    /// The most attempts with one key that run at once (at least 1), if capped.
    pub concurrency: Option<u32>,
    /// The most attempts with one key that start in any window of the period, if limited.
    pub rate: Option<RateLimit>,
}

/// A lease a write asks for on a task it queues (see [`Store::write_leasing`]): the calling
/// worker runs the attempt itself at once, with no claim, when the activity's limits have room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLease {
    /// The task's instance.
    pub instance_id: String,
    /// Its generation.
    pub generation: u32,
    /// Its seq.
    pub seq: u32,
    /// The attempt the task must be queued at.
    pub attempt: u32,
    /// The task's concurrency key (a lease of a task queued under another key is not taken).
    pub concurrency_key: String,
    /// The worker taking it.
    pub owner: String,
    /// Until when.
    pub lease_until: Millis,
    /// The taker's clock: leases live at `now` count against the cap, and the rate's window ends
    /// at `now`.
    pub now: Millis,
    /// The activity's limits.
    pub cap: ActivityCap,
}

/// A start a write assigns to a live worker as it creates it (see [`Store::write_leasing`]): a
/// client without a runtime hands its start straight to a worker that takes its workflow's starts
/// ([`Store::start_takers`]), which runs it when the store signals it ([`WakeSignal::Assigned`]),
/// instead of leaving it for a claim: no claim rewrites the row, as a runtime's own start needs
/// none. Only workflows without flow control are assigned (a worker offers no others), so there
/// are no limits to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignLease {
    /// The instance the write creates (Pending, unowned).
    pub instance_id: String,
    /// The worker it is assigned to (its owner, as registered).
    pub owner: String,
    /// Until when, unless the worker renews it.
    pub lease_until: Millis,
    /// The writer's clock: the start is Running since `now`, and must be due by then.
    pub now: Millis,
}

/// A live worker that takes the starts of `workflows` assigned to it at their creation (see
/// [`Store::start_takers`], [`AssignLease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartTaker {
    /// The worker's owner, as registered ([`Store::register_worker`]).
    pub owner: String,
    /// The workflows whose starts it takes.
    pub workflows: Vec<String>,
}

/// A lease a write asks for on an instance it creates (see [`Store::write_leasing`]): the calling
/// worker starts a flow-controlled workflow's instance itself at once, with no claim, when the
/// workflow's limits have room and none of its instances waits ahead of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartLease {
    /// The instance the write creates (Pending, unowned).
    pub instance_id: String,
    /// Its concurrency key (counted under it when the cap is keyed).
    pub concurrency_key: String,
    /// Its priority: of a batch's leases on one workflow (and key), the higher are taken first.
    pub priority: i32,
    /// The worker taking it.
    pub owner: String,
    /// Until when.
    pub lease_until: Millis,
    /// The taker's clock: leases live at `now` count against the cap, the rate's window ends at
    /// `now`, and instances due by `now` wait ahead.
    pub now: Millis,
    /// The workflow's limits.
    pub cap: WorkflowCap,
}

impl StartLease {
    /// The key this lease counts under: its concurrency key when the cap is keyed, else `""`.
    pub fn counted_key(&self) -> &str {
        if self.cap.keyed {
            &self.concurrency_key
        } else {
            ""
        }
    }
}

/// The start leases of one workflow and counted key in a write (see [`Lease::Start`]): a store
/// counts their limits once and takes them together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartGroup<'a> {
    /// The workflow's limits.
    pub cap: &'a WorkflowCap,
    /// The key they count under ([`StartLease::counted_key`]).
    pub key: &'a str,
    /// The latest clock of the write's leases on the workflow: when its limits are counted.
    pub now: Millis,
    /// Their indexes (in the leases given), in the order they are taken: higher priority first,
    /// then in order.
    pub leases: Vec<usize>,
}

impl<'a> StartGroup<'a> {
    /// The groups of `leases` on instances the write created (those in `existing`, which it
    /// found existing, are never taken), by workflow name, then key (the order a store takes the
    /// workflows' locks in). The one place every store groups and orders start leases.
    pub fn of(leases: &'a [StartLease], existing: &HashSet<&str>) -> Vec<StartGroup<'a>> {
        let mut groups: Vec<StartGroup<'a>> = Vec::new();
        for (index, lease) in leases.iter().enumerate() {
            if existing.contains(lease.instance_id.as_str()) {
                continue;
            }
            let (workflow, key) = (lease.cap.workflow.as_str(), lease.counted_key());
            match groups.iter_mut().find(|g| g.cap.workflow == workflow && g.key == key) {
                Some(group) => {
                    group.now = group.now.max(lease.now);
                    group.leases.push(index);
                }
                None => groups.push(StartGroup { cap: &lease.cap, key, now: lease.now, leases: vec![index] }),
            }
        }
        // One clock per workflow, the latest: a store may count all of its keys at once.
        let latest = |workflow: &str, groups: &[StartGroup<'_>]| {
            groups.iter().filter(|g| g.cap.workflow == workflow).map(|g| g.now).max().unwrap_or_default()
        };
        let clocks: Vec<Millis> = groups.iter().map(|g| latest(&g.cap.workflow, &groups)).collect();
        for (group, now) in groups.iter_mut().zip(clocks) {
            group.now = now;
            group.leases.sort_by_key(|index| (std::cmp::Reverse(leases[*index].priority), *index));
        }
        groups.sort_by(|a, b| (a.cap.workflow.as_str(), a.key).cmp(&(b.cap.workflow.as_str(), b.key)));
        groups
    }

    /// How many of the group to take, given the live leases under its key (`running`), its
    /// starts in the rate's window (`started`), and whether an instance it does not hold waits
    /// for a claim (`others_wait`: then none, so a backlog is not overtaken).
    pub fn to_take(&self, running: u64, started: u64, others_wait: bool) -> usize {
        if others_wait {
            return 0;
        }
        let room = self.cap.room(running, started);
        room.starts.unwrap_or(room.total).min(self.leases.len())
    }

    /// The ids of the group's instances, in the order they are taken.
    pub fn ids<'l>(&self, leases: &'l [StartLease]) -> Vec<&'l str> {
        self.leases.iter().map(|index| leases[*index].instance_id.as_str()).collect()
    }

    /// The first `count` of the group's leases, in runs of one owner (a store takes a run in one
    /// statement, until the latest of its leases).
    pub fn runs(&self, leases: &[StartLease], count: usize) -> Vec<Vec<usize>> {
        let first = &self.leases[..count.min(self.leases.len())];
        first.chunk_by(|a, b| leases[*a].owner == leases[*b].owner).map(<[usize]>::to_vec).collect()
    }

    /// Marks taken the leases of `run` whose instances a taking statement `returned`; says how
    /// many (the starts to record against a rate).
    pub fn mark_taken(leases: &[StartLease], run: &[usize], returned: &[String], taken: &mut [bool]) -> usize {
        let returned: HashSet<&str> = returned.iter().map(String::as_str).collect();
        let mut marked = 0;
        for index in run {
            if returned.contains(leases[*index].instance_id.as_str()) {
                taken[*index] = true;
                marked += 1;
            }
        }
        marked
    }
}

/// A lease a write asks for after its ops (see [`Store::write_leasing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// On an activity task the write queues.
    Task(TaskLease),
    /// On a flow-controlled workflow's instance the write creates.
    Start(StartLease),
    /// On an instance the write creates, for another worker (a client's assigned start).
    Assign(AssignLease),
}

impl Lease {
    /// `leases`' task and start leases, each kind in order (a store takes each kind its own
    /// way); the assigned starts are in neither (see [`Lease::assigns`]).
    pub fn split(leases: &[Lease]) -> (Vec<TaskLease>, Vec<StartLease>) {
        let (mut tasks, mut starts) = (Vec::new(), Vec::new());
        for lease in leases {
            match lease {
                Lease::Task(task) => tasks.push(task.clone()),
                Lease::Start(start) => starts.push(start.clone()),
                Lease::Assign(_) => {}
            }
        }
        (tasks, starts)
    }

    /// `leases`' assigned starts, each with its index in `leases`.
    pub fn assigns(leases: &[Lease]) -> Vec<(usize, &AssignLease)> {
        (leases.iter().enumerate())
            .filter_map(|(index, lease)| match lease {
                Lease::Assign(assign) => Some((index, assign)),
                _ => None,
            })
            .collect()
    }

    /// Which of `leases` were taken, in their order, from the answers for each kind (as
    /// [`Lease::split`] split them); the assigned starts not (a store that takes them sets theirs).
    pub fn merge(leases: &[Lease], tasks: Vec<bool>, starts: Vec<bool>) -> Vec<bool> {
        let (mut tasks, mut starts) = (tasks.into_iter(), starts.into_iter());
        leases
            .iter()
            .map(|lease| match lease {
                Lease::Task(_) => tasks.next().unwrap_or(false),
                Lease::Start(_) => starts.next().unwrap_or(false),
                Lease::Assign(_) => false,
            })
            .collect()
    }

    /// The instances whose start leases (and assigned starts) were `taken`: what their write does
    /// not wake claims for.
    pub fn started<'a>(leases: &'a [Lease], taken: &[bool]) -> Vec<&'a str> {
        leases
            .iter()
            .zip(taken)
            .filter_map(|(lease, taken)| match lease {
                Lease::Start(start) if *taken => Some(start.instance_id.as_str()),
                Lease::Assign(assign) if *taken => Some(assign.instance_id.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A worker's request for slots of a capped activity under one concurrency key (see
/// [`Store::reserve_slots`]): a slot lets the worker run one attempt at a time of that activity
/// and key itself, with no task row, while it counts against the cap as a running task does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest {
    /// The activity's limits (a concurrency cap, and no rate limit).
    pub cap: ActivityCap,
    /// The concurrency key.
    pub concurrency_key: String,
    /// The worker asking.
    pub owner: String,
    /// How many more slots it wants.
    pub want: u32,
    /// Until when its slots (all of that activity and key) are its own, unless renewed.
    pub lease_until: Millis,
    /// The worker's clock: leases and slots live at `now` count against the cap.
    pub now: Millis,
}

impl SlotRequest {
    /// How many slots the request takes: none while a task of its key waits in the queue (queued
    /// work goes first), otherwise what its cap leaves under the key given `running` (task leases
    /// and slots live now, by key) and `started` (by key), at most `want`. The one rule every
    /// store's [`Store::reserve_slots`] applies.
    pub fn to_take(&self, task_waiting: bool, running: &HashMap<String, u64>, started: &HashMap<String, u64>) -> u32 {
        if task_waiting {
            return 0;
        }
        let keys = [self.concurrency_key.clone()];
        let room = key_room(&self.cap, running, started, &keys).first().map_or(0, |(_, room)| *room);
        self.want.min(u32::try_from(room).unwrap_or(u32::MAX))
    }

    /// The indexes of `requests` grouped by activity, the groups in name order (the order every
    /// store takes activities' locks in) and each group in the order asked: how a store answers
    /// one [`Store::reserve_slots`] call an activity at a time.
    pub fn by_activity(requests: &[SlotRequest]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|a, b| requests[*a].cap.activity.cmp(&requests[*b].cap.activity));
        order.chunk_by(|a, b| requests[*a].cap.activity == requests[*b].cap.activity).map(<[usize]>::to_vec).collect()
    }

    /// How many slots each of `requests` (of one activity, counted at one moment) takes, decided
    /// in turn by [`SlotRequest::to_take`], what the earlier ones took counted as running under
    /// their keys; `waiting` says whether a task of a key waits in the queue.
    pub fn take_in_turn<'a>(
        requests: impl IntoIterator<Item = &'a SlotRequest>,
        waiting: impl Fn(&str) -> bool,
        running: &mut HashMap<String, u64>,
        started: &HashMap<String, u64>,
    ) -> Vec<u32> {
        requests
            .into_iter()
            .map(|request| {
                let key = request.concurrency_key.as_str();
                let take = request.to_take(waiting(key), running, started);
                if take > 0 {
                    *running.entry(key.to_owned()).or_default() += u64::from(take);
                }
                take
            })
            .collect()
    }
}

/// How many more tasks of each key in `keys` a claim may take under `cap`, given `running`
/// (tasks holding a lease now, by key) and `started` (starts within the rate's period, by key):
/// the least of what each limit leaves, never negative; keys without room are left out. The one
/// place every store computes a capped task claim's room per key.
pub fn key_room<'a>(
    cap: &ActivityCap,
    running: &HashMap<String, u64>,
    started: &HashMap<String, u64>,
    keys: &'a [String],
) -> Vec<(&'a str, usize)> {
    let left = |limit: u32, used: &HashMap<String, u64>, key: &str| {
        u64::from(limit).saturating_sub(used.get(key).copied().unwrap_or(0))
    };
    keys.iter()
        .filter_map(|key| {
            let by_concurrency = cap.concurrency.map_or(u64::MAX, |limit| left(limit, running, key));
            let by_rate = cap.rate.map_or(u64::MAX, |rate| left(rate.limit, started, key));
            let room = by_concurrency.min(by_rate);
            (room > 0).then(|| (key.as_str(), usize::try_from(room).unwrap_or(usize::MAX)))
        })
        .collect()
}

/// Whose recorded starts a rate limit counts (see [`Store::recent_starts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartScope<'a> {
    /// A rate-limited workflow's starts with one concurrency key.
    Workflow {
        /// The workflow's name.
        workflow: &'a str,
        /// The concurrency key (`""` for none).
        key: &'a str,
    },
    /// A rate-limited activity's claims with one concurrency key.
    Activity {
        /// The activity's name.
        activity: &'a str,
        /// The concurrency key (`""` for none).
        key: &'a str,
    },
}

/// When `rate` next admits a start, given the `starts` recorded for it (as
/// [`Store::recent_starts`] returns them: oldest first, with how many at each time) at `now`:
/// `None` while its window has room, otherwise when enough of the window's starts will have left
/// it for one more. What "rate-limited until T" says.
pub fn next_start_at(rate: RateLimit, starts: &[(Millis, u64)], now: Millis) -> Option<Millis> {
    let since = now.saturating_sub(rate.period_ms);
    let in_window: Vec<(Millis, u64)> = starts.iter().copied().filter(|(at, _)| *at > since).collect();
    let mut held: u64 = in_window.iter().map(|(_, n)| n).sum();
    let limit = u64::from(rate.limit);
    if held < limit {
        return None;
    }
    for (at, n) in in_window {
        held = held.saturating_sub(n);
        if held < limit {
            return Some(at.saturating_add(rate.period_ms));
        }
    }
    None
}

/// A debounced start (see [`Store::debounce`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debounce {
    /// The instance to create when none of its workflow and key waits to start: Pending, with
    /// `wake_at` set to `due`.
    pub record: InstanceRecord,
    /// The debounce key, per workflow.
    pub key: String,
    /// When the collapsed run is due if no later start puts it off: the start's time plus the
    /// delay.
    pub due: Millis,
    /// The longest the first start of a collapsed run may be put off: it is due by its creation
    /// plus this at the latest, however many starts follow.
    pub max_wait_ms: Option<i64>,
}

/// One task outcome for [`Store::complete_tasks`]: the task's key, the attempt it ran, and what
/// that attempt reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCompletion {
    /// The calling instance.
    pub instance_id: String,
    /// Its continue-as-new generation.
    pub generation: u32,
    /// The call's seq in the journal.
    pub seq: u32,
    /// The attempt that ran.
    pub attempt: u32,
    /// What it reported.
    pub outcome: TaskOutcome,
}

/// What applying a batch reported back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Ids of `CreateInstance` ops that were skipped because the instance already existed.
    pub existing: Vec<String>,
}

/// Commit and record counters, kept by each store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Write transactions committed.
    pub commits: u64,
    /// Ops written in them.
    pub ops: u64,
}

/// Counters a store embeds to report [`StoreStats`].
#[derive(Debug, Default)]
pub struct StatsCounter {
    commits: AtomicU64,
    ops: AtomicU64,
}

impl StatsCounter {
    /// Counts one committed transaction of `ops` ops.
    pub fn record_commit(&self, ops: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.ops.fetch_add(ops as u64, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> StoreStats {
        StoreStats { commits: self.commits.load(Ordering::Relaxed), ops: self.ops.load(Ordering::Relaxed) }
    }
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("store error: {0}")]
    Backend(String),
    /// A stored row could not be read back.
    #[error("corrupt row in the store: {0}")]
    Corrupt(String),
    /// The batch was refused: these instances are not owned by the writing worker any more.
    #[error("lease lost: instance(s) {} are not owned by the writing worker", .0.join(", "))]
    Fenced(Vec<String>),
    /// The store's URL or options are not valid.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// The batch was refused: an `AssertStatus` did not hold (the first in op order that failed).
    #[error("instance `{id}` is {}", .status.map_or("missing", |s| s.as_str()))]
    Conflict {
        /// The instance id.
        id: String,
        /// Its status; `None` if it does not exist.
        status: Option<RuntimeStatus>,
    },
    /// The batch was refused: an `AssertInboxRoom` did not hold (the first in op order that
    /// failed). Nothing of the batch was applied.
    #[error("the inbox of instance `{id}` is full: it holds {events} event(s) of {bytes} bytes")]
    InboxFull {
        /// The instance id.
        id: String,
        /// The unconsumed events it held before the batch.
        events: u64,
        /// Their payloads' bytes.
        bytes: u64,
    },
}

impl StoreError {
    /// A backend error from anything printable.
    pub fn backend(error: impl std::fmt::Display) -> Self {
        Self::Backend(error.to_string())
    }
}

/// Where an instance sits in list order, and its parent: what [`Store::list_keys`] reads of each
/// instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceKey {
    /// The instance id.
    pub id: String,
    /// When it was created (with the id, its place in list order and the keyset after it).
    pub created_at: Millis,
    /// The instance that started it, if any.
    pub parent_id: Option<String>,
}

impl From<&InstanceRecord> for InstanceKey {
    fn from(record: &InstanceRecord) -> Self {
        Self { id: record.id.clone(), created_at: record.created_at, parent_id: record.parent_id.clone() }
    }
}

/// Which queue a [`QueueDepth`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueueKind {
    /// Activity attempts in the task queue (capped, rate-limited or shared-dispatch calls).
    Activity,
    /// Instances of a workflow that are not finished.
    Workflow,
}

/// How much work one queue holds ([`Store::queue_depths`]): the unfinished tasks of one activity
/// and concurrency key, or the Pending and Running instances of one workflow and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// Activity tasks or workflow instances.
    pub kind: QueueKind,
    /// The activity's or workflow's name.
    pub name: String,
    /// The concurrency key (empty when the activity or workflow has none).
    pub concurrency_key: String,
    /// Activities: tasks that no live lease holds (due, or waiting for a retry's time); workflows:
    /// Pending instances (not started yet: behind a limit, a delay or a debounce, or about to be
    /// claimed).
    pub waiting: u64,
    /// Activities: tasks under a live lease (running in some worker) and workers' live activity
    /// slots (see [`Store::reserve_slots`]: each running an attempt with no task row, or about to);
    /// workflows: Running instances (running, or waiting for a timer, an event or a child).
    pub running: u64,
    /// When the oldest waiting item was queued (a task's `visible_at`, a Pending instance's
    /// `created_at`); `None` when none waits.
    pub oldest_waiting: Option<Millis>,
}

/// Which instances [`Store::list`] returns: every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceQuery {
    /// Any of these statuses (all when empty).
    pub statuses: Vec<RuntimeStatus>,
    /// This workflow only.
    pub workflow: Option<String>,
    /// `created_at >= created_after`.
    pub created_after: Option<Millis>,
    /// `created_at < created_before`.
    pub created_before: Option<Millis>,
    /// `updated_at < updated_before` (for retention: a finished instance's `updated_at` is
    /// when it finished).
    pub updated_before: Option<Millis>,
    /// Children of this instance only.
    pub parent_id: Option<String>,
    /// Only instances after this (created_at, id) in list order (keyset paging).
    pub after: Option<(Millis, String)>,
    /// At most this many (0 returns none).
    pub limit: usize,
    /// Newest first: (created_at, id) descending, and `after` then returns the instances before
    /// it in that order (the page after it, read backwards). Oldest first when false.
    pub newest_first: bool,
    /// Leave the payloads out: each record's `input` is empty and its `output` and
    /// `custom_status` are `None` (a store should not even read them), so a page of many
    /// instances costs their metadata only.
    pub without_payloads: bool,
}

/// A hint from the store that something changed, possibly in another process sharing the
/// database (PostgreSQL's LISTEN/NOTIFY). Hints can be lost or repeated; the engine still polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeSignal {
    /// An instance may have become claimable (created, evicted with a wake-up, woken, released).
    Runnable,
    /// An event was raised for this instance.
    Event(String),
    /// This instance finished (PostgreSQL: sent only for instances someone watches, see
    /// [`Store::watch`]).
    Finished(String),
    /// An activity task was queued.
    TaskQueued,
    /// A task of this instance has an outcome.
    TaskDone(String),
    /// These instances were created assigned to worker `owner` ([`AssignLease`]): it runs them.
    Assigned {
        /// The worker they are assigned to.
        owner: String,
        /// The instances.
        ids: Vec<String>,
    },
}

impl WakeSignal {
    /// The hints a committed batch makes true, each once: `Runnable` if it creates, evicts, wakes
    /// or restarts an instance (not for an eviction or a wake-up at [`NEVER`], which leaves it
    /// unclaimable, nor for an instance created with an owner and a lease, which its owner runs),
    /// `TaskQueued` if it queues a task, and an `Event` per instance it adds events for.
    ///
    /// The one place that decides what a write wakes: the engine wakes its own claimer and runs
    /// from it after each commit, and a store with signals (PostgreSQL) sends the same hints to
    /// every other process.
    pub fn from_batch(ops: &[WriteOp]) -> Vec<WakeSignal> {
        Self::from_leased_batch(ops, &[])
    }

    /// [`WakeSignal::from_batch`] of a batch whose writer took the start leases of `started`
    /// (see [`Lease::Start`]): their creates are not `Runnable`, as their owner runs them.
    pub fn from_leased_batch(ops: &[WriteOp], started: &[&str]) -> Vec<WakeSignal> {
        let mut runnable = false;
        let mut queued = false;
        let mut events: Vec<&str> = Vec::new();
        for op in ops {
            match op {
                WriteOp::Evict { wake_at: NEVER, .. } | WriteOp::SetWake { wake_at: Some(NEVER), .. } => {}
                // Created under a lease (a worker starting it itself): nobody else may claim it now.
                WriteOp::CreateInstance(record) if record.owner.is_some() && record.lease_until.is_some() => {}
                WriteOp::CreateInstance(record) if started.contains(&record.id.as_str()) => {}
                WriteOp::CreateInstance(_)
                | WriteOp::Evict { .. }
                | WriteOp::SetWake { .. }
                | WriteOp::ContinueAsNew { .. } => runnable = true,
                WriteOp::EnqueueTask(_) => queued = true,
                WriteOp::AddEvent { instance_id, .. } if !events.contains(&instance_id.as_str()) => {
                    events.push(instance_id)
                }
                _ => {}
            }
        }
        runnable
            .then_some(WakeSignal::Runnable)
            .into_iter()
            .chain(queued.then_some(WakeSignal::TaskQueued))
            .chain(events.into_iter().map(|id| WakeSignal::Event(id.to_owned())))
            .collect()
    }
}

/// Proof that a worker's process is alive, held by its runtime while it runs (see
/// [`Store::register_worker`]). Something the database or the operating system gives up when the
/// process dies (a PostgreSQL session's advisory lock, a lock on a file), so other processes can
/// tell a dead worker from a live one at once instead of waiting for its leases to lapse.
/// Dropping the mark gives it up, as the process's death would.
pub struct WorkerMark(#[allow(dead_code)] Box<dyn Send + Sync>);

impl WorkerMark {
    /// A mark that holds `held` (a connection, a locked file, a task's abort guard) until it is
    /// dropped.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        Self(Box::new(held))
    }
}

impl std::fmt::Debug for WorkerMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerMark")
    }
}

/// Persistence for instances, journals and leases.
///
/// Every method is atomic. [`Store::write`] applies a whole batch in one transaction: the engine
/// groups many instances' changes into one batch (group commit), so a store should not commit
/// per op.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` in one transaction, in order.
    async fn write(&self, ops: &[WriteOp]) -> Result<WriteOutcome, StoreError>;

    /// Applies `ops` as [`Store::write`] does and then, in the same transaction, takes what it
    /// can of `leases`, counted and taken atomically with the capped claims of their activities
    /// and workflows; says which it took, in order. The default takes none (the tasks and
    /// instances stay for a claim to take): a store that can count limits atomically within a
    /// write takes them, saving the claim's commit.
    ///
    /// - A [`Lease::Task`] is taken as a capped claim would take it (see
    ///   [`Store::claim_tasks_capped`]): only a task queued unowned and unfinished at the lease's
    ///   attempt, and only while its key has room under the lease's cap, counting the live leases
    ///   and the window's starts then (an earlier lease of the batch included); a rate-limited
    ///   lease taken counts as a start.
    /// - A [`Lease::Start`] is taken as a capped claim would take it (see
    ///   [`Store::claim_capped`]), and only if nothing a claim would take first waits: only an
    ///   instance this write created (not one it found existing), still unowned and Pending with
    ///   no wake-up after the lease's `now`; only while its workflow (its key, when the cap is
    ///   keyed) has room under the cap and the rate, counting the live leases and the window's
    ///   starts then (the batch's earlier leases included); and only when no other instance of
    ///   that workflow (and key) waits unowned, ready or due, for a claim (the batch's own leased
    ///   instances aside): a backlog is served in claim order, never overtaken. Of one workflow's
    ///   (and key's) leases in a batch, the higher priority are taken first, then in order, all
    ///   counted at the latest `now` of the batch's leases on that workflow. A start taken is
    ///   owned until `lease_until`, Running (`updated_at` = that `now`, its wake-up cleared), and
    ///   counted as a start when rated. (An instance whose owner's lease lapsed is not counted as
    ///   waiting: its takeover waits for a claim.) A store may take fewer: one that decides the
    ///   starts before the creates, to insert those taken owned at once (PostgreSQL), leaves to a
    ///   claim a start that another op of the batch names.
    /// - A [`Lease::Assign`] is taken only where the store offers start takers
    ///   ([`Store::start_takers`]): only for an instance this write created (not one it found
    ///   existing), unowned and Pending with no wake-up after the lease's `now`, named by no other
    ///   op of the batch and by no other lease, and only while its worker is registered
    ///   ([`Store::register_worker`]), checked so that [`Store::release_dead_workers`] cannot
    ///   forget the worker between the check and the commit (it then releases the start with the
    ///   worker's other leases). A start taken is inserted owned by the worker until
    ///   `lease_until`, Running (`updated_at` = `now`), watched ([`Store::watch`]: its creator most
    ///   likely waits for it), and signalled to its worker ([`WakeSignal::Assigned`]) instead of
    ///   made claimable ([`WakeSignal::Runnable`]). One not taken is created as the write says.
    async fn write_leasing(&self, ops: &[WriteOp], leases: &[Lease]) -> Result<(WriteOutcome, Vec<bool>), StoreError> {
        Ok((self.write(ops).await?, vec![false; leases.len()]))
    }

    /// Reads one instance.
    async fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError>;

    /// Reads the instances of `ids` that exist, in no particular order: one round trip where the
    /// backend allows (the shared poll of result waiters reads a batch per tick). The default
    /// reads them one by one.
    async fn instances(&self, ids: &[String]) -> Result<Vec<InstanceRecord>, StoreError> {
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            records.extend(self.instance(id).await?);
        }
        Ok(records)
    }

    /// Reads the instances of `ids` that exist (as [`Store::instances`]) for waiters in a process
    /// that may not run them, after asking that their ends be signalled
    /// ([`WakeSignal::Finished`]) to every store on the database. A store may send `Finished`
    /// only for watched instances, but then without a gap: a finish either shows in the record
    /// returned or is signalled. The default only reads, for stores that signal every finish or
    /// none.
    async fn watch(&self, ids: &[String]) -> Result<Vec<InstanceRecord>, StoreError> {
        self.instances(ids).await
    }

    /// Reads an instance's journal for one generation, ordered by seq.
    async fn journal(&self, id: &str, generation: u32) -> Result<Vec<JournalRecord>, StoreError>;

    /// Reads the journals of several instances, each for its generation (`(id, generation)`
    /// pairs, each id once), ordered by instance id, then seq: one round trip where the backend
    /// allows (a worker reads the journals of the instances one claim took together). The default
    /// reads them one by one.
    async fn journals(&self, instances: &[(String, u32)]) -> Result<Vec<JournalRecord>, StoreError> {
        let mut sorted: Vec<&(String, u32)> = instances.iter().collect();
        sorted.sort();
        let mut records = Vec::new();
        for (id, generation) in sorted {
            records.extend(self.journal(id, *generation).await?);
        }
        Ok(records)
    }

    /// Claims up to `limit` runnable instances of the given workflows for `worker`: status
    /// Pending or Running, unowned or with a lease that lapsed before `now`, and `wake_at` unset
    /// or not after `now`. Sets their owner and `lease_until`, clears `wake_at`, makes the Pending
    /// ones Running (`updated_at` = `now`: the claim is their start, so their first commit has
    /// no status to change), and returns them as it found them but for the owner, lease and
    /// wake-up it set: the status they had tells a start (Pending) from a resumption (Running).
    /// Which ones, from three sets: of the unowned, the first `limit` in claim order (highest
    /// `priority` first, then `created_at`, then id) of those without `wake_at` and the earliest
    /// `limit` (by `wake_at`, `created_at`, id) of those with it; of the owned (a lapsed lease),
    /// the `limit` that lapsed first (by `lease_until`, none first, then `created_at`, id); then
    /// the first `limit` of these together in claim order, in which they are returned. (Each set
    /// is a range of an index in its own order: ordering the woken ones otherwise would make a
    /// store sort every woken instance on each claim, and reading the ready ones with the owned
    /// among them would make each claim read past every instance running in a worker.)
    async fn claim(
        &self,
        worker: &str,
        workflows: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError>;

    /// Claims as [`Store::claim`] does, but within the flow control of each workflow in `caps`,
    /// across every worker on the store, counted and taken atomically with every other capped
    /// claim of that workflow:
    /// - With a `concurrency` cap, it takes at most the cap less the instances of the workflow
    ///   that hold a lease at `now` (Pending or Running, owned, `lease_until` not before `now`).
    /// - With a `rate`, it takes at most the limit less the workflow's starts recorded within
    ///   `(now - period, now]` of Pending instances (starts), and records each start it makes at
    ///   `now`, forgetting those a period old. Running instances (resumptions) are not starts:
    ///   they are taken first, then starts, each in claim order.
    ///
    /// The claim order holds within each workflow; the result is in claim order. Without caps it
    /// is [`Store::claim`]. See [`WorkflowCap::room`].
    ///
    /// The default refuses caps (a [`StoreError::Config`]): a store that cannot count and claim
    /// atomically must not pretend to enforce them.
    async fn claim_capped(
        &self,
        worker: &str,
        workflows: &[String],
        caps: &[WorkflowCap],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        if caps.is_empty() {
            return self.claim(worker, workflows, now, lease_until, limit).await;
        }
        Err(StoreError::Config("this store does not enforce workflow concurrency caps".into()))
    }

    /// The starts recorded for `scope`'s rate limit after `since` (what the rate-limited claims
    /// of [`Store::claim_capped`] and [`Store::claim_tasks_capped`] record), oldest first, one
    /// entry per time, as (time, how many started then): what a status reads to say when the rate
    /// next admits a start ([`next_start_at`]).
    ///
    /// The default refuses (a [`StoreError::Config`]), as a store without rate limits records no
    /// starts.
    async fn recent_starts(&self, scope: StartScope<'_>, since: Millis) -> Result<Vec<(Millis, u64)>, StoreError> {
        let _ = (scope, since);
        Err(StoreError::Config("this store does not record rate-limited starts".into()))
    }

    /// Debounces a start, atomically with every other start of its workflow and key: if an
    /// instance of that workflow created by a debounced start with that key still waits to start
    /// (Pending, never claimed: no owner), it takes `start.record`'s input and is due at `due`,
    /// or at its creation plus `max_wait_ms` if that is earlier, and its id is returned;
    /// otherwise `start.record` is created as the key's waiting instance and its id returned. A
    /// claim of the waiting instance and a debounce of its key never both win: once claimed, a
    /// later debounce creates a new instance.
    ///
    /// The default refuses (a [`StoreError::Config`]).
    async fn debounce(&self, start: &Debounce) -> Result<String, StoreError> {
        let _ = start;
        Err(StoreError::Config("this store does not debounce starts".into()))
    }

    /// Creates `schedule`; returns whether it was written (`false` when its id is taken).
    ///
    /// The default refuses (a [`StoreError::Config`]), as do the other schedule methods.
    async fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<bool, StoreError> {
        let _ = schedule;
        Err(StoreError::Config("this store does not keep schedules".into()))
    }

    /// Applies `change` in one transaction if its schedule is still at its
    /// `expected_updated_at` (see [`ScheduleChange`]); returns whether it took (`false` when the
    /// schedule is gone or changed since: the caller reads it again).
    async fn change_schedule(&self, change: &ScheduleChange) -> Result<bool, StoreError> {
        let _ = change;
        Err(StoreError::Config("this store does not keep schedules".into()))
    }

    /// The schedule `id`, if it exists.
    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        let _ = id;
        Err(StoreError::Config("this store does not keep schedules".into()))
    }

    /// Every schedule, by id.
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        Err(StoreError::Config("this store does not keep schedules".into()))
    }

    /// The schedules due at `now` (not paused, `next_fire_at <= now`), earliest first, at most
    /// `limit`.
    async fn due_schedules(&self, now: Millis, limit: usize) -> Result<Vec<ScheduleRecord>, StoreError> {
        let _ = (now, limit);
        Err(StoreError::Config("this store does not keep schedules".into()))
    }

    /// Applies `fires` in one transaction, each only if its schedule's `next_fire_at` and
    /// `updated_at` are still its `expected_next` and `expected_updated_at` and it is not paused
    /// (see [`ScheduleFire`]); returns, per fire, whether it took. Two workers firing the same
    /// tick: one takes, the other changes nothing.
    async fn fire_schedules(&self, fires: &[ScheduleFire]) -> Result<Vec<bool>, StoreError> {
        let _ = fires;
        Err(StoreError::Config("this store does not keep schedules".into()))
    }

    /// The instances matching `query`, ordered by (created_at, id), at most `query.limit`.
    async fn list(&self, query: &InstanceQuery) -> Result<Vec<InstanceRecord>, StoreError>;

    /// The keys of the instances [`Store::list`] returns for `query` (the same filters, order,
    /// keyset and limit), reading no other column: a caller that acts on each instance by id
    /// (retention) holds no payloads, and a row damaged in another column is still listed (reading
    /// that row whole is what fails, for it alone). The default takes them from `list`.
    async fn list_keys(&self, query: &InstanceQuery) -> Result<Vec<InstanceKey>, StoreError> {
        Ok(self.list(query).await?.iter().map(InstanceKey::from).collect())
    }

    /// The unconsumed events of an instance, in arrival order.
    async fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError>;

    /// The unconsumed events of instance `id` named `name` (ignoring ASCII case, as event waits
    /// match names) whose ids are greater than `after`, in arrival order, at most `limit`: what an
    /// event wait reads, without the payloads of every other event its instance holds. A store
    /// should answer from an index, whatever else the inbox holds. The default filters
    /// [`Store::events`].
    async fn events_named(
        &self,
        id: &str,
        name: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let events = self.events(id).await?;
        Ok(events
            .into_iter()
            .filter(|event| event.event_id > after && event.name.eq_ignore_ascii_case(name))
            .take(limit)
            .collect())
    }

    /// For each of the instances `ids` with unconsumed events, the highest unconsumed event id:
    /// how a worker learns, in one read for all its live event waits, which inboxes got something
    /// new (from another process, or while a signal was lost). Instances without unconsumed
    /// events are left out; the order is unspecified. The default reads each inbox.
    async fn inbox_heads(&self, ids: &[String]) -> Result<Vec<(String, i64)>, StoreError> {
        let mut heads = Vec::new();
        for id in ids {
            if let Some(head) = self.events(id).await?.iter().map(|event| event.event_id).max() {
                heads.push((id.clone(), head));
            }
        }
        Ok(heads)
    }

    /// The first `per_instance` unconsumed events of each of the instances `ids`, in arrival
    /// order within each instance (the instances in any order): what a worker reads beside the
    /// journals of the instances it claimed, so that an event wait resumed by an event finds it
    /// without a read of its own. The default reads each inbox.
    async fn inboxes(&self, ids: &[String], per_instance: usize) -> Result<Vec<EventRecord>, StoreError> {
        let mut events = Vec::new();
        for id in ids {
            events.extend(self.events(id).await?.into_iter().take(per_instance));
        }
        Ok(events)
    }

    /// Extends every lease `worker` holds, on instances, on unfinished tasks and on activity
    /// slots ([`Store::reserve_slots`]), to `lease_until`; returns how many.
    async fn renew_leases(&self, worker: &str, lease_until: Millis) -> Result<u64, StoreError>;

    /// Drops every lease `worker` holds, on instances and on unfinished tasks, so another worker
    /// may claim them at once, and gives back its activity slots; returns how many.
    async fn release_leases(&self, worker: &str) -> Result<u64, StoreError>;

    /// Takes activity slots for each request, in order, atomically with every capped claim and
    /// leasing write of its activity: at most `want`, and no more than the activity's
    /// concurrency cap leaves under the key, where every task lease and every slot live at the
    /// request's `now` counts (a worker's own too); and none while a task of that activity and
    /// key waits in the queue (claimable at `now`), so queued work is served first. The owner's
    /// slots of that activity and key then last until `lease_until` ([`Store::renew_leases`]
    /// extends them, [`Store::release_leases`] and [`Store::release_dead_workers`] drop them).
    /// Returns how many each request took. Slots let a worker run capped attempts of its own
    /// with no task row: a slot counts against the cap, in every claim and leasing write, as a
    /// running task does.
    ///
    /// The default takes none (the attempts then go through the task queue).
    async fn reserve_slots(&self, requests: &[SlotRequest]) -> Result<Vec<u32>, StoreError> {
        Ok(vec![0; requests.len()])
    }

    /// Gives back `count` of `owner`'s slots of each (activity, concurrency key, count).
    async fn release_slots(&self, owner: &str, releases: &[(String, String, u32)]) -> Result<(), StoreError> {
        let _ = (owner, releases);
        Ok(())
    }

    /// Claims up to `limit` tasks of the given activities for `worker`: no outcome yet,
    /// `visible_at` not after `now`, unowned or with a lease that lapsed before `now`; oldest
    /// `visible_at` first, ties by (instance, generation, seq). Sets their owner and
    /// `lease_until` and returns them.
    async fn claim_tasks(
        &self,
        worker: &str,
        activities: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError>;

    /// Claims as [`Store::claim_tasks`] does, but never so that more tasks of an activity in
    /// `caps` with one concurrency key ([`TaskRecord::concurrency_key`]) run at once, or start
    /// within its rate's period, than its limits allow, across every worker on the store: of each
    /// key it takes at most the concurrency cap less the tasks of that activity and key holding a
    /// lease at `now` (unfinished, owned, `lease_until` not before `now`), and at most the rate
    /// less the claims of that activity and key in the period ending at `now` (`(now - period,
    /// now]`; every claim counts, a retry's and a takeover's too, and the store keeps them as long
    /// as a period), counted and taken atomically with every other capped claim of that activity.
    /// Each key's tasks are taken oldest first, so a key with a long backlog never holds back one
    /// with a short one beyond its own cap. The capped activities are served
    /// first, in name order, each giving the worker's `limit` to its oldest picks across keys;
    /// the uncapped ones share what is left, as [`Store::claim_tasks`] would. The result is in
    /// claim order. Without caps it is [`Store::claim_tasks`].
    ///
    /// The default refuses caps (a [`StoreError::Config`]).
    async fn claim_tasks_capped(
        &self,
        worker: &str,
        activities: &[String],
        caps: &[ActivityCap],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if caps.is_empty() {
            return self.claim_tasks(worker, activities, now, lease_until, limit).await;
        }
        Err(StoreError::Config("this store does not enforce activity concurrency caps".into()))
    }

    /// Stores the outcome of a task's attempt if the task still exists with that `attempt`,
    /// owned by `worker`, without an outcome; returns whether it did (a worker whose claim was
    /// taken over, or whose task was replaced or deleted, reports nothing). Sends
    /// [`WakeSignal::TaskDone`] where the store has signals.
    async fn complete_task(
        &self,
        worker: &str,
        instance_id: &str,
        generation: u32,
        seq: u32,
        attempt: u32,
        outcome: &TaskOutcome,
    ) -> Result<bool, StoreError>;

    /// Stores many outcomes as [`Store::complete_task`] stores one, in one commit where the store
    /// can; returns, in order, whether each was stored. The default stores them one by one.
    async fn complete_tasks(&self, worker: &str, completions: &[TaskCompletion]) -> Result<Vec<bool>, StoreError> {
        let mut stored = Vec::with_capacity(completions.len());
        for c in completions {
            stored.push(self.complete_task(worker, &c.instance_id, c.generation, c.seq, c.attempt, &c.outcome).await?);
        }
        Ok(stored)
    }

    /// Every task of instance `instance_id` (all generations), queued, claimed or finished and not
    /// yet taken into its journal, in key order: what status shows of the calls waiting in the
    /// task queue. The default refuses (a [`StoreError::Config`]).
    async fn tasks_of(&self, instance_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let _ = instance_id;
        Err(StoreError::Config("this store does not list an instance's tasks".into()))
    }

    /// Every queue that holds work ([`QueueDepth`]), activities first, then workflows, each in
    /// (name, concurrency key) order; a task's lease counts as live while `lease_until >= now`.
    /// The default refuses (a [`StoreError::Config`]).
    async fn queue_depths(&self, now: Millis) -> Result<Vec<QueueDepth>, StoreError> {
        let _ = now;
        Err(StoreError::Config("this store does not count its queues".into()))
    }

    /// How many instances have each status, in [`RuntimeStatus::ALL`] order, each count capped at
    /// `at_most` (a count of `at_most` means "at least that many"), so the cost stays bounded
    /// however many instances the store holds. The default refuses (a [`StoreError::Config`]).
    async fn status_counts(&self, at_most: u64) -> Result<Vec<(RuntimeStatus, u64)>, StoreError> {
        let _ = at_most;
        Err(StoreError::Config("this store does not count its instances".into()))
    }

    /// The tasks of these instances that have an outcome.
    async fn finished_tasks(&self, instance_ids: &[String]) -> Result<Vec<TaskRecord>, StoreError>;

    /// Marks `worker` as alive for as long as the returned [`WorkerMark`] is held (the engine
    /// holds it for the life of its runtime), so [`Store::release_dead_workers`] in any process
    /// can tell when the worker's process has died (or, for a store whose data lives in one
    /// process, like the memory store, when the runtime was dropped). `None` (the default) means
    /// the store cannot tell (an in-memory SQLite database, say): leases alone decide, and the
    /// engine does not call `release_dead_workers`.
    ///
    /// `worker` is the owner the runtime writes on its leases, `<worker id>#<nonce>` with a nonce
    /// new at each build, so no two runtimes register the same one: a restarted process gets its
    /// dead predecessor's leases through `release_dead_workers`, not by sharing its owner. A
    /// worker registering an owner a dead process registered takes the registration over.
    ///
    /// `takes_starts` are the workflows whose starts the worker takes assigned at their creation
    /// (see [`Lease::Assign`]); a store that assigns starts offers the worker for them in
    /// [`Store::start_takers`] while its mark is held.
    async fn register_worker(&self, worker: &str, takes_starts: &[String]) -> Result<Option<WorkerMark>, StoreError> {
        let _ = (worker, takes_starts);
        Ok(None)
    }

    /// Changes the workflows whose starts `worker` (registered) takes assigned (see
    /// [`Store::register_worker`]): a worker withdraws them while it has no room for a start, and
    /// offers them again once it has. The default does nothing.
    async fn offer_starts(&self, worker: &str, takes_starts: &[String]) -> Result<(), StoreError> {
        let _ = (worker, takes_starts);
        Ok(())
    }

    /// The live registered workers that take assigned starts, with their workflows, for a writer
    /// to assign a start to ([`Lease::Assign`]). `None` (the default): this store assigns no
    /// starts (it cannot signal a worker in another process), and writers leave starts to claims.
    async fn start_takers(&self) -> Result<Option<Vec<StartTaker>>, StoreError> {
        Ok(None)
    }

    /// The unfinished instances on which `worker` holds a lease, by id: what a worker compares
    /// with what it runs, to take up a start assigned to it whose signal it missed (its renewals
    /// would otherwise keep it for good). The default: none (a store that assigns no starts).
    async fn held_instances(&self, worker: &str) -> Result<Vec<String>, StoreError> {
        let _ = worker;
        Ok(Vec::new())
    }

    /// Drops every lease held by a worker that registered ([`Store::register_worker`]) and whose
    /// process has died since (its mark is gone), on instances and on unfinished tasks, so they
    /// are claimable at once, and forgets those workers; returns how many leases it dropped.
    /// Sends [`WakeSignal::Runnable`] and [`WakeSignal::TaskQueued`] where the store has signals.
    ///
    /// A worker that never registered keeps its leases until they lapse. Fencing
    /// ([`WriteOp::AssertOwner`], the owner test of [`Store::complete_task`]) still holds: a worker
    /// taken for dead by mistake can write nothing more to what it held. The default does
    /// nothing.
    async fn release_dead_workers(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Hints of changes made through this database by any process, if the store can tell
    /// (PostgreSQL: LISTEN/NOTIFY). `None` (the default) means the engine relies on polling.
    fn wake_signals(&self) -> Option<tokio::sync::broadcast::Receiver<WakeSignal>> {
        None
    }

    /// Commits one small durable write, for measuring the store's commit latency.
    async fn probe_commit(&self) -> Result<(), StoreError>;

    /// Commit counters.
    fn stats(&self) -> StoreStats;
}

#[cfg(test)]
mod tests {
    use super::{next_start_at, RateLimit};

    /// 3 a second: room while fewer than 3 started in the last second; when full, the time the
    /// oldest start that must leave the window for one more has left it.
    #[test]
    fn the_next_start_is_when_the_window_has_room() {
        let rate = RateLimit { limit: 3, period_ms: 1_000 };
        assert_eq!(next_start_at(rate, &[], 5_000), None);
        assert_eq!(next_start_at(rate, &[(4_500, 2)], 5_000), None);
        assert_eq!(next_start_at(rate, &[(4_500, 2), (4_800, 1)], 5_000), Some(5_500));
        // Over the limit (a claim may record more than one): the second start must leave too.
        assert_eq!(next_start_at(rate, &[(4_200, 1), (4_500, 2), (4_800, 2)], 5_000), Some(5_500));
        // Starts a period old no longer count.
        assert_eq!(next_start_at(rate, &[(4_000, 5), (4_800, 2)], 5_000), None);
    }
}
