//! Durable operations beyond activities: timers, event waits, races, child workflows,
//! continue-as-new, recorded values (`now`, `random`, `uuid`), patches and the custom status.

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::clock::millis;
use crate::context::{Fatal, StoredFailure, WorkflowContext};
use crate::error::{FailureDetails, WorkflowError};
use crate::registry::{BoxFuture, WorkflowDef};
use crate::store::{InstanceRecord, JournalRecord, Millis, RecordStatus, RuntimeStatus, StepKind, WriteOp};

/// How often a live event wait re-reads the inbox for events raised by other processes.
const EVENT_POLL: Duration = Duration::from_millis(1000);
/// How often a child wait re-reads the child's status when no local notification arrives.
const CHILD_POLL: Duration = Duration::from_millis(200);

/// The outcome of [`WorkflowContext::race`]: which operation finished first, with its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first operation won.
    First(A),
    /// The second operation won.
    Second(B),
}

impl WorkflowContext {
    /// A durable timer: resolves `duration` after it is first awaited. The due time is stored,
    /// so a restart before or after it fires the timer once, at or after the due time.
    pub fn sleep(&self, duration: Duration) -> Timer {
        let (seq, recorded) = self.reserve(StepKind::Timer, "sleep");
        Timer { ctx: self.clone(), seq, recorded, due: Due::After(duration) }
    }

