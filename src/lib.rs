#![doc = include_str!("../README.md")]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("enable at least one store feature of `workflow`: `sqlite` (the default) or `postgres`");

// The root is curated by hand: what workflow authors use. Store implementers' types live in
// `store`, diagram types in `diagram`.
pub use workflow_core::{diagram, metrics, store};
pub use workflow_core::{
    rfc3339, validate_instance_id, ActivityCall, ActivityContext, ActivityDef, ActivityDispatch, ActivityError,
    ActivityOptions, BoxFuture, CatchUp, ChildCall, Client, Clock, Either, Error, EventRecord, EventWait,
    FailureDetails, FanOut, Handle, HistoryEvent, InstancePage, InstanceStatus, JournalRecord, Limits, ListFilter,
    MemoryStore, Millis, Overlap, Payload, Purge, QueueKind, QueueStatus, QueuedActivity, QueuedState, Race, RateLimit,
    RecordStatus, RetentionPolicy, RetryPolicy, ReusePolicy, Runtime, RuntimeBuilder, RuntimeStatus, Schedule,
    ScheduleRun, ScheduleStatus, Start, StepKind, StoreError, SystemClock, Terminate, Timer, VirtualClock,
    WorkflowContext, WorkflowDef, WorkflowError, MAX_CATCH_UP, MAX_INSTANCE_ID_LEN, MAX_PAGE_SIZE, MAX_SCHEDULE_ID_LEN,
};
pub use workflow_macros::{activity, workflow};
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "postgres")]
pub use workflow_sqlx::{PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
pub use workflow_sqlx::{SqliteOptions, SqliteStore, Synchronous};

/// The names a workflow module usually needs: `use workflow::prelude::*;`.
pub mod prelude {
    pub use std::time::Duration;

    pub use workflow_core::{
        ActivityContext, ActivityError, Client, Either, Handle, MemoryStore, RetryPolicy, ReusePolicy, Runtime,
        RuntimeStatus, Schedule, VirtualClock, WorkflowContext, WorkflowError,
    };
    pub use workflow_macros::{activity, workflow};
    #[cfg(feature = "sqlite")]
    pub use workflow_sqlx::SqliteStore;
}

/// What the macros' generated code reaches through. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use workflow_core::__private::*;
    pub use workflow_core::{
        ActivityCall, ActivityContext, ActivityDef, ActivityError, ActivityOptions, BoxFuture, ChildCall, Client,
        Error, FanOut, Handle, RateLimit, RetryPolicy, Start, WorkflowContext, WorkflowDef, WorkflowError,
    };
}
