//! Failure classification and retry: a failed statement as a [`Failure`] (what it was doing and the
//! database's error, or the store's own error), whether trying its transaction again may succeed (a
//! deadlock or a serialization failure, which PostgreSQL rolled back), and [`retrying`] it.

use std::future::Future;
use std::time::Duration;

use workflow_core::store::StoreError;

/// How many times a write is tried when PostgreSQL rolls it back for a deadlock or a
/// serialization failure (the transaction did nothing, so trying again is exact).
const ATTEMPTS: u32 = 5;

/// A failed statement: what it was doing, and whether trying the transaction again may succeed.
pub(super) enum Failure {
    Database { context: &'static str, error: sqlx::Error },
    Store(StoreError),
}

impl Failure {
    /// A deadlock or serialization failure: PostgreSQL rolled the transaction back, so it did
    /// nothing, and another try may go through.
    fn is_transient(&self) -> bool {
        match self {
            Failure::Database { error, .. } => matches!(sql_state(error).as_deref(), Some("40P01" | "40001")),
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

/// Runs `attempt` until it succeeds, fails for good, or has failed transiently [`ATTEMPTS`]
/// times.
pub(super) async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(failure) if failure.is_transient() && tries < ATTEMPTS => {
                tracing::debug!(tries, %failure, "postgres: transaction rolled back by a conflict; trying again");
                tokio::time::sleep(Duration::from_millis(5_u64 << tries)).await;
                tries += 1;
            }
            Err(failure) => return Err(failure.into()),
        }
    }
}
