//! `Runtime`: registers workflows and activities, runs workers, shuts down gracefully.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify, Semaphore};

use crate::client::Client;
use crate::clock::{millis, Clock, SystemClock};
use crate::committer::Committer;
use crate::engine::{CompletionHub, Engine};
use crate::error::Error;
use crate::manage::RetentionPolicy;
use crate::registry::{ActivityDef, Registry, WorkflowDef};
use crate::store::{Store, WriteOp};
use crate::tasks::{self, ActivityDispatch, TaskHub};

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
    clock: Arc<dyn Clock>,
    evict_idle_after: Duration,
    claim_batch: usize,
    dispatch: ActivityDispatch,
    retention: Option<(RetentionPolicy, Duration)>,
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
            clock: Arc::new(SystemClock),
            evict_idle_after: Duration::from_secs(30),
            claim_batch: 64,
            dispatch: ActivityDispatch::Local,
            retention: None,
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

    /// This worker's id, stable across restarts if you want a restarted process to take its own
    /// instances back at once instead of after their leases lapse. Random by default.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// How long a claim on an instance lasts without renewal (renewed every third of it).
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

    /// The clock workflows see (timers, back-offs, timeouts, wake-ups); the system clock by
    /// default. Pass a [`VirtualClock`](crate::VirtualClock) to run days of workflow time in
    /// milliseconds.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// An instance that has waited this long (real time) on timers, events or children, with no
    /// activity running, is dropped from memory; its wake-up goes to the store and it is replayed
    /// when it wakes. 30 s by default.
    pub fn evict_idle_after(mut self, idle: Duration) -> Self {
        self.evict_idle_after = idle;
        self
    }

    /// The most instances one claim takes (64 by default), so workers sharing a database share
    /// the work instead of the first one taking everything.
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

    /// Purges finished instances older than `policy` allows, checking every `every`. Several
    /// workers may do this on one store; a purge that loses a race changes nothing.
    pub fn retention(mut self, policy: RetentionPolicy, every: Duration) -> Self {
        self.retention = Some((policy, every.max(Duration::from_millis(10))));
        self
    }

    /// Starts the runtime's tasks on the current tokio runtime.
    pub async fn build(self) -> Result<Runtime, Error> {
        if !self.errors.is_empty() {
            return Err(Error::Config(self.errors.join("; ")));
        }
        let store = self.store.ok_or_else(|| Error::Config("no store given: call `.store(...)`".into()))?;
        if self.max_instances == 0 || self.max_activities == 0 {
            return Err(Error::Config("concurrency limits must be at least 1".into()));
        }
        if self.lease < Duration::from_millis(30) {
            return Err(Error::Config("the lease must be at least 30ms".into()));
        }
        let mut workflow_names: Vec<String> = self.registry.workflows.keys().cloned().collect();
        workflow_names.sort();
        if let Some(id) = &self.worker_id {
            // A restarted worker with a stable id takes its own instances back at once.
            store.release_leases(id).await?;
        }
        let (shutdown, _) = watch::channel(false);
        let engine = Arc::new(Engine {
            committer: Committer::start(store.clone()),
            store,
            clock: self.clock,
            evict_idle_after: self.evict_idle_after,
            inboxes: Mutex::default(),
            live: Mutex::default(),
            registry: self.registry,
            workflow_names,
            worker_id: self.worker_id.unwrap_or_else(|| format!("worker-{}", uuid::Uuid::new_v4().simple())),
            lease: self.lease,
            activity_slots: Arc::new(Semaphore::new(self.max_activities)),
            instance_slots: Arc::new(Semaphore::new(self.max_instances)),
            running: Mutex::default(),
            next_mark: std::sync::atomic::AtomicU64::new(1),
            active_drivers: AtomicUsize::new(0),
            backlog: AtomicBool::new(true),
            drivers_idle: Notify::new(),
            completions: CompletionHub::default(),
            wake_claimer: Notify::new(),
            dispatch: self.dispatch,
            tasks: TaskHub::default(),
            shutdown,
        });
        let mut loops = vec![
            tokio::spawn(claim_loop(engine.clone(), self.poll_interval, self.claim_batch)),
            tokio::spawn(renew_loop(engine.clone())),
            tokio::spawn(tasks::outcome_loop(engine.clone(), self.poll_interval)),
        ];
        if let Some((policy, every)) = self.retention {
            loops.push(tokio::spawn(retention_loop(engine.clone(), policy, every)));
        }
        if !engine.registry.activities.is_empty() {
            loops.push(tokio::spawn(tasks::task_loop(engine.clone(), self.poll_interval, self.claim_batch)));
        }
        if let Some(signals) = engine.store.wake_signals() {
            loops.push(tokio::spawn(wake_loop(engine.clone(), signals)));
        }
        Ok(Runtime { engine, loops: Mutex::new(loops) })
    }
}

/// A worker: claims runnable instances from the store and runs them, and a [`Client`] factory.
pub struct Runtime {
    engine: Arc<Engine>,
    loops: Mutex<Vec<tokio::task::JoinHandle<()>>>,
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

    /// This worker's id (the owner written on the instances it holds).
    pub fn worker_id(&self) -> &str {
        &self.engine.worker_id
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.engine.store
    }

    /// How many instances this runtime holds in memory now (running or waiting, not evicted).
    pub fn instances_in_memory(&self) -> usize {
        self.engine.running.lock().map(|running| running.len()).unwrap_or(0)
    }

