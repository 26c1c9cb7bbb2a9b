//! The engine a runtime's tasks share. Its state is private to the worker module: the rest of
//! the crate reaches it through the methods here, which keep its rules in one place:
//! - every write goes through [`Engine::commit`] (group commit), and what a committed batch makes
//!   runnable is woken from the batch itself ([`WakeSignal::from_batch`], the same hints the
//!   PostgreSQL store sends other processes), never by hand at the call site;
//! - an instance runs at most once in this process ([`Engine::mark_running`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};

use super::clock::Clock;
use super::committer::Committer;
use super::driver::Journal;
use super::registry::Registry;
use crate::activity::{ActivityDispatch, CapSlots, TaskHub};
use crate::client::{Ended, InstanceStatus, ResultWaiters};
use crate::error::Error;
use crate::limits::Limits;
use crate::model::time::millis;
use crate::store::{
    ActivityCap, InstanceRecord, Lease, Millis, RuntimeStatus, StartLease, Store, StoreError, WakeSignal, WorkflowCap,
    WriteOp, WriteOutcome,
};
use crate::workflow::WorkflowContext;

/// What a runtime's builder decided; the engine's fixed settings.
pub(super) struct Settings {
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) registry: Registry,
    pub(super) worker_id: String,
    /// What this runtime writes as the owner of what it claims: `worker_id` and a nonce.
    pub(super) owner: String,
    pub(super) lease: Duration,
    pub(super) evict_idle_after: Duration,
    /// Whether a wait longer than `evict_idle_after` is evicted as soon as it begins (only with
    /// the system clock: a given clock's time need not pass with real time).
    pub(super) evict_long_waits: bool,
    pub(super) max_instances: usize,
    pub(super) max_activities: usize,
    pub(super) activity_limits: HashMap<String, usize>,
    pub(super) dispatch: ActivityDispatch,
    pub(super) limits: Limits,
}

pub(crate) struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    committer: Committer,
    registry: Registry,
    /// The registered workflows' names, sorted: what this worker claims.
    workflow_names: Vec<String>,
    /// The concurrency caps of the registered workflows that have one.
    caps: Vec<WorkflowCap>,
    /// The concurrency caps of the registered activities that have one.
    activity_caps: Vec<ActivityCap>,
    /// The earliest wake of the claimer waiting on the clock ([`Engine::wake_claimer_at`]).
    next_claim_wake: Mutex<Option<Millis>>,
    /// The worker id the runtime was built with (or a random one): a label for people.
    worker_id: String,
    /// The owner written on the leases this runtime takes and checked by its fences: the worker
    /// id and a nonce of this build, so two runtimes never share one, whatever their worker ids.
    owner: String,
    lease: Duration,
    /// An instance waiting this long with nothing running is dropped from memory.
    evict_idle_after: Duration,
    /// Whether a wait longer than that is evicted as soon as it begins.
    evict_long_waits: bool,
    activity_slots: Arc<Semaphore>,
    /// This worker's own limits per activity ([`crate::RuntimeBuilder::max_concurrent_activity`]).
    activity_limits: HashMap<String, Arc<Semaphore>>,
    instance_slots: Arc<Semaphore>,
    /// Where activity attempts run.
    dispatch: ActivityDispatch,
    /// Payload and inbox bounds.
    limits: Limits,
    /// Queued attempts waited for here, and the task queue's wake-ups.
    tasks: TaskHub,
    /// This worker's slots of capped activities.
    cap_slots: Arc<CapSlots>,
    /// This process's waiters for instances' ends (shared with the runtime's clients).
    waiters: Arc<ResultWaiters>,
    /// Instances this process is running now, each with the token of its mark.
    running: Mutex<HashMap<String, u64>>,
    next_mark: AtomicU64,
    /// Inbox signals of the instances running here, to deliver local events at once.
    inboxes: Mutex<HashMap<String, Arc<Notify>>>,
    /// The context of each run under way here, to stop it from outside.
    live: Mutex<HashMap<String, WorkflowContext>>,
    /// How many times in a row this process found each instance's journal unreadable (see
    /// `driver::unreadable_journal`); an instance leaves it once its journal reads, or it failed.
    unreadable: Mutex<HashMap<String, u32>>,
    active_drivers: AtomicUsize,
    drivers_idle: Notify,
    /// Whether runnable instances may be waiting in the store for a free slot.
    backlog: AtomicBool,
    wake_claimer: Notify,
    /// Wakes the scheduler (a schedule changed here, or one falls due).
    wake_scheduler: Notify,
    /// The earliest wake of the scheduler waiting on the clock ([`Engine::wake_scheduler_at`]).
    next_schedule_wake: Mutex<Option<Millis>>,
    shutdown: watch::Sender<bool>,
    /// Starts assigned to this worker by their creators ([`WakeSignal::Assigned`]), for the
    /// adopt loop to take up.
    assigned: Mutex<Vec<String>>,
    assigned_arrived: Notify,
}

