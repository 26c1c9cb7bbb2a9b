//! The engine shared by a runtime's tasks: registry, committer, limits, and the instance driver.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::committer::Committer;
use crate::context::{Fatal, WorkflowContext};
use crate::error::{FailureDetails, WorkflowError};
use crate::registry::Registry;
use crate::store::{InstanceRecord, RuntimeStatus, Store, WriteOp};
use crate::time;

/// Wakes local waiters when an instance finishes.
#[derive(Default)]
pub(crate) struct CompletionHub {
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

impl CompletionHub {
    pub(crate) fn subscribe(&self, id: &str) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.entry(id.to_owned()).or_default().push(sender);
        }
        receiver
    }

    pub(crate) fn notify(&self, id: &str) {
        let senders = self.waiters.lock().ok().and_then(|mut waiters| waiters.remove(id));
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(());
        }
    }
}

pub(crate) struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) committer: Committer,
    pub(crate) registry: Registry,
    pub(crate) workflow_names: Vec<String>,
    pub(crate) worker_id: String,
    pub(crate) lease: Duration,
    pub(crate) activity_slots: Arc<Semaphore>,
    pub(crate) instance_slots: Arc<Semaphore>,
    /// Instances this process is running now.
    pub(crate) running: Mutex<HashSet<String>>,
    pub(crate) active_drivers: AtomicUsize,
    /// Whether runnable instances may be waiting in the store for a free slot.
    pub(crate) backlog: AtomicBool,
    pub(crate) drivers_idle: Notify,
    pub(crate) completions: CompletionHub,
    pub(crate) wake_claimer: Notify,
    pub(crate) shutdown: watch::Sender<bool>,
}

impl Engine {
    /// Marks `id` as running here; false if it already is.
    pub(crate) fn mark_running(&self, id: &str) -> bool {
        self.running.lock().map(|mut running| running.insert(id.to_owned())).unwrap_or(false)
    }

    pub(crate) fn unmark_running(&self, id: &str) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(id);
        }
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Runs an instance this process has claimed (and marked running) on its own task.
    pub(crate) fn spawn_driver(self: &Arc<Self>, record: InstanceRecord, fresh: bool, permit: OwnedSemaphorePermit) {
        let engine = self.clone();
        self.active_drivers.fetch_add(1, Ordering::SeqCst);
        let span = tracing::info_span!("workflow", instance_id = %record.id, workflow = %record.workflow);
        tokio::spawn(
            async move {
                let id = record.id.clone();
                drive(&engine, record, fresh).await;
                engine.unmark_running(&id);
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
    Shutdown,
}

/// Runs (replaying first, when not fresh) one instance to its end or until it must stop.
async fn drive(engine: &Arc<Engine>, record: InstanceRecord, fresh: bool) {
    let Some(entry) = engine.registry.workflows.get(&record.workflow).cloned() else {
        tracing::warn!(workflow = %record.workflow, "claimed an instance of an unregistered workflow; leaving it");
        return;
    };
    let journal = if fresh {
        Vec::new()
    } else {
        match engine.store.journal(&record.id, record.generation).await {
            Ok(journal) => journal,
            Err(error) => {
                tracing::error!(%error, "could not read the journal; the instance will be claimed again");
                return;
            }
        }
    };
    let status_change = (record.status == RuntimeStatus::Pending).then_some(RuntimeStatus::Running);
    let ctx =
        WorkflowContext::new(engine.clone(), record.id.as_str().into(), record.generation, journal, status_change);
    let mut shutdown = engine.shutdown.subscribe();
    let body = (entry.run)(ctx.clone(), record.input.clone());
    let end = tokio::select! {
        result = body => RunEnd::Finished(result),
        fatal = ctx.fatal() => RunEnd::Fatal(fatal),
        _ = shutdown.wait_for(|stop| *stop) => RunEnd::Shutdown,
    };
    let finish = match end {
        RunEnd::Shutdown => return,
        RunEnd::Fatal(Fatal::Abandon(reason)) => {
            tracing::error!(%reason, "stopped running the instance; it will be claimed again");
            return;
        }
        RunEnd::Fatal(Fatal::Fail(details)) => Err(details),
        RunEnd::Finished(result) => match ctx.unmatched_records() {
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
        },
    };
    let (status, output, error) = match finish {
        Ok(output) => (RuntimeStatus::Completed, Some(output), None),
        Err(details) => {
            tracing::warn!(error = %details, "instance failed");
            (RuntimeStatus::Failed, None, Some(details.to_stored()))
        }
    };
    let op = WriteOp::Finish { id: record.id.clone(), status, output, error, updated_at: time::now_ms() };
    match engine.committer.commit(vec![op]).await {
        Ok(_) => engine.completions.notify(&record.id),
        Err(error) => tracing::error!(%error, "could not record the instance's end; it will be claimed again"),
    }
}
