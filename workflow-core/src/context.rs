//! The contexts user code receives: `WorkflowContext` (durable operations) and `ActivityContext`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::IntoFuture;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::attempt::Attempt;
use crate::clock;
use crate::engine::Engine;
use crate::error::{ActivityError, FailureDetails, WorkflowError};
use crate::model::time;
use crate::registry::{ActivityDef, ActivityOptions, BoxFuture};
use crate::retry::RetryPolicy;
use crate::store::{JournalRecord, Millis, RecordStatus, RuntimeStatus, StepKind, TaskRecord, WriteOp};
use crate::tasks;

/// What stops an instance's run from the inside.
#[derive(Debug, Clone)]
pub(crate) enum Fatal {
    /// Fail the instance with these details (non-determinism, a corrupt journal).
    Fail(FailureDetails),
    /// Stop running it without changing what is stored (the store failed); it is claimed again later.
    Abandon(String),
    /// Stop running it without changing what is stored because this run's view is stale, as
    /// expected in normal operation: a client suspended or terminated it, or another worker took
    /// it over (the store fenced this run's commit).
    Superseded(String),
    /// Restart the instance with this input (JSON) and an empty journal.
    ContinueAsNew(String),
}

/// A failed activity as stored in its journal record.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredFailure {
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) attempts: u32,
}

pub(crate) struct InstanceState {
    pub(crate) next_seq: u32,
    /// Records from the store not yet matched by the replaying code.
    pub(crate) replay: BTreeMap<u32, JournalRecord>,
    /// Ops to write with the next commit: the Pending-to-Running change, recorded values
    /// (`now`, `random`, patches), the custom status.
    pub(crate) buffered: Vec<WriteOp>,
    pub(crate) fatal: Option<Fatal>,
    /// Activity attempts and commits under way (an instance with any is not idle).
    pub(crate) busy: usize,
    /// Timers, event waits and child waits under way.
    pub(crate) waits: usize,
    pub(crate) last_progress: tokio::time::Instant,
    /// Deadlines of the live waits, by seq (for the wake-up time of an evicted instance).
    pub(crate) deadlines: BTreeMap<u32, Millis>,
    /// Children being waited for, by seq.
    pub(crate) children: BTreeMap<u32, String>,
    /// Events this run has taken (so two waits never take the same one).
    pub(crate) taken_events: HashSet<i64>,
    /// Every event id this run has seen in the inbox (ids need not become visible in order:
    /// PostgreSQL assigns them before commit).
    pub(crate) seen_events: HashSet<i64>,
    /// The custom status this run set last, if it set one.
    pub(crate) custom_status: Option<Option<String>>,
    /// For each seq issued by a fan-out, the fan-out's first seq.
    pub(crate) parallel_groups: BTreeMap<u32, u32>,
}

