//! The planner's statistics of the store's tables, kept fresh as they grow.
//!
//! PostgreSQL plans a statement from the statistics `ANALYZE` gathers, and keeps a prepared
//! statement's generic plan until they change. Without them (autovacuum off, or a fresh database
//! before autovacuum's first pass, a minute or more) it plans for tables as small as they were
//! when the statement was first prepared: a batch's fence then reads the whole `instances` table
//! and a journal read the whole `journal` table, so every commit costs more as the store grows
//! (W1 rounds on a store of 20,000 instances took 7 times as long as on a fresh one). So the
//! store analyzes its own tables, in the background and one `ANALYZE` at a time, each time its
//! inserts since the last one reach what the tables held then: when they have about doubled, so
//! the statistics are never more than a few times off and the `ANALYZE`s (~50 ms each on this
//! store's tables at a few thousand rows, bounded by their sample beyond) cost little over a
//! store's life. Autovacuum, where it runs, analyzes more often, and these add little.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::postgres::PgPool;
use workflow_core::store::WriteOp;

use super::retry::sql_state;

/// The tables whose size changes the plans of the store's hot statements.
const ANALYZE: &str = "ANALYZE instances, journal, events, activity_tasks";

/// The rows those tables hold, as the last `ANALYZE` counted them.
const COUNTED: &str = "SELECT coalesce(sum(greatest(reltuples, 0)), 0)::int8 FROM pg_class \
     WHERE oid IN ('instances'::regclass, 'journal'::regclass, 'events'::regclass, 'activity_tasks'::regclass)";

/// The fewest inserted rows that call for an `ANALYZE`: on smaller tables any plan is cheap.
const FIRST_AFTER: u64 = 1_000;

/// SQLSTATE `insufficient_privilege`: the store's role does not own the tables.
const NOT_ALLOWED: &str = "42501";

/// Counts the rows the store inserts and analyzes its tables when they have grown enough.
#[derive(Debug, Clone)]
pub(super) struct Statistics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Off by option, or after the server refused an `ANALYZE`.
    enabled: AtomicBool,
    /// Rows inserted through this store since its last `ANALYZE` began.
    grown: AtomicU64,
    /// The growth that calls for the next one.
    next_after: AtomicU64,
    /// An `ANALYZE` is running.
    running: AtomicBool,
}

impl Statistics {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                enabled: AtomicBool::new(enabled),
                grown: AtomicU64::new(0),
                next_after: AtomicU64::new(FIRST_AFTER),
                running: AtomicBool::new(false),
            }),
        }
    }

    /// Counts the rows a committed batch inserted, and starts an `ANALYZE` on `pool` when the
    /// tables have grown enough since the last one (and none is running).
    pub(super) fn committed(&self, ops: &[WriteOp], pool: &PgPool) {
        let inner = &self.inner;
        if !inner.enabled.load(Ordering::Relaxed) {
            return;
        }
        let rows = ops.iter().filter(|op| inserts_a_row(op)).count() as u64;
        let grown = inner.grown.fetch_add(rows, Ordering::Relaxed) + rows;
        if grown < inner.next_after.load(Ordering::Relaxed) || inner.running.swap(true, Ordering::AcqRel) {
            return;
        }
        inner.grown.store(0, Ordering::Relaxed);
        tokio::spawn(analyze(self.inner.clone(), pool.clone()));
    }
}

/// Whether `op` adds a row to one of the tables analyzed.
fn inserts_a_row(op: &WriteOp) -> bool {
    matches!(
        op,
        WriteOp::CreateInstance(_) | WriteOp::PutRecord(_) | WriteOp::AddEvent { .. } | WriteOp::EnqueueTask(_)
    )
}

async fn analyze(inner: Arc<Inner>, pool: PgPool) {
    match sqlx::query(ANALYZE).execute(&pool).await {
        Ok(_) => {
            if let Ok(rows) = sqlx::query_scalar::<_, i64>(COUNTED).fetch_one(&pool).await {
                let next = u64::try_from(rows).unwrap_or(0).max(FIRST_AFTER);
                inner.next_after.store(next, Ordering::Relaxed);
            }
            tracing::debug!(next_after = inner.next_after.load(Ordering::Relaxed), "analyzed the store's tables");
        }
        Err(error) if sql_state(&error).as_deref() == Some(NOT_ALLOWED) => {
            tracing::warn!(
                %error,
                "the store's role may not ANALYZE its tables; leaving their statistics to autovacuum \
                 (see PostgresOptions::analyze_as_tables_grow)"
            );
            inner.enabled.store(false, Ordering::Relaxed);
        }
        Err(error) => tracing::debug!(%error, "analyzing the store's tables failed; trying again as they grow"),
    }
    inner.running.store(false, Ordering::Release);
}
