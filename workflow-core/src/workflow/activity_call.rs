//! An activity call from a workflow: replayed from its record, or run (here, or queued for any
//! worker) under its retry policy, each attempt's outcome journaled. Following one result: the
//! attempt runs in [`crate::activity`], its outcome is buffered here as a journal record, and the
//! next flush commits it (see [`super::run`]).

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::WorkflowContext;
use crate::activity::{self, ActivityDef, ActivityOptions, Attempt, RetryPolicy};
use crate::error::{ActivityError, WorkflowError};
use crate::model::codec::{self, StoredFailure};
use crate::model::time::millis;
use crate::model::BoxFuture;
use crate::store::{
    ActivityCap, JournalRecord, Lease, RecordStatus, StepKind, TaskCompletion, TaskLease, TaskRecord, WriteOp,
};
use crate::worker::Engine;

/// A pending activity call: await it, or set a retry policy first.
#[must_use = "an activity call does nothing until it is awaited"]
pub struct ActivityCall<A: ActivityDef> {
    pub(super) ctx: WorkflowContext,
    pub(super) seq: u32,
    pub(super) input: Result<String, WorkflowError>,
    pub(super) concurrency_key: String,
    pub(super) recorded: Option<JournalRecord>,
    pub(super) retry: Option<RetryPolicy>,
    pub(super) options: ActivityOptions,
    pub(super) _activity: PhantomData<fn() -> A>,
}

impl<A: ActivityDef> ActivityCall<A> {
    /// Overrides the activity's retry policy for this call.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Overrides the activity's start-to-close timeout for this call.
    pub fn start_to_close(mut self, limit: Duration) -> Self {
        self.options.start_to_close = Some(limit);
        self
    }

    /// Overrides the activity's heartbeat timeout for this call.
    pub fn heartbeat_timeout(mut self, limit: Duration) -> Self {
        self.options.heartbeat_timeout = Some(limit);
        self
    }

    /// Overrides the concurrency key the activity computes from the input, for this call: under
    /// the activity's concurrency cap, calls with one key share it. No effect on an activity
    /// without a cap.
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = key.into();
        self
    }

    /// The call's sequence number in the journal.
    pub fn seq(&self) -> u32 {
        self.seq
    }
}

impl<A: ActivityDef> IntoFuture for ActivityCall<A> {
    type Output = Result<A::Output, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let Self { ctx, seq, input, concurrency_key, recorded, retry, options, .. } = self;
        Box::pin(async move {
            if ctx.is_fatal() {
                return std::future::pending().await;
            }
            let input = input?;
            let policy = retry.unwrap_or_else(A::retry_policy);
            let capped = A::CONCURRENCY.is_some() || A::RATE.is_some();
            let placement = Placement { options, capped, concurrency_key };
            let Some(outcome) = outcome(&ctx, seq, A::NAME, input, recorded, policy, placement).await else {
                return std::future::pending().await;
            };
            let output = outcome?;
            match serde_json::from_str::<A::Output>(&output) {
                Ok(value) => Ok(value),
                Err(error) => {
                    ctx.corrupt(seq, format!("output of activity `{}` does not deserialize: {error}", A::NAME));
                    std::future::pending().await
                }
            }
        })
    }
}

fn activity_record(
    ctx: &WorkflowContext,
    seq: u32,
    name: &str,
    input: &str,
    status: RecordStatus,
    payload: String,
    attempt: u32,
) -> JournalRecord {
    let mut record = ctx.new_record(seq, StepKind::Activity, name, status, Some(payload));
    record.input = Some(input.to_owned());
    record.attempt = attempt;
    record
}

/// Where and how a call's attempts run.
struct Placement {
    /// Each attempt's timeouts.
    options: ActivityOptions,
    /// Whether the activity has a concurrency cap or a rate limit: its attempts then run in a
    /// slot of this worker's (a cap with room) or go through the task queue, whose claims count
    /// them against the limits across workers.
    capped: bool,
    /// The call's key under that cap.
    concurrency_key: String,
}