    /// Stops claiming, stops every running instance at its current step (what is committed stays
    /// committed; an activity attempt in flight is abandoned and runs again later), waits up to
    /// `grace` for them to stop, and releases this worker's leases so another worker can take over
    /// at once.
    pub async fn shutdown(&self, grace: Duration) -> Result<(), Error> {
        self.engine.shutdown.send_replace(true);
        let loops = self.loops.lock().map(|mut loops| std::mem::take(&mut *loops)).unwrap_or_default();
        for handle in loops {
            handle.abort();
        }
        let idle = async {
            loop {
                let notified = self.engine.drivers_idle.notified();
                if self.engine.active_drivers.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(grace, idle).await;
        self.engine.store.release_leases(&self.engine.worker_id).await?;
        Ok(())
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.engine.shutdown.send_replace(true);
        if let Ok(loops) = self.loops.lock() {
            for handle in loops.iter() {
                handle.abort();
            }
        }
    }
}

async fn claim_loop(engine: Arc<Engine>, poll_interval: Duration, batch: usize) {
    loop {
        if engine.is_shutting_down() {
            return;
        }
        let free = engine.instance_slots.available_permits().min(batch);
        let mut full_batch = false;
        if free > 0 && !engine.workflow_names.is_empty() {
            let now = engine.clock.now_ms();
            let lease_until = now.saturating_add(millis(engine.lease));
            let claimed = engine.store.claim(&engine.worker_id, &engine.workflow_names, now, lease_until, free).await;
            match claimed {
                Ok(records) => {
                    full_batch = records.len() >= free;
                    engine.backlog.store(full_batch, Ordering::SeqCst);
                    for record in records {
                        let Some(token) = engine.mark_running(&record.id) else {
                            // Claimable means its owner was cleared or its lease lapsed: a run
                            // here is stale. Stop it; it hands the claim back and is replayed.
                            // With no run (a start of an existing id holds the mark for a
                            // moment), hand the claim back now: nothing would, and the renewals
                            // would keep it ours for good.
                            if !engine.supersede(&record.id, "the instance was handed out again") {
                                let fence =
                                    WriteOp::AssertOwner { id: record.id.clone(), owner: engine.worker_id.clone() };
                                let release = WriteOp::Evict { id: record.id, wake_at: engine.clock.now_ms() };
                                let _ = engine.committer.commit(vec![fence, release]).await;
                            }
                            continue;
                        };
                        match engine.instance_slots.clone().try_acquire_owned() {
                            Ok(permit) => engine.spawn_driver(record, false, permit, token),
                            Err(_) => {
                                // A local start took the slot meanwhile: hand the claim back.
                                engine.unmark_running(&record.id, token);
                                let release = WriteOp::Evict { id: record.id, wake_at: engine.clock.now_ms() };
                                let _ = engine.committer.commit(vec![release]).await;
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "claiming instances failed"),
            }
        }
        if full_batch {
            // More may be waiting: claim again at once (other workers claim in between).
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll_interval) => {}
            _ = engine.wake_claimer.notified() => {}
        }
    }
}

async fn retention_loop(engine: Arc<Engine>, policy: RetentionPolicy, every: Duration) {
    let client = Client::local(engine.clone());
    loop {
        tokio::time::sleep(every).await;
        if engine.is_shutting_down() {
            return;
        }
        match client.purge_expired(&policy).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "retention purged finished instances"),
            Err(error) => tracing::warn!(%error, "retention purge failed"),
        }
    }
}

async fn renew_loop(engine: Arc<Engine>) {
    let every = engine.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        if engine.is_shutting_down() {
            return;
        }
        let lease_until = engine.clock.now_ms().saturating_add(millis(engine.lease));
        if let Err(error) = engine.store.renew_leases(&engine.worker_id, lease_until).await {
            tracing::warn!(%error, "renewing leases failed");
        }
    }
}

/// Turns the store's change hints (other processes' writes) into local wake-ups.
async fn wake_loop(engine: Arc<Engine>, mut signals: tokio::sync::broadcast::Receiver<crate::WakeSignal>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let signal = match signals.recv().await {
            Ok(signal) => signal,
            Err(RecvError::Lagged(_)) => crate::WakeSignal::Runnable,
            Err(RecvError::Closed) => return,
        };
        match signal {
            crate::WakeSignal::Runnable => {}
            crate::WakeSignal::Event(id) => engine.signal_inbox(&id),
            crate::WakeSignal::Finished(id) => {
                // A run here that finished it tells its waiters itself once its commit returns;
                // the signal of that commit often comes first, and reading the store for it would
                // only duplicate the news.
                if engine.completions.has_waiters(&id) && !engine.is_running(&id) {
                    if let Ok(Some(record)) = engine.store.instance(&id).await {
                        if record.status.is_terminal() {
                            engine.completions.notify(&crate::InstanceStatus::from(record));
                        }
                    }
                }
                continue;
            }
            crate::WakeSignal::TaskQueued => {
                engine.tasks.queued.notify_one();
                continue;
            }
            crate::WakeSignal::TaskDone(id) => {
                if engine.tasks.has_waiters(&id) {
                    engine.tasks.outcome_ready.notify_one();
                }
                continue;
            }
        }
        engine.backlog.store(true, Ordering::SeqCst);
        engine.wake_claimer.notify_one();
    }
}
