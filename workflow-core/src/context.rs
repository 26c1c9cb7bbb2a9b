//! The contexts user code receives: `WorkflowContext` (durable operations) and `ActivityContext`.

use std::collections::BTreeMap;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::engine::Engine;
use crate::error::{ActivityError, FailureDetails, WorkflowError};
use crate::registry::{ActivityDef, BoxFuture};
use crate::retry::RetryPolicy;
use crate::store::{JournalRecord, RecordStatus, RuntimeStatus, WriteOp};
use crate::time;

/// The journal kind of an activity call.
pub(crate) const KIND_ACTIVITY: &str = "activity";

/// What stops an instance's run from the inside.
#[derive(Debug, Clone)]
pub(crate) enum Fatal {
    /// Fail the instance with these details (non-determinism, a corrupt journal).
    Fail(FailureDetails),
    /// Stop running it without changing what is stored (the store failed); it is claimed again later.
    Abandon(String),
}

/// A failed activity as stored in its journal record.
#[derive(Debug, Serialize, Deserialize)]
struct StoredFailure {
    message: String,
    #[serde(default)]
    attempts: u32,
}

struct InstanceState {
    next_seq: u32,
    /// Records from the store not yet matched by the replaying code.
    replay: BTreeMap<u32, JournalRecord>,
    /// A status to write with the next commit (Pending becomes Running with the first step).
    status_change: Option<RuntimeStatus>,
    fatal: Option<Fatal>,
}

pub(crate) struct InstanceShared {
    pub(crate) instance_id: Arc<str>,
    pub(crate) generation: u32,
    pub(crate) engine: Arc<Engine>,
    state: Mutex<InstanceState>,
    fatal_signal: Notify,
}

/// The handle a workflow body uses for every durable operation.
///
/// Each operation takes the next sequence number when it is created, in source order; on replay
/// the journal's record at that number is checked (kind and name) and its outcome returned
/// without running anything.
#[derive(Clone)]
pub struct WorkflowContext {
    shared: Arc<InstanceShared>,
}

impl fmt::Debug for WorkflowContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowContext").field("instance_id", &self.shared.instance_id).finish_non_exhaustive()
    }
}

impl WorkflowContext {
    pub(crate) fn new(
        engine: Arc<Engine>,
        instance_id: Arc<str>,
        generation: u32,
        journal: Vec<JournalRecord>,
        status_change: Option<RuntimeStatus>,
    ) -> Self {
        let replay = journal.into_iter().map(|record| (record.seq, record)).collect();
        let state = InstanceState { next_seq: 0, replay, status_change, fatal: None };
        Self {
            shared: Arc::new(InstanceShared {
                instance_id,
                generation,
                engine,
                state: Mutex::new(state),
                fatal_signal: Notify::new(),
            }),
        }
    }

    /// The instance id.
    pub fn instance_id(&self) -> &str {
        &self.shared.instance_id
    }

    /// Whether the body is replaying recorded operations (true until the first operation without
    /// a record). Useful to keep logs from repeating on recovery.
    pub fn is_replaying(&self) -> bool {
        let state = self.state();
        state.replay.range(state.next_seq..).next().is_some()
    }

    /// Calls activity `A` with `input`. Prefer the generated `my_activity::call(&ctx, input)`.
    pub fn call_activity<A: ActivityDef>(&self, input: A::Input) -> ActivityCall<A> {
        let input = serde_json::to_string(&input).map_err(|e| WorkflowError::Serialization(e.to_string()));
        let (seq, recorded) = self.reserve(KIND_ACTIVITY, A::NAME);
        ActivityCall { ctx: self.clone(), seq, input, recorded, retry: None, _activity: PhantomData }
    }

    /// Calls activity `A` once per input, in parallel. Prefer the generated
    /// `my_activity::fan_out(&ctx, inputs)`.
    pub fn fan_out<A: ActivityDef>(&self, inputs: impl IntoIterator<Item = A::Input>) -> FanOut<A> {
        let calls: Vec<ActivityCall<A>> = inputs.into_iter().map(|input| self.call_activity::<A>(input)).collect();
        FanOut { max_parallel: calls.len().max(1), calls }
    }

    fn state(&self) -> MutexGuard<'_, InstanceState> {
        // A panic while the lock is held cannot leave the state half-written: recover it.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the next seq; returns the record found there, if it matches the operation.
    fn reserve(&self, kind: &str, name: &str) -> (u32, Option<JournalRecord>) {
        let mut state = self.state();
        let seq = state.next_seq;
        state.next_seq += 1;
        let recorded = state.replay.remove(&seq);
        if let Some(record) = &recorded {
            if record.kind != kind || record.name != name {
                let message = format!(
                    "non-determinism at seq {seq}: the journal recorded {} `{}` but the workflow now issues {kind} `{name}`",
                    record.kind, record.name
                );
                drop(state);
                self.fail(Fatal::Fail(FailureDetails { error_type: "NonDeterminism".into(), message }));
                return (seq, None);
            }
        }
        (seq, recorded)
    }

