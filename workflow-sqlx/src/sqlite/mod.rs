//! The SQLite store.
//!
//! One writer connection applies every write (a group-committed batch is one `BEGIN IMMEDIATE`
//! transaction and one commit), so writers never contend with each other; a small pool of
//! connections serves reads, which WAL lets run beside the writer. Claims (of instances and of
//! activity tasks) look on a reader first, so an idle poll costs no write.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Column, Row};
use workflow_core::store::{
    EventRecord, InstanceQuery, InstanceRecord, JournalRecord, Millis, RuntimeStatus, StatsCounter, Store, StoreError,
    StoreStats, TaskOutcome, TaskRecord, WriteOp, WriteOutcome,
};

use crate::shared::list::list_statement;
use crate::shared::plan::{
    Checked, Consume, Continue, CustomStatus, Finishing, NewEvent, Plan, StatusChange, TaskKey, Wake,
};
use crate::shared::rows::{
    event_from_row, instance_from_row, record_from_row, task_from_row, EVENT_COLUMNS, INSTANCE_COLUMNS,
    JOURNAL_COLUMNS, TASK_COLUMNS,
};
use crate::shared::to_i64;

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
/// # async fn demo() -> Result<(), workflow_core::store::StoreError> {
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
    in_memory: bool,
    /// Whether the writer may be in a transaction nobody will finish: a write sends its statements
    /// and `COMMIT` as one script, and a write dropped before the script is through (cancelled)
    /// leaves the transaction open, which the writer's next user rolls back.
    dangling: AtomicBool,
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
            .after_connect(|conn, _| {
                Box::pin(async move { sqlx::Executor::execute(conn, FENCE_SETUP).await.map(drop) })
            })
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
        Ok(Self { writer, reader, in_memory, dangling: AtomicBool::new(false), stats: StatsCounter::default() })
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

/// Rows per statement at most; a power of two (see [`run_chunks`]).
const MAX_ROWS: usize = 256;

/// The multi-row statements a batch is written with.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Create,
    Put,
    SetStatus,
    Finish,
    AddEvent,
    Consume,
    SetWake,
    Evict,
    SetCustomStatus,
    ContinueAsNew,
    EnqueueTask,
    DeleteTask,
    /// Every task of the named instances (for Finish and Purge).
    FinishTasks,
    ContinuedJournal,
    ContinuedEvents,
    ContinuedTasks,
    Fence,
    Assert,
    PurgeInstance,
    PurgeJournal,
    PurgeEvents,
}

impl Shape {
    const ALL: [Shape; 21] = [
        Shape::Create,
        Shape::Put,
        Shape::SetStatus,
        Shape::Finish,
        Shape::AddEvent,
        Shape::Consume,
        Shape::SetWake,
        Shape::Evict,
        Shape::SetCustomStatus,
        Shape::ContinueAsNew,
        Shape::EnqueueTask,
        Shape::DeleteTask,
        Shape::FinishTasks,
        Shape::ContinuedJournal,
        Shape::ContinuedEvents,
        Shape::ContinuedTasks,
        Shape::Fence,
        Shape::Assert,
        Shape::PurgeInstance,
        Shape::PurgeJournal,
        Shape::PurgeEvents,
    ];

    fn columns(self) -> usize {
        match self {
            Shape::Create => 14,
            Shape::Put => 12,
            Shape::SetStatus | Shape::SetCustomStatus => 3,
            Shape::Finish => 6,
            Shape::AddEvent => 5,
            Shape::Consume | Shape::ContinueAsNew => 4,
            Shape::SetWake | Shape::Evict => 2,
            Shape::EnqueueTask => 9,
            Shape::DeleteTask => 3,
            Shape::FinishTasks
            | Shape::ContinuedJournal
            | Shape::ContinuedEvents
            | Shape::ContinuedTasks
            | Shape::PurgeInstance
            | Shape::PurgeJournal
            | Shape::PurgeEvents => 1,
            Shape::Fence => 2,
            // The id, and a slot per status (see `bind_assert`).
            Shape::Assert => 1 + RuntimeStatus::ALL.len(),
        }
    }