impl Engine {
    pub(super) fn new(settings: Settings) -> Self {
        let mut workflow_names: Vec<String> = settings.registry.workflow_names().map(str::to_owned).collect();
        workflow_names.sort();
        let caps = workflow_names
            .iter()
            .filter_map(|name| {
                let entry = settings.registry.workflow(name)?;
                let (concurrency, rate, keyed) = (entry.concurrency, entry.rate, entry.keyed);
                (concurrency.is_some() || rate.is_some()).then(|| WorkflowCap {
                    workflow: name.clone(),
                    concurrency,
                    rate,
                    keyed,
                })
            })
            .collect();
        let mut activity_caps: Vec<ActivityCap> = settings
            .registry
            .activity_names()
            .filter_map(|name| {
                let entry = settings.registry.activity(name)?;
                let (concurrency, rate) = (entry.concurrency, entry.rate);
                (concurrency.is_some() || rate.is_some()).then(|| ActivityCap {
                    activity: name.to_owned(),
                    concurrency,
                    rate,
                })
            })
            .collect();
        activity_caps.sort_by(|a, b| a.activity.cmp(&b.activity));
        Self {
            caps,
            activity_caps,
            next_claim_wake: Mutex::new(None),
            committer: Committer::start(settings.store.clone()),
            waiters: ResultWaiters::new(settings.store.clone()),
            cap_slots: CapSlots::new(settings.store.clone(), settings.owner.clone()),
            store: settings.store,
            clock: settings.clock,
            registry: settings.registry,
            workflow_names,
            worker_id: settings.worker_id,
            owner: settings.owner,
            lease: settings.lease,
            evict_idle_after: settings.evict_idle_after,
            evict_long_waits: settings.evict_long_waits,
            activity_slots: Arc::new(Semaphore::new(settings.max_activities)),
            activity_limits: settings
                .activity_limits
                .into_iter()
                .map(|(name, n)| (name, Arc::new(Semaphore::new(n))))
                .collect(),
            instance_slots: Arc::new(Semaphore::new(settings.max_instances)),
            dispatch: settings.dispatch,
            limits: settings.limits,
            tasks: TaskHub::default(),
            running: Mutex::default(),
            next_mark: AtomicU64::new(1),
            inboxes: Mutex::default(),
            live: Mutex::default(),
            unreadable: Mutex::default(),
            active_drivers: AtomicUsize::new(0),
            drivers_idle: Notify::new(),
            backlog: AtomicBool::new(true),
            wake_claimer: Notify::new(),
            wake_scheduler: Notify::new(),
            next_schedule_wake: Mutex::default(),
            shutdown: watch::channel(false).0,
            assigned: Mutex::default(),
            assigned_arrived: Notify::new(),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Now on the runtime's clock.
    pub(crate) fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// When a lease taken or renewed now lapses.
    pub(crate) fn lease_until(&self) -> Millis {
        self.now().saturating_add(millis(self.lease))
    }

    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// The worker id (a label: see [`Self::owner`] for the lease owner).
    pub(crate) fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The owner of this runtime's leases, on instances and tasks, and of its fences.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The flow control (caps, rates) of the workflows this worker claims (see
    /// [`Store::claim_capped`]).
    pub(crate) fn caps(&self) -> &[WorkflowCap] {
        &self.caps
    }

    /// The concurrency caps of the activities this worker claims tasks of (see
    /// [`Store::claim_tasks_capped`]).
    pub(crate) fn activity_caps(&self) -> &[ActivityCap] {
        &self.activity_caps
    }

    /// The flow control of `workflow` here, if it has a concurrency cap or a rate: its instances
    /// run only once the store, which counts them, leases them.
    fn cap_of(&self, workflow: &str) -> Option<&WorkflowCap> {
        self.caps.iter().find(|cap| cap.workflow == workflow)
    }

    /// The rate limit of `workflow`'s starts here, if it has one.
    pub(super) fn workflow_rate(&self, workflow: &str) -> Option<crate::RateLimit> {
        self.caps.iter().find(|cap| cap.workflow == workflow)?.rate
    }

    pub(super) fn workflow_names(&self) -> &[String] {
        &self.workflow_names
    }

    pub(super) fn evict_idle_after(&self) -> Duration {
        self.evict_idle_after
    }

    /// Whether a wait longer than [`Self::evict_idle_after`] is evicted as soon as it begins.
    pub(super) fn evicts_long_waits(&self) -> bool {
        self.evict_long_waits
    }

    pub(crate) fn activity_slots(&self) -> &Arc<Semaphore> {
        &self.activity_slots
    }

    /// This worker's own limit of activity `name`'s attempts, if it has one.
    pub(crate) fn activity_limit(&self, name: &str) -> Option<&Arc<Semaphore>> {
        self.activity_limits.get(name)
    }

    /// Waits for a turn under this worker's own limit of activity `name` (none without one).
    pub(crate) async fn activity_turn(&self, name: &str) -> Option<OwnedSemaphorePermit> {
        self.activity_limit(name)?.clone().acquire_owned().await.ok()
    }

    pub(super) fn instance_slots(&self) -> &Arc<Semaphore> {
        &self.instance_slots
    }

    /// This worker's slots of capped activities.
    pub(crate) fn cap_slots(&self) -> &Arc<CapSlots> {
        &self.cap_slots
    }

    pub(crate) fn tasks(&self) -> &TaskHub {
        &self.tasks
    }

    /// Writes `ops` durably (group commit), then wakes what the batch made runnable here.
    pub(crate) async fn commit(&self, ops: Vec<WriteOp>) -> Result<WriteOutcome, StoreError> {
        Ok(self.commit_leasing(ops, Vec::new()).await?.0)
    }

    /// Commits `ops` as [`Engine::commit`] does, then takes what it can of `leases` on tasks
    /// they queue and instances they create (see `Store::write_leasing`); says which it took.
    pub(crate) async fn commit_leasing(
        &self,
        ops: Vec<WriteOp>,
        leases: Vec<Lease>,
    ) -> Result<(WriteOutcome, Vec<bool>), StoreError> {
        let signals = WakeSignal::from_batch(&ops);
        // With start leases, what the batch wakes depends on which were taken: with all of them,
        // nothing for their creates (this worker runs them); with any left, a claim must look.
        let starts: Vec<usize> = (0..leases.len()).filter(|i| matches!(leases[*i], Lease::Start(_))).collect();
        let if_all_started = (!starts.is_empty())
            .then(|| WakeSignal::from_leased_batch(&ops, &Lease::started(&leases, &vec![true; leases.len()])));
        // The task deletes that journal outcomes held back here (a hold is taken before its
        // delete is buffered, so with none held, none of this batch's can journal one).
        let deletes: Vec<WriteOp> = if self.tasks.holds_any() {
            ops.iter().filter(|op| matches!(op, WriteOp::DeleteTask { .. })).cloned().collect()
        } else {
            Vec::new()
        };
        let written = self.committer.commit(ops, leases).await?;
        let signals = match if_all_started {
            Some(fewer) if starts.iter().all(|i| written.1.get(*i).copied().unwrap_or(false)) => fewer,
            _ => signals,
        };
        self.tasks.journaled(&deletes);
        for signal in signals {
            self.on_signal(signal);
        }
        Ok(written)
    }

    /// Acts on a change hint, from a batch committed here or (through the store) elsewhere.
    pub(super) fn on_signal(&self, signal: WakeSignal) {
        match signal {
            WakeSignal::Runnable => self.wake_claimer(),
            WakeSignal::Event(id) => {
                self.signal_inbox(&id);
                // An evicted instance is claimed to take it.
                self.wake_claimer();
            }
            WakeSignal::TaskQueued => self.tasks.queued.notify_one(),
            WakeSignal::TaskDone(id) => {
                if self.tasks.has_waiters(&id) {
                    self.tasks.outcome_ready.notify_one();
                }
            }
            // Read by the wake loop, which alone knows whether the store must be read for it.
            WakeSignal::Finished(_) => {}
            WakeSignal::Assigned { owner, ids } if owner == self.owner => {
                let fresh = ids.into_iter().filter(|id| !self.is_running(id));
                self.assigned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(fresh);
                self.assigned_arrived.notify_one();
            }
            WakeSignal::Assigned { .. } => {}
        }
    }

    /// The starts assigned to this worker since the last call, waiting for them if there are
    /// none yet.
    pub(super) async fn assigned_starts(&self) -> Vec<String> {
        loop {
            let assigned =
                std::mem::take(&mut *self.assigned.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            if !assigned.is_empty() {
                return assigned;
            }
            self.assigned_arrived.notified().await;
        }
    }

    /// Tells the claimer that runnable instances may wait in the store.
    pub(super) fn wake_claimer(&self) {
        self.backlog.store(true, Ordering::SeqCst);
        self.wake_claimer.notify_one();
    }

    /// Wakes the claimer at `at` on the engine's clock (an instance falls due then): its next
    /// look comes on time instead of at its next poll. One such wake waits at a time, the
    /// earliest asked for; a later one is left to the polls (a stream of debounced starts does
    /// not pile up timers).
    pub(crate) fn wake_claimer_at(self: &Arc<Self>, at: Millis) {
        self.wake_at(at, |engine| &engine.next_claim_wake, Engine::wake_claimer);
    }

    /// Calls `wake` at `at` on the engine's clock, unless a wake at or before `at` already waits
    /// in `slot` (each kind of timed wake keeps one timer, the earliest asked for).
    fn wake_at(self: &Arc<Self>, at: Millis, slot: fn(&Engine) -> &Mutex<Option<Millis>>, wake: fn(&Engine)) {
        {
            let Ok(mut next) = slot(self).lock() else { return };
            if next.is_some_and(|next| next <= at) {
                return;
            }
            *next = Some(at);
        }
        let engine = Arc::downgrade(self);
        let due = self.clock.sleep_until(at);
        tokio::spawn(async move {
            due.await;
            if let Some(engine) = engine.upgrade() {
                if let Ok(mut next) = slot(&engine).lock() {
                    if *next == Some(at) {
                        *next = None;
                    }
                }
                wake(&engine);
            }
        });
    }

    /// Tells the scheduler to look for due schedules now.
    pub(crate) fn wake_scheduler(&self) {
        self.wake_scheduler.notify_one();
    }

    /// Wakes the scheduler at `at` on the engine's clock (a schedule falls due then). One such
    /// wake waits at a time, the earliest asked for.
    pub(super) fn wake_scheduler_at(self: &Arc<Self>, at: Millis) {
        self.wake_at(at, |engine| &engine.next_schedule_wake, Engine::wake_scheduler);
    }

    /// Resolves when the scheduler should look again.
    pub(super) async fn scheduler_woken(&self) {
        self.wake_scheduler.notified().await;
    }

    /// Resolves when the claimer should look again.
    pub(super) async fn claimer_woken(&self) {
        self.wake_claimer.notified().await;
    }

    pub(super) fn has_backlog(&self) -> bool {
        self.backlog.load(Ordering::SeqCst)
    }

    pub(super) fn set_backlog(&self, backlog: bool) {
        self.backlog.store(backlog, Ordering::SeqCst);
    }

    /// Whether this attempt of activity `name` goes through the task queue.
    pub(crate) fn queues_attempt(&self, name: &str) -> bool {
        match self.dispatch {
            ActivityDispatch::Local => false,
            ActivityDispatch::Shared => true,
            ActivityDispatch::Overflow => {
                !self.registry.has_activity(name)
                    || self.activity_slots.available_permits() == 0
                    || self.activity_limit(name).is_some_and(|turns| turns.available_permits() == 0)
            }
        }
    }

    /// A receiver of `id`'s final status, when it finishes here (or a signal says it did).
    pub(crate) fn subscribe_completion(&self, id: &str) -> oneshot::Receiver<Ended> {
        self.waiters.subscribe(id, false)
    }

    /// Hands an instance's final status to the local waiters.
    pub(crate) fn notify_completion(&self, status: &InstanceStatus) {
        self.waiters.notify(status);
    }

    /// This process's result waiters.
    pub(crate) fn waiters(&self) -> &Arc<ResultWaiters> {
        &self.waiters
    }

    /// Marks `id` as running here; `None` if it already is. The token unmarks exactly this mark.
    pub(super) fn mark_running(&self, id: &str) -> Option<u64> {
        let token = self.next_mark.fetch_add(1, Ordering::SeqCst);
        let mut running = self.running.lock().ok()?;
        if running.contains_key(id) {
            return None;
        }
        running.insert(id.to_owned(), token);
        Some(token)
    }

    /// Removes the mark `token` of `id` (a later mark of the same id stays).
    pub(super) fn unmark_running(&self, id: &str, token: u64) {
        if let Ok(mut running) = self.running.lock() {
            if running.get(id) == Some(&token) {
                running.remove(id);
                shrink(&mut running);
            }
        }
    }

    /// Whether `id` runs in this process now.
    pub(crate) fn is_running(&self, id: &str) -> bool {
        self.running.lock().map(|running| running.contains_key(id)).unwrap_or(false)
    }

    /// How many instances run (or wait) in memory here: marked running, or still held by a
    /// driver (one being evicted is unmarked before its eviction commits, and holds its state
    /// until that write and the read after it are done).
    pub(super) fn in_memory_count(&self) -> usize {
        let marked = self.running.lock().map(|running| running.len()).unwrap_or(0);
        marked.max(self.active_drivers.load(Ordering::SeqCst))
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(super) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub(super) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Registers a run under way here: its context (to stop it) and its inbox signal.
    pub(super) fn add_live(&self, id: &str, ctx: &WorkflowContext, inbox: &Arc<Notify>) {
        if let Ok(mut live) = self.live.lock() {
            live.insert(id.to_owned(), ctx.clone());
        }
        if let Ok(mut inboxes) = self.inboxes.lock() {
            inboxes.insert(id.to_owned(), inbox.clone());
        }
    }

    pub(super) fn remove_live(&self, id: &str) {
        if let Ok(mut inboxes) = self.inboxes.lock() {
            inboxes.remove(id);
            shrink(&mut inboxes);
        }
        if let Ok(mut live) = self.live.lock() {
            live.remove(id);
            shrink(&mut live);
        }
    }

    /// Stops the local run of `id`, if any, without writing anything (a client changed the
    /// instance, or the store handed it out again, so this run's view is stale); the instance is
    /// handed back and replayed from the store when it is claimed next.
    /// Returns whether there was a run to stop.
    pub(crate) fn supersede(&self, id: &str, reason: &str) -> bool {
        let ctx = self.live.lock().ok().and_then(|live| live.get(id).cloned());
        if let Some(ctx) = &ctx {
            ctx.fail(crate::workflow::Fatal::Superseded(reason.to_owned()));
        }
        ctx.is_some()
    }

    /// The instances running here that wait for an event now.
    pub(super) fn waiting_for_events(&self) -> Vec<String> {
        // Each run's state is looked at without holding the map, as everywhere else.
        let live: Vec<(String, WorkflowContext)> = match self.live.lock() {
            Ok(live) => live.iter().map(|(id, ctx)| (id.clone(), ctx.clone())).collect(),
            Err(_) => return Vec::new(),
        };
        live.into_iter().filter(|(_, ctx)| ctx.waits_for_events()).map(|(id, _)| id).collect()
    }

    /// Wakes the local run of `id`, if any, to look at its inbox.
    pub(super) fn signal_inbox(&self, id: &str) {
        let signal = self.inboxes.lock().ok().and_then(|inboxes| inboxes.get(id).cloned());
        if let Some(signal) = signal {
            signal.notify_waiters();
        }
    }

    /// Counts one more unreadable journal of `id` in a row here; returns the count.
    pub(super) fn journal_unreadable(&self, id: &str) -> u32 {
        let Ok(mut unreadable) = self.unreadable.lock() else { return 1 };
        let count = unreadable.entry(id.to_owned()).or_default();
        *count += 1;
        *count
    }

    /// Forgets the unreadable journals of `id` (it read, or the instance failed for them).
    pub(super) fn forget_unreadable(&self, id: &str) {
        if let Ok(mut unreadable) = self.unreadable.lock() {
            if unreadable.remove(id).is_some() {
                shrink(&mut unreadable);
            }
        }
    }

    /// Counts a driver in; the returned guard counts it out (and says when none is left).
    pub(super) fn driver_started(self: &Arc<Self>) -> DriverGuard {
        self.active_drivers.fetch_add(1, Ordering::SeqCst);
        DriverGuard { engine: self.clone() }
    }

    /// Resolves when no driver runs.
    pub(super) async fn drivers_idle(&self) {
        loop {
            let notified = self.drivers_idle.notified();
            if self.active_drivers.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Creates an instance (with `extra` ops in the same transaction) and runs it here at once
    /// when a slot is free (a flow-controlled workflow's, when the store leases it to this worker
    /// in that transaction); otherwise it waits in the store for a claim.
    pub(crate) async fn start_instance(
        self: &Arc<Self>,
        mut record: InstanceRecord,
        extra: Vec<WriteOp>,
    ) -> Result<(), Error> {
        if self.is_shutting_down() {
            return Err(Error::ShutDown);
        }
        let id = record.id.clone();
        // A delayed start waits for its due time; otherwise it runs here at once when a slot is
        // free.
        let due = record.wake_at.filter(|due| *due > self.now());
        let permit = match due {
            Some(_) => None,
            None => self.instance_slots.clone().try_acquire_owned().ok(),
        };
        let mut leases = Vec::new();
        let placed = match (permit, self.cap_of(&record.workflow)) {
            (None, _) => Placed::Claim,
            // A capped (or rated) workflow's instance is created unowned, and the store leases it
            // to this worker in the same transaction if its limits have room and nothing of it
            // waits ahead: the store counts what runs, across every worker. It is marked running
            // only once leased: one left to a claim must not hold a mark a claim would find (the
            // claim would hand it back, and a rated workflow's claim would have spent a start).
            (Some(permit), Some(cap)) => {
                leases.push(Lease::Start(StartLease {
                    instance_id: id.clone(),
                    concurrency_key: record.concurrency_key.clone(),
                    priority: record.priority,
                    owner: self.owner.clone(),
                    lease_until: self.lease_until(),
                    now: self.now(),
                    cap: cap.clone(),
                }));
                Placed::IfLeased(permit)
            }
            (Some(permit), None) => {
                let Some(token) = self.mark_running(&id) else {
                    return Err(Error::InstanceExists(id));
                };
                // It runs here from this commit on: created Running, which saves the first turn
                // a commit of its own for the Pending-to-Running change.
                record.status = RuntimeStatus::Running;
                record.owner = Some(self.owner.clone());
                record.lease_until = Some(self.lease_until());
                Placed::Here(permit, token)
            }
        };
        let mut ops = vec![WriteOp::CreateInstance(record.clone())];
        ops.extend(extra);
        let committed = match self.commit_leasing(ops, leases.clone()).await {
            Ok((outcome, _)) if !outcome.existing.is_empty() => Err(Error::InstanceExists(id.clone())),
            Ok((_, taken)) => Ok(taken.first().copied().unwrap_or(false)),
            Err(error) => Err(error.into()),
        };
        match (committed, placed) {
            (Ok(_), Placed::Here(permit, token)) => self.spawn_driver(record, Journal::Fresh, permit, token),
            (Ok(true), Placed::IfLeased(permit)) => {
                let Some(Lease::Start(lease)) = leases.first() else { return Ok(()) };
                let Some(token) = self.mark_running(&id) else {
                    // Only a stale run of an earlier instance of this id could hold the mark:
                    // give the lease back for a claim to take.
                    tracing::warn!(instance_id = %id, "a leased start found its id running here; handing it back");
                    let _ = self.commit(super::loops::hand_back(self, &record)).await;
                    return Ok(());
                };
                // As after a claim's starts: a rated workflow's start leaves its window a period
                // on, so look again then (starts it held back wait for that).
                if let Some(rate) = lease.cap.rate {
                    self.wake_claimer_at(lease.now.saturating_add(rate.period_ms));
                }
                record.status = RuntimeStatus::Running;
                record.owner = Some(lease.owner.clone());
                record.lease_until = Some(lease.lease_until);
                record.updated_at = lease.now;
                self.spawn_driver(record, Journal::Fresh, permit, token);
            }
            // Left unowned: the commit woke the claimers for it, or it is due later.
            (Ok(_), _) => {
                if let Some(due) = due {
                    self.wake_claimer_at(due);
                }
            }
            (Err(error), placed) => {
                if let Placed::Here(_, token) = placed {
                    self.unmark_running(&id, token);
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// Runs an instance this process has claimed (and marked running) on its own task.
    pub(super) fn spawn_driver(
        self: &Arc<Self>,
        record: InstanceRecord,
        journal: Journal,
        permit: OwnedSemaphorePermit,
        token: u64,
    ) {
        super::driver::spawn(self.clone(), record, journal, permit, token);
    }
}

/// Gives memory back once a map of the instances in memory has emptied to a quarter of what it
/// grew to (100k instances evicted leave megabytes of empty buckets otherwise), keeping room for
/// twice what is left, so a map that shrinks and grows again reallocates rarely.
pub(super) fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    const KEEP: usize = 64;
    if map.capacity() > KEEP && map.len() < map.capacity() / 4 {
        map.shrink_to((map.len() * 2).max(KEEP));
    }
}

/// Where a start runs, as far as its creating commit decides.
enum Placed {
    /// Here, created Running under this worker's lease (marked running, with its slot).
    Here(OwnedSemaphorePermit, u64),
    /// Here if the store leases it in the creating commit (with the slot it would take).
    IfLeased(OwnedSemaphorePermit),
    /// Wherever a claim takes it.
    Claim,
}

/// Counts a running driver out when dropped.
pub(super) struct DriverGuard {
    engine: Arc<Engine>,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if self.engine.active_drivers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.engine.drivers_idle.notify_waiters();
        }
        // A slot is free: take the next runnable instance waiting for one (or, with caps, a
        // place under a cap may be: a claim cut short by a cap does not count as a backlog).
        if self.engine.has_backlog() || !self.engine.caps.is_empty() {
            self.engine.wake_claimer.notify_one();
        }
    }
}