    /// Stops the run; the first fatal error wins.
    pub(crate) fn fail(&self, fatal: Fatal) {
        let mut state = self.state();
        if state.fatal.is_none() {
            state.fatal = Some(fatal);
            self.shared.fatal_signal.notify_one();
        }
    }

    fn is_fatal(&self) -> bool {
        self.state().fatal.is_some()
    }

    /// Resolves when the run has hit a fatal error.
    pub(crate) async fn fatal(&self) -> Fatal {
        loop {
            if let Some(fatal) = self.state().fatal.clone() {
                return fatal;
            }
            self.shared.fatal_signal.notified().await;
        }
    }

    /// Records the workflow did not reach though the journal holds them (a changed workflow).
    pub(crate) fn unmatched_records(&self) -> Option<JournalRecord> {
        self.state().replay.values().next().cloned()
    }

    /// Takes the status change to write with the next commit.
    pub(crate) fn take_status_change(&self) -> Option<RuntimeStatus> {
        self.state().status_change.take()
    }

    /// Writes ops (plus a pending status change) durably; on a store failure the run is abandoned.
    async fn commit(&self, mut ops: Vec<WriteOp>) -> Result<(), ()> {
        if let Some(status) = self.take_status_change() {
            ops.push(WriteOp::SetStatus { id: self.instance_id().to_owned(), status, updated_at: time::now_ms() });
        }
        match self.shared.engine.committer.commit(ops).await {
            Ok(_) => Ok(()),
            Err(error) => {
                self.fail(Fatal::Abandon(format!("could not write the journal: {error}")));
                Err(())
            }
        }
    }

    fn corrupt(&self, seq: u32, detail: impl fmt::Display) {
        let message = format!("corrupt journal record at seq {seq} of instance `{}`: {detail}", self.instance_id());
        self.fail(Fatal::Fail(FailureDetails { error_type: "CorruptJournal".into(), message }));
    }

    fn record(
        &self,
        seq: u32,
        name: &str,
        input: &str,
        status: RecordStatus,
        payload: String,
        attempt: u32,
    ) -> JournalRecord {
        JournalRecord {
            instance_id: self.instance_id().to_owned(),
            generation: self.shared.generation,
            seq,
            kind: KIND_ACTIVITY.to_owned(),
            name: name.to_owned(),
            status,
            input: Some(input.to_owned()),
            payload: Some(payload),
            attempt,
            due_at: None,
            recorded_at: time::now_ms(),
        }
    }

    /// Runs (or replays) one activity call; `Ok` holds the output JSON.
    async fn activity_outcome(
        &self,
        seq: u32,
        name: &'static str,
        input: String,
        recorded: Option<JournalRecord>,
        policy: RetryPolicy,
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
                            self.corrupt(seq, error);
                            None
                        }
                    };
                }
                RecordStatus::Retrying => {
                    attempt = record.attempt;
                    due = record.due_at;
                }
            }
        }
        let engine = self.shared.engine.clone();
        let started = time::now_ms();
        loop {
            if let Some(due) = due {
                time::sleep_until_ms(due).await;
            }
            attempt += 1;
            let result = self.run_attempt(&engine, seq, name, &input, attempt).await;
            let error = match result {
                Ok(output) => {
                    let record = self.record(seq, name, &input, RecordStatus::Completed, output.clone(), attempt);
                    self.commit(vec![WriteOp::PutRecord(record)]).await.ok()?;
                    return Some(Ok(output));
                }
                Err(error) => error,
            };
            let elapsed = time::elapsed_since_ms(started);
            let failure = StoredFailure { message: error.message().to_owned(), attempts: attempt };
            let payload = serde_json::to_string(&failure).unwrap_or_else(|_| "{}".to_owned());
            let retry_in = if error.is_retryable() { policy.delay_after(attempt, elapsed) } else { None };
            match retry_in {
                Some(delay) => {
                    let next = time::now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                    tracing::info!(instance_id = %self.instance_id(), seq, activity = name, attempt, error = %error, retry_in_ms = delay.as_millis() as u64, "activity attempt failed; retrying");
                    let mut record = self.record(seq, name, &input, RecordStatus::Retrying, payload, attempt);
                    record.due_at = Some(next);
                    self.commit(vec![WriteOp::PutRecord(record)]).await.ok()?;
                    due = Some(next);
                }
                None => {
                    tracing::info!(instance_id = %self.instance_id(), seq, activity = name, attempt, error = %error, "activity failed for good");
                    let record = self.record(seq, name, &input, RecordStatus::Failed, payload, attempt);
                    self.commit(vec![WriteOp::PutRecord(record)]).await.ok()?;
                    return Some(Err(WorkflowError::Activity {
                        activity: name.to_owned(),
                        message: failure.message,
                        attempts: attempt,
                    }));
                }
            }
        }
    }

    async fn run_attempt(
        &self,
        engine: &Arc<Engine>,
        seq: u32,
        name: &'static str,
        input: &str,
        attempt: u32,
    ) -> Result<String, ActivityError> {
        let Some(entry) = engine.registry.activities.get(name).cloned() else {
            return Err(ActivityError::non_retryable(format!("activity `{name}` is not registered with this runtime")));
        };
        let permit = engine.activity_slots.clone().acquire_owned().await;
        let context = ActivityContext {
            instance_id: self.shared.instance_id.clone(),
            activity: name,
            generation: self.shared.generation,
            seq,
            attempt,
        };
        let span = tracing::info_span!("activity", instance_id = %self.instance_id(), activity = name, seq, attempt);
        let task = tokio::spawn((entry.run)(context, input.to_owned()).instrument(span));
        let result = AbortOnDrop(task).await;
        drop(permit);
        result
    }
}