    fn head(self) -> &'static str {
        match self {
            Shape::Create => {
                "INSERT INTO instances \
                 (id, workflow, status, input, output, error, generation, created_at, updated_at, owner, lease_until, \
                 parent_id, custom_status, wake_at) \
                 VALUES "
            }
            Shape::Put => {
                "INSERT INTO journal \
                 (instance_id, generation, seq, kind, name, status, input, payload, attempt, due_at, recorded_at, \
                 parallel_group) VALUES "
            }
            Shape::SetStatus => "UPDATE instances SET status = v.column2, updated_at = v.column3 FROM (VALUES ",
            Shape::Finish => {
                "UPDATE instances SET status = v.column2, output = v.column3, error = v.column4, \
                 updated_at = v.column5, completed_at = v.column6, owner = NULL, lease_until = NULL FROM (VALUES "
            }
            Shape::AddEvent => "INSERT INTO events (seq, instance_id, name, payload, created_at) VALUES ",
            Shape::Consume => {
                "UPDATE events SET consumed_generation = v.column3, consumed_by_seq = v.column4 FROM (VALUES "
            }
            Shape::SetWake => "UPDATE instances SET wake_at = v.column2 FROM (VALUES ",
            Shape::Evict => "UPDATE instances SET owner = NULL, lease_until = NULL, wake_at = v.column2 FROM (VALUES ",
            Shape::SetCustomStatus => {
                "UPDATE instances SET custom_status = v.column2, updated_at = v.column3 FROM (VALUES "
            }
            Shape::ContinueAsNew => {
                "UPDATE instances SET input = v.column2, generation = v.column3, status = 'Running', \
                 output = NULL, error = NULL, updated_at = v.column4, completed_at = NULL FROM (VALUES "
            }
            Shape::EnqueueTask => {
                "INSERT INTO activity_tasks \
                 (instance_id, generation, seq, name, input, attempt, start_to_close_ms, heartbeat_timeout_ms, \
                 visible_at) VALUES "
            }
            Shape::DeleteTask => "DELETE FROM activity_tasks WHERE (instance_id, generation, seq) IN (VALUES ",
            Shape::FinishTasks => "DELETE FROM activity_tasks WHERE instance_id IN (VALUES ",
            Shape::ContinuedJournal => "DELETE FROM journal WHERE instance_id IN (VALUES ",
            Shape::ContinuedEvents => {
                "DELETE FROM events WHERE consumed_by_seq IS NOT NULL AND instance_id IN \
                 (SELECT id FROM instances WHERE id IN (VALUES "
            }
            Shape::ContinuedTasks => "DELETE FROM activity_tasks WHERE instance_id IN (VALUES ",
            Shape::Fence | Shape::Assert => "INSERT INTO temp.fenced (id) SELECT v.column1 FROM (VALUES ",
            Shape::PurgeInstance => "DELETE FROM instances WHERE id IN (VALUES ",
            Shape::PurgeJournal => "DELETE FROM journal WHERE instance_id IN (VALUES ",
            Shape::PurgeEvents => "DELETE FROM events WHERE instance_id IN (VALUES ",
        }
    }

    fn tail(self) -> &'static str {
        match self {
            // The ids that come back are the ones inserted; the others existed.
            // A script returns the rows of all its statements together: the column name tells them
            // apart.
            Shape::Create => " ON CONFLICT (id) DO NOTHING RETURNING id AS created",
            // Rows of one statement are inserted in order, so a later duplicate key replaces an
            // earlier one, as separate statements would.
            Shape::Put => {
                " ON CONFLICT (instance_id, generation, seq) DO UPDATE SET \
                 kind = excluded.kind, name = excluded.name, status = excluded.status, input = excluded.input, \
                 payload = excluded.payload, attempt = excluded.attempt, due_at = excluded.due_at, \
                 recorded_at = excluded.recorded_at, parallel_group = excluded.parallel_group"
            }
            // Event ids are assigned by the plan, so the only conflict is the padding repeating
            // the last row; the ids coming back are counted to catch any other.
            Shape::AddEvent => " ON CONFLICT DO NOTHING RETURNING seq AS added",
            // Only an event of that instance, and only its first consumer is kept. An event
            // appears once per statement (the plan drops repeats; padding repeats identical rows).
            Shape::Consume => {
                ") AS v WHERE events.seq = v.column2 AND events.instance_id = v.column1 \
                 AND events.consumed_by_seq IS NULL"
            }
            // An id appears in one statement with one set of values only (at most one op per id
            // per layer, plus identical padding): the join would pick any of its rows.
            Shape::SetStatus | Shape::Finish | Shape::SetWake | Shape::Evict | Shape::SetCustomStatus => {
                ") AS v WHERE instances.id = v.column1"
            }
            Shape::ContinueAsNew => ") AS v WHERE instances.id = v.column1",
            // After the restart, of the instances that exist (a missing one has no generation, and
            // `generation < NULL` holds for no row): what is older than their new generation.
            Shape::ContinuedJournal => {
                ") AND generation < (SELECT i.generation FROM instances AS i WHERE i.id = journal.instance_id)"
            }
            Shape::ContinuedEvents => "))",
            Shape::ContinuedTasks => {
                ") AND generation < (SELECT i.generation FROM instances AS i WHERE i.id = activity_tasks.instance_id)"
            }
            // A row for every asserted (instance, owner) that does not hold, which the temporary
            // table's trigger refuses: the statement fails, with [`FENCED`] in its message.
            Shape::Fence => {
                ") AS v WHERE NOT EXISTS \
                 (SELECT 1 FROM instances AS i WHERE i.id = v.column1 AND i.owner = v.column2)"
            }
            // Likewise a row for every asserted (instance, allowed statuses) that does not hold:
            // the instance is missing or its status is none of the slots (NULL for a status not
            // allowed, which matches nothing).
            Shape::Assert => {
                ") AS v WHERE NOT EXISTS (SELECT 1 FROM instances AS i WHERE i.id = v.column1 AND i.status IN \
                 (v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8))"
            }
            // Queued afresh, or replacing a task of an earlier attempt only (a repeated row, of the
            // same attempt, changes nothing). The plan gives each key one row per layer.
            Shape::EnqueueTask => {
                " ON CONFLICT (instance_id, generation, seq) DO UPDATE SET \
                 name = excluded.name, input = excluded.input, attempt = excluded.attempt, \
                 start_to_close_ms = excluded.start_to_close_ms, heartbeat_timeout_ms = excluded.heartbeat_timeout_ms, \
                 visible_at = excluded.visible_at, owner = NULL, lease_until = NULL, outcome_succeeded = NULL, \
                 outcome = NULL, finished_at = NULL \
                 WHERE activity_tasks.attempt < excluded.attempt"
            }
            Shape::DeleteTask
            | Shape::FinishTasks
            | Shape::PurgeInstance
            | Shape::PurgeJournal
            | Shape::PurgeEvents => ")",
        }
    }

    /// The statement for `rows` rows (a power of two up to [`MAX_ROWS`]), built once.
    fn sql(self, rows: usize) -> Option<&'static str> {
        static SQL: OnceLock<Vec<Vec<String>>> = OnceLock::new();
        let table = SQL.get_or_init(|| {
            Shape::ALL
                .iter()
                .map(|shape| {
                    let row = format!("({})", vec!["?"; shape.columns()].join(", "));
                    (0..=MAX_ROWS.trailing_zeros())
                        .map(|log| {
                            format!("{}{}{}", shape.head(), vec![row.as_str(); 1 << log].join(", "), shape.tail())
                        })
                        .collect()
                })
                .collect()
        });
        if !rows.is_power_of_two() {
            return None;
        }
        let log = rows.trailing_zeros() as usize;
        table.get(self as usize).and_then(|sizes| sizes.get(log)).map(String::as_str)
    }
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// One statement of a write: a shape, its number of rows (a power of two) and what binds them.
struct Step<'q> {
    shape: Shape,
    rows: usize,
    bind: Box<dyn FnOnce(Query<'q>) -> Query<'q> + Send + 'q>,
}

