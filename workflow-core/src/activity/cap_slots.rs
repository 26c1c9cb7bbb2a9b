//! This worker's slots of capped activities (see `Store::reserve_slots`): a share of an
//! activity's concurrency cap under one key, taken in the store and then used here for one
//! attempt after another with no task row, so a capped attempt costs what an uncapped one does
//! while the cap has room.
//!
//! An attempt takes a free slot, or waits in line and asks the store for more (one request for
//! every attempt then waiting, and as many again as are held, so a burst needs few; the requests
//! of every key and activity waiting at once go in one store call); slots go to
//! the waiting attempts in the order they came (a slot freed here too). When the store has none
//! to give (the cap is full, or tasks of the key wait in the queue), the attempt goes through the
//! task queue as before. Slots unused for [`IDLE`] go back to the store, so they do not hold the
//! cap for nothing; and a worker's hold on a key ends after [`HOLD`]: it takes no free slot of it
//! from then on and gives back each as it frees, so tasks queued elsewhere get their turn before
//! its next request (which the store refuses while they wait).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::store::{ActivityCap, Millis, SlotRequest, Store};

/// How long a free slot stays unused before it goes back to the store.
const IDLE: Duration = Duration::from_millis(100);
/// How long a worker holds slots of one key before it gives them back as they free.
const HOLD: Duration = Duration::from_secs(1);
/// How often free slots are looked at.
const SWEEP_EVERY: Duration = Duration::from_millis(50);

/// An activity and a concurrency key.
type PoolKey = (String, String);

/// The slots of capped activities this worker holds.
pub(crate) struct CapSlots {
    store: Arc<dyn Store>,
    owner: String,
    pools: Mutex<HashMap<PoolKey, Pool>>,
    /// Whether the requester task runs (it asks for every pool whose attempts wait, in one store
    /// call per round). Taken only while holding `pools`.
    requester: Mutex<bool>,
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// One activity and key's slots here.
struct Pool {
    /// The cap its requests ask under, and `(now, lease_until)` on the engine's clock at the
    /// last attempt that asked.
    cap: ActivityCap,
    clock: (Millis, Millis),
    /// Taken in the store.
    held: u32,
    /// Running an attempt (or handed to a waiting one).
    in_use: u32,
    /// The attempts waiting for a slot, in the order they came: each is told whether it got one.
    waiters: VecDeque<oneshot::Sender<bool>>,
    /// Whether a request is in flight or due in the requester's next round.
    requesting: bool,
    /// Whether the last request got less than it asked for (the cap or the queue is full), and
    /// when it was answered.
    short: bool,
    answered_at: Instant,
    /// The hold has lasted [`HOLD`]: free slots go back instead of being used.
    draining: bool,
    /// When the first slot was taken, and when a slot was last used.
    since: Instant,
    last_used: Instant,
}

impl Pool {
    fn new(cap: ActivityCap, clock: (Millis, Millis)) -> Self {
        let now = Instant::now();
        Self {
            cap,
            clock,
            held: 0,
            in_use: 0,
            waiters: VecDeque::new(),
            requesting: false,
            short: false,
            answered_at: now,
            draining: false,
            since: now,
            last_used: now,
        }
    }

    fn free(&self) -> u32 {
        self.held.saturating_sub(self.in_use)
    }

    /// Hands free slots to the waiting attempts, first come first served (one that gave up
    /// meanwhile is passed over); once the hold drains, none comes, and every one is told so.
    fn hand_out(&mut self) {
        if self.draining {
            self.refuse_all();
            return;
        }
        while self.free() > 0 {
            let Some(waiter) = self.waiters.pop_front() else { break };
            self.in_use += 1;
            if waiter.send(true).is_err() {
                self.in_use -= 1;
            } else {
                self.last_used = Instant::now();
            }
        }
    }

    /// Tells every waiting attempt that no slot comes (it goes through the task queue).
    fn refuse_all(&mut self) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(false);
        }
    }
}

/// A slot in use: freed when dropped.
pub(crate) struct CapSlot {
    slots: Arc<CapSlots>,
    key: PoolKey,
}

