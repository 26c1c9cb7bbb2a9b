//! The engine of the `workflow` crate: contexts, journal replay, retry policies, the runtime and
//! its workers, the client, the `Store` seam and an in-memory store.
//!
//! Users depend on the `workflow` facade crate, which re-exports this one.

mod attempt;
mod client;
mod clock;
mod committer;
mod context;
mod diagram;
mod durable;
mod engine;
mod error;
mod manage;
mod model;
mod registry;
mod retry;
mod runtime;
pub mod store;
mod tasks;

pub use client::{validate_instance_id, Client, Handle, InstanceStatus, MAX_INSTANCE_ID_LEN};
pub use clock::{Clock, SystemClock, VirtualClock};
pub use context::{ActivityCall, ActivityContext, FanOut, WorkflowContext};
pub use diagram::{render_mermaid, DiagramInstance, DiagramStep};
pub use durable::{ChildCall, Either, EventWait, Race, Timer};
pub use error::{ActivityError, Error, FailureDetails, WorkflowError};
pub use manage::{HistoryEvent, InstancePage, ListFilter, RetentionPolicy, ReusePolicy, MAX_PAGE_SIZE};
pub use model::time::rfc3339;
pub use registry::{ActivityDef, ActivityOptions, BoxFuture, Payload, WorkflowDef};
pub use retry::RetryPolicy;
pub use runtime::{Runtime, RuntimeBuilder};
pub use store::{
    EventRecord, InstanceQuery, InstanceRecord, JournalRecord, MemoryStore, Millis, RecordStatus, RuntimeStatus,
    StatsCounter, StepKind, Store, StoreError, StoreStats, TaskOutcome, TaskRecord, WakeSignal, WriteOp, WriteOutcome,
    NEVER,
};
pub use tasks::ActivityDispatch;

impl From<MemoryStore> for std::sync::Arc<dyn Store> {
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