/// Runs (or replays) one activity call; `Ok` holds the output JSON.
async fn outcome(
    ctx: &WorkflowContext,
    seq: u32,
    name: &'static str,
    input: String,
    recorded: Option<JournalRecord>,
    policy: RetryPolicy,
    placement: Placement,
) -> Option<Result<String, WorkflowError>> {
    let mut attempt = 0;
    let mut due = None;
    if let Some(record) = recorded {
        match record.status {
            RecordStatus::Completed => return Some(Ok(record.payload.unwrap_or_else(|| "null".to_owned()))),
            RecordStatus::Failed => {
                let stored = record.payload.as_deref().unwrap_or("");
                return match serde_json::from_str::<StoredFailure>(stored) {
                    Ok(failure) => Some(Err(WorkflowError::Activity {
                        activity: name.to_owned(),
                        message: failure.message,
                        attempts: failure.attempts.max(record.attempt),
                    })),
                    Err(error) => {
                        ctx.corrupt(seq, error);
                        None
                    }
                };
            }
            RecordStatus::Retrying | RecordStatus::Scheduled => {
                attempt = record.attempt;
                due = record.due_at;
            }
        }
    }
    let engine = ctx.engine().clone();
    let started = ctx.clock_now();
    loop {
        if let Some(due) = due {
            let _wait = ctx.waiting(seq, Some(due));
            engine.clock().sleep_until(due).await;
        }
        // A stored count at u32::MAX (damaged, or a policy allowing that many) stays there: it
        // is past every policy's last attempt, so the call fails for good instead of wrapping.
        attempt = attempt.saturating_add(1);
        // Durable before observable: what this run learned so far is committed before an
        // attempt (an effect outside the workflow) starts; a queued attempt's task goes in
        // that same commit.
        let result = if placement.capped || engine.queues_attempt(name) {
            queued_attempt(ctx, &engine, seq, name, &input, attempt, &placement).await?
        } else {
            ctx.flush().await.ok()?;
            let _busy = ctx.busy();
            local_attempt(ctx, &engine, seq, name, &input, attempt, placement.options).await
        };
        let error = match result {
            Ok(output) => {
                let record = activity_record(ctx, seq, name, &input, RecordStatus::Completed, output.clone(), attempt);
                ctx.buffer(WriteOp::PutRecord(record));
                return Some(Ok(output));
            }
            Err(error) => error,
        };
        let elapsed = Duration::from_millis(u64::try_from(ctx.clock_now().saturating_sub(started)).unwrap_or(0));
        let failure = StoredFailure::step(error.message(), attempt);
        let payload = failure.encode();
        let retry_in = if error.is_retryable() { policy.delay_after(attempt, elapsed) } else { None };
        match retry_in {
            Some(delay) => {
                match engine.registry().activity(name) {
                    Some(entry) => entry.metrics.retry(name),
                    None => crate::metrics::activity_retry(name),
                }
                let next = ctx.clock_now().saturating_add(millis(delay));
                tracing::info!(instance_id = %ctx.instance_id(), seq, activity = name, attempt, error = %error, retry_in_ms = delay.as_millis() as u64, "activity attempt failed; retrying");
                let mut record = activity_record(ctx, seq, name, &input, RecordStatus::Retrying, payload, attempt);
                record.due_at = Some(next);
                ctx.commit(vec![WriteOp::PutRecord(record)]).await.ok()?;
                due = Some(next);
            }
            None => {
                tracing::info!(instance_id = %ctx.instance_id(), seq, activity = name, attempt, error = %error, "activity failed for good");
                let record = activity_record(ctx, seq, name, &input, RecordStatus::Failed, payload, attempt);
                ctx.buffer(WriteOp::PutRecord(record));
                return Some(Err(WorkflowError::Activity {
                    activity: name.to_owned(),
                    message: failure.message,
                    attempts: attempt,
                }));
            }
        }
    }
}

/// Runs one attempt here, in an activity slot of this worker.
async fn local_attempt(
    ctx: &WorkflowContext,
    engine: &Arc<Engine>,
    seq: u32,
    name: &'static str,
    input: &str,
    attempt: u32,
    options: ActivityOptions,
) -> Result<String, ActivityError> {
    // This worker's limit of the activity first: waiting for it holds no slot others could use.
    let _turn = engine.activity_turn(name).await;
    let _permit = engine.activity_slots().clone().acquire_owned().await;
    let attempt = Attempt {
        instance_id: ctx.instance_id_arc(),
        generation: ctx.generation(),
        seq,
        attempt,
        name,
        input,
        options,
        trace_id: Some(ctx.trace().trace_id()),
    };
    activity::run_attempt(engine, attempt).await
}

/// The limits of activity `name` when the call is capped and the activity runs here (this
/// worker registers it): what a slot or a lease of this worker's is counted under.
fn cap_here<'e>(engine: &'e Engine, name: &str, placement: &Placement) -> Option<&'e ActivityCap> {
    if !placement.capped || !engine.registry().has_activity(name) {
        return None;
    }
    engine.activity_caps().iter().find(|cap| cap.activity == name)
}

