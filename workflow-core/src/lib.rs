//! The engine of the `workflow` crate. Users depend on the `workflow` facade crate, which
//! re-exports this one.
//!
//! Laid out by owner, each concept one hop from here:
//! - [`workflow`](crate::WorkflowContext) (`workflow/`): what a workflow body calls: the context,
//!   its replay cursor and flush/commit, activity calls with their retry loop, fan-out, timers,
//!   events, children, races;
//! - `activity/`: [`ActivityContext`], the attempt runner, retry policies, queued attempts;
//! - `worker/`: [`Runtime`] and its builder, the engine state (private), the driver that runs an
//!   instance, the background loops, the group committer, clocks, the registry;
//! - `client/`: [`Client`], [`Handle`], the [`Start`] builder, statuses, management, listing;
//! - [`store`]: the `Store` trait and its types (for store implementers), the memory store;
//! - `model/`: records, statuses, [`StepKind`], the one payload codec, time;
//! - [`diagram`]: an instance's journal drawn as a Mermaid flowchart.
//!
//! The root holds what workflow authors use; store implementers find theirs under [`store`].

mod activity;
mod client;
pub mod diagram;
mod error;
mod limits;
pub mod metrics;
mod model;
mod schedule;
pub mod store;
mod worker;
mod workflow;

pub use activity::{ActivityContext, ActivityDef, ActivityDispatch, ActivityOptions, RetryPolicy};
pub use client::{
    validate_instance_id, Client, Handle, HistoryEvent, InstancePage, InstanceStatus, ListFilter, Purge, QueueStatus,
    QueuedActivity, QueuedState, RetentionPolicy, ReusePolicy, Start, Terminate, MAX_INSTANCE_ID_LEN, MAX_PAGE_SIZE,
};
pub use error::{ActivityError, Error, FailureDetails, WorkflowError};
pub use limits::{Limits, DEFAULT_MAX_INBOX_BYTES, DEFAULT_MAX_INBOX_EVENTS, DEFAULT_MAX_PAYLOAD_BYTES};
pub use model::time::rfc3339;
pub use model::{BoxFuture, EventRecord, JournalRecord, Millis, Payload, RecordStatus, RuntimeStatus, StepKind};
pub use schedule::{CatchUp, Overlap, Schedule, ScheduleRun, ScheduleStatus, MAX_CATCH_UP, MAX_SCHEDULE_ID_LEN};
pub use store::{MemoryStore, QueueKind, RateLimit, StoreError};
pub use worker::{Clock, Runtime, RuntimeBuilder, SystemClock, VirtualClock};
pub use workflow::{ActivityCall, ChildCall, Either, EventWait, FanOut, Race, Timer, WorkflowContext, WorkflowDef};

impl From<MemoryStore> for std::sync::Arc<dyn store::Store> {
    fn from(store: MemoryStore) -> Self {
        std::sync::Arc::new(store)
    }
}

/// What the macros' generated code uses. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    /// Boxes a future for [`crate::ActivityDef::run`] and [`crate::WorkflowDef::run`].
    pub fn boxed<'a, T>(future: impl std::future::Future<Output = T> + Send + 'a) -> crate::BoxFuture<'a, T> {
        Box::pin(future)
    }

    /// A supertrait of [`crate::Payload`], implemented for every `Payload`, whose only purpose is
    /// the compile error for a type that is not one.
    ///
    /// rustc checks `type Input = NotSerde;` against `type Input: Payload` with every bound
    /// `Payload` implies, in order, after normalizing each. The implied `<NotSerde as
    /// PayloadCheck>::Checked: Send` fails to normalize (this impl needs `NotSerde: Payload`),
    /// and rustc then reports that failure alone: the unmet `Payload`, with its own message (the
    /// `Payload` impl is `do_not_recommend`), instead of the implied `Serialize` and
    /// `DeserializeOwned` bounds, each with a list of the types that implement it. `Send` is
    /// required here first so that a type that is not `Send` is still reported as such, naming
    /// the field that is not.
    pub trait PayloadCheck {
        /// `Self`.
        type Checked;
    }

    impl<T: Send + crate::Payload> PayloadCheck for T {
        type Checked = T;
    }

    /// Fails to compile unless `Type` can cross a durable boundary. The macros implement it for a
    /// local type with `Type` = the user's input or output type, spanned on it: the check (and the
    /// error) is the one of the `Input` and `Output` of the generated `ActivityDef` or
    /// `WorkflowDef` impl, so rustc prints one error, on the user's type, for both.
    pub trait AssertPayload {
        /// The user's type.
        type Type: crate::Payload;
    }
}