impl<'q> Step<'q> {
    fn sql(&self) -> Result<&'static str, StoreError> {
        self.shape
            .sql(self.rows)
            .ok_or_else(|| StoreError::Backend(format!("sqlite: no {:?} statement for {} rows", self.shape, self.rows)))
    }
}

/// Adds the statements writing `items` with `shape`, `bind` binding one row.
///
/// Items go [`MAX_ROWS`] to a statement. A shorter last chunk is padded to the next power of two
/// by repeating its last row, which changes nothing (the same upsert, update or delete again, an
/// event insert that conflicts and is skipped, a create that is skipped and not reported since it
/// is no op of the batch, a fence row refused again), so a handful of statement shapes, each
/// prepared once per connection, cover every batch with one statement per chunk.
fn add_steps<'q, T: Sync>(
    steps: &mut Vec<Step<'q>>,
    shape: Shape,
    items: &'q [T],
    bind: impl Fn(Query<'q>, &'q T) -> Query<'q> + Copy + Send + 'q,
) {
    for chunk in items.chunks(MAX_ROWS) {
        let Some(last) = chunk.last() else { continue };
        let rows = chunk.len().next_power_of_two();
        let padding = std::iter::repeat_n(last, rows - chunk.len());
        let bind = move |query| chunk.iter().chain(padding).fold(query, bind);
        steps.push(Step { shape, rows, bind: Box::new(bind) });
    }
}

/// Batches this small (in statements, and in rows per statement) are sent to SQLite as one script
/// (see [`SqliteStore::write`]); bigger ones statement by statement, as they amortise the trips
/// and would make too many different scripts to keep prepared.
const SCRIPT_STEPS: usize = 16;
const SCRIPT_ROWS: usize = 8;

/// The message the fence trigger fails a statement with (for a fence or a status assertion).
const FENCED: &str = "workflow-sqlx: fenced";

/// Set up on every writer connection: the temporary table a [`Shape::Fence`] or [`Shape::Assert`]
/// statement inserts the assertions that do not hold into, whose trigger fails the statement (and
/// with it the script) when any arrives. It never holds a row.
const FENCE_SETUP: &str = "CREATE TEMP TABLE IF NOT EXISTS fenced (id TEXT); \
     CREATE TEMP TRIGGER IF NOT EXISTS fenced_refused BEFORE INSERT ON fenced \
     BEGIN SELECT RAISE(ABORT, 'workflow-sqlx: fenced'); END";

