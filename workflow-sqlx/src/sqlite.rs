//! The SQLite store.
//!
//! One writer connection applies every write (a group-committed batch is one `BEGIN IMMEDIATE`
//! transaction and one commit), so writers never contend with each other; a small pool of
//! connections serves reads, which WAL lets run beside the writer.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use workflow_core::{
    InstanceRecord, JournalRecord, Millis, RecordStatus, RuntimeStatus, StatsCounter, Store, StoreError, StoreStats,
    WriteOp, WriteOutcome,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

const INSTANCE_COLUMNS: &str =
    "id, workflow, status, input, output, error, generation, created_at, updated_at, owner, lease_until";

const JOURNAL_COLUMNS: &str =
    "instance_id, generation, seq, kind, name, status, input, payload, attempt, due_at, recorded_at";

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

/// A [`Store`] on one SQLite database: a file, or memory for tests.
///
/// ```no_run
/// # async fn demo() -> Result<(), workflow_core::StoreError> {
/// use workflow_sqlx::{SqliteOptions, SqliteStore, Synchronous};
///
/// let durable = SqliteStore::open("sqlite://workflows.db").await?;
/// let faster = SqliteStore::open_with(
///     "sqlite://scratch.db",
///     SqliteOptions::new().synchronous(Synchronous::Normal),
/// )
/// .await?;
/// let in_memory = SqliteStore::open("sqlite::memory:").await?;
/// # let _ = (durable, faster, in_memory);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    /// One connection: every write goes through it, so writes never wait on each other's locks.
    writer: SqlitePool,
    /// Reads (the writer itself for an in-memory database).
    reader: SqlitePool,
    stats: StatsCounter,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url` with the default options, and brings
    /// its schema up to date.
    ///
    /// `url` is `sqlite://path`, `sqlite:path` or `sqlite::memory:`; SQLite's URI parameters
    /// (`?mode=ro`, ...) are accepted after the path. The database runs in WAL mode with
    /// `synchronous=FULL`, a 5 s busy timeout and foreign keys on.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, SqliteOptions::default()).await
    }

    /// Opens the database at `url` (see [`SqliteStore::open`]) with `options`.
    pub async fn open_with(url: &str, options: SqliteOptions) -> Result<Self, StoreError> {
        let (connect, in_memory) = parse_url(url)?;
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
        Ok(Self { writer, reader, stats: StatsCounter::default() })
    }

    /// A pool of connections on the same database, for inspecting it (and, in tests, for damaging
    /// rows on purpose). Writes made through it bypass the store's counters and contend with its
    /// writer for SQLite's lock.
    pub fn pool(&self) -> &SqlitePool {
        &self.reader
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

impl From<SqliteStore> for std::sync::Arc<dyn Store> {
    fn from(store: SqliteStore) -> Self {
        std::sync::Arc::new(store)
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

fn backend(context: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| StoreError::Backend(format!("sqlite: {context}: {error}"))
}

fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

async fn apply(conn: &mut SqliteConnection, op: &WriteOp, outcome: &mut WriteOutcome) -> Result<(), StoreError> {
    match op {
        WriteOp::CreateInstance(record) => {
            let result = sqlx::query(
                "INSERT INTO instances \
                 (id, workflow, status, input, output, error, generation, created_at, updated_at, owner, lease_until) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            )
            .bind(record.id.as_str())
            .bind(record.workflow.as_str())
            .bind(record.status.as_str())
            .bind(record.input.as_str())
            .bind(record.output.as_deref())
            .bind(record.error.as_deref())
            .bind(i64::from(record.generation))
            .bind(record.created_at)
            .bind(record.updated_at)
            .bind(record.owner.as_deref())
            .bind(record.lease_until)
            .execute(&mut *conn)
            .await
            .map_err(backend("creating an instance"))?;
            if result.rows_affected() == 0 {
                outcome.existing.push(record.id.clone());
            }
        }
        WriteOp::PutRecord(record) => {
            sqlx::query(
                "INSERT INTO journal \
                 (instance_id, generation, seq, kind, name, status, input, payload, attempt, due_at, recorded_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (instance_id, generation, seq) DO UPDATE SET \
                 kind = excluded.kind, name = excluded.name, status = excluded.status, input = excluded.input, \
                 payload = excluded.payload, attempt = excluded.attempt, due_at = excluded.due_at, \
                 recorded_at = excluded.recorded_at",
            )
            .bind(record.instance_id.as_str())
            .bind(i64::from(record.generation))
            .bind(i64::from(record.seq))
            .bind(record.kind.as_str())
            .bind(record.name.as_str())
            .bind(record.status.as_str())
            .bind(record.input.as_deref())
            .bind(record.payload.as_deref())
            .bind(i64::from(record.attempt))
            .bind(record.due_at)
            .bind(record.recorded_at)
            .execute(&mut *conn)
            .await
            .map_err(backend("writing a journal record"))?;
        }
        WriteOp::SetStatus { id, status, updated_at } => {
            sqlx::query("UPDATE instances SET status = ?, updated_at = ? WHERE id = ?")
                .bind(status.as_str())
                .bind(*updated_at)
                .bind(id.as_str())
                .execute(&mut *conn)
                .await
                .map_err(backend("setting an instance's status"))?;
        }
        WriteOp::Finish { id, status, output, error, updated_at } => {
            sqlx::query(
                "UPDATE instances SET status = ?, output = ?, error = ?, updated_at = ?, completed_at = ?, \
                 owner = NULL, lease_until = NULL WHERE id = ?",
            )
            .bind(status.as_str())
            .bind(output.as_deref())
            .bind(error.as_deref())
            .bind(*updated_at)
            .bind(status.is_terminal().then_some(*updated_at))
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(backend("finishing an instance"))?;
        }
    }
    Ok(())
}

/// A column that did not decode, as a [`StoreError::Corrupt`] naming the row.
fn corrupt(row: &str, column: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{row}: column `{column}`: {error}"))
}

fn get<'r, T>(row: &'r SqliteRow, name: &str, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(|error| corrupt(name, column, error))
}

fn get_u32(row: &SqliteRow, name: &str, column: &str) -> Result<u32, StoreError> {
    let value: i64 = get(row, name, column)?;
    u32::try_from(value).map_err(|_| corrupt(name, column, format_args!("{value} is not a u32")))
}

fn instance_from_row(row: &SqliteRow) -> Result<InstanceRecord, StoreError> {
    let id: String = get(row, "instance (unreadable id)", "id")?;
    let name = format!("instance {id:?}");
    let status: String = get(row, &name, "status")?;
    let status = RuntimeStatus::parse(&status)
        .ok_or_else(|| corrupt(&name, "status", format_args!("unknown runtime status {status:?}")))?;
    Ok(InstanceRecord {
        workflow: get(row, &name, "workflow")?,
        status,
        input: get(row, &name, "input")?,
        output: get(row, &name, "output")?,
        error: get(row, &name, "error")?,
        generation: get_u32(row, &name, "generation")?,
        created_at: get(row, &name, "created_at")?,
        updated_at: get(row, &name, "updated_at")?,
        owner: get(row, &name, "owner")?,
        lease_until: get(row, &name, "lease_until")?,
        id,
    })
}

fn record_from_row(row: &SqliteRow, id: &str, generation: u32) -> Result<JournalRecord, StoreError> {
    let seq: i64 = get(row, &format!("journal record of instance {id:?} generation {generation}"), "seq")?;
    let name = format!("journal record of instance {id:?} generation {generation} seq {seq}");
    let seq = u32::try_from(seq).map_err(|_| corrupt(&name, "seq", format_args!("{seq} is not a u32")))?;
    let status: String = get(row, &name, "status")?;
    let status = RecordStatus::parse(&status)
        .ok_or_else(|| corrupt(&name, "status", format_args!("unknown record status {status:?}")))?;
    Ok(JournalRecord {
        instance_id: get(row, &name, "instance_id")?,
        generation: get_u32(row, &name, "generation")?,
        seq,
        kind: get(row, &name, "kind")?,
        name: get(row, &name, "name")?,
        status,
        input: get(row, &name, "input")?,
        payload: get(row, &name, "payload")?,
        attempt: get_u32(row, &name, "attempt")?,
        due_at: get(row, &name, "due_at")?,
        recorded_at: get(row, &name, "recorded_at")?,
    })
}

/// The claim condition; `?1` is `now`, the workflow names are bound from `?3` on (`?2` is the
/// limit in the queries that use this).
fn claimable(workflows: usize) -> String {
    let names: Vec<String> = (0..workflows).map(|i| format!("?{}", i + 3)).collect();
    // The status test is spelled exactly as in the `instances_runnable` partial index so SQLite
    // scans that index, already in claim order.
    format!(
        "status IN ('Pending', 'Running') AND workflow IN ({}) \
         AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?1)",
        names.join(", ")
    )
}

#[async_trait]
impl Store for SqliteStore {
    async fn write(&self, ops: &[WriteOp]) -> Result<WriteOutcome, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(backend("beginning a write"))?;
        let mut outcome = WriteOutcome::default();
        for op in ops {
            apply(&mut tx, op, &mut outcome).await?;
        }
        tx.commit().await.map_err(backend("committing a write"))?;
        self.stats.record_commit(ops.len());
        Ok(outcome)
    }

    async fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend("reading an instance"))?;
        row.as_ref().map(instance_from_row).transpose()
    }

    async fn journal(&self, id: &str, generation: u32) -> Result<Vec<JournalRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal WHERE instance_id = ? AND generation = ? ORDER BY seq"
        ))
        .bind(id)
        .bind(i64::from(generation))
        .fetch_all(&self.reader)
        .await
        .map_err(backend("reading a journal"))?;
        rows.iter().map(|row| record_from_row(row, id, generation)).collect()
    }

    async fn claim(
        &self,
        worker: &str,
        workflows: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        if workflows.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let condition = claimable(workflows.len());

        // Look before taking the write lock: an idle poll costs a read, not a commit.
        let probe = format!("SELECT 1 FROM instances WHERE {condition} LIMIT ?2");
        let mut query = sqlx::query(&probe).bind(now).bind(1_i64);
        for workflow in workflows {
            query = query.bind(workflow.as_str());
        }
        let any = query.fetch_optional(&self.reader).await.map_err(backend("looking for claimable instances"))?;
        if any.is_none() {
            return Ok(Vec::new());
        }

        // The claim itself re-selects under the write lock, so it is exact however many workers
        // raced to the same candidates.
        let n = workflows.len();
        let claim = format!(
            "UPDATE instances SET owner = ?{worker}, lease_until = ?{until} WHERE id IN \
             (SELECT id FROM instances WHERE {condition} ORDER BY created_at, id LIMIT ?2) \
             RETURNING {INSTANCE_COLUMNS}",
            worker = n + 3,
            until = n + 4,
        );
        let mut query = sqlx::query(&claim).bind(now).bind(to_i64(limit));
        for workflow in workflows {
            query = query.bind(workflow.as_str());
        }
        let query = query.bind(worker).bind(lease_until);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(backend("beginning a claim"))?;
        let rows = query.fetch_all(&mut *tx).await.map_err(backend("claiming instances"))?;
        tx.commit().await.map_err(backend("committing a claim"))?;
        let mut claimed = rows.iter().map(instance_from_row).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(claimed)
    }

    async fn renew_leases(&self, worker: &str, lease_until: Millis) -> Result<u64, StoreError> {
        let result = sqlx::query("UPDATE instances SET lease_until = ? WHERE owner = ?")
            .bind(lease_until)
            .bind(worker)
            .execute(&self.writer)
            .await
            .map_err(backend("renewing leases"))?;
        Ok(result.rows_affected())
    }

    async fn release_leases(&self, worker: &str) -> Result<u64, StoreError> {
        let result = sqlx::query("UPDATE instances SET owner = NULL, lease_until = NULL WHERE owner = ?")
            .bind(worker)
            .execute(&self.writer)
            .await
            .map_err(backend("releasing leases"))?;
        Ok(result.rows_affected())
    }

    async fn probe_commit(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO probe (id, commits) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET commits = commits + 1",
        )
        .execute(&self.writer)
        .await
        .map_err(backend("probing a commit"))?;
        self.stats.record_commit(1);
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }
}