/// Aborts a spawned attempt when the workflow stops waiting for it (shutdown, a dropped branch).
struct AbortOnDrop(tokio::task::JoinHandle<Result<String, ActivityError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Future for AbortOnDrop {
    type Output = Result<String, ActivityError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|joined| joined.unwrap_or_else(|error| Err(panic_error(error))))
    }
}

fn panic_error(error: tokio::task::JoinError) -> ActivityError {
    match error.try_into_panic() {
        Ok(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic".to_owned());
            ActivityError::new(format!("activity panicked: {text}"))
        }
        Err(_) => ActivityError::new("activity attempt was cancelled"),
    }
}

/// A pending activity call: await it, or set a retry policy first.
#[must_use = "an activity call does nothing until it is awaited"]
pub struct ActivityCall<A: ActivityDef> {
    ctx: WorkflowContext,
    seq: u32,
    input: Result<String, WorkflowError>,
    recorded: Option<JournalRecord>,
    retry: Option<RetryPolicy>,
    _activity: PhantomData<fn() -> A>,
}

impl<A: ActivityDef> ActivityCall<A> {
    /// Overrides the activity's retry policy for this call.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
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
        let Self { ctx, seq, input, recorded, retry, .. } = self;
        Box::pin(async move {
            if ctx.is_fatal() {
                return std::future::pending().await;
            }
            let input = input?;
            let policy = retry.unwrap_or_else(A::retry_policy);
            let Some(outcome) = ctx.activity_outcome(seq, A::NAME, input, recorded, policy).await else {
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

/// A parallel call of one activity over many inputs. Results come back in input order.
#[must_use = "a fan-out does nothing until it is awaited"]
pub struct FanOut<A: ActivityDef> {
    calls: Vec<ActivityCall<A>>,
    max_parallel: usize,
}

impl<A: ActivityDef> FanOut<A> {
    /// Runs at most `n` calls at once (at least 1).
    pub fn max_parallel(mut self, n: usize) -> Self {
        self.max_parallel = n.max(1);
        self
    }

    /// Overrides the activity's retry policy for every call.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.calls = self.calls.into_iter().map(|call| call.retry(policy.clone())).collect();
        self
    }

    /// Waits for every call and returns each one's outcome, in input order.
    pub async fn settle(self) -> Vec<Result<A::Output, WorkflowError>> {
        use futures::StreamExt;
        futures::stream::iter(self.calls.into_iter().map(IntoFuture::into_future))
            .buffered(self.max_parallel)
            .collect()
            .await
    }
}

impl<A: ActivityDef> IntoFuture for FanOut<A> {
    /// Every output in input order, or the first failure in input order. Every call finishes
    /// before the result is returned, so what ran is the same on every replay.
    type Output = Result<Vec<A::Output>, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.settle().await.into_iter().collect() })
    }
}

/// What an activity attempt knows about itself.
#[derive(Debug, Clone)]
pub struct ActivityContext {
    instance_id: Arc<str>,
    activity: &'static str,
    generation: u32,
    seq: u32,
    attempt: u32,
}

impl ActivityContext {
    /// A context for calling an activity function directly, as in a unit test.
    pub fn for_test(instance_id: &str, seq: u32, attempt: u32) -> Self {
        Self { instance_id: instance_id.into(), activity: "test", generation: 0, seq, attempt }
    }

    /// The calling instance's id.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The activity's name.
    pub fn activity_name(&self) -> &str {
        self.activity
    }

    /// The call's sequence number in the instance's journal.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A key that is the same for every attempt of this call and differs for every other call:
    /// pass it to external systems to make the activity idempotent.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.instance_id, self.generation, self.seq)
    }
}
