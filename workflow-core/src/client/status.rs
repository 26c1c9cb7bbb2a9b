//! What a client sees of an instance ([`InstanceStatus`]) and the one place a final status is
//! built ([`Ending`]): for a run that finished and for a terminate alike.

use crate::error::{Error, FailureDetails};
use crate::model::trace::TraceContext;
use crate::store::{InstanceRecord, Millis, QueueKind, RuntimeStatus, WriteOp};

/// An instance's state, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// The instance id.
    pub instance_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The runtime status.
    pub status: RuntimeStatus,
    /// The input (JSON).
    pub input: String,
    /// The output (JSON), once completed.
    pub output: Option<String>,
    /// The failure, once failed.
    pub failure: Option<FailureDetails>,
    /// The custom status the workflow set (JSON).
    pub custom_status: Option<String>,
    /// The parent instance, for a child workflow.
    pub parent_id: Option<String>,
    /// Creation time (ms since the Unix epoch).
    pub created_at: Millis,
    /// Last change (ms since the Unix epoch).
    pub updated_at: Millis,
    /// Its claim priority (higher is claimed first when work is backlogged).
    pub priority: i32,
    /// Its concurrency key (empty for none): a workflow with a per-key cap or rate limits its
    /// instances with the same key together (see `WorkflowDef::concurrency_key`).
    pub concurrency_key: String,
    /// When the store makes it claimable again, if it waits for a time: a debounced start's due
    /// time (Pending), or the next wake-up of an instance waiting out of memory.
    pub wake_at: Option<Millis>,
    /// The flow control it waits behind while Pending and unclaimed (its workflow's concurrency
    /// cap, its rate), as the client's runtime registered the workflow: `"at most 4 running at
    /// once in all; at most 10 starts per 1000 ms"`. `None` otherwise, and from a client without
    /// a runtime.
    pub limits: Option<String>,
    /// When its workflow's rate next admits a start, while the rate's window is full (it waits
    /// to start until then at least); `None` otherwise, and from a client without a runtime.
    pub next_start_at: Option<Millis>,
    /// The W3C `traceparent` of the trace the instance belongs to: the one its starter gave
    /// ([`Start::trace_parent`](crate::Start::trace_parent)), its parent's trace for a child, or
    /// else one derived from its id and creation time. Its runs' `workflow` spans carry its trace
    /// id, before and after any restart.
    pub trace_context: String,
}

impl From<InstanceRecord> for InstanceStatus {
    fn from(record: InstanceRecord) -> Self {
        let trace = TraceContext::of_instance(record.trace_context.as_deref(), &record.id, record.created_at);
        Self {
            failure: record.error.as_deref().map(FailureDetails::parse),
            custom_status: record.custom_status,
            parent_id: record.parent_id,
            instance_id: record.id,
            workflow: record.workflow,
            status: record.status,
            input: record.input,
            output: record.output,
            created_at: record.created_at,
            updated_at: record.updated_at,
            priority: record.priority,
            concurrency_key: record.concurrency_key,
            wake_at: record.wake_at,
            trace_context: trace.traceparent(),
            limits: None,
            next_start_at: None,
        }
    }
}

/// An activity call of an instance waiting in the store's task queue, or running from it: the
/// calls of capped, rate-limited and shared-dispatch activities
/// ([`crate::Client::queued_activities`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedActivity {
    /// The activity's name.
    pub activity: String,
    /// The call's seq in the instance's journal.
    pub seq: u32,
    /// The attempt queued, from 1.
    pub attempt: u32,
    /// The call's concurrency key (empty for none).
    pub concurrency_key: String,
    /// When it was queued (or becomes visible), ms since the Unix epoch.
    pub queued_at: Millis,
    /// Where it stands.
    pub state: QueuedState,
    /// The activity's limits across workers, as the client's runtime registered them (`None`
    /// when this client has no runtime that registers the activity): why a waiting call waits.
    pub limits: Option<String>,
    /// When the activity's rate next admits a start of this call's key, while it waits and the
    /// rate's window is full; `None` otherwise.
    pub next_start_at: Option<Millis>,
}