impl Drop for CapSlot {
    fn drop(&mut self) {
        let mut pools = self.slots.pools();
        let Some(pool) = pools.get_mut(&self.key) else { return };
        pool.in_use = pool.in_use.saturating_sub(1);
        pool.last_used = Instant::now();
        // The next attempt in line takes it, if one waits.
        pool.hand_out();
        // Under contention (the store refused this worker more, so others' work likely waits
        // for room) or at the end of a hold, a slot nobody here waits for goes back at once
        // rather than idling.
        if (pool.short || pool.draining) && pool.free() > 0 && !pool.requesting {
            pool.held -= 1;
            let (slots, key) = (self.slots.clone(), self.key.clone());
            drop(pools);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { slots.give_back(vec![(key.0, key.1, 1)]).await });
            }
        }
    }
}

impl CapSlots {
    pub(crate) fn new(store: Arc<dyn Store>, owner: String) -> Arc<Self> {
        Arc::new(Self {
            store,
            owner,
            pools: Mutex::default(),
            requester: Mutex::new(false),
            sweeper: Mutex::default(),
        })
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Pool>> {
        // The counts stay consistent whatever panicked while holding them.
        self.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot of `cap`'s activity under `key` for one attempt here, or `None` when the store has
    /// none to give (the attempt then goes through the task queue). `clock` is `(now,
    /// lease_until)` on the engine's clock, for a request.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        cap: &ActivityCap,
        key: &str,
        clock: (Millis, Millis),
    ) -> Option<CapSlot> {
        let pool_key: PoolKey = (cap.activity.clone(), key.to_owned());
        let answer = {
            let mut pools = self.pools();
            let pool = pools.entry(pool_key.clone()).or_insert_with(|| Pool::new(cap.clone(), clock));
            if pool.draining {
                return None;
            }
            if pool.free() > 0 && pool.waiters.is_empty() {
                pool.in_use += 1;
                pool.last_used = Instant::now();
                return Some(CapSlot { slots: self.clone(), key: pool_key });
            }
            // Refused lately: the cap is full or tasks wait, so go to the queue without asking
            // the store again (it is asked at most once per `IDLE` while refused).
            if pool.short && pool.answered_at.elapsed() < IDLE && !pool.requesting {
                return None;
            }
            let (sender, answer) = oneshot::channel();
            pool.waiters.push_back(sender);
            pool.clock = clock;
            pool.requesting = true;
            let mut requester = self.requester.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !*requester {
                // On a task of its own, so it is answered even if this attempt is dropped.
                *requester = true;
                tokio::spawn(self.clone().request());
            }
            answer
        };
        match answer.await {
            Ok(true) => Some(CapSlot { slots: self.clone(), key: pool_key }),
            _ => None,
        }
    }

    /// The requester: asks the store, in one call, for slots for every pool whose attempts wait
    /// (for each, every attempt waiting and as many again as are held); hands them out, and asks
    /// again for attempts that came meanwhile (or refuses a pool's attempts all when the store
    /// gave less than was waiting). Ends when no attempt waits for a request.
    async fn request(self: Arc<Self>) {
        // The attempts of a burst that are ready now join this round first (they wait for it
        // once it is in flight), so a burst needs one request, not one for its first attempt.
        tokio::task::yield_now().await;
        loop {
            let asked = self.requests();
            if asked.is_empty() {
                return;
            }
            let requests: Vec<SlotRequest> = asked.iter().map(|(_, _, request)| request.clone()).collect();
            let taken = match self.store.reserve_slots(&requests).await {
                Ok(taken) => taken,
                Err(error) => {
                    tracing::debug!(%error, "taking activity slots failed; the attempts are queued");
                    Vec::new()
                }
            };
            if taken.iter().any(|taken| *taken > 0) {
                self.start_sweeper();
            }
            let mut pools = self.pools();
            for (index, (key, demand, request)) in asked.into_iter().enumerate() {
                let taken = taken.get(index).copied().unwrap_or(0);
                let pool =
                    pools.entry(key).or_insert_with(|| Pool::new(request.cap, (request.now, request.lease_until)));
                if pool.held == 0 && taken > 0 {
                    pool.since = Instant::now();
                }
                pool.held += taken;
                // Refused what the waiting attempts needed (not the headroom): the cap is full,
                // or tasks wait in the queue.
                pool.short = taken < demand.min(request.want);
                pool.answered_at = Instant::now();
                pool.hand_out();
                if pool.short {
                    pool.refuse_all();
                }
                pool.requesting = !pool.waiters.is_empty();
            }
        }
    }

    /// The next round's requests: `(pool, attempts waiting, request)` for every pool whose
    /// attempts wait for one. With none, the requester ends (under the same lock an attempt
    /// takes to find it running).
    fn requests(&self) -> Vec<(PoolKey, u32, SlotRequest)> {
        let mut pools = self.pools();
        // One clock for the round, the latest an attempt brought: the store counts every request
        // of the call at the same moment.
        let clock = pools.values().filter(|pool| pool.requesting).map(|pool| pool.clock).max();
        let mut asked = Vec::new();
        for (key, pool) in pools.iter_mut() {
            if !pool.requesting {
                continue;
            }
            pool.waiters.retain(|waiter| !waiter.is_closed());
            if pool.waiters.is_empty() {
                pool.requesting = false;
                continue;
            }
            let demand = u32::try_from(pool.waiters.len()).unwrap_or(u32::MAX);
            let limit = pool.cap.concurrency.unwrap_or(u32::MAX);
            let (now, lease_until) = clock.unwrap_or(pool.clock);
            let request = SlotRequest {
                cap: pool.cap.clone(),
                concurrency_key: key.1.clone(),
                owner: self.owner.clone(),
                want: demand.saturating_add(pool.held).min(limit),
                lease_until,
                now,
            };
            asked.push((key.clone(), demand, request));
        }
        if asked.is_empty() {
            *self.requester.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = false;
        }
        asked
    }

    fn start_sweeper(self: &Arc<Self>) {
        let mut sweeper = self.sweeper.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if sweeper.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
            *sweeper = Some(tokio::spawn(sweep(Arc::downgrade(self))));
        }
    }

