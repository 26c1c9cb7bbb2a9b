//! The `Store` seam: what the engine needs from a database, in the engine's terms.
//!
//! Payloads (inputs, outputs, errors) cross this seam as JSON text, so a person can read them in
//! the database and the engine, not the store, decides what a corrupt one means.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// A wake-up time that never comes by itself (an evicted instance waiting for an event).
pub const NEVER: Millis = Millis::MAX;

/// The runtime status of an instance (Dapr's set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuntimeStatus {
    /// Created, not yet started by a worker.
    Pending,
    /// Started; may be waiting on a step.
    Running,
    /// Suspended by a client: runs no new step.
    Suspended,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped by a client.
    Terminated,
    /// Restarted with new input (an intermediate status).
    ContinuedAsNew,
}

impl RuntimeStatus {
    /// All statuses, in declaration order.
    pub const ALL: [RuntimeStatus; 7] = [
        Self::Pending,
        Self::Running,
        Self::Suspended,
        Self::Completed,
        Self::Failed,
        Self::Terminated,
        Self::ContinuedAsNew,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Suspended => "Suspended",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Terminated => "Terminated",
            Self::ContinuedAsNew => "ContinuedAsNew",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Whether the instance has finished for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Terminated)
    }
}

/// One workflow instance as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// The instance id.
    pub id: String,
    /// The workflow's registered name.
    pub workflow: String,
    /// Its runtime status.
    pub status: RuntimeStatus,
    /// Its input (JSON).
    pub input: String,
    /// Its output (JSON), once completed.
    pub output: Option<String>,
    /// Its failure ([`FailureDetails`](crate::FailureDetails) as JSON), once failed.
    pub error: Option<String>,
    /// The continue-as-new generation whose journal is current.
    pub generation: u32,
    /// When it was created.
    pub created_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
    /// The worker holding its lease, if any.
    pub owner: Option<String>,
    /// When that lease lapses.
    pub lease_until: Option<Millis>,
    /// The parent instance, for a child workflow.
    pub parent_id: Option<String>,
    /// A status text the workflow sets for observers (JSON).
    pub custom_status: Option<String>,
    /// For an instance evicted from memory while it waits: when to run it again (`None`: as
    /// soon as it is claimable). Claims skip instances whose wake-up is in the future.
    pub wake_at: Option<Millis>,
}

impl InstanceRecord {
    /// A new instance as a start creates it: Pending, generation 0, unowned, created `now`.
    pub fn pending(id: impl Into<String>, workflow: impl Into<String>, input: impl Into<String>, now: Millis) -> Self {
        Self {
            id: id.into(),
            workflow: workflow.into(),
            status: RuntimeStatus::Pending,
            input: input.into(),
            output: None,
            error: None,
            generation: 0,
            created_at: now,
            updated_at: now,
            owner: None,
            lease_until: None,
            parent_id: None,
            custom_status: None,
            wake_at: None,
        }
    }
}

/// The state of one journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStatus {
    /// Started and waiting for its outcome (a timer, an event wait, a child); `due_at` holds
    /// its deadline if it has one.
    Scheduled,
    /// An attempt failed and another is due at `due_at`.
    Retrying,
    /// The operation succeeded; `payload` holds its output.
    Completed,
    /// The operation failed for good; `payload` holds its error.
    Failed,
}

impl RecordStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "Scheduled",
            Self::Retrying => "Retrying",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Scheduled, Self::Retrying, Self::Completed, Self::Failed].into_iter().find(|s| s.as_str() == name)
    }
}

/// One durable operation of an instance, keyed by (instance, generation, seq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// The instance id.
    pub instance_id: String,
    /// The continue-as-new generation.
    pub generation: u32,
    /// The operation's position in the order the workflow issued its operations.
    pub seq: u32,
    /// The kind of operation (`activity`, ...).
    pub kind: String,
    /// The operation's name (an activity's name, ...).
    pub name: String,
    /// Its state.
    pub status: RecordStatus,
    /// The operation's input (JSON), kept for history.
    pub input: Option<String>,
    /// The outcome (JSON): the output when completed, the error when failed or retrying.
    pub payload: Option<String>,
    /// Attempts made so far.
    pub attempt: u32,
    /// When the next attempt is due (retrying records).
    pub due_at: Option<Millis>,
    /// When this record was written.
    pub recorded_at: Millis,
    /// For a call issued as part of a fan-out (parallel calls): the seq of the fan-out's first
    /// call, the same for every call of it. Drawn side by side in diagrams.
    pub parallel_group: Option<u32>,
}

