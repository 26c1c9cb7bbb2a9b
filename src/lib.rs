#![doc = include_str!("../README.md")]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("enable at least one store feature of `workflow`: `sqlite` (the default) or `postgres`");

pub use workflow_core::*;
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
        ActivityContext, ActivityError, Client, Either, Handle, MemoryStore, RetryPolicy, Runtime, RuntimeStatus,
        VirtualClock, WorkflowContext, WorkflowError,
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
        Error, FanOut, Handle, RetryPolicy, WorkflowContext, WorkflowDef, WorkflowError,
    };
}
