//! The driver: runs one instance in this process (replaying its journal first unless it is
//! fresh) until it finishes, is evicted while it waits, continues as new, or must stop; then
//! writes what that means and leaves.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tracing::Instrument;

use super::engine::Engine;
use super::registry::WorkflowEntry;
use crate::client::Ending;
use crate::error::{FailureDetails, WorkflowError};
use crate::model::time::millis;
use crate::model::trace::TraceContext;
use crate::store::{EventRecord, InstanceRecord, JournalRecord, RuntimeStatus, StoreError, WriteOp};
use crate::workflow::{Fatal, IdleWaits, WorkflowContext};

/// Where a driver's first run gets its journal.
pub(crate) enum Journal {
    /// A new instance (or a new generation): nothing recorded yet.
    Fresh,
    /// Read from the store.
    Read,
    /// Read already, with other claimed instances' journals in one round trip, and the front of
    /// its inbox beside it (see [`Store::inboxes`](crate::store::Store::inboxes)).
    Prefetched { journal: Vec<JournalRecord>, inbox: Vec<EventRecord> },
}

/// Runs a claimed (and marked running) instance on a task of its own.
pub(super) fn spawn(
    engine: Arc<Engine>,
    record: InstanceRecord,
    journal: Journal,
    permit: OwnedSemaphorePermit,
    token: u64,
) {
    let counted = engine.driver_started();
    // The instance's trace, the same on every run: a trace continues across restarts.
    let trace = TraceContext::of_instance(record.trace_context.as_deref(), &record.id, record.created_at);
    let span = tracing::info_span!(
        "workflow",
        instance_id = %record.id,
        workflow = %record.workflow,
        trace_id = %trace.trace_id(),
        parent_span_id = %trace.span_id(),
    );
    tokio::spawn(
        async move {
            let id = record.id.clone();
            drive(&engine, record, journal, trace, token).await;
            engine.unmark_running(&id, token);
            drop(permit);
            drop(counted);
        }
        .instrument(span),
    );
}

enum RunEnd {
    Finished(Result<String, WorkflowError>),
    Fatal(Fatal),
    /// Waiting with nothing running: what to wake for, read before the body (and its waits) drops.
    Idle(IdleWaits),
    Shutdown,
}

/// Runs (replaying first, when not fresh) one instance until it ends, is evicted, or must stop.
async fn drive(engine: &Arc<Engine>, mut record: InstanceRecord, mut first: Journal, trace: TraceContext, token: u64) {
    let Some(entry) = engine.registry().workflow(&record.workflow) else {
        tracing::warn!(workflow = %record.workflow, "claimed an instance of an unregistered workflow; leaving it");
        return;
    };
    let inbox = Arc::new(Notify::new());
    if record.status == RuntimeStatus::Pending || matches!(first, Journal::Fresh) {
        entry.metrics.started(&record.workflow);
        // Waiting since it was created (a claim clears the due time of a delayed start, so its
        // wait includes its delay).
        let kind = crate::store::QueueKind::Workflow;
        crate::metrics::queue_wait(kind, &record.workflow, &record.concurrency_key, record.created_at, engine.now());
    }
    // Running in the store from here on: the claim that found it Pending made it so, as a start
    // here creates it.
    record.status = RuntimeStatus::Running;
    loop {
        let (journal, inbox_front) = match std::mem::replace(&mut first, Journal::Read) {
            Journal::Fresh => (Vec::new(), Vec::new()),
            Journal::Prefetched { journal, inbox } => (journal, inbox),
            Journal::Read => match engine.store().journal(&record.id, record.generation).await {
                Ok(journal) => (journal, Vec::new()),
                Err(StoreError::Corrupt(error)) => {
                    unreadable_journal(engine, &record, &error, token).await;
                    break;
                }
                Err(error) => {
                    tracing::error!(%error, "could not read the journal; handing the instance back");
                    hand_back(engine, &record.id, token, Duration::ZERO).await;
                    break;
                }
            },
        };
        engine.forget_unreadable(&record.id);
        let ctx = WorkflowContext::new(engine.clone(), &record, trace, journal, inbox_front, inbox.clone());
        engine.add_live(&record.id, &ctx, &inbox);
        let end = run_once(engine, &entry, &ctx, &record.input).await;
        match end {
            RunEnd::Shutdown => break,
            RunEnd::Idle(waits) => {
                evict(engine, &ctx, waits, token).await;
                break;
            }
            RunEnd::Fatal(Fatal::Abandon(reason)) => {
                tracing::error!(%reason, "stopped running the instance; handing it back");
                hand_back(engine, &record.id, token, Duration::ZERO).await;
                break;
            }
            RunEnd::Fatal(Fatal::Superseded(reason)) => {
                tracing::info!(%reason, "stopped running the instance: it changed elsewhere");
                hand_back(engine, &record.id, token, Duration::ZERO).await;
                break;
            }
            RunEnd::Fatal(Fatal::ContinueAsNew(input)) => {
                let generation = record.generation + 1;
                let mut ops = ctx.take_fenced_batch();
                ops.push(WriteOp::ContinueAsNew {
                    id: record.id.clone(),
                    input: input.clone(),
                    generation,
                    updated_at: engine.now(),
                });
                if let Err(error) = engine.commit(ops).await {
                    tracing::error!(%error, "could not continue as new; handing the instance back");
                    hand_back(engine, &record.id, token, Duration::ZERO).await;
                    break;
                }
                tracing::debug!(generation, "continued as new");
                record.generation = generation;
                record.input = input;
                first = Journal::Fresh;
            }
            RunEnd::Fatal(Fatal::Fail(details)) => {
                finish(engine, &ctx, &record, Err(details), token).await;
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
                finish(engine, &ctx, &record, outcome, token).await;
                break;
            }
        }
    }
    engine.remove_live(&record.id);
}

