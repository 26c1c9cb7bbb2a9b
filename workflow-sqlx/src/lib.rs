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
//! The source is laid out by concern, one file each:
//!
//! - `shared/`: what both backends use. `list.rs`, the statement of a list query; `plan.rs`, a
//!   write batch regrouped into layers of multi-row statements; `rows.rs`, the column lists and
//!   reading rows back into records; `order.rs`, the orders records are returned in.
//! - `sqlite/`: `mod.rs`, [`SqliteStore`] and its `Store` impl; `options.rs`, [`SqliteOptions`],
//!   the URL and opening; `writer.rs`, the one writer connection, its transactions and the
//!   rollback of a dropped write; `batch.rs`, a batch as statements of a few shapes in one
//!   transaction; `sql.rs`, those shapes' SQL and the fence trigger; `bind.rs`, binding their
//!   rows; `claims.rs`, claims, leases and task completion.
//! - `postgres/`: `mod.rs`, `PostgresStore` and its `Store` impl; `options.rs`, `PostgresOptions`,
//!   the URL, schema and opening; `signals.rs`, LISTEN/NOTIFY and the wake signals a batch sends;
//!   `retry.rs`, failure classification and retrying a transaction; `checks.rs`, refusing text
//!   PostgreSQL cannot store (NUL); `sql.rs`, the SQL text; `batch.rs`, a batch in a transaction;
//!   `statement.rs`, a one-layer batch as one statement, and `cache.rs`, its text by shape;
//!   `bind.rs`, binding a layer's rows as arrays; `claims.rs`, claims, leases and task completion.
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