    /// A durable timer that fires at (or after) `at`.
    pub fn sleep_until(&self, at: SystemTime) -> Timer {
        let (seq, recorded) = self.reserve(StepKind::Timer, "sleep");
        let at_ms = at.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0);
        Timer { ctx: self.clone(), seq, recorded, due: Due::At(at_ms) }
    }

    /// Waits for the next external event named `name` (names match without regard to ASCII
    /// case, as Dapr does). Events raised before the wait are buffered; several events of one
    /// name are delivered in arrival order. Set a limit with `.timeout(d)`.
    pub fn wait_for_event<T: DeserializeOwned + Send + 'static>(&self, name: &str) -> EventWait<T> {
        let (seq, recorded) = self.reserve(StepKind::Event, name);
        EventWait { ctx: self.clone(), seq, name: name.to_owned(), recorded, timeout: None, _payload: PhantomData }
    }

    /// Runs two durable operations and returns whichever finishes first. The winner is
    /// recorded, so a replay picks the same one; the loser is dropped.
    pub fn race<A, B>(&self, first: A, second: B) -> Race<A, B>
    where
        A: IntoFuture + Send + 'static,
        B: IntoFuture + Send + 'static,
    {
        let (seq, recorded) = self.reserve(StepKind::Race, "race");
        Race { ctx: self.clone(), seq, recorded, first, second }
    }

    /// Calls child workflow `W`. Prefer the generated `my_workflow::call(&ctx, input)`.
    pub fn call_child<W: WorkflowDef>(&self, input: W::Input) -> ChildCall<W> {
        let input = serde_json::to_string(&input).map_err(|e| WorkflowError::Serialization(e.to_string()));
        let (seq, recorded) = self.reserve(StepKind::Child, W::NAME);
        ChildCall { ctx: self.clone(), seq, input, recorded, _workflow: PhantomData }
    }

    /// Calls child workflow `W` once per input, in parallel. Prefer the generated
    /// `my_workflow::fan_out(&ctx, inputs)`.
    pub fn fan_out_children<W: WorkflowDef>(
        &self,
        inputs: impl IntoIterator<Item = W::Input>,
    ) -> crate::FanOut<ChildCall<W>> {
        let calls: Vec<ChildCall<W>> = inputs.into_iter().map(|input| self.call_child::<W>(input)).collect();
        self.mark_parallel(calls.iter().map(|call| call.seq));
        crate::FanOut::new(calls)
    }

    /// Restarts this instance with `input` and an empty journal, keeping its id. Events raised
    /// and not yet consumed stay in the inbox for the new run (never dropped). Never resolves:
    /// write `return ctx.continue_as_new(&next).await;`. Prefer the generated, typed
    /// `my_workflow::continue_as_new(&ctx, input)`.
    pub async fn continue_as_new<I: Serialize, T>(&self, input: &I) -> Result<T, WorkflowError> {
        let input = serde_json::to_string(input).map_err(|e| WorkflowError::Serialization(e.to_string()))?;
        self.fail(Fatal::ContinueAsNew(input));
        std::future::pending().await
    }

    /// The current time, recorded once and replayed after.
    pub fn now(&self) -> SystemTime {
        let ms = self.recorded_value(StepKind::Now, "now", || self.clock_now().to_string());
        let ms = ms.and_then(|text| text.parse::<u64>().ok()).unwrap_or(0);
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// A random number, recorded once and replayed after.
    pub fn random(&self) -> u64 {
        let text = self.recorded_value(StepKind::Random, "random", || random_u64().to_string());
        text.and_then(|text| text.parse().ok()).unwrap_or(0)
    }

    /// A random (v4) UUID, recorded once and replayed after.
    pub fn uuid(&self) -> String {
        let text = self.recorded_value(StepKind::Uuid, "uuid", || {
            serde_json::to_string(&uuid::Uuid::new_v4().to_string()).unwrap_or_default()
        });
        text.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default()
    }

    /// Versioning by patching: true for runs that reach this point with the change in place
    /// (new runs, and runs that first get here after the deploy), false when replaying a journal
    /// recorded before the change. The choice is recorded, so it never flips for an instance.
    ///
    /// ```ignore
    /// if ctx.patched("charge-before-ship") { charge::call(&ctx, o).await?; }
    /// ```
    pub fn patched(&self, change_id: &str) -> bool {
        let mut state = self.state();
        let seq = state.next_seq;
        match state.replay.get(&seq) {
            Some(record) if record.kind == StepKind::Patch && record.name == change_id => {
                state.replay.remove(&seq);
                state.next_seq += 1;
                true
            }
            // A journal recorded before the change: the old path, and the seq stays unused.
            Some(_) => false,
            None => {
                state.next_seq += 1;
                drop(state);
                let record =
                    self.new_record(seq, StepKind::Patch, change_id, RecordStatus::Completed, Some("true".into()));
                self.buffer(WriteOp::PutRecord(record));
                true
            }
        }
    }

    /// Sets a status text for observers (shown by `Client::status`); written with the next step.
    pub fn set_custom_status<S: Serialize>(&self, status: &S) {
        let custom_status = serde_json::to_string(status).ok();
        self.state().custom_status = Some(custom_status.clone());
        let updated_at = self.clock_now();
        self.buffer(WriteOp::SetCustomStatus { id: self.instance_id().to_owned(), custom_status, updated_at });
    }

    /// Takes a seq for a recorded value: the recorded payload on replay, else `make()`'s, which
    /// is written with the next commit (nothing outside the workflow sees it before then).
    fn recorded_value(&self, kind: StepKind, name: &str, make: impl FnOnce() -> String) -> Option<String> {
        let (seq, recorded) = self.reserve(kind, name);
        if self.is_fatal() {
            return None;
        }
        if let Some(record) = recorded {
            return record.payload;
        }
        let value = make();
        let record = self.new_record(seq, kind, name, RecordStatus::Completed, Some(value.clone()));
        self.buffer(WriteOp::PutRecord(record));
        Some(value)
    }

    /// Stores a Scheduled record with its deadline; returns false if the run must stop.
    async fn schedule(
        &self,
        seq: u32,
        kind: StepKind,
        name: &str,
        due: Option<Millis>,
        payload: Option<String>,
    ) -> bool {
        let mut record = self.new_record(seq, kind, name, RecordStatus::Scheduled, payload);
        record.due_at = due;
        self.commit(vec![WriteOp::PutRecord(record)]).await.is_ok()
    }
}

fn random_u64() -> u64 {
    // v4 UUIDs come from the OS's random source.
    let bits = uuid::Uuid::new_v4().as_u128();
    (bits >> 64) as u64 ^ bits as u64
}

enum Due {
    After(Duration),
    At(Millis),
}

/// A durable timer; await it.
#[must_use = "a timer does nothing until it is awaited"]
pub struct Timer {
    ctx: WorkflowContext,
    seq: u32,
    recorded: Option<JournalRecord>,
    due: Due,
}