impl<'a> Plan<'a> {
    /// The plan's statements, in the order they run: the checks (fences, then status assertions),
    /// then layer by layer the journal records, task changes and event consumptions, then the
    /// instance ops (a restart, and a purge, followed by the deletes it implies). `last_event` is
    /// the store's last event id.
    fn steps<'q>(&'q self, last_event: i64) -> Vec<Step<'q>>
    where
        'a: 'q,
    {
        let mut steps = Vec::new();
        add_steps(&mut steps, Shape::Fence, &self.fences, bind_fence);
        add_steps(&mut steps, Shape::Assert, &self.asserts, bind_assert);
        for layer in &self.layers {
            add_steps(&mut steps, Shape::Put, &layer.puts, bind_put);
            add_steps(&mut steps, Shape::DeleteTask, &layer.task_deletes, bind_task_key);
            add_steps(&mut steps, Shape::EnqueueTask, &layer.task_enqueues, bind_enqueue);
            add_steps(&mut steps, Shape::Consume, &layer.consumes, bind_consume);
            add_steps(&mut steps, Shape::Create, &layer.creates, bind_create);
            add_steps(&mut steps, Shape::SetStatus, &layer.statuses, bind_status);
            add_steps(&mut steps, Shape::Finish, &layer.finishes, bind_finish);
            add_steps(&mut steps, Shape::FinishTasks, &layer.finishes, bind_finish_id);
            let bind = move |query, event| bind_event(query, event, last_event);
            add_steps(&mut steps, Shape::AddEvent, &layer.events, bind);
            add_steps(&mut steps, Shape::SetWake, &layer.wakes, bind_wake);
            add_steps(&mut steps, Shape::Evict, &layer.evicts, bind_wake);
            add_steps(&mut steps, Shape::SetCustomStatus, &layer.customs, bind_custom);
            add_steps(&mut steps, Shape::ContinueAsNew, &layer.continues, bind_continue);
            for shape in [Shape::ContinuedJournal, Shape::ContinuedEvents, Shape::ContinuedTasks] {
                add_steps(&mut steps, shape, &layer.continues, bind_continue_id);
            }
            // An event id of a purged instance is not handed out again: the next ones follow
            // `sqlite_sequence`, which remembers the largest id ever used.
            for shape in [Shape::PurgeJournal, Shape::PurgeEvents, Shape::FinishTasks, Shape::PurgeInstance] {
                add_steps(&mut steps, shape, &layer.purges, bind_id);
            }
        }
        steps
    }

    /// Checks what the statements returned (in any order); returns the indexes (in the batch) of
    /// the creates that were skipped.
    ///
    /// Which of several creates of one id inserted it follows from how many times the id came
    /// back. Between two purges of the id (or the batch's start and end) only the first create can
    /// insert it, as the others find it there. After a purge the id is free, so the first create
    /// after one always inserts it; the first create before any purge did if the id came back
    /// once more than those. (An id's creates and purges are in different layers, in op order.)
    fn skipped(&self, returned: &[SqliteRow]) -> Result<Vec<usize>, StoreError> {
        let mut created: HashMap<String, usize> = HashMap::new();
        let mut added = 0_i64;
        for row in returned {
            match row.columns().first().map(|column| column.name()) {
                Some("created") => {
                    *created
                        .entry(row.try_get::<String, _>(0).map_err(backend("reading created ids"))?)
                        .or_default() += 1;
                }
                Some("added") => added += 1,
                _ => {}
            }
        }
        if added != self.events {
            return Err(StoreError::Backend(format!(
                "sqlite: adding events: {} of {} new event ids were taken",
                self.events - added.min(self.events),
                self.events
            )));
        }
        // Per id: whether it was purged yet, and whether the first create since (or since the
        // start) was seen.
        let mut seen: HashMap<&str, (bool, bool)> = HashMap::new();
        let mut after_purges: HashMap<&str, usize> = HashMap::new();
        let mut first_creates = Vec::new();
        let mut skipped = Vec::new();
        for layer in &self.layers {
            for (index, record) in &layer.creates {
                let id = record.id.as_str();
                let (purged, taken) = seen.entry(id).or_default();
                if *taken {
                    skipped.push(*index);
                } else if *purged {
                    *taken = true;
                    *after_purges.entry(id).or_default() += 1;
                } else {
                    *taken = true;
                    first_creates.push((*index, id));
                }
            }
            for id in &layer.purges {
                seen.insert(id, (true, false));
            }
        }
        for (index, id) in first_creates {
            let came_back = created.get(id).copied().unwrap_or_default();
            if came_back <= after_purges.get(id).copied().unwrap_or_default() {
                skipped.push(index);
            }
        }
        skipped.sort_unstable();
        Ok(skipped)
    }
}

/// Why the plan's checks refused it, read in the open transaction (where nothing of the batch ran
/// yet): [`StoreError::Fenced`] or [`StoreError::Conflict`] as [`Plan::check`] decides, or `None`
/// if every check holds after all.
async fn refusal(conn: &mut SqliteConnection, plan: &Plan<'_>) -> Result<Option<StoreError>, StoreError> {
    let (fenced, asserted) = plan.checked_ids();
    let mut found = std::collections::HashMap::new();
    for chunk in fenced.chunks(500).chain(asserted.chunks(500)) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT id, owner, status FROM instances WHERE id IN ({marks})");
        let query = chunk.iter().fold(sqlx::query(&sql), |query, id| query.bind(*id));
        for row in query.fetch_all(&mut *conn).await.map_err(backend("checking leases and statuses"))? {
            let id: String = row.try_get(0).map_err(backend("reading leases"))?;
            let owner: Option<String> = row.try_get(1).map_err(backend("reading leases"))?;
            let status: String = row.try_get(2).map_err(backend("reading statuses"))?;
            found.insert(id, Checked { owner, status });
        }
    }
    Ok(plan.check(&found).err())
}

