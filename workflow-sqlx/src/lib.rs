//! Database stores for the `workflow` crate, built on [sqlx]: each backend implements
//! [`workflow_core::store::Store`] directly, behind its own feature.
//!
//! - `sqlite` (the default): [`SqliteStore`], one file (or memory), WAL, one writer connection
//!   that applies each group-committed batch in one transaction.
//! - `postgres`: `PostgresStore`, a database any number of processes share (optionally in a schema
//!   of its own): a pool of connections, each batch one transaction of multi-row statements,
//!   claims with `FOR UPDATE SKIP LOCKED`, and wake signals across processes by LISTEN/NOTIFY.
//!
//! Both keep the task queue of distributed activities (`activity_tasks`) beside the instances and
//! their journals, written in the same batches, so queueing a task commits with the step that
//! decided it.
//!
//! Schemas ship as embedded, ordered migrations (`migrations/<backend>/`) that a store runs when it
//! opens, so opening a store on an empty database is all the setup there is.
//!
//! ```no_run
//! # async fn demo() -> Result<(), workflow_core::store::StoreError> {
//! use workflow_sqlx::SqliteStore;
//!
//! let store = SqliteStore::open("sqlite://workflows.db").await?;
//! # let _ = store;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod shared;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};