impl IntoFuture for Timer {
    type Output = Result<(), WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let Self { ctx, seq, recorded, due } = self;
        Box::pin(async move {
            if ctx.is_fatal() {
                return std::future::pending().await;
            }
            let due = match recorded {
                Some(record) if record.status == RecordStatus::Completed => return Ok(()),
                Some(record) => record.due_at.unwrap_or(0),
                None => {
                    let due = match due {
                        Due::After(duration) => ctx.clock_now().saturating_add(millis(duration)),
                        Due::At(at) => at,
                    };
                    if !ctx.schedule(seq, StepKind::Timer, "sleep", Some(due), None).await {
                        return std::future::pending().await;
                    }
                    due
                }
            };
            if ctx.flush().await.is_err() {
                return std::future::pending().await;
            }
            {
                let _wait = ctx.waiting(seq, Some(due));
                ctx.engine().clock.sleep_until(due).await;
            }
            let mut record = ctx.new_record(seq, StepKind::Timer, "sleep", RecordStatus::Completed, None);
            record.due_at = Some(due);
            ctx.buffer(WriteOp::PutRecord(record));
            Ok(())
        })
    }
}

/// A wait for an external event; await it, optionally after `.timeout(d)`.
#[must_use = "an event wait does nothing until it is awaited"]
pub struct EventWait<T> {
    ctx: WorkflowContext,
    seq: u32,
    name: String,
    recorded: Option<JournalRecord>,
    timeout: Option<Duration>,
    _payload: PhantomData<fn() -> T>,
}

impl<T> EventWait<T> {
    /// Gives up after `limit` with [`WorkflowError::Timeout`]. A zero limit takes only an event
    /// that is already buffered.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
}

fn decode_event<T: DeserializeOwned>(name: &str, payload: &str) -> Result<T, WorkflowError> {
    serde_json::from_str(payload).map_err(|error| {
        WorkflowError::Serialization(format!(
            "the payload of event `{name}` does not deserialize into `{}`: {error}",
            std::any::type_name::<T>()
        ))
    })
}

impl<T: DeserializeOwned + Send + 'static> IntoFuture for EventWait<T> {
    type Output = Result<T, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let Self { ctx, seq, name, recorded, timeout, .. } = self;
        Box::pin(async move {
            if ctx.is_fatal() {
                return std::future::pending().await;
            }
            let timed_out = || WorkflowError::Timeout { operation: format!("event `{name}`") };
            let due = match recorded {
                Some(record) if record.status == RecordStatus::Completed => {
                    return decode_event(&name, record.payload.as_deref().unwrap_or("null"));
                }
                Some(record) if record.status == RecordStatus::Failed => return Err(timed_out()),
                Some(record) => record.due_at,
                None => match timeout {
                    Some(limit) if !limit.is_zero() => {
                        let due = ctx.clock_now().saturating_add(millis(limit));
                        if !ctx.schedule(seq, StepKind::Event, &name, Some(due), None).await {
                            return std::future::pending().await;
                        }
                        Some(due)
                    }
                    Some(_) => Some(ctx.clock_now()),
                    None => None,
                },
            };
            let _wait = ctx.waiting(seq, due);
            let engine = ctx.engine().clone();
            let signal = ctx.inbox_signal();
            loop {
                let notified = signal.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let events = match engine.store.events(ctx.instance_id()).await {
                    Ok(events) => events,
                    Err(error) => {
                        ctx.fail(Fatal::Abandon(format!("could not read the inbox: {error}")));
                        return std::future::pending().await;
                    }
                };
                let taken = {
                    let mut state = ctx.state();
                    state.seen_events.extend(events.iter().map(|e| e.event_id));
                    let found = events
                        .into_iter()
                        .find(|e| e.name.eq_ignore_ascii_case(&name) && !state.taken_events.contains(&e.event_id));
                    if let Some(event) = &found {
                        state.taken_events.insert(event.event_id);
                    }
                    found
                };
                if let Some(event) = taken {
                    let record = ctx.new_record(
                        seq,
                        StepKind::Event,
                        &name,
                        RecordStatus::Completed,
                        Some(event.payload.clone()),
                    );
                    let consume = WriteOp::ConsumeEvent {
                        instance_id: ctx.instance_id().to_owned(),
                        event_id: event.event_id,
                        generation: ctx.generation(),
                        seq,
                    };
                    // Taken here, consumed in the store with the next commit (atomically with the
                    // record): a crash before it leaves the event in the inbox for the replay.
                    ctx.buffer(WriteOp::PutRecord(record));
                    ctx.buffer(consume);
                    return decode_event(&event.name, &event.payload);
                }
                if let Some(due) = due {
                    if ctx.clock_now() >= due {
                        let failure =
                            StoredFailure { message: format!("timed out waiting for event `{name}`"), attempts: 1 };
                        let payload = serde_json::to_string(&failure).ok();
                        let record = ctx.new_record(seq, StepKind::Event, &name, RecordStatus::Failed, payload);
                        ctx.buffer(WriteOp::PutRecord(record));
                        return Err(timed_out());
                    }
                }
                if ctx.flush().await.is_err() {
                    return std::future::pending().await;
                }
                let deadline = async {
                    match due {
                        Some(due) => engine.clock.sleep_until(due).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = notified => {}
                    () = deadline => {}
                    () = tokio::time::sleep(EVENT_POLL) => {}
                }
            }
        })
    }
}

