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
mod model;
pub mod store;
mod worker;
mod workflow;

pub use activity::{ActivityContext, ActivityDef, ActivityDispatch, ActivityOptions, RetryPolicy};
pub use client::{
    validate_instance_id, Client, Handle, HistoryEvent, InstancePage, InstanceStatus, ListFilter, Purge,
    RetentionPolicy, ReusePolicy, Start, Terminate, MAX_INSTANCE_ID_LEN, MAX_PAGE_SIZE,
};
pub use error::{ActivityError, Error, FailureDetails, WorkflowError};
pub use model::time::rfc3339;
pub use model::{BoxFuture, EventRecord, JournalRecord, Millis, Payload, RecordStatus, RuntimeStatus, StepKind};
pub use store::{MemoryStore, StoreError};
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

    /// Fails to compile unless `T` can cross a durable boundary; spanned on the user's type.
    pub const fn assert_payload<T: crate::Payload>() {}
}
