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