/// Two durable operations racing; await it for the winner.
#[must_use = "a race does nothing until it is awaited"]
pub struct Race<A, B> {
    ctx: WorkflowContext,
    seq: u32,
    recorded: Option<JournalRecord>,
    first: A,
    second: B,
}

impl<A, B> IntoFuture for Race<A, B>
where
    A: IntoFuture + Send + 'static,
    B: IntoFuture + Send + 'static,
    A::IntoFuture: Send,
    B::IntoFuture: Send,
    A::Output: Send,
    B::Output: Send,
{
    type Output = Either<A::Output, B::Output>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let Self { ctx, seq, recorded, first, second } = self;
        Box::pin(async move {
            if ctx.is_fatal() {
                return std::future::pending().await;
            }
            if let Some(record) = recorded {
                return match record.payload.as_deref() {
                    Some("0") => Either::First(first.await),
                    Some("1") => Either::Second(second.await),
                    other => {
                        ctx.corrupt(seq, format!("race winner `{}` is neither 0 nor 1", other.unwrap_or("")));
                        std::future::pending().await
                    }
                };
            }
            let first = first.into_future();
            let second = second.into_future();
            let (index, outcome) = tokio::select! {
                biased;
                out = first => ("0", Either::First(out)),
                out = second => ("1", Either::Second(out)),
            };
            let record = ctx.new_record(seq, StepKind::Race, "race", RecordStatus::Completed, Some(index.to_owned()));
            ctx.buffer(WriteOp::PutRecord(record));
            outcome
        })
    }
}

/// A child workflow call; await it for the child's output.
#[must_use = "a child workflow call does nothing until it is awaited"]
pub struct ChildCall<W: WorkflowDef> {
    ctx: WorkflowContext,
    seq: u32,
    input: Result<String, WorkflowError>,
    recorded: Option<JournalRecord>,
    _workflow: PhantomData<fn() -> W>,
}

impl<W: WorkflowDef> ChildCall<W> {
    /// The child's instance id: derived from the parent's id, generation and the call's seq, so
    /// it is the same on every replay and differs across continue-as-new generations.
    pub fn instance_id(&self) -> String {
        child_instance_id(self.ctx.instance_id(), self.ctx.generation(), self.seq)
    }
}

fn child_instance_id(parent: &str, generation: u32, seq: u32) -> String {
    let suffix = format!("-g{generation}-c{seq}");
    if parent.len() + suffix.len() <= crate::MAX_INSTANCE_ID_LEN {
        return format!("{parent}{suffix}");
    }
    // Keep ids within the limit: a readable prefix and a hash of the whole parent id.
    let hash = parent.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let keep = crate::MAX_INSTANCE_ID_LEN - suffix.len() - 17;
    format!("{}-{hash:016x}{suffix}", &parent[..keep])
}

