//! The single writer connection: taking it (rolling back first what a dropped write left open),
//! its transactions begun and ended outside sqlx's bookkeeping, and ending a failed write.

use std::sync::atomic::Ordering;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnection};
use workflow_core::store::StoreError;

use super::batch::{is_fenced, refusal, Failure};
use super::{backend, SqliteStore};
use crate::shared::plan::Plan;

/// Whether `error` says there was no transaction to roll back.
fn no_transaction(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(error) if error.message().contains("no transaction is active"))
}

impl SqliteStore {
    /// The writer connection, with any transaction a dropped write left open rolled back first.
    pub(super) async fn writer(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        let mut conn = self.writer.acquire().await.map_err(backend("taking the writer connection"))?;
        if self.dangling.load(Ordering::Acquire) {
            self.roll_back(&mut conn).await?;
        }
        Ok(conn)
    }

    /// A read connection; for an in-memory database that is the writer, cleaned up as in
    /// [`SqliteStore::writer`] so a read never sees what a dropped write left uncommitted.
    pub(super) async fn reader(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        if self.in_memory {
            return self.writer().await;
        }
        self.reader.acquire().await.map_err(backend("taking a read connection"))
    }

    /// Rolls back the writer's transaction, if it is in one.
    async fn roll_back(&self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        match sqlx::query("ROLLBACK").execute(&mut *conn).await {
            Ok(_) => {}
            Err(error) if no_transaction(&error) => {}
            Err(error) => return Err(backend("rolling back a write")(error)),
        }
        self.dangling.store(false, Ordering::Release);
        Ok(())
    }

    /// Begins a transaction on the writer with `BEGIN IMMEDIATE` as a plain statement, outside
    /// sqlx's transaction bookkeeping: sqlx counts a transaction as begun when its `BEGIN` ran, so
    /// a future dropped while awaiting that answer (a runtime stopping its loops) would leave the
    /// connection counted in a transaction nobody rolls back, failing every later `begin` on it
    /// ("non-zero transaction depth"). Here `dangling` covers that: the writer's next user rolls
    /// back. End it with [`SqliteStore::end_immediate`].
    pub(super) async fn begin_immediate(
        &self,
        conn: &mut SqliteConnection,
        context: &'static str,
    ) -> Result<(), StoreError> {
        self.dangling.store(true, Ordering::Release);
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(backend(context))?;
        Ok(())
    }

    /// Ends what [`SqliteStore::begin_immediate`] began: commits it if `outcome` (what the
    /// transaction's statements returned) is `Ok`, rolls it back otherwise or if the commit fails.
    pub(super) async fn end_immediate<T>(
        &self,
        conn: &mut SqliteConnection,
        outcome: Result<T, StoreError>,
        context: &'static str,
    ) -> Result<T, StoreError> {
        let committed = match outcome {
            Ok(value) => sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| value).map_err(backend(context)),
            Err(error) => Err(error),
        };
        match committed {
            Ok(value) => {
                self.dangling.store(false, Ordering::Release);
                Ok(value)
            }
            Err(error) => {
                self.roll_back_or_leave(conn).await;
                Err(error)
            }
        }
    }

    /// Ends a failed write: reports why its checks refused it if they did (read in its
    /// transaction, where nothing else ran), and rolls it back.
    pub(super) async fn abandon(&self, conn: &mut SqliteConnection, plan: &Plan<'_>, failure: Failure) -> StoreError {
        let error = match failure {
            Failure::Statement(_, error) if is_fenced(&error) => match refusal(&mut *conn, plan).await {
                Ok(Some(refused)) => refused,
                Ok(None) => backend("checking leases and statuses")(error),
                Err(error) => error,
            },
            Failure::Statement(context, error) => backend(context)(error),
            Failure::Store(error) => error,
        };
        self.roll_back_or_leave(conn).await;
        error
    }

    /// Rolls back the writer's failed transaction; if that fails too, leaves it marked dangling
    /// for the writer's next user to roll back.
    async fn roll_back_or_leave(&self, conn: &mut SqliteConnection) {
        if let Err(rollback) = self.roll_back(conn).await {
            tracing::warn!(%rollback, "sqlite: could not roll back a failed write; the next write will try again");
        }
    }
}
