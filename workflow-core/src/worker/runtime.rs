//! `Runtime`: registers workflows and activities, runs workers, shuts down gracefully.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock::{Clock, SystemClock};
use super::engine::{Engine, Settings};
use super::loops::{
    adopt_loop, claim_loop, inbox_poll_loop, liveness_loop, offer_loop, queue_metrics_loop, renew_loop, retention_loop,
    wake_loop, INBOX_POLL, LIVENESS_CHECK,
};
use super::registry::Registry;
use crate::activity::{self, ActivityDef, ActivityDispatch};
use crate::client::{Client, RetentionPolicy};
use crate::error::Error;
use crate::limits::Limits;
use crate::store::{Store, WorkerMark};
use crate::workflow::WorkflowDef;

/// Builds a [`Runtime`].
pub struct RuntimeBuilder {
    store: Option<Arc<dyn Store>>,
    registry: Registry,
    errors: Vec<String>,
    worker_id: Option<String>,
    lease: Duration,
    poll_interval: Duration,
    max_instances: usize,
    max_activities: usize,
    /// Per-activity limits of this worker, by activity name.
    activity_limits: std::collections::HashMap<String, usize>,
    clock: Arc<dyn Clock>,
    /// Whether `clock` is the system clock (no clock was given).
    system_clock: bool,
    evict_idle_after: Duration,
    claim_batch: usize,
    dispatch: ActivityDispatch,
    retention: Option<(RetentionPolicy, Duration)>,
    queue_metrics: Option<Duration>,
    limits: Limits,
    /// Schedules declared in code, written when the runtime starts.
    schedules: Vec<crate::schedule::Schedule>,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self {
            store: None,
            registry: Registry::default(),
            errors: Vec::new(),
            worker_id: None,
            lease: Duration::from_secs(15),
            poll_interval: Duration::from_millis(500),
            max_instances: 10_000,
            max_activities: 256,
            activity_limits: std::collections::HashMap::new(),
            clock: Arc::new(SystemClock),
            system_clock: true,
            evict_idle_after: Duration::from_secs(30),
            claim_batch: 64,
            dispatch: ActivityDispatch::Local,
            retention: None,
            queue_metrics: None,
            limits: Limits::default(),
            schedules: Vec::new(),
        }
    }
}

impl RuntimeBuilder {
    /// The store to use (required).
    pub fn store(mut self, store: impl Into<Arc<dyn Store>>) -> Self {
        self.store = Some(store.into());
        self
    }

    /// Registers a workflow: `.workflow(place_order::Workflow)`.
    pub fn workflow<W: WorkflowDef>(mut self, _workflow: W) -> Self {
        if let Err(error) = self.registry.add_workflow::<W>() {
            self.errors.push(error);
        }
        self
    }

    /// Registers an activity: `.activity(reserve::Activity)`.
    pub fn activity<A: ActivityDef>(mut self, _activity: A) -> Self {
        if let Err(error) = self.registry.add_activity::<A>() {
            self.errors.push(error);
        }
        self
    }

    /// This worker's id, a label for people (activities see it as
    /// [`ActivityContext::worker_id`](crate::ActivityContext::worker_id)); random by default.
    ///
    /// It is not the owner written on what the runtime claims: that is the id and a nonce of this
    /// build, `<id>#<nonce>` ([`Runtime::owner_id`]), so two runtimes never pass each other's
    /// fences, even with one worker id (two processes started with the same configuration, or a
    /// process restarted while the old one still runs). A restarted process gets its
    /// predecessor's instances back through the store's liveness marks, at once if the
    /// predecessor is dead (SQLite on a file, PostgreSQL, the memory store; see
    /// [`Store::register_worker`]), otherwise when their leases lapse, never while it lives.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// How long a claim on an instance lasts without renewal (renewed every third of it).
    ///
    /// Another worker judges a lease lapsed by its own clock, so the clocks of the processes
    /// sharing a store must be synchronised (NTP): a skew of S lets a worker take a lease S
    /// early, and a live worker keeps its instances only while S stays under two thirds of the
    /// lease. Keep S well under it. (Commits stay fenced whatever the skew, but an instance taken
    /// from a live worker redoes work and may run an activity again.) Timers set on one worker
    /// fire up to S early or late on another.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often the store is polled for runnable instances when nothing wakes the worker.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The most instances this worker runs at once.
    pub fn max_concurrent_instances(mut self, n: usize) -> Self {
        self.max_instances = n;
        self
    }