/// An external event in an instance's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// The instance id.
    pub instance_id: String,
    /// Arrival order, assigned by the store (increasing per store).
    pub event_id: i64,
    /// The event's name.
    pub name: String,
    /// Its payload (JSON).
    pub payload: String,
    /// When it arrived.
    pub created_at: Millis,
}

/// What a worker reported for a task's attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// Whether the attempt succeeded.
    pub succeeded: bool,
    /// The output (JSON) when it succeeded; the failure (JSON, as the engine encodes it) when not.
    pub payload: String,
    /// When the worker reported it.
    pub finished_at: Millis,
}

/// An activity attempt queued for any worker to run (distributed activities), keyed by
/// (instance, generation, seq): at most one task per activity call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The calling instance.
    pub instance_id: String,
    /// Its continue-as-new generation.
    pub generation: u32,
    /// The call's seq in the journal.
    pub seq: u32,
    /// The activity's registered name.
    pub name: String,
    /// The activity's input (JSON).
    pub input: String,
    /// The attempt this task runs, from 1.
    pub attempt: u32,
    /// The attempt's start-to-close timeout in milliseconds, if it has one.
    pub start_to_close_ms: Option<i64>,
    /// The attempt's heartbeat timeout in milliseconds, if it has one.
    pub heartbeat_timeout_ms: Option<i64>,
    /// When it was queued; claims take the oldest first.
    pub visible_at: Millis,
    /// The worker running it, if one claimed it.
    pub owner: Option<String>,
    /// When that worker's claim lapses.
    pub lease_until: Option<Millis>,
    /// What the worker reported, once it finished.
    pub outcome: Option<TaskOutcome>,
}

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
    /// Delete an instance and every row of it: the instance, its journal (every generation), its
    /// events and its tasks.
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
}

impl StoreError {
    /// A backend error from anything printable.
    pub fn backend(error: impl std::fmt::Display) -> Self {
        Self::Backend(error.to_string())
    }
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

    /// Reads one instance.
    async fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError>;

    /// Reads one instance for a waiter in a process that does not run it, after asking that its
    /// end be signalled ([`WakeSignal::Finished`]) to every store on the database. A store may
    /// send `Finished` only for watched instances, but then without a gap: a finish either shows
    /// in the record returned or is signalled. The default only reads, for stores that signal
    /// every finish or none.
    async fn watch(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.instance(id).await
    }

    /// Reads an instance's journal for one generation, ordered by seq.
    async fn journal(&self, id: &str, generation: u32) -> Result<Vec<JournalRecord>, StoreError>;

    /// Claims up to `limit` runnable instances of the given workflows for `worker`: status
    /// Pending or Running, unowned or with a lease that lapsed before `now`, and `wake_at` unset
    /// or not after `now`. Sets their owner and `lease_until`, clears `wake_at`, and returns them.
    async fn claim(
        &self,
        worker: &str,
        workflows: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError>;

    /// The instances matching `query`, ordered by (created_at, id), at most `query.limit`.
    async fn list(&self, query: &InstanceQuery) -> Result<Vec<InstanceRecord>, StoreError>;

    /// The unconsumed events of an instance, in arrival order.
    async fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError>;

    /// Extends every lease `worker` holds, on instances and on unfinished tasks, to
    /// `lease_until`; returns how many.
    async fn renew_leases(&self, worker: &str, lease_until: Millis) -> Result<u64, StoreError>;

    /// Drops every lease `worker` holds, on instances and on unfinished tasks, so another worker
    /// may claim them at once; returns how many.
    async fn release_leases(&self, worker: &str) -> Result<u64, StoreError>;

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

    /// The tasks of these instances that have an outcome.
    async fn finished_tasks(&self, instance_ids: &[String]) -> Result<Vec<TaskRecord>, StoreError>;

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
