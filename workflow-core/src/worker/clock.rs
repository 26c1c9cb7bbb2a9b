//! Workflow time: the system clock in production, a virtual clock in tests.
//!
//! Everything durable that waits (timers, retry back-offs, event timeouts, wake-ups) reads and
//! sleeps on the runtime's clock, so a test can run a workflow that sleeps for days in
//! milliseconds of real time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::model::time;
use crate::model::BoxFuture;
use crate::store::Millis;

/// A source of workflow time.
pub trait Clock: Send + Sync + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;
    /// Resolves once `now_ms() >= at`.
    fn sleep_until(&self, at: Millis) -> BoxFuture<'static, ()>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        time::now_ms()
    }

    fn sleep_until(&self, at: Millis) -> BoxFuture<'static, ()> {
        Box::pin(time::sleep_until_ms(at))
    }
}

#[derive(Default)]
struct VirtualState {
    now: Millis,
    next_id: u64,
    sleepers: BTreeMap<(Millis, u64), oneshot::Sender<()>>,
}

/// A clock that moves only when told to: [`VirtualClock::advance`] and
/// [`VirtualClock::advance_to_next_timer`] fire every sleeper that falls due.
#[derive(Clone, Default)]
pub struct VirtualClock {
    state: Arc<Mutex<VirtualState>>,
}

impl std::fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualClock").field("now_ms", &self.now_ms()).finish()
    }
}

impl VirtualClock {
    /// A virtual clock starting at `start_ms` (milliseconds since the Unix epoch).
    pub fn new(start_ms: Millis) -> Self {
        let clock = Self::default();
        clock.lock().now = start_ms;
        clock
    }

    /// A virtual clock starting at the current system time.
    pub fn starting_now() -> Self {
        Self::new(time::now_ms())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VirtualState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves time forward by `by` and wakes every sleeper now due.
    pub fn advance(&self, by: Duration) {
        let mut state = self.lock();
        state.now = state.now.saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
        Self::fire_due(&mut state);
    }

    /// Jumps to the earliest pending sleeper's due time and wakes it (and any due with it).
    /// Returns false when nobody sleeps.
    pub fn advance_to_next_timer(&self) -> bool {
        let mut state = self.lock();
        state.sleepers.retain(|_, sender| !sender.is_closed());
        let Some(&(due, _)) = state.sleepers.keys().next() else { return false };
        state.now = state.now.max(due);
        Self::fire_due(&mut state);
        true
    }

    /// How many sleepers wait.
    pub fn pending_timers(&self) -> usize {
        let mut state = self.lock();
        state.sleepers.retain(|_, sender| !sender.is_closed());
        state.sleepers.len()
    }

    fn fire_due(state: &mut VirtualState) {
        let later = state.sleepers.split_off(&(state.now.saturating_add(1), 0));
        for (_, sender) in std::mem::replace(&mut state.sleepers, later) {
            let _ = sender.send(());
        }
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> Millis {
        self.lock().now
    }

    fn sleep_until(&self, at: Millis) -> BoxFuture<'static, ()> {
        let mut state = self.lock();
        if at <= state.now {
            return Box::pin(async {});
        }
        let (sender, receiver) = oneshot::channel();
        state.next_id += 1;
        let id = state.next_id;
        state.sleepers.insert((at, id), sender);
        Box::pin(async move {
            // A dropped clock never fires: wait forever rather than wake early.
            if receiver.await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn virtual_sleepers_fire_in_order_when_time_moves() {
        let clock = VirtualClock::new(1_000);
        let early = clock.sleep_until(1_500);
        let late = clock.sleep_until(5_000);
        assert_eq!(clock.pending_timers(), 2);
        clock.advance(Duration::from_millis(600));
        early.await;
        assert_eq!(clock.pending_timers(), 1);
        assert!(clock.advance_to_next_timer());
        late.await;
        assert_eq!(clock.now_ms(), 5_000);
        assert!(!clock.advance_to_next_timer());
    }
}
