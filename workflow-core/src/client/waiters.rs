//! The result waiters of one process. A wait for an instance's end is answered by whoever learns
//! of it first: the local run (or terminate) that ends it, a store signal that it ended in another
//! process, or one shared poll that re-reads a bounded batch of the waited instances per tick, the
//! fallback for stores without signals and for signals lost. No waiter reads the store on its
//! own: the first read of a new waiter (which also asks the store to signal the end, see
//! `Store::watch`) joins the next batch read, as writes join a group commit. So the cost per
//! finished instance stays the same however many wait.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::client::InstanceStatus;
use crate::store::{InstanceRecord, Store, WakeSignal};

/// How often the shared poll re-reads waited instances.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// The most instances one poll reads (in one store call); the next tick goes on from there.
const POLL_BATCH: usize = 256;
/// The most new waiters' instances one watch reads (in one store call).
const WATCH_BATCH: usize = 1024;

/// What a waiter receives: the final status, or `None` when the instance does not exist (it never
/// did, or it was purged).
pub(crate) type Ended = Option<InstanceStatus>;

type Senders = Vec<oneshot::Sender<Ended>>;

/// Hands instances' final statuses to the waiters in this process.
pub(crate) struct ResultWaiters {
    store: Arc<dyn Store>,
    state: Mutex<State>,
    /// Asks the poll to run now (signals were lost).
    poll_now: Arc<Notify>,
    /// Tells the poll task that new waiters want their first read.
    watch_requested: Arc<Notify>,
}

#[derive(Default)]
struct State {
    by_id: BTreeMap<String, Senders>,
    /// Where the next poll batch starts (round robin over the waited ids).
    cursor: Option<String>,
    /// Instances of new waiters, for the next watch read.
    to_watch: Vec<String>,
    /// Instances a signal says ended, for the next plain read.
    to_read: Vec<String>,
    poller: Option<JoinHandle<()>>,
    listener: Option<JoinHandle<()>>,
}

impl ResultWaiters {
    /// Waiters on `store`.
    pub(crate) fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            store,
            state: Mutex::default(),
            poll_now: Arc::new(Notify::new()),
            watch_requested: Arc::new(Notify::new()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it: use it as it is.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver of `id`'s end. An end that happened before the subscription is found by a read
    /// after it: [`ResultWaiters::read_soon`], unless the instance runs in this process. With
    /// `listen`, the waiters follow the store's signals of ends in other processes themselves (a
    /// client without a runtime; a runtime's wake loop does it otherwise).
    pub(crate) fn subscribe(self: &Arc<Self>, id: &str, listen: bool) -> oneshot::Receiver<Ended> {
        let (sender, receiver) = oneshot::channel();
        let mut state = self.state();
        let list = state.by_id.entry(id.to_owned()).or_default();
        list.retain(|sender| !sender.is_closed());
        list.push(sender);
        // Started on first use and again if the tokio runtime that ran them has gone.
        if state.poller.as_ref().is_none_or(JoinHandle::is_finished) {
            let wake = (self.poll_now.clone(), self.watch_requested.clone());
            state.poller = Some(tokio::spawn(poll(Arc::downgrade(self), wake)));
        }
        if listen && state.listener.as_ref().is_none_or(JoinHandle::is_finished) {
            if let Some(signals) = self.store.wake_signals() {
                state.listener = Some(tokio::spawn(listen_for_ends(Arc::downgrade(self), signals)));
            }
        }
        receiver
    }

    /// Reads `id` for its waiters in the next watch batch (within a task hop, with every other
    /// waiter's first read that arrives meanwhile), asking the store to signal its end.
    pub(crate) fn read_soon(&self, id: &str) {
        self.state().to_watch.push(id.to_owned());
        self.watch_requested.notify_one();
    }

    pub(crate) fn has_waiters(&self, id: &str) -> bool {
        self.state().by_id.contains_key(id)
    }

    /// Hands `status` (final) to every waiter of its instance.
    pub(crate) fn notify(&self, status: &InstanceStatus) {
        self.hand_out(&status.instance_id, Some(status));
    }

    fn hand_out(&self, id: &str, ended: Option<&InstanceStatus>) {
        let senders = self.state().by_id.remove(id);
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(ended.cloned());
        }
    }

    /// Hands out what a batch read of `ids` found: final statuses, and "no such instance" for
    /// the ids it did not find.
    fn hand_out_read(&self, ids: &[String], records: Vec<InstanceRecord>) {
        let mut missing: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        for record in records {
            missing.remove(record.id.as_str());
            if record.status.is_terminal() {
                self.notify(&InstanceStatus::from(record));
            }
        }
        for id in missing {
            self.hand_out(id, None);
        }
    }

    /// The next batch of instances to read at once: new waiters' (`watch`) or ended ones'.
    fn next_read_batch(&self, watch: bool) -> Vec<String> {
        let mut state = self.state();
        let queue = if watch { &mut state.to_watch } else { &mut state.to_read };
        let take = queue.len().min(WATCH_BATCH);
        let mut batch: Vec<String> = queue.drain(..take).collect();
        batch.sort_unstable();
        batch.dedup();
        batch
    }

    /// Puts a failed read batch back, to be tried again at the next tick.
    fn read_later(&self, watch: bool, ids: Vec<String>) {
        let mut state = self.state();
        if watch {
            state.to_watch.extend(ids)
        } else {
            state.to_read.extend(ids)
        }
    }

    /// A signal said `id` ended in another process: read it for its waiters (in the next batch).
    pub(crate) fn ended_elsewhere(&self, id: &str) {
        if self.has_waiters(id) {
            self.state().to_read.push(id.to_owned());
            self.watch_requested.notify_one();
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

/// The shared task: new waiters' first reads (batched) as soon as they ask, and the fallback poll,
/// one bounded store read per tick. It holds the waiters only while it reads, so it ends soon
/// after their last client.
async fn poll(waiters: Weak<ResultWaiters>, (poll_now, watch_requested): (Arc<Notify>, Arc<Notify>)) {
    let mut next_tick = tokio::time::Instant::now() + POLL_EVERY;
    loop {
        let tick = tokio::select! {
            () = tokio::time::sleep_until(next_tick) => true,
            () = poll_now.notified() => true,
            () = watch_requested.notified() => false,
        };
        let Some(this) = waiters.upgrade() else { return };
        for watch in [true, false] {
            loop {
                let ids = this.next_read_batch(watch);
                if ids.is_empty() {
                    break;
                }
                let read = if watch { this.store.watch(&ids).await } else { this.store.instances(&ids).await };
                match read {
                    Ok(records) => this.hand_out_read(&ids, records),
                    Err(error) => {
                        // A store failing for a while (a database restarting) does not end a wait.
                        tracing::warn!(%error, "reading awaited instances failed; trying again");
                        this.read_later(watch, ids);
                        break;
                    }
                }
            }
        }
        if !tick {
            continue;
        }
        next_tick = tokio::time::Instant::now() + POLL_EVERY;
        let ids = this.next_batch();
        if ids.is_empty() {
            continue;
        }
        match this.store.instances(&ids).await {
            Ok(records) => this.hand_out_read(&ids, records),
            Err(error) => tracing::debug!(%error, "polling awaited instances failed"),
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
            Ok(WakeSignal::Finished(id)) => this.ended_elsewhere(&id),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => this.signals_lost(),
            Err(RecvError::Closed) => return,
        }
    }
}