/// One queue of work and why it waits ([`crate::Client::queues`]): the activity attempts in the
/// task queue for one activity and concurrency key, or the unfinished instances of one workflow
/// and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    /// Activity attempts or workflow instances.
    pub kind: QueueKind,
    /// The activity's or workflow's name.
    pub name: String,
    /// The concurrency key (empty when there is none).
    pub concurrency_key: String,
    /// Waiting: activity attempts no worker holds (due, or waiting for a retry's time), Pending
    /// instances (not started yet).
    pub waiting: u64,
    /// Activity attempts a worker holds, Running instances (running, or waiting in a timer, an
    /// event or a child).
    pub running: u64,
    /// When the oldest waiting item was queued, ms since the Unix epoch.
    pub oldest_waiting: Option<Millis>,
    /// The limits across workers the queue waits behind, as the client's runtime registered them
    /// (`None` when it has none, or this client has no runtime that registers the name).
    pub limits: Option<String>,
    /// While items wait and the rate's window is full: when it next admits a start.
    pub next_start_at: Option<Millis>,
}

/// Where a queued activity call stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueuedState {
    /// Waiting for a worker to claim it (behind its activity's limits, if it has any).
    Waiting,
    /// Claimed by `worker`, whose lease lasts until `lease_until`.
    Running {
        /// The owner on the lease.
        worker: String,
        /// When the lease lapses unless renewed.
        lease_until: Millis,
    },
    /// Its attempt finished; the instance has yet to take the outcome into its journal.
    Finished,
}

/// The status of the instance read as `record`, or [`Error::InstanceNotFound`].
pub(crate) fn found(instance_id: &str, record: Option<InstanceRecord>) -> Result<InstanceStatus, Error> {
    record.map(InstanceStatus::from).ok_or_else(|| Error::InstanceNotFound(instance_id.to_owned()))
}

/// How an instance ends: what is written and what its waiters are told.
#[derive(Debug, Clone)]
pub(crate) struct Ending {
    status: RuntimeStatus,
    output: Option<String>,
    failure: Option<FailureDetails>,
}

impl Ending {
    /// Completed with `output` (JSON).
    pub(crate) fn completed(output: String) -> Self {
        Self { status: RuntimeStatus::Completed, output: Some(output), failure: None }
    }

    /// Failed with `failure`.
    pub(crate) fn failed(failure: FailureDetails) -> Self {
        Self { status: RuntimeStatus::Failed, output: None, failure: Some(failure) }
    }

    /// Terminated by a client, `reason` as its failure message.
    pub(crate) fn terminated(reason: &str) -> Self {
        let failure = FailureDetails { error_type: "Terminated".into(), message: reason.to_owned() };
        Self { status: RuntimeStatus::Terminated, output: None, failure: Some(failure) }
    }

    /// The writes that record the end of `record`'s instance at `now`: the finish, and a wake-up
    /// of its parent, if it has one, to see it.
    pub(crate) fn ops(&self, record: &InstanceRecord, now: Millis) -> Vec<WriteOp> {
        let finish = WriteOp::Finish {
            id: record.id.clone(),
            status: self.status,
            output: self.output.clone(),
            error: self.failure.as_ref().map(FailureDetails::to_stored),
            updated_at: now,
        };
        let wake_parent =
            record.parent_id.as_ref().map(|parent| WriteOp::SetWake { id: parent.clone(), wake_at: Some(now) });
        std::iter::once(finish).chain(wake_parent).collect()
    }

    /// The final status of `record`'s instance, as its waiters see it.
    pub(crate) fn status(&self, record: &InstanceRecord, custom_status: Option<String>, now: Millis) -> InstanceStatus {
        InstanceStatus {
            instance_id: record.id.clone(),
            workflow: record.workflow.clone(),
            status: self.status,
            input: record.input.clone(),
            output: self.output.clone(),
            failure: self.failure.clone(),
            custom_status,
            parent_id: record.parent_id.clone(),
            created_at: record.created_at,
            updated_at: now,
            priority: record.priority,
            concurrency_key: record.concurrency_key.clone(),
            wake_at: None,
            trace_context: TraceContext::of_instance(record.trace_context.as_deref(), &record.id, record.created_at)
                .traceparent(),
            limits: None,
            next_start_at: None,
        }
    }
}
