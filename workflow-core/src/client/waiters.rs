//! The result waiters of one process. A wait for an instance's end is answered by whoever learns
//! of it first: the local run (or terminate) that ends it, a store signal that it ended in another
//! process, or one shared poll that re-reads a bounded batch of the waited instances per tick, the
//! fallback for stores without signals and for signals lost. No waiter polls on its own, so the
//! cost per finished instance stays the same however many wait.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::client::InstanceStatus;
use crate::store::{Store, WakeSignal};

/// How often the shared poll re-reads waited instances.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// The most instances one poll reads (in one store call); the next tick goes on from there.
const POLL_BATCH: usize = 256;

type Senders = Vec<oneshot::Sender<InstanceStatus>>;

/// Hands instances' final statuses to the waiters in this process.
pub(crate) struct ResultWaiters {
    store: Arc<dyn Store>,
    state: Mutex<State>,
    /// Asks the poll to run now (signals were lost).
    poll_now: Arc<Notify>,
}

#[derive(Default)]
struct State {
    by_id: BTreeMap<String, Senders>,
    /// Where the next poll batch starts (round robin over the waited ids).
    cursor: Option<String>,
    poller: Option<JoinHandle<()>>,
    listener: Option<JoinHandle<()>>,
}

impl ResultWaiters {
    /// Waiters on `store`.
    pub(crate) fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self { store, state: Mutex::default(), poll_now: Arc::new(Notify::new()) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it: use it as it is.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver of `id`'s final status. The caller reads the store after subscribing (an end
    /// before the subscription is in that read) and then only awaits the receiver. With `listen`,
    /// the waiters follow the store's signals of ends in other processes themselves (a client
    /// without a runtime; a runtime's wake loop does it otherwise).
    pub(crate) fn subscribe(self: &Arc<Self>, id: &str, listen: bool) -> oneshot::Receiver<InstanceStatus> {
        let (sender, receiver) = oneshot::channel();
        let mut state = self.state();
        let list = state.by_id.entry(id.to_owned()).or_default();
        list.retain(|sender| !sender.is_closed());
        list.push(sender);
        // Started on first use and again if the tokio runtime that ran them has gone.
        if state.poller.as_ref().is_none_or(JoinHandle::is_finished) {
            state.poller = Some(tokio::spawn(poll(Arc::downgrade(self), self.poll_now.clone())));
        }
        if listen && state.listener.as_ref().is_none_or(JoinHandle::is_finished) {
            if let Some(signals) = self.store.wake_signals() {
                state.listener = Some(tokio::spawn(listen_for_ends(Arc::downgrade(self), signals)));
            }
        }
        receiver
    }

    pub(crate) fn has_waiters(&self, id: &str) -> bool {
        self.state().by_id.contains_key(id)
    }

    /// Hands `status` (final) to every waiter of its instance.
    pub(crate) fn notify(&self, status: &InstanceStatus) {
        let senders = self.state().by_id.remove(&status.instance_id);
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(status.clone());
        }
    }

    /// A signal said `id` ended in another process: read it and tell its waiters.
    pub(crate) async fn ended_elsewhere(&self, id: &str) {
        if !self.has_waiters(id) {
            return;
        }
        match self.store.instance(id).await {
            Ok(Some(record)) if record.status.is_terminal() => self.notify(&InstanceStatus::from(record)),
            Ok(_) => {}
            // The shared poll reads it again.
            Err(error) => tracing::debug!(%error, id, "reading a finished instance failed"),
        }
    }

    /// Signals may have been lost: poll now rather than at the next tick.
    pub(crate) fn signals_lost(&self) {
        self.poll_now.notify_one();
    }

    /// The next batch of waited ids, round robin; waiters that gave up are dropped on the way.
    fn next_batch(&self) -> Vec<String> {
        let mut state = self.state();
        let state = &mut *state;
        state.by_id.retain(|_, senders| {
            senders.retain(|sender| !sender.is_closed());
            !senders.is_empty()
        });
        let start = state.cursor.take();
        let after = match &start {
            Some(cursor) => Bound::Excluded(cursor.clone()),
            None => Bound::Unbounded,
        };
        let mut batch: Vec<String> =
            state.by_id.range((after, Bound::Unbounded)).take(POLL_BATCH).map(|(id, _)| id.clone()).collect();
        if let Some(cursor) = start.filter(|_| batch.len() < POLL_BATCH) {
            // The end of the ids reached: go on from the first, up to where this batch began.
            let wrap = POLL_BATCH - batch.len();
            let before = state.by_id.range((Bound::Unbounded, Bound::Included(cursor)));
            batch.extend(before.take(wrap).map(|(id, _)| id.clone()));
        }
        state.cursor = batch.last().cloned();
        batch
    }
}

/// The shared fallback poll: one bounded store read per tick, for as long as the waiters exist.
/// It holds the waiters only while it reads, so it ends soon after their last client.
async fn poll(waiters: Weak<ResultWaiters>, poll_now: Arc<Notify>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL_EVERY) => {}
            () = poll_now.notified() => {}
        }
        let Some(this) = waiters.upgrade() else { return };
        let ids = this.next_batch();
        if ids.is_empty() {
            continue;
        }
        match this.store.instances(&ids).await {
            Ok(records) => {
                for record in records.into_iter().filter(|record| record.status.is_terminal()) {
                    this.notify(&InstanceStatus::from(record));
                }
            }
            Err(error) => tracing::debug!(%error, "polling waited instances failed"),
        }
    }
}

/// Follows the store's signals for a client without a runtime: an end announced by another
/// process reaches its waiters here.
async fn listen_for_ends(waiters: Weak<ResultWaiters>, mut signals: broadcast::Receiver<WakeSignal>) {
    use broadcast::error::RecvError;
    loop {
        let signal = signals.recv().await;
        let Some(this) = waiters.upgrade() else { return };
        match signal {
            Ok(WakeSignal::Finished(id)) => this.ended_elsewhere(&id).await,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => this.signals_lost(),
            Err(RecvError::Closed) => return,
        }
    }
}
