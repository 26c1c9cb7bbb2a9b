//! Options and opening: [`Synchronous`], [`SqliteOptions`], the URL check, and connecting the
//! writer (which creates the file, switches it to WAL and migrates it) and the readers.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use workflow_core::store::StoreError;

use super::sql::FENCE_SETUP;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Synchronous {
    /// `synchronous=FULL` (the default): every commit is on disk before it returns, so a
    /// committed step survives a power cut.
    #[default]
    Full,
    /// `synchronous=NORMAL`: the WAL is synced only at checkpoints. A commit survives the process
    /// crashing, but the last commits may be lost if the machine loses power. Faster commits.
    Normal,
}

/// Options for [`SqliteStore::open_with`]; [`SqliteOptions::default`] is what
/// [`SqliteStore::open`] uses.
///
/// [`SqliteStore::open_with`]: super::SqliteStore::open_with
/// [`SqliteStore::open`]: super::SqliteStore::open
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    synchronous: Synchronous,
    busy_timeout: Duration,
    read_connections: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { synchronous: Synchronous::Full, busy_timeout: Duration::from_secs(5), read_connections: 4 }
    }
}

impl SqliteOptions {
    /// The defaults: `synchronous=FULL`, a 5 s busy timeout, 4 read connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how durable a commit is (see [`Synchronous`]).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Sets how long a statement waits for another process's lock before failing
    /// (`PRAGMA busy_timeout`).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets how many connections serve reads (at least 1). An in-memory database uses its one
    /// writer connection for everything and ignores this.
    pub fn read_connections(mut self, connections: u32) -> Self {
        self.read_connections = connections.max(1);
        self
    }
}

/// Checks the scheme (sqlx alone would read any string as a file name) and parses the rest.
/// Returns the options and whether the database is in memory.
fn parse_url(url: &str) -> Result<(SqliteConnectOptions, bool), StoreError> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(StoreError::Config(format!(
            "expected a SQLite URL (`sqlite://path`, `sqlite:path` or `sqlite::memory:`), got {url:?}"
        )));
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (database, params) = rest.split_once('?').map_or((rest, None), |(database, params)| (database, Some(params)));
    let in_memory =
        database == ":memory:" || params.is_some_and(|params| params.split('&').any(|pair| pair == "mode=memory"));
    if database.is_empty() && !in_memory {
        return Err(StoreError::Config(format!("the SQLite URL {url:?} names no database file")));
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|error| StoreError::Config(format!("invalid SQLite URL {url:?}: {error}")))?;
    Ok((options, in_memory))
}

/// Opens the database at `url` with `options`, creating it if missing, and brings its schema up to
/// date; returns the writer's pool of one connection, the readers' pool (the writer's for an
/// in-memory database) and the database file's path (`None` for an in-memory database).
pub(super) async fn connect(
    url: &str,
    options: &SqliteOptions,
) -> Result<(SqlitePool, SqlitePool, Option<PathBuf>), StoreError> {
    let (connect, in_memory) = parse_url(url)?;
    let database = (!in_memory).then(|| connect.get_filename().to_owned());
    let synchronous = match options.synchronous {
        Synchronous::Full => SqliteSynchronous::Full,
        Synchronous::Normal => SqliteSynchronous::Normal,
    };
    let connect = connect.foreign_keys(true).busy_timeout(options.busy_timeout).synchronous(synchronous);
    let opening = |error: sqlx::Error| StoreError::Backend(format!("cannot open SQLite database {url:?}: {error}"));

    // The writer comes first: it creates the file, switches it to WAL (which needs the only
    // connection) and migrates it before any reader connects.
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .after_connect(|conn, _| Box::pin(async move { sqlx::Executor::execute(conn, FENCE_SETUP).await.map(drop) }))
        .connect_with(connect.clone().create_if_missing(true).journal_mode(SqliteJournalMode::Wal))
        .await
        .map_err(opening)?;
    MIGRATOR
        .run(&writer)
        .await
        .map_err(|error| StoreError::Backend(format!("cannot migrate SQLite database {url:?}: {error}")))?;

    let reader = if in_memory {
        writer.clone()
    } else {
        SqlitePoolOptions::new()
            .max_connections(options.read_connections)
            .test_before_acquire(false)
            .connect_with(connect)
            .await
            .map_err(opening)?
    };
    Ok((writer, reader, database))
}