/// Whether `error` is the fence trigger refusing a statement (a fence or a status assertion).
fn is_fenced(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(error) if error.message().contains(FENCED))
}

fn bind_create<'q>(query: Query<'q>, (_, record): &'q (usize, &'q InstanceRecord)) -> Query<'q> {
    query
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
        .bind(record.parent_id.as_deref())
        .bind(record.custom_status.as_deref())
        .bind(record.wake_at)
}

fn bind_put<'q>(query: Query<'q>, record: &'q &'q JournalRecord) -> Query<'q> {
    query
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
        .bind(record.parallel_group.map(i64::from))
}

fn bind_status<'q>(query: Query<'q>, change: &'q StatusChange<'q>) -> Query<'q> {
    query.bind(change.id).bind(change.status.as_str()).bind(change.updated_at)
}

fn bind_finish<'q>(query: Query<'q>, finish: &'q Finishing<'q>) -> Query<'q> {
    query
        .bind(finish.id)
        .bind(finish.status.as_str())
        .bind(finish.output)
        .bind(finish.error)
        .bind(finish.updated_at)
        .bind(finish.status.is_terminal().then_some(finish.updated_at))
}

fn bind_finish_id<'q>(query: Query<'q>, finish: &'q Finishing<'q>) -> Query<'q> {
    query.bind(finish.id)
}

fn bind_id<'q>(query: Query<'q>, id: &'q &'q str) -> Query<'q> {
    query.bind(*id)
}

fn bind_event<'q>(query: Query<'q>, event: &'q NewEvent<'q>, last_event: i64) -> Query<'q> {
    query
        .bind(last_event + event.number)
        .bind(event.instance_id)
        .bind(event.name)
        .bind(event.payload)
        .bind(event.created_at)
}

fn bind_consume<'q>(query: Query<'q>, consume: &'q Consume<'q>) -> Query<'q> {
    query
        .bind(consume.instance_id)
        .bind(consume.event_id)
        .bind(i64::from(consume.generation))
        .bind(i64::from(consume.seq))
}

fn bind_wake<'q>(query: Query<'q>, wake: &'q Wake<'q>) -> Query<'q> {
    query.bind(wake.id).bind(wake.wake_at)
}

fn bind_custom<'q>(query: Query<'q>, custom: &'q CustomStatus<'q>) -> Query<'q> {
    query.bind(custom.id).bind(custom.custom_status).bind(custom.updated_at)
}

fn bind_task_key<'q>(query: Query<'q>, key: &'q TaskKey<'q>) -> Query<'q> {
    let (instance_id, generation, seq) = *key;
    query.bind(instance_id).bind(i64::from(generation)).bind(i64::from(seq))
}

fn bind_enqueue<'q>(query: Query<'q>, task: &'q &'q TaskRecord) -> Query<'q> {
    query
        .bind(task.instance_id.as_str())
        .bind(i64::from(task.generation))
        .bind(i64::from(task.seq))
        .bind(task.name.as_str())
        .bind(task.input.as_str())
        .bind(i64::from(task.attempt))
        .bind(task.start_to_close_ms)
        .bind(task.heartbeat_timeout_ms)
        .bind(task.visible_at)
}

fn bind_fence<'q>(query: Query<'q>, (id, owner): &'q (&'q str, &'q str)) -> Query<'q> {
    query.bind(*id).bind(*owner)
}

// `Shape::Assert` spells out a slot per status.
const _: () = assert!(RuntimeStatus::ALL.len() == 7, "Shape::Assert has 7 status slots");

/// An assertion's id, then a slot per status in [`RuntimeStatus::ALL`] order: its name if it is
/// allowed, NULL if not.
fn bind_assert<'q>(query: Query<'q>, (id, allowed): &'q (&'q str, &'q [RuntimeStatus])) -> Query<'q> {
    RuntimeStatus::ALL
        .into_iter()
        .fold(query.bind(*id), |query, status| query.bind(allowed.contains(&status).then_some(status.as_str())))
}

fn bind_continue_id<'q>(query: Query<'q>, continued: &'q Continue<'q>) -> Query<'q> {
    query.bind(continued.id)
}

fn bind_continue<'q>(query: Query<'q>, continued: &'q Continue<'q>) -> Query<'q> {
    query.bind(continued.id).bind(continued.input).bind(i64::from(continued.generation)).bind(continued.updated_at)
}

