//! The engine shared by a runtime's tasks: registry, committer, limits, and the instance driver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::client::InstanceStatus;
use crate::clock::Clock;
use crate::committer::Committer;
use crate::context::{Fatal, WorkflowContext};
use crate::error::{Error, FailureDetails, WorkflowError};
use crate::registry::Registry;
use crate::store::{InstanceRecord, RuntimeStatus, Store, WriteOp, NEVER};

/// Hands an instance's final status to local waiters when it finishes.
#[derive(Default)]
pub(crate) struct CompletionHub {
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<InstanceStatus>>>>,
}

impl CompletionHub {
    pub(crate) fn subscribe(&self, id: &str) -> oneshot::Receiver<InstanceStatus> {
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            let list = waiters.entry(id.to_owned()).or_default();
            list.retain(|sender| !sender.is_closed());
            list.push(sender);
        }
        receiver
    }

    pub(crate) fn has_waiters(&self, id: &str) -> bool {
        self.waiters.lock().map(|waiters| waiters.contains_key(id)).unwrap_or(false)
    }

    pub(crate) fn notify(&self, status: &InstanceStatus) {
        let senders = self.waiters.lock().ok().and_then(|mut waiters| waiters.remove(&status.instance_id));
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(status.clone());
        }
    }
}

pub(crate) struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    /// An instance waiting this long with nothing running is dropped from memory.
    pub(crate) evict_idle_after: Duration,
    /// Inbox signals of the instances running here, to deliver local events at once.
    pub(crate) inboxes: Mutex<HashMap<String, Arc<Notify>>>,
    /// The context of each run under way here, to stop it from outside.
    pub(crate) live: Mutex<HashMap<String, WorkflowContext>>,
    pub(crate) committer: Committer,
    pub(crate) registry: Registry,
    pub(crate) workflow_names: Vec<String>,
    pub(crate) worker_id: String,
    pub(crate) lease: Duration,
    pub(crate) activity_slots: Arc<Semaphore>,
    pub(crate) instance_slots: Arc<Semaphore>,
    /// Instances this process is running now, each with the token of its mark.
    pub(crate) running: Mutex<HashMap<String, u64>>,
    pub(crate) next_mark: std::sync::atomic::AtomicU64,
    pub(crate) active_drivers: AtomicUsize,
    /// Whether runnable instances may be waiting in the store for a free slot.
    pub(crate) backlog: AtomicBool,
    pub(crate) drivers_idle: Notify,
    pub(crate) completions: CompletionHub,
    pub(crate) wake_claimer: Notify,
    /// Where activity attempts run.
    pub(crate) dispatch: crate::tasks::ActivityDispatch,
    /// Queued attempts waited for here, and the task queue's wake-ups.
    pub(crate) tasks: crate::tasks::TaskHub,
    pub(crate) shutdown: watch::Sender<bool>,
}

impl Engine {
    /// Marks `id` as running here; `None` if it already is. The token unmarks exactly this mark.
    pub(crate) fn mark_running(&self, id: &str) -> Option<u64> {
        let token = self.next_mark.fetch_add(1, Ordering::SeqCst);
        let mut running = self.running.lock().ok()?;
        if running.contains_key(id) {
            return None;
        }
        running.insert(id.to_owned(), token);
        Some(token)
    }

    /// Removes the mark `token` of `id` (a later mark of the same id stays).
    pub(crate) fn unmark_running(&self, id: &str, token: u64) {
        if let Ok(mut running) = self.running.lock() {
            if running.get(id) == Some(&token) {
                running.remove(id);
            }
        }
    }