    /// The most activity attempts this worker runs at once.
    pub fn max_concurrent_activities(mut self, n: usize) -> Self {
        self.max_activities = n;
        self
    }

    /// The most attempts of activity `A` this worker runs at once (within
    /// [`max_concurrent_activities`](Self::max_concurrent_activities) for all): a per-process
    /// limit, beside the cap across every worker that `#[activity(concurrency = N)]` sets. An
    /// attempt past it waits here for its turn; with the task queue, this worker claims no more of
    /// `A`'s tasks than it has room for, leaving the others to other workers. 0 is a build error.
    pub fn max_concurrent_activity<A: crate::activity::ActivityDef>(mut self, n: usize) -> Self {
        self.activity_limits.insert(A::NAME.to_owned(), n);
        self
    }

    /// The clock workflows see (timers, back-offs, timeouts, wake-ups); the system clock by
    /// default. Pass a [`VirtualClock`](crate::VirtualClock) to run days of workflow time in
    /// milliseconds.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self.system_clock = false;
        self
    }

    /// An instance that has waited this long (real time) on timers, events or children, with no
    /// activity running, is dropped from memory; its wake-up goes to the store and it is replayed
    /// when it wakes. 30 s by default.
    ///
    /// A wait whose earliest deadline is further away than this (a long sleep, an event wait
    /// with a long timeout, a long retry back-off) is dropped as soon as it begins: it would be
    /// dropped before it ends anyway, so a sleeping instance costs a row, not memory. Shorter
    /// waits, and waits with no deadline (an event without a timeout, a child), stay in memory
    /// until they end or have lasted this long, and resume without a replay. (Only on the system
    /// clock: under a clock given to [`Self::clock`], such as a [`VirtualClock`](crate::VirtualClock),
    /// workflow time need not pass with real time, so every wait is dropped after idle time.)
    pub fn evict_idle_after(mut self, idle: Duration) -> Self {
        self.evict_idle_after = idle;
        self
    }

    /// The most instances one claim takes (64 by default), so workers sharing a database share
    /// the work instead of the first one taking everything. While a backlog lasts (claims keep
    /// coming back full) the batch doubles claim by claim up to 8 times this, to spend fewer
    /// round trips on a deep queue; never more than the free instance slots.
    pub fn claim_batch(mut self, n: usize) -> Self {
        self.claim_batch = n.max(1);
        self
    }

    /// Where the activity attempts of this worker's instances run: here
    /// ([`ActivityDispatch::Local`], the default), on any worker sharing the store
    /// ([`ActivityDispatch::Shared`]), or here until this worker's activity slots are full
    /// ([`ActivityDispatch::Overflow`]). Every worker runs queued tasks of the activities it has
    /// registered, whatever its own dispatch.
    pub fn activity_dispatch(mut self, dispatch: ActivityDispatch) -> Self {
        self.dispatch = dispatch;
        self
    }

    /// Declares `schedule` (see [`Schedule`](crate::Schedule)): written to the store when the
    /// runtime starts, created if new and replaced if its settings changed (as a deploy of new
    /// code would change them), so every process may declare the same schedules. Its workflow
    /// must be registered here; a bad expression or time zone fails `build`.
    pub fn schedule(mut self, schedule: crate::schedule::Schedule) -> Self {
        self.schedules.push(schedule);
        self
    }

    /// Purges finished instances older than `policy` allows, checking every `every` (see
    /// [`Client::purge_expired`](crate::Client::purge_expired): roots with their descendants, a
    /// page at a time). Several workers may do this on one store; a purge that loses a race
    /// changes nothing.
    pub fn retention(mut self, policy: RetentionPolicy, every: Duration) -> Self {
        self.retention = Some((policy, every.max(Duration::from_millis(10))));
        self
    }

    /// Samples the depth of every queue in the store (activity attempts and unfinished instances
    /// per name and concurrency key, as [`Client::queues`](crate::Client::queues) counts them)
    /// every `every` into the gauges `workflow_queue_waiting` and `workflow_queue_running` (see
    /// [`crate::metrics`]). Off by default: each sample is one grouped read of the store. Every
    /// worker that samples reports the same store-wide figures.
    pub fn queue_metrics(mut self, every: Duration) -> Self {
        self.queue_metrics = Some(every.max(Duration::from_millis(100)));
        self
    }

    /// Bounds on payload sizes and inboxes ([`Limits::default`] if not set), for the instances
    /// this runtime runs and its clients' starts and raises.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Starts the runtime's tasks on the current tokio runtime.
    pub async fn build(self) -> Result<Runtime, Error> {
        if !self.errors.is_empty() {
            return Err(Error::Config(self.errors.join("; ")));
        }
        let store = self.store.ok_or_else(|| Error::Config("no store given: call `.store(...)`".into()))?;
        if self.max_instances == 0 || self.max_activities == 0 || self.activity_limits.values().any(|n| *n == 0) {
            return Err(Error::Config("concurrency limits must be at least 1".into()));
        }
        if self.lease < Duration::from_millis(30) {
            return Err(Error::Config("the lease must be at least 30ms".into()));
        }
        let worker_id = self.worker_id.unwrap_or_else(|| format!("worker-{}", &nonce()[..8]));
        // Never the worker id alone: a second runtime with the same id (a restart whose
        // predecessor still runs, say) must not pass this one's fences, nor it theirs. A dead
        // predecessor's leases are not released here by id: the liveness loop releases them, at
        // its first look, once the store says the predecessor is dead, and never while it lives.
        let owner = format!("{worker_id}#{}", nonce());
        // Held as long as the runtime: other processes take this worker's instances over at once
        // when its process dies (or the runtime is dropped), not when its leases lapse.
        // The workflows without flow control: a client without a runtime may hand their starts to
        // this worker at their creation (`Lease::Assign`). A flow-controlled one's starts wait
        // for the claims that count its limits. None on a given clock: an assigned start's lease
        // is on the client's system clock.
        let unlimited = |name: &&str| {
            self.registry.workflow(name).is_some_and(|entry| entry.concurrency.is_none() && entry.rate.is_none())
        };
        let takes_starts: Vec<String> = match self.system_clock {
            true => self.registry.workflow_names().filter(unlimited).map(str::to_owned).collect(),
            false => Vec::new(),
        };
        let mark = store.register_worker(&owner, &takes_starts).await?;
        let offers = (mark.is_some() && !takes_starts.is_empty()).then_some((takes_starts, self.max_instances));
        let engine = Arc::new(Engine::new(Settings {
            store,
            clock: self.clock,
            registry: self.registry,
            worker_id,
            owner,
            lease: self.lease,
            evict_idle_after: self.evict_idle_after,
            evict_long_waits: self.system_clock,
            max_instances: self.max_instances,
            max_activities: self.max_activities,
            activity_limits: self.activity_limits,
            dispatch: self.dispatch,
            limits: self.limits,
        }));
        let mut loops = vec![
            tokio::spawn(claim_loop(engine.clone(), self.poll_interval, self.claim_batch)),
            tokio::spawn(renew_loop(engine.clone())),
            tokio::spawn(adopt_loop(engine.clone())),
            tokio::spawn(activity::outcome_loop(engine.clone(), self.poll_interval)),
            tokio::spawn(inbox_poll_loop(engine.clone(), INBOX_POLL)),
            tokio::spawn(super::scheduler::schedule_loop(engine.clone(), self.poll_interval)),
        ];
        if let Some((policy, every)) = self.retention {
            loops.push(tokio::spawn(retention_loop(engine.clone(), policy, every)));
        }
        if let Some(every) = self.queue_metrics {
            loops.push(tokio::spawn(queue_metrics_loop(engine.clone(), every)));
        }
        if engine.registry().activity_names().next().is_some() {
            loops.push(tokio::spawn(activity::task_loop(engine.clone(), self.poll_interval, self.claim_batch)));
            loops.push(tokio::spawn(activity::completion_loop(engine.clone())));
        }
        if let Some(signals) = engine.store().wake_signals() {
            loops.push(tokio::spawn(wake_loop(engine.clone(), signals)));
        }
        if mark.is_some() {
            loops.push(tokio::spawn(liveness_loop(engine.clone(), LIVENESS_CHECK)));
        }
        if let Some((takes, slots)) = offers {
            loops.push(tokio::spawn(offer_loop(engine.clone(), takes, slots)));
        }
        let runtime = Runtime { engine, loops: Mutex::new(loops), mark: Mutex::new(mark) };
        let client = runtime.client();
        for schedule in self.schedules {
            if let Err(error) = client.declare_schedule(schedule).await {
                let _ = runtime.shutdown(Duration::from_secs(5)).await;
                return Err(error);
            }
        }
        runtime.engine.wake_scheduler();
        Ok(runtime)
    }
}