pub(crate) struct InstanceShared {
    pub(crate) instance_id: Arc<str>,
    pub(crate) generation: u32,
    pub(crate) engine: Arc<Engine>,
    state: Mutex<InstanceState>,
    fatal_signal: Notify,
    /// Woken when an event for this instance is raised in this process.
    pub(crate) inbox_signal: Arc<Notify>,
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
        inbox_signal: Arc<Notify>,
    ) -> Self {
        let replay = journal.into_iter().map(|record| (record.seq, record)).collect();
        let buffered = status_change
            .map(|status| WriteOp::SetStatus { id: instance_id.to_string(), status, updated_at: engine.clock.now_ms() })
            .into_iter()
            .collect();
        let state = InstanceState {
            next_seq: 0,
            replay,
            buffered,
            fatal: None,
            busy: 0,
            waits: 0,
            last_progress: tokio::time::Instant::now(),
            deadlines: BTreeMap::new(),
            children: BTreeMap::new(),
            taken_events: HashSet::new(),
            seen_events: HashSet::new(),
            custom_status: None,
            parallel_groups: BTreeMap::new(),
        };
        Self {
            shared: Arc::new(InstanceShared {
                instance_id,
                generation,
                engine,
                state: Mutex::new(state),
                fatal_signal: Notify::new(),
                inbox_signal,
            }),
        }
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    pub(crate) fn generation(&self) -> u32 {
        self.shared.generation
    }

    pub(crate) fn inbox_signal(&self) -> Arc<Notify> {
        self.shared.inbox_signal.clone()
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
        let (seq, recorded) = self.reserve(StepKind::Activity, A::NAME);
        ActivityCall {
            ctx: self.clone(),
            seq,
            input,
            recorded,
            retry: None,
            options: A::options(),
            _activity: PhantomData,
        }
    }

    /// Calls activity `A` once per input, in parallel. Prefer the generated
    /// `my_activity::fan_out(&ctx, inputs)`.
    pub fn fan_out<A: ActivityDef>(&self, inputs: impl IntoIterator<Item = A::Input>) -> FanOut<ActivityCall<A>> {
        let calls: Vec<ActivityCall<A>> = inputs.into_iter().map(|input| self.call_activity::<A>(input)).collect();
        self.mark_parallel(calls.iter().map(|call| call.seq));
        FanOut::new(calls)
    }

    /// Records that these seqs were issued together (a fan-out), for the journal and diagrams.
    pub(crate) fn mark_parallel(&self, seqs: impl Iterator<Item = u32>) {
        let seqs: Vec<u32> = seqs.collect();
        if let (Some(first), true) = (seqs.first().copied(), seqs.len() > 1) {
            let mut state = self.state();
            for seq in seqs {
                state.parallel_groups.insert(seq, first);
            }
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, InstanceState> {
        // A panic while the lock is held cannot leave the state half-written: recover it.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the next seq; returns the record found there, if it matches the operation.
    pub(crate) fn reserve(&self, kind: StepKind, name: &str) -> (u32, Option<JournalRecord>) {
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

    pub(crate) fn is_fatal(&self) -> bool {
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

    /// Takes the ops waiting for the next commit, behind a check that this worker still owns
    /// the instance: a worker whose lease was taken over cannot write to it (the store refuses
    /// the batch and this run is abandoned).
    pub(crate) fn take_fenced_batch(&self) -> Vec<WriteOp> {
        let fence =
            WriteOp::AssertOwner { id: self.instance_id().to_owned(), owner: self.shared.engine.worker_id.clone() };
        let buffered = std::mem::take(&mut self.state().buffered);
        std::iter::once(fence).chain(buffered).collect()
    }

    /// Adds an op to the next commit.
    pub(crate) fn buffer(&self, op: WriteOp) {
        self.state().buffered.push(op);
    }

    /// Workflow time now.
    pub(crate) fn clock_now(&self) -> Millis {
        self.shared.engine.clock.now_ms()
    }

    /// Commits the buffered ops, if any. Every operation calls this before it does anything
    /// visible outside the workflow (an activity attempt, a wait, the end), so an outcome is
    /// committed together with what follows from it: a one-step workflow costs two commits in
    /// all (start, then step and end), and every turn of a workflow costs at most one.
    pub(crate) async fn flush(&self) -> Result<(), ()> {
        if self.state().buffered.is_empty() {
            return Ok(());
        }
        self.commit(Vec::new()).await
    }

    /// Writes ops (after the buffered ones) durably; on a store failure the run is abandoned.
    pub(crate) async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), ()> {
        let mut batch = self.take_fenced_batch();
        batch.extend(ops);
        let _busy = self.busy();
        let result = self.shared.engine.committer.commit(batch).await;
        self.state().last_progress = tokio::time::Instant::now();
        match result {
            Ok(_) => Ok(()),
            Err(error @ crate::StoreError::Fenced(_)) => {
                self.fail(Fatal::Superseded(format!("the store refused the journal write: {error}")));
                Err(())
            }
            Err(error) => {
                self.fail(Fatal::Abandon(format!("could not write the journal: {error}")));
                Err(())
            }
        }
    }

    /// Marks the instance busy (not evictable) while the guard lives.
    pub(crate) fn busy(&self) -> ActivityGuard {
        self.state().busy += 1;
        ActivityGuard { ctx: self.clone(), seq: None }
    }

    /// Marks a live wait (with its deadline, if any) while the guard lives.
    pub(crate) fn waiting(&self, seq: u32, deadline: Option<Millis>) -> ActivityGuard {
        let mut state = self.state();
        state.waits += 1;
        if let Some(deadline) = deadline {
            state.deadlines.insert(seq, deadline);
        }
        drop(state);
        ActivityGuard { ctx: self.clone(), seq: Some(seq) }
    }

    /// How long the instance has been waiting with nothing running, if it is.
    pub(crate) fn idle_for(&self) -> Option<std::time::Duration> {
        let state = self.state();
        (state.busy == 0 && state.waits > 0 && state.fatal.is_none()).then(|| state.last_progress.elapsed())
    }

    pub(crate) fn corrupt(&self, seq: u32, detail: impl fmt::Display) {
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
        let mut record = self.new_record(seq, StepKind::Activity, name, status, Some(payload));
        record.input = Some(input.to_owned());
        record.attempt = attempt;
        record
    }

    /// A journal record of this instance's current generation, stamped now.
    pub(crate) fn new_record(
        &self,
        seq: u32,
        kind: StepKind,
        name: &str,
        status: RecordStatus,
        payload: Option<String>,
    ) -> JournalRecord {
        JournalRecord {
            instance_id: self.instance_id().to_owned(),
            generation: self.shared.generation,
            seq,
            kind,
            name: name.to_owned(),
            status,
            input: None,
            payload,
            attempt: 1,
            due_at: None,
            recorded_at: self.clock_now(),
            parallel_group: self.state().parallel_groups.get(&seq).copied(),
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
        options: ActivityOptions,
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
                RecordStatus::Retrying | RecordStatus::Scheduled => {
                    attempt = record.attempt;
                    due = record.due_at;
                }
            }
        }
        let engine = self.shared.engine.clone();
        let started = self.clock_now();
        loop {
            if let Some(due) = due {
                let _wait = self.waiting(seq, Some(due));
                engine.clock.sleep_until(due).await;
            }
            attempt += 1;
            // Durable before observable: what this run learned so far is committed before an
            // attempt (an effect outside the workflow) starts; a queued attempt's task goes in
            // that same commit.
            let result = if engine.queues_attempt(name) {
                self.queued_attempt(&engine, seq, name, &input, attempt, options).await?
            } else {
                self.flush().await.ok()?;
                let _busy = self.busy();
                self.local_attempt(&engine, seq, name, &input, attempt, options).await
            };
            let error = match result {
                Ok(output) => {
                    let record = self.record(seq, name, &input, RecordStatus::Completed, output.clone(), attempt);
                    self.buffer(WriteOp::PutRecord(record));
                    return Some(Ok(output));
                }
                Err(error) => error,
            };
            let elapsed = Duration::from_millis(u64::try_from(self.clock_now().saturating_sub(started)).unwrap_or(0));
            let failure = StoredFailure { message: error.message().to_owned(), attempts: attempt };
            let payload = serde_json::to_string(&failure).unwrap_or_else(|_| "{}".to_owned());
            let retry_in = if error.is_retryable() { policy.delay_after(attempt, elapsed) } else { None };
            match retry_in {
                Some(delay) => {
                    let next = self.clock_now().saturating_add(clock::millis(delay));
                    tracing::info!(instance_id = %self.instance_id(), seq, activity = name, attempt, error = %error, retry_in_ms = delay.as_millis() as u64, "activity attempt failed; retrying");
                    let mut record = self.record(seq, name, &input, RecordStatus::Retrying, payload, attempt);
                    record.due_at = Some(next);
                    self.commit(vec![WriteOp::PutRecord(record)]).await.ok()?;
                    due = Some(next);
                }
                None => {
                    tracing::info!(instance_id = %self.instance_id(), seq, activity = name, attempt, error = %error, "activity failed for good");
                    let record = self.record(seq, name, &input, RecordStatus::Failed, payload, attempt);
                    self.buffer(WriteOp::PutRecord(record));
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
        &self,
        engine: &Arc<Engine>,
        seq: u32,
        name: &'static str,
        input: &str,
        attempt: u32,
        options: ActivityOptions,
    ) -> Result<String, ActivityError> {
        let _permit = engine.activity_slots.clone().acquire_owned().await;
        let attempt = Attempt {
            instance_id: self.shared.instance_id.clone(),
            generation: self.shared.generation,
            seq,
            attempt,
            name,
            input,
            options,
        };
        crate::attempt::run(engine, attempt).await
    }

    /// Queues one attempt for any worker (with whatever this run buffered, in one commit) and
    /// waits for its outcome; `None` when the commit failed and the run is abandoned.
    async fn queued_attempt(
        &self,
        engine: &Arc<Engine>,
        seq: u32,
        name: &'static str,
        input: &str,
        attempt: u32,
        options: ActivityOptions,
    ) -> Option<Result<String, ActivityError>> {
        let generation = self.shared.generation;
        let outcome = engine.tasks.wait_for(self.instance_id(), generation, seq, attempt);
        let task = TaskRecord {
            instance_id: self.instance_id().to_owned(),
            generation,
            seq,
            name: name.to_owned(),
            input: input.to_owned(),
            attempt,
            start_to_close_ms: options.start_to_close.map(tasks::to_ms),
            heartbeat_timeout_ms: options.heartbeat_timeout.map(tasks::to_ms),
            visible_at: self.clock_now(),
            owner: None,
            lease_until: None,
            outcome: None,
        };
        self.commit(vec![WriteOp::EnqueueTask(task)]).await.ok()?;
        engine.tasks.queued.notify_one();
        let _busy = self.busy();
        let outcome = outcome.await.ok()?;
        // The task goes with the journal record that takes its place.
        self.buffer(WriteOp::DeleteTask { instance_id: self.instance_id().to_owned(), generation, seq });
        Some(tasks::decode_outcome(outcome))
    }
}

/// Keeps an instance marked busy or waiting while it lives.
pub(crate) struct ActivityGuard {
    ctx: WorkflowContext,
    seq: Option<u32>,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let mut state = self.ctx.state();
        match self.seq {
            Some(seq) => {
                state.waits = state.waits.saturating_sub(1);
                state.deadlines.remove(&seq);
                state.children.remove(&seq);
            }
            None => state.busy = state.busy.saturating_sub(1),
        }
        state.last_progress = tokio::time::Instant::now();
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
    options: ActivityOptions,
    _activity: PhantomData<fn() -> A>,
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

    /// The call's sequence number in the journal.
    pub fn seq(&self) -> u32 {
        self.seq
    }
}

impl<A: ActivityDef> IntoFuture for ActivityCall<A> {
    type Output = Result<A::Output, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let Self { ctx, seq, input, recorded, retry, options, .. } = self;
        Box::pin(async move {
            if ctx.is_fatal() {
                return std::future::pending().await;
            }
            let input = input?;
            let policy = retry.unwrap_or_else(A::retry_policy);
            let Some(outcome) = ctx.activity_outcome(seq, A::NAME, input, recorded, policy, options).await else {
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

/// Many durable calls (activities or child workflows) run in parallel, at most `max_parallel`
/// at once. Results come back in input order.
#[must_use = "a fan-out does nothing until it is awaited"]
pub struct FanOut<C> {
    calls: Vec<C>,
    max_parallel: usize,
}

impl<C> FanOut<C> {
    pub(crate) fn new(calls: Vec<C>) -> Self {
        Self { max_parallel: calls.len().max(1), calls }
    }

    /// Runs at most `n` calls at once (at least 1).
    pub fn max_parallel(mut self, n: usize) -> Self {
        self.max_parallel = n.max(1);
        self
    }
}

impl<A: ActivityDef> FanOut<ActivityCall<A>> {
    /// Overrides the activity's retry policy for every call.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.calls = self.calls.into_iter().map(|call| call.retry(policy.clone())).collect();
        self
    }
}

impl<C, T> FanOut<C>
where
    C: IntoFuture<Output = Result<T, WorkflowError>>,
    C::IntoFuture: Send,
{
    /// Waits for every call and returns each one's outcome, in input order.
    pub async fn settle(self) -> Vec<Result<T, WorkflowError>> {
        use futures::StreamExt;
        futures::stream::iter(self.calls.into_iter().map(IntoFuture::into_future))
            .buffered(self.max_parallel)
            .collect()
            .await
    }
}

impl<C, T> IntoFuture for FanOut<C>
where
    C: IntoFuture<Output = Result<T, WorkflowError>> + Send + 'static,
    C::IntoFuture: Send,
    T: Send + 'static,
{
    /// Every output in input order, or the first failure in input order. Every call finishes
    /// before the result is returned, so what ran is the same on every replay.
    type Output = Result<Vec<T>, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.settle().await.into_iter().collect() })
    }
}

/// What an activity attempt knows about itself.
#[derive(Debug, Clone)]
pub struct ActivityContext {
    instance_id: Arc<str>,
    worker_id: Arc<str>,
    activity: Arc<str>,
    generation: u32,
    seq: u32,
    attempt: u32,
    heartbeat: Option<Arc<AtomicI64>>,
}

impl ActivityContext {
    pub(crate) fn new(
        instance_id: Arc<str>,
        worker_id: Arc<str>,
        activity: Arc<str>,
        generation: u32,
        seq: u32,
        attempt: u32,
        heartbeat: Arc<AtomicI64>,
    ) -> Self {
        Self { instance_id, worker_id, activity, generation, seq, attempt, heartbeat: Some(heartbeat) }
    }

    /// A context for calling an activity function directly, as in a unit test.
    pub fn for_test(instance_id: &str, seq: u32, attempt: u32) -> Self {
        Self {
            instance_id: instance_id.into(),
            worker_id: "test".into(),
            activity: "test".into(),
            generation: 0,
            seq,
            attempt,
            heartbeat: None,
        }
    }

    /// Reports that the attempt is alive: with a heartbeat timeout set, an attempt that goes
    /// longer than it without calling this fails (and is retried under the policy).
    pub fn heartbeat(&self) {
        if let Some(beat) = &self.heartbeat {
            beat.store(time::now_ms(), Ordering::Relaxed);
        }
    }

    /// The calling instance's id.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The id of the worker running this attempt.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The activity's name.
    pub fn activity_name(&self) -> &str {
        &self.activity
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
