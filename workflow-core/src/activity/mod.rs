//! Activities: what one attempt knows about itself ([`ActivityContext`]), the attempt runner
//! (timeouts, heartbeats, panics), retry policies, and the queue that runs attempts on any
//! worker sharing the store.

mod attempt;
mod cap_slots;
mod queue;
mod retry;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub(crate) use attempt::{run_attempt, Attempt};
pub(crate) use cap_slots::{CapSlot, CapSlots};
pub use queue::ActivityDispatch;
pub(crate) use queue::{completion_loop, outcome_loop, task_loop, TaskHub};
pub use retry::RetryPolicy;

use crate::error::ActivityError;
use crate::model::{time, BoxFuture, Payload};

/// Per-attempt limits of an activity. A timed-out attempt counts as a failed attempt under the
/// retry policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActivityOptions {
    /// The longest one attempt may run.
    pub start_to_close: Option<std::time::Duration>,
    /// The longest an attempt may go without calling [`ActivityContext::heartbeat`].
    pub heartbeat_timeout: Option<std::time::Duration>,
}

/// An activity: a step of a workflow, run at least once, its outcome journaled.
///
/// `#[activity]` implements this for a generated unit struct `<fn name>::Activity`.
pub trait ActivityDef: Send + Sync + 'static {
    /// The input type.
    type Input: Payload;
    /// The output type.
    type Output: Payload;
    /// The registered name (the function's name).
    const NAME: &'static str;
    /// The retry policy used when a call does not override it.
    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
    }
    /// Timeouts used when a call does not override them.
    fn options() -> ActivityOptions {
        ActivityOptions::default()
    }
    /// The most attempts of this activity that run at once across every worker on the store, per
    /// concurrency key ([`ActivityDef::concurrency_key`]); `None` for no cap. A capped activity's
    /// attempts run in a worker's slots of the cap while it has room (taken from the store, where
    /// they are counted with everything else), and through the store's task queue otherwise: set
    /// it with `#[activity(concurrency = N)]` or `#[activity(concurrency(limit = N, key = ...))]`.
    const CONCURRENCY: Option<u32> = None;
    /// The most attempts of this activity that start in any window of the period across every
    /// worker, per concurrency key; `None` for no limit. It sends every attempt through the task
    /// queue, where each start is counted and an attempt past the limit waits as a queued task: set it
    /// with `#[activity(rate = "50/1s")]` or `#[activity(rate(limit = "5/1s", key = ...))]`.
    const RATE: Option<crate::RateLimit> = None;
    /// The concurrency key of a call with `input`: under a cap, calls with the same key share
    /// it and calls with different keys are capped apart (one tenant cannot starve another).
    /// The empty key (the default) makes the cap global.
    fn concurrency_key(input: &Self::Input) -> String {
        let _ = input;
        String::new()
    }
    /// Runs one attempt.
    fn run(ctx: ActivityContext, input: Self::Input) -> BoxFuture<'static, Result<Self::Output, ActivityError>>;
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