    /// The free slots to give back now: unused for [`IDLE`], or of a hold past [`HOLD`].
    fn to_give_back(&self) -> Vec<(String, String, u32)> {
        let mut pools = self.pools();
        let mut releases = Vec::new();
        for (key, pool) in pools.iter_mut() {
            if !pool.draining && pool.held > 0 && pool.since.elapsed() >= HOLD {
                pool.draining = true;
                pool.hand_out();
            }
            let free = pool.free();
            if free > 0
                && !pool.requesting
                && pool.waiters.is_empty()
                && (pool.draining || pool.last_used.elapsed() >= IDLE)
            {
                pool.held -= free;
                releases.push((key.0.clone(), key.1.clone(), free));
            }
        }
        // A pool with nothing held starts afresh (a new hold, no longer draining).
        pools.retain(|_, pool| pool.held > 0 || pool.requesting || !pool.waiters.is_empty());
        releases
    }

    /// Gives `releases` (activity, key, count) back to the store.
    async fn give_back(&self, releases: Vec<(String, String, u32)>) {
        if releases.is_empty() {
            return;
        }
        if let Err(error) = self.store.release_slots(&self.owner, &releases).await {
            // They lapse with the worker's leases if it stops renewing; until then they count
            // against the cap (never more than are held).
            tracing::warn!(%error, "giving activity slots back failed");
        }
    }
}

/// Gives free slots back to the store every [`SWEEP_EVERY`] while this worker holds any; ends
/// when it holds none (the next request starts it again) or the engine is gone.
async fn sweep(slots: Weak<CapSlots>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(slots) = slots.upgrade() else { return };
        let releases = slots.to_give_back();
        slots.give_back(releases).await;
        if slots.pools().is_empty() {
            return;
        }
    }
}
