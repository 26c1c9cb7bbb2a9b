//! What a workflow body calls: [`WorkflowContext`] and the durable operations it hands out.
//!
//! - `run.rs`: one run's replay cursor, buffered ops and flush/commit (the rule: an outcome is
//!   committed by the next flush, before anything outside the workflow can see it).
//! - `activity_call.rs`: activity calls and their retry loop; `fan_out.rs`: calls in parallel.
//! - `timer.rs`, `event.rs`, `child.rs`, `race.rs`: the other durable operations.

mod activity_call;
mod child;
mod event;
mod fan_out;
mod race;
mod run;
mod timer;

use std::fmt;
use std::future::IntoFuture;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use activity_call::ActivityCall;
pub use child::ChildCall;
pub use event::EventWait;
pub use fan_out::FanOut;
pub use race::{Either, Race};
use run::InstanceShared;
pub(crate) use run::{Fatal, IdleWaits};
pub use timer::Timer;

use crate::activity::ActivityDef;
use crate::error::{FailureDetails, WorkflowError};
use crate::model::time::millis;
use crate::model::{BoxFuture, Payload};
use crate::store::{RecordStatus, StepKind, WriteOp};
use timer::Due;

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
        let input_value = input;
        let input = serde_json::to_string(&input_value).map_err(|e| WorkflowError::Serialization(e.to_string()));
        let (seq, recorded) = self.reserve(StepKind::Activity, A::NAME);
        let input = self.bounded_input(input, recorded.is_some(), || format!("the input of activity `{}`", A::NAME));
        let concurrency_key = A::concurrency_key(&input_value);
        ActivityCall {
            ctx: self.clone(),
            seq,
            input,
            concurrency_key,
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
        let concurrency_key = W::concurrency_key(&input);
        let input = serde_json::to_string(&input).map_err(|e| WorkflowError::Serialization(e.to_string()));
        let (seq, recorded) = self.reserve(StepKind::Child, W::NAME);
        let input =
            self.bounded_input(input, recorded.is_some(), || format!("the input of child workflow `{}`", W::NAME));
        ChildCall { ctx: self.clone(), seq, input, concurrency_key, recorded, _workflow: PhantomData }
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
        self.engine()
            .limits()
            .check_payload(&input)
            .map_err(|size| size.workflow_error("the input of continue-as-new"))?;
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
    /// recorded before the change. The choice is recorded, so it never flips for an instance:
    /// the first ask of a `change_id` fixes the answer for every later ask of it in the run and
    /// its replays (an instance that met its old journal here stays on the old path past that
    /// journal's end), except that a journal records what it records (a true written here by an
    /// earlier build replays as true).
    ///
    /// ```ignore
    /// if ctx.patched("charge-before-ship") { charge::call(&ctx, o).await?; }
    /// ```
    pub fn patched(&self, change_id: &str) -> bool {
        let mut state = self.state();
        let seq = state.next_seq;
        let recorded_here =
            state.replay.get(&seq).is_some_and(|record| record.kind == StepKind::Patch && record.name == change_id);
        let answer = match (state.patches.get(change_id).copied(), state.replay.get(&seq)) {
            (_, Some(_)) if recorded_here => {
                state.replay.remove(&seq);
                state.next_seq += 1;
                true
            }
            // Answered false before in this run (an instance older than the change): false for
            // the rest of it, even past the end of its journal, and the seq stays unused.
            (Some(false), _) => false,
            // A journal recorded before the change: the old path, and the seq stays unused.
            (_, Some(_)) => false,
            (_, None) => {
                state.next_seq += 1;
                drop(state);
                let record =
                    self.new_record(seq, StepKind::Patch, change_id, RecordStatus::Completed, Some("true".into()));
                self.buffer(WriteOp::PutRecord(record));
                state = self.state();
                true
            }
        };
        state.patches.entry(change_id.to_owned()).or_insert(answer);
        answer
    }

    /// Sets a status text for observers (shown by `Client::status`); written with the next step.
    /// A status over the payload limit ([`Limits::max_payload_bytes`](crate::Limits::max_payload_bytes))
    /// is not written: it fails the instance, with error type `PayloadTooLarge`.
    pub fn set_custom_status<S: Serialize>(&self, status: &S) {
        let custom_status = serde_json::to_string(status).ok();
        if let Some(Err(size)) = custom_status.as_deref().map(|text| self.engine().limits().check_payload(text)) {
            let error = size.workflow_error("the custom status");
            self.fail(Fatal::Fail(FailureDetails {
                error_type: error.error_type().to_owned(),
                message: error.to_string(),
            }));
            return;
        }
        self.state().custom_status = Some(custom_status.clone());
        let updated_at = self.clock_now();
        self.buffer(WriteOp::SetCustomStatus { id: self.instance_id().to_owned(), custom_status, updated_at });
    }

    /// `input` unless it is over the payload limit and not recorded yet (a call a journal holds
    /// replays as it was recorded, whatever the limit is now).
    fn bounded_input(
        &self,
        input: Result<String, WorkflowError>,
        recorded: bool,
        what: impl FnOnce() -> String,
    ) -> Result<String, WorkflowError> {
        let input = input?;
        if !recorded {
            self.engine().limits().check_payload(&input).map_err(|size| size.workflow_error(what()))?;
        }
        Ok(input)
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
}

fn random_u64() -> u64 {
    // v4 UUIDs come from the OS's random source.
    let bits = uuid::Uuid::new_v4().as_u128();
    (bits >> 64) as u64 ^ bits as u64
}

/// A workflow: a deterministic async function whose durable operations are journaled.
///
/// `#[workflow]` implements this for a generated unit struct `<fn name>::Workflow`.
pub trait WorkflowDef: Send + Sync + 'static {
    /// The input type.
    type Input: Payload;
    /// The output type.
    type Output: Payload;
    /// The registered name (the function's name).
    const NAME: &'static str;
    /// The claim priority its instances start with unless a start sets one
    /// ([`Start::priority`](crate::client::Start::priority)): `#[workflow(priority = N)]`, 0 by
    /// default.
    const PRIORITY: i32 = 0;
    /// The most instances of it that run at once across every worker on the store
    /// (`#[workflow(concurrency = N)]`); `None` (the default): no cap. An instance runs while it
    /// holds a lease (in memory on some worker, waiting there too); one evicted while it waits
    /// frees its place until it is claimed again.
    const CONCURRENCY: Option<u32> = None;
    /// The most instances of it that start in any window of the period across every worker on
    /// the store (`#[workflow(rate = "10/1s")]`); `None` (the default): no limit. A start is the
    /// first claim of an instance that has not run yet; a claim that resumes one (after a wait,
    /// an eviction or a crash) is not.
    const RATE: Option<crate::RateLimit> = None;
    /// Whether its cap and rate count per concurrency key ([`WorkflowDef::concurrency_key`]):
    /// set by `#[workflow(concurrency(limit = N, key = ...))]` or
    /// `#[workflow(rate(limit = "N/period", key = ...))]`. `false` (the default): they count
    /// every instance of the workflow together.
    const KEYED: bool = false;
    /// The concurrency key of an instance started with `input`, computed once at its start:
    /// under a keyed cap or rate, instances with the same key share it and instances with
    /// different keys are limited apart (one tenant cannot starve another). Empty by default.
    fn concurrency_key(input: &Self::Input) -> String {
        let _ = input;
        String::new()
    }
    /// Runs (or replays) the workflow body.
    fn run(ctx: WorkflowContext, input: Self::Input) -> BoxFuture<'static, Result<Self::Output, WorkflowError>>;
}
