//! Distributed activities: an activity attempt queued in the store as a task, run by whichever
//! worker claims it, its outcome written back to the task row and picked up by the instance's
//! owner, which journals it as it journals a local attempt. The journal keeps a single writer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit};

use super::attempt::{run_attempt, Attempt};
use super::ActivityOptions;
use crate::model::codec;
use crate::model::trace::TraceContext;
use crate::store::{TaskCompletion, TaskOutcome, TaskRecord};
use crate::worker::Engine;

/// Where the activity attempts of the instances a worker runs are executed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ActivityDispatch {
    /// In the process that runs the instance: no store writes beyond the journal (the default).
    #[default]
    Local,
    /// Through the store's task queue, so any worker with the activity registered runs it (this
    /// one included): a fan-out spreads over every worker process sharing the database. Costs
    /// two more store writes per attempt (the claim and the outcome).
    Shared,
    /// Locally while this worker has a free activity slot and the activity is registered here;
    /// through the task queue otherwise.
    Overflow,
}

/// (generation, seq, attempt) of a queued call of one instance.
type CallKey = (u32, u32, u32);

/// The owner's side of the queue: who waits for which task's outcome, and the wake-ups.
#[derive(Default)]
pub(crate) struct TaskHub {
    waiters: Mutex<HashMap<String, HashMap<CallKey, oneshot::Sender<TaskOutcome>>>>,
    /// Woken when an outcome may be ready (a local worker finished a task, a store hint).
    pub(crate) outcome_ready: Notify,
    /// Woken when a task may be waiting to be claimed.
    pub(crate) queued: Notify,
    /// Outcomes of tasks run here that the store has not taken yet, reported in batches by
    /// [`completion_loop`] (one commit for many, not one each).
    completions: Mutex<Vec<TaskCompletion>>,
    /// Woken when an outcome joins `completions`.
    completed: Notify,
    /// Outcomes of attempts run here under a lease taken as they were queued, kept back from
    /// the store while their run journals them (the commit that does deletes the task, and
    /// drops the outcome here): reported only if that has not happened within [`HOLD`].
    held: Mutex<HashMap<TaskKey, (TaskCompletion, tokio::time::Instant)>>,
}

/// (instance, generation, seq) of a task.
type TaskKey = (String, u32, u32);

/// How long an outcome of an attempt run here waits for its run to journal it before it is
/// reported to the store (so an outcome whose run failed to commit still reaches the instance).
const HOLD: Duration = Duration::from_secs(1);

impl TaskHub {
    /// Registers interest in the outcome of one attempt (before it is queued, so none is missed).
    pub(crate) fn wait_for(
        &self,
        instance_id: &str,
        generation: u32,
        seq: u32,
        attempt: u32,
    ) -> oneshot::Receiver<TaskOutcome> {
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.entry(instance_id.to_owned()).or_default().insert((generation, seq, attempt), sender);
        }
        receiver
    }

    /// Forgets the interest [`TaskHub::wait_for`] registered (the attempt runs here instead).
    pub(crate) fn forget(&self, instance_id: &str, generation: u32, seq: u32, attempt: u32) {
        let Ok(mut waiters) = self.waiters.lock() else { return };
        if let Some(calls) = waiters.get_mut(instance_id) {
            calls.remove(&(generation, seq, attempt));
            if calls.is_empty() {
                waiters.remove(instance_id);
            }
        }
    }

    pub(crate) fn has_waiters(&self, instance_id: &str) -> bool {
        self.waiters.lock().map(|waiters| waiters.contains_key(instance_id)).unwrap_or(false)
    }

    /// The instances with a live waiter; forgets waiters nobody listens to any more (a dropped
    /// branch, a stopped run).
    fn waiting_instances(&self) -> Vec<String> {
        let Ok(mut waiters) = self.waiters.lock() else { return Vec::new() };
        waiters.retain(|_, calls| {
            calls.retain(|_, sender| !sender.is_closed());
            !calls.is_empty()
        });
        waiters.keys().cloned().collect()
    }

    fn deliver(&self, task: TaskRecord) {
        let Some(outcome) = task.outcome else { return };
        self.deliver_outcome(&task.instance_id, (task.generation, task.seq, task.attempt), outcome);
    }

    /// Hands `outcome` to the run here waiting for that attempt, if one is.
    fn deliver_outcome(&self, instance_id: &str, call: CallKey, outcome: TaskOutcome) {
        let Ok(mut waiters) = self.waiters.lock() else { return };
        let Some(calls) = waiters.get_mut(instance_id) else { return };
        if let Some(sender) = calls.remove(&call) {
            let _ = sender.send(outcome);
        }
        if calls.is_empty() {
            waiters.remove(instance_id);
        }
    }

    /// Holds back the outcome of an attempt this run journals itself (see `held`).
    pub(crate) fn hold(&self, completion: TaskCompletion) {
        let key = (completion.instance_id.clone(), completion.generation, completion.seq);
        if let Ok(mut held) = self.held.lock() {
            held.insert(key, (completion, tokio::time::Instant::now()));
        }
    }

    /// Whether any outcome is held back.
    pub(crate) fn holds_any(&self) -> bool {
        self.held.lock().map(|held| !held.is_empty()).unwrap_or(false)
    }

    /// Drops the held outcomes of the tasks a committed batch deleted: journaled.
    pub(crate) fn journaled(&self, ops: &[crate::store::WriteOp]) {
        let Ok(mut held) = self.held.lock() else { return };
        if held.is_empty() {
            return;
        }
        for op in ops {
            if let crate::store::WriteOp::DeleteTask { instance_id, generation, seq } = op {
                held.remove(&(instance_id.clone(), *generation, *seq));
            }
        }
    }

    /// Reports the held outcomes older than [`HOLD`]; whether any are still held.
    fn report_overdue(&self) -> bool {
        let overdue: Vec<TaskCompletion> = match self.held.lock() {
            Ok(mut held) => {
                let now = tokio::time::Instant::now();
                let keys: Vec<_> = held
                    .iter()
                    .filter(|(_, (_, at))| now.duration_since(*at) >= HOLD)
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.into_iter().filter_map(|key| held.remove(&key)).map(|(completion, _)| completion).collect()
            }
            Err(_) => return false,
        };
        for completion in overdue {
            self.report(completion);
        }
        self.held.lock().map(|held| !held.is_empty()).unwrap_or(false)
    }

    /// Queues an outcome for the store (see [`completion_loop`]).
    pub(crate) fn report(&self, completion: TaskCompletion) {
        if let Ok(mut completions) = self.completions.lock() {
            completions.push(completion);
        }
        self.completed.notify_one();
    }
}