/// A worker: claims runnable instances from the store and runs them, and a [`Client`] factory.
pub struct Runtime {
    engine: Arc<Engine>,
    loops: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// This worker's liveness mark in the store, if the store keeps them; dropped last.
    mark: Mutex<Option<WorkerMark>>,
}

impl Runtime {
    /// Starts building a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// A client that starts instances on this runtime and reads their state.
    pub fn client(&self) -> Client {
        Client::local(self.engine.clone())
    }

    /// This worker's id: the one given to [`RuntimeBuilder::worker_id`], or the random one it
    /// got. A label; several runtimes may share it.
    pub fn worker_id(&self) -> &str {
        self.engine.worker_id()
    }

    /// The owner this runtime writes on the instances and activity tasks it claims
    /// ([`InstanceRecord::owner`](crate::store::InstanceRecord::owner)), and that its writes are
    /// fenced by: `<worker id>#<nonce>`, the nonce new at each build, so no other runtime has it.
    pub fn owner_id(&self) -> &str {
        self.engine.owner()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.engine.store()
    }

    /// How many instances this runtime holds in memory now (running or waiting, not evicted).
    pub fn instances_in_memory(&self) -> usize {
        self.engine.in_memory_count()
    }

    /// Stops claiming, stops every running instance at its current step (what is committed stays
    /// committed; an activity attempt in flight is abandoned and runs again later), waits up to
    /// `grace` for them to stop, and releases this worker's leases so another worker can take over
    /// at once.
    pub async fn shutdown(&self, grace: Duration) -> Result<(), Error> {
        self.engine.begin_shutdown();
        let loops = self.loops.lock().map(|mut loops| std::mem::take(&mut *loops)).unwrap_or_default();
        for handle in loops {
            handle.abort();
        }
        // No more starts assigned here: clients stop choosing this worker at their next read of
        // the takers, and what they assign meanwhile is released below (or, after the mark
        // goes, by the other workers' look for dead ones).
        if let Err(error) = self.engine.store().offer_starts(self.engine.owner(), &[]).await {
            tracing::debug!(%error, "withdrawing this worker's offer of assigned starts failed");
        }
        let _ = tokio::time::timeout(grace, self.engine.drivers_idle()).await;
        self.engine.store().release_leases(self.engine.owner()).await?;
        // Nothing is held any more: the mark can go (another worker would find nothing to take).
        drop(self.mark.lock().map(|mut mark| mark.take()));
        Ok(())
    }
}

/// 16 hex digits of a new random UUID (60 random bits), new at each call.
fn nonce() -> String {
    let mut nonce = uuid::Uuid::new_v4().simple().to_string();
    nonce.truncate(16);
    nonce
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.engine.begin_shutdown();
        if let Ok(loops) = self.loops.lock() {
            for handle in loops.iter() {
                handle.abort();
            }
        }
    }
}