/// The claim's two candidate sets, as conditions: instances ready now (no wake-up) and instances
/// whose wake-up has come; together, every runnable instance. `?1` is `now`, the workflow names
/// are bound from `?3` on (`?2` is the limit in the queries that use these).
///
/// Each set has its own partial index (`instances_ready`, already in claim order, and
/// `instances_due`, by wake-up time), whose status and wake-up tests are spelled exactly as here so
/// SQLite uses them. An instance waiting for a later wake-up is in neither scan.
fn claimable(workflows: usize) -> (String, String) {
    let names: Vec<String> = (0..workflows).map(|i| format!("?{}", i + 3)).collect();
    let free =
        format!("workflow IN ({}) AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?1)", names.join(", "));
    (
        format!("status IN ('Pending', 'Running') AND wake_at IS NULL AND {free}"),
        format!("status IN ('Pending', 'Running') AND wake_at <= ?1 AND {free}"),
    )
}

/// The tasks `claim_tasks` may take, as a condition: unfinished, visible at `?1`, of the activities
/// bound from `?3` on (`?2` is the limit), unowned or with a lapsed lease. The outcome test is
/// spelled as in the partial index `activity_tasks_unfinished`, so SQLite uses it.
fn claimable_tasks(activities: usize) -> String {
    let names: Vec<String> = (0..activities).map(|i| format!("?{}", i + 3)).collect();
    format!(
        "outcome IS NULL AND visible_at <= ?1 AND name IN ({}) \
         AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?1)",
        names.join(", ")
    )
}

/// A task's key, the order `finished_tasks` returns them in.
fn task_key(task: &TaskRecord) -> (&str, u32, u32) {
    (task.instance_id.as_str(), task.generation, task.seq)
}

/// The order `claim_tasks` returns tasks in: oldest first, ties by key.
fn task_order(task: &TaskRecord) -> (Millis, (&str, u32, u32)) {
    (task.visible_at, task_key(task))
}

/// A write that failed: a statement (which may be a check refusing the batch), or a check.
enum Failure {
    Statement(&'static str, sqlx::Error),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

fn statement(context: &'static str) -> impl Fn(sqlx::Error) -> Failure {
    move |error| Failure::Statement(context, error)
}

/// Starts a write transaction and reads the last event id under its lock, in one trip.
const BEGIN_READING_LAST_EVENT: &str = "BEGIN IMMEDIATE; \
     SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), \
     COALESCE((SELECT MAX(seq) FROM events), 0))";

/// Applies `plan` in one transaction and commits it; returns the indexes (in the batch) of the
/// creates that were skipped. On failure the transaction may still be open.
///
/// A small plan goes to SQLite as one script, `BEGIN IMMEDIATE; <statements>; COMMIT` (or its one
/// statement alone), in one trip to the connection's thread, as a one-statement commit does: its
/// checks are the first statements, which fail when an assertion does not hold (see
/// [`Shape::Fence`] and [`Shape::Assert`]), so nothing after them runs. A plan that adds events
/// first reads the last event id under the write lock (the new ids follow it), and commits once it
/// has counted them. A big plan runs statement by statement.
async fn apply(conn: &mut SqliteConnection, plan: &Plan<'_>) -> Result<Vec<usize>, Failure> {
    let adds_events = plan.events > 0;
    let last_event = if adds_events {
        let last: i64 = sqlx::query_scalar(BEGIN_READING_LAST_EVENT)
            .fetch_one(&mut *conn)
            .await
            .map_err(statement("reading the last event id"))?;
        if last.checked_add(plan.events).is_none() {
            return Err(StoreError::Backend("sqlite: adding events: event ids are exhausted".into()).into());
        }
        last
    } else {
        0
    };
    let steps = plan.steps(last_event);
    let returned = if steps.len() <= SCRIPT_STEPS && steps.iter().all(|step| step.rows <= SCRIPT_ROWS) {
        // One statement is a transaction of its own.
        let alone = !adds_events && steps.len() == 1;
        let mut script = String::from(if adds_events || alone { "" } else { "BEGIN IMMEDIATE; " });
        for step in &steps {
            script.push_str(step.sql()?);
            script.push_str("; ");
        }
        if !adds_events && !alone {
            script.push_str("COMMIT");
        }
        let query = steps.into_iter().fold(sqlx::query(&script), |query, step| (step.bind)(query));
        let returned = query.fetch_all(&mut *conn).await.map_err(statement("writing a batch"))?;
        if !adds_events {
            // Committed: what came back only says which creates were skipped.
            return Ok(plan.skipped(&returned)?);
        }
        returned
    } else {
        if !adds_events {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(statement("beginning a write"))?;
        }
        let mut returned = Vec::new();
        for step in steps {
            let sql = step.sql()?;
            let query = (step.bind)(sqlx::query(sql));
            returned.extend(query.fetch_all(&mut *conn).await.map_err(statement("writing a batch"))?);
        }
        returned
    };
    let skipped = plan.skipped(&returned)?;
    sqlx::query("COMMIT").execute(&mut *conn).await.map_err(statement("committing a write"))?;
    Ok(skipped)
}

/// Whether `error` says there was no transaction to roll back.
fn no_transaction(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(error) if error.message().contains("no transaction is active"))
}

impl SqliteStore {
    /// The writer connection, with any transaction a dropped write left open rolled back first.
    async fn writer(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        let mut conn = self.writer.acquire().await.map_err(backend("taking the writer connection"))?;
        if self.dangling.load(Ordering::Acquire) {
            self.roll_back(&mut conn).await?;
        }
        Ok(conn)
    }