/// A slot of this worker's ([`crate::activity::CapSlots`]) for an attempt of activity `name`,
/// if it has a concurrency cap and no rate limit (a rate counts each start, which a slot's reuse
/// would not), runs here (registered, and not queued for any worker by dispatch), and the store
/// has room.
async fn cap_slot(
    ctx: &WorkflowContext,
    engine: &Arc<Engine>,
    name: &str,
    placement: &Placement,
) -> Option<crate::activity::CapSlot> {
    let cap = cap_here(engine, name, placement).filter(|cap| cap.concurrency.is_some() && cap.rate.is_none())?;
    if engine.queues_attempt(name) {
        return None;
    }
    engine.cap_slots().acquire(cap, &placement.concurrency_key, (ctx.clock_now(), engine.lease_until())).await
}

/// Queues one attempt for any worker (with whatever this run buffered, in one commit) and
/// waits for its outcome; `None` when the commit failed and the run is abandoned.
async fn queued_attempt(
    ctx: &WorkflowContext,
    engine: &Arc<Engine>,
    seq: u32,
    name: &'static str,
    input: &str,
    attempt: u32,
    placement: &Placement,
) -> Option<Result<String, ActivityError>> {
    let options = placement.options;
    // When the attempt was ready: a queued task is claimed in that order within its priority,
    // however long it took to learn that no slot was free.
    let ready_at = ctx.clock_now();
    if let Some(slot) = cap_slot(ctx, engine, name, placement).await {
        // One of this worker's slots of the activity: it runs here as an uncapped attempt does,
        // with no task row, once what the run learned so far is durable.
        ctx.flush().await.ok()?;
        let _busy = ctx.busy();
        let now = ctx.clock_now();
        crate::metrics::queue_wait(crate::store::QueueKind::Activity, name, &placement.concurrency_key, now, now);
        let result = local_attempt(ctx, engine, seq, name, input, attempt, options).await;
        drop(slot);
        return Some(result);
    }
    let generation = ctx.generation();
    let outcome = engine.tasks().wait_for(ctx.instance_id(), generation, seq, attempt);
    // A capped activity registered here asks for the task's lease in the commit that queues it:
    // when its limits have room, it runs here at once, with no claim (and no claim's commit).
    let lease = cap_here(engine, name, placement).map(|cap| TaskLease {
        instance_id: ctx.instance_id().to_owned(),
        generation,
        seq,
        attempt,
        concurrency_key: placement.concurrency_key.clone(),
        owner: engine.owner().to_owned(),
        lease_until: engine.lease_until(),
        now: ctx.clock_now(),
        cap: cap.clone(),
    });
    let task = TaskRecord {
        instance_id: ctx.instance_id().to_owned(),
        generation,
        seq,
        name: name.to_owned(),
        input: input.to_owned(),
        concurrency_key: placement.concurrency_key.clone(),
        priority: ctx.priority(),
        attempt,
        start_to_close_ms: options.start_to_close.map(millis),
        heartbeat_timeout_ms: options.heartbeat_timeout.map(millis),
        visible_at: ready_at,
        owner: None,
        lease_until: None,
        outcome: None,
        trace_context: Some(ctx.trace().traceparent()),
    };
    let leased = ctx
        .commit_leasing(vec![WriteOp::EnqueueTask(task)], lease.into_iter().map(Lease::Task).collect())
        .await
        .ok()?;
    let _busy = ctx.busy();
    if leased.first() == Some(&true) {
        let now = ctx.clock_now();
        crate::metrics::queue_wait(crate::store::QueueKind::Activity, name, &placement.concurrency_key, now, now);
        engine.tasks().forget(ctx.instance_id(), generation, seq, attempt);
        let result = local_attempt(ctx, engine, seq, name, input, attempt, options).await;
        let completion = TaskCompletion {
            instance_id: ctx.instance_id().to_owned(),
            generation,
            seq,
            attempt,
            outcome: codec::encode_outcome(&result, engine.now()),
        };
        if ctx.busy_elsewhere() {
            // The run commits next only once its other branches are done: the outcome goes to
            // the store now, which ends the task's hold on its limits.
            engine.tasks().report(completion);
        } else {
            // The run's next commit journals it and deletes the task (which drops it here);
            // should that commit fail, it is reported after a short hold, so the outcome still
            // reaches the instance's next run instead of a task held here for good.
            engine.tasks().hold(completion);
        }
        ctx.buffer(WriteOp::DeleteTask { instance_id: ctx.instance_id().to_owned(), generation, seq });
        return Some(result);
    }
    let outcome = outcome.await.ok()?;
    // The task goes with the journal record that takes its place.
    ctx.buffer(WriteOp::DeleteTask { instance_id: ctx.instance_id().to_owned(), generation, seq });
    Some(codec::decode_outcome(outcome))
}
