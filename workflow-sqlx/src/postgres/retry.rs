//! Failure classification and retry: a failed statement as a [`Failure`] (what it was doing and the
//! database's error, or the store's own error), whether trying its transaction again may succeed,
//! and [`retrying`] it.
//!
//! Two kinds of failure are tried again. A deadlock or a serialization failure: PostgreSQL rolled
//! the transaction back, so it did nothing. And the server going away (restarting, shutting down,
//! not yet accepting connections, a connection it terminated): the pool's connections to the old
//! server fail once each and are dropped, and new ones wait until the server is back. A write is
//! tried again only when the server said why it gave up (a statement answered with an error was
//! not committed); a connection that broke without a word leaves a write in doubt, so that is
//! returned to the engine, which reads back what was committed. A read, or a write that is the
//! same whether it ran once or twice ([`retrying_idempotent`]), is tried again either way.

use std::future::Future;
use std::time::Duration;

use workflow_core::store::StoreError;

/// How many times a write is tried when PostgreSQL rolls it back for a deadlock or a
/// serialization failure (the transaction did nothing, so trying again is exact).
const ATTEMPTS: u32 = 5;

/// How long a call keeps trying while the server is away (a restart takes a few seconds; the pool
/// itself waits up to its acquire timeout for a new connection).
const OUTAGE_LIMIT: Duration = Duration::from_secs(30);

/// The longest pause between two tries while the server is away.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A failed statement: what it was doing, and whether trying the transaction again may succeed.
pub(super) enum Failure {
    Database { context: &'static str, error: sqlx::Error },
    Store(StoreError),
}

impl Failure {
    /// A deadlock or serialization failure: PostgreSQL rolled the transaction back, so it did
    /// nothing, and another try may go through.
    fn is_conflict(&self) -> bool {
        match self {
            Failure::Database { error, .. } => matches!(sql_state(error).as_deref(), Some("40P01" | "40001")),
            Failure::Store(_) => false,
        }
    }

    /// The server went away and said so (or was never reached): nothing of the statement was
    /// committed, and a try on a new connection may go through once the server is back.
    fn is_server_gone(&self) -> bool {
        match self {
            Failure::Database { error: sqlx::Error::PoolTimedOut, .. } => true,
            Failure::Database { error, .. } => sql_state(error).is_some_and(|state| {
                // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections, and
                // the connection exceptions (class 08).
                matches!(state.as_str(), "57P01" | "57P02" | "57P03" | "53300") || state.starts_with("08")
            }),
            Failure::Store(_) => false,
        }
    }

    /// The connection broke without the server saying why (or the server went away): a read may
    /// simply be tried again.
    fn is_connection_lost(&self) -> bool {
        match self {
            Failure::Database { error, .. } => {
                self.is_server_gone()
                    || matches!(error, sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_))
            }
            Failure::Store(_) => false,
        }
    }
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Database { context, error } => StoreError::Backend(format!("postgres: {context}: {error}")),
            Failure::Store(error) => error,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Database { context, error } => write!(f, "{context}: {error}"),
            Failure::Store(error) => write!(f, "{error}"),
        }
    }
}

pub(super) fn failed(context: &'static str) -> impl Fn(sqlx::Error) -> Failure {
    move |error| Failure::Database { context, error }
}

pub(super) fn sql_state(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(error) => error.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// Runs `attempt` (a transaction, or one statement) until it succeeds or fails for good: tried
/// again after a conflict (up to [`ATTEMPTS`] times) and while the server is away and said so (up
/// to [`OUTAGE_LIMIT`]).
pub(super) async fn retrying<T, F, Fut>(attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    retry(attempt, Failure::is_server_gone).await
}

/// [`retrying`] for a read, or a write that is the same whether it ran once or twice: also tried
/// again after a connection broke without a word.
pub(super) async fn retrying_idempotent<T, F, Fut>(attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    retry(attempt, Failure::is_connection_lost).await
}

async fn retry<T, F, Fut>(mut attempt: F, outage: fn(&Failure) -> bool) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut conflicts = 1;
    let mut outage_since: Option<std::time::Instant> = None;
    let mut pause = Duration::from_millis(20);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(failure) if failure.is_conflict() && conflicts < ATTEMPTS => {
                tracing::debug!(conflicts, %failure, "postgres: transaction rolled back by a conflict; trying again");
                tokio::time::sleep(Duration::from_millis(5_u64 << conflicts)).await;
                conflicts += 1;
            }
            Err(failure)
                if outage(&failure)
                    && outage_since.get_or_insert_with(std::time::Instant::now).elapsed() < OUTAGE_LIMIT =>
            {
                tracing::warn!(%failure, retry_in = ?pause, "postgres: the server is unreachable; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(failure) => return Err(failure.into()),
        }
    }
}