    /// A read connection; for an in-memory database that is the writer, cleaned up as in
    /// [`SqliteStore::writer`] so a read never sees what a dropped write left uncommitted.
    async fn reader(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
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
    async fn begin_immediate(&self, conn: &mut SqliteConnection, context: &'static str) -> Result<(), StoreError> {
        self.dangling.store(true, Ordering::Release);
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(backend(context))?;
        Ok(())
    }

    /// Ends what [`SqliteStore::begin_immediate`] began: commits it if `outcome` (what the
    /// transaction's statements returned) is `Ok`, rolls it back otherwise or if the commit fails.
    async fn end_immediate<T>(
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
    async fn abandon(&self, conn: &mut SqliteConnection, plan: &Plan<'_>, failure: Failure) -> StoreError {
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

#[async_trait]
impl Store for SqliteStore {
    async fn write(&self, ops: &[WriteOp]) -> Result<WriteOutcome, StoreError> {
        let plan = Plan::new(ops);
        let mut conn = self.writer().await?;
        // From here until the commit or the rollback is through, the writer may be in a
        // transaction: should this future be dropped meanwhile, the writer's next user rolls it back.
        self.dangling.store(true, Ordering::Release);
        match apply(&mut conn, &plan).await {
            Ok(skipped) => {
                self.dangling.store(false, Ordering::Release);
                self.stats.record_commit(ops.len());
                Ok(crate::shared::plan::outcome(ops, skipped))
            }
            Err(failure) => Err(self.abandon(&mut conn, &plan, failure).await),
        }
    }

    async fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *self.reader().await?)
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
        .fetch_all(&mut *self.reader().await?)
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
        let (ready, due) = claimable(workflows.len());

        // Look before taking the write lock: an idle poll costs a read, not a commit.
        let probe =
            format!("SELECT 1 FROM instances WHERE {ready} UNION ALL SELECT 1 FROM instances WHERE {due} LIMIT ?2");
        let mut query = sqlx::query(&probe).bind(now).bind(1_i64);
        for workflow in workflows {
            query = query.bind(workflow.as_str());
        }
        let any = query
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(backend("looking for claimable instances"))?;
        if any.is_none() {
            return Ok(Vec::new());
        }

        // The claim itself re-selects under the write lock, so it is exact however many workers
        // raced to the same candidates. The first `limit` of the two sets together are among the
        // first `limit` of each.
        let n = workflows.len();
        let claim = format!(
            "UPDATE instances SET owner = ?{worker}, lease_until = ?{until}, wake_at = NULL WHERE id IN \
             (SELECT id FROM \
             (SELECT id, created_at FROM (SELECT id, created_at FROM instances WHERE {ready} \
             ORDER BY created_at, id LIMIT ?2) \
             UNION ALL SELECT id, created_at FROM (SELECT id, created_at FROM instances WHERE {due} \
             ORDER BY created_at, id LIMIT ?2)) \
             ORDER BY created_at, id LIMIT ?2) \
             RETURNING {INSTANCE_COLUMNS}",
            worker = n + 3,
            until = n + 4,
        );
        let mut query = sqlx::query(&claim).bind(now).bind(to_i64(limit));
        for workflow in workflows {
            query = query.bind(workflow.as_str());
        }
        let query = query.bind(worker).bind(lease_until);
        let mut conn = self.writer().await?;
        self.begin_immediate(&mut conn, "beginning a claim").await?;
        let rows = query.fetch_all(&mut *conn).await.map_err(backend("claiming instances"));
        let rows = self.end_immediate(&mut conn, rows, "committing a claim").await?;
        let mut claimed = rows.iter().map(instance_from_row).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(claimed)
    }

    async fn list(&self, query: &InstanceQuery) -> Result<Vec<InstanceRecord>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let statement = list_statement(query, INSTANCE_COLUMNS, |n| format!("?{n}"));
        let rows =
            statement.query().fetch_all(&mut *self.reader().await?).await.map_err(backend("listing instances"))?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE instance_id = ? AND consumed_by_seq IS NULL ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(backend("reading events"))?;
        rows.iter().map(|row| event_from_row(row, id)).collect()
    }

    async fn renew_leases(&self, worker: &str, lease_until: Millis) -> Result<u64, StoreError> {
        let mut conn = self.writer().await?;
        self.begin_immediate(&mut conn, "beginning a renewal").await?;
        let renewed = async {
            let instances = sqlx::query("UPDATE instances SET lease_until = ? WHERE owner = ?")
                .bind(lease_until)
                .bind(worker)
                .execute(&mut *conn)
                .await
                .map_err(backend("renewing leases"))?;
            let tasks = sqlx::query("UPDATE activity_tasks SET lease_until = ? WHERE owner = ? AND outcome IS NULL")
                .bind(lease_until)
                .bind(worker)
                .execute(&mut *conn)
                .await
                .map_err(backend("renewing task leases"))?;
            Ok::<_, StoreError>(instances.rows_affected() + tasks.rows_affected())
        }
        .await;
        self.end_immediate(&mut conn, renewed, "committing a renewal").await
    }

    async fn release_leases(&self, worker: &str) -> Result<u64, StoreError> {
        let mut conn = self.writer().await?;
        self.begin_immediate(&mut conn, "beginning a release").await?;
        let released = async {
            let instances = sqlx::query("UPDATE instances SET owner = NULL, lease_until = NULL WHERE owner = ?")
                .bind(worker)
                .execute(&mut *conn)
                .await
                .map_err(backend("releasing leases"))?;
            let tasks = sqlx::query(
                "UPDATE activity_tasks SET owner = NULL, lease_until = NULL WHERE owner = ? AND outcome IS NULL",
            )
            .bind(worker)
            .execute(&mut *conn)
            .await
            .map_err(backend("releasing task leases"))?;
            Ok::<_, StoreError>(instances.rows_affected() + tasks.rows_affected())
        }
        .await;
        self.end_immediate(&mut conn, released, "committing a release").await
    }

    async fn claim_tasks(
        &self,
        worker: &str,
        activities: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if activities.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let claimable = claimable_tasks(activities.len());

        // Look before taking the write lock: an idle poll costs a read, not a commit.
        let probe = format!("SELECT 1 FROM activity_tasks WHERE {claimable} LIMIT ?2");
        let mut query = sqlx::query(&probe).bind(now).bind(1_i64);
        for activity in activities {
            query = query.bind(activity.as_str());
        }
        let any =
            query.fetch_optional(&mut *self.reader().await?).await.map_err(backend("looking for claimable tasks"))?;
        if any.is_none() {
            return Ok(Vec::new());
        }

        // Re-selected under the write lock, so exact however many workers raced.
        let n = activities.len();
        let claim = format!(
            "UPDATE activity_tasks SET owner = ?{worker}, lease_until = ?{until} \
             WHERE (instance_id, generation, seq) IN \
             (SELECT instance_id, generation, seq FROM activity_tasks WHERE {claimable} \
             ORDER BY visible_at, instance_id, generation, seq LIMIT ?2) \
             RETURNING {TASK_COLUMNS}",
            worker = n + 3,
            until = n + 4,
        );
        let mut query = sqlx::query(&claim).bind(now).bind(to_i64(limit));
        for activity in activities {
            query = query.bind(activity.as_str());
        }
        let query = query.bind(worker).bind(lease_until);
        let mut conn = self.writer().await?;
        self.begin_immediate(&mut conn, "beginning a task claim").await?;
        let rows = query.fetch_all(&mut *conn).await.map_err(backend("claiming tasks"));
        let rows = self.end_immediate(&mut conn, rows, "committing a task claim").await?;
        let mut claimed = rows.iter().map(task_from_row).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(|a, b| task_order(a).cmp(&task_order(b)));
        Ok(claimed)
    }

    async fn complete_task(
        &self,
        worker: &str,
        instance_id: &str,
        generation: u32,
        seq: u32,
        attempt: u32,
        outcome: &TaskOutcome,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE activity_tasks SET outcome_succeeded = ?, outcome = ?, finished_at = ? \
             WHERE instance_id = ? AND generation = ? AND seq = ? AND attempt = ? AND owner = ? AND outcome IS NULL",
        )
        .bind(outcome.succeeded)
        .bind(outcome.payload.as_str())
        .bind(outcome.finished_at)
        .bind(instance_id)
        .bind(i64::from(generation))
        .bind(i64::from(seq))
        .bind(i64::from(attempt))
        .bind(worker)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(backend("completing a task"))?;
        let completed = result.rows_affected() > 0;
        if completed {
            self.stats.record_commit(1);
        }
        Ok(completed)
    }

    async fn finished_tasks(&self, instance_ids: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        let mut finished = Vec::new();
        let unique: Vec<&str> = instance_ids.iter().map(String::as_str).collect::<HashSet<_>>().into_iter().collect();
        for chunk in unique.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM activity_tasks WHERE instance_id IN ({marks}) AND outcome IS NOT NULL"
            );
            let query = chunk.iter().fold(sqlx::query(&sql), |query, id| query.bind(*id));
            for row in query.fetch_all(&mut *self.reader().await?).await.map_err(backend("reading finished tasks"))? {
                finished.push(task_from_row(&row)?);
            }
        }
        finished.sort_by(|a, b| task_key(a).cmp(&task_key(b)));
        Ok(finished)
    }

    async fn probe_commit(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO probe (id, commits) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET commits = commits + 1",
        )
        .execute(&mut *self.writer().await?)
        .await
        .map_err(backend("probing a commit"))?;
        self.stats.record_commit(1);
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }
}