async fn run_once(engine: &Arc<Engine>, entry: &WorkflowEntry, ctx: &WorkflowContext, input: &str) -> RunEnd {
    let mut shutdown = engine.shutdown_signal();
    // A panic in the body fails the instance (it would otherwise end this task with the instance
    // still marked running here and its lease renewed for good).
    let body = std::panic::AssertUnwindSafe((entry.run)(ctx.clone(), input.to_owned())).catch_unwind();
    tokio::pin!(body);
    let check_idle = (engine.evict_idle_after() / 2).max(Duration::from_millis(5));
    loop {
        tokio::select! {
            result = &mut body => {
                return match result {
                    Ok(result) => RunEnd::Finished(result),
                    Err(panic) => RunEnd::Fatal(Fatal::Fail(FailureDetails {
                        error_type: "Panic".into(),
                        message: format!("the workflow body panicked: {}", crate::error::panic_message(panic.as_ref())),
                    })),
                };
            }
            fatal = ctx.fatal() => return RunEnd::Fatal(fatal),
            _ = shutdown.wait_for(|stop| *stop) => return RunEnd::Shutdown,
            // A wait that outlasts the idle time would be evicted before it ends anyway: evict it
            // now, so a sleeping instance holds no memory while it sleeps.
            () = ctx.may_be_idle(), if engine.evicts_long_waits() => {
                if ctx.waits_longer_than(engine.evict_idle_after()) {
                    return RunEnd::Idle(ctx.idle_waits());
                }
            }
            () = tokio::time::sleep(check_idle) => {
                if ctx.idle_for().is_some_and(|idle| idle >= engine.evict_idle_after()) {
                    return RunEnd::Idle(ctx.idle_waits());
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
    let wake_at = waits.wake_at;
    let mut ops = ctx.take_fenced_batch();
    ops.push(WriteOp::Evict { id: id.clone(), wake_at });
    if let Err(error) = engine.commit(ops).await {
        tracing::error!(%error, "could not evict the instance; handing it back");
        hand_back(engine, &id, token, Duration::ZERO).await;
        return;
    }
    tracing::debug!(wake_at, "evicted an idle instance");
    let mut woken = waits.event_arrived(engine.store().as_ref(), &id).await;
    for child in waits.children {
        if woken {
            break;
        }
        woken = !matches!(engine.store().instance(&child).await, Ok(Some(record)) if !record.status.is_terminal());
    }
    if woken {
        let wake = WriteOp::SetWake { id, wake_at: Some(engine.now()) };
        let _ = engine.commit(vec![wake]).await;
    }
}

/// Gives up this worker's claim on an instance it stopped running after a store error, so a
/// claim (here or elsewhere) runs it again (replaying its journal) `after` that (workflow time),
/// as soon as the store answers. Fenced: if another worker owns it by now, nothing changes. While
/// the store fails (a database restarting), tries again with back-off: this live worker keeps
/// renewing its leases, so a claim left in place would stall the instance until the process
/// ends. Gives up only at shutdown, which releases every lease anyway.
async fn hand_back(engine: &Arc<Engine>, id: &str, token: u64, after: Duration) {
    // Off the running set first: from the commit on, a claim may run it again.
    engine.unmark_running(id, token);
    let mut pause = Duration::from_millis(50);
    loop {
        let fence = WriteOp::AssertOwner { id: id.to_owned(), owner: engine.owner().to_owned() };
        let wake_at = engine.now().saturating_add(millis(after));
        let release = WriteOp::Evict { id: id.to_owned(), wake_at };
        match engine.commit(vec![fence, release]).await {
            Ok(_) | Err(StoreError::Fenced(_)) => return,
            Err(error) => {
                if engine.is_shutting_down() {
                    return;
                }
                tracing::warn!(%error, retry_in = ?pause, "could not hand the instance back; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// How many times in a row this process finds an instance's journal unreadable before it fails
/// the instance.
const UNREADABLE_JOURNAL_LIMIT: u32 = 5;

/// The first wait before an instance whose journal was unreadable is claimed again; each next
/// one is [`UNREADABLE_BACKOFF`] times longer (1 s, 4 s, 16 s, 64 s).
const UNREADABLE_FIRST_WAIT: Duration = Duration::from_secs(1);
const UNREADABLE_BACKOFF: u32 = 4;

/// An instance whose journal does not decode ([`StoreError::Corrupt`]: a row damaged behind the
/// store's back, or written by a newer version of this library). Such a journal does not mend by
/// itself, so handing the instance back for a claim at once would replay into the same error
/// again and again, a hot loop. Instead it is handed back with a wake-up that backs off (1 s,
/// then 4 times longer each time, in workflow time), leaving room for a repair or for a worker
/// that reads the row; after [`UNREADABLE_JOURNAL_LIMIT`] unreadable reads in a row in this
/// process it is failed, error type `CorruptJournal`, with the store's message naming the row.
/// The count is this process's, in memory: every process gives the instance as many tries.
async fn unreadable_journal(engine: &Arc<Engine>, record: &InstanceRecord, error: &str, token: u64) {
    let unreadable = engine.journal_unreadable(&record.id);
    if unreadable < UNREADABLE_JOURNAL_LIMIT {
        let wait = UNREADABLE_FIRST_WAIT.saturating_mul(UNREADABLE_BACKOFF.saturating_pow(unreadable - 1));
        tracing::error!(%error, unreadable, retry_in = ?wait, "the journal does not decode; handing the instance back");
        hand_back(engine, &record.id, token, wait).await;
        return;
    }
    engine.forget_unreadable(&record.id);
    let ending = Ending::failed(FailureDetails {
        error_type: "CorruptJournal".into(),
        message: format!("the journal did not decode {unreadable} times in a row: {error}"),
    });
    let now = engine.now();
    let mut ops = vec![WriteOp::AssertOwner { id: record.id.clone(), owner: engine.owner().to_owned() }];
    ops.extend(ending.ops(record, now));
    match engine.commit(ops).await {
        Ok(_) => {
            tracing::error!(%error, "the journal does not decode; failed the instance");
            engine.notify_completion(&ending.status(record, record.custom_status.clone(), now));
        }
        Err(error @ StoreError::Fenced(_)) => {
            tracing::info!(%error, "could not fail the instance: it changed elsewhere");
        }
        Err(error) => {
            tracing::error!(%error, "could not fail the instance; handing it back");
            hand_back(engine, &record.id, token, Duration::ZERO).await;
        }
    }
}

/// Records the instance's end (and wakes its parent), then tells local waiters.
async fn finish(
    engine: &Arc<Engine>,
    ctx: &WorkflowContext,
    record: &InstanceRecord,
    outcome: Result<String, FailureDetails>,
    token: u64,
) {
    let ending = match outcome {
        Ok(output) => Ending::completed(output),
        Err(details) => {
            tracing::warn!(error = %details, "instance failed");
            Ending::failed(details)
        }
    };
    let now = engine.now();
    let custom_status = ctx.custom_status().unwrap_or_else(|| record.custom_status.clone());
    let mut ops = ctx.take_fenced_batch();
    ops.extend(ending.ops(record, now));
    match engine.commit(ops).await {
        Ok(_) => {
            let status = ending.status(record, custom_status, now);
            if let Some(entry) = engine.registry().workflow(&record.workflow) {
                entry.metrics.finished(&record.workflow, status.status == RuntimeStatus::Completed);
            }
            engine.notify_completion(&status);
        }
        Err(error @ StoreError::Fenced(_)) => {
            tracing::info!(%error, "could not record the instance's end: it changed elsewhere");
        }
        Err(error) => {
            // Replayed to its end again once the store answers.
            tracing::error!(%error, "could not record the instance's end; handing it back");
            hand_back(engine, &record.id, token, Duration::ZERO).await;
        }
    }
}
