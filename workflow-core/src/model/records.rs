//! The records the engine and the stores exchange: instances, journal steps, events, tasks.

use super::{Millis, RecordStatus, RuntimeStatus, StepKind};

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
    /// Its claim priority: of the instances claimable at once, a higher priority is claimed
    /// first, and within one priority the oldest first (0 by default; negative is lower).
    pub priority: i32,
    /// Its concurrency key (see [`WorkflowDef::concurrency_key`](crate::WorkflowDef::concurrency_key)):
    /// a workflow's per-key cap and rate count its instances by it. Empty for a workflow whose
    /// limits are global (or that has none).
    pub concurrency_key: String,
    /// The W3C `traceparent` of the trace it belongs to, as its starter gave it (or its parent's
    /// trace, for a child); `None` when none was given: its trace is then derived from its id and
    /// creation time ([`InstanceStatus::trace_context`](crate::InstanceStatus::trace_context)).
    pub trace_context: Option<String>,
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
            priority: 0,
            concurrency_key: String::new(),
            trace_context: None,
        }
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
    /// The kind of operation.
    pub kind: StepKind,
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
    /// The call's concurrency key (empty for none): a capped activity's cap counts the running
    /// tasks of each key apart ([`crate::store::ActivityCap`]).
    pub concurrency_key: String,
    /// Its claim priority, its instance's: of the tasks claimable at once, a higher priority is
    /// claimed first, the oldest first within one priority.
    pub priority: i32,
    /// The attempt this task runs, from 1.
    pub attempt: u32,
    /// The attempt's start-to-close timeout in milliseconds, if it has one.
    pub start_to_close_ms: Option<i64>,
    /// The attempt's heartbeat timeout in milliseconds, if it has one.
    pub heartbeat_timeout_ms: Option<i64>,
    /// When it was queued; claims take the oldest first (within one priority).
    pub visible_at: Millis,
    /// The worker running it, if one claimed it.
    pub owner: Option<String>,
    /// When that worker's claim lapses.
    pub lease_until: Option<Millis>,
    /// What the worker reported, once it finished.
    pub outcome: Option<TaskOutcome>,
    /// The W3C `traceparent` of the instance that queued it, which the attempt's `activity` span
    /// continues in whichever worker runs it.
    pub trace_context: Option<String>,
}

/// One schedule as stored: what it starts and when it next fires. The engine reads and writes
/// `spec` and `runs` (JSON); a store keeps them as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// The schedule id.
    pub id: String,
    /// The workflow it starts.
    pub workflow: String,
    /// What it fires and how (JSON: the cron expression, time zone, input, policies).
    pub spec: String,
    /// Whether it is paused (a paused schedule never fires; resuming it fires from then on).
    pub paused: bool,
    /// When it next fires; `None` once it has no tick left (past its end).
    pub next_fire_at: Option<Millis>,
    /// Its latest runs (JSON: the tick times and the instances they started, or why none).
    pub runs: String,
    /// When it was created.
    pub created_at: Millis,
    /// When it last changed (by a fire or a client).
    pub updated_at: Millis,
}

/// A fire of a due schedule, for `Store::fire_schedules`: it takes only if the schedule is still
/// as the firing worker read it, due at `expected_next` and changed last at
/// `expected_updated_at` (no other worker fired it meanwhile, no client changed it); then the
/// schedule moves on to `next_fire_at` with `runs`, and its `instances` are created (a tick's
/// instance id is derived from the tick, so an instance that exists already is left as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleFire {
    /// The schedule id.
    pub id: String,
    /// The `next_fire_at` the firing worker read.
    pub expected_next: Millis,
    /// The `updated_at` the firing worker read: every write of a schedule moves it on, so it
    /// versions the row.
    pub expected_updated_at: Millis,
    /// When it fires next after this fire (`None`: never again).
    pub next_fire_at: Option<Millis>,
    /// Its runs after this fire (JSON).
    pub runs: String,
    /// When the fire happened, its `updated_at` from then on (later than `expected_updated_at`).
    pub fired_at: Millis,
    /// The instances the fire starts (the ticks that run).
    pub instances: Vec<InstanceRecord>,
}

/// A client's change of an existing schedule (update, pause, resume, delete), for
/// `Store::change_schedule`: it takes only if the schedule is still as the client read it
/// (`updated_at` is `expected_updated_at`: no fire and no other change since), and then, in one
/// transaction, the schedule becomes `to` (or is deleted) and each instance in `cancel` is
/// deleted with every row of it while it is still Pending and unowned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleChange {
    /// The schedule id.
    pub id: String,
    /// The `updated_at` the client read.
    pub expected_updated_at: Millis,
    /// What it becomes: its workflow, spec, pause, next fire, runs and `updated_at` (later than
    /// `expected_updated_at`; its creation time stays); `None` deletes it.
    pub to: Option<ScheduleRecord>,
    /// Ticks the schedule fired ahead of their time (instances due later, not yet started) that
    /// the change must not run: an update's new settings or a pause take effect from the next
    /// tick, and a deleted schedule starts nothing more.
    pub cancel: Vec<String>,
}
