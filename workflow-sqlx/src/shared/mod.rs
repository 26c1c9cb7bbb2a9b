//! What both backends use: the statement of a list query ([`list`]), counts of queues and statuses
//! ([`counts`]), the regrouping of a write batch into layers of multi-row statements ([`plan`]),
//! reading rows back into records ([`rows`]), with the column lists those read, the orders records are returned in ([`order`]), and what a
//! claim does with a row that does not decode ([`quarantine`]).

pub(crate) mod counts;
pub(crate) mod leases;
pub(crate) mod list;
pub(crate) mod order;
pub(crate) mod plan;
pub(crate) mod quarantine;
pub(crate) mod rows;

/// Which runnable instances a claim takes: all of them, or the starts (Pending: never run) and
/// the resumptions (Running) apart, as a claim of a workflow whose starts are rate-limited does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claimable {
    Any,
    Starts,
    Resumptions,
}

impl Claimable {
    /// The condition this adds to a claim's candidate sets, after their own status test (kept as
    /// the partial indexes spell it, so they still apply).
    pub(crate) fn condition(self) -> &'static str {
        match self {
            Claimable::Any => "",
            Claimable::Starts => " AND status = 'Pending'",
            Claimable::Resumptions => " AND status = 'Running'",
        }
    }
}

/// How many of a worker's instances one statement (one transaction) of its lease renewal renews.
/// The renewal goes through them a chunk at a time, so what it locks (the rows on PostgreSQL,
/// the write lock on SQLite) is held for a chunk's time: with 100,000 held, a write to a held
/// instance waited 2.8 s behind one statement on PostgreSQL and 168 ms on SQLite, and 54 ms and
/// 3 ms in chunks of this size (bench W14). Each chunk costs a commit, so the whole renewal takes
/// longer (on SQLite 485 ms against 161; chunks of 5,000 took 410 ms and let a write wait 31 ms).
pub(crate) const RENEWAL_CHUNK: usize = 1_000;

/// `value` as a SQL integer: `i64::MAX` if it is larger.
pub(crate) fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A random positive 63-bit key for a worker's liveness mark (std's per-process random hasher
/// keys, mixed with the time and a counter, so keys differ between processes and calls).
pub(crate) fn random_key() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    // At least 1: 0 reads as "no key" to a person looking at the table.
    i64::try_from(hasher.finish() >> 1).unwrap_or(i64::MAX).max(1)
}

/// Milliseconds since the Unix epoch, for a worker row's `registered_at` (information only).
pub(crate) fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
