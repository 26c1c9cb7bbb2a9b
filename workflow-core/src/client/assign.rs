//! Assigned starts: a client without a runtime hands a start straight to a live worker that takes
//! its workflow's starts ([`Store::start_takers`]), as the start's lease ([`Lease::Assign`]), so
//! the worker runs it when the store signals it, with no claim. A claim rewrites the instance's
//! row (on PostgreSQL, a new version of the row in each of its indexes); a start created owned is
//! written once, as a runtime's own start is. Where the store offers no takers, or none takes the
//! workflow, or the worker is gone by the time the start commits, the start waits for a claim as
//! before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::{AssignLease, InstanceRecord, Lease, Millis, RuntimeStatus, StartTaker, Store};

/// How long an assigned start is the worker's before the worker's first renewal: the default
/// lease. A worker renews at least every third of it (see the renew loop), whatever its own lease.
pub(crate) const ASSIGNED_LEASE: Duration = Duration::from_secs(15);

/// How old the list of takers may grow before it is read again (in the background: starts go on
/// with the list they have). A worker that joined since is offered starts once it is read; one
/// that died since is refused by the store, and its starts wait for a claim.
const REFRESH_AFTER: Duration = Duration::from_secs(1);

/// The start takers of a client without a runtime, and the turn of the next one.
pub(crate) struct StartTakers {
    store: Arc<dyn Store>,
    known: Mutex<Known>,
    /// Held by the first read, so the first starts wait for it rather than each reading.
    first_read: tokio::sync::Mutex<()>,
    /// Round robin over the workers that take a workflow.
    turn: AtomicUsize,
}

#[derive(Default)]
struct Known {
    /// When the list was last read; `None`: never.
    read_at: Option<Instant>,
    /// The takers; `None` once the store said it assigns no starts (it is not asked again).
    takers: Option<Arc<Vec<StartTaker>>>,
    refreshing: bool,
}

impl StartTakers {
    pub(crate) fn new(store: Arc<dyn Store>) -> Arc<Self> {
        let known = Known { takers: Some(Arc::default()), ..Known::default() };
        let first_read = tokio::sync::Mutex::new(());
        Arc::new(Self { store, known: Mutex::new(known), first_read, turn: AtomicUsize::new(0) })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lease assigning `record` (created now, Pending, unowned) to a worker that takes its
    /// workflow's starts, if there is one; `None` leaves it to the claims.
    pub(crate) async fn assign(self: &Arc<Self>, record: &InstanceRecord, now: Millis) -> Option<Lease> {
        let due = record.wake_at.is_none_or(|at| at <= now);
        if record.owner.is_some() || record.status != RuntimeStatus::Pending || !due {
            return None;
        }
        let takers = self.takers().await?;
        let able: Vec<&StartTaker> = takers.iter().filter(|taker| taker.workflows.contains(&record.workflow)).collect();
        if able.is_empty() {
            return None;
        }
        let taker = able[self.turn.fetch_add(1, Ordering::Relaxed) % able.len()];
        Some(Lease::Assign(AssignLease {
            instance_id: record.id.clone(),
            owner: taker.owner.clone(),
            lease_until: now.saturating_add(crate::model::time::millis(ASSIGNED_LEASE)),
            now,
        }))
    }

    /// The takers as last read: read first if never read, and again in the background once the
    /// list is older than [`REFRESH_AFTER`]. `None` if the store assigns no starts.
    async fn takers(self: &Arc<Self>) -> Option<Arc<Vec<StartTaker>>> {
        if self.known().read_at.is_none() {
            let _first = self.first_read.lock().await;
            if self.known().read_at.is_none() {
                self.read().await;
            }
        }
        let mut known = self.known();
        let stale = known.read_at.is_none_or(|at| at.elapsed() >= REFRESH_AFTER);
        if stale && !known.refreshing && known.takers.is_some() {
            known.refreshing = true;
            let this = self.clone();
            tokio::spawn(async move { this.read().await });
        }
        known.takers.clone()
    }

    /// Reads the takers into the list. A failed read keeps the list it had (a worker gone since
    /// is refused by the store) and is tried again after [`REFRESH_AFTER`].
    async fn read(&self) {
        let read = self.store.start_takers().await;
        let mut known = self.known();
        known.read_at = Some(Instant::now());
        known.refreshing = false;
        match read {
            Ok(Some(takers)) => known.takers = Some(Arc::new(takers)),
            Ok(None) => known.takers = None,
            Err(error) => tracing::debug!(%error, "reading the workers that take assigned starts failed"),
        }
    }
}