/// Hands finished tasks' outcomes to the local runs waiting for them.
pub(crate) async fn outcome_loop(engine: Arc<Engine>, poll_interval: Duration) {
    loop {
        tokio::select! {
            () = engine.tasks().outcome_ready.notified() => {}
            () = tokio::time::sleep(poll_interval) => {}
        }
        if engine.is_shutting_down() {
            return;
        }
        let waiting = engine.tasks().waiting_instances();
        if waiting.is_empty() {
            continue;
        }
        match engine.store().finished_tasks(&waiting).await {
            Ok(finished) => finished.into_iter().for_each(|task| engine.tasks().deliver(task)),
            Err(error) => tracing::warn!(%error, "reading task outcomes failed"),
        }
    }
}

/// Claims queued tasks of the activities registered here while this worker has free activity
/// slots, and runs them.
pub(crate) async fn task_loop(engine: Arc<Engine>, poll_interval: Duration, batch: usize) {
    let mut names: Vec<String> = engine.registry().activity_names().map(str::to_owned).collect();
    names.sort();
    // Dropping the set (the loop is aborted at shutdown) aborts the attempts in it.
    let mut running = tokio::task::JoinSet::new();
    // When the rate of an activity claimed here next has room: a period after this worker's
    // last claim of it (its claims stop counting then), on the engine's clock. Waking then
    // admits the next starts on time instead of at the next poll.
    let mut rate_room_at: Option<crate::model::Millis> = None;
    loop {
        if engine.is_shutting_down() {
            return;
        }
        let free = engine.activity_slots().available_permits().min(batch);
        let mut claimed = 0;
        // The activities this worker limits itself are claimed on their own, each up to its own
        // room; the others together with what is left.
        let (limited, unlimited): (Vec<&String>, Vec<&String>) =
            names.iter().partition(|name| engine.activity_limit(name).is_some());
        let mut claims: Vec<Vec<String>> = limited.into_iter().map(|name| vec![name.clone()]).collect();
        if !unlimited.is_empty() {
            claims.push(unlimited.into_iter().cloned().collect());
        }
        for subset in claims {
            let own_room = match engine.activity_limit(&subset[0]) {
                Some(turns) if subset.len() == 1 => turns.available_permits(),
                _ => usize::MAX,
            };
            let want = (free - claimed).min(own_room);
            if want == 0 {
                continue;
            }
            let (now, lease_until) = (engine.now(), engine.lease_until());
            let caps = engine.activity_caps();
            match engine.store().claim_tasks_capped(engine.owner(), &subset, caps, now, lease_until, want).await {
                Ok(tasks) => {
                    claimed += tasks.len();
                    let periods = tasks
                        .iter()
                        .filter_map(|task| caps.iter().find(|cap| cap.activity == task.name).and_then(|cap| cap.rate));
                    if let Some(period) = periods.map(|rate| rate.period_ms).min() {
                        let at = now.saturating_add(period);
                        rate_room_at = Some(rate_room_at.map_or(at, |known| known.min(at)).max(now));
                    }
                    for task in tasks {
                        let kind = crate::store::QueueKind::Activity;
                        crate::metrics::queue_wait(kind, &task.name, &task.concurrency_key, task.visible_at, now);
                        let engine = engine.clone();
                        // Taken before the next claim counts the room: claimed within it, so free
                        // unless a local attempt took one meanwhile.
                        let turn = engine.activity_turn(&task.name).await;
                        let Ok(permit) = engine.activity_slots().clone().acquire_owned().await else { return };
                        running.spawn(async move { execute(&engine, task, (permit, turn)).await });
                    }
                }
                Err(error) => tracing::warn!(%error, "claiming activity tasks failed"),
            }
        }
        if free > 0 && claimed >= free {
            tokio::task::yield_now().await;
            continue;
        }
        let rate_room = async {
            match rate_room_at {
                Some(at) => engine.clock().sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = engine.tasks().queued.notified() => {}
            () = tokio::time::sleep(poll_interval) => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
            () = rate_room => rate_room_at = None,
        }
    }
}

/// Runs a claimed task's attempt and reports its outcome: at once to the run waiting for it when
/// that run is in this process (it journals the outcome and deletes the task in its next
/// commit), and always to the store, in a batch ([`completion_loop`]), so the outcome survives
/// that run failing to commit and reaches a run anywhere else.
async fn execute(
    engine: &Arc<Engine>,
    task: TaskRecord,
    permits: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
) {
    let options = ActivityOptions {
        start_to_close: task.start_to_close_ms.map(duration_ms),
        heartbeat_timeout: task.heartbeat_timeout_ms.map(duration_ms),
    };
    let result = run_attempt(
        engine,
        Attempt {
            instance_id: task.instance_id.as_str().into(),
            generation: task.generation,
            seq: task.seq,
            attempt: task.attempt,
            name: &task.name,
            input: &task.input,
            options,
            // The queuing instance's trace, continued here whichever process this is.
            trace_id: task
                .trace_context
                .as_deref()
                .and_then(|stored| TraceContext::parse(stored).ok())
                .map(|trace| trace.trace_id()),
        },
    )
    .await;
    drop(permits);
    let outcome = codec::encode_outcome(&result, engine.now());
    let call = (task.generation, task.seq, task.attempt);
    engine.tasks().deliver_outcome(&task.instance_id, call, outcome.clone());
    engine.tasks().report(TaskCompletion {
        instance_id: task.instance_id,
        generation: task.generation,
        seq: task.seq,
        attempt: task.attempt,
        outcome,
    });
}

/// Reports the outcomes of the tasks run here to the store, as many as have gathered in one
/// call (one commit on the SQL stores), until the store takes them: this live worker keeps
/// renewing the tasks' leases, so an outcome given up on would leave its task (and instance)
/// stalled until the process ends. A batch the store refuses is reported one by one, so one bad
/// outcome cannot hold back the others. Only shutdown stops the tries (it releases the leases,
/// and the attempts run again elsewhere).
pub(crate) async fn completion_loop(engine: Arc<Engine>) {
    let hub = engine.tasks();
    let mut pause = Duration::from_millis(50);
    loop {
        // Held outcomes are looked at every HOLD while there are any.
        let holding = hub.report_overdue();
        tokio::select! {
            () = hub.completed.notified() => {}
            () = tokio::time::sleep(HOLD), if holding => continue,
        }
        loop {
            let batch: Vec<TaskCompletion> = match hub.completions.lock() {
                Ok(mut completions) => std::mem::take(&mut *completions),
                Err(_) => return,
            };
            if batch.is_empty() {
                break;
            }
            let store = engine.store();
            let stored = match store.complete_tasks(engine.owner(), &batch).await {
                Ok(stored) => stored.into_iter().map(Ok).collect(),
                Err(_) => {
                    let mut each = Vec::with_capacity(batch.len());
                    for c in &batch {
                        let owner = engine.owner();
                        each.push(
                            store
                                .complete_task(owner, &c.instance_id, c.generation, c.seq, c.attempt, &c.outcome)
                                .await,
                        );
                    }
                    each
                }
            };
            let mut again = Vec::new();
            for (completion, stored) in batch.into_iter().zip(stored) {
                match stored {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(instance_id = %completion.instance_id, seq = completion.seq, "task was taken over, withdrawn or journaled; outcome dropped");
                    }
                    Err(error) => {
                        tracing::warn!(%error, instance_id = %completion.instance_id, seq = completion.seq, retry_in = ?pause, "reporting a task outcome failed");
                        again.push(completion);
                    }
                }
            }
            hub.outcome_ready.notify_one();
            if again.is_empty() {
                pause = Duration::from_millis(50);
                continue;
            }
            if engine.is_shutting_down() {
                return;
            }
            if let Ok(mut completions) = hub.completions.lock() {
                again.append(&mut completions);
                *completions = again;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

fn duration_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