impl<W: WorkflowDef> IntoFuture for ChildCall<W> {
    type Output = Result<W::Output, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let child_id = self.instance_id();
        let Self { ctx, seq, input, recorded, .. } = self;
        Box::pin(async move {
            if ctx.is_fatal() {
                return std::future::pending().await;
            }
            let child_failed = |message: String| WorkflowError::Child {
                workflow: W::NAME.to_owned(),
                instance_id: child_id.clone(),
                message,
            };
            match recorded.as_ref().map(|r| r.status) {
                Some(RecordStatus::Completed) => {
                    let payload = recorded.and_then(|r| r.payload).unwrap_or_else(|| "null".into());
                    return decode_child::<W>(&ctx, seq, &payload);
                }
                Some(RecordStatus::Failed) => {
                    let payload = recorded.and_then(|r| r.payload).unwrap_or_default();
                    return Err(child_failed(FailureDetails::parse(&payload).message));
                }
                Some(_) => {}
                None => {
                    let input = input?;
                    let engine = ctx.engine().clone();
                    let child = InstanceRecord {
                        parent_id: Some(ctx.instance_id().to_owned()),
                        ..InstanceRecord::pending(child_id.clone(), W::NAME, input, ctx.clock_now())
                    };
                    let link = ctx.new_record(
                        seq,
                        StepKind::Child,
                        W::NAME,
                        RecordStatus::Scheduled,
                        serde_json::to_string(&child_id).ok(),
                    );
                    let mut ops = ctx.take_fenced_batch();
                    ops.push(WriteOp::PutRecord(link));
                    if let Err(error) = engine.start_instance(child, ops).await {
                        if !matches!(error, crate::Error::InstanceExists(_)) {
                            ctx.fail(Fatal::Abandon(format!("could not start child `{child_id}`: {error}")));
                            return std::future::pending().await;
                        }
                    }
                }
            }
            if ctx.flush().await.is_err() {
                return std::future::pending().await;
            }
            let _wait = ctx.waiting(seq, None);
            ctx.state().children.insert(seq, child_id.clone());
            let engine = ctx.engine().clone();
            let finished = loop {
                let notified = engine.completions.subscribe(&child_id);
                match engine.store.instance(&child_id).await {
                    Ok(Some(child)) if child.status.is_terminal() => break child,
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        ctx.fail(Fatal::Fail(FailureDetails {
                            error_type: "ChildMissing".into(),
                            message: format!("child instance `{child_id}` at seq {seq} does not exist"),
                        }));
                        return std::future::pending().await;
                    }
                    Err(error) => {
                        ctx.fail(Fatal::Abandon(format!("could not read child `{child_id}`: {error}")));
                        return std::future::pending().await;
                    }
                }
                let _ = tokio::time::timeout(CHILD_POLL, notified).await;
            };
            let (status, payload, result) = match finished.status {
                RuntimeStatus::Completed => {
                    let output = finished.output.unwrap_or_else(|| "null".into());
                    (RecordStatus::Completed, output.clone(), Ok(output))
                }
                other => {
                    let details =
                        finished.error.as_deref().map(FailureDetails::parse).unwrap_or_else(|| FailureDetails {
                            error_type: other.as_str().to_owned(),
                            message: format!("the child ended {}", other.as_str()),
                        });
                    (RecordStatus::Failed, details.to_stored(), Err(details.message))
                }
            };
            let record = ctx.new_record(seq, StepKind::Child, W::NAME, status, Some(payload));
            ctx.buffer(WriteOp::PutRecord(record));
            match result {
                Ok(output) => decode_child::<W>(&ctx, seq, &output),
                Err(message) => Err(child_failed(message)),
            }
        })
    }
}

fn decode_child<W: WorkflowDef>(ctx: &WorkflowContext, seq: u32, payload: &str) -> Result<W::Output, WorkflowError> {
    serde_json::from_str(payload).map_err(|error| {
        ctx.corrupt(seq, format!("output of child workflow `{}` does not deserialize: {error}", W::NAME));
        WorkflowError::Serialization(error.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::child_instance_id;

    #[test]
    fn child_ids_are_stable_valid_and_bounded() {
        assert_eq!(child_instance_id("order-1", 0, 3), "order-1-g0-c3");
        let long = "x".repeat(64);
        let id = child_instance_id(&long, 12, 4000);
        assert!(id.len() <= 64, "{id}");
        assert!(crate::validate_instance_id(&id).is_ok());
        assert_eq!(id, child_instance_id(&long, 12, 4000));
        assert_ne!(id, child_instance_id(&long, 13, 4000));
    }
}