    /// Whether `id` runs in this process now.
    pub(crate) fn is_running(&self, id: &str) -> bool {
        self.running.lock().map(|running| running.contains_key(id)).unwrap_or(false)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Stops the local run of `id`, if any, without writing anything (a client changed the
    /// instance, or the store handed it out again, so this run's view is stale); the instance is
    /// handed back and replayed from the store when it is claimed next.
    /// Returns whether there was a run to stop.
    pub(crate) fn supersede(&self, id: &str, reason: &str) -> bool {
        let ctx = self.live.lock().ok().and_then(|live| live.get(id).cloned());
        if let Some(ctx) = &ctx {
            ctx.fail(Fatal::Superseded(reason.to_owned()));
        }
        ctx.is_some()
    }

    /// Wakes the local run of `id`, if any, to look at its inbox.
    pub(crate) fn signal_inbox(&self, id: &str) {
        let signal = self.inboxes.lock().ok().and_then(|inboxes| inboxes.get(id).cloned());
        if let Some(signal) = signal {
            signal.notify_waiters();
        }
    }

    /// Creates an instance (with `extra` ops in the same transaction) and runs it here at once
    /// when a slot is free; otherwise it waits in the store for a claim.
    pub(crate) async fn start_instance(
        self: &Arc<Self>,
        mut record: InstanceRecord,
        extra: Vec<WriteOp>,
    ) -> Result<(), Error> {
        if self.is_shutting_down() {
            return Err(Error::ShutDown);
        }
        let id = record.id.clone();
        let Some(token) = self.mark_running(&id) else {
            return Err(Error::InstanceExists(id));
        };
        let permit = self.instance_slots.clone().try_acquire_owned().ok();
        if permit.is_some() {
            // It runs here from this commit on: created Running, which saves the first turn a
            // commit of its own for the Pending-to-Running change.
            record.status = RuntimeStatus::Running;
            record.owner = Some(self.worker_id.clone());
            record.lease_until = Some(self.clock.now_ms().saturating_add(crate::clock::millis(self.lease)));
        }
        let mut ops = vec![WriteOp::CreateInstance(record.clone())];
        ops.extend(extra);
        let outcome = self.committer.commit(ops).await;
        match outcome {
            Ok(outcome) if outcome.existing.is_empty() => {}
            Ok(_) => {
                self.unmark_running(&id, token);
                return Err(Error::InstanceExists(id));
            }
            Err(error) => {
                self.unmark_running(&id, token);
                return Err(error.into());
            }
        }
        match permit {
            Some(permit) => self.spawn_driver(record, true, permit, token),
            None => {
                self.unmark_running(&id, token);
                self.backlog.store(true, Ordering::SeqCst);
                self.wake_claimer.notify_one();
            }
        }
        Ok(())
    }

    /// Runs an instance this process has claimed (and marked running) on its own task.
    pub(crate) fn spawn_driver(
        self: &Arc<Self>,
        record: InstanceRecord,
        fresh: bool,
        permit: OwnedSemaphorePermit,
        token: u64,
    ) {
        let engine = self.clone();
        self.active_drivers.fetch_add(1, Ordering::SeqCst);
        let span = tracing::info_span!("workflow", instance_id = %record.id, workflow = %record.workflow);
        tokio::spawn(
            async move {
                let id = record.id.clone();
                drive(&engine, record, fresh, token).await;
                engine.unmark_running(&id, token);
                drop(permit);
                if engine.active_drivers.fetch_sub(1, Ordering::SeqCst) == 1 {
                    engine.drivers_idle.notify_waiters();
                }
                if engine.backlog.load(Ordering::SeqCst) {
                    engine.wake_claimer.notify_one();
                }
            }
            .instrument(span),
        );
    }
}

enum RunEnd {
    Finished(Result<String, WorkflowError>),
    Fatal(Fatal),
    /// Waiting with nothing running: what to wake for, read before the body (and its waits) drops.
    Idle(IdleWaits),
    Shutdown,
}

struct IdleWaits {
    wake_at: crate::store::Millis,
    seen_events: std::collections::HashSet<i64>,
    children: Vec<String>,
}

/// Runs (replaying first, when not fresh) one instance until it ends, is evicted, or must stop.
async fn drive(engine: &Arc<Engine>, mut record: InstanceRecord, mut fresh: bool, token: u64) {
    let Some(entry) = engine.registry.workflows.get(&record.workflow).cloned() else {
        tracing::warn!(workflow = %record.workflow, "claimed an instance of an unregistered workflow; leaving it");
        return;
    };
    let inbox = Arc::new(Notify::new());
    if let Ok(mut inboxes) = engine.inboxes.lock() {
        inboxes.insert(record.id.clone(), inbox.clone());
    }
    loop {
        let journal = if fresh {
            Vec::new()
        } else {
            match engine.store.journal(&record.id, record.generation).await {
                Ok(journal) => journal,
                Err(error) => {
                    tracing::error!(%error, "could not read the journal; handing the instance back");
                    hand_back(engine, &record.id, token).await;
                    break;
                }
            }
        };
        let status_change = (record.status == RuntimeStatus::Pending).then_some(RuntimeStatus::Running);
        let ctx = WorkflowContext::new(
            engine.clone(),
            record.id.as_str().into(),
            record.generation,
            journal,
            status_change,
            inbox.clone(),
        );
        if let Ok(mut live) = engine.live.lock() {
            live.insert(record.id.clone(), ctx.clone());
        }
        let end = run_once(engine, &entry, &ctx, &record.input).await;
        match end {
            RunEnd::Shutdown => break,
            RunEnd::Idle(waits) => {
                evict(engine, &ctx, waits, token).await;
                break;
            }
            RunEnd::Fatal(Fatal::Abandon(reason)) => {
                tracing::error!(%reason, "stopped running the instance; handing it back");
                hand_back(engine, &record.id, token).await;
                break;
            }
            RunEnd::Fatal(Fatal::Superseded(reason)) => {
                tracing::info!(%reason, "stopped running the instance: it changed elsewhere");
                hand_back(engine, &record.id, token).await;
                break;
            }
            RunEnd::Fatal(Fatal::ContinueAsNew(input)) => {
                let generation = record.generation + 1;
                let mut ops = ctx.take_fenced_batch();
                ops.push(WriteOp::ContinueAsNew {
                    id: record.id.clone(),
                    input: input.clone(),
                    generation,
                    updated_at: engine.clock.now_ms(),
                });
                if let Err(error) = engine.committer.commit(ops).await {
                    tracing::error!(%error, "could not continue as new; the instance will be claimed again");
                    break;
                }
                tracing::debug!(generation, "continued as new");
                record.generation = generation;
                record.input = input;
                record.status = RuntimeStatus::Running;
                fresh = true;
            }
            RunEnd::Fatal(Fatal::Fail(details)) => {
                finish(engine, &ctx, &record, Err(details)).await;
                break;
            }
            RunEnd::Finished(result) => {
                let outcome = match ctx.unmatched_records() {
                    Some(extra) => Err(FailureDetails {
                        error_type: "NonDeterminism".into(),
                        message: format!(
                            "non-determinism at seq {}: the journal recorded {} `{}` but the workflow now finishes without it",
                            extra.seq, extra.kind, extra.name
                        ),
                    }),
                    None => result.map_err(|error| FailureDetails {
                        error_type: error.error_type().to_owned(),
                        message: error.to_string(),
                    }),
                };
                finish(engine, &ctx, &record, outcome).await;
                break;
            }
        }
    }
    if let Ok(mut inboxes) = engine.inboxes.lock() {
        inboxes.remove(&record.id);
    }
    if let Ok(mut live) = engine.live.lock() {
        live.remove(&record.id);
    }
}

async fn run_once(
    engine: &Arc<Engine>,
    entry: &crate::registry::WorkflowEntry,
    ctx: &WorkflowContext,
    input: &str,
) -> RunEnd {
    let mut shutdown = engine.shutdown.subscribe();
    let body = (entry.run)(ctx.clone(), input.to_owned());
    tokio::pin!(body);
    let check_idle = (engine.evict_idle_after / 2).max(Duration::from_millis(5));
    loop {
        tokio::select! {
            result = &mut body => return RunEnd::Finished(result),
            fatal = ctx.fatal() => return RunEnd::Fatal(fatal),
            _ = shutdown.wait_for(|stop| *stop) => return RunEnd::Shutdown,
            () = tokio::time::sleep(check_idle) => {
                if ctx.idle_for().is_some_and(|idle| idle >= engine.evict_idle_after) {
                    let state = ctx.state();
                    return RunEnd::Idle(IdleWaits {
                        wake_at: state.deadlines.values().min().copied().unwrap_or(NEVER),
                        seen_events: state.seen_events.clone(),
                        children: state.children.values().cloned().collect(),
                    });
                }
            }
        }
    }
}

/// Drops an idle instance from memory: its wake-up time goes to the store, and a wake-up that
/// raced the eviction (an event, a child's end) is caught right after.
async fn evict(engine: &Arc<Engine>, ctx: &WorkflowContext, waits: IdleWaits, token: u64) {
    let id = ctx.instance_id().to_owned();
    // Off the running set first: from the Evict commit on, a claim may run it again.
    engine.unmark_running(&id, token);
    let IdleWaits { wake_at, seen_events, children } = waits;
    let mut ops = ctx.take_fenced_batch();
    ops.push(WriteOp::Evict { id: id.clone(), wake_at });
    if let Err(error) = engine.committer.commit(ops).await {
        tracing::error!(%error, "could not evict the instance; it will be claimed again when its lease lapses");
        return;
    }
    tracing::debug!(wake_at, "evicted an idle instance");
    let mut woken = match engine.store.events(&id).await {
        Ok(events) => events.iter().any(|event| !seen_events.contains(&event.event_id)),
        Err(_) => true,
    };
    for child in children {
        if woken {
            break;
        }
        woken = !matches!(engine.store.instance(&child).await, Ok(Some(record)) if !record.status.is_terminal());
    }
    if woken {
        let wake = WriteOp::SetWake { id, wake_at: Some(engine.clock.now_ms()) };
        if engine.committer.commit(vec![wake]).await.is_ok() {
            engine.wake_claimer.notify_one();
        }
    }
}

/// Gives up this worker's claim on an instance it stopped running after a store error, so a
/// claim (here or elsewhere) can run it again soon rather than when the lease lapses. Fenced: if
/// another worker owns it by now, nothing changes; if the store is still failing, the lease
/// lapsing remains the way back.
async fn hand_back(engine: &Arc<Engine>, id: &str, token: u64) {
    // Off the running set first: from the commit on, a claim may run it again.
    engine.unmark_running(id, token);
    let fence = WriteOp::AssertOwner { id: id.to_owned(), owner: engine.worker_id.clone() };
    let release = WriteOp::Evict { id: id.to_owned(), wake_at: engine.clock.now_ms() };
    if engine.committer.commit(vec![fence, release]).await.is_ok() {
        engine.backlog.store(true, Ordering::SeqCst);
        engine.wake_claimer.notify_one();
    }
}

/// Records the instance's end (and wakes its parent), then tells local waiters.
async fn finish(
    engine: &Arc<Engine>,
    ctx: &WorkflowContext,
    record: &InstanceRecord,
    outcome: Result<String, FailureDetails>,
) {
    let (status, output, error) = match outcome {
        Ok(output) => (RuntimeStatus::Completed, Some(output), None),
        Err(details) => {
            tracing::warn!(error = %details, "instance failed");
            (RuntimeStatus::Failed, None, Some(details.to_stored()))
        }
    };
    let now = engine.clock.now_ms();
    let custom_status = ctx.state().custom_status.clone().unwrap_or_else(|| record.custom_status.clone());
    let final_status = InstanceStatus {
        instance_id: record.id.clone(),
        workflow: record.workflow.clone(),
        status,
        input: record.input.clone(),
        output: output.clone(),
        failure: error.as_deref().map(FailureDetails::parse),
        custom_status,
        parent_id: record.parent_id.clone(),
        created_at: record.created_at,
        updated_at: now,
    };
    let mut ops = ctx.take_fenced_batch();
    // The Finish sets the status: a Pending-to-Running change in the same batch is moot.
    ops.retain(|op| !matches!(op, WriteOp::SetStatus { id, .. } if *id == record.id));
    ops.push(WriteOp::Finish { id: record.id.clone(), status, output, error, updated_at: now });
    if let Some(parent) = &record.parent_id {
        ops.push(WriteOp::SetWake { id: parent.clone(), wake_at: Some(now) });
    }
    match engine.committer.commit(ops).await {
        Ok(_) => {
            engine.completions.notify(&final_status);
            if record.parent_id.is_some() {
                engine.wake_claimer.notify_one();
            }
        }
        Err(error) => tracing::error!(%error, "could not record the instance's end; it will be claimed again"),
    }
}
